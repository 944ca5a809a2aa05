"""Just enough ASGI for the reference server: requests, responses, routing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote

import orjson

if TYPE_CHECKING:
    from banyan.server._app import State
    from banyan.server._auth import Principal

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: Largest JSON body a management or 1.0.1 endpoint reads.
MAX_JSON_BYTES = 4 * 1024 * 1024

_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


class HTTPError(Exception):
    """An answer other than success: its status, message and extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class Response:
    """A complete response: status, body and headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response (orjson; non-str keys and odd values are stringified)."""
    body = orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS, default=str)
    return Response(status, body, headers or {})


def error_response(error: HTTPError) -> Response:
    """The JSON body ``{"error": message}`` every failure carries."""
    return json_response({"error": error.message}, error.status, error.headers)


def check_name(value: Any, what: str = "prompt name") -> str:
    """``value`` if it is a valid name ([A-Za-z0-9._-], 1..128 chars), else a 400.

    "." and ".." are refused too: a URL path cannot carry them (RFC 3986 5.2.4
    removes them), so such a prompt could be created but never fetched (#14).
    """
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value in (".", ".."):
        message = f"invalid {what} {value!r}: use 1-128 of A-Z a-z 0-9 . _ -, not . or .."
        raise HTTPError(400, message)
    return value


class Request:
    """An incoming HTTP request, with its body read on demand."""

    def __init__(self, scope: Scope, receive: Receive, state: State) -> None:
        self.scope = scope
        self.state = state
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.params: dict[str, str] = {}
        self.principal: Principal | None = None
        self._receive = receive
        self.headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
        }
        self._repeated = len(self.headers) < len(scope["headers"])
        raw_query = scope.get("query_string", b"").decode("latin-1")
        self.query = dict(parse_qsl(raw_query, keep_blank_values=True))

    @property
    def project_id(self) -> str:
        """The id of the project the request's API key belongs to."""
        assert self.principal is not None
        return self.principal.project_id

    def single_header(self, name: str) -> str | None:
        """The value of header ``name``, None when absent; 400 when it is sent twice."""
        name = name.lower()
        if self._repeated:
            sent = [k for k, _ in self.scope["headers"] if k.decode("latin-1").lower() == name]
            if len(sent) > 1:
                raise HTTPError(400, f"header {name} may be sent only once")
        return self.headers.get(name)

    async def body(self, limit: int) -> bytes:
        """The whole body; 413 as soon as it grows past ``limit`` bytes."""
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise HTTPError(413, f"body of {declared} bytes exceeds the {limit} byte limit")
        chunks, size = [], 0
        while True:
            message = await self._next_message()
            if message["type"] == "http.disconnect":
                raise HTTPError(400, "client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise HTTPError(413, f"body exceeds the {limit} byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _next_message(self) -> Message:
        """The next ASGI message; 408 when none comes within the body timeout."""
        if self.state is None:  # a Request outside the app (the page preview, tests)
            return await self._receive()
        timeout = self.state.inflight.limits.body_timeout
        task = asyncio.current_task()
        assert task is not None
        stalled: list[bool] = []
        # Not asyncio.wait_for: it runs the wait in a task of its own, ~60 us a call
        # against ~5 for a timer, on every 1.0.1 single-record request.
        timer = asyncio.get_running_loop().call_later(timeout, _expire, task, stalled)
        try:
            return await self._receive()
        except asyncio.CancelledError:
            if not stalled:
                raise
            if hasattr(task, "uncancel"):  # Python 3.11+: the cancel was ours
                task.uncancel()
            raise HTTPError(408, f"request body stalled for more than {timeout:g} s") from None
        finally:
            timer.cancel()

    async def json(self) -> dict[str, Any]:
        """The body as a JSON object; 400 when it is anything else."""
        raw = await self.body(MAX_JSON_BYTES)
        if not raw.strip():
            return {}
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise HTTPError(400, f"body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise HTTPError(400, "body must be a JSON object")
        return data


def _expire(task: asyncio.Task[Any], stalled: list[bool]) -> None:
    stalled.append(True)
    task.cancel()


Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Route:
    """One method and path pattern, its handler, and whether it needs a key."""

    method: str
    parts: tuple[str, ...]
    handler: Handler
    auth: bool


class Router:
    """Maps ``METHOD /path/{param}`` patterns to handlers."""

    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, pattern: str, handler: Handler, *, auth: bool = True) -> None:
        """Register ``handler`` for ``method`` on ``pattern``."""
        self.routes.append(Route(method, tuple(pattern.strip("/").split("/")), handler, auth))

    def match(self, method: str, raw_path: str) -> tuple[Route, dict[str, str]]:
        """The route for a request and its path parameters; 404 or 405 otherwise."""
        # Split before unquoting so that %2F inside a name stays in one segment.
        parts = [unquote(p) for p in raw_path.strip("/").split("/")]
        allowed = False
        for route in self.routes:
            params = _bind(route.parts, parts)
            if params is None:
                continue
            if route.method == method:
                return route, params
            allowed = True
        if allowed:
            raise HTTPError(405, f"method {method} is not allowed on {raw_path}")
        raise HTTPError(404, f"no endpoint at {raw_path}")


def _bind(pattern: tuple[str, ...], parts: list[str]) -> dict[str, str] | None:
    if len(pattern) != len(parts):
        return None
    params = {}
    for want, got in zip(pattern, parts, strict=True):
        if want.startswith("{"):
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


_MISSING: Any = object()


def field_of(body: dict[str, Any], key: str, kind: type, default: Any = _MISSING) -> Any:
    """``body[key]`` checked to be of ``kind``; 400 naming the field otherwise."""
    value = body.get(key, default)
    if value is _MISSING:
        raise HTTPError(400, f"field {key!r} is required")
    if value is default and default is not _MISSING:
        return value
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise HTTPError(400, f"field {key!r} must be of type {kind.__name__}")
    return value
