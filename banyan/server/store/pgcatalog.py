"""PostgreSQL: projects, keys and prompts, the management half of the Store.

The rules are those of the SQLite handlers (_auth, _prompts, _experiments);
what differs is concurrency: several instances may write at once, so a push
locks its prompt row, and a unique index turned Conflict settles the races
the checks cannot (two projects created at the same moment). Experiments:
pgexperiments.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import orjson
from psycopg import AsyncConnection

from banyan.server._auth import DEFAULT_PROJECT, Principal, generate_key, hash_key
from banyan.server._db import new_id, now
from banyan.server._prompts import _dumps
from banyan.server.store import Bootstrap, Conflict, Item, NotFound

Conn = AsyncConnection[Any]
_PROMPT = "id, name, enable_logging, metadata, created_at"
_VERSION = "id, prompt_id, branch, version, seq, content, message, metadata, created_at"
#: pg_advisory_xact_lock key of bootstrap: instances starting together make one default project.
BOOTSTRAP_LOCK = 0x62616E79616E03


def _item(columns: str, row: Sequence[Any] | None) -> Item | None:
    if row is None:
        return None
    item = dict(zip([c.strip() for c in columns.split(",")], row, strict=True))
    if "metadata" in item:
        item["metadata"] = orjson.loads(item["metadata"])
    return item


async def _one(conn: Conn, query: str, args: Sequence[Any]) -> Any:
    cur = await conn.execute(query.encode(), args)
    return await cur.fetchone()


async def _all(conn: Conn, query: str, args: Sequence[Any]) -> list[Any]:
    cur = await conn.execute(query.encode(), args)
    return await cur.fetchall()


async def _insert_project(conn: Conn, name: str) -> str:
    project_id = new_id("prj")
    row = await _one(
        conn,
        "INSERT INTO projects VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING RETURNING id",
        (project_id, name, now()),
    )
    if row is None:
        raise Conflict(f"a project named {name!r} already exists")
    return project_id


async def _insert_key(
    conn: Conn, project_id: str, digest: str, *, prefix: str, admin: bool, label: str
) -> None:
    await conn.execute(
        b"INSERT INTO api_keys VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (hash) DO NOTHING",
        (digest, project_id, prefix, label, admin, now()),
    )


async def _principal(conn: Conn, digest: str) -> Principal | None:
    row = await _one(
        conn,
        "SELECT k.project_id, p.name, k.admin FROM api_keys k"
        " JOIN projects p ON p.id = k.project_id WHERE k.hash = %s",
        (digest,),
    )
    return Principal(row[0], row[1], row[2]) if row else None


async def _prompt(conn: Conn, project_id: str, column: str, value: str) -> Item | None:
    query = f"SELECT {_PROMPT} FROM prompts WHERE project_id = %s AND {column} = %s"
    return _item(_PROMPT, await _one(conn, query, (project_id, value)))


async def _version(conn: Conn, prompt_id: str, branch: str, version: str | None) -> Item | None:
    query = f"SELECT {_VERSION} FROM prompt_versions WHERE prompt_id = %s AND branch = %s"
    if version is None:
        return _item(
            _VERSION, await _one(conn, query + " ORDER BY seq DESC LIMIT 1", (prompt_id, branch))
        )
    return _item(
        _VERSION, await _one(conn, query + " AND version = %s", (prompt_id, branch, version))
    )


async def _add_version(
    conn: Conn,
    prompt_id: str,
    branch: str,
    content: str,
    *,
    version: str | None,
    message: str,
    metadata: Item | None = None,
) -> Item:
    # One push per prompt at a time, across instances: the next seq and label stay unique.
    if await _one(conn, "SELECT 1 FROM prompts WHERE id = %s FOR UPDATE", (prompt_id,)) is None:
        raise NotFound(f"no prompt with id {prompt_id!r}")
    taken = {
        r[0]
        for r in await _all(
            conn,
            "SELECT version FROM prompt_versions WHERE prompt_id = %s AND branch = %s",
            (prompt_id, branch),
        )
    }
    (seq,) = await _one(
        conn,
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM prompt_versions"
        " WHERE prompt_id = %s AND branch = %s",
        (prompt_id, branch),
    )
    if version is None:
        version = next(str(n) for n in itertools.count(seq) if str(n) not in taken)
    elif version in taken:
        raise Conflict(f"version {version!r} already exists on branch {branch!r}")
    row = (
        new_id("ver"),
        prompt_id,
        branch,
        version,
        seq,
        content,
        message,
        _dumps(metadata or {}),
        now(),
    )
    await conn.execute(
        f"INSERT INTO prompt_versions ({_VERSION}) VALUES ({', '.join(['%s'] * 9)})".encode(), row
    )
    item = _item(_VERSION, row)
    assert item is not None
    return item


async def _branches(conn: Conn, prompt_id: str) -> list[Item]:
    rows = await _all(
        conn,
        "SELECT DISTINCT ON (branch) branch, version,"
        " COUNT(*) OVER (PARTITION BY branch) FROM prompt_versions"
        " WHERE prompt_id = %s ORDER BY branch, seq DESC",
        (prompt_id,),
    )
    return [{"name": b, "latest_version": v, "versions": n} for b, v, n in rows]


async def _describe(conn: Conn, prompt: Item) -> Item:
    return {**prompt, "branches": await _branches(conn, prompt["id"])}


class Catalog:
    """The management half of PostgresStore; the engine supplies connections."""

    def _connection(self) -> AbstractAsyncContextManager[Conn]:
        raise NotImplementedError

    async def bootstrap(self, key: str | None) -> Bootstrap:
        """Make sure the default project and an admin key exist (as _auth.bootstrap)."""
        async with self._connection() as conn:
            await conn.execute(b"SELECT pg_advisory_xact_lock(%s)", (BOOTSTRAP_LOCK,))
            row = await _one(conn, "SELECT id FROM projects WHERE name = %s", (DEFAULT_PROJECT,))
            project_id = row[0] if row else await _insert_project(conn, DEFAULT_PROJECT)
            if key is not None:
                known = await _principal(conn, hash_key(key))
                if known is None:
                    await _insert_key(
                        conn,
                        project_id,
                        hash_key(key),
                        prefix=key[:8],
                        admin=True,
                        label="bootstrap",
                    )
                return Bootstrap(known.project_id if known else project_id, key, known is None)
            if await _one(conn, "SELECT 1 FROM api_keys LIMIT 1", ()):
                return Bootstrap(project_id, None, row is None)
            key = generate_key()
            await _insert_key(
                conn, project_id, hash_key(key), prefix=key[:8], admin=True, label="bootstrap"
            )
            return Bootstrap(project_id, key, True)

    async def principal(self, digest: str) -> Principal | None:
        """Who the key with this digest speaks for, or None."""
        async with self._connection() as conn:
            return await _principal(conn, digest)

    async def project(self, project_id: str) -> Item | None:
        """A project (id, name, created_at), or None."""
        async with self._connection() as conn:
            return _item(
                "id, name, created_at",
                await _one(
                    conn, "SELECT id, name, created_at FROM projects WHERE id = %s", (project_id,)
                ),
            )

    async def create_project(self, name: str, digest: str, prefix: str) -> Item:
        """A new project and its first key; Conflict when the name is taken."""
        async with self._connection() as conn:
            project_id = await _insert_project(conn, name)
            await _insert_key(
                conn, project_id, digest, prefix=prefix, admin=False, label="first key"
            )
        project = await self.project(project_id)
        assert project is not None
        return project

    async def add_key(
        self, project_id: str, digest: str, prefix: str, *, admin: bool, label: str = ""
    ) -> None:
        """Store a key digest for a project, unless it is stored already."""
        async with self._connection() as conn:
            await _insert_key(conn, project_id, digest, prefix=prefix, admin=admin, label=label)

    async def revoke_key(self, project_id: str, digest: str) -> None:
        """Delete a project's key by digest; NotFound when the project has no such key."""
        async with self._connection() as conn:
            sql = b"DELETE FROM api_keys WHERE project_id = %s AND hash = %s"
            if not (await conn.execute(sql, (project_id, digest))).rowcount:
                raise NotFound("no such key in this project")

    async def prompt(self, project_id: str, name: str) -> Item | None:
        """A prompt by name, or None."""
        async with self._connection() as conn:
            return await _prompt(conn, project_id, "name", name)

    async def prompt_by_id(self, project_id: str, prompt_id: str) -> Item | None:
        """A prompt by id, or None."""
        async with self._connection() as conn:
            return await _prompt(conn, project_id, "id", prompt_id)

    async def prompts(self, project_id: str) -> list[Item]:
        """Every prompt of a project by name, each with its branches."""
        async with self._connection() as conn:
            rows = await _all(
                conn,
                f"SELECT {_PROMPT} FROM prompts WHERE project_id = %s ORDER BY name",
                (project_id,),
            )
            prompts = [_item(_PROMPT, r) for r in rows]
            return [await _describe(conn, p) for p in prompts if p is not None]

    async def create_prompt(self, project_id: str, name: str, body: Item) -> Item:
        """A prompt and its first version from a checked body; Conflict when it exists."""
        async with self._connection() as conn:
            row = await _one(
                conn,
                "INSERT INTO prompts VALUES (%s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (project_id, name) DO NOTHING RETURNING id",
                (
                    new_id("prm"),
                    project_id,
                    name,
                    body["enable_logging"],
                    _dumps(body["metadata"]),
                    now(),
                ),
            )
            if row is None:
                raise Conflict(f"a prompt named {name!r} already exists")
            await _add_version(
                conn,
                row[0],
                body["branch"],
                body["content"],
                version=body["version"],
                message=body["message"],
            )
            prompt = await _prompt(conn, project_id, "id", row[0])
            assert prompt is not None
            return await _describe(conn, prompt)

    async def update_prompt(
        self, project_id: str, prompt_id: str, enable: bool | None, metadata: Item | None
    ) -> None:
        """Set a prompt's logging switch and metadata (None leaves a field alone)."""
        meta = None if metadata is None else _dumps(metadata)
        async with self._connection() as conn:
            await conn.execute(
                b"UPDATE prompts SET enable_logging = COALESCE(%s, enable_logging),"
                b" metadata = COALESCE(%s, metadata) WHERE id = %s"
                b" AND project_id = %s",
                (enable, meta, prompt_id, project_id),
            )

    async def delete_prompt(self, project_id: str, prompt_id: str) -> None:
        """Delete a prompt with its versions and experiments; NotFound when absent."""
        async with self._connection() as conn:
            cur = await conn.execute(
                b"DELETE FROM prompts WHERE id = %s AND project_id = %s", (prompt_id, project_id)
            )
            if not cur.rowcount:
                raise NotFound(f"no prompt with id {prompt_id!r}")

    async def add_version(
        self,
        prompt_id: str,
        branch: str,
        content: str,
        *,
        version: str | None = None,
        message: str = "",
        metadata: Item | None = None,
    ) -> Item:
        """Append a version (the next number when ``version`` is None); Conflict if taken."""
        async with self._connection() as conn:
            return await _add_version(
                conn,
                prompt_id,
                branch,
                content,
                version=version,
                message=message,
                metadata=metadata,
            )

    async def version(self, prompt_id: str, branch: str, version: str | None) -> Item | None:
        """A version of a branch, the latest when ``version`` is None."""
        async with self._connection() as conn:
            return await _version(conn, prompt_id, branch, version)

    async def versions(self, prompt_id: str, branch: str | None) -> list[Item]:
        """A prompt's versions (of one branch when given), by branch then age."""
        query = f"SELECT {_VERSION} FROM prompt_versions WHERE prompt_id = %s"
        query += " AND (%s::text IS NULL OR branch = %s) ORDER BY branch, seq"
        async with self._connection() as conn:
            rows = await _all(conn, query, (prompt_id, branch, branch))
        return [v for v in (_item(_VERSION, r) for r in rows) if v is not None]

    async def branches(self, prompt_id: str) -> list[Item]:
        """Each branch: name, latest_version, versions, by name."""
        async with self._connection() as conn:
            return await _branches(conn, prompt_id)

    async def create_branch(self, prompt_id: str, branch: str, source: str) -> Item:
        """Start ``branch`` at ``source``'s latest version; Conflict, or NotFound for source."""
        async with self._connection() as conn:
            if await _version(conn, prompt_id, branch, None) is not None:
                raise Conflict(f"branch {branch!r} already exists")
            base = await _version(conn, prompt_id, source, None)
            if base is None:
                raise NotFound(f"no branch {source!r}")
            message = f"branched from {source}@{base['version']}"
            await _add_version(
                conn, prompt_id, branch, base["content"], version=base["version"], message=message
            )
        return {"name": branch, "from": source, "latest_version": base["version"], "versions": 1}
