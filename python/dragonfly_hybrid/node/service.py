"""Wiring a node from its settings: source, sink, rules, metrics server, signals."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from dragonfly_hybrid._core import Limits, Rules
from dragonfly_hybrid.node.mainframe import MainframeClient
from dragonfly_hybrid.node.metrics import MetricsServer, NodeMetrics
from dragonfly_hybrid.node.pipeline import Node, NodeOptions, RuleState, install_signal_handlers
from dragonfly_hybrid.node.settings import ConfigError, NodeSettings
from dragonfly_hybrid.node.sinks import JsonLinesSink, MainframeSink, ResultsNotWritten
from dragonfly_hybrid.node.sources import LocalSource, MainframeSource

log = logging.getLogger("dragonfly_hybrid.service")


class StoppedIncomplete(Exception):
    """A standalone run stopped by SIGTERM/SIGINT before every release of its list had a result line (never
    claimed, or unfinished when the grace period ended): the command exits ``128 + signum``, as ``scan``
    does, never 0 ("every release done")."""

    def __init__(self, sig: signal.Signals, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + sig


@dataclass
class LocalJobs:
    """A standalone run: releases resolved from an index, rules from disk, results as JSON lines."""

    releases: Sequence[tuple[str, str, list[str]]]
    rules: Rules
    output: IO[str]


def node_options(settings: NodeSettings, *, once: bool = False, max_jobs: int | None = None) -> NodeOptions:
    return NodeOptions(
        job_timeout=settings.job_timeout,
        bulk_size=settings.bulk_size,
        load_duration=settings.load_duration,
        max_download_size=settings.max_scan_size,  # the setting's public name; it caps downloads
        download_concurrency=settings.download_concurrency,
        submit_concurrency=settings.submit_concurrency,
        grace_period=settings.grace_period,
        once=once,
        max_jobs=max_jobs,
    )


class _Health:
    """``/healthz`` of a node that may not exist yet: the endpoint is bound before the node logs in."""

    def __init__(self) -> None:
        self.node: Node | None = None

    def __call__(self) -> bool:
        return self.node is not None and self.node.healthy()


def open_metrics_server(
    settings: NodeSettings, metrics: NodeMetrics, healthy: Callable[[], bool]
) -> MetricsServer | None:
    """Bind the metrics and health endpoint (None when it is off). A port already in use (a second node on
    the same host) or an address that cannot be bound is a ConfigError naming the variable, not a crash."""
    if not settings.metrics_port:
        return None
    host, port = settings.metrics_host, settings.metrics_port
    try:
        server = MetricsServer(metrics, healthy, host, port)
    except OSError as err:
        reason = err.strerror or str(err)
        if err.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"DRAGONFLY_METRICS_PORT (--metrics-port): cannot listen on {host}:{port}: the port is "
                "in use (another node on this host?); choose another port, or 0 or off to disable the "
                "metrics endpoint"
            ) from None
        if err.errno == errno.EACCES:
            raise ConfigError(
                f"DRAGONFLY_METRICS_PORT (--metrics-port): cannot listen on {host}:{port}: {reason}"
            ) from None
        raise ConfigError(
            f"DRAGONFLY_METRICS_HOST, DRAGONFLY_METRICS_PORT (--metrics-port): cannot listen on "
            f"{host}:{port}: {reason}"
        ) from None
    log.info("metrics on http://%s:%d/metrics", host, server.port)
    return server.start()


async def _login_unless_signalled(client: MainframeClient, stop: asyncio.Event) -> bool:
    """The first login (retried with backoff while the mainframe is down), unless SIGTERM or SIGINT comes
    first: the node holds nothing yet, so it stops at once and exits 0, as after a drain. Whether it logged
    in with no signal.

    A signal sets ``stop``, the node's stop event. The handlers stay until the node's replace them: removed
    first, a signal in between met its default action (killed, 143; SIGINT 130), a second signal after a
    stop here too; and a signal read as the login ended, its handler run once the node had started, was
    lost (the node claimed and ran on). Such a late handler still stops the node: it sets its event."""
    loop = asyncio.get_running_loop()
    login = asyncio.ensure_future(client.login())

    def on_signal() -> None:
        if login.done() and not stop.is_set():
            log.info("stopping: signalled as the first login ended; no claim is sent")
        stop.set()
        login.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await login
    except asyncio.CancelledError:
        if not stop.is_set():
            raise
    if stop.is_set():
        if login.cancelled():
            log.info("stopping: signalled while logging in, before any claim")
        return False
    return True


async def _run(node: Node, health: _Health) -> None:
    health.node = node
    install_signal_handlers(node)
    await node.run()


async def serve(
    settings: NodeSettings,
    *,
    once: bool = False,
    max_jobs: int | None = None,
    local: LocalJobs | None = None,
    metrics: NodeMetrics | None = None,
) -> None:
    """Run a node until it is stopped (or drained with `once`/`max_jobs`).

    Against the mainframe unless `local` is given. Raises ConfigError or AuthError when it cannot start
    (the metrics port is bound before logging in, so a port in use stops the node before it claims work).
    """
    metrics = metrics or NodeMetrics()
    options = node_options(settings, once=once, max_jobs=max_jobs)
    limits = settings.limits()
    if local is None:
        settings.auth_scheme()  # fail fast, naming the missing variables
    health = _Health()
    server = open_metrics_server(settings, metrics, health)
    try:
        if local is not None:
            await _serve_local(settings, local, options, limits, metrics, health)
        else:
            await _serve_mainframe(settings, options, limits, metrics, health)
    finally:
        if server is not None:
            server.close()


async def _serve_local(
    settings: NodeSettings,
    local: LocalJobs,
    options: NodeOptions,
    limits: Limits,
    metrics: NodeMetrics,
    health: _Health,
) -> None:
    source = LocalSource(local.releases, local.rules.hash)
    # Result bodies need only which rules matched which files: a fast scan finds the same ones.
    rules = RuleState(
        source, limits, settings.threads, None, initial=(local.rules, local.rules.hash), fast_scan=True
    )
    sink = JsonLinesSink(local.output)
    wording = dataclasses.replace(options.wording, not_delivered="result not written")
    options = dataclasses.replace(options, wording=wording, leased=False)  # nobody claims a release again
    node = Node(source, sink, rules, options, threads=settings.threads, metrics=metrics)
    await _run(node, health)
    if sink.error is not None:  # results were lost: the run is not "done" (exit 141 or 3, never 0)
        raise ResultsNotWritten("the results could not all be written") from sink.error
    wanted = len(local.releases) if options.max_jobs is None else min(len(local.releases), options.max_jobs)
    if node.signalled is not None and sink.written < wanted:
        raise StoppedIncomplete(
            node.signalled,
            f"stopped by {node.signalled.name}: {wanted - sink.written} of {wanted} release(s) have no "
            "result line (not scanned, or unfinished when the grace period ended)",
        )


async def _serve_mainframe(
    settings: NodeSettings, options: NodeOptions, limits: Limits, metrics: NodeMetrics, health: _Health
) -> None:
    client = MainframeClient(settings, on_http_error=lambda kind: metrics.http_errors.labels(kind).inc())
    async with client:
        stop = asyncio.Event()  # the node's: once set, a claim waiting for a login is not sent
        if not await _login_unless_signalled(client, stop):
            return
        mainframe_source = MainframeSource(client, stop)
        rule_state = RuleState(
            mainframe_source, limits, settings.threads, settings.rules_cache_dir, fast_scan=True
        )
        node = Node(
            mainframe_source,
            MainframeSink(client),
            rule_state,
            options,
            threads=settings.threads,
            metrics=metrics,
            stop=stop,
        )
        await _run(node, health)
