"""Several ``banyan serve`` instances on one PostgreSQL database, and what the database holds.

Shared by the multi-instance tests, the ``multi_instance`` stress scenario and
``benchmarks.server_ingest`` (issue #17): instances are real processes on free
loopback ports, killed with SIGKILL (the whole process tree, as when a machine
dies) and started again on the same port; counts are read straight from the
database, not through any instance.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import psycopg

import banyan
from banyan import _localserver
from banyan._localserver import LocalServer
from banyan._wire import BATCH_PATH

if TYPE_CHECKING:
    from faultproxy import FaultProxy

#: How long a killed instance's port may take to close (its worker dies after it).
PORT_CLOSE_S = 30.0


def start_instance(
    folder: Path, url: str, *, port: int | None = None, api_key: str = _localserver.LOCAL_KEY
) -> LocalServer:
    """``banyan serve --db url`` on a free (or the given) loopback port, logging in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    return _localserver.start(folder, db=url, port=port, api_key=api_key)


def start_instances(
    tmp: Path, url: str, count: int, *, api_key: str = _localserver.LOCAL_KEY
) -> list[LocalServer]:
    """``count`` instances on one database, started one after another."""
    return [start_instance(tmp / f"instance{n}", url, api_key=api_key) for n in range(count)]


def descendants(pid: int) -> list[int]:
    """Every live process under ``pid`` (Linux /proc; empty elsewhere)."""
    found, todo = [], [pid]
    while todo:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{todo.pop()}/task").iterdir():
                children = [int(c) for c in (task / "children").read_text().split()]
                found += children
                todo += children
    return found


def kill(server: LocalServer) -> None:
    """SIGKILL an instance and its workers at once; return when its port is closed."""
    for pid in [server.process.pid, *descendants(server.process.pid)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    server.process.wait(30)
    deadline = time.monotonic() + PORT_CLOSE_S
    while _listening(server.port):
        if time.monotonic() > deadline:
            raise AssertionError(f"port {server.port} still open {PORT_CLOSE_S} s after SIGKILL")
        time.sleep(0.05)


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def restart(server: LocalServer) -> LocalServer:
    """Start a stopped instance again: same port, database, key and log folder."""
    return start_instance(server.log.parent, server.database, port=server.port,
                          api_key=server.api_key)  # fmt: skip


def stop_all(servers: list[LocalServer]) -> None:
    """SIGTERM every instance still running."""
    for server in servers:
        server.stop()


def ids_at(url: str) -> dict[str, Counter[str]]:
    """Per project id: how many rows of the logs table carry each record id."""
    out: dict[str, Counter[str]] = {}
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT project_id, id, count(*) FROM logs GROUP BY project_id, id")
        for project, rid, count in rows:
            out.setdefault(project, Counter())[rid] = count
    return out


def inputs_at(url: str) -> Counter[str]:
    """How many rows carry each record ``input`` (decoded from the stored record)."""
    found: Counter[str] = Counter()
    with psycopg.connect(url) as conn, conn.cursor(name="inputs") as cur:
        cur.execute("SELECT record FROM logs")
        for (blob,) in cur:
            found[msgspec.msgpack.decode(blob)["input"]] += 1
    return found


def counters_at(url: str) -> dict[str, dict[str, int]]:
    """Per project id: the ingest counters summed over their shards."""
    names = ("stored", "duplicates", "rejected", "batches")
    query = f"SELECT project_id, {', '.join(f'SUM({n})' for n in names)} FROM ingest_counters"
    with psycopg.connect(url) as conn:
        rows = conn.execute(f"{query} GROUP BY project_id".encode())
        return {r[0]: dict(zip(names, map(int, r[1:]), strict=True)) for r in rows}


@dataclass
class Load:
    """What the clients of ``spread_load`` did: records sent and dropped, by input prefix."""

    sent: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    spooled: int = 0
    drained: bool = True


def spread_load(
    servers: list[LocalServer], keys: list[str], tmp: Path, *, clients: int, records: int
) -> Load:
    """Real clients spread over the instances log ``records`` each, with one SIGKILL.

    Client ``n`` logs into project ``keys[n % len(keys)]`` through its own proxy to
    instance ``n % len(servers)``. Once a third of the records are logged, one
    batch of each client of instance 0 is stored there but its answer lost, then
    instance 0 is SIGKILLed mid-load, its clients are moved to instance 1 (their
    unanswered batches, those included, are retried there) and, once it runs
    again, back to it.
    ``servers[0]`` is replaced by the restarted instance.
    """
    # Test helpers from tests/: imported here so that benchmarks can use the rest.
    import faultproxy
    from spoolwait import drain

    with contextlib.ExitStack() as stack:
        proxies = [stack.enter_context(faultproxy.running(servers[n % len(servers)].base_url))
                   for n in range(clients)]  # fmt: skip
        # The proxy speaks HTTP/1.1; short retry delays keep the failover quick.
        loggers = [banyan.PromptStackLogger(keys[n % len(keys)], proxy.url, http2=False,
                                            retry_delay=0.02, max_retry_delay=0.5,
                                            flush_interval=0.1, spool_dir=str(tmp / f"spool{n}"))
                   for n, proxy in enumerate(proxies)]  # fmt: skip
        load = Load()
        threads = [threading.Thread(target=_log, args=(logger, f"c{n}", records, load))
                   for n, logger in enumerate(loggers)]  # fmt: skip
        for thread in threads:
            thread.start()
        _wait(lambda: sum(load.sent.values()) >= clients * records // 3, threads)
        _fail_over(servers, proxies)
        for thread in threads:
            thread.join(120)
        for n, logger in enumerate(loggers):
            load.drained &= drain(logger, 120)
            stats = logger.get_stats()
            load.dropped[f"c{n}"] += stats["logs_dropped"]
            load.spooled += stats["spooled"]
            logger.shutdown(10)
    return load


def _log(logger: banyan.PromptStackLogger, name: str, records: int, load: Load) -> None:
    for i in range(records):
        logger.log_prompt(f"{name} {i}", "o" * 200, model="m")
        load.sent[name] += 1
        if i % 100 == 99:
            time.sleep(0.2)  # ~500 records/s: the load lasts seconds, the kill lands mid-load


def _wait(done: Callable[[], bool], threads: list[threading.Thread]) -> None:
    deadline = time.monotonic() + 120
    while not done() and any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        time.sleep(0.01)


def _fail_over(servers: list[LocalServer], proxies: list[FaultProxy]) -> None:
    """Lose one answer of instance 0 to each of its clients (stored, then the connection
    reset), kill it, move its clients to instance 1, restart it, move them back."""
    victim, moved = servers[0], [p for p in proxies if p.target == servers[0].base_url]
    deadline = time.monotonic() + 60
    while not all(p.lost for p in moved) and time.monotonic() < deadline:
        for proxy in moved:
            if not proxy.lost and not proxy.faults:
                proxy.push("lose", path=BATCH_PATH)
        time.sleep(0.01)
    kill(victim)
    for proxy in moved:
        proxy.target = servers[1].base_url
    servers[0] = restart(victim)
    for proxy in moved:
        proxy.target = servers[0].base_url
