"""Fixtures of the server tests."""

from __future__ import annotations

import pytest
from serverproc import Server

from .helpers import call, unique


@pytest.fixture
def project_b(shared_server: Server) -> str:
    """The API key of a second project on the shared server."""
    response = call(shared_server, "POST", "/api/v2/projects", json={"name": unique("projb")})
    assert response.status_code == 201, response.text
    return str(response.json()["api_key"])
