"""get_prompt: caching, 404, and local experiment routing on the sticky key."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from fakes import FakeResponse, MakeLogger, status

import banyan
from banyan._routing import Experiment, Variant, choose

VARIANTS: list[dict[str, Any]] = [
    {"id": "var_a", "version": "1", "weight_bp": 5000, "content": "A", "name": "a"},
    {"id": "var_b", "version": "2", "weight_bp": 5000, "content": "B", "name": "b"},
]
EXPERIMENT = {
    "id": "exp_1", "sticky_key": "user_id", "seed": "s", "traffic_bp": 10_000,
    "variants": VARIANTS,
}  # fmt: skip


def prompt(**extra: Any) -> FakeResponse:
    body = {
        "prompt_id": "p1", "name": "greet", "content": "default", "version": "1",
        "branch": "main", "project": "proj", "enable_logging": True, "metadata": {},
    }  # fmt: skip
    return FakeResponse({**body, **extra})


def test_prompt_is_fetched_once_within_the_ttl(make_logger: MakeLogger) -> None:
    """A second get_prompt within cache_ttl is served from the cache."""
    logger, fake = make_logger(prompt())
    first = logger.get_prompt("greet")
    second = logger.get_prompt("greet")
    assert first == second
    assert first is not None
    assert first.content == "default"
    assert len(fake.calls) == 1
    assert fake.calls[0][2]["params"] == {"branch": "main"}


def test_missing_prompt_is_none(make_logger: MakeLogger) -> None:
    """A 404 from the server means get_prompt returns None."""
    logger, _ = make_logger(status(404))
    assert logger.get_prompt("nope") is None


def test_sticky_subject_is_routed_locally(make_logger: MakeLogger) -> None:
    """With the sticky key present, the variant choose() picks is served and logged."""
    logger, fake = make_logger(prompt(experiment=EXPERIMENT))
    experiment = Experiment(
        id="exp_1", sticky_key="user_id", seed="s",
        variants=tuple(Variant(**v) for v in VARIANTS),
    )  # fmt: skip
    for user in ("u1", "u2", "u3", "u4"):
        data = logger.get_prompt("greet", sticky_context={"user_id": user})
        expected = choose(experiment, user)
        assert data is not None
        assert expected is not None
        assert data.content == expected.content
        assert data.version == expected.version
        assert data.get_experiment_context() == {
            "experiment_id": "exp_1", "experiment_version_id": expected.id,
            "variant_name": expected.name, "version": expected.version,
            "sticky_key": "user_id", "sticky_value": user,
        }  # fmt: skip
    assert len(fake.calls) == 1


def test_routed_prompt_is_an_ordinary_prompt_data(make_logger: MakeLogger) -> None:
    """The cheap clone served to a new subject equals, prints and logs like a constructed one."""
    logger, _ = make_logger(prompt(experiment=EXPERIMENT))
    data = logger.get_prompt("greet", sticky_context={"user_id": 42})
    assert data is not None
    assert data.sticky_value == "42"
    built = banyan.PromptData(**{f.name: getattr(data, f.name) for f in dataclasses.fields(data)
                                 if f.init})  # fmt: skip
    assert (data, repr(data), data._wire) == (built, repr(built), built._wire)
    assert dataclasses.replace(data, sticky_value="7")._wire == (*built._wire[:7], "7")  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        data.sticky_value = "x"  # type: ignore[misc]


def test_missing_sticky_key_gets_the_default_and_is_counted(make_logger: MakeLogger) -> None:
    """No sticky value for the experiment's key: default prompt, counted in stats."""
    logger, _ = make_logger(prompt(experiment=EXPERIMENT))
    data = logger.get_prompt("greet", sticky_context={"session_id": "s1"})
    assert data is not None
    assert data.content == "default"
    assert data.get_experiment_context() is None
    assert logger.get_stats()["experiment_sticky_missing"] == 1


def test_server_side_route_call_returns_prompt_data(make_logger: MakeLogger) -> None:
    """experiment() posts the 1.0.1 route body and wraps the answer."""
    answer = FakeResponse({"prompt": {"name": "greet", "content": "B", "version": "2"},
                           "selected_version_id": "var_b"})  # fmt: skip
    logger, fake = make_logger(answer)
    data = logger.experiment("exp_1", "user_id", "u1")
    assert data is not None
    assert data.content == "B"
    assert data.get_experiment_context() is not None
    assert fake.calls[0][2]["json"]["stickyValue"] == "u1"


def test_variant_without_content_is_served_from_its_pinned_version(
    make_logger: MakeLogger,
) -> None:
    """A variant sent without content gets its version's content, fetched once per variant."""
    bare = [{k: v for k, v in variant.items() if k != "content"} for variant in VARIANTS]
    logger, fake = make_logger(
        prompt(experiment={**EXPERIMENT, "variants": bare}),
        prompt(content="pinned v1", version="1"),
        prompt(content="pinned v2", version="2"),
    )
    served = [logger.get_prompt("greet", sticky_context={"user_id": f"u{i}"}) for i in range(40)]
    assert {(p.version, p.content) for p in served if p} == {
        ("1", "pinned v1"), ("2", "pinned v2"),
    }  # fmt: skip
    assert sorted(call[2]["params"].get("version", "-") for call in fake.calls) == ["-", "1", "2"]


def test_routed_prompt_of_a_prompt_without_logging_is_not_logged(
    make_logger: MakeLogger,
) -> None:
    """enable_logging off carries over to every routed variant: log_prompt skips it."""
    logger, _ = make_logger(prompt(experiment=EXPERIMENT, enable_logging=False))
    data = logger.get_prompt("greet", sticky_context={"user_id": "u1"})
    assert data is not None
    assert (data.enable_logging, data.sticky_value, data._wire) == (False, "u1", None)
    assert data.get_experiment_context() is not None
    assert logger.log_prompt(input="i", output="o", prompt_data=data)
    assert logger.get_stats()["logs_skipped"] == 1


def test_variant_with_empty_content_is_served_as_is(make_logger: MakeLogger) -> None:
    """Empty content is content: no pinned fetch for it."""
    empty = [{**v, "content": ""} for v in VARIANTS]
    logger, fake = make_logger(prompt(experiment={**EXPERIMENT, "variants": empty}))
    served = [logger.get_prompt("greet", sticky_context={"user_id": f"u{i}"}) for i in range(20)]
    assert {p.content for p in served if p} == {""}
    assert len(fake.calls) == 1


def test_route_call_agrees_with_local_routing_on_odd_values(make_logger: MakeLogger) -> None:
    """experiment() sends a missing value as "", a lone surrogate as U+FFFD, and takes the
    experiment's own sticky key and the variant's name from the answer."""
    answer = FakeResponse({
        "prompt": {"name": "greet", "content": "B", "version": "2"},
        "selected_version_id": "var_b", "sticky_key": "user_id",
        "variant": {"id": "var_b", "version": "2", "weight_bp": 5000, "name": "b"},
    })  # fmt: skip
    default = FakeResponse({"prompt": {"name": "greet", "content": "A", "version": "1"},
                            "selected_version_id": None})  # fmt: skip
    logger, fake = make_logger(default, default, answer)
    for missing in (None, ""):
        data = logger.experiment("exp_1", "user_id", missing)  # type: ignore[arg-type]
        assert data is not None
        assert data.get_experiment_context() is None
    data = logger.experiment("exp_1", "USER", "a\ud800")
    assert [call[2]["json"]["stickyValue"] for call in fake.calls] == ["", "", "a\ufffd"]
    assert data is not None
    assert (data.sticky_key, data.sticky_value, data.variant_name) == ("user_id", "a\ufffd", "b")


def test_lone_surrogate_sticky_value_is_routed_and_logged_as_u_fffd(
    make_logger: MakeLogger,
) -> None:
    """The value is hashed as U+FFFD (protocol 6.1) and carried so, so that it can be logged."""
    logger, _ = make_logger(prompt(experiment=EXPERIMENT))
    logger._idle = False  # keep the record in the ring
    data = logger.get_prompt("greet", sticky_context={"user_id": "a\ud800"})
    clean = logger.get_prompt("greet", sticky_context={"user_id": "a\ufffd"})
    assert data is not None
    assert clean is not None
    assert (data.sticky_value, data.version) == ("a\ufffd", clean.version)
    assert logger.log_prompt(input="i", output="o", prompt_data=data)
    assert len(logger._flusher.ring._items) == 1
