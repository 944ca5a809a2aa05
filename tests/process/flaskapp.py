"""A Flask app for the framework tests: banyan's extension, one record per request."""

from __future__ import annotations

import os

from flask import Flask, request
from prockit import options_from_env

import banyan
from banyan.integrations.flask import Banyan


def create_app() -> Flask:
    """The app; the extension configures banyan from ``app.config["BANYAN"]`` and ``BANYAN_*``."""
    app = Flask(__name__)
    app.config["BANYAN"] = {"atexit_timeout": 5.0, **options_from_env()}
    Banyan(app)

    @app.get("/")
    def index() -> tuple[str, int]:
        n = request.args.get("n", "")
        ok = banyan.log_prompt(input=f"request n={n}", output=str(os.getpid()))
        return str(os.getpid()), 200 if ok else 500

    return app
