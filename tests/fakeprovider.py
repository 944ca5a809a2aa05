"""A fake model provider on 127.0.0.1: OpenAI chat completions and Anthropic messages.

Enough of both APIs for their official SDKs: whole responses with usage,
``stream=True`` as server-sent events, and an error status for the model
named :data:`FAILING`. The reply is ``REPLY`` followed by the last user
message, streamed a word at a time; usage is 7 input tokens and one output
token per word.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = "echo:"
FAILING = "fail-model"
INPUT_TOKENS = 7


def reply_words(body: dict[str, Any]) -> list[str]:
    """The words the fake model answers ``body`` with."""
    last = body["messages"][-1]["content"]
    return [REPLY, *str(last).split()]


def _openai(body: dict[str, Any], words: list[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    usage = {"prompt_tokens": INPUT_TOKENS, "completion_tokens": len(words),
             "total_tokens": INPUT_TOKENS + len(words)}  # fmt: skip
    base = {"id": "chatcmpl-fake", "created": 1700000000, "model": body["model"]}
    whole = {**base, "object": "chat.completion", "usage": usage, "choices": [{
        "index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": " ".join(words)}}]}  # fmt: skip

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {**base, "object": "chat.completion.chunk", "choices": [choice]}

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": w if i == 0 else f" {w}"}) for i, w in enumerate(words)]
    events.append(chunk({}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    return whole, events


def _anthropic(
    body: dict[str, Any], words: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    text = " ".join(words)
    message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": body["model"],
               "stop_reason": "end_turn", "stop_sequence": None,
               "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": len(words)}}  # fmt: skip
    whole = {**message, "content": [{"type": "text", "text": text}]}
    start = {**message, "content": [], "stop_reason": None,
             "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1}}  # fmt: skip
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    events += [{"type": "content_block_delta", "index": 0,
                "delta": {"type": "text_delta", "text": w if i == 0 else f" {w}"}}
               for i, w in enumerate(words)]  # fmt: skip
    events += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": len(words)}},
        {"type": "message_stop"},
    ]  # fmt: skip
    return whole, events


_ROUTES = {"/v1/chat/completions": _openai, "/v1/messages": _anthropic}
_ERROR = {"error": {"type": "invalid_request_error", "message": "fake failure"}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are written separately: without this, delayed ACKs add 40 ms a call.
    disable_nagle_algorithm = True

    def do_POST(self) -> None:
        route = _ROUTES.get(self.path)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        self.server.requests += 1  # type: ignore[attr-defined]
        if route is None or body.get("model") == FAILING:
            return self._json(404 if route is None else 400, {**_ERROR, "type": "error"})
        whole, events = route(body, reply_words(body))
        if body.get("stream"):
            return self._stream(events)
        return self._json(200, whole)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, events: list[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        for event in events:
            name = f"event: {event['type']}\n" if "type" in event else ""
            self.wfile.write(f"{name}data: {json.dumps(event)}\n\n".encode())
        if self.path == "/v1/chat/completions":
            self.wfile.write(b"data: [DONE]\n\n")
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class FakeProvider:
    """A running fake provider: the base URLs its SDK clients take."""

    server: ThreadingHTTPServer

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def requests(self) -> int:
        """How many requests reached it."""
        return int(self.server.requests)  # type: ignore[attr-defined]


@contextmanager
def running() -> Iterator[FakeProvider]:
    """A fake provider on a free loopback port, for the duration of the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.requests = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, name="fake-provider", daemon=True)
    thread.start()
    try:
        yield FakeProvider(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
