"""``banyan projects create``, ``banyan keys create``, ``banyan prompts push|list``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from banyan._apicli import AdminError, Api, command, segment, show, table
from banyan._cli import Subparsers, add_connection, group


def add_parser(sub: Subparsers) -> None:
    """Add the projects, keys and prompts groups to ``sub``."""
    projects = group(sub, "projects", "manage projects (admin key)")
    p = projects.add_parser("create", help="create a project and print its first key")
    p.add_argument("name", help="project name")
    p.set_defaults(func=command(create_project))

    keys = group(sub, "keys", "manage API keys")
    p = keys.add_parser("create", help="create a key for the current key's project")
    p.add_argument("--label", default="", help="a note stored with the key")
    p.set_defaults(func=command(create_key))

    prompts = group(sub, "prompts", "manage prompts")
    p = prompts.add_parser("push", help="push a file as a new version (creating the prompt)")
    p.add_argument("name", help="prompt name")
    p.add_argument("--file", type=Path, required=True, help="UTF-8 file with the prompt text")
    p.add_argument("--branch", default="main", help="branch to push to (created if new)")
    p.add_argument("--message", default="", help="change message stored with the version")
    p.set_defaults(func=command(push_prompt))
    p = prompts.add_parser("list", help="list prompts and their branches")
    p.set_defaults(func=command(list_prompts))
    for each in (projects, keys, prompts):
        for parser in each.choices.values():
            add_connection(parser)


def create_project(api: Api, args: argparse.Namespace) -> int:
    """``banyan projects create NAME``."""
    data = api.call("POST", "/api/v2/projects", {"name": args.name})
    return show(args, data, lambda d: f"project {d['project']['name']} id {d['project']['id']}\n"
                                      f"API key: {d['api_key']}")  # fmt: skip


def create_key(api: Api, args: argparse.Namespace) -> int:
    """``banyan keys create``."""
    data = api.call("POST", "/api/v2/keys", {"label": args.label})
    return show(args, data, lambda d: f"API key for project {d['project_id']}: {d['api_key']}")


def push_prompt(api: Api, args: argparse.Namespace) -> int:
    """``banyan prompts push NAME --file F``: a new version, creating the prompt if needed.

    Content equal to the branch's latest version pushes nothing and says so.
    """
    try:
        content = args.file.read_text(encoding="utf-8")
    except OSError as exc:
        raise AdminError(f"cannot read {args.file}: {exc}") from None
    body = {"content": content, "branch": args.branch, "message": args.message}
    try:
        data = api.call("POST", f"/api/v2/prompts/{segment(args.name)}/versions", body)
    except AdminError as exc:
        if exc.status != 404:
            raise
        created = api.call("POST", "/api/v2/prompts", {"name": args.name, **body})
        data = {"name": args.name, "version": created["branches"][0]["latest_version"],
                "branch": args.branch, "unchanged": False}  # fmt: skip
    return show(args, data, _pushed)


def _pushed(data: dict[str, Any]) -> str:
    where = f"{data['name']} version {data['version']} on branch {data['branch']}"
    if data.get("unchanged"):
        return f"unchanged: {where} already has this content (no new version)"
    return f"pushed {where}"


def list_prompts(api: Api, args: argparse.Namespace) -> int:
    """``banyan prompts list``."""
    data = api.call("GET", "/api/v2/prompts")
    return show(args, data, _prompt_table)


def _prompt_table(data: dict[str, Any]) -> str:
    rows = [
        (p["name"], b["name"], b["latest_version"], b["versions"], p["enable_logging"])
        for p in data["prompts"]
        for b in p["branches"]
    ]
    return table(("PROMPT", "BRANCH", "LATEST", "VERSIONS", "LOGGING"), rows)
