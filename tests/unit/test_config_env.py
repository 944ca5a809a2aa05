"""Every option the README lists can come from its ``BANYAN_<OPTION>`` variable (#16 item 6)."""

from __future__ import annotations

import dataclasses
import os
import re
import typing
from pathlib import Path
from typing import Any

import pytest

import banyan
from banyan._config import Config, build

README = Path(__file__).resolve().parents[2] / "README.md"
#: What the README's Configuration section says cannot come from the environment: "the
#: objects (`before_send`, `http_transport`) and the two directories".
NOT_FROM_ENV = {"before_send", "http_transport", "cache_dir", "spool_dir"}


def _documented_options() -> list[str]:
    """The option names of the README's option table (first column, each backquoted name)."""
    table = README.read_text().split("| option | default | meaning |\n", 1)[1].split("\n\n")[0]
    cells = [row.split("|")[1] for row in table.splitlines()[1:]]
    return [name for cell in cells for name in re.findall(r"`(\w+)`", cell)]


OPTIONS = _documented_options()
HINTS = typing.get_type_hints(Config)
DEFAULTS: dict[str, Any] = {field.name: field.default for field in dataclasses.fields(Config)}


def _other_value(option: str) -> tuple[str, Any]:
    """A valid value other than the default, as the variable's text and as the option."""
    kinds = typing.get_args(HINTS[option]) or (HINTS[option],)
    default = DEFAULTS[option]
    for kind in kinds:
        if typing.get_origin(kind) is typing.Literal:
            kinds = typing.get_args(kind)
    if bool in kinds:
        return ("0" if default else "yes"), not default
    if int in kinds:
        return str(default + 1), default + 1
    if float in kinds:
        value = default / 2 if default else 0.5
        return repr(value), value
    other = next(kind for kind in kinds if isinstance(kind, str) and kind != default)
    return other, other


@pytest.fixture(autouse=True)
def _no_banyan_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("BANYAN_")]:
        monkeypatch.delenv(name)


def test_the_option_table_is_read() -> None:
    """The table parsed is the README's options: Config's fields but key, URL and project."""
    assert set(OPTIONS) == set(DEFAULTS) - {"api_key", "base_url", "project_id"}


@pytest.mark.parametrize("option", sorted(set(OPTIONS) - NOT_FROM_ENV))
def test_every_documented_option_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, option: str
) -> None:
    """BANYAN_<OPTION> set to a value other than the default is the option's value."""
    raw, expected = _other_value(option)
    monkeypatch.setenv(f"BANYAN_{option.upper()}", raw)
    assert getattr(build("psk_x", None, None), option) == expected


@pytest.mark.parametrize("option", ["legacy_max_rate", "compression"])
def test_none_comes_from_the_environment_as_none(
    monkeypatch: pytest.MonkeyPatch, option: str
) -> None:
    """An option that may be None is None for "none" or an empty variable."""
    for raw in ("none", "None", ""):
        monkeypatch.setenv(f"BANYAN_{option.upper()}", raw)
        assert getattr(build("psk_x", None, None), option) is None


def test_a_number_that_does_not_parse_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """BANYAN_LEGACY_MAX_RATE=many is a ConfigurationError naming the variable."""
    monkeypatch.setenv("BANYAN_LEGACY_MAX_RATE", "many")
    with pytest.raises(banyan.ConfigurationError, match="BANYAN_LEGACY_MAX_RATE"):
        build("psk_x", None, None)
