"""Gunicorn config for the tests: banyan's hooks, plus exit-path marks."""

from __future__ import annotations

from typing import Any

from wsgiapp import mark

from banyan.integrations import gunicorn as banyan_gunicorn

post_fork = banyan_gunicorn.post_fork


def worker_exit(server: Any, worker: Any) -> None:
    """Mark the exit path, then let banyan flush."""
    mark("worker_exit")
    banyan_gunicorn.worker_exit(server, worker)
