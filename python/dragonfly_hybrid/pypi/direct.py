"""The node's download path: one HTTP/1.1 GET read straight into the one buffer the engine then scans.

Why not httpx for these: its chunks pass through h11's buffers, a chunker and a final join, so each byte
of a distribution was copied about five times in Python, with the GIL taken per chunk by 8 contending
download threads. On 2 cores, receiving the 86 MB benchmark corpus cost ~0.3 CPU-seconds that way
against ~0.05 here: the socket writes into the buffer the engine reads (``http.client`` reads a known
length with ``recv_into`` in C, with the GIL released, into a :class:`~dragonfly_hybrid._core.DownloadBuffer`
of that length, reused from an earlier download), and the engine takes it without a copy.

What it handles is what a file host answers: a 200 with or without a ``Content-Length``, over plain HTTP
or TLS (the package's one verifying context), on kept-alive connections (one per host per download
thread); redirects (301, 302, 303, 307, 308), followed as httpx follows them: at most 20, relative
locations resolved against the URL that answered, to http and https URLs only; and credentials in the URL,
sent as HTTP Basic auth to that URL's own origin (scheme, host and port), never to another a redirect leads
to. What is left to httpx (:class:`UseHttpx`, raised before any connection): URLs of another scheme or that
do not parse (httpx names what is wrong with them); the caller also leaves proxies named by the environment
to httpx. Errors are those of :func:`.index.stream_download`: :class:`~.index.Retryable` for 429/5xx (with
what its ``Retry-After`` asks), :class:`~.index.DownloadError` for other answers,
:class:`~.index.DownloadTooLarge` past the cap, and ``OSError``/``http.client.HTTPException`` for transport
faults (the caller retries those); a redirect loop is :class:`TooManyRedirects`, a redirect to a URL no
download takes :class:`UnusableRedirect`.

A :class:`DownloadDeadline` bounds a whole download, not only each read: a host that sends a byte every few
seconds never trips the read timeout, and held a download slot (and the jobs queued behind it) for as long
as it liked. It applies from the connect to the last byte of the body, on every hop of a redirect, and
whatever delimits the body (a ``Content-Length``, chunks, or the end of the connection). A download whose
deadline passed never returns a body, even one that looks whole: a socket shut down while the head is
read reads as the end of the head and of an empty body.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, unquote, urljoin, urlsplit

from dragonfly_hybrid._core import DownloadBuffer
from dragonfly_hybrid.http_client import USER_AGENT, redact_url, tls_context
from dragonfly_hybrid.pypi.index import (
    DownloadError,
    DownloadTooLarge,
    Retryable,
    capped_wait,
    too_large,
)

if TYPE_CHECKING:
    import ssl

Downloaded = bytes | bytearray | DownloadBuffer
"""A distribution's bytes as downloaded (what the scanner takes as a distribution's data)."""


def downloaded_bytes(data: Downloaded) -> bytes | bytearray:
    """The bytes of a download, without a copy (a buffer's array)."""
    return data.data if isinstance(data, DownloadBuffer) else data


_DEFAULT_PORTS = {"http": 80, "https": 443}
# Read size when the length is not announced (chunked or close-delimited answers).
_UNKNOWN_LENGTH_READ = 1 << 20
_REDIRECTS = frozenset((301, 302, 303, 307, 308))
# Kept-alive connections per download thread: a file host and the hosts its redirects lead to.
_KEPT_PER_THREAD = 4
# As httpx: the 21st redirect in a row is an error.
_MAX_REDIRECTS = 20
# A redirect's body up to this size is read (and dropped) to keep its connection; a larger one closes it.
_REDIRECT_BODY = 64 * 1024


class UseHttpx(Exception):
    """This download is left to the httpx client (a URL of another scheme, or one that does not parse)."""


class TooManyRedirects(Exception):
    """More redirects in a row than httpx follows (a loop): no retry helps."""


class UnusableRedirect(Exception):
    """A redirect to a URL no download takes (another scheme, no host, one that does not parse)."""


class _Redirect(Exception):
    """The answer was a redirect to ``location``; ``reusable``: its connection can serve the next request."""

    def __init__(self, status: int, location: str, reusable: bool) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.location = location
        self.reusable = reusable


class _IdleConnectionClosed(Exception):
    """A kept-alive connection was closed by its host before this request was answered."""


class TruncatedBody(http.client.HTTPException):
    """The connection ended before the announced ``Content-Length`` was received."""


class DeadlinePassed(ConnectionAbortedError):
    """A download met its :class:`DownloadDeadline` where the deadline is checked (a read ended by
    :meth:`DownloadDeadline.expire` fails as a transport error, explained by ``passed``)."""


class DownloadDeadline:
    """When one download must be over (``time.monotonic()``), and the means of ending it there from another
    thread: :meth:`expire` shuts down the socket the download reads from, which ends a read that a slow host
    keeps alive byte by byte (the read timeout only ends silence)."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.passed = False
        self._lock = threading.Lock()
        self._socket: Callable[[], socket.socket | None] | None = None

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def limit(self, seconds: float) -> float:
        """``seconds``, or less when the deadline is nearer; raises :class:`DeadlinePassed` once it passed."""
        left = self.remaining()
        if self.passed or left <= 0:
            raise DeadlinePassed("the download's deadline passed")
        return min(seconds, left)

    def attach(self, socket_of: Callable[[], socket.socket | None] | None) -> None:
        """Read from the socket ``socket_of`` gives (None when it has none yet) from now on, or from
        nothing (None); refused once expired."""
        with self._lock:
            if self.passed and socket_of is not None:
                raise DeadlinePassed("the download's deadline passed")
            self._socket = socket_of

    def expire(self) -> None:
        """Mark the deadline passed and end the read under way, if any."""
        with self._lock:
            self.passed = True
            sock = self._socket() if self._socket is not None else None
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed


@dataclass(frozen=True)
class _Hop:
    """One request of a download: to ``key``'s origin, for ``target``; ``url`` and ``name`` the download's
    (what messages name), ``authorization`` only while the hops stay at the URL's own origin."""

    key: tuple[str, str, int]
    target: str
    url: str
    name: str
    cap: int
    deadline: DownloadDeadline | None
    authorization: str | None


class DirectDownloads:
    """Kept-alive connections for downloads on many threads: each thread has its own per host (an
    ``http.client`` connection serves one request at a time). ``context``: the TLS context (default: the
    package's, :func:`~dragonfly_hybrid.http_client.tls_context`)."""

    def __init__(
        self, *, timeout: float = 60.0, connect: float = 15.0, context: ssl.SSLContext | None = None
    ) -> None:
        self._context = context
        self._timeout = timeout
        self._connect = min(timeout, connect)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._every: set[http.client.HTTPConnection] = set()
        # Connections in a download right now: only their own thread may close them (http.client is not
        # safe against a close from another thread halfway through a response).
        self._busy: set[http.client.HTTPConnection] = set()
        # The sockets busy connections read from: http.client drops ``conn.sock`` while the body of an answer
        # that ends with the connection is still read from it.
        self._reading: dict[http.client.HTTPConnection, socket.socket] = {}
        self._closed = False

    def get(self, url: str, name: str, cap: int, deadline: DownloadDeadline | None = None) -> Downloaded:
        """The body of ``url`` (the file ``name``), at most ``cap`` bytes, as stored (identity encoding), by
        ``deadline`` if one is given (each connect and read is then cut short to it, and each redirect
        followed only before it). Messages name ``url`` (without its credentials), wherever it led."""
        parts = _http_url(url)
        if parts is None:
            raise UseHttpx("not an http or https URL")  # httpx names what is wrong with it
        origin = _origin(parts)
        authorization = _basic_auth(parts)
        current = url
        for _ in range(_MAX_REDIRECTS + 1):
            if deadline is not None:
                deadline.limit(self._timeout)  # raises once it passed: no hop starts after it
            key = _origin(parts)
            if key != origin:
                # Credentials go to the URL's own origin only: never to another one a redirect names, nor
                # back to the origin once a hop left it (that host would choose what is fetched with them).
                authorization = None
            hop = _Hop(key, _request_target(parts, current), url, name, cap, deadline, authorization)
            try:
                return self._get_once(hop)
            except _Redirect as moved:
                current = urljoin(current, moved.location)
                parts = _http_url(current)
                if parts is None:
                    shown = repr(redact_url(current)[:200])
                    reason = f"HTTP {moved.status} to {shown}, not an http or https URL"
                    raise UnusableRedirect(reason) from None
        raise TooManyRedirects("Exceeded maximum allowed redirects.")  # httpx's words, in the same case

    def _get_once(self, hop: _Hop) -> Downloaded:
        conn = self._connections().get(hop.key)
        if conn is not None:
            try:
                return self._exchange(conn, hop)
            except _IdleConnectionClosed:
                pass  # the host closed it while idle: no fault of the download, so no retry is used up
        return self._exchange(self._open(hop.key), hop)

    def close(self) -> None:
        """Close every connection; downloads under way fail at once: their sockets are shut down, and each
        download's thread closes its connection as it fails."""
        with self._lock:
            self._closed = True
            every, self._every = self._every, set()
            idle = every - self._busy
            reading = dict(self._reading)
        for conn in every:
            sock = reading.get(conn) or conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed by its host
            if conn in idle:
                conn.close()

    def _connections(self) -> dict[tuple[str, str, int], http.client.HTTPConnection]:
        try:
            mine: dict[tuple[str, str, int], http.client.HTTPConnection] = self._local.connections
        except AttributeError:
            mine = self._local.connections = {}
        return mine

    def _open(self, key: tuple[str, str, int]) -> http.client.HTTPConnection:
        scheme, host, port = key
        conn: http.client.HTTPConnection
        if scheme == "https":
            context = self._context or tls_context()
            conn = http.client.HTTPSConnection(host, port, timeout=self._connect, context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=self._connect)
        with self._lock:
            if self._closed:
                raise ConnectionAbortedError("the downloader is closed")
            self._every.add(conn)
        mine = self._connections()
        while len(mine) >= _KEPT_PER_THREAD:
            # Redirects can lead a thread to any number of origins: the least recently opened goes.
            oldest = next(iter(mine))
            self._forget(oldest, mine[oldest])
        mine[key] = conn
        return conn

    def _forget(self, key: tuple[str, str, int], conn: http.client.HTTPConnection) -> None:
        conn.close()
        with self._lock:
            self._every.discard(conn)
        if self._connections().get(key) is conn:
            del self._connections()[key]

    def _exchange(self, conn: http.client.HTTPConnection, hop: _Hop) -> Downloaded:
        key, deadline = hop.key, hop.deadline
        with self._in_use(key, conn):
            try:
                reused = conn.sock is not None
                if deadline is not None:
                    # From here an expiry shuts down its socket, even mid-handshake.
                    deadline.attach(lambda: conn.sock)
                if not reused:
                    # Under the connect timeout; reads then get the read timeout.
                    conn.timeout = self._connect if deadline is None else deadline.limit(self._connect)
                    conn.connect()
                sock = conn.sock
                assert sock is not None
                with self._lock:
                    if self._closed:  # closed during the connect: close() may have found no socket
                        raise ConnectionAbortedError("the downloader is closed")
                    self._reading[conn] = sock
                if deadline is not None:
                    # The socket itself from here: http.client drops ``conn.sock`` once it has read the head
                    # of an answer that ends with the connection (no length announced), while the body is
                    # still read from it. Refused if the deadline passed during the connect (nothing to shut
                    # then).
                    deadline.attach(lambda: sock)
                read_timeout = self._timeout if deadline is None else deadline.limit(self._timeout)
                sock.settimeout(read_timeout)
                try:
                    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
                    if hop.authorization is not None:
                        headers["Authorization"] = hop.authorization
                    conn.request("GET", hop.target, headers=headers)
                    response = conn.getresponse()
                except ConnectionError as err:  # http.client.RemoteDisconnected is one
                    if reused:
                        raise _IdleConnectionClosed from err
                    raise
                body = self._body(response, hop.url, hop.name, hop.cap)
                if deadline is not None and deadline.passed:
                    # What a shut-down socket let http.client take for whole (an empty body, when the head was
                    # cut: the end of the connection ended the head and a body of unannounced length).
                    raise DeadlinePassed("the download's deadline passed")
                if self._closed:  # set before close() shuts the socket down: the same cut, the same answer
                    raise ConnectionAbortedError("the downloader is closed")
            except _Redirect as moved:
                if not moved.reusable:
                    self._forget(key, conn)
                raise
            except BaseException:
                self._forget(key, conn)
                raise
            finally:
                if deadline is not None:
                    deadline.attach(None)
            if response.will_close:
                self._forget(key, conn)
            return body

    @contextlib.contextmanager
    def _in_use(self, key: tuple[str, str, int], conn: http.client.HTTPConnection) -> Iterator[None]:
        """``conn`` marked busy, so that :meth:`close` leaves closing it to this thread."""
        with self._lock:
            if self._closed:
                raise ConnectionAbortedError("the downloader is closed")
            self._busy.add(conn)
        try:
            yield
        finally:
            with self._lock:
                self._busy.discard(conn)
                self._reading.pop(conn, None)
                closed = self._closed
            if closed:
                self._forget(key, conn)  # left open by close() while this download used it

    @staticmethod
    def _body(response: http.client.HTTPResponse, url: str, name: str, cap: int) -> Downloaded:
        status = response.status
        location = response.getheader("Location") if status in _REDIRECTS else None
        if location is not None:
            raise _Redirect(status, location, _drained(response))
        # A redirect that does not say where to is an answer like any other but a 200 (as with httpx).
        if status >= 500 or status == 429:
            raise Retryable(f"HTTP {status}", capped_wait(status, response.getheader("retry-after")))
        if status != 200:
            raise DownloadError(f"could not download {name}: HTTP {status} from {redact_url(url)}")
        length = response.length
        if length is None:
            return _read_unknown_length(response, name, cap)
        if length > cap:
            raise DownloadTooLarge(too_large(name, cap, f"the server announces {length} bytes"))
        # One buffer of that length, which the socket reads fill (the buffered reader's readinto, in C, with
        # the GIL released). Its memory is an earlier download's when one of about that size is done with:
        # new memory costs the kernel a page fault and a clearing per 4 KiB.
        buffer = DownloadBuffer(length)
        view = memoryview(buffer.data)
        try:
            received = response.readinto(view)
        finally:
            view.release()
        if received != length:
            raise TruncatedBody(f"{received} of {length} bytes")
        return buffer


def _drained(response: http.client.HTTPResponse) -> bool:
    """Whether the body of ``response`` (a redirect) was read, so that its connection serves the next request:
    only a small body of announced length is; otherwise the connection is closed."""
    length = response.length
    if response.will_close or length is None or length > _REDIRECT_BODY:
        return False
    response.read()
    return True


def _http_url(url: str) -> SplitResult | None:
    """The parts of ``url``, if it is an http or https URL with a host (and a valid port)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for an invalid port)
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return parts


def _origin(parts: SplitResult) -> tuple[str, str, int]:
    """(scheme, host, port): where a connection goes, and what credentials are confined to."""
    return (parts.scheme, parts.hostname or "", parts.port or _DEFAULT_PORTS[parts.scheme])


def _basic_auth(parts: SplitResult) -> str | None:
    """The ``Authorization`` header of the credentials in a URL (as httpx makes it), if it has any."""
    user, password = unquote(parts.username or ""), unquote(parts.password or "")
    if not (user or password):
        return None
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _request_target(parts: SplitResult, url: str) -> str:
    """The path and query of ``url`` to request, percent-encoded as httpx encodes them (http.client refuses
    spaces and other characters to encode; a URL with characters httpx refuses raises
    ``httpx.InvalidURL``)."""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if target.isascii() and target.isprintable() and " " not in target:
        return target
    import httpx  # rare: only URLs that are not written as sent (httpx is loaded by the node anyway)

    return httpx.URL(url).raw_path.decode("ascii")


def _read_unknown_length(response: http.client.HTTPResponse, name: str, cap: int) -> bytearray:
    body = bytearray()
    while chunk := response.read(_UNKNOWN_LENGTH_READ):
        if len(body) + len(chunk) > cap:
            raise DownloadTooLarge(too_large(name, cap, f"more than {cap} bytes received"))
        body += chunk
    return body
