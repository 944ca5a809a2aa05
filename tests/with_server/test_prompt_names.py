"""get_prompt(name) asks the server for that very name, whatever characters it holds."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from serverkit import create_prompt

import banyan
from banyan._wire import PROMPT_PATH

if TYPE_CHECKING:
    from faultproxy import FaultProxy
    from serverproc import Server

NAMES = [".", "..", "...", "a/b", "../x", "q?x=1", "h#1", "50%", "%2e", "sp ace"]


def test_each_prompt_name_is_sent_as_one_path_segment(server: Server, proxy: FaultProxy) -> None:
    """Dot segments and '/', '?', '#', '%' are percent-encoded into one path segment: the
    server sees the name, not a shorter path (httpx resolves '.' and '..' away)."""
    create_prompt(server, "...", "three dots")
    prefix = PROMPT_PATH.format(name="")
    logger = banyan.PromptStackLogger(api_key=server.api_key, base_url=proxy.url, http2=False)
    try:
        for name in NAMES:
            # The server may refuse the name: what matters is what it was asked.
            with contextlib.suppress(banyan.BanyanError):
                logger.get_prompt(name)
        fetched = logger.get_prompt("...")
    finally:
        logger.shutdown(timeout=10)
    paths = [urlsplit(path).path for path in proxy.seen if path.startswith(prefix)]
    segments = [path.removeprefix(prefix) for path in paths]
    assert [unquote(segment) for segment in segments[: len(NAMES)]] == NAMES
    assert all("/" not in segment and segment not in {".", ".."} for segment in segments)
    assert fetched is not None
    assert fetched.content == "three dots"
