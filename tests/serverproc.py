"""The reference server as a real process, for every test folder: ``banyan._localserver``."""

from __future__ import annotations

from banyan._localserver import LOCAL_KEY as TEST_KEY
from banyan._localserver import LocalServer as Server
from banyan._localserver import free_port
from banyan._localserver import start as start_server

__all__ = ["TEST_KEY", "Server", "free_port", "start_server"]
