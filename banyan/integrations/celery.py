"""Celery worker signals: flush pool children before billiard's ``os._exit``.

A prefork pool child never runs atexit: billiard ends it with ``os._exit``
after a task when ``worker_max_tasks_per_child`` recycles it and when the
worker shuts down warmly. It does send ``worker_process_shutdown`` in the
child just before, and that is where :func:`install` shuts the logger down
as atexit would have: what the server has not taken by the deadline goes to
the spool (or is counted as dropped), never silently lost::

    # where the Celery app is created
    import banyan
    from banyan.integrations import celery as banyan_celery

    banyan.configure()  # or BANYAN_* in the environment
    banyan_celery.install()

Celery is imported only by :func:`install`.
"""

from __future__ import annotations

from typing import Any

from banyan import _default

_UID = "banyan.integrations.celery"


class _Settings:
    timeout: float | None = None


_settings = _Settings()


def install(timeout: float | None = None, flush_after_task: bool = False) -> None:
    """Connect banyan to celery's worker signals; calling it again is harmless.

    ``timeout`` bounds each flush (default: the logger's ``atexit_timeout``).
    ``flush_after_task`` also flushes after every task, for pools whose
    children may be killed without warning (hard time limits); it costs one
    round trip per task.
    """
    from celery import signals  # type: ignore[import-untyped]

    _settings.timeout = timeout
    signals.worker_process_init.connect(_process_init, weak=False, dispatch_uid=_UID)
    for signal in (signals.worker_process_shutdown, signals.worker_shutdown):
        signal.connect(_wind_down, weak=False, dispatch_uid=_UID)
    if flush_after_task:
        signals.task_postrun.connect(_flush, weak=False, dispatch_uid=_UID)
    else:
        signals.task_postrun.disconnect(dispatch_uid=_UID)


def _process_init(**_: Any) -> None:
    # A no-op where the at-fork hooks ran; it covers pools that fork without them.
    logger = _default._logger
    if logger is not None:
        logger._check_pid()


def _timeout(logger: Any) -> float:
    timeout = _settings.timeout
    return float(logger.config.atexit_timeout if timeout is None else timeout)


def _flush(**_: Any) -> None:
    logger = _default._logger
    if logger is not None:
        logger.flush(_timeout(logger))


def _wind_down(**_: Any) -> None:
    # The process ends next (os._exit in a pool child): a flush alone would leave what is
    # still queued or retried at its deadline in memory, lost without a count.
    logger = _default._logger
    if logger is not None:
        logger.shutdown(_timeout(logger))
