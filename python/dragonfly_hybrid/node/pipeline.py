"""The long-running scanning node: Source -> Fetch -> Scan -> Sink, connected by bounded queues.

Jobs are claimed only as fast as the node finishes them (the claim limit follows the measured
throughput, so everything claimed is submitted well inside the server's lease), downloaded
concurrently, scanned by the Rust engine on every core with the GIL released, and submitted
concurrently. SIGTERM/SIGINT stop claiming; what is in flight is finished and submitted within the
grace period, and whatever is left is the server's to lease again.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from dragonfly_hybrid._core import DownloadBuffer, Limits, ReleaseResult, Rules, Scanner, ScanProgress
from dragonfly_hybrid.errors import NoRulesError, RuleCompileError
from dragonfly_hybrid.futures import take_outcome
from dragonfly_hybrid.node.jobs import (
    J,
    JobSource,
    MainframeError,
    ResultSink,
    RulesPayload,
    RulesSource,
    SinkBroken,
    SubmitOutcome,
    Work,
)
from dragonfly_hybrid.node.metrics import NodeMetrics
from dragonfly_hybrid.pypi.download import Downloader, filename_of
from dragonfly_hybrid.pypi.index import DEFAULT_MAX_DOWNLOAD_SIZE, DownloadError
from dragonfly_hybrid.redaction import describe_error
from dragonfly_hybrid.rules_loader import cache_entry, compile_cached

# Claimed work must be submitted within this share of the lease; the rest is slack for slow networks.
LEASE_SHARE = 0.5
ONCE_CLAIM_ATTEMPTS = 4
"""Claims in a row that may fail (backing off 1, 2, 4 s) before a ``once`` run gives up: it cannot say
the queue was drained."""
RULES_FETCH_BUDGET = 15.0
"""The longest a job waits for a rule set it names to be fetched (``GET /rules``, retries included) while
the node has one to scan with; past it, and after any failed fetch, the job is scanned with the last good
set."""
RULES_REFETCH_AFTER = 60.0
"""How long after a failed fetch of a rule set, or a set that could not be used (it did not compile, or the
server served another), its jobs are scanned with the last good set without trying again. Fetched again for
every job, a ``GET /rules`` that kept failing (5xx, or hanging till the request timeout, retried 5 times)
held each job, one after the other, till its lease was gone; never fetched again, a set served fixed under
the name that did not compile was never used."""
CLAIM_BACKOFF_MAX = 60.0
"""The longest wait after a failed claim, unless the poll interval (``load_duration``) is longer. The wait
doubles from 1 s and never shrinks: capped at a ``load_duration`` of 0 (allowed: poll at once when idle),
a claim that kept failing at once (HTTP 404) was repeated thousands of times a second, each logged."""


def scan_workers(threads: int) -> int:
    """How many releases are scanned at once: two more than the engine's threads. A release is partly
    serial (a tar.gz inflates on one thread; a big member is scanned by one), so with only as many as the
    threads, cores idled. On 2 cores, going from 2 to 4 took the benchmark's node from 0.68 to 0.60 s
    against the engine's 0.54; 6 gave nothing more."""
    return threads + 2


T = TypeVar("T")


@dataclass(frozen=True)
class LogWording:
    """The words of the pipeline's log lines. The node's (the defaults) speak of jobs claimed from the
    mainframe and results submitted to it; ``watch`` has its own (releases found on the index and stored:
    :data:`dragonfly_hybrid.watch.service.WATCH_WORDING`)."""

    logger: str = "dragonfly_hybrid.node"
    key: str = "job"
    """The log field naming a job's project."""
    stopping: str = "stopping: no new claims; finishing in-flight jobs"
    grace_over: str = "grace period over; unsubmitted jobs are left for the server to lease again"
    left: str = "unfinished when the grace period ended"
    """One line per job still held when the grace period ends (or at a second signal)."""
    claim_failed: str = "claiming jobs failed"
    claimed: str = "claimed jobs"
    scan_failed: str = "scanning failed"
    lease_short: str = "lease nearly over before scanning; leaving the job"
    transient: str = "transient download errors; leaving the job to be leased again"
    not_delivered: str = "result not delivered within the lease"
    deliver_failed: str = "delivering the result failed"
    delivered: str = "result submitted"
    delivered_findings: str = "result submitted"
    delivered_failure: str = "result submitted"
    findings_level: int = logging.INFO
    """The level of a delivered result with findings (``watch``: WARNING, so they stand out)."""
    failure_level: int = logging.INFO
    """The level of a delivered failure (nothing or not everything could be scanned)."""
    partial_findings: str = "submitting findings for a partly unscanned release"
    duplicate: str = "lease lost (409): result dropped"
    refused: str = "result refused"


@dataclass
class NodeOptions:
    """How the pipeline behaves; `service.node_options` fills it from the node's configuration."""

    job_timeout: float = 120.0
    bulk_size: int = 20
    load_duration: float = 60.0
    max_download_size: int = DEFAULT_MAX_DOWNLOAD_SIZE
    download_concurrency: int = 8
    submit_concurrency: int = 4
    grace_period: float = 60.0
    # A job whose lease ends sooner than this when its scan would start is left to the server.
    min_lease_left: float = 5.0
    once: bool = False
    max_jobs: int | None = None
    wording: LogWording = LogWording()
    leased: bool = True
    """Whether a job left unfinished is claimed again (the mainframe's lease, ``watch``'s next run). Not in a
    standalone run: there a release whose download kept failing, or whose lease ran short, was dropped
    without a line and the run exited 0; it is a failure saying why."""


class ContentCache(Protocol):
    """Keeps Scanners' content caches across runs (``watch``: in the results store).

    ``load`` fills a new Scanner (created with ``record_cache=True``) with what is kept for its rule set;
    ``save`` keeps what a Scanner scanned since its last save, keyed by that Scanner's rule set.
    """

    def load(self, scanner: Scanner) -> object: ...

    def save(self, scanner: Scanner) -> int: ...


class ThroughputMeter:
    """Releases settled per second over a sliding window."""

    def __init__(self, window: float = 120.0) -> None:
        self._window = window
        self._events: deque[float] = deque()

    def record(self, now: float) -> None:
        self._events.append(now)

    def rate(self, now: float) -> float | None:
        while self._events and self._events[0] < now - self._window:
            self._events.popleft()
        if len(self._events) < 3:
            return None
        span = max(now - self._events[0], 1.0)
        return len(self._events) / span


def claim_limit(rate: float | None, options: NodeOptions, threads: int) -> int:
    """How many jobs the node may hold at once: what it finishes in `LEASE_SHARE` of the lease."""
    if rate is None:
        # Nothing measured yet: one job per concurrent scan and per concurrent download, so that the first
        # downloads run ahead of the first scans (claiming only the scans' worth left cores idle until
        # three jobs were done), and no more.
        return max(1, min(options.bulk_size, scan_workers(threads) + options.download_concurrency))
    fits_in_lease = int(rate * options.job_timeout * LEASE_SHARE)
    return max(1, min(2 * options.bulk_size, fits_in_lease))


class RuleState:
    """The loaded rule set and its Scanner; reloaded when a job expects another hash.

    With a ``content_cache``, every Scanner records its cache: a new one is loaded from the cache when it
    is built, and the one it replaces saves what it scanned first. ``fast_scan`` is for sinks that need
    only which rules matched which files (the mainframe's result body), not every matched string nor any
    digest: its Scanner also leaves the reports' ``sha256`` empty instead of hashing every distribution.
    """

    def __init__(
        self,
        source: RulesSource,
        limits: Limits,
        threads: int,
        cache_dir: Path | None,
        *,
        initial: tuple[Rules, str] | None = None,
        content_cache: ContentCache | None = None,
        fast_scan: bool = False,
        logger: str = LogWording.logger,
    ) -> None:
        self._log = logging.getLogger(logger)
        self._source = source
        self._fast_scan = fast_scan
        self._limits = limits
        self._threads = threads
        self._cache_dir = cache_dir
        self._content_cache = content_cache
        self._lock = asyncio.Lock()
        self._unfetched: dict[str | None, float] = {}
        """The rule sets not fetched or not usable, each with when (``time.monotonic()``) it is tried again
        (:data:`RULES_REFETCH_AFTER`). Each set, not only the last: jobs naming two such sets in turn (two
        mainframe replicas on two commits) had each job fetch, and compile, under the lock."""
        self._late: asyncio.Future[RulesPayload | None] | None = None
        """A fetch past :data:`RULES_FETCH_BUDGET`, left to answer (see :meth:`_fetch`)."""
        self.scanner: Scanner | None = None
        self.commit = ""
        if initial is not None:
            self._install(self._build(initial[0]), initial[1])

    def _build(self, rules: Rules) -> Scanner:
        """A Scanner for ``rules`` (blocking: loading the content cache reads the store)."""
        cache = self._content_cache
        scanner = Scanner(
            rules,
            self._limits,
            self._threads,
            fast_scan=self._fast_scan,
            digests=not self._fast_scan,
            record_cache=cache is not None,
        )
        if cache is not None:
            if self.scanner is not None:
                cache.save(self.scanner)  # what the outgoing set scanned stays, under its own hash
            cache.load(scanner)
        return scanner

    def _install(self, scanner: Scanner, commit: str) -> None:
        self.scanner = scanner
        self.commit = commit
        self._log.info("rules loaded", extra={"commit": commit, "rules": scanner.rules.count})

    def _compile(self, commit: str, sources: dict[str, str]) -> Rules:
        """The rule set ``commit``, from the rules cache or compiled (and kept there); :class:`NoRulesError`
        for a set that defines no rule (comment-only sources): installed, it would have every job submitted
        clean. The cache is keyed by the sources themselves, as the commands' is: not by the commit's name,
        which the server chooses (one name served with other sources, by another mainframe sharing the
        cache directory or under a branch name, had the rules first compiled under that name)."""
        rules = compile_cached(sources, self._cache_dir) if sources else None
        if rules is None or rules.count == 0:
            raise NoRulesError(f"the rule set {commit!r} defines no rule: it would match nothing")
        return rules

    async def start(self) -> asyncio.Future[None] | None:
        """Load the first rule set. Sources are compiled before the node claims anything, so that rules that
        do not compile stop it before it holds a job; a set this node compiled before (in its rules cache)
        is loaded while the first jobs are claimed and downloaded instead: the future of that load is
        returned (its failure is the node's). Scans wait for it (``ensure`` takes the same lock)."""
        if self.scanner is not None:
            return None
        await self._lock.acquire()
        in_background = False
        try:
            payload = await self._source.rules()
            if payload is None:
                raise RuntimeError("no rules: the job source serves none and none were given")
            if self._cache_dir is not None and cache_entry(self._cache_dir, payload.rules).is_file():
                in_background = True
                return asyncio.ensure_future(self._load_then_unlock(payload))
            await self._load(payload)
            return None
        finally:
            if not in_background:
                self._lock.release()

    def _compile_and_build(self, commit: str, sources: dict[str, str]) -> Scanner:
        """``_build(_compile(...))`` in one worker call: each return to the event loop waits for it (and the
        GIL) while downloads are busy; a warm start had its rules 21 ms in instead of 32 ms."""
        return self._build(self._compile(commit, sources))

    async def _load(self, payload: RulesPayload) -> None:
        scanner = await asyncio.to_thread(self._compile_and_build, payload.hash, payload.rules)
        self._install(scanner, payload.hash)

    async def _load_then_unlock(self, payload: RulesPayload) -> None:
        try:
            await self._load(payload)
        finally:
            self._lock.release()

    async def _fetch(self) -> RulesPayload | None:
        """``GET /rules``; while a set is loaded, waited for :data:`RULES_FETCH_BUDGET` at most
        (:class:`asyncio.TimeoutError`). A fetch past it is not cancelled: it goes on, and the first job to
        name a new set once it has answered takes its answer (:meth:`_late_answer`), or waits for it again
        when the back-off is over (no second fetch). Cancelled, a ``GET /rules`` that always took longer
        than the budget (a mainframe answering it in 20 s, within the request timeout) never gave the node
        its new rules: it scanned with the old set for good."""
        if self.scanner is None:
            return await self._source.rules()
        late = self._late
        fetch = late if late is not None and not late.done() else None
        if fetch is None:
            fetch = asyncio.ensure_future(self._source.rules())
            fetch.add_done_callback(take_outcome)
        self._late = None
        try:
            return await asyncio.wait_for(asyncio.shield(fetch), RULES_FETCH_BUDGET)
        except asyncio.TimeoutError:
            self._late = fetch
            raise
        except asyncio.CancelledError:
            fetch.cancel()  # the job was cancelled (the grace period over): nobody would take the answer
            raise

    def _late_answer(self, wanted: str | None) -> RulesPayload | None:
        """The answer of a fetch that went past the budget, once it has come, if it is ``wanted``'s set (a
        set the server has moved on from since is not installed for a job naming another one)."""
        late = self._late
        if late is None or not late.done():
            return None
        self._late = None
        if late.cancelled() or late.exception() is not None:
            return None
        payload = late.result()
        return payload if payload is not None and payload.hash == wanted else None

    async def ensure(self, wanted: str | None) -> Scanner:
        """The scanner for `wanted` (fetching and compiling it if needed), else the last good one."""
        if self.scanner is not None and (wanted is None or wanted == self.commit):
            return self.scanner
        async with self._lock:
            if self.scanner is not None and wanted == self.commit:
                return self.scanner
            payload = self._late_answer(wanted)
            now = time.monotonic()
            self._unfetched = {name: until for name, until in self._unfetched.items() if until > now}
            if payload is None and self.scanner is not None and wanted in self._unfetched:
                return self.scanner
            try:
                if payload is None:
                    payload = await self._fetch()
            except (MainframeError, asyncio.TimeoutError) as err:  # not TimeoutError before 3.11
                if self.scanner is None:
                    raise
                self._unfetched[wanted] = time.monotonic() + RULES_REFETCH_AFTER
                self._log.error(
                    "fetching rules failed; scanning with the last good set",
                    extra={
                        "error": str(err)
                        or f"no rule set within {RULES_FETCH_BUDGET:.0f} s (a job takes it once it comes)",
                        "retry_in": RULES_REFETCH_AFTER,
                    },
                )
                return self.scanner
            if payload is None:
                if self.scanner is None:
                    raise RuntimeError("no rules: the job source serves none and none were given")
                return self.scanner
            if payload.hash != self.commit:
                try:
                    scanner = await asyncio.to_thread(self._compile_and_build, payload.hash, payload.rules)
                except (RuleCompileError, NoRulesError) as err:
                    if self.scanner is None:
                        raise
                    self._log.error(
                        "new rules do not compile or define no rule; scanning with the last good set",
                        extra={
                            "wanted": payload.hash,
                            "using": self.commit,
                            "errors": str(err),
                            "retry_in": RULES_REFETCH_AFTER,
                        },
                    )
                else:
                    self._install(scanner, payload.hash)
            if wanted is not None and wanted != self.commit:
                # It did not compile, or the server has moved on: not fetched again per job, but fetched again
                # (a set fixed under the same name, the server back on it).
                self._unfetched[wanted] = time.monotonic() + RULES_REFETCH_AFTER
            assert self.scanner is not None
            return self.scanner


def conclude(work: Work[J], log: logging.Logger, words: LogWording, *, leased: bool = True) -> bool:
    """Decide how a scanned job ends (sets ``work.failure``); False when it must be left to be claimed again.

    Findings are always delivered (the malicious signal must not be lost), even if part of the release
    could not be scanned. Without findings, anything unscanned is a failure with the precise reason;
    a transient download error leaves the job to be leased again instead of failing it for good (unless
    nobody claims it again: not ``leased``).
    """
    job, release = work.job, work.release
    reasons = work.permanent_errors + work.transient_errors
    if work.findings:
        if release is not None:
            # The release's own failure reason is None once it has findings: its unscanned issues.
            reasons += unscanned_issues(release)
        if reasons:
            extra = {words.key: job.name, "version": job.version, "unscanned": "; ".join(reasons)}
            log.warning(words.partial_findings, extra=extra)
        return True
    if work.transient_errors and leased:
        return False
    if release is not None and release.failure_reason:
        reasons.append(release.failure_reason)
    work.failure = "; ".join(reasons) if reasons else None
    return True


def unscanned_issues(release: ReleaseResult, shown: int = 5) -> list[str]:
    """The first ``shown`` issues that left part of ``release`` unscanned (``dist: path: kind: message``),
    then how many more."""
    issues = [
        f"{dist.name}: {issue.path + ': ' if issue.path else ''}{issue.kind}: {issue.message}"
        for dist in release.distributions
        for issue in dist.issues
        if issue.unscanned
    ]
    more = [f"and {len(issues) - shown} more"] if len(issues) > shown else []
    return issues[:shown] + more


_DONE = object()


class Node(Generic[J]):
    def __init__(
        self,
        source: JobSource[J],
        sink: ResultSink[J],
        rules: RuleState,
        options: NodeOptions,
        *,
        threads: int,
        metrics: NodeMetrics | None = None,
        downloader: Downloader | None = None,
        clock: Callable[[], float] = time.monotonic,
        stop: asyncio.Event | None = None,
    ) -> None:
        """``stop``: the event :meth:`request_stop` sets (by default the node's own), for a source that must
        not send a claim once the node is stopping (``MainframeSource``: a claim waiting for a login)."""
        self.source = source
        self.sink = sink
        self.rules = rules
        self.options = options
        self._log = logging.getLogger(options.wording.logger)
        self.threads = threads
        self.metrics = metrics or NodeMetrics()
        self._downloader = downloader
        self._clock = clock
        self._meter = ThroughputMeter()
        self._stopping = stop if stop is not None else asyncio.Event()
        self._abort = asyncio.Event()
        # Cancelled when the grace period ends: scans still running stop within milliseconds, so the
        # process is not held until they finish (their jobs are the server's to lease again).
        self._scans = ScanProgress()
        self._settled = asyncio.Event()
        self._held: dict[int, Work[J]] = {}
        """The claimed jobs not settled yet, by ``id``: those left when the grace period ends are dropped."""
        self._claimed = 0
        self._download_slots = asyncio.Semaphore(options.download_concurrency)
        self._fetch_queue: asyncio.Queue[Work[J] | object] = asyncio.Queue(
            maxsize=options.download_concurrency
        )
        self._scan_workers = scan_workers(threads)
        self._scan_queue: asyncio.Queue[Work[J] | object] = asyncio.Queue(maxsize=self._scan_workers)
        self._send_queue: asyncio.Queue[Work[J] | object] = asyncio.Queue(maxsize=options.submit_concurrency)
        self.running = False
        self.signalled: signal.Signals | None = None
        """The first SIGTERM/SIGINT the node's handlers took (:func:`install_signal_handlers`)."""
        self.claim_error: MainframeError | None = None
        """Why a ``once`` run stopped claiming before the queue was drained (:meth:`run` raises it)."""

    # -- lifecycle -------------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Stop claiming; in-flight jobs are finished and submitted."""
        if not self._stopping.is_set():
            self._log.info(self.options.wording.stopping, extra={"in_flight": len(self._held)})
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def healthy(self) -> bool:
        return self.running and self.rules.scanner is not None

    async def run(self) -> None:
        """Run until stopped (or drained, with `once` / `max_jobs`). A `once` run whose claims keep failing
        (:data:`ONCE_CLAIM_ATTEMPTS` in a row) finishes what it claimed, then raises MainframeError."""
        # Given up at a stop: nothing is held yet. Awaited whatever came, a signal during the first GET
        # /rules (retried for a minute while the mainframe answers 503) or its compile, a second one too,
        # was acted on only after it: the fetch then failed, and the signalled node exited 3.
        start = asyncio.ensure_future(self.rules.start())
        if await self._interruptible(start, _DONE) is _DONE:
            return
        loading = start.result()
        owns_downloader = self._downloader is None
        # Downloads get their own client: the mainframe's session cookie must never go to file hosts.
        downloader = self._downloader or Downloader(self.options.download_concurrency)
        self._downloader = downloader
        self.running = True
        opts = self.options
        stages: list[asyncio.Future[None]] = [
            asyncio.ensure_future(self._stage(1, self._load, self._fetch_queue, opts.download_concurrency)),
            asyncio.ensure_future(
                self._stage(opts.download_concurrency, self._fetch_loop, self._scan_queue, self._scan_workers)
            ),
            asyncio.ensure_future(
                self._stage(self._scan_workers, self._scan_loop, self._send_queue, opts.submit_concurrency)
            ),
            asyncio.ensure_future(self._stage(opts.submit_concurrency, self._send_loop, None, 0)),
        ]
        if loading is not None:
            stages.append(loading)  # rules that cannot be loaded stop the node, as they would at start
        try:
            await self._wait_for_drain(stages)
        finally:
            self.running = False
            for stage in stages:
                stage.cancel()
            await asyncio.gather(*stages, return_exceptions=True)
            if owns_downloader:
                downloader.close()
        if self.claim_error is not None:
            raise self.claim_error

    def abort(self) -> None:
        """End the grace period now: unsubmitted jobs are left for the server to lease again."""
        self.request_stop()
        self._abort.set()

    async def _wait_for_drain(self, stages: Sequence[asyncio.Future[None]]) -> None:
        pipeline: asyncio.Future[object] = asyncio.ensure_future(asyncio.gather(*stages))
        stop: asyncio.Future[object] = asyncio.ensure_future(self._stopping.wait())
        abort: asyncio.Future[object] = asyncio.ensure_future(self._abort.wait())
        try:
            await asyncio.wait({pipeline, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not pipeline.done():
                await asyncio.wait(
                    {pipeline, abort}, timeout=self.options.grace_period, return_when=asyncio.FIRST_COMPLETED
                )
            if not pipeline.done():
                words = self.options.wording
                self._log.warning(words.grace_over, extra={"left": len(self._held)})
                self._scans.cancel()
                # Settled here, or dashboards showed claimed jobs that were neither finished nor dropped
                # (the stages are cancelled next: none of them settles a job any more).
                for work in list(self._held.values()):
                    self._log.warning(
                        words.left, extra={words.key: work.job.name, "version": work.job.version}
                    )
                    self._settle(work, "grace-period-over")
                return
            pipeline.result()  # a stage's crash is the node's crash
        finally:
            for waiter in (pipeline, stop, abort):
                waiter.cancel()
            # Cancelled before its stages end (the grace period over, a second signal), the gather keeps
            # their CancelledError as its exception: taken here, or asyncio logs it as never retrieved.
            pipeline.add_done_callback(take_outcome)

    async def _stage(
        self,
        workers: int,
        loop: Callable[[], Awaitable[None]],
        downstream: asyncio.Queue[T] | None,
        downstream_workers: int,
    ) -> None:
        """Run `workers` copies of `loop`; when all are done, tell each downstream worker to finish."""
        await asyncio.gather(*(loop() for _ in range(workers)))
        if downstream is not None:
            for _ in range(downstream_workers):
                await downstream.put(_DONE)  # type: ignore[arg-type]

    def _settle(self, work: Work[J], outcome: str) -> None:
        if self._held.pop(id(work), None) is None:
            return  # settled already (at the end of the grace period): counted once
        now = self._clock()
        self.metrics.in_flight.set(len(self._held))
        self._meter.record(now)
        if outcome in ("success", "failure"):
            self.metrics.jobs_finished.labels(outcome).inc()
            self.metrics.job_seconds.observe(now - work.claimed_at)
        else:
            self.metrics.jobs_dropped.labels(outcome).inc()
        self._settled.set()

    # -- stages ----------------------------------------------------------------------------------

    async def _load(self) -> None:
        backoff = 1.0
        failed_claims = 0
        while not self._stopping.is_set():
            max_jobs = self.options.max_jobs
            if max_jobs is not None and self._claimed >= max_jobs:
                return
            limit = claim_limit(self._meter.rate(self._clock()), self.options, self.threads)
            self.metrics.claim_limit.set(limit)
            room = limit - len(self._held)
            if room <= 0:
                self._settled.clear()
                await self._interruptible(self._settled.wait(), None)
                continue
            batch = min(room, self.options.bulk_size)
            if max_jobs is not None:
                batch = min(batch, max_jobs - self._claimed)
            try:
                jobs = await self.source.claim(batch)
            except MainframeError as err:
                self._log.error(self.options.wording.claim_failed, extra={"error": str(err)})
                failed_claims += 1
                if self.options.once and failed_claims >= ONCE_CLAIM_ATTEMPTS:
                    # The queue was not drained: what was claimed is finished, then the run fails.
                    self.claim_error = MainframeError(f"could not claim jobs ({failed_claims} tries): {err}")
                    return
                await self._interruptible(asyncio.sleep(backoff), None)
                backoff = min(backoff * 2, max(self.options.load_duration, CLAIM_BACKOFF_MAX))
                continue
            backoff = 1.0
            failed_claims = 0
            if not jobs:
                # Nothing to download for now: the buffers kept for the next downloads go back.
                DownloadBuffer.free_pooled()
                if self.options.once:
                    return
                await self._interruptible(asyncio.sleep(self.options.load_duration), None)
                continue
            now = self._clock()
            works = [Work(job, now, queued_at=time.perf_counter()) for job in jobs]
            self._claimed += len(jobs)
            self._held.update((id(work), work) for work in works)
            self.metrics.jobs_claimed.inc(len(jobs))
            self.metrics.in_flight.set(len(self._held))
            self._log.info(self.options.wording.claimed, extra={"count": len(jobs), "limit": limit})
            for work in works:
                await self._fetch_queue.put(work)

    async def _interruptible(self, waiting: Awaitable[object], default: object) -> object:
        """Wait for `waiting` unless a stop is requested first."""
        task = asyncio.ensure_future(waiting)
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # This caller cancelled too (``run`` during the first GET /rules): the fetch went on without it,
            # and installed its rules or failed ("Task exception was never retrieved") after the node ended.
            for pending in (task, stop):
                if not pending.done():
                    pending.cancel()
        return task.result() if task in done and not task.cancelled() else default

    async def _fetch_loop(self) -> None:
        while (item := await self._fetch_queue.get()) is not _DONE:
            assert isinstance(item, Work)
            started = time.perf_counter()
            self.metrics.queue_wait_seconds.labels("download").observe(started - item.queued_at)
            # Downloads end where the lease leaves too little to scan and submit (a host sending a byte at a
            # time held a download slot as long as it liked); a job whose lease is that short already is not
            # downloaded at all, and its scan stage lets it go back to the server.
            usable = item.claimed_at + self.options.job_timeout - self.options.min_lease_left - self._clock()
            if usable > 0:
                deadline = time.monotonic() + usable
                urls = item.job.distributions
                await asyncio.gather(*(self._fetch_one(item, url, deadline) for url in urls))
            item.queued_at = time.perf_counter()
            item.fetch_seconds = item.queued_at - started
            self.metrics.download_seconds.observe(item.fetch_seconds)
            await self._scan_queue.put(item)

    async def _fetch_one(self, work: Work[J], url: str, deadline: float) -> None:
        assert self._downloader is not None
        async with self._download_slots:
            try:
                expected = work.job.sha256.get(url)
                data = await self._downloader.download(
                    url, self.options.max_download_size, sha256=expected, deadline=deadline
                )
            except DownloadError as err:
                self.metrics.http_errors.labels("download").inc()
                (work.permanent_errors if err.permanent else work.transient_errors).append(str(err))
                key = self.options.wording.key
                self._log.warning("download failed", extra={key: work.job.name, "error": str(err)})
                return
        self.metrics.bytes_downloaded.inc(len(data))
        work.distributions.append((filename_of(url), data, url))

    async def _scan_loop(self) -> None:
        while True:
            idle_since = time.perf_counter()
            item = await self._scan_queue.get()
            now = time.perf_counter()
            self.metrics.scan_idle_seconds.inc(now - idle_since)
            if item is _DONE:
                return
            assert isinstance(item, Work)
            self.metrics.queue_wait_seconds.labels("scan").observe(now - item.queued_at)
            try:
                ready = await self._scan_one(item)
            except Exception as err:
                # One bad job must not stop the node; its lease expires and the server retries it.
                words = self.options.wording
                self._log.exception(
                    words.scan_failed, extra={words.key: item.job.name, "version": item.job.version}
                )
                if self.options.leased:
                    self._settle(item, "internal-error")
                    continue
                # Nobody claims it again: a result saying why (its findings, if the scan got that far),
                # never a release left without one.
                item.distributions.clear()
                if not item.findings:
                    item.failure = f"not scanned: internal error: {describe_error(err)}"
                ready = True
            if ready:
                item.queued_at = time.perf_counter()
                await self._send_queue.put(item)

    async def _scan_one(self, item: Work[J]) -> bool:
        """Scan a downloaded job; False when it is not to be delivered (left to be claimed again)."""
        job = item.job
        lease_left = item.claimed_at + self.options.job_timeout - self._clock()
        if lease_left < self.options.min_lease_left:
            if not self.options.leased:
                # Nobody claims it again: a failure saying why, never a release scanned in part (or not at
                # all: its downloads were not started) as clean.
                item.distributions.clear()
                item.failure = (
                    f"not scanned: less than {self.options.min_lease_left:.0f} s of its lease "
                    f"({self.options.job_timeout:g} s, DRAGONFLY_JOB_TIMEOUT) was left"
                )
                return True
            self._log.warning(self.options.wording.lease_short, extra={self.options.wording.key: job.name})
            self._settle(item, "lease-expired")
            return False
        scanner = await self.rules.ensure(job.rules_hash)
        item.commit = self.rules.commit
        # Keep the order of the job's URLs whatever order the downloads finished in.
        order = {url: i for i, url in enumerate(job.distributions)}
        item.distributions.sort(key=lambda d: order.get(d[2] or "", 0))
        release = None
        if item.distributions or not (item.permanent_errors or item.transient_errors):
            started = time.perf_counter()
            item.scanner = scanner
            release = await asyncio.to_thread(
                scanner.scan_release, job.name, job.version, item.distributions, progress=self._scans
            )
            item.scan_seconds = time.perf_counter() - started
            self.metrics.scan_seconds.observe(item.scan_seconds)
            for dist in release.distributions:
                self.metrics.files_scanned.inc(dist.files_scanned)
                self.metrics.bytes_scanned.inc(dist.bytes_scanned)
        item.distributions.clear()  # the bytes are not needed past this point
        item.release = release
        ready = conclude(item, self._log, self.options.wording, leased=self.options.leased)
        if not ready:
            self._log.warning(
                self.options.wording.transient,
                extra={
                    self.options.wording.key: job.name,
                    "version": job.version,
                    "errors": item.transient_errors,
                },
            )
            self._settle(item, "download-error")
        return ready

    async def _send_loop(self) -> None:
        while (item := await self._send_queue.get()) is not _DONE:
            assert isinstance(item, Work)
            work: Work[J] = item
            deadline = work.claimed_at + self.options.job_timeout
            words = self.options.wording
            started = time.perf_counter()
            self.metrics.queue_wait_seconds.labels("submit").observe(started - work.queued_at)
            try:
                outcome = await self.sink.deliver(work, deadline=deadline)
            except MainframeError as err:
                self._log.error(words.not_delivered, extra={words.key: work.job.name, "error": str(err)})
                self._settle(work, "submit-error")
                if isinstance(err, SinkBroken):
                    self.request_stop()  # nothing more can be delivered: claim no more
                continue
            except Exception:
                self._log.exception(words.deliver_failed, extra={words.key: work.job.name})
                self._settle(work, "submit-error")
                continue
            self.metrics.submit_seconds.observe(time.perf_counter() - started)
            self.source.delivered(work.job)
            kind = "failure" if work.failure is not None else "success"
            extra: dict[str, object] = {words.key: work.job.name, "version": work.job.version, "result": kind}
            if outcome is SubmitOutcome.ACCEPTED:
                message, level = words.delivered, logging.INFO
                if kind == "success":
                    rules = work.release.rules_matched if work.findings and work.release is not None else []
                    score = work.release.score if work.findings and work.release is not None else 0
                    extra.update(score=score, rules=",".join(rules))
                    if rules:
                        message, level = words.delivered_findings, words.findings_level
                else:
                    extra["error"] = work.failure or "; ".join(work.permanent_errors + work.transient_errors)
                    message, level = words.delivered_failure, words.failure_level
                self._log.log(level, message, extra=extra)
                self._settle(work, kind)
            elif outcome is SubmitOutcome.LEASE_LOST:
                self.metrics.lease_lost.inc()
                self._log.warning(words.duplicate, extra=extra)
                self._settle(work, "lease-lost")
            else:
                self._log.error(words.refused, extra={**extra, "outcome": outcome.name})
                self._settle(work, outcome.name.lower())


def install_signal_handlers(node: Node) -> None:
    """SIGTERM/SIGINT stop claiming and drain; a second signal ends the grace period at once. Signals are
    counted here: read from ``node.stopping``, a stop the node had asked for itself (a sink that takes no
    more, ``watch``'s store failing at a serial commit) made the user's first signal a second one, which
    cut the scans it was to let finish."""
    loop = asyncio.get_running_loop()

    def handle(sig: signal.Signals) -> None:
        if node.signalled is not None:
            node.abort()
        else:
            node.signalled = sig
            node.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, handle, sig)
