"""before_send end to end: a redacted address reaches neither the server nor the spool, whether
in a record or in a score's metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from serverkit import stored_records
from serverproc import Server

import banyan

ADDRESS = "ada@example.com"
#: Each path a record can take: (PromptStackLogger options, log_prompt's blocking).
MODES: dict[str, tuple[dict[str, Any], bool]] = {
    "background": ({}, False),
    "blocking": ({}, True),
    "synchronous": ({"background_thread": False}, False),
    "durable": ({"durability": "durable"}, False),
}


def _spooled_bytes(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in directory.rglob("*") if path.is_file())


def _log(logger: banyan.PromptStackLogger, blocking: bool) -> None:
    metadata = {"contact": ADDRESS, "nested": [{"cc": ADDRESS}]}
    assert logger.log_prompt(f"I am {ADDRESS}", f"Hi {ADDRESS}", metadata=metadata,
                             blocking=blocking, record_id="r1")  # fmt: skip
    assert logger.log_score("stars", 4, record_id="r1", metadata={"by": ADDRESS},
                            blocking=blocking)  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_a_redacted_address_reaches_neither_server_nor_spool(
    server: Server, tmp_path: Path, mode: str
) -> None:
    """In every mode the server stores the record and the score redacted, and no spool file
    holds the address."""
    options, blocking = MODES[mode]
    spool = tmp_path / "spool"
    with banyan.PromptStackLogger(
        api_key=server.api_key, base_url=server.base_url, spool_dir=str(spool),
        before_send=banyan.redact_emails, **options,
    ) as logger:  # fmt: skip
        _log(logger, blocking)
        assert logger.flush(30)
    records = stored_records(server)
    assert [(r["input"], r["output"]) for r in records] == [("I am [email]", "Hi [email]")]
    assert records[0]["metadata"] == {"contact": "[email]", "nested": [{"cc": "[email]"}]}
    assert [s["metadata"] for s in stored_records(server, "scores")] == [{"by": "[email]"}]
    assert ADDRESS.encode() not in _spooled_bytes(spool)


@pytest.mark.parametrize("mode", ["background", "synchronous", "durable"])
def test_records_spooled_for_a_down_server_are_redacted(tmp_path: Path, mode: str) -> None:
    """With the server unreachable the records and scores wait in the spool, already redacted."""
    options, blocking = MODES[mode]
    spool = tmp_path / "spool"
    logger = banyan.PromptStackLogger(
        api_key="psk_down", base_url="http://127.0.0.1:9", spool_dir=str(spool), max_retries=0,
        before_send=banyan.redact_emails, **options,
    )  # fmt: skip
    _log(logger, blocking)
    logger.shutdown(timeout=5)
    held = _spooled_bytes(spool)
    assert held.count(b"[email]") == 5
    assert ADDRESS.encode() not in held
