"""What a test needs from the machine: skipped without it, failed where ``CI`` is set."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def unavailable(message: str) -> NoReturn:
    """The test cannot run here: a skip locally, a failure in CI, where nothing may skip."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set: {message}")
    pytest.skip(message)
