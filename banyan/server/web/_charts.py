"""Charts drawn on the server as inline SVG: no script, nothing fetched, text escaped.

Three kinds: a value per variant with its interval as a whisker, grouped bars
(latency percentiles per variant) and lines over time (subjects per variant).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from banyan.server.web._markup import Markup, h, join

#: One colour per variant, in configuration order (the control first).
PALETTE = ("#64748b", "#2563eb", "#ea580c", "#059669", "#9333ea", "#db2777", "#ca8a04")
WIDTH = 900
_LEFT, _RIGHT, _ROW, _TOP = 170, 120, 36, 34


def colour(index: int) -> str:
    """The colour of the variant at ``index``."""
    return PALETTE[index % len(PALETTE)]


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering ``[low, high]``."""
    if not high > low:
        low, high = low - 1, high + 1
    raw = (high - low) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.floor(low / step) * step
    return [first + i * step for i in range(math.ceil((high - first) / step) + 1)]


@dataclass(frozen=True)
class Scale:
    """Maps data values in ``[lo, hi]`` onto pixels ``[start, end]``."""

    lo: float
    hi: float
    start: float
    end: float

    def __call__(self, x: float) -> float:
        return self.start + (x - self.lo) / (self.hi - self.lo) * (self.end - self.start)


def _svg(height: float, label: str, *body: Markup) -> Markup:
    return h(
        "svg",
        {
            "viewBox": f"0 0 {WIDTH} {height:.0f}",
            "role": "img",
            "aria_label": label,
            "class": "chart",
        },
        h("title", None, label),
        *body,
    )


def _text(x: float, y: float, text: str, cls: str = "", anchor: str = "start") -> Markup:
    attrs = {"x": f"{x:.1f}", "y": f"{y:.1f}", "class": cls or None, "text_anchor": anchor}
    return h("text", attrs, text)


def _line(
    x1: float, y1: float, x2: float, y2: float, cls: str, *, stroke: str | None = None
) -> Markup:
    coords = {"x1": f"{x1:.1f}", "y1": f"{y1:.1f}", "x2": f"{x2:.1f}", "y2": f"{y2:.1f}"}
    return h("line", {**coords, "class": cls, "stroke": stroke})


def _x_grid(
    scale: Scale, values: list[float], top: float, bottom: float, fmt: Callable[[float], str]
) -> Markup:
    return join(
        join(
            (
                _line(scale(v), top, scale(v), bottom, "grid"),
                _text(scale(v), bottom + 16, fmt(v), "tick", "middle"),
            )
        )
        for v in values
    )


@dataclass(frozen=True)
class Whisker:
    """One row of an interval chart: a variant's value and interval."""

    label: str
    value: float | None
    low: float | None
    high: float | None
    colour: str


def interval_chart(rows: Sequence[Whisker], fmt: Callable[[float], str], label: str) -> Markup:
    """Each variant's value as a dot and its interval as a whisker, on one shared axis."""
    known = [x for r in rows for x in (r.value, r.low, r.high) if x is not None]
    grid = ticks(min(known, default=0.0), max(known, default=1.0))
    bottom = _TOP + _ROW * len(rows)
    scale = Scale(grid[0], grid[-1], _LEFT, WIDTH - _RIGHT)
    body = [_x_grid(scale, grid, _TOP - 14, bottom, fmt)]
    # The control's value as a reference line: which treatments clear it at a glance.
    if rows and rows[0].value is not None:
        x = scale(rows[0].value)
        body.append(_line(x, _TOP - 4, x, bottom, "reference", stroke=rows[0].colour))
    for i, row in enumerate(rows):
        y = _TOP + _ROW * i + _ROW / 2
        body.append(_text(_LEFT - 12, y + 4, row.label, "label", "end"))
        if row.low is not None and row.high is not None:
            x1, x2 = scale(row.low), scale(row.high)
            body += [
                _line(x1, y, x2, y, "whisker", stroke=row.colour),
                _line(x1, y - 7, x1, y + 7, "whisker", stroke=row.colour),
                _line(x2, y - 7, x2, y + 7, "whisker", stroke=row.colour),
            ]
        if row.value is not None:
            cx = f"{scale(row.value):.1f}"
            body.append(h("circle", {"cx": cx, "cy": f"{y:.1f}", "r": 6, "fill": row.colour}))
            body.append(_text(WIDTH - _RIGHT + 12, y + 4, fmt(row.value), "value"))
    return _svg(bottom + 26, label, *body)


def bar_chart(
    groups: Sequence[tuple[str, Sequence[float | None]]],
    series: Sequence[str],
    fmt: Callable[[float], str],
    label: str,
) -> Markup:
    """Grouped horizontal bars: one group per variant, one bar per series (p50, p95, p99)."""
    known = [x for _, values in groups for x in values if x is not None]
    grid = ticks(0.0, max(known, default=1.0))
    bar, gap = 12, 14
    height = len(series) * bar
    bottom = _TOP + len(groups) * (height + gap)
    scale = Scale(0.0, grid[-1], _LEFT, WIDTH - _RIGHT)
    body = [_x_grid(scale, grid, _TOP - 14, bottom, fmt), _legend(series, _shade)]
    for i, (name, values) in enumerate(groups):
        y0 = _TOP + i * (height + gap)
        body.append(_text(_LEFT - 12, y0 + height / 2 + 4, name, "label", "end"))
        for j, value in enumerate(values):
            if value is None:
                continue
            y = y0 + j * bar
            body.append(
                h(
                    "rect",
                    {
                        "x": _LEFT,
                        "y": f"{y:.1f}",
                        "height": bar - 2,
                        "width": f"{scale(value) - _LEFT:.1f}",
                        "fill": _shade(j),
                    },
                )
            )
            body.append(_text(scale(value) + 6, y + bar - 3, fmt(value), "tick"))
    return _svg(bottom + 26, label, *body)


def _shade(index: int) -> str:
    return ("#93c5fd", "#3b82f6", "#1e3a8a")[index % 3]


def _legend(names: Sequence[str], paint: Callable[[int], str]) -> Markup:
    items = []
    for i, name in enumerate(names):
        x = _LEFT + i * 130
        items.append(h("rect", {"x": x, "y": 4, "width": 12, "height": 12, "fill": paint(i)}))
        items.append(_text(x + 18, 14, name, "tick"))
    return join(items)


@dataclass(frozen=True)
class Line:
    """One line of a line chart: a variant's cumulative values over the time points."""

    label: str
    values: Sequence[int]
    #: The variant's id, kept in the line's ``data-variant`` (its last value in ``data-value``).
    key: str = ""


def line_chart(times: Sequence[str], lines: Sequence[Line], label: str) -> Markup:
    """One line per variant over time points (cumulative subjects); the legend names each
    line's last value."""
    top, bottom, step = _TOP, _TOP + 200, max(1, math.ceil(len(times) / 8))
    grid = ticks(0.0, float(max((max(ln.values, default=0) for ln in lines), default=1)))
    y = Scale(grid[0], grid[-1], bottom, top)
    x = Scale(0.0, float(max(len(times) - 1, 1)), 70, WIDTH - _RIGHT)
    body = [_legend([f"{ln.label}: {_last(ln):,}" for ln in lines], colour)]
    for v in grid:
        body += [
            _line(70, y(v), WIDTH - _RIGHT, y(v), "grid"),
            _text(62, y(v) + 4, f"{v:,.0f}", "tick", "end"),
        ]
    body += [
        _text(x(i), bottom + 18, t, "tick", "middle") for i, t in enumerate(times) if i % step == 0
    ]
    # The control last, dashed and on top: equal lines (a fair split) still show both.
    for i, ln in reversed(list(enumerate(lines))):
        points = " ".join(f"{x(j):.1f},{y(v):.1f}" for j, v in enumerate(ln.values))
        body.append(
            h(
                "polyline",
                {
                    "points": points,
                    "fill": "none",
                    "stroke": colour(i),
                    "stroke_width": 2.5,
                    "stroke_dasharray": "7 5" if i == 0 else None,
                    "data_variant": ln.key or None,
                    "data_value": _last(ln),
                },
            )
        )
    return _svg(bottom + 28, label, *body)


def _last(line: Line) -> int:
    return line.values[-1] if line.values else 0
