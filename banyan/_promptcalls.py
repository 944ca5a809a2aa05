"""PromptStackLogger's prompt API: ``get_prompt``, ``aget_prompt`` and ``experiment``.

They delegate to :class:`~banyan._prompts.Prompts` (the cache, local routing,
the on-disk copy, fallbacks); with ``enabled=False`` they answer without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, overload

from banyan._promptdata import PromptData, fallback_prompt
from banyan._prompts import MISS

if TYPE_CHECKING:
    from banyan._config import Config
    from banyan._prompts import Prompts


class PromptCalls:
    """The prompt half of :class:`~banyan.PromptStackLogger`, which it is mixed into."""

    _config: Config
    _prompts: Prompts
    _here: memoryview

    if TYPE_CHECKING:

        def _check_pid(self) -> None: ...

    @overload
    def get_prompt(
        self,
        name: str,
        version: str | None = ...,
        branch: str = ...,
        sticky_context: Mapping[str, Any] | None = ...,
        *,
        fallback: str | PromptData,
    ) -> PromptData: ...
    @overload
    def get_prompt(
        self,
        name: str,
        version: str | None = ...,
        branch: str = ...,
        sticky_context: Mapping[str, Any] | None = ...,
        fallback: str | PromptData | None = ...,
    ) -> PromptData | None: ...
    def get_prompt(
        self,
        name: str,
        version: str | None = None,
        branch: str = "main",
        sticky_context: Mapping[str, Any] | None = None,
        fallback: str | PromptData | None = None,
    ) -> PromptData | None:
        """Fetch a prompt through the cache; None when the server has no such prompt.

        A cached prompt is fresh for ``cache_ttl`` s, then served stale while
        one background refresh per prompt fetches it again. With
        ``sticky_context`` holding the running experiment's sticky key the
        caller is routed locally to a variant (docs/protocol.md, "Routing").
        When the server cannot be reached and nothing is cached in memory, the
        on-disk cache (``cache_dir``) is tried, then ``fallback`` (a content
        string or a PromptData); without one a BanyanError is raised.
        """
        if not self._here[0]:
            self._check_pid()
        if not self._config.enabled:
            return None if fallback is None else fallback_prompt(fallback, name, version, branch)
        return self._prompts.get(name, version, branch, sticky_context, fallback)

    @overload
    async def aget_prompt(
        self,
        name: str,
        version: str | None = ...,
        branch: str = ...,
        sticky_context: Mapping[str, Any] | None = ...,
        *,
        fallback: str | PromptData,
    ) -> PromptData: ...
    @overload
    async def aget_prompt(
        self,
        name: str,
        version: str | None = ...,
        branch: str = ...,
        sticky_context: Mapping[str, Any] | None = ...,
        fallback: str | PromptData | None = ...,
    ) -> PromptData | None: ...
    async def aget_prompt(
        self,
        name: str,
        version: str | None = None,
        branch: str = "main",
        sticky_context: Mapping[str, Any] | None = None,
        fallback: str | PromptData | None = None,
    ) -> PromptData | None:
        """:meth:`get_prompt` for asyncio: a cache hit returns at once, a fetch runs in a thread."""
        self._check_pid()
        if not self._config.enabled:
            return self.get_prompt(name, version, branch, sticky_context, fallback)
        found = self._prompts.get(
            name, version, branch, sticky_context, fallback=fallback, block=False
        )
        if found is not MISS:
            return found
        import asyncio
        import functools

        fetch = functools.partial(
            self._prompts.get, name, version, branch, sticky_context, fallback=fallback
        )
        return await asyncio.get_running_loop().run_in_executor(None, fetch)

    def experiment(
        self, experiment_id: str, sticky_key: str, sticky_value: str
    ) -> PromptData | None:
        """Route a subject through the server (the 1.0.1 call); None when unknown.

        A missing (None or empty) value gets the experiment prompt's default version;
        with ``enabled=False`` the answer is None, without a request.
        """
        self._check_pid()
        if not self._config.enabled:
            return None
        return self._prompts.route(experiment_id, sticky_key, sticky_value)
