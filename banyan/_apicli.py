"""The management commands' HTTP client: one connection, errors as exit statuses, text or JSON.

Each command is a function ``(api, args) -> exit status``; :func:`command`
turns it into an argparse ``func`` that opens the connection to
``--base-url`` with ``--api-key`` (or ``BANYAN_API_KEY``) and reports
failures as one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx

Command = Callable[["Api", argparse.Namespace], int]


class AdminError(Exception):
    """A management call the server refused, or a usage mistake."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class Api:
    """One keep-alive connection to the management API."""

    def __init__(self, args: argparse.Namespace, api_key: str) -> None:
        self.client = httpx.Client(base_url=args.base_url, headers={"X-API-Key": api_key},
                                   timeout=30, verify=not args.insecure)  # fmt: skip

    def call(self, method: str, path: str, body: Any = None, params: Any = None) -> Any:
        """The JSON answer of one request; AdminError with the server's reason for a 4xx/5xx."""
        response = self.client.request(method, path, json=body, params=params)
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text[:200]}
        if response.status_code >= 400:
            message = data.get("error") if isinstance(data, dict) else None
            reason = message or response.reason_phrase
            raise AdminError(f"HTTP {response.status_code}: {reason}", response.status_code)
        return data


def command(body: Command) -> Callable[[argparse.Namespace], int]:
    """An argparse ``func`` that runs ``body`` and turns failures into a message and status."""

    def run(args: argparse.Namespace) -> int:
        api_key = args.api_key or os.environ.get("BANYAN_API_KEY")
        if not api_key:
            print("banyan: give --api-key or set BANYAN_API_KEY", file=sys.stderr)
            return 2
        try:
            api = Api(args, api_key)
            with api.client:
                return body(api, args)
        except AdminError as exc:
            print(f"banyan: {exc}", file=sys.stderr)
        except httpx.HTTPError as exc:
            print(f"banyan: cannot reach {args.base_url}: {exc}", file=sys.stderr)
        except UnicodeError as exc:  # a --file that is not UTF-8, a key httpx cannot send
            print(f"banyan: {exc}", file=sys.stderr)
            return 2
        except BrokenPipeError:
            return _reader_left()
        return 1

    return run


def _reader_left() -> int:
    """``banyan logs export | head``: the reader has what it wanted; exit quietly."""
    # What is still buffered goes to /dev/null, not to a failing flush at exit.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 0


def segment(value: str) -> str:
    """``value`` as one path segment: quoted, and never a "." or ".." that a client resolves."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


def show(args: argparse.Namespace, data: Any, text: Callable[[Any], str]) -> int:
    """Print ``data`` as JSON under ``--json``, else as ``text(data)``; exit status 0."""
    print(json.dumps(data, indent=2) if args.json else text(data))
    return 0


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with left-aligned columns."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *cells]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
                     for line in lines)  # fmt: skip


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, list):
        return ",".join(map(str, value)) or "-"
    return str(value)


def percent(basis_points: int) -> str:
    """Basis points as the percentage a user typed: 5000 -> "50%", 3333 -> "33.33%"."""
    return f"{basis_points / 100:g}%"
