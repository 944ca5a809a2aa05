"""The one exception tree of the package.

Everything the client raises derives from :class:`BanyanError`; errors of
httpx, h2 and the OS are translated at the transport boundary and never leak::

    BanyanError
    ├── ConfigurationError        bad arguments or environment (also a ValueError)
    │   ├── NotConfiguredError    a module function needs configure() first
    │   ├── UsageError            a token count or cost that is not one
    │   └── ScoreError            log_score() called with a bad name, value or subject
    ├── TransportError            the request did not complete
    │   ├── ConnectError          could not connect
    │   ├── RequestTimeout        a connect, write or read deadline passed
    │   └── ProtocolError         the peer broke HTTP (or HTTP/2) rules
    └── HTTPStatusError           the server answered with an error status
        └── AuthenticationError   401/403: the API key is wrong

The hot path (``log_prompt``) never raises any of them: it counts a drop.
``log_score`` raises ScoreError for a mistake in its arguments, and counts the rest.
"""

from __future__ import annotations


class BanyanError(Exception):
    """Root of every error the Banyan client raises."""


class ConfigurationError(BanyanError, ValueError):
    """An argument, option or environment variable is missing or invalid."""


class NotConfiguredError(ConfigurationError):
    """A module-level function was called before :func:`banyan.configure`."""


class UsageError(ConfigurationError):
    """A token count, a cost or a usage object that cannot be logged as one."""


class ScoreError(ConfigurationError):
    """``log_score`` was given a bad name or value, or nothing to attribute the score to."""


class TransportError(BanyanError):
    """A request could not be completed (network, TLS or HTTP framing)."""

    #: True when retrying cannot help (a certificate that fails verification, a host
    #: name that does not resolve): reported loudly, once.
    permanent = False


class ConnectError(TransportError):
    """No connection could be made to the server."""


class RequestTimeout(TransportError):
    """A connect, write or read took longer than the configured timeout."""


class ProtocolError(TransportError):
    """The server or a proxy broke the HTTP/1.1 or HTTP/2 protocol."""


class HTTPStatusError(BanyanError):
    """The server answered with a status other than 2xx."""

    def __init__(self, status_code: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status_code}: {message}")
        self.status_code = status_code
        self.retry_after = retry_after


class AuthenticationError(HTTPStatusError):
    """The server refused the API key (401) or its project (403)."""
