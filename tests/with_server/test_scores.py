"""Outcomes from the client to the results (#18 item 1): usage objects, and scores logged later."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anthropic.types import Usage as AnthropicUsage
from openai.types import CompletionUsage
from serverkit import call, create_experiment, create_prompt, stored_records

import banyan

if TYPE_CHECKING:
    from serverproc import Server

USERS = [f"u{i}" for i in range(24)]


def new_logger(server: Server) -> banyan.PromptStackLogger:
    """A logger of its own (as another process would have), no disk cache."""
    return banyan.PromptStackLogger(api_key=server.api_key, base_url=server.base_url,
                                    disk_cache=False)  # fmt: skip


def routed(logger: banyan.PromptStackLogger, prompt: str) -> dict[str, banyan.PromptData]:
    """Every user's prompt, routed by ``logger``."""
    found = {user: logger.get_prompt(prompt, sticky_context={"user_id": user}) for user in USERS}
    assert all(data is not None for data in found.values())
    return {user: data for user, data in found.items() if data is not None}


def metrics(server: Server, experiment_id: str) -> dict[str, dict[str, Any]]:
    """Each variant's metrics (by variant name) from the results API."""
    results = call(server, "GET", f"/api/v2/experiments/{experiment_id}/results").json()
    return {variant["name"]: variant["metrics"] for variant in results["variants"]}


def test_a_later_score_from_another_logger_counts_for_the_subjects_variant(
    server: Server,
) -> None:
    """A score logged by a second logger, from the same subject's prompt_data, counts for the
    variant the first logger served; a score by record_id counts for that record's variant."""
    create_prompt(server, "later", "A", "B")
    experiment = create_experiment(server, "later")
    first = new_logger(server)
    served = routed(first, "later")
    for user, data in served.items():
        first.log_prompt("q", "a", prompt_data=data, duration_ms=5.0, record_id=f"rec-{user}")
    assert first.shutdown(timeout=10)
    later = new_logger(server)
    again = routed(later, "later")
    control = next(d.variant_name for d in served.values())
    for data in again.values():
        later.log_score("accepted", data.variant_name == control, prompt_data=data)
    later.log_score("stars", 4, record_id="rec-u0")
    assert later.shutdown(timeout=10)
    found = metrics(server, experiment["id"])
    for name, per in found.items():
        subjects = sum(1 for d in served.values() if d.variant_name == name)
        accepted = per["score:accepted"]
        assert (accepted["value"], accepted["subjects"]) == (float(name == control), subjects)
    assert found[served["u0"].variant_name or ""]["score:stars"]["value"] == 4.0
    assert later.get_stats()["logs_sent"] == len(USERS) + 1


def test_usage_objects_of_both_sdks_reach_the_results(server: Server) -> None:
    """usage= with the OpenAI and the Anthropic SDK's usage types, and cost=, is stored on the
    record and shows as tokens and cost per variant."""
    create_prompt(server, "tokens", "A", "B")
    experiment = create_experiment(server, "tokens")
    logger = new_logger(server)
    served = routed(logger, "tokens")
    # Parsed from the JSON each API answers, as the SDKs do (older SDKs keep newer fields too).
    openai = CompletionUsage.model_validate(
        {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
         "prompt_tokens_details": {"cached_tokens": 64}}
    )  # fmt: skip
    anthropic = AnthropicUsage.model_validate(
        {"input_tokens": 30, "output_tokens": 7, "cache_read_input_tokens": 10,
         "cache_creation_input_tokens": 0}
    )  # fmt: skip
    control = next(d.variant_name for d in served.values())
    for data in served.values():
        usage: Any = openai if data.variant_name == control else anthropic
        logger.log_prompt("q", "a", prompt_data=data, usage=usage, cost=0.01)
    assert logger.shutdown(timeout=10)
    for name, per in metrics(server, experiment["id"]).items():
        want = (100.0, 20.0) if name == control else (40.0, 7.0)
        assert (per["input_tokens"]["value"], per["output_tokens"]["value"]) == want
        assert abs(per["cost_usd"]["value"] - 0.01) < 1e-9
    stored = {r["cached_input_tokens"] for r in stored_records(server)}
    assert stored == {64, 10}
