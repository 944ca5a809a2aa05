"""The pages over simulated experiments, as a small ASGI app (browser test, screenshot).

Two projects. ``prj_demo`` holds an experiment with a known lift and a fair
split (``exp_lift``), the same with a skewed split (``exp_skewed``, flagged by
the SRM check), and one whose names are markup (``exp_xss``). ``prj_other``
holds ``exp_other``. Each results page renders ``analyze()`` of simulated
per-subject sums; ``GET /preview/results/{project}/{id}`` serves the same
``Results`` as JSON. Run with granian: ``banyan.server.web._preview:create_app``
as a factory; the signing secret is read from ``BANYAN_PREVIEW_SECRET`` (hex).
"""

from __future__ import annotations

import os
from typing import Any, cast

import msgspec
import numpy as np
from numpy.typing import NDArray

from banyan._routing import Experiment, Variant
from banyan.server._http import (
    HTTPError,
    Receive,
    Request,
    Response,
    Router,
    Scope,
    Send,
    error_response,
)
from banyan.server.analysis import LatencySummary, MetricSummary, VariantAggregate, analyze
from banyan.server.analysis._inputs import MetricKind
from banyan.server.web._pages import Pages
from banyan.server.web._render import MODE_QUERY
from banyan.server.web._session import Signer
from banyan.server.web._views import ExperimentInfo, ExperimentView, Point, ProjectView

SECRET_ENV = "BANYAN_PREVIEW_SECRET"
XSS = "<script>alert(1)</script>"
CREATED = 1_764_547_200.0  # 2025-12-01 00:00 UTC
DAYS = 14


def _metrics(rng: np.random.Generator, n: int, lift: float) -> dict[str, MetricSummary]:
    """Per-subject values of n subjects, summed as a store would; ``lift`` raises acceptance."""
    # Named as the server names them (docs/statistics.md, 2.1).
    values: dict[str, tuple[NDArray[np.float64], MetricKind]] = {
        "score:accepted": ((rng.random(n) < 0.20 * (1 + lift)).astype(float), "proportion"),
        "input_tokens": (rng.normal(1200, 150, n), "mean"),
        "output_tokens": (rng.normal(310 * (1 - lift / 2), 60, n), "mean"),
        "cost_usd": (rng.normal(0.0042 * (1 - lift / 2), 0.0009, n), "mean"),
        "score:rating": (np.clip(rng.normal(3.6 + lift * 2, 0.9, n), 1, 5), "mean"),
        "score:verdict=good": ((rng.random(n) < 0.5 + lift).astype(float), "proportion"),
    }
    return {
        name: MetricSummary(
            subjects=n,
            sum=float(x.sum()),
            sum_squares=float((x * x).sum()),
            records=3 * n,
            kind=kind,
        )
        for name, (x, kind) in values.items()
    }


def _aggregate(rng: np.random.Generator, v: Variant, n: int, lift: float) -> VariantAggregate:
    latency = np.sort(rng.lognormal(np.log(820 * (1 - lift)), 0.45, 3 * n))
    p50, p95, p99 = (float(latency[int(np.ceil(p * len(latency))) - 1]) for p in (0.5, 0.95, 0.99))
    return VariantAggregate(v.id, n, 3 * n, _metrics(rng, n, lift), LatencySummary(p50, p95, p99))


def simulated(
    exp_id: str,
    names: tuple[str, str],
    subjects: tuple[int, int],
    lift: float = 0.2,
    seed: int = 18,
) -> tuple[Experiment, list[VariantAggregate]]:
    """A 50/50 experiment: the second variant lifts acceptance by ``lift`` (relative)."""
    variants = tuple(
        Variant(f"var_{exp_id}_{i}", str(i + 1), 5000, name=n) for i, n in enumerate(names)
    )
    config = Experiment(
        id=exp_id,
        sticky_key="user_id",
        seed=exp_id,
        variants=variants,
        name=f"{names[1]} vs {names[0]}",
    )
    rng = np.random.default_rng(seed)
    aggs = [
        _aggregate(rng, v, n, lift * i)
        for i, (v, n) in enumerate(zip(variants, subjects, strict=True))
    ]
    return config, aggs


def _series(config: Experiment, aggs: list[VariantAggregate]) -> list[Point]:
    days = [f"Dec {d + 1}" for d in range(DAYS)]
    share = [(d + 1) ** 1.15 / DAYS**1.15 for d in range(DAYS)]
    return [
        Point(at, {v.id: round(a.subjects * s) for v, a in zip(config.variants, aggs, strict=True)})
        for at, s in zip(days, share, strict=True)
    ]


def _view(
    project: str,
    exp_id: str,
    names: tuple[str, str],
    subjects: tuple[int, int],
    *,
    sequential: bool = False,
    note: str = "",
) -> ExperimentView:
    config, aggs = simulated(exp_id, names, subjects)
    info = ExperimentInfo(
        id=exp_id,
        name=config.name + note,
        prompt="support-answer",
        branch="main",
        status="running",
        created_at=CREATED,
        started_at=CREATED + 600,
        variants=len(config.variants),
    )
    results = analyze(config, aggs, sequential=sequential)
    return ExperimentView(project, info, results, _series(config, aggs))


def views(*, flip: bool = False) -> dict[str, dict[str, ExperimentView]]:
    """Every simulated experiment page, by project id and experiment id.

    ``flip`` analyses each in the other mode (fixed-horizon or sequential).
    """
    demo = ("Support bot", ("concise", "friendly"))
    return {
        "prj_demo": {
            "exp_lift": _view(demo[0], "exp_lift", demo[1], (2000, 2000), sequential=flip),
            "exp_skewed": _view(demo[0], "exp_skewed", demo[1], (2000, 1780), sequential=flip,
                                note=" (skewed split)"),
            "exp_seq": _view(demo[0], "exp_seq", demo[1], (2000, 2000), sequential=not flip,
                             note=" (sequential)"),
            "exp_xss": _view(XSS, "exp_xss", (XSS, f"{XSS}\"'&"), (500, 500), sequential=flip),
        },
        "prj_other": {
            "exp_other": _view("Other team", "exp_other", ("a", "b"), (300, 300), sequential=flip)
        },
    }  # fmt: skip


class PreviewApp:
    """An ASGI app with the page routes and a JSON route over ``views()``."""

    def __init__(self, secret: bytes) -> None:
        self.views, self.flipped = views(), views(flip=True)
        self.pages = Pages(Signer(secret), project=self.project, experiment=self.experiment)
        self.router = Router()
        for method, pattern, handler in self.pages.routes():
            self.router.add(method, pattern, handler, auth=False)
        self.router.add("GET", "/preview/results/{project}/{id}", self.results, auth=False)

    async def project(self, req: Request, project_id: str) -> ProjectView | None:
        found = self.views.get(project_id)
        if found is None:
            return None
        name = next(iter(found.values())).project_name
        return ProjectView(project_id, name, [v.info for v in found.values()])

    async def experiment(self, req: Request, project_id: str, exp_id: str) -> ExperimentView | None:
        view = self.views.get(project_id, {}).get(exp_id)
        if view is not None and req.query.get(MODE_QUERY, view.results.mode) != view.results.mode:
            return self.flipped[project_id][exp_id]
        return view

    async def results(self, req: Request) -> Response:
        view = await self.experiment(req, req.params["project"], req.params["id"])
        if view is None:
            raise HTTPError(404, "no such experiment")
        return Response(200, msgspec.json.encode(view.results))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        req = Request(scope, receive, cast(Any, None))
        try:
            route, req.params = self.router.match(req.method, req.path)
            response = await route.handler(req)
        except HTTPError as exc:
            response = error_response(exc)
        headers = [(b"content-type", response.content_type.encode())]
        headers += [(k.encode(), v.encode()) for k, v in response.headers.items()]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})


def create_app() -> PreviewApp:
    """The granian factory: the secret comes from the environment."""
    return PreviewApp(bytes.fromhex(os.environ[SECRET_ENV]))
