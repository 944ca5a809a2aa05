"""The prompt cache against a real server that is stopped after the first fetch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serverkit import create_experiment, create_prompt

import banyan

if TYPE_CHECKING:
    from serverproc import Server

CHILD = textwrap.dedent(
    """
    import json, sys
    import banyan
    base_url, key, cache_dir = sys.argv[1:4]
    logger = banyan.PromptStackLogger(api_key=key, base_url=base_url, cache_dir=cache_dir,
                                      max_retries=0, timeout=2)
    plain = logger.get_prompt("cached")
    routed = [logger.get_prompt("cached-exp", sticky_context={"user_id": f"u{i}"})
              for i in range(20)]
    print(json.dumps({"plain": plain.content,
                      "routed": [r.experiment_version_id for r in routed],
                      "cache": logger.get_stats()["prompt_cache"]}))
    logger.shutdown(timeout=1)
    """
)


def logger_for(server: Server, tmp_path: Path, **options: Any) -> banyan.PromptStackLogger:
    return banyan.PromptStackLogger(
        api_key=server.api_key, base_url=server.base_url, cache_dir=tmp_path, max_retries=0,
        timeout=2, **options,
    )  # fmt: skip


def test_backend_stopped_hits_stale_and_fallback(server: Server, tmp_path: Path) -> None:
    """Server stopped: hits still served, stale served and counted, cold miss -> fallback."""
    create_prompt(server, "cached", "Hello from the server")
    logger = logger_for(server, tmp_path, cache_ttl=0.3)
    first = logger.get_prompt("cached")
    assert first is not None
    server.stop()
    assert logger.get_prompt("cached") is first  # a hit: no network at all
    time.sleep(0.35)
    assert logger.get_prompt("cached") is first  # stale, refresh fails in the background
    deadline = time.monotonic() + 10
    while logger.get_stats()["prompt_cache"]["refresh_failures"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert logger.get_prompt("cached") is first
    cold = logger.get_prompt("never-fetched", fallback="Be brief.")
    assert cold is not None
    assert cold.content == "Be brief."
    stats = logger.get_stats()["prompt_cache"]
    assert (stats["misses"], stats["fallbacks"]) == (2, 1)
    assert stats["stale"] >= 2
    logger.shutdown(timeout=2)


def test_fresh_process_serves_disk_cache_while_backend_is_down(
    server: Server, tmp_path: Path
) -> None:
    """A new process started after the server stopped serves and routes the last known prompts."""
    create_prompt(server, "cached", "Hello from disk")
    create_prompt(server, "cached-exp", "one", "two")
    create_experiment(server, "cached-exp")
    logger = logger_for(server, tmp_path)
    assert logger.get_prompt("cached") is not None
    here = [logger.get_prompt("cached-exp", sticky_context={"user_id": f"u{i}"}) for i in range(20)]
    logger.shutdown(timeout=2)
    server.stop()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    done = subprocess.run(
        [sys.executable, str(script), server.base_url, server.api_key, str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["plain"] == "Hello from disk"
    assert report["routed"] == [p.experiment_version_id for p in here if p]
    assert report["cache"]["disk_served"] == 2
