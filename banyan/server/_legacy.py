"""The 1.0.1 endpoints: one usage record, prompt fetch, server-side routing, the CLI's.

These keep banyan-sdk 1.0.1 working (see PROTOCOL-NOTES.md); the prompt fetch
also serves 2.x clients, which read its ``experiment`` field and route locally.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from typing import Any

import msgspec
import orjson

from banyan import _routing
from banyan._record import Record
from banyan._wire import API_KEY_HEADER, JSON, MAX_BATCH_BYTES
from banyan.server import _auth, _idempotency, _ingest, _prompts
from banyan.server._http import HTTPError, Request, Response, check_name, field_of, json_response
from banyan.server._repeats import repeated_key
from banyan.server._undecodable import UNDECODABLE, undecodable


def _check_project(req: Request, body: dict[str, Any]) -> None:
    assert req.principal is not None
    _auth.check_project(req.principal, field_of(body, "project_id", str, None))


class LegacyUsage(msgspec.Struct):
    """The body 1.0.1 sends to /api/logs/prompt-usage (unknown fields ignored)."""

    input: str = ""
    output: str = ""
    metadata: dict[str, Any] | None = None
    prompt_id: str | None = None
    prompt_name: str | None = None
    version: str | None = None
    branch_name: str | None = None
    model: str | None = None
    duration_ms: float | None = None
    experiment_id: str | None = None
    experiment_version_id: str | None = None
    sticky_key: str | None = None
    sticky_value: str | None = None
    id: str | None = None
    ts: float | None = None
    project_id: str | None = None
    #: Only 2.x records have one (a score: "score"); 1.0.1 cannot store them.
    kind: str | None = None


_usage_decoder = msgspec.json.Decoder(LegacyUsage)


def _usage_batch(req: Request, raw: bytes) -> tuple[str, _ingest.Decoded]:
    """The record of a usage body, given an id and a time if it has none; 400/403."""
    try:
        usage = _usage_decoder.decode(raw)
    except UNDECODABLE as exc:
        raise HTTPError(400, f"invalid usage record: {undecodable(exc, raw, JSON)}") from None
    key = repeated_key(raw, JSON)
    if key is not None:
        raise HTTPError(400, f"invalid usage record: key {key!r} appears more than once")
    if usage.kind is not None:
        raise HTTPError(
            400, f"invalid usage record: a {usage.kind!r} record goes to /api/v2/logs/batch"
        )
    assert req.principal is not None
    _auth.check_project(req.principal, usage.project_id)
    fields = msgspec.structs.asdict(usage)
    del fields["project_id"], fields["kind"]
    fields["id"] = usage.id or f"v1-{uuid.uuid4().hex}"
    fields["ts"] = time.time() if usage.ts is None else usage.ts
    batch = _ingest.to_rows([Record(**fields)])
    if batch.rejected:
        raise HTTPError(400, f"invalid usage record: {batch.rejected[0].error}")
    return fields["id"], batch


async def log_single(req: Request) -> Response:
    """POST /api/logs/prompt-usage: one JSON record; a repeated Idempotency-Key is replayed."""
    raw = await req.body(MAX_BATCH_BYTES)
    rid, batch = _usage_batch(req, raw)
    key, store = _idempotency.key_of(req), req.state.store

    def answer(inserted: int) -> _idempotency.Answer:
        return 201, orjson.dumps({"success": True, "id": rid, "duplicate": not inserted})

    if key is None:
        return Response(*answer(await store.ingest(req.project_id, batch, 1)))
    fingerprint = _idempotency.fingerprint(raw)
    kept = await store.ingest_once(req.project_id, batch, key, fingerprint, answer)
    return Response(*_idempotency.answered(key, raw, kept))


def prompt_json(req: Request, prompt: dict[str, Any], version: dict[str, Any]) -> dict[str, Any]:
    """A prompt version in the 1.0.1 shape."""
    return {
        "prompt_id": prompt["id"],
        "id": prompt["id"],
        "name": prompt["name"],
        "content": version["content"],
        "version": version["version"],
        "version_id": version["id"],
        "branch": version["branch"],
        "project": req.project_id,
        "enable_logging": prompt["enable_logging"],
        "metadata": prompt["metadata"],
    }


async def fetch_prompt(req: Request) -> Response:
    """GET /api/logs/prompt/{name}?branch=B[&version=V]: a version plus the running experiment."""
    name = check_name(req.params["name"])
    branch = check_name(req.query.get("branch") or "main", "branch name")
    wanted = req.query.get("version") or None
    if wanted is not None:
        check_name(wanted, "version")

    store, prompt = req.state.store, await _prompts.required(req, name)
    version = await store.version(prompt["id"], branch, wanted)
    if version is None:
        raise HTTPError(404, f"prompt {name!r} has no version {wanted or 'at all'} on {branch!r}")
    # A pinned version is not routed: the caller asked for exactly that content.
    exp = None if wanted else await store.running_experiment(req.project_id, prompt["id"], branch)
    return json_response(
        {**prompt_json(req, prompt, version), "experiment": msgspec.to_builtins(exp)}
    )


async def _authorized_body(req: Request) -> dict[str, Any]:
    """The body of a route call, read after its key is checked (401/403 before 400)."""
    key = req.headers.get(API_KEY_HEADER.lower())
    if key:
        await _auth.authorize(req, key)
        return await req.json()
    # 1.0.1 may send the key in the body: without one, a body that cannot be read is a 401.
    try:
        body = await req.json()
    except HTTPError:
        body = {}
    key = body.get("apiKey")
    await _auth.authorize(req, key if isinstance(key, str) else "")
    return body


async def route(req: Request) -> Response:
    """POST /api/experiments/route {experimentId, stickyKey, stickyValue, apiKey}."""
    body = await _authorized_body(req)
    exp_id = field_of(body, "experimentId", str)
    value = field_of(body, "stickyValue", str)

    store = req.state.store
    exp = await store.experiment(req.project_id, exp_id)
    if exp["status"] != "running":
        raise HTTPError(409, f"experiment {exp_id} is {exp['status']}, not running")
    cfg = await store.experiment_config(req.project_id, exp_id)
    variant = _routing.choose(cfg, value)
    prompt = await _prompts.required(req, exp["prompt"])
    version = await store.version(prompt["id"], exp["branch"], variant.version if variant else None)
    if version is None:
        raise HTTPError(404, f"the version for experiment {exp_id} no longer exists")
    return json_response({
        "prompt": prompt_json(req, prompt, version),
        "selected_version_id": variant.id if variant else None,
        "variant": msgspec.to_builtins(variant),
        "enrolled": variant is not None,
        "experiment_id": exp_id,
        "sticky_key": cfg.sticky_key,
    })  # fmt: skip


async def _listing(req: Request, branch: str | None) -> list[dict[str, Any]]:
    out, store = [], req.state.store
    for prompt in await store.prompts(req.project_id):
        version = await store.version(prompt["id"], branch or "main", None)
        if version is None and branch is None:
            every = await store.versions(prompt["id"], None)
            version = max(every, key=lambda v: v["created_at"]) if every else None
        if version is not None:
            out.append({**prompt_json(req, prompt, version), "created_at": prompt["created_at"]})
    return out


async def cli_list(req: Request) -> Response:
    """GET /api/logs/cli/prompts[?branch=B]: each prompt's latest version."""
    branch = req.query.get("branch") or None
    if branch is not None:
        check_name(branch, "branch name")
    _check_project(req, {"project_id": req.query.get("project_id")})
    return json_response({"prompts": await _listing(req, branch)})


async def cli_create(req: Request) -> Response:
    """POST /api/logs/cli/prompts {name, content, branch, metadata, project_id}."""
    body = await req.json()
    _check_project(req, body)
    name = check_name(field_of(body, "name", str))
    checked = _prompts.version_body(body)
    store = req.state.store
    prompt = await store.create_prompt(req.project_id, name, checked)
    version = await store.version(prompt["id"], checked["branch"], None)
    assert version is not None
    return json_response(prompt_json(req, prompt, version), 201)


async def cli_version(req: Request) -> Response:
    """POST /api/logs/cli/prompts/version {name, content, version, change_message, branch}."""
    body = await req.json()
    _check_project(req, body)
    name = check_name(field_of(body, "name", str))
    checked = _prompts.version_body(body)
    prompt = await _prompts.required(req, name)
    version = await req.state.store.add_version(
        prompt["id"], checked["branch"], checked["content"], version=checked["version"],
        message=checked["message"], metadata=checked["metadata"])  # fmt: skip
    return json_response(prompt_json(req, prompt, version), 201)


def _by_id(conn: sqlite3.Connection, project_id: str, prompt_id: str) -> dict[str, Any]:
    row = conn.execute("SELECT name FROM prompts WHERE id = ? AND project_id = ?",
                       (prompt_id, project_id)).fetchone()  # fmt: skip
    if row is None:
        raise HTTPError(404, f"no prompt with id {prompt_id!r}")
    return _prompts.require(conn, project_id, row[0])


async def _prompt_by_id(req: Request) -> dict[str, Any]:
    prompt = await req.state.store.prompt_by_id(req.project_id, req.params["id"])
    if prompt is None:
        raise HTTPError(404, f"no prompt with id {req.params['id']!r}")
    return prompt


async def cli_update(req: Request) -> Response:
    """PUT /api/logs/cli/prompts/{id} {content?, metadata?, branch?, enable_logging?}.

    The branch is checked first: a missing one is 404 and changes nothing.
    """
    body = await req.json()
    content = field_of(body, "content", str, None)
    if content is not None:
        _prompts.check_content(content)
    branch = check_name(field_of(body, "branch", str, "main"), "branch name")
    metadata = _prompts.metadata_field(body)
    enable = field_of(body, "enable_logging", bool, None)
    store, prompt = req.state.store, await _prompt_by_id(req)
    if content is None and await store.version(prompt["id"], branch, None) is None:
        raise HTTPError(404, f"prompt {prompt['name']!r} has no branch {branch!r}")
    await store.update_prompt(req.project_id, prompt["id"], enable, metadata)
    if content is not None:
        await store.add_version(prompt["id"], branch, content, message="updated")
    version = await store.version(prompt["id"], branch, None)
    assert version is not None
    return json_response(prompt_json(req, await _prompt_by_id(req), version))


async def cli_delete(req: Request) -> Response:
    """DELETE /api/logs/cli/prompts/{id}: the prompt, its versions and experiments."""
    await req.state.store.delete_prompt(req.project_id, req.params["id"])
    return json_response({"deleted": req.params["id"]})
