"""The typed shapes of the public API: the options of ``configure`` and ``get_stats()``.

Only annotations: a typo in an option, or a key of ``get_stats()`` that does
not exist, is a mypy error, while at run time both stay plain dicts.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypedDict

from banyan._config import Compression, Durability, SpoolSync
from banyan._redact import LogEvent


class Options(TypedDict, total=False):
    """The keyword-only options of :class:`banyan.PromptStackLogger` (after the 1.0.1 block)."""

    batch_max_records: int
    batch_max_bytes: int
    max_queue_bytes: int
    compression: Compression | None
    http2: bool
    timeout: float
    max_in_flight: int
    max_retry_delay: float
    max_retry_after: float
    atexit_timeout: float
    cache_max_entries: int
    cache_dir: str | os.PathLike[str] | None
    disk_cache: bool
    spool_dir: str | os.PathLike[str] | bool | None
    spool_max_bytes: int
    durability: Durability
    spool_sync: SpoolSync
    http_transport: Any
    legacy_max_concurrency: int
    legacy_max_rate: float | None
    enabled: bool
    debug: bool
    sample_rate: float
    before_send: Callable[[LogEvent], LogEvent | None] | None


class ConfigureOptions(Options, total=False):
    """The options of :func:`banyan.configure`: the 1.0.1 block as keywords, then the rest."""

    max_retries: int
    retry_delay: float
    queue_size: int
    flush_interval: float
    background_thread: bool
    cache_ttl: float
    enable_metrics: bool
    auto_flush: bool
    batch_size: int


class Statistics(TypedDict):
    """What :func:`banyan.get_stats` returns (README, "Statistics")."""

    logs_queued: int
    logs_sent: int
    logs_dropped: int
    #: Every :class:`~banyan.DropReason` value (``"queue_full"``, ``"unsupported"``, ...): its
    #: count, zeros included. A dict, not a TypedDict: ``dropped[reason.value]`` must type-check.
    dropped: dict[str, int]
    queue_size: int
    queue_bytes: int
    in_flight: int
    duplicates: int
    retries: int
    batches_sent: int
    bytes_sent: int
    spooled: int
    replayed: int
    spooled_pending: int
    spool_evicted: int
    spool_corrupt_frames: int
    spool_lost: int
    spool_segments: int
    spool_bytes: int
    delivered_after_shutdown: int
    logs_skipped: int
    experiment_sticky_missing: int
    prompt_errors: int
    http_version: str | None
    last_error: str | None
    spool_handed_over: int
    possible_duplicates: int
    legacy_concurrency: int
    prompt_cache: dict[str, int]
