"""Wiring a node from its settings: source, sink, rules, metrics server, signals."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from dragonfly_hybrid._core import Rules
from dragonfly_hybrid.config import NodeSettings
from dragonfly_hybrid.mainframe import MainframeClient
from dragonfly_hybrid.metrics import MetricsServer, NodeMetrics
from dragonfly_hybrid.node import Node, NodeOptions, RuleState, install_signal_handlers
from dragonfly_hybrid.sinks import JsonLinesSink, MainframeSink
from dragonfly_hybrid.sources import LocalSource, MainframeSource

log = logging.getLogger(__name__)


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
        max_scan_size=settings.max_scan_size,
        download_concurrency=settings.download_concurrency,
        submit_concurrency=settings.submit_concurrency,
        grace_period=settings.grace_period,
        once=once,
        max_jobs=max_jobs,
    )


async def _run(node: Node, settings: NodeSettings) -> None:
    server = None
    if settings.metrics_port:
        server = MetricsServer(
            node.metrics, node.healthy, settings.metrics_host, settings.metrics_port
        ).start()
        log.info("metrics on http://%s:%d/metrics", settings.metrics_host, server.port)
    install_signal_handlers(node)
    try:
        await node.run()
    finally:
        if server is not None:
            server.close()


async def serve(
    settings: NodeSettings,
    *,
    once: bool = False,
    max_jobs: int | None = None,
    local: LocalJobs | None = None,
    metrics: NodeMetrics | None = None,
) -> None:
    """Run a node until it is stopped (or drained with `once`/`max_jobs`).

    Against the mainframe unless `local` is given. Raises ConfigError or AuthError when it cannot start.
    """
    metrics = metrics or NodeMetrics()
    options = node_options(settings, once=once, max_jobs=max_jobs)
    limits = settings.limits()
    if local is not None:
        source = LocalSource(local.releases, local.rules.hash)
        # Result bodies need only which rules matched which files: a fast scan finds the same ones.
        rules = RuleState(
            source, limits, settings.threads, None, initial=(local.rules, local.rules.hash), fast_scan=True
        )
        node = Node(
            source, JsonLinesSink(local.output), rules, options, threads=settings.threads, metrics=metrics
        )
        await _run(node, settings)
        return
    settings.auth_scheme()  # fail fast, naming the missing variables
    client = MainframeClient(settings, on_http_error=lambda kind: metrics.http_errors.labels(kind).inc())
    async with client:
        await client.login()
        mainframe_source = MainframeSource(client)
        cache: Path = settings.rules_cache_dir
        rule_state = RuleState(mainframe_source, limits, settings.threads, cache, fast_scan=True)
        node = Node(
            mainframe_source,
            MainframeSink(client),
            rule_state,
            options,
            threads=settings.threads,
            metrics=metrics,
        )
        await _run(node, settings)
