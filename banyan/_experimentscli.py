"""``banyan experiments create|list|show|start|stop|results|open|ship``.

Weights and traffic are given and printed in percent; the server stores
basis points (1 % = 100 bp). ``show``, ``start``, ``stop`` and ``results``
take an experiment id, or ``--prompt NAME`` for that prompt's running
experiment (else its newest).
"""

from __future__ import annotations

import argparse
from typing import Any

from banyan._apicli import AdminError, Api, command, percent, segment, show, table
from banyan._cli import Subparsers, add_connection, group
from banyan._cli import percent as percent_type
from banyan._resultscli import results_table


def _variant(text: str) -> dict[str, Any]:
    """VERSION:PERCENT (an argparse type)."""
    version, sep, weight = text.rpartition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r} is not VERSION:PERCENT, for example 2:50")
    return {"version": version, "percentage": percent_type(weight)}


def add_parser(sub: Subparsers) -> None:
    """Add ``banyan experiments`` and its commands to ``sub``."""
    experiments = group(sub, "experiments", "manage experiments")
    p = experiments.add_parser("create", help="create and start an experiment")
    p.add_argument("prompt", help="prompt name")
    p.add_argument(
        "--variant",
        action="append",
        required=True,
        type=_variant,
        metavar="VERSION:PERCENT",
        help="a version and its share of enrolled subjects; shares add up to 100",
    )
    p.add_argument(
        "--sticky-key", default="user_id", help="sticky_context key whose value picks the variant"
    )
    p.add_argument(
        "--traffic",
        type=percent_type,
        default=100,
        metavar="PERCENT",
        help="percent of subjects enrolled",
    )
    p.add_argument("--branch", default="main", help="prompt branch the versions are on")
    p.add_argument("--name", help="experiment name (default: PROMPT experiment)")
    p.set_defaults(func=command(create))
    p = experiments.add_parser("list", help="list experiments, oldest first")
    p.add_argument("--prompt", help="only this prompt's")
    p.set_defaults(func=command(list_experiments))
    for name, body, help_text in (
        ("show", _status(None), "an experiment's settings and variants"),
        ("start", _status("start"), "start an experiment (one runs per prompt branch)"),
        ("stop", _status("stop"), "stop an experiment: clients get the latest version again"),
        ("results", results, "the SRM check and per-variant results with intervals"),
        ("open", open_page, "print a signed link to the results page (valid 15 minutes)"),
        ("ship", ship, "stop the experiment and make a variant's version the branch's latest"),
    ):
        p = experiments.add_parser(name, help=help_text)
        p.add_argument("id", nargs="?", help="experiment id (exp_...)")
        p.add_argument("--prompt", help="instead of ID: this prompt's running (else newest)")
        p.set_defaults(func=command(body))
    experiments.choices["results"].add_argument(
        "--sequential", action="store_true", help="always-valid intervals and p-values"
    )
    experiments.choices["ship"].add_argument("--variant", required=True, help="variant name or id")
    for parser in experiments.choices.values():
        add_connection(parser)


def create(api: Api, args: argparse.Namespace) -> int:
    """``banyan experiments create PROMPT --variant V:PCT ...``."""
    body = {"prompt": args.prompt, "branch": args.branch, "variants": args.variant,
            "sticky_key": args.sticky_key, "traffic": args.traffic, "name": args.name}  # fmt: skip
    return show(args, api.call("POST", "/api/v2/experiments", body), describe)


def describe(exp: dict[str, Any]) -> str:
    """An experiment's header line and its variants' table."""
    head = (f"experiment {exp['id']} {exp['status']} on {exp['prompt']}@{exp['branch']}"
            f" (sticky key {exp['sticky_key']}, traffic {percent(exp['traffic_bp'])})")  # fmt: skip
    rows = [(v["id"], v["name"], v["version"], percent(v["weight_bp"])) for v in exp["variants"]]
    return f"{head}\n{table(('VARIANT', 'NAME', 'VERSION', 'WEIGHT'), rows)}"


def list_experiments(api: Api, args: argparse.Namespace) -> int:
    """``banyan experiments list [--prompt NAME]``."""
    params = {"prompt": args.prompt} if args.prompt else None
    return show(args, api.call("GET", "/api/v2/experiments", params=params), _list_table)


def _list_table(data: dict[str, Any]) -> str:
    rows = [
        (e["id"], e["prompt"], e["branch"], e["status"], e["sticky_key"], percent(e["traffic_bp"]),
         [f"{v['version']}={percent(v['weight_bp'])}" for v in e["variants"]])
        for e in data["experiments"]
    ]  # fmt: skip
    headers = ("ID", "PROMPT", "BRANCH", "STATUS", "STICKY KEY", "TRAFFIC", "VARIANTS")
    return table(headers, rows)


def _experiment_id(api: Api, args: argparse.Namespace) -> str:
    if (args.id is None) == (args.prompt is None):
        raise AdminError("give an experiment id or --prompt NAME (one of them)")
    if args.id is not None:
        return str(args.id)
    found = api.call("GET", "/api/v2/experiments", params={"prompt": args.prompt})["experiments"]
    if not found:
        raise AdminError(f"prompt {args.prompt!r} has no experiment")
    running = [e for e in found if e["status"] == "running"]
    return str((running or found)[-1]["id"])


def _status(action: str | None) -> Any:
    def run(api: Api, args: argparse.Namespace) -> int:
        path = f"/api/v2/experiments/{segment(_experiment_id(api, args))}"
        data = api.call("GET", path) if action is None else api.call("POST", f"{path}/{action}")
        return show(args, data, describe)

    return run


def results(api: Api, args: argparse.Namespace) -> int:
    """``banyan experiments results ID``: the SRM check, then each variant's results."""
    path = f"/api/v2/experiments/{segment(_experiment_id(api, args))}/results"
    params = {"mode": "sequential"} if args.sequential else None
    return show(args, api.call("GET", path, params=params), results_table)


def open_page(api: Api, args: argparse.Namespace) -> int:
    """``banyan experiments open ID``: a signed link to the results page (15 minutes)."""
    path = f"/api/v2/experiments/{segment(_experiment_id(api, args))}/link"
    return show(args, api.call("POST", path), lambda data: str(data["url"]))


def ship(api: Api, args: argparse.Namespace) -> int:
    """``banyan experiments ship ID --variant NAME``: stop it, serve that variant's version."""
    path = f"/api/v2/experiments/{segment(_experiment_id(api, args))}/ship"
    data = api.call("POST", path, {"variant": args.variant})
    version = data["version"]
    return show(
        args,
        data,
        lambda _: (
            f"{describe(data['experiment'])}\nshipped: version"
            f" {version['version']} of {data['experiment']['prompt']}@{version['branch']}"
        ),
    )
