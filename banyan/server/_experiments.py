"""Experiments: storage, their routing configuration, and the v2 endpoints.

At most one experiment runs per prompt and branch; a prompt fetch carries the
running one's configuration (banyan._routing.Experiment) so clients route
locally. Variant weights are basis points; a create request may give
``percentage`` instead of ``weight_bp``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from banyan import _routing
from banyan.server import _prompts
from banyan.server._db import new_id, now
from banyan.server._http import HTTPError, Request, Response, check_name, field_of, json_response
from banyan.server.store import experiment_item

_COLUMNS = (
    "id, prompt_id, branch, name, sticky_key, seed, traffic_bp, hash_version, status, created_at"
)


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


async def _variants(
    req: Request, prompt: dict[str, Any], branch: str, specs: list[dict[str, Any]]
) -> tuple[_routing.Variant, ...]:
    variants = []
    for spec in specs:
        version = await req.state.store.version(prompt["id"], branch, spec["version"])
        if version is None:
            raise HTTPError(400, f"prompt {prompt['name']!r} has no version {spec['version']!r}"
                            f" on branch {branch!r}")  # fmt: skip
        variants.append(_routing.Variant(new_id("var"), spec["version"], spec["weight_bp"],
                                         version["content"], spec["name"]))  # fmt: skip
    return tuple(variants)


async def _config_of(
    req: Request, body: dict[str, Any]
) -> tuple[dict[str, Any], str, _routing.Experiment]:
    """The prompt, branch and checked configuration of a create request; 400 or 404."""
    prompt = await _prompts.required(req, check_name(field_of(body, "prompt", str)))
    branch = check_name(field_of(body, "branch", str, "main"), "branch name")
    specs = _variant_specs(body)
    total = sum(spec["weight_bp"] for spec in specs)
    if total != _routing.BASIS_POINTS:
        raise HTTPError(400, f"variant weights must add up to 100%, not {total / 100:g}%")
    exp_id = new_id("exp")
    config = _routing.Experiment(
        id=exp_id,
        sticky_key=check_name(field_of(body, "sticky_key", str, "user_id"), "sticky key"),
        seed=field_of(body, "seed", str, None) or exp_id,
        variants=await _variants(req, prompt, branch, specs),
        traffic_bp=_traffic(body),
        name=(field_of(body, "name", str, None) or f"{prompt['name']} experiment")[:200],
    )
    problem = _routing.validate(config)
    if problem:
        raise HTTPError(400, problem)
    return prompt, branch, config


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
    """An experiment as JSON: its configuration, prompt, branch, status and creation time."""
    exp = _row(conn, project_id, exp_id)
    (prompt_name,) = conn.execute(
        "SELECT name FROM prompts WHERE id = ?", (exp["prompt_id"],)
    ).fetchone()
    return experiment_item(config(conn, project_id, exp_id), prompt_id=exp["prompt_id"],
                           prompt=prompt_name, branch=exp["branch"], status=exp["status"],
                           created_at=exp["created_at"])  # fmt: skip


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
    prompt, branch, config = await _config_of(req, body)
    start = field_of(body, "start", bool, True)
    created = await req.state.store.create_experiment(req.project_id, prompt["id"], branch,
                                                      config, start=start)  # fmt: skip
    return json_response(created, 201)


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
    return json_response({"experiments": await req.state.store.experiments(req.project_id, prompt)})


async def get_experiment(req: Request) -> Response:
    """GET /api/experiments/{id} and /api/v2/experiments/{id}."""
    return json_response(await req.state.store.experiment(req.project_id, req.params["id"]))


def _status_handler(status: str) -> Any:
    async def handler(req: Request) -> Response:
        store = req.state.store
        return json_response(
            await store.set_experiment_status(req.project_id, req.params["id"], status)
        )

    handler.__doc__ = (
        f"POST /api/v2/experiments/{{id}}/{'start' if status == 'running' else 'stop'}."
    )
    return handler


start_experiment = _status_handler("running")
stop_experiment = _status_handler("stopped")


def ship(
    conn: sqlite3.Connection, project_id: str, exp_id: str, version: str, message: str
) -> dict[str, Any]:
    """Stop the experiment and append a copy of its branch's ``version``; 409 if it is gone."""
    exp = _row(conn, project_id, exp_id)
    source = _prompts.get_version(conn, exp["prompt_id"], exp["branch"], version)
    if source is None:
        raise HTTPError(409, f"version {version!r} of the variant no longer exists")
    set_status(conn, project_id, exp_id, "stopped")
    return _prompts.add_version(conn, exp["prompt_id"], exp["branch"], source["content"],
                                message=message, metadata=source["metadata"])  # fmt: skip


async def ship_experiment(req: Request) -> Response:
    """POST /api/v2/experiments/{id}/ship {variant}: stop it and ship that variant (#18).

    A branch serves its latest version, so shipping appends a copy of the
    variant's version (content and metadata), its message naming the experiment:
    the prompt's history shows what was shipped, from which experiment, when.
    """
    variant = check_name(field_of(await req.json(), "variant", str), "variant")
    store, exp_id = req.state.store, req.params["id"]
    config = await store.experiment_config(req.project_id, exp_id)
    chosen = next((v for v in config.variants if variant in (v.name, v.id)), None)
    if chosen is None:
        raise HTTPError(400, f"experiment {exp_id} has no variant {variant!r}")
    message = f"shipped variant {chosen.name!r} (version {chosen.version}) of experiment {exp_id}"
    shipped = await store.ship_experiment(req.project_id, exp_id, chosen.version, message)
    return json_response({"experiment": await store.experiment(req.project_id, exp_id),
                          "version": shipped})  # fmt: skip
