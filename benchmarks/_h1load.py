"""What an HTTP/1.1 server takes alone: a minimal load generator (issue #20).

``concurrency`` keep-alive connections each send one pre-built POST, and the
next as soon as its answer is complete (no pipelining, as the client does);
the generator itself costs a few microseconds of CPU per request, so on a
shared machine the figure is the server's. Used by ``benchmarks.legacy_throughput``
to say when the client is server-limited.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit


class _Conn(asyncio.Protocol):
    def __init__(self, load: _Load) -> None:
        self.load = load
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 :].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            self.load.answered(head.startswith(b"http/1.1 2"), self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.failed += 1


class _Load:
    def __init__(self, request: bytes, total: int, done: asyncio.Future[None]) -> None:
        self.request, self.total, self.done = request, total, done
        self.sent = self.ok = self.failed = 0

    def next(self, transport: asyncio.Transport) -> None:
        if self.sent < self.total:
            self.sent += 1
            transport.write(self.request)

    def answered(self, ok: bool, transport: asyncio.Transport) -> None:
        self.ok += ok
        if self.ok >= self.total and not self.done.done():
            self.done.set_result(None)
        self.next(transport)


async def _run(url: str, request: bytes, total: int, concurrency: int) -> tuple[float, int]:
    parts = urlsplit(url)
    loop = asyncio.get_running_loop()
    load = _Load(request, total, loop.create_future())
    conns = [
        await loop.create_connection(lambda: _Conn(load), parts.hostname, parts.port)
        for _ in range(concurrency)
    ]
    start = time.perf_counter()
    for transport, _ in conns:
        load.next(transport)
    await asyncio.wait_for(load.done, 300)
    elapsed = time.perf_counter() - start
    for transport, _ in conns:
        transport.close()
    return elapsed, load.ok


def server_alone(
    url: str, path: str, body: bytes, total: int, concurrency: int
) -> dict[str, float]:
    """POST ``body`` to ``url + path`` ``total`` times, ``concurrency`` at once: answers/s."""
    authority = urlsplit(url).netloc
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    cpu = time.process_time()
    elapsed, ok = asyncio.run(_run(url, request, total, concurrency))
    cpu = time.process_time() - cpu
    return {"requests": total, "concurrency": concurrency, "answers_per_s": round(ok / elapsed),
            "generator_cpu_us_per_request": round(cpu / total * 1e6, 1)}  # fmt: skip


_WRK_SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY_FILE"), "rb"); wrk.body = f:read("*a"); f:close()
"""


def wrk_rate(url: str, body: bytes, concurrency: int, seconds: int = 3) -> float | None:
    """Requests/s that ``wrk`` measures POSTing ``body`` to ``url``, if wrk is installed."""
    if shutil.which("wrk") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "post.lua").write_text(_WRK_SCRIPT)
        (Path(tmp) / "body.json").write_bytes(body)
        cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", f"{tmp}/post.lua", url]
        env = {**os.environ, "BODY_FILE": f"{tmp}/body.json"}
        run = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, timeout=60)
        out = run.stdout
    found = re.search(r"Requests/sec:\s*([\d.]+)", out)
    return round(float(found.group(1))) if found and "Non-2xx" not in out else None
