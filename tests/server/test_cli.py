"""The ``banyan`` command: management subcommands against a running server."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import msgspec
import pytest
from serverproc import Server, free_port

from banyan import _logscli
from banyan._apicli import Api
from banyan._cli import main
from banyan._localserver import _wait_healthy

from .helpers import body, call, create_prompt, post_batch, record, unique


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


def test_prompts_push_with_branch_creates_the_prompt_on_that_branch(
    shared_server: Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """push --branch B on a new name creates the prompt with branch B only; a second push
    adds version 2 there."""
    name = unique("cli-branch")
    source = tmp_path / "prompt.txt"
    for text in ("Hello {name}", "Hi {name}"):
        source.write_text(text)
        code, out = _run(
            shared_server, capsys, "prompts", "push", name, "--file", str(source), "--branch", "dev"
        )
        assert code == 0, out
    assert f"pushed {name} version 2 on branch dev" in out
    branches = call(shared_server, "GET", f"/api/v2/prompts/{name}/branches").json()
    assert branches == {"branches": [{"name": "dev", "latest_version": "2", "versions": 2}]}
    fetched = call(shared_server, "GET", f"/api/logs/prompt/{name}", params={"branch": "dev"})
    assert (fetched.json()["content"], fetched.json()["version"]) == ("Hi {name}", "2")


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
    assert main(["prompts", "list", "--base-url", shared_server.base_url, "--api-key", ""]) == 2


@pytest.mark.parametrize(
    ("option", "needle"),
    [("--variant=oops", "VERSION:PERCENT"), ("--variant=1:inf", "finite"),
     ("--traffic=nan", "finite"), ("--traffic=lots", "finite")],
)  # fmt: skip
def test_bad_numbers_are_usage_errors(
    capsys: pytest.CaptureFixture[str], option: str, needle: str
) -> None:
    """A --variant or --traffic that is not a finite number: exit status 2 and why, no traceback."""
    argv = ["experiments", "create", "p", "--variant", "1:100", option, "--api-key", "psk_x_y_z"]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert needle in capsys.readouterr().err


def test_names_and_ids_stay_one_path_segment(
    shared_server: Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A name or id with ?, / or .. reaches the server whole, which refuses it by name."""
    source = tmp_path / "prompt.txt"
    source.write_text("Hello")
    code, out = _run(shared_server, capsys, "prompts", "push", "a?b", "--file", str(source))
    assert (code, "invalid prompt name 'a?b'" in out) == (1, True), out
    for exp_id in ("../../healthz", ".."):
        code, out = _run(shared_server, capsys, "experiments", "results", exp_id)
        assert (code, f"no experiment {exp_id!r}" in out) == (1, True), out


@pytest.mark.parametrize("key", ["psk_abc", "psk_" + "x" * 253, "key_0123456789"])
def test_serve_refuses_a_key_requests_could_not_use(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, key: str
) -> None:
    """`banyan serve --api-key` with a key the server would answer 401 to: exit 2, no server."""
    started: list[str] = []
    monkeypatch.setattr("banyan.server.serve", lambda **kw: started.append(kw["api_key"]))
    assert main(["serve", "--db", str(tmp_path / "x.db"), "--api-key", key]) == 2
    assert "8 to 256 characters" in capsys.readouterr().err
    assert started == []
    assert main(["serve", "--db", str(tmp_path / "x.db"), "--api-key", "psk_12345678"]) == 0
    assert started == ["psk_12345678"]


def test_serve_without_api_key_prints_a_new_key_that_works(tmp_path: Path) -> None:
    """`banyan serve` on a fresh database without --api-key prints project 'default' and a
    new admin key, and the API accepts that key."""
    port, db, log = free_port(), tmp_path / "fresh.db", tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "banyan", "serve", "--port", str(port), "--db", str(db)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", "", db, port, proc, log)
    try:
        _wait_healthy(server)
        printed = log.read_text()
        found = re.search(r"'default' id (prj_\w+)\n.*API key \(created\): (psk_\w+)", printed)
        assert found, printed
        project, key = found.groups()
        validated = call(server, "GET", "/api/auth/validate", key).json()
        assert validated == {"valid": True, "project_id": project, "project": "default",
                             "admin": True}  # fmt: skip
        listed = call(server, "GET", "/api/v2/projects", key).json()["projects"]
        assert [p["id"] for p in listed] == [project]
    finally:
        server.stop()


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


@pytest.mark.parametrize("problem", ["busy port", "bad database", "bad port"])
def test_serve_start_problems_are_one_line_and_exit_2(tmp_path: Path, problem: str) -> None:
    """A port another server listens on (granian's SO_REUSEPORT would have shared it with
    a second database), a database path that cannot be opened, a port out of range."""
    with socket.create_server(("127.0.0.1", 0)) as other:
        port = str(other.getsockname()[1])
        args = {
            "busy port": ["--port", port, "--db", str(tmp_path / "x.db")],
            "bad database": ["--db", str(tmp_path / "missing" / "x.db")],
            "bad port": ["--port", "99999"],
        }[problem]
        result = subprocess.run(
            [sys.executable, "-m", "banyan", "serve", *args],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    assert "banyan serve" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_input_files_and_numbers_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A prompt file that is not UTF-8 and a replay timeout that is no positive number."""
    source = tmp_path / "prompt.txt"
    source.write_bytes(b"\xff\xfe")
    argv = ["prompts", "push", "p", "--file", str(source), "--api-key", "psk_12345678",
            "--base-url", "http://127.0.0.1:9"]  # fmt: skip
    assert main(argv) == 2
    assert "utf-8" in capsys.readouterr().err
    for timeout in ("nan", "-1", "0"):
        with pytest.raises(SystemExit) as exited:
            main(["spool", "replay", "--timeout", timeout, "--dir", str(tmp_path)])
        assert exited.value.code == 2


def _push(server: Server, capsys: pytest.CaptureFixture[str], path: Path, name: str,
          text: str) -> tuple[int, str]:  # fmt: skip
    path.write_text(text)
    return _run(server, capsys, "prompts", "push", name, "--file", str(path))


def test_pushing_unchanged_content_keeps_the_version_and_says_so(
    shared_server: Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A push equal to the branch's latest version creates none: it names that version."""
    name, source = unique("cli-same"), tmp_path / "prompt.txt"
    assert _push(shared_server, capsys, source, name, "one")[0] == 0
    assert _push(shared_server, capsys, source, name, "two")[0] == 0
    code, out = _push(shared_server, capsys, source, name, "two")
    assert code == 0, out
    assert f"unchanged: {name} version 2 on branch main already has this content" in out
    versions = call(shared_server, "GET", f"/api/v2/prompts/{name}").json()["versions"]
    assert [v["version"] for v in versions] == ["1", "2"]
    code, out = _push(shared_server, capsys, source, name, "one")
    assert (code, f"pushed {name} version 3" in out) == (0, True), out


def test_push_endpoint_flags_an_unchanged_version(shared_server: Server) -> None:
    """POST .../versions with the latest content: 200, that version, "unchanged": true."""
    name = unique("api-same")
    create_prompt(shared_server, name, "one")
    path = f"/api/v2/prompts/{name}/versions"
    same = call(shared_server, "POST", path, json={"content": "one"})
    assert (same.status_code, same.json()["version"], same.json()["unchanged"]) == (200, "1", True)
    new = call(shared_server, "POST", path, json={"content": "one", "version": "v1.1"})
    assert (new.status_code, new.json()["version"], new.json()["unchanged"]) == (
        201, "v1.1", False)  # fmt: skip


def _experiment(server: Server, capsys: pytest.CaptureFixture[str], name: str) -> str:
    create_prompt(server, name, "one", "two")
    code, out = _run(server, capsys, "experiments", "create", name, "--variant", "1:50",
                     "--variant", "2:50")  # fmt: skip
    assert code == 0, out
    return out.split()[1]


def test_experiments_list_show_stop(
    shared_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """list shows the id and percent weights; show and stop take an id or --prompt; a stopped
    experiment lets a new one start on the same prompt."""
    name = unique("cli-exp")
    exp_id = _experiment(shared_server, capsys, name)
    code, out = _run(shared_server, capsys, "experiments", "list", "--prompt", name)
    assert code == 0, out
    assert [line.split()[:4] for line in out.splitlines()[2:]] == [[exp_id, name, "main",
                                                                    "running"]]  # fmt: skip
    assert "1=50%,2=50%" in out
    code, out = _run(shared_server, capsys, "experiments", "show", exp_id)
    assert (code, out.split()[:3]) == (0, ["experiment", exp_id, "running"]), out
    assert "50%" in out
    code, out = _run(shared_server, capsys, "experiments", "stop", "--prompt", name)
    assert (code, out.split()[:3]) == (0, ["experiment", exp_id, "stopped"]), out
    second = _run(shared_server, capsys, "experiments", "create", name, "--variant", "2:100")
    assert second[0] == 0, second[1]
    code, out = _run(shared_server, capsys, "experiments", "results", "--prompt", name)
    assert (code, out.split()[1]) == (0, second[1].split()[1]), out


def test_experiment_weights_are_percent_in_errors(
    shared_server: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """Weights that do not add up to 100 are refused in percent, by the CLI and the server."""
    name = unique("cli-pct")
    create_prompt(shared_server, name, "one", "two")
    code, out = _run(shared_server, capsys, "experiments", "create", name, "--variant", "1:50",
                     "--variant", "2:30")  # fmt: skip
    assert code == 1
    assert "must add up to 100%, not 80%" in out
    body = {"prompt": name, "variants": [{"version": "1", "percentage": 50},
                                         {"version": "2", "percentage": 30}]}  # fmt: skip
    response = call(shared_server, "POST", "/api/v2/experiments", json=body)
    assert response.status_code == 400
    assert "100%, not 80%" in response.json()["error"]


@pytest.mark.parametrize(
    "argv",
    [["prompts", "list"], ["experiments", "list"], ["experiments", "show", "--prompt", "P"],
     ["experiments", "results", "--prompt", "P"]],
)  # fmt: skip
def test_json_prints_the_servers_answer(
    shared_server: Server, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    """--json prints the answer of the command's GET as JSON, not a table."""
    name = unique("cli-json")
    _experiment(shared_server, capsys, name)
    argv = [name if a == "P" else a for a in argv]
    code, out = _run(shared_server, capsys, *argv, "--json")
    assert code == 0, out
    path = {"prompts": "/api/v2/prompts", "experiments": "/api/v2/experiments"}[argv[0]]
    expected = call(shared_server, "GET", path).json()
    if argv[1] == "show":
        expected = next(e for e in expected["experiments"] if e["prompt"] == name)
    if argv[1] == "results":
        exp_id = json.loads(out)["experiment"]["id"]
        expected = call(shared_server, "GET", f"{path}/{exp_id}/results").json()
    assert json.loads(out) == expected


def test_logs_list_and_export(
    server: Server, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """list shows the newest records (a table, or JSON Lines with --json); export writes
    every matching record as JSON Lines, page by page, oldest first."""
    records = [record(ts=1_700_000_000.0 + n, prompt_name="a" if n % 2 else "b", model="m")
               for n in range(25)]  # fmt: skip
    assert post_batch(server, body(records)).json()["accepted"] == 25
    code, out = _run(server, capsys, "logs", "list", "--limit", "3")
    assert code == 0, out
    assert [line.split()[0] for line in out.splitlines()[2:]] == [r.id for r in records[:-4:-1]]
    code, out = _run(server, capsys, "logs", "list", "--prompt", "a", "--json")
    assert [json.loads(line)["id"] for line in out.splitlines()] == [
        r.id for r in records[::-1] if r.prompt_name == "a"][:20]  # fmt: skip
    target = tmp_path / "out.jsonl"
    code, out = _run(server, capsys, "logs", "export", "--page-size", "4", "-o", str(target),
                     "--since", "2023-11-14T22:13:25", "--until", "1700000020")  # fmt: skip
    assert code == 0, out
    exported = [json.loads(line) for line in target.read_text().splitlines()]
    assert exported == [msgspec.to_builtins(r) for r in records[5:20]]


def test_logs_export_writes_each_page_before_fetching_the_next(
    server: Server, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """export streams: records of page n are written before page n + 1 is asked for."""
    assert post_batch(server, body([record() for _ in range(10)])).json()["accepted"] == 10
    events: list[str] = []
    real_call, real_write = Api.call, _logscli.write_lines

    def call(self: Api, *args: Any, **kw: Any) -> Any:
        events.append("fetch")
        return real_call(self, *args, **kw)

    def write_lines(page: list[dict[str, Any]], out: IO[bytes]) -> None:
        events.append("write")
        real_write(page, out)

    monkeypatch.setattr(Api, "call", call)
    monkeypatch.setattr(_logscli, "write_lines", write_lines)
    code, out = _run(server, capsys, "logs", "export", "--page-size", "4")
    assert code == 0
    assert len(out.splitlines()) == 10
    assert events == ["fetch", "write"] * 3


def test_logs_export_into_a_closed_pipe_ends_quietly(server: Server) -> None:
    """`banyan logs export | head -n 1`: exit 0, no traceback when the reader goes away."""
    records = [record(input="x" * 2000) for _ in range(200)]
    assert post_batch(server, body(records)).json()["accepted"] == 200
    argv = [sys.executable, "-m", "banyan", "logs", "export", "--page-size", "10",
            "--base-url", server.base_url, "--api-key", server.api_key]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert json.loads(proc.stdout.readline())["id"] == records[0].id
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert b"Traceback" not in proc.stderr.read()
    proc.stderr.close()
