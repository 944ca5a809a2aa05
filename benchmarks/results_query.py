"""Time and peak memory of one experiment's results: 1,000,000 records, 100,000 subjects,
two scores, on each storage engine.

Builds each database through the store (its schema, indexes included; no HTTP),
the rows in bulk:
a 50/50 experiment whose logs hold ``--records`` records of ``--subjects``
subjects, each with a latency, token counts and a cost, plus two scores: a
boolean ``accepted`` on 30 % of the records (attributed by experiment subject,
as ``prompt_data`` gives it) and a numeric ``rating`` on 10 % (attributed by
``record_id``, through the logged record). Then, in a fresh process per run (so
its peak RSS is the query's, not the build's), computes the results as
``GET /api/v2/experiments/{id}/results`` does on either engine:
``Store.result_aggregates`` plus ``analyze``. The engines take turns, run
after run, so both meet the same moments of the machine's load; each run
records its wall time, the CPU seconds of its process and (PostgreSQL) of the
database server's processes, the load average when it started, the peak RSS
of its process and (PostgreSQL) the peak anonymous memory of the database
server's processes, sampled every 50 ms. PostgreSQL runs on the suite's own
server (tests/pgserver.py, durable settings). Writes
benchmarks/results/results_query.json and results_query.png.

    python -m benchmarks.results_query [--records 1000000] [--subjects 100000] [--runs 3]
        [--engines sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import os
import queue
import resource
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import msgspec
import numpy as np

from banyan._routing import Experiment, Variant
from banyan.server import _db, _prompts
from banyan.server import analysis as stats
from banyan.server._auth import hash_key
from banyan.server.store import open_store
from benchmarks._plot import RESULTS, bars, write_json

CHUNK = 50_000
MODES = ("fixed-horizon", "sequential")
_LOGS = ("project_id, id, ts, prompt_name, experiment_id, experiment_version_id, duration_ms,"
         " input_tokens, output_tokens, cost, subject, record")  # fmt: skip
_SCORES = ("project_id, id, ts, name, kind, value, record_id, experiment_id,"
           " experiment_version_id, subject, record")  # fmt: skip


async def _experiment(target: str) -> tuple[str, str, list[str]]:
    """A project, a prompt with two versions and a 50/50 experiment on them, via the store."""
    store = await open_store(target)
    try:
        project = (await store.create_project("bench", hash_key("psk_bench"), "psk_benc"))["id"]
        body = _prompts.version_body({"content": "one"})
        prompt = await store.create_prompt(project, "bench", body)
        await store.add_version(prompt["id"], "main", "two")
        config = _config("exp_bench", ["var_bench1", "var_bench2"])
        await store.create_experiment(project, prompt["id"], "main", config, start=True)
    finally:
        await store.close()
    return project, config.id, [v.id for v in config.variants]


def chunks(
    project: str, exp_id: str, variants: list[str], records: int, subjects: int
) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """(log rows, score rows) per CHUNK records, in the column orders _LOGS and _SCORES."""
    rng = np.random.default_rng(18)
    for first in range(0, records, CHUNK):
        n = min(CHUNK, records - first)
        users = rng.integers(0, subjects, n)
        # The variant follows the subject, as routing does; the treatment is ~5 % slower.
        arm = users % 2
        latency = rng.lognormal(np.log(400), 0.4, n) * (1 + 0.05 * arm)
        tokens = rng.integers(200, 2000, n)
        out = rng.integers(10, 500, n)
        cost = (tokens * 2.5e-6 + out * 1e-5).tolist()
        ids = [f"r{first + i}" for i in range(n)]
        logs = [
            (project, ids[i], 1.7e9 + first + i, "bench", exp_id, variants[a], ms, t, o, c,
             f"user-{u}", b"")
            for i, (u, a, ms, t, o, c) in enumerate(zip(users.tolist(), arm.tolist(),
                latency.tolist(), tokens.tolist(), out.tolist(), cost, strict=True))
        ]  # fmt: skip
        draw = rng.random(n)
        accepted = np.flatnonzero(draw < 0.3).tolist()
        rated = np.flatnonzero(draw > 0.9).tolist()
        ok = (rng.random(n) < 0.25 + 0.02 * arm).tolist()
        scores = [(project, f"a{first + i}", 1.7e9 + first + i, "accepted", "boolean",
                   float(ok[i]), None, exp_id, variants[arm[i]], f"user-{users[i]}", b"")
                  for i in accepted]  # fmt: skip
        scores += [(project, f"s{first + i}", 1.7e9 + first + i, "rating", "number",
                    float(1 + i % 5), ids[i], None, None, None, b"") for i in rated]  # fmt: skip
        yield logs, scores


def _insert(conn: sqlite3.Connection, table: str, columns: str, rows: list[Any]) -> None:
    marks = ", ".join("?" * (columns.count(",") + 1))
    conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)


def build_sqlite(path: Path, records: int, subjects: int) -> tuple[str, str]:
    """The database at ``path`` (schema by the store); returns the project and the experiment."""
    project, exp_id, variants = asyncio.run(_experiment(str(path)))
    conn = _db.connect(path)
    for logs, scores in chunks(project, exp_id, variants, records, subjects):
        with _db.transaction(conn):
            _insert(conn, "logs", _LOGS, logs)
            _insert(conn, "scores", _SCORES, scores)
    conn.execute("ANALYZE")
    conn.close()
    return project, exp_id


def _config(exp_id: str, variants: list[str]) -> Experiment:
    arms = tuple(Variant(v, str(i + 1), 5000, name=f"v{i + 1}") for i, v in enumerate(variants))
    return Experiment(id=exp_id, sticky_key="user_id", seed="bench", variants=arms)


async def _build_postgres(url: str, records: int, subjects: int) -> tuple[str, str]:
    """The database at ``url`` (schema by the store), its rows by COPY; as build_sqlite."""
    import psycopg

    project, exp_id, variants = await _experiment(url)
    async with await psycopg.AsyncConnection.connect(url) as conn:
        for logs, scores in chunks(project, exp_id, variants, records, subjects):
            async with conn.cursor() as cur:
                for table, columns, rows in (("logs", _LOGS, logs), ("scores", _SCORES, scores)):
                    async with cur.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                        for row in rows:
                            await copy.write_row(row)
            await conn.commit()
        await conn.set_autocommit(True)
        await conn.execute("VACUUM ANALYZE")
    return project, exp_id


def _tree(root: int) -> list[int]:
    """``root`` and its descendants, from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += parents.get(pid, [])
    return found


def tree_cpu(root: int | None) -> float:
    """CPU seconds of ``root``'s process tree so far (reaped children included)."""
    ticks = 0
    for pid in _tree(root) if root else ():
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_anon_mb(root: int | None) -> float:
    """Anonymous resident memory of ``root``'s process tree (shared buffers left out)."""
    kb = 0
    for pid in _tree(root) if root else ():
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("RssAnon:"):
                    kb += int(line.split()[1])
    return kb / 1024


def _measure(job: tuple[str, str, str, str, int | None, str], out: Any) -> None:
    engine, where, project, exp_id, db_pid, mode = job
    # A worker imports scipy at its first results (~0.5 s, analysis/__init__): not timed here.
    assert stats.analyze is not None
    load = os.getloadavg()[0]
    cpu, db_cpu = time.process_time(), tree_cpu(db_pid)
    found, started = asyncio.run(_store_results(where, project, exp_id, mode))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put({"engine": engine, "mode": mode, "seconds": seconds, "peak_rss_mb": peak,
             "cpu_seconds": time.process_time() - cpu, "db_cpu_seconds": tree_cpu(db_pid) - db_cpu,
             "load_average": load, "subjects": found["subjects"], "records": found["records"],
             "metrics": sorted(found["variants"][0]["metrics"])})  # fmt: skip


async def _store_results(
    where: str, project: str, exp_id: str, mode: str
) -> tuple[dict[str, Any], float]:
    """The results and when their computation started (the store open already)."""
    store = await open_store(where)
    try:
        started = time.perf_counter()
        sequential = mode == "sequential"
        tau = stats.TAU if sequential else None
        aggregates = await store.result_aggregates(project, exp_id, tau=tau)
        config = _config(exp_id, sorted(a.variant_id for a in aggregates))
        found = stats.analyze(config, aggregates, sequential=sequential)
    finally:
        await store.close()
    return msgspec.to_builtins(found), started


class Target(NamedTuple):
    """A built database: its engine, where it is, its ids, its server's pid (PostgreSQL)."""

    engine: str
    where: str
    project: str
    exp_id: str
    db_pid: int | None = None


def measure(target: Target, mode: str) -> dict[str, Any]:
    """One results computation in a fresh process: its time, CPU and peak memory."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_measure, args=((*target, mode), out))
    child.start()
    db_peak, deadline = 0.0, time.monotonic() + 600
    while True:
        db_peak = max(db_peak, tree_anon_mb(target.db_pid))
        with contextlib.suppress(queue.Empty):
            found: dict[str, Any] = out.get(timeout=0.05)
            break
        if time.monotonic() > deadline or not child.is_alive():
            raise RuntimeError(f"no results from the {target.engine} run")
    child.join(timeout=60)
    return {**found, "db_peak_anon_mb": db_peak if target.db_pid else None}


def _runs(targets: list[Target], runs: int) -> dict[str, list[dict[str, Any]]]:
    """Every engine in turn, run after run, so both see the same moments of load."""
    found: dict[str, list[dict[str, Any]]] = {t.engine: [] for t in targets}
    for _ in range(runs):
        for mode in MODES:
            for target in targets:
                found[target.engine].append(measure(target, mode))
                print(json.dumps(found[target.engine][-1]))
    return found


def _built(engine: str, build: Callable[[], tuple[str, str]], where: str, db_pid: int | None
           ) -> tuple[Target, float]:  # fmt: skip
    started = time.perf_counter()
    project, exp_id = build()
    built = time.perf_counter() - started
    print(f"{engine}: built {built:.0f} s")
    return Target(engine, where, project, exp_id, db_pid), built


def _report(built: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"build_seconds": built, "runs": runs,
            "best_seconds": min(r["seconds"] for r in runs),
            "slowest_seconds": max(r["seconds"] for r in runs),
            "best_cpu_seconds": min(r["cpu_seconds"] + r["db_cpu_seconds"] for r in runs),
            "most_cpu_seconds": max(r["cpu_seconds"] + r["db_cpu_seconds"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
            "db_peak_anon_mb": max((r["db_peak_anon_mb"] or 0) for r in runs) or None,
            "load_average": [min(r["load_average"] for r in runs),
                             max(r["load_average"] for r in runs)]}  # fmt: skip


def _plot(report: dict[str, Any], engines: list[str]) -> None:
    labels, values, slowest, groups = [], [], [], []
    for engine in engines:
        found = report[engine]
        labels += [f"{engine} wall", f"{engine} CPU"]
        values += [found["best_seconds"], found["best_cpu_seconds"]]
        slowest += [found["slowest_seconds"], found["most_cpu_seconds"]]
        groups += ["wall (best)", "CPU, server + database (least)"]
    low, high = (f(report[e]["load_average"][i] for e in engines) for i, f in ((0, min), (1, max)))
    title = (f"One experiment's results: {report['records']:,} records, "
             f"{report['subjects']:,} subjects, two scores; load {low:.1f}-{high:.1f}")  # fmt: skip
    bars(RESULTS / "results_query.png", labels, values, title=title, ylabel="seconds",
         groups=groups, markers=slowest, marker_label="slowest run", line=(2.0, "2 s target"),
         fmt="{:.2f}")  # fmt: skip


def _targets(
    stack: contextlib.ExitStack, engines: list[str], records: int, subjects: int
) -> tuple[list[Target], dict[str, float]]:
    """Each engine's database, built (PostgreSQL's server stops when ``stack`` closes)."""
    targets, built = [], {}
    if "sqlite" in engines:
        path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "bench.db"
        build = functools.partial(build_sqlite, path, records, subjects)
        target, built["sqlite"] = _built("sqlite", build, str(path), None)
        targets.append(target)
    if "postgres" in engines:
        from tests.pgserver import PgServer

        server = PgServer(fast=False)
        stack.callback(server.remove)
        server.start()
        url = server.create_database("bench")
        assert server.proc is not None
        build = functools.partial(_sync_build_postgres, url, records, subjects)
        target, built["postgres"] = _built("postgres", build, url, server.proc.pid)
        targets.append(target)
    return targets, built


def _sync_build_postgres(url: str, records: int, subjects: int) -> tuple[str, str]:
    return asyncio.run(_build_postgres(url, records, subjects))


def main() -> None:
    """Build, measure, print and write the JSON and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    engines = args.engines.split(",")
    report: dict[str, Any] = {"records": args.records, "subjects": args.subjects,
                              "scores": ["accepted", "rating"],
                              "sqlite": sqlite3.sqlite_version}  # fmt: skip
    with contextlib.ExitStack() as stack:
        targets, built = _targets(stack, engines, args.records, args.subjects)
        for engine, runs in _runs(targets, args.runs).items():
            report[engine] = _report(built[engine], runs)
    write_json("results_query", report)
    _plot(report, engines)
    for engine in engines:
        found = report[engine]
        print(f"{engine}: results in {found['best_seconds']:.2f} s (best),"
              f" {found['best_cpu_seconds']:.2f} s CPU, peak RSS {found['peak_rss_mb']:.0f} MB,"
              f" load {found['load_average'][0]:.1f}-{found['load_average'][1]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
