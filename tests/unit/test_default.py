"""Module-level functions: the default logger and life before configure()."""

from __future__ import annotations

import logging

import pytest

import banyan


def test_log_before_configure_is_a_counted_drop_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """log_prompt before configure() returns False, counts not_configured, warns once."""
    banyan.shutdown()
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert banyan.log_prompt("i", "o") is False
        assert banyan.log("i", "o") is False
    assert banyan.get_stats()["dropped"]["not_configured"] == 2
    assert len([r for r in caplog.records if "configure" in r.getMessage()]) == 1
    logger = banyan.configure(api_key="psk_x", base_url="http://127.0.0.1:9")
    stats = banyan.get_stats()
    assert stats["dropped"]["not_configured"] == 2
    assert stats["logs_queued"] == 2
    assert logger is banyan._default._logger


def test_get_prompt_before_configure_raises_not_configured() -> None:
    """get_prompt needs configure() first: NotConfiguredError (a BanyanError)."""
    banyan.shutdown()
    with pytest.raises(banyan.NotConfiguredError):
        banyan.get_prompt("anything")


def test_flush_and_shutdown_without_configure_do_not_raise() -> None:
    """flush() reports False and shutdown() True when nothing is configured."""
    banyan.shutdown()
    assert banyan.flush(timeout=0.1) is False
    assert banyan.shutdown(timeout=0.1) is True
