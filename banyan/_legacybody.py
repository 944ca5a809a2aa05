"""A record as the 1.0.1 endpoint takes it: one JSON body per request (docs/protocol.md 8.1).

Only the fields the 1.0.1 contract names go (PROTOCOL-NOTES.md, "Logging"),
with the record's id; a score, which a 1.0.1 service cannot store, never
goes: it is dropped, counted as ``unsupported``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import msgspec

from banyan._record import Encoded
from banyan._stats import DropReason, Stats


class _Body(msgspec.Struct, omit_defaults=True, gc=False):
    """The body's fields. Not ``ts`` (the server stamps its arrival) nor usage: nothing says
    that a 1.0.1 service ignores a key it does not know. ``kind``, read and never sent, tells
    a score apart. ``Any``: decoding never refuses a record."""

    id: Any = None
    input: Any = None
    output: Any = None
    metadata: Any = None
    prompt_id: Any = None
    prompt_name: Any = None
    version: Any = None
    branch_name: Any = None
    model: Any = None
    duration_ms: Any = None
    experiment_id: Any = None
    experiment_version_id: Any = None
    sticky_key: Any = None
    sticky_value: Any = None
    kind: Any = None


_decode_body = msgspec.msgpack.Decoder(_Body).decode
_encode_json = msgspec.json.Encoder().encode


@dataclass
class Job:
    """One record to send: its bytes as queued, its JSON body and its id."""

    record: Encoded
    body: bytes
    key: str
    attempts: int = 0


def legacy_job(record: Encoded) -> Job | None:
    """``record`` as the 1.0.1 endpoint takes it (:class:`_Body`, ``metadata`` always, as 1.0.1
    sent it), keyed by its id; None for a score, which it cannot store."""
    # msgspec 0.18's stubs take bytes only; every version decodes any buffer.
    body = _decode_body(cast("bytes", record))
    if body.kind is not None:
        return None
    if body.metadata is None:
        body.metadata = {}
    return Job(record, _encode_json(body), str(body.id or ""))


def legacy_jobs(records: list[Encoded], stats: Stats) -> list[Job]:
    """The 1.0.1 requests for ``records``; the scores among them dropped (``unsupported``)."""
    jobs = [job for job in map(legacy_job, records) if job is not None]
    if len(jobs) < len(records):
        error = "the server speaks only the 1.0.1 protocol, which cannot store scores"
        stats.drop(DropReason.UNSUPPORTED, len(records) - len(jobs), error)
        stats.warn_loudly(
            "unsupported-score",
            f"banyan: {error}: log_score() records are dropped, counted as unsupported in "
            "get_stats() (upgrade the server to keep them)",
        )
    return jobs
