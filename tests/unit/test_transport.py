"""The HTTP transport: one client per sending thread, none kept for threads that ended."""

from __future__ import annotations

import threading

import httpx

from banyan._config import build
from banyan._transport import Transport


def test_clients_of_threads_that_ended_are_closed() -> None:
    """Threads come and go (a pool): the client of a thread that ended is closed when the
    next one is made, so clients do not pile up."""
    mock = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    transport = Transport(build("psk_unit", None, None, http_transport=mock))
    made: list[httpx.Client] = []
    for _ in range(20):
        thread = threading.Thread(target=lambda: made.append(transport.client()))
        thread.start()
        thread.join()
    mine = transport.client()
    assert transport.client() is mine
    assert len(transport._clients) == 1
    assert all(client.is_closed for client in made)
    transport.close()
    assert mine.is_closed
