"""Projects and keys: admin endpoints and the isolation of one project from another."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from serverproc import Server

from banyan._wire import SINGLE_LOG_PATH
from banyan.server import _auth
from banyan.server._http import HTTPError

from .helpers import body, call, create_prompt, post_batch, record, unique


def _prompt_in_experiment(server: Server, name: str) -> str:
    """Prompt ``name`` (versions "1" and "2") with a running experiment; the experiment's id."""
    create_prompt(server, name, "one", "two")
    variants = [{"version": "1", "percentage": 100}]
    response = call(
        server, "POST", "/api/v2/experiments", json={"prompt": name, "variants": variants}
    )
    return str(response.json()["id"])


def test_key_of_project_b_cannot_see_project_a(shared_server: Server, project_b: str) -> None:
    """Prompts, logs, experiments and counters of project A are invisible to B's key."""
    name = unique("secret")
    exp = {"id": _prompt_in_experiment(shared_server, name)}
    rid = unique("a-record")
    assert post_batch(shared_server, body([record(rid)])).json()["accepted"] == 1
    assert call(shared_server, "GET", f"/api/logs/prompt/{name}", project_b).status_code == 404
    assert (
        call(shared_server, "GET", f"/api/v2/experiments/{exp['id']}", project_b).status_code == 404
    )
    assert (
        call(
            shared_server, "GET", f"/api/v2/experiments/{exp['id']}/results", project_b
        ).status_code
        == 404
    )
    assert call(shared_server, "GET", "/api/v2/logs/ids", project_b).json() == {"ids": []}
    assert call(shared_server, "GET", "/api/v2/logs/summary", project_b).json()["stored"] == 0
    names = [
        p["name"]
        for p in call(shared_server, "GET", "/api/v2/prompts", project_b).json()["prompts"]
    ]
    assert name not in names


def test_key_of_project_b_writes_only_to_b(shared_server: Server, project_b: str) -> None:
    """B's records, even with A's ids, land in B; naming A in X-Project-Id is 403."""
    project_a = call(shared_server, "GET", "/api/auth/validate").json()["project_id"]
    rid = unique("shared-id")
    assert post_batch(shared_server, body([record(rid)])).json()["accepted"] == 1
    assert post_batch(shared_server, body([record(rid)]), key=project_b).json()["accepted"] == 1
    refused = post_batch(
        shared_server, body([record(unique("x"))]), {"X-Project-Id": project_a}, key=project_b
    )
    assert refused.status_code == 403
    b_ids = call(shared_server, "GET", "/api/v2/logs/ids", project_b).json()["ids"]
    assert b_ids == [rid]
    create_prompt(shared_server, "same-name-in-b", key=project_b)
    fetched = call(shared_server, "GET", "/api/logs/prompt/same-name-in-b", project_b)
    assert fetched.status_code == 200
    assert call(shared_server, "GET", "/api/logs/prompt/same-name-in-b").status_code == 404


def test_keys_and_projects_admin(shared_server: Server, project_b: str) -> None:
    """Any key can mint a key for its own project; only an admin key can create projects."""
    minted = call(shared_server, "POST", "/api/v2/keys", project_b, json={"label": "ci"})
    assert minted.status_code == 201
    new_key = minted.json()["api_key"]
    assert new_key.startswith("psk_")
    same = call(shared_server, "GET", "/api/auth/validate", new_key).json()
    b = call(shared_server, "GET", "/api/auth/validate", project_b).json()
    assert same["project_id"] == b["project_id"]
    assert same["admin"] is False
    refused = call(shared_server, "POST", "/api/v2/projects", project_b, json={"name": unique("p")})
    assert refused.status_code == 403
    taken = call(shared_server, "POST", "/api/v2/projects", json={"name": "default"})
    assert taken.status_code == 409
    odd = call(shared_server, "POST", "/api/v2/projects", json={"name": "no spaces"})
    assert odd.status_code == 400


def test_projects_lists_the_keys_own_project_only(shared_server: Server, project_b: str) -> None:
    """GET /api/v2/projects (and /api/projects) answers the key's project and no other."""
    created = call(shared_server, "POST", "/api/v2/projects", json={"name": unique("listed")})
    assert created.status_code == 201, created.text
    new_key, new_project = created.json()["api_key"], created.json()["project"]
    default = call(shared_server, "GET", "/api/auth/validate").json()["project_id"]
    b = call(shared_server, "GET", "/api/auth/validate", project_b).json()["project_id"]
    for path in ("/api/v2/projects", "/api/projects"):
        assert call(shared_server, "GET", path, new_key).json() == {"projects": [new_project]}
        for key, project_id in ((None, default), (project_b, b)):
            listed = call(shared_server, "GET", path, key)
            assert listed.status_code == 200, listed.text
            assert [p["id"] for p in listed.json()["projects"]] == [project_id]
    names = call(shared_server, "GET", "/api/v2/projects").json()["projects"]
    assert [p["name"] for p in names] == ["default"]


def test_key_of_project_b_cannot_change_project_a(shared_server: Server, project_b: str) -> None:
    """B's writes to A's prompt and experiment are 404 (not found in B) and change nothing."""
    name = unique("guarded")
    exp_id = _prompt_in_experiment(shared_server, name)
    prompt_id = call(shared_server, "GET", f"/api/logs/prompt/{name}").json()["prompt_id"]
    before = _snapshot(shared_server, name, exp_id)
    assert before[1]["status"] == "running"
    attempts = [
        ("POST", f"/api/v2/experiments/{exp_id}/stop", {}),
        ("PATCH", f"/api/v2/prompts/{name}", {"enable_logging": False, "metadata": {"x": 1}}),
        ("POST", f"/api/v2/prompts/{name}/versions", {"content": "taken over"}),
        ("POST", f"/api/v2/prompts/{name}/branches", {"name": "dev"}),
        ("POST", "/api/logs/cli/prompts/version", {"name": name, "content": "taken over"}),
        ("PUT", f"/api/logs/cli/prompts/{prompt_id}", {"content": "taken over"}),
        ("DELETE", f"/api/logs/cli/prompts/{prompt_id}", None),
    ]
    for method, path, payload in attempts:
        refused = call(shared_server, method, path, project_b, json=payload)
        assert refused.status_code == 404, (method, path, refused.text)
    assert _snapshot(shared_server, name, exp_id) == before
    b_prompts = call(shared_server, "GET", "/api/v2/prompts", project_b).json()["prompts"]
    assert name not in [p["name"] for p in b_prompts]


def _snapshot(server: Server, name: str, exp_id: str) -> tuple[Any, Any]:
    """Project A's view of its prompt (versions included) and of its experiment."""
    prompt = call(server, "GET", f"/api/v2/prompts/{name}")
    experiment = call(server, "GET", f"/api/v2/experiments/{exp_id}")
    assert (prompt.status_code, experiment.status_code) == (200, 200)
    return prompt.json(), experiment.json()


def test_project_name_shaped_like_an_id_is_refused(shared_server: Server) -> None:
    """A project may not be named prj_...: a name can never pass for another project's id."""
    b_id = call(shared_server, "POST", "/api/v2/projects", json={"name": unique("target")})
    for name in (b_id.json()["project"]["id"], "prj_anything", "PRJ_upper"):
        refused = call(shared_server, "POST", "/api/v2/projects", json={"name": name})
        assert refused.status_code == 400, refused.text


def test_id_shaped_project_header_matches_the_id_only() -> None:
    """X-Project-Id of the id shape is compared with the id, even against an older id-like name."""
    principal = _auth.Principal("prj_aaaa", "prj_bbbb", admin=True)
    _auth.check_project(principal, "prj_aaaa")
    with pytest.raises(HTTPError) as refused:
        _auth.check_project(principal, "prj_bbbb")
    assert refused.value.status == 403


@pytest.mark.parametrize("http2", [False, True])
@pytest.mark.parametrize("header", ["X-API-Key", "X-Project-Id"])
def test_repeated_auth_header_is_400(
    shared_server: Server, project_b: str, header: str, http2: bool
) -> None:
    """Two X-API-Key or two X-Project-Id headers: 400, whichever of them would pass."""
    own = call(shared_server, "GET", "/api/auth/validate").json()["project_id"]
    values = {"X-API-Key": [project_b, shared_server.api_key], "X-Project-Id": ["prj_other", own]}
    headers = [("X-API-Key", shared_server.api_key)] if header != "X-API-Key" else []
    headers += [(header, value) for value in values[header]]
    with httpx.Client(base_url=shared_server.base_url, http2=http2, timeout=30) as client:
        response = client.get("/api/auth/validate", headers=headers)
    assert response.status_code == 400, response.text
    assert header.lower() in response.json()["error"].lower()


def test_101_usage_naming_another_project_is_403(shared_server: Server, project_b: str) -> None:
    """POST /api/logs/prompt-usage with a body project_id of another project: 403, not stored."""
    b_id = call(shared_server, "GET", "/api/auth/validate", project_b).json()["project_id"]
    own = call(shared_server, "GET", "/api/auth/validate").json()["project_id"]
    usage = {"input": "i", "output": "o"}
    refused = call(shared_server, "POST", SINGLE_LOG_PATH, json={**usage, "project_id": b_id})
    assert refused.status_code == 403
    stored = call(shared_server, "POST", SINGLE_LOG_PATH, json={**usage, "project_id": own})
    assert stored.status_code == 201
    ids = shared_server.stored_ids()
    assert stored.json()["id"] in ids
    assert call(shared_server, "GET", "/api/v2/logs/ids", project_b).json()["ids"] == []
