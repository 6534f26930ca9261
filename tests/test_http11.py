"""The mainframe client's HTTP/1.1 transport (``dragonfly_hybrid.http11``) against a real server on 127.0.0.1
that answers with scripted bytes: side by side with httpx's own transport (same answers, same outcome),
kept-alive connections and the ones a server closes while idle, every body framing, 1xx answers, broken
and hostile answers, timeouts, TLS, and header values that would split a request."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from dragonfly_hybrid.http11 import LINE_LIMIT, MAX_HEADERS, Http11Transport

Script = Callable[[socket.socket, bytes], bool]
"""Answers one request (its raw head and body); True to keep the connection for the next one."""


class RawServer:
    """Accepts connections and hands each request to ``script`` (default: :meth:`answer` with the next of
    ``answers``, closing the connection after answers that ask for it). Counts connections."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.answers: list[tuple[bytes, bool]] = []
        self.requests: list[bytes] = []
        self.connections = 0
        self.script: Script = self.answer
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._listener.getsockname()[1]}"

    def answer(self, conn: socket.socket, request: bytes) -> bool:
        data, keep = self.answers.pop(0)
        conn.sendall(data)
        return keep

    def close(self) -> None:
        self._stop.set()
        self._listener.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        conn = raw
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(raw, server_side=True)
            buffer = b""
            while True:
                while b"\r\n\r\n" not in buffer:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    buffer += piece
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                    if name.strip().lower() == b"transfer-encoding":  # the body ends with the last chunk
                        while b"0\r\n\r\n" not in buffer:
                            buffer += conn.recv(65536)
                        length = buffer.index(b"0\r\n\r\n") + 5
                while len(buffer) < length:
                    buffer += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + buffer[:length])
                buffer = buffer[length:]
                if not self.script(conn, head):
                    return
        except (OSError, ssl.SSLError):
            return
        finally:
            conn.close()


@pytest.fixture
def server() -> Iterator[RawServer]:
    served = RawServer()
    yield served
    served.close()


def ok(body: bytes = b'{"ok": true}', *extra: bytes) -> bytes:
    head = [b"HTTP/1.1 200 OK", b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def run_client(
    transport: httpx.AsyncBaseTransport | None, calls: Callable[[httpx.AsyncClient], object]
) -> object:
    async def scenario() -> object:
        async with httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0)) as client:
            return await calls(client)  # type: ignore[misc]

    return asyncio.run(scenario())


def get(url: str, method: str = "GET") -> Callable[[httpx.AsyncClient], object]:
    async def call(client: httpx.AsyncClient) -> object:
        response = await client.request(method, url)
        return response.status_code, response.content, response.headers.get("x-tag")

    return call


# --------------------------------------------------------------------------------- side by side with httpx

ANSWERS = {
    "content-length": ok(b"hello", b"X-Tag: a"),
    "chunked with extensions and trailers": (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Tag: b\r\n\r\n"
        b"5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n"
    ),
    "close-delimited": b"HTTP/1.1 200 OK\r\nX-Tag: c\r\n\r\nuntil the end",
    "HTTP/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nold",
    "103 then 200": b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + ok(b"after hints"),
    "204": b"HTTP/1.1 204 No Content\r\nX-Tag: d\r\n\r\n",
    "no reason phrase": b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
    "bare LF line ends": b"HTTP/1.1 200 OK\nContent-Length: 2\nX-Tag: e\n\nhi",
    "gzip": (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
        % len(gzip.compress(b"zip"))
        + gzip.compress(b"zip")
    ),
    "same length twice": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
    "transfer-encoding beats content-length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    ),
    "folded header": b"HTTP/1.1 200 OK\r\nX-Tag: a\r\n  folded\r\nContent-Length: 0\r\n\r\n",
    # Broken or hostile: both transports must fail (an httpx transport error), neither may return a body.
    "malformed status line": b"HTTP/1.1 OK\r\nContent-Length: 0\r\n\r\n",
    "not HTTP": b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    "folded first header": b"HTTP/1.1 200 OK\r\n folded\r\nContent-Length: 0\r\n\r\n",
    "header without colon": b"HTTP/1.1 200 OK\r\nX-Tag\r\nContent-Length: 0\r\n\r\n",
    "space before colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "conflicting lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!",
    "negative length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "chunk size 0x": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nok\r\n0\r\n\r\n",
    "chunk size with underscore": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n" + b"x" * 16,
    "chunk without CRLF": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n",
    "body cut short": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
    "chunked cut short": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nshort",
    "nothing": b"",
    "status line cut short": b"HTTP/1.1 200",
}


def outcome(transport: httpx.AsyncBaseTransport | None, server: RawServer, answer: bytes) -> object:
    server.answers = [(answer, False)]
    try:
        return run_client(transport, get(server.url + "/x"))
    except httpx.TransportError:
        return "transport error"


BROKEN = list(ANSWERS)[list(ANSWERS).index("malformed status line") :]


@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_same_outcome_as_httpx(server: RawServer, name: str) -> None:
    theirs = outcome(None, server, ANSWERS[name])
    ours = outcome(Http11Transport(), server, ANSWERS[name])
    assert ours == theirs
    assert (ours == "transport error") is (name in BROKEN)
    assert server.connections == 2


# ------------------------------------------------------------------------------------------- connections


def test_kept_alive_connection_is_reused(server: RawServer) -> None:
    server.answers = [(ok(b"one"), True), (ok(b"two"), True), (ok(b"three"), True)]

    async def calls(client: httpx.AsyncClient) -> list[bytes]:
        return [(await client.get(server.url + f"/{n}")).content for n in range(3)]

    assert run_client(Http11Transport(), calls) == [b"one", b"two", b"three"]
    assert server.connections == 1
    assert [r.split(b" ", 2)[1] for r in server.requests] == [b"/0", b"/1", b"/2"]


@pytest.mark.parametrize(
    ("answer", "server_keeps_it"),
    [
        (ok(b"bye", b"Connection: close"), True),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye", True),
        (b"HTTP/1.1 200 OK\r\n\r\nbye", False),  # delimited by the close
    ],
    ids=["connection-close", "http-1.0", "close-delimited"],
)
def test_connection_not_reused_after_an_answer_that_ends_it(
    server: RawServer, answer: bytes, server_keeps_it: bool
) -> None:
    """Even when the server leaves it open, a connection the answer said was over is not used again."""
    server.answers = [(answer, server_keeps_it), (ok(b"next"), False)]

    async def calls(client: httpx.AsyncClient) -> list[bytes]:
        return [(await client.get(server.url + f"/{n}")).content for n in range(2)]

    assert run_client(Http11Transport(), calls) == [b"bye", b"next"]
    assert server.connections == 2


@pytest.mark.parametrize("parting_words", [b"", b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n"])
def test_idle_connection_closed_by_the_server_is_not_used(server: RawServer, parting_words: bytes) -> None:
    """Closed (after a 408 or silently) while idle, and the client's loop has not run since: the next
    request goes on a new connection, and a 408 meant for nobody is not taken as its answer."""
    closed = threading.Event()

    def script(conn: socket.socket, head: bytes) -> bool:
        conn.sendall(ok(head.split(b" ", 2)[1]))
        if head.startswith(b"GET /first"):
            conn.sendall(parting_words)
            conn.shutdown(socket.SHUT_RDWR)
            closed.set()
            return False
        return True

    server.script = script

    async def calls(client: httpx.AsyncClient) -> list[bytes]:
        first = (await client.get(server.url + "/first")).content
        assert await asyncio.to_thread(closed.wait, 5)
        await asyncio.to_thread(lambda: None)  # the close has reached this side's socket by now
        return [first, (await client.post(server.url + "/second", json={"a": 1})).content]

    assert run_client(Http11Transport(), calls) == [b"/first", b"/second"]
    assert server.connections == 2


def test_a_request_cancelled_mid_answer_leaves_nothing_for_the_next(server: RawServer) -> None:
    """A call given up while its answer is on the way (the mainframe client's deadlines cancel it): the
    connection is closed, so that answer can never be read as the next request's."""
    release = threading.Event()

    def script(conn: socket.socket, head: bytes) -> bool:
        if head.startswith(b"GET /slow"):
            release.wait(5)
            conn.sendall(ok(b"late answer to /slow"))
        else:
            conn.sendall(ok(b"answer to /next"))
        return True

    server.script = script

    async def calls(client: httpx.AsyncClient) -> bytes:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.get(server.url + "/slow"), 0.2)
        release.set()  # the late answer is sent now, while the next request goes out
        return (await client.get(server.url + "/next")).content

    assert run_client(Http11Transport(), calls) == b"answer to /next"
    assert server.connections == 2


def test_server_that_drops_the_request_is_a_remote_protocol_error(server: RawServer) -> None:
    server.script = lambda conn, head: False
    with pytest.raises(httpx.RemoteProtocolError, match="Server disconnected without sending a response"):
        run_client(Http11Transport(), get(server.url + "/x"))


def test_nothing_listening_is_a_connect_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with pytest.raises(httpx.ConnectError):
        run_client(Http11Transport(), get(f"http://127.0.0.1:{port}/x"))


def test_read_timeout(server: RawServer) -> None:
    answered = threading.Event()

    def silent(conn: socket.socket, head: bytes) -> bool:
        answered.wait(5)
        return False

    server.script = silent

    async def call(client: httpx.AsyncClient) -> object:
        return await client.get(server.url + "/slow", timeout=httpx.Timeout(5.0, read=0.2))

    try:
        with pytest.raises(httpx.ReadTimeout):
            run_client(Http11Transport(), call)
    finally:
        answered.set()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * (LINE_LIMIT + 1) + b"\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X-Many: 1\r\n" * (MAX_HEADERS + 1) + b"Content-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 19 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 17 + b"\r\n",
    ],
    ids=["line-over-the-limit", "too-many-headers", "length-of-19-digits", "chunk-size-of-17-digits"],
)
def test_answers_past_the_limits_are_refused(server: RawServer, answer: bytes) -> None:
    server.answers = [(answer, False)]
    with pytest.raises(httpx.RemoteProtocolError):
        run_client(Http11Transport(), get(server.url + "/x"))


def test_unsupported_scheme() -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        run_client(Http11Transport(), get("ftp://127.0.0.1/x"))


# ---------------------------------------------------------------------------------------------- requests


def test_request_carries_the_headers_and_json_body(server: RawServer) -> None:
    server.answers = [(ok(), False)]

    async def call(client: httpx.AsyncClient) -> int:
        response = await client.put(
            server.url + "/package?x=1", json={"name": "démo"}, headers={"Cookie": "CF_Authorization=t"}
        )
        return response.status_code

    assert run_client(Http11Transport(), call) == 200
    [request] = server.requests
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"PUT /package?x=1 HTTP/1.1"
    headers = {n.lower(): v.strip() for n, _, v in (line.partition(b":") for line in lines[1:])}
    assert headers[b"host"] == server.url.split("//")[1].encode()
    assert headers[b"cookie"] == b"CF_Authorization=t"
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body)
    assert json.loads(body) == {"name": "démo"}


@pytest.mark.parametrize(
    "headers",
    [{"X-Value": "a\r\nInjected: 1"}, {"X-Value": "a\nb"}, {"X-Value": "a\0b"}, {"Bad Name": "x"}],
    ids=["crlf", "lf", "nul", "space-in-name"],
)
def test_header_that_would_split_the_request_is_refused_before_sending(
    server: RawServer, headers: dict[str, str]
) -> None:
    async def call(client: httpx.AsyncClient) -> object:
        return await client.get(server.url + "/x", headers=headers)

    with pytest.raises(httpx.LocalProtocolError):
        run_client(Http11Transport(), call)
    assert server.connections == 0 and server.requests == []


def test_streamed_body_of_unknown_length_is_sent_chunked(server: RawServer) -> None:
    server.answers = [(ok(), False)]

    async def body() -> AsyncIterator[bytes]:
        yield b"part one, "
        yield b"part two"

    async def call(client: httpx.AsyncClient) -> int:
        return (await client.post(server.url + "/x", content=body())).status_code

    assert run_client(Http11Transport(), call) == 200
    [request] = server.requests
    assert b"\r\nTransfer-Encoding: chunked\r\n" in request
    assert request.endswith(b"\r\n\r\n12\r\npart one, part two\r\n0\r\n\r\n")


# --------------------------------------------------------------------------------------------------- TLS


def test_tls_verifies_the_server_certificate(pki: dict[str, Path]) -> None:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(pki["server"])
    tls_server = RawServer(tls=server_context)
    try:
        tls_server.answers = [(ok(b"secret"), True), (ok(b"again"), True)]
        trusting = Http11Transport(context=ssl.create_default_context(cafile=str(pki["ca"])))

        async def calls(client: httpx.AsyncClient) -> list[bytes]:
            return [(await client.get(tls_server.url + f"/{n}")).content for n in range(2)]

        assert run_client(trusting, calls) == [b"secret", b"again"]
        assert tls_server.connections == 1
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            run_client(Http11Transport(context=ssl.create_default_context()), get(tls_server.url + "/x"))
        assert len(tls_server.requests) == 2  # the untrusted handshake sent nothing
    finally:
        tls_server.close()


# ----------------------------------------------------------------------------------- the mainframe client


@pytest.mark.parametrize("proxied", [False, True], ids=["direct", "environment-proxy"])
def test_the_mainframe_client_uses_it_unless_the_environment_names_a_proxy(
    server: RawServer, monkeypatch: pytest.MonkeyPatch, proxied: bool
) -> None:
    """Without a proxy the node's mainframe calls go through this transport; with one, through httpx's own,
    which applies it (this one does not)."""
    from dragonfly_hybrid.node.mainframe import MainframeClient
    from dragonfly_hybrid.node.settings import NodeSettings

    for variable in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    # mainframe.invalid resolves nowhere: with a proxy named, only the proxy can answer.
    base = "http://mainframe.invalid" if proxied else server.url
    if proxied:
        monkeypatch.setenv("HTTP_PROXY", server.url)
    rules = json.dumps({"hash": "h1", "rules": {"a.yar": "rule a { condition: true }"}}).encode()
    server.answers = [(ok(b"{}"), True), (ok(rules), True)]  # the login (no cookie: headers), the rules
    settings = NodeSettings(_env_file=None, base_url=base, client_id="id", client_secret="secret")  # type: ignore[call-arg]

    async def scenario() -> tuple[str, type]:
        async with MainframeClient(settings) as client:
            payload = await client.get_rules()
            return payload.hash, type(client._http._transport)

    commit, transport = asyncio.run(scenario())
    assert commit == "h1"
    assert (transport is Http11Transport) is not proxied
    targets = [request.split(b" ", 2)[1] for request in server.requests]
    assert targets == (
        [b"http://mainframe.invalid/", b"http://mainframe.invalid/rules"] if proxied else [b"/", b"/rules"]
    )
