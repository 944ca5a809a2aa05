"""Flask: an extension that configures banyan from ``app.config["BANYAN"]``.

::

    from flask import Flask
    from banyan.integrations.flask import Banyan

    app = Flask(__name__)
    app.config["BANYAN"] = {"atexit_timeout": 5.0}  # options of banyan.configure
    Banyan(app)  # or banyan_ext = Banyan(); banyan_ext.init_app(app) in a factory

Flask has no shutdown hook: banyan's own atexit hook shuts the logger down
when the process exits (gunicorn workers leave through ``sys.exit``),
bounded by ``atexit_timeout``. Flask is never imported here.
"""

from __future__ import annotations

from typing import Any

import banyan


class Banyan:
    """The Flask extension; ``options`` override ``app.config["BANYAN"]``."""

    def __init__(self, app: Any = None, **options: Any) -> None:
        self.options = options
        self.logger: banyan.PromptStackLogger | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Any) -> None:
        """Configure the default logger for ``app`` and register as ``app.extensions["banyan"]``."""
        settings = {**app.config.get("BANYAN", {}), **self.options}
        self.logger = banyan.configure(**settings)
        app.extensions["banyan"] = self
