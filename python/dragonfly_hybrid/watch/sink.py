"""The sink of ``watch`` jobs: each finished release is written to the results store (then the webhook)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import Sequence

import httpx

from dragonfly_hybrid._core import DistributionResult, Rules
from dragonfly_hybrid.http_client import redact_url
from dragonfly_hybrid.node.jobs import SinkBroken, SubmitOutcome, Work
from dragonfly_hybrid.pypi.download import filename_of
from dragonfly_hybrid.report import TargetResult
from dragonfly_hybrid.store.content_cache import StoreContentCache
from dragonfly_hybrid.store.db import NotDownloaded, Store
from dragonfly_hybrid.watch.source import WatchJob
from dragonfly_hybrid.watch.webhook import Webhook, webhook_payload


def result_of(work: Work[WatchJob]) -> TargetResult:
    """The :class:`TargetResult` of a finished job: its scan result, or why nothing could be scanned.
    Files ``--max-size`` kept from being downloaded are named in its error: the release is incomplete.
    Each file not scanned (kept out, or its download failed) is in ``not_downloaded``, for the store."""
    job = work.job
    label = f"{job.name}=={job.version}"
    skipped = [f"{file.filename} {file.message}" for file in job.not_downloaded]
    failures = work.permanent_errors + work.transient_errors
    download_errors = "; ".join(failures)
    if work.release is not None:
        errors = "; ".join(filter(None, [download_errors, *skipped])) or None
        result = TargetResult.from_release(label, work.release, errors)
    else:
        reason = "; ".join([work.failure or download_errors or "nothing could be scanned", *skipped])
        result = TargetResult.failed(label, "release", job.name, job.version, reason)
    failed: list[NotDownloaded] = []
    for url in _not_read(job, result.distributions):
        # The node's download errors name the URL they are about (redacted).
        why = next((e for e in failures if redact_url(url) in e), download_errors or "not downloaded")
        failed.append(job.unscanned(url, why))
    not_downloaded = (*failed, *job.not_downloaded)
    # Every part of the error is about one of these files, or a distribution left incomplete; with no
    # file to name (nothing was scanned, nothing is missing), the error is the release's.
    return dataclasses.replace(
        result,
        not_downloaded=not_downloaded,
        error_per_file=work.release is not None or bool(not_downloaded),
    )


def _not_read(job: WatchJob, read: Sequence[DistributionResult]) -> list[str]:
    """The job's URLs whose file the node did not read. Each file read is paired with the URL it came
    from (the node keeps it), else with a URL of its name whose listed sha256 its bytes have: an index may
    list one name twice, and the copy not read must be the one stored as not read (with its own digest),
    not the copy that was."""
    unread = list(read)
    left = []
    for url in job.distributions:
        found = next((dist for dist in unread if dist.url == url), None)
        if found is None:
            left.append(url)
        else:
            unread.remove(found)
    missed = []
    for url in left:
        listed = job.sha256.get(url)
        found = next(
            (
                dist
                for dist in unread
                if dist.name == filename_of(url) and listed in (None, dist.sha256.lower())
            ),
            None,
        )
        if found is None:
            missed.append(url)
        else:
            unread.remove(found)
    return missed


class StoreNotWritten(SinkBroken):
    """A release could not be stored: the store failed (:attr:`StoreSink.error`). The pipeline logs the
    release as not stored; the watcher then stops and exits 3 naming the store, never 0."""


class StoreSink:
    """A :class:`~dragonfly_hybrid.node.jobs.ResultSink` that writes each job's whole result to the store.

    A result whose files are all in the store already (a job issued again after its lease ran out, and
    finished twice) is not stored twice: the node is told the lease was lost.

    A write that fails is kept in :attr:`error`: nothing is stored after it, each result raises
    :class:`StoreNotWritten` (the watcher stops claiming).
    """

    def __init__(
        self,
        store: Store,
        rules: Rules,
        *,
        source: str = "watch",
        webhook: Webhook | None = None,
        http: httpx.AsyncClient | None = None,
        content_cache: StoreContentCache | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        self.source = source
        self.webhook = webhook
        self._http = http
        self.content_cache = content_cache
        self.stored = 0
        self.error: sqlite3.Error | None = None
        self._cut: list[tuple[asyncio.Future[int | None], TargetResult, Work[WatchJob]]] = []
        """Writes under way when their delivery was cancelled (see :meth:`finish`)."""
        self._unannounced: list[tuple[TargetResult, Work[WatchJob]]] = []
        """Releases stored whose webhook was under way when their delivery was cancelled."""

    def _record(self, result: TargetResult, work: Work[WatchJob]) -> int | None:
        """Store the release, then what its scan added to the content cache (the release comes first: a
        crash in between costs a scan next time, never a result)."""
        job = work.job
        # Each file with the sha256 the index lists: another host's bytes under the same name (stored by
        # a lock file's scan) do not make this result one that is stored already.
        # A pair per URL: a name the index lists twice is two files.
        files = [(filename_of(url), job.sha256.get(url), url) for url in job.distributions]
        scan_id = self.store.record_unless_stored(
            result,
            files,
            rules_hash=self.rules.hash,
            rules_count=self.rules.count,
            source=self.source,
            download_seconds=work.fetch_seconds,
            scan_seconds=work.scan_seconds,
        )
        if self.content_cache is not None and work.scanner is not None:
            self.content_cache.save(work.scanner)
        return scan_id

    async def deliver(self, work: Work[WatchJob], *, deadline: float) -> SubmitOutcome:
        del deadline  # a local write cannot outlive a lease
        result = result_of(work)
        if result.verdict == "incomplete" and work.failure is None:
            # What the node did not see (files --max-size kept out) still makes the release a failure:
            # it is logged as one, never as "release stored" clean.
            work.failure = result.error
        scan_id: int | None = None
        if self.error is None:
            write = asyncio.ensure_future(asyncio.to_thread(self._record, result, work))
            try:
                scan_id = await asyncio.shield(write)
            except asyncio.CancelledError:
                self._cut.append((write, result, work))  # a thread is not stopped: see finish()
                raise
            except sqlite3.Error as err:
                # Corrupt pages, a full disk, a lock held past the busy timeout: later releases would fail
                # the same way. The watcher stops claiming; this release is scanned on the next run.
                self.error = err
        if self.error is not None:
            raise StoreNotWritten(f"cannot store the release in {self.store.path}: {self.error}")
        if scan_id is None:
            return SubmitOutcome.LEASE_LOST
        self.stored += 1
        if (
            self.webhook is not None
            and result.verdict == "findings"
            and result.score >= self.webhook.min_score
        ):
            try:
                await self.webhook.post(webhook_payload(result, scan_id, self.rules.hash), self._http)
            except asyncio.CancelledError:
                self._unannounced.append((result, work))  # stored all the same: see finish()
                raise
        return SubmitOutcome.ACCEPTED

    async def finish(self) -> list[tuple[TargetResult, Work[WatchJob], bool]]:
        """Wait for the writes whose delivery was cancelled (the grace period over, a second signal) and
        return the releases they stored, each with whether its webhook was cut short (the others' was not
        posted). Such a write goes on in its thread: the store was saved to and closed under it, and the
        release it stored (skipped by the next run as stored) was counted unfinished, never logged nor
        announced; so was a release stored whose webhook was being posted. Webhooks are not posted here:
        a stop does not wait for another host."""
        stored = [(result, work, True) for result, work in self._unannounced]
        self._unannounced.clear()
        for write, result, work in self._cut:
            try:
                scan_id = await write
            except sqlite3.Error as err:
                self.error = self.error or err  # rolled back: the next run scans it; this one exits 3
                continue
            if scan_id is not None:
                self.stored += 1
                stored.append((result, work, False))
        self._cut.clear()
        return stored
