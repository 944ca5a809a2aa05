"""The HTTP transport: one client per sending thread, none kept for threads that ended."""

from __future__ import annotations

import socket
import ssl
import threading

import httpx
import pytest

from banyan._config import build
from banyan._exceptions import ConnectError
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


def _raising(error: BaseException) -> Transport:
    def fail(request: httpx.Request) -> httpx.Response:
        try:
            raise error
        except BaseException as cause:
            raise httpx.ConnectError(str(cause)) from cause

    return Transport(build("psk_unit", None, None, http_transport=httpx.MockTransport(fail)))


@pytest.mark.parametrize(
    ("error", "permanent"),
    [
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), True),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), True),
        (ConnectionRefusedError(111, "Connection refused"), False),
    ],
)
def test_unknown_hosts_and_bad_certificates_are_permanent(
    error: BaseException, permanent: bool
) -> None:
    """A host name that does not resolve or a certificate that fails verification is a
    ConnectError marked permanent (warned loudly); a refused connection is transient."""
    transport = _raising(error)
    with pytest.raises(ConnectError) as raised:
        transport.request("GET", "/x")
    assert raised.value.permanent is permanent
    transport.close()
