"""Prompts, their branches and versions: storage and the v2 management endpoints.

A prompt has named branches; each branch holds an ordered list of versions.
A version label is unique within its branch; when a push names none, the
label is the next number on that branch ("1", "2", ...).
"""

from __future__ import annotations

import itertools
import sqlite3
from typing import Any, TypeGuard

import orjson

from banyan.server._db import new_id, now
from banyan.server._http import HTTPError, Request, Response, check_name, field_of, json_response

MAX_CONTENT = 1024 * 1024
#: Levels of objects and arrays in metadata: orjson writes 255 at most, and a
#: response wraps the metadata in a few more.
MAX_METADATA_DEPTH = 128
_VERSION_COLUMNS = "id, prompt_id, branch, version, seq, content, message, metadata, created_at"


def find(conn: sqlite3.Connection, project_id: str, name: str) -> dict[str, Any] | None:
    """The prompt ``name`` of a project, or None."""
    row = conn.execute(
        "SELECT id, name, enable_logging, metadata, created_at FROM prompts"
        " WHERE project_id = ? AND name = ?",
        (project_id, name),
    ).fetchone()
    if row is None:
        return None
    keys = ("id", "name", "enable_logging", "metadata", "created_at")
    prompt = dict(zip(keys, row, strict=True))
    prompt["enable_logging"] = bool(prompt["enable_logging"])
    prompt["metadata"] = orjson.loads(prompt["metadata"])
    return prompt


def require(conn: sqlite3.Connection, project_id: str, name: str) -> dict[str, Any]:
    """The prompt ``name``; 404 when the project has none."""
    prompt = find(conn, project_id, name)
    if prompt is None:
        raise HTTPError(404, f"no prompt named {name!r}")
    return prompt


def _version(row: tuple[Any, ...] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    keys = [k.strip() for k in _VERSION_COLUMNS.split(",")]
    version = dict(zip(keys, row, strict=True))
    version["metadata"] = orjson.loads(version["metadata"])
    return version


def get_version(
    conn: sqlite3.Connection, prompt_id: str, branch: str, version: str | None
) -> dict[str, Any] | None:
    """A version of a branch, the latest one when ``version`` is None."""
    if version is None:
        sql = f"SELECT {_VERSION_COLUMNS} FROM prompt_versions WHERE prompt_id = ? AND branch = ?"
        row = conn.execute(sql + " ORDER BY seq DESC LIMIT 1", (prompt_id, branch)).fetchone()
    else:
        sql = f"SELECT {_VERSION_COLUMNS} FROM prompt_versions"
        sql += " WHERE prompt_id = ? AND branch = ? AND version = ?"
        row = conn.execute(sql, (prompt_id, branch, version)).fetchone()
    return _version(row)


def add_version(
    conn: sqlite3.Connection,
    prompt_id: str,
    branch: str,
    content: str,
    *,
    version: str | None = None,
    message: str = "",
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Append a version to a branch (creating the branch); 409 if the label is taken."""
    (seq,) = conn.execute(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM prompt_versions WHERE prompt_id = ? AND branch = ?",
        (prompt_id, branch),
    ).fetchone()
    if version is None:
        # Explicit labels such as "3" may already occupy the next number.
        version = next(
            str(n) for n in itertools.count(seq) if not _taken(conn, prompt_id, branch, str(n))
        )
    elif _taken(conn, prompt_id, branch, version):
        raise HTTPError(409, f"version {version!r} already exists on branch {branch!r}")
    meta = _dumps(metadata or {})
    row = (new_id("ver"), prompt_id, branch, version, seq, content, message, meta, now())
    conn.execute(
        f"INSERT INTO prompt_versions ({_VERSION_COLUMNS}) VALUES ({', '.join('?' * 9)})", row
    )
    result = _version(row)
    assert result is not None
    return result


def _dumps(metadata: dict[str, Any]) -> str:
    return orjson.dumps(metadata, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


def _taken(conn: sqlite3.Connection, prompt_id: str, branch: str, version: str) -> bool:
    sql = "SELECT 1 FROM prompt_versions WHERE prompt_id = ? AND branch = ? AND version = ?"
    return conn.execute(sql, (prompt_id, branch, version)).fetchone() is not None


def create(
    conn: sqlite3.Connection, project_id: str, name: str, body: dict[str, Any]
) -> dict[str, Any]:
    """Create a prompt and its first version from a checked request body; 409 if it exists."""
    if find(conn, project_id, name) is not None:
        raise HTTPError(409, f"a prompt named {name!r} already exists")
    prompt_id = new_id("prm")
    meta = _dumps(body["metadata"])
    conn.execute(
        "INSERT INTO prompts VALUES (?, ?, ?, ?, ?, ?)",
        (prompt_id, project_id, name, int(body["enable_logging"]), meta, now()),
    )
    add_version(conn, prompt_id, body["branch"], body["content"], version=body["version"],
                message=body["message"])  # fmt: skip
    return describe(conn, require(conn, project_id, name))


def branches(conn: sqlite3.Connection, prompt_id: str) -> list[dict[str, Any]]:
    """Each branch of a prompt with its latest version label and version count."""
    rows = conn.execute(
        "SELECT branch, COUNT(*), MAX(seq) FROM prompt_versions WHERE prompt_id = ?"
        " GROUP BY branch ORDER BY branch",
        (prompt_id,),
    ).fetchall()
    out = []
    for branch, count, _ in rows:
        latest = get_version(conn, prompt_id, branch, None)
        assert latest is not None
        out.append({"name": branch, "latest_version": latest["version"], "versions": count})
    return out


def describe(conn: sqlite3.Connection, prompt: dict[str, Any]) -> dict[str, Any]:
    """A prompt with its branches, as the v2 endpoints return it."""
    return {**prompt, "branches": branches(conn, prompt["id"])}


def versions(conn: sqlite3.Connection, prompt_id: str, branch: str | None) -> list[dict[str, Any]]:
    """The versions of a prompt (of one branch when given), oldest first."""
    sql = f"SELECT {_VERSION_COLUMNS} FROM prompt_versions WHERE prompt_id = ?"
    args: tuple[str, ...] = (prompt_id,)
    if branch is not None:
        sql, args = sql + " AND branch = ?", (prompt_id, branch)
    rows = conn.execute(sql + " ORDER BY branch, seq", args).fetchall()
    return [v for v in map(_version, rows) if v is not None]


def check_content(content: str) -> str:
    """``content`` unless it is longer than MAX_CONTENT characters (413)."""
    if len(content) > MAX_CONTENT:
        raise HTTPError(413, f"content exceeds {MAX_CONTENT} characters")
    return content


def metadata_field(body: dict[str, Any]) -> dict[str, Any] | None:
    """The body's ``metadata`` object, if any; 400 when it nests too deeply."""
    metadata: dict[str, Any] | None = field_of(body, "metadata", dict, None)
    if metadata is not None and _depth(metadata) > MAX_METADATA_DEPTH:
        raise HTTPError(400, f"metadata nested too deeply: at most {MAX_METADATA_DEPTH} levels")
    return metadata


def _depth(value: Any) -> int:
    # Level by level, not recursively: orjson reads JSON nested 1,024 levels deep.
    depth, level = 0, [value]
    while level := [x for x in level if isinstance(x, dict | list)]:
        depth += 1
        level = [v for x in level for v in (x.values() if isinstance(x, dict) else x)]
    return depth


def version_body(body: dict[str, Any]) -> dict[str, Any]:
    """The checked fields of a push: content, branch, version, message, metadata."""
    content = check_content(field_of(body, "content", str))
    version = field_of(body, "version", str, None)
    message = field_of(body, "message", str, None) or field_of(body, "change_message", str, "")
    return {
        "content": content,
        "branch": check_name(field_of(body, "branch", str, "main"), "branch name"),
        "version": None if version is None else check_name(version, "version"),
        "message": message[:2000],
        "metadata": metadata_field(body) or {},
        "enable_logging": field_of(body, "enable_logging", bool, True),
    }


async def create_prompt(req: Request) -> Response:
    """POST /api/v2/prompts {name, content, branch?, version?, message?, metadata?}."""
    body = await req.json()
    name = check_name(field_of(body, "name", str))
    checked = version_body(body)
    return json_response(await req.state.store.create_prompt(req.project_id, name, checked), 201)


def _list(conn: sqlite3.Connection, project_id: str) -> list[dict[str, Any]]:
    names = conn.execute(
        "SELECT name FROM prompts WHERE project_id = ? ORDER BY name", (project_id,)
    ).fetchall()
    return [describe(conn, require(conn, project_id, n)) for (n,) in names]


async def list_prompts(req: Request) -> Response:
    """GET /api/v2/prompts: every prompt of the project with its branches."""
    return json_response({"prompts": await req.state.store.prompts(req.project_id)})


async def required(req: Request, name: str) -> dict[str, Any]:
    """The project's prompt ``name``; 404 when it has none."""
    prompt = await req.state.store.prompt(req.project_id, name)
    if prompt is None:
        raise HTTPError(404, f"no prompt named {name!r}")
    return prompt


async def described(req: Request, name: str) -> dict[str, Any]:
    """The prompt ``name`` with its branches, as the v2 endpoints return it; 404."""
    prompt = await required(req, name)
    return {**prompt, "branches": await req.state.store.branches(prompt["id"])}


async def get_prompt(req: Request) -> Response:
    """GET /api/v2/prompts/{name}: the prompt, its branches and all its versions."""
    prompt = await described(req, check_name(req.params["name"]))
    every = await req.state.store.versions(prompt["id"], req.query.get("branch"))
    return json_response({**prompt, "versions": every})


async def update_prompt(req: Request) -> Response:
    """PATCH /api/v2/prompts/{name} {enable_logging?, metadata?}."""
    name = check_name(req.params["name"])
    body = await req.json()
    enable = field_of(body, "enable_logging", bool, None)
    metadata = metadata_field(body)
    prompt = await required(req, name)
    await req.state.store.update_prompt(req.project_id, prompt["id"], enable, metadata)
    return json_response(await described(req, name))


def set_fields(
    conn: sqlite3.Connection, prompt_id: str, enable: bool | None, metadata: dict[str, Any] | None
) -> None:
    """Change a prompt's logging switch and metadata (None leaves a field alone)."""
    if enable is not None:
        conn.execute("UPDATE prompts SET enable_logging = ? WHERE id = ?", (int(enable), prompt_id))
    if metadata is not None:
        conn.execute("UPDATE prompts SET metadata = ? WHERE id = ?", (_dumps(metadata), prompt_id))


async def push_version(req: Request) -> Response:
    """POST /api/v2/prompts/{name}/versions {content, branch?, version?, message?}.

    201 with the new version, or 200 with the branch's latest version and
    ``"unchanged": true`` when that one has the same content already.
    """
    name = check_name(req.params["name"])
    body = version_body(await req.json())
    store, prompt = req.state.store, await required(req, name)
    latest = await store.version(prompt["id"], body["branch"], None)
    if unchanged(latest, body):
        return json_response({"name": name, **latest, "unchanged": True})
    version = await store.add_version(prompt["id"], body["branch"], body["content"],
                                      version=body["version"], message=body["message"],
                                      metadata=body["metadata"])  # fmt: skip
    return json_response({"name": name, **version, "unchanged": False}, 201)


def unchanged(latest: dict[str, Any] | None, body: dict[str, Any]) -> TypeGuard[dict[str, Any]]:
    """Whether a push repeats the branch's latest version: same content, no other label."""
    return (
        latest is not None
        and latest["content"] == body["content"]
        and body["version"] in (None, latest["version"])
    )


async def list_branches(req: Request) -> Response:
    """GET /api/v2/prompts/{name}/branches."""
    prompt = await required(req, check_name(req.params["name"]))
    return json_response({"branches": await req.state.store.branches(prompt["id"])})


async def create_branch(req: Request) -> Response:
    """POST /api/v2/prompts/{name}/branches {name, from?}: start a branch from another's latest."""
    name = check_name(req.params["name"])
    body = await req.json()
    branch = check_name(field_of(body, "name", str), "branch name")
    source = check_name(field_of(body, "from", str, "main"), "branch name")
    prompt = await required(req, name)
    return json_response(await req.state.store.create_branch(prompt["id"], branch, source), 201)
