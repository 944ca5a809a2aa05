"""The spool in the pipeline, against a real server that goes away and comes back."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from faultproxy import Fault, running
from legacyserver import start as start_legacy
from serverkit import stored_inputs_in_order
from serverproc import Server, free_port, start_server

import banyan
from banyan._segment import HEADER_SIZE
from banyan._wire import SINGLE_LOG_PATH

LOG_AND_EXIT = textwrap.dedent(
    """
    import sys, banyan
    options = {"base_url": sys.argv[2], **eval(sys.argv[4])}
    banyan.configure(api_key=sys.argv[1], retry_delay=0.05, atexit_timeout=3, **options)
    ok = sum(banyan.log_prompt(f"rec {i}", "o") for i in range(int(sys.argv[3])))
    print(ok, flush=True)
    """
)

REPLAY_AND_WAIT = textwrap.dedent(
    """
    import sys, time, banyan
    logger = banyan.configure(api_key=sys.argv[1], base_url=sys.argv[2])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and logger.get_stats()["spool_segments"]:
        time.sleep(0.05)
    banyan.shutdown(5)  # joins the flusher: the last segment's ack is counted
    print(logger.get_stats()["replayed"], flush=True)
    """
)


def run(script: str, server: Server, *args: object) -> str:
    """Run ``script`` in a fresh interpreter against ``server``; its stdout."""
    argv = [sys.executable, "-c", script, server.api_key, server.base_url, *map(str, args)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``banyan spool ...`` in a subprocess, with ``env`` added to the environment."""
    argv = [sys.executable, "-m", "banyan", "spool", *args]
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env})  # fmt: skip


def restart(server: Server, tmp_path: Path) -> Server:
    """The same server (port and database) started again."""
    return start_server(tmp_path, port=server.port, db=server.database)


def spool_status(server: Server) -> dict[str, Any]:
    """``banyan spool status --json`` for the directory of ``server``'s clients."""
    done = cli("status", "--json", "--base-url", server.base_url, "--api-key", server.api_key)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    return dict(found[0]) if found else {"segments": 0, "records": 0}


def check_all_stored_once(server: Server, count: int, resent: bool = False) -> None:
    """``count`` records stored, each once; none even sent twice unless ``resent``.

    A batch whose answer the server's stop cut off is sent again: the server
    counts it as a duplicate and stores nothing twice.
    """
    summary = server.summary()
    ids = server.stored_ids()
    assert (summary["stored"], len(ids), len(set(ids))) == (count, count, count)
    assert resent or summary["duplicates"] == 0


def test_exit_during_outage_then_a_new_process_replays_everything(
    server: Server, tmp_path: Path
) -> None:
    """Server down, a process logs N and exits: the next process sends all N, each once."""
    server.stop()
    assert run(LOG_AND_EXIT, server, 3000, {}).strip() == "3000"
    assert spool_status(server)["records"] == 3000
    server = restart(server, tmp_path)
    try:
        assert run(REPLAY_AND_WAIT, server).strip() == "3000"
        check_all_stored_once(server, 3000)
        assert spool_status(server)["segments"] == 0
    finally:
        server.stop()


FLUSH_AND_SHUT = textwrap.dedent(
    """
    import sys, banyan
    logger = banyan.configure(api_key=sys.argv[1], base_url=sys.argv[2])
    flushed = banyan.flush(30)
    banyan.shutdown(30)
    print(flushed, logger.get_stats()["replayed"], flush=True)
    """
)


def test_flush_covers_an_adopted_backlog_and_its_segments_are_deleted(
    server: Server, tmp_path: Path
) -> None:
    """Issue 14 item 5: configure(); flush(); shutdown() sends the whole backlog and deletes it."""
    server.stop()
    run(LOG_AND_EXIT, server, 1000, {})
    server = restart(server, tmp_path)
    try:
        assert run(FLUSH_AND_SHUT, server).split() == ["True", "1000"]
        check_all_stored_once(server, 1000)
        assert spool_status(server)["segments"] == 0
    finally:
        server.stop()


def test_shutdown_during_an_outage_hands_the_backlog_over_and_says_so(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    """shutdown() unlocks the adopted backlog it could not send, counts it and logs it."""
    server.stop()
    run(LOG_AND_EXIT, server, 1000, {})
    logger = banyan.PromptStackLogger(server.api_key, server.base_url, retry_delay=0.05)
    with caplog.at_level(logging.WARNING, logger="banyan"):
        assert logger.flush(10)
        logger.shutdown(10)
    assert logger.get_stats()["spool_handed_over"] == 1000
    assert any("left 1000 record(s)" in r.getMessage() for r in caplog.records)
    assert spool_status(server)["records"] == 1000


def test_status_without_dir_lists_every_directory_with_its_server(server: Server) -> None:
    """Issue 13: status lists each spool directory under the root, the server and project it
    is for (never the key), and bytes used beside bytes allocated; the environment's key
    and URL do not narrow it."""
    server.stop()
    run(LOG_AND_EXIT, server, 50, {})
    run(LOG_AND_EXIT, server, 20, {"base_url": "http://127.0.0.1:9", "project_id": "prj_x"})
    other = {"BANYAN_API_KEY": "psk_other", "BANYAN_BASE_URL": "http://127.0.0.1:10"}
    found = json.loads(cli("status", "--json", **other).stdout)
    servers = {(f["server"]["base_url"], f["server"]["project_id"]): f for f in found}
    assert set(servers) == {(server.base_url, None), ("http://127.0.0.1:9", "prj_x")}
    mine = servers[server.base_url, None]
    assert mine["records"] == 50
    assert HEADER_SIZE < mine["bytes_used"] < mine["bytes"]
    text = cli("status", **other).stdout
    assert server.base_url in text
    assert "prj_x" in text
    assert "used" in text
    for directory in found:
        assert server.api_key not in (Path(directory["directory"]) / "server.json").read_text()


def test_replay_sends_a_directory_to_the_server_it_was_meant_for(
    server: Server, tmp_path: Path
) -> None:
    """Issue 13: spool replay --dir sends to the directory's own server, whatever
    BANYAN_BASE_URL says, and prints where."""
    server.stop()
    run(LOG_AND_EXIT, server, 30, {})
    (directory,) = json.loads(cli("status", "--json").stdout)
    server = restart(server, tmp_path)
    try:
        env = {"BANYAN_API_KEY": server.api_key, "BANYAN_BASE_URL": "http://127.0.0.1:9"}
        done = cli("replay", "--dir", directory["directory"], **env)
        assert done.returncode == 0, done.stderr
        assert f"replayed 30 record(s) from {directory['directory']} to {server.base_url}" in (
            done.stdout
        )
        check_all_stored_once(server, 30)
    finally:
        server.stop()


def test_cli_replay_and_status_and_purge(server: Server, tmp_path: Path) -> None:
    """`banyan spool replay` delivers a dead process's records once; purge empties a spool."""
    server.stop()
    run(LOG_AND_EXIT, server, 1500, {})
    shown = cli("status", "--base-url", server.base_url, "--api-key", server.api_key)
    assert "records    1500" in shown.stdout
    assert "gone" in shown.stdout
    server = restart(server, tmp_path)
    try:
        done = cli("replay", "--base-url", server.base_url, "--api-key", server.api_key)
        assert done.returncode == 0, done.stderr
        assert "replayed 1500 record(s)" in done.stdout
        check_all_stored_once(server, 1500)
        run(LOG_AND_EXIT, server, 10, {"base_url": "http://127.0.0.1:9"})
        key = ("--base-url", "http://127.0.0.1:9", "--api-key", server.api_key)
        assert "purged 10 record(s)" in cli("purge", *key).stdout
        assert "segments   0" in cli("status", *key).stdout
    finally:
        server.stop()


def test_outage_under_steady_load_loses_and_duplicates_nothing(
    server: Server, tmp_path: Path
) -> None:
    """Server down 5 s mid-load, then back: every record stored once, memory bounded."""
    logger = banyan.PromptStackLogger(
        server.api_key, server.base_url, retry_delay=0.1, max_retries=2, flush_interval=0.2,
        max_queue_bytes=256 << 10,
    )  # fmt: skip
    stop = threading.Event()
    sent = [0]
    peak = [0]

    def load() -> None:
        while not stop.is_set():
            sent[0] += logger.log_prompt(f"load {sent[0]}", "o" * 200)
            peak[0] = max(peak[0], logger.get_stats()["queue_bytes"])
            time.sleep(0.0005)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        time.sleep(1)
        server.stop()
        time.sleep(5)
        server = restart(server, tmp_path)
        time.sleep(1)
    finally:
        stop.set()
        thread.join(10)
    try:
        assert logger.flush(30)
        deadline = time.monotonic() + 30
        while logger.get_stats()["spool_segments"] and time.monotonic() < deadline:
            logger.flush(1)
            time.sleep(0.1)
        logger.shutdown(5)
        stats = logger.get_stats()
        assert stats["spooled"] > 0
        assert stats["logs_dropped"] == 0
        assert peak[0] <= 256 << 10
        check_all_stored_once(server, sent[0], resent=True)
        assert stats["logs_queued"] == sent[0]
        invariant(stats)
    finally:
        logger.shutdown(5)
        server.stop()


def invariant(stats: Mapping[str, Any]) -> None:
    """logs_queued == sent + dropped + queued + in flight + spooled_pending."""
    parts = ("logs_sent", "logs_dropped", "queue_size", "in_flight", "spooled_pending")
    assert stats["logs_queued"] == sum(stats[name] for name in parts), stats


def test_a_large_backlog_replays_without_starving_live_records(
    server: Server, tmp_path: Path
) -> None:
    """A dead process's 20,000 spooled records replay one batch per live batch: the live
    records logged beside the backlog arrive before half of it; each record is stored once."""
    backlog, first_wave = 20_000, 300
    spool = str(tmp_path / "spool")
    dead = {"durability": "durable", "spool_dir": spool, "base_url": "http://127.0.0.1:9"}
    assert run(LOG_AND_EXIT, server, backlog, dead).strip() == str(backlog)
    with running(server.base_url) as proxy:
        # Nothing reaches the server until the first live wave is queued beside the backlog.
        proxy.always.append(Fault("hold"))
        logger = banyan.PromptStackLogger(
            server.api_key, proxy.url, spool_dir=spool, batch_max_records=100, http2=False
        )
        try:
            live = sum(logger.log_prompt(f"live {i}", "o") for i in range(first_wave))
            proxy.always.clear()
            proxy.release.set()
            # Live traffic goes on while the backlog drains.
            deadline = time.monotonic() + 30
            while logger.get_stats()["spool_segments"] and time.monotonic() < deadline:
                live += logger.log_prompt(f"live {live}", "o")
                time.sleep(0.002)
            assert logger.flush(30)
            logger.shutdown(5)
            assert logger.get_stats()["replayed"] == backlog
        finally:
            logger.shutdown(5)
    check_all_stored_once(server, backlog + live)
    order = stored_inputs_in_order(server)
    wave = {f"live {i}" for i in range(first_wave)}
    last = max(i for i, text in enumerate(order) if text in wave)
    assert sum(text.startswith("rec ") for text in order[:last]) < backlog // 2


def test_a_buffered_flush_wakes_a_slow_backlog_replay_and_does_not_wait_for_it(
    server: Server, tmp_path: Path
) -> None:
    """Review item 4: a backlog and a server that does not answer: a buffered flush() with
    nothing logged returns True at once, each time, not at its deadline (flush_after_task)."""
    spool = str(tmp_path / "spool")
    dead = {"durability": "durable", "spool_dir": spool, "base_url": "http://127.0.0.1:9"}
    assert run(LOG_AND_EXIT, server, 50, dead).strip() == "50"
    # Generous: the bound below pins "not at the deadline", with slack for a loaded machine.
    timeout = 30.0
    with running(server.base_url) as proxy:
        proxy.always.append(Fault("hold"))
        logger = banyan.PromptStackLogger(
            server.api_key, proxy.url, spool_dir=spool, http2=False, timeout=timeout * 2
        )
        try:
            for _ in range(3):
                started = time.monotonic()
                assert logger.flush(timeout)
                assert time.monotonic() - started < timeout / 2
        finally:
            proxy.always.clear()
            proxy.release.set()
            logger.shutdown(5)


def test_torn_tail_and_flipped_bits_replay_the_good_frames(server: Server, tmp_path: Path) -> None:
    """A flipped bit and a torn tail in a segment: good frames replayed, bad ones counted."""
    server.stop()
    run(LOG_AND_EXIT, server, 200, {})
    spool = Path(spool_status(server)["directory"])
    (segment,) = spool.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[HEADER_SIZE + 40] ^= 0x10
    committed = int.from_bytes(data[24:32], "little")
    data[committed - 30 : committed] = bytes(30)
    segment.write_bytes(bytes(data))
    server = restart(server, tmp_path)
    logger = banyan.PromptStackLogger(server.api_key, server.base_url)
    try:
        logger.flush(10)  # buffered: wakes the replay of the adopted backlog
        deadline = time.monotonic() + 20
        while logger.get_stats()["spool_segments"] and time.monotonic() < deadline:
            time.sleep(0.05)
        # The next flush() says that two of its records were lost.
        assert not logger.flush(10)
        logger.shutdown(5)
        stats = logger.get_stats()
        assert stats["spool_corrupt_frames"] == 2
        assert stats["dropped"]["spool_corrupt"] == 2
        assert stats["replayed"] == 198
        check_all_stored_once(server, 198)
    finally:
        logger.shutdown(5)
        server.stop()


def test_size_limit_evicts_the_oldest_segments_and_counts_them(server: Server) -> None:
    """Past spool_max_bytes the oldest segments go, counted as spool_evicted."""
    logger = banyan.PromptStackLogger(
        server.api_key, "http://127.0.0.1:9", spool_max_bytes=256 << 10, durability="durable",
        background_thread=False,
    )  # fmt: skip
    try:
        for i in range(2000):
            assert logger.log_prompt(f"big {i}", "o" * 400)
        stats = logger.get_stats()
        assert stats["dropped"]["spool_evicted"] > 0
        assert stats["spool_bytes"] <= 256 << 10
        invariant(stats)
        segments = sorted(Path(logger._spool.directory).glob("*.seg"))  # type: ignore[union-attr]
        assert len(segments) >= 2
    finally:
        logger.shutdown(0)


@pytest.mark.parametrize("durability", ["buffered", "durable"])
def test_a_refused_key_keeps_the_records_for_a_process_with_the_right_one(
    server: Server, durability: str, tmp_path: Path
) -> None:
    """401: records spooled and held (flush False, warned once), then sent by the right key."""
    options: dict[str, Any] = {"durability": durability, "spool_dir": str(tmp_path / "spool")}
    wrong = banyan.PromptStackLogger("psk_wrong_key_000000000000", server.base_url, **options)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        logged = [wrong.log_prompt(f"held {i}", "o") for i in range(3)]
        flushed = [wrong.flush(10), wrong.flush(10)]
    stats = wrong.get_stats()
    wrong.shutdown(5)
    assert (logged, flushed) == ([True] * 3, [False, False])
    assert [w.category for w in seen if "API key" in str(w.message)] == [banyan.BanyanWarning]
    assert (stats["logs_dropped"], stats["spooled_pending"], stats["logs_sent"]) == (0, 3, 0)
    invariant(stats)
    right = banyan.PromptStackLogger(server.api_key, server.base_url, **options)
    try:
        assert right.flush(10)
    finally:
        right.shutdown(5)
    assert stored_inputs_in_order(server) == ["held 0", "held 1", "held 2"]


def test_full_ring_spills_to_the_spool_and_is_replayed(server: Server) -> None:
    """Records that do not fit the ring go to the spool, then reach the server."""
    logger = banyan.PromptStackLogger(
        server.api_key, server.base_url, max_queue_bytes=4096, flush_interval=0.1
    )
    logger._idle = False  # keep the flusher stopped until every record is logged
    try:
        assert all(logger.log_prompt(f"r {i}", "o" * 300) for i in range(200))
        assert logger.get_stats()["spooled"] > 150
        logger._start()
        deadline = time.monotonic() + 20
        while server.summary()["stored"] < 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        check_all_stored_once(server, 200)
    finally:
        logger.shutdown(5)


def test_spool_directory_is_private_and_keyed_by_server_and_project(tmp_path: Path) -> None:
    """Directories differ per server and per project; the directory is 0700, segments 0600."""
    a = banyan.PromptStackLogger("psk_a", "http://127.0.0.1:9", durability="durable")
    b = banyan.PromptStackLogger("psk_a", "http://127.0.0.1:10", spool_dir=tmp_path / "mine")
    c = banyan.PromptStackLogger("psk_b", "http://127.0.0.1:9", spool_dir=False)
    try:
        assert a._spool is not None
        assert b._spool is not None
        assert c._spool is None
        assert a._spool.directory.parent == Path(os.environ["BANYAN_SPOOL_DIR"])
        assert b._spool.directory == tmp_path / "mine"
        a.log_prompt("i", "o")
        assert stat.S_IMODE(a._spool.directory.stat().st_mode) == 0o700
        (segment,) = a._spool.directory.glob("*.seg")
        assert stat.S_IMODE(segment.stat().st_mode) == 0o600
    finally:
        for logger in (a, b, c):
            logger.shutdown(0)


def test_a_101_server_shedding_load_with_429_gets_each_replayed_record_once(
    tmp_path: Path,
) -> None:
    """Review item 2: replaying to a 1.0.1 server that answers every other request 429
    neither resends the records it stored (each stored once) nor gives up: all arrive."""
    legacy = start_legacy(free_port(), delay_ms=20)
    try:
        with running(legacy.base_url) as proxy:
            proxy.always.append(Fault("status", status=503, path=SINGLE_LOG_PATH))
            logger = banyan.PromptStackLogger(
                "psk_legacy_0123456789abcdef", proxy.url, http2=False, max_retries=0,
                retry_delay=0.02, flush_interval=0.05, spool_dir=str(tmp_path),
            )  # fmt: skip
            try:
                for i in range(200):
                    logger.log_prompt(f"in {i}", "o")
                assert logger.flush(30)
                assert logger.get_stats()["spooled"] == 200
                # "hold", released, passes a request on: 429s interleaved with successes.
                proxy.release.set()
                for _ in range(40):
                    proxy.push("hold", path=SINGLE_LOG_PATH)
                    proxy.push("status", path=SINGLE_LOG_PATH, status=429, retry_after="0.05")
                proxy.always.clear()
                deadline = time.monotonic() + 60
                while logger.get_stats()["spool_segments"] and time.monotonic() < deadline:
                    time.sleep(0.05)
                stats = logger.get_stats()
            finally:
                logger.shutdown(10)
        ids = legacy.stored()["ids"]
        assert (len(set(ids)), stats["spool_segments"]) == (200, 0)
        assert len(ids) - 200 <= stats["possible_duplicates"]
    finally:
        legacy.stop()
