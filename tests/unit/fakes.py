"""In-memory stand-ins for the transport, so unit tests open no sockets."""

from __future__ import annotations

import json as jsonlib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from banyan._config import Config
from banyan._delivery import Delivery
from banyan._exceptions import BanyanError, HTTPStatusError
from banyan._record import Encoded, Record, encode
from banyan._stats import DropReason, Stats

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
    #: What :meth:`fanout` returns: the concurrent 1.0.1 sender, if any.
    pool: Any = None

    def close(self) -> None:
        self.closed = True

    def forget(self) -> None:
        """What a forked child does with its parent's transport: nothing to forget here."""

    def fanout(self) -> Any:
        """Without a ``pool``, records go one at a time through :meth:`request`."""
        return self.pool

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


RECORDS: list[Encoded] = [
    encode(Record(id=f"r{n}", ts=1.5, input="in", output="out")) for n in range(3)
]
#: The server's answer taking the three :data:`RECORDS`.
OK = FakeResponse({"accepted": 3, "duplicates": 0})
#: What a delivery gave up on: (batch, its records given up, reason, error).
Spilled = tuple[list[Encoded], list[Encoded], DropReason, str]


class Counted(Delivery):
    """A Delivery with a tally of its own, called with a batch alone (as a flusher would)."""

    def __init__(self, config: Config, transport: Any, *, in_spool: bool = False) -> None:
        super().__init__(config, transport, in_spool=in_spool)
        self._stats = Stats()

    def __call__(self, records: list[Encoded], deadline: float | None, stop: Any) -> bool:
        return self.deliver(records, deadline, stop, self._stats)


def delivering(*script: Step, **options: Any) -> tuple[Counted, FakeTransport, list[Spilled]]:
    """A Delivery answered by ``script``, counting into a Stats of its own, its spills listed."""
    config = Config(api_key="psk_unit", base_url="http://127.0.0.1:9", **options)
    fake = FakeTransport(list(script))
    delivery = Counted(config, fake)
    spilled: list[Spilled] = []
    delivery.spill = lambda batch, records, reason, error: spilled.append(
        (batch, records, reason, error)
    )
    return delivery, fake, spilled


def one_by_one(*script: Step, **options: Any) -> tuple[Counted, FakeTransport, list[Spilled]]:
    """A delivery already switched to one-by-one sends by a 404."""
    delivery, fake, spilled = delivering(status(404), OK, OK, OK, *script, **options)
    assert delivery(RECORDS, None, Waits())
    fake.calls.clear()
    return delivery, fake, spilled
