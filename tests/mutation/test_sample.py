"""A fixed sample of mutants stays killed, so the mutation figure cannot decay unseen.

The full run is `make mutate` (docs/mutation.json). mutmut names a mutant by its
function and position: an edit may renumber them, and then this test says so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mutate import MODULES, ROOT, mutate

#: Mutants that once survived every test (issue 21), by module.
SAMPLE = {
    "delivery": [
        "banyan._delivery.xǁDeliveryǁ_backoff__mutmut_4",  # no max_retry_delay cap
        "banyan._delivery.xǁDeliveryǁ_backoff__mutmut_8",  # another exponent
        "banyan._delivery.xǁDeliveryǁ_backoff__mutmut_12",  # divided by the jitter
        "banyan._delivery.xǁDeliveryǁ_backoff__mutmut_17",  # jitter range moved
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
}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_fixed_sample_of_mutants_is_killed(tmp_path: Path) -> None:
    """Each sampled mutant is killed (or timed out) by its module's fast tests."""
    pytest.importorskip("mutmut")
    for name in ("banyan", "tests"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(ROOT / "pyproject.toml", tmp_path)
    files = [MODULES[module][0] for module in SAMPLE]
    tests = sorted({test for module in SAMPLE for test in MODULES[module][1]})
    names = [name for module in SAMPLE for name in SAMPLE[module]]
    found = mutate(tmp_path, files, names, tests, limit=600)
    missing = sorted(set(names) - set(found))
    assert not missing, f"renumbered by an edit? pick the sample again: {missing}"
    alive = {name: found[name] for name in names if found[name][0] not in ("killed", "timeout")}
    assert not alive, (tmp_path / "mutants.log").read_text()[-2000:]
