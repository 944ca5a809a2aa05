"""Configuration is checked at the public boundary with typed errors."""

from __future__ import annotations

import sys
from typing import Any

import pytest

import banyan
from banyan._config import DEFAULT_BASE_URL


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BANYAN_API_KEY", "BANYAN_BASE_URL", "BANYAN_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)


def test_missing_api_key_is_a_configuration_error() -> None:
    """No api_key and no BANYAN_API_KEY raises ConfigurationError."""
    with pytest.raises(banyan.ConfigurationError, match="API key"):
        banyan.PromptStackLogger()


def test_environment_fills_key_url_and_project(monkeypatch: pytest.MonkeyPatch) -> None:
    """BANYAN_API_KEY, BANYAN_BASE_URL and BANYAN_PROJECT_ID are used when not given."""
    monkeypatch.setenv("BANYAN_API_KEY", "psk_env")
    monkeypatch.setenv("BANYAN_BASE_URL", "http://127.0.0.1:1/")
    monkeypatch.setenv("BANYAN_PROJECT_ID", "proj")
    config = banyan.PromptStackLogger().config
    assert (config.api_key, config.base_url, config.project_id) == (
        "psk_env",
        "http://127.0.0.1:1",
        "proj",
    )


def test_defaults_match_the_documented_ones() -> None:
    """The production URL and the 1.0.1-compatible defaults."""
    config = banyan.PromptStackLogger(api_key="psk_x").config
    assert config.base_url == DEFAULT_BASE_URL
    assert (config.max_retries, config.retry_delay, config.queue_size) == (3, 1.0, 1000)
    assert config.background_thread
    assert config.http2
    assert config.compression is None
    assert config.max_queue_bytes == 64 * 1024 * 1024


@pytest.mark.parametrize("url", ["ftp://x", "localhost:8000", "", "http://"])
def test_bad_base_url_is_refused(url: str) -> None:
    """A base_url that is not http(s)://host raises ConfigurationError."""
    with pytest.raises(banyan.ConfigurationError, match="base_url"):
        banyan.PromptStackLogger(api_key="psk_x", base_url=url or "nope")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_retries", -1),
        ("retry_delay", -0.5),
        ("flush_interval", 0),
        ("timeout", float("nan")),
        ("max_queue_bytes", 0),
        ("batch_max_records", 10**9),
        ("max_in_flight", "2"),
        ("compression", "brotli"),
    ],
)
def test_bad_option_values_are_refused(option: str, value: Any) -> None:
    """Out-of-range or mistyped option values raise ConfigurationError."""
    with pytest.raises(banyan.ConfigurationError, match=option.split("_", maxsplit=1)[0]):
        banyan.PromptStackLogger(api_key="psk_x", **{option: value})


def test_unknown_option_is_refused() -> None:
    """A misspelt option name raises ConfigurationError naming it."""
    with pytest.raises(banyan.ConfigurationError, match="flush_intervall"):
        banyan.configure(api_key="psk_x", flush_intervall=1)


def test_zstd_without_zstandard_fails_at_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    """compression='zstd' without the zstandard package fails early with a clear hint."""
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(banyan.ConfigurationError, match=r"banyan-sdk\[zstd\]"):
        banyan.PromptStackLogger(api_key="psk_x", compression="zstd")
