"""The prompt cache: TTL, stale-while-revalidate, 404 eviction, fallback, disk, LRU, async."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fakes import FakeResponse, MakeLogger, status

import banyan
from banyan import _prompts
from banyan._cache import Refresher
from banyan._diskcache import DiskCache
from banyan._exceptions import ConnectError
from banyan._record import Record

EXPERIMENT = {
    "id": "exp_1", "sticky_key": "user_id", "seed": "s", "traffic_bp": 10_000,
    "variants": [
        {"id": "var_a", "version": "1", "weight_bp": 5000, "content": "A", "name": "a"},
        {"id": "var_b", "version": "2", "weight_bp": 5000, "content": "B", "name": "b"},
    ],
}  # fmt: skip


def prompt(content: str = "default", name: str = "greet", **extra: Any) -> FakeResponse:
    body = {"prompt_id": "p1", "name": name, "content": content, "version": "1",
            "branch": "main", "enable_logging": True, "metadata": {}}  # fmt: skip
    return FakeResponse({**body, **extra})


def down() -> ConnectError:
    return ConnectError("connection refused")


def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def cache(logger: banyan.PromptStackLogger) -> dict[str, int]:
    stats: dict[str, int] = logger.get_stats()["prompt_cache"]
    return stats


def held(answer: FakeResponse) -> tuple[threading.Event, Callable[..., FakeResponse]]:
    """A fetch that answers ``answer`` once the returned gate is set (or after 5 s)."""
    gate = threading.Event()

    def fetch(method: str, path: str, **kw: Any) -> FakeResponse:
        gate.wait(5)
        return answer

    return gate, fetch


def test_expired_entry_is_served_stale_and_refreshed_once(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """Past the TTL the stale prompt is returned at once; one background refresh replaces it."""
    gate, slow_refresh = held(prompt("new"))
    logger, fake = make_logger(prompt("old"), slow_refresh, cache_ttl=0.05, cache_dir=tmp_path)
    assert logger.get_prompt("greet").content == "old"  # type: ignore[union-attr]
    time.sleep(0.06)
    served = [logger.get_prompt("greet") for _ in range(50)]
    assert {p.content for p in served if p} == {"old"}
    assert len(fake.calls) == 2  # the first fetch and exactly one refresh
    gate.set()
    wait_for(lambda: logger.get_prompt("greet").content == "new")  # type: ignore[union-attr]
    assert cache(logger)["refreshes"] == 1
    assert cache(logger)["stale"] >= 50


def test_failed_refresh_keeps_serving_the_stale_prompt_and_counts_it(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """A refresh that fails leaves the cached prompt in place; the failure is counted."""
    logger, _ = make_logger(prompt("cached"), down(), cache_ttl=0.05, cache_dir=tmp_path)
    assert logger.get_prompt("greet") is not None
    time.sleep(0.06)
    assert logger.get_prompt("greet").content == "cached"  # type: ignore[union-attr]
    wait_for(lambda: cache(logger)["refresh_failures"] == 1)
    assert logger.get_prompt("greet").content == "cached"  # type: ignore[union-attr]
    assert cache(logger)["stale"] >= 2
    assert logger.get_stats()["prompt_errors"] == 1


def test_refresh_answering_404_evicts_the_prompt(make_logger: MakeLogger, tmp_path: Path) -> None:
    """A prompt deleted on the server is evicted from memory and disk; the next call gets None."""
    logger, _ = make_logger(prompt(), status(404), status(404), cache_ttl=0.05, cache_dir=tmp_path)
    assert logger.get_prompt("greet") is not None
    time.sleep(0.06)
    logger.get_prompt("greet")
    wait_for(lambda: cache(logger)["evicted_404"] == 1)
    assert logger.get_prompt("greet") is None
    assert json.loads(next(tmp_path.glob("*.json")).read_text())["entries"] == []


def test_cold_miss_with_backend_down_uses_fallback_or_raises(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """No cached copy and no server: fallback= is served (and counted), else a BanyanError."""
    logger, _ = make_logger(down(), down(), down(), cache_dir=tmp_path)
    data = logger.get_prompt("greet", fallback="You are helpful.")
    assert data is not None
    assert (data.content, data.name, data.branch) == ("You are helpful.", "greet", "main")
    mine = banyan.PromptData(content="custom", name="greet")
    assert logger.get_prompt("greet", fallback=mine) is mine
    with pytest.raises(banyan.ConnectError):
        logger.get_prompt("greet")
    assert cache(logger)["fallbacks"] == 2


def test_fresh_client_serves_the_disk_cache_while_backend_is_down(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """A second client on the same cache_dir, server down, serves and routes the saved prompt."""
    first, _ = make_logger(prompt(experiment=EXPERIMENT), cache_dir=tmp_path)
    routed = first.get_prompt("greet", sticky_context={"user_id": "u-9"})
    second, _ = make_logger(down(), down(), cache_dir=tmp_path)
    again = second.get_prompt("greet", sticky_context={"user_id": "u-9"})
    assert again == routed
    assert cache(second)["disk_served"] == 1
    assert second.get_prompt("greet") is not None  # now from memory: no second disk read
    assert cache(second)["disk_served"] == 1


def test_disk_file_is_private_complete_and_corruption_tolerant(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """The file is 0600 JSON with no temporary left behind (beside its lock file); a corrupt
    file is ignored."""
    logger, _ = make_logger(prompt(), prompt(name="other"), cache_dir=tmp_path)
    logger.get_prompt("greet")
    logger.get_prompt("other")
    path = logger._prompts.disk_path
    assert path is not None
    assert path.parent == tmp_path
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(os.listdir(tmp_path)) == [f".{path.name}.lock", path.name]
    names = {e["name"] for e in json.loads(path.read_text())["entries"]}
    assert names == {"greet", "other"}
    assert "psk_unit" not in path.name
    path.write_text("{not json")
    other, _ = make_logger(down(), cache_dir=tmp_path)
    with pytest.raises(banyan.ConnectError):
        other.get_prompt("greet")


def test_cache_dir_comes_from_env_then_xdg(
    make_logger: MakeLogger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """BANYAN_CACHE_DIR wins; without it $XDG_CACHE_HOME/banyan/prompts is used."""
    monkeypatch.setenv("BANYAN_CACHE_DIR", str(tmp_path / "env"))
    logger, _ = make_logger()
    assert logger._prompts.disk_path.parent == tmp_path / "env"  # type: ignore[union-attr]
    monkeypatch.delenv("BANYAN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    logger, _ = make_logger()
    expected = tmp_path / "xdg" / "banyan" / "prompts"
    assert logger._prompts.disk_path.parent == expected  # type: ignore[union-attr]
    logger, _ = make_logger(disk_cache=False)
    assert logger._prompts.disk_path is None


def test_lru_bound_evicts_the_least_recently_used(make_logger: MakeLogger, tmp_path: Path) -> None:
    """With cache_max_entries=2, a third prompt evicts the one used longest ago."""
    logger, fake = make_logger(
        prompt(name="a"), prompt(name="b"), prompt(name="c"), prompt(name="b"),
        cache_max_entries=2, cache_dir=tmp_path,
    )  # fmt: skip
    logger.get_prompt("a")
    logger.get_prompt("b")
    logger.get_prompt("a")  # a is now more recent than b
    logger.get_prompt("c")
    assert cache(logger)["evicted_lru"] == 1
    logger.get_prompt("a")
    assert len(fake.calls) == 3
    logger.get_prompt("b")
    assert len(fake.calls) == 4


def test_cache_key_includes_version_and_branch(make_logger: MakeLogger, tmp_path: Path) -> None:
    """Pinned versions and other branches are cached separately and fetched with their params."""
    logger, fake = make_logger(prompt("latest"), prompt("v1"), prompt("dev"), cache_dir=tmp_path)
    assert logger.get_prompt("greet").content == "latest"  # type: ignore[union-attr]
    assert logger.get_prompt("greet", version="1").content == "v1"  # type: ignore[union-attr]
    assert logger.get_prompt("greet", branch="dev").content == "dev"  # type: ignore[union-attr]
    assert logger.get_prompt("greet", version="1").content == "v1"  # type: ignore[union-attr]
    assert [c[2]["params"] for c in fake.calls] == [
        {"branch": "main"}, {"branch": "main", "version": "1"}, {"branch": "dev"},
    ]  # fmt: skip


def test_ttl_zero_disables_the_cache(make_logger: MakeLogger, tmp_path: Path) -> None:
    """cache_ttl=0: every get_prompt goes to the server and nothing is written to disk."""
    logger, fake = make_logger(prompt("1"), prompt("2"), cache_ttl=0, cache_dir=tmp_path)
    assert [logger.get_prompt("greet").content for _ in range(2)] == ["1", "2"]  # type: ignore[union-attr]
    assert len(fake.calls) == 2
    assert list(tmp_path.iterdir()) == []


def test_routed_prompt_is_logged_with_its_experiment_fields(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """log_prompt(prompt_data=routed) records experiment id, variant id, sticky key and value."""
    logger, _ = make_logger(prompt(experiment=EXPERIMENT), cache_dir=tmp_path)
    logger._idle = False  # keep the record in the ring
    data = logger.get_prompt("greet", sticky_context={"user_id": "u-1"})
    assert data is not None
    assert logger.log_prompt(input="i", output="o", prompt_data=data)
    (raw,) = list(logger._flusher.ring._items)
    record = msgspec.msgpack.decode(raw, type=Record)
    context = data.get_experiment_context()
    assert context is not None
    assert (record.experiment_id, record.experiment_version_id, record.version) == (
        "exp_1", context["experiment_version_id"], data.version,
    )  # fmt: skip
    assert (record.sticky_key, record.sticky_value) == ("user_id", "u-1")


def test_same_sticky_value_gets_the_same_object_and_others_their_own(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """The routing memo returns one immutable PromptData per sticky value."""
    logger, _ = make_logger(prompt(experiment=EXPERIMENT), cache_dir=tmp_path)
    first = logger.get_prompt("greet", sticky_context={"user_id": "u-1"})
    assert logger.get_prompt("greet", sticky_context={"user_id": "u-1"}) is first
    other = logger.get_prompt("greet", sticky_context={"user_id": "u-2"})
    assert other is not None
    assert other.sticky_value == "u-2"
    assert first is not None
    assert first.sticky_value == "u-1"


def test_unknown_hash_version_is_not_routed(make_logger: MakeLogger, tmp_path: Path) -> None:
    """An experiment with a hash version this client does not know serves the default."""
    logger, _ = make_logger(
        prompt(experiment={**EXPERIMENT, "hash_version": 2}), cache_dir=tmp_path
    )
    data = logger.get_prompt("greet", sticky_context={"user_id": "u-1"})
    assert data is not None
    assert (data.content, data.get_experiment_context()) == ("default", None)


def test_forked_child_state_keeps_entries_with_its_own_refresher(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """After the fork reset the cached prompts remain; the refresher and counters are new."""
    logger, _ = make_logger(prompt("parent"), cache_dir=tmp_path)
    logger.get_prompt("greet")
    parent = logger._prompts
    logger._after_fork_in_child()
    assert logger._prompts is not parent
    assert logger._prompts._refresher is not parent._refresher
    assert logger.get_prompt("greet").content == "parent"  # type: ignore[union-attr]
    assert cache(logger)["misses"] == 0


def test_aget_prompt_and_aflush(make_logger: MakeLogger, tmp_path: Path) -> None:
    """aget_prompt fetches in a thread on a miss, answers hits inline; aflush delivers."""
    logger, fake = make_logger(prompt("async"), cache_dir=tmp_path)

    async def main() -> tuple[Any, Any, bool]:
        first = await logger.aget_prompt("greet")
        second = await logger.aget_prompt("greet")
        logger.log_prompt(input="i", output="o", prompt_data=first)
        return first, second, await logger.aflush(timeout=5)

    first, second, flushed = asyncio.run(main())
    assert first is second
    assert first.content == "async"
    assert flushed
    assert logger.get_stats()["logs_sent"] == 1
    assert fake.calls[0][1] == "/api/logs/prompt/greet"


def test_module_level_async_functions(make_logger: MakeLogger, tmp_path: Path) -> None:
    """banyan.aget_prompt and banyan.aflush use the default logger; aflush is False unconfigured."""
    assert asyncio.run(banyan.aflush(timeout=1)) is False
    logger, _ = make_logger(prompt("module"), cache_dir=tmp_path)
    banyan._default._logger = logger
    try:
        data = asyncio.run(banyan.aget_prompt("greet"))
        assert data is not None
        assert data.content == "module"
        assert asyncio.run(banyan.aflush(timeout=5)) is True
    finally:
        banyan._default._logger = None


def test_bad_cache_options_are_refused() -> None:
    """cache_max_entries < 1, a non-bool disk_cache, a non-path cache_dir: ConfigurationError."""
    for bad in ({"cache_max_entries": 0}, {"disk_cache": "yes"}, {"cache_dir": 5}):
        with pytest.raises(banyan.ConfigurationError):
            banyan.PromptStackLogger(api_key="psk_unit", base_url="http://127.0.0.1:9", **bad)
    logger = banyan.PromptStackLogger(
        api_key="psk_unit", base_url="http://127.0.0.1:9", cache_dir=Path("/tmp/x")
    )
    assert logger.config.cache_dir == "/tmp/x"
    logger.shutdown(timeout=1)


class NotJSON(FakeResponse):
    """A 200 answer that is not JSON: a proxy's or a web frontend's HTML page."""

    def json(self) -> Any:
        return json.loads("<html>hello</html>")


@pytest.mark.parametrize(
    "answer", [NotJSON(), prompt(metadata="oops"), FakeResponse(["not", "an", "object"])]
)
def test_unreadable_prompt_answer_counts_as_backend_down(
    make_logger: MakeLogger, tmp_path: Path, answer: FakeResponse
) -> None:
    """A 200 that is not a prompt gets fallback= (or a BanyanError), never a raw exception."""
    logger, _ = make_logger(answer, answer, cache_dir=tmp_path)
    data = logger.get_prompt("greet", fallback="FB")
    assert data is not None
    assert data.content == "FB"
    with pytest.raises(banyan.BanyanError, match="unreadable prompt"):
        logger.get_prompt("greet")
    assert logger._prompts.disk_path is not None
    assert not logger._prompts.disk_path.exists()  # nothing unreadable is saved


def test_unreadable_disk_entry_is_skipped_and_counted(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """A disk entry that parses as JSON but is no prompt falls through to fallback=."""
    first, _ = make_logger(prompt(), cache_dir=tmp_path)
    first.get_prompt("greet")
    path = first._prompts.disk_path
    assert path is not None
    data = json.loads(path.read_text())
    data["entries"][0]["body"]["metadata"] = ["x"]
    path.write_text(json.dumps(data))
    second, _ = make_logger(down(), cache_dir=tmp_path)
    served = second.get_prompt("greet", fallback="FB")
    assert served is not None
    assert served.content == "FB"
    assert (cache(second)["disk_errors"], cache(second)["disk_served"]) == (1, 0)


def test_concurrent_cold_misses_share_one_fetch(make_logger: MakeLogger, tmp_path: Path) -> None:
    """Threads missing the same prompt together wait for one GET instead of sending their own."""
    gate, slow = held(prompt("fetched"))
    logger, fake = make_logger(slow, cache_dir=tmp_path)
    got: list[str] = []

    def worker() -> None:
        data = logger.get_prompt("greet")
        got.append(data.content if data else "")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(fake.calls) == 1)
    time.sleep(0.05)  # let the others reach the wait
    gate.set()
    for thread in threads:
        thread.join(5)
    assert got == ["fetched"] * 8
    assert len(fake.calls) == 1
    assert cache(logger)["misses"] == 8


def test_failed_refresh_backs_off_from_the_failure(
    make_logger: MakeLogger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refresh that fails slowly is not retried at once: the backoff starts at the failure."""
    # A fake clock, and the refresh done before submit() returns (its fastest possible end):
    # no outcome depends on how threads are scheduled.
    now = [0.0]
    monkeypatch.setattr(_prompts, "_monotonic", lambda: now[0])
    monkeypatch.setattr(Refresher, "submit", lambda refresher, key: refresher._work(key) or True)

    def slow_failure(method: str, path: str, **kw: Any) -> FakeResponse:
        now[0] += 0.5  # longer than the backoff (min(cache_ttl, 5 s) = 0.3 s)
        raise down()

    logger, fake = make_logger(prompt("cached"), slow_failure, cache_ttl=0.3, cache_dir=tmp_path)
    assert logger.get_prompt("greet") is not None
    now[0] += 0.35
    assert logger.get_prompt("greet") is not None  # stale: queues the refresh
    assert cache(logger)["refresh_failures"] == 1
    for _ in range(20):
        logger.get_prompt("greet")
    assert len(fake.calls) == 2  # the fetch and the one failed refresh, no new one yet
    now[0] += 0.3
    logger.get_prompt("greet")
    assert len(fake.calls) == 3  # the backoff is over: refreshed again


def test_processes_rewriting_the_disk_cache_together_keep_every_entry(tmp_path: Path) -> None:
    """Two forked writers of one project's file: each one's new entries survive the other's."""
    disk = DiskCache(tmp_path, "http://127.0.0.1:1", "psk_unit", "proj", 1_000)
    children = []
    for n in range(2):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            code = 1
            try:
                for i in range(100):
                    disk.store((f"p{n}-{i}", None, "main"), {"content": f"{n}-{i}"})
                code = 0
            finally:
                os._exit(code)
        children.append(pid)
    for pid in children:
        assert os.waitpid(pid, 0)[1] == 0
    assert len(disk.load()) == 200


def test_shutdown_does_not_wait_past_its_timeout_for_a_stalled_refresh(
    make_logger: MakeLogger, tmp_path: Path
) -> None:
    """The refresher stuck in a request gets what is left of shutdown's timeout (it got 1 s)."""
    gate, stalled = held(prompt("late"))
    logger, fake = make_logger(prompt("cached"), stalled, cache_ttl=0.05, cache_dir=tmp_path)
    logger.get_prompt("greet")
    time.sleep(0.06)
    logger.get_prompt("greet")  # queues the refresh, which stalls
    wait_for(lambda: len(fake.calls) == 2)
    refresher = logger._prompts._refresher._thread
    assert refresher is not None
    logger.shutdown(timeout=0.2)
    still_held = refresher.is_alive()  # shutdown returned while the fetch was still held (5 s)
    gate.set()
    assert still_held
