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


def usage_fields(
    usage: Any = None,
    *,
    input_tokens: Any = None,
    output_tokens: Any = None,
    cached_input_tokens: Any = None,
    cost: Any = None,
) -> Usage:
    """The record fields for a usage object and/or keyword arguments (a keyword wins).

    Raises UsageError for a count that is not a whole number from 0 to 2**63 - 1,
    a cost that is not a finite number of at least 0, or a ``usage`` that holds
    no token count.
    """
    found = _read(usage) if usage is not None else Usage()
    return Usage(
        _tokens("input_tokens", input_tokens, found.input_tokens),
        _tokens("output_tokens", output_tokens, found.output_tokens),
        _tokens("cached_input_tokens", cached_input_tokens, found.cached_input_tokens),
        _cost(cost),
    )


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, dict):
        return obj.get(name)
    return getattr(obj, name, None)


def _first(obj: Any, names: tuple[str, ...]) -> Any:
    for name in names:
        value = _get(obj, name)
        if value is not None:
            return value
    return None


def _read(usage: Any) -> Usage:
    """The counts of a provider's usage object (or of a response that has ``usage``)."""
    if _first(usage, _INPUT + _OUTPUT) is None and _get(usage, "usage") is not None:
        usage = _get(usage, "usage")
    given, output = _first(usage, _INPUT), _first(usage, _OUTPUT)
    if given is None and output is None:
        raise UsageError(f"usage holds no token counts: {type(usage).__name__}")
    read, written = _get(usage, _CACHE_READ), _get(usage, _CACHE_WRITE)
    cached = read if read is not None else _first(_first(usage, _DETAILS), ("cached_tokens",))
    total = given
    if given is not None and (read is not None or written is not None):
        parts = (("input_tokens", given), (_CACHE_READ, read), (_CACHE_WRITE, written))
        total = sum(_tokens(name, value) or 0 for name, value in parts)
    return Usage(total, output, cached)


def _tokens(name: str, value: Any, default: Any = None) -> int | None:
    if value is None:
        value = default
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
