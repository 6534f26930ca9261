"""The node's metrics and health endpoint against hostile clients: a real MetricsServer on 127.0.0.1 (and a
real node process against the fake mainframe), real sockets. Bounded by counts of threads and connections,
never by time. Each test of a fix fails on the code before it:

* every connection held a thread (and a file descriptor) for as long as its client kept it open: idle or
  dripping clients (slowloris) grew the node's threads without bound, until it could start none. At most
  ``MAX_CONNECTIONS`` are served at once (the oldest is hung up on) and each for ``CONNECTION_SECONDS``;
* a request's headers could be 100 lines of 64 KiB, all held until the blank line: ``HEADER_BYTES`` now;
* a client resetting its connection mid-request printed socketserver's traceback to the node's stderr;
* a scrape with a query string (Prometheus ``params``, ``/healthz?``) was 404, and HEAD was 501.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dragonfly_hybrid.node import metrics as endpoint
from dragonfly_hybrid.node.metrics import MetricsServer, NodeMetrics
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.mainframe import FakeMainframe
from tests.test_node import add_releases, answers, free_port, node_process
from tests.test_node import fake as fake  # a fixture: a fake mainframe
from tests.test_redteam_watch_crash import HANG_GUARD


def until(condition: Callable[[], bool], seconds: float = HANG_GUARD) -> bool:
    """Poll ``condition`` until it holds (True) or the hang guard ends (False)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def server() -> Iterator[MetricsServer]:
    metrics = NodeMetrics()
    metrics.jobs_claimed.inc(3)
    server = MetricsServer(metrics, lambda: True, "127.0.0.1", 0).start()
    yield server
    server.close()


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=HANG_GUARD)


def ask(port: int, request: bytes) -> bytes:
    """Send ``request`` raw and read the answer until the server closes the connection."""
    with connect(port) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


def reset(conn: socket.socket) -> None:
    """Close with an RST, as a client that crashed or gave up does."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


def threads_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1])


# --- slowloris ----------------------------------------------------------------------------------------------


def test_idle_connections_hold_at_most_the_cap_of_threads_and_health_still_answers(
    server: MetricsServer,
) -> None:
    before = threading.active_count()
    idle = [connect(server.port) for _ in range(3 * endpoint.MAX_CONNECTIONS)]
    try:
        # Accepted after every idle one (the listen queue is first in, first out): all of them are in.
        assert ask(server.port, b"GET /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 200 OK")
        assert until(lambda: threading.active_count() <= before + endpoint.MAX_CONNECTIONS), (
            threading.active_count() - before
        )
    finally:
        for conn in idle:
            conn.close()


def test_a_client_dripping_its_request_a_byte_at_a_time_is_hung_up_on(
    server: MetricsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each byte comes well within any per-read timeout; the connection's whole time is what is bounded."""
    monkeypatch.setattr(endpoint, "CONNECTION_SECONDS", 0.5)
    drip = b"GET /healthz HTTP/1.1\r\nX-Drip: " + b"a" * 3000
    hung_up = False
    with connect(server.port) as conn:
        conn.settimeout(0.02)
        for byte in drip:  # a minute of it at most: the hang guard
            try:
                conn.sendall(bytes([byte]))
                hung_up = conn.recv(1) == b""
            except TimeoutError:
                continue  # nothing to read: the next byte
            except OSError:
                hung_up = True  # reset
            if hung_up:
                break
    assert hung_up, "the server let a request take minutes"


def test_the_node_under_slowloris_keeps_its_threads_working_and_its_health_endpoint(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """A real node process (metrics on 127.0.0.1): hundreds of idle connections leave its thread count near
    what it was, its health check answering and its jobs being done; it then stops on SIGTERM with exit 0."""
    add_releases(fake, 3)
    port = free_port()
    node = node_process(fake, tmp_path, DRAGONFLY_METRICS_PORT=str(port), DRAGONFLY_METRICS_HOST="127.0.0.1")
    idle: list[socket.socket] = []
    try:
        assert until(lambda: answers(port) or node.poll() is not None) and answers(port), node.stderr
        assert fake.wait_until(lambda: len(fake.results) == 3, timeout=HANG_GUARD)
        before = threads_of(node.pid)
        idle = [connect(port) for _ in range(300)]
        assert ask(port, b"GET /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 200 OK")
        for i in range(3):
            fake.add_release(f"late{i}", "1.0", {"setup.py": b"print('late')\n"})
        assert fake.wait_until(lambda: len(fake.results) == 6, timeout=HANG_GUARD)
        # Its own pools may still grow a little; the endpoint adds at most its cap.
        bound = before + endpoint.MAX_CONNECTIONS + 8
        assert until(lambda: threads_of(node.pid) <= bound), threads_of(node.pid) - before
    finally:
        for conn in idle:
            conn.close()
        node.terminate()
        _, stderr = node.communicate(timeout=HANG_GUARD)
    assert node.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_headers_past_the_budget_are_refused_before_the_rest_is_read(server: MetricsServer) -> None:
    """http.server reads 100 header lines of 64 KiB, and held them: 32 connections sending 99 such lines
    (never the blank line) held 250 MB of the node's memory. The server answers once it has HEADER_BYTES."""
    line = b"X-Fill: " + b"a" * 60_000 + b"\r\n"
    answered = False
    with connect(server.port) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")
        conn.settimeout(0.05)
        for _ in range(99):  # fewer than http.server's 100: it would wait for more
            try:
                conn.sendall(line)
                conn.recv(65536)  # its 431, the end of the connection, or a reset: it read no more
            except TimeoutError:
                continue  # not answered yet: the next line
            except OSError:
                pass
            answered = True
            break
    assert answered, "the server read 6 MB of headers and waited for more"


# --- errors and tracebacks ----------------------------------------------------------------------------------


def test_a_client_resetting_mid_request_prints_no_traceback(
    server: MetricsServer, capfd: pytest.CaptureFixture[str]
) -> None:
    before = threading.active_count()
    for _ in range(3):
        conn = connect(server.port)
        conn.sendall(b"GET /metrics HTTP/1.1\r\n")  # the headers never come: the server is reading them
        assert until(lambda: threading.active_count() > before)
        reset(conn)
        assert until(lambda: threading.active_count() <= before)  # its thread is done with it
    assert ask(server.port, b"GET /healthz HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.0 200 OK")
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception" not in err, err


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", b"414"),
        (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n", b"431"),
        (b"GET /healthz HTTP/1.1\r\n" + b"X: a\r\n" * 200 + b"\r\n", b"431"),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", b"501"),
        (b"GET /metrics HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", b"200"),
        (b"GET http://example.com/metrics HTTP/1.1\r\n\r\n", b"404"),  # absolute-form: HTTP/1.0 proxies only
        (b"GET /%6detrics HTTP/1.1\r\n\r\n", b"404"),
        (b"GET /metrics\x00 HTTP/1.1\r\n\r\n", b"404"),
    ],
    ids=["huge-line", "huge-header", "many-headers", "post", "expect", "absolute-form", "percent", "nul"],
)
def test_hostile_requests_get_one_status_and_leave_nothing_on_stderr(
    server: MetricsServer, capfd: pytest.CaptureFixture[str], request_bytes: bytes, status: bytes
) -> None:
    answer = ask(server.port, request_bytes)
    assert answer.split(b" ", 2)[1] == status, answer[:200]
    assert b"Traceback" not in answer
    assert capfd.readouterr().err == ""


# --- what scrapers send -------------------------------------------------------------------------------------


def test_a_scrape_with_a_query_string_is_answered(server: MetricsServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    scraped = urllib.request.urlopen(f"{base}/metrics?name[]=dragonfly_jobs_claimed", timeout=HANG_GUARD)
    assert "dragonfly_jobs_claimed_total 3.0" in scraped.read().decode()
    health = urllib.request.urlopen(f"{base}/healthz?", timeout=HANG_GUARD)
    assert (health.status, health.read()) == (200, b"ok\n")


@pytest.mark.parametrize("path", ["/healthz", "/metrics", "/elsewhere"])
def test_head_answers_the_status_and_length_without_the_body(server: MetricsServer, path: str) -> None:
    get = ask(server.port, f"GET {path} HTTP/1.1\r\n\r\n".encode())
    head = ask(server.port, f"HEAD {path} HTTP/1.1\r\n\r\n".encode())
    get_headers, body = get.split(b"\r\n\r\n", 1)
    status = get_headers.split(b"\r\n", 1)[0]
    assert head.endswith(b"\r\n\r\n") and head.split(b"\r\n", 1)[0] == status
    assert f"Content-Length: {len(body)}".encode() in head


def test_concurrent_scrapes_each_get_the_whole_exposition() -> None:
    """Scrapes on their own threads while the node counts: every answer whole and parseable."""
    metrics = NodeMetrics()
    metrics.jobs_finished.labels(outcome="success").inc()
    server = MetricsServer(metrics, lambda: True, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    scraped: list[set[str]] = []
    errors: list[BaseException] = []

    def scrape() -> None:
        try:
            for _ in range(5):
                text = urllib.request.urlopen(url, timeout=HANG_GUARD).read().decode()
                scraped.append({s.name for f in text_string_to_metric_families(text) for s in f.samples})
        except BaseException as err:  # reported by the test's thread
            errors.append(err)

    scrapers = [threading.Thread(target=scrape) for _ in range(endpoint.MAX_CONNECTIONS // 2)]
    try:
        for t in scrapers:
            t.start()
        while any(t.is_alive() for t in scrapers):
            metrics.jobs_finished.labels(outcome="success").inc()
            metrics.scan_seconds.observe(0.3)
            time.sleep(0.001)
        for t in scrapers:
            t.join()
    finally:
        server.close()
    samples = {s.name for f in metrics.registry.collect() for s in f.samples}
    assert errors == []
    assert len(scraped) == 5 * len(scrapers) and all(names == samples for names in scraped)
