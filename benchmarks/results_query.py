"""Time and peak memory of one experiment's results: 1,000,000 records, 100,000 subjects.

Builds the database directly (the server's schema, indexes included; no HTTP):
one project, a prompt with two versions and a 50/50 experiment whose logs hold
``--records`` records of ``--subjects`` subjects, each with a latency. Then, in
a fresh process per run (so its peak RSS is the query's, not the build's),
computes what ``GET /api/v2/experiments/{id}/results`` returns
(``banyan.server._results.results``) and reports the wall time and the peak
RSS. Writes benchmarks/results/results_query.json.

    python benchmarks/results_query.py [--records 1000000] [--subjects 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from banyan.server import _auth, _db, _experiments, _prompts, _results

RESULTS = Path(__file__).parent / "results"
CHUNK = 50_000


def _experiment(conn: sqlite3.Connection) -> tuple[str, str, list[str]]:
    project = _auth.insert_project(conn, "bench")
    body = _prompts.version_body({"content": "one"})
    _prompts.create(conn, project, "bench", body)
    prompt = _prompts.require(conn, project, "bench")
    _prompts.add_version(conn, prompt["id"], "main", "two")
    exp = _experiments.create(conn, project, {"prompt": "bench", "variants": [
        {"version": "1", "percentage": 50}, {"version": "2", "percentage": 50}]})  # fmt: skip
    return project, exp["id"], [v["id"] for v in exp["variants"]]


def build(path: Path, records: int, subjects: int) -> tuple[str, str, float]:
    """The database at ``path``; returns the project, the experiment and the seconds taken."""
    started = time.perf_counter()
    conn = _db.connect(path)
    _db.create_schema(conn)
    with _db.transaction(conn):
        project, exp_id, variants = _experiment(conn)
    rng = np.random.default_rng(18)
    for first in range(0, records, CHUNK):
        n = min(CHUNK, records - first)
        users = rng.integers(0, subjects, n)
        # The variant follows the subject, as routing does; the treatment is ~5 % slower.
        arm = users % 2
        latency = rng.lognormal(np.log(400), 0.4, n) * (1 + 0.05 * arm)
        columns = zip(users.tolist(), arm.tolist(), latency.tolist(), strict=True)
        rows = (
            (project, f"r{first + i}", 1.7e9 + first + i, "bench", exp_id, variants[a], ms,
             f"user-{u}")
            for i, (u, a, ms) in enumerate(columns)
        )  # fmt: skip
        with _db.transaction(conn):
            conn.executemany(
                "INSERT INTO logs (project_id, id, ts, prompt_name, experiment_id,"
                " experiment_version_id, duration_ms, subject, record) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, x'')",
                rows,
            )
    conn.execute("ANALYZE")
    conn.close()
    return project, exp_id, time.perf_counter() - started


def _measure(path: str, project: str, exp_id: str, mode: str, out: Any) -> None:
    conn = _db.connect(path)
    started = time.perf_counter()
    found = _results.results(conn, project, exp_id, mode)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put({"mode": mode, "seconds": seconds, "peak_rss_mb": peak,
             "subjects": found["subjects"], "records": found["records"]})  # fmt: skip


def measure(path: Path, project: str, exp_id: str, mode: str) -> dict[str, Any]:
    """One results computation in a fresh process: its time and peak RSS."""
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    child = ctx.Process(target=_measure, args=(str(path), project, exp_id, mode, out))
    child.start()
    found: dict[str, Any] = out.get(timeout=600)
    child.join(timeout=60)
    return found


def main() -> None:
    """Build, measure, print and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", type=Path, help="build into this new file and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="banyan-results-") as tmp:
        path = args.db or Path(tmp) / "bench.db"
        project, exp_id, built = build(path, args.records, args.subjects)
        print(f"built {args.records:,} records of {args.subjects:,} subjects in {built:.1f} s")
        runs = []
        for mode in ("fixed-horizon", "sequential"):
            for _ in range(args.runs):
                runs.append(measure(path, project, exp_id, mode))
                print(json.dumps(runs[-1]))
    report = {
        "records": args.records, "subjects": args.subjects, "build_seconds": built,
        "machine": platform.platform(), "sqlite": sqlite3.sqlite_version, "runs": runs,
        "best_seconds": min(r["seconds"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "results_query.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"results in {report['best_seconds']:.2f} s (best), peak RSS {report['peak_rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
