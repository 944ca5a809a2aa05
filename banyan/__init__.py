"""Banyan: versioned prompts, experiments and production logging for LLM apps.

Quick start::

    import banyan

    banyan.configure(api_key="psk_...")
    prompt = banyan.get_prompt("my-prompt", sticky_context={"user_id": "123"})
    banyan.log_prompt(input="hi", output="hello", prompt_data=prompt)
    banyan.flush(timeout=30)
"""

from __future__ import annotations

from banyan._client import PromptStackLogger
from banyan._default import (
    aflush,
    aget_prompt,
    ashutdown,
    configure,
    experiment,
    flush,
    get_prompt,
    get_stats,
    log,
    log_prompt,
    log_score,
    shutdown,
)
from banyan._exceptions import (
    AuthenticationError,
    BanyanError,
    ConfigurationError,
    ConnectError,
    HTTPStatusError,
    NotConfiguredError,
    ProtocolError,
    RequestTimeout,
    ScoreError,
    TransportError,
)
from banyan._promptdata import PromptData
from banyan._redact import (
    LogEvent,
    PromptEvent,
    ScoreEvent,
    pseudonymize_subjects,
    redact_card_numbers,
    redact_emails,
    redact_phone_numbers,
    redact_pii,
    redact_secrets,
)
from banyan._routing import content_hash
from banyan._stats import DropReason
from banyan._types import Statistics
from banyan._warn import BanyanWarning

__version__ = "2.0.0.dev0"

__all__ = [
    "AuthenticationError",
    "BanyanError",
    "BanyanWarning",
    "ConfigurationError",
    "ConnectError",
    "DropReason",
    "HTTPStatusError",
    "LogEvent",
    "NotConfiguredError",
    "PromptData",
    "PromptEvent",
    "PromptStackLogger",
    "ProtocolError",
    "RequestTimeout",
    "ScoreError",
    "ScoreEvent",
    "Statistics",
    "TransportError",
    "__version__",
    "aflush",
    "aget_prompt",
    "ashutdown",
    "configure",
    "content_hash",
    "experiment",
    "flush",
    "get_prompt",
    "get_stats",
    "log",
    "log_prompt",
    "log_score",
    "pseudonymize_subjects",
    "redact_card_numbers",
    "redact_emails",
    "redact_phone_numbers",
    "redact_pii",
    "redact_secrets",
    "shutdown",
]
