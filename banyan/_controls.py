"""Production controls (#16): ``before_send``, ``sample_rate``, the off switch, the environment.

What runs on the caller's thread between building a record and encoding it
lives here, in :class:`Gate`; a logger without a hook and with every record
sampled has no gate, and ``log_prompt`` pays one ``is None`` test for it.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from types import UnionType
from typing import Any, Union, get_args, get_origin

import msgspec

from banyan._exceptions import ConfigurationError
from banyan._record import SCORE, Record, Score, as_metadata, text
from banyan._redact import LogEvent
from banyan._scores import checked_name, checked_value
from banyan._stats import DropReason, Stats
from banyan._warn import warn_once

#: Options that never come from the environment: objects, or named apart (BANYAN_SPOOL_DIR
#: and BANYAN_CACHE_DIR are roots that a per-project directory is made in).
NOT_FROM_ENV = frozenset(
    {"api_key", "base_url", "project_id", "http_transport", "before_send", "spool_dir", "cache_dir"}
)
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
#: Metadata key that carries the rate a record was sampled at. The analysis does not
#: weight by it: sampling by subject is independent of the variant (docs/statistics.md).
SAMPLE_RATE_KEY = "banyan.sample_rate"
#: Sampling decisions remembered per logger for the scores that name a record by id only:
#: feedback on an answer comes while a few thousand records follow it in one process, and
#: 4,096 ids of at most 128 characters take well under 1 MB.
REMEMBERED = 4096


def from_environment(options: dict[str, Any], types: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` completed from ``BANYAN_<OPTION>`` variables, read as the option's type
    in ``types``; explicit arguments win."""
    found = dict(options)
    # BANYAN_DISABLED=1 is BANYAN_ENABLED=0 (OTEL_SDK_DISABLED's shape).
    for name, kind in types.items():
        raw = os.environ.get(f"BANYAN_{name.upper()}")
        if name in found or name in NOT_FROM_ENV or raw is None:
            continue
        found[name] = _parse(f"BANYAN_{name.upper()}", raw.strip(), kind)
    if "enabled" not in options and os.environ.get("BANYAN_DISABLED") is not None:
        found["enabled"] = not _parse("BANYAN_DISABLED", os.environ["BANYAN_DISABLED"], bool)
    return found


def named(error: ConfigurationError, options: Mapping[str, Any]) -> ConfigurationError:
    """``error`` naming the ``BANYAN_*`` variable its option came from, if it did."""
    option = str(error).split(" ", 1)[0]
    variable = f"BANYAN_{option.upper()}"
    if option in options and os.environ.get(variable) is not None:
        return ConfigurationError(f"{variable}: {error}")
    return error


def _parse(variable: str, raw: str, kind: Any) -> Any:
    """``raw`` as a value of ``kind`` (an option's annotation: ``float | None``, a Literal...)."""
    kinds = get_args(kind) if get_origin(kind) in (Union, UnionType) else (kind,)
    if type(None) in kinds and raw.lower() in ("", "none"):
        return None
    parser = next((parser for parser in (bool, int, float) if parser in kinds), None)
    if parser is None:
        return raw  # text; a Literal is checked by Config
    try:
        if parser is bool:
            if raw.lower() not in _TRUE + _FALSE:
                raise ValueError("not a yes/no value")
            return raw.lower() in _TRUE
        return parser(raw)
    except ValueError:
        raise ConfigurationError(f"{variable} must be a {parser.__name__}, got {raw!r}") from None


def check(enabled: object, debug: object, sample_rate: object, before_send: object) -> None:
    """Refuse bad production controls with a :class:`~banyan.ConfigurationError`."""
    for name, value in (("enabled", enabled), ("debug", debug)):
        if not isinstance(value, bool):
            raise ConfigurationError(f"{name} must be True or False, got {value!r}")
    rate = sample_rate if isinstance(sample_rate, int | float) else math.nan
    if isinstance(sample_rate, bool) or not 0.0 <= rate <= 1.0:
        raise ConfigurationError(
            f"sample_rate must be a number from 0.0 to 1.0, got {sample_rate!r}"
        )
    if before_send is not None and not callable(before_send):
        raise ConfigurationError(f"before_send must be callable or None, got {before_send!r}")


def sampled_in(rate: float, record: Record | Score) -> bool:
    """Whether ``record`` is kept at ``rate``: by its experiment subject when it has one,
    else by its id (a score by the id of the record it names), so a score follows its record.
    """
    # A subject is in or out for every record, whichever process logs it (experiments
    # compare the same users across variants).
    unit = record.sticky_value
    if unit is None:
        unit = record.record_id or record.id if isinstance(record, Score) else record.id
    digest = hashlib.blake2b(unit.encode(errors="replace"), digest_size=8).digest()
    return int.from_bytes(digest, "big") < rate * 2**64


class Gate:
    """Sampling, then ``before_send``, for one logger and every kind of record it sends;
    every record it stops is counted."""

    def __init__(
        self, rate: float, hook: Callable[[LogEvent], LogEvent | None] | None, stats: Stats
    ) -> None:
        self._rate = rate
        self._hook = hook
        self._stats = stats
        self._decisions: OrderedDict[str, bool] = OrderedDict()

    def __call__(self, record: Record | Score, named: bool = False) -> bool | None:
        """None to send ``record`` (changed in place), else what ``log_prompt`` returns;
        ``named``: the record's id is the caller's, which a score may name alone."""
        if self._rate < 1.0:
            if not self._sampled_in(record, named):
                self._stats.drop(DropReason.SAMPLED, entry=True)
                return True
            meta = dict(record.metadata) if record.metadata else {}
            meta[SAMPLE_RATE_KEY] = self._rate
            record.metadata = meta
        return None if self._hook is None else self._before_send(self._hook, record)

    def _sampled_in(self, record: Record | Score, named: bool) -> bool:
        """The sampling decision; a score with only a record id follows that record's, made
        by its subject, while this process remembers it (#16)."""
        if record.sticky_value is None and isinstance(record, Score):
            remembered = self._decisions.get(record.record_id or "")
            return sampled_in(self._rate, record) if remembered is None else remembered
        kept = sampled_in(self._rate, record)
        if named and record.sticky_value is not None:
            self._decisions[record.id] = kept
            if len(self._decisions) > REMEMBERED:
                self._decisions.popitem(last=False)
        return kept

    def _before_send(
        self, hook: Callable[[LogEvent], LogEvent | None], record: Record | Score
    ) -> bool | None:
        try:
            changed = hook(_event(record))
            if changed is None:
                self._stats.drop(DropReason.BEFORE_SEND, entry=True)
                return True
            for name, value in _checked(record, dict(changed)).items():
                setattr(record, name, value)
            return None
        except Exception as exc:
            # Never sent unredacted: a hook that fails drops the record.
            self._stats.drop(DropReason.BEFORE_SEND_ERROR, error=repr(exc), entry=True)
            message = (
                f"banyan: before_send raised {exc!r}; such records are dropped and counted in "
                "get_stats()['dropped']['before_send_error']"
            )
            self._stats.warn_once("before_send", "%s", message)
            warn_once("before_send", message)
            return False


def _event(record: Record | Score) -> Any:
    """``record``'s fields as ``before_send`` sees them: ``kind`` first, no id nor timestamp."""
    fields = msgspec.structs.asdict(record)
    del fields["id"], fields["ts"]
    return {"kind": SCORE if record.__class__ is Score else "prompt", **fields}


def _checked(record: Record | Score, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields a hook returned, shaped as the wire wants them; raises for a bad score."""
    fields.pop("kind", None)  # the record's kind is not the hook's to change
    fields["metadata"] = as_metadata(fields.get("metadata"))
    if record.__class__ is Score:
        fields["name"], fields["value"] = (
            checked_name(fields["name"]),
            checked_value(fields["value"]),
        )
    else:
        fields["input"], fields["output"] = text(fields["input"]), text(fields["output"])
    return fields
