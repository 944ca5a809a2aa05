"""A Celery app for the tests: one banyan record per task, prefork-recycled children.

The broker and result backend are ``BANYAN_TEST_BROKER``. banyan is
configured from ``BANYAN_*`` in the worker's main process, before billiard
forks its pool, and that process logs one record of its own.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery, signals  # type: ignore[import-untyped]

import banyan
from banyan.integrations import celery as banyan_celery

broker = os.environ.get("BANYAN_TEST_BROKER", "redis://127.0.0.1:6379/0")
app = Celery("celeryapp", broker=broker, backend=broker)
app.conf.update(
    worker_max_tasks_per_child=1,
    worker_prefetch_multiplier=1,
    task_acks_late=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
# BANYAN_TEST_ATEXIT: a shorter final flush, for tests whose server never answers.
banyan.configure(atexit_timeout=float(os.environ.get("BANYAN_TEST_ATEXIT", "5")))
banyan_celery.install()


def mark(event: str) -> None:
    """Note that ``event`` happened in this process (when ``BANYAN_TEST_MARKS`` is set)."""
    folder = os.environ.get("BANYAN_TEST_MARKS")
    if folder:
        Path(folder, f"{os.getpid()}.{event}").touch()


@signals.worker_init.connect  # type: ignore[untyped-decorator]
def _master_record(**_: object) -> None:
    banyan.log_prompt(input="master-boot", output=str(os.getpid()))


@signals.worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def _mark_shutdown(**_: object) -> None:
    mark("worker_process_shutdown")


@app.task  # type: ignore[untyped-decorator]
def work(n: int, flush: bool = False) -> int:
    """Log one record for task ``n``; with ``flush``, also flush inside the task."""
    import atexit

    atexit.register(mark, "atexit")
    banyan.log_prompt(input=f"task {n}", output=str(os.getpid()))
    if flush and not banyan.flush(timeout=10):
        raise RuntimeError("flush inside the task did not deliver")
    return os.getpid()
