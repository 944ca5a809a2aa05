"""The core the model-call wrappers share: time a call, then log it once.

A provider module (:mod:`banyan.integrations.openai`, ``.anthropic``) says
how to read its responses and stream events (a :class:`Reader`); everything
else is here: the ``banyan_prompt=`` / ``banyan_metadata=`` keywords taken
out before the provider sees the call, the duration, streams assembled as
they are consumed, and errors logged and re-raised untouched.

Token usage, a neutral dict made by :func:`usage`, is passed as ``log_prompt``'s
``usage=`` (the record's token fields, which experiment results count) and kept
in ``metadata["usage"]`` (:data:`USAGE_KEY`) as the wrappers logged it before.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, Protocol

import orjson

import banyan

#: The metadata key under which a wrapped call's token usage is logged.
USAGE_KEY = "usage"
_log = logging.getLogger("banyan")


def usage(prompt: Any, completion: Any, total: Any = None) -> dict[str, int] | None:
    """Provider token counts as ``{"input_tokens", "output_tokens", "total_tokens"}``."""
    if prompt is None and completion is None:
        return None
    found = {"input_tokens": int(prompt or 0), "output_tokens": int(completion or 0)}
    found["total_tokens"] = int(total) if total is not None else sum(found.values())
    return found


class Reader(Protocol):
    """How one provider's responses read: a call's input, its output, stream events."""

    provider: str

    def input(self, kwargs: dict[str, Any]) -> Any:
        """What the record's ``input`` is: the messages (and system prompt) sent."""

    def response(self, response: Any, call: Call) -> None:
        """Fill ``call`` from a whole response."""

    def event(self, event: Any, call: Call) -> None:
        """Fill ``call`` from one stream event."""


class Call:
    """One model call on its way to a record: what was sent, what came back, how long."""

    __slots__ = ("input", "logger", "metadata", "model", "parts", "prompt", "start", "usage")

    def __init__(self, logger: Any, kwargs: dict[str, Any], reader: Reader) -> None:
        self.logger = logger
        self.prompt = kwargs.pop("banyan_prompt", None)
        self.metadata: dict[str, Any] = {"provider": reader.provider}
        self.metadata.update(kwargs.pop("banyan_metadata", None) or {})
        self.model: str | None = kwargs.get("model")
        self.input = reader.input(kwargs)
        self.parts: list[str] = []
        self.usage: dict[str, int] | None = None
        self.start = time.perf_counter()

    def done(self) -> None:
        """Log the call with what it produced."""
        if self.usage is not None:
            self.metadata[USAGE_KEY] = self.usage
        self._log("".join(self.parts))

    def failed(self, exc: BaseException) -> None:
        """Log the call as failed with ``exc`` (the caller re-raises it)."""
        error = {"type": type(exc).__name__, "status_code": getattr(exc, "status_code", None)}
        self.metadata["error"] = error
        self._log("")

    def _log(self, output: str) -> None:
        duration = (time.perf_counter() - self.start) * 1000
        try:
            text = orjson.dumps(self.input, default=str).decode()
        except TypeError:
            text = str(self.input)
        log = banyan.log_prompt if self.logger is None else self.logger.log_prompt
        log(text, output, prompt_data=self.prompt, model=self.model,
            metadata=self.metadata, duration_ms=duration, usage=self.usage)  # fmt: skip


def _read(reader_step: Callable[[Any, Call], None], item: Any, call: Call) -> None:
    # Reading a response is the wrapper's business: a surprise there must not reach the caller.
    try:
        reader_step(item, call)
    except Exception as exc:
        call.metadata["banyan_read_error"] = repr(exc)
        _log.warning("banyan: cannot read the %s response: %r", call.metadata["provider"], exc)


class _Ending:
    """Logs a stream's call as its iteration ends: done, closed early, or failed."""

    def __init__(self, call: Call) -> None:
        self.call = call

    def __enter__(self) -> None:
        pass

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _: Any) -> None:
        if exc is None or isinstance(exc, GeneratorExit):
            if exc is not None:
                self.call.metadata["stream"] = "closed early"
            self.call.done()
        else:
            self.call.failed(exc)


def _sync_events(source: Iterator[Any], call: Call, reader: Reader) -> Generator[Any, None, None]:
    with _Ending(call):
        for event in source:
            _read(reader.event, event, call)
            yield event


async def _async_events(
    source: AsyncIterator[Any], call: Call, reader: Reader
) -> AsyncGenerator[Any, None]:
    with _Ending(call):
        async for event in source:
            _read(reader.event, event, call)
            yield event


#: Per result type: "await" (a coroutine), "stream" (the SDKs' Stream, AsyncStream), "whole".
_kinds: dict[type, str] = {}


def _kind(result: Any) -> str:
    # Looked up on the type once: a missing attribute costs a pydantic model ~3 us per call.
    cls = type(result)
    kind = _kinds.get(cls)
    if kind is None:
        is_stream = hasattr(cls, "__stream__") and hasattr(result, "_iterator")
        kind = "await" if hasattr(cls, "__await__") else "stream" if is_stream else "whole"
        _kinds[cls] = kind
    return kind


def _returned(result: Any, call: Call, reader: Reader, is_async: bool) -> Any:
    """The provider's result, as it was; a stream logs when it ends, anything else now."""
    if _kind(result) != "stream":
        _read(reader.response, result, call)
        call.done()
        return result
    source = result._iterator
    call.metadata["stream"] = True
    # The SDKs' Stream objects iterate through _iterator: the same object goes back to the
    # caller, with each event read on its way through, and logged at its end or close().
    if is_async:
        result._iterator = events = _async_events(source, call, reader)
        result.close = _then(events.aclose, result.close)
    else:
        result._iterator = sync = _sync_events(source, call, reader)
        result.close = _then(sync.close, result.close)
    return result


def _then(first: Callable[[], Any], then: Callable[[], Any]) -> Callable[[], Any]:
    """``first()`` then ``then()``, awaited when they are coroutine functions."""
    if not inspect.iscoroutinefunction(then):
        return lambda: (first(), then())[1]

    async def both() -> Any:
        await first()
        return await then()

    return both


def wrap_method(method: Callable[..., Any], reader: Reader, logger: Any) -> Callable[..., Any]:
    """``method`` (a provider's ``create``) logging each call through ``logger``."""

    def create(*args: Any, **kwargs: Any) -> Any:
        call = Call(logger, kwargs, reader)
        try:
            result = method(*args, **kwargs)
        except BaseException as exc:
            call.failed(exc)
            raise
        if _kind(result) == "await":
            return _awaited(result, call, reader)
        return _returned(result, call, reader, False)

    if not inspect.iscoroutinefunction(method):
        return functools.wraps(method)(create)

    @functools.wraps(method)
    async def acreate(*args: Any, **kwargs: Any) -> Any:
        return await create(*args, **kwargs)

    return acreate


async def _awaited(result: Awaitable[Any], call: Call, reader: Reader) -> Any:
    try:
        value = await result
    except BaseException as exc:
        call.failed(exc)
        raise
    return _returned(value, call, reader, True)


def instrument(resource: Any, reader: Reader, logger: Any) -> None:
    """Replace ``resource.create`` on this instance by its logging twin (once)."""
    method = resource.create
    if getattr(method, "__banyan__", False):
        return
    wrapped = wrap_method(method, reader, logger)
    wrapped.__banyan__ = True  # type: ignore[attr-defined]
    resource.create = wrapped
