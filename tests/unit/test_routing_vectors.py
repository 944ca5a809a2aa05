"""banyan/routing_vectors.json: the client agrees with every routing test vector."""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from importlib import resources
from typing import Any

import msgspec
import pytest
from fakes import FakeResponse, MakeLogger

import banyan
from banyan import _routing


@cache
def vectors() -> dict[str, Any]:
    """The vector file, read as package data (as another project would ship it)."""
    text = resources.files("banyan").joinpath("routing_vectors.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _ids(cases: list[dict[str, Any]], *fields: str) -> list[str]:
    # Plain ASCII ids: tools that select tests by id (mutmut) cannot pass escaped ones.
    plain = ("_".join(str(c[f]) for f in fields) for c in cases)
    return [f"{n}-" + re.sub(r"\W", "_", text, flags=re.ASCII)[:40] for n, text in enumerate(plain)]


def test_vector_file_covers_the_issue_cases() -> None:
    """The file has buckets, ranges, routes with every reason, non-ASCII, emoji and surrogates."""
    data = vectors()
    assert data["hash_version"] == _routing.HASH_VERSION
    values = {b["value"] for b in data["buckets"]}
    assert {"José", "用户-42", "👩‍💻", "e\u0301", "é", "\ud800x"} <= values
    reasons = {c["reason"] for r in data["routes"] for c in r["cases"]}
    assert reasons == {"enrolled", "not_enrolled", "missing_key"}
    keys = {r["experiment"]["sticky_key"] for r in data["routes"]}
    assert keys == {"user_id", "session_id", "input_hash", "customer_id"}


@pytest.mark.parametrize(
    "case", vectors()["buckets"], ids=_ids(vectors()["buckets"], "seed", "key", "value")
)
def test_bucket_vectors(case: dict[str, Any]) -> None:
    """utf8 bytes, sha256 and both buckets match the vector for seed, key and value."""
    seed, key, value = case["seed"], case["key"], case["value"]
    raw = _routing.utf8(f"{seed}.{key}.{value}")
    assert raw.hex() == case["utf8_hex"]
    assert hashlib.sha256(raw).hexdigest() == case["sha256_hex"]
    assert _routing.buckets(seed, key, value) == (case["enrol_bucket"], case["assign_bucket"])
    assert _routing.bucket(seed, key, value) == case["enrol_bucket"]


@pytest.mark.parametrize("case", vectors()["ranges"], ids=_ids(vectors()["ranges"], "weights"))
def test_range_vectors(case: dict[str, Any]) -> None:
    """Cumulative half-open ranges in listed order."""
    assert _routing.ranges(case["weights"]) == [tuple(r) for r in case["ranges"]]


@pytest.mark.parametrize(
    "route", vectors()["routes"], ids=[r["experiment"]["id"] for r in vectors()["routes"]]
)
def test_route_vectors_with_routing_functions(route: dict[str, Any]) -> None:
    """sticky_value() then choose() gives each case's variant (None if missing or not enrolled)."""
    experiment = msgspec.convert(route["experiment"], _routing.Experiment)
    assert _routing.validate(experiment) is None
    for case in route["cases"]:
        value = _routing.sticky_value(case["context"].get(experiment.sticky_key))
        if case["reason"] == "missing_key":
            assert value is None, case
            continue
        assert value is not None
        variant = _routing.choose(experiment, value)
        assert (variant.id if variant else None) == case["variant"], case
        assert (case["reason"] == "enrolled") == (variant is not None)


@pytest.mark.parametrize(
    "route", vectors()["routes"], ids=[r["experiment"]["id"] for r in vectors()["routes"]]
)
def test_route_vectors_through_get_prompt(make_logger: MakeLogger, route: dict[str, Any]) -> None:
    """get_prompt serves each case's variant; missing keys get the default and are counted."""
    exp = route["experiment"]
    body = {"prompt_id": "p1", "name": "vec", "content": "default", "version": "9",
            "branch": "main", "experiment": exp}  # fmt: skip
    logger, _ = make_logger(FakeResponse(body), disk_cache=False)
    missing = 0
    for case in route["cases"]:
        data = logger.get_prompt("vec", sticky_context=case["context"])
        assert data is not None
        context = data.get_experiment_context()
        if case["variant"] is None:
            assert (context, data.content) == (None, "default"), case
        else:
            assert context is not None
            assert context["experiment_version_id"] == case["variant"], case
            assert context["sticky_value"] == str(case["context"][exp["sticky_key"]])
        missing += case["reason"] == "missing_key"
    assert logger.get_stats()["experiment_sticky_missing"] == missing


@pytest.mark.parametrize(
    "case", vectors()["content_hash"], ids=_ids(vectors()["content_hash"], "text")
)
def test_content_hash_vectors(case: dict[str, Any]) -> None:
    """banyan.content_hash is the lowercase hex sha256 of the text's UTF-8 bytes."""
    assert banyan.content_hash(case["text"]) == case["hex"]
