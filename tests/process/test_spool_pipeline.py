"""The spool under real processes: kill -9 in durable mode, racing replayers, fork."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

from prockit import fork_child, stored_inputs, wait_for
from serverproc import Server, start_server

import banyan

DURABLE_WORKER = textwrap.dedent(
    """
    import os, sys, banyan
    banyan.configure(api_key=sys.argv[1], base_url=sys.argv[2], durability="durable",
                     flush_interval=0.05)
    i = 0
    while True:
        if not banyan.log_prompt(f"kill9 {i}", "o" * 300):
            sys.exit(3)
        i += 1
        if i % 100 == 0:
            # Reported only after log_prompt returned for every record up to i.
            os.write(1, b"%d\\n" % i)
    """
)

ORPHANS = textwrap.dedent(
    """
    import sys, time, banyan
    banyan.configure(api_key=sys.argv[1], base_url=sys.argv[2], durability="durable",
                     flush_interval=0.02, atexit_timeout=0)
    for i in range(int(sys.argv[3])):
        assert banyan.log_prompt(f"orphan {i}", "o" * 300)
        if i % 500 == 499:
            time.sleep(0.1)  # a segment is sealed per flush interval: leave several
    """
)

REPLAYER = textwrap.dedent(
    """
    import sys, time, banyan
    print("ready", flush=True)
    sys.stdin.readline()
    logger = banyan.configure(api_key=sys.argv[1], base_url=sys.argv[2])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and logger.get_stats()["spool_segments"]:
        time.sleep(0.02)
    banyan.shutdown(5)  # joins the flusher: the last segment's ack is counted
    print(logger.get_stats()["replayed"], flush=True)
    """
)


def popen(script: str, server: Server, *args: object) -> subprocess.Popen[str]:
    argv = [sys.executable, "-c", script, server.api_key, server.base_url, *map(str, args)]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def test_durable_worker_killed_mid_load_loses_nothing(server: Server) -> None:
    """kill -9 in durable mode: every record log_prompt accepted reaches the server once."""
    server.stop()
    worker = popen(DURABLE_WORKER, server)
    assert worker.stdout is not None
    reported = 0
    deadline = time.monotonic() + 30
    while reported < 3000 and time.monotonic() < deadline:
        reported = int(worker.stdout.readline())
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=10)
    server = start_server(server.db.parent, port=server.port, db=server.db)
    try:
        logger = banyan.configure(api_key=server.api_key, base_url=server.base_url)
        wait_for(lambda: not logger.get_stats()["spool_segments"], 30, "the spool to drain")
        found = stored_inputs(server)
        missing = [i for i in range(reported) if found[f"kill9 {i}"] != 1]
        assert reported >= 3000
        assert missing == []
        assert max(found.values()) == 1
    finally:
        banyan.shutdown(5)
        server.stop()


def test_racing_processes_replay_each_orphaned_segment_once(server: Server) -> None:
    """Three processes start together over orphaned segments: each is replayed exactly once."""
    server.stop()
    orphans = popen(ORPHANS, server, 4000)
    orphans.communicate(timeout=30)
    assert orphans.returncode == 0
    server = start_server(server.db.parent, port=server.port, db=server.db)
    try:
        racers = [popen(REPLAYER, server) for _ in range(3)]
        for racer in racers:
            assert racer.stdout is not None
            assert racer.stdout.readline().strip() == "ready"
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        replayed = [int(racer.communicate(timeout=40)[0]) for racer in racers]
        assert sum(replayed) == 4000
        wait_for(lambda: server.summary()["stored"] >= 4000, 30, "4000 records")
        summary = server.summary()
        assert (summary["stored"], summary["duplicates"]) == (4000, 0)
    finally:
        server.stop()


def test_forked_child_writes_its_own_segments(server: Server) -> None:
    """Durable mode across fork: parent and child spool separately; all records arrive once."""
    logger = banyan.configure(
        api_key=server.api_key, base_url=server.base_url, durability="durable"
    )
    for i in range(100):
        logger.log_prompt(f"parent {i}", "o")

    def child() -> int:
        ok = all(banyan.log_prompt(f"child {i}", "o") for i in range(100))
        return 0 if ok and banyan.flush(10) else 1

    assert fork_child(child) == 0
    for i in range(100, 200):
        logger.log_prompt(f"parent {i}", "o")
    assert logger.flush(10)
    wait_for(lambda: server.summary()["stored"] >= 300, 30, "300 records")
    found = stored_inputs(server)
    assert len(found) == 300
    assert max(found.values()) == 1
    assert logger.get_stats()["spool_segments"] == 0
