"""Outcomes on the caller's thread (#18): a record's usage and id, and score records.

``log_prompt`` calls :func:`outcome_record` only when one of its outcome keywords
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
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from banyan._exceptions import ScoreError, UsageError
from banyan._record import (
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    Record,
    Score,
    UsageRecord,
    clean,
    encode,
    plain,
)
from banyan._stats import DropReason
from banyan._usage import Usage, usage_fields

#: log_prompt's keyword-only outcome arguments (banyan._types.Outcomes).
OUTCOMES = frozenset({"usage", "record_id", *Usage._fields})

if TYPE_CHECKING:
    from banyan._prompts import PromptData
    from banyan._stats import Stats


def outcome_record(stats: Stats, outcomes: Mapping[str, Any], *fields: Any) -> Record:
    """The record of ``fields`` (Record's positional order) with ``outcomes``, log_prompt's
    keyword-only ``usage``, token counts, ``cost`` and ``record_id``.

    Never raises: a bad id is replaced by the generated one (``fields[0]``), bad usage
    left out, an unknown keyword ignored, each warned about once.
    """
    if outcomes.keys() - OUTCOMES:
        stats.warn_once(
            "unknown-outcome", "banyan: log_prompt got unknown keyword(s) %s; they are ignored",
            sorted(outcomes.keys() - OUTCOMES),
        )  # fmt: skip
    head = fields
    record_id = outcomes.get("record_id")
    if record_id is not None:
        if record_id.__class__ is str and 0 < len(record_id) <= MAX_ID_LENGTH:
            head = (clean(record_id), *fields[1:])
        else:
            stats.warn_once(
                "bad-record-id", "banyan: record_id must be text of 1 to %d characters, got "
                "%r; such records get a generated id", MAX_ID_LENGTH, record_id,
            )  # fmt: skip
    usage = {name: outcomes.get(name) for name in Usage._fields}
    given = outcomes.get("usage")
    if given is None and not any(value is not None for value in usage.values()):
        return Record(*head)
    try:
        found = usage_fields(given, **usage)
    except UsageError as exc:
        stats.warn_once("bad-usage", "banyan: %s; such records are logged without usage", exc)
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
