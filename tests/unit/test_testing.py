"""banyan.testing: an application's own tests see what it logged, with no network."""

from __future__ import annotations

import banyan
from banyan import _default
from banyan.testing import capture


def _handle_request(user: str) -> None:
    prompt = banyan.get_prompt("greet", sticky_context={"user_id": user})
    assert prompt is not None
    banyan.log_prompt(input=user, output=prompt.content.format(name=user), prompt_data=prompt,
                      model="m", metadata={"user": user})  # fmt: skip


def test_capture_records_what_the_module_functions_log() -> None:
    """Records logged inside capture() arrive in order with their prompt fields."""
    with capture(prompts={"greet": "Hello {name}"}) as backend:
        _handle_request("ada")
        _handle_request("bob")
        logged = backend.logged
    assert [r["input"] for r in logged] == ["ada", "bob"]
    assert logged[0]["output"] == "Hello ada"
    assert logged[0]["prompt_name"] == "greet"
    assert logged[1]["metadata"] == {"user": "bob"}


def test_capture_answers_unknown_prompts_with_none() -> None:
    """get_prompt of a prompt the fake backend does not have returns None."""
    with capture():
        assert banyan.get_prompt("missing") is None


def test_capture_restores_the_previous_default_logger() -> None:
    """Leaving the block puts back whatever default logger was there before."""
    before = _default._logger
    with capture() as backend:
        assert _default._logger is backend.logger
    assert _default._logger is before


def test_capture_counts_the_records_as_sent() -> None:
    """The pipeline under capture() is the real one: get_stats() counts the sends."""
    with capture() as backend:
        for i in range(25):
            banyan.log_prompt(input=str(i), output="o")
        assert len(backend.logged) == 25
        assert banyan.get_stats()["logs_sent"] == 25


def test_capture_takes_compressed_batches() -> None:
    """compression="gzip" (a production setting under test) still lands in backend.logged."""
    with capture(prompts={"greet": "Hello {name}"}, compression="gzip") as backend:
        _handle_request("ada")
        assert [r["input"] for r in backend.logged] == ["ada"]
