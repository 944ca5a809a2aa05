"""``banyan logs list|export|prune``: read stored records back, or drop old ones.

``list`` and ``export`` page through ``GET /api/v2/logs`` with its cursor;
``export`` writes each page as it arrives, so a million records never sit in
memory at once. ``prune`` works on the database itself, like a migration tool.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from banyan._apicli import Api, command, table
from banyan._cli import Subparsers, add_connection, finite, group, positive

#: Records per request of ``export`` (the server's limit is 10,000).
PAGE_SIZE = 1000


def when(text: str) -> float:
    """A time as seconds since the epoch: a number, or ISO 8601 (UTC unless it says)."""
    try:
        return finite(text)
    except argparse.ArgumentTypeError:
        pass
    try:
        # Python 3.10's fromisoformat does not read the "Z" suffix.
        moment = datetime.datetime.fromisoformat(text.removesuffix("Z") + "+00:00"
                                                 if text.endswith("Z") else text)  # fmt: skip
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither seconds since the epoch nor an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return moment.timestamp()


def add_parser(sub: Subparsers) -> None:
    """Add ``banyan logs`` and its two commands to ``sub``."""
    logs = group(sub, "logs", "read stored logs back")
    p = logs.add_parser("list", help="the newest records as a table (JSON Lines with --json)")
    p.add_argument("--limit", type=positive(int), default=20, help="records to show")
    p.set_defaults(func=command(list_logs))
    p = logs.add_parser("export", help="every matching record as JSON Lines, oldest first")
    p.add_argument("--output", "-o", type=Path, help="file to write (default: stdout)")
    p.add_argument("--page-size", type=positive(int), default=PAGE_SIZE, help="records per request")
    p.set_defaults(func=command(export_logs))
    for parser in logs.choices.values():
        parser.add_argument("--prompt", help="only records of this prompt name")
        parser.add_argument("--experiment", help="only records of this experiment id")
        parser.add_argument("--variant", help="only records of this variant id (var_...)")
        parser.add_argument(
            "--since",
            type=when,
            metavar="TIME",
            help="only records at or after TIME (epoch seconds or ISO 8601)",
        )
        parser.add_argument(
            "--until",
            type=when,
            metavar="TIME",
            help="only records before TIME (epoch seconds or ISO 8601)",
        )
        add_connection(parser)
    _add_prune(logs)


def _add_prune(logs: Subparsers) -> None:
    p = logs.add_parser("prune", help="drop logs and scores older than a date, in the database")
    cut = p.add_mutually_exclusive_group(required=True)
    cut.add_argument(
        "--before", type=when, metavar="DATE", help="drop what is older than DATE (ISO 8601, UTC)"
    )
    cut.add_argument(
        "--older-than-days", type=positive(float), metavar="N", help="drop what is over N days old"
    )
    p.add_argument(
        "--db",
        metavar="PATH|URL",
        help="the server's database; default: $BANYAN_DATABASE_URL, else banyan.db",
    )
    p.add_argument("--json", action="store_true", help="print what was removed as JSON")
    p.set_defaults(func=prune_logs)


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    names = ("prompt", "experiment", "variant", "since", "until")
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def pages(api: Api, params: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
    """Each page of ``GET /api/v2/logs`` for ``params``, fetched only when wanted."""
    cursor = None
    while True:
        query = params if cursor is None else {**params, "cursor": cursor}
        data = api.call("GET", "/api/v2/logs", params=query)
        yield data["logs"]
        cursor = data["next"]
        if cursor is None:
            return


def write_lines(records: list[dict[str, Any]], out: IO[bytes]) -> None:
    """Write records as JSON Lines."""
    for record in records:
        out.write(orjson.dumps(record, option=orjson.OPT_NON_STR_KEYS, default=str) + b"\n")


def export_logs(api: Api, args: argparse.Namespace) -> int:
    """``banyan logs export``: every matching record, oldest first, page by page."""
    params = {**_filters(args), "limit": args.page_size}
    with _open(args.output) as out:
        for page in pages(api, params):
            write_lines(page, out)
        out.flush()
    return 0


def _open(path: Path | None) -> contextlib.AbstractContextManager[IO[bytes]]:
    if path is None:
        sys.stdout.flush()
        return contextlib.nullcontext(sys.stdout.buffer)
    return path.open("wb")


def list_logs(api: Api, args: argparse.Namespace) -> int:
    """``banyan logs list``: the newest ``--limit`` records."""
    params = {**_filters(args), "limit": args.limit, "order": "desc"}
    records = next(pages(api, params))
    if args.json:
        with _open(None) as out:
            write_lines(records, out)
            out.flush()
        return 0
    print(table(("ID", "TIME (UTC)", "PROMPT", "VERSION", "MODEL", "MS", "EXPERIMENT", "VARIANT"),
                [_row(r) for r in records]))  # fmt: skip
    return 0


def _row(record: dict[str, Any]) -> tuple[Any, ...]:
    ts = datetime.datetime.fromtimestamp(record["ts"], datetime.timezone.utc)
    return (record["id"], ts.strftime("%Y-%m-%d %H:%M:%S"), record.get("prompt_name"),
            record.get("version"), record.get("model"), record.get("duration_ms"),
            record.get("experiment_id"), record.get("experiment_version_id"))  # fmt: skip


def prune_logs(args: argparse.Namespace) -> int:
    """``banyan logs prune``: drop old logs and scores of a database; print what went."""
    import asyncio
    import sqlite3

    from banyan.server._retention import DAY, prune
    from banyan.server._run import database_target
    from banyan.server.store import StoreError, redact

    now = time.time()
    before = args.before if args.older_than_days is None else now - args.older_than_days * DAY
    if before > now:
        print(f"banyan logs prune: {_utc(before)} is in the future", file=sys.stderr)
        return 2
    target = database_target(args.db)
    if "://" not in target and not Path(target).is_file():
        print(f"banyan logs prune: no database at {target}", file=sys.stderr)
        return 2
    try:
        removed = asyncio.run(prune(target, before))
    except (StoreError, OSError, sqlite3.Error, ValueError, ImportError) as exc:
        print(f"banyan logs prune: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"database": redact(target), "before": _utc(before), "removed": removed}))
        return 0
    logs, scores = removed["logs"], removed["scores"]
    print(f"banyan: removed {logs} log{'s' * (logs != 1)} and {scores} score{'s' * (scores != 1)}"
          f" older than {_utc(before)} from {redact(target)}")  # fmt: skip
    return 0


def _utc(ts: float) -> str:
    moment = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")
