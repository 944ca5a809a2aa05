"""A fixed sample of mutants stays killed, so the mutation figure cannot decay unseen.

The full run is `make mutate` (docs/mutation.json). mutmut names a mutant by its
function and position: an edit may renumber them, and then this test says so.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from mutate import MODULES, ROOT, U, mutate
from required import unavailable

#: Mutants that once survived every test (issue 21), by module.
SAMPLE = {
    "delivery": [
        "banyan._delivery.xǁDeliveryǁ_backoff__mutmut_4",  # no max_retry_delay cap
        "banyan._delivery.xǁDeliveryǁ_backoff__mutmut_8",  # another exponent
        "banyan._delivery.xǁDeliveryǁ_backoff__mutmut_12",  # divided by the jitter
        "banyan._delivery.xǁDeliveryǁ_backoff__mutmut_17",  # jitter range moved
        "banyan._delivery.xǁDeliveryǁ_probe__mutmut_30",  # a probe's 404 not heeded
        "banyan._delivery.xǁDeliveryǁ_send_legacy__mutmut_66",  # a failed 1.0.1 send is True
    ],
    "failures": [
        "banyan._failures.x_refused__mutmut_22",  # one warning for every refused status
    ],
    "transport": [
        "banyan._transport.x_retry_after_seconds__mutmut_6",  # seconds floored at 1
        "banyan._transport.x_retry_after_seconds__mutmut_13",  # HTTP-date sign flipped
    ],
    "ring": [
        "banyan._ring.xǁRingǁ_grant__mutmut_29",  # credit not bounded by records
        "banyan._ring.xǁRingǁpush__mutmut_4",  # taken bytes still counted
        "banyan._ring.xǁRingǁclose__mutmut_4",  # a closed ring takes 1 byte
    ],
    "ledger": [
        "banyan._ledger.xǁLedgerǁ_count__mutmut_7",  # an over-counting tally counted twice
        "banyan._ledger.xǁLedgerǁspilling__mutmut_11",  # spooled by delivery after close began
        "banyan._ledger.xǁLedgerǁabandon__mutmut_10",  # waits a second past its timeout
        "banyan._ledger.xǁLedgerǁgive_up__mutmut_6",  # a batch settled late breaks give_up
    ],
    "pipeline": [
        "banyan._pipeline.x_remaining__mutmut_5",  # never less than a second left
        "banyan._pipeline.xǁPipelineǁsend_now__mutmut_12",  # a blocking send's deadline
        "banyan._pipeline.xǁPipelineǁ_refused__mutmut_16",  # a full ring does not spool
        "banyan._pipeline.xǁPipelineǁ_refused__mutmut_18",  # too_large at exactly the bound
        "banyan._pipeline.xǁPipelineǁ_flush__mutmut_15",  # buffered flush waits for replay
    ],
    "ingest": [
        "banyan.server._ingest.x__gunzip__mutmut_2",  # one gzip member too many
        "banyan.server._ingest.x__gunzip__mutmut_11",  # gzip bomb: no max_length
        "banyan.server._ingest.x__gunzip__mutmut_30",  # exactly the limit is too big
    ],
    "logs": [
        "banyan.server._logs.x__page__mutmut_6",  # the cursor drops the filters
        "banyan.server._logs.x__page__mutmut_37",  # a next cursor after the last page
    ],
}

#: The tests that kill a module's sample, where fewer than its ``MODULES`` tests do.
KILLERS = {
    "ledger": [U + "test_ledger_mutants.py"],
    "pipeline": [U + "test_pipeline_mutants.py"],
    "ingest": ["tests/server/test_ingest_inprocess.py"],
    "logs": ["tests/server/test_logs_inprocess.py"],
}


def _require_mutmut() -> None:
    try:
        import mutmut  # noqa: F401
    except ImportError:
        unavailable("mutmut is not installed (the dev group has it: make .venv/.dev)")


def test_a_missing_mutmut_fails_the_sample_where_ci_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without mutmut the sample fails where CI is set (skips elsewhere): it never decays unseen."""
    monkeypatch.setitem(sys.modules, "mutmut", None)
    outcomes = (pytest.fail.Exception, pytest.skip.Exception)
    monkeypatch.setenv("CI", "1")
    with pytest.raises(outcomes, match="mutmut") as failed:
        _require_mutmut()
    monkeypatch.delenv("CI")
    with pytest.raises(outcomes) as skipped:
        _require_mutmut()
    assert (failed.type, skipped.type) == outcomes


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_fixed_sample_of_mutants_is_killed(tmp_path: Path) -> None:
    """Each sampled mutant is killed (or timed out) by its module's fast tests."""
    _require_mutmut()
    for name in ("banyan", "tests"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path)
    files = [MODULES[module][0] for module in SAMPLE]
    tests = sorted({test for module in SAMPLE for test in KILLERS.get(module, MODULES[module][1])})
    names = [name for module in SAMPLE for name in SAMPLE[module]]
    # mutmut checks its setup by making every mutated function raise: a logger's sending
    # thread then dies of it after its test, which would fail the whole run, not one test.
    found = mutate(tmp_path, files, names, [*tests, "-p", "no:threadexception"], limit=600)
    missing = sorted(set(names) - set(found))
    assert not missing, f"renumbered by an edit? pick the sample again: {missing}"
    alive = {name: found[name] for name in names if found[name][0] not in ("killed", "timeout")}
    assert not alive, (tmp_path / "mutants.log").read_text()[-2000:]
