"""Fixtures for unit tests: loggers wired to an in-memory transport."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fakes import FakeTransport, attach

import banyan
from banyan import _default


@pytest.fixture
def make_logger() -> Iterator[Any]:
    """Build loggers whose HTTP goes to a FakeTransport; shut them down afterwards."""
    made: list[banyan.PromptStackLogger] = []

    def make(*script: Any, **options: Any) -> tuple[banyan.PromptStackLogger, FakeTransport]:
        options.setdefault("base_url", "http://127.0.0.1:9")
        options.setdefault("retry_delay", 0.001)
        logger = banyan.PromptStackLogger(api_key="psk_unit", **options)
        fake = FakeTransport(list(script))
        attach(logger, fake)
        made.append(logger)
        return logger, fake

    yield make
    for logger in made:
        logger.shutdown(timeout=2)


@pytest.fixture(autouse=True)
def _no_default_logger() -> Iterator[None]:
    yield
    _default._reset()
