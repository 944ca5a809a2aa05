"""banyan/routing_vectors.json: the server's fetch and route endpoints agree with every vector."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest
from serverproc import Server

from .helpers import call, create_prompt, unique

VECTORS: dict[str, Any] = json.loads(
    resources.files("banyan").joinpath("routing_vectors.json").read_text("utf-8")
)


@pytest.mark.parametrize(
    "route", VECTORS["routes"], ids=[r["experiment"]["id"] for r in VECTORS["routes"]]
)
def test_route_endpoint_matches_vectors(shared_server: Server, route: dict[str, Any]) -> None:
    """POST /api/experiments/route picks each vector's variant (by position) or none."""
    exp = route["experiment"]
    name = unique("vec")
    create_prompt(shared_server, name, *(v["content"] for v in exp["variants"]))
    body = {
        "prompt": name, "sticky_key": exp["sticky_key"], "seed": exp["seed"],
        "traffic_bp": exp["traffic_bp"],
        "variants": [{"version": v["version"], "weight_bp": v["weight_bp"]}
                     for v in exp["variants"]],
    }  # fmt: skip
    created = call(shared_server, "POST", "/api/v2/experiments", json=body)
    assert created.status_code == 201, created.text
    server_ids = [v["id"] for v in created.json()["variants"]]
    to_vector = dict(zip(server_ids, (v["id"] for v in exp["variants"]), strict=True))
    fetched = call(shared_server, "GET", f"/api/logs/prompt/{name}").json()["experiment"]
    assert (fetched["seed"], fetched["traffic_bp"], fetched["hash_version"]) == (
        exp["seed"], exp["traffic_bp"], 1,
    )  # fmt: skip
    checked = 0
    for case in route["cases"]:
        if case["reason"] == "missing_key":
            continue  # a client-side outcome: the route call always carries a value
        payload = {"experimentId": created.json()["id"], "stickyKey": exp["sticky_key"],
                   "stickyValue": str(case["context"][exp["sticky_key"]])}  # fmt: skip
        routed = call(shared_server, "POST", "/api/experiments/route", json=payload).json()
        chosen = routed["selected_version_id"]
        assert (to_vector[chosen] if chosen else None) == case["variant"], case
        assert routed["enrolled"] is (case["reason"] == "enrolled")
        checked += 1
    assert checked == sum(c["reason"] != "missing_key" for c in route["cases"])
