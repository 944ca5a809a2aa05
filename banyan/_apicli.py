"""The management commands of ``banyan``: HTTP calls to a running server.

``banyan._cli`` defines their arguments; each function here takes the parsed
arguments, talks to ``--base-url`` with ``--api-key`` and prints the result.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote

import httpx


class AdminError(Exception):
    """A management call the server refused, or a usage mistake."""


def run(command: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run one management command, turning failures into a message and exit status 1."""
    if not args.api_key:
        print("banyan: give --api-key or set BANYAN_API_KEY", file=sys.stderr)
        return 2
    try:
        return command(args)
    except AdminError as exc:
        print(f"banyan: {exc}", file=sys.stderr)
    except httpx.HTTPError as exc:
        print(f"banyan: cannot reach {args.base_url}: {exc}", file=sys.stderr)
    except UnicodeError as exc:  # a --file that is not UTF-8, a key httpx cannot send
        print(f"banyan: {exc}", file=sys.stderr)
        return 2
    return 1


def _call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    headers = {"X-API-Key": args.api_key}
    with httpx.Client(base_url=args.base_url, headers=headers, timeout=30,
                      verify=not args.insecure) as client:  # fmt: skip
        response = client.request(method, path, json=body)
    try:
        data = response.json()
    except ValueError:
        data = {"error": response.text[:200]}
    if response.status_code >= 400:
        message = data.get("error") if isinstance(data, dict) else None
        raise AdminError(f"HTTP {response.status_code}: {message or response.reason_phrase}")
    return data


def _segment(value: str) -> str:
    """``value`` as one path segment: quoted, and never a "." or ".." that a client resolves."""
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if quoted in (".", "..") else quoted


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


def create_project(args: argparse.Namespace) -> int:
    """``banyan projects create NAME``."""
    data = _call(args, "POST", "/api/v2/projects", {"name": args.name})
    print(f"project {data['project']['name']} id {data['project']['id']}")
    print(f"API key: {data['api_key']}")
    return 0


def create_key(args: argparse.Namespace) -> int:
    """``banyan keys create``."""
    data = _call(args, "POST", "/api/v2/keys", {"label": args.label})
    print(f"API key for project {data['project_id']}: {data['api_key']}")
    return 0


def push_prompt(args: argparse.Namespace) -> int:
    """``banyan prompts push NAME --file F``: a new version, creating the prompt if needed."""
    try:
        content = args.file.read_text(encoding="utf-8")
    except OSError as exc:
        raise AdminError(f"cannot read {args.file}: {exc}") from None
    body = {"content": content, "branch": args.branch, "message": args.message}
    try:
        data = _call(args, "POST", f"/api/v2/prompts/{_segment(args.name)}/versions", body)
    except AdminError as exc:
        if "HTTP 404" not in str(exc):
            raise
        _call(args, "POST", "/api/v2/prompts", {"name": args.name, **body})
        data = {"version": "1", "branch": args.branch}
    print(f"pushed {args.name} version {data['version']} on branch {data['branch']}")
    return 0


def list_prompts(args: argparse.Namespace) -> int:
    """``banyan prompts list``."""
    prompts = _call(args, "GET", "/api/v2/prompts")["prompts"]
    rows = [
        (p["name"], b["name"], b["latest_version"], b["versions"], p["enable_logging"])
        for p in prompts
        for b in p["branches"]
    ]
    print(table(("PROMPT", "BRANCH", "LATEST", "VERSIONS", "LOGGING"), rows))
    return 0


def create_experiment(args: argparse.Namespace) -> int:
    """``banyan experiments create PROMPT --variant V:PCT ...``."""
    body = {"prompt": args.prompt, "branch": args.branch, "variants": args.variant,
            "sticky_key": args.sticky_key, "traffic": args.traffic, "name": args.name}  # fmt: skip
    data = _call(args, "POST", "/api/v2/experiments", body)
    print(f"experiment {data['id']} {data['status']} on {data['prompt']}@{data['branch']}"
          f" (sticky key {data['sticky_key']}, traffic {data['traffic_bp'] / 100:g}%)")  # fmt: skip
    rows = [(v["id"], v["version"], f"{v['weight_bp'] / 100:g}%") for v in data["variants"]]
    print(table(("VARIANT", "VERSION", "WEIGHT"), rows))
    return 0


def experiment_results(args: argparse.Namespace) -> int:
    """``banyan experiments results ID``: a table of counts and latency per variant."""
    data = _call(args, "GET", f"/api/v2/experiments/{_segment(args.id)}/results")
    exp = data["experiment"]
    print(f"experiment {exp['id']} ({exp['status']}) on {exp['prompt']}@{exp['branch']}")
    rows = [
        (v["name"], v["version"], f"{v['weight_bp'] / 100:g}%", v["count"], v["mean_ms"],
         v["p50_ms"], v["p95_ms"], v["models"])
        for v in data["variants"]
    ]  # fmt: skip
    headers = ("VARIANT", "VERSION", "WEIGHT", "COUNT", "MEAN MS", "P50 MS", "P95 MS", "MODELS")
    print(table(headers, rows))
    return 0
