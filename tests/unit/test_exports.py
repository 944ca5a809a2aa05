"""The public surface: exported names and what ``import banyan`` loads."""

from __future__ import annotations

import subprocess
import sys

import banyan

EXPECTED = [
    "AuthenticationError", "BanyanError", "BanyanWarning", "ConfigurationError", "ConnectError",
    "DropReason", "HTTPStatusError", "LogEvent", "NotConfiguredError", "PromptData",
    "PromptEvent", "PromptStackLogger", "ProtocolError", "RequestTimeout", "ScoreError",
    "ScoreEvent", "Statistics", "TransportError",
    "__version__",
    "aflush", "aget_prompt", "ashutdown", "configure", "content_hash", "experiment", "flush",
    "get_prompt", "get_stats", "log", "log_prompt", "log_score", "pseudonymize_subjects",
    "redact_card_numbers", "redact_emails", "redact_phone_numbers", "redact_pii",
    "redact_secrets", "shutdown",
]  # fmt: skip


def test_exported_names_are_exactly_the_public_api() -> None:
    """__all__ lists exactly the documented names, sorted, and each exists."""
    assert banyan.__all__ == EXPECTED
    assert banyan.__all__ == sorted(banyan.__all__)
    for name in banyan.__all__:
        assert hasattr(banyan, name), name


def test_import_banyan_stays_light() -> None:
    """`import banyan` loads neither the server, granian nor httpx."""
    code = (
        "import sys, banyan; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('granian', 'httpx', 'h2') "
        "or m.startswith('banyan.server')]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_error_derives_from_banyan_error() -> None:
    """One exception root: every exported error class subclasses BanyanError."""
    errors = [getattr(banyan, n) for n in banyan.__all__ if n.endswith("Error")]
    assert errors
    assert all(issubclass(e, banyan.BanyanError) for e in errors)
    assert issubclass(banyan.ConfigurationError, ValueError)


def test_log_is_an_alias_of_log_prompt() -> None:
    """banyan.log is banyan.log_prompt, as in 1.0.1."""
    assert banyan.log is banyan.log_prompt
    assert banyan.PromptStackLogger.log is banyan.PromptStackLogger.log_prompt
