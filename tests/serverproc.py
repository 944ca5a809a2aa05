"""The reference server as a real process, for every test folder: ``banyan._localserver``."""

from __future__ import annotations

import importlib.util

from banyan._localserver import LOCAL_KEY as TEST_KEY
from banyan._localserver import LocalServer as Server
from banyan._localserver import PortTaken, free_port, on_a_free_port, port_taken
from banyan._localserver import start as start_server

__all__ = [
    "HAVE_PSYCOPG",
    "TEST_KEY",
    "PortTaken",
    "Server",
    "free_port",
    "on_a_free_port",
    "port_taken",
    "start_server",
]

#: Whether the PostgreSQL driver (the postgres extra) is installed.
HAVE_PSYCOPG = importlib.util.find_spec("psycopg") is not None
