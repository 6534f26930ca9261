"""The node's downloads (``pypi/download.py``, ``pypi/direct.py``) against a real file host on 127.0.0.1 whose
answers each test scripts: kept-alive connections, hosts that close them, bodies cut short, chunked bodies,
caps, retries, redirects, credentials in the URL, TLS, an environment proxy, deadlines, and closing
mid-download."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from dragonfly_hybrid._core import DownloadBuffer
from dragonfly_hybrid.http_client import USER_AGENT
from dragonfly_hybrid.pypi.direct import DirectDownloads, Downloaded, downloaded_bytes
from dragonfly_hybrid.pypi.download import Downloader
from dragonfly_hybrid.pypi.index import DigestMismatch, DownloadError, DownloadTooLarge

Answer = Callable[[BaseHTTPRequestHandler], None]


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # clients that leave mid-answer are what tests do
            super().handle_error(request, client_address)


class FileHost:
    """A threaded HTTP/1.1 server: ``answers[path]`` writes the whole answer to a request for ``path`` (a
    proxy's absolute request URIs are routed by their path). Counts the connections it accepted."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.answers: dict[str, Answer] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.connections = 0
        self.release = threading.Event()
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                host.connections += 1
                super().setup()

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                host.requests.append((self.path, dict(self.headers.items())))
                answer = host.answers.get(urlsplit(self.path).path)
                if answer is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    answer(self)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        scheme = "https" if isinstance(self.server.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def host() -> Iterator[FileHost]:
    served = FileHost()
    yield served
    served.close()


@pytest.fixture
def downloader() -> Iterator[Downloader]:
    """One download thread. The tests of TLS, proxies and closing make their own: what they test is
    decided when a downloader is made, or is its closing."""
    made = Downloader(1)
    yield made
    made.close()


def body(data: bytes, *, chunked: bool = False, then_close: bool = False) -> Answer:
    """200 with ``data``; ``then_close``: the connection is closed afterwards, without saying so first."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        if chunked:
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for start in range(0, len(data), 100_000):
                piece = data[start : start + 100_000]
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            handler.wfile.write(b"0\r\n\r\n")
        else:
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        if then_close:
            handler.wfile.flush()
            handler.close_connection = True

    return answer


def status(code: int, *, times: int | None = None, then: Answer | None = None) -> Answer:
    """``code`` (``times`` times, then ``then``)."""
    left = [times]

    def answer(handler: BaseHTTPRequestHandler) -> None:
        if then is not None and left[0] is not None and left[0] <= 0:
            then(handler)
            return
        if left[0] is not None:
            left[0] -= 1
        handler.send_response(code)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return answer


def contents(data: Downloaded) -> bytes:
    return bytes(downloaded_bytes(data))


def download(downloader: Downloader, url: str, cap: int = 10_000_000, **kwargs: object) -> bytes:
    """The bytes downloaded (which :func:`download_buffer` gives as the node gets them)."""
    return contents(download_buffer(downloader, url, cap, **kwargs))


def download_buffer(downloader: Downloader, url: str, cap: int = 10_000_000, **kwargs: object) -> Downloaded:
    async def run() -> Downloaded:
        return await downloader.download(url, cap, backoff=0.0, **kwargs)  # type: ignore[arg-type]

    return asyncio.run(run())


DATA = bytes(range(256)) * 12_000  # 3 MB


@pytest.mark.usefixtures("empty_download_pool")
def test_files_are_read_into_reused_buffers_over_one_kept_alive_connection(
    host: FileHost, downloader: Downloader
) -> None:
    for name, size in (("a", 3000), ("b", 1000), ("c", 2000)):
        host.answers[f"/{name}.whl"] = body(name.encode() * size + DATA)
    for name, size in (("a", 3000), ("b", 1000), ("c", 2000)):
        # One buffer the socket reads fill, handed on to the scanner without a copy; the one before it,
        # dropped, is this one's (no larger than it, as it must be to serve).
        data = download_buffer(downloader, host.url(f"/{name}.whl"))
        assert isinstance(data, DownloadBuffer)
        assert contents(data) == name.encode() * size + DATA
        assert DownloadBuffer.pooled() == (0, 0)
        del data
        # The executor's thread may still hold the download's future (and so the buffer) for a moment
        # after handing the result over: the buffer reaches the pool once that goes too.
        deadline = time.monotonic() + 10
        while DownloadBuffer.pooled()[0] != 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        assert DownloadBuffer.pooled()[0] == 1
    assert host.connections == 1
    for _, headers in host.requests:
        assert headers["User-Agent"] == USER_AGENT
        assert headers["Accept-Encoding"] == "identity"


def test_an_empty_or_small_body_is_its_exact_bytes_on_the_same_connection(
    host: FileHost, downloader: Downloader
) -> None:
    host.answers["/empty.whl"] = body(b"")
    host.answers["/small.whl"] = body(b"tiny")
    for _ in range(2):
        assert download(downloader, host.url("/empty.whl")) == b""
        assert download(downloader, host.url("/small.whl")) == b"tiny"
    assert host.connections == 1


def test_a_connection_the_host_closed_while_idle_is_replaced_without_using_a_retry(
    host: FileHost, downloader: Downloader
) -> None:
    host.answers["/a.whl"] = body(DATA, then_close=True)
    for _ in range(3):
        assert download(downloader, host.url("/a.whl"), attempts=1) == DATA
    assert host.connections == 3


def test_a_body_cut_short_is_a_transient_error_and_nothing_is_returned(
    host: FileHost, downloader: Downloader
) -> None:
    def cut_short(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(DATA)))
        handler.end_headers()
        handler.wfile.write(DATA[:1000])
        handler.close_connection = True

    host.answers["/a.whl"] = cut_short
    with pytest.raises(DownloadError) as caught:
        download(downloader, host.url("/a.whl"), attempts=2)
    assert not caught.value.permanent
    assert str(caught.value) == f"{host.url('/a.whl')}: TruncatedBody after 2 tries"
    assert len(host.requests) == 2


def test_a_chunked_body_is_read_whole_and_capped_while_it_arrives(
    host: FileHost, downloader: Downloader
) -> None:
    host.answers["/a.whl"] = body(DATA, chunked=True)
    assert download(downloader, host.url("/a.whl")) == DATA
    with pytest.raises(DownloadTooLarge, match=r"a\.whl exceeds the download size cap of 1000000 bytes"):
        download(downloader, host.url("/a.whl"), cap=1_000_000)


def test_an_announced_size_over_the_cap_is_refused_before_the_body_is_read(
    host: FileHost, downloader: Downloader
) -> None:
    host.answers["/a.whl"] = body(DATA)
    with pytest.raises(DownloadTooLarge) as caught:
        download(downloader, host.url("/a.whl"), cap=1000)
    assert caught.value.permanent
    assert str(caught.value) == (
        f"a.whl exceeds the download size cap of 1000 bytes (the server announces {len(DATA)} bytes)"
    )


def test_server_errors_are_retried_and_a_404_is_permanent(host: FileHost, downloader: Downloader) -> None:
    host.answers["/a.whl"] = status(503, times=2, then=body(DATA))
    assert download(downloader, host.url("/a.whl"), attempts=3) == DATA
    with pytest.raises(DownloadError) as caught:
        download(downloader, host.url("/missing.whl"))
    assert caught.value.permanent
    assert str(caught.value) == f"could not download missing.whl: HTTP 404 from {host.url('/missing.whl')}"
    assert [path for path, _ in host.requests] == ["/a.whl"] * 3 + ["/missing.whl"]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/a.whl", "not a url"])
def test_a_url_of_a_scheme_no_download_takes_is_a_permanent_error_at_once(
    downloader: Downloader, url: str
) -> None:
    # The job gets its failure now, instead of being left to be leased again and fail the same way.
    with pytest.raises(DownloadError) as caught:
        download(downloader, url, attempts=3)
    assert caught.value.permanent and "UnsupportedProtocol" in str(caught.value)


def redirect(location: str) -> Answer:
    def moved(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return moved


def test_a_redirect_is_followed(host: FileHost, downloader: Downloader) -> None:
    host.answers["/a.whl"] = redirect("/files/a.whl")
    host.answers["/files/a.whl"] = body(DATA)
    assert download(downloader, host.url("/a.whl")) == DATA


def test_a_path_with_characters_to_percent_encode_is_downloaded(
    host: FileHost, downloader: Downloader
) -> None:
    host.answers["/files/a%20b%C3%A9.whl"] = body(DATA)
    assert download(downloader, host.url("/files/a bé.whl")) == DATA


def test_bytes_that_do_not_match_the_listed_digest_are_a_permanent_error(
    host: FileHost, downloader: Downloader
) -> None:
    host.answers["/a.whl"] = body(DATA)
    listed = hashlib.sha256(b"other bytes").hexdigest()
    assert download(downloader, host.url("/a.whl"), sha256=hashlib.sha256(DATA).hexdigest()) == DATA
    with pytest.raises(DigestMismatch) as caught:
        download(downloader, host.url("/a.whl"), sha256=listed)
    assert caught.value.permanent
    assert str(caught.value) == (
        f"sha256 of a.whl is {hashlib.sha256(DATA).hexdigest()}, but the index lists {listed} "
        f"(from {host.url('/a.whl')})"
    )


def test_tls_downloads_verify_the_host_certificate(pki: dict[str, Path]) -> None:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(pki["server"])
    tls_host = FileHost(tls=server_context)
    try:
        tls_host.answers["/a.whl"] = body(DATA)
        trusting = DirectDownloads(context=ssl.create_default_context(cafile=str(pki["ca"])))
        try:
            assert contents(trusting.get(tls_host.url("/a.whl"), "a.whl", 10_000_000)) == DATA
        finally:
            trusting.close()
        downloader = Downloader(1)  # the package's trust store, which does not hold the test CA
        try:
            with pytest.raises(DownloadError) as caught:
                download(downloader, tls_host.url("/a.whl"), attempts=1)
        finally:
            downloader.close()
        assert str(caught.value) == f"{tls_host.url('/a.whl')}: SSLCertVerificationError after 1 tries"
        assert [path for path, _ in tls_host.requests] == ["/a.whl"]  # the untrusted handshake sent nothing
    finally:
        tls_host.close()


def _no_proxy_but_http(monkeypatch: pytest.MonkeyPatch, proxy: str) -> None:
    for variable in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy)


def test_a_proxy_named_by_the_environment_carries_the_downloads(
    host: FileHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    _no_proxy_but_http(monkeypatch, host.url(""))
    host.answers["/pkg/a.whl"] = body(DATA)
    downloader = Downloader(1)
    try:
        # files.invalid resolves nowhere: only the proxy can answer.
        assert download(downloader, "http://files.invalid/pkg/a.whl") == DATA
    finally:
        downloader.close()
    assert [path for path, _ in host.requests] == ["http://files.invalid/pkg/a.whl"]


def test_closing_the_downloader_ends_a_download_under_way(host: FileHost) -> None:
    started = threading.Event()

    def stalls(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(DATA)))
        handler.end_headers()
        handler.wfile.write(DATA[:1000])
        handler.wfile.flush()
        started.set()
        host.release.wait(60)

    host.answers["/a.whl"] = stalls
    downloader = Downloader(1)

    def close_once_started() -> None:
        if started.wait(30):
            downloader.close()

    closer = threading.Thread(target=close_once_started)
    closer.start()
    try:
        with pytest.raises(DownloadError) as caught:
            download(downloader, host.url("/a.whl"))
    finally:
        closer.join()
    assert not caught.value.permanent
    assert host.url("/a.whl") in str(caught.value)


def test_closing_the_downloader_ends_a_body_of_no_announced_length_under_way(host: FileHost) -> None:
    """http.client lets go of the connection of such an answer once its head is read: closing still ends the
    read of its body (it went on, and the bytes read until the host stopped were a success)."""
    left = threading.Event()
    host.answers["/a.whl"] = slow(left, "body")
    downloader = Downloader(1)

    async def closed_under_way() -> Downloaded:
        under_way = asyncio.ensure_future(downloader.download(host.url("/a.whl"), 10_000_000))
        while not host.requests:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # the head is read: the body arrives a byte every 20 ms
        downloader.close()
        return await asyncio.wait_for(under_way, 30)

    started = time.monotonic()
    with pytest.raises(DownloadError) as caught:
        asyncio.run(closed_under_way())
    assert time.monotonic() - started < 4  # well before the host is done (5 s)
    assert not caught.value.permanent
    assert left.wait(10)


def test_a_close_at_any_moment_of_the_downloads_fails_them_only_as_download_errors(host: FileHost) -> None:
    """The downloader closed 0-10 ms after 8 downloads started on 4 threads, so that the close lands in
    every step of one (connecting, requesting, reading the body, finishing it): each download gives its
    bytes, fails with a DownloadError, or was still queued and is dropped (cancelled); nothing else
    escapes from http.client, and nothing hangs."""
    host.answers["/a.whl"] = body(DATA)

    async def downloads_closed_after(seconds: float) -> list[object]:
        downloader = Downloader(4)
        started = [
            asyncio.ensure_future(downloader.download(host.url("/a.whl"), 10_000_000, backoff=0.0))
            for _ in range(8)
        ]
        await asyncio.sleep(seconds)
        downloader.close()
        return list(await asyncio.wait_for(asyncio.gather(*started, return_exceptions=True), 30))

    def kind(outcome: object) -> object:
        if isinstance(outcome, (bytes, bytearray, DownloadBuffer)) and contents(outcome) == DATA:
            return "the bytes"  # each step's bytes are not kept
        return outcome

    delays = [step % 20 * 0.0005 for step in range(40)]
    outcomes = [kind(o) for delay in delays for o in asyncio.run(downloads_closed_after(delay))]
    expected = (DownloadError, asyncio.CancelledError)
    unexpected = [o for o in outcomes if not (o == "the bytes" or isinstance(o, expected))]
    assert not unexpected, unexpected[:3]
    assert "the bytes" in outcomes and any(isinstance(o, DownloadError) for o in outcomes)


def drip(left: threading.Event, *, headers: bool = True) -> Answer:
    """200 announcing DATA, then a byte of it every 20 ms (never silent long enough for a read timeout);
    without ``headers``, not a byte. ``left`` is set once the client has gone (a write fails, or for a
    silent answer the connection reads as closed)."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        try:
            if not headers:
                handler.connection.settimeout(30)
                handler.connection.recv(1)  # returns once the client closes or shuts down its end
                return
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(DATA)))
            handler.end_headers()
            for offset in range(len(DATA)):
                handler.wfile.write(DATA[offset : offset + 1])
                handler.wfile.flush()
                time.sleep(0.02)
        except OSError:
            pass
        finally:
            left.set()
            handler.close_connection = True

    return answer


@pytest.mark.parametrize(
    ("answer", "path"),
    [
        pytest.param("drip", "/a.whl", id="direct"),
        pytest.param("drip", "/moved/a.whl", id="direct-after-a-redirect"),
        pytest.param("silent", "/a.whl", id="headers-never-sent"),
    ],
)
def test_a_download_still_under_way_at_its_deadline_is_ended_there_and_not_tried_again(
    host: FileHost, downloader: Downloader, answer: str, path: str
) -> None:
    """The deadline bounds the whole download (a read timeout of 60 s never fires on a host sending a byte
    every 20 ms); the host sees the connection go well before its body would have ended (an hour)."""
    left = threading.Event()
    host.answers["/a.whl"] = drip(left, headers=answer == "drip")
    host.answers["/moved/a.whl"] = redirect("/a.whl")
    with pytest.raises(DownloadError) as caught:
        download(downloader, host.url(path), attempts=3, deadline=time.monotonic() + 0.5)
    assert not caught.value.permanent
    assert str(caught.value) == (
        f"{host.url(path)}: not downloaded by its deadline (the job's lease), after 1 tries"
    )
    assert left.wait(30)
    assert [p for p, _ in host.requests if p == "/a.whl"] == ["/a.whl"]


def test_a_download_whose_deadline_has_passed_is_not_started(host: FileHost, downloader: Downloader) -> None:
    host.answers["/a.whl"] = body(DATA)
    with pytest.raises(DownloadError) as caught:
        download(downloader, host.url("/a.whl"), deadline=time.monotonic())
    assert not caught.value.permanent
    reason = "not started: its deadline (the job's lease) had passed"
    assert str(caught.value) == f"{host.url('/a.whl')}: {reason}"
    assert host.requests == []


def test_a_deadline_not_reached_changes_nothing_and_ends_retries_due_after_it(
    host: FileHost, downloader: Downloader
) -> None:
    host.answers["/a.whl"] = status(503, times=1, then=body(DATA))
    assert download(downloader, host.url("/a.whl"), deadline=time.monotonic() + 60) == DATA
    host.answers["/b.whl"] = status(503)

    async def run() -> None:
        # The first try's 503 arrives at once; the pause before a second (jittered, up to 10^6 s: past the
        # deadline but once in 200,000 runs) is not waited for.
        await downloader.download(host.url("/b.whl"), 1000, backoff=1e6, deadline=time.monotonic() + 5)

    with pytest.raises(DownloadError) as caught:
        asyncio.run(run())
    late = f"{host.url('/b.whl')}: not downloaded by its deadline (the job's lease), after 1 tries"
    assert str(caught.value) == late
    assert [p for p, _ in host.requests].count("/b.whl") == 1


def test_a_redirect_loop_is_a_permanent_download_error_and_not_retried(
    host: FileHost, downloader: Downloader
) -> None:
    host.answers["/a.whl"] = redirect("/a.whl")
    with pytest.raises(DownloadError) as caught:
        download(downloader, host.url("/a.whl"), attempts=3)
    assert caught.value.permanent
    assert str(caught.value) == f"{host.url('/a.whl')}: TooManyRedirects: Exceeded maximum allowed redirects."
    # One try: the request and its 20 redirects (as httpx counts them), all on the direct path since it
    # follows redirects itself (22 when the direct path left redirects to httpx: its request, then httpx's
    # 21), over one kept-alive connection.
    assert len(host.requests) == 21
    assert host.connections == 1


def test_a_url_httpx_refuses_is_a_permanent_download_error_without_credentials(
    host: FileHost, downloader: Downloader
) -> None:
    url = host.url("/\x1b[2J.whl").replace("http://", "http://alice:s3cret@")
    with pytest.raises(DownloadError) as caught:
        download(downloader, url)
    assert caught.value.permanent
    message = str(caught.value)
    assert message.startswith(
        f"{host.url('/')}\x1b[2J.whl: InvalidURL: Invalid non-printable ASCII character"
    )
    assert "s3cret" not in message and "alice" not in message
    assert host.requests == []


def slow(left: threading.Event, part: str, seconds: float = 5.0) -> Answer:
    """200 whose ``part`` arrives a byte every 20 ms for ``seconds``: ``"head"``, a header line; ``"body"``, a
    body of no announced length (it ends with the connection). Then the rest at once: a whole answer, which
    a download not ended at its deadline would take. ``left`` is set if the client goes first."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        try:
            if part == "head":
                handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            else:
                handler.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                handler.wfile.write(b"a")
                handler.wfile.flush()
                time.sleep(0.02)
            if part == "head":
                handler.wfile.write(b"\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            left.set()
        finally:
            handler.close_connection = True

    return answer


@pytest.mark.parametrize("part", ["head", "body"])
@pytest.mark.parametrize("route", ["direct", "redirected-to-another-host", "credentials-in-the-url"])
def test_a_head_or_a_body_of_no_announced_length_arriving_byte_by_byte_is_ended_at_the_deadline(
    host: FileHost, downloader: Downloader, part: str, route: str
) -> None:
    """Never a success: neither what a socket shut down mid-head leaves (the end of the connection read as
    the end of the head and of an empty body), nor the bytes of a body the end of the connection delimits
    (http.client lets go of such a connection once its head is read). The same after a redirect, and with
    credentials in the URL (which httpx took, with no deadline until the head had arrived)."""
    left = threading.Event()
    slow_host = FileHost()
    try:
        slow_host.answers["/a.whl"] = slow(left, part)
        host.answers["/moved/a.whl"] = redirect(slow_host.url("/a.whl"))
        url = {
            "direct": slow_host.url("/a.whl"),
            "redirected-to-another-host": host.url("/moved/a.whl"),
            "credentials-in-the-url": slow_host.url("/a.whl").replace("http://", "http://alice:s3cret@"),
        }[route]
        started = time.monotonic()
        with pytest.raises(DownloadError) as caught:
            download(downloader, url, attempts=3, deadline=started + 0.5)
        assert time.monotonic() - started < 4  # well before the host is done (5 s)
        assert not caught.value.permanent
        late = "not downloaded by its deadline (the job's lease), after 1 tries"
        assert str(caught.value) == f"{url.replace('alice:s3cret@', '')}: {late}"
        assert left.wait(10)
        assert [p for p, _ in slow_host.requests] == ["/a.whl"]
    finally:
        slow_host.close()


@pytest.mark.parametrize("after_a_download", [False, True], ids=["first", "after-a-download"])
@pytest.mark.parametrize("part", ["head", "body"])
def test_through_a_proxy_a_head_or_a_body_arriving_byte_by_byte_is_ended_at_the_deadline(
    host: FileHost, monkeypatch: pytest.MonkeyPatch, part: str, after_a_download: bool
) -> None:
    """httpx's side: the deadline applies from the connection's opening, so a head dripped by the proxy
    (which took until it was whole: httpx's read timeout ends only silence) is cut off too, also after an
    earlier download through the same proxy (whose connection, kept alive, would have carried the request
    without opening one); and what an expiry leaves of a body the end of the connection delimits is not
    taken for the whole body."""
    _no_proxy_but_http(monkeypatch, host.url(""))
    left = threading.Event()
    host.answers["/pkg/a.whl"] = slow(left, part)
    host.answers["/pkg/b.whl"] = body(DATA)
    downloader = Downloader(1)
    try:
        if after_a_download:
            assert (
                download(downloader, "http://files.invalid/pkg/b.whl", deadline=time.monotonic() + 30) == DATA
            )
        started = time.monotonic()
        with pytest.raises(DownloadError) as caught:
            download(downloader, "http://files.invalid/pkg/a.whl", attempts=3, deadline=started + 0.5)
        assert time.monotonic() - started < 4  # well before the host is done (5 s)
    finally:
        downloader.close()
    assert not caught.value.permanent
    late = "not downloaded by its deadline (the job's lease), after 1 tries"
    assert str(caught.value) == f"http://files.invalid/pkg/a.whl: {late}"
    assert left.wait(10)
    assert [path for path, _ in host.requests][-1] == "http://files.invalid/pkg/a.whl"


def test_over_tls_through_httpx_a_dripped_head_is_ended_at_the_deadline(pki: dict[str, Path]) -> None:
    """The socket httpcore opens is detached by the TLS handshake (its descriptor moves to the TLS socket,
    and shutting the plain one down would end nothing): a duplicate of it is what the deadline ends."""
    import httpx

    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(pki["server"])
    tls_host = FileHost(tls=server_context)
    left = threading.Event()
    tls_host.answers["/a.whl"] = slow(left, "head")
    client = httpx.Client(verify=ssl.create_default_context(cafile=str(pki["ca"])))
    downloader = Downloader(1, client=client)  # a client given: the httpx path, whatever the environment
    try:
        started = time.monotonic()
        with pytest.raises(DownloadError) as caught:
            download(downloader, tls_host.url("/a.whl"), attempts=3, deadline=started + 0.5)
        assert time.monotonic() - started < 4  # well before the host is done (5 s)
    finally:
        downloader.close()
        tls_host.close()
    late = "not downloaded by its deadline (the job's lease), after 1 tries"
    assert str(caught.value) == f"{tls_host.url('/a.whl')}: {late}"
    assert left.wait(10)


def test_redirects_are_followed_only_until_the_deadline(host: FileHost, downloader: Downloader) -> None:
    def slowly_to_itself(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(0.1)
        redirect("/a.whl")(handler)

    host.answers["/a.whl"] = slowly_to_itself
    with pytest.raises(DownloadError) as caught:
        download(downloader, host.url("/a.whl"), attempts=3, deadline=time.monotonic() + 0.5)
    assert not caught.value.permanent
    late = "not downloaded by its deadline (the job's lease), after 1 tries"
    assert str(caught.value) == f"{host.url('/a.whl')}: {late}"
    assert len(host.requests) < 21  # not the redirect limit: 21 answers take 2.1 s


def test_credentials_in_the_url_are_sent_as_basic_auth_to_its_own_origin_only(
    host: FileHost, downloader: Downloader
) -> None:
    other = FileHost()  # another port: another origin
    try:
        host.answers["/a.whl"] = redirect("/files/a.whl")
        host.answers["/files/a.whl"] = redirect(other.url("/a.whl"))
        # Back to the origin, at a path the other host chose: no longer with the credentials.
        other.answers["/a.whl"] = redirect(host.url("/private/a.whl"))
        host.answers["/private/a.whl"] = body(DATA)
        url = host.url("/a.whl").replace("http://", "http://alice:s%3Acr%C3%A9t@")
        assert download(downloader, url) == DATA
    finally:
        other.close()

    def sent(served: FileHost, **more: str) -> dict[str, str]:
        port = served.server.server_address[1]
        return {"Host": f"127.0.0.1:{port}", "Accept-Encoding": "identity", "User-Agent": USER_AGENT, **more}

    auth = "Basic " + base64.b64encode("alice:s:crét".encode()).decode()
    # To the URL's origin, through a redirect within it too; to another origin, or after one, never.
    assert host.requests == [
        ("/a.whl", sent(host, Authorization=auth)),
        ("/files/a.whl", sent(host, Authorization=auth)),
        ("/private/a.whl", sent(host)),
    ]
    assert other.requests == [("/a.whl", sent(other))]


def test_redirects_through_many_origins_keep_a_bounded_number_of_connections(host: FileHost) -> None:
    """Each spelling of the address is another origin: a chain through nine of them kept nine open
    connections (a host could lead a long-running node out of file descriptors)."""
    port = host.server.server_address[1]
    spellings = ["127.0.0.1", "localhost", "127.1", "127.0.1", "2130706433", "0x7f000001", "0177.0.0.1"]
    spellings += ["127.0.0.01", "127.000.0.1"]
    urls = [f"http://{name}:{port}/hop{i}.whl" for i, name in enumerate(spellings)]
    for i, next_url in enumerate(urls[1:]):
        host.answers[f"/hop{i}.whl"] = redirect(next_url)
    host.answers[f"/hop{len(urls) - 1}.whl"] = body(DATA)
    downloader = Downloader(1)
    try:
        assert download(downloader, urls[0]) == DATA
        direct = downloader._direct  # what the downloader holds open, by its own count
        assert direct is not None and 1 <= len(direct._every) <= 4
    finally:
        downloader.close()


def test_a_redirect_to_a_url_no_download_takes_is_a_permanent_error_without_credentials(
    host: FileHost, downloader: Downloader
) -> None:
    host.answers["/a.whl"] = redirect("ftp://alice:s3cret@127.0.0.1/a.whl")
    with pytest.raises(DownloadError) as caught:
        download(downloader, host.url("/a.whl"), attempts=3)
    assert caught.value.permanent
    reason = "UnusableRedirect: HTTP 302 to 'ftp://127.0.0.1/a.whl', not an http or https URL"
    assert str(caught.value) == f"{host.url('/a.whl')}: {reason}"
    assert len(host.requests) == 1
