"""Starlette (and FastAPI): configure at start-up, a bounded shutdown at stop, sticky context.

::

    from fastapi import FastAPI
    from banyan.integrations.starlette import Lifespan, StickyContextMiddleware, sticky_context

    app = FastAPI(lifespan=Lifespan(timeout=10))  # options as for banyan.configure
    app.add_middleware(StickyContextMiddleware,
                       sticky=lambda request: {"user_id": request.headers.get("x-user-id")})

    @app.get("/reply")
    def reply(q: str) -> str:
        prompt = banyan.get_prompt("support-reply", sticky_context=sticky_context())
        ...

Each worker process (``uvicorn --workers N`` spawns them) runs the lifespan:
``banyan.configure(**options)`` at start-up, ``banyan.shutdown(timeout)`` on
a thread at stop, so the event loop keeps serving the last requests while
the records go out. Starlette itself is imported only by the middleware,
when a request arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import banyan

_sticky: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "banyan_sticky_context", default=None
)


class Lifespan:
    """An app's ``lifespan=``: configure banyan at start-up, shut it down at stop.

    ``timeout`` bounds the shutdown (seconds; keep it below your server's
    graceful timeout); ``inner`` is your own lifespan, entered inside this
    one; ``options`` go to :func:`banyan.configure` (``BANYAN_*`` fill the rest).
    """

    def __init__(
        self, *, timeout: float = 10.0, inner: Callable[[Any], Any] | None = None, **options: Any
    ) -> None:
        self.timeout = timeout
        self.inner = inner
        self.options = options

    @contextlib.asynccontextmanager
    async def __call__(self, app: Any) -> AsyncIterator[Any]:
        banyan.configure(**self.options)
        try:
            if self.inner is None:
                yield None
            else:
                async with self.inner(app) as state:
                    yield state
        finally:
            await asyncio.to_thread(banyan.shutdown, self.timeout)


class StickyContextMiddleware:
    """ASGI middleware: ``sticky(request)`` gives each request's sticky context.

    ``sticky`` takes a :class:`starlette.requests.HTTPConnection` and returns
    a mapping such as ``{"user_id": ...}`` (or None); :func:`sticky_context`
    returns it anywhere in the request's handling, threads included.
    """

    def __init__(self, app: Any, sticky: Callable[[Any], Mapping[str, Any] | None]) -> None:
        self.app = app
        self.sticky = sticky

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        from starlette.requests import HTTPConnection

        token = _sticky.set(self.sticky(HTTPConnection(scope)))
        try:
            await self.app(scope, receive, send)
        finally:
            _sticky.reset(token)


def sticky_context() -> Mapping[str, Any] | None:
    """The current request's sticky context (None outside a request or without one)."""
    return _sticky.get()
