"""Experiment results on the server: the subject column, modes, and the link to the page."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from serverproc import Server

from banyan.server.web import experiment_path, project_path

from .helpers import (
    body,
    call,
    create_prompt,
    post_batch,
    record,
    schema_3_database,
    unique,
    upgraded,
)


def _experiment(server: Server) -> dict[str, Any]:
    prompt = unique("results")
    create_prompt(server, prompt, "one", "two")
    payload = {"prompt": prompt, "variants": [{"version": "1", "percentage": 50},
                                              {"version": "2", "percentage": 50}]}  # fmt: skip
    return dict(call(server, "POST", "/api/v2/experiments", json=payload).json())


def test_schema_3_database_gains_the_subject_column(tmp_path: Path) -> None:
    """A schema 3 database is upgraded in place: its logs keep their rows and gain a subject."""
    with upgraded(tmp_path / "v3.db", schema_3_database) as conn:
        assert conn.execute("SELECT id, subject FROM logs").fetchall() == [("r", None)]
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT subject FROM logs WHERE project_id = 'p'"
            " AND experiment_id = 'e' GROUP BY experiment_version_id, subject"
        ).fetchall()
        assert "logs_experiment_subjects" in str(plan)


def test_results_are_per_subject_and_have_a_sequential_mode(shared_server: Server) -> None:
    """One heavy subject counts once; ?mode=sequential names its mode; another mode is a 400."""
    exp = _experiment(shared_server)
    first, second = (v["id"] for v in exp["variants"])
    records = [
        record(experiment_id=exp["id"], experiment_version_id=first, duration_ms=10.0,
               sticky_value="heavy")
        for _ in range(50)
    ] + [record(experiment_id=exp["id"], experiment_version_id=second, duration_ms=20.0,
                sticky_value="light")]  # fmt: skip
    assert post_batch(shared_server, body(records)).json()["accepted"] == 51
    path = f"/api/v2/experiments/{exp['id']}/results"
    fixed = call(shared_server, "GET", path).json()
    assert (fixed["mode"], fixed["subjects"], fixed["records"]) == ("fixed-horizon", 2, 51)
    assert [v["subjects"] for v in fixed["variants"]] == [1, 1]
    sequential = call(shared_server, "GET", path, params={"mode": "sequential"}).json()
    assert (sequential["mode"], sequential["tau"] is not None) == ("sequential", True)
    assert call(shared_server, "GET", path, params={"mode": "bayes"}).status_code == 400


def test_the_link_needs_a_key_and_opens_the_pages(shared_server: Server) -> None:
    """A key's link opens the results page and the project's list; without a key, 401."""
    exp = _experiment(shared_server)
    path = f"/api/v2/experiments/{exp['id']}/link"
    assert httpx.post(f"{shared_server.base_url}{path}").status_code == 401
    url = call(shared_server, "POST", path).json()["url"]
    with httpx.Client() as browser:
        opened = browser.get(url)
        assert opened.status_code == 200
        project = parse_qs(urlsplit(url).query)["project"][0]
        page = browser.get(f"{shared_server.base_url}{experiment_path(project, exp['id'])}")
        assert page.status_code == 200
        assert exp["name"] in page.text
        listing = browser.get(f"{shared_server.base_url}{project_path(project)}/experiments")
        assert listing.status_code == 200
        assert exp["name"] in listing.text
    assert httpx.get(f"{shared_server.base_url}/ui/projects/x/experiments").status_code == 401


def test_the_link_answer_names_its_lifetime(shared_server: Server) -> None:
    """POST .../link answers {url, expires_in: 900}; an id that cannot be one is 400."""
    exp = _experiment(shared_server)
    answer = call(shared_server, "POST", f"/api/v2/experiments/{exp['id']}/link").json()
    assert set(answer) == {"url", "expires_in"}
    assert answer["expires_in"] == 15 * 60
    assert urlsplit(answer["url"]).netloc == urlsplit(shared_server.base_url).netloc
    assert call(shared_server, "POST", "/api/v2/experiments/bad%20id/link").status_code == 400


def test_an_experiment_carries_its_creation_time(shared_server: Server) -> None:
    """An experiment's JSON has created_at (epoch seconds), the same from every endpoint."""
    before = time.time()
    exp = _experiment(shared_server)
    assert before - 1 <= exp["created_at"] <= time.time() + 1
    listed = call(shared_server, "GET", "/api/v2/experiments").json()["experiments"]
    assert {e["id"]: e["created_at"] for e in listed}[exp["id"]] == exp["created_at"]
    found = call(shared_server, "GET", f"/api/v2/experiments/{exp['id']}/results").json()
    assert found["experiment"]["created_at"] == exp["created_at"]


def test_importing_the_app_does_not_load_scipy_or_numpy() -> None:
    """``import banyan.server._app`` leaves scipy and numpy unimported (the analysis is lazy)."""
    code = (
        "import sys, banyan.server._app;"
        "assert not {'scipy', 'numpy'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_unmatched_counts_records_with_a_subject_and_no_variant_as_null(
    shared_server: Server,
) -> None:
    """A record of the experiment without experiment_version_id is unmatched under null;
    records without a subject count nowhere."""
    exp = _experiment(shared_server)
    records = [
        record(experiment_id=exp["id"], sticky_value="u1", duration_ms=1.0),
        record(experiment_id=exp["id"], experiment_version_id="var_gone", duration_ms=1.0),
    ]
    assert post_batch(shared_server, body(records)).json()["accepted"] == 2
    results = call(shared_server, "GET", f"/api/v2/experiments/{exp['id']}/results").json()
    assert results["unmatched"] == [{"variant": None, "records": 1}]
    assert results["records"] == 0
