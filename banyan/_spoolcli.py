"""``banyan spool status|replay|purge``: look at, send or delete the disk spool.

A spool directory holds one server's and project's records
(:meth:`banyan._config.Config.spool_directory`). ``--dir`` names it; without
it, ``--base-url``, ``--api-key`` and ``--project-id`` (or their
``BANYAN_*`` variables) give the directory a client with those settings
uses, and ``status`` with no key at all lists every directory under the
spool root. ``replay`` sends through a temporary client in sync mode: the
same delivery and replay code as a running process, on this thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from banyan import _fork
from banyan._cli import positive
from banyan._config import Config, build
from banyan._exceptions import ConfigurationError

Subparsers = Any  # argparse._SubParsersAction is private


def add_parser(sub: Subparsers) -> None:
    """Add ``banyan spool`` and its three commands to ``sub``."""
    spool = sub.add_parser("spool", help="the disk spool of logs not yet delivered")
    commands = spool.add_subparsers(dest="spool_command", required=True)
    p = commands.add_parser("status", help="segments, records, bytes, owners and oldest age")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_status)
    p = commands.add_parser("replay", help="send the spooled records, then delete them")
    p.add_argument("--timeout", type=positive(float), default=300.0, help="give up after S seconds")
    p.set_defaults(func=_replay)
    p = commands.add_parser("purge", help="delete every segment no live process holds")
    p.set_defaults(func=_purge)
    for parser in commands.choices.values():
        parser.add_argument("--dir", type=Path, help="the spool directory")
        parser.add_argument("--base-url", default=os.environ.get("BANYAN_BASE_URL"))
        parser.add_argument("--api-key", default=os.environ.get("BANYAN_API_KEY"))
        parser.add_argument("--project-id", default=os.environ.get("BANYAN_PROJECT_ID"))


def _config(args: argparse.Namespace) -> Config:
    """The client settings the command stands for; raises ConfigurationError."""
    spool_dir = str(args.dir) if args.dir is not None else None
    return build(args.api_key, args.base_url, args.project_id, spool_dir=spool_dir)


def _directories(args: argparse.Namespace) -> list[Path]:
    if args.dir is not None:
        return [args.dir]
    if args.api_key:
        found = _config(args).spool_directory()
        return [found] if found is not None else []
    probe = build("-", None, None).spool_directory()
    root = probe.parent if probe is not None else None
    if root is None or not root.is_dir():
        return []
    return sorted(path for path in root.iterdir() if path.is_dir())


def _status(args: argparse.Namespace) -> int:
    from banyan._spool import Spool

    try:
        directories = _directories(args)
    except ConfigurationError as exc:
        return _fail(exc)
    found = [Spool(directory).status() for directory in directories]
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print("no spool directory")
    for status in found:
        _print_status(status)
    return 0


def _print_status(status: dict[str, Any]) -> None:
    owners = ", ".join(
        f"{pid} ({'running' if _fork.alive(pid) else 'gone'})" for pid in status["owners"]
    )
    age = status["oldest_age_s"]
    print(f"directory  {status['directory']}")
    print(f"segments   {status['segments']}")
    print(f"records    {status['records']}")
    print(f"bytes      {status['bytes']}")
    print(f"owners     {owners or '-'}")
    print(f"oldest     {'-' if age is None else f'{age:.1f} s'}")


def _replay(args: argparse.Namespace) -> int:
    from banyan._client import PromptStackLogger

    if not args.api_key:
        return _fail("--api-key (or BANYAN_API_KEY) is needed to replay")
    try:
        config = _config(args)
        logger = PromptStackLogger(config.api_key, config.base_url, config.project_id,
                                   background_thread=False, spool_dir=config.spool_dir)  # fmt: skip
    except ConfigurationError as exc:
        return _fail(exc)
    spooling = logger._spooling
    assert spooling is not None
    replayer, spool = spooling.replayer, spooling.spool
    deadline = time.monotonic() + args.timeout
    start = time.monotonic()
    while time.monotonic() < deadline and replayer.step():
        pass
    stats = logger.get_stats()
    logger.shutdown(timeout=0)
    left = spool.status()
    seconds = time.monotonic() - start
    print(f"replayed {stats['replayed']} record(s) from {spool.directory} in {seconds:.1f} s "
          f"({stats['duplicates']} already stored, {stats['logs_dropped']} dropped); "
          f"{left['segments']} segment(s) left")  # fmt: skip
    if left["segments"] and stats["last_error"]:
        print(f"banyan spool replay: stopped: {stats['last_error']}", file=sys.stderr)
        return 1
    return 0


def _purge(args: argparse.Namespace) -> int:
    from banyan._spool import Spool

    try:
        directories = _directories(args) if args.dir is not None or args.api_key else []
    except ConfigurationError as exc:
        return _fail(exc)
    if not directories:
        return _fail("say which spool: --dir, or --api-key (and --base-url)")
    for directory in directories:
        spool = Spool(directory)
        deleted = spool.purge()
        spool.close()
        print(f"purged {deleted} record(s) from {directory}")
    return 0


def _fail(error: object) -> int:
    print(f"banyan spool: {error}", file=sys.stderr)
    return 2
