"""The README's examples, run as written against the reference server.

Python: placeholders the README leaves to the reader (``your_model_function``,
``user_input``, ``execution_time``) are defined here; the production URL is
replaced by the test server through BANYAN_BASE_URL or ``base_url``.

Shell: every ``bash`` block of README.md runs as pasted in a new directory,
with BANYAN_BASE_URL and BANYAN_API_KEY naming a server the test started,
unless its commands are in :data:`SKIPPED` (with the reason).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from serverkit import call, create_experiment, create_prompt, wait_stored

import banyan
from banyan import PromptStackLogger

if TYPE_CHECKING:
    from serverproc import Server

user_input = "Hello, I'm a new user!"
execution_time = 12.5


def your_model_function(prompt: str, text: str) -> str:
    return f"{prompt} -> {text}"


@pytest.fixture
def env(server: Server, monkeypatch: pytest.MonkeyPatch) -> Server:
    monkeypatch.setenv("BANYAN_BASE_URL", server.base_url)
    monkeypatch.setenv("BANYAN_API_KEY", server.api_key)
    return server


def test_quick_start(env: Server) -> None:
    """Quick Start: configure, get_prompt(name=...), log_prompt, flush(timeout=30)."""
    create_prompt(env, "prompt_name", "You are helpful.")
    banyan.configure(api_key=os.environ["BANYAN_API_KEY"], project_id=None)

    prompt_data = banyan.get_prompt(name="prompt_name")

    if prompt_data:
        user_input = "Hello, I'm a new user!"
        output = your_model_function(prompt_data.content, user_input)
        banyan.log_prompt(
            input=user_input,
            output=output,
            prompt_data=prompt_data,
            model="gpt-3.5-turbo",
            metadata={"user_type": "new"},
        )
        assert banyan.flush(timeout=30)
    assert prompt_data is not None
    assert prompt_data.content == "You are helpful."
    assert env.summary()["stored"] == 1


def test_usage_with_experiments(env: Server, capsys: pytest.CaptureFixture[str]) -> None:
    """Experiments: sticky_context routes locally; the context is logged with the record."""
    create_prompt(env, "marketing-email", "Version one", "Version two")
    experiment = create_experiment(env, "marketing-email")
    banyan.configure(api_key=os.environ["BANYAN_API_KEY"])

    prompt_data = banyan.get_prompt("marketing-email", sticky_context={"user_id": "user_123"})
    assert prompt_data is not None
    experiment_context = prompt_data.get_experiment_context()
    if experiment_context:
        print(f"🧪 Using experiment version: {experiment_context['experiment_id']}")
    else:
        print(f"📋 Using default version: {prompt_data.version}")
    output = your_model_function(prompt_data.content, user_input)
    banyan.log_prompt(
        input=user_input,
        output=output,
        prompt_data=prompt_data,
        model="gpt-4",
        duration_ms=execution_time,
    )
    assert banyan.flush(timeout=30)

    assert experiment_context is not None
    assert experiment_context["experiment_id"] == experiment["id"]
    assert experiment_context["experiment_version_id"] in {v["id"] for v in experiment["variants"]}
    assert (
        prompt_data.content == {"1": "Version one", "2": "Version two"}[prompt_data.version or ""]
    )
    assert "Using experiment version" in capsys.readouterr().out
    assert env.summary()["stored"] == 1


def my_model(prompt: str, text: str) -> str:
    return f"{prompt} -> {text}"


def test_outcomes_tokens_cost_and_scores(env: Server) -> None:
    """Outcomes: usage keywords and record_id on log_prompt, three scores; the results count them
    for the user's variant."""
    create_prompt(env, "marketing-email", "Version one", "Version two")
    experiment = create_experiment(env, "marketing-email")
    banyan.configure(api_key=os.environ["BANYAN_API_KEY"])

    prompt = banyan.get_prompt(
        "marketing-email", sticky_context={"user_id": "user_123"}, fallback="Hello!"
    )
    answer = my_model(prompt.content, user_input)
    banyan.log_prompt(
        input=user_input,
        output=answer,
        prompt_data=prompt,
        input_tokens=1200,
        output_tokens=300,
        cost=0.0042,  # or usage=response.usage
        record_id="answer-8f3a",
    )

    # Later, in any process: the same user routes to the same variant.
    prompt = banyan.get_prompt(
        "marketing-email", sticky_context={"user_id": "user_123"}, fallback="Hello!"
    )
    banyan.log_score("accepted", True, prompt_data=prompt)  # a boolean, per subject
    banyan.log_score("reason", "too_long", prompt_data=prompt)  # a category
    banyan.log_score("stars", 4, record_id="answer-8f3a")  # a number, for that answer
    banyan.flush(timeout=30)

    path = f"/api/v2/experiments/{experiment['id']}/results"
    variants = {v["id"]: v["metrics"] for v in call(env, "GET", path).json()["variants"]}
    seen = variants[prompt.experiment_version_id or ""]
    assert {name: seen[name]["value"] for name in ("input_tokens", "output_tokens", "cost_usd",
            "score:accepted", "score:reason=too_long", "score:stars")} == {
        "input_tokens": 1200.0, "output_tokens": 300.0, "cost_usd": 0.0042,
        "score:accepted": 1.0, "score:reason=too_long": 1.0, "score:stars": 4.0}  # fmt: skip


def test_sticky_strategies_and_server_routing_agree(env: Server) -> None:
    """Local routing picks the variant the 1.0.1 server-side route call picks."""
    create_prompt(env, "my-prompt", "one", "two")
    experiment = create_experiment(env, "my-prompt", sticky_key="session_id")
    banyan.configure(api_key=os.environ["BANYAN_API_KEY"])
    for session in (f"session_{n}" for n in range(8)):
        local = banyan.get_prompt("my-prompt", sticky_context={"session_id": session})
        remote = banyan.experiment(experiment["id"], "session_id", session)
        assert local is not None
        assert remote is not None
        assert local.experiment_version_id == remote.experiment_version_id
    other = banyan.get_prompt("my-prompt", sticky_context={"user_id": "user_123"})
    assert other is not None
    assert other.get_experiment_context() is None
    assert banyan.get_stats()["experiment_sticky_missing"] == 1


def test_statistics_flush_and_shutdown(env: Server) -> None:
    """get_stats() has logs_sent and queue_size; flush and shutdown return cleanly."""
    banyan.configure(api_key=os.environ["BANYAN_API_KEY"])
    banyan.log_prompt(input="q", output="a")
    assert banyan.flush(timeout=30)
    stats = banyan.get_stats()
    print(f"Logs sent: {stats['logs_sent']}")
    print(f"Queue size: {stats['queue_size']}")
    assert (stats["logs_sent"], stats["queue_size"]) == (1, 0)
    assert banyan.shutdown(timeout=30)


def test_custom_logger_instance(server: Server) -> None:
    """PromptStackLogger with the README's arguments (base_url pointed at the test server)."""
    create_prompt(server, "my-prompt", "content")
    logger = PromptStackLogger(
        api_key=server.api_key,
        base_url=server.base_url,
        project_id=None,
        max_retries=5,
        retry_delay=2.0,
        queue_size=2000,
        flush_interval=10.0,
    )
    prompt_data = logger.get_prompt("my-prompt")
    logger.log_prompt(input="test", output="result", prompt_data=prompt_data)
    assert logger.shutdown(timeout=30)
    assert server.summary()["stored"] == 1


def test_synchronous_mode(env: Server) -> None:
    """background_thread=False with blocking=True returns True once the server has it."""
    before = set(threading.enumerate())
    banyan.configure(api_key=os.environ["BANYAN_API_KEY"], background_thread=False)
    success = banyan.log_prompt(input="test", output="result", blocking=True)
    assert success is True
    assert env.summary()["stored"] == 1
    assert not [t for t in set(threading.enumerate()) - before if t.name.startswith("banyan")]


def test_error_handling_example(env: Server) -> None:
    """A missing prompt gives None (the README's `if not prompt_data` branch)."""
    banyan.configure(api_key=os.environ["BANYAN_API_KEY"])

    def example() -> str:
        try:
            prompt_data = banyan.get_prompt("non-existent-prompt")
            if not prompt_data:
                print("Prompt not found")
                return "not found"
            return "used"
        except Exception as e:
            print(f"Error: {e}")
            return "error"

    assert example() == "not found"


def test_disabled_logging_prompt_is_skipped(env: Server) -> None:
    """A prompt with enable_logging false: log_prompt returns True and nothing is stored."""
    from serverkit import call

    create_prompt(env, "quiet", "content")
    call(env, "PATCH", "/api/v2/prompts/quiet", json={"enable_logging": False})
    banyan.configure(api_key=os.environ["BANYAN_API_KEY"])
    prompt_data = banyan.get_prompt("quiet")
    assert prompt_data is not None
    assert not prompt_data.enable_logging
    assert banyan.log_prompt(input="i", output="o", prompt_data=prompt_data) is True
    assert banyan.flush(timeout=10)
    assert wait_stored(env, 1, timeout=0.3) == 0


README = Path(__file__).resolve().parents[2] / "README.md"

#: Commands of README shell blocks the test does not run: why.
SKIPPED = {
    "make": "project targets (demo, test, lint, bench, stress) that CI runs itself",
    "pip": "installs packages: the test runs in the installed checkout",
    "uv": "installs or locks packages",
    "tox": "runs the suite again in new environments",
    "git clone": "fetches the repository the test runs in",
    "banyan serve": "the test starts the same server on a free port; see test_skipped_serve_"
    "block_is_the_server_the_export_names",
    "export BANYAN_BASE_URL": "the test sets BANYAN_BASE_URL and BANYAN_API_KEY to its server's",
    "export BANYAN_DATABASE_URL": "names the reader's PostgreSQL; tests/server/store runs banyan "
    "serve and the demo on one the suite starts",
    "banyan demo --db": "needs that PostgreSQL (see the line above)",
}


def _shell_blocks() -> list[str]:
    return re.findall(r"^```(?:bash|sh|shell)\n(.*?)^```", README.read_text(), re.M | re.S)


def _commands(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def _skip_reasons(block: str) -> set[str | None]:
    """Why each command of a block is not run (None for one that runs)."""
    return {
        next((why for cmd, why in SKIPPED.items() if re.match(rf"{cmd}\b", line)), None)
        for line in _commands(block)
    }


RUN = [b for b in _shell_blocks() if _skip_reasons(b) == {None}]


def test_every_shell_block_is_run_or_skipped_for_a_listed_reason() -> None:
    """A block is run whole or skipped whole; the walk-through block is run."""
    mixed = [b for b in _shell_blocks() if None in _skip_reasons(b) and b not in RUN]
    assert mixed == []
    skipped = set().union(*map(_skip_reasons, _shell_blocks())) - {None}
    assert {SKIPPED["banyan serve"], SKIPPED["export BANYAN_BASE_URL"]} <= skipped
    assert any("banyan prompts push" in block for block in RUN)


def test_skipped_serve_block_is_the_server_the_export_names() -> None:
    """The skipped `banyan serve` and `export` lines agree: the URL of the port, the key."""
    text = "\n".join(_shell_blocks())
    serve = re.search(r"^banyan serve (.*)$", text, re.M)
    export = re.search(r"^export BANYAN_BASE_URL=(\S+) BANYAN_API_KEY=(\S+)", text, re.M)
    assert serve is not None
    assert export is not None
    options = serve.group(1).split("#")[0].split()
    port = options[options.index("--port") + 1] if "--port" in options else "8765"
    assert export.groups() == (f"http://127.0.0.1:{port}", options[options.index("--api-key") + 1])


@pytest.mark.parametrize("block", RUN, ids=[b.splitlines()[0][:40] for b in RUN])
def test_shell_block_runs_as_pasted(env: Server, tmp_path: Path, block: str) -> None:
    """The block exits 0 under `bash -e` in an empty directory, against the test's server."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    result = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", block], cwd=tmp_path, capture_output=True,
        text=True, timeout=90, check=False, env={**os.environ, "PATH": path},
    )  # fmt: skip
    assert result.returncode == 0, f"{block}\n--- output ---\n{result.stdout}{result.stderr}"
