"""The Banyan reference server: a pure ASGI app over SQLite, run by granian.

The client never imports this package. Start it with ``banyan serve``; the
endpoints are specified in docs/protocol.md.
"""

from __future__ import annotations

from banyan.server._app import App, create_app
from banyan.server._run import serve

__all__ = ["App", "create_app", "serve"]
