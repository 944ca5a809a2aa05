"""How a number reads on the page: percentages, milliseconds, p-values, signs.

Every figure is also written, unrounded, into a ``data-value`` attribute, so a
test (or a person with the inspector) can compare the page with the JSON.
"""

from __future__ import annotations

from banyan.server.analysis import MetricResult
from banyan.server.web._markup import Markup, h

MISSING = "n/a"
_MINUS = "\u2212"


def _signed(text: str, value: float) -> str:
    return ("+" if value > 0 else "") + text.replace("-", _MINUS)


def count(n: int | None) -> str:
    """A count with thousands separators."""
    return MISSING if n is None else f"{n:,}"


def plain(x: float | None) -> str:
    """A mean: three significant digits, no exponent for large values."""
    if x is None:
        return MISSING
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}".replace("-", _MINUS)


def percent(x: float | None, *, signed: bool = False) -> str:
    """A share or a relative change, in percent with one decimal."""
    if x is None:
        return MISSING
    text = f"{x * 100:.1f} %"
    return _signed(text, x) if signed else text


def points(x: float | None) -> str:
    """A difference of two proportions, in percentage points."""
    return MISSING if x is None else _signed(f"{x * 100:.1f} pp", x)


def milliseconds(x: float | None) -> str:
    """A latency."""
    return MISSING if x is None else f"{x:,.0f} ms"


def p_value(p: float | None) -> str:
    """A p-value; below 0.001 it reads ``< 0.001``."""
    if p is None:
        return MISSING
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_text(p: float | None) -> str:
    """A p-value in a sentence: ``p = 0.002`` or ``p < 0.001``."""
    shown = p_value(p)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"


def weight(bp: int) -> str:
    """A configured weight in basis points, as a percentage."""
    return f"{bp / 100:g} %"


def metric_value(metric: MetricResult, x: float | None) -> str:
    """A metric's value or interval bound: a percentage for a proportion."""
    return percent(x) if metric.kind == "proportion" else plain(x)


def difference(kind: str, x: float | None) -> str:
    """An absolute difference: percentage points for a proportion, signed otherwise."""
    if kind == "proportion":
        return points(x)
    return MISSING if x is None else _signed(plain(x), x)


def cell(text: str, value: float | int | None, **attrs: object) -> Markup:
    """A table cell showing ``text`` and carrying the exact ``value``."""
    data = None if value is None else repr(value)
    return h("td", {"data_value": data, **attrs}, text)


def interval(low: str, high: str) -> str:
    """An interval as it reads in a table."""
    return f"[{low}, {high}]"
