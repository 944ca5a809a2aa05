"""What ``log_prompt`` hands over when its fast path cannot finish a record.

Arguments of unexpected types (made plain, then logged again), text that
does not encode, a record too large to keep the thread's buffer for, a
``blocking`` send, no credit left in the ring, and a process forked without
the fork hooks: each is rare, so it lives here, off the hot path, which ends
in one push. Every record that is not pushed is dropped and counted.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from banyan import _fork
from banyan._delivery import MAX_RECORD_BYTES
from banyan._promptdata import PromptData, as_prompt
from banyan._record import (
    Encoded,
    IdSource,
    Record,
    Score,
    as_duration,
    as_label,
    as_metadata,
    encode,
    normalize,
    text,
)
from banyan._stats import DropReason

if TYPE_CHECKING:
    from banyan._ledger import Ledger
    from banyan._pipeline import Pipeline


def merge(wire: tuple[str | None, ...], *given: str | None) -> tuple[str | None, ...]:
    # Arguments passed explicitly win over the prompt's own fields; ids are text on the wire.
    head = tuple(
        theirs if mine is None else mine if isinstance(mine, str) else str(mine)
        for mine, theirs in zip(given, wire, strict=False)
    )
    return head + wire[len(given) :]


class SlowPaths:
    """log_prompt's slow paths, mixed into :class:`~banyan.PromptStackLogger`."""

    _stats: Ledger
    _here: memoryview
    _pid: int
    _ids: IdSource
    _pipeline: Pipeline
    _push: Callable[[Encoded], bool]
    _next_id: Callable[[], str]
    log_prompt: Callable[..., bool]

    if TYPE_CHECKING:

        def _after_fork_in_child(self) -> None: ...

    def _log_disabled(self, *args: Any, **kwargs: Any) -> bool:
        """log_prompt when ``enabled=False``: counted as ``disabled``, nothing else."""
        self._stats.drop(DropReason.DISABLED, entry=True)
        return True

    def _log_odd(  # noqa: PLR0917 - log_prompt's arguments
        self,
        exc: Exception,
        input: Any,
        output: Any,
        prompt_data: Any,
        prompt_id: Any,
        prompt_name: Any,
        version: Any,
        branch_name: Any,
        model: Any,
        metadata: Any,
        duration_ms: Any,
        blocking: bool,
        outcomes: tuple[Any, ...],
    ) -> bool:
        """log_prompt's fast path failed (``exc``) on arguments of an unexpected type: make
        them plain and try once more. A value that cannot even be shown is the caller's
        ``encode_error``; when there was nothing to make plain, the failure is ours."""
        given = (input, output, prompt_data, prompt_id, prompt_name, version, branch_name,
                 model, metadata, duration_ms)  # fmt: skip
        try:
            plain_args: list[Any] = [
                text(input), text(output), self._as_prompt(prompt_data),
                *map(as_label, given[3:8]), self._as_metadata(metadata), as_duration(duration_ms),
            ]  # fmt: skip
            plain_args.append(blocking)
        except Exception as bad:
            return self._stats.drop_entry(DropReason.ENCODE_ERROR, bad)
        # map() stops at the shorter: blocking, last in plain_args, is not compared.
        if all(map(operator.is_, plain_args, given)):
            return self._stats.drop_entry(DropReason.INTERNAL_ERROR, exc)
        return self.log_prompt(*plain_args, *outcomes)

    def _duration(self, value: Any) -> float | None:
        """log_prompt's ``duration_ms`` of an unusual type or value, as sent; one left out is
        warned about once (the record is logged all the same)."""
        duration = as_duration(value)
        if duration is None:
            self._stats.warn_loudly(
                "bad-duration_ms", "banyan: duration_ms must be a finite number of milliseconds "
                f"or a timedelta, got {value!r}; such records are logged without a duration",
            )  # fmt: skip
        return duration

    def _as_prompt(self, value: Any) -> PromptData | None:
        if value is None or isinstance(value, PromptData):
            return value
        try:
            return as_prompt(value)
        except Exception:
            self._stats.warn_once(
                "not-a-prompt", "banyan: prompt_data is not a prompt (a %s); such records are "
                "logged without prompt fields", type(value).__name__,
            )  # fmt: skip
            return None

    def _as_metadata(self, value: Any) -> dict[str, Any] | None:
        if value is not None and not isinstance(value, Mapping):
            self._stats.warn_once(
                "metadata-not-a-map", "banyan: metadata is not a mapping (a %s); such metadata "
                'is logged as {"value": metadata}', type(value).__name__,
            )  # fmt: skip
        return as_metadata(value)

    def _large(self, slot: list[bytearray | None], size: int) -> bool:
        """A large record: the thread's buffer is replaced (not kept that big); False, the
        record dropped and counted, when the server would refuse it (no place in the ring,
        nor in the spool)."""
        slot[0] = bytearray()
        if size <= MAX_RECORD_BYTES:
            return True
        error = f"a {size} byte record is over the server's limit of {MAX_RECORD_BYTES} bytes"
        return self._stats.drop_entry(DropReason.TOO_LARGE, error)

    def _push_slow(self, record: Record | Score, data: Encoded) -> bool:
        # No credit (the first record, durable mode, a full ring, after shutdown, in a
        # forked child).
        if not self._here[0]:
            data = self._unforked(record, data)
        return self._push(data)

    def _unforked(self, record: Record | Score, data: Encoded) -> Encoded:
        # A forked child whose hooks did not run (uWSGI without its fork hooks) numbered
        # `record` from its parent's ids: reset for this process and number it again (an id
        # the caller gave stays).
        if self._here[0] or self._pid == _fork.pid():
            return data
        made = self._ids.made(record.id)
        self._after_fork_in_child()
        if not made:
            return data
        record.id = self._next_id()
        return encode(record)

    def _encode_slow(self, record: Record) -> bytes | None:
        # Text fields must be text and valid UTF-8 on the wire; metadata becomes plain
        # JSON-like data. None (the record dropped and counted) when even that fails.
        try:
            normalize(record)
            return encode(record)
        except Exception as exc:
            self._stats.drop_entry(DropReason.ENCODE_ERROR, exc)
            return None

    def _send_now(self, record: Record | Score, data: Encoded) -> bool:
        return self._pipeline.send_now(self._unforked(record, data))
