"""An HTTP/1.1 transport for ``httpx.AsyncClient`` on asyncio streams: the node's calls to the mainframe.

Why not httpx's own (httpcore, h11, anyio): on a 2-core host, each small JSON call of the node (a claim, a
submission) cost ~1.9 ms of CPU on the event loop through it and ~0.85 ms through this one, which is CPU
taken from the scanners on the same cores. The client layer above (``httpx.AsyncClient``: requests,
responses, cookies, timeouts, errors) is unchanged, so callers see the same API and the same exceptions.

What it does: one request at a time per connection, kept-alive connections reused per origin, plain HTTP or
TLS (the caller's context), bodies framed by ``Content-Length``, chunked or by the connection closing, 1xx
answers skipped, folded header lines joined, the client's connect/read/write timeouts. What it refuses
(``httpx.RemoteProtocolError``): what h11 refuses under httpx's own transport (the tests hold the two side
by side: a malformed status line or header line, conflicting lengths, a malformed chunk), and answers past
its limits (``LINE_LIMIT``, ``MAX_HEADERS``, a length of more than 18 digits).

Proxies are not its job: :func:`~dragonfly_hybrid.node.mainframe._new_http_client` leaves requests to
httpx's transport when the environment names one.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import select
import sys
from collections.abc import Awaitable
from typing import TYPE_CHECKING, TypeVar

import httpx

from dragonfly_hybrid.http_client import tls_context

if TYPE_CHECKING:
    import ssl

_T = TypeVar("_T")
Origin = tuple[str, str, int]

_DEFAULT_PORTS = {"http": 80, "https": 443}
LINE_LIMIT = 64 * 1024
"""Longest status line, header line or chunk-size line accepted (asyncio's default stream limit)."""
MAX_HEADERS = 100
"""Most header lines in one answer."""
MAX_IDLE = 8
"""Kept-alive connections kept per origin while unused."""
_READ_SIZE = 1 << 16
_NO_BODY_STATUS = (204, 304)
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""A header name (RFC 9110, 5.6.2)."""
_LINE_BREAK = re.compile(rb"[\r\n\0]")


if sys.version_info >= (3, 11):

    async def _within(step: Awaitable[_T], seconds: float | None) -> _T:
        async with asyncio.timeout(seconds):
            return await step

else:  # pragma: no cover - exercised on 3.10 only

    async def _within(step: Awaitable[_T], seconds: float | None) -> _T:
        return await asyncio.wait_for(step, seconds)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        """Still open, and the server has sent nothing since the last answer: neither a close nor any bytes
        (such as a 408 sent before closing, which would be read as the answer to the next request). The
        socket itself is asked too: the event loop may not have run since the server closed it."""
        if self.writer.is_closing() or self.reader.at_eof() or _buffered(self.reader):
            return False
        sock = self.writer.get_extra_info("socket")
        return sock is not None and not _readable(sock.fileno())

    def close(self) -> None:
        self.writer.close()


class Http11Transport(httpx.AsyncBaseTransport):
    """``httpx.AsyncClient(transport=Http11Transport(context=...))``. ``context``: the TLS context for
    ``https`` URLs (its certificate checks apply as they are; default: the package's)."""

    def __init__(self, *, context: ssl.SSLContext | None = None) -> None:
        self._context = context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in _DEFAULT_PORTS:
            raise httpx.UnsupportedProtocol(f"Request URL has an unsupported protocol '{url.scheme}://'.")
        origin = (url.scheme, url.host, url.port or _DEFAULT_PORTS[url.scheme])
        timeouts = request.extensions.get("timeout", {})
        head = _request_head(request)
        body = await request.aread()
        if "transfer-encoding" in request.headers:  # a streamed body of unknown length, sent as one chunk
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
        connection = self._take_idle(origin) or await self._connect(origin, timeouts.get("connect"))
        try:
            status, reason, headers, content, reusable = await _exchange(
                connection, head + body, request.method == "HEAD", timeouts
            )
        except BaseException:
            connection.close()
            raise
        if reusable and "close" not in request.headers.get("connection", "").lower():
            self._keep(origin, connection)
        else:
            connection.close()
        return httpx.Response(
            status,
            headers=headers,
            stream=httpx.ByteStream(content),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    async def aclose(self) -> None:
        self._closed = True
        idle = [connection for connections in self._idle.values() for connection in connections]
        self._idle = {}
        for connection in idle:
            connection.close()
        # Bounded: a TLS peer that never answers the close must not hold up the node's exit.
        with contextlib.suppress(asyncio.TimeoutError):
            closing = asyncio.gather(*(c.writer.wait_closed() for c in idle), return_exceptions=True)
            await _within(closing, 1.0)

    def _take_idle(self, origin: Origin) -> _Connection | None:
        connections = self._idle.get(origin)
        while connections:
            connection = connections.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    def _keep(self, origin: Origin, connection: _Connection) -> None:
        connections = self._idle.setdefault(origin, [])
        if self._closed or len(connections) >= MAX_IDLE:
            connection.close()
        else:
            connections.append(connection)

    async def _connect(self, origin: Origin, seconds: float | None) -> _Connection:
        scheme, host, port = origin
        tls = (self._context or tls_context()) if scheme == "https" else None
        try:
            reader, writer = await _within(
                asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls is not None else None, limit=LINE_LIMIT
                ),
                seconds,
            )
        except asyncio.TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as err:  # refused, unreachable, name not resolved, TLS handshake or certificate
            raise httpx.ConnectError(str(err) or type(err).__name__) from None
        return _Connection(reader, writer)


def _readable(fd: int) -> bool:
    """Whether ``fd`` has something to read (or is closed, or failed) right now."""
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True


def _buffered(reader: asyncio.StreamReader) -> int:
    """Bytes received and not yet read: the stream reads its socket eagerly, so they are in its buffer (no
    public API tells)."""
    return len(reader._buffer)  # type: ignore[attr-defined]


def _request_head(request: httpx.Request) -> bytes:
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
    for name, value in request.headers.raw:
        if not _TOKEN.fullmatch(name) or _LINE_BREAK.search(value):
            # A header that would end the line early would let its value write a request of its own.
            raise httpx.LocalProtocolError(f"invalid header name or value for {name!r}")
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"\r\n")
    return b"".join(lines)


async def _exchange(
    connection: _Connection, message: bytes, head_only: bool, timeouts: dict[str, float | None]
) -> tuple[int, bytes, list[tuple[bytes, bytes]], bytes, bool]:
    """Send ``message``; the answer's status, reason, headers and body, and whether the connection can carry
    another request."""
    reader, writer = connection.reader, connection.writer
    try:
        writer.write(message)
        await _within(writer.drain(), timeouts.get("write"))
    except asyncio.TimeoutError:
        raise httpx.WriteTimeout("sending the request timed out") from None
    except OSError as err:
        raise httpx.WriteError(str(err) or type(err).__name__) from None
    seconds = timeouts.get("read")
    answered = False
    try:
        line = await _within(reader.readuntil(b"\n"), seconds)
        answered = True
        while True:
            version, status, reason = _status_line(line)
            headers = await _within(_header_lines(reader), seconds)
            if not 100 <= status < 200:
                break
            if status == 101:
                raise httpx.RemoteProtocolError("the server switched protocols, which was not asked for")
            line = await _within(reader.readuntil(b"\n"), seconds)  # after a 1xx: the real answer
        framing, length = _framing(headers, status, head_only)
        if framing == "length":
            content = await _within(reader.readexactly(length), seconds)
        elif framing == "chunked":
            content = await _chunked(reader, seconds)
        elif framing == "close":
            content = await _until_closed(reader, seconds)
        else:
            content = b""
    except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as err:
        raise _read_failure(err, answered) from None
    keep_alive = version == b"HTTP/1.1" and framing != "close" and not _says_close(headers)
    return status, reason, headers, content, keep_alive


def _read_failure(err: BaseException, answered: bool) -> httpx.TransportError:
    """The httpx error for a failure while reading the answer (``answered``: its first line had arrived)."""
    if isinstance(err, asyncio.TimeoutError):
        return httpx.ReadTimeout("waiting for the answer timed out")
    if isinstance(err, asyncio.IncompleteReadError):
        if not answered and not err.partial:
            # httpcore's words: nothing came back (an idle connection the server had closed, say)
            return httpx.RemoteProtocolError("Server disconnected without sending a response.")
        return httpx.RemoteProtocolError("peer closed connection without sending complete message body")
    if isinstance(err, asyncio.LimitOverrunError):
        return httpx.RemoteProtocolError(f"a line of the answer is longer than {LINE_LIMIT} bytes")
    return httpx.ReadError(str(err) or type(err).__name__)


def _status_line(line: bytes) -> tuple[bytes, int, bytes]:
    version, _, rest = line.rstrip(b"\r\n").partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
        raise httpx.RemoteProtocolError(f"malformed status line {line[:100]!r}")
    return version, int(code), reason


async def _header_lines(reader: asyncio.StreamReader) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    while True:
        line = (await reader.readuntil(b"\n")).rstrip(b"\r\n")
        if not line:
            return headers
        if len(headers) == MAX_HEADERS:
            raise httpx.RemoteProtocolError(f"the answer has more than {MAX_HEADERS} headers")
        if line[:1] in (b" ", b"\t") and headers:
            # obs-fold: the line continues the previous value, joined by one space (RFC 9112, 5.2)
            name, value = headers[-1]
            headers[-1] = (name, b"%s %s" % (value, line.strip(b" \t")))
            continue
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise httpx.RemoteProtocolError(f"malformed header line {line[:100]!r}")
        headers.append((name, value.strip(b" \t")))


def _framing(headers: list[tuple[bytes, bytes]], status: int, head_only: bool) -> tuple[str, int]:
    """How the body is delimited (RFC 9112, 6.3): ``none``, ``length`` (with it), ``chunked`` or ``close``."""
    if head_only or status in _NO_BODY_STATUS:
        return "none", 0
    encodings = [v for n, v in headers if n.lower() == b"transfer-encoding"]
    if encodings:
        last = b",".join(encodings).split(b",")[-1].strip().lower()
        return ("chunked", 0) if last == b"chunked" else ("close", 0)
    lengths = {v for n, v in headers if n.lower() == b"content-length"}
    if not lengths:
        return "close", 0
    values = {part.strip() for value in lengths for part in value.split(b",")}
    (value, *others) = values
    if others or not value.isdigit() or len(value) > 18:
        raise httpx.RemoteProtocolError(f"invalid Content-Length {sorted(lengths)!r}")
    return "length", int(value)


def _says_close(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(n.lower() == b"connection" and b"close" in v.lower() for n, v in headers)


async def _chunked(reader: asyncio.StreamReader, seconds: float | None) -> bytes:
    pieces: list[bytes] = []
    while True:
        line = await _within(reader.readuntil(b"\n"), seconds)
        size_text = line.split(b";", 1)[0].strip()
        if not 0 < len(size_text) <= 16 or not all(c in _HEX_DIGITS for c in size_text):
            raise httpx.RemoteProtocolError(f"malformed chunk size {line[:100]!r}")
        size = int(size_text, 16)
        if size == 0:
            await _within(_header_lines(reader), seconds)  # trailers: read past, not used
            return b"".join(pieces)
        pieces.append(await _within(reader.readexactly(size), seconds))
        if (await _within(reader.readexactly(2), seconds)) != b"\r\n":
            raise httpx.RemoteProtocolError("a chunk is not followed by CRLF")


async def _until_closed(reader: asyncio.StreamReader, seconds: float | None) -> bytes:
    pieces: list[bytes] = []
    while piece := await _within(reader.read(_READ_SIZE), seconds):
        pieces.append(piece)
    return b"".join(pieces)
