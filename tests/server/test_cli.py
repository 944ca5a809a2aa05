"""The ``banyan`` command: management subcommands against a running server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from serverproc import Server

from banyan._cli import main

from .helpers import unique


def _run(server: Server, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main([*argv, "--base-url", server.base_url, "--api-key", server.api_key])
    out, err = capsys.readouterr()
    return code, out + err


def test_prompts_push_list_and_experiment_flow(
    shared_server: Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """push creates then versions a prompt; list shows it; experiments print tables."""
    name = unique("cli-flow")
    source = tmp_path / "prompt.txt"
    for text in ("Hello {name}", "Hi {name}"):
        source.write_text(text)
        code, out = _run(
            shared_server,
            capsys,
            "prompts",
            "push",
            name,
            "--file",
            str(source),
            "--message",
            "edit",
        )
        assert code == 0, out
    assert "version 2" in out
    code, out = _run(shared_server, capsys, "prompts", "list")
    assert code == 0
    assert name in out
    assert "LATEST" in out
    code, out = _run(
        shared_server,
        capsys,
        "experiments",
        "create",
        name,
        "--variant",
        "1:50",
        "--variant",
        "2:50",
        "--sticky-key",
        "session_id",
        "--traffic",
        "80",
    )
    assert code == 0, out
    assert "running" in out
    assert "traffic 80%" in out
    exp_id = out.split()[1]
    code, out = _run(shared_server, capsys, "experiments", "results", exp_id)
    assert code == 0
    assert "P95 MS" in out
    assert "v1" in out


def test_projects_and_keys_create(
    shared_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """projects create prints the new project's key; keys create prints a key for this project."""
    code, out = _run(shared_server, capsys, "projects", "create", unique("cli-proj"))
    assert code == 0
    assert "API key: psk_" in out
    code, out = _run(shared_server, capsys, "keys", "create", "--label", "ci")
    assert code == 0
    assert "psk_" in out


def test_errors_exit_non_zero(shared_server: Server, capsys: pytest.CaptureFixture[str]) -> None:
    """Server refusals and bad arguments exit with status 1 and a message, not a traceback."""
    code, out = _run(
        shared_server, capsys, "experiments", "create", "no-such-prompt", "--variant", "1:100"
    )
    assert code == 1
    assert "HTTP 404" in out
    code, out = _run(shared_server, capsys, "experiments", "create", "x", "--variant", "oops")
    assert code == 1
    assert "VERSION:PERCENT" in out
    assert main(["prompts", "list", "--base-url", shared_server.base_url, "--api-key", ""]) == 2


def test_unreachable_server_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    """A server that is not there gives exit status 1 and says so."""
    code = main(["prompts", "list", "--base-url", "http://127.0.0.1:9", "--api-key", "psk_x_y_z"])
    assert code == 1
    assert "cannot reach" in capsys.readouterr().err


def test_importing_banyan_and_cli_does_not_load_the_server() -> None:
    """``import banyan`` and building the CLI parser leave banyan.server unimported."""
    code = (
        "import sys, banyan, banyan._cli; banyan._cli.build_parser();"
        "assert not any(m.startswith('banyan.server') for m in sys.modules), sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_serve_refuses_a_database_of_another_schema_without_a_traceback(tmp_path: Path) -> None:
    """`banyan serve` on a database with an unknown schema exits 2 with one clear line."""
    import sqlite3

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE logs (id TEXT)")
    result = subprocess.run(
        [sys.executable, "-m", "banyan", "serve", "--db", str(db), "--port", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.startswith("banyan serve: ")
    assert "Traceback" not in result.stderr
