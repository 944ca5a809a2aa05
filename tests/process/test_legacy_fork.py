"""A real fork against a 1.0.1-only backend: the child builds its own loop and connections."""

from __future__ import annotations

import pytest
from legacyserver import start
from prockit import fork_child
from serverproc import free_port

import banyan

KEY = "psk_legacy_0123456789abcdef"


def _child(logger: banyan.PromptStackLogger) -> int:
    for i in range(100):
        logger.log_prompt(input=f"child {i}", output="o")
    if not logger.flush(timeout=20):
        return 4
    return 0 if logger.get_stats()["logs_sent"] == 100 else 5


@pytest.mark.filterwarnings("ignore:This process .* fork:DeprecationWarning")
def test_a_child_forked_after_concurrent_sends_delivers_its_own_records() -> None:
    """The parent's loop and pool are in use when it forks; the child's records arrive through
    its own, and every record of both is stored once."""
    server = start(free_port(), delay_ms=20)
    try:
        logger = banyan.PromptStackLogger(
            api_key=KEY, base_url=server.base_url, spool_dir=False, flush_interval=0.05
        )
        for i in range(200):
            logger.log_prompt(input=f"parent {i}", output="o")
        assert logger.flush(timeout=20)
        for i in range(200, 400):
            logger.log_prompt(input=f"parent {i}", output="o")
        assert fork_child(lambda: _child(logger)) == 0
        assert logger.flush(timeout=20)
        logger.shutdown(timeout=5)
        ids = server.stored()["ids"]
        assert len(ids) == len(set(ids)) == 500
    finally:
        server.stop()
