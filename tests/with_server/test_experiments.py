"""Experiments end to end: the README example, agreement across processes and the server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from serverkit import call, create_experiment, create_prompt

import banyan
from banyan._cli import main as cli

if TYPE_CHECKING:
    from serverproc import Server

USERS = [f"user_{i}" for i in range(40)] + ["José", "用户-42", "👩‍💻"]
user_input = "Hello, I'm a new user!"
execution_time = 12.5

ROUTE_IN_CHILD = textwrap.dedent(
    """
    import json, sys
    import banyan
    users = json.loads(sys.argv[1])
    banyan.configure()
    print(json.dumps([banyan.get_prompt("ab", sticky_context={"user_id": u}).experiment_version_id
                      for u in users]))
    banyan.shutdown(timeout=5)
    """
)


def your_model_function(prompt: str, text: str) -> str:
    return f"{prompt} -> {text}"


@pytest.fixture
def env(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("BANYAN_BASE_URL", server.base_url)
    monkeypatch.setenv("BANYAN_API_KEY", server.api_key)
    return server


def route_remote(server: Server, experiment_id: str, value: str) -> Any:
    payload = {"experimentId": experiment_id, "stickyKey": "user_id", "stickyValue": value}
    return call(server, "POST", "/api/experiments/route", json=payload).json()


def test_readme_experiment_example_runs_as_written(
    env: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """README "Usage with Experiments", verbatim: routed, printed, logged with its context."""
    create_prompt(env, "marketing-email", "Version one", "Version two")
    experiment = create_experiment(env, "marketing-email")
    banyan.configure(api_key=os.environ["BANYAN_API_KEY"])

    # 1. Get prompt with sticky context for experiments
    prompt_data = banyan.get_prompt(
        "marketing-email",
        sticky_context={"user_id": "user_123"},  # Enables automatic experiment routing
    )

    # Check if we got an experiment version
    experiment_context = prompt_data.get_experiment_context()  # type: ignore[union-attr]
    if experiment_context:
        print(f"🧪 Using experiment version: {experiment_context['experiment_id']}")
    else:
        print(f"📋 Using default version: {prompt_data.version}")  # type: ignore[union-attr]

    # 2. Use with your model
    output = your_model_function(prompt_data.content, user_input)  # type: ignore[union-attr]

    # 3. Log (experiment context automatically included)
    banyan.log_prompt(
        input=user_input,
        output=output,
        prompt_data=prompt_data,  # Experiment info automatically handled
        model="gpt-4",
        duration_ms=execution_time,
    )

    banyan.flush(timeout=30)

    assert f"Using experiment version: {experiment['id']}" in capsys.readouterr().out
    results = call(env, "GET", f"/api/v2/experiments/{experiment['id']}/results").json()
    counts = {v["id"]: v["records"] for v in results["variants"]}
    assert experiment_context is not None
    assert counts[experiment_context["experiment_version_id"]] == 1
    assert sum(counts.values()) == 1


def test_same_sticky_value_same_variant_in_two_processes_and_on_the_server(
    env: Server, tmp_path: Path
) -> None:
    """This process, another process (other hash seed) and the route endpoint agree per user."""
    create_prompt(env, "ab", "A", "B")
    experiment = create_experiment(env, "ab")
    banyan.configure()
    here = [banyan.get_prompt("ab", sticky_context={"user_id": u}) for u in USERS]
    mine = [p.experiment_version_id for p in here if p]
    script = tmp_path / "route.py"
    script.write_text(ROUTE_IN_CHILD)
    done = subprocess.run(
        [sys.executable, str(script), json.dumps(USERS)], capture_output=True, text=True,
        timeout=60, check=False, env={**os.environ, "PYTHONHASHSEED": "4242"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == mine
    remote = [route_remote(env, experiment["id"], u)["selected_version_id"] for u in USERS]
    assert remote == mine
    assert len(set(mine)) == 2


def test_ramp_on_the_server_moves_no_enrolled_user(server: Server) -> None:
    """Same seed at 10 % then 50 % traffic: every user enrolled at 10 % keeps its version."""
    create_prompt(server, "ramp", "A", "B")
    variants = [{"version": "1", "percentage": 50}, {"version": "2", "percentage": 50}]
    body = {"prompt": "ramp", "seed": "ramp-seed", "variants": variants}
    low = call(server, "POST", "/api/v2/experiments", json={**body, "traffic": 10}).json()
    logger = banyan.PromptStackLogger(api_key=server.api_key, base_url=server.base_url,
                                      disk_cache=False)  # fmt: skip
    users = [f"r{i}" for i in range(300)]
    before = {u: logger.get_prompt("ramp", sticky_context={"user_id": u}) for u in users}
    call(server, "POST", f"/api/v2/experiments/{low['id']}/stop")
    call(server, "POST", "/api/v2/experiments", json={**body, "traffic": 50})
    logger.shutdown(timeout=2)
    logger = banyan.PromptStackLogger(api_key=server.api_key, base_url=server.base_url,
                                      disk_cache=False)  # fmt: skip
    after = {u: logger.get_prompt("ramp", sticky_context={"user_id": u}) for u in users}
    logger.shutdown(timeout=2)
    enrolled = [u for u, p in before.items() if p and p.experiment_id]
    assert 10 <= len(enrolled) <= 60
    for user in enrolled:
        was, now = before[user], after[user]
        assert now is not None
        assert now.experiment_id is not None
        assert (was.version, was.content) == (now.version, now.content)  # type: ignore[union-attr]
    assert sum(1 for p in after.values() if p and p.experiment_id) > len(enrolled)


def test_experiment_results_table(server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    """`banyan experiments results ID` prints the SRM check, then subjects, records and latency
    percentiles per variant, then each metric with its interval."""
    create_prompt(server, "res", "A", "B")
    experiment = create_experiment(server, "res")
    logger = banyan.PromptStackLogger(api_key=server.api_key, base_url=server.base_url,
                                      disk_cache=False)  # fmt: skip
    expected: dict[str, int] = {}
    for i in range(30):
        data = logger.get_prompt("res", sticky_context={"user_id": f"u{i}"})
        assert data is not None
        assert data.variant_name is not None
        expected[data.variant_name] = expected.get(data.variant_name, 0) + 1
        logger.log_prompt(input="q", output="a", prompt_data=data, model="m-1",
                          duration_ms=float(10 * (i % 5 + 1)))  # fmt: skip
    assert logger.shutdown(timeout=10)
    code = cli(["experiments", "results", experiment["id"], "--base-url", server.base_url,
                "--api-key", server.api_key])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    assert lines[1].startswith("sample ratio check: ok")
    assert "VARIANT" in lines[2]
    assert "P95 MS" in lines[2]
    table = lines[4 : lines.index("")]
    rows = {line.split()[0]: line.split() for line in table}
    assert {name: int(row[3]) for name, row in rows.items()} == expected
    assert any(line.startswith("latency_ms") and "control" in line for line in lines)
    results = call(server, "GET", f"/api/v2/experiments/{experiment['id']}/results").json()
    for variant in results["variants"]:
        assert variant["records"] == variant["subjects"] == expected[variant["name"]]
        assert variant["latency"]["p50_ms"] in {10.0, 20.0, 30.0, 40.0, 50.0}
