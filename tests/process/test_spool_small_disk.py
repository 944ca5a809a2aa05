"""The spool on a real filesystem too small for one preallocated 4 MiB segment."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import banyan


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (needs root and mount(8); skipped where refused, failed under CI)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs", str(mount)],
                          capture_output=True, check=False, timeout=30)  # fmt: skip
    if done.returncode:
        reason = f"cannot mount a tmpfs here: {done.stderr.decode().strip()}"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {reason}")
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=30)


def test_buffered_mode_spools_on_a_3_mib_tmpfs(tmpfs: Path) -> None:
    """Issue 14 item 8: 300 records of 1 KB, server down, 3 MiB free: all spooled, none lost."""
    logger = banyan.PromptStackLogger(
        "psk_small", "http://127.0.0.1:9", spool_dir=str(tmpfs / "sp"), max_retries=0
    )
    try:
        assert all(logger.log_prompt(f"i {n}", "o" * 1000) for n in range(300))
        assert logger.flush(10)
        stats = logger.get_stats()
        assert (stats["spooled"], stats["logs_dropped"]) == (300, 0), stats["last_error"]
    finally:
        logger.shutdown(0)
