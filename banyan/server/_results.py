"""Experiment results: the analysis over the logs, as JSON and as the pages' views (#18).

The per-subject sums come from the store (``Store.result_aggregates``, computed
in the database on either engine), so memory grows with the number of variants,
not of records; the statistics are ``banyan.server.analysis.analyze``.
docs/statistics.md specifies the JSON.
"""

from __future__ import annotations

import asyncio
import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import msgspec

from banyan.server import analysis as stats
from banyan.server._http import HTTPError, Request, Response, json_response
from banyan.server.analysis import Results, VariantAggregate
from banyan.server.store import Item, NotFound, Store
from banyan.server.store.series import FirstSeen
from banyan.server.web import (
    ExperimentInfo,
    ExperimentView,
    Pages,
    Point,
    ProjectView,
    Signer,
    load_secret,
)

MODES = ("fixed-horizon", "sequential")
#: Most distinct unknown variant ids reported in "unmatched".
MAX_UNMATCHED = 100
#: Most points of "subjects over time": one a day up to 90 days, then one every k days.
MAX_POINTS = 90
_EPOCH = date(1970, 1, 1)
#: The days drawn: a finite ts beyond them (1e300 is valid) counts at the nearer end.
_DAYS = 0, (date.max - _EPOCH).days


async def _analysis(
    store: Store, project_id: str, exp_id: str, mode: str
) -> tuple[Results, list[VariantAggregate]]:
    config = await store.experiment_config(project_id, exp_id)
    sequential = mode == "sequential"
    # stats.TAU and stats.analyze, not imported by name: they load scipy (analysis/__init__).
    tau = stats.TAU if sequential else None
    aggregates = await store.result_aggregates(project_id, exp_id, tau=tau)
    return stats.analyze(config, aggregates, sequential=sequential), aggregates


def _unmatched(found: Results, aggregates: list[VariantAggregate]) -> list[dict[str, Any]]:
    """Records (with a subject) of the experiment whose variant is none of its variants,
    a missing one (null) first."""
    known = {v.id for v in found.variants}
    unknown = [(a.variant_id, a.records) for a in aggregates if a.variant_id not in known]
    unknown.sort(key=lambda found: (found[0] is not None, found[0] or ""))
    return [{"variant": v, "records": n} for v, n in unknown if n][:MAX_UNMATCHED]


def points(found: list[FirstSeen], variants: list[str]) -> list[Point]:
    """Cumulative subjects of ``variants`` at the end of each UTC day, from a zero on the
    day before the first subject's to the last; over MAX_POINTS days, every k-th day (the
    smallest k that fits), the last point on the last day."""
    rows = sorted((min(max(f.day, _DAYS[0]), _DAYS[1]), f.variant_id, f.subjects)
                  for f in found if f.variant_id in variants)  # fmt: skip
    if not rows:
        return []
    first, last = rows[0][0] - 1, rows[-1][0]
    step = max(1, math.ceil((last - first) / (MAX_POINTS - 1)))
    days = range(last - math.ceil((last - first) / step) * step, last + 1, step)
    seen, out, i = dict.fromkeys(variants, 0), [], 0
    for day in days:
        while i < len(rows) and rows[i][0] <= day:
            seen[str(rows[i][1])] += rows[i][2]
            i += 1
        out.append(Point(str(_EPOCH + timedelta(days=day)), dict(seen)))
    return out


def mode_of(req: Request) -> str:
    """The ``?mode=`` of a request (fixed-horizon by default); 400 for another value."""
    mode = str(req.query.get("mode", MODES[0]))
    if mode not in MODES:
        raise HTTPError(400, f"mode must be one of {', '.join(MODES)}")
    return mode


async def experiment_results(req: Request) -> Response:
    """GET /api/v2/experiments/{id}/results[?mode=sequential]: the results JSON."""
    store, exp_id = req.state.store, req.params["id"]
    experiment = await store.experiment(req.project_id, exp_id)
    found, aggregates = await _analysis(store, req.project_id, exp_id, mode_of(req))
    return json_response({**msgspec.to_builtins(found), "experiment": experiment,
                          "unmatched": _unmatched(found, aggregates)})  # fmt: skip


def _info(exp: Item) -> ExperimentInfo:
    return ExperimentInfo(
        id=exp["id"], name=exp["name"], prompt=exp["prompt"], branch=exp["branch"],
        status=exp["status"], created_at=exp["created_at"], sticky_key=exp["sticky_key"],
        traffic_bp=exp["traffic_bp"], variants=len(exp["variants"]),
    )  # fmt: skip


async def _project(req: Request, project_id: str) -> ProjectView | None:
    """A project's experiments for the list page; None for no such project."""
    store: Store = req.state.store
    project = await store.project(project_id)
    if project is None:
        return None
    experiments = await store.experiments(project_id, None)
    return ProjectView(project_id, project["name"], [_info(e) for e in experiments])


async def _experiment(req: Request, project_id: str, exp_id: str) -> ExperimentView | None:
    """One results page's data; None when the project has no such experiment."""
    store: Store = req.state.store
    project = await store.project(project_id)
    try:
        info = _info(await store.experiment(project_id, exp_id))
    except NotFound:
        return None
    # The series is the page's only: the results JSON does not wait for it.
    (found, _), first_seen = await asyncio.gather(
        _analysis(store, project_id, exp_id, mode_of(req)),
        store.subject_series(project_id, exp_id),
    )
    series = points(first_seen, [v.id for v in found.variants])
    return ExperimentView(project_id if project is None else project["name"], info, found, series)


def pages(secret_path: str) -> Pages:
    """The results pages; the signing secret is kept at ``secret_path`` + ``.secret``."""
    secret = load_secret(Path(f"{secret_path}.secret"))
    return Pages(Signer(secret), project=_project, experiment=_experiment)
