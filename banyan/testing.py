"""Assert what your application logs, with no network and no server.

::

    import banyan
    from banyan.testing import capture

    def test_greeting_is_logged():
        with capture(prompts={"greet": "Hello {name}"}) as backend:
            handle_request()            # calls banyan.get_prompt / banyan.log_prompt
        assert backend.logged[0]["prompt_name"] == "greet"

Inside the block the module functions (``banyan.log_prompt``, ...) use a
logger that runs the real pipeline (record encoding, batching, the batch
protocol) but sends to an in-memory backend through an ``httpx`` mock
transport, synchronously. The previous default logger is restored on exit.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httpx
import msgspec

from banyan import _default
from banyan._client import PromptStackLogger
from banyan._record import SCORE, Score, record_type
from banyan._wire import BATCH_PATH, BatchResult

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from banyan._types import ConfigureOptions

__all__ = ["FakeBackend", "capture"]

_PROMPT_PREFIX = "/api/logs/prompt/"
_batch = msgspec.msgpack.Decoder(list[dict[str, Any]])


def _decompressed(request: httpx.Request) -> bytes:
    # What compression= sends (banyan._delivery): gzip, or zstd with its content size.
    encoding = request.headers.get("Content-Encoding", "")
    if encoding == "gzip":
        return gzip.decompress(request.content)
    if encoding == "zstd":
        import zstandard

        return bytes(zstandard.ZstdDecompressor().decompress(request.content))
    return request.content


def _as_dict(fields: dict[str, Any]) -> dict[str, Any]:
    """A record (every field, None where unset) or a score (``kind`` first), as a dict."""
    if fields.get("kind") == SCORE:
        return {"kind": SCORE, **msgspec.structs.asdict(msgspec.convert(fields, Score))}
    return msgspec.structs.asdict(msgspec.convert(fields, record_type(fields)))


class FakeBackend:
    """An in-memory Banyan backend: serves ``prompts`` and keeps what is logged."""

    def __init__(self, prompts: Mapping[str, str] | None = None) -> None:
        self.prompts: dict[str, str] = dict(prompts or {})
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.logger: PromptStackLogger | None = None

    @property
    def logged(self) -> list[dict[str, Any]]:
        """Every record delivered so far (flushing first), oldest first, as dicts."""
        if self.logger is not None:
            self.logger.flush(timeout=5)
        with self._lock:
            return [dict(r) for r in self._records]

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request the way ``banyan serve`` would."""
        path = request.url.path
        if request.method == "POST" and path == BATCH_PATH:
            records = [_as_dict(fields) for fields in _batch.decode(_decompressed(request))]
            with self._lock:
                self._records.extend(records)
            return httpx.Response(200, content=msgspec.json.encode(BatchResult(len(records), 0)))
        if request.method == "GET" and path.startswith(_PROMPT_PREFIX):
            return self._prompt(unquote(path[len(_PROMPT_PREFIX) :]))
        return httpx.Response(404, json={"error": f"banyan.testing does not serve {path}"})

    def _prompt(self, name: str) -> httpx.Response:
        if name not in self.prompts:
            return httpx.Response(404, json={"error": f"no prompt named {name!r}"})
        body: dict[str, Any] = {
            "prompt_id": f"test-{name}", "name": name, "content": self.prompts[name],
            "version": "1", "branch": "main", "project": None, "enable_logging": True,
            "metadata": {}, "experiment": None,
        }  # fmt: skip
        return httpx.Response(200, json=body)


@contextmanager
def capture(
    prompts: Mapping[str, str] | None = None, **options: Unpack[ConfigureOptions]
) -> Iterator[FakeBackend]:
    """Point the module functions at a :class:`FakeBackend` for the ``with`` block.

    ``options`` go to the :class:`~banyan.PromptStackLogger` (the defaults
    send synchronously, keep no spool and no disk cache).
    """
    backend = FakeBackend(prompts)
    settings: dict[str, Any] = {
        "api_key": "psk_banyan_testing",
        "base_url": "http://banyan.testing",
        "background_thread": False,
        "spool_dir": False,
        "disk_cache": False,
        "http_transport": httpx.MockTransport(backend.handle),
        **options,
    }
    backend.logger = PromptStackLogger(**settings)
    with _default._lock:
        previous, _default._logger = _default._logger, backend.logger
    try:
        yield backend
    finally:
        backend.logger.flush(timeout=5)
        with _default._lock:
            _default._logger = previous
        backend.logger.shutdown(timeout=5)
