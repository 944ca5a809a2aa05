"""Screenshot of a results page: ``python -m banyan.server.web.screenshot [--out PATH]``.

Serves the simulated experiments of ``_preview`` with granian on a free
loopback port, opens a signed link in Debian's headless Chromium (driven by
Playwright, never downloading a browser) and saves the whole page as a PNG
(docs/results-page.png by default). The browser test uses the same helpers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from banyan._localserver import free_port
from banyan.server.web._preview import SECRET_ENV
from banyan.server.web._session import Signer

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

CHROMIUM = "/usr/bin/chromium"
#: Root needs --no-sandbox; the rest keeps Chromium from calling home.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
_START_TIMEOUT = 30.0


@dataclass
class Preview:
    """A running preview server: where it listens and how to sign its links."""

    base_url: str
    signer: Signer
    process: subprocess.Popen[bytes]
    log: Path

    def link(self, project_id: str, experiment_id: str) -> str:
        """A fresh signed link to one experiment's page."""
        return self.signer.link(self.base_url, project_id, experiment_id, time.time())

    def stop(self) -> None:
        """Stop the server."""
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_preview(tmp: Path) -> Preview:
    """Start the preview app under granian on 127.0.0.1 and wait until it answers."""
    port, secret = free_port(), os.urandom(32)
    log = tmp / f"preview-{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        # Bounds the wait for the worker at SIGTERM, as banyan serve does: granian 2.2.1
        # otherwise waits for ever, and its worker outlives stop()'s kill of the main process.
        "--workers-kill-timeout",
        "5",
        "banyan.server.web._preview:create_app",
    ]
    env = {**os.environ, SECRET_ENV: secret.hex()}
    with log.open("wb") as out:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    preview = Preview(f"http://127.0.0.1:{port}", Signer(secret), process, log)
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{preview.base_url}/preview/results/prj_demo/exp_lift").is_success:
                return preview
        except httpx.HTTPError:
            time.sleep(0.1)
    preview.stop()
    raise RuntimeError(f"the preview server did not start:\n{log.read_text()}")


@contextmanager
def browser(user_data: Path, width: int = 1280) -> Iterator[BrowserContext]:
    """Headless system Chromium with a fresh profile in ``user_data``."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            user_data,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": width, "height": 900},
            device_scale_factor=1,
        )
        try:
            yield context
        finally:
            context.close()


def main(argv: list[str] | None = None) -> None:
    """Save the screenshot of one simulated experiment's results page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/results-page.png"))
    parser.add_argument("--experiment", default="exp_lift")
    args = parser.parse_args(argv)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"banyan-screenshot-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    preview = start_preview(work)
    try:
        with browser(work / "profile") as context:
            page = context.new_page()
            page.goto(preview.link("prj_demo", args.experiment))
            page.screenshot(path=str(args.out), full_page=True)
    finally:
        preview.stop()
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
