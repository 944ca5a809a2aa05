"""Projects and API keys: bootstrap, lookup by key, and the admin endpoints.

Keys are stored only as sha256 hex digests. A key belongs to one project and
may be an *admin* key: the bootstrap key is one. Any key may create another
key for its own project; only an admin key may create a project.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from dataclasses import dataclass
from typing import Any

from banyan._wire import API_KEY_HEADER, PROJECT_HEADER
from banyan.server._db import new_id, now, transaction
from banyan.server._http import HTTPError, Request, Response, check_name, json_response

KEY_PREFIX = "psk_"
DEFAULT_PROJECT = "default"
#: Every project id starts with it; no project name may (#14).
ID_PREFIX = "prj_"


@dataclass(frozen=True)
class Principal:
    """Who a request speaks for: a project, and whether its key is an admin key."""

    project_id: str
    project_name: str
    admin: bool


def hash_key(key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key() -> str:
    """A fresh random API key."""
    return KEY_PREFIX + os.urandom(24).hex()


def lookup(conn: sqlite3.Connection, digest: str) -> Principal | None:
    """The principal for a key digest, or None for an unknown key."""
    row = conn.execute(
        "SELECT k.project_id, p.name, k.admin FROM api_keys k"
        " JOIN projects p ON p.id = k.project_id WHERE k.hash = ?",
        (digest,),
    ).fetchone()
    return Principal(row[0], row[1], bool(row[2])) if row else None


def project_row(conn: sqlite3.Connection, project_id: str) -> dict[str, Any] | None:
    """A project as JSON, or None."""
    row = conn.execute(
        "SELECT id, name, created_at FROM projects WHERE id = ?", (project_id,)
    ).fetchone()
    return {"id": row[0], "name": row[1], "created_at": row[2]} if row else None


def insert_project(conn: sqlite3.Connection, name: str) -> str:
    """Create a project; 409 when the name is taken."""
    if conn.execute("SELECT 1 FROM projects WHERE name = ?", (name,)).fetchone():
        raise HTTPError(409, f"a project named {name!r} already exists")
    project_id = new_id(ID_PREFIX.rstrip("_"))
    conn.execute("INSERT INTO projects VALUES (?, ?, ?)", (project_id, name, now()))
    return project_id


def insert_key(
    conn: sqlite3.Connection, project_id: str, digest: str, prefix: str, *, admin: bool,
    label: str = "",
) -> None:  # fmt: skip
    """Store a key's digest for a project, unless it is stored already."""
    conn.execute(
        "INSERT OR IGNORE INTO api_keys VALUES (?, ?, ?, ?, ?, ?)",
        (digest, project_id, prefix, label, int(admin), now()),
    )


def bootstrap(conn: sqlite3.Connection, key: str | None) -> tuple[str, str | None, bool]:
    """Make sure a usable project and key exist.

    Returns the default project's id, the key to print (None when an existing
    database already has keys and none was given) and whether anything was
    created. Giving the same ``key`` again is a no-op.
    """
    with transaction(conn):
        row = conn.execute("SELECT id FROM projects WHERE name = ?", (DEFAULT_PROJECT,)).fetchone()
        project_id = row[0] if row else insert_project(conn, DEFAULT_PROJECT)
        if key is not None:
            known = lookup(conn, hash_key(key))
            if known is None:
                insert_key(conn, project_id, hash_key(key), key[:8], admin=True, label="bootstrap")
            return (known.project_id if known else project_id), key, known is None
        if conn.execute("SELECT 1 FROM api_keys LIMIT 1").fetchone():
            return project_id, None, row is None
        key = generate_key()
        insert_key(conn, project_id, hash_key(key), key[:8], admin=True, label="bootstrap")
        return project_id, key, True


def is_key_text(key: str) -> bool:
    """Whether ``key`` has the form of an API key: psk_..., 8 to 256 characters."""
    return key.startswith(KEY_PREFIX) and 8 <= len(key) <= 256


def check_key_text(key: str) -> None:
    """401 unless ``key`` looks like an API key."""
    if not is_key_text(key):
        raise HTTPError(401, "missing or invalid API key (header X-API-Key: psk_...)")


def check_project(principal: Principal, project: str | None) -> None:
    """403 when ``project`` is given and is not the principal's.

    A value of the id shape is compared with the id only, anything else with the
    name: no name, not even one stored before names were checked, passes for an id.
    """
    if not project:
        return
    own = principal.project_id if project.startswith(ID_PREFIX) else principal.project_name
    if project != own:
        raise HTTPError(403, f"this API key does not belong to project {project!r}")


def check_project_name(value: Any) -> str:
    """A valid project name: 400 for a bad one or one shaped like a project id."""
    name = check_name(value, "project name")
    if name.lower().startswith(ID_PREFIX):
        raise HTTPError(400, f"a project name may not start with {ID_PREFIX!r}: ids do")
    return name


async def authorize(req: Request, key: str) -> None:
    """Set ``req.principal`` from ``key``: 401 for a bad key, 403 for a foreign X-Project-Id.

    A repeated X-API-Key or X-Project-Id is 400: no guess at which one counts.
    """
    req.single_header(API_KEY_HEADER)
    project = req.single_header(PROJECT_HEADER)
    req.principal = await req.state.authenticate(key)
    check_project(req.principal, project)


async def create_project(req: Request) -> Response:
    """POST /api/v2/projects {name}: a new project and its first key (admin keys only)."""
    assert req.principal is not None
    if not req.principal.admin:
        raise HTTPError(403, "only an admin key may create projects")
    name = check_project_name((await req.json()).get("name"))
    key = generate_key()
    project = await req.state.store.create_project(name, hash_key(key), key[:8])
    return json_response({"project": project, "api_key": key}, 201)


async def create_key(req: Request) -> Response:
    """POST /api/v2/keys {label?}: a new key for the caller's project."""
    label = (await req.json()).get("label", "")
    if not isinstance(label, str) or len(label) > 200:
        raise HTTPError(400, "label must be a string of at most 200 characters")
    key = generate_key()
    await req.state.store.add_key(req.project_id, hash_key(key), key[:8], admin=False, label=label)
    return json_response({"api_key": key, "project_id": req.project_id, "label": label}, 201)


async def revoke_key(req: Request) -> Response:
    """POST /api/v2/keys/revoke {api_key}: delete a key of the caller's project.

    Other instances may accept it for up to ``_app.KEY_TTL`` seconds more (their cache).
    """
    key = (await req.json()).get("api_key")
    if not isinstance(key, str) or not is_key_text(key):
        raise HTTPError(400, "api_key must be an API key (psk_...)")
    await req.state.store.revoke_key(req.project_id, hash_key(key))
    req.state.keys.pop(hash_key(key), None)
    return json_response({"revoked": key[:8]})


async def list_projects(req: Request) -> Response:
    """GET /api/projects and /api/v2/projects: the caller's project."""
    project = await req.state.store.project(req.project_id)
    return json_response({"projects": [project]})


async def get_project(req: Request) -> Response:
    """GET /api/projects/{id}: the caller's project; 404 for any other id."""
    if req.params["id"] != req.project_id:
        raise HTTPError(404, f"no project {req.params['id']!r}")
    return json_response(await req.state.store.project(req.project_id))


async def validate(req: Request) -> Response:
    """GET /api/auth/validate: 200 with the key's project (401 was raised earlier)."""
    assert req.principal is not None
    return json_response(
        {
            "valid": True,
            "project_id": req.principal.project_id,
            "project": req.principal.project_name,
            "admin": req.principal.admin,
        }
    )
