"""``dragonfly-hybrid watch``: follow new PyPI releases, scan each one, keep the results in the store.

It is the node's pipeline (:class:`dragonfly_hybrid.node.pipeline.Node`) with another source and sink:
:class:`PyPIWatchSource` turns index changes into jobs, :class:`StoreSink` writes results to the store.

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
import dataclasses
import fnmatch
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
from packaging.version import InvalidVersion, Version
from pypi_simple import DistributionPackage, ProjectPage

from dragonfly_hybrid._core import Limits, Rules
from dragonfly_hybrid.http_client import new_async_client, redact_url
from dragonfly_hybrid.node.jobs import Job, MainframeError, ResultBody, RulesPayload, SubmitOutcome
from dragonfly_hybrid.node.metrics import NodeMetrics
from dragonfly_hybrid.node.pipeline import Node, NodeOptions, RuleState, Work, install_signal_handlers
from dragonfly_hybrid.pypi.download import filename_of
from dragonfly_hybrid.pypi.index import DEFAULT_MAX_DOWNLOAD_SIZE, normalize_name
from dragonfly_hybrid.report import TargetResult
from dragonfly_hybrid.store.content_cache import StoreContentCache
from dragonfly_hybrid.store.db import Store

log = logging.getLogger("dragonfly_hybrid.watch")

PYPI_SIMPLE_URL = "https://pypi.org/simple/"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
SERIAL_KEY = "serial"
SINCE_KEY = "since"
INDEX_KEY = "index_url"
PAGE_CONCURRENCY = 8


class WatchIndexError(MainframeError):
    """The index could not be polled. A ``MainframeError`` so that the node backs off and polls again."""


class WatchFailed(Exception):
    """The index could not be polled and the source fails fast (``--once``): the run stops."""


@dataclass(frozen=True)
class WatchFilters:
    """Which projects and files are scanned. Patterns are shell globs on the PEP 503 normalized name."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    max_size: int | None = None
    """Files the index lists as larger are skipped (not downloaded). None: no limit."""

    def wants_project(self, name: str) -> bool:
        key = normalize_name(name)
        if self.include and not any(fnmatch.fnmatchcase(key, p.lower()) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(key, p.lower()) for p in self.exclude)

    def wants_file(self, package: DistributionPackage) -> bool:
        return self.max_size is None or package.size is None or package.size <= self.max_size


@dataclass
class _Round:
    """One poll's jobs, and the serial the store may move to when all are stored."""

    serial: int
    pending: set[tuple[str, str]] = field(default_factory=set)


def _key(name: str, version: str) -> tuple[str, str]:
    return normalize_name(name), version


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


class PyPIWatchSource:
    """A job source of new releases on a PEP 691 index (see module doc)."""

    def __init__(
        self,
        store: Store,
        rules_hash: str,
        *,
        index_url: str = PYPI_SIMPLE_URL,
        filters: WatchFilters | None = None,
        lease: float = 600.0,
        max_attempts: int = 3,
        fail_fast: bool = False,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.rules_hash = rules_hash
        self.index_url = index_url if index_url.endswith("/") else index_url + "/"
        self.filters = filters or WatchFilters()
        self.lease = lease
        self.max_attempts = max(1, max_attempts)
        self.fail_fast = fail_fast
        self._http = http or new_async_client()
        self._owns_http = http is None
        self._clock = clock
        self._queue: deque[Job] = deque()
        self._round: _Round | None = None
        self._issued: dict[tuple[str, str], tuple[Job, float]] = {}
        self.polls = 0

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # -- JobSource ---------------------------------------------------------------------------------------

    async def rules(self) -> RulesPayload | None:
        return None

    async def claim(self, batch: int) -> list[Job]:
        self._reissue_expired()
        if not self._queue and self._round is None:
            try:
                await self._poll()
            except WatchIndexError as err:
                if self.fail_fast:
                    raise WatchFailed(str(err)) from None
                raise
        taken: list[Job] = []
        now = self._clock()
        while self._queue and len(taken) < batch:
            job = self._queue.popleft()
            self._issued[_key(job.name, job.version)] = (job, now)
            taken.append(job)
        return taken

    def settled(self, name: str, version: str) -> None:
        """A job's result is in the store: when a round's last job is, its serial is committed."""
        key = _key(name, version)
        self._issued.pop(key, None)
        current = self._round
        if current is None:
            return
        current.pending.discard(key)
        if not current.pending:
            self._commit(current)

    # -- rounds ------------------------------------------------------------------------------------------

    def _commit(self, finished: _Round) -> None:
        old = int(self.store.get_state(SERIAL_KEY) or 0)
        if finished.serial > old:
            self.store.set_state(SERIAL_KEY, str(finished.serial))
            log.info("watch serial committed", extra={"serial": finished.serial})
        if self._round is finished:
            self._round = None

    def _reissue_expired(self) -> None:
        now = self._clock()
        for key, (job, issued_at) in list(self._issued.items()):
            if now - issued_at < self.lease:
                continue
            del self._issued[key]
            if job.attempt >= self.max_attempts:
                reason = f"not scanned after {job.attempt} attempts (downloads failed or timed out)"
                log.error("giving up on release", extra={"job": job.name, "version": job.version})
                self.store.record(
                    TargetResult.failed(
                        f"{job.name}=={job.version}", "release", job.name, job.version, reason
                    ),
                    rules_hash=self.rules_hash,
                    source="watch",
                )
                self.settled(job.name, job.version)
                continue
            log.warning("job not stored within its lease; issuing it again", extra={"job": job.name})
            again = dataclasses.replace(job, attempt=job.attempt + 1, assignment_id=str(uuid.uuid4()))
            self._queue.append(again)

    async def _poll(self) -> None:
        self.polls += 1
        listing, index_serial, server_time = await self._project_list()
        stored_serial = self.store.get_state(SERIAL_KEY)
        if stored_serial is None or self.store.get_state(SINCE_KEY) is None:
            since = min(datetime.now(timezone.utc), server_time or datetime.now(timezone.utc))
            self.store.set_state(SINCE_KEY, since.isoformat())
            self.store.set_state(INDEX_KEY, redact_url(self.index_url))
            self.store.set_state(SERIAL_KEY, str(index_serial))
            log.info("watch baseline recorded", extra={"serial": index_serial, "since": since.isoformat()})
            return
        serial = int(stored_serial)
        since = _parse_time(self.store.get_state(SINCE_KEY) or "")
        changed = sorted(
            (project_serial, name)
            for name, project_serial in listing.items()
            if project_serial > serial and self.filters.wants_project(name)
        )
        if not changed:
            if index_serial > serial:
                self.store.set_state(SERIAL_KEY, str(index_serial))
            return
        slots = asyncio.Semaphore(PAGE_CONCURRENCY)

        async def page_of(name: str) -> ProjectPage | None:
            async with slots:
                return await self._project_page(name)

        pages = await asyncio.gather(*(page_of(name) for _, name in changed))
        target = max(index_serial, changed[-1][0])
        jobs: list[Job] = []
        for (listed_serial, name), page in zip(changed, pages, strict=True):
            if page is None:
                continue  # deleted since the listing
            page_serial = int(page.last_serial) if page.last_serial not in (None, "") else None
            if page_serial is not None and page_serial < listed_serial:
                log.warning("stale project page; will look again", extra={"project": name})
                target = min(target, listed_serial - 1)
                continue
            jobs.extend(self._new_jobs(page, since))
        current = _Round(serial=target, pending={_key(j.name, j.version) for j in jobs})
        log.info("watch poll", extra={"changed": len(changed), "jobs": len(jobs), "serial": target})
        self._round = current
        self._queue.extend(jobs)
        if not jobs:
            self._commit(current)

    def _new_jobs(self, page: ProjectPage, since: datetime) -> list[Job]:
        by_version: dict[str, list[DistributionPackage]] = {}
        for package in page.packages:
            if package.version is not None:
                by_version.setdefault(package.version, []).append(package)
        latest = _latest_version(list(by_version))
        jobs = []
        for version, packages in by_version.items():
            new = [
                p
                for p in packages
                if (p.upload_time >= since if p.upload_time is not None else version == latest)
            ]
            if not new:
                continue
            stored = self.store.stored_files(page.project, version)
            wanted = []
            digests = {}
            for p in sorted(new, key=lambda p: p.filename):
                if p.filename in stored:
                    continue
                if not self.filters.wants_file(p):
                    log.info("skipping file over --max-size", extra={"file": p.filename, "size": p.size})
                    continue
                wanted.append(p.url)
                if p.digests.get("sha256"):
                    digests[p.url] = p.digests["sha256"].lower()
            if wanted:
                jobs.append(
                    Job(page.project, version, wanted, self.rules_hash, 1, str(uuid.uuid4()), sha256=digests)
                )
        return jobs

    # -- HTTP --------------------------------------------------------------------------------------------

    async def _get(self, url: str) -> httpx.Response:
        try:
            response = await self._http.get(url, headers={"Accept": JSON_ACCEPT})
        except httpx.HTTPError as err:
            raise WatchIndexError(f"{redact_url(url)}: {type(err).__name__}: {err}") from None
        if response.status_code != 200 and response.status_code != 404:
            raise WatchIndexError(f"{redact_url(url)}: HTTP {response.status_code}")
        return response

    async def _project_list(self) -> tuple[dict[str, int], int, datetime | None]:
        """Every project's normalized name and ``_last-serial``; the index's serial; the server's time."""
        response = await self._get(self.index_url)
        shown = redact_url(self.index_url)
        if response.status_code != 200:
            raise WatchIndexError(f"{shown}: HTTP {response.status_code}")
        try:
            data = response.json()
            projects = {normalize_name(p["name"]): int(p["_last-serial"]) for p in data["projects"]}
            meta_serial = data.get("meta", {}).get("_last-serial")
        except (ValueError, KeyError, TypeError) as err:
            raise WatchIndexError(
                f"{shown} does not list projects with their _last-serial (PEP 691 JSON, as PyPI does): "
                f"{type(err).__name__}: {err}"
            ) from None
        serial = int(meta_serial) if meta_serial is not None else max(projects.values(), default=0)
        server_time = None
        if response.headers.get("date"):
            try:
                server_time = parsedate_to_datetime(response.headers["date"])
            except (TypeError, ValueError):
                server_time = None
        return projects, serial, server_time

    async def _project_page(self, name: str) -> ProjectPage | None:
        url = f"{self.index_url}{name}/"
        response = await self._get(url)
        if response.status_code == 404:
            return None
        try:
            return ProjectPage.from_json_data(response.json(), str(response.url))
        except Exception as err:  # pydantic and JSON errors: an unusable page
            raise WatchIndexError(f"malformed project page at {redact_url(url)}: {err}") from None


def _latest_version(versions: Sequence[str]) -> str | None:
    parsed = []
    for text in versions:
        try:
            parsed.append((Version(text), text))
        except InvalidVersion:
            continue
    return max(parsed)[1] if parsed else None


# ------------------------------------------------------------------------------------------------- sink


WEBHOOK_URL_PROBLEM = (
    "must be an http:// or https:// URL with a host (the value is not shown: it may hold a token)"
)


def webhook_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook, or None. Only http(s) URLs with a host are accepted (never
    ``file:`` or other schemes, never a bare word), so a bad one is refused at start, not at the first
    finding. The reason never quotes the URL: webhooks carry their secret in the path or the query."""
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError:
        return WEBHOOK_URL_PROBLEM
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return WEBHOOK_URL_PROBLEM
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url.strip()):
        return WEBHOOK_URL_PROBLEM
    return None


def redact_webhook_url(url: str) -> str:
    """What of a webhook URL may be logged: its scheme, host and port. Webhooks carry their secret in the
    path (``https://discord.com/api/webhooks/ID/TOKEN``, ``https://hooks.slack.com/services/T/B/TOKEN``)
    or the query (``?token=...``), and user:password may be in the authority: the path becomes ``/***``,
    the query ``?***``; the user part and the fragment are dropped."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    path = "/***" if parts.path not in ("", "/") else parts.path
    return urlunsplit((parts.scheme, netloc, path, "***" if parts.query else "", ""))


def _scrub(text: str, url: str) -> str:
    """``text`` (an error message) with the webhook URL, its path, query and credentials blanked."""
    parts = urlsplit(url.strip())
    userinfo = parts.netloc.rpartition("@")[0]
    secrets = [url, url.strip(), userinfo, *userinfo.split(":"), parts.path, parts.query, parts.fragment]
    secrets += [segment for segment in parts.path.split("/") if len(segment) >= 4]
    secrets += [value for _, _, value in (item.partition("=") for item in parts.query.split("&"))]
    for secret in sorted(
        {s for s in secrets if len(s) >= 4 and s not in ("http", "https")}, key=len, reverse=True
    ):
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Webhook:
    """POST a JSON summary of every stored release whose score is at least ``min_score``.

    ``url`` must be http(s) (ValueError otherwise); it is never shown whole: logs and reprs use
    :func:`redact_webhook_url`."""

    url: str
    min_score: int = 5
    attempts: int = 3

    def __post_init__(self) -> None:
        problem = webhook_url_problem(self.url)
        if problem is not None:
            raise ValueError(f"webhook URL {problem}")
        object.__setattr__(self, "url", self.url.strip())

    def __repr__(self) -> str:
        shown = redact_webhook_url(self.url)
        return f"Webhook(url={shown!r}, min_score={self.min_score}, attempts={self.attempts})"


def webhook_payload(result: TargetResult, scan_id: int, rules_hash: str) -> dict[str, object]:
    return {
        "event": "findings",
        "name": result.name,
        "version": result.version,
        "verdict": result.verdict,
        "score": result.score,
        "rules_matched": list(result.rules_matched),
        "inspector_url": result.inspector_url,
        "rules_hash": rules_hash,
        "scan_id": scan_id,
        "files": [
            {
                "distribution": dist.name,
                "path": file.path,
                "score": file.score,
                "rules": [m.identifier for m in file.matches],
            }
            for dist in result.distributions
            for file in dist.files
        ],
    }


def result_of(body: ResultBody, work: Work) -> TargetResult:
    """The :class:`TargetResult` of a finished node job: its scan result, or the failure the node reported."""
    job = work.job
    label = f"{job.name}=={job.version}"
    errors = "; ".join(work.permanent_errors + work.transient_errors) or None
    if work.release is not None:
        return TargetResult.from_release(label, work.release, errors)
    reason = getattr(body, "reason", None) or errors or "nothing could be scanned"
    return TargetResult.failed(label, "release", job.name, job.version, reason)


class StoreSink:
    """A ``DetailedSink`` that writes each job's whole result to the store.

    A result whose files are all in the store already (a job issued again after its lease ran out, and
    finished twice) is not stored twice: the node is told the lease was lost.
    """

    def __init__(
        self,
        store: Store,
        rules: Rules,
        *,
        source: str = "watch",
        on_stored: Callable[[str, str], None] | None = None,
        webhook: Webhook | None = None,
        http: httpx.AsyncClient | None = None,
        content_cache: StoreContentCache | None = None,
    ) -> None:
        self.store = store
        self.rules = rules
        self.source = source
        self.on_stored = on_stored
        self.webhook = webhook
        self._http = http
        self.content_cache = content_cache
        self.stored = 0

    async def submit(self, body: ResultBody, *, deadline: float) -> SubmitOutcome:
        raise TypeError("StoreSink needs the whole job: the node calls submit_work")

    def _record(self, result: TargetResult, work: Work) -> int | None:
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

    async def submit_work(self, body: ResultBody, work: Work, *, deadline: float) -> SubmitOutcome:
        del deadline  # a local write cannot outlive a lease
        result = result_of(body, work)
        scan_id = await asyncio.to_thread(self._record, result, work)
        if self.on_stored is not None:
            self.on_stored(work.job.name, work.job.version)
        if scan_id is None:
            return SubmitOutcome.LEASE_LOST
        self.stored += 1
        if (
            self.webhook is not None
            and result.verdict == "findings"
            and result.score >= self.webhook.min_score
        ):
            await self._post(webhook_payload(result, scan_id, self.rules.hash))
        return SubmitOutcome.ACCEPTED

    async def _post(self, payload: dict[str, object]) -> None:
        assert self.webhook is not None
        shown = redact_webhook_url(self.webhook.url)
        client = self._http or new_async_client(timeout=15.0, follow_redirects=False)
        try:
            for attempt in range(1, self.webhook.attempts + 1):
                try:
                    response = await client.post(
                        self.webhook.url,
                        content=json.dumps(payload).encode(),
                        headers={"Content-Type": "application/json"},
                    )
                    if response.status_code < 300:
                        return
                    problem = f"HTTP {response.status_code}"
                    if 400 <= response.status_code < 500 and response.status_code != 429:
                        break
                except httpx.HTTPError as err:  # some messages quote the URL: scrub its secrets
                    problem = _scrub(f"{type(err).__name__}: {err}", self.webhook.url)
                if attempt < self.webhook.attempts:
                    await asyncio.sleep(0.2 * 2 ** (attempt - 1))
            log.error("webhook failed", extra={"url": shown, "error": problem})
        finally:
            if self._http is None:
                await client.aclose()


# ------------------------------------------------------------------------------------------------ serve


@dataclass
class WatchConfig:
    """Everything ``watch`` needs; the CLI fills it from its flags."""

    store_path: Path
    rules: Rules
    index_url: str = PYPI_SIMPLE_URL
    filters: WatchFilters = field(default_factory=WatchFilters)
    webhook: Webhook | None = None
    interval: float = 120.0
    lease: float = 600.0
    limits: Limits = field(default_factory=Limits)
    threads: int = 2
    max_download_size: int = DEFAULT_MAX_DOWNLOAD_SIZE
    once: bool = False
    max_jobs: int | None = None
    grace_period: float = 60.0
    handle_signals: bool = True


async def serve_watch(config: WatchConfig, *, metrics: NodeMetrics | None = None) -> WatchSummary:
    """Watch the index until stopped (or for one poll with ``once``, or ``max_jobs`` releases)."""
    with Store(config.store_path) as store:
        source = PyPIWatchSource(
            store,
            config.rules.hash,
            index_url=config.index_url,
            filters=config.filters,
            lease=config.lease,
            fail_fast=config.once,
        )
        cache = StoreContentCache(store)
        sink = StoreSink(
            store, config.rules, on_stored=source.settled, webhook=config.webhook, content_cache=cache
        )
        rule_state = RuleState(
            source,
            config.limits,
            config.threads,
            None,
            initial=(config.rules, config.rules.hash),
            content_cache=cache,
        )
        options = NodeOptions(
            job_timeout=config.lease,
            load_duration=config.interval,
            max_scan_size=config.max_download_size,
            grace_period=config.grace_period,
            once=config.once,
            max_jobs=config.max_jobs,
        )
        node = Node(source, sink, rule_state, options, threads=config.threads, metrics=metrics)
        if config.handle_signals:
            install_signal_handlers(node)
        try:
            await node.run()
        finally:
            await source.aclose()
            if rule_state.scanner is not None:
                cache.save(rule_state.scanner)  # what jobs left unstored scanned (transient errors)
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
