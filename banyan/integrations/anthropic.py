"""Log Anthropic messages by wrapping the client: input, output, model, duration, usage.

::

    import banyan
    from anthropic import Anthropic
    from banyan.integrations.anthropic import wrap

    client = wrap(Anthropic())
    prompt = banyan.get_prompt("support-reply", sticky_context={"user_id": user})
    reply = client.messages.create(
        model="claude-3-5-haiku-latest", max_tokens=512, system=prompt.content,
        messages=[{"role": "user", "content": q}],
        banyan_prompt=prompt,  # taken out before Anthropic sees the call
    )

``wrap`` instruments ``client.messages.create`` on that client (sync or
async) and returns the same client. Every call is logged once: the system
prompt and messages as ``input`` (JSON), the reply's text blocks as
``output`` (assembled from a ``stream=True`` response as it is consumed,
logged when it ends), the requested ``model``, ``duration_ms``, token usage
in ``metadata["usage"]`` and the prompt's experiment context.
``banyan_metadata={...}`` adds to the metadata. An error is logged with
``metadata["error"]`` and re-raised as it was; what the call returns is
unchanged. The ``anthropic`` package is never imported here.
"""

from __future__ import annotations

from typing import Any, TypeVar

from banyan.integrations import _llm

C = TypeVar("C")


class _Reader:
    provider = "anthropic"

    def input(self, kwargs: dict[str, Any]) -> Any:
        messages, system = kwargs.get("messages"), kwargs.get("system")
        if system is None:
            return messages
        return [{"role": "system", "content": system}, *(messages or ())]

    def response(self, message: Any, call: _llm.Call) -> None:
        call.parts.extend(block.text for block in message.content if block.type == "text")
        call.usage = _llm.usage(message.usage.input_tokens, message.usage.output_tokens)

    def event(self, event: Any, call: _llm.Call) -> None:
        kind = event.type
        if kind == "content_block_delta" and event.delta.type == "text_delta":
            call.parts.append(event.delta.text)
        elif kind == "message_start":
            used = event.message.usage
            call.usage = _llm.usage(used.input_tokens, used.output_tokens)
        elif kind == "message_delta" and call.usage is not None:
            # message_delta carries the cumulative output count; the input count came first.
            call.usage = _llm.usage(call.usage["input_tokens"], event.usage.output_tokens)


def wrap(client: C, logger: Any = None) -> C:
    """Log every ``client.messages.create`` call; returns ``client`` itself.

    ``logger``: a :class:`~banyan.PromptStackLogger` to log through (default:
    the module-level ``banyan.log_prompt``). Wrapping twice is harmless.
    """
    _llm.instrument(client.messages, _Reader(), logger)  # type: ignore[attr-defined]
    return client
