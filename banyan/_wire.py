"""Names and shapes both sides of the wire agree on (docs/protocol.md)."""

from __future__ import annotations

import msgspec

API_KEY_HEADER = "X-API-Key"
PROJECT_HEADER = "X-Project-Id"
#: Set by the client on a batch; the same value on every retry of that batch.
BATCH_ID_HEADER = "X-Banyan-Batch-Id"
#: Set by the client on each 1.0.1 single-record request: the record's id (issue #20).
IDEMPOTENCY_HEADER = "Idempotency-Key"

MSGPACK = "application/msgpack"
JSON = "application/json"

BATCH_PATH = "/api/v2/logs/batch"
PROMPT_PATH = "/api/logs/prompt/{name}"
SINGLE_LOG_PATH = "/api/logs/prompt-usage"
VALIDATE_PATH = "/api/auth/validate"
ROUTE_PATH = "/api/experiments/route"

#: Limits the server enforces with 413; the client keeps its batches below them.
MAX_BATCH_RECORDS = 20_000
MAX_BATCH_BYTES = 32 * 1024 * 1024


class Rejected(msgspec.Struct):
    """A record of a batch the server refused, by its index in the batch."""

    index: int
    error: str


class BatchResult(msgspec.Struct):
    """The server's answer to a batch."""

    accepted: int
    duplicates: int
    rejected: list[Rejected] = []


def msgpack_array_header(count: int) -> bytes:
    """The MessagePack array header for ``count`` items (array 32 form).

    A batch body is this header followed by the already-encoded records, so
    the flusher never re-encodes a record.
    """
    return b"\xdd" + count.to_bytes(4, "big")
