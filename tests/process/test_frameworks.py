"""FastAPI, Flask and Django integrations: each framework's test client, then real servers
(uvicorn --workers 2, gunicorn --preload -w 2) against banyan serve: every record once."""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from prockit import child_env, port_open, running, stop, stored_inputs, wait_for
from serverproc import free_port

import banyan

if TYPE_CHECKING:
    from serverproc import Server

REQUESTS = 40


@pytest.fixture
def env(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    """BANYAN_* naming ``server``, as a deployment would set them."""
    monkeypatch.setenv("BANYAN_BASE_URL", server.base_url)
    monkeypatch.setenv("BANYAN_API_KEY", server.api_key)
    return server


def logs(server: Server) -> list[dict[str, Any]]:
    """Every stored record."""
    return list(server.get("/api/v2/logs").json()["logs"])


# starlette before 1.x (0.38.6 under make test-lowest) reads anyio.abc.BlockingPortal in its
# testclient at import; anyio 4.15 deprecated that alias (Kludex/starlette#3497).
# The warning is the test client's, not banyan's, so it is ignored here only.
@pytest.mark.filterwarnings(
    "ignore:The anyio.abc.BlockingPortal alias is deprecated:DeprecationWarning"
)
@pytest.mark.usefixtures("collect_garbage")
def test_fastapi_lifespan_delivers_at_stop_and_routes_by_the_requests_sticky_context(
    env: Server,
) -> None:
    """TestClient: the lifespan configures, its shutdown delivers (no flush by the app), and
    get_prompt(sticky_context=sticky_context()) routes each request by its x-user-id."""
    pytest.importorskip("fastapi")
    from asgiapp import make_app
    from fastapi.testclient import TestClient

    env.post("/api/v2/prompts", json={"name": "support", "content": "one"}).raise_for_status()
    env.post("/api/v2/prompts/support/versions", json={"content": "two"}).raise_for_status()
    variants = [{"version": "1", "percentage": 50}, {"version": "2", "percentage": 50}]
    env.post("/api/v2/experiments", json={"prompt": "support", "variants": variants})
    with TestClient(make_app()) as client:
        for n in range(10):
            response = client.get("/", params={"n": n, "prompt": "support"},
                                  headers={"x-user-id": f"user-{n}"})  # fmt: skip
            assert response.status_code == 200
    stored = logs(env)
    assert sorted(r["input"] for r in stored) == sorted(f"request n={n}" for n in range(10))
    assert {r["sticky_value"] for r in stored} == {f"user-{n}" for n in range(10)}
    assert all(r["experiment_id"] and r["prompt_name"] == "support" for r in stored)


def test_flask_extension_configures_from_app_config(env: Server) -> None:
    """Flask's test client: Banyan(app) configures from app.config["BANYAN"] and BANYAN_*."""
    pytest.importorskip("flask")
    from flaskapp import create_app

    app = create_app()
    assert app.extensions["banyan"].logger.config.atexit_timeout == 5.0
    client = app.test_client()
    for n in range(5):
        assert client.get("/", query_string={"n": n}).status_code == 200
    assert banyan.flush(timeout=30)
    assert stored_inputs(env) == {f"request n={n}": 1 for n in range(5)}


def test_django_app_configures_from_settings(env: Server) -> None:
    """Django's test client: the app in INSTALLED_APPS configures from settings.BANYAN."""
    pytest.importorskip("django")
    importlib.import_module("djangoapp")
    from django.test import Client  # type: ignore[import-untyped]

    assert banyan.get_stats()["logs_sent"] == 0
    client = Client()
    for n in range(5):
        assert client.get("/", {"n": n}).status_code == 200
    assert banyan.flush(timeout=30)
    assert stored_inputs(env) == {f"request n={n}": 1 for n in range(5)}


UVICORN = ["-m", "uvicorn", "--workers", "2", "asgiapp:app"]
GUNICORN = ["-m", "gunicorn", "-w", "2", "--preload", "--graceful-timeout", "30"]
SERVERS = {
    "fastapi-uvicorn": ("fastapi", [*UVICORN, "--host", "127.0.0.1", "--port"]),
    "flask-gunicorn": ("flask", [*GUNICORN, "flaskapp:create_app()", "-b"]),
    "django-gunicorn": ("django", [*GUNICORN, "djangoapp:application", "-b"]),
}


def serve(name: str, server: Server, tmp_path: Path, **env: str) -> tuple[int, float]:
    """Run ``name``'s app under its real server, send REQUESTS, SIGTERM it: (exit code, seconds
    the stop took). ``env`` is added to the server's environment."""
    module, argv = SERVERS[name]
    pytest.importorskip(module)
    port = free_port()
    bind = str(port) if "uvicorn" in argv else f"127.0.0.1:{port}"
    with running([sys.executable, *argv, bind], tmp_path / f"{name}.log",
                 env=child_env(server, **env), cwd=tmp_path) as proc:  # fmt: skip
        wait_for(lambda: port_open(port), 60, f"{name} to listen")
        for n in range(REQUESTS):
            # A new connection per request, so both workers get some.
            response = httpx.get(f"http://127.0.0.1:{port}/", params={"n": n}, timeout=30)
            assert response.status_code == 200, response.text
        if env.get("BANYAN_TEST_STOP_BACKEND"):
            server.stop()
        start = time.monotonic()
        code = stop(proc, timeout=120)
        return code, time.monotonic() - start


@pytest.mark.parametrize("name", SERVERS)
def test_every_request_is_stored_once_under_a_real_server(
    server: Server, tmp_path: Path, name: str
) -> None:
    """Workers configure themselves (lifespan, extension, app), and what each logged reaches
    the server exactly once when the server is stopped with SIGTERM."""
    code, _ = serve(name, server, tmp_path)
    assert code == 0, (tmp_path / f"{name}.log").read_text()
    assert stored_inputs(server) == {f"request n={n}": 1 for n in range(REQUESTS)}
    assert server.summary()["duplicates"] == 0


@pytest.mark.parametrize("name", SERVERS)
def test_stop_is_bounded_by_the_configured_timeout_when_the_backend_is_gone(
    server: Server, tmp_path: Path, name: str
) -> None:
    """With banyan serve gone and retries that would last minutes, each worker's last shutdown
    (the lifespan's, or atexit's for Flask and Django) returns by its timeout, records spooled,
    so the server stops soon after."""
    timeout = 2.0
    options = {"max_retries": 50, "retry_delay": 5, "atexit_timeout": timeout}
    code, took = serve(name, server, tmp_path, BANYAN_TEST_STOP_BACKEND="1",
                       BANYAN_TEST_SHUTDOWN=str(timeout),
                       BANYAN_TEST_OPTIONS=json.dumps(options))  # fmt: skip
    assert code == 0, (tmp_path / f"{name}.log").read_text()
    # Generous slack for interpreters winding down on a busy machine.
    assert took < 5 * timeout + 10, took
