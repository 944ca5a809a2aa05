"""A minimal 1.0.1-only backend under granian, for the tests and benchmarks of issue #20.

It has no batch endpoint (404) and stores every ``POST /api/logs/prompt-usage``
it is sent, duplicates included, as the 1.0.1 service does, after a fixed
delay (``LEGACY_DELAY_MS``). It takes only what the 1.0.1 contract names
(/work/shared/PROTOCOL-NOTES.md, "Logging", and the 1.0.1 client, which always
sends ``input``, ``output`` and ``metadata``), plus the ``id`` the 2.x client
adds (docs/protocol.md 8.1); a body without those three, or with any other key
(a score's ``kind``, token usage), is refused with 400: the contract does not
say that the service ignores unknown keys, so a client must not count on it.
``GET /_stored`` reports what it stored: every record id in arrival order,
every ``Idempotency-Key`` header seen, the bodies' keys, how many bodies it
refused, and the most requests it was answering at once (``peak``);
``GET /api/v2/logs/summary`` the count only, as ``banyan serve`` reports it.
Run it with :func:`start`; the tests import it as ``legacyserver``, the
benchmarks as ``tests.legacyserver``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

DELAY_ENV = "LEGACY_DELAY_MS"
STORED_PATH = "/_stored"
#: banyan serve's count, so that benchmarks written for it read this server too.
SUMMARY_PATH = "/api/v2/logs/summary"
_ids: list[str] = []
_keys: list[str] = []
#: Every key any stored body had, and the bodies refused (400).
_fields: set[str] = set()
_refused: list[str] = []
#: What a 1.0.1 body holds: always the first three, then any of the others (and the 2.x id).
_REQUIRED = ("input", "output", "metadata")
_TYPES: dict[str, type | tuple[type, ...]] = {
    "input": str, "output": str, "metadata": dict, "duration_ms": (int, float),
    **dict.fromkeys(("prompt_id", "prompt_name", "version", "branch_name", "model", "id",
                     "experiment_id", "experiment_version_id", "sticky_key", "sticky_value"), str),
}  # fmt: skip
#: Requests being answered now, and the most there ever were at once.
_busy = {"now": 0, "peak": 0}

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]


async def _answer(send: Send, status: int, body: object) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _refusal(record: object) -> str | None:
    """Why a 1.0.1 service would refuse ``record``; None when it takes it."""
    if not isinstance(record, dict):
        return "the body is not a JSON object"
    missing = [name for name in _REQUIRED if name not in record]
    unknown = [name for name in record if name not in _TYPES]
    wrong = [name for name, value in record.items()
             if name in _TYPES and not isinstance(value, _TYPES[name])]  # fmt: skip
    if missing or unknown or wrong:
        return f"missing {missing}, unknown {unknown}, wrong type {wrong}"
    return None


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The ASGI app: the 1.0.1 single-record endpoint, and ``/_stored``."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == STORED_PATH:
        stored = {"ids": _ids, "keys": _keys, "fields": sorted(_fields), "refused": _refused}
        await _answer(send, 200, {**stored, "peak": _busy["peak"]})
        return
    if path == SUMMARY_PATH:
        await _answer(send, 200, {"stored": len(_ids)})
        return
    if path != "/api/logs/prompt-usage" or scope["method"] != "POST":
        await _answer(send, 404, {"error": "not found"})
        return
    record = json.loads(await _body(receive))
    refusal = _refusal(record)
    if refusal is not None:
        _refused.append(refusal)
        await _answer(send, 400, {"error": f"invalid usage record: {refusal}"})
        return
    _fields.update(record)
    _busy["now"] += 1
    _busy["peak"] = max(_busy["peak"], _busy["now"])
    delay = int(os.environ.get(DELAY_ENV) or 0)
    if delay:
        await asyncio.sleep(delay / 1000)
    _busy["now"] -= 1
    _ids.append(str(record.get("id")))
    headers = dict(scope["headers"])
    _keys.append(headers.get(b"idempotency-key", b"").decode())
    await _answer(send, 201, {"success": True, "id": record.get("id"), "duplicate": False})


@dataclass
class LegacyServer:
    """A running 1.0.1-only backend."""

    base_url: str
    process: subprocess.Popen[bytes]

    def stored(self) -> dict[str, Any]:
        """``{"ids", "keys", "fields", "refused", "peak"}``: every record stored, in arrival
        order, their keys, the refusals."""
        return dict(httpx.get(self.base_url + STORED_PATH, timeout=30).json())

    def count(self) -> int:
        """How many records it stored (cheaper than :meth:`stored`)."""
        return int(httpx.get(self.base_url + SUMMARY_PATH, timeout=30).json()["stored"])

    def stop(self) -> None:
        """Stop the server process."""
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start(port: int, delay_ms: int = 0) -> LegacyServer:
    """Start the backend on 127.0.0.1:``port`` and wait until it answers (30 s at most)."""
    here = Path(__file__).parent
    # Run from here (``python -m`` puts the working directory on sys.path): granian's
    # --working-dir arrived after 2.2.1, the lowest version the server extra allows. As
    # banyan serve does, bound the wait for a worker at SIGTERM: 2.2.1 otherwise waits for
    # ever, and its worker outlives stop()'s kill of the main process.
    cmd = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1", "--http", "auto", "--log-level", "warning",
           "--workers-kill-timeout", "5", "legacyserver:app"]  # fmt: skip
    env = {**os.environ, DELAY_ENV: str(delay_ms)}
    server = LegacyServer(f"http://127.0.0.1:{port}", subprocess.Popen(cmd, env=env, cwd=here))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.process.poll() is None:
        try:
            server.stored()
            return server
        except httpx.HTTPError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError("the 1.0.1 backend did not start")
