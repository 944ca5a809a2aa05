"""Token usage and cost from keywords or provider usage objects (banyan._usage, #18)."""

from __future__ import annotations

import decimal
from types import SimpleNamespace as Obj
from typing import Any
from unittest import mock

import pydantic
import pytest

from banyan._exceptions import ConfigurationError, UsageError
from banyan._usage import MAX_TOKENS, Usage, usage_fields


def test_no_arguments_give_no_usage() -> None:
    """Without a usage object or keywords every field is None."""
    assert usage_fields() == Usage(None, None, None, None)


def test_keywords_are_taken_as_given() -> None:
    """input_tokens, output_tokens, cached_input_tokens and cost pass through."""
    found = usage_fields(input_tokens=10, output_tokens=2, cached_input_tokens=4, cost=0.5)
    assert found == Usage(10, 2, 4, 0.5)


def test_openai_chat_completions_usage() -> None:
    """prompt_tokens/completion_tokens and prompt_tokens_details.cached_tokens are read."""
    usage = Obj(prompt_tokens=100, completion_tokens=20, total_tokens=120,
                prompt_tokens_details=Obj(cached_tokens=64, audio_tokens=0))  # fmt: skip
    assert usage_fields(usage) == Usage(100, 20, 64, None)


def test_openai_responses_usage() -> None:
    """input_tokens/output_tokens and input_tokens_details.cached_tokens are read."""
    usage = Obj(input_tokens=50, output_tokens=7, total_tokens=57,
                input_tokens_details=Obj(cached_tokens=0),
                output_tokens_details=Obj(reasoning_tokens=3))  # fmt: skip
    assert usage_fields(usage) == Usage(50, 7, 0, None)


def test_anthropic_usage_adds_its_cache_tokens_to_the_input() -> None:
    """Anthropic's input_tokens leaves the cache out: read and written cache tokens are added."""
    usage = Obj(input_tokens=10, output_tokens=5, cache_read_input_tokens=200,
                cache_creation_input_tokens=30)  # fmt: skip
    assert usage_fields(usage) == Usage(240, 5, 200, None)


def test_anthropic_usage_without_cache() -> None:
    """Cache counts that are None (no caching) leave input_tokens as it is."""
    usage = Obj(input_tokens=10, output_tokens=5, cache_read_input_tokens=None,
                cache_creation_input_tokens=None)  # fmt: skip
    assert usage_fields(usage) == Usage(10, 5, None, None)


@pytest.mark.parametrize(
    "usage",
    [
        {"prompt_tokens": 3, "completion_tokens": 4},
        {"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
        {"usage": {"prompt_tokens": 3, "completion_tokens": 4}},
        Obj(usage=Obj(input_tokens=3, output_tokens=4), id="resp_1"),
    ],
)
def test_dicts_and_whole_responses_are_read(usage: Any) -> None:
    """A dict of either shape, or a response holding ``usage``, gives the same counts."""
    assert usage_fields(usage)[:2] == (3, 4)


def test_a_keyword_wins_over_the_usage_object() -> None:
    """An explicit keyword replaces the count read from ``usage``; cost comes only from cost=."""
    found = usage_fields({"prompt_tokens": 3, "completion_tokens": 4}, output_tokens=9, cost=1)
    assert found == Usage(3, 9, None, 1.0)


def test_whole_floats_and_decimals_are_accepted() -> None:
    """12.0 tokens is 12; a Decimal cost is a float."""
    assert usage_fields(input_tokens=12.0, cost=decimal.Decimal("0.125")) == Usage(
        12, None, None, 0.125
    )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"input_tokens": -1}, "input_tokens"),
        ({"output_tokens": 1.5}, "output_tokens"),
        ({"input_tokens": True}, "input_tokens"),
        ({"input_tokens": "12"}, "input_tokens"),
        ({"cached_input_tokens": MAX_TOKENS + 1}, "cached_input_tokens"),
        ({"cost": float("nan")}, "cost"),
        ({"cost": -0.01}, "cost"),
        ({"cost": "0.1"}, "cost"),
        ({"cost": False}, "cost"),
    ],
)
def test_bad_values_raise_a_usage_error_naming_the_field(kwargs: Any, field: str) -> None:
    """A count that is not a whole number in range, or a bad cost, is a UsageError."""
    with pytest.raises(UsageError, match=field):
        usage_fields(**kwargs)


@pytest.mark.parametrize("usage", [Obj(total=3), {}, "12 tokens", mock.Mock()])
def test_a_usage_object_without_counts_is_a_usage_error(usage: Any) -> None:
    """An object holding no token count (or counts that are not numbers) is refused."""
    with pytest.raises(UsageError):
        usage_fields(usage)


def test_a_usage_error_is_a_configuration_error() -> None:
    """UsageError sits under ConfigurationError (and so ValueError) in the one tree."""
    assert issubclass(UsageError, ConfigurationError)
    assert issubclass(UsageError, ValueError)


def test_sdk_usage_objects_are_read_from_their_fields() -> None:
    """The OpenAI and Anthropic SDKs' own usage models give their counts (cache tokens too)."""
    openai_types = pytest.importorskip("openai.types")
    anthropic_types = pytest.importorskip("anthropic.types")
    chat = openai_types.CompletionUsage.model_validate(
        {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
         "prompt_tokens_details": {"cached_tokens": 64}}
    )  # fmt: skip
    claude = anthropic_types.Usage.model_validate(
        {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 200,
         "cache_creation_input_tokens": 30}
    )  # fmt: skip
    assert usage_fields(chat) == Usage(100, 20, 64, None)
    assert usage_fields(claude) == Usage(240, 5, 200, None)


def test_fields_a_pydantic_model_does_not_declare_are_read() -> None:
    """An SDK older than a field keeps it as a pydantic extra (openai 1.30: no token details)."""

    class OldUsage(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="allow")
        prompt_tokens: int
        completion_tokens: int

    old = OldUsage.model_validate(
        {"prompt_tokens": 9, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 8}}
    )
    assert usage_fields(old) == Usage(9, 1, 8, None)


def test_counts_kept_outside_the_instance_dict_are_read_as_attributes() -> None:
    """An object whose counts are properties (or slots) is read attribute by attribute."""

    class Computed:
        @property
        def prompt_tokens(self) -> int:
            return 7

        @property
        def completion_tokens(self) -> int:
            return 2

    class Slotted:
        __slots__ = ("input_tokens", "output_tokens")

        def __init__(self) -> None:
            self.input_tokens, self.output_tokens = 3, 4

    assert usage_fields(Computed()) == Usage(7, 2, None, None)
    assert usage_fields(Slotted()) == Usage(3, 4, None, None)
