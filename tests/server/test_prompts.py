"""Prompts: creation, versions, branches, the prompt fetch and the 1.0.1 CLI endpoints."""

from __future__ import annotations

import orjson
import pytest
from serverproc import Server

from banyan.server._prompts import MAX_CONTENT, MAX_METADATA_DEPTH

from .helpers import call, create_prompt, unique


def test_healthz_needs_no_key(shared_server: Server) -> None:
    """GET /healthz answers 200 without an API key."""
    import httpx

    assert httpx.get(f"{shared_server.base_url}/healthz").json() == {"status": "ok"}


def test_validate_answers_200_or_401(shared_server: Server) -> None:
    """GET /api/auth/validate: 200 with the project for a good key, 401 for a bad one."""
    good = call(shared_server, "GET", "/api/auth/validate")
    assert good.status_code == 200
    assert good.json()["project"] == "default"
    assert call(shared_server, "GET", "/api/auth/validate", key="psk_nope_nope").status_code == 401


def test_projects_endpoints_show_only_the_keys_project(shared_server: Server) -> None:
    """GET /api/projects lists the key's project; GET /api/projects/{id} 404s for others."""
    projects = call(shared_server, "GET", "/api/projects").json()["projects"]
    assert [p["name"] for p in projects] == ["default"]
    own = call(shared_server, "GET", f"/api/projects/{projects[0]['id']}")
    assert own.json()["name"] == "default"
    assert call(shared_server, "GET", "/api/projects/prj_other").status_code == 404


def test_fetch_latest_and_pinned_versions(shared_server: Server) -> None:
    """The fetch returns the branch's latest version unless ?version= pins one."""
    name = unique("fetch")
    create_prompt(shared_server, name, "one", "two")
    latest = call(shared_server, "GET", f"/api/logs/prompt/{name}").json()
    assert (latest["content"], latest["version"], latest["branch"]) == ("two", "2", "main")
    assert latest["experiment"] is None
    assert latest["enable_logging"] is True
    assert set(latest) >= {"prompt_id", "name", "project", "metadata"}
    pinned = call(shared_server, "GET", f"/api/logs/prompt/{name}", params={"version": "1"})
    assert pinned.json()["content"] == "one"
    missing = call(shared_server, "GET", f"/api/logs/prompt/{name}", params={"version": "9"})
    assert missing.status_code == 404


def test_unknown_prompt_is_404(shared_server: Server) -> None:
    """Fetching a prompt that does not exist answers 404 with an error."""
    response = call(shared_server, "GET", "/api/logs/prompt/no-such-prompt")
    assert response.status_code == 404
    assert "no-such-prompt" in response.json()["error"]


@pytest.mark.parametrize("name", ["a b", "a%2Fb", "x" * 129, "caf%C3%A9", "semi%3Bcolon"])
def test_odd_prompt_names_are_400(shared_server: Server, name: str) -> None:
    """Names outside [A-Za-z0-9._-]{1,128} are refused with 400 naming the problem."""
    response = call(shared_server, "GET", f"/api/logs/prompt/{name}")
    assert response.status_code == 400
    assert "prompt name" in response.json()["error"]
    created = call(shared_server, "POST", "/api/v2/prompts", json={"name": name, "content": "c"})
    assert created.status_code == 400


@pytest.mark.parametrize("name", [".", "..", "a/b"])
def test_dot_segment_names_are_refused_at_creation(shared_server: Server, name: str) -> None:
    """Names a URL path cannot carry (".", "..", "/") are 400 on v2 and 1.0.1 creation alike."""
    for path in ("/api/v2/prompts", "/api/logs/cli/prompts"):
        created = call(shared_server, "POST", path, json={"name": name, "content": "c"})
        assert created.status_code == 400, (path, created.text)
        assert "prompt name" in created.json()["error"]
    listed = call(shared_server, "GET", "/api/v2/prompts").json()["prompts"]
    assert name not in [p["name"] for p in listed]


def test_versions_are_numbered_per_branch_and_labels_unique(shared_server: Server) -> None:
    """Pushes number versions per branch; an explicit taken label is 409."""
    name = unique("versions")
    create_prompt(shared_server, name, "a")
    push = call(
        shared_server,
        "POST",
        f"/api/v2/prompts/{name}/versions",
        json={"content": "b", "version": "1"},
    )
    assert push.status_code == 409
    labelled = call(
        shared_server,
        "POST",
        f"/api/v2/prompts/{name}/versions",
        json={"content": "c", "version": "rc-1", "message": "why"},
    )
    assert labelled.json()["version"] == "rc-1"
    detail = call(shared_server, "GET", f"/api/v2/prompts/{name}").json()
    assert [v["version"] for v in detail["versions"]] == ["1", "rc-1"]


def test_branches_hold_their_own_versions(shared_server: Server) -> None:
    """A branch starts from another's latest version and then moves on its own."""
    name = unique("branch")
    create_prompt(shared_server, name, "main-1")
    made = call(shared_server, "POST", f"/api/v2/prompts/{name}/branches", json={"name": "dev"})
    assert made.status_code == 201
    again = call(shared_server, "POST", f"/api/v2/prompts/{name}/branches", json={"name": "dev"})
    assert again.status_code == 409
    call(
        shared_server,
        "POST",
        f"/api/v2/prompts/{name}/versions",
        json={"content": "dev-2", "branch": "dev"},
    )
    dev = call(shared_server, "GET", f"/api/logs/prompt/{name}", params={"branch": "dev"}).json()
    main = call(shared_server, "GET", f"/api/logs/prompt/{name}").json()
    assert (dev["content"], main["content"]) == ("dev-2", "main-1")
    branches = call(shared_server, "GET", f"/api/v2/prompts/{name}/branches").json()["branches"]
    assert {b["name"]: b["versions"] for b in branches} == {"dev": 2, "main": 1}


def test_duplicate_prompt_is_409_and_list_shows_it(shared_server: Server) -> None:
    """Creating an existing prompt is 409; GET /api/v2/prompts lists the prompt once."""
    name = unique("dup")
    create_prompt(shared_server, name)
    again = call(shared_server, "POST", "/api/v2/prompts", json={"name": name, "content": "x"})
    assert again.status_code == 409
    names = [p["name"] for p in call(shared_server, "GET", "/api/v2/prompts").json()["prompts"]]
    assert names.count(name) == 1


def test_enable_logging_switch_shows_in_fetch(shared_server: Server) -> None:
    """PATCH enable_logging=false makes the fetch report enable_logging false."""
    name = unique("quiet")
    create_prompt(shared_server, name)
    call(shared_server, "PATCH", f"/api/v2/prompts/{name}", json={"enable_logging": False})
    assert call(shared_server, "GET", f"/api/logs/prompt/{name}").json()["enable_logging"] is False


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"name": "ok-name"},
        {"name": 5, "content": "c"},
        {"name": "n", "content": 5},
        {"name": "n", "content": "c", "metadata": []},
        {"name": "n", "content": "c", "branch": "a b"},
    ],
)
def test_bad_prompt_bodies_are_400(shared_server: Server, payload: dict[str, object]) -> None:
    """Missing fields or wrong types in a prompt body: 400 naming the field."""
    response = call(shared_server, "POST", "/api/v2/prompts", json=payload)
    assert response.status_code == 400
    assert response.json()["error"]


def test_non_object_json_bodies_are_400(shared_server: Server) -> None:
    """A JSON body that is not an object, or not JSON at all, is 400."""
    for content in (b"[1]", b"nope", b'"text"'):
        response = call(shared_server, "POST", "/api/v2/prompts", content=content)
        assert response.status_code == 400


def test_cli_endpoints_of_101(shared_server: Server) -> None:
    """The 1.0.1 CLI endpoints create, version, list, update and delete prompts."""
    name = unique("cli")
    base = "/api/logs/cli/prompts"
    created = call(
        shared_server,
        "POST",
        base,
        json={
            "name": name,
            "content": "v1",
            "branch": "main",
            "metadata": {"a": 1},
            "project_id": None,
        },
    )
    assert created.status_code == 201
    prompt_id = created.json()["prompt_id"]
    version = call(
        shared_server,
        "POST",
        f"{base}/version",
        json={
            "name": name,
            "content": "v2",
            "version": "2.0",
            "change_message": "more",
            "branch": "main",
        },
    )
    assert version.json()["version"] == "2.0"
    listed = {p["name"]: p for p in call(shared_server, "GET", base).json()["prompts"]}
    assert listed[name]["content"] == "v2"
    assert listed[name]["id"] == prompt_id
    updated = call(shared_server, "PUT", f"{base}/{prompt_id}", json={"content": "v3"})
    assert updated.json()["content"] == "v3"
    assert call(shared_server, "DELETE", f"{base}/{prompt_id}").status_code == 200
    assert call(shared_server, "GET", f"/api/logs/prompt/{name}").status_code == 404
    assert call(shared_server, "DELETE", f"{base}/{prompt_id}").status_code == 404


def test_cli_create_for_foreign_project_is_403(shared_server: Server) -> None:
    """A 1.0.1 create naming another project in its body is refused with 403."""
    body = {"name": unique("cli"), "content": "x", "project_id": "prj_somebody_else"}
    assert call(shared_server, "POST", "/api/logs/cli/prompts", json=body).status_code == 403


def test_unknown_path_and_method(shared_server: Server) -> None:
    """An unknown path is 404 and a known path with the wrong method is 405, both JSON."""
    assert call(shared_server, "GET", "/api/v2/nothing-here").status_code == 404
    response = call(shared_server, "DELETE", "/api/v2/logs/summary")
    assert response.status_code == 405
    assert response.json()["error"]


def _prompt_id(server: Server, name: str) -> str:
    return str(call(server, "GET", f"/api/logs/prompt/{name}").json()["prompt_id"])


def _deep_metadata(fields: dict[str, str], levels: int) -> bytes:
    """``fields`` as a JSON object with a ``metadata`` nesting ``levels`` objects deep."""
    deep = b'{"k": ' * (levels - 1) + b"{}" + b"}" * (levels - 1)
    return orjson.dumps({**fields, "metadata": None})[: -len(b"null}")] + deep + b"}"


def test_metadata_nested_too_deeply_is_400_on_every_endpoint(shared_server: Server) -> None:
    """Metadata nested 300 levels (JSON allows 1,024, orjson writes 255): 400, not a 500."""
    name = unique("deep-meta")
    create_prompt(shared_server, name)
    requests = [
        ("POST", "/api/v2/prompts", {"name": unique("d"), "content": "c"}),
        ("PATCH", f"/api/v2/prompts/{name}", {}),
        ("POST", f"/api/v2/prompts/{name}/versions", {"content": "c"}),
        ("POST", "/api/logs/cli/prompts", {"name": unique("d"), "content": "c"}),
        ("POST", "/api/logs/cli/prompts/version", {"name": name, "content": "c"}),
        ("PUT", f"/api/logs/cli/prompts/{_prompt_id(shared_server, name)}", {}),
    ]
    for method, path, fields in requests:
        response = call(shared_server, method, path, content=_deep_metadata(fields, 300))
        assert response.status_code == 400, (path, response.text)
        assert "nested too deeply" in response.json()["error"]


def test_metadata_at_the_depth_limit_is_stored_and_listed(shared_server: Server) -> None:
    """Metadata nested MAX_METADATA_DEPTH levels is kept and every listing still answers."""
    name = unique("deepest-meta")
    create_prompt(shared_server, name)
    content = _deep_metadata({}, MAX_METADATA_DEPTH)
    assert call(shared_server, "PATCH", f"/api/v2/prompts/{name}", content=content).is_success
    for path in ("/api/v2/prompts", "/api/logs/cli/prompts", f"/api/logs/prompt/{name}"):
        assert call(shared_server, "GET", path).status_code == 200, path


def test_cli_update_refuses_oversized_content_and_unknown_branch(shared_server: Server) -> None:
    """PUT /api/logs/cli/prompts/{id}: content past MAX_CONTENT is 413; an unknown branch 404,
    and neither changes the prompt."""
    name = unique("cli-put")
    create_prompt(shared_server, name, "v1")
    path = f"/api/logs/cli/prompts/{_prompt_id(shared_server, name)}"
    big = call(shared_server, "PUT", path, json={"content": "x" * (MAX_CONTENT + 1)})
    assert big.status_code == 413
    missing = call(shared_server, "PUT", path, json={"branch": "nope", "metadata": {"a": 1}})
    assert missing.status_code == 404
    assert "nope" in missing.json()["error"]
    fetched = call(shared_server, "GET", f"/api/logs/prompt/{name}").json()
    assert (fetched["content"], fetched["version"], fetched["metadata"]) == ("v1", "1", {})
