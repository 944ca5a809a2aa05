"""The concurrent 1.0.1 path over HTTPS, against a backend whose TLS offers h2 and http/1.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from alpnserver import AlpnServer
from test_legacy_delivery import log_ids, logger_for

from banyan import _transport


@pytest.fixture
def alpn_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AlpnServer]:
    """The strict-ALPN backend, its CA trusted through SSL_CERT_FILE by fresh TLS contexts."""
    server = AlpnServer(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
    monkeypatch.setattr(_transport, "_tls_contexts", {})
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("http2", [True, False])
def test_the_101_pool_offers_only_http1_even_where_the_batch_path_chose_h2(
    alpn_server: AlpnServer, http2: bool
) -> None:
    """ALPN: the 1.0.1 pool offers only http/1.1, whatever the batch client negotiated."""
    logger = logger_for(alpn_server.base_url, http2=http2, max_retries=1)
    log_ids(logger, 20)
    assert logger.flush(timeout=30)
    logger.shutdown(timeout=10)
    assert alpn_server.stored == logger.get_stats()["logs_sent"] == 20
    assert alpn_server.chosen[0] == ("h2" if http2 else "http/1.1")
    assert set(alpn_server.chosen[1:]) == {"http/1.1"}
