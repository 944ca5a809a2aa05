"""The ``banyan`` command: management subcommands against a running server."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from serverproc import Server, free_port

from banyan._cli import main
from banyan._localserver import _wait_healthy

from .helpers import call, unique


def _run(server: Server, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main([*argv, "--base-url", server.base_url, "--api-key", server.api_key])
    out, err = capsys.readouterr()
    return code, out + err


def test_prompts_push_list_and_experiment_flow(
    shared_server: Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """push creates then versions a prompt; list shows it; experiments print tables."""
    name = unique("cli-flow")
    source = tmp_path / "prompt.txt"
    for text in ("Hello {name}", "Hi {name}"):
        source.write_text(text)
        code, out = _run(
            shared_server,
            capsys,
            "prompts",
            "push",
            name,
            "--file",
            str(source),
            "--message",
            "edit",
        )
        assert code == 0, out
    assert "version 2" in out
    code, out = _run(shared_server, capsys, "prompts", "list")
    assert code == 0
    assert name in out
    assert "LATEST" in out
    code, out = _run(
        shared_server,
        capsys,
        "experiments",
        "create",
        name,
        "--variant",
        "1:50",
        "--variant",
        "2:50",
        "--sticky-key",
        "session_id",
        "--traffic",
        "80",
    )
    assert code == 0, out
    assert "running" in out
    assert "traffic 80%" in out
    exp_id = out.split()[1]
    code, out = _run(shared_server, capsys, "experiments", "results", exp_id)
    assert code == 0
    assert "P95 MS" in out
    assert "v1" in out


def test_prompts_push_with_branch_creates_the_prompt_on_that_branch(
    shared_server: Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """push --branch B on a new name creates the prompt with branch B only; a second push
    adds version 2 there."""
    name = unique("cli-branch")
    source = tmp_path / "prompt.txt"
    for text in ("Hello {name}", "Hi {name}"):
        source.write_text(text)
        code, out = _run(
            shared_server, capsys, "prompts", "push", name, "--file", str(source), "--branch", "dev"
        )
        assert code == 0, out
    assert f"pushed {name} version 2 on branch dev" in out
    branches = call(shared_server, "GET", f"/api/v2/prompts/{name}/branches").json()
    assert branches == {"branches": [{"name": "dev", "latest_version": "2", "versions": 2}]}
    fetched = call(shared_server, "GET", f"/api/logs/prompt/{name}", params={"branch": "dev"})
    assert (fetched.json()["content"], fetched.json()["version"]) == ("Hi {name}", "2")


def test_projects_and_keys_create(
    shared_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """projects create prints the new project's key; keys create prints a key for this project."""
    code, out = _run(shared_server, capsys, "projects", "create", unique("cli-proj"))
    assert code == 0
    assert "API key: psk_" in out
    code, out = _run(shared_server, capsys, "keys", "create", "--label", "ci")
    assert code == 0
    assert "psk_" in out


def test_errors_exit_non_zero(shared_server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    """Server refusals and bad arguments exit with status 1 and a message, not a traceback."""
    code, out = _run(
        shared_server, capsys, "experiments", "create", "no-such-prompt", "--variant", "1:100"
    )
    assert code == 1
    assert "HTTP 404" in out
    assert main(["prompts", "list", "--base-url", shared_server.base_url, "--api-key", ""]) == 2


@pytest.mark.parametrize(
    ("option", "needle"),
    [("--variant=oops", "VERSION:PERCENT"), ("--variant=1:inf", "finite"),
     ("--traffic=nan", "finite"), ("--traffic=lots", "finite")],
)  # fmt: skip
def test_bad_numbers_are_usage_errors(
    capsys: pytest.CaptureFixture[str], option: str, needle: str
) -> None:
    """A --variant or --traffic that is not a finite number: exit status 2 and why, no traceback."""
    argv = ["experiments", "create", "p", "--variant", "1:100", option, "--api-key", "psk_x_y_z"]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert needle in capsys.readouterr().err


def test_names_and_ids_stay_one_path_segment(
    shared_server: Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A name or id with ?, / or .. reaches the server whole, which refuses it by name."""
    source = tmp_path / "prompt.txt"
    source.write_text("Hello")
    code, out = _run(shared_server, capsys, "prompts", "push", "a?b", "--file", str(source))
    assert (code, "invalid prompt name 'a?b'" in out) == (1, True), out
    for exp_id in ("../../healthz", ".."):
        code, out = _run(shared_server, capsys, "experiments", "results", exp_id)
        assert (code, f"no experiment {exp_id!r}" in out) == (1, True), out


@pytest.mark.parametrize("key", ["psk_abc", "psk_" + "x" * 253, "key_0123456789"])
def test_serve_refuses_a_key_requests_could_not_use(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, key: str
) -> None:
    """`banyan serve --api-key` with a key the server would answer 401 to: exit 2, no server."""
    started: list[str] = []
    monkeypatch.setattr("banyan.server.serve", lambda **kw: started.append(kw["api_key"]))
    assert main(["serve", "--db", str(tmp_path / "x.db"), "--api-key", key]) == 2
    assert "8 to 256 characters" in capsys.readouterr().err
    assert started == []
    assert main(["serve", "--db", str(tmp_path / "x.db"), "--api-key", "psk_12345678"]) == 0
    assert started == ["psk_12345678"]


def test_serve_without_api_key_prints_a_new_key_that_works(tmp_path: Path) -> None:
    """`banyan serve` on a fresh database without --api-key prints project 'default' and a
    new admin key, and the API accepts that key."""
    port, db, log = free_port(), tmp_path / "fresh.db", tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "banyan", "serve", "--port", str(port), "--db", str(db)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", "", db, port, proc, log)
    try:
        _wait_healthy(server)
        printed = log.read_text()
        found = re.search(r"'default' id (prj_\w+)\n.*API key \(created\): (psk_\w+)", printed)
        assert found, printed
        project, key = found.groups()
        validated = call(server, "GET", "/api/auth/validate", key).json()
        assert validated == {"valid": True, "project_id": project, "project": "default",
                             "admin": True}  # fmt: skip
        listed = call(server, "GET", "/api/v2/projects", key).json()["projects"]
        assert [p["id"] for p in listed] == [project]
    finally:
        server.stop()


def test_unreachable_server_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """A server that is not there gives exit status 1 and says so."""
    code = main(["prompts", "list", "--base-url", "http://127.0.0.1:9", "--api-key", "psk_x_y_z"])
    assert code == 1
    assert "cannot reach" in capsys.readouterr().err


def test_importing_banyan_and_cli_does_not_load_the_server() -> None:
    """``import banyan`` and building the CLI parser leave banyan.server unimported."""
    code = (
        "import sys, banyan, banyan._cli; banyan._cli.build_parser();"
        "assert not any(m.startswith('banyan.server') for m in sys.modules), sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_serve_refuses_a_database_of_another_schema_without_a_traceback(tmp_path: Path) -> None:
    """`banyan serve` on a database with an unknown schema exits 2 with one clear line."""
    import sqlite3

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE logs (id TEXT)")
    result = subprocess.run(
        [sys.executable, "-m", "banyan", "serve", "--db", str(db), "--port", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("banyan serve: ")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("problem", ["busy port", "bad database", "bad port"])
def test_serve_start_problems_are_one_line_and_exit_2(tmp_path: Path, problem: str) -> None:
    """A port another server listens on (granian's SO_REUSEPORT would have shared it with
    a second database), a database path that cannot be opened, a port out of range."""
    with socket.create_server(("127.0.0.1", 0)) as other:
        port = str(other.getsockname()[1])
        args = {
            "busy port": ["--port", port, "--db", str(tmp_path / "x.db")],
            "bad database": ["--db", str(tmp_path / "missing" / "x.db")],
            "bad port": ["--port", "99999"],
        }[problem]
        result = subprocess.run(
            [sys.executable, "-m", "banyan", "serve", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "banyan serve" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_input_files_and_numbers_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A prompt file that is not UTF-8 and a replay timeout that is no positive number."""
    source = tmp_path / "prompt.txt"
    source.write_bytes(b"\xff\xfe")
    argv = ["prompts", "push", "p", "--file", str(source), "--api-key", "psk_12345678",
            "--base-url", "http://127.0.0.1:9"]  # fmt: skip
    assert main(argv) == 2
    assert "utf-8" in capsys.readouterr().err
    for timeout in ("nan", "-1", "0"):
        with pytest.raises(SystemExit) as exited:
            main(["spool", "replay", "--timeout", timeout, "--dir", str(tmp_path)])
        assert exited.value.code == 2
