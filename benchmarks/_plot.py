"""Writing a benchmark's results: JSON stamped with the machine and command, and bar plots.

Plots use matplotlib's Agg backend (no display needed); matplotlib is
imported only when a plot is drawn.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes

RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    """The facts every result file carries: python, cpus, platform."""
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }


def command() -> str:
    """The command line that started this process."""
    return shlex.join(sys.orig_argv)


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """Write ``results/<name>.json``: ``payload`` plus machine facts and command."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    body = {"benchmark": name, "command": command(), "machine": machine(), **payload}
    path.write_text(json.dumps(body, indent=2) + "\n")
    return path


def bars(
    path: Path,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    ylabel: str,
    groups: Sequence[str] | None = None,
    markers: Sequence[float] | None = None,
    marker_label: str = "p99",
    line: tuple[float, str] | None = None,
    log: bool = False,
    fmt: str = "{:,.0f}",
) -> None:
    """One bar per label, coloured by group, each labelled with its value.

    ``markers`` draws a whisker from each bar up to a second, labelled value
    (a p99, say); ``line`` draws a dashed horizontal reference (value, legend label).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    names = list(dict.fromkeys(groups or ()))
    colours = [palette[names.index(g) % len(palette)] for g in groups] if groups else None
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(labels) + 2), 4.5))
    xs = list(range(len(labels)))
    drawn = ax.bar(xs, values, color=colours, width=0.6)
    # With whiskers, values go inside the bars so that the whisker does not cross them.
    inside = {"label_type": "center", "color": "white"} if markers is not None else {"padding": 2}
    ax.bar_label(drawn, labels=[fmt.format(v) for v in values], fontsize=8, **inside)
    if markers is not None:
        _whiskers(ax, xs, values, markers, label=marker_label, fmt=fmt)
    if line is not None:
        ax.axhline(line[0], color="grey", linestyle="--", linewidth=1, label=line[1])
    ax.set_xticks(xs)
    ax.set_xticklabels(labels, fontsize=8, rotation=15, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if log:
        ax.set_yscale("log")
        # Bars on a log axis start at its bottom: put it at the decade below the lowest bar.
        ax.set_ylim(bottom=10 ** math.floor(math.log10(max(min(values), 1e-9))))
    _legend(ax, names, palette)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _whiskers(
    ax: Axes, xs: list[int], values: Sequence[float], tops: Sequence[float], *, label: str, fmt: str
) -> None:
    ax.vlines(xs, values, tops, colors="black", linewidth=1)
    ax.scatter(xs, tops, marker="_", s=200, color="black", zorder=3, label=label)
    for x, top in zip(xs, tops, strict=True):
        ax.annotate(fmt.format(top), (x, top), xytext=(8, 0), textcoords="offset points",
                    fontsize=7, va="center")  # fmt: skip


def _legend(ax: Axes, groups: list[str], palette: list[str]) -> None:
    from matplotlib.patches import Patch

    handles: list[Artist] = [Patch(color=palette[i % len(palette)], label=name)
                             for i, name in enumerate(groups)]  # fmt: skip
    handles += ax.get_legend_handles_labels()[0]
    if handles:
        ax.legend(handles=handles, fontsize=8)
