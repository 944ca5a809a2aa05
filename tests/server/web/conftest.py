"""Fixtures of the browser tests: the preview server and Debian's headless Chromium.

The tests skip only outside CI when Chromium (or Playwright) is missing; with
``CI`` set they fail instead, so a CI machine without the browser is noticed.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from banyan.server.web import screenshot
from banyan.server.web._session import OPEN_PATH
from banyan.server.web.screenshot import Preview, browser, start_preview

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, ConsoleMessage, Dialog, Error, Page, Route


def _require_browser() -> None:
    missing = [
        what
        for what, ok in [
            (screenshot.CHROMIUM, Path(screenshot.CHROMIUM).exists()),
            ("playwright", importlib.util.find_spec("playwright") is not None),
        ]
        if not ok
    ]
    if not missing:
        return
    message = f"the browser test needs {' and '.join(missing)} (apt-get install chromium)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def preview(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Preview]:
    """The preview app under granian on a free loopback port."""
    _require_browser()
    server = start_preview(tmp_path_factory.mktemp("preview"))
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Traffic:
    """What the pages of one test did: requests made, console errors, dialogs opened."""

    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def route(self, route: Route) -> None:
        self.requests.append(route.request.url)
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            route.abort()

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def page_error(self, error: Error) -> None:
        self.errors.append(str(error))

    def dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


@pytest.fixture(scope="module")
def context(preview: Preview, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Headless Chromium with a fresh profile, shared by a module's tests."""
    with browser(tmp_path_factory.mktemp("chromium-profile")) as ctx:
        yield ctx


@pytest.fixture
def traffic(context: BrowserContext) -> Iterator[Traffic]:
    """Records every request (and blocks any not to 127.0.0.1); starts with no cookies."""
    seen = Traffic()
    context.clear_cookies()
    context.route("**/*", seen.route)
    yield seen
    context.unroute("**/*")
    assert all(urlsplit(u).hostname == "127.0.0.1" for u in seen.requests), seen.requests


@pytest.fixture
def visit(context: BrowserContext, traffic: Traffic) -> Iterator[Callable[[str], Page]]:
    """Opens a URL in a new tab that reports its console errors and dialogs."""
    pages: list[Page] = []

    def open_url(url: str) -> Page:
        page = context.new_page()
        page.on("console", traffic.console)
        page.on("pageerror", traffic.page_error)
        page.on("dialog", traffic.dialog)
        response = page.goto(url)
        # A valid link answers with a page that forwards to the results at once.
        if OPEN_PATH in url and response is not None and response.ok:
            page.wait_for_url(lambda u: OPEN_PATH not in u)
        pages.append(page)
        return page

    yield open_url
    for page in pages:
        page.close()
