"""Run every bounded stress scenario: ``python -m stress.run [--quick] [NAME ...]``.

Each scenario is its own script against its own ``banyan serve`` on
127.0.0.1 and ends with one ``RESULT {json}`` line (``stress/_result.py``).
This runner starts each in a fresh interpreter and its own session, with
``BANYAN_SPOOL_DIR`` and ``BANYAN_CACHE_DIR`` in a temporary directory,
echoes its output, and past ``LIMIT_S`` (or when this runner gets SIGTERM)
has it print every thread's stack, then kills its whole process group. It
then prints one Markdown table: sent / stored / duplicated / dropped by
reason / spooled / result / seconds. It exits 1 when any scenario failed,
left a record unaccounted (sent - stored - dropped != 0), stored one twice,
or printed no RESULT line. ``--quick`` runs smaller sizes (about 80 s on
2 cores; tests/process/test_stress_suite.py runs it in ``make test``); the
default sizes take about 4 minutes; ``multi_instance`` (PostgreSQL) runs only
there. ``--json FILE`` also writes the rows;
``--list`` prints the scenario names.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from stress._result import PREFIX

#: name -> (default arguments, --quick arguments or None: not in --quick), in the order they run.
SCENARIOS: dict[str, tuple[list[str], list[str] | None]] = {
    "fork_storm": ([], ["--children", "80"]),
    # Issue 6's literal 30 s outage, at half the default load.
    "outage": ([], ["--seconds", "6", "--outage", "30", "--threads", "2"]),
    "storms": ([], ["--rounds", "5", "--records", "600"]),
    "stalls": ([], ["--rounds", "3", "--records", "500", "--blackout", "2"]),
    "kill9": ([], ["--rounds", "2", "--workers", "3"]),
    "gunicorn": ([], ["--requests", "200"]),
    "celery": ([], ["--tasks", "20"]),
    "corruption": ([], ["--records", "5000"]),
    "disklimit": ([], ["--records", "8000"]),
    # Issue 14: purge and replay from the CLI beside live processes under outages.
    "purge_replay": ([], ["--workers", "3", "--seconds", "6"]),
    # Issue 17: tests/server/store/test_postgres_instances.py runs the same scenario
    # (pgfleet.spread_load) in `make test`; the quick run leaves it out.
    "multi_instance": ([], None),
}
#: No scenario may run longer than this (each bounds itself well below it).
LIMIT_S = 300


def echo(stream: Any, lines: list[str]) -> None:
    """Copy a child's output to ours, indented, keeping every line."""
    for line in stream:
        lines.append(line.rstrip("\n"))
        print(f"  {line}", end="", flush=True)


def run(name: str, args: list[str], tmp: Path) -> dict[str, Any]:
    """Run one scenario; its RESULT row, with ``seconds`` and ``exit`` added."""
    env = dict(os.environ, BANYAN_SPOOL_DIR=str(tmp / "spool"), BANYAN_CACHE_DIR=str(tmp / "cache"))
    started, lines = time.monotonic(), []
    proc = subprocess.Popen(
        [sys.executable, "-m", f"stress.{name}", *args], stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    reader = threading.Thread(target=echo, args=(proc.stdout, lines), daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        code = 124
    finally:
        if proc.poll() is None:
            stop(proc)
        reader.join(10)
    rows = [json.loads(line[len(PREFIX) :]) for line in lines if line.startswith(PREFIX)]
    row = rows[-1] if rows else {"scenario": name, "ok": False}
    return {**row, "exit": code, "seconds": round(time.monotonic() - started, 1)}


def stop(proc: subprocess.Popen[str]) -> None:
    """Have a running scenario dump its threads' stacks, then kill its whole session."""
    # stress/_result.py registers SIGUSR1 with faulthandler in every scenario.
    proc.send_signal(signal.SIGUSR1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(2)
    # The scenario's own children (servers, gunicorn, celery, redis) share its session.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def verdict(row: dict[str, Any]) -> str:
    """The result column: ok, skip, or FAIL with the first reason found."""
    if row.get("skipped"):
        return "skip"
    if row["exit"] == 124:
        return f"FAIL (over {LIMIT_S} s)"
    if "sent" not in row:
        return f"FAIL (exit {row['exit']}, no RESULT)"
    if row.get("unaccounted"):
        return f"FAIL ({row['unaccounted']} unaccounted)"
    if row.get("duplicated"):
        return f"FAIL ({row['duplicated']} duplicated)"
    if not row["ok"] or row["exit"]:
        return f"FAIL (exit {row['exit']})"
    return "ok"


def table(rows: list[dict[str, Any]]) -> str:
    """One Markdown table of the rows."""
    head = ("scenario", "sent", "stored", "duplicated", "dropped (by reason)", "spooled",
            "result", "seconds")  # fmt: skip
    out = ["| " + " | ".join(head) + " |", "| --- | ---: | ---: | ---: | --- | ---: | --- | ---: |"]
    for row in rows:
        dropped = ", ".join(f"{k} {v:,}" for k, v in row.get("dropped", {}).items()) or "0"
        cells = [row["scenario"], *(f"{row[k]:,}" if k in row else "-" for k in
                 ("sent", "stored", "duplicated")), dropped if "sent" in row else "-",
                 f"{row.get('spooled', 0):,}", verdict(row), f"{row['seconds']:.0f}"]  # fmt: skip
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def chosen(names: list[str], quick: bool) -> list[str]:
    """The scenarios to run: those named, else all (under ``--quick``, those with quick sizes)."""
    return names or [name for name, sizes in SCENARIOS.items() if not quick or sizes[1] is not None]


def main(argv: list[str]) -> int:
    """Run the named scenarios (all by default), print the table; 1 on any failure."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=", ".join(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="smaller sizes (~80 s)")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--list", action="store_true", help="print the scenario names and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(chosen([], args.quick)))
        return 0
    unknown = sorted(set(args.names) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    # A SIGTERM (a test's timeout) unwinds through run(), which stops the running scenario.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started, rows = time.monotonic(), []
    for name in chosen(args.names, args.quick):
        print(f"== {name}", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"stress-{name}-") as tmp:
            rows.append(run(name, SCENARIOS[name][args.quick] or [], Path(tmp)))
    print(f"\n{table(rows)}\n\ntotal {time.monotonic() - started:.0f} s"
          f"{' (--quick)' if args.quick else ''}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(verdict(row) in ("ok", "skip") for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
