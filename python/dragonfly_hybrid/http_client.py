"""The package's HTTP clients, built in one place: one User-Agent, one TLS context, HTTP/2 when ``h2`` is
installed (and asked for), and URLs made safe to print."""

from __future__ import annotations

import functools
import importlib.util
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dragonfly_hybrid._core import __version__
from dragonfly_hybrid.redaction import REDACTED as REDACTED  # re-exported
from dragonfly_hybrid.redaction import redact_url as redact_url  # re-exported

if TYPE_CHECKING:
    import ssl  # as httpx: imported where a TLS context is built (commands that make none skip ~5 ms)

    import httpx  # imported by the functions that build clients: commands that make none skip ~40 ms

USER_AGENT = f"dragonfly-hybrid/{__version__}"
_PROXY_SCHEMES = ("http", "https", "all")
HAS_H2 = importlib.util.find_spec("h2") is not None


def retry_after(value: str | None) -> float | None:
    """The seconds a ``Retry-After`` header value asks for: its digits, or the time left until its HTTP date
    (0 once past); None for anything else. A very long number is infinity: each caller caps the wait."""
    value = (value or "").strip()
    if value.isascii() and value.isdigit():
        return float(value)
    when = http_date(value)
    return None if when is None else max(0.0, when - time.time())


def asked_wait(status: int, value: str | None) -> float | None:
    """What a 429 or 503 answer's ``Retry-After`` (``value``) asks before the next try; None for another
    status (a retry after a 500 waits its backoff only, as pip's)."""
    return retry_after(value) if status in (429, 503) else None


def http_date(value: str) -> float | None:
    """Unix seconds of an HTTP date (``Retry-After``, a cookie's ``Expires``); None when it is none."""
    from email.utils import mktime_tz, parsedate_tz  # 5 ms of imports (socket): not on a scan's start

    parsed = parsedate_tz(value)
    try:
        return None if parsed is None else float(mktime_tz(parsed))
    except (ValueError, OverflowError):  # a year past 9999
        return None


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The verifying TLS context every HTTP client of the package shares: building one loads the CA
    bundle, which takes ~50 ms of CPU per client otherwise."""
    import httpx

    return httpx.create_ssl_context()


@dataclass(frozen=True)
class NetworkSettings:
    """pip's ``cert``, ``client-cert``, ``trusted-host`` and ``proxy`` (see :mod:`.pypi.pipconfig`).

    Without ``proxy``, the ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY``/``NO_PROXY`` variables apply.
    """

    cert: str | None = None
    client_cert: str | None = None
    trusted_hosts: tuple[str, ...] = ()
    proxy: str | None = None


def _context(network: NetworkSettings) -> ssl.SSLContext:
    """The TLS context for ``network``: pip's ``cert`` replaces the trust store; ``client-cert`` (a PEM file
    holding the certificate and its key) is presented to servers that ask."""
    import ssl

    import httpx

    if network.cert is None and network.client_cert is None:
        return tls_context()
    if network.cert is not None:
        where = Path(network.cert)
        try:
            context = ssl.create_default_context(
                cafile=None if where.is_dir() else str(where), capath=str(where) if where.is_dir() else None
            )
        except (OSError, ssl.SSLError) as err:
            raise NetworkSettingsError(
                f"cannot load the CA bundle {network.cert} (pip's cert): {err}"
            ) from None
    else:
        context = httpx.create_ssl_context()
    if network.client_cert is not None:
        try:
            context.load_cert_chain(network.client_cert)
        except (OSError, ssl.SSLError) as err:
            raise NetworkSettingsError(
                f"cannot load the client certificate {network.client_cert} (pip's client-cert; a PEM file "
                f"with the certificate and its private key): {err}"
            ) from None
    return context


class NetworkSettingsError(ValueError):
    """A ``cert`` or ``client-cert`` file that cannot be loaded, or a proxy URL that cannot be used."""


_Client = TypeVar("_Client")


def _built(build: Callable[[], _Client]) -> _Client:
    """``build()``, a client: a proxy URL it cannot use (pip's ``proxy``, ``HTTPS_PROXY``, ...) is a
    :class:`NetworkSettingsError` whose message never quotes the URL (httpx's quotes the part it could not
    read: ``Invalid port: 'pa'``, the start of a password with an unencoded ``/``).

    Every client is built here: httpx's and httpcore's loggers get the redacting filter first, so that an
    application embedding the package sees no URL's credentials or tokens in their lines."""
    import httpx

    from dragonfly_hybrid.logs import redact_http_library_logs

    redact_http_library_logs()
    # httpx hands every answer's Set-Cookie to http.cookiejar, which reports an attribute it cannot read (a
    # bare `Max-Age`, as any server may send) as "http.cookiejar bug!" with a traceback on stderr. No client
    # here uses that jar's cookies (the node reads its own: mainframe._cookie): the noise is dropped. Set
    # with each client (a filter set once at import is lost to a `catch_warnings` block the import ran in).
    warnings.filterwarnings("ignore", message=r"http\.cookiejar bug!", category=UserWarning)
    try:
        return build()
    except httpx.InvalidURL:
        problem = "it is not a valid URL (is a character of its user name or password not percent-encoded?)"
    except ImportError as err:  # a SOCKS proxy without socksio: httpx's message names the package
        problem = str(err)
    except ValueError:  # "Unknown scheme for proxy URL"
        problem = "its scheme is not one of http://, https://, socks5://, socks5h://"
    raise NetworkSettingsError(
        f"cannot use the proxy URL (pip's proxy setting or PIP_PROXY, else HTTPS_PROXY, HTTP_PROXY or "
        f"ALL_PROXY): {problem}"
    )


def _options(
    timeout: float, connect: float, follow_redirects: bool, network: NetworkSettings | None = None
) -> dict[str, Any]:
    import httpx

    network = network or NetworkSettings()
    options: dict[str, Any] = {
        "timeout": httpx.Timeout(timeout, connect=min(timeout, connect)),
        "follow_redirects": follow_redirects,
        "headers": {"User-Agent": USER_AGENT},
        "verify": _context(network),
    }
    if network.proxy:
        options["proxy"] = network.proxy
    return options


def _trusted_mounts(network: NetworkSettings | None, http2: bool) -> dict[str, httpx.BaseTransport]:
    """pip's ``trusted-host``: for those hosts (``host`` or ``host:port``), certificates are not verified."""
    import httpx

    if network is None:
        return {}
    proxy = network.proxy or None
    return {
        f"all://{host}": httpx.HTTPTransport(verify=False, http2=http2, proxy=proxy)
        for host in network.trusted_hosts
    }


def new_client(
    *,
    timeout: float = 60.0,
    connect: float = 15.0,
    http2: bool = False,
    follow_redirects: bool = True,
    transport: httpx.BaseTransport | None = None,
    network: NetworkSettings | None = None,
    keep_alive: bool = True,
) -> httpx.Client:
    """A blocking client (thread-safe: downloads run on threads), with pip's ``network`` settings; without
    ``keep_alive``, every request opens a connection of its own (closed after its answer).

    Raises :class:`NetworkSettingsError` when a certificate file of ``network`` cannot be loaded or a proxy
    URL (``network``'s or the environment's) cannot be used.
    """
    import httpx

    http2 = http2 and HAS_H2
    options = _options(timeout, connect, follow_redirects, network)
    if not keep_alive:
        options["limits"] = httpx.Limits(max_keepalive_connections=0)
    return _built(
        lambda: httpx.Client(
            http2=http2, transport=transport, mounts=_trusted_mounts(network, http2) or None, **options
        )
    )


def new_async_client(
    *,
    timeout: float = 60.0,
    connect: float = 15.0,
    http2: bool = False,
    follow_redirects: bool = True,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """An asyncio client (the mainframe API, the watched index, webhooks). With ``transport``, requests go
    through it (and ``http2`` and the environment's proxies do not apply). Raises
    :class:`NetworkSettingsError` for a proxy URL of the environment that cannot be used."""
    import httpx

    options = _options(timeout, connect, follow_redirects)
    return _built(lambda: httpx.AsyncClient(http2=http2 and HAS_H2, transport=transport, **options))


def environment_names_a_proxy() -> bool:
    """True when ``HTTP(S)_PROXY``/``ALL_PROXY`` (either case) is set: httpx's own transports apply them; the
    package's lean paths (:mod:`.pypi.direct`, :mod:`.http11`) do not, so they step aside."""
    import urllib.request

    return any(urllib.request.getproxies().get(scheme) for scheme in _PROXY_SCHEMES)
