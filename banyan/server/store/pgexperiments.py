"""PostgreSQL: experiments, their variants and their status (the rules of _experiments)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from banyan import _routing
from banyan.server._db import now
from banyan.server.store import Conflict, Item, NotFound, experiment_item
from banyan.server.store.pgcatalog import Conn, _add_version, _all, _item, _one, _version

_EXPERIMENT = (
    "id, prompt_id, branch, name, sticky_key, seed, traffic_bp, hash_version, status, created_at"
)


async def _experiment_row(conn: Conn, project_id: str, exp_id: str) -> Item:
    query = f"SELECT {_EXPERIMENT} FROM experiments WHERE id = %s AND project_id = %s"
    item = _item(_EXPERIMENT, await _one(conn, query, (exp_id, project_id)))
    if item is None:
        raise NotFound(f"no experiment {exp_id!r}")
    return item


async def _config(conn: Conn, project_id: str, exp_id: str) -> _routing.Experiment:
    exp = await _experiment_row(conn, project_id, exp_id)
    rows = await _all(
        conn,
        "SELECT v.id, v.version, v.weight_bp, COALESCE(pv.content, ''), v.name"
        " FROM experiment_variants v LEFT JOIN prompt_versions pv"
        " ON pv.prompt_id = %s AND pv.branch = %s AND pv.version = v.version"
        " WHERE v.experiment_id = %s ORDER BY v.position",
        (exp["prompt_id"], exp["branch"], exp_id),
    )
    return _routing.Experiment(
        id=exp_id,
        sticky_key=exp["sticky_key"],
        seed=exp["seed"],
        variants=tuple(_routing.Variant(*r) for r in rows),
        traffic_bp=exp["traffic_bp"],
        hash_version=exp["hash_version"],
        name=exp["name"],
    )


async def _running(
    conn: Conn, project_id: str, prompt_id: str, branch: str
) -> _routing.Experiment | None:
    row = await _one(
        conn,
        "SELECT id FROM experiments WHERE prompt_id = %s AND branch = %s AND status = 'running'",
        (prompt_id, branch),
    )
    return await _config(conn, project_id, row[0]) if row else None


async def _describe_experiment(conn: Conn, project_id: str, exp_id: str) -> Item:
    exp = await _experiment_row(conn, project_id, exp_id)
    config = await _config(conn, project_id, exp_id)
    (prompt,) = await _one(conn, "SELECT name FROM prompts WHERE id = %s", (exp["prompt_id"],))
    return experiment_item(config, prompt_id=exp["prompt_id"], prompt=prompt,
                           branch=exp["branch"], status=exp["status"],
                           created_at=exp["created_at"])  # fmt: skip


async def _set_status(conn: Conn, project_id: str, exp_id: str, status: str) -> None:
    exp = await _experiment_row(conn, project_id, exp_id)
    if status == "running":
        other = await _running(conn, project_id, exp["prompt_id"], exp["branch"])
        if other is not None and other.id != exp_id:
            raise Conflict(f"experiment {other.id} is already running on this prompt branch")
    await conn.execute(b"UPDATE experiments SET status = %s WHERE id = %s", (status, exp_id))


class Experiments:
    """The experiment methods of PostgresStore; the engine supplies connections."""

    def _connection(self) -> AbstractAsyncContextManager[Conn]:
        raise NotImplementedError

    async def create_experiment(
        self,
        project_id: str,
        prompt_id: str,
        branch: str,
        config: _routing.Experiment,
        *,
        start: bool,
    ) -> Item:
        """Store a validated experiment (started when ``start``); returns it described."""
        async with self._connection() as conn:
            await conn.execute(
                b"INSERT INTO experiments VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'draft', %s)",
                (
                    config.id,
                    project_id,
                    prompt_id,
                    branch,
                    config.name,
                    config.sticky_key,
                    config.seed,
                    config.traffic_bp,
                    config.hash_version,
                    now(),
                ),
            )
            async with conn.cursor() as cur:
                await cur.executemany(
                    b"INSERT INTO experiment_variants VALUES (%s, %s, %s, %s, %s, %s)",
                    [
                        (v.id, config.id, i, v.name, v.version, v.weight_bp)
                        for i, v in enumerate(config.variants)
                    ],
                )
            if start:
                await _set_status(conn, project_id, config.id, "running")
            return await _describe_experiment(conn, project_id, config.id)

    async def experiment(self, project_id: str, exp_id: str) -> Item:
        """An experiment as the v2 endpoints return it; NotFound when absent."""
        async with self._connection() as conn:
            return await _describe_experiment(conn, project_id, exp_id)

    async def experiment_config(self, project_id: str, exp_id: str) -> _routing.Experiment:
        """The routing configuration of an experiment, variant content included."""
        async with self._connection() as conn:
            return await _config(conn, project_id, exp_id)

    async def running_experiment(
        self, project_id: str, prompt_id: str, branch: str
    ) -> _routing.Experiment | None:
        """The experiment running on a prompt's branch, if any."""
        async with self._connection() as conn:
            return await _running(conn, project_id, prompt_id, branch)

    async def experiments(self, project_id: str, prompt: str | None) -> list[Item]:
        """A project's experiments (of one prompt name when given), oldest first."""
        async with self._connection() as conn:
            rows = await _all(
                conn,
                "SELECT e.id FROM experiments e JOIN prompts p"
                " ON p.id = e.prompt_id WHERE e.project_id = %s"
                " AND (%s::text IS NULL OR p.name = %s) ORDER BY e.created_at",
                (project_id, prompt, prompt),
            )
            return [await _describe_experiment(conn, project_id, r[0]) for r in rows]

    async def set_experiment_status(self, project_id: str, exp_id: str, status: str) -> Item:
        """Start ("running") or stop ("stopped"); Conflict when another runs on the branch."""
        async with self._connection() as conn:
            await _set_status(conn, project_id, exp_id, status)
            return await _describe_experiment(conn, project_id, exp_id)

    async def ship_experiment(
        self, project_id: str, exp_id: str, version: str, message: str
    ) -> Item:
        """Stop the experiment and append a copy of ``version``; Conflict if it is gone."""
        async with self._connection() as conn:
            exp = await _experiment_row(conn, project_id, exp_id)
            source = await _version(conn, exp["prompt_id"], exp["branch"], version)
            if source is None:
                raise Conflict(f"version {version!r} of the variant no longer exists")
            await _set_status(conn, project_id, exp_id, "stopped")
            return await _add_version(conn, exp["prompt_id"], exp["branch"], source["content"],
                                      version=None, message=message,
                                      metadata=source["metadata"])  # fmt: skip
