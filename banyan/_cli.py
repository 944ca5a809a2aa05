"""The ``banyan`` command: ``serve`` and the management commands.

Each command group is added by a registration function taking the
subparsers object; :data:`REGISTRY` lists them, so another module can add a
group (``banyan demo``, ``banyan spool``) with :func:`register`. Command
bodies import the server package lazily: ``import banyan`` never loads it.
"""

from __future__ import annotations

import argparse
import math
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Subparsers = Any  # argparse._SubParsersAction is private
Registrar = Callable[[Subparsers], None]

REGISTRY: list[Registrar] = []


def register(registrar: Registrar) -> Registrar:
    """Add a command group to ``banyan`` (usable as a decorator)."""
    REGISTRY.append(registrar)
    return registrar


def _serve(args: argparse.Namespace) -> int:
    from banyan.server import serve

    if bool(args.tls_cert) != bool(args.tls_key):
        print("banyan serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    from banyan.server._db import SchemaError
    from banyan.server._limits import Limits
    from banyan.server._run import read_api_key

    try:
        api_key = read_api_key(args.api_key, args.api_key_file)
    except (OSError, ValueError) as exc:
        print(f"banyan serve: {exc}", file=sys.stderr)
        return 2
    limits = Limits.given(max_inflight=args.max_inflight, per_project=args.max_inflight_per_project,
                          body_timeout=args.body_timeout)  # fmt: skip
    try:
        serve(host=args.host, port=args.port, db=args.db, api_key=api_key,
              tls_cert=args.tls_cert, tls_key=args.tls_key, workers=args.workers,
              log_level=args.log_level, shutdown_timeout=args.shutdown_timeout,
              limits=limits)  # fmt: skip
    except (SchemaError, OSError, sqlite3.Error, ValueError) as exc:
        # A database that cannot be opened, a certificate file, an address or a busy port.
        print(f"banyan serve: {exc}", file=sys.stderr)
        return 2
    return 0


@register
def add_serve(sub: Subparsers) -> None:
    """``banyan serve``: run the reference server."""
    p = sub.add_parser("serve", help="run the reference server (HTTP/1.1 and HTTP/2)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=_port, default=8765)
    p.add_argument("--db", type=Path, default=Path("banyan.db"), help="SQLite file")
    p.add_argument("--api-key", help="bootstrap key (psk_...); created if new; visible in ps")
    p.add_argument("--api-key-file", type=Path, metavar="FILE",
                   help="the bootstrap key from FILE (else $BANYAN_SERVE_API_KEY)")  # fmt: skip
    p.add_argument("--body-timeout", type=positive(float), metavar="S",
                   help="408 for a request body that stalls S seconds (default 10)")  # fmt: skip
    p.add_argument("--max-inflight", type=positive(int), metavar="N",
                   help="ingest requests a worker takes at once, then 503 (default 8)")  # fmt: skip
    p.add_argument("--max-inflight-per-project", type=positive(int), metavar="N",
                   help="of those, what one project may hold, then 429 (default 4)")  # fmt: skip
    p.add_argument("--tls-cert", type=Path, help="PEM certificate: serve HTTPS")
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    p.add_argument("--workers", type=positive(int), default=1)
    p.add_argument("--shutdown-timeout", type=positive(int), default=5, metavar="S",
                   help="seconds open connections get after SIGTERM (default 5)")  # fmt: skip
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"])  # fmt: skip
    p.set_defaults(func=_serve)


def finite(text: str) -> float:
    """A finite number (an argparse type): NaN and infinities are not JSON."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    """An argparse type: a finite ``kind`` greater than 0."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number > 0")
        return value

    return parse


def _port(text: str) -> int:
    """A TCP port (an argparse type)."""
    port = positive(int)(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)")
    return int(port)


def _variant(text: str) -> dict[str, Any]:
    """VERSION:PERCENT (an argparse type)."""
    version, sep, percent = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not VERSION:PERCENT, for example 2:50")
    return {"version": version, "percentage": finite(percent)}


def _admin(name: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import banyan.server._admin as admin

        command: Callable[[argparse.Namespace], int] = getattr(admin, name)
        return admin.run(command, args)

    return run


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-url", default=os.environ.get("BANYAN_BASE_URL", "http://127.0.0.1:8765")
    )
    parser.add_argument("--api-key", default=os.environ.get("BANYAN_API_KEY"))
    parser.add_argument("--insecure", action="store_true", help="skip TLS verification")


def _group(sub: Subparsers, name: str, help_text: str) -> Subparsers:
    parser = sub.add_parser(name, help=help_text)
    return parser.add_subparsers(dest=f"{name}_command", required=True)


@register
def add_management(sub: Subparsers) -> None:
    """``banyan projects|keys|prompts|experiments ...``: talk to a server over HTTP."""
    projects = _group(sub, "projects", "manage projects (admin key)")
    p = projects.add_parser("create", help="create a project and print its first key")
    p.add_argument("name")
    p.set_defaults(func=_admin("create_project"))

    keys = _group(sub, "keys", "manage API keys")
    p = keys.add_parser("create", help="create a key for the current key's project")
    p.add_argument("--label", default="")
    p.set_defaults(func=_admin("create_key"))

    prompts = _group(sub, "prompts", "manage prompts")
    p = prompts.add_parser("push", help="push a file as a new version (creating the prompt)")
    p.add_argument("name")
    p.add_argument("--file", type=Path, required=True)
    p.add_argument("--branch", default="main")
    p.add_argument("--message", default="")
    p.set_defaults(func=_admin("push_prompt"))
    p = prompts.add_parser("list", help="list prompts and their branches")
    p.set_defaults(func=_admin("list_prompts"))

    experiments = _group(sub, "experiments", "manage experiments")
    p = experiments.add_parser("create", help="create and start an experiment")
    p.add_argument("prompt")
    p.add_argument("--variant", action="append", required=True, type=_variant,
                   metavar="VERSION:PERCENT")  # fmt: skip
    p.add_argument("--sticky-key", default="user_id")
    p.add_argument("--traffic", type=finite, default=100.0, help="percent of subjects enrolled")
    p.add_argument("--branch", default="main")
    p.add_argument("--name")
    p.set_defaults(func=_admin("create_experiment"))
    p = experiments.add_parser("results", help="per-variant counts and latency")
    p.add_argument("id")
    p.set_defaults(func=_admin("experiment_results"))
    for group in (projects, keys, prompts, experiments):
        for parser in group.choices.values():
            _connection(parser)


@register
def add_demo(sub: Subparsers) -> None:
    """``banyan demo``: the end-to-end demo on a temporary local server."""
    from banyan import _demo

    _demo.add_parser(sub)


@register
def add_spool(sub: Subparsers) -> None:
    """``banyan spool status|replay|purge``: the disk spool of logs not yet delivered."""
    from banyan import _spoolcli

    _spoolcli.add_parser(sub)


def build_parser() -> argparse.ArgumentParser:
    """The ``banyan`` argument parser with every registered command group."""
    parser = argparse.ArgumentParser(prog="banyan", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for registrar in REGISTRY:
        registrar(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``banyan`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
