"""The sink of ``watch`` jobs: each finished release is written to the results store (then the webhook)."""

from __future__ import annotations

import asyncio

import httpx

from dragonfly_hybrid._core import Rules
from dragonfly_hybrid.node.jobs import SubmitOutcome, Work
from dragonfly_hybrid.pypi.download import filename_of
from dragonfly_hybrid.report import TargetResult
from dragonfly_hybrid.store.content_cache import StoreContentCache
from dragonfly_hybrid.store.db import Store
from dragonfly_hybrid.watch.source import WatchJob
from dragonfly_hybrid.watch.webhook import Webhook, webhook_payload


def result_of(work: Work[WatchJob]) -> TargetResult:
    """The :class:`TargetResult` of a finished job: its scan result, or why nothing could be scanned."""
    job = work.job
    label = f"{job.name}=={job.version}"
    errors = "; ".join(work.permanent_errors + work.transient_errors) or None
    if work.release is not None:
        return TargetResult.from_release(label, work.release, errors)
    reason = work.failure or errors or "nothing could be scanned"
    return TargetResult.failed(label, "release", job.name, job.version, reason)


class StoreSink:
    """A :class:`~dragonfly_hybrid.node.jobs.ResultSink` that writes each job's whole result to the store.

    A result whose files are all in the store already (a job issued again after its lease ran out, and
    finished twice) is not stored twice: the node is told the lease was lost.
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

    def _record(self, result: TargetResult, work: Work[WatchJob]) -> int | None:
        """Store the release, then what its scan added to the content cache (the release comes first: a
        crash in between costs a scan next time, never a result)."""
        files = {filename_of(url) for url in work.job.distributions}
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
        scan_id = await asyncio.to_thread(self._record, result, work)
        if scan_id is None:
            return SubmitOutcome.LEASE_LOST
        self.stored += 1
        if (
            self.webhook is not None
            and result.verdict == "findings"
            and result.score >= self.webhook.min_score
        ):
            await self.webhook.post(webhook_payload(result, scan_id, self.rules.hash), self._http)
        return SubmitOutcome.ACCEPTED
