"""The terminal view of an experiment's results: the SRM check first, then the numbers.

It reads the results JSON of ``GET /api/v2/experiments/{id}/results``
(docs/statistics.md); ``--json`` prints that JSON as it is.
"""

from __future__ import annotations

from typing import Any

from banyan._apicli import percent, table


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _interval(bounds: dict[str, float | None]) -> str:
    return f"[{_number(bounds['low'])}, {_number(bounds['high'])}]"


def srm_line(srm: dict[str, Any]) -> str:
    """The sample-ratio check as one line; a flagged split is a warning in capitals."""
    seen = "/".join(map(str, srm["observed"]))
    expected = "/".join(f"{e:.0f}" for e in srm["expected"])
    detail = f"p = {_number(srm['p_value'])}, subjects {seen}, expected {expected}"
    if srm["flagged"]:
        return (f"SAMPLE RATIO MISMATCH ({detail}, threshold {srm['threshold']:g}):"
                " the split is not as configured; do not trust the results below")  # fmt: skip
    return f"sample ratio check: ok ({detail})"


def _variants(data: dict[str, Any]) -> str:
    rows = [
        (v["name"], v["version"], percent(v["weight_bp"]), v["subjects"], v["records"],
         *((v["latency"] or {}).get(f"p{p}_ms") for p in (50, 95, 99)))
        for v in data["variants"]
    ]  # fmt: skip
    headers = ("VARIANT", "VERSION", "WEIGHT", "SUBJECTS", "RECORDS", "P50 MS", "P95 MS", "P99 MS")
    return table(headers, rows)


def _metrics(data: dict[str, Any]) -> str:
    rows = []
    for v in data["variants"]:
        for name, m in v["metrics"].items():
            d = v["versus_control"].get(name)
            versus = ("control", "", "", "") if d is None else (
                _number(d["absolute"]), _interval(d["absolute_interval"]),
                _number(d["relative"]), _number(d["p_value"]))  # fmt: skip
            rows.append((name, v["name"], _number(m["value"]), _interval(m["interval"]), *versus))
    headers = ("METRIC", "VARIANT", "VALUE", "INTERVAL", "DIFF", "DIFF INTERVAL", "RELATIVE", "P")
    return table(headers, rows)


def results_table(data: dict[str, Any]) -> str:
    """The experiment, its SRM check, per-variant traffic and latency, then per-metric results."""
    exp = data["experiment"]
    head = (f"experiment {exp['id']} ({exp['status']}) on {exp['prompt']}@{exp['branch']},"
            f" {data['mode']} statistics, alpha {data['alpha']:g}")  # fmt: skip
    return "\n".join((head, srm_line(data["srm"]), _variants(data), "", _metrics(data)))
