"""The results page of a real ``banyan serve`` after a real workload, in headless Chromium.

Records go through ``banyan.PromptStackLogger`` (local routing, ring, batches)
to the server; the page is opened through the link ``banyan experiments open``
prints, and its figures are compared with the API's results JSON.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from serverproc import Server

import banyan
from banyan._cli import main as cli

from ..helpers import call, create_prompt, unique
from .conftest import Traffic
from .test_browser import _check_figures

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow

Visit = Callable[[str], "Page"]
#: Control answers in ~100 ms, the treatment in ~150 ms: a known latency difference.
LATENCY = {"control": 100.0, "treatment": 150.0}


def _workload(server: Server, users: int, lose: float = 0.0) -> dict[str, Any]:
    """A running 50/50 experiment and two records per user logged through the SDK.

    ``lose`` is the share of the treatment's users whose records never arrive
    (their code path fails before logging): the split the server sees is skewed.
    """
    prompt = unique("served")
    create_prompt(server, prompt, "Answer briefly.", "Answer warmly.")
    body = {"prompt": prompt, "variants": [
        {"version": "1", "percentage": 50, "name": "control"},
        {"version": "2", "percentage": 50, "name": "treatment"}]}  # fmt: skip
    experiment = dict(call(server, "POST", "/api/v2/experiments", json=body).json())
    logger = banyan.PromptStackLogger(api_key=server.api_key, base_url=server.base_url,
                                      disk_cache=False)  # fmt: skip
    means: dict[str, list[float]] = {name: [] for name in LATENCY}
    # Users fall into variants by hash of a fresh experiment's seed: an exact 50/50 split of
    # ``users`` keeps the SRM check's verdict (p < 0.001) from depending on the draw.
    routed = dict.fromkeys(LATENCY, 0)
    for i in range(4 * users):
        if sum(routed.values()) == users // 2 * 2:
            break
        data = logger.get_prompt(prompt, sticky_context={"user_id": f"user-{i}"})
        assert data is not None
        assert data.variant_name in LATENCY
        if routed[data.variant_name] == users // 2:
            continue
        routed[data.variant_name] += 1
        if data.variant_name == "treatment" and i % 100 < lose * 100:
            continue
        latencies = [LATENCY[data.variant_name] + (i * 7 + j * 13) % 20 for j in range(2)]
        for ms in latencies:
            logger.log_prompt(input="q", output="a", prompt_data=data, duration_ms=ms)
        means[data.variant_name].append(sum(latencies) / 2)
    assert logger.shutdown(timeout=30)
    assert logger.get_stats()["logs_dropped"] == 0
    assert routed == dict.fromkeys(LATENCY, users // 2)
    # The difference of per-subject means this sample has (50 ms give or take its noise).
    experiment["observed"] = statistics.fmean(means["treatment"]) - statistics.fmean(
        means["control"]
    )
    return experiment


def _open(server: Server, exp_id: str, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    argv = ["experiments", "open", exp_id, "--base-url", server.base_url,
            "--api-key", server.api_key]  # fmt: skip
    assert cli(argv) == 0
    return capsys.readouterr().out.strip()


def _results(server: Server, exp_id: str) -> dict[str, Any]:
    return dict(call(server, "GET", f"/api/v2/experiments/{exp_id}/results").json())


def _check_over_time(page: Page, results: dict[str, Any]) -> None:
    """The "subjects over time" chart ends, per variant, at the subjects the JSON counts."""
    chart = page.locator("#over-time svg")
    assert chart.count() == 1
    for v in results["variants"]:
        line = chart.locator(f"polyline[data-variant='{v['id']}']")
        assert line.get_attribute("data-value") == str(v["subjects"])
        assert f"{v['name']}: {v['subjects']:,}" in (chart.text_content() or "")


def test_the_served_page_shows_the_results_json_of_a_real_workload(
    shared_server: Server, visit: Visit, traffic: Traffic, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """After SDK traffic with a known latency difference, the page's figures equal the API's."""
    exp = _workload(shared_server, 300)
    results = _results(shared_server, exp["id"])
    control, treatment = results["variants"]
    assert control["subjects"] + treatment["subjects"] == 300
    assert treatment["records"] == 2 * treatment["subjects"]
    latency = treatment["versus_control"]["latency_ms"]
    assert latency["significant"]
    # Users fall into variants by hash, so the sample's noise differs from run to run: the
    # interval holds the difference this sample has, and that is the 50 ms designed in.
    assert (
        latency["absolute_interval"]["low"] < exp["observed"] < latency["absolute_interval"]["high"]
    )
    assert latency["absolute"] == pytest.approx(exp["observed"])
    assert abs(exp["observed"] - 50) < 3
    assert not results["srm"]["flagged"]
    link = _open(shared_server, exp["id"], capsys)
    assert link.startswith(f"{shared_server.base_url}/ui/open?")
    page = visit(link)
    _check_figures(page, results)
    _check_over_time(page, results)
    assert page.locator("#srm").get_attribute("data-flagged") == "false"
    page.screenshot(path=str(tmp_path / "served-results.png"), full_page=True)
    assert (tmp_path / "served-results.png").stat().st_size > 10_000
    assert traffic.errors == []


def test_the_served_page_warns_of_a_skewed_split(
    shared_server: Server, visit: Visit, traffic: Traffic, capsys: pytest.CaptureFixture[str]
) -> None:
    """When half of the treatment's users never log, the page shows the SRM warning."""
    exp = _workload(shared_server, 800, lose=0.5)
    results = _results(shared_server, exp["id"])
    assert results["srm"]["flagged"]
    page = visit(_open(shared_server, exp["id"], capsys))
    srm = page.locator("#srm")
    assert srm.get_attribute("data-flagged") == "true"
    assert "Sample ratio mismatch" in srm.inner_text()
    _check_figures(page, results)
    assert traffic.errors == []
