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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from banyan import __version__
from banyan._config import DEFAULT_BASE_URL

Subparsers = Any  # argparse._SubParsersAction is private
Registrar = Callable[[Subparsers], None]

REGISTRY: list[Registrar] = []

DESCRIPTION = (
    "Banyan's command line: run the reference server or its demo, manage prompts and"
    " experiments, read logs back, and look after the disk spool."
)


def register(registrar: Registrar) -> Registrar:
    """Add a command group to ``banyan`` (usable as a decorator)."""
    REGISTRY.append(registrar)
    return registrar


class _Formatter(argparse.HelpFormatter):
    """Shows an option's default after its help unless it has none or names it already.

    An API key's default is never shown: it may come from BANYAN_API_KEY.
    """

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            action.option_strings
            and action.default not in (None, False, argparse.SUPPRESS)
            and "default" not in text
            and action.dest != "api_key"
        ):
            text += " (default: %(default)s)"
        return text


def _serve(args: argparse.Namespace) -> int:
    from banyan.server import serve

    if bool(args.tls_cert) != bool(args.tls_key):
        print("banyan serve: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    from banyan.server._db import SchemaError
    from banyan.server._limits import Limits
    from banyan.server._run import read_api_key
    from banyan.server.store import StoreError

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
              limits=limits, retention_days=args.retention_days,
              db_pool_size=args.db_pool_size)  # fmt: skip
    except (SchemaError, StoreError, OSError, sqlite3.Error, ValueError, ImportError) as exc:
        # A database that cannot be opened, a certificate file, an address or a busy port;
        # store errors carry the URL without its password.
        print(f"banyan serve: {exc}", file=sys.stderr)
        return 2
    return 0


@register
def add_serve(sub: Subparsers) -> None:
    """``banyan serve``: run the reference server."""
    p = sub.add_parser("serve", help="run the reference server (HTTP/1.1 and HTTP/2)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=_port, default=8765, help="TCP port to listen on")
    p.add_argument(
        "--db",
        metavar="PATH|URL",
        help="a SQLite file, or postgresql://user@host:5432/banyan (pip install "
        "'banyan-sdk[postgres]'); default: $BANYAN_DATABASE_URL, else banyan.db",
    )
    p.add_argument(
        "--db-pool-size",
        type=positive(int),
        metavar="N",
        help="PostgreSQL connections of each worker at most (default: 8, or $BANYAN_DB_POOL_SIZE)",
    )
    p.add_argument(
        "--api-key",
        help="bootstrap key (psk_...), created if new; visible in ps (prefer --api-key-file); "
        "without a key, a new one is printed",
    )
    p.add_argument("--api-key-file", type=Path, metavar="FILE",
                   help="the bootstrap key from FILE (else $BANYAN_SERVE_API_KEY)")  # fmt: skip
    p.add_argument(
        "--body-timeout",
        type=positive(float),
        metavar="S",
        help="408 for a request body that stalls S seconds "
        "(default: 10, or $BANYAN_SERVER_BODY_TIMEOUT)",
    )
    p.add_argument(
        "--max-inflight",
        type=positive(int),
        metavar="N",
        help="ingest requests a worker takes at once, then 503 "
        "(default: 8, or $BANYAN_SERVER_MAX_INFLIGHT)",
    )
    p.add_argument(
        "--max-inflight-per-project",
        type=positive(int),
        metavar="N",
        help="of those, what one project may hold, then 429 "
        "(default: 4, or $BANYAN_SERVER_MAX_INFLIGHT_PER_PROJECT)",
    )
    p.add_argument(
        "--retention-days",
        type=positive(int),
        metavar="N",
        help="drop logs and scores older than N days, at start and then hourly (default: keep all)",
    )
    p.add_argument("--tls-cert", type=Path, help="PEM certificate: serve HTTPS")
    p.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert")
    p.add_argument("--workers", type=positive(int), default=1, help="worker processes")
    p.add_argument(
        "--shutdown-timeout",
        type=positive(int),
        default=5,
        metavar="S",
        help="seconds open connections get after SIGTERM",
    )
    p.add_argument("--log-level", default="warning", help="server log level",
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


def percent(text: str) -> float:
    """A percentage from 0 to 100 (an argparse type)."""
    value = finite(text)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a percentage between 0 and 100")
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


def default_base_url() -> str:
    """The server a client talks to: BANYAN_BASE_URL, else the SDK's production URL."""
    return os.environ.get("BANYAN_BASE_URL") or DEFAULT_BASE_URL


def add_connection(parser: argparse.ArgumentParser) -> None:
    """The options every management command shares: server, key, TLS, output."""
    parser.add_argument(
        "--base-url",
        default=default_base_url(),
        help="server URL: BANYAN_BASE_URL, else the SDK's production URL",
    )
    parser.add_argument("--api-key", help="API key (default: BANYAN_API_KEY)")
    parser.add_argument("--insecure", action="store_true", help="skip TLS verification")
    parser.add_argument("--json", action="store_true", help="print the server's answer as JSON")


def group(sub: Subparsers, name: str, help_text: str) -> Subparsers:
    """A command group such as ``banyan prompts``, whose commands go on the result."""
    parser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(func=lambda _: parser.print_help() or 0)
    return parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")


@register
def add_management(sub: Subparsers) -> None:
    """``banyan projects|keys|prompts|experiments|logs ...``: talk to a server over HTTP."""
    from banyan import _experimentscli, _logscli, _promptscli

    for module in (_promptscli, _experimentscli, _logscli):
        module.add_parser(sub)


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


def _tree(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _tree(child)


def build_parser() -> argparse.ArgumentParser:
    """The ``banyan`` argument parser with every registered command group."""
    parser = argparse.ArgumentParser(prog="banyan", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"banyan {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for registrar in REGISTRY:
        registrar(sub)
    for each in _tree(parser):
        each.formatter_class = _Formatter
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``banyan`` command; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    result: int = args.func(args)
    return result
