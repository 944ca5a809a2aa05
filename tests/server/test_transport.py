"""HTTP/1.1 and HTTP/2 on one port: h2c in the clear and ALPN over TLS."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme
from serverproc import Server, start_server

from banyan._wire import BATCH_PATH, MSGPACK

from .helpers import body, record


def _exercise(client: httpx.Client, server: Server, version: str, tag: str) -> None:
    health = client.get("/healthz")
    assert health.http_version == version
    headers = {"X-API-Key": server.api_key, "Content-Type": MSGPACK}
    records = [record(f"{tag}-{i}", input="x" * 500) for i in range(2000)]
    response = client.post(BATCH_PATH, content=body(records), headers=headers)
    assert response.http_version == version
    assert response.json()["accepted"] == 2000


@pytest.mark.parametrize(("http2", "version"), [(False, "HTTP/1.1"), (True, "HTTP/2")])
def test_cleartext_http1_and_h2c(shared_server: Server, http2: bool, version: str) -> None:
    """The same port answers HTTP/1.1 and prior-knowledge HTTP/2 (h2c), large batches too."""
    with httpx.Client(base_url=shared_server.base_url, http1=not http2, http2=http2) as client:
        _exercise(client, shared_server, version, f"clear-{version}")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, ssl.SSLContext]]:
    """A server with a certificate from a throwaway CA, and a context trusting that CA."""
    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for extra in cert.cert_chain_pems[1:]:
        with cert_file.open("ab") as out:
            out.write(extra.bytes())
    srv = start_server(Path(tmp), "--tls-cert", str(cert_file), "--tls-key", str(key_file))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    try:
        yield srv, context
    finally:
        srv.stop()


@pytest.mark.parametrize(("http2", "version"), [(False, "HTTP/1.1"), (True, "HTTP/2")])
def test_tls_alpn_http1_and_http2(
    tls_server: tuple[Server, ssl.SSLContext], http2: bool, version: str
) -> None:
    """Over TLS, ALPN negotiates HTTP/2 or HTTP/1.1 on the same port, with a verified cert."""
    srv, context = tls_server
    assert srv.base_url.startswith("https://")
    with httpx.Client(
        base_url=srv.base_url, verify=context, http1=not http2, http2=http2
    ) as client:
        _exercise(client, srv, version, f"tls-{version}")
