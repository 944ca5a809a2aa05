"""Records/s the reference server persists on SQLite and PostgreSQL, side by side (#17).

Posts pre-encoded MessagePack batches of ~1.2 KB records (500-character input
and output, 5 metadata keys) for a few seconds per case from one client
process, counts what the server reports as stored, and writes
benchmarks/results/server_ingest.json and .png. Engines, in one run:

- ``sqlite``: one ``banyan serve`` on a fresh SQLite file;
- ``postgres``: one, two and three ``banyan serve --db postgresql://...`` on
  one database of a PostgreSQL it starts itself (initdb in a temporary
  directory, default durability: fsync and synchronous_commit on).

Each engine with one instance runs every batch size over HTTP/1.1 and h2c;
the scale-out cases (1,000-record batches over h2c, ``--scale-clients``
connections spread over the instances) run on SQLite and on PostgreSQL with
1, 2 and 3 instances. On Linux each case also reports the server's CPU time
per stored record: user + system time of every ``banyan serve`` process and
its worker, all threads, plus, on PostgreSQL, every process of the database
cluster (postmaster, backends, WAL writer, checkpointer). Runs in about 3
minutes.

    python -m benchmarks.server_ingest [--seconds 4] [--clients 2] [--engines sqlite,postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from banyan import _localserver
from banyan._record import IdSource, Record, encode
from banyan._wire import BATCH_PATH, MSGPACK, msgpack_array_header

KEY = "psk_bench_0123456789abcdef"
RESULTS = Path(__file__).parent / "results"
SIZES = (100, 1_000, 10_000)
#: (engine, instances) in the order they run.
SETUPS = (("sqlite", 1), ("postgres", 1), ("postgres", 2), ("postgres", 3))


def make_batches(size: int, count: int, ids: IdSource) -> list[bytes]:
    """``count`` batch bodies of ``size`` distinct ~1.2 KB records each."""
    text_in, text_out = "q" * 500, "a" * 500
    meta = {"user_id": "u-1", "session": "s-1", "tier": "pro", "region": "eu", "attempt": 1}
    out = []
    for _ in range(count):
        records = [
            encode(Record(id=ids.next(), ts=time.time(), input=text_in, output=text_out,
                          prompt_name="bench", version="1", model="gpt-x",
                          metadata=meta, duration_ms=12.5))
            for _ in range(size)
        ]  # fmt: skip
        out.append(msgpack_array_header(size) + b"".join(records))
    return out


def tree_cpu(pid: int) -> float | None:
    """CPU seconds used so far by process ``pid`` and its descendants (Linux; else None)."""
    proc = Path("/proc")
    try:
        total, pids = 0, [pid]
        while pids:
            task_dir = proc / str(pids.pop()) / "task"
            for task in task_dir.iterdir():
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
                pids += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        return None
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Fleet:
    """The instances of one setup and the processes whose CPU counts as the server's."""

    engine: str
    servers: list[_localserver.LocalServer]
    #: The database's own processes (the postmaster's tree), if any.
    db_pid: int | None = None

    def cpu(self) -> tuple[float, float] | None:
        """CPU seconds so far of the instances, and of the database (None without /proc)."""
        each = [tree_cpu(s.process.pid) for s in self.servers]
        db = 0.0 if self.db_pid is None else tree_cpu(self.db_pid)
        if db is None or None in each:
            return None
        return sum(c for c in each if c is not None), db

    def stored(self) -> int:
        """Records stored in the project (the counters every instance shares)."""
        url = self.servers[0].base_url
        response = httpx.get(f"{url}/api/v2/logs/summary", headers={"X-API-Key": KEY})
        return int(response.json()["stored"])


def run_case(
    fleet: Fleet, case: str, *, http2: bool, size: int, seconds: float, clients: int
) -> dict[str, Any]:
    """Post batches from ``clients`` threads, spread over the instances, for ``seconds``."""
    ids = IdSource()
    per_client = max(2, min(400, int(150_000 * seconds / size / clients)))
    bodies = [make_batches(size, per_client, ids) for _ in range(clients)]
    headers = {"X-API-Key": KEY, "Content-Type": MSGPACK}
    stored_before = fleet.stored()
    accepted = [0] * clients
    deadline = time.monotonic() + seconds

    def worker(n: int) -> None:
        url = fleet.servers[n % len(fleet.servers)].base_url
        with httpx.Client(base_url=url, http1=not http2, http2=http2, timeout=60) as client:
            for payload in bodies[n]:
                if time.monotonic() > deadline:
                    return
                response = client.post(BATCH_PATH, content=payload, headers=headers)
                accepted[n] += response.json()["accepted"] if response.status_code == 200 else 0

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(clients)]
    cpu_before = fleet.cpu()
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 60)
    elapsed = time.perf_counter() - started
    time.sleep(0.2)  # the checkpoint of the last batch runs after its answer
    cpu_after = fleet.cpu()
    records = fleet.stored() - stored_before
    cpu = None
    if cpu_before is not None and cpu_after is not None and records:
        cpu = [(a - b) / records * 1e6 for a, b in zip(cpu_after, cpu_before, strict=True)]
    return {
        "case": case,
        "engine": fleet.engine,
        "instances": len(fleet.servers),
        "clients": clients,
        "protocol": "HTTP/2 (h2c)" if http2 else "HTTP/1.1",
        "batch_size": size,
        "records": records,
        "accepted": sum(accepted),
        "seconds": round(elapsed, 3),
        "records_per_s": round(records / elapsed),
        "server_cpu_us_per_record": None if cpu is None else round(sum(cpu), 1),
        "serve_cpu_us_per_record": None if cpu is None else round(cpu[0], 1),
        "database_cpu_us_per_record": None if cpu is None else round(cpu[1], 1),
    }


@contextlib.contextmanager
def sqlite_fleet(tmp: Path) -> Iterator[Fleet]:
    """One ``banyan serve`` on a fresh SQLite file."""
    server = _localserver.start(tmp, db=tmp / "bench.db", api_key=KEY)
    try:
        yield Fleet("sqlite", [server])
    finally:
        server.stop()


@contextlib.contextmanager
def postgres_fleets(tmp: Path) -> Iterator[Any]:
    """A PostgreSQL of its own; yields ``open(instances)``, a context of a fresh Fleet."""
    from tests.pgserver import PgServer
    from tests.server.store import pgfleet

    pg = PgServer(fast=False)
    try:
        pg.start()
        assert pg.proc is not None

        @contextlib.contextmanager
        def fleet(instances: int) -> Iterator[Fleet]:
            url = pg.create_database(f"bench{instances}")
            servers = pgfleet.start_instances(tmp / f"pg{instances}", url, instances, api_key=KEY)
            try:
                yield Fleet("postgres", servers, pg.proc.pid)  # type: ignore[union-attr]
            finally:
                pgfleet.stop_all(servers)

        yield fleet
    finally:
        pg.remove()


def run_setup(fleet: Fleet, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every batch size and protocol on one instance; the scale-out case on any number."""
    cases = [("sizes", h2, size, args.clients) for h2 in (False, True) for size in SIZES]
    if len(fleet.servers) > 1:
        cases = []
    cases.append(("scale", True, 1_000, args.scale_clients))
    results = []
    for case, http2, size, clients in cases:
        row = run_case(fleet, case, http2=http2, size=size, seconds=args.seconds, clients=clients)
        results.append(row)
        print(json.dumps(results[-1]), flush=True)
    return results


def run_all(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """Each setup of SETUPS whose engine is asked for, in one run."""
    results = []
    if "sqlite" in args.engines:
        with sqlite_fleet(tmp) as fleet:
            results += run_setup(fleet, args)
    if "postgres" in args.engines:
        with postgres_fleets(tmp) as open_fleet:
            for _, instances in [s for s in SETUPS if s[0] == "postgres"]:
                with open_fleet(instances) as fleet:
                    results += run_setup(fleet, args)
    return results


def label(row: dict[str, Any]) -> str:
    """``SQLite``, ``PostgreSQL x2``: the setup of a result row."""
    name = {"sqlite": "SQLite", "postgres": "PostgreSQL"}[row["engine"]]
    return name if row["engine"] == "sqlite" else f"{name} x{row['instances']}"


def plot(results: list[dict[str, Any]], path: Path) -> None:
    """Left: records/s by batch size per engine and protocol; right: the scale-out case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    single = [r for r in results if r["case"] == "sizes"]
    groups = sorted({(label(r), r["protocol"]) for r in single})
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), width_ratios=(3, 2))
    width = 0.8 / max(len(groups), 1)
    for i, (name, proto) in enumerate(groups):
        rows = [r for r in single if (label(r), r["protocol"]) == (name, proto)]
        xs = [SIZES.index(r["batch_size"]) + i * width for r in rows]
        bars = left.bar(xs, [r["records_per_s"] for r in rows], width, label=f"{name}, {proto}")
        left.bar_label(bars, fmt="{:,.0f}", fontsize=6)
    left.set_xticks([i + width * (len(groups) - 1) / 2 for i in range(len(SIZES))])
    left.set_xticklabels([f"{s:,} / batch" for s in SIZES])
    left.set_ylabel("records persisted per second")
    left.set_title("one instance, one client process", fontsize=10)
    left.legend(fontsize=7)
    scale = [r for r in results if r["case"] == "scale"]
    bars = right.bar(
        [label(r).replace(" x", "\nx") for r in scale], [r["records_per_s"] for r in scale]
    )
    cpu = [f"{r['records_per_s']:,}/s\n{r['server_cpu_us_per_record']} us CPU/rec" for r in scale]
    right.bar_label(bars, labels=cpu, fontsize=7)
    right.margins(y=0.2)
    connections = scale[0]["clients"] if scale else 0
    right.set_title(f"h2c, 1,000 / batch, {connections} connections over the instances",
                    fontsize=10)  # fmt: skip
    fig.suptitle("banyan serve: ingest of ~1.2 KB records (server CPU includes PostgreSQL's)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    """Run every setup and case and write the JSON and PNG results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="per case")
    parser.add_argument("--clients", type=int, default=2, help="concurrent connections")
    parser.add_argument(
        "--scale-clients",
        type=int,
        default=3,
        help="connections of the scale-out case, spread over the instances",
    )
    parser.add_argument("--engines", default="sqlite,postgres", type=lambda v: v.split(","),
                        help="comma-separated: sqlite, postgres")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = run_all(args, Path(tmp))
    RESULTS.mkdir(exist_ok=True)
    meta = {"python": platform.python_version(), "cpus": os.cpu_count(), "clients": args.clients,
            "scale_clients": args.scale_clients, "seconds_per_case": args.seconds,
            "record_bytes": 1160}  # fmt: skip
    out = RESULTS / "server_ingest.json"
    out.write_text(json.dumps({"machine": meta, "results": results}, indent=2) + "\n")
    plot(results, RESULTS / "server_ingest.png")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
