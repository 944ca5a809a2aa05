"""Retention: drop logs and scores older than a cut-off, by hand or every hour.

``banyan logs prune`` calls :func:`prune` once; ``banyan serve
--retention-days N`` starts :func:`start`, one process beside granian's
workers, so a server prunes once an hour whatever its number of workers.
Store.prune is idempotent: several instances pruning one database are safe.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import sqlite3
import time
from multiprocessing.process import BaseProcess
from typing import Any

from banyan.server._app import log_to_stderr
from banyan.server.store import StoreError, open_store, redact

log = logging.getLogger("banyan.server")

DAY = 86400.0
#: Seconds between two prunes of a server with --retention-days.
INTERVAL = 3600.0
#: How often the pruning process checks that ``banyan serve`` still runs.
_PARENT_CHECK = 1.0


async def prune(target: str, before: float) -> dict[str, int]:
    """Drop the logs and scores of ``target`` older than ``before``; rows removed per table.

    PostgreSQL keeps the rows of the day partition that straddles ``before``.
    """
    store = await open_store(target)
    try:
        return await store.prune(before)
    finally:
        await store.close()


def _loop(target: str, days: float, parent: int, level: str) -> None:
    """The pruning process: prune now, then every INTERVAL, until ``parent`` is gone."""
    log_to_stderr(level)
    next_run = 0.0
    try:
        while os.getppid() == parent:
            if time.monotonic() >= next_run:
                next_run = time.monotonic() + INTERVAL
                _prune_once(target, days)
            time.sleep(_PARENT_CHECK)
    except KeyboardInterrupt:
        pass


def _prune_once(target: str, days: float) -> None:
    before = time.time() - days * DAY
    try:
        removed = asyncio.run(prune(target, before))
    except (StoreError, sqlite3.Error, OSError) as exc:
        log.warning("retention: pruning %s failed, next try in an hour: %s", redact(target), exc)
        return
    log.info("retention: removed %d logs and %d scores older than %d days",
             removed["logs"], removed["scores"], days)  # fmt: skip


def start(target: str, days: float, level: str) -> BaseProcess:
    """Start the pruning process of ``banyan serve`` (spawned: no fork beside granian's)."""
    context: Any = multiprocessing.get_context("spawn")
    process: BaseProcess = context.Process(
        target=_loop, args=(target, days, os.getpid(), level), name="banyan-retention", daemon=True
    )
    process.start()
    return process
