"""Prometheus metrics and the health endpoint of the node."""

from __future__ import annotations

import contextlib
import functools
import http.client
import io
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from dragonfly_hybrid._core import DownloadBuffer

log = logging.getLogger("dragonfly_hybrid.metrics")

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)


class NodeMetrics:
    """Every metric of one node, in its own registry (tests run several nodes in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs_claimed = Counter("dragonfly_jobs_claimed", "Jobs claimed from the source.", registry=r)
        self.jobs_finished = Counter(
            "dragonfly_jobs_finished",
            "Jobs whose result was accepted, by outcome (success or failure body).",
            ["outcome"],
            registry=r,
        )
        self.jobs_dropped = Counter(
            "dragonfly_jobs_dropped",
            "Claimed jobs left for the server to lease again, by reason.",
            ["reason"],
            registry=r,
        )
        self.lease_lost = Counter(
            "dragonfly_lease_lost", "Results refused with 409: the lease had moved on.", registry=r
        )
        self.files_scanned = Counter("dragonfly_files_scanned", "Files scanned.", registry=r)
        self.bytes_scanned = Counter("dragonfly_bytes_scanned", "Bytes scanned (inflated).", registry=r)
        self.bytes_downloaded = Counter("dragonfly_bytes_downloaded", "Bytes downloaded.", registry=r)
        self.http_errors = Counter("dragonfly_http_errors", "HTTP errors met, by kind.", ["kind"], registry=r)
        self.scan_seconds = Histogram(
            "dragonfly_scan_seconds", "Time to scan one release.", buckets=LATENCY_BUCKETS, registry=r
        )
        # Per stage: where a job's time goes, so a node slower than its engine shows which stage it waits on.
        self.download_seconds = Histogram(
            "dragonfly_download_seconds",
            "Time to download every distribution of one job.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.submit_seconds = Histogram(
            "dragonfly_submit_seconds",
            "Time to deliver one job's result (retries included).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_wait_seconds = Histogram(
            "dragonfly_queue_wait_seconds",
            "Time a job waited in a queue for the next stage: download (claimed), scan (downloaded), "
            "submit (scanned).",
            ["stage"],
            buckets=(0.001, 0.01, *LATENCY_BUCKETS),
            registry=r,
        )
        self.scan_idle_seconds = Counter(
            "dragonfly_scan_idle_seconds",
            "Time the scan workers spent waiting for a downloaded job (summed over the workers).",
            registry=r,
        )
        self.job_seconds = Histogram(
            "dragonfly_job_seconds",
            "Time from claim to accepted result, per job.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge("dragonfly_jobs_in_flight", "Jobs claimed and not yet settled.", registry=r)
        self.claim_limit = Gauge(
            "dragonfly_claim_limit",
            "Jobs the node may hold at once, from its measured throughput.",
            registry=r,
        )
        self.download_buffers_kept = Gauge(
            "dragonfly_download_buffers_kept_bytes",
            "Bytes of download buffers kept for the next downloads (process-wide).",
            registry=r,
        )
        self.download_buffers_kept.set_function(lambda: DownloadBuffer.pooled()[1])

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


POLL_SECONDS = 0.05
"""How often the serving thread looks for a shutdown: ``close`` waits up to this long. With socketserver's
default (0.5 s), every node's exit (``--once`` drained, or SIGTERM) waited 0.25 s on average for it."""

MAX_CONNECTIONS = 32
"""Connections served at once, each on its own thread. The endpoint may face a whole network (0.0.0.0 in the
Docker image): uncapped, every idle or slow connection (slowloris) held a thread and a file descriptor for
ever, until the node could start no thread and open no file. At the cap the oldest connection is closed to
make room: a scrape or a health check, answered as soon as its request is in, is never the oldest for long."""

CONNECTION_SECONDS = 10.0
"""Time a connection may take, its request read and its answer written: a client sending a byte at a time
(each read in time) or reading its answer slowly frees its thread all the same."""

HEADER_BYTES = 16384
"""Bytes of headers read from a request; a scrape or a health check sends a few hundred. http.server reads 100
lines of 64 KiB: 32 connections of them held 250 MB, 1 GB once parsed (its request line is 64 KiB at most)."""


class _Headers(io.BufferedIOBase):
    """A connection's reading end that gives out ``HEADER_BYTES`` in all: http.server reads the headers with
    ``readline`` (no handler here reads a body)."""

    def __init__(self, rfile: io.BufferedIOBase) -> None:
        super().__init__()
        self._rfile = rfile
        self._left = HEADER_BYTES

    def readline(self, size: int | None = -1) -> bytes:
        if self._left <= 0:
            raise http.client.HTTPException(f"headers past {HEADER_BYTES} bytes")  # parse_request answers 431
        line = self._rfile.readline(self._left if size is None or size < 0 else min(size, self._left))
        self._left -= len(line)
        return line

    def close(self) -> None:
        self._rfile.close()  # the socket's file descriptor is freed once its last file is closed
        super().close()


class _Server(ThreadingHTTPServer):
    """Each connection on its own thread, ``MAX_CONNECTIONS`` at most, for ``CONNECTION_SECONDS`` at most."""

    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 dropped a burst's connections (their SYN resent 1 s later)

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self._open: dict[socket.socket, float] = {}  # connection -> deadline, oldest first
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def verify_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> bool:
        assert isinstance(request, socket.socket)  # TCP: a connection
        with self._open_lock:  # in the serving thread, before the connection gets its thread
            while len(self._open) >= MAX_CONNECTIONS:
                self._hang_up(next(iter(self._open)))
            self._open[request] = time.monotonic() + CONNECTION_SECONDS
        return True

    def service_actions(self) -> None:
        super().service_actions()
        now = time.monotonic()  # every POLL_SECONDS, in the serving thread
        with self._open_lock:
            for late in [conn for conn, deadline in self._open.items() if deadline <= now]:
                self._hang_up(late)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        with self._open_lock:
            self._open.pop(request, None)  # type: ignore[arg-type]
        super().shutdown_request(request)

    def hang_up_all(self) -> None:
        with self._open_lock:
            for conn in list(self._open):
                self._hang_up(conn)

    def _hang_up(self, conn: socket.socket) -> None:
        # With the lock held, so the connection's thread has not closed it yet (shutdown_request): its read
        # or write ends at once, and the thread closes it.
        del self._open[conn]
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: object
    ) -> None:
        # socketserver prints a traceback to stderr; a client that reset or left (or was hung up on) is no
        # error of the node's, anything else is one line.
        err = sys.exc_info()[1]
        if not isinstance(err, OSError):
            log.error("metrics endpoint: a request failed: %s: %s", type(err).__name__, err)


class MetricsServer:
    """Serves ``/metrics`` (Prometheus text format) and ``/healthz`` on a background thread."""

    def __init__(self, metrics: NodeMetrics, healthy: Callable[[], bool], host: str, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def parse_request(self) -> bool:
                self.rfile = _Headers(self.rfile)  # the headers come next (one request per connection)
                return super().parse_request()

            def do_GET(self) -> None:
                path = self.path.partition("?")[0]  # a scrape's query (Prometheus `params`) changes nothing
                if path == "/metrics":
                    self._reply(200, metrics.exposition(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = healthy()
                    self._reply(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n", "text/plain")
                else:
                    self._reply(404, b"not found\n", "text/plain")

            do_HEAD = do_GET  # curl -I, and checks that ask for the status only

            def version_string(self) -> str:
                return "dragonfly-hybrid"  # not the Python version (http.server's default tells it anyone)

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                del format, args  # scrapes every few seconds would flood the node's log

        # Binds now: a port in use (another node on this host) raises OSError here, before anything runs.
        self._server = _Server((host, port), Handler)
        serve = functools.partial(self._server.serve_forever, poll_interval=POLL_SECONDS)
        self._thread = threading.Thread(target=serve, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        # shutdown() waits for serve_forever to return: it would block forever on a server never started.
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
        self._server.hang_up_all()  # no connection keeps its thread once the node is done
