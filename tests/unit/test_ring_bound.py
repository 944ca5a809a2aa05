"""The ring's byte bound holds through the real log_prompt fast path."""

from __future__ import annotations

from fakes import MakeLogger

BOUND = 4096


def test_log_prompt_keeps_exactly_what_fits_under_max_queue_bytes(make_logger: MakeLogger) -> None:
    """log_prompt accepts records until the next would pass max_queue_bytes, then refuses
    every one: exactly floor(bound / size) kept, queue_bytes never above the bound."""
    logger, _ = make_logger(max_queue_bytes=BOUND, spool_dir=False)
    logger._idle = False  # no flusher: the ring only fills
    results = []
    for _ in range(50):
        results.append(logger.log_prompt("x" * 400, "y"))
        assert logger.get_stats()["queue_bytes"] <= BOUND
    held = list(logger._flusher.ring._items)
    size = len(held[0])
    kept = BOUND // size
    assert {len(record) for record in held} == {size}
    assert results == [True] * kept + [False] * (50 - kept)
    stats = logger.get_stats()
    assert (stats["queue_size"], stats["queue_bytes"]) == (kept, kept * size)
    assert stats["dropped"]["queue_full"] == 50 - kept
