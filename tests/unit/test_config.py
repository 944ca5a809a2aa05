"""Configuration is checked at the public boundary with typed errors."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

import banyan
from banyan import _transport
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
        ("compression", "GZIP"),
        ("durability", "safe"),
        ("spool_sync", "sometimes"),
        ("legacy_max_concurrency", 0),
        ("legacy_max_concurrency", True),
        ("legacy_max_concurrency", 10**6),
        ("legacy_max_rate", 0),
        ("legacy_max_rate", -1.0),
        ("legacy_max_rate", float("nan")),
        ("legacy_max_rate", float("inf")),
        ("legacy_max_rate", "50"),
    ],
)
def test_bad_option_values_are_refused(option: str, value: Any) -> None:
    """Out-of-range or mistyped option values raise ConfigurationError."""
    with pytest.raises(banyan.ConfigurationError, match=option.split("_", maxsplit=1)[0]):
        banyan.PromptStackLogger(api_key="psk_x", **{option: value})


def test_legacy_options_default_to_an_adaptive_limit_of_100_and_no_rate_cap() -> None:
    """legacy_max_concurrency defaults to 100, legacy_max_rate to None; both take a number."""
    config = banyan.PromptStackLogger(api_key="psk_x").config
    assert (config.legacy_max_concurrency, config.legacy_max_rate) == (100, None)
    config = banyan.PromptStackLogger(
        api_key="psk_x", legacy_max_concurrency=4, legacy_max_rate=12.5
    ).config
    assert (config.legacy_max_concurrency, config.legacy_max_rate) == (4, 12.5)


@pytest.mark.parametrize(
    "url", ["http://user:s3cr3t@127.0.0.1:1", "https://:s3cr3t@example.com/x", "http://s3cr3t@h"]
)
def test_credentials_in_base_url_are_refused_without_echoing_them(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """user:password@ in base_url (argument or BANYAN_BASE_URL) is a ConfigurationError whose
    message never shows the secret."""
    with pytest.raises(banyan.ConfigurationError, match="credentials") as raised:
        banyan.PromptStackLogger(api_key="psk_x", base_url=url)
    assert "s3cr3t" not in str(raised.value)
    monkeypatch.setenv("BANYAN_BASE_URL", url)
    with pytest.raises(banyan.ConfigurationError, match="credentials") as raised:
        banyan.PromptStackLogger(api_key="psk_x")
    assert "s3cr3t" not in str(raised.value)


def test_unknown_option_is_refused() -> None:
    """A misspelt option name raises ConfigurationError naming it."""
    with pytest.raises(banyan.ConfigurationError, match="flush_intervall"):
        banyan.configure(api_key="psk_x", flush_intervall=1)  # type: ignore[call-arg]


def test_zstd_without_zstandard_fails_at_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    """compression='zstd' without the zstandard package fails early with a clear hint."""
    monkeypatch.setitem(sys.modules, "zstandard", None)
    with pytest.raises(banyan.ConfigurationError, match=r"banyan-sdk\[zstd\]"):
        banyan.PromptStackLogger(api_key="psk_x", compression="zstd")


@pytest.mark.parametrize(
    ("option", "value"),
    [("api_key", 123), ("base_url", 123), ("project_id", 123), ("base_url", b"http://x")],
)
def test_key_url_and_project_must_be_str(option: str, value: Any) -> None:
    """A non-str api_key, base_url or project_id raises ConfigurationError naming it."""
    options: dict[str, Any] = {"api_key": "psk_x", option: value}
    with pytest.raises(banyan.ConfigurationError, match=f"{option} must be a str"):
        banyan.PromptStackLogger(**options)


@pytest.mark.parametrize(
    "url",
    ["http://[::1", "http://x:port", "http://x:70000", "http://x:0", "http://a\nb", "http://a b"],
)
def test_unparsable_base_url_is_refused(url: str) -> None:
    """A base_url urlsplit or httpx cannot use raises ConfigurationError, not ValueError."""
    with pytest.raises(banyan.ConfigurationError, match="base_url"):
        banyan.PromptStackLogger(api_key="psk_x", base_url=url)


@pytest.mark.parametrize("key", ["psk_é", "psk\nx", "psk\x00"])
def test_api_key_must_be_a_valid_header_value(key: str) -> None:
    """An api_key httpx cannot send as a header is refused, without echoing the key."""
    with pytest.raises(banyan.ConfigurationError, match="api_key") as caught:
        banyan.PromptStackLogger(api_key=key)
    assert key not in str(caught.value)


def test_api_key_loses_a_secret_files_trailing_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whitespace around the key (a mounted secret's newline) is not part of it."""
    monkeypatch.setenv("BANYAN_API_KEY", "psk_from_file\n")
    logger = banyan.PromptStackLogger(spool_dir=False)
    try:
        assert logger._config.api_key == "psk_from_file"
    finally:
        logger.shutdown(timeout=0)


def test_project_id_must_be_a_valid_header_value() -> None:
    """A project_id httpx cannot send as a header is refused."""
    with pytest.raises(banyan.ConfigurationError, match="project_id"):
        banyan.PromptStackLogger(api_key="psk_x", project_id="projé")


@pytest.mark.parametrize(
    "option", ["background_thread", "enable_metrics", "auto_flush", "http2", "disk_cache"]
)
@pytest.mark.parametrize("value", ["false", 0, None])
def test_flag_options_must_be_bools(option: str, value: Any) -> None:
    """A truthy or falsy non-bool for an on/off option raises ConfigurationError."""
    with pytest.raises(banyan.ConfigurationError, match=f"{option} must be True or False"):
        banyan.PromptStackLogger(api_key="psk_x", **{option: value})


def test_http_transport_must_be_an_httpx_transport() -> None:
    """http_transport accepts an httpx.BaseTransport and refuses anything else."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    logger = banyan.PromptStackLogger(api_key="psk_x", http_transport=transport)
    assert logger.config.http_transport is transport
    logger.shutdown(timeout=1)
    with pytest.raises(banyan.ConfigurationError, match="http_transport"):
        banyan.PromptStackLogger(api_key="psk_x", http_transport="http://proxy:3128")


SECONDS = [
    "retry_delay",
    "flush_interval",
    "cache_ttl",
    "timeout",
    "max_retry_delay",
    "max_retry_after",
    "atexit_timeout",
]


@pytest.mark.parametrize("option", SECONDS)
@pytest.mark.parametrize("value", [1e10, float("inf"), float("nan"), True])
def test_seconds_options_are_finite_and_within_timeout_max(option: str, value: Any) -> None:
    """Seconds past threading.TIMEOUT_MAX (OverflowError in waits), NaN or bools are refused."""
    with pytest.raises(banyan.ConfigurationError, match=option):
        banyan.PromptStackLogger(api_key="psk_x", **{option: value})


def test_seconds_options_accept_timeout_max() -> None:
    """threading.TIMEOUT_MAX itself is a valid number of seconds."""
    options: dict[str, Any] = dict.fromkeys(SECONDS, threading.TIMEOUT_MAX)
    logger = banyan.PromptStackLogger(api_key="psk_x", **options)
    assert logger.config.atexit_timeout == threading.TIMEOUT_MAX
    logger.shutdown(timeout=1)


@pytest.mark.parametrize(
    ("variable", "name"), [("SSL_CERT_FILE", "missing.pem"), ("SSL_CERT_DIR", "no-such-dir")]
)
def test_unreadable_ca_file_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str, name: str
) -> None:
    """A CA file or directory that is not there raises ConfigurationError naming the variable
    and the path, whatever httpx does with it (0.27 fell back to certifi)."""
    monkeypatch.setattr(_transport, "_tls_contexts", {})
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setenv(variable, str(tmp_path / name))
    with pytest.raises(banyan.ConfigurationError, match=f"{variable}=.*{name}"):
        banyan.PromptStackLogger(api_key="psk_x", base_url="https://127.0.0.1:9")


def test_spool_max_bytes_holds_four_of_the_smallest_segments() -> None:
    """Below 256 KiB a durable spool would evict what it had just sealed."""
    with pytest.raises(banyan.ConfigurationError, match="spool_max_bytes"):
        banyan.PromptStackLogger(api_key="psk_x", spool_max_bytes=100_000)
