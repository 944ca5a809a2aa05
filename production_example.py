"""Banyan in production: configuration, the basic workflow, user-based and content-hash experiments.

Run it against a server, e.g. the reference one::

    banyan serve --api-key psk_local_demo_key_0001 &
    export BANYAN_BASE_URL=http://127.0.0.1:8765 BANYAN_API_KEY=psk_local_demo_key_0001
    python production_example.py

It creates the prompts and experiments it uses through the management API
when they are missing (running it again changes nothing there), logs 17
records and prints what the flush delivered. Replace ``call_model`` with
your LLM call.
"""

from __future__ import annotations

import os
import sys
import time

import httpx

import banyan

WELCOME = "welcome"  # no experiment: the basic workflow
SUPPORT = "support-reply"  # a user-based experiment: each user keeps their variant
FAQ = "faq-answer"  # a content-hash experiment: each question keeps its variant
USERS = [f"user_{n}" for n in range(10)]
QUESTIONS = ["How do I reset my password?", "Can I export my data?", "Do you have an API?"]


def create_if_missing(base_url: str, api_key: str) -> None:
    """The three prompts (two versions each) and two running 50/50 experiments."""
    with httpx.Client(base_url=base_url, headers={"X-API-Key": api_key}, timeout=30) as api:
        for name in (WELCOME, SUPPORT, FAQ):
            api.post("/api/v2/prompts", json={"name": name, "content": f"{name}: be brief."})
            api.post(f"/api/v2/prompts/{name}/versions", json={"content": f"{name}: be warm."})
        for name, sticky_key in ((SUPPORT, "user_id"), (FAQ, "input_hash")):
            variants = [{"version": "1", "percentage": 50}, {"version": "2", "percentage": 50}]
            body = {"prompt": name, "sticky_key": sticky_key, "variants": variants}
            response = api.post("/api/v2/experiments", json=body)
            # 409: an experiment already runs on this prompt (a second run of this script).
            if response.status_code not in (201, 409):
                response.raise_for_status()


def call_model(prompt: str, user_input: str) -> str:
    """Stands in for your LLM call."""
    return f"[{prompt}] Thanks for asking: {user_input!r}"


def basic_workflow() -> None:
    """get_prompt -> your model -> log_prompt, with model, duration and metadata."""
    prompt = banyan.get_prompt(WELCOME, fallback="Welcome! Be brief.")
    assert prompt is not None  # with a fallback, get_prompt always returns a prompt
    user_input = "Hello, I'm a new user!"
    start = time.perf_counter()
    output = call_model(prompt.content, user_input)
    banyan.log_prompt(
        input=user_input,
        output=output,
        prompt_data=prompt,
        model="gpt-4o-mini",
        duration_ms=(time.perf_counter() - start) * 1000,
        metadata={"user_type": "new"},
    )


def user_based_experiment() -> None:
    """Route each user by ``user_id``: the same user always gets the same variant."""
    for user in USERS:
        prompt = banyan.get_prompt(SUPPORT, sticky_context={"user_id": user})
        if prompt is None:
            continue
        context = prompt.get_experiment_context()
        variant = context["variant_name"] if context else "default"
        print(f"{user}: version {prompt.version} ({variant})")
        question = "Where is my order?"
        banyan.log_prompt(question, call_model(prompt.content, question), prompt_data=prompt)


def content_hash_experiment() -> None:
    """Route by the question's content hash: the same text always gets the same variant."""
    for question in QUESTIONS * 2:
        sticky = {"input_hash": banyan.content_hash(question)}
        prompt = banyan.get_prompt(FAQ, sticky_context=sticky)
        if prompt is None:
            continue
        print(f"{question!r}: version {prompt.version}")
        banyan.log_prompt(question, call_model(prompt.content, question), prompt_data=prompt)


def main() -> int:
    """Configure, run the three workflows, flush and shut down; 0 when all was delivered."""
    if not os.environ.get("BANYAN_API_KEY"):
        print("set BANYAN_API_KEY (and BANYAN_BASE_URL for your own server)", file=sys.stderr)
        return 2
    # Once at start-up; the key and URL come from BANYAN_API_KEY and BANYAN_BASE_URL.
    logger = banyan.configure(flush_interval=1.0, atexit_timeout=5.0)
    create_if_missing(logger.config.base_url, logger.config.api_key)
    basic_workflow()
    user_based_experiment()
    content_hash_experiment()
    delivered = banyan.flush(timeout=30)
    stats = banyan.get_stats()
    print(f"delivered: {delivered}, sent: {stats['logs_sent']}, dropped: {stats['logs_dropped']}")
    banyan.shutdown(timeout=30)
    return 0 if delivered else 1


if __name__ == "__main__":
    sys.exit(main())
