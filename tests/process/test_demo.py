"""`banyan demo`, the README's first command, run as a real process."""

from __future__ import annotations

import subprocess
import sys


def test_demo_delivers_every_record_and_reports_the_experiment() -> None:
    """The demo exits 0 with sent = stored + dropped, 0 duplicates and both variants."""
    result = subprocess.run(
        [sys.executable, "-m", "banyan", "demo", "--workers", "2", "--records", "2000"],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "every record accounted for: 2,000 sent = 2,000 stored + 0 dropped" in out
    assert "duplicated           0" in out
    results = out.split("experiment results (per variant)")[1]
    assert "\n  v1 " in results, results
    assert "\n  v2 " in results, results
