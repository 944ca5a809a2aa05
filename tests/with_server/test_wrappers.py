"""The OpenAI and Anthropic wrappers: real SDKs, a fake provider on loopback, records stored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
from fakeprovider import FAILING, INPUT_TOKENS, FakeProvider, running
from serverkit import create_experiment, create_prompt

import banyan
from banyan.integrations import anthropic as banyan_anthropic
from banyan.integrations import openai as banyan_openai

if TYPE_CHECKING:
    from serverproc import Server

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

QUESTION = "where is my order"
ANSWER = "echo: where is my order"
USAGE = {"input_tokens": INPUT_TOKENS, "output_tokens": 5, "total_tokens": INPUT_TOKENS + 5}


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    """A fake provider for one test."""
    with running() as provider:
        yield provider


@pytest.fixture
def prompt(server: Server) -> banyan.PromptData:
    """A prompt routed into a running experiment, with the default logger on ``server``."""
    create_prompt(server, "support", "Be brief.", "Be warm.")
    create_experiment(server, "support")
    banyan.configure(api_key=server.api_key, base_url=server.base_url)
    routed = banyan.get_prompt("support", sticky_context={"user_id": "u1"})
    assert routed is not None
    assert routed.experiment_id is not None
    return routed


def clients(fake: FakeProvider, provider: str, is_async: bool) -> Any:
    """A wrapped SDK client of ``provider`` aimed at the fake."""
    if provider == "openai":
        cls = openai.AsyncOpenAI if is_async else openai.OpenAI
        return banyan_openai.wrap(cls(api_key="sk-test", base_url=f"{fake.url}/v1", max_retries=0))
    cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    return banyan_anthropic.wrap(cls(api_key="sk-test", base_url=fake.url, max_retries=0))


def call(client: Any, provider: str, model: str, stream: bool, **extra: Any) -> Any:
    """The provider's create call with one user message (a coroutine for an async client)."""
    messages = [{"role": "user", "content": QUESTION}]
    if provider == "openai":
        if stream:
            extra["stream_options"] = {"include_usage": True}
        return client.chat.completions.create(
            model=model, messages=messages, stream=stream, **extra
        )
    return client.messages.create(
        model=model, max_tokens=64, system="Be brief.", messages=messages, stream=stream, **extra
    )


def text_of(result: Any, provider: str) -> str:
    """The reply's text from a whole response."""
    if provider == "openai":
        return str(result.choices[0].message.content)
    return "".join(block.text for block in result.content)


def run(provider: str, is_async: bool, stream: bool, fake: FakeProvider, **extra: Any) -> Any:
    """Make one wrapped call and consume it as a user would; what the SDK returned."""
    client = clients(fake, provider, is_async)
    if not is_async:
        with client:
            result = call(client, provider, "m-1", stream, **extra)
            return (result, list(result)) if stream else (result, None)

    async def main() -> Any:
        async with client:
            result = await call(client, provider, "m-1", stream, **extra)
            return (result, [event async for event in result]) if stream else (result, None)

    return asyncio.run(main())


def stored(server: Server) -> list[dict[str, Any]]:
    """Every record the server stored, flushed first."""
    assert banyan.flush(timeout=30)
    return list(server.get("/api/v2/logs").json()["logs"])


CASES = [(p, a, s) for p in ("openai", "anthropic") for a in (False, True) for s in (False, True)]
IDS = [f"{p}-{'async' if a else 'sync'}-{'stream' if s else 'whole'}" for p, a, s in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_call_is_logged_once_with_input_output_usage_and_experiment(
    server: Server, fake: FakeProvider, prompt: banyan.PromptData, case: tuple[str, bool, bool]
) -> None:
    """One record per call: messages, text (streams assembled), model, duration, usage (token
    fields and metadata), context; the SDK's own result back, banyan's keywords removed."""
    provider, is_async, stream = case
    result, events = run(provider, is_async, stream, fake, banyan_prompt=prompt,
                         banyan_metadata={"route": "/support"})  # fmt: skip
    sdk = openai if provider == "openai" else anthropic
    if stream:
        assert type(result).__name__ == ("AsyncStream" if is_async else "Stream")
        assert isinstance(result, sdk.AsyncStream if is_async else sdk.Stream)
        assert events
    else:
        assert text_of(result, provider) == ANSWER
    [record] = stored(server)
    assert record["output"] == ANSWER
    assert json.loads(record["input"])[-1] == {"role": "user", "content": QUESTION}
    assert record["model"] == "m-1"
    assert record["duration_ms"] > 0
    assert record["experiment_id"] == prompt.experiment_id
    assert record["experiment_version_id"] == prompt.experiment_version_id
    metadata = record["metadata"]
    assert metadata["usage"] == USAGE
    assert (record["input_tokens"], record["output_tokens"]) == (INPUT_TOKENS, 5)
    assert metadata["provider"] == provider
    assert metadata["route"] == "/support"
    assert "error" not in metadata
    assert fake.requests == 1


@pytest.mark.parametrize(("provider", "is_async"), [(p, a) for p, a, s in CASES if not s])
def test_a_provider_error_is_logged_and_reraised_untouched(
    server: Server, fake: FakeProvider, prompt: banyan.PromptData, provider: str, is_async: bool
) -> None:
    """The SDK's own exception (same type, same status) reaches the caller; one error record."""
    sdk = openai if provider == "openai" else anthropic
    client = clients(fake, provider, is_async)

    async def main() -> None:
        async with client:
            await call(client, provider, FAILING, False, banyan_prompt=prompt)

    def attempt() -> None:
        if is_async:
            asyncio.run(main())
        with client:
            call(client, provider, FAILING, False, banyan_prompt=prompt)

    with pytest.raises(sdk.BadRequestError) as caught:
        attempt()
    assert caught.value.status_code == 400
    [record] = stored(server)
    assert record["metadata"]["error"] == {"type": "BadRequestError", "status_code": 400}
    assert record["output"] == ""
    assert record["experiment_id"] == prompt.experiment_id


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_stream_closed_early_is_logged_with_what_was_read(
    server: Server, fake: FakeProvider, prompt: banyan.PromptData, provider: str
) -> None:
    """Breaking out of a stream and closing it logs one record: the text read so far, marked."""
    with clients(fake, provider, False) as client:
        stream = call(client, provider, "m-1", True, banyan_prompt=prompt)
        for _ in stream:
            break
        stream.close()
    [record] = stored(server)
    assert record["metadata"]["stream"] == "closed early"
    assert ANSWER.startswith(record["output"])


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_an_async_stream_closed_early_is_logged_once(
    server: Server, fake: FakeProvider, prompt: banyan.PromptData, provider: str
) -> None:
    """`await stream.close()` after a break logs one record, marked closed early."""

    async def main() -> None:
        async with clients(fake, provider, True) as client:
            stream = await call(client, provider, "m-1", True, banyan_prompt=prompt)
            async for _ in stream:
                break
            await stream.close()

    asyncio.run(main())
    [record] = stored(server)
    assert record["metadata"]["stream"] == "closed early"


def test_wrapping_twice_logs_once_and_calls_without_a_prompt_are_logged(
    server: Server, fake: FakeProvider
) -> None:
    """wrap() is idempotent; a call without banyan_prompt is logged without prompt fields."""
    banyan.configure(api_key=server.api_key, base_url=server.base_url)
    with clients(fake, "openai", False) as client:
        banyan_openai.wrap(client)
        call(client, "openai", "m-1", False)
    [record] = stored(server)
    assert "prompt_name" not in record
    assert record["output"] == ANSWER


def test_an_explicit_logger_is_used(server: Server, fake: FakeProvider) -> None:
    """wrap(client, logger=...) logs through that PromptStackLogger, not the default one."""
    logger = banyan.PromptStackLogger(server.api_key, server.base_url)
    raw = anthropic.Anthropic(api_key="sk-test", base_url=fake.url, max_retries=0)
    with banyan_anthropic.wrap(raw, logger=logger) as client:
        call(client, "anthropic", "m-1", False)
    assert logger.shutdown(timeout=30)
    assert server.summary()["stored"] == 1
