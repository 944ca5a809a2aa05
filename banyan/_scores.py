"""Outcomes on the caller's thread (#18): a record's usage and id, and score records.

``log_prompt`` calls :func:`outcome_record` only when one of its outcome arguments
(``usage``, the token counts, ``cost``, ``record_id``) is given; without them it
builds the plain :class:`~banyan._record.Record` as before. ``log_score`` checks
its arguments with :func:`score`, which raises :class:`~banyan.ScoreError` for a
mistake in the call and builds the :class:`~banyan._record.Score` to encode.

Scores pass the same gate as records (``banyan._controls``): a score follows its
subject's sampling decision, or its record's, and ``before_send`` sees it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from banyan._exceptions import ScoreError, UsageError
from banyan._record import (
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    SCRATCH_MAX,
    Encoded,
    Record,
    Score,
    UsageRecord,
    clean,
    encode,
    plain,
)
from banyan._stats import DropReason
from banyan._usage import usage_fields

if TYPE_CHECKING:
    from banyan._config import Config
    from banyan._controls import Gate
    from banyan._ledger import Ledger
    from banyan._promptdata import PromptData
    from banyan._stats import Stats


def outcome_record(stats: Stats, outcomes: tuple[Any, ...], record_id: Any, *fields: Any) -> Record:
    """The record of ``fields`` (Record's positional order) with log_prompt's ``usage``,
    token counts and ``cost`` (``outcomes``, in that order) and ``record_id``.

    Never raises: a bad id is replaced by the generated one (``fields[0]``), bad usage
    left out, each warned about once.
    """
    head = fields
    if record_id is not None:
        if record_id.__class__ is str and 0 < len(record_id) <= MAX_ID_LENGTH:
            head = (clean(record_id), *fields[1:])
        else:
            stats.warn_loudly(
                "bad-record-id", f"banyan: record_id must be text of 1 to {MAX_ID_LENGTH} "
                f"characters, got {record_id!r}; such records get a generated id",
            )  # fmt: skip
    # Not outcomes.count(None): that compares a usage object by ==, which pydantic runs in Python.
    if outcomes[0] is None and outcomes[1:].count(None) == len(outcomes) - 1:
        return Record(*head)
    try:
        found = usage_fields(*outcomes)
    except UsageError as exc:
        # One warning per argument: the error names it first.
        argument = str(exc).split(" ", 1)[0]
        stats.warn_loudly(
            f"bad-usage-{argument}", f"banyan: {exc}; such records are logged without usage"
        )
        return Record(*head)
    # Positional: UsageRecord's fields are Record's, then the usage ones in Usage's order.
    return UsageRecord(*head, *found)  # type: ignore[call-arg]


def score(
    name: Any, value: Any, wire: tuple[str | None, ...] | None, *, ids: Callable[[], str],
    record_id: Any, metadata: Any, score_id: Any,
) -> Score:  # fmt: skip
    """The score record of one ``log_score`` call; ScoreError for a mistake in the call."""
    name = checked_name(name)
    for label, given in (("record_id", record_id), ("score_id", score_id)):
        if given is not None and not (given.__class__ is str and 0 < len(given) <= MAX_ID_LENGTH):
            raise ScoreError(f"{label} must be text of 1 to {MAX_ID_LENGTH} characters")
    if metadata is not None and not isinstance(metadata, dict):
        raise ScoreError(f"metadata must be a dict, got a {type(metadata).__name__}")
    experiment_id, version_id, sticky_key, sticky_value = wire[4:] if wire else (None,) * 4
    return Score(
        clean(score_id) if score_id else ids(), time.time(), name, checked_value(value),
        clean(record_id) if record_id else None, experiment_id, version_id, sticky_key,
        sticky_value, metadata,
    )  # fmt: skip


def attribution(prompt_data: PromptData | None, record_id: Any) -> tuple[str | None, ...] | None:
    """The wire fields of ``prompt_data``; ScoreError when the score has nothing to count for."""
    if prompt_data is None:
        if record_id is None:
            raise ScoreError("log_score needs prompt_data (an experiment subject) or record_id")
        return None
    if not hasattr(prompt_data, "_wire"):
        raise ScoreError(f"prompt_data must be a PromptData, got a {type(prompt_data).__name__}")
    return prompt_data._wire


def checked_name(name: Any) -> str:
    """A score's ``name`` as sent; ScoreError unless it is text of 1 to 128 characters."""
    if name.__class__ is not str or not 0 < len(name) <= MAX_NAME_LENGTH:
        raise ScoreError(f"name must be text of 1 to {MAX_NAME_LENGTH} characters, got {name!r}")
    return clean(name)


def checked_value(value: Any) -> bool | float | str:
    """A score's ``value`` as sent (a number as a float); ScoreError for anything else."""
    # bool first: it is an int too.
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        number = float(value) if abs(value) < 2**1023 else math.inf
        if math.isfinite(number):
            return number
    if isinstance(value, str) and 0 < len(value) <= MAX_NAME_LENGTH:
        return clean(value)
    raise ScoreError(
        "value must be a bool, a finite number or a category of 1 to "
        f"{MAX_NAME_LENGTH} characters, got {value!r}"
    )


def encoded(record: Score, stats: Stats) -> bytes | None:
    """``record`` on the wire, its metadata made plain; None (counted) when it cannot be."""
    try:
        if record.metadata is not None:
            record.metadata = plain(record.metadata)
        return encode(record)
    except Exception as exc:
        stats.drop_entry(DropReason.ENCODE_ERROR, exc)
        return None


class ScoreCalls:
    """``log_score``, mixed into :class:`~banyan.PromptStackLogger`."""

    _config: Config
    _stats: Ledger
    _next_id: Callable[[], str]
    _try_append: Callable[[Encoded, int], bool]
    _gate: Gate | None

    if TYPE_CHECKING:

        def _log_disabled(self, *args: Any, **kwargs: Any) -> bool: ...
        def _large(self, slot: list[bytearray | None], size: int) -> bool: ...
        def _send_now(self, record: Record | Score, data: Encoded) -> bool: ...
        def _push_slow(self, record: Record | Score, data: Encoded) -> bool: ...

    def log_score(
        self,
        name: str,
        value: bool | float | str,
        *,
        prompt_data: PromptData | None = None,
        record_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        score_id: str | None = None,
        blocking: bool = False,
    ) -> bool:
        """Log an outcome: a number, a boolean or a category; True when queued (or delivered).

        It counts for the experiment subject and variant of ``prompt_data`` (the
        prompt the scored answer used, or one routed again for the same subject,
        in any process), and/or for the record logged with ``record_id``. It
        travels like a record (same queue, batches, retries, spool and
        ``get_stats()`` counts), follows the ``sample_rate`` decision of its
        subject (else of its record), and ``before_send`` sees it (``kind``
        ``"score"``). A prompt outside an experiment, without ``record_id``, is
        skipped (``logs_skipped``).
        Raises :class:`~banyan.ScoreError` for a bad name, value, id or metadata,
        or without ``prompt_data`` and ``record_id``; never for delivery.
        """
        wire = attribution(prompt_data, record_id)
        record = score(
            name, value, wire, ids=self._next_id, record_id=record_id, metadata=metadata,
            score_id=score_id,
        )  # fmt: skip
        if not self._config.enabled:
            return self._log_disabled()
        if record_id is None and (record.sticky_value is None or record.experiment_id is None):
            self._stats.skip()
            self._stats.warn_once(
                "score-no-subject", "banyan: a score for a prompt outside an experiment (or "
                "with logging off) and without record_id is skipped",
            )  # fmt: skip
            return True
        # The records' gate: sampling (by subject, else by record_id) and before_send.
        if self._gate is not None and (stopped := self._gate(record)) is not None:
            return stopped
        data = encoded(record, self._stats)
        if data is None or (len(data) > SCRATCH_MAX and not self._large([None], len(data))):
            return False
        if blocking:
            return self._send_now(record, data)
        return self._try_append(data, len(data)) or self._push_slow(record, data)
