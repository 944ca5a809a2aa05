"""Gunicorn server hooks: name them in a gunicorn config file.

Nothing here is required: banyan resets itself in every forked worker
(also with ``--preload``) and a worker that ends, max_requests recycling
included, leaves through ``sys.exit`` so the atexit flush runs. These hooks
make both explicit and bound the final flush::

    # gunicorn.conf.py
    from banyan.integrations.gunicorn import post_fork, worker_exit  # noqa: F401

Gunicorn itself is never imported.
"""

from __future__ import annotations

from typing import Any

from banyan import _default


def post_fork(server: Any, worker: Any) -> None:
    """Gunicorn's ``post_fork``: make the worker's default logger its own.

    A no-op when the at-fork hooks already ran; it covers hosts that fork
    without running them.
    """
    logger = _default._logger
    if logger is not None:
        logger._check_pid()


def worker_exit(server: Any, worker: Any) -> None:
    """Gunicorn's ``worker_exit``: flush the default logger before the worker ends.

    Bounded by the logger's ``atexit_timeout``, which must stay well within
    gunicorn's ``graceful_timeout``. Exactly two parameters: gunicorn refuses a
    hook of any other arity, defaults included.
    """
    logger = _default._logger
    if logger is not None:
        logger.flush(logger.config.atexit_timeout)
