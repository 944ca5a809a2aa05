"""Log OpenAI chat completions by wrapping the client: input, output, model, duration, usage.

::

    import banyan
    from openai import OpenAI
    from banyan.integrations.openai import wrap

    client = wrap(OpenAI())
    prompt = banyan.get_prompt("support-reply", sticky_context={"user_id": user})
    reply = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "system", "content": prompt.content}, {"role": "user", "content": q}],
        banyan_prompt=prompt,  # taken out before OpenAI sees the call
    )

``wrap`` instruments ``client.chat.completions.create`` on that client (sync
or async) and returns the same client. Every call is logged once: the
messages as ``input`` (JSON), the reply's text as ``output`` (assembled from
a ``stream=True`` response as it is consumed, logged when it ends), the
requested ``model``, ``duration_ms``, token usage in ``metadata["usage"]``
(streams report it with ``stream_options={"include_usage": True}``) and the
prompt's experiment context. ``banyan_metadata={...}`` adds to the
metadata. An error is logged with ``metadata["error"]`` and re-raised as it
was; what the call returns is unchanged. The ``openai`` package is never
imported here.
"""

from __future__ import annotations

from typing import Any, TypeVar

from banyan.integrations import _llm

C = TypeVar("C")


def _usage(usage: Any) -> dict[str, int] | None:
    if usage is None:
        return None
    return _llm.usage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens)


class _Reader:
    provider = "openai"

    def input(self, kwargs: dict[str, Any]) -> Any:
        return kwargs.get("messages")

    def response(self, response: Any, call: _llm.Call) -> None:
        if response.choices:
            call.parts.append(response.choices[0].message.content or "")
        call.usage = _usage(response.usage)

    def event(self, chunk: Any, call: _llm.Call) -> None:
        for choice in chunk.choices:
            if choice.index == 0 and choice.delta.content:
                call.parts.append(choice.delta.content)
        if chunk.usage is not None:
            call.usage = _usage(chunk.usage)


def wrap(client: C, logger: Any = None) -> C:
    """Log every ``client.chat.completions.create`` call; returns ``client`` itself.

    ``logger``: a :class:`~banyan.PromptStackLogger` to log through (default:
    the module-level ``banyan.log_prompt``). Wrapping twice is harmless.
    """
    _llm.instrument(client.chat.completions, _Reader(), logger)  # type: ignore[attr-defined]
    return client
