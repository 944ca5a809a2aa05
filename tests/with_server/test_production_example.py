"""production_example.py (the seed README's link), run as written against the reference server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import banyan

if TYPE_CHECKING:
    from serverproc import Server

EXAMPLE = Path(__file__).resolve().parents[2] / "production_example.py"


def run_example(server: Server, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``python production_example.py`` in an empty directory, BANYAN_* naming ``server``."""
    env = dict(os.environ, BANYAN_BASE_URL=server.base_url, BANYAN_API_KEY=server.api_key)
    return subprocess.run(
        [sys.executable, str(EXAMPLE)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=90, check=False,
    )  # fmt: skip


def stored_logs(server: Server) -> list[dict[str, Any]]:
    """Every stored record, read back through ``GET /api/v2/logs``."""
    response = server.get("/api/v2/logs", params={"limit": 1000})
    response.raise_for_status()
    return list(response.json()["logs"])


def test_example_runs_and_every_record_is_stored_with_its_experiment(
    server: Server, tmp_path: Path
) -> None:
    """On an empty server the example exits 0 and stores its 17 records, routed as it says."""
    done = run_example(server, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    logs = stored_logs(server)
    assert Counter(log["prompt_name"] for log in logs) == {
        "welcome": 1, "support-reply": 10, "faq-answer": 6,
    }  # fmt: skip
    assert server.summary()["duplicates"] == 0
    by_question: dict[str, set[str]] = defaultdict(set)
    for log in logs:
        if log["prompt_name"] == "faq-answer":
            assert log["sticky_key"] == "input_hash"
            assert log["sticky_value"] == banyan.content_hash(log["input"])
            by_question[log["input"]].add(log["experiment_version_id"])
        elif log["prompt_name"] == "support-reply":
            assert log["sticky_key"] == "user_id"
            assert log["experiment_id"]
    assert len(by_question) == 3
    assert all(len(variants) == 1 for variants in by_question.values())


def test_example_runs_again_on_the_same_server(server: Server, tmp_path: Path) -> None:
    """A second run finds its prompts and experiments in place and stores 17 more records."""
    assert run_example(server, tmp_path).returncode == 0
    done = run_example(server, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert server.summary()["stored"] == 34
