"""The package's HTTP clients, built in one place: one User-Agent, one TLS context, HTTP/2 when ``h2`` is
installed (and asked for), and URLs made safe to print."""

from __future__ import annotations

import functools
import importlib.util
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from dragonfly_hybrid._core import __version__

if TYPE_CHECKING:
    import httpx  # imported by the functions that build clients: commands that make none skip ~40 ms

USER_AGENT = f"dragonfly-hybrid/{__version__}"
HAS_H2 = importlib.util.find_spec("h2") is not None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context every HTTP client of the package shares: building one loads the CA
    bundle, which takes ~50 ms of CPU per client otherwise."""
    import httpx

    return httpx.create_ssl_context()


def _options(timeout: float, connect: float, follow_redirects: bool) -> dict[str, Any]:
    import httpx

    return {
        "timeout": httpx.Timeout(timeout, connect=min(timeout, connect)),
        "follow_redirects": follow_redirects,
        "headers": {"User-Agent": USER_AGENT},
        "verify": tls_context(),
    }


def new_client(
    *,
    timeout: float = 60.0,
    connect: float = 15.0,
    http2: bool = False,
    follow_redirects: bool = True,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """A blocking client (thread-safe: downloads run on threads)."""
    import httpx

    return httpx.Client(
        http2=http2 and HAS_H2, transport=transport, **_options(timeout, connect, follow_redirects)
    )


def new_async_client(
    *, timeout: float = 60.0, connect: float = 15.0, http2: bool = False, follow_redirects: bool = True
) -> httpx.AsyncClient:
    """An asyncio client (the mainframe API, the watched index, webhooks)."""
    import httpx

    return httpx.AsyncClient(http2=http2 and HAS_H2, **_options(timeout, connect, follow_redirects))


def redact_url(url: str) -> str:
    """``url`` without the user name and password it may embed (safe to print or log)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
