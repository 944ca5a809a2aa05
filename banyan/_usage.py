"""Token usage and cost: keyword arguments or a provider's usage object, as record fields.

``usage=response.usage`` works for the OpenAI SDK (Chat Completions:
``prompt_tokens``/``completion_tokens``; Responses API:
``input_tokens``/``output_tokens``), the Anthropic SDK (``input_tokens``/
``output_tokens`` plus its cache counts) and plain dicts of either shape.
The objects are read by attribute or key: neither SDK is imported here.

``input_tokens`` counts every input token, cached ones included (as OpenAI
counts them, and as the OpenTelemetry GenAI ``gen_ai.usage.input_tokens``
attribute is meant): Anthropic's ``input_tokens`` leaves out the tokens read
from or written to its cache, so those are added. ``cached_input_tokens`` is
the part of ``input_tokens`` read from a cache. ``cost`` is in US dollars.
"""

from __future__ import annotations

import decimal
import math
from typing import Any, NamedTuple

from banyan._exceptions import UsageError

#: Largest token count a record carries (MessagePack's signed 64-bit integers).
MAX_TOKENS = 2**63 - 1

#: Where each provider keeps each count: the first name found wins.
_INPUT = ("input_tokens", "prompt_tokens")
_OUTPUT = ("output_tokens", "completion_tokens")
#: Anthropic's cache counts, which its ``input_tokens`` leaves out.
_CACHE_READ, _CACHE_WRITE = "cache_read_input_tokens", "cache_creation_input_tokens"
#: OpenAI's cached part of the input: Responses API, then Chat Completions.
_DETAILS = ("input_tokens_details", "prompt_tokens_details")


class Usage(NamedTuple):
    """The usage fields of one record; None where unknown."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_input_tokens: int | None = None
    cost: float | None = None


#: What :func:`usage_fields` returns: a plain tuple in :class:`Usage`'s order (equal to
#: the Usage of the same values; a NamedTuple costs a Python-level ``__new__`` a call).
Fields = tuple[int | None, int | None, int | None, float | None]

#: Every name read from a usage object (or from the response holding it).
_NAMES = frozenset({*_INPUT, *_OUTPUT, _CACHE_READ, _CACHE_WRITE, *_DETAILS, "usage"})


def usage_fields(
    usage: Any = None,
    input_tokens: Any = None,
    output_tokens: Any = None,
    cached_input_tokens: Any = None,
    cost: Any = None,
) -> Fields:
    """The record fields for a usage object and/or counts and cost (a count given wins).

    Raises UsageError for a count that is not a whole number from 0 to 2**63 - 1,
    a cost that is not a finite number of at least 0, or a ``usage`` that holds
    no token count.
    """
    if usage is not None:
        found_input, found_output, found_cached = _read(usage)
        input_tokens = found_input if input_tokens is None else input_tokens
        output_tokens = found_output if output_tokens is None else output_tokens
        if cached_input_tokens is None:
            cached_input_tokens = found_cached
    # The usual values (None, ints in range, a finite float) pass one test each; NaN fails
    # the comparison.
    for count in (input_tokens, output_tokens, cached_input_tokens):
        if count is not None and (count.__class__ is not int or not 0 <= count <= MAX_TOKENS):
            break
    else:
        if cost is None or (cost.__class__ is float and 0.0 <= cost < math.inf):
            return input_tokens, output_tokens, cached_input_tokens, cost
    return (
        _tokens("input_tokens", input_tokens),
        _tokens("output_tokens", output_tokens),
        _tokens("cached_input_tokens", cached_input_tokens),
        _cost(cost),
    )


def _fields(obj: Any) -> dict[str, Any]:
    """``obj``'s values by name: a dict as it is, else the instance's own fields.

    Pydantic models (both SDKs' usage types), dataclasses and namespaces keep
    them in ``__dict__`` (pydantic's undeclared ones in ``__pydantic_extra__``):
    read there, a name the object lacks costs a dict miss, where ``getattr`` on
    a pydantic model raises and catches an AttributeError (~3 us each). An
    object holding none of the names there is read attribute by attribute.
    """
    if isinstance(obj, dict):
        return obj
    found = getattr(obj, "__dict__", None)
    if found.__class__ is dict:
        extra = getattr(obj, "__pydantic_extra__", None)
        if extra:
            found = {**found, **extra}
        if not _NAMES.isdisjoint(found):
            return found
    return {name: getattr(obj, name, None) for name in _NAMES}


def _read(usage: Any, outer: bool = True) -> tuple[Any, Any, Any]:
    """The counts of a provider's usage object (or of a response that has ``usage``)."""
    get = _fields(usage).get
    given = get("input_tokens")
    if given is None:
        given = get("prompt_tokens")
    output = get("output_tokens")
    if output is None:
        output = get("completion_tokens")
    if given is None and output is None:
        if outer and get("usage") is not None:
            return _read(get("usage"), outer=False)
        raise UsageError(f"usage holds no token counts: {type(usage).__name__}")
    read, written = get(_CACHE_READ), get(_CACHE_WRITE)
    cached = read
    if read is None:
        details = get("input_tokens_details")
        if details is None:
            details = get("prompt_tokens_details")
        if details is not None:
            # A missing name here is rare (every SDK version declares cached_tokens).
            cached = (
                details.get("cached_tokens")
                if isinstance(details, dict)
                else getattr(details, "cached_tokens", None)
            )
    if given is not None and (read is not None or written is not None):
        parts = (("input_tokens", given), (_CACHE_READ, read), (_CACHE_WRITE, written))
        given = sum(_tokens(name, value) or 0 for name, value in parts)
    return given, output, cached


def _tokens(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        raise UsageError(f"{name} must be a whole number from 0 to {MAX_TOKENS}, got {value!r}")
    return int(value)


def _cost(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value) if isinstance(value, int | float | decimal.Decimal) else math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and number >= 0):
        raise UsageError(f"cost must be a finite number of US dollars >= 0, got {value!r}")
    return number
