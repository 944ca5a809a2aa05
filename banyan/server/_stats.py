"""Latency statistics over stored logs: per prompt version and experiment variant."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from banyan.server._http import Request, Response, check_name, json_response


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when it is empty)."""
    if not ordered:
        return None
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def aggregate(durations: list[float | None], models: Iterable[str | None]) -> dict[str, Any]:
    """count, mean/p50/p95 of duration_ms (records without one are not timed), models."""
    timed = sorted(d for d in durations if d is not None)
    return {
        "count": len(durations),
        "timed": len(timed),
        "mean_ms": sum(timed) / len(timed) if timed else None,
        "p50_ms": percentile(timed, 50),
        "p95_ms": percentile(timed, 95),
        "models": sorted({m for m in models if m is not None}),
    }


def grouped(rows: Iterable[tuple[Any, ...]], width: int) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Aggregate rows of (*group key of ``width`` columns, duration_ms, model)."""
    groups: dict[tuple[Any, ...], tuple[list[float | None], list[str | None]]] = {}
    for row in rows:
        durations, models = groups.setdefault(tuple(row[:width]), ([], []))
        durations.append(row[width])
        models.append(row[width + 1])
    return {key: aggregate(d, m) for key, (d, m) in groups.items()}


def by_version(prompt: str, rows: Iterable[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """Rows of (version, branch, experiment_id, variant_id, duration_ms, model), grouped."""
    keys = ("version", "branch", "experiment_id", "variant_id")
    out = [
        {"prompt": prompt, **dict(zip(keys, key, strict=True)), **stats}
        for key, stats in grouped(rows, 4).items()
    ]
    return sorted(out, key=lambda g: tuple(str(g[k]) for k in keys))


async def prompt_stats(req: Request) -> Response:
    """GET /api/v2/stats?prompt=NAME: stats per version, branch and experiment variant."""
    prompt = check_name(req.query.get("prompt"))
    rows = await req.state.store.stats_rows(req.project_id, prompt)
    return json_response({"prompt": prompt, "groups": by_version(prompt, rows)})
