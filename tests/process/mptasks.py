"""Task functions for the multiprocessing tests (importable by spawned children)."""

from __future__ import annotations

import os

import banyan


def log_one(n: int) -> int:
    """Log one record for task ``n`` with the default logger; the worker's pid."""
    if not banyan.log_prompt(input=f"task {n}", output=str(os.getpid())):
        raise RuntimeError(f"log_prompt refused task {n}: {banyan.get_stats()}")
    return os.getpid()


def configure(base_url: str, api_key: str) -> None:
    """A Pool initializer: the child configures itself (60 s interval: only exit flushes)."""
    banyan.configure(api_key=api_key, base_url=base_url, flush_interval=60)
