"""The ``banyan`` command's parser: help, version, option help and defaults (no server)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

import banyan
from banyan._cli import build_parser, main
from banyan._config import DEFAULT_BASE_URL

#: Owned by the spool work (#13): its options get their help there.
_NOT_YET: set[str] = set()


def _parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                if (path or (name,))[0] not in _NOT_YET:
                    yield from _parsers(child, (*path, name))


def _options() -> Iterator[tuple[str, argparse.Action, argparse.ArgumentParser]]:
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if action.option_strings and action.dest not in ("help", "version"):
                yield " ".join((*path, action.option_strings[-1])), action, parser


def test_no_arguments_prints_help_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """`banyan` alone prints the command list, exit status 0."""
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: banyan")
    for command in ("serve", "prompts", "experiments", "logs", "demo"):
        assert command in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    """`banyan --version` prints the package version, exit status 0."""
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"banyan {banyan.__version__}"


def test_description_has_no_markup(capsys: pytest.CaptureFixture[str]) -> None:
    """`banyan --help` is plain text: no RST ``literals``."""
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "``" not in out
    assert ":func:" not in out


def test_every_option_has_help() -> None:
    """Every option of every command says what it does."""
    missing = [name for name, action, _ in _options() if not (action.help or "").strip()]
    assert missing == []


def test_every_default_is_shown() -> None:
    """An option with a default shows it in its help text."""
    hidden = []
    for name, action, parser in _options():
        if action.default not in (None, False) and not action.required:
            options = parser.format_help().split("\noptions:\n", 1)[1]
            entry = options.split(action.option_strings[-1], 1)[1].split("\n  -", 1)[0]
            if "default" not in entry:
                hidden.append(name)
    assert hidden == []


def test_api_key_from_the_environment_never_appears_in_help(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The help names BANYAN_API_KEY but does not print its value."""
    monkeypatch.setenv("BANYAN_API_KEY", "psk_secret_in_env_123")
    with pytest.raises(SystemExit):
        main(["prompts", "list", "--help"])
    out = capsys.readouterr().out
    assert "psk_secret_in_env_123" not in out
    assert "BANYAN_API_KEY" in out
    with pytest.raises(SystemExit):
        main(["spool", "status", "--help"])
    assert "psk_secret_in_env_123" not in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv",
    [["prompts", "list"], ["experiments", "list"], ["logs", "list"], ["keys", "create"]],
)
def test_management_commands_default_to_the_sdk_base_url(
    monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    """BANYAN_BASE_URL, else the SDK's production URL: the same rule as banyan.configure()."""
    monkeypatch.delenv("BANYAN_BASE_URL", raising=False)
    assert build_parser().parse_args(argv).base_url == DEFAULT_BASE_URL
    monkeypatch.setenv("BANYAN_BASE_URL", "http://127.0.0.1:1234")
    assert build_parser().parse_args(argv).base_url == "http://127.0.0.1:1234"


def test_every_table_command_has_json() -> None:
    """Each management command that prints a table takes --json."""
    tables = [("prompts", "list"), ("experiments", "create"), ("experiments", "list"),
              ("experiments", "show"), ("experiments", "stop"), ("experiments", "results"),
              ("logs", "list")]  # fmt: skip
    parsers = dict(_parsers(build_parser()))
    assert [t for t in tables if "--json" not in parsers[t]._option_string_actions] == []


@pytest.mark.parametrize(
    ("variant", "needle"), [("1:50.5", None), ("1:101", "0 and 100"), ("1:-1", "0 and 100")]
)
def test_variant_weight_is_a_percent(
    capsys: pytest.CaptureFixture[str], variant: str, needle: str | None
) -> None:
    """--variant VERSION:PERCENT takes 0..100; outside it, a usage error in percent terms."""
    argv = ["experiments", "create", "p", "--variant", variant]
    if needle is None:
        assert build_parser().parse_args(argv).variant == [{"version": "1", "percentage": 50.5}]
        return
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert needle in capsys.readouterr().err


@pytest.mark.parametrize("name", ["prompts", "experiments", "logs"])
def test_a_group_alone_prints_its_commands(capsys: pytest.CaptureFixture[str], name: str) -> None:
    """`banyan prompts` (no command) prints that group's help, exit status 0."""
    assert main([name]) == 0
    assert capsys.readouterr().out.startswith(f"usage: banyan {name}")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1700000000.5", 1700000000.5), ("2023-11-14T22:13:20", 1700000000.0),
     ("2023-11-14T22:13:20Z", 1700000000.0), ("2023-11-14T23:13:20+01:00", 1700000000.0)],
)  # fmt: skip
def test_log_times_are_epoch_seconds_or_iso_8601(text: str, seconds: float) -> None:
    """--since/--until read epoch seconds or ISO 8601, UTC unless the text names a zone."""
    assert build_parser().parse_args(["logs", "list", "--since", text]).since == seconds


@pytest.mark.parametrize("text", ["nan", "yesterday", "2023-13-01"])
def test_bad_log_times_are_usage_errors(capsys: pytest.CaptureFixture[str], text: str) -> None:
    """A time that is neither: exit status 2 and why."""
    with pytest.raises(SystemExit) as exited:
        main(["logs", "list", "--until", text])
    assert exited.value.code == 2
    assert "ISO 8601" in capsys.readouterr().err
