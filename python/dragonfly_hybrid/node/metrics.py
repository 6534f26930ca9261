"""Prometheus metrics and the health endpoint of the node."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from dragonfly_hybrid._core import DownloadBuffer

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


class MetricsServer:
    """Serves ``/metrics`` (Prometheus text format) and ``/healthz`` on a background thread."""

    def __init__(self, metrics: NodeMetrics, healthy: Callable[[], bool], host: str, port: int) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._reply(200, metrics.exposition(), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    ok = healthy()
                    self._reply(200 if ok else 503, b"ok\n" if ok else b"unhealthy\n", "text/plain")
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                del format, args  # scrapes every few seconds would flood the node's log

        # Binds now: a port in use (another node on this host) raises OSError here, before anything runs.
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
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
