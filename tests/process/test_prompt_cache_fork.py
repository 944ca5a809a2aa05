"""A real fork: the child starts with the parent's cached prompts and refreshes them itself."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from prockit import fork_child

import banyan

if TYPE_CHECKING:
    from serverproc import Server


def _child(logger: banyan.PromptStackLogger) -> int:
    first = logger.get_prompt("forked")
    if first is None or first.content != "v1":
        return 3
    if logger.get_stats()["prompt_cache"]["misses"] != 0:
        return 4  # served from the inherited entry, not fetched
    time.sleep(0.25)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        data = logger.get_prompt("forked")
        if data is not None and data.content == "v2":
            return 0 if logger.get_stats()["prompt_cache"]["refreshes"] >= 1 else 5
        time.sleep(0.02)
    return 6


@pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")
def test_child_inherits_cached_prompts_and_has_its_own_refresher(
    server: Server, tmp_path: Path
) -> None:
    """The child serves the parent's entry without a fetch, then its own refresher updates it."""
    headers = {"X-API-Key": server.api_key}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as http:
        http.post("/api/v2/prompts", json={"name": "forked", "content": "v1"}).raise_for_status()
        logger = banyan.PromptStackLogger(
            api_key=server.api_key, base_url=server.base_url, cache_ttl=0.2, cache_dir=tmp_path
        )
        assert logger.get_prompt("forked") is not None
        http.post("/api/v2/prompts/forked/versions", json={"content": "v2"}).raise_for_status()
    assert fork_child(lambda: _child(logger)) == 0
    assert logger.get_stats()["prompt_cache"]["misses"] == 1
    logger.shutdown(timeout=5)
