"""Experiments: creation, the one-running rule, routing, results and stats."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from serverproc import Server

from banyan import _routing

from .helpers import body, call, create_prompt, post_batch, record, unique


def _experiment(server: Server, prompt: str, **extra: Any) -> dict[str, Any]:
    payload = {
        "prompt": prompt,
        "variants": [{"version": "1", "percentage": 30}, {"version": "2", "weight_bp": 7000}],
        **extra,
    }
    response = call(server, "POST", "/api/v2/experiments", json=payload)
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_fetch_carries_running_experiment_config(shared_server: Server) -> None:
    """A prompt fetch returns the running experiment in banyan._routing.Experiment's shape."""
    name = unique("exp")
    create_prompt(shared_server, name, "one", "two")
    exp = _experiment(shared_server, name, sticky_key="session_id", traffic=50)
    fetched = call(shared_server, "GET", f"/api/logs/prompt/{name}").json()["experiment"]
    config = msgspec.convert(fetched, _routing.Experiment)
    assert _routing.validate(config) is None
    assert config.id == exp["id"]
    assert config.sticky_key == "session_id"
    assert config.traffic_bp == 5000
    assert config.hash_version == 1
    assert [(v.version, v.weight_bp, v.content) for v in config.variants] == [
        ("1", 3000, "one"),
        ("2", 7000, "two"),
    ]
    assert set(fetched) == {
        "id",
        "name",
        "sticky_key",
        "seed",
        "hash_version",
        "traffic_bp",
        "variants",
    }
    pinned = call(shared_server, "GET", f"/api/logs/prompt/{name}", params={"version": "1"})
    assert pinned.json()["experiment"] is None


def test_only_one_running_experiment_per_prompt_branch(shared_server: Server) -> None:
    """A second running experiment on the same prompt and branch is 409 until the first stops."""
    name = unique("one-running")
    create_prompt(shared_server, name, "one", "two")
    first = _experiment(shared_server, name)
    response = call(
        shared_server,
        "POST",
        "/api/v2/experiments",
        json={"prompt": name, "variants": [{"version": "1", "percentage": 100}]},
    )
    assert response.status_code == 409
    draft = _experiment(shared_server, name, start=False)
    assert draft["status"] == "draft"
    assert (
        call(shared_server, "POST", f"/api/v2/experiments/{draft['id']}/start").status_code == 409
    )
    stopped = call(shared_server, "POST", f"/api/v2/experiments/{first['id']}/stop").json()
    assert stopped["status"] == "stopped"
    started = call(shared_server, "POST", f"/api/v2/experiments/{draft['id']}/start").json()
    assert started["status"] == "running"
    fetched = call(shared_server, "GET", f"/api/logs/prompt/{name}").json()
    assert fetched["experiment"]["id"] == draft["id"]


@pytest.mark.parametrize(
    "variants",
    [
        [{"version": "1", "percentage": 60}],
        [{"version": "1", "percentage": 50}, {"version": "9", "percentage": 50}],
        [{"version": "1", "weight_bp": -1}, {"version": "2", "weight_bp": 10001}],
        [{"version": "1", "percentage": 33.333}, {"version": "2", "percentage": 66.667}],
        [{"version": "1", "percentage": 1e307}],
        [],
        "not a list",
    ],
)
def test_bad_experiments_are_400(shared_server: Server, variants: Any) -> None:
    """Weights not summing to 100 %, unknown versions, bad shapes: 400, nothing created."""
    name = unique("bad-exp")
    create_prompt(shared_server, name, "one", "two")
    response = call(
        shared_server, "POST", "/api/v2/experiments", json={"prompt": name, "variants": variants}
    )
    assert response.status_code == 400
    listed = call(shared_server, "GET", "/api/v2/experiments", params={"prompt": name}).json()
    assert listed["experiments"] == []


@pytest.mark.parametrize("traffic", [1e307, -1, 100.01])
def test_traffic_outside_0_to_100_is_400(shared_server: Server, traffic: float) -> None:
    """A traffic percentage outside 0..100, however large, is 400."""
    name = unique("bad-traffic")
    create_prompt(shared_server, name, "one")
    variants = [{"version": "1", "percentage": 100}]
    payload = {"prompt": name, "variants": variants, "traffic": traffic}
    assert call(shared_server, "POST", "/api/v2/experiments", json=payload).status_code == 400


def test_route_agrees_with_routing_choose(shared_server: Server) -> None:
    """POST /api/experiments/route picks the same variant as banyan._routing.choose."""
    name = unique("route")
    create_prompt(shared_server, name, "one", "two")
    exp = _experiment(shared_server, name, traffic=80)
    config = msgspec.convert(
        call(shared_server, "GET", f"/api/logs/prompt/{name}").json()["experiment"],
        _routing.Experiment,
    )
    seen = set()
    for i in range(60):
        value = f"user-{i}"
        payload = {
            "experimentId": exp["id"],
            "stickyKey": "user_id",
            "stickyValue": value,
            "apiKey": shared_server.api_key,
        }
        routed = call(shared_server, "POST", "/api/experiments/route", json=payload).json()
        expected = _routing.choose(config, value)
        assert routed["selected_version_id"] == (expected.id if expected else None)
        if expected is not None:
            assert routed["prompt"]["version"] == expected.version
            assert routed["prompt"]["content"] == expected.content
        seen.add(routed["selected_version_id"])
    assert len(seen) == 3


def test_route_accepts_key_in_body_only(shared_server: Server) -> None:
    """The 1.0.1 route call may carry its key in the body instead of the header."""
    import httpx

    name = unique("route-body")
    create_prompt(shared_server, name, "one", "two")
    exp = _experiment(shared_server, name)
    payload = {
        "experimentId": exp["id"],
        "stickyKey": "user_id",
        "stickyValue": "u",
        "apiKey": shared_server.api_key,
    }
    url = f"{shared_server.base_url}/api/experiments/route"
    assert httpx.post(url, json=payload).status_code == 200
    assert httpx.post(url, json={**payload, "apiKey": "psk_wrong_key"}).status_code == 401


def test_route_checks_key_and_project_before_the_body(
    shared_server: Server, project_b: str
) -> None:
    """The route call refuses a foreign X-Project-Id (403) and a keyless body (401) before
    reading the body, as every other endpoint does."""
    import httpx

    name = unique("route-auth")
    create_prompt(shared_server, name, "one", "two")
    exp = _experiment(shared_server, name)
    payload = {"experimentId": exp["id"], "stickyKey": "user_id", "stickyValue": "u"}
    url = f"{shared_server.base_url}/api/experiments/route"
    own = {"X-API-Key": shared_server.api_key}
    foreign = {"X-Project-Id": "prj_somebody_else"}
    in_body = {**payload, "apiKey": shared_server.api_key}
    assert httpx.post(url, json=payload, headers={**own, **foreign}).status_code == 403
    assert httpx.post(url, json=in_body, headers=foreign).status_code == 403
    assert httpx.post(url, json=payload, headers={"X-API-Key": project_b}).status_code == 404
    assert httpx.post(url, content=b"{oops", headers=own).status_code == 400
    assert httpx.post(url, content=b"{oops").status_code == 401
    assert httpx.post(url, json=payload, headers=own).status_code == 200


def test_get_experiment_legacy_and_v2(shared_server: Server) -> None:
    """GET /api/experiments/{id} and the v2 path describe the experiment; unknown ids 404."""
    name = unique("get-exp")
    create_prompt(shared_server, name, "one", "two")
    exp = _experiment(shared_server, name)
    for path in (f"/api/experiments/{exp['id']}", f"/api/v2/experiments/{exp['id']}"):
        got = call(shared_server, "GET", path).json()
        assert got["id"] == exp["id"]
        assert got["experiment_id"] == exp["id"]
        assert got["status"] == "running"
        assert len(got["variants"]) == 2
    assert call(shared_server, "GET", "/api/experiments/exp_missing").status_code == 404


def test_results_and_stats_per_variant(server: Server) -> None:
    """Results give per variant its subjects, records, latency percentiles and per-subject mean;
    stats give count per version."""
    create_prompt(server, "stats", "one", "two")
    exp = _experiment(server, "stats")
    v1, v2 = exp["variants"]
    records = [
        record(
            f"a{i}",
            prompt_name="stats",
            version="1",
            experiment_id=exp["id"],
            experiment_version_id=v1["id"],
            duration_ms=float(i + 1),
            model="m1",
            sticky_value=f"u{i % 50}",
        )
        for i in range(100)
    ] + [
        record(
            f"b{i}",
            prompt_name="stats",
            version="2",
            experiment_id=exp["id"],
            experiment_version_id=v2["id"],
            duration_ms=10.0,
            model="m2",
            sticky_value=f"w{i}",
        )
        for i in range(10)
    ]
    assert post_batch(server, body(records)).json()["accepted"] == 110
    results = call(server, "GET", f"/api/v2/experiments/{exp['id']}/results").json()
    first, second = results["variants"]
    assert (first["subjects"], first["records"], first["latency"]) == (
        50,
        100,
        {"p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0},
    )
    assert first["metrics"]["latency_ms"]["value"] == 50.5
    assert (second["subjects"], second["records"], second["latency"]["p50_ms"]) == (10, 10, 10.0)
    assert second["versus_control"]["latency_ms"]["absolute"] == 10.0 - 50.5
    groups = call(server, "GET", "/api/v2/stats", params={"prompt": "stats"}).json()["groups"]
    assert {(g["version"], g["count"]) for g in groups} == {("1", 100), ("2", 10)}
    assert call(server, "GET", "/api/v2/stats", params={"prompt": "a b"}).status_code == 400


def test_results_leave_unknown_variants_unmatched(
    shared_server: Server,
) -> None:
    """Logs naming an unknown variant are counted in "unmatched", outside the analysis."""
    prompt = unique("mixed")
    create_prompt(shared_server, prompt, "one", "two")
    exp = _experiment(shared_server, prompt)
    v1 = exp["variants"][0]
    named = [(v1["id"], 10.0), (v1["id"], 20.0), (v1["version"], 30.0), ("var_gone", 1.0)]
    records = [
        record(experiment_id=exp["id"], experiment_version_id=name, duration_ms=ms,
               sticky_value=f"u{i}")
        for i, (name, ms) in enumerate(named)
    ]  # fmt: skip
    assert post_batch(shared_server, body(records)).json()["accepted"] == 4
    results = call(shared_server, "GET", f"/api/v2/experiments/{exp['id']}/results").json()
    first, second = results["variants"]
    assert (first["records"], first["metrics"]["latency_ms"]["value"], second["records"]) == (
        2,
        15.0,
        0,
    )
    assert sorted((u["variant"], u["records"]) for u in results["unmatched"]) == [
        (v1["version"], 1),
        ("var_gone", 1),
    ]


def test_single_record_endpoint_of_101(server: Server) -> None:
    """POST /api/logs/prompt-usage stores one JSON record under a generated id."""
    payload = {
        "input": "hi",
        "output": "there",
        "metadata": {"k": 1},
        "prompt_name": "p",
        "duration_ms": 12,
        "model": "m",
    }
    response = call(server, "POST", "/api/logs/prompt-usage", json=payload)
    assert response.status_code == 201
    ids = server.stored_ids()
    assert ids == [response.json()["id"]]
    assert server.summary()["single"] == 1
    bad = call(server, "POST", "/api/logs/prompt-usage", json={"input": 5})
    assert bad.status_code == 400
    assert len(server.stored_ids()) == 1
