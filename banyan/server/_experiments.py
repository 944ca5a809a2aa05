"""Experiments: storage, their routing configuration, and the v2 endpoints.

At most one experiment runs per prompt and branch; a prompt fetch carries the
running one's configuration (banyan._routing.Experiment) so clients route
locally. Variant weights are basis points; a create request may give
``percentage`` instead of ``weight_bp``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

import msgspec

from banyan import _routing
from banyan.server import _prompts
from banyan.server._db import new_id, now
from banyan.server._http import HTTPError, Request, Response, check_name, field_of, json_response

_COLUMNS = "id, prompt_id, branch, name, sticky_key, seed, traffic_bp, hash_version, status"


def _basis_points(value: float, what: str) -> int:
    # The range first: NaN fails it, and 1e307 * 100 would be infinite.
    if not 0 <= value <= 100 or abs(round(value * 100) - value * 100) > 1e-6:
        raise HTTPError(400, f"{what} must be a percentage between 0 and 100 (two decimals)")
    return round(value * 100)


def _variant_specs(body: dict[str, Any]) -> list[dict[str, Any]]:
    variants = field_of(body, "variants", list)
    if not 1 <= len(variants) <= 100 or not all(isinstance(v, dict) for v in variants):
        raise HTTPError(400, "variants must be a list of 1 to 100 objects")
    specs = []
    for i, v in enumerate(variants):
        version = check_name(field_of(v, "version", str), "version")
        if "weight_bp" in v:
            weight = field_of(v, "weight_bp", int)
        else:
            weight = _basis_points(field_of(v, "percentage", float), f"variants[{i}].percentage")
        name = field_of(v, "name", str, None) or f"v{version}"
        specs.append({"version": version, "weight_bp": weight, "name": name[:128]})
    return specs


def _traffic(body: dict[str, Any]) -> int:
    if "traffic_bp" in body:
        traffic: int = field_of(body, "traffic_bp", int)
        return traffic
    return _basis_points(field_of(body, "traffic", float, 100.0), "traffic")


def create(conn: sqlite3.Connection, project_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """Create (and by default start) an experiment from a request body."""
    prompt = _prompts.require(conn, project_id, check_name(field_of(body, "prompt", str)))
    branch = check_name(field_of(body, "branch", str, "main"), "branch name")
    specs = _variant_specs(body)
    total = sum(spec["weight_bp"] for spec in specs)
    if total != _routing.BASIS_POINTS:
        raise HTTPError(400, f"variant weights must add up to 100%, not {total / 100:g}%")
    exp_id = new_id("exp")
    variants = []
    for spec in specs:
        version = _prompts.get_version(conn, prompt["id"], branch, spec["version"])
        if version is None:
            raise HTTPError(400, f"prompt {prompt['name']!r} has no version {spec['version']!r}"
                            f" on branch {branch!r}")  # fmt: skip
        variants.append(_routing.Variant(new_id("var"), spec["version"], spec["weight_bp"],
                                         version["content"], spec["name"]))  # fmt: skip
    config = _routing.Experiment(
        id=exp_id,
        sticky_key=check_name(field_of(body, "sticky_key", str, "user_id"), "sticky key"),
        seed=field_of(body, "seed", str, None) or exp_id,
        variants=tuple(variants),
        traffic_bp=_traffic(body),
        name=(field_of(body, "name", str, None) or f"{prompt['name']} experiment")[:200],
    )
    problem = _routing.validate(config)
    if problem:
        raise HTTPError(400, problem)
    _insert(conn, project_id, prompt["id"], branch, config)
    if field_of(body, "start", bool, True):
        set_status(conn, project_id, exp_id, "running")
    return describe(conn, project_id, exp_id)


def _insert(
    conn: sqlite3.Connection, project_id: str, prompt_id: str, branch: str,
    config: _routing.Experiment,
) -> None:  # fmt: skip
    conn.execute(
        "INSERT INTO experiments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'draft', ?)",
        (config.id, project_id, prompt_id, branch, config.name, config.sticky_key, config.seed,
         config.traffic_bp, config.hash_version, now()),
    )  # fmt: skip
    conn.executemany(
        "INSERT INTO experiment_variants VALUES (?, ?, ?, ?, ?, ?)",
        [
            (v.id, config.id, i, v.name, v.version, v.weight_bp)
            for i, v in enumerate(config.variants)
        ],
    )


def _row(conn: sqlite3.Connection, project_id: str, exp_id: str) -> dict[str, Any]:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM experiments WHERE id = ? AND project_id = ?", (exp_id, project_id)
    ).fetchone()
    if row is None:
        raise HTTPError(404, f"no experiment {exp_id!r}")
    return dict(zip([c.strip() for c in _COLUMNS.split(",")], row, strict=True))


def config(conn: sqlite3.Connection, project_id: str, exp_id: str) -> _routing.Experiment:
    """The routing configuration of an experiment (variant content included)."""
    exp = _row(conn, project_id, exp_id)
    rows = conn.execute(
        "SELECT v.id, v.version, v.weight_bp, COALESCE(pv.content, ''), v.name"
        " FROM experiment_variants v LEFT JOIN prompt_versions pv"
        " ON pv.prompt_id = ? AND pv.branch = ? AND pv.version = v.version"
        " WHERE v.experiment_id = ? ORDER BY v.position",
        (exp["prompt_id"], exp["branch"], exp_id),
    ).fetchall()
    return _routing.Experiment(
        id=exp_id, sticky_key=exp["sticky_key"], seed=exp["seed"],
        variants=tuple(_routing.Variant(*r) for r in rows), traffic_bp=exp["traffic_bp"],
        hash_version=exp["hash_version"], name=exp["name"],
    )  # fmt: skip


def running(
    conn: sqlite3.Connection, project_id: str, prompt_id: str, branch: str
) -> _routing.Experiment | None:
    """The experiment running on a prompt's branch, if any."""
    row = conn.execute(
        "SELECT id FROM experiments WHERE prompt_id = ? AND branch = ? AND status = 'running'",
        (prompt_id, branch),
    ).fetchone()
    return config(conn, project_id, row[0]) if row else None


def describe(conn: sqlite3.Connection, project_id: str, exp_id: str) -> dict[str, Any]:
    """An experiment as JSON: its configuration, prompt, branch and status."""
    exp = _row(conn, project_id, exp_id)
    cfg = msgspec.to_builtins(config(conn, project_id, exp_id))
    (prompt_name,) = conn.execute(
        "SELECT name FROM prompts WHERE id = ?", (exp["prompt_id"],)
    ).fetchone()
    return {
        **cfg,
        "prompt_id": exp["prompt_id"],
        "prompt": prompt_name,
        "branch": exp["branch"],
        "status": exp["status"],
        # Names the 1.0.1 client's ExperimentData reads.
        "experiment_id": exp_id,
        "sticky_type": exp["sticky_key"],
        "versions": cfg["variants"],
    }


def set_status(conn: sqlite3.Connection, project_id: str, exp_id: str, status: str) -> None:
    """Start or stop an experiment; 409 when another one runs on the same branch."""
    exp = _row(conn, project_id, exp_id)
    if status == "running":
        other = running(conn, project_id, exp["prompt_id"], exp["branch"])
        if other is not None and other.id != exp_id:
            raise HTTPError(409, f"experiment {other.id} is already running on this prompt branch")
    conn.execute("UPDATE experiments SET status = ? WHERE id = ?", (status, exp_id))


async def create_experiment(req: Request) -> Response:
    """POST /api/v2/experiments: create and (unless start is false) start an experiment."""
    body = await req.json()
    return json_response(await req.state.db.write(create, req.project_id, body), 201)


def _list(conn: sqlite3.Connection, project_id: str, prompt: str | None) -> list[dict[str, Any]]:
    sql, args = "SELECT e.id FROM experiments e", [project_id]
    if prompt is not None:
        sql += " JOIN prompts p ON p.id = e.prompt_id AND p.name = ?"
        args.insert(0, prompt)
    rows = conn.execute(sql + " WHERE e.project_id = ? ORDER BY e.created_at", args).fetchall()
    return [describe(conn, project_id, r[0]) for r in rows]


async def list_experiments(req: Request) -> Response:
    """GET /api/v2/experiments[?prompt=NAME]."""
    prompt = req.query.get("prompt")
    if prompt is not None:
        check_name(prompt)
    return json_response({"experiments": await req.state.db.read(_list, req.project_id, prompt)})


async def get_experiment(req: Request) -> Response:
    """GET /api/experiments/{id} and /api/v2/experiments/{id}."""
    return json_response(await req.state.db.read(describe, req.project_id, req.params["id"]))


def _status_handler(status: str) -> Any:
    async def handler(req: Request) -> Response:
        def write(conn: sqlite3.Connection) -> dict[str, Any]:
            set_status(conn, req.project_id, req.params["id"], status)
            return describe(conn, req.project_id, req.params["id"])

        return json_response(await req.state.db.write(write))

    handler.__doc__ = (
        f"POST /api/v2/experiments/{{id}}/{'start' if status == 'running' else 'stop'}."
    )
    return handler


start_experiment = _status_handler("running")
stop_experiment = _status_handler("stopped")


def ship(conn: sqlite3.Connection, project_id: str, exp_id: str, variant: str) -> dict[str, Any]:
    """Stop the experiment and make a variant's version the branch's latest (#18).

    A branch serves its latest version, so shipping appends a copy of the
    variant's version (content and metadata), its message naming the experiment:
    the prompt's history shows what was shipped, from which experiment, when.
    """
    exp, cfg = _row(conn, project_id, exp_id), config(conn, project_id, exp_id)
    chosen = next((v for v in cfg.variants if variant in (v.name, v.id)), None)
    if chosen is None:
        raise HTTPError(400, f"experiment {exp_id} has no variant {variant!r}")
    source = _prompts.get_version(conn, exp["prompt_id"], exp["branch"], chosen.version)
    if source is None:
        raise HTTPError(409, f"version {chosen.version!r} of the variant no longer exists")
    set_status(conn, project_id, exp_id, "stopped")
    message = f"shipped variant {chosen.name!r} (version {chosen.version}) of experiment {exp_id}"
    shipped = _prompts.add_version(conn, exp["prompt_id"], exp["branch"], source["content"],
                                   message=message, metadata=source["metadata"])  # fmt: skip
    return {"experiment": describe(conn, project_id, exp_id), "version": shipped}


async def ship_experiment(req: Request) -> Response:
    """POST /api/v2/experiments/{id}/ship {variant}: stop it and ship that variant."""
    variant = check_name(field_of(await req.json(), "variant", str), "variant")
    return json_response(await req.state.db.write(ship, req.project_id, req.params["id"], variant))
