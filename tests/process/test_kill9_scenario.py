"""The kill -9 stress scenario's own verdict (stress/kill9.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTHING_LOGGED = """
import sys
from collections import Counter
from stress.kill9 import report
stats = {"logs_dropped": 0, "replayed": 0, "spool_corrupt_frames": 0, "dropped": {}}
sys.exit(report(Counter(), {"r0-w0": 0, "r1-w0": 0}, stats))
"""


def test_a_run_where_no_worker_logged_anything_fails() -> None:
    """Workers all killed before their first record prove nothing: exit 1, not 'sent 0 ok'."""
    done = subprocess.run([sys.executable, "-c", NOTHING_LOGGED], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert '"ok": false' in done.stdout
