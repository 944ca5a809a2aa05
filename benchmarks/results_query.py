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
``Store.result_aggregates`` plus ``analyze``. Reports the wall time and the
peak RSS of that process. PostgreSQL runs on the suite's own server
(tests/pgserver.py, durable settings). Writes
benchmarks/results/results_query.json.

    python -m benchmarks.results_query [--records 1000000] [--subjects 100000] [--runs 3]
        [--engines sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import resource
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from banyan._routing import Experiment, Variant
from banyan.server import _db, _prompts
from banyan.server import analysis as stats
from banyan.server._auth import hash_key
from banyan.server.store import open_store

RESULTS = Path(__file__).parent / "results"
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


def _measure(job: tuple[str, str, str, str, str], out: Any) -> None:
    engine, where, project, exp_id, mode = job
    # A worker imports scipy at its first results (~0.5 s, analysis/__init__): not timed here.
    assert stats.analyze is not None
    found, started = asyncio.run(_store_results(where, project, exp_id, mode))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put({"engine": engine, "mode": mode, "seconds": seconds, "peak_rss_mb": peak,
             "subjects": found["subjects"], "records": found["records"],
             "metrics": sorted(found["variants"][0]["metrics"])})  # fmt: skip


async def _store_results(
    where: str, project: str, exp_id: str, mode: str
) -> tuple[dict[str, Any], float]:
    """The results and when their computation started (the store open already)."""
    store = await open_store(where)
    try:
        started = time.perf_counter()
        aggregates = await store.result_aggregates(project, exp_id)
    finally:
        await store.close()
    config = _config(exp_id, sorted(a.variant_id for a in aggregates))
    found = stats.analyze(config, aggregates, sequential=mode == "sequential")
    return msgspec.to_builtins(found), started


def measure(engine: str, where: str, project: str, exp_id: str, mode: str) -> dict[str, Any]:
    """One results computation in a fresh process: its time and peak RSS."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_measure, args=((engine, where, project, exp_id, mode), out))
    child.start()
    found: dict[str, Any] = out.get(timeout=600)
    child.join(timeout=60)
    return found


def _runs(engine: str, where: str, project: str, exp_id: str, runs: int) -> list[dict[str, Any]]:
    found = []
    for mode in MODES:
        for _ in range(runs):
            found.append(measure(engine, where, project, exp_id, mode))
            print(json.dumps(found[-1]))
    return found


def _sqlite(args: argparse.Namespace, tmp: str) -> dict[str, Any]:
    path = Path(tmp) / "bench.db"
    started = time.perf_counter()
    project, exp_id = build_sqlite(path, args.records, args.subjects)
    built = time.perf_counter() - started
    print(f"sqlite: built {args.records:,} records of {args.subjects:,} subjects in {built:.0f} s")
    return _report(built, _runs("sqlite", str(path), project, exp_id, args.runs))


def _postgres(args: argparse.Namespace) -> dict[str, Any]:
    from tests.pgserver import PgServer

    server = PgServer(fast=False)
    try:
        server.start()
        url = server.create_database("bench")
        started = time.perf_counter()
        project, exp_id = asyncio.run(_build_postgres(url, args.records, args.subjects))
        built = time.perf_counter() - started
        print(f"postgres: built in {built:.0f} s")
        return _report(built, _runs("postgres", url, project, exp_id, args.runs))
    finally:
        server.remove()


def _report(built: float, runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"build_seconds": built, "runs": runs,
            "best_seconds": min(r["seconds"] for r in runs),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}  # fmt: skip


def main() -> None:
    """Build, measure, print and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engines", default="sqlite,postgres")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "records": args.records, "subjects": args.subjects, "scores": ["accepted", "rating"],
        "machine": platform.platform(), "sqlite": sqlite3.sqlite_version,
    }  # fmt: skip
    engines = args.engines.split(",")
    if "sqlite" in engines:
        with tempfile.TemporaryDirectory(prefix="banyan-results-") as tmp:
            report["sqlite"] = _sqlite(args, tmp)
    if "postgres" in engines:
        report["postgres"] = _postgres(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "results_query.json").write_text(json.dumps(report, indent=2) + "\n")
    for engine in engines:
        found = report[engine]
        print(f"{engine}: results in {found['best_seconds']:.2f} s (best),"
              f" peak RSS {found['peak_rss_mb']:.0f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
