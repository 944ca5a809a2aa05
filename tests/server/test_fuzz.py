"""Fuzzed request bodies never cause a 5xx and never leave half a batch behind."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serverproc import Server

from banyan._record import Record
from banyan._wire import BATCH_PATH, JSON, MSGPACK

from .helpers import call, unique

FIELDS = list(Record.__struct_fields__)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
records = st.fixed_dictionaries(
    {
        "id": st.text(max_size=130),
        "ts": st.floats(),
        "input": st.text(max_size=30),
        "output": st.text(max_size=30),
    },
    optional={
        "metadata": st.dictionaries(st.text(max_size=5), values, max_size=4),
        "duration_ms": st.floats() | st.integers(min_value=-(2**63), max_value=2**64 - 1),
        "model": values,
        "version": values,
    },
)
loose_maps = st.dictionaries(st.sampled_from([*FIELDS, "bogus"]), values, max_size=6)
elements = st.one_of(records, loose_maps, values)


@st.composite
def batch_requests(draw: st.DrawFn) -> tuple[bytes, dict[str, str]]:
    """A body and its headers: mostly plausible, sometimes garbage or mislabelled."""
    kind = draw(st.sampled_from([MSGPACK, JSON, "text/plain"]))
    items = draw(st.lists(elements, max_size=8))
    if draw(st.booleans()) and draw(st.booleans()):
        payload = draw(st.binary(max_size=64))
    elif kind == JSON:
        payload = msgspec.json.encode(items)
    else:
        payload = msgspec.msgpack.encode(items)
    encoding = draw(st.sampled_from(["", "", "gzip", "zstd", "br"]))
    if encoding == "gzip" and draw(st.booleans()):
        payload = gzip.compress(payload)
    elif encoding == "zstd" and draw(st.booleans()):
        payload = zstandard.compress(payload)
    headers = {"Content-Type": kind}
    if encoding:
        headers["Content-Encoding"] = encoding
    return payload, headers


@pytest.fixture(scope="module")
def fuzz_key(shared_server: Server) -> str:
    """A project of its own, so the stored count moves only with this test."""
    response = call(shared_server, "POST", "/api/v2/projects", json={"name": unique("fuzz")})
    return str(response.json()["api_key"])


@pytest.fixture(scope="module")
def fuzz_client(shared_server: Server, fuzz_key: str) -> Iterator[httpx.Client]:
    """One client for every example: a client per example loaded the CA bundle each time."""
    with httpx.Client(
        base_url=shared_server.base_url, headers={"X-API-Key": fuzz_key}, timeout=30, verify=False
    ) as client:
        yield client


@pytest.mark.slow
@pytest.mark.timeout(600)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=batch_requests())
def test_fuzzed_batches_never_5xx_or_half_write(
    fuzz_client: httpx.Client, request: tuple[bytes, dict[str, str]]
) -> None:
    """Any batch body: a 4xx stores nothing; a 200 accounts for every element."""
    payload, headers = request
    before = fuzz_client.get("/api/v2/logs/summary").json()["stored"]
    response = fuzz_client.post(BATCH_PATH, content=payload, headers=headers)
    after = fuzz_client.get("/api/v2/logs/summary").json()["stored"]
    assert response.status_code < 500, response.text
    assert "json" in response.headers["content-type"]
    if response.status_code != 200:
        assert after == before
        assert response.json()["error"]
        return
    result = response.json()
    count = (
        len(msgspec.msgpack.decode(_plain(payload, headers)))
        if headers["Content-Type"] == MSGPACK
        else None
    )
    if count is not None:
        assert result["accepted"] + result["duplicates"] + len(result["rejected"]) == count
    assert after - before == result["accepted"]


def _plain(payload: bytes, headers: dict[str, str]) -> bytes:
    encoding = headers.get("Content-Encoding", "")
    if encoding == "gzip":
        return gzip.decompress(payload)
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().stream_reader(payload).read()
    return payload


json_bodies = st.dictionaries(
    st.sampled_from(
        [
            "name",
            "content",
            "branch",
            "version",
            "metadata",
            "prompt",
            "variants",
            "traffic",
            "traffic_bp",
            "sticky_key",
            "start",
            "seed",
            "from",
            "label",
        ]
    ),
    values
    | st.lists(
        st.dictionaries(
            st.sampled_from(["version", "percentage", "weight_bp"]), values, max_size=3
        ),
        max_size=3,
    ),
    max_size=6,
)
paths = st.sampled_from(
    [
        "/api/v2/prompts",
        "/api/v2/experiments",
        "/api/v2/keys",
        "/api/logs/cli/prompts",
        "/api/logs/cli/prompts/version",
        "/api/logs/prompt-usage",
        "/api/experiments/route",
        "/api/v2/prompts/fuzzed/versions",
        "/api/v2/prompts/fuzzed/branches",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=paths, payload=json_bodies)
def test_fuzzed_management_bodies_never_5xx(
    shared_server: Server, fuzz_key: str, path: str, payload: dict[str, Any]
) -> None:
    """Random JSON objects sent to the management and 1.0.1 endpoints never cause a 5xx."""
    response = call(shared_server, "POST", path, fuzz_key, content=msgspec.json.encode(payload))
    assert response.status_code < 500, response.text
