"""The page shell: one inline stylesheet, allowed by its hash in a strict CSP.

The Content-Security-Policy allows nothing but that stylesheet, images from
the page itself, and forms posting back to it: no script at all, no other
host, no framing. ``style`` attributes would be refused, so the charts use
SVG presentation attributes (``fill``, ``stroke``) and classes only.
"""

from __future__ import annotations

import base64
import hashlib

from banyan.server.web._markup import Markup, h

CSS = """
:root { color-scheme: light; --ink: #0f172a; --muted: #64748b; --line: #e2e8f0;
  --bad: #b91c1c; --bad-bg: #fef2f2; --good: #047857; --good-bg: #ecfdf5; --accent: #2563eb; }
* { box-sizing: border-box; }
body { margin: 0; background: #f8fafc; color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Liberation Sans", sans-serif; }
header.top { background: #0f172a; color: #e2e8f0; padding: 10px 32px; font-size: 14px; }
header.top a { color: #e2e8f0; text-decoration: none; }
header.top b { color: #fff; letter-spacing: .02em; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 26px; margin: 4px 0 2px; }
h2 { font-size: 18px; margin: 0 0 12px; }
h3 { font-size: 15px; margin: 0 0 8px; }
.sub { color: var(--muted); margin: 0 0 18px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px;
  padding: 18px 22px; margin: 0 0 18px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 14px;
  font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: 6px 8px; border-bottom: 1px solid var(--line);
  white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
table.list th, table.list td { text-align: left; }
td.ctlnote { text-align: center; color: var(--muted); font-style: italic; }
th { color: var(--muted); font-weight: 600; font-size: 13px; }
tr:last-child td { border-bottom: 0; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 999px; font-size: 13px;
  font-weight: 600; background: #e2e8f0; color: #334155; margin-right: 6px; }
.badge.running { background: #dbeafe; color: #1d4ed8; }
.badge.sig { background: var(--good-bg); color: var(--good); }
.badge.ctl { background: #f1f5f9; color: var(--muted); }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 8px; }
.alert { border-radius: 10px; padding: 14px 18px; margin: 0 0 18px; border: 1px solid; }
.alert.bad { background: var(--bad-bg); border-color: #fecaca; color: var(--bad); }
.alert.good { background: var(--good-bg); border-color: #a7f3d0; color: var(--good); }
.alert strong { display: block; font-size: 16px; }
.alert p { margin: 4px 0 0; color: var(--ink); }
.mode { border-left: 4px solid var(--accent); padding: 8px 14px; background: #eff6ff;
  margin: 0 0 18px; border-radius: 0 8px 8px 0; }
.metric { margin-top: 22px; }
.metric:first-of-type { margin-top: 0; }
.note { color: var(--muted); font-size: 13px; margin: 8px 0 0; }
.note.bad { color: var(--bad); font-size: 14px; font-weight: 600; margin: 0 0 8px; }
.chart { width: 100%; height: auto; display: block; margin: 10px 0 4px; }
.chart text { font-size: 12px; fill: #334155; }
.chart text.label { font-size: 13px; fill: var(--ink); font-weight: 600; }
.chart text.value { font-size: 13px; fill: var(--ink); }
.chart text.tick { fill: var(--muted); }
.chart line.grid { stroke: var(--line); }
.chart line.reference { stroke-dasharray: 5 4; stroke-width: 1.5; }
.chart line.whisker { stroke-width: 3; stroke-linecap: round; }
footer { color: var(--muted); font-size: 13px; padding: 4px 22px; }
footer h2 { font-size: 15px; color: #334155; }
footer dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
footer dt { font-weight: 600; color: #334155; }
footer dd { margin: 0; }
a { color: var(--accent); }
"""

_CSS_HASH = base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()

#: The Content-Security-Policy of every page: its own stylesheet, nothing else.
CSP = (
    "default-src 'none'; "
    f"style-src 'sha256-{_CSS_HASH}'; "
    "img-src 'self'; "
    "form-action 'self'; "
    "base-uri 'none'; "
    "frame-ancestors 'none'"
)

#: The headers every page is sent with.
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
}


def page(title: str, crumbs: Markup, *body: Markup, head: Markup | None = None) -> bytes:
    """A whole HTML document, encoded; ``head`` goes at the end of its head."""
    head_element = h(
        "head",
        None,
        h("meta", {"charset": "utf-8"}),
        h("meta", {"name": "viewport", "content": "width=device-width, initial-scale=1"}),
        h("title", None, title),
        h("style", None, Markup(CSS)),
        head,
    )
    top = h("header", {"class": "top"}, h("b", None, "banyan"), " \u00b7 ", crumbs)
    document = h("html", {"lang": "en"}, head_element, h("body", None, top, h("main", None, *body)))
    return ("<!doctype html>\n" + document).encode()
