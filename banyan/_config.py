"""Client settings: defaults, environment variables and validation.

Bad values are refused here, at the public boundary, with a
:class:`~banyan.ConfigurationError`; nothing past this module re-checks them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints
from urllib.parse import urlsplit

from banyan._controls import check, from_environment, named
from banyan._exceptions import ConfigurationError
from banyan._redact import LogEvent
from banyan._wire import MAX_BATCH_BYTES, MAX_BATCH_RECORDS

DEFAULT_BASE_URL = "https://banyan-smpms.ondigitalocean.app"
MiB = 1024 * 1024
Compression = Literal["gzip", "zstd"]
Durability = Literal["buffered", "durable"]
SpoolSync = Literal["none", "interval", "always"]
COMPRESSIONS = (None, *get_args(Compression))
DURABILITIES = get_args(Durability)
SPOOL_SYNCS = get_args(SpoolSync)
#: The smallest spool_max_bytes: four segments of the smallest size.
SPOOL_MIN_BYTES = 4 * 64 * 1024
#: One connection per request in flight: keep well inside a process's file limit.
MAX_LEGACY_CONCURRENCY = 1000
FLAGS = ("background_thread", "enable_metrics", "auto_flush", "http2", "disk_cache")


@dataclasses.dataclass(frozen=True)
class Config:
    """Every knob of a :class:`~banyan.PromptStackLogger`, validated.

    The first block mirrors the 1.0.1 constructor; the rest is new.
    ``queue_size`` keeps its 1.0.1 name as a hint of how many records the
    queue should hold, but the ring is bounded by ``max_queue_bytes``.
    ``flush_interval`` defaults to 1 s (5 s in 1.0.1): batches are cheap now.
    """

    api_key: str
    base_url: str = DEFAULT_BASE_URL
    project_id: str | None = None
    max_retries: int = 3
    retry_delay: float = 1.0
    queue_size: int = 1000
    flush_interval: float = 1.0
    background_thread: bool = True
    cache_ttl: float = 300.0
    enable_metrics: bool = True
    auto_flush: bool = True
    batch_size: int = 1000
    batch_max_records: int = 10_000
    batch_max_bytes: int = 4 * MiB
    max_queue_bytes: int = 64 * MiB
    compression: Compression | None = None
    http2: bool = True
    timeout: float = 10.0
    max_in_flight: int = 2
    max_retry_delay: float = 30.0
    max_retry_after: float = 60.0
    atexit_timeout: float = 5.0
    cache_max_entries: int = 1000
    cache_dir: str | None = None
    disk_cache: bool = True
    spool_dir: str | bool | None = None
    spool_max_bytes: int = 256 * MiB
    durability: Durability = "buffered"
    spool_sync: SpoolSync = "none"
    #: The most single-record requests in flight to a 1.0.1 server (issue #20): HTTP/2's usual
    #: SETTINGS_MAX_CONCURRENT_STREAMS, ~2,000 records/s at 50 ms a request; the limit adapts below.
    legacy_max_concurrency: int = 100
    #: At most this many records per second to a 1.0.1 server; None: no cap.
    legacy_max_rate: float | None = None
    #: An ``httpx.BaseTransport`` to send through instead of the network
    #: (banyan.testing uses an in-memory one; also for custom proxies).
    http_transport: Any = None
    # production controls (#16)
    #: False: no thread, no socket, no file; log_prompt counts ``disabled``, get_prompt
    #: serves ``fallback``.
    enabled: bool = True
    #: True: the ``banyan`` logger writes to stderr.
    debug: bool = False
    #: The share of records sent: per experiment subject when there is one, else per record.
    sample_rate: float = 1.0
    #: Called with each record's fields before encoding; returns them (changed) or None.
    before_send: Callable[[LogEvent], LogEvent | None] | None = None

    def __post_init__(self) -> None:
        _check_url(self.base_url)
        if self.base_url.startswith("https://"):
            _check_ca_environment()
        _check_header("api_key", self.api_key, secret=True)
        if self.project_id is not None:
            _check_header("project_id", self.project_id)
        for name in FLAGS:
            _check_flag(name, getattr(self, name))
        _check_http_transport(self.http_transport)
        _check_cache(self)
        for name in ("max_retries", "queue_size", "batch_size", "batch_max_records",
                     "batch_max_bytes", "max_queue_bytes", "max_in_flight",
                     "legacy_max_concurrency"):  # fmt: skip
            _check_int(name, getattr(self, name), minimum=0 if name == "max_retries" else 1)
        for name in ("retry_delay", "flush_interval", "cache_ttl", "timeout",
                     "max_retry_delay", "max_retry_after", "atexit_timeout"):  # fmt: skip
            _check_number(name, getattr(self, name), positive=name in ("flush_interval", "timeout"))
        if self.batch_max_records > MAX_BATCH_RECORDS:
            raise ConfigurationError(f"batch_max_records must be <= {MAX_BATCH_RECORDS}")
        if self.batch_max_bytes > MAX_BATCH_BYTES:
            raise ConfigurationError(f"batch_max_bytes must be <= {MAX_BATCH_BYTES}")
        _check_compression(self.compression)
        _check_spool(self)
        _check_rate(self.legacy_max_rate)
        if self.legacy_max_concurrency > MAX_LEGACY_CONCURRENCY:
            raise ConfigurationError(
                f"legacy_max_concurrency must be <= {MAX_LEGACY_CONCURRENCY} (one socket each)"
            )
        # production controls (#16)
        check(self.enabled, self.debug, self.sample_rate, self.before_send)

    def spool_directory(self) -> Path | None:
        """The spool directory; None when ``spool_dir`` is False or "" (no spool).

        By default ``<root>/<sha256(base_url + "\\n" + project_id or api_key)[:16]>``
        with ``<root>`` ``$BANYAN_SPOOL_DIR`` or ``<cache>/banyan/spool``
        (``$XDG_CACHE_HOME`` or ``~/.cache``): one directory per server and
        project, so records replay where they were meant to go, and no key in
        a path. The project id, when set, names the project across key rotations.
        """
        if self.spool_dir is False or self.spool_dir == "":
            return None
        if isinstance(self.spool_dir, str):
            return Path(self.spool_dir)
        root = os.environ.get("BANYAN_SPOOL_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
            "banyan",
            "spool",
        )
        identity = f"{self.base_url}\n{self.project_id or self.api_key}".encode()
        return Path(root, hashlib.sha256(identity).hexdigest()[:16])

    @property
    def wake_bytes(self) -> int:
        """Queued bytes that wake the flusher before ``flush_interval``."""
        return max(1, min(self.batch_max_bytes, self.max_queue_bytes) // 4)


_FIELDS = {f.name for f in dataclasses.fields(Config)}
# production controls (#16)
_TYPES = get_type_hints(Config)


def build(
    api_key: str | None, base_url: str | None, project_id: str | None, **options: Any
) -> Config:
    """A validated :class:`Config`, filling gaps from ``BANYAN_*`` variables."""
    unknown = sorted(set(options) - _FIELDS)
    if unknown:
        raise ConfigurationError(f"unknown option(s): {', '.join(unknown)}")
    # production controls (#16): every option from BANYAN_<OPTION>; off needs no key.
    options = from_environment(options, _TYPES)
    if options.get("enabled") is False and not (api_key or os.environ.get("BANYAN_API_KEY")):
        api_key = "psk_disabled"
    # Surrounding whitespace is a key file's or a secret's trailing newline, never the key.
    api_key = (_str_or_none("api_key", api_key) or os.environ.get("BANYAN_API_KEY") or "").strip()
    if not api_key:
        raise ConfigurationError("an API key is required: pass api_key=... or set BANYAN_API_KEY")
    base_url = (
        _str_or_none("base_url", base_url) or os.environ.get("BANYAN_BASE_URL") or DEFAULT_BASE_URL
    )
    project_id = (
        _str_or_none("project_id", project_id) or os.environ.get("BANYAN_PROJECT_ID") or None
    )
    try:
        return Config(
            api_key=api_key, base_url=base_url.rstrip("/"), project_id=project_id, **options
        )
    except ConfigurationError as exc:  # production controls (#16): name the variable
        raise named(exc, options) from None


def _str_or_none(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a str, got {type(value).__name__}")
    return value


def _check_url(url: object) -> None:
    if not isinstance(url, str) or not _is_http_url(url):
        shown = redacted(url) if isinstance(url, str) else url
        raise ConfigurationError(f"base_url must be an http:// or https:// URL, got {shown!r}")
    if "@" in urlsplit(url).netloc:
        # Refused rather than used: they would reach repr(), logs and every proxy's logs.
        raise ConfigurationError(
            f"base_url must not carry credentials (user:password@), got {redacted(url)!r}; "
            "the API key authenticates"
        )


def redacted(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if "@" not in netloc:
        return url
    return f"{scheme}{sep}***@{netloc.rpartition('@')[2]}{slash}{path}"


def _is_http_url(url: str) -> bool:
    # urlsplit silently drops tabs and newlines that httpx would refuse later.
    if " " in url or not url.isprintable():
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # "http://[::1", or a port that is not a number in 0..65535
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0


def _check_ca_environment() -> None:
    """Refuse a CA bundle named in the environment that is not there, as httpx 0.28+ does
    (0.27 silently fell back to certifi's); the first variable set is the one httpx reads."""
    kinds = (
        ("SSL_CERT_FILE", "file", os.path.isfile),
        ("SSL_CERT_DIR", "directory", os.path.isdir),
    )
    for name, kind, exists in kinds:
        path = os.environ.get(name)
        if not path:
            continue
        if exists(path) and os.access(path, os.R_OK):
            return
        raise ConfigurationError(
            f"cannot load TLS CA certificates from {name}={path!r}: not a readable {kind}"
        )


def _check_header(name: str, value: object, secret: bool = False) -> None:
    # Sent as an HTTP header: httpx encodes it as ASCII and h11/h2 refuse control characters.
    if (
        isinstance(value, str)
        and value.isascii()
        and value.isprintable()
        and value == value.strip()
    ):
        return
    # Never echo the API key into logs.
    got = "" if secret and isinstance(value, str) else f", got {value!r}"
    raise ConfigurationError(
        f"{name} must be printable ASCII without surrounding spaces (an HTTP header){got}"
    )


def _check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {value!r}")


def _check_http_transport(transport: object) -> None:
    if transport is None:
        return
    import httpx

    if not isinstance(transport, httpx.BaseTransport):
        raise ConfigurationError(
            f"http_transport must be an httpx.BaseTransport or None, got {transport!r}"
        )


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigurationError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_number(name: str, value: object, positive: bool) -> None:
    """Seconds: finite, and at most what threading's waits accept (OverflowError beyond)."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    if not 0 <= number <= threading.TIMEOUT_MAX or (positive and number == 0):
        low = "> 0" if positive else ">= 0"
        raise ConfigurationError(
            f"{name} must be a number of seconds {low} and <= {threading.TIMEOUT_MAX:.0f}, "
            f"got {value!r}"
        )


def _check_rate(rate: object) -> None:
    if rate is None:
        return
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 < rate < math.inf:
        raise ConfigurationError(
            f"legacy_max_rate must be None or a number of records per second > 0, got {rate!r}"
        )


def _check_cache(config: Config) -> None:
    _check_int("cache_max_entries", config.cache_max_entries, minimum=1)
    if config.cache_dir is not None:
        if not isinstance(config.cache_dir, str | os.PathLike):
            raise ConfigurationError(f"cache_dir must be a path, got {config.cache_dir!r}")
        # Stored as text so the frozen config stays plain data.
        object.__setattr__(config, "cache_dir", os.fspath(config.cache_dir))


def _check_spool(config: Config) -> None:
    # Four of the smallest segments (64 KiB, banyan._spooling): one fills while others
    # wait for replay; a smaller spool would evict what it just sealed.
    _check_int("spool_max_bytes", config.spool_max_bytes, minimum=SPOOL_MIN_BYTES)
    if config.durability not in DURABILITIES:
        raise ConfigurationError(
            f"durability must be 'buffered' or 'durable', got {config.durability!r}"
        )
    if config.spool_sync not in SPOOL_SYNCS:
        raise ConfigurationError(
            f"spool_sync must be 'none', 'interval' or 'always', got {config.spool_sync!r}"
        )
    spool_dir = config.spool_dir
    if spool_dir is not None and not isinstance(spool_dir, bool | str | os.PathLike):
        raise ConfigurationError(f"spool_dir must be a path, None or False, got {spool_dir!r}")
    if isinstance(spool_dir, os.PathLike):
        object.__setattr__(config, "spool_dir", os.fspath(spool_dir))
    elif spool_dir is True:
        object.__setattr__(config, "spool_dir", None)
    if config.durability == "durable" and config.spool_directory() is None:
        raise ConfigurationError("durability='durable' needs the spool: spool_dir cannot be False")


def _check_compression(name: object) -> None:
    if name not in COMPRESSIONS:
        raise ConfigurationError(f"compression must be None, 'gzip' or 'zstd', got {name!r}")
    if name == "zstd":
        try:
            import zstandard  # noqa: F401
        except ImportError:
            raise ConfigurationError(
                "compression='zstd' needs the zstandard package: pip install 'banyan-sdk[zstd]'"
            ) from None
