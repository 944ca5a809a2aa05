"""The results page in a real browser: headless Chromium against the preview server.

The pages render ``analyze()`` of simulated experiments (a known lift; a
skewed split); the figures on the page are compared with the same Results
as JSON, served by the same process.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest

from banyan.server.web._preview import XSS
from banyan.server.web.screenshot import Preview

from .conftest import Traffic

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Locator, Page

pytestmark = pytest.mark.slow

Visit = Callable[[str], "Page"]


def _json(preview: Preview, project: str, exp: str, query: str = "") -> dict[str, Any]:
    response = httpx.get(f"{preview.base_url}/preview/results/{project}/{exp}{query}")
    response.raise_for_status()
    return dict(response.json())


def _matches(text: str, value: float) -> bool:
    """Whether ``text`` as shown on the page is ``value`` rounded to the digits it shows."""
    text = text.replace("\u2212", "-").replace(",", "").strip()
    if text == "< 0.001":
        return value < 0.001
    scale = 100 if text.endswith(("%", "pp")) else 1
    number = text.removesuffix("%").removesuffix("pp").removesuffix("ms").strip()
    decimals = len(number.partition(".")[2])
    return abs(float(number) / scale - value) <= 0.5 * 10.0**-decimals / scale + 1e-12


def _mode_is(mode: str) -> Callable[[str], bool]:
    """A URL test for ``?mode=``: Playwright's globs changed meaning across versions (in 1.50
    a ``**`` not followed by ``/`` stops at a slash, so ``**?mode=x`` matched no URL)."""
    return lambda url: dict(parse_qsl(urlsplit(url).query)).get("mode") == mode


def _cell(row: Locator, cls: str, expected: float | None) -> None:
    cell = row.locator(f"td.{cls}")
    if expected is None:
        assert cell.inner_text() == "n/a"
        return
    assert float(cell.get_attribute("data-value") or "nan") == expected
    assert _matches(cell.inner_text(), expected), (cls, cell.inner_text(), expected)


def _check_figures(page: Page, results: dict[str, Any]) -> None:
    for v in results["variants"]:
        row = page.locator(f"#variants tr[data-variant='{v['id']}']")
        for cls in ("subjects", "share", "records"):
            _cell(row, cls, v[cls])
        for name, metric in v["metrics"].items():
            row = page.locator(f"[data-metric='{name}'] tr[data-variant='{v['id']}']")
            _cell(row, "value", metric["value"])
            diff = v["versus_control"].get(name)
            if diff is not None:
                for key, cls in (("absolute", "absolute"), ("relative", "relative"),
                                 ("p_value", "p")):  # fmt: skip
                    _cell(row, cls, diff[key])
        latency = page.locator(f"#latency tr[data-variant='{v['id']}']")
        for p in ("p50", "p95", "p99"):
            _cell(latency, p, v["latency"][f"{p}_ms"])
    significant = [
        d["significant"] for v in results["variants"] for d in v["versus_control"].values()
    ]
    assert page.locator("#summary .badge.sig").count() == sum(significant)
    assert page.locator("#mode").get_attribute("data-mode") == results["mode"]


def test_figures_on_the_page_equal_the_results_json(
    preview: Preview, visit: Visit, traffic: Traffic, tmp_path: Path
) -> None:
    """Subjects, shares, metric values, differences, p-values and latency match the JSON."""
    results = _json(preview, "prj_demo", "exp_lift")
    assert results["mode"] == "fixed-horizon"
    page = visit(preview.link("prj_demo", "exp_lift"))
    _check_figures(page, results)
    assert "Fixed-horizon" in page.locator("#mode").inner_text()
    assert page.locator("svg.chart").count() == len(results["variants"][0]["metrics"]) + 2
    page.screenshot(path=str(tmp_path / "results-page.png"), full_page=True)
    assert (tmp_path / "results-page.png").stat().st_size > 10_000
    assert traffic.errors == []


def test_the_page_switches_to_the_sequential_mode_and_back(
    preview: Preview, visit: Visit, traffic: Traffic
) -> None:
    """The mode link shows the always-valid analysis, whose figures equal its JSON."""
    page = visit(preview.link("prj_demo", "exp_lift"))
    page.click("#other-mode")
    page.wait_for_url(_mode_is("sequential"))
    _check_figures(page, _json(preview, "prj_demo", "exp_lift", "?mode=sequential"))
    assert "mSPRT" in page.locator("#methods").inner_text()
    page.click("#other-mode")
    page.wait_for_url(_mode_is("fixed-horizon"))
    assert page.locator("#mode").get_attribute("data-mode") == "fixed-horizon"
    assert traffic.errors == []


@pytest.mark.parametrize(("exp", "flagged"), [("exp_skewed", True), ("exp_lift", False)])
def test_the_srm_warning_appears_for_a_skewed_split_only(
    preview: Preview, visit: Visit, traffic: Traffic, exp: str, flagged: bool
) -> None:
    """A 2000/1780 split of a 50/50 experiment is flagged above every result; 2000/2000 is not."""
    results = _json(preview, "prj_demo", exp)
    assert results["srm"]["flagged"] is flagged
    page = visit(preview.link("prj_demo", exp))
    srm = page.locator("#srm")
    assert srm.get_attribute("data-flagged") == str(flagged).lower()
    assert ("Sample ratio mismatch" in srm.inner_text()) is flagged
    assert page.locator("#summary .note.bad").count() == flagged
    srm_box, results_box = srm.bounding_box(), page.locator("#results").bounding_box()
    assert srm_box is not None
    assert results_box is not None
    assert srm_box["y"] < results_box["y"]
    assert traffic.errors == []


def test_the_page_names_the_sequential_mode(
    preview: Preview, visit: Visit, traffic: Traffic
) -> None:
    """An always-valid analysis says so on the page, with its methods in the footer."""
    page = visit(preview.link("prj_demo", "exp_seq"))
    assert page.locator("#mode").get_attribute("data-mode") == "sequential"
    assert "Sequential" in page.locator("#mode").inner_text()
    assert "mSPRT" in page.locator("#methods").inner_text()
    assert traffic.errors == []


def test_names_are_shown_as_text_never_run(
    preview: Preview, visit: Visit, traffic: Traffic
) -> None:
    """A variant and project named <script>alert(1)</script> are escaped: no script, no dialog."""
    page = visit(preview.link("prj_demo", "exp_xss"))
    assert page.locator("script").count() == 0
    names = page.locator("#variants .vname").all_inner_texts()
    assert names == [XSS, f"{XSS}\"'&"]
    assert XSS in page.locator("header").inner_text()
    assert traffic.dialogs == []
    assert traffic.errors == []


def test_a_link_sets_a_project_scoped_session_cookie(
    preview: Preview, visit: Visit, context: BrowserContext, traffic: Traffic
) -> None:
    """The signed link redirects to the page and leaves an HttpOnly SameSite=Strict cookie."""
    page = visit(preview.link("prj_demo", "exp_lift"))
    assert urlsplit(page.url).path == "/ui/projects/prj_demo/experiments/exp_lift"
    (cookie,) = context.cookies()
    assert cookie["httpOnly"]
    assert cookie["sameSite"] == "Strict"
    assert cookie["path"] == "/ui/projects/prj_demo"
    page.goto(f"{preview.base_url}/ui/projects/prj_demo/experiments")
    assert page.locator("#experiments tr[data-experiment]").count() == 4
    page.locator("a", has_text="friendly vs concise").first.click()
    assert page.locator("#srm").count() == 1
    assert traffic.errors == []


def test_a_cookie_of_project_a_cannot_open_project_b(
    preview: Preview, visit: Visit, context: BrowserContext
) -> None:
    """Project A's session shows none of B's pages, even copied onto B's path."""
    visit(preview.link("prj_demo", "exp_lift"))
    b_page = f"{preview.base_url}/ui/projects/prj_other/experiments/exp_other"
    page = visit(b_page)
    assert page.locator("h1").inner_text() == "Session expired"
    (cookie,) = context.cookies()
    path = "/ui/projects/prj_other"
    context.add_cookies(
        [
            {
                "name": cookie["name"],
                "value": cookie["value"],
                "domain": cookie["domain"],
                "path": path,
            }
        ]
    )
    assert page.goto(b_page).status == 401  # type: ignore[union-attr]
    a_experiment_under_b = f"{preview.base_url}/ui/projects/prj_other/experiments/exp_lift"
    assert page.goto(a_experiment_under_b).status == 401  # type: ignore[union-attr]


def test_a_tampered_link_is_refused_and_sets_no_cookie(
    preview: Preview, visit: Visit, context: BrowserContext
) -> None:
    """Pointing a signed link at another project gives a 401 page and no session."""
    link = urlsplit(preview.link("prj_demo", "exp_lift"))
    query = {**dict(parse_qsl(link.query)), "project": "prj_other"}
    page = visit(link._replace(query=urlencode(query)).geturl())
    assert page.locator("h1").inner_text() == "Link expired"
    assert context.cookies() == []


def test_a_link_clicked_on_another_site_opens_the_page(
    preview: Preview, visit: Visit, traffic: Traffic
) -> None:
    """The SameSite=Strict session reaches the page when the link is clicked from elsewhere."""
    page = visit("about:blank")
    page.set_content(f'<a id="go" href="{preview.link("prj_demo", "exp_lift")}">results</a>')
    page.click("#go")
    page.wait_for_url("**/experiments/exp_lift")
    assert page.locator("h1").inner_text() == "friendly vs concise"
    assert traffic.errors == []
