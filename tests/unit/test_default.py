"""Module-level functions: the default logger and life before configure()."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import banyan
from banyan import _default, _transport
from banyan._ledger import Ledger


def test_log_before_configure_is_a_counted_drop_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """log_prompt before configure() returns False, counts not_configured, warns once."""
    _default._reset()
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


def test_the_not_configured_warning_names_the_function_called(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before configure(), log_score's warning names log_score, log_prompt's names log_prompt."""
    _default._reset()
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert banyan.log_score("stars", 4, record_id="r9") is False
        assert banyan.log_prompt("i", "o") is False
    messages = [r.getMessage() for r in caplog.records if "configure" in r.getMessage()]
    assert len(messages) == 2
    assert "log_score()" in messages[0]
    assert "log_prompt()" not in messages[0]
    assert "log_prompt()" in messages[1]


def test_get_prompt_before_configure_raises_not_configured() -> None:
    """get_prompt needs configure() first: NotConfiguredError (a BanyanError)."""
    _default._reset()
    with pytest.raises(banyan.NotConfiguredError):
        banyan.get_prompt("anything")


def test_flush_and_shutdown_without_configure_do_not_raise() -> None:
    """flush() reports False and shutdown() True when nothing is configured."""
    _default._reset()
    assert banyan.flush(timeout=0.1) is False
    assert banyan.shutdown(timeout=0.1) is True


def test_after_shutdown_stats_stay_and_logs_count_as_closed() -> None:
    """shutdown() keeps the final counts readable; a later log is a `closed` drop, and the
    next configure() starts afresh."""
    banyan.configure(api_key="psk_x", base_url="http://127.0.0.1:9", spool_dir=False,
                     max_retries=0)  # fmt: skip
    assert banyan.log_prompt("i", "o")
    banyan.shutdown(timeout=2)
    stats = banyan.get_stats()
    assert stats["logs_queued"] == 1
    assert banyan.log_prompt("late", "o") is False
    assert banyan.get_stats()["dropped"]["closed"] == 1
    assert banyan.get_stats()["dropped"]["not_configured"] == 0
    banyan.configure(api_key="psk_x", base_url="http://127.0.0.1:9", spool_dir=False)
    assert banyan.get_stats()["logs_queued"] == 0


@pytest.fixture
def env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """BANYAN_API_KEY set and auto-configuration not tried yet, with fresh early counters."""
    _default._reset()
    monkeypatch.setattr(_default._Env, "tried", False)
    monkeypatch.setattr(_default, "_unconfigured", Ledger())
    monkeypatch.setattr(_transport, "_tls_contexts", {})
    for name in ("BANYAN_PROJECT_ID", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BANYAN_API_KEY", "psk_env")
    monkeypatch.setenv("BANYAN_BASE_URL", "https://127.0.0.1:9")


@pytest.mark.usefixtures("env_key")
def test_env_auto_configure_failure_is_a_counted_drop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Any error while configuring from BANYAN_* drops the record as not_configured, warned."""

    def broken(**options: Any) -> banyan.PromptStackLogger:
        raise OSError("disk on fire")

    monkeypatch.setattr(_default, "PromptStackLogger", broken)
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert banyan.log_prompt("i", "o") is False
    assert banyan.get_stats()["dropped"]["not_configured"] == 1
    assert any("disk on fire" in r.getMessage() for r in caplog.records)


@pytest.mark.usefixtures("env_key")
def test_missing_ca_file_in_env_never_raises_from_log_prompt(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SSL_CERT_FILE naming no file: log_prompt drops and warns; configure() raises typed."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert banyan.log_prompt("i", "o") is False
    assert banyan.get_stats()["dropped"]["not_configured"] == 1
    assert any("SSL_CERT_FILE" in r.getMessage() for r in caplog.records)
    with pytest.raises(banyan.ConfigurationError, match="SSL_CERT_FILE"):
        banyan.configure()


@pytest.mark.usefixtures("env_key")
def test_a_child_forked_while_another_thread_configures_configures_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Forked mid auto-configuration (in another thread): the child is not left thinking it
    tried, with no logger for good; its first log_prompt configures it."""
    building = threading.Event()
    real = banyan.PromptStackLogger

    def slow(**options: Any) -> banyan.PromptStackLogger:
        building.set()
        time.sleep(0.5)
        return real(**options)

    monkeypatch.setattr(_default, "PromptStackLogger", slow)
    monkeypatch.setenv("BANYAN_BASE_URL", "http://127.0.0.1:9")
    parent = threading.Thread(target=banyan.log_prompt, args=("parent", "o"))
    parent.start()
    assert building.wait(5)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os._exit(0 if banyan.log_prompt("child", "o") else 1)
    parent.join(10)
    assert os.waitpid(pid, 0)[1] == 0
