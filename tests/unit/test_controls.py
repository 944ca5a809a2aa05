"""Production controls (#16): before_send, sampling, the off switch, debug, environment."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakes import status

import banyan
from banyan import _controls, _default, _warn
from banyan.testing import capture

EMAIL = "ada@example.com"


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No BANYAN_ variables, warnings not yet given, the banyan logger as it was."""
    for name in [n for n in os.environ if n.startswith("BANYAN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(_default._Env, "tried", False)
    logger = logging.getLogger("banyan")
    handlers, level = list(logger.handlers), logger.level
    _warn.forget()
    yield
    _warn.forget()
    logger.handlers[:] = handlers
    logger.setLevel(level)


def _upper(event: banyan.LogEvent) -> banyan.LogEvent:
    if event["kind"] == "prompt":
        event["input"] = event["input"].upper()
        event["metadata"] = {"seen": event["prompt_name"]}
    return event


def test_before_send_changes_the_record_that_is_sent() -> None:
    """before_send's returned fields are what the backend receives, prompt fields visible to it."""
    with capture(prompts={"greet": "Hi"}, before_send=_upper) as backend:
        prompt = banyan.get_prompt("greet")
        assert banyan.log_prompt("hello", "out", prompt_data=prompt, metadata={"a": 1})
        logged = backend.logged
    assert logged[0]["input"] == "HELLO"
    assert logged[0]["metadata"] == {"seen": "greet"}


def test_before_send_returning_none_drops_and_counts() -> None:
    """A hook returning None drops the record, counted as before_send; flush stays True."""
    with capture(before_send=lambda event: None) as backend:
        assert banyan.log_prompt("in", "out") is True
        assert banyan.flush(5) is True
        assert backend.logged == []
        assert banyan.get_stats()["dropped"]["before_send"] == 1


def test_before_send_that_raises_drops_counts_and_warns_once() -> None:
    """A raising hook never sends the record, counts before_send_error and warns once."""

    def broken(event: banyan.LogEvent) -> banyan.LogEvent:
        raise RuntimeError("oops")

    with capture(before_send=broken) as backend:
        with pytest.warns(banyan.BanyanWarning, match="before_send"):
            assert banyan.log_prompt(EMAIL, "out") is False
        assert banyan.log_prompt(EMAIL, "out") is False  # no second warning (error filter)
        assert backend.logged == []
        assert banyan.get_stats()["dropped"]["before_send_error"] == 2


@pytest.mark.parametrize("mode", ["background", "blocking", "synchronous", "durable"])
def test_before_send_runs_on_every_path(mode: str, tmp_path: Path) -> None:
    """The hook redacts in background, blocking, synchronous and durable mode alike."""
    options: dict[str, Any] = {"background_thread": mode not in {"background", "durable"}}
    if mode == "durable":
        options.update(durability="durable", spool_dir=str(tmp_path / "spool"))
    with capture(before_send=banyan.redact_emails, **options) as backend:
        banyan.log_prompt(
            EMAIL, f"to {EMAIL}", metadata={"who": [EMAIL]}, blocking=mode == "blocking"
        )
        logged = backend.logged
    assert logged[0]["input"] == "[email]"
    assert logged[0]["output"] == "to [email]"
    assert logged[0]["metadata"] == {"who": ["[email]"]}


def test_no_hook_and_full_rate_means_no_gate() -> None:
    """Without before_send and at sample_rate 1.0 log_prompt has nothing extra to run."""
    with capture() as backend:
        assert backend.logger is not None
        assert backend.logger._gate is None


def test_disabled_starts_no_thread_and_creates_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """enabled=False: no thread, no spool directory; log_prompt True and counted as disabled."""
    # Starts recorded, not threads counted: a thread of an earlier test may end meanwhile.
    started: list[str] = []
    monkeypatch.setattr(threading.Thread, "start", lambda thread: started.append(thread.name))
    spool = tmp_path / "spool"
    logger = banyan.PromptStackLogger(
        enabled=False, spool_dir=str(spool), cache_dir=str(tmp_path / "c")
    )
    assert logger.log_prompt("in", "out") is True
    assert logger.log_prompt("in", "out", blocking=True) is True
    assert logger.flush(1) is True
    assert started == []
    assert not spool.exists()
    assert not (tmp_path / "c").exists()
    stats = logger.get_stats()
    assert stats["dropped"]["disabled"] == 2
    assert stats["logs_sent"] == 0
    assert logger.shutdown(1) is True


def test_banyan_disabled_environment_switches_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """BANYAN_DISABLED=1 turns a configured SDK off, with no key needed."""
    monkeypatch.setenv("BANYAN_DISABLED", "1")
    logger = banyan.configure()
    assert logger.config.enabled is False
    assert banyan.log_prompt("in", "out") is True
    assert banyan.get_stats()["dropped"]["disabled"] == 1


def test_disabled_get_prompt_serves_the_fallback_or_none() -> None:
    """enabled=False: get_prompt returns the fallback (text or PromptData), else None."""
    banyan.configure(enabled=False)
    assert banyan.get_prompt("x") is None
    assert banyan.get_prompt("x", fallback="fb").content == "fb"
    given = banyan.PromptData(content="c", name="x")
    assert banyan.get_prompt("x", fallback=given) is given


def test_unconfigured_get_prompt_serves_the_fallback_with_one_warning() -> None:
    """Before configure(), get_prompt with a fallback serves it, warning once; without raises."""
    with pytest.warns(banyan.BanyanWarning, match="configure"):
        assert banyan.get_prompt("x", fallback="fb").content == "fb"
    assert banyan.get_prompt("y", fallback="fb2").content == "fb2"
    with pytest.raises(banyan.NotConfiguredError):
        banyan.get_prompt("x")


def test_fallback_covers_a_prompt_that_does_not_exist() -> None:
    """A 404 with fallback= given serves the fallback; without one, None."""
    with capture(prompts={}):
        assert banyan.get_prompt("no-such") is None
        found = banyan.get_prompt("no-such", fallback="default text")
        assert found.content == "default text"
        assert found.name == "no-such"


def test_debug_attaches_a_stderr_handler(capsys: pytest.CaptureFixture[str]) -> None:
    """debug=True makes the banyan logger write to stderr."""
    banyan.PromptStackLogger(enabled=False, debug=True)
    logging.getLogger("banyan").warning("visible")
    assert "visible" in capsys.readouterr().err


def test_a_wrong_key_is_warned_about_once(make_logger: Any) -> None:
    """A 401 is reported through warnings (visible without logging), once."""
    logger, _ = make_logger(status(401), status(401), background_thread=False, spool_dir=False)
    logger.log_prompt("in", "out")
    with pytest.warns(banyan.BanyanWarning, match="API key"):
        assert logger.flush(5) is False
    logger.log_prompt("in", "out")
    logger.flush(5)
    assert logger.get_stats()["dropped"]["unauthorized"] == 2


@pytest.mark.parametrize("rate", [0.0, 1.5, -0.1, True, "0.5"])
def test_sample_rate_is_validated(rate: Any) -> None:
    """sample_rate outside 0.0..1.0, a bool or text is a ConfigurationError."""
    with (
        pytest.raises(banyan.ConfigurationError, match="sample_rate") if rate != 0.0 else _nothing()
    ):
        banyan.PromptStackLogger(api_key="psk_x", sample_rate=rate, spool_dir=False)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_sample_rate_zero_sends_nothing_and_counts() -> None:
    """sample_rate=0.0 sends no record and counts each as sampled."""
    with capture(sample_rate=0.0) as backend:
        for _ in range(5):
            assert banyan.log_prompt("in", "out") is True
        assert backend.logged == []
        assert banyan.get_stats()["dropped"]["sampled"] == 5


def test_sampling_keeps_a_subject_in_or_out_for_every_record() -> None:
    """With a sticky subject, every record of one subject is kept or every one dropped."""
    with capture(sample_rate=0.5) as backend:
        for user in range(40):
            for _ in range(3):
                prompt = banyan.PromptData(content="c", name="p", experiment_id="e",
                                           sticky_key="user", sticky_value=str(user))  # fmt: skip
                banyan.log_prompt("in", "out", prompt_data=prompt)
        logged = backend.logged
    kept = [r["sticky_value"] for r in logged]
    assert all(kept.count(user) == 3 for user in set(kept))
    assert 0 < len(set(kept)) < 40
    assert all(r["metadata"]["banyan.sample_rate"] == 0.5 for r in logged)


def test_sampling_without_subject_is_per_record() -> None:
    """Without a subject, about sample_rate of the records are kept, all counted."""
    with capture(sample_rate=0.5) as backend:
        for _ in range(400):
            banyan.log_prompt("in", "out")
        kept = len(backend.logged)
        assert kept + banyan.get_stats()["dropped"]["sampled"] == 400
    assert 100 < kept < 300


def test_a_score_by_record_id_follows_its_records_sampling() -> None:
    """Without a subject the decision hashes the record's id: every kept score by record_id
    names a kept record and every kept record keeps its score, in any logger."""
    ids = [f"answer-{n}" for n in range(200)]
    runs = []
    for _ in range(2):
        with capture(sample_rate=0.5) as backend:
            for record_id in ids:
                banyan.log_prompt("in", "out", record_id=record_id)
                banyan.log_score("stars", 4, record_id=record_id)
            logged = backend.logged
            dropped = banyan.get_stats()["dropped"]["sampled"]
        records = [r["id"] for r in logged if "kind" not in r]
        scores = [r["record_id"] for r in logged if r.get("kind") == "score"]
        assert records == scores
        assert 50 < len(records) < 150
        assert dropped == 2 * (200 - len(records))
        runs.append(records)
    assert runs[0] == runs[1]  # deterministic: the same ids, the same decisions


def test_a_score_by_record_id_follows_its_subjects_sampling() -> None:
    """A score given only record_id follows its record's decision, made by the record's subject
    (#16): every kept score names a kept record, every kept record keeps its score."""
    with capture(sample_rate=0.5) as backend:
        for user in range(200):
            prompt = banyan.PromptData(content="c", name="p", experiment_id="e",
                                       sticky_key="user", sticky_value=f"user-{user}")  # fmt: skip
            banyan.log_prompt("in", "out", prompt_data=prompt, record_id=f"answer-{user}")
            banyan.log_score("stars", 4, record_id=f"answer-{user}")
        logged = backend.logged
    records = [r["id"] for r in logged if "kind" not in r]
    scores = [r["record_id"] for r in logged if r.get("kind") == "score"]
    assert records == scores
    assert 50 < len(records) < 150


def test_remembered_sampling_decisions_are_bounded(make_logger: Any) -> None:
    """The decisions kept for scores by record_id are the last REMEMBERED records' only."""
    logger, _ = make_logger(sample_rate=0.5)
    prompt = banyan.PromptData(content="c", name="p", experiment_id="e", sticky_key="user",
                               sticky_value="u")  # fmt: skip
    for n in range(_controls.REMEMBERED + 10):
        logger.log_prompt("in", "out", prompt_data=prompt, record_id=f"answer-{n}")
    assert logger._gate is not None
    assert len(logger._gate._decisions) == _controls.REMEMBERED
    assert "answer-9" not in logger._gate._decisions
    assert f"answer-{_controls.REMEMBERED + 9}" in logger._gate._decisions


def test_explicit_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """An argument given explicitly beats its BANYAN_ variable."""
    monkeypatch.setenv("BANYAN_MAX_RETRIES", "7")
    logger = banyan.PromptStackLogger(api_key="psk_x", max_retries=1, enabled=False)
    assert logger.config.max_retries == 1


@pytest.mark.parametrize(("variable", "value"), [("BANYAN_MAX_RETRIES", "many"),
                                                 ("BANYAN_DEBUG", "perhaps"),
                                                 ("BANYAN_SAMPLE_RATE", "2")])  # fmt: skip
def test_a_bad_environment_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    """A BANYAN_ variable that does not parse raises ConfigurationError naming it."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(banyan.ConfigurationError, match=variable):
        banyan.PromptStackLogger(api_key="psk_x", enabled=False)


def test_logger_is_a_context_manager() -> None:
    """`with PromptStackLogger(...)` shuts the logger down on exit."""
    with banyan.PromptStackLogger(enabled=False) as logger:
        logger.log_prompt("in", "out")
    assert logger._closed


def test_logger_is_an_async_context_manager() -> None:
    """`async with` shuts down through ashutdown, without blocking the loop."""

    async def main() -> banyan.PromptStackLogger:
        async with banyan.PromptStackLogger(enabled=False) as logger:
            assert await logger.aflush(1)
        assert await logger.ashutdown(1)
        return logger

    assert asyncio.run(main())._closed


def test_every_option_has_a_type() -> None:
    """configure's typed options are exactly Config's fields (a new option must be typed)."""
    from banyan._config import _FIELDS
    from banyan._types import ConfigureOptions

    typed = ConfigureOptions.__required_keys__ | ConfigureOptions.__optional_keys__
    assert typed == _FIELDS - {"api_key", "base_url", "project_id"}


def test_banyan_disabled_needs_no_configure_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """With BANYAN_DISABLED=1 and no key, the module functions work off without configure()."""
    monkeypatch.setenv("BANYAN_DISABLED", "1")
    assert banyan.log_prompt("in", "out") is True
    assert banyan.get_prompt("x") is None
    assert banyan.get_stats()["dropped"]["disabled"] == 1


def test_disabled_aget_prompt_and_experiment_make_no_request() -> None:
    """enabled=False: aget_prompt serves the fallback and experiment() returns None, offline."""
    logger = banyan.PromptStackLogger(enabled=False, base_url="http://127.0.0.1:9")
    found = asyncio.run(logger.aget_prompt("x", fallback="fb"))
    assert found.content == "fb"
    assert logger.experiment("exp", "user_id", "u1") is None
    assert logger.get_stats()["prompt_errors"] == 0
    assert logger.get_stats()["prompt_cache"]["misses"] == 0
