"""The pages as HTML, without a browser: escaping, the strict CSP, empty experiments, CSRF."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit

import msgspec
import numpy as np
import pytest

from banyan.server._auth import Principal
from banyan.server._http import HTTPError, Message, Request
from banyan.server.analysis import MetricSummary, VariantAggregate, analyze
from banyan.server.web._layout import CSP, CSS, HEADERS
from banyan.server.web._markup import Markup, h
from banyan.server.web._pages import Pages
from banyan.server.web._preview import XSS, simulated, views
from banyan.server.web._render import list_page, results_page
from banyan.server.web._session import Signer
from banyan.server.web._views import ExperimentInfo, ExperimentView, ProjectView

from ..analysis.sim import clustered, summed

INFO = ExperimentInfo("exp_e", "empty", "p", "main", "draft", 0.0)


def _pages() -> list[bytes]:
    found = views()
    pages = [results_page(v, p) for p, exps in found.items() for v in exps.values()]
    demo = [v.info for v in found["prj_demo"].values()]
    return [*pages, list_page(ProjectView("prj_demo", XSS, demo))]


def test_text_and_attributes_are_escaped() -> None:
    """h() escapes children and attribute values; Markup passes through unchanged."""
    built = h("td", {"data_value": '"><script>'}, XSS, Markup("<b>ok</b>"))
    assert built == (
        '<td data-value="&quot;&gt;&lt;script&gt;">'
        "&lt;script&gt;alert(1)&lt;/script&gt;<b>ok</b></td>"
    )


def test_no_page_has_a_script_a_style_attribute_or_another_host() -> None:
    """Every page is script-free, styles only by class, and names no other host."""
    for body in _pages():
        text = body.decode()
        assert "<script" not in text
        assert " style=" not in text
        assert not re.search(r"(src|href)=\"(https?:)?//", text)


def test_the_csp_allows_exactly_the_inline_stylesheet() -> None:
    """The CSP's style hash is the page stylesheet's, and nothing else may load."""
    digest = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in CSP
    assert "default-src 'none'" in CSP
    assert "frame-ancestors 'none'" in CSP
    assert HEADERS["content-security-policy"] == CSP
    for body in _pages():
        assert f"<style>{CSS}</style>".encode() in body


@pytest.mark.parametrize("subjects", [[], [1]])
def test_an_experiment_without_data_renders(subjects: list[int]) -> None:
    """No subjects (or one) yet: the page renders with n/a, and says the split is unchecked."""
    config, _ = simulated("exp_e", ("a", "b"), (1, 1))
    aggs = [
        VariantAggregate(config.variants[0].id, n, n, {"x": MetricSummary(n, 5.0, 25.0)})
        for n in subjects
    ]
    text = results_page(ExperimentView("P", INFO, analyze(config, aggs)), "prj").decode()
    assert "n/a" in text
    if not subjects:
        assert "No subjects yet" in text


async def _nothing(*args: object) -> None:
    return None


def _request(method: str, headers: dict[str, str], body: bytes = b"") -> Request:
    async def receive() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    scope: dict[str, Any] = {
        "type": "http", "method": method, "path": "/ui/projects/prj_a/experiments/exp_1/ship",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()], "scheme": "http",
    }  # fmt: skip
    req = Request(scope, receive, cast(Any, None))
    req.params = {"project": "prj_a", "id": "exp_1"}
    return req


def test_a_post_passes_the_csrf_check_only_from_its_own_page() -> None:
    """check_post accepts the session's token from the server's origin, and 403s otherwise."""
    signer = Signer(b"k" * 32)
    pages = Pages(signer, project=_nothing, experiment=_nothing, clock=lambda: 1e9)
    cookie = signer.new_session("prj_a", 1e9)
    session = signer.verify_session(cookie, "prj_a", 1e9)
    assert session is not None
    form = f"csrf={signer.csrf_token(session)}&variant=b".encode()
    origin = "http://127.0.0.1:9"
    good = {"host": "127.0.0.1:9", "cookie": f"banyan_session={cookie}", "origin": origin}
    found, fields = asyncio.run(pages.check_post(_request("POST", good, form)))
    assert found == session
    assert fields["variant"] == "b"
    for bad in ({**good, "origin": "http://evil.test"}, {**good, "cookie": ""}):
        with pytest.raises(HTTPError) as caught:
            asyncio.run(pages.check_post(_request("POST", bad, form)))
        assert caught.value.status == 403
    with pytest.raises(HTTPError):
        asyncio.run(pages.check_post(_request("POST", good, b"variant=b")))


def test_three_variants_render_with_their_weights_and_a_column_each() -> None:
    """A 50/25/25 experiment shows each weight and compares both treatments with the control."""
    config, aggs = simulated("exp_3", ("a", "b"), (400, 200))
    third = msgspec.structs.replace(config.variants[1], id="var_c", name="c", weight_bp=2500)
    config = msgspec.structs.replace(
        config,
        variants=(
            config.variants[0],
            msgspec.structs.replace(config.variants[1], weight_bp=2500),
            third,
        ),
    )
    aggs.append(msgspec.structs.replace(aggs[1], variant_id="var_c"))
    text = results_page(ExperimentView("P", INFO, analyze(config, aggs)), "prj").decode()
    assert text.count(">25 %<") == 2
    assert ">b vs a<" in text
    assert ">c vs a<" in text


def test_the_link_endpoint_signs_for_the_keys_project_and_the_requested_host() -> None:
    """A key of project A gets a link to A's experiment on the host it called; bad ids are 400."""
    signer = Signer(b"k" * 32)
    pages = Pages(signer, project=_nothing, experiment=_nothing, clock=lambda: 1e9)
    req = _request("POST", {"host": "127.0.0.1:9"})
    req.principal = Principal("prj_a", "a", admin=False)
    body = json.loads(asyncio.run(pages.link(req)).body)
    url = urlsplit(body["url"])
    assert f"{url.scheme}://{url.netloc}" == "http://127.0.0.1:9"
    assert signer.verify_link(dict(parse_qsl(url.query)), 1e9) == ("prj_a", "exp_1")
    req.params["id"] = "exp.1/../x"
    with pytest.raises(HTTPError) as caught:
        asyncio.run(pages.link(req))
    assert caught.value.status == 400


def test_the_latency_table_shows_each_percentiles_interval() -> None:
    """Each variant's p50/p95/p99 cell is followed by its interval's bounds (#18)."""
    config, aggs = simulated("exp_q", ("a", "b"), (60, 60))
    rng = np.random.default_rng(5)
    aggs = [msgspec.structs.replace(a, percentiles=summed(*clustered(rng, 60))) for a in aggs]
    found = analyze(config, aggs)
    text = results_page(ExperimentView("P", INFO, found), "prj").decode()
    table = text[text.index('id="latency"') :]
    for v in found.variants:
        row = table[table.index(f'data-variant="{v.id}"') :]
        for p in ("p50", "p95", "p99"):
            bounds = v.metrics[f"latency_{p}_ms"].interval
            low = "" if bounds.low is None else f' data-low="{bounds.low!r}"'
            assert f'class="{p}-interval"{low}' in row[: row.index("</tr>")]
    assert ">95% interval<" in table
