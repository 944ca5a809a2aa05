"""Experiment results: the analysis over the logs, as JSON and as the pages' views (#18).

The per-subject sums come from SQL aggregates (``sqlite_aggregates``), so memory
grows with the number of variants, not of records; the statistics are
``banyan.server.analysis.analyze``. docs/statistics.md specifies the JSON.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import msgspec

from banyan.server import _experiments
from banyan.server import analysis as stats
from banyan.server._http import HTTPError, Request, Response, json_response
from banyan.server.analysis import Results, sqlite_outcomes
from banyan.server.web import (
    ExperimentInfo,
    ExperimentView,
    Pages,
    ProjectView,
    Signer,
    load_secret,
)

MODES = ("fixed-horizon", "sequential")


def analysis(
    conn: sqlite3.Connection, project_id: str, exp_id: str, mode: str = MODES[0]
) -> Results:
    """The experiment's ``Results``, computed from its logs per subject."""
    config = _experiments.config(conn, project_id, exp_id)
    aggregates = sqlite_outcomes(conn, project_id, exp_id)
    # stats.analyze, not imported by name: its first use loads scipy (see analysis/__init__).
    return stats.analyze(config, aggregates, sequential=mode == "sequential")


#: Most distinct unknown variant ids reported in "unmatched".
MAX_UNMATCHED = 100
_NEXT_VARIANT = (
    "SELECT MIN(experiment_version_id) FROM logs WHERE project_id = ? AND experiment_id = ?"
    " AND experiment_version_id > ?"
)


def _unmatched(conn: sqlite3.Connection, project_id: str, found: Results) -> list[dict[str, Any]]:
    """Records of the experiment whose variant id is not one of its variants.

    The distinct ids are found by index seeks (one per id), and only the unknown
    ones are counted: the known variants' records are never scanned here.
    """
    known, unmatched, after = {v.id for v in found.variants}, [], ""
    where = "project_id = ? AND experiment_id = ? AND experiment_version_id = ?"
    for _ in range(len(known) + MAX_UNMATCHED):
        (after,) = conn.execute(_NEXT_VARIANT, (project_id, found.experiment_id, after)).fetchone()
        if after is None:
            break
        if after not in known:
            args = (project_id, found.experiment_id, after)
            (n,) = conn.execute(f"SELECT COUNT(*) FROM logs WHERE {where}", args).fetchone()
            unmatched.append({"variant": after, "records": n})
    return unmatched


def results(conn: sqlite3.Connection, project_id: str, exp_id: str, mode: str) -> dict[str, Any]:
    """The results JSON, with the experiment and its unmatched records beside it."""
    found = analysis(conn, project_id, exp_id, mode)
    return {
        **msgspec.to_builtins(found),
        "experiment": _experiments.describe(conn, project_id, exp_id),
        "unmatched": _unmatched(conn, project_id, found),
    }


def mode_of(req: Request) -> str:
    """The ``?mode=`` of a request (fixed-horizon by default); 400 for another value."""
    mode = str(req.query.get("mode", MODES[0]))
    if mode not in MODES:
        raise HTTPError(400, f"mode must be one of {', '.join(MODES)}")
    return mode


async def experiment_results(req: Request) -> Response:
    """GET /api/v2/experiments/{id}/results[?mode=sequential]: the results JSON."""
    found = await req.state.db.read(results, req.project_id, req.params["id"], mode_of(req))
    return json_response(found)


def _info(conn: sqlite3.Connection, project_id: str, exp_id: str) -> ExperimentInfo:
    exp = _experiments.describe(conn, project_id, exp_id)
    sql = "SELECT created_at FROM experiments WHERE id = ?"
    (created,) = conn.execute(sql, (exp_id,)).fetchone()
    return ExperimentInfo(
        id=exp_id, name=exp["name"], prompt=exp["prompt"], branch=exp["branch"],
        status=exp["status"], created_at=created, sticky_key=exp["sticky_key"],
        traffic_bp=exp["traffic_bp"], variants=len(exp["variants"]),
    )  # fmt: skip


def _project_name(conn: sqlite3.Connection, project_id: str) -> str | None:
    row = conn.execute("SELECT name FROM projects WHERE id = ?", (project_id,)).fetchone()
    return None if row is None else str(row[0])


def project_view(conn: sqlite3.Connection, project_id: str) -> ProjectView | None:
    """A project's experiments for the list page; None for no such project."""
    name = _project_name(conn, project_id)
    if name is None:
        return None
    rows = conn.execute(
        "SELECT id FROM experiments WHERE project_id = ? ORDER BY created_at", (project_id,)
    )
    return ProjectView(project_id, name, [_info(conn, project_id, r[0]) for r in rows.fetchall()])


def experiment_view(
    conn: sqlite3.Connection, project_id: str, exp_id: str, mode: str
) -> ExperimentView | None:
    """One results page's data; None when the project has no such experiment."""
    name = _project_name(conn, project_id)
    try:
        info = _info(conn, project_id, exp_id)
    except HTTPError:
        return None
    return ExperimentView(name or project_id, info, analysis(conn, project_id, exp_id, mode))


async def _project(req: Request, project_id: str) -> ProjectView | None:
    view: ProjectView | None = await req.state.db.read(project_view, project_id)
    return view


async def _experiment(req: Request, project_id: str, exp_id: str) -> ExperimentView | None:
    view: ExperimentView | None = await req.state.db.read(
        experiment_view, project_id, exp_id, mode_of(req)
    )
    return view


def pages(db_path: str) -> Pages:
    """The results pages over the database at ``db_path``; the secret is kept beside it."""
    secret = load_secret(Path(f"{db_path}.secret"))
    return Pages(Signer(secret), project=_project, experiment=_experiment)
