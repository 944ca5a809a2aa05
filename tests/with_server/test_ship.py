"""Shipping an experiment's winner: `banyan experiments ship` and POST .../ship."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from serverkit import call, create_experiment, create_prompt

import banyan
from banyan._cli import main as cli

if TYPE_CHECKING:
    from serverproc import Server


def _prompt(server: Server, name: str) -> str | None:
    logger = banyan.PromptStackLogger(api_key=server.api_key, base_url=server.base_url,
                                      disk_cache=False)  # fmt: skip
    try:
        data = logger.get_prompt(name, sticky_context={"user_id": "someone"})
        return None if data is None else data.content
    finally:
        logger.shutdown(timeout=10)


def test_ship_makes_the_variant_what_get_prompt_returns(
    server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """`experiments ship ID --variant v1` stops the experiment; get_prompt then returns
    version 1's content (not the branch's newer version 2), as a new version in the history."""
    create_prompt(server, "ship", "Answer briefly.", "Answer warmly.")
    experiment = create_experiment(server, "ship")
    argv = ["experiments", "ship", experiment["id"], "--variant", "v1",
            "--base-url", server.base_url, "--api-key", server.api_key]  # fmt: skip
    assert cli(argv) == 0
    out = capsys.readouterr().out
    assert f"experiment {experiment['id']} stopped" in out
    assert "shipped: version 3 of ship@main" in out
    assert _prompt(server, "ship") == "Answer briefly."
    history = call(server, "GET", "/api/v2/prompts/ship").json()["versions"]
    assert [v["content"] for v in history] == ["Answer briefly.", "Answer warmly.",
                                              "Answer briefly."]  # fmt: skip
    assert experiment["id"] in history[-1]["message"]
    status = call(server, "GET", f"/api/v2/experiments/{experiment['id']}").json()["status"]
    assert status == "stopped"


def test_ship_refuses_an_unknown_variant(server: Server) -> None:
    """A variant the experiment does not have is a 400, and the experiment keeps running."""
    create_prompt(server, "noship", "A", "B")
    experiment = create_experiment(server, "noship")
    path = f"/api/v2/experiments/{experiment['id']}/ship"
    response = httpx.post(f"{server.base_url}{path}", headers=server.headers,
                          json={"variant": "v9"})  # fmt: skip
    assert response.status_code == 400
    assert call(server, "GET", f"/api/v2/experiments/{experiment['id']}").json()["status"] == (
        "running"
    )


def test_ship_answers_the_stopped_experiment_and_the_new_version(server: Server) -> None:
    """POST .../ship {variant}: 200 with the stopped experiment and the appended version;
    no variant field is 400, an experiment the project lacks 404 (protocol §7.3)."""
    create_prompt(server, "shipped", "First.", "Second.")
    experiment = create_experiment(server, "shipped")
    path = f"/api/v2/experiments/{experiment['id']}/ship"
    with httpx.Client(base_url=server.base_url, headers=server.headers) as client:
        assert client.post(path, json={}).status_code == 400
        none = client.post("/api/v2/experiments/exp_none/ship", json={"variant": "v1"})
        assert none.status_code == 404
        response = client.post(path, json={"variant": "v1"})
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"experiment", "version"}
    assert (answer["experiment"]["id"], answer["experiment"]["status"]) == (
        experiment["id"], "stopped")  # fmt: skip
    version = answer["version"]
    assert (version["branch"], version["version"], version["content"]) == ("main", "3", "First.")
    assert experiment["id"] in version["message"]
