"""``banyan demo``: the reference server, a 50/50 experiment, a multi-process load.

It starts ``banyan serve`` on a new SQLite database (or, with ``--db
postgresql://...``, on an empty PostgreSQL database), creates a prompt with
two versions and a running experiment, runs worker processes that each call
``get_prompt(..., sticky_context=...)`` and ``log_prompt(...)``, shows
progress, then checks at the server that every record is accounted for. The
data stays in a directory (the last demo's, unless ``--keep DIR`` or
``--no-keep``), so the results page's link it ends with opens once the
printed ``banyan serve`` command runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

from banyan._cli import positive
from banyan._localserver import start
from banyan._resultscli import srm_line

DEMO_KEY = "psk_demo_local_only_0000000000"
PROMPT = "support-reply"
MODELS = ("gpt-4o-mini", "claude-3-haiku", "llama-3-8b")


def add_parser(subparsers: Any) -> None:
    """Register ``banyan demo`` on the CLI."""
    parser = subparsers.add_parser("demo", help="run the end-to-end demo on a local server")
    parser.add_argument(
        "--workers", type=positive(int), default=4, help="worker processes (default 4)"
    )
    parser.add_argument(
        "--records", type=positive(int), default=20_000, help="records in all (default 20000)"
    )
    parser.add_argument(
        "--duration", type=positive(float), default=60.0, help="stop logging after S seconds"
    )
    parser.add_argument(
        "--users", type=positive(int), default=1_000, help="distinct sticky user ids"
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        help="run on this empty PostgreSQL database (postgresql://user@host:5432/db) "
        "instead of a temporary SQLite file",
    )
    keeping = parser.add_mutually_exclusive_group()
    keeping.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="keep the demo's data (the SQLite file, the pages' secret) in DIR, new or empty "
        "(default: the last demo's directory, replaced by each demo: $XDG_DATA_HOME/banyan/demo "
        "or ~/.local/share/banyan/demo)",
    )
    keeping.add_argument(
        "--no-keep",
        action="store_true",
        help="use a temporary directory, removed when the demo ends (no results page afterwards)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the outcome as one JSON object (story on stderr)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo; exit status 0 only when every record is accounted for."""
    with tempfile.TemporaryDirectory(prefix="banyan-demo-") as tmp:
        kept = None if args.no_keep else _kept_dir(args.keep)
        home = kept or Path(tmp)
        db = args.db or home / "demo.db"
        try:
            # The pages' signing secret: beside the SQLite file, or (PostgreSQL) in home.
            server = start(Path(tmp), db=db, api_key=DEMO_KEY,
                           env={"BANYAN_SECRET_DIR": str(home)})  # fmt: skip
        except RuntimeError as exc:
            raise SystemExit(f"banyan demo: {exc}") from None
        try:
            # Under --json the story goes to stderr and stdout holds one JSON object.
            with contextlib.redirect_stdout(sys.stderr if args.json else sys.stdout):
                outcome = _run(args, server.base_url, db)
        finally:
            server.stop()
    outcome["kept"] = None if kept is None else str(kept)
    outcome["link"] = _kept_link(outcome["link"]) if kept and outcome["link"] else None
    if args.json:
        print(json.dumps(outcome))
    else:
        _print_report(outcome)
    out = sys.stderr if args.json else sys.stdout
    if kept is not None or args.db:
        _explain(db, kept, out)
    _print_link(outcome, out)
    return 0 if outcome["ok"] else 1


#: What the demo writes in its directory: SQLite's files, the pages' secret (either engine).
DEMO_FILES = ("demo.db", "demo.db-wal", "demo.db-shm", "demo.db.secret", "banyan.secret")


def default_dir() -> Path:
    """Where the demo keeps its data unless told: one directory, the last demo's."""
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "banyan" / "demo"


def _kept_dir(keep: Path | None) -> Path:
    """The directory to keep the data in: ``keep`` (new or empty), or the default one."""
    if keep is None:
        keep = default_dir()
        for name in DEMO_FILES:  # the last demo's data, replaced
            (keep / name).unlink(missing_ok=True)
    for name in DEMO_FILES:
        if (keep / name).exists():
            raise SystemExit(f"banyan demo: {keep / name} exists;"
                             " give --keep a new or empty directory")  # fmt: skip
    keep.mkdir(parents=True, exist_ok=True)
    return keep


def _run(args: argparse.Namespace, base_url: str, db: Path | str) -> dict[str, Any]:
    print(f"reference server: {base_url} ({_where(db)})")
    with httpx.Client(base_url=base_url, headers={"X-API-Key": DEMO_KEY}) as api:
        try:
            experiment = _set_up(api)
        except httpx.HTTPStatusError as exc:
            raise SystemExit(f"banyan demo: the database is not empty ({exc.response.text}); "
                             "give the demo a new database") from None  # fmt: skip
        print(f'prompt "{PROMPT}": versions 1 and 2, 50/50 experiment {experiment}')
        account, elapsed = _drive(args, base_url, api)
        return _report(api, experiment, account, elapsed)


def _where(db: Path | str) -> str:
    """The database in words; a URL's password is never shown."""
    if isinstance(db, Path):
        return f"SQLite in {db}"
    from banyan.server.store import redact

    return f"PostgreSQL at {redact(db)}"


#: Where ``banyan serve`` listens by default: the kept database's server.
KEPT_URL = "http://127.0.0.1:8765"


def _explain(db: Path | str, kept: Path | None, out: TextIO) -> None:
    """How to look at the demo's data after it: serve it, then ask the CLI."""
    serve = f"banyan serve --db {shlex.quote(str(db))} --api-key {DEMO_KEY}"
    if not isinstance(db, Path):
        secret = "" if kept is None else f"BANYAN_SECRET_DIR={shlex.quote(str(kept))} "
        serve = f"{secret}banyan serve --api-key {DEMO_KEY}   # BANYAN_DATABASE_URL: your URL"
    print(
        f"""
the demo's data is kept ({_where(db)}); to explore it:
  {serve}
  export BANYAN_BASE_URL={KEPT_URL} BANYAN_API_KEY={DEMO_KEY}   # in another terminal
  banyan experiments list --prompt {PROMPT}
  banyan logs list --prompt {PROMPT}
  banyan logs export -o demo.jsonl""",
        file=out,
    )


def _kept_link(link: str) -> str:
    """The demo server's page link, on the kept server (same secret, so it still verifies)."""
    return KEPT_URL + link[link.index("/ui/") :]


def _print_link(outcome: dict[str, Any], out: TextIO) -> None:
    """The results page's link on the server the lines above start, or why there is none."""
    if outcome["link"]:
        print(f"\nresults page (valid 15 minutes, once the server above runs):"
              f"\n  {outcome['link']}"
              f"\n  a new link: banyan experiments open {outcome['experiment']}",
              file=out)  # fmt: skip
    elif outcome["kept"] is None:
        print("\nresults page: none, the data went with the demo (--no-keep)", file=out)


def _set_up(api: httpx.Client) -> str:
    control = "You are a friendly support agent. Answer briefly: {question}"
    candidate = "You are a precise support agent. Cite the docs, then answer: {question}"
    api.post("/api/v2/prompts", json={"name": PROMPT, "content": control}).raise_for_status()
    api.post(f"/api/v2/prompts/{PROMPT}/versions", json={"content": candidate}).raise_for_status()
    body = {
        "prompt": PROMPT,
        "name": "precise-vs-friendly",
        "sticky_key": "user_id",
        "variants": [{"version": "1", "percentage": 50}, {"version": "2", "percentage": 50}],
    }
    response = api.post("/api/v2/experiments", json=body)
    response.raise_for_status()
    return str(response.json()["id"])


def _drive(
    args: argparse.Namespace, base_url: str, api: httpx.Client
) -> tuple[dict[str, int], float]:
    ctx = multiprocessing.get_context("spawn")
    results: Any = ctx.Queue()
    per_worker = max(1, args.records // args.workers)
    # The spawned workers configure from these; a BANYAN_PROJECT_ID of the caller's
    # would name a project this demo server does not have.
    os.environ.update({"BANYAN_API_KEY": DEMO_KEY, "BANYAN_BASE_URL": base_url})
    os.environ.pop("BANYAN_PROJECT_ID", None)
    workers = [
        ctx.Process(target=_worker, args=(i, per_worker, args.duration, args.users, results))
        for i in range(args.workers)
    ]
    print(f"{args.workers} worker processes x {per_worker:,} records")
    started = time.monotonic()
    for worker in workers:
        worker.start()
    reports = _watch(api, workers, results, per_worker * len(workers), started)
    elapsed = time.monotonic() - started
    account = {key: sum(r[key] for r in reports) for key in ("calls", "dropped", "spooled")}
    # A worker that died (or never reported) has records no one can account for.
    account["failed"] = len(workers) - len(reports) + sum(w.exitcode != 0 for w in workers)
    return account, elapsed


def _worker(index: int, count: int, duration: float, users: int, results: Any) -> None:
    import banyan

    logger = banyan.configure()
    rng = random.Random(index)
    deadline = time.monotonic() + duration
    calls = 0
    for n in range(count):
        if time.monotonic() > deadline:
            break
        user = f"user-{rng.randrange(users)}"
        prompt = banyan.get_prompt(PROMPT, sticky_context={"user_id": user})
        question = f"question {n} from worker {index}: how do I rotate my API key?"
        model = MODELS[n % len(MODELS)]
        banyan.log_prompt(
            input=question,
            output=f"[{model}] {prompt.content if prompt else ''} -> answer {n}",
            prompt_data=prompt,
            model=model,
            metadata={"worker": index, "user": user},
            duration_ms=rng.gauss(420 if prompt and prompt.version == "2" else 380, 60),
        )
        calls += 1
    logger.shutdown(timeout=30)
    stats = logger.get_stats()  # the logger's own: the module's default is gone after shutdown
    results.put({"calls": calls, "dropped": stats["logs_dropped"], "spooled": stats["spooled"]})


def _watch(
    api: httpx.Client, workers: list[Any], results: Any, total: int, started: float
) -> list[dict[str, Any]]:
    reports: list[dict[str, Any]] = []
    terminal = sys.stdout.isatty()
    while len(reports) < len(workers):
        while not results.empty():
            reports.append(results.get())
        if all(not w.is_alive() for w in workers) and results.empty():
            break
        if terminal:
            _progress(_summary(api)["stored"], total, started)
        time.sleep(0.25)
    for worker in workers:
        worker.join(timeout=30)
    if terminal:  # the last frame at the final count, however early the workers ended
        _progress(_summary(api)["stored"], total, started)
        print()
    return reports


def _progress(stored: int, total: int, started: float) -> None:
    """One progress frame, drawn over the last (a terminal only: \\r in a file is noise)."""
    rate = stored / max(time.monotonic() - started, 1e-9)
    bar = "#" * int(30 * stored / max(total, 1))
    print(f"\r  [{bar:<30}] {stored:>8,} / {total:,} stored  {rate:>9,.0f} rec/s", end="",
          flush=True)  # fmt: skip


def _summary(api: httpx.Client) -> dict[str, int]:
    response = api.get("/api/v2/logs/summary")
    response.raise_for_status()
    return dict(response.json())


def _report(
    api: httpx.Client, experiment: str, account: dict[str, int], elapsed: float
) -> dict[str, Any]:
    """The outcome: the workers' account, the server's counts, the experiment's results."""
    summary = _summary(api)
    response = api.get(f"/api/v2/experiments/{experiment}/results")
    # 501: this server's engine does not compute results yet; the accounting stands alone.
    results = {} if response.status_code == 501 else response.raise_for_status().json()
    link = api.post(f"/api/v2/experiments/{experiment}/link").json().get("url") if results else None
    stored, duplicated = summary["stored"], summary["duplicates"]
    sent, dropped, spooled = account["calls"], account["dropped"], account["spooled"]
    accounted = stored + dropped + spooled == sent and duplicated == 0 and sent > 0
    return {"sent": sent, "stored": stored, "duplicated": duplicated, "dropped": dropped,
            "spooled": spooled, "seconds": round(elapsed, 3), "failed_workers": account["failed"],
            "ok": accounted and not account["failed"],
            "variants": results.get("variants", []), "srm": results.get("srm"),
            "experiment": experiment, "link": link}  # fmt: skip


def _print_report(outcome: dict[str, Any]) -> None:
    print("\ndelivered")
    for name in ("sent", "stored", "duplicated", "dropped", "spooled"):
        print(f"  {name:<12}{outcome[name]:>10,}")
    rate = outcome["stored"] / max(outcome["seconds"], 1e-9)
    print(f"  {'records/s':<12}{rate:>10,.0f}   ({outcome['seconds']:.1f} s end to end)")
    if outcome.get("srm"):
        print(f"\n{srm_line(outcome['srm'])}")
    _print_results(outcome["variants"])
    if outcome["failed_workers"]:
        print(f"\nFAILED: {outcome['failed_workers']} worker(s) crashed; see their output above")
        return
    verdict = "every record accounted for" if outcome["ok"] else "MISMATCH: records unaccounted for"
    print(f"\n{verdict}: {outcome['sent']:,} sent = {outcome['stored']:,} stored"
          f" + {outcome['dropped']:,} dropped + {outcome['spooled']:,} spooled")  # fmt: skip


def _print_results(variants: list[dict[str, Any]]) -> None:
    print("\nexperiment results (per variant)")
    print(
        f"  {'variant':<12}{'version':>8}{'users':>7}{'logs':>9}{'mean ms':>10}{'p50':>8}{'p95':>8}"
    )
    for row in variants:
        latency = row.get("latency") or {}
        mean = row.get("metrics", {}).get("latency_ms", {}).get("value")
        print(
            f"  {row.get('name') or row.get('id', ''):<12}{row.get('version', ''):>8}"
            f"{row.get('subjects', 0):>7,}{row.get('records', 0):>9,}{_ms(mean):>10}"
            f"{_ms(latency.get('p50_ms')):>8}{_ms(latency.get('p95_ms')):>8}"
        )


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.0f}"
