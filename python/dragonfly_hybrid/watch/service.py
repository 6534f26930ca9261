"""``dragonfly-hybrid watch``: follow new PyPI releases, scan each one, keep the results in the store.

It is the node's pipeline (:class:`dragonfly_hybrid.node.pipeline.Node`) with another source and sink:
:class:`~.source.PyPIWatchSource` turns index changes into jobs, :class:`~.sink.StoreSink` writes results to
the store, :class:`~.webhook.Webhook` announces findings; this module wires them (:func:`serve_watch`).

Which feed, and why
-------------------
PyPI offers three ways to learn about new releases:

* the RSS feeds (``/rss/updates.xml``, ``/rss/packages.xml``) list only the latest ~100 events. PyPI
  publishes thousands of releases a day, so a watcher that is down (or polls slowly) for a few minutes
  misses releases, and nothing in the feed tells it that it did;
* the XML-RPC changelog (``changelog_since_serial``) is complete but deprecated and rate-limited;
* the Simple API's project list (PEP 691 JSON, ``GET /simple/``) gives every project with its
  ``_last-serial``: the serial of the last change to that project. Serials only grow.

The watcher uses the Simple API's project list. It keeps a high-water serial in the store: every project
whose ``_last-serial`` is above it has changed since; its project page (PEP 691 JSON, with the PEP 700
``upload-time`` of each file) tells which files are new. Nothing is missed however long the watcher was
down: a change bumps the project's serial, and the serial is only advanced past a change once every
release it brought is in the store. The price is the size of the list (every project on PyPI, several
megabytes compressed), so poll every few minutes, not every few seconds; RSS would be lighter and faster
but can lose releases.

Resume, exactly once
--------------------
* First run: the current serial and time become the baseline; nothing older is scanned.
* Each poll is a round: the changed projects' new files (uploaded since the baseline and not already in
  the store) become one job per release. The high-water serial moves to the round's serial only when
  every job of the round is stored (success or failure). A restart re-examines the projects of an
  unfinished round; files already in the store are skipped, so nothing is scanned twice and nothing is
  missed. A file added later to a release already scanned (a new wheel) is scanned on its own.
* A project page older than the listing (a stale cache) stops the serial just below that project, so
  the next poll looks at it again.
* A job not stored within its lease (a transient download error) is issued again, up to
  ``max_attempts`` times; then a failure is stored for it with the reason.

Downloads and scans
-------------------
* Each job carries the sha256 the project page lists for each of its files; a download whose bytes do
  not hash to it is not scanned, and the release is stored as a failure naming the file, the listed
  digest and the actual one (:func:`dragonfly_hybrid.pypi.download.download`).
* The Scanner records its content cache: the entries stored for the rule set are loaded when the rules
  are set up (and again if they change), and what each release scanned is saved after the release is
  stored, so a file already scanned with the same rules is never scanned again, across restarts too.
* ``WatchConfig.limits`` (``watch --max-member-size`` and the rest) bound every archive as for ``scan``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from dragonfly_hybrid._core import Limits, Rules
from dragonfly_hybrid.bounds import available_cores
from dragonfly_hybrid.node.metrics import NodeMetrics
from dragonfly_hybrid.node.pipeline import LogWording, Node, NodeOptions, RuleState, install_signal_handlers
from dragonfly_hybrid.pypi.index import DEFAULT_INDEX_URL, DEFAULT_MAX_DOWNLOAD_SIZE
from dragonfly_hybrid.store.content_cache import StoreContentCache
from dragonfly_hybrid.store.db import Store, is_default_location
from dragonfly_hybrid.watch.sink import StoreNotWritten, StoreSink
from dragonfly_hybrid.watch.source import IDLE_NOTICE_SECONDS, SERIAL_KEY, PyPIWatchSource, WatchFilters
from dragonfly_hybrid.watch.webhook import Webhook

log = logging.getLogger("dragonfly_hybrid.watch")

WATCH_WORDING = LogWording(
    logger="dragonfly_hybrid.watch",
    key="project",
    stopping="stopping: no new polls; finishing the releases being scanned",
    grace_over="grace period over; the unfinished releases will be scanned on the next run",
    claim_failed="polling the index failed; trying again",
    claimed="new releases to scan",
    scan_failed="scanning failed; the release will be scanned again",
    lease_short="release waited longer than --lease; it will be scanned again",
    transient="transient download errors; the release will be scanned again",
    not_delivered="release not stored",
    deliver_failed="storing the release failed",
    delivered="release stored",
    delivered_findings="release has findings",
    delivered_failure="release could not be scanned completely",
    findings_level=logging.WARNING,
    failure_level=logging.WARNING,
    partial_findings="storing the findings of a partly unscanned release",
    duplicate="release already stored; this result is dropped",
    refused="release not stored",
)
"""What watch's log lines say: releases and the store, never the node's jobs, claims or submissions."""


@dataclass
class WatchConfig:
    """Everything ``watch`` needs; the CLI fills it from its flags."""

    store_path: Path
    rules: Rules
    index_url: str = DEFAULT_INDEX_URL
    filters: WatchFilters = field(default_factory=WatchFilters)
    webhook: Webhook | None = None
    interval: float = 120.0
    lease: float = 600.0
    limits: Limits = field(default_factory=Limits)
    threads: int = field(default_factory=available_cores)
    max_download_size: int = DEFAULT_MAX_DOWNLOAD_SIZE
    once: bool = False
    max_jobs: int | None = None
    grace_period: float = 60.0
    handle_signals: bool = True
    idle_notice: float = IDLE_NOTICE_SECONDS
    """Seconds between the "no new releases" lines while polls find nothing."""


async def serve_watch(config: WatchConfig, *, metrics: NodeMetrics | None = None) -> WatchSummary:
    """Watch the index until stopped (or for one poll with ``once``, or ``max_jobs`` releases)."""
    with Store(config.store_path, create_parents=is_default_location(config.store_path)) as store:
        stop = asyncio.Event()  # the node's: a poll it interrupts queues nothing (no scan after a signal)
        source = PyPIWatchSource(
            store,
            config.rules.hash,
            index_url=config.index_url,
            filters=config.filters,
            lease=config.lease,
            fail_fast=config.once,
            idle_notice=config.idle_notice,
            stop=stop,
        )
        source.check_store_index()  # before anything starts: a store of another index is refused as is
        cache = StoreContentCache(store)
        sink = StoreSink(store, config.rules, webhook=config.webhook, content_cache=cache)
        rule_state = RuleState(
            source,
            config.limits,
            config.threads,
            None,
            initial=(config.rules, config.rules.hash),
            content_cache=cache,
            logger=WATCH_WORDING.logger,
        )
        options = NodeOptions(
            job_timeout=config.lease,
            load_duration=config.interval,
            max_download_size=config.max_download_size,
            grace_period=config.grace_period,
            once=config.once,
            max_jobs=config.max_jobs,
            wording=WATCH_WORDING,
        )
        node = Node(source, sink, rule_state, options, threads=config.threads, metrics=metrics, stop=stop)
        if config.handle_signals:
            install_signal_handlers(node)
        try:
            await node.run()
        finally:
            for result, work, announcing in await sink.finish():
                # Stored after all: said, so that a finding is never in the store alone (the next run
                # skips it); the serial moves past it too. No webhook: a stop does not wait for another host.
                webhook = "its webhook was cut short" if announcing else "no webhook sent"
                extra = {
                    "project": work.job.name,
                    "version": work.job.version,
                    "verdict": result.verdict,
                    "score": result.score,
                    "rules": ",".join(result.rules_matched),
                }
                log.warning(f"release stored as the watcher stopped; {webhook}", extra=extra)
                source.delivered(work.job)
            await source.aclose()
            if rule_state.scanner is not None:
                cache.save(rule_state.scanner)  # what jobs left unstored scanned (transient errors)
        if sink.error is not None:  # releases were not stored: the run is not "done" (exit 3, never 0)
            raise StoreNotWritten(f"{sink.error}") from sink.error
        if source.error is not None:  # the serial could not be committed: exit 3 too
            raise source.error
        stats = rule_state.scanner.cache_stats if rule_state.scanner is not None else {}
        return WatchSummary(
            polls=source.polls,
            stored=sink.stored,
            serial=int(store.get_state(SERIAL_KEY) or 0),
            cache_loaded=cache.loaded,
            cache_hits=stats.get("hits", 0),
            cache_misses=stats.get("misses", 0),
            cache_saved=cache.saved,
        )


@dataclass(frozen=True)
class WatchSummary:
    polls: int
    stored: int
    serial: int
    cache_loaded: int = 0
    """Content-cache entries loaded from the store when the rules were set up."""
    cache_hits: int = 0
    """Files answered from the content cache instead of being scanned."""
    cache_misses: int = 0
    """Files scanned by YARA-X."""
    cache_saved: int = 0
    """New content-cache entries saved to the store."""
