"""Stats' edges other tests pass by (mutants of _stats.py, issue 21)."""

from __future__ import annotations

import logging
import warnings

import pytest

from banyan import _warn
from banyan._stats import DropReason, Stats


def test_a_drop_at_entry_keeps_its_error_as_last_error() -> None:
    """drop_entry's error (any object, as text) becomes last_error."""
    stats = Stats()
    stats.drop_entry(DropReason.ENCODE_ERROR, ValueError("odd"))
    assert stats.last_error == "odd"


def test_a_loud_warning_goes_to_the_logger_as_is_and_to_warnings_once_per_key(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """warn_loudly logs the message unchanged and issues one BanyanWarning per key."""
    _warn.forget()
    stats = Stats()
    with (
        caplog.at_level(logging.WARNING, logger="banyan"),
        warnings.catch_warnings(record=True) as issued,
    ):
        warnings.simplefilter("always")
        stats.warn_loudly("first", "banyan: the key was refused")
        stats.warn_loudly("first", "banyan: the key was refused")
        stats.warn_loudly("second", "banyan: the project was refused")
    assert caplog.messages == ["banyan: the key was refused", "banyan: the project was refused"]
    assert [str(w.message) for w in issued if w.category is _warn.BanyanWarning] == [
        "banyan: the key was refused",
        "banyan: the project was refused",
    ]
    _warn.forget()
