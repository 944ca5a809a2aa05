"""The logger's prompt calls pass every argument on (mutants of _promptcalls.py, #21)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fakes import MakeLogger

import banyan
from banyan._prompts import MISS

CONTEXT = {"user_id": "u1"}
FOUND = banyan.PromptData(content="served")


class Prompts:
    """Stands for the prompt cache: records each call, answers from ``answers``."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def get(self, *args: Any, **kw: Any) -> Any:
        self.calls.append(("get", args, kw))
        return self.answers.pop(0)

    def route(self, *args: Any) -> Any:
        self.calls.append(("route", args, {}))
        return self.answers.pop(0)


@pytest.fixture
def with_prompts(make_logger: MakeLogger) -> Iterator[Any]:
    """A logger whose prompt cache is a :class:`Prompts` until the test ends (the real one is
    back for its shutdown and any fork hook)."""
    swapped: list[tuple[banyan.PromptStackLogger, Any]] = []

    def make(prompts: Prompts, **options: Any) -> banyan.PromptStackLogger:
        logger, _ = make_logger(spool_dir=False, **options)
        swapped.append((logger, logger._prompts))
        logger._prompts = prompts  # type: ignore[assignment]
        return logger

    yield make
    for logger, real in swapped:
        logger._prompts = real


def test_aget_prompt_asks_the_cache_without_blocking_then_fetches_in_a_thread(
    with_prompts: Any,
) -> None:
    """aget_prompt asks the cache first without blocking (a hit returns), and on a miss
    fetches in a thread; both with every argument, branch "main" by default."""
    prompts = Prompts(FOUND, MISS, FOUND, FOUND)
    logger = with_prompts(prompts)
    assert asyncio.run(logger.aget_prompt("greet", "3", "dev", CONTEXT, fallback="fb")) is FOUND
    assert asyncio.run(logger.aget_prompt("greet", "4", "qa", CONTEXT, fallback="fb")) is FOUND
    assert asyncio.run(logger.aget_prompt("greet")) is FOUND
    assert prompts.calls == [
        ("get", ("greet", "3", "dev", CONTEXT), {"fallback": "fb", "block": False}),
        ("get", ("greet", "4", "qa", CONTEXT), {"fallback": "fb", "block": False}),
        ("get", ("greet", "4", "qa", CONTEXT), {"fallback": "fb"}),
        ("get", ("greet", None, "main", None), {"fallback": None, "block": False}),
    ]


def test_a_disabled_logger_serves_the_fallback_as_asked_without_the_cache(
    with_prompts: Any,
) -> None:
    """enabled=False: get_prompt and aget_prompt serve the fallback named, versioned and
    branched as asked (None without one); experiment() is None; the cache is not asked."""
    prompts = Prompts()
    logger = with_prompts(prompts, enabled=False)
    served = asyncio.run(logger.aget_prompt("greet", "3", "dev", CONTEXT, fallback="fb"))
    assert served is not None
    assert (served.content, served.name, served.version, served.branch) == (
        "fb",
        "greet",
        "3",
        "dev",
    )
    assert logger.get_prompt("greet", "3", "dev", CONTEXT, fallback="fb") == served
    assert asyncio.run(logger.aget_prompt("greet")) is None
    assert logger.get_prompt("greet") is None
    assert logger.experiment("exp", "user_id", "u1") is None
    assert prompts.calls == []


def test_experiment_routes_with_every_argument(with_prompts: Any) -> None:
    """experiment() asks the server's routing with the experiment, sticky key and value."""
    prompts = Prompts(FOUND)
    logger = with_prompts(prompts)
    assert logger.experiment("exp", "user_id", "u1") is FOUND
    assert prompts.calls == [("route", ("exp", "user_id", "u1"), {})]
