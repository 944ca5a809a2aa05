"""``before_send`` events and the built-in redactors users compose into one.

A redactor takes a :class:`LogEvent`, a prompt record's or a score's, and
returns it with the matches in a record's ``input`` and ``output`` and in the
text inside either kind's ``metadata`` replaced by a placeholder (``[email]``,
``[phone]``, ``[card]``, ``[secret]``). Identifiers and labels (model, prompt
and experiment fields, a score's name and value, the subject) are left alone:
they are not free text. :func:`pseudonymize_subjects` replaces the subject of
both kinds alike, so a pseudonymised subject's scores still join its records.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from typing import Any, Literal, TypedDict


class _PromptFields(TypedDict):
    kind: Literal["prompt"]
    input: str
    output: str
    prompt_id: str | None
    prompt_name: str | None
    version: str | None
    branch_name: str | None
    model: str | None
    metadata: dict[str, Any] | None
    duration_ms: float | None
    experiment_id: str | None
    experiment_version_id: str | None
    sticky_key: str | None
    sticky_value: str | None


class PromptEvent(_PromptFields, total=False):
    """A prompt record (``kind == "prompt"``) as ``before_send`` sees it.

    The usage keys are there only when ``log_prompt`` was given usage or cost.
    """

    input_tokens: int | None
    output_tokens: int | None
    cached_input_tokens: int | None
    #: US dollars.
    cost: float | None


class ScoreEvent(TypedDict):
    """A score (``kind == "score"``) as ``before_send`` sees it; ``name`` and ``value`` are
    labels the results group by, ``sticky_value`` the subject it counts for."""

    kind: Literal["score"]
    name: str
    value: bool | float | str
    record_id: str | None
    experiment_id: str | None
    experiment_version_id: str | None
    sticky_key: str | None
    sticky_value: str | None
    metadata: dict[str, Any] | None


#: What ``before_send`` is given: test ``event["kind"]`` to reach a kind's own fields.
LogEvent = PromptEvent | ScoreEvent
#: A ``before_send`` hook: the event (changed or not) to send it, None to drop it.
BeforeSend = Callable[[LogEvent], "LogEvent | None"]

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# Every pattern starts with a character class or literals, which lets `re` skip ahead in C
# (a leading lookbehind or \b costs ~100 ns a character). Digits are found as runs first;
# the precise card and phone patterns then run on those few short runs only.
_DIGIT_RUN = re.compile(r"[\d+(][\d ().+-]{7,}\d")
# 13 to 19 digits, single spaces or dashes between them; the Luhn check decides.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# International (+...) or grouped numbers ending in a group of 4 digits; 9 to 15 digits
# in all, so years, dates, versions and short ids stay.
_PHONE = re.compile(
    r"(?<![\w.+-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?|\d{1,4}[ .-])?"
    r"\d{2,4}[ .-]?\d{4}(?![\w-])"
)
_SECRET = re.compile(
    r"sk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}"  # OpenAI, Anthropic
    r"|psk_[A-Za-z0-9_]{8,}"  # Banyan
    r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"  # GitHub
    r"|AKIA[0-9A-Z]{16}"  # AWS access key id
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"  # Slack
    r"|AIza[0-9A-Za-z_-]{35}"  # Google
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+"  # JWT
    r"|(Bearer |bearer )[A-Za-z0-9._~+/-]{8,}=*"  # an Authorization header's token
)


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        number = int(char) * (2 if position % 2 else 1)
        total += number - 9 if number > 9 else number
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match[0])
    return "[card]" if _luhn(digits) else match[0]


def _phone(match: re.Match[str]) -> str:
    digits = sum(char.isdigit() for char in match[0])
    return "[phone]" if 9 <= digits <= 15 else match[0]


def _scrub(value: Any, replace: Callable[[str], str], depth: int = 0) -> Any:
    # Metadata is JSON-like: strings inside dicts and lists are replaced, keys kept.
    if isinstance(value, str):
        return replace(value)
    if depth > 32:
        return value
    if isinstance(value, dict):
        return {key: _scrub(item, replace, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item, replace, depth + 1) for item in value]
    return value


def _redactor(replace: Callable[[str], str], name: str, doc: str) -> Callable[[LogEvent], LogEvent]:
    def redact(event: LogEvent) -> LogEvent:
        if event["kind"] == "prompt":
            event["input"] = replace(event["input"])
            event["output"] = replace(event["output"])
        if event["metadata"]:
            event["metadata"] = _scrub(event["metadata"], replace)
        return event

    redact.__name__ = redact.__qualname__ = name
    redact.__doc__ = doc
    return redact


_DIGITS = b"0123456789"
# Literal prefixes of _SECRET: `in` is a fast search in C, a regex scan is not (~10 ns a char).
_SECRET_MARKS = ("sk-", "psk_", "gh", "AKIA", "xox", "AIza", "eyJ", "earer ")


def _digit_count(text: str) -> int:
    # Cards and phones are ASCII digits: count them in C before scanning for them.
    raw = text.encode("utf-8", "surrogatepass")
    return len(raw) - len(raw.translate(None, _DIGITS))


def _emails(text: str) -> str:
    return _EMAIL.sub("[email]", text) if "@" in text else text


def _in_digit_runs(replace: Callable[[str], str], fewest: int) -> Callable[[str], str]:
    def scan(text: str) -> str:
        if _digit_count(text) < fewest:
            return text
        return _DIGIT_RUN.sub(lambda run: replace(run[0]), text)

    return scan


_cards = _in_digit_runs(lambda run: _CARD.sub(_card, run), 13)
_phones = _in_digit_runs(lambda run: _PHONE.sub(_phone, run), 9)
# Cards before phones: a card number has the shape of a long phone number.
_numbers = _in_digit_runs(lambda run: _PHONE.sub(_phone, _CARD.sub(_card, run)), 9)


def _secret(match: re.Match[str]) -> str:
    start = match.start()
    # A key inside a longer word (task-sk-...) is not one of these shapes.
    if start and (match.string[start - 1].isalnum() or match.string[start - 1] == "_"):
        return match[0]
    return f"{match[1]}[secret]" if match[1] else "[secret]"


def _secrets(text: str) -> str:
    for mark in _SECRET_MARKS:
        if mark in text:
            return _SECRET.sub(_secret, text)
    return text


def _everything(text: str) -> str:
    return _numbers(_emails(_secrets(text)))


redact_emails = _redactor(_emails, "redact_emails", "Replace e-mail addresses with ``[email]``.")
redact_card_numbers = _redactor(
    _cards,
    "redact_card_numbers",
    "Replace card numbers (13-19 digits, Luhn-valid) with ``[card]``.",
)
redact_phone_numbers = _redactor(
    _phones,
    "redact_phone_numbers",
    "Replace phone numbers (9-15 digits, grouped or +) with ``[phone]``.",
)
redact_secrets = _redactor(
    _secrets,
    "redact_secrets",
    "Replace API keys and bearer tokens of well-known shapes with ``[secret]``.",
)
redact_pii = _redactor(
    _everything,
    "redact_pii",
    "All the built-in redactors: secrets, e-mails, card and phone numbers.",
)


def pseudonymize_subjects(key: str | bytes) -> Callable[[LogEvent], LogEvent]:
    """A hook that replaces every event's ``sticky_value`` (records and scores alike) with
    its HMAC-SHA256 under ``key`` (32 hex digits).

    One subject keeps one value, so the results still count it once and join its
    scores; without ``key`` nobody can tell who it was. Give every process the same
    key (a secret you keep), or one subject becomes several. Compose it with the
    redactors: ``lambda event: pseudonymize(redact_pii(event))``.
    """
    if not isinstance(key, str | bytes) or not key:
        raise TypeError("pseudonymize_subjects needs a non-empty str or bytes key")
    secret = key.encode() if isinstance(key, str) else key

    def pseudonymize(event: LogEvent) -> LogEvent:
        subject = event["sticky_value"]
        if subject is not None:
            keyed = hmac.new(secret, subject.encode(errors="surrogatepass"), "sha256")
            event["sticky_value"] = keyed.hexdigest()[:32]
        return event

    return pseudonymize
