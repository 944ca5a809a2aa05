"""``banyan spool status|replay|purge``: look at, send or delete the disk spool.

A spool directory holds one server's and project's records
(:meth:`banyan._config.Config.spool_directory`) and names them in its
``server.json`` (base URL and project id; never the key). ``--dir`` picks a
directory; so do ``--base-url``, ``--api-key`` and ``--project-id`` given on
the command line (the directory a client with those settings uses). With
neither, ``status`` and ``replay`` take every directory under the spool
root; ``purge`` needs one named. ``replay`` sends each directory to the
server and project of its ``server.json`` (a ``--base-url`` or
``--project-id`` flag overrides it, the ``BANYAN_*`` variables do not)
through a temporary client in sync mode: the same delivery and replay code
as a running process, on this thread. Only the key comes from
``--api-key`` or ``BANYAN_API_KEY``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from banyan import _fork
from banyan import _spooldir as sd
from banyan._cli import positive
from banyan._config import Config, build
from banyan._exceptions import ConfigurationError

Subparsers = Any  # argparse._SubParsersAction is private


def add_parser(sub: Subparsers) -> None:
    """Add ``banyan spool`` and its three commands to ``sub``."""
    spool = sub.add_parser("spool", help="the disk spool of logs not yet delivered")
    commands = spool.add_subparsers(dest="spool_command", required=True)
    p = commands.add_parser("status", help="each spool directory: its server, records, bytes")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_status)
    p = commands.add_parser("replay", help="send the spooled records where they were meant to go")
    p.add_argument("--timeout", type=positive(float), default=300.0, help="give up after S seconds")
    p.set_defaults(func=_replay)
    p = commands.add_parser("purge", help="delete the segments no running process holds")
    p.set_defaults(func=_purge)
    for parser in commands.choices.values():
        parser.add_argument("--dir", type=Path, help="the spool directory")
        parser.add_argument("--base-url", help="the server (default: the directory's own)")
        parser.add_argument("--api-key", help="the key to send with (default: $BANYAN_API_KEY)")
        parser.add_argument("--project-id", help="the project (default: the directory's own)")


def _named(args: argparse.Namespace) -> bool:
    return bool(args.base_url or args.api_key or args.project_id)


def _directories(args: argparse.Namespace) -> list[Path]:
    """The directories the command is about; raises ConfigurationError."""
    if args.dir is not None:
        return [args.dir]
    if _named(args):
        found = build(args.api_key, args.base_url, args.project_id).spool_directory()
        return [found] if found is not None else []
    probe = build("-", None, None).spool_directory()
    root = probe.parent if probe is not None else None
    if root is None or not root.is_dir():
        return []
    return sorted(path for path in root.iterdir() if path.is_dir())


def _target(args: argparse.Namespace, directory: Path) -> Config:
    """The client that sends ``directory``: flags, else its server.json, else BANYAN_*."""
    kept = sd.read_server(directory) or {}
    project = args.project_id or kept.get("project_id")
    config = build(args.api_key, args.base_url or kept.get("base_url"), project,
                   spool_dir=str(directory))  # fmt: skip
    if kept and project is None and config.project_id is not None:
        # The directory is for no project id: BANYAN_PROJECT_ID must not add one.
        config = dataclasses.replace(config, project_id=None)
    return config


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


def _where(server: dict[str, Any] | None) -> str:
    if server is None:
        return "unknown (no server.json)"
    project = server.get("project_id")
    return f"{server.get('base_url')}" + (f" (project {project})" if project else "")


def _print_status(status: dict[str, Any]) -> None:
    owners = ", ".join(
        f"{pid} ({'running' if _fork.alive(pid) else 'gone'})" for pid in status["owners"]
    )
    age = status["oldest_age_s"]
    print(f"directory  {status['directory']}")
    print(f"server     {_where(status['server'])}")
    print(f"segments   {status['segments']}")
    print(f"records    {status['records']}")
    print(f"bytes      {status['bytes_used']:,} used of {status['bytes']:,} allocated")
    print(f"owners     {owners or '-'}")
    print(f"oldest     {'-' if age is None else f'{age:.1f} s'}")


def _replay(args: argparse.Namespace) -> int:
    try:
        directories = _directories(args)
    except ConfigurationError as exc:
        return _fail(exc)
    if not directories:
        print("no spool directory")
    deadline = time.monotonic() + args.timeout
    failed = [_replay_one(args, directory, deadline) for directory in directories]
    return max(failed, default=0)


def _replay_one(args: argparse.Namespace, directory: Path, deadline: float) -> int:
    """Replay one directory to its server by ``deadline``; the exit status."""
    from banyan._client import PromptStackLogger

    try:
        config = _target(args, directory)
        logger = PromptStackLogger(config.api_key, config.base_url, config.project_id,
                                   background_thread=False, spool_dir=config.spool_dir)  # fmt: skip
    except ConfigurationError as exc:
        return _fail(f"{directory}: {exc}")
    spooling = logger._spooling
    assert spooling is not None
    replayer, spool = spooling.replayer, spooling.spool
    start = time.monotonic()
    while time.monotonic() < deadline and replayer.step():
        pass
    stats = logger.get_stats()
    logger.shutdown(timeout=0)
    left = spool.status()
    seconds = time.monotonic() - start
    where = _where({"base_url": config.base_url, "project_id": config.project_id})
    print(f"replayed {stats['replayed']} record(s) from {directory} to {where} in "
          f"{seconds:.1f} s ({stats['duplicates']} already stored, {stats['logs_dropped']} "
          f"dropped); {left['segments']} segment(s) left")  # fmt: skip
    if left["segments"] and stats["last_error"]:
        print(f"banyan spool replay: {directory}: stopped: {stats['last_error']}", file=sys.stderr)
        return 1
    return 0


def _purge(args: argparse.Namespace) -> int:
    from banyan._spool import Spool

    try:
        directories = _directories(args) if args.dir is not None or _named(args) else []
    except ConfigurationError as exc:
        return _fail(exc)
    if not directories:
        return _fail("say which spool: --dir, or --api-key (and --base-url)")
    for directory in directories:
        spool = Spool(directory)
        deleted = spool.purge()
        spool.close()
        left = spool.status()
        held = f"; {left['records']} record(s) in {left['segments']} segment(s) held by running "
        print(f"purged {deleted} record(s) from {directory}"
              f"{held + 'processes were left' if left['segments'] else ''}")  # fmt: skip
    return 0


def _fail(error: object) -> int:
    print(f"banyan spool: {error}", file=sys.stderr)
    return 2
