"""A FastAPI app for the framework tests: banyan's lifespan and sticky-context middleware.

``GET /?n=N`` logs one record (input ``request n=N``) routed by the prompt
``support`` when it exists, with the request's ``x-user-id`` header as the
sticky ``user_id``. ``BANYAN_TEST_SHUTDOWN`` sets the lifespan's shutdown bound,
``BANYAN_TEST_OPTIONS`` (JSON) more options of ``banyan.configure``.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from prockit import options_from_env

import banyan
from banyan.integrations.fastapi import Lifespan, StickyContextMiddleware, sticky_context


def _user(request: Any) -> dict[str, Any]:
    return {"user_id": request.headers.get("x-user-id")}


def make_app() -> FastAPI:
    """The app, with banyan configured by its lifespan (from ``BANYAN_*``)."""
    timeout = float(os.environ.get("BANYAN_TEST_SHUTDOWN", "10"))
    app = FastAPI(lifespan=Lifespan(timeout=timeout, **options_from_env()))
    app.add_middleware(
        StickyContextMiddleware,
        sticky=lambda request: {"user_id": request.headers.get("x-user-id")},
    )

    @app.get("/")
    def index(n: str, prompt: str = "") -> PlainTextResponse:
        routed = banyan.get_prompt(prompt, sticky_context=sticky_context()) if prompt else None
        ok = banyan.log_prompt(input=f"request n={n}", output=str(os.getpid()), prompt_data=routed)
        return PlainTextResponse(str(os.getpid()), status_code=200 if ok else 500)

    return app


app = make_app()
