"""The module functions' async twins and timeouts match PromptStackLogger's (#16 item 7)."""

from __future__ import annotations

import asyncio
import inspect

import pytest

import banyan
from banyan import _default


def test_ashutdown_shuts_the_default_logger_down_without_blocking_the_loop() -> None:
    """await banyan.ashutdown() shuts the default logger; without one it is True."""
    _default._reset()

    async def main() -> tuple[bool, bool]:
        before = await banyan.ashutdown(None)
        banyan.configure(enabled=False)
        banyan.log_prompt("in", "out")
        assert await banyan.aflush(None)
        return before, await banyan.ashutdown(timeout=1)

    assert asyncio.run(main()) == (True, True)
    assert _default._logger is not None
    assert _default._logger._closed


@pytest.mark.parametrize("name", ["flush", "shutdown", "aflush", "ashutdown"])
def test_module_functions_take_the_methods_timeout(name: str) -> None:
    """banyan.<name>(timeout) has PromptStackLogger.<name>'s timeout type and default."""
    function = inspect.signature(getattr(banyan, name)).parameters["timeout"]
    method = inspect.signature(getattr(banyan.PromptStackLogger, name)).parameters["timeout"]
    assert (function.annotation, function.default) == (method.annotation, method.default)


def test_flush_and_shutdown_accept_none() -> None:
    """timeout=None (wait as long as it takes) is accepted by the module functions."""
    banyan.configure(enabled=False)
    assert banyan.flush(None) is True
    assert banyan.shutdown(None) is True
    _default._reset()
