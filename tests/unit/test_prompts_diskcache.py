"""The on-disk prompt cache: one file per project, and interrupted writes never break reading."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from fakes import FakeResponse, MakeLogger

import banyan
from banyan._diskcache import DiskCache
from banyan._exceptions import ConnectError

KEY = ("greet", None, "main")


def body(content: str) -> dict[str, Any]:
    return {"prompt_id": "p1", "name": "greet", "content": content, "version": "1",
            "branch": "main", "enable_logging": True, "metadata": {}}  # fmt: skip


def down() -> ConnectError:
    return ConnectError("connection refused")


def served(logger: banyan.PromptStackLogger) -> str:
    """The content get_prompt("greet") serves, "FB" when it falls back."""
    data = logger.get_prompt("greet", fallback="FB")
    assert data is not None
    return data.content


def disk_counts(logger: banyan.PromptStackLogger) -> tuple[int, int]:
    counts = logger.get_stats()["prompt_cache"]
    return counts["disk_served"], counts["disk_errors"]


def test_projects_sharing_a_server_key_and_cache_dir_get_their_own_prompts(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """Same server, key, cache_dir and prompt name, two projects: each is served its own
    content, fetched and then from disk with the backend down."""
    for project in ("alpha", "beta"):
        logger, _ = make_logger(FakeResponse(body(project)), project_id=project, cache_dir=tmp_path)
        assert served(logger) == project
    for project in ("alpha", "beta"):
        logger, _ = make_logger(down(), project_id=project, cache_dir=tmp_path)
        assert served(logger) == project
        assert disk_counts(logger) == (1, 0)


def test_a_writer_killed_before_its_rename_leaves_the_previous_cache_served(
    make_logger: MakeLogger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process SIGKILLed mid-store leaves its temporary file; readers get the last complete
    file, and the next store replaces it and removes the dead writer's file."""
    disk = DiskCache(tmp_path, "http://127.0.0.1:9", "psk_unit", None, 100)
    disk.store(KEY, body("complete"))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            monkeypatch.setattr(os, "replace", lambda *_: os.kill(os.getpid(), signal.SIGKILL))
            disk.store(KEY, body("interrupted"))
        finally:
            os._exit(1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == -signal.SIGKILL
    assert list(tmp_path.glob(f".{disk.path.name}.{pid}.*"))  # what the killed writer left
    reader, _ = make_logger(down(), cache_dir=tmp_path)
    assert reader.get_prompt("greet").content == "complete"  # type: ignore[union-attr]
    assert disk_counts(reader) == (1, 0)
    writer, _ = make_logger(FakeResponse(body("next")), cache_dir=tmp_path)
    assert served(writer) == "next"
    assert disk.get(KEY) == body("next")
    assert not list(tmp_path.glob(f".{disk.path.name}.{pid}.*"))  # the next store removed it


@pytest.mark.parametrize("cut", range(4), ids=["empty", "one-byte", "half", "all-but-one"])
def test_a_truncated_cache_file_reads_as_empty_and_the_next_fetch_repairs_it(
    make_logger: MakeLogger, tmp_path: Path, cut: int
) -> None:
    """A cache file cut short (empty, one byte, half, all but the last byte) is no cache:
    fallback= is served; the next successful fetch writes a complete file again."""
    disk = DiskCache(tmp_path, "http://127.0.0.1:9", "psk_unit", None, 100)
    disk.store(KEY, body("cached"))
    data = disk.path.read_bytes()
    disk.path.write_bytes(data[: (0, 1, len(data) // 2, len(data) - 1)[cut]])
    reader, _ = make_logger(down(), down(), cache_dir=tmp_path)
    assert served(reader) == "FB"
    with pytest.raises(banyan.ConnectError):
        reader.get_prompt("greet")
    writer, _ = make_logger(FakeResponse(body("fresh")), cache_dir=tmp_path)
    assert served(writer) == "fresh"
    assert disk.load() == {KEY: body("fresh")}


def test_a_truncated_cache_file_is_counted_as_a_disk_error(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """A cache file that does not parse counts one disk_error, as an unreadable entry does."""
    disk = DiskCache(tmp_path, "http://127.0.0.1:9", "psk_unit", None, 100)
    disk.store(KEY, body("cached"))
    disk.path.write_bytes(disk.path.read_bytes()[:-1])
    reader, _ = make_logger(down(), cache_dir=tmp_path)
    assert served(reader) == "FB"
    assert disk_counts(reader) == (0, 1)
