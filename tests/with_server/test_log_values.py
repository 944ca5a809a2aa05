"""Ordinary Python values given to log_prompt reach the real server as a stored record."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serverkit import call, stored_records
from serverproc import Server

import banyan

try:
    import numpy
except ImportError:  # numpy comes with the bench extra, not with dev
    numpy = None  # type: ignore[assignment]


class Shown:
    def __str__(self) -> str:
        return "shown"


#: numpy values in metadata and what is logged for them, when numpy is installed.
NUMPY: list[tuple[str, Any, Any]] = [] if numpy is None else [
    ("np", numpy.int64(3), 3), ("float32", numpy.float32(1.5), 1.5),
    ("arr", numpy.arange(3), [0, 1, 2]),
]  # fmt: skip
AWARE = datetime.datetime(2025, 1, 2, 3, 4, tzinfo=datetime.timezone.utc)
CASES: list[Any] = [
    # Not checked on log_prompt's fast path (~10 % of the call): delivery converts and
    # resends what the server rejects.
    ("non-str keys", {"metadata": {1: "a", 2.5: "b", None: "c", (1, 2): "d"}},
     {"metadata": {"1": "a", "2.5": "b", "None": "c", "(1, 2)": "d"}}),
    ("non-str keys with a huge int", {"metadata": {1: 2**64}}, {"metadata": {"1": str(2**64)}}),
    ("list metadata", {"metadata": ["a", 1]}, {"metadata": {"value": ["a", 1]}}),
    ("str metadata", {"metadata": "plain"}, {"metadata": {"value": "plain"}}),
    ("bool duration", {"duration_ms": True}, {"duration_ms": None}),
    ("decimal duration", {"duration_ms": decimal.Decimal("12.5")}, {"duration_ms": 12.5}),
    ("timedelta duration", {"duration_ms": datetime.timedelta(seconds=1.5)},
     {"duration_ms": 1500.0}),
    ("huge duration", {"duration_ms": 10**400}, {"duration_ms": None}),
    ("huge ints", {"metadata": {"big": 2**64, "low": -(2**63) - 1, "deep": [2**70]}},
     {"metadata": {"big": str(2**64), "low": str(-(2**63) - 1), "deep": [str(2**70)]}}),
    ("exotic values", {"metadata": {
        "when": AWARE, "day": datetime.date(2025, 1, 2), "dec": decimal.Decimal("1.5"),
        "uid": uuid.UUID(int=1), "set": {1}, "raw": b"ab", "obj": Shown(),
        **{name: value for name, value, _ in NUMPY}}},
     {"metadata": {
        "when": AWARE, "day": "2025-01-02", "dec": "1.5", "uid": str(uuid.UUID(int=1)),
        "set": [1], "raw": b"ab", "obj": "shown", **{name: sent for name, _, sent in NUMPY}}}),
    ("int model", {"model": 5}, {"model": "5"}),
    ("str prompt_data", {"prompt_data": "support-reply", "prompt_name": "greet"},
     {"prompt_name": "greet"}),
]  # fmt: skip


@pytest.fixture(scope="module")
def values_server(shared_server: Server) -> Server:
    """The session's server, through a project of this module's own: its counts move only
    with these tests."""
    body = {"name": f"log-values-{os.getpid()}"}
    key = call(shared_server, "POST", "/api/v2/projects", json=body).json()["api_key"]
    return dataclasses.replace(shared_server, api_key=key)


@pytest.fixture(params=["buffered", "durable"])
def logger(
    values_server: Server, request: pytest.FixtureRequest
) -> Iterator[banyan.PromptStackLogger]:
    """A logger of the module's server, in each durability mode."""
    lg = banyan.PromptStackLogger(
        api_key=values_server.api_key, base_url=values_server.base_url, flush_interval=0.05,
        durability=request.param,
    )  # fmt: skip
    yield lg
    lg.shutdown(timeout=10)


def drops(logger: banyan.PromptStackLogger) -> dict[str, int]:
    """The logger's drops by reason, the reasons that have some."""
    return {reason: n for reason, n in logger.get_stats()["dropped"].items() if n}


def stored_by_input(server: Server) -> dict[str, dict[str, Any]]:
    return {record["input"]: record for record in stored_records(server)}


@pytest.mark.parametrize(("name", "given", "logged"), CASES)
def test_ordinary_values_are_stored_converted(
    values_server: Server,
    logger: banyan.PromptStackLogger,
    name: str,
    given: dict[str, Any],
    logged: dict[str, Any],
) -> None:
    """Non-str keys, non-map metadata, odd durations, huge ints and other objects are
    converted as the README says and the record is stored, not rejected or dropped."""
    assert logger.log_prompt(name, "out", **given)
    assert logger.flush(30)
    assert drops(logger) == {}
    record = stored_by_input(values_server)[name]
    assert {field: record.get(field) for field in logged} == logged


def test_positional_none_input_is_stored(
    values_server: Server, logger: banyan.PromptStackLogger
) -> None:
    """log_prompt(None, 'in', 'out'): the third argument is no prompt, the record is kept."""
    marker = f"in-{uuid.uuid4()}"
    assert logger.log_prompt(None, marker, "out")  # type: ignore[arg-type]
    assert logger.flush(30)
    assert drops(logger) == {}
    record = next(r for r in stored_records(values_server) if r["output"] == marker)
    assert (record["input"], record.get("prompt_name")) == ("", None)


def surrogate_text(max_size: int = 12) -> st.SearchStrategy[str]:
    return st.text(st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
                   max_size=max_size)  # fmt: skip


scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), surrogate_text(), st.binary(max_size=8),
    st.decimals(), st.datetimes(), st.dates(), st.uuids(), st.fractions(), st.complex_numbers(),
    st.timedeltas(), st.builds(Shown),
    *([st.sampled_from([value for _, value, _ in NUMPY])] if NUMPY else []),
)  # fmt: skip
keys = st.one_of(surrogate_text(6), st.integers(), st.floats(), st.none(), st.booleans(),
                 st.tuples(st.integers()), st.binary(max_size=4))  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(keys, inner, max_size=3)
        | st.frozensets(st.integers(), max_size=3)
    ),
    max_leaves=8,
)
texts = st.none() | surrogate_text()
prompts = st.one_of(
    st.none(),
    st.builds(banyan.PromptData, content=surrogate_text(), version=texts, prompt_id=texts,
              name=texts, branch=surrogate_text(), enable_logging=st.booleans()),
    st.dictionaries(st.sampled_from(["name", "version", "prompt_id", "content", "bogus"]), values),
    values,
)  # fmt: skip
metadatas = st.dictionaries(keys, values, max_size=4) | values
calls = st.fixed_dictionaries(
    {"input": values, "output": values},
    optional={
        "prompt_data": prompts, "prompt_id": values, "prompt_name": values, "version": values,
        "branch_name": values, "model": values, "metadata": metadatas, "duration_ms": values,
        "blocking": st.booleans(),
    },
)  # fmt: skip


@pytest.fixture(scope="module")
def shared_logger(values_server: Server) -> Iterator[banyan.PromptStackLogger]:
    """One logger for every example: a logger per example would dominate the run."""
    lg = banyan.PromptStackLogger(
        api_key=values_server.api_key, base_url=values_server.base_url, flush_interval=0.05,
        timeout=30,
    )  # fmt: skip
    yield lg
    lg.shutdown(timeout=10)


# Each example is a few real round trips: no deadline (a loaded 2-core machine stalls for
# seconds), a bounded number of examples, and pytest's timeout as the backstop.
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(calls, min_size=1, max_size=3))
@pytest.mark.timeout(600)
def test_any_arguments_are_stored_or_counted_never_raised(
    values_server: Server, shared_logger: banyan.PromptStackLogger, batch: list[dict[str, Any]]
) -> None:
    """Whatever Python values log_prompt gets, it never raises, and each record is stored at
    the server or skipped (a prompt with logging off); none is dropped, none is rejected."""
    dropped, skipped = drops(shared_logger), shared_logger.get_stats()["logs_skipped"]
    before = values_server.summary()["stored"]
    for arguments in batch:
        shared_logger.log_prompt(**arguments)
    assert shared_logger.flush(30)
    assert drops(shared_logger) == dropped
    skipped = shared_logger.get_stats()["logs_skipped"] - skipped
    assert values_server.summary()["stored"] - before == len(batch) - skipped


def test_a_value_that_cannot_even_be_shown_is_an_encode_error(
    logger: banyan.PromptStackLogger,
) -> None:
    """An object whose str() raises, as input or in metadata, is counted as encode_error (the
    caller's value), never as internal_error."""

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    assert not logger.log_prompt(Broken(), "o")
    assert not logger.log_prompt("i", "o", metadata={"k": Broken()})
    assert drops(logger) == {"encode_error": 2}
