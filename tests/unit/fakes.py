"""In-memory stand-ins for the transport, so unit tests open no sockets."""

from __future__ import annotations

import json as jsonlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from banyan._exceptions import BanyanError, HTTPStatusError

if TYPE_CHECKING:
    import banyan


@dataclass
class FakeResponse:
    """The parts of an httpx.Response the client reads."""

    body: Any = None
    status_code: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    #: The body as sent, when it is not ``body`` as JSON.
    raw: bytes | None = None

    @property
    def content(self) -> bytes:
        return jsonlib.dumps(self.body).encode() if self.raw is None else self.raw

    def json(self) -> Any:
        return self.body


Step = BanyanError | FakeResponse | Callable[..., Any]


@dataclass
class FakeTransport:
    """Answers requests from a script; when it runs out, accepts whole batches."""

    script: list[Step] = field(default_factory=list)
    calls: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    http_version: str = "HTTP/2"
    api_key: str = "psk_fake"
    closed: bool = False

    def close(self) -> None:
        self.closed = True

    def forget(self) -> None:
        """What a forked child does with its parent's transport: nothing to forget here."""

    def fanout(self) -> None:
        """No concurrent 1.0.1 sender: records go one at a time through :meth:`request`."""

    def request(self, method: str, path: str, **kw: Any) -> Any:
        self.calls.append((method, path, kw))
        step = self.script.pop(0) if self.script else None
        if isinstance(step, BanyanError):
            raise step
        if isinstance(step, FakeResponse):
            return step
        if callable(step):
            return step(method, path, **kw)
        return FakeResponse({"accepted": _count(kw.get("content")), "duplicates": 0})


def _count(content: bytes | None) -> int:
    if not content or content[:1] == b"{":  # a 1.0.1 single record, in JSON
        return 1
    return len(msgspec.msgpack.decode(content))


def status(code: int, retry_after: float | None = None) -> HTTPStatusError:
    """The error the transport raises for ``code``."""
    from banyan._exceptions import AuthenticationError

    kind = AuthenticationError if code in (401, 403) else HTTPStatusError
    return kind(code, "scripted", retry_after)


def attach(logger: banyan.PromptStackLogger, fake: FakeTransport) -> None:
    """Point every part of ``logger`` that talks HTTP at ``fake``."""
    logger._transport = fake  # type: ignore[assignment]
    logger._delivery._transport = fake  # type: ignore[assignment]
    logger._prompts._transport = fake  # type: ignore[assignment]


#: The ``make_logger`` fixture: script steps and options in, (logger, fake) out.
MakeLogger = Callable[..., "tuple[banyan.PromptStackLogger, FakeTransport]"]


class Jitter:
    """A ``random.Random`` stand-in: each jitter is ``pick`` of the asked range."""

    def __init__(self, pick: float = 1.0) -> None:
        self.pick = pick
        self.asked: list[tuple[float, float]] = []

    def uniform(self, low: float, high: float) -> float:
        self.asked.append((low, high))
        return low + (high - low) * self.pick


class Waits(threading.Event):
    """A stop event that records each wait and returns at once (set: stop)."""

    def __init__(self) -> None:
        super().__init__()
        self.delays: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None
        self.delays.append(timeout)
        return self.is_set()


def tallied(export: Any) -> Any:
    """A test's ``export(records, deadline, stop)`` as the flusher calls it, with a tally too."""
    return lambda records, deadline, stop, tally: export(records, deadline, stop)
