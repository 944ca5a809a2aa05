"""The two pages as HTML: a project's experiments, and one experiment's results.

The results page reads top to bottom the way the numbers should be trusted:
the configuration, then the sample-ratio check (a broken split makes every
number below it suspect), then per metric each variant and its difference to
the control, naming the statistics and the mode (fixed-horizon or sequential).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from banyan.server.analysis import Difference, MetricResult, Results, VariantResult
from banyan.server.web import _charts
from banyan.server.web import _format as fmt
from banyan.server.web._layout import page
from banyan.server.web._markup import Markup, h, join
from banyan.server.web._session import experiment_path, project_path
from banyan.server.web._views import ExperimentInfo, ExperimentView, ProjectView

#: The query parameter by which the page asks its provider for the other mode.
MODE_QUERY = "mode"
_MODE = {
    "fixed-horizon": (
        "Fixed-horizon statistics",
        "Valid when the results are read once, at a sample size planned in advance. "
        "Checking every day and stopping at the first significant result inflates "
        "false positives; use the sequential mode to monitor.",
    ),
    "sequential": (
        "Sequential statistics (always valid)",
        "Intervals and p-values stay valid however often the results are checked; "
        "the price is wider intervals than a single planned look.",
    ),
}


def _date(at: float | None) -> str:
    return "\u2013" if at is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


def _status(status: str) -> Markup:
    return h("span", {"class": f"badge {status}"}, status)


def _variant_label(v: VariantResult, index: int) -> Markup:
    control = h("span", {"class": "badge ctl"}, "control") if v.control else ""
    swatch = h(
        "svg",
        {"class": "swatch", "viewBox": "0 0 10 10", "aria_hidden": "true"},
        h("rect", {"width": 10, "height": 10, "rx": 3, "fill": _charts.colour(index)}),
    )
    return join([swatch, h("span", {"class": "vname"}, v.name), " ", control])


def _table(head: list[str], rows: list[Markup], **attrs: object) -> Markup:
    header = h("tr", None, [h("th", None, c) for c in head])
    table = h("table", attrs, h("thead", None, header), h("tbody", None, rows))
    return h("div", {"class": "scroll"}, table)


def _other_mode(results: Results) -> Markup:
    other = "sequential" if results.mode == "fixed-horizon" else "fixed-horizon"
    return h("a", {"href": f"?{MODE_QUERY}={other}", "id": "other-mode"}, f"Show {other} results")


def _headline(view: ExperimentView) -> Markup:
    info, results = view.info, view.results
    facts = [
        f"prompt {info.prompt}",
        f"branch {info.branch}",
        f"sticky key {info.sticky_key}",
        f"traffic {fmt.weight(info.traffic_bp)}",
        f"created {_date(info.created_at)}",
        f"started {_date(info.started_at)}",
    ]
    if info.stopped_at is not None:
        facts.append(f"stopped {_date(info.stopped_at)}")
    title, text = _MODE[results.mode]
    return join(
        [
            h("h1", None, info.name or info.id),
            h("p", {"class": "sub"}, _status(info.status), " \u00b7 ".join(facts)),
            h(
                "div",
                {"class": "mode", "id": "mode", "data_mode": results.mode},
                h("strong", None, title),
                f" (\u03b1 = {results.alpha:g}). ",
                text,
                " ",
                _other_mode(results),
            ),
        ]
    )


def _srm(results: Results) -> Markup:
    srm = results.srm
    if srm.p_value is None:
        return h(
            "div",
            {"class": "alert", "id": "srm", "data_flagged": "false"},
            h("strong", None, "No subjects yet: the traffic split cannot be checked."),
        )
    stats = f"\u03c7\u00b2 = {srm.chi_square:.2f}, {fmt.p_text(srm.p_value)}"
    if srm.flagged:
        return h(
            "div",
            {"class": "alert bad", "id": "srm", "role": "alert", "data_flagged": "true"},
            h("strong", None, "Sample ratio mismatch: traffic did not split as configured"),
            h(
                "p",
                None,
                f"Subjects per variant differ from the configured weights ({stats};"
                f" flagged below {srm.threshold:g}). Subjects were lost or misrouted in some"
                " variant, so the results below cannot be trusted until the cause is"
                " found.",
            ),
        )
    return h(
        "div",
        {"class": "alert good", "id": "srm", "data_flagged": "false"},
        h("strong", None, "Traffic split as configured"),
        h("p", None, f"Subjects per variant match the configured weights ({stats})."),
    )


def _variants(results: Results) -> Markup:
    rows = [
        h(
            "tr",
            {"data_variant": v.id},
            h("td", None, _variant_label(v, i)),
            h("td", None, v.version),
            fmt.cell(fmt.weight(v.weight_bp), v.weight_bp / 10_000),
            fmt.cell(f"{results.srm.expected[i]:,.0f}", results.srm.expected[i]),
            fmt.cell(fmt.count(v.subjects), v.subjects, class_="subjects"),
            fmt.cell(fmt.percent(v.share), v.share, class_="share"),
            fmt.cell(fmt.count(v.records), v.records, class_="records"),
        )
        for i, v in enumerate(results.variants)
    ]
    head = ["Variant", "Version", "Weight", "Expected subjects", "Subjects", "Share", "Records"]
    return h(
        "section", {"id": "variants"}, h("h2", None, "Variants and traffic"), _table(head, rows)
    )


def _verdict(kind: str, d: Difference) -> Markup:
    change = fmt.percent(d.relative, signed=True) if d.relative is not None else None
    text = f"{change or fmt.difference(kind, d.absolute)} ({fmt.p_text(d.p_value)}) "
    badge = h("span", {"class": "badge sig"}, "significant") if d.significant else "not significant"
    return h("td", None, text, badge)


def _summary(results: Results) -> Markup:
    control, treatments = results.variants[0], results.variants[1:]
    if not treatments or not control.metrics:
        return Markup("")
    head = ["Metric", *[f"{v.name} vs {control.name}" for v in treatments]]
    rows = [
        h(
            "tr",
            {"data_metric": name},
            h("td", None, name),
            [_verdict(m.kind, v.versus_control[name]) for v in treatments],
        )
        for name, m in control.metrics.items()
    ]
    warning = (
        h(
            "p",
            {"class": "note bad"},
            "Do not act on these numbers: the sample ratio check failed (see above).",
        )
        if results.srm.flagged
        else ""
    )
    return h(
        "section",
        {"id": "summary"},
        h("h2", None, "Summary"),
        warning,
        _table(head, rows),
        h(
            "p",
            {"class": "note"},
            "Relative change of each variant against the control,"
            " with its p-value; details and intervals below.",
        ),
    )


def _metric_row(results: Results, v: VariantResult, i: int, name: str) -> Markup:
    m: MetricResult = v.metrics[name]
    show: Callable[[float | None], str] = lambda x: fmt.metric_value(m, x)  # noqa: E731
    cells = [
        h("td", None, _variant_label(v, i)),
        fmt.cell(fmt.count(m.subjects), m.subjects),
        fmt.cell(show(m.value), m.value, class_="value"),
        fmt.cell(fmt.interval(show(m.interval.low), show(m.interval.high)), None),
    ]
    d = v.versus_control.get(name)
    if d is None:
        cells += [h("td", {"colspan": 5, "class": "ctlnote"}, "baseline")]
    else:
        verdict = h("span", {"class": "badge sig"}, "significant") if d.significant else "no"
        cells += [
            fmt.cell(fmt.difference(m.kind, d.absolute), d.absolute, class_="absolute"),
            fmt.cell(
                fmt.interval(
                    fmt.difference(m.kind, d.absolute_interval.low),
                    fmt.difference(m.kind, d.absolute_interval.high),
                ),
                None,
            ),
            fmt.cell(fmt.percent(d.relative, signed=True), d.relative, class_="relative"),
            fmt.cell(fmt.p_value(d.p_value), d.p_value, class_="p"),
        ]
        cells.append(h("td", None, verdict))
    return h("tr", {"data_variant": v.id}, cells)


#: Per metric kind: its value column's heading, and what the value is.
_COLUMN = {"mean": "Mean", "proportion": "Rate", "quantile": "Percentile"}
_WHAT = {
    "mean": "mean per subject",
    "proportion": "share of subjects",
    "quantile": "percentile of records, interval over subjects",
}


def _metric(results: Results, name: str) -> Markup:
    kind = results.variants[0].metrics[name].kind
    rows = [_metric_row(results, v, i, name) for i, v in enumerate(results.variants)]
    head = [
        "Variant",
        "Subjects",
        _COLUMN[kind],
        "Interval",
        "\u0394 vs control",
        "\u0394 interval",
        "Relative",
        "p-value",
        "Significant",
    ]
    whiskers = [
        _charts.Whisker(
            v.name,
            v.metrics[name].value,
            v.metrics[name].interval.low,
            v.metrics[name].interval.high,
            _charts.colour(i),
        )
        for i, v in enumerate(results.variants)
    ]
    show = fmt.percent if kind == "proportion" else fmt.plain
    what = _WHAT[kind]
    chart = _charts.interval_chart(whiskers, show, f"{name}: {what} with interval, per variant")
    return h(
        "div",
        {"class": "metric", "data_metric": name},
        h("h3", None, name, h("span", {"class": "note"}, f" \u00b7 {what}")),
        _table(head, rows),
        chart,
    )


def _metrics(results: Results) -> Markup:
    names = list(results.variants[0].metrics) if results.variants else []
    body = [_metric(results, n) for n in names] or [h("p", None, "No metrics recorded yet.")]
    level = f"{1 - results.alpha:.0%}"
    note = (
        f"Intervals are {level} intervals. Differences are each variant minus the control;"
        " relative is variant / control \u2212 1. Every variant and metric is tested at"
        " \u03b1 without correction for multiple comparisons."
    )
    return h(
        "section",
        {"id": "results"},
        h("h2", None, "Results per metric"),
        *body,
        h("p", {"class": "note"}, note),
    )


def _exact(x: float | None) -> str | None:
    return None if x is None else repr(x)


def _percentile_cells(v: VariantResult, p: str, x: float | None) -> list[Markup]:
    """A percentile's value and its interval (over subjects, docs/statistics.md 3.1)."""
    m = v.metrics.get(f"latency_{p}_ms")
    low, high = (m.interval.low, m.interval.high) if m else (None, None)
    shown = fmt.interval(fmt.milliseconds(low), fmt.milliseconds(high))
    bounds = {"class": f"{p}-interval", "data_low": _exact(low), "data_high": _exact(high)}
    return [fmt.cell(fmt.milliseconds(x), x, class_=p), h("td", bounds, shown)]


def _latency(results: Results) -> Markup:
    rows, groups = [], []
    for i, v in enumerate(results.variants):
        lat = v.latency
        values = [lat.p50_ms, lat.p95_ms, lat.p99_ms] if lat else [None, None, None]
        groups.append((v.name, values))
        rows.append(
            h(
                "tr",
                {"data_variant": v.id},
                h("td", None, _variant_label(v, i)),
                [
                    _percentile_cells(v, c, x)
                    for x, c in zip(values, ("p50", "p95", "p99"), strict=True)
                ],
            )
        )
    chart = _charts.bar_chart(
        groups, ["p50", "p95", "p99"], fmt.milliseconds, "Latency percentiles per variant"
    )
    level = f"{1 - results.alpha:.0%}"
    head = ["Variant"] + [c for p in ("p50", "p95", "p99") for c in (p, f"{level} interval")]
    return h(
        "section",
        {"id": "latency"},
        h("h2", None, "Latency per record"),
        _table(head, rows),
        h(
            "p",
            {"class": "note"},
            f"Each percentile's {level} interval allows for the records of one subject being"
            f" alike; a bound beyond the records (a p99 of few records) reads {fmt.MISSING}.",
        ),
        chart,
    )


def _over_time(view: ExperimentView) -> Markup:
    if not view.series:
        return Markup("")
    lines = [
        _charts.Line(v.name, [p.subjects.get(v.id, 0) for p in view.series], v.id)
        for v in view.results.variants
    ]
    chart = _charts.line_chart([p.at for p in view.series], lines, "Subjects over time")
    return h("section", {"id": "over-time"}, h("h2", None, "Subjects over time"), chart)


def _methods(results: Results) -> Markup:
    items = [
        join([h("dt", None, k.replace("_", " ")), h("dd", None, v)])
        for k, v in _method_items(results)
    ]
    tau = (
        []
        if results.tau is None
        else [h("dt", None, "mixing scale \u03c4"), h("dd", None, f"{results.tau:g}")]
    )
    return h(
        "footer",
        {"id": "methods"},
        h("h2", None, "Methods"),
        h("dl", None, items, tau),
        h("p", None, "Formulas and references: docs/statistics.md in banyan-sdk."),
    )


def _method_items(results: Results) -> list[tuple[str, str]]:
    """The methods of a result as (what, method) pairs."""
    methods = results.methods
    return [(f, getattr(methods, f)) for f in methods.__struct_fields__]


def results_page(view: ExperimentView, project_id: str) -> bytes:
    """One experiment's results page."""
    crumbs = join(
        [
            h("a", {"href": f"{project_path(project_id)}/experiments"}, view.project_name),
            " \u203a ",
            view.info.name or view.info.id,
        ]
    )
    return page(
        f"{view.info.name} \u00b7 banyan",
        crumbs,
        _headline(view),
        _srm(view.results),
        _variants(view.results),
        _summary(view.results),
        _metrics(view.results),
        _latency(view.results),
        _over_time(view),
        _methods(view.results),
    )


def _list_row(project_id: str, e: ExperimentInfo) -> Markup:
    link = h("a", {"href": experiment_path(project_id, e.id)}, e.name or e.id)
    return h(
        "tr",
        {"data_experiment": e.id},
        h("td", None, link),
        h("td", None, e.prompt),
        h("td", None, e.branch),
        h("td", None, _status(e.status)),
        fmt.cell(str(e.variants), e.variants),
        h("td", None, _date(e.created_at)),
    )


def list_page(project: ProjectView) -> bytes:
    """A project's experiments, newest first, each linking to its results page."""
    rows = [
        _list_row(project.id, e) for e in sorted(project.experiments, key=lambda e: -e.created_at)
    ]
    body = (
        _table(
            ["Experiment", "Prompt", "Branch", "Status", "Variants", "Created"], rows, class_="list"
        )
        if rows
        else h("p", None, "No experiments yet.")
    )
    return page(
        f"{project.name} \u00b7 experiments \u00b7 banyan",
        h("span", None, project.name),
        h("h1", None, "Experiments"),
        h("section", {"id": "experiments"}, body),
    )
