"""The source of ``watch`` jobs: new releases on a PEP 691 index, found by project serials (see
:mod:`dragonfly_hybrid.watch.service` for the feed, and how a round resumes exactly once)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fnmatch
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from pypi_simple import DistributionPackage, ProjectPage

from dragonfly_hybrid.http_client import redact_url
from dragonfly_hybrid.node.jobs import MainframeError, RulesPayload
from dragonfly_hybrid.pypi.download import filename_of
from dragonfly_hybrid.pypi.index import (
    DEFAULT_INDEX_URL,
    IndexUnavailable,
    NotAProjectList,
    ProjectNotFound,
    PyPIClient,
    PyPIError,
    describe_error,
    normalize_name,
)
from dragonfly_hybrid.report import DOWNLOAD_FAILED_ISSUE, NotDownloaded, TargetResult
from dragonfly_hybrid.store.db import Store

log = logging.getLogger("dragonfly_hybrid.watch")

T = TypeVar("T")

SERIAL_KEY = "serial"
SINCE_KEY = "since"
INDEX_KEY = "index_url"
PAGE_CONCURRENCY = 8
IDLE_NOTICE_SECONDS = 600.0
"""While polls find nothing new, a sign of life is logged at most this often (and at the first idle poll)."""


class WatchIndexError(MainframeError):
    """The index could not be polled. A ``MainframeError`` so that the node backs off and polls again."""


class WatchFailed(Exception):
    """The index could not be polled and the source fails fast (``--once``): the run stops."""


class UnwatchableIndex(WatchFailed):
    """The index does not serve the project list ``watch`` needs (an HTML-only mirror or proxy): polling
    again would only download the same unusable answer, so the run stops, whatever ``fail_fast`` says."""


class StoreOfAnotherIndex(WatchFailed):
    """The store's resume point was recorded on another index: its serial means nothing on this one (a
    lower serial would hide every release until the index caught up), so the run stops before polling."""


MAX_SIZE_ISSUE = "over-max-size"
"""The issue kind of a file ``--max-size`` kept from being downloaded."""

_DEFAULT_PORTS = {"http": 80, "https": 443}


def index_identity(url: str) -> str:
    """What tells two index URLs apart: host, port and path. Credentials, the scheme, the letter case of
    the host, a default port, trailing slashes and a fragment do not (the same index, reached another way).
    """
    parts = urlsplit(redact_url(url.strip()))
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: keep it as written
        return urlunsplit(("", parts.netloc.lower(), parts.path.rstrip("/") + "/", parts.query, ""))
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
        host = f"{host}:{port}"
    return urlunsplit(("", host, parts.path.rstrip("/") + "/", parts.query, ""))


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


@dataclass(frozen=True)
class WatchJob:
    """One new release to scan: its new files' URLs and the sha256 the index lists for each."""

    name: str
    version: str
    distributions: tuple[str, ...]
    sha256: dict[str, str]
    attempt: int = 1
    not_downloaded: tuple[NotDownloaded, ...] = ()
    """New files of the release that ``--max-size`` kept from being downloaded: stored with the release,
    which is then incomplete (never clean for bytes not scanned)."""

    @property
    def rules_hash(self) -> str | None:
        return None  # scanned with the rules watch was started with

    def unscanned(self, url: str, why: str) -> NotDownloaded:
        """The file of the job at ``url``, not scanned for ``why`` (its download failed), as stored."""
        return NotDownloaded(
            filename=filename_of(url),
            url=redact_url(url),
            size=0,  # the job does not carry the listed size
            kind=DOWNLOAD_FAILED_ISSUE,
            message=why,
            sha256=self.sha256.get(url),
        )


@dataclass
class _Round:
    """One poll's jobs, and the serial the store may move to when all are stored."""

    serial: int
    pending: set[tuple[str, str]] = field(default_factory=set)


def _key(name: str, version: str) -> tuple[str, str]:
    return normalize_name(name), version


def _as_utc(moment: datetime) -> datetime:
    """A time without a zone is UTC: RFC 5322's ``-0000`` (UTC, local offset unknown), a ``Date`` header
    sent twice, a PEP 700 ``upload-time`` without ``Z``; PyPI's times are all UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _parse_time(value: str) -> datetime:
    return _as_utc(datetime.fromisoformat(value))


class PyPIWatchSource:
    """A job source of new releases on a PEP 691 index (see module doc)."""

    def __init__(
        self,
        store: Store,
        rules_hash: str,
        *,
        index_url: str = DEFAULT_INDEX_URL,
        filters: WatchFilters | None = None,
        lease: float = 600.0,
        max_attempts: int = 3,
        fail_fast: bool = False,
        pypi: PyPIClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        idle_notice: float = IDLE_NOTICE_SECONDS,
        stop: asyncio.Event | None = None,
    ) -> None:
        """``stop``: the node's stop event (set by SIGTERM/SIGINT). A poll it interrupts hands out nothing:
        its releases are the next run's (the serial did not move), none is scanned after the signal."""
        self.store = store
        self.rules_hash = rules_hash
        self.index_url = index_url if index_url.endswith("/") else index_url + "/"
        self.filters = filters or WatchFilters()
        self.lease = lease
        self.max_attempts = max(1, max_attempts)
        self.fail_fast = fail_fast
        self._pypi = pypi or PyPIClient(self.index_url)
        self._owns_pypi = pypi is None
        self._clock = clock
        self._queue: deque[WatchJob] = deque()
        self._round: _Round | None = None
        self._issued: dict[tuple[str, str], tuple[WatchJob, float]] = {}
        self.polls = 0
        self.settled = 0
        """Releases stored by this run (scanned, or given up on)."""
        self.idle_notice = idle_notice
        self._last_news = datetime.now(timezone.utc)
        self._last_idle_notice: float | None = None
        self._stop = stop
        self._poll_after = 0.0
        """``time.monotonic()`` before which no poll starts: a failed poll's last ``Retry-After``."""
        self.error: sqlite3.Error | None = None
        """The store failed as a round's serial was committed: no new poll; ``serve_watch`` raises it."""

    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def aclose(self) -> None:
        if self._owns_pypi:
            self._pypi.close()

    # -- JobSource ---------------------------------------------------------------------------------------

    async def rules(self) -> RulesPayload | None:
        return None

    async def claim(self, batch: int) -> list[WatchJob]:
        self._reissue_expired()
        if not self._queue and self._round is None:
            if not await self._waited_as_asked():
                return []  # stopping: nothing polled, nothing handed out
            try:
                await self._poll()
            except (WatchFailed, sqlite3.Error):
                raise  # a store that fails is not an index answer: not polled again as one
            except WatchIndexError as err:
                if self.fail_fast:
                    raise WatchFailed(str(err)) from None
                raise
            except Exception as err:
                # An index answer this code did not expect must not kill the watcher: the poll is
                # abandoned (nothing was queued, the serial did not move) and tried again with backoff.
                # The error is logged by whoever gets the WatchIndexError; the traceback, at DEBUG.
                log.debug("unexpected error while polling the index", exc_info=True)
                reason = f"unexpected answer from {redact_url(self.index_url)}: {describe_error(err)}"
                if self.fail_fast:
                    raise WatchFailed(reason) from None
                raise WatchIndexError(reason) from None
        taken: list[WatchJob] = []
        now = self._clock()
        while self._queue and len(taken) < batch:
            job = self._queue.popleft()
            self._issued[_key(job.name, job.version)] = (job, now)
            taken.append(job)
        return taken

    def delivered(self, job: WatchJob) -> None:
        """A job's result is in the store: when a round's last job is, its serial is committed."""
        self._settled(job.name, job.version)

    def _settled(self, name: str, version: str) -> None:
        key = _key(name, version)
        self._issued.pop(key, None)
        self.settled += 1
        current = self._round
        if current is None:
            return
        current.pending.discard(key)
        if not current.pending:
            self._commit(current)

    # -- rounds ------------------------------------------------------------------------------------------

    def _commit(self, finished: _Round) -> None:
        try:
            committed = self.store.raise_state(SERIAL_KEY, finished.serial)
        except sqlite3.Error as err:
            # Raised into the node, it ended the watcher before the release just stored was logged (a
            # finding never logged) and cut the scans running. The round stays: nothing more is polled.
            self.error = err
            log.error("the store failed; no new polls", extra={"error": str(err)})
            if self._stop is not None:
                self._stop.set()
            return
        if committed:
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
                given_up = f"not scanned after {job.attempt} attempts (downloads failed or timed out)"
                reason = "; ".join(
                    [given_up, *(f"{file.filename} {file.message}" for file in job.not_downloaded)]
                )
                log.error("giving up on release", extra={"project": job.name, "version": job.version})
                # A row per file of the job: only a later read of that very file settles it.
                unscanned = tuple(job.unscanned(url, given_up) for url in job.distributions)
                failed = TargetResult.failed(
                    f"{job.name}=={job.version}", "release", job.name, job.version, reason
                )
                not_downloaded = (*unscanned, *job.not_downloaded)
                self.store.record(
                    dataclasses.replace(
                        failed, not_downloaded=not_downloaded, error_per_file=bool(not_downloaded)
                    ),
                    rules_hash=self.rules_hash,
                    source="watch",
                )
                self._settled(job.name, job.version)
                continue
            log.warning(
                "release not stored within --lease; scanning it again",
                extra={"project": job.name, "version": job.version},
            )
            again = dataclasses.replace(job, attempt=job.attempt + 1)
            self._queue.append(again)

    def check_store_index(self) -> None:
        """Refuse a store whose resume point was recorded on another index (:class:`StoreOfAnotherIndex`)."""
        recorded = self.store.get_state(INDEX_KEY)
        serial = self.store.get_state(SERIAL_KEY)
        if recorded is None or serial is None or index_identity(recorded) == index_identity(self.index_url):
            return
        here = redact_url(self.index_url)
        raise StoreOfAnotherIndex(
            f"the store {self.store.path} follows the index {redact_url(recorded)} (serial {serial}), "
            f"not {here}: one index's serials mean nothing on another (releases would be missed); "
            f"watch {here} with another store (--store PATH or DRAGONFLY_STORE)"
        )

    async def _poll(self) -> None:
        self.polls += 1
        self.check_store_index()
        listed = await self._project_list()
        if listed is None:
            log.info("stopping: this poll is left for the next run")
            return  # given up before the index answered: nothing read, nothing queued
        listing, index_serial, server_time = listed
        stored_serial = self.store.get_state(SERIAL_KEY)
        if stored_serial is None or self.store.get_state(SINCE_KEY) is None:
            now = datetime.now(timezone.utc)
            since = min(now, _as_utc(server_time)) if server_time is not None else now
            baseline = {
                SINCE_KEY: since.isoformat(),
                INDEX_KEY: redact_url(self.index_url),
                SERIAL_KEY: str(index_serial),
            }
            # Another watcher may have recorded one meanwhile: its baseline stands (checked next poll).
            if self.store.set_states_once(baseline, unless=(SERIAL_KEY, SINCE_KEY)):
                recorded = {"serial": index_serial, "since": baseline[SINCE_KEY]}
                log.info("watch baseline recorded", extra=recorded)
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
                self.store.raise_state(SERIAL_KEY, index_serial)
            self._idle()
            return
        self._last_news = datetime.now(timezone.utc)
        self._last_idle_notice = None
        slots = asyncio.Semaphore(PAGE_CONCURRENCY)

        async def page_of(name: str) -> ProjectPage | None:
            async with slots:
                # Once stopping, the pages not asked for yet never are: the poll is given up below.
                return None if self._stopping() else await self._project_page(name)

        asked = [asyncio.ensure_future(page_of(name)) for _, name in changed]
        try:
            pages = await asyncio.gather(*asked)
        finally:
            # A page that failed fails the poll, but gather left the others running: each failed poll went
            # on asking for its pages (a thread each) beside the polls after it, without bound.
            for task in asked:
                task.cancel()
        if self._stopping():
            log.info("stopping: this poll is left for the next run", extra={"changed": len(changed)})
            return  # nothing queued, the serial unmoved: the next run polls these projects again
        target = max(index_serial, changed[-1][0])
        jobs: list[WatchJob] = []
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
        log.info("watch poll", extra={"changed": len(changed), "releases": len(jobs), "serial": target})
        self._round = current
        self._queue.extend(jobs)
        if not jobs:
            self._commit(current)

    def _idle(self) -> None:
        """A poll found nothing new: say so at the first such poll, then every ``idle_notice`` seconds."""
        now = self._clock()
        if self._last_idle_notice is not None and now - self._last_idle_notice < self.idle_notice:
            return
        self._last_idle_notice = now
        log.info(
            f"no new releases since {self._last_news.isoformat(timespec='seconds')}; "
            f"{self.settled} stored by this run so far",
            extra={"polls": self.polls},
        )

    def _new_jobs(self, page: ProjectPage, since: datetime) -> list[WatchJob]:
        by_version: dict[str, list[DistributionPackage]] = {}
        for package in page.packages:
            if package.version is not None:
                by_version.setdefault(package.version, []).append(package)
        jobs = []
        for version, packages in by_version.items():
            # A file the index gives no upload time may be new whatever its version (a pre-release, a
            # backport): only the store can tell it was seen.
            new = [p for p in packages if p.upload_time is None or _as_utc(p.upload_time) >= since]
            if not new:
                continue
            # Under the rules watch scans with: a file read only under other rules (a narrower `scan -r`
            # --store) was never looked at with these.
            stored = self.store.stored_files(page.project, version, self.rules_hash)
            wanted = []
            digests = {}
            skipped = []
            for p in sorted(new, key=lambda p: p.filename):
                # Seen only if these very bytes were scanned: a lock file's scan may have stored a file of
                # this name from another host. A file the index lists no sha256 for goes by its name and
                # its URL.
                listed = p.digests.get("sha256") or None
                if stored.has(p.filename, listed, p.url):
                    continue
                if not self.filters.wants_file(p):
                    if stored.has_not_downloaded(p.filename, listed, p.url):
                        continue  # stored as not scanned already; kept out again, it is not stored again
                    log.info(
                        "not downloading a file over --max-size", extra={"file": p.filename, "size": p.size}
                    )
                    skipped.append(self._over_max_size(p))
                    continue
                wanted.append(p.url)
                if p.digests.get("sha256"):
                    digests[p.url] = p.digests["sha256"].lower()
            if wanted or skipped:
                jobs.append(
                    WatchJob(page.project, version, tuple(wanted), digests, not_downloaded=tuple(skipped))
                )
        return jobs

    def _over_max_size(self, package: DistributionPackage) -> NotDownloaded:
        return NotDownloaded(
            filename=package.filename,
            url=redact_url(package.url),
            size=package.size or 0,
            kind=MAX_SIZE_ISSUE,
            message=(
                f"not downloaded: the index lists {package.size} bytes, over --max-size "
                f"({self.filters.max_size} bytes)"
            ),
            sha256=package.digests.get("sha256") or None,
        )

    # -- index -------------------------------------------------------------------------------------------

    async def _waited_as_asked(self) -> bool:
        """Wait out what the index's ``Retry-After`` asked when the last poll failed (the node's own backoff
        between polls is shorter at first); False when stopping, which ends the wait."""
        left = self._poll_after - time.monotonic()
        if left > 0:
            if self._stop is None:
                await asyncio.sleep(left)
            else:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), left)
        return not self._stopping()

    def _failed(self, err: PyPIError) -> WatchIndexError:
        """The poll failed on ``err``: the next one waits what its ``Retry-After`` asked, if anything."""
        reason = str(err)
        asked = err.retry_after if isinstance(err, IndexUnavailable) else None
        if asked is not None and not self.fail_fast:  # fail_fast: no next poll
            self._poll_after = time.monotonic() + asked
            reason += f"; next poll in {asked:.0f} s at the earliest, as its Retry-After asks"
        return WatchIndexError(reason)

    async def _ask(self, call: Callable[[], T]) -> T | None:
        """``call()``, a request to the index, on a daemon thread; None once stopping, without waiting for
        its answer. On the event loop's executor (``asyncio.to_thread``), a slow answer (the project list
        is megabytes; an index that trickles) held a signalled watcher until it came, after a second signal
        too: the executor's threads are waited for at exit. The request left behind ends with the process."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[T] = loop.create_future()

        def settle(value: T | None, error: BaseException | None) -> None:
            if answer.done():
                return  # given up
            if error is not None:
                answer.set_exception(error)
            else:
                answer.set_result(value)  # type: ignore[arg-type]  # None only with an error

        def work() -> None:
            value: T | None = None
            error: BaseException | None = None
            try:
                value = call()
            except BaseException as err:  # handed to the poll, which raises it
                error = err
            try:
                loop.call_soon_threadsafe(settle, value, error)
            except RuntimeError:  # the loop is closed: the poll was given up
                pass

        threading.Thread(target=work, name="dragonfly-hybrid-watch-index", daemon=True).start()
        waiting: set[asyncio.Future[Any]] = {answer}
        if self._stop is not None:
            waiting.add(asyncio.ensure_future(self._stop.wait()))
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiting - {answer}:
                waiter.cancel()
            if not answer.done():
                answer.cancel()  # its answer, when it comes, is dropped
        return None if answer.cancelled() else answer.result()

    async def _project_list(self) -> tuple[dict[str, int], int, datetime | None] | None:
        """Every project's normalized name and ``_last-serial``; the index's serial; the server's time.
        None: given up (stopping)."""
        try:
            listing = await self._ask(self._pypi.project_list)
        except NotAProjectList as err:
            raise UnwatchableIndex(str(err)) from None
        except PyPIError as err:
            raise self._failed(err) from None
        return None if listing is None else (listing.projects, listing.serial, listing.server_time)

    async def _project_page(self, name: str) -> ProjectPage | None:
        """The page of ``name``; None when it was deleted since the listing, or given up (stopping)."""
        try:
            return await self._ask(lambda: self._pypi.project_page(name))
        except ProjectNotFound:
            return None  # deleted since the listing
        except PyPIError as err:
            raise self._failed(err) from None
