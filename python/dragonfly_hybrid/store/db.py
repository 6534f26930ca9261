"""The embedded results store: one SQLite file (stdlib ``sqlite3``, WAL mode) of scanned releases.

Who writes it: ``scan --store PATH`` (or ``DRAGONFLY_STORE``), ``watch`` (always) and ``diff`` (the releases
it had to scan). Who reads it: ``report``, ``diff`` and ``watch`` (to resume).

Schema (version 5; ``schema_version`` holds the version, :data:`MIGRATIONS` the steps)::

    rulesets      (id, hash UNIQUE, count, first_seen)            -- every rule set a scan used
    releases      (id, name, normalized, version, UNIQUE(normalized, version))
    scans         (id, release_id, ruleset_id, source, scanned_at, verdict, score, rules_matched JSON,
                   inspector_url, error, download_seconds, scan_seconds,
                   error_per_file, engine_version)                            -- one row per scan of a release
                   -- error_per_file: 1 when every part of the error is about one stored file (a file not
                   -- downloaded, an incomplete distribution), 0 when not (or not known: before version 4)
                   -- engine_version: the dragonfly-hybrid version that scanned (NULL: before version 5)
    distributions (id, scan_id, filename, url, format, size, sha256, files_scanned, bytes_scanned, score,
                   rules_matched JSON, top_file, verdict, complete, listed_sha256)
                   -- a file not downloaded: sha256 '', listed_sha256 the digest the index listed (NULL:
                   -- none listed, or stored before version 4)
    files         (id, distribution_id, path, size, sha256, score)           -- files that matched a rule
    matches       (id, file_id, rule, namespace, weight, tags JSON, metadata JSON,
                   patterns JSON [{identifier, offset, length, data, line, column, snippet}])
                   -- data: matched bytes (<= 64); line, column: 1-based; snippet: [before, match, after],
                   -- the match's line split around it (<= 120 bytes); all three null in a binary file,
                   -- absent in scans stored before they were kept
    issues        (id, distribution_id, path, kind, message, unscanned)
    watch_state   (key PRIMARY KEY, value)                                   -- the watcher's resume point
    -- version 2: the persisted content cache; version 3: keyed by BLAKE3 (the SHA-256-keyed entries dropped);
    -- version 4: a row per file not downloaded keeps its listed digest, a scan whether its error is per file;
    -- version 5: a scan keeps the engine version that made it
    content_cache (rules_hash, content_key BLOB, matches BLOB, saved_at,
                   PRIMARY KEY (rules_hash, content_key))
                  WITHOUT ROWID                 -- one file content's engine result under one rule set
    content_cache_rulesets (rules_hash PRIMARY KEY, entries, saved_at)       -- per rule set: row count

A release is scanned once per (release, rule set) by ``watch``; ``scan --store`` and ``diff`` add a scan
row each time they scan. A scan row records only the files that scan read (``watch`` stores a file
uploaded later as a scan of that file alone; a hash-mode ``scan -R`` or a lock file, the files it allows)
and a row without bytes per file it could not fetch, so readers (``report``) show a release as
:class:`StoredRelease`: each file stored for it from its newest scan, combined, with the findings of
earlier rule sets and the files and errors no later scan settled. Timestamps are ISO-8601 UTC strings
(``2026-01-31T12:00:00.123456+00:00``), so they sort as text.

The content cache
-----------------
Every file content the engine scans with YARA-X is one entry: its key in the engine's cache (32 bytes:
the content's BLAKE3 hash, mixed with its filetype class's rules when the set is routed) and the
engine's encoding of the rules it matched with their patterns (``Scanner.cache_export``; ``b""`` when it
matched nothing, which is most files). An entry is only valid for the rule set that produced it, so it is
keyed by ``Rules.hash`` too. ``scan --store``, ``diff`` and ``watch`` load the entries of their rule set
into the engine before scanning (``Scanner.cache_import``) and save what the engine scanned after each
release (:mod:`dragonfly_hybrid.store.content_cache`): a file already scanned with the same rules is never
scanned again, across runs and releases. ``saved_at`` (Unix time in microseconds, above every earlier
save's) orders the entries for eviction. Bounds, enforced by every save (in its transaction):

* at most :data:`CONTENT_CACHE_LIMIT` (the engine's ``CACHE_ENTRIES``, what it holds in memory) entries
  per rule set; beyond it the oldest entries of that rule set are deleted;
* entries for at most :data:`CONTENT_CACHE_RULE_SETS` (3) rule sets, the ones saved to most recently;
  the others' entries are deleted.

An entry that matched nothing takes about 260 bytes on disk with its index (the 64-character rules hash
is in both), so a full rule set's cache is about 130 MB (measured: 500,000 entries, 129 MB).
``content_cache_rulesets.entries`` counts each rule set's rows, so that the bound is checked without
counting them.

Durability and concurrency: WAL journal, ``synchronous=NORMAL``: every committed transaction survives the
process being killed (kill -9) and the file is never corrupted; a power loss may lose the last few
commits, never the file. One writer at a time (``busy_timeout`` waits for the lock); readers never block
the writer and never see a half-written release (each scan is one transaction).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

from dragonfly_hybrid import __version__
from dragonfly_hybrid._core import CACHE_ENTRIES, DistributionResult, RuleMatch, Rules
from dragonfly_hybrid.http_client import redact_url
from dragonfly_hybrid.pypi.index import normalize_name
from dragonfly_hybrid.report import NotDownloaded as NotDownloaded  # re-exported: the store keeps them
from dragonfly_hybrid.report import TargetResult, meta_value, snippet_parts
from dragonfly_hybrid.store import STORE_ENV as STORE_ENV  # re-exported

SCHEMA_VERSION = 5
CONTENT_CACHE_LIMIT = CACHE_ENTRIES
"""Most content-cache entries kept per rule set: what the engine keeps in memory."""
CONTENT_CACHE_RULE_SETS = 3
"""Rule sets whose content-cache entries are kept (the most recently saved to)."""
CONTENT_CACHE_PAGE = 20_000
"""Entries read per query when loading the content cache (bounds the memory a load needs)."""
BUSY_TIMEOUT_MS = 30_000

MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1
    """
    CREATE TABLE rulesets (
        id INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        count INTEGER,
        first_seen TEXT NOT NULL
    );
    CREATE TABLE releases (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        normalized TEXT NOT NULL,
        version TEXT NOT NULL,
        UNIQUE (normalized, version)
    );
    CREATE TABLE scans (
        id INTEGER PRIMARY KEY,
        release_id INTEGER NOT NULL REFERENCES releases (id),
        ruleset_id INTEGER REFERENCES rulesets (id),
        source TEXT NOT NULL,
        scanned_at TEXT NOT NULL,
        verdict TEXT NOT NULL,
        score INTEGER NOT NULL,
        rules_matched TEXT NOT NULL,
        inspector_url TEXT,
        error TEXT,
        download_seconds REAL,
        scan_seconds REAL
    );
    CREATE INDEX scans_release ON scans (release_id, id);
    CREATE INDEX scans_time ON scans (scanned_at);
    CREATE TABLE distributions (
        id INTEGER PRIMARY KEY,
        scan_id INTEGER NOT NULL REFERENCES scans (id),
        filename TEXT NOT NULL,
        url TEXT,
        format TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        files_scanned INTEGER NOT NULL,
        bytes_scanned INTEGER NOT NULL,
        score INTEGER NOT NULL,
        rules_matched TEXT NOT NULL,
        top_file TEXT,
        verdict TEXT NOT NULL,
        complete INTEGER NOT NULL
    );
    CREATE INDEX distributions_scan ON distributions (scan_id);
    CREATE TABLE files (
        id INTEGER PRIMARY KEY,
        distribution_id INTEGER NOT NULL REFERENCES distributions (id),
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        score INTEGER NOT NULL
    );
    CREATE INDEX files_distribution ON files (distribution_id);
    CREATE TABLE matches (
        id INTEGER PRIMARY KEY,
        file_id INTEGER NOT NULL REFERENCES files (id),
        rule TEXT NOT NULL,
        namespace TEXT NOT NULL,
        weight INTEGER NOT NULL,
        tags TEXT NOT NULL,
        metadata TEXT NOT NULL,
        patterns TEXT NOT NULL
    );
    CREATE INDEX matches_file ON matches (file_id);
    CREATE INDEX matches_rule ON matches (rule);
    CREATE TABLE issues (
        id INTEGER PRIMARY KEY,
        distribution_id INTEGER NOT NULL REFERENCES distributions (id),
        path TEXT NOT NULL,
        kind TEXT NOT NULL,
        message TEXT NOT NULL,
        unscanned INTEGER NOT NULL
    );
    CREATE INDEX issues_distribution ON issues (distribution_id);
    CREATE TABLE watch_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 1 -> 2
    """
    CREATE TABLE content_cache (
        rules_hash TEXT NOT NULL,
        sha256 BLOB NOT NULL,
        matches BLOB NOT NULL,
        saved_at INTEGER NOT NULL,
        PRIMARY KEY (rules_hash, sha256)
    ) WITHOUT ROWID;
    CREATE INDEX content_cache_age ON content_cache (rules_hash, saved_at);
    CREATE TABLE content_cache_rulesets (
        rules_hash TEXT PRIMARY KEY,
        entries INTEGER NOT NULL,
        saved_at INTEGER NOT NULL
    );
    """,
    # 2 -> 3: the engine keys its cache by BLAKE3 instead of SHA-256 (2.5x faster on files of 16 KiB and
    # more): entries stored under the old keys would never be found again, so they go. (RENAME COLUMN needs
    # SQLite 3.25, from 2018; every system the wheel installs on has a newer one.)
    """
    DELETE FROM content_cache;
    DELETE FROM content_cache_rulesets;
    ALTER TABLE content_cache RENAME COLUMN sha256 TO content_key;
    """,
    # 3 -> 4: a file not downloaded keeps the digest the index listed (only those bytes settle it), and a scan
    # tells whether its error is all about such files. Earlier scans keep 0: their errors name no stored row.
    """
    ALTER TABLE distributions ADD COLUMN listed_sha256 TEXT;
    ALTER TABLE scans ADD COLUMN error_per_file INTEGER NOT NULL DEFAULT 0;
    """,
    # 4 -> 5: a scan keeps the version that made it: `diff` takes a stored scan for a release only from this
    # version (another may have missed what this one finds). Earlier scans keep NULL: never taken.
    """
    ALTER TABLE scans ADD COLUMN engine_version TEXT;
    """,
)
"""``MIGRATIONS[i]`` takes a store from schema version ``i`` to ``i + 1``; append, never edit."""


class StoreError(Exception):
    """The store cannot be opened or used (newer schema, not a database, unwritable)."""


def is_default_location(path: Path, env: dict[str, str] | None = None) -> bool:
    """Whether ``path`` is the store's place under ``$XDG_DATA_HOME`` (whose directories may be created),
    rather than one a user named (``--store``, ``$DRAGONFLY_STORE``)."""
    env = dict(os.environ) if env is None else env
    return path == default_store_path({k: v for k, v in env.items() if k != STORE_ENV})


def default_store_path(env: dict[str, str] | None = None) -> Path:
    """``$DRAGONFLY_STORE``, else ``$XDG_DATA_HOME/dragonfly-hybrid/store.db`` (``~/.local/share``)."""
    env = dict(os.environ) if env is None else env
    if env.get(STORE_ENV, "").strip():
        return Path(env[STORE_ENV].strip()).expanduser()
    data_home = env.get("XDG_DATA_HOME", "").strip() or str(Path.home() / ".local" / "share")
    return Path(data_home) / "dragonfly-hybrid" / "store.db"


def _stored_url(url: str | None) -> str | None:
    """A distribution's URL as stored: never with the credentials an index URL may carry (relative file
    links joined to ``https://user:token@host/simple/`` carry them), as stores and reports get shared."""
    return None if url is None else redact_url(url)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def _patterns(match: RuleMatch, is_text: bool) -> list[dict[str, Any]]:
    """A match's patterns; ``data`` (the matched bytes) as text, undecodable bytes written ``\\xNN``;
    where it is (line, column, snippet) only in a text file: a binary one has no lines."""
    return [
        {
            "identifier": p.identifier,
            "offset": p.offset,
            "length": p.length,
            "data": _text(p.data),
            "line": p.line if is_text else None,
            "column": p.column if is_text else None,
            "snippet": snippet_parts(p) if is_text else None,
        }
        for p in match.patterns
    ]


@dataclass(frozen=True)
class Finding:
    """One rule that matched one file of a stored scan."""

    distribution: str
    path: str
    rule: str
    weight: int
    patterns: list[dict[str, Any]]

    @property
    def label(self) -> str:
        """``<distribution>/<member>`` (just the distribution for a plain file), as in scan reports."""
        if not self.path or self.path == self.distribution:
            return self.distribution
        return f"{self.distribution}/{self.path}"


@dataclass(frozen=True)
class StoredScan:
    """The summary of one scan of a release, as stored."""

    id: int
    name: str
    version: str
    source: str
    scanned_at: str
    verdict: str
    score: int
    rules_matched: list[str]
    inspector_url: str | None
    error: str | None
    rules_hash: str | None
    download_seconds: float | None
    scan_seconds: float | None

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "scanned_at": self.scanned_at,
            "verdict": self.verdict,
            "score": self.score,
            "rules_matched": self.rules_matched,
            "inspector_url": self.inspector_url,
            "error": self.error,
            "rules_hash": self.rules_hash,
            "download_seconds": self.download_seconds,
            "scan_seconds": self.scan_seconds,
        }


@dataclass(frozen=True)
class ListedScan:
    """One scan as ``report`` lists it (no argument, ``--all``, their JSON and the ``--html`` list page):
    the scan's own fields (a scan may have read only some files of its release), and the verdict and score
    of its release as a whole, as :meth:`Store.release` combines them now (every file stored for it, each
    from its newest scan, with the findings of earlier rule sets and the errors that still count): a clean
    partial scan of a flagged release is listed ``clean`` with ``release_verdict`` ``findings``."""

    scan: StoredScan
    release_verdict: str
    release_score: int

    def json(self) -> dict[str, Any]:
        """The scan's own fields (:meth:`StoredScan.json`, ``verdict`` and ``score`` those of the scan), with
        ``release_verdict`` and ``release_score``."""
        return {
            **self.scan.json(),
            "release_verdict": self.release_verdict,
            "release_score": self.release_score,
        }


NOT_DOWNLOADED_SHA256 = ""
"""The ``sha256`` of a distribution stored without its bytes (:class:`NotDownloaded`)."""


def _digest(sha256: str | None) -> str | None:
    """A sha256 as the store compares them: lower case; None (not known) stays None."""
    return None if sha256 is None else sha256.lower()


@dataclass(frozen=True)
class StoredFiles:
    """The distribution files stored for a release. Names alone do not tell files apart: a lock file's scan
    may store ``pkg-1.0-py3-none-any.whl`` fetched from another host, other bytes."""

    digests: dict[str, frozenset[str]]
    """File name -> the sha256 of every copy stored with its bytes (read and scanned)."""
    not_downloaded: dict[str, frozenset[str | None]]
    """File name -> the sha256 listed for every copy stored without its bytes (None: none was listed)."""
    read_from: dict[str, frozenset[str | None]] = field(default_factory=dict)
    """File name -> the URL (as stored: redacted; None: not known) of every copy read."""
    not_downloaded_from: dict[str, frozenset[str | None]] = field(default_factory=dict)
    """File name -> the URL of every copy stored without its bytes and without a listed digest."""

    def has(self, filename: str, sha256: str | None, url: str | None = None) -> bool:
        """Whether ``filename`` with the bytes whose digest is ``sha256`` was read and scanned.

        ``sha256`` None (the index lists none): nothing tells the bytes apart but where they came from: a
        copy of that name read from ``url`` (any copy, when ``url`` or the stored copy's URL is not known;
        another host's file of that name is another file). A copy stored without its bytes
        (:class:`NotDownloaded`) never counts: it was not scanned."""
        stored = self.digests.get(filename)
        if stored is None:
            return False
        if sha256 is not None:
            return sha256.lower() in stored
        return _same_url(url, self.read_from.get(filename, frozenset({None})))

    def has_not_downloaded(self, filename: str, sha256: str | None, url: str | None = None) -> bool:
        """Whether ``filename``, listed with ``sha256`` (None: with none; then from ``url``, as for
        :meth:`has`), is stored without its bytes."""
        if _digest(sha256) not in self.not_downloaded.get(filename, frozenset()):
            return False
        return sha256 is not None or _same_url(url, self.not_downloaded_from.get(filename, frozenset({None})))


def _same_url(url: str | None, stored: frozenset[str | None]) -> bool:
    """Whether ``url`` (as given: redacted here) is among ``stored`` URLs, an unknown one matching any."""
    return url is None or None in stored or _stored_url(url) in stored


@dataclass(frozen=True)
class StoredRelease:
    """A release as the store holds it: every distribution file stored for it (a file name and the sha256
    of its bytes), each from the newest scan that stored it, and the verdict, score and rules combined
    over them as a scan combines a release's distributions (:meth:`TargetResult.from_distributions`).

    No one scan row stands for a release: a scan records only the files it read (``watch`` stores a file
    uploaded later as a scan of that file alone; a hash-mode ``scan -R`` or a lock file, the files it
    allows). Other bytes under a known name (another host's file) are another file: both are shown.

    Rule sets. The newest scan of a file gives its verdict, but a finding does not vanish because the rules
    changed, or because a scan did not read all of the file: for each rule set that scanned the same file,
    its newest scan of it that read it whole (no member over a limit; ``complete``), and any of its scans
    of it since, are shown too (``findings_only``; ``earlier_rule_set`` when under another rule set than
    the newest scan) when they reported a rule no newer scan shown did. Only a later scan under that same
    rule set, reading the file whole and not reporting the rule, takes it away. So a rule set that lacks a
    rule (a narrower ``-r``), or a scan with lower limits, never turns a flagged release ``clean``.

    Files not fetched. A file a scan could not fetch (a failed download, bytes without the digest listed,
    ``watch --max-size``) is stored as a row without bytes (:class:`NotDownloaded`) and keeps the release
    incomplete until a scan reads that very file: the same name and, when one was listed, bytes with the
    listed digest (those bytes were scanned, whenever); when none was listed (a lock file giving only a
    sha512, an index listing no digest), bytes of that name read by a later scan from the same URL (as
    stored, redacted). Another host's bytes under that name (a lock file's) do not settle it.

    Errors. A scan's error counts (the release is never ``clean``) while something it names is unsettled:

    * an error all about files (``error_per_file``: files not fetched, distributions left incomplete)
      counts while one of those rows of that scan is still shown;
    * any other error (the index could not be read; no file had an allowed hash; any error of a scan
      stored before schema version 4, which stored no row for the files it missed) counts until a *later
      scan of the release without an error settles it*: one that read every file the erroring scan read
      (the same name and bytes) and at least one file name it did not read. A later partial scan (a
      hash-mode ``scan -R`` or a lock file allowing the same files or fewer; ``watch`` storing a file
      uploaded later alone) never settles such an error; a full rescan that downloads everything does.
    """

    name: str
    version: str
    scans: list[StoredScan]
    """The scans the release is shown from, newest first: the release's newest scan (always), the scans
    the files come from, and every scan whose error still counts (see above), even one that stored no
    file."""
    distributions: list[dict[str, Any]]
    """As :meth:`Store.details` gives them, in stored order, each with the ``scan_id`` it comes from,
    ``findings_only`` (true for an earlier scan of a file, shown for its findings only: see above) and
    ``earlier_rule_set`` (true when that scan was under another rule set than the file's newest)."""
    verdict: str
    score: int
    rules_matched: list[str]
    error: str | None
    """The errors of those scans, ``"; "``-joined, each once; one from a scan other than the newest ends
    with that scan's id and date: ``could not download x.whl: HTTP 404 (scan 3, 2026-01-31 12:00:00 UTC)``."""
    inspector_url: str | None

    @property
    def newest(self) -> StoredScan:
        return self.scans[0]

    def json(self) -> dict[str, Any]:
        """The newest scan's fields, with ``verdict``, ``score``, ``rules_matched``, ``error`` and
        ``inspector_url`` those of the whole release; ``scans``: every scan the files come from (each
        distribution's ``scan_id`` names its own). With one scan, its own fields, as before."""
        return {
            **self.newest.json(),
            "verdict": self.verdict,
            "score": self.score,
            "rules_matched": self.rules_matched,
            "inspector_url": self.inspector_url,
            "error": self.error,
            "scans": [scan.json() for scan in self.scans],
            "distributions": self.distributions,
        }


def _combined_release(
    name: str, version: str, scans: list[StoredScan], distributions: list[dict[str, Any]]
) -> StoredRelease:
    """As ``TargetResult.from_distributions`` combines distributions: rules the union, score the maximum,
    ``findings`` when a rule matched, else ``incomplete`` when anything (a file, or a scan: its error)
    was left unscanned, else ``clean``. A file's earlier scan shown for its findings (``findings_only``)
    adds them, never its completeness: the file's newest scan tells what was scanned."""
    rules: dict[str, None] = {}
    for dist in distributions:
        rules.update(dict.fromkeys(dist["rules_matched"]))
    seen: set[str] = set()
    errors: list[str] = []
    for scan in scans:  # newest first: a repeated error is dated by its newest scan
        if scan.error and scan.error not in seen:
            seen.add(scan.error)
            errors.append(scan.error if scan is scans[0] else f"{scan.error} ({_scan_label(scan)})")
    complete = not errors and all(dist["complete"] for dist in distributions if not dist["findings_only"])
    verdict = "findings" if rules else "clean" if complete else "incomplete"
    top = max((d for d in distributions if d["rules_matched"]), key=lambda d: d["score"], default=None)
    top_scan = next((scan for scan in scans if top is not None and scan.id == top["scan_id"]), None)
    return StoredRelease(
        name=name,
        version=version,
        scans=scans,
        distributions=distributions,
        verdict=verdict,
        score=max((dist["score"] for dist in distributions), default=0),
        rules_matched=list(rules),
        error="; ".join(errors) or None,
        inspector_url=top_scan.inspector_url if top_scan is not None else None,
    )


def _verdict_and_score(scans: list[StoredScan], shown: Sequence[_Shown]) -> tuple[str, int]:
    """The verdict and score of a release shown with these rows and scans (:func:`_combine`), by
    :func:`_combined_release` itself, from what it reads of each row (not its files, matches and issues:
    :meth:`Store.release` reads those too)."""
    distributions = [
        {
            "rules_matched": sorted(item.row.rules),
            "complete": item.row.complete,
            "findings_only": item.findings_only,
            "score": item.row.score,
            "scan_id": item.row.scan_id,
        }
        for item in shown
    ]
    combined = _combined_release(scans[0].name, scans[0].version, scans, distributions)
    return combined.verdict, combined.score


def _chunks(values: Sequence[Any], size: int = 500) -> Iterator[Sequence[Any]]:
    """``values`` ``size`` at a time: an ``IN (...)`` list stays under SQLite's variable limit (999 before
    SQLite 3.32)."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _scan_label(scan: StoredScan) -> str:
    return f"scan {scan.id}, {scan.scanned_at[:19].replace('T', ' ')} UTC"


class _StoredRow(NamedTuple):
    """What the combined view of a release needs of one stored distribution row (a tuple: ``rule_counts``
    makes one per row of every release scanned more than once)."""

    id: int
    scan_id: int
    ruleset_id: int | None
    filename: str
    sha256: str
    """Lower case; :data:`NOT_DOWNLOADED_SHA256` for a file stored without its bytes."""
    listed_sha256: str | None
    complete: bool
    rules: frozenset[str]
    url: str | None = None
    """Where the file was (to be) fetched from, as stored (redacted)."""
    score: int = 0
    """The distribution's score (what a release's combined score is the maximum of)."""


_STORED_ROW_COLUMNS = """
    d.id, d.scan_id, s.ruleset_id, d.filename, d.sha256, d.listed_sha256, d.complete, d.rules_matched, d.url,
    d.score
"""
"""What :func:`_stored_row` reads of a distribution row (``d``) and its scan (``s``)."""


def _stored_row(row: Sequence[Any], rule_sets: dict[str, frozenset[str]]) -> _StoredRow:
    """A row selected as :data:`_STORED_ROW_COLUMNS` (more columns may follow); ``rule_sets`` caches the
    parsed ``rules_matched`` lists (a store has few distinct ones)."""
    dist_id, scan_id, ruleset_id, filename, digest, listed, complete, rules_matched, url, score = row[:10]
    rules = rule_sets.get(rules_matched)
    if rules is None:
        rules = rule_sets[rules_matched] = frozenset(json.loads(rules_matched))
    return _StoredRow(
        dist_id, scan_id, ruleset_id, filename, str(digest).lower(), _digest(listed), bool(complete), rules,
        url, score,
    )  # fmt: skip


class _Shown(NamedTuple):
    """A row a release is shown with, and why."""

    row: _StoredRow
    findings_only: bool = False
    """Shown for its findings only: an earlier scan of the file whose rules a later one did not refute."""
    earlier_rule_set: bool = False
    """A scan under another rule set than the file's newest scan."""


def _shown_of_file(copies: Sequence[_StoredRow]) -> list[_Shown]:
    """The rows of one file read (a name and the sha256 of its bytes) that a release is shown with: its
    newest scan's rows, and, per rule set, the rows since that rule set's newest *complete* scan of the
    file that reported a rule not reported by a newer row shown (:class:`StoredRelease`). A scan that did
    not read the file whole (a member over a limit) refutes nothing it did not report."""
    ordered = sorted(copies, key=lambda row: -row.scan_id)  # newest scan first
    last, newest_set = ordered[0].scan_id, ordered[0].ruleset_id
    shown: list[_Shown] = []
    reported: set[str] = set()
    whole = True
    at = 0
    while at < len(ordered) and ordered[at].scan_id == last:
        row = ordered[at]
        shown.append(_Shown(row))
        reported.update(row.rules)
        whole = whole and row.complete
        at += 1
    # Rule sets whose newest whole read of the file is behind: what they did not report is refuted.
    refuted: set[int | None] = {newest_set} if whole else set()
    seen: dict[int | None, set[str]] = {}
    while at < len(ordered):
        scan_id, ruleset_id = ordered[at].scan_id, ordered[at].ruleset_id
        end = at + 1
        while end < len(ordered) and ordered[end].scan_id == scan_id:  # one name listed twice in a scan
            end += 1
        if ruleset_id not in refuted:
            known = seen.setdefault(ruleset_id, set(reported))
            for row in ordered[at:end]:
                if row.rules and not row.rules <= known:
                    shown.append(_Shown(row, True, ruleset_id != newest_set))
            for row in ordered[at:end]:
                known.update(row.rules)
            if all(row.complete for row in ordered[at:end]):
                refuted.add(ruleset_id)
        at = end
    return shown


def _shown_rows(rows: Sequence[_StoredRow]) -> list[_Shown]:
    """The rows a release is shown with (:class:`StoredRelease`), in stored order. Linear in the rows (a
    sort per file and a dictionary look-up per row)."""
    read: dict[tuple[str, str], list[_StoredRow]] = {}
    not_read: dict[tuple[str, str | None, str | None], list[_StoredRow]] = {}
    for row in rows:
        if row.sha256 == NOT_DOWNLOADED_SHA256:
            # No digest listed: the URL tells the file apart (another host's file of that name is another).
            url = row.url if row.listed_sha256 is None else None
            not_read.setdefault((row.filename, row.listed_sha256, url), []).append(row)
        else:
            read.setdefault((row.filename, row.sha256), []).append(row)
    shown: list[_Shown] = []
    for copies in read.values():
        if len(copies) == 1:  # read once: shown, whatever it found
            shown.append(_Shown(copies[0]))
        else:
            shown.extend(_shown_of_file(copies))
    last_read_of_name: dict[str, int] = {}
    last_read_from: dict[tuple[str, str], int] = {}
    for copies in read.values() if not_read else ():
        for row in copies:
            last_read_of_name[row.filename] = max(row.scan_id, last_read_of_name.get(row.filename, 0))
            if row.url is not None:
                key = (row.filename, row.url)
                last_read_from[key] = max(row.scan_id, last_read_from.get(key, 0))
    for (filename, listed, url), copies in not_read.items():
        last = max(row.scan_id for row in copies)
        if listed is not None:  # those bytes read, whenever
            settled = (filename, listed) in read
        elif url is not None:  # no digest to tell the bytes by: that name read later from that URL
            settled = last_read_from.get((filename, url), 0) > last
        else:  # nor a URL (not known): that name read later
            settled = last_read_of_name.get(filename, 0) > last
        if not settled:
            shown.extend(_Shown(row) for row in copies if row.scan_id == last)
    return sorted(shown, key=lambda item: item.row.id)


def _combine(
    scan_rows: Sequence[Sequence[Any]],
    stored: Sequence[_StoredRow],
    parsed: dict[str, list[str]] | None = None,
) -> tuple[list[StoredScan], list[_Shown]]:
    """The rule of :class:`StoredRelease`, for one release (every spelling of its version): which of its
    rows it is shown with (:func:`_shown_rows`) and which of its scans it is shown from: its newest scan,
    the scans those rows come from and every scan whose error still counts.

    ``scan_rows``: every scan of the release, newest first, each ``_SCAN_COLUMNS`` then
    ``s.error_per_file``; ``stored``: every distribution row of those scans, in stored order. The one
    place that decides it: :meth:`Store.release` and :meth:`Store.listed_scans` (the release's verdict of
    each scan listed) both call it, then :func:`_combined_release` for the verdict. ``parsed``: as for
    :func:`_scan_of`."""
    shown = _shown_rows(stored)
    files: dict[int, set[tuple[str, str]]] = {}
    for row in stored:
        files.setdefault(row.scan_id, set()).add((row.filename, row.sha256))
    unscanned_from = {item.row.scan_id for item in shown if not item.findings_only and not item.row.complete}
    had_error = [(row[0], bool(row[9])) for row in scan_rows]
    per_file = {row[0]: bool(row[-1]) for row in scan_rows}  # s.error_per_file, after the scan columns
    whole_release_errors = [scan_id for scan_id, error in had_error if error and not per_file[scan_id]]
    settled = _settled_errors(had_error, files, whole_release_errors)
    erroring = {
        scan_id
        for scan_id, error in had_error
        if error and (scan_id in unscanned_from if per_file[scan_id] else scan_id not in settled)
    }
    from_scans = {item.row.scan_id for item in shown} | {scan_rows[0][0]} | erroring
    return [_scan_of(row, parsed) for row in scan_rows if row[0] in from_scans], shown


def _settled_errors(
    scans: Sequence[tuple[int, bool]], files: Mapping[int, set[tuple[str, str]]], erroring: Sequence[int]
) -> set[int]:
    """Which of the ``erroring`` scans (errors not all about files) no longer count (:class:`StoredRelease`):
    a later scan without an error (``scans``: each scan's id and whether it had an error; ``files``: each
    scan's file names and sha256) read every file it read, the same bytes, and a file name it did not read.

    Scans that read the same files are compared once (the newest error-free one of them stands for them),
    and only against error-free scans that read one of the erring scan's files: a release with thousands
    of scans of the same files costs one comparison, not a million."""

    def read(scan_id: int) -> frozenset[tuple[str, str]]:
        return frozenset(file for file in files.get(scan_id, ()) if file[1] != NOT_DOWNLOADED_SHA256)

    newest_reading: dict[frozenset[tuple[str, str]], int] = {}  # error-free scans: files read -> newest
    for scan_id, had_error in scans:
        if not had_error:
            key = read(scan_id)
            newest_reading[key] = max(scan_id, newest_reading.get(key, 0))
    containing: dict[tuple[str, str], list[frozenset[tuple[str, str]]]] = {}
    for key in newest_reading:
        for file in key:
            containing.setdefault(file, []).append(key)
    any_read = max((scan_id for key, scan_id in newest_reading.items() if key), default=0)
    settled_before: dict[frozenset[tuple[str, str]], int] = {}  # files read -> settles scans before this id
    settled = set()
    for scan_id in erroring:
        before = read(scan_id)
        if before not in settled_before:
            if not before:
                settled_before[before] = any_read
            else:
                names = {filename for filename, _ in before}
                rarest = min(before, key=lambda file: len(containing.get(file, ())))
                settled_before[before] = max(
                    (
                        newest_reading[later]
                        for later in containing.get(rarest, ())
                        if before <= later and any(filename not in names for filename, _ in later)
                    ),
                    default=0,
                )
        if settled_before[before] > scan_id:
            settled.add(scan_id)
    return settled


_NO_ROOM_FOR_SHM = ("SQLITE_IOERR_SHMSIZE", "SQLITE_IOERR_SHMOPEN")
"""What SQLite says when it cannot make or size a store's -shm file (a full disk)."""


def _wal_has_frames(real: Path) -> bool:
    """Whether a ``-wal`` file beside the store (its real path) may hold commits: one that exists and is
    not empty (a new or truncated one holds none)."""
    try:
        return Path(f"{real}-wal").stat().st_size > 0
    except FileNotFoundError:
        return False


def _file_state(path: Path) -> tuple[int, int, int, int]:
    """What changes when a file is written: its inode, size, modification time and change time (which,
    unlike the modification time, a writer cannot set back: ``cp -p`` over it in place)."""
    status = path.stat()
    return status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns


def version_key(version: str) -> object:
    """What tells stored versions apart as one release: PEP 440 equality (``1.0`` is ``1.0.0``); a version
    PEP 440 cannot read is itself."""
    from packaging.version import InvalidVersion, Version

    try:
        return Version(version)
    except (InvalidVersion, ValueError):  # ValueError: a number past Python's 4300 digits
        return version


_SCAN_COLUMNS = """
    s.id, r.name, r.version, s.source, s.scanned_at, s.verdict, s.score, s.rules_matched, s.inspector_url,
    s.error, rs.hash, s.download_seconds, s.scan_seconds
"""
_SCAN_FROM = """
    FROM scans s JOIN releases r ON r.id = s.release_id LEFT JOIN rulesets rs ON rs.id = s.ruleset_id
"""


def _scan_of(row: Sequence[Any], parsed: dict[str, list[str]] | None = None) -> StoredScan:
    """A scan selected as ``_SCAN_COLUMNS``; ``parsed`` caches its ``rules_matched`` JSON lists (each scan
    gets its own copy) when many scans are read."""
    if parsed is None:
        rules_matched = json.loads(row[7])
    else:
        known = parsed.get(row[7])
        if known is None:
            known = parsed[row[7]] = json.loads(row[7])
        rules_matched = list(known)
    return StoredScan(
        id=row[0],
        name=row[1],
        version=row[2],
        source=row[3],
        scanned_at=row[4],
        verdict=row[5],
        score=row[6],
        rules_matched=rules_matched,
        inspector_url=row[8],
        error=row[9],
        rules_hash=row[10],
        download_seconds=row[11],
        scan_seconds=row[12],
    )


class Store:
    """A connection to the store. Thread-safe (one lock per connection); use as a context manager.

    ``readonly=True`` opens an existing store for queries only (``report``); it never creates or migrates.
    A new store is created in an existing directory only, unless ``create_parents`` (the default location
    under ``$XDG_DATA_HOME``): a mistyped path is an error, not a tree of new directories.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, readonly: bool = False, create_parents: bool = False
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._unlocked: tuple[int, int, int, int] | None = None
        """The main file's state when it is read without locks (:meth:`_read_without_locks`)."""
        try:
            if readonly:
                if not self.path.is_file():
                    raise StoreError(f"no store at {self.path}")
                uri = f"{self.path.resolve().as_uri()}?mode=ro"
                self._db = sqlite3.connect(
                    uri,
                    uri=True,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                    isolation_level=None,
                    check_same_thread=False,
                )
            else:
                if create_parents:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                elif not self.path.parent.is_dir():
                    raise StoreError(
                        f"cannot create the store {self.path}: directory {self.path.parent} does not exist"
                    )
                self._db = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
                )
            self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if not readonly:
                mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"{self.path}: cannot switch to WAL mode (journal mode {mode})")
                self._db.execute("PRAGMA synchronous = NORMAL")
                self._db.execute("PRAGMA foreign_keys = ON")
                self._migrate()
            else:
                try:
                    version = self.schema_version()
                except sqlite3.OperationalError as err:
                    if not self._read_without_locks(uri, err):
                        raise
                    version = self.schema_version()
                self._check_version(version)
        except sqlite3.DatabaseError as err:
            if getattr(err, "sqlite_errorname", "") in _NO_ROOM_FOR_SHM:
                raise StoreError(
                    f"{self.path}: {err} (no room for the shared-memory file, -shm, that SQLite reads it "
                    "through: a full disk?)"
                ) from err
            raise StoreError(f"{self.path}: {err}") from err

    def _read_without_locks(self, uri: str, error: sqlite3.OperationalError) -> bool:
        """Read a store whose directory this user cannot write (a read-only mount; another user's store,
        kept where only its user can write) or whose disk is full: SQLite reads a WAL store through a
        shared-memory file (``-shm``) that it creates beside it, and fails ("attempt to write a readonly
        database", or "disk I/O error" when it has no room to size it) when it cannot. With no ``-wal``
        file beside the store (or an empty one: the failed attempt may have created it), no writer has
        committed anything outside the main file: that file is read as it is (SQLite's ``immutable``),
        without locks, and :meth:`snapshot` fails if a writer changed it meanwhile. False: not such a store.

        The ``-wal`` file and the directory are those of the file the path leads to, where SQLite keeps
        them (a store named through a symbolic link has them beside its target); a file with other names
        (hard links) may have a ``-wal`` file beside any of them, so it is never read without locks."""
        real = self.path.resolve()
        no_room = getattr(error, "sqlite_errorname", "") in _NO_ROOM_FOR_SHM
        if (
            _wal_has_frames(real)
            or (os.access(real.parent, os.W_OK) and not no_room)
            or real.stat().st_nlink != 1
        ):
            return False
        self._db.close()
        self._db = sqlite3.connect(
            f"{uri}&immutable=1", uri=True, isolation_level=None, check_same_thread=False
        )
        self._unlocked = _file_state(self.path)
        return True

    def check_unchanged(self) -> None:
        """After a read without locks: fail if the main file changed meanwhile (a writer checkpointed into
        it), as what was read may mix two states of the store. :meth:`snapshot` checks as it ends; a
        reader checks before it shows what it read (nothing is written from a read that fails)."""
        if self._unlocked is None:
            return
        try:
            now = _file_state(self.path)
        except OSError as err:  # removed (or its directory made unreadable) meanwhile
            raise StoreError(f"it cannot be found again after it was read: {err.strerror or err}") from None
        if now != self._unlocked:
            self._unlocked = now  # the next read starts from this state
            raise StoreError(
                "it changed while it was read without locks (this user cannot write its directory, where "
                "SQLite shares them): run the command again"
            )

    # -- lifecycle -----------------------------------------------------------------------------------

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any exception)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every query made inside reads one state of the store (one read transaction): a scan another
        process commits meanwhile is seen whole or not at all, never its files without its scan row.
        Readers still never block the writer (WAL). Inside a transaction already, nothing more to do."""
        with self._lock:
            if self._db.in_transaction:
                yield
                return
            self._db.execute("BEGIN")
            try:
                yield
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            if self._db.in_transaction:
                self._db.execute("COMMIT")  # nothing was written: this ends the read
            self.check_unchanged()

    def schema_version(self) -> int:
        with self._lock:
            exists = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if not exists:
                return 0
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
            return int(row[0]) if row else 0

    def _check_version(self, version: int) -> None:
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this dragonfly-hybrid knows "
                f"({len(MIGRATIONS)}); upgrade dragonfly-hybrid"
            )
        if self.readonly and version < len(MIGRATIONS):
            raise StoreError(
                f"{self.path} has schema version {version} (this dragonfly-hybrid writes {len(MIGRATIONS)}); "
                "it is migrated when it is next written to: `dragonfly-hybrid scan --store PATH ...` or "
                "`watch --store PATH`"
            )

    def _migrate(self) -> None:
        if self.schema_version() == len(MIGRATIONS):
            return  # nothing to write: a store on a full disk still opens (`diff` reads it)
        with self.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            version = self.schema_version()
            self._check_version(version)
            for step in MIGRATIONS[version:]:
                for statement in step.split(";"):
                    if statement.strip():
                        db.execute(statement)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (len(MIGRATIONS),))

    # -- writing ---------------------------------------------------------------------------------------

    def _ruleset_id(self, db: sqlite3.Connection, rules_hash: str, count: int | None) -> int:
        db.execute(
            "INSERT INTO rulesets (hash, count, first_seen) VALUES (?, ?, ?) ON CONFLICT (hash) DO NOTHING",
            (rules_hash, count, utc_now()),
        )
        if count is not None:
            db.execute("UPDATE rulesets SET count = ? WHERE hash = ? AND count IS NULL", (count, rules_hash))
        return int(db.execute("SELECT id FROM rulesets WHERE hash = ?", (rules_hash,)).fetchone()[0])

    def _release_id(self, db: sqlite3.Connection, name: str, version: str) -> int:
        db.execute(
            "INSERT INTO releases (name, normalized, version) VALUES (?, ?, ?) "
            "ON CONFLICT (normalized, version) DO NOTHING",
            (name, normalize_name(name), version),
        )
        row = db.execute(
            "SELECT id FROM releases WHERE normalized = ? AND version = ?", (normalize_name(name), version)
        ).fetchone()
        return int(row[0])

    def record(
        self,
        result: TargetResult,
        *,
        rules_hash: str,
        rules_count: int | None = None,
        source: str = "scan",
        download_seconds: float | None = None,
        scan_seconds: float | None = None,
        scanned_at: str | None = None,
    ) -> int:
        """Store one scanned release (every distribution, matching file, match and issue, and a row for
        each file it did not fetch: ``result.not_downloaded``) in one transaction; returns the scan id.
        ``result.version`` must be set (a release, not a path)."""
        if result.version is None:
            raise ValueError(f"{result.target}: only releases (name==version) are stored")
        with self.transaction() as db:
            scan_id = self._insert(db, result, rules_hash, rules_count, source, download_seconds,
                                   scan_seconds, scanned_at or utc_now())  # fmt: skip
        return scan_id

    def _insert(
        self,
        db: sqlite3.Connection,
        result: TargetResult,
        rules_hash: str,
        rules_count: int | None,
        source: str,
        download_seconds: float | None,
        scan_seconds: float | None,
        scanned_at: str,
    ) -> int:
        assert result.version is not None
        release_id = self._release_id(db, result.name, result.version)
        ruleset_id = self._ruleset_id(db, rules_hash, rules_count)
        cursor = db.execute(
            "INSERT INTO scans (release_id, ruleset_id, source, scanned_at, verdict, score, rules_matched, "
            "inspector_url, error, download_seconds, scan_seconds, error_per_file, engine_version) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                release_id, ruleset_id, source, scanned_at, result.verdict, result.score,
                _json(list(result.rules_matched)), result.inspector_url, result.error,
                download_seconds, scan_seconds, int(result.error_per_file), __version__,
            ),
        )  # fmt: skip
        scan_id = int(cursor.lastrowid or 0)
        for dist in result.distributions:
            self._insert_distribution(db, scan_id, dist)
        for skipped in result.not_downloaded:
            self._insert_not_downloaded(db, scan_id, skipped)
        return scan_id

    def _insert_not_downloaded(self, db: sqlite3.Connection, scan_id: int, file: NotDownloaded) -> None:
        dist_id = db.execute(
            "INSERT INTO distributions (scan_id, filename, url, format, size, sha256, files_scanned, "
            "bytes_scanned, score, rules_matched, top_file, verdict, complete, listed_sha256) "
            "VALUES (?, ?, ?, '-', ?, '', 0, 0, 0, '[]', NULL, 'incomplete', 0, ?)",
            (scan_id, file.filename, _stored_url(file.url), file.size, _digest(file.sha256)),
        ).lastrowid
        db.execute(
            "INSERT INTO issues (distribution_id, path, kind, message, unscanned) VALUES (?, '', ?, ?, 1)",
            (dist_id, file.kind, file.message),
        )

    def _insert_distribution(self, db: sqlite3.Connection, scan_id: int, dist: DistributionResult) -> None:
        cursor = db.execute(
            "INSERT INTO distributions (scan_id, filename, url, format, size, sha256, files_scanned, "
            "bytes_scanned, score, rules_matched, top_file, verdict, complete) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                scan_id, dist.name, _stored_url(dist.url), dist.format, dist.size, dist.sha256,
                dist.files_scanned, dist.bytes_scanned, dist.score, _json(list(dist.rules_matched)),
                dist.top_file, dist.verdict, int(dist.complete),
            ),
        )  # fmt: skip
        dist_id = cursor.lastrowid
        for file in dist.files:
            file_id = db.execute(
                "INSERT INTO files (distribution_id, path, size, sha256, score) VALUES (?, ?, ?, ?, ?)",
                (dist_id, file.path, file.size, file.sha256, file.score),
            ).lastrowid
            db.executemany(
                "INSERT INTO matches (file_id, rule, namespace, weight, tags, metadata, patterns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        file_id, m.identifier, m.namespace, m.weight, _json(list(m.tags)),
                        _json({k: meta_value(v) for k, v in m.metadata.items()}),
                        _json(_patterns(m, file.is_text)),
                    )
                    for m in file.matches
                ],
            )  # fmt: skip
        db.executemany(
            "INSERT INTO issues (distribution_id, path, kind, message, unscanned) VALUES (?, ?, ?, ?, ?)",
            [(dist_id, i.path, i.kind, i.message, int(i.unscanned)) for i in dist.issues],
        )

    def record_unless_stored(
        self,
        result: TargetResult,
        files: Mapping[str, str | None] | Sequence[tuple[str, str | None, str | None]],
        *,
        rules_hash: str,
        rules_count: int | None = None,
        source: str = "watch",
        download_seconds: float | None = None,
        scan_seconds: float | None = None,
    ) -> int | None:
        """:meth:`record`, unless the result is stored already under ``rules_hash`` (then None): every one of
        ``files`` (the files the result was to download: file name, the sha256 the index lists, None when
        it lists none, and its URL, None when not known; a triple per file, as an index may list a name
        twice) read under that rule set, as :meth:`StoredFiles.has` tells, and every other file of
        ``result.not_downloaded`` (a file deliberately not downloaded) stored, read or without its bytes. A
        scan under another rule set does not count: it may lack the rules that flag these bytes. The check
        and the write are one transaction: a result is never stored twice."""
        if result.version is None:
            raise ValueError(f"{result.target}: only releases (name==version) are stored")
        wanted = (
            [(filename, sha256, None) for filename, sha256 in files.items()]
            if isinstance(files, Mapping)
            else list(files)
        )
        names = {filename for filename, _, _ in wanted}
        with self.transaction() as db:
            stored = self.stored_files(result.name, result.version, rules_hash)
            kept_out = [file for file in result.not_downloaded if file.filename not in names]
            if (
                (wanted or kept_out)
                and all(stored.has(filename, sha256, url) for filename, sha256, url in wanted)
                and all(
                    stored.has(file.filename, file.sha256, file.url)
                    or stored.has_not_downloaded(file.filename, file.sha256, file.url)
                    for file in kept_out
                )
            ):
                return None
            return self._insert(db, result, rules_hash, rules_count, source, download_seconds,
                                scan_seconds, utc_now())  # fmt: skip

    def record_many(
        self, results: Sequence[TargetResult], rules: Rules, *, source: str = "scan"
    ) -> list[int]:
        """Store every release among ``results`` (paths and directories are not), a transaction each."""
        return [
            self.record(r, rules_hash=rules.hash, rules_count=rules.count, source=source)
            for r in results
            if r.kind == "release" and r.version is not None
        ]

    def set_state(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO watch_state (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def set_states_once(self, values: dict[str, str], *, unless: Sequence[str]) -> bool:
        """Set every key of ``values`` in one transaction, unless each key of ``unless`` is set already (by
        another process, meanwhile): whether they were set. Two watchers starting on an empty store never
        mix their baselines (one's start time with the other's serial)."""
        with self.transaction() as db:
            marks = ",".join("?" * len(unless))
            found = db.execute(f"SELECT COUNT(*) FROM watch_state WHERE key IN ({marks})", tuple(unless))
            if unless and found.fetchone()[0] == len(set(unless)):
                return False
            db.executemany(
                "INSERT INTO watch_state (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                values.items(),
            )
        return True

    def raise_state(self, key: str, value: int) -> bool:
        """Set ``key`` to ``value`` unless it holds a number at least as large, in one transaction (two
        watchers never move a serial back): whether it was set."""
        with self.transaction() as db:
            row = db.execute("SELECT value FROM watch_state WHERE key = ?", (key,)).fetchone()
            if row is not None and row[0].isdigit() and int(row[0]) >= value:
                return False
            db.execute(
                "INSERT INTO watch_state (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, str(value)),
            )
        return True

    def get_state(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM watch_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # -- the content cache -------------------------------------------------------------------------

    def save_content_cache(
        self,
        rules_hash: str,
        entries: Sequence[tuple[bytes, bytes]],
        *,
        replace: bool = False,
        limit: int = CONTENT_CACHE_LIMIT,
        rule_sets: int = CONTENT_CACHE_RULE_SETS,
    ) -> int:
        """Keep ``(cache key, encoded matches)`` entries (``Scanner.cache_export``) of ``rules_hash``,
        then apply the bounds (module doc); one transaction. Returns how many entries were new.

        An entry already stored is left as it is (``INSERT OR IGNORE``), unless ``replace``: then it is
        overwritten (for a rule set whose stored entries the engine refused to load).
        """
        if not entries:
            return 0
        for key, _ in entries:
            if len(key) != 32:
                raise ValueError(f"a content-cache key is 32 bytes, not {len(key)}")
        with self.transaction() as db:
            # Each save's stamp is above every earlier one, whatever the clock does: eviction order holds.
            (last,) = db.execute("SELECT COALESCE(MAX(saved_at), 0) FROM content_cache_rulesets").fetchone()
            now = max(time.time_ns() // 1000, last + 1)
            rows = [(rules_hash, bytes(key), bytes(matches), now) for key, matches in entries]
            added = db.executemany(
                "INSERT OR IGNORE INTO content_cache (rules_hash, content_key, matches, saved_at) "
                "VALUES (?, ?, ?, ?)",
                rows,
            ).rowcount
            if replace:
                db.executemany(
                    "UPDATE content_cache SET matches = ?3, saved_at = ?4 "
                    "WHERE rules_hash = ?1 AND content_key = ?2 AND matches != ?3",
                    rows,
                )
            db.execute(
                "INSERT INTO content_cache_rulesets (rules_hash, entries, saved_at) VALUES (?, ?, ?) "
                "ON CONFLICT (rules_hash) DO UPDATE "
                "SET entries = entries + excluded.entries, saved_at = excluded.saved_at",
                (rules_hash, added, now),
            )
            self._evict_content_cache(db, rules_hash, limit, rule_sets)
        return max(added, 0)

    def _evict_content_cache(
        self, db: sqlite3.Connection, rules_hash: str, limit: int, rule_sets: int
    ) -> None:
        (entries,) = db.execute(
            "SELECT entries FROM content_cache_rulesets WHERE rules_hash = ?", (rules_hash,)
        ).fetchone()
        if entries > limit:
            gone = db.execute(
                "DELETE FROM content_cache WHERE rules_hash = ?1 AND content_key IN (SELECT content_key FROM "
                "content_cache WHERE rules_hash = ?1 ORDER BY saved_at, content_key LIMIT ?2)",
                (rules_hash, entries - limit),
            ).rowcount
            db.execute(
                "UPDATE content_cache_rulesets SET entries = entries - ? WHERE rules_hash = ?",
                (gone, rules_hash),
            )
        stale = db.execute(
            "SELECT rules_hash FROM content_cache_rulesets ORDER BY saved_at DESC, rules_hash "
            "LIMIT -1 OFFSET ?",
            (max(rule_sets, 1),),
        ).fetchall()
        for (old,) in stale:
            db.execute("DELETE FROM content_cache WHERE rules_hash = ?", (old,))
            db.execute("DELETE FROM content_cache_rulesets WHERE rules_hash = ?", (old,))

    def content_cache_pages(
        self, rules_hash: str, *, limit: int = CONTENT_CACHE_LIMIT, page: int = CONTENT_CACHE_PAGE
    ) -> Iterator[list[tuple[bytes, bytes]]]:
        """The content-cache entries stored for ``rules_hash`` (at most ``limit``), ``page`` at a time:
        each page is one query, so a load never holds more than a page of them in Python."""
        after = b""
        left = limit
        while left > 0:
            rows = self._query(
                "SELECT content_key, matches FROM content_cache WHERE rules_hash = ? AND content_key > ? "
                "ORDER BY content_key LIMIT ?",
                (rules_hash, after, min(page, left)),
            )
            if not rows:
                return
            yield [(bytes(key), bytes(matches)) for key, matches in rows]
            after = rows[-1][0]
            left -= len(rows)

    def content_cache_entries(self, rules_hash: str | None = None) -> int:
        """How many content-cache entries are stored (for ``rules_hash``, or for every rule set)."""
        if rules_hash is None:
            rows = self._query("SELECT COALESCE(SUM(entries), 0) FROM content_cache_rulesets")
        else:
            rows = self._query(
                "SELECT COALESCE(SUM(entries), 0) FROM content_cache_rulesets WHERE rules_hash = ?",
                (rules_hash,),
            )
        return int(rows[0][0])

    # -- reading ---------------------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def stored_files(self, name: str, version: str, rules_hash: str | None = None) -> StoredFiles:
        """The files of ``name==version`` already stored (by any scan, or by one with ``rules_hash``),
        each with the sha256 of its stored copies' bytes, or the one listed for a copy stored without."""
        sql = (
            "SELECT DISTINCT d.filename, d.sha256, d.listed_sha256, d.url FROM distributions d "
            "JOIN scans s ON s.id = d.scan_id "
            "JOIN releases r ON r.id = s.release_id LEFT JOIN rulesets rs ON rs.id = s.ruleset_id "
            "WHERE r.normalized = ? AND r.version = ?"
        )
        params: list[Any] = [normalize_name(name), version]
        if rules_hash is not None:
            sql += " AND rs.hash = ?"
            params.append(rules_hash)
        digests: dict[str, set[str]] = {}
        listed: dict[str, set[str | None]] = {}
        read_from: dict[str, set[str | None]] = {}
        not_read_from: dict[str, set[str | None]] = {}
        for filename, digest, listed_digest, url in self._query(sql, params):
            if digest == NOT_DOWNLOADED_SHA256:
                listed.setdefault(filename, set()).add(_digest(listed_digest))
                if listed_digest is None:
                    not_read_from.setdefault(filename, set()).add(url)
            else:
                digests.setdefault(filename, set()).add(str(digest).lower())
                read_from.setdefault(filename, set()).add(url)

        def frozen(found: dict[str, set[Any]]) -> dict[str, frozenset[Any]]:
            return {filename: frozenset(values) for filename, values in found.items()}

        return StoredFiles(frozen(digests), frozen(listed), frozen(read_from), frozen(not_read_from))

    def _release_ids(self, name: str, version: str) -> list[int]:
        """The stored releases that are ``name==version``: the name normalised (PEP 503), the version
        equal as PEP 440 compares (``1.0`` and ``1.0.0`` were stored apart, as each scan spelt it)."""
        wanted = version_key(version)
        rows = self._query("SELECT id, version FROM releases WHERE normalized = ?", (normalize_name(name),))
        return [int(release_id) for release_id, stored in rows if version_key(str(stored)) == wanted]

    def release(self, name: str, version: str) -> StoredRelease | None:
        """``name==version`` as the store holds it (:class:`StoredRelease`), every spelling of its version
        together, None when it has no scan."""
        with self.snapshot():
            return self._release(name, version)

    def _release(self, name: str, version: str) -> StoredRelease | None:
        ids = self._release_ids(name, version)
        if not ids:
            return None
        among = f"r.id IN ({', '.join('?' * len(ids))})"
        rows = self._query(
            f"SELECT {_SCAN_COLUMNS}, s.error_per_file {_SCAN_FROM} WHERE {among} ORDER BY s.id DESC", ids
        )
        if not rows:
            return None
        rule_sets: dict[str, frozenset[str]] = {}
        stored = [
            _stored_row(row, rule_sets)
            for row in self._query(
                f"SELECT {_STORED_ROW_COLUMNS} FROM distributions d JOIN scans s ON s.id = d.scan_id "
                f"JOIN releases r ON r.id = s.release_id WHERE {among} ORDER BY d.id",
                ids,
            )
        ]
        scans, shown = _combine(rows, stored)
        distributions = [
            {
                **dist,
                "scan_id": item.row.scan_id,
                "findings_only": item.findings_only,
                "earlier_rule_set": item.earlier_rule_set,
            }
            for item in shown
            for dist in self._distribution_details("id = ?", (item.row.id,))
        ]
        return _combined_release(scans[0].name, scans[0].version, scans, distributions)

    def latest_scan(self, name: str, version: str, rules_hash: str | None = None) -> StoredScan | None:
        """The newest scan of ``name==version`` (with ``rules_hash``, when given): the files that scan read,
        not necessarily the whole release (:meth:`release` shows that)."""
        sql = f"SELECT {_SCAN_COLUMNS} {_SCAN_FROM} WHERE r.normalized = ? AND r.version = ?"
        params: list[Any] = [normalize_name(name), version]
        if rules_hash is not None:
            sql += " AND rs.hash = ?"
            params.append(rules_hash)
        rows = self._query(sql + " ORDER BY s.id DESC LIMIT 1", params)
        return _scan_of(rows[0]) if rows else None

    def scan_of_files(
        self, name: str, version: str, rules_hash: str, files: Mapping[str, Collection[str | None]]
    ) -> StoredScan | None:
        """The newest scan of ``name==version`` with ``rules_hash`` whose distributions are exactly
        ``files`` (file name -> the SHA-256 of each copy listed under that name, one item per copy; None
        where it is not known, a file neither downloaded nor listed with a digest: no stored scan stands
        for it, as nothing tells which bytes it read), else None.

        A scan row records the files it scanned, not the release: ``watch`` stores a file added to a
        release later as a scan of that file alone, a hash-mode ``scan -R`` only the files its hashes
        allow, and another index may serve other bytes under the same name. Only a scan of these very
        files can stand for them, and only one that read all of them (no error, every file complete): a
        scan that matched a rule is ``findings`` even when it left a member over its limits unread, and
        it cannot tell what that member holds. And only one this version of the engine made: another may
        have missed what this one finds."""
        if not files or any(digest is None for digests in files.values() for digest in digests):
            return None
        wanted = {
            filename: {str(digest).lower() for digest in digests} for filename, digests in files.items()
        }
        rows = self._query(
            f"SELECT {_SCAN_COLUMNS} {_SCAN_FROM} WHERE r.normalized = ? AND r.version = ? AND rs.hash = ? "
            "AND s.engine_version = ? ORDER BY s.id DESC",
            (normalize_name(name), version, rules_hash, __version__),
        )
        for row in rows:
            scan = _scan_of(row)
            scanned: dict[str, set[str]] = {}
            read_whole = scan.error is None
            for filename, digest, complete in self._query(
                "SELECT filename, sha256, complete FROM distributions WHERE scan_id = ?", (row[0],)
            ):
                scanned.setdefault(filename, set()).add(str(digest).lower())
                read_whole = read_whole and bool(complete)
            if (
                read_whole
                and scanned.keys() == wanted.keys()
                and all(scanned[filename] == digests for filename, digests in wanted.items())
            ):
                return scan
        return None

    def scans(
        self, *, since: str | None = None, findings_only: bool = False, limit: int | None = None
    ) -> list[StoredScan]:
        """Scans, newest first; ``since`` is an ISO-8601 UTC timestamp; ``findings_only``: scans whose own
        verdict is ``findings``. Each scan as stored: it may have read only some files of its release
        (``report`` lists :meth:`listed_scans`, with each release's verdict as a whole)."""
        sql = f"SELECT {_SCAN_COLUMNS} {_SCAN_FROM} WHERE 1 = 1"
        params: list[Any] = []
        if since is not None:
            sql += " AND s.scanned_at >= ?"
            params.append(since)
        if findings_only:
            sql += " AND s.verdict = 'findings'"
        sql += " ORDER BY s.scanned_at DESC, s.id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return [_scan_of(row) for row in self._query(sql, params)]

    def listed_scans(
        self, *, since: str | None = None, findings_only: bool = False, limit: int | None = None
    ) -> list[ListedScan]:
        """Scans, newest first (as :meth:`scans`), each with the verdict and score of its release as a whole
        (:class:`ListedScan`: as :meth:`release` gives them). ``since`` (an ISO-8601 UTC timestamp) bounds
        the scans listed, not what their releases' verdicts are combined from.

        ``findings_only``: the scans of releases whose verdict as a whole is ``findings`` (not the scans'
        own verdicts): a clean scan of some files of a flagged release is listed, a scan whose findings a
        later scan under the same rules refuted is not.

        Each release's verdict is computed once, for all the listed scans of it together
        (:meth:`_release_verdicts`): linear in the rows of the releases listed."""
        # CROSS JOIN: scans walked newest first (their time index), never all candidates sorted first.
        sql = (
            f"SELECT {_SCAN_COLUMNS}, s.release_id FROM scans s CROSS JOIN releases r ON r.id = s.release_id "
            "LEFT JOIN rulesets rs ON rs.id = s.ruleset_id WHERE 1 = 1"
        )
        params: list[Any] = []
        if since is not None:
            sql += " AND s.scanned_at >= ?"
            params.append(since)
        if findings_only:
            # Only a project with a distribution that matched a rule can have a release with findings (one
            # pass over the distributions, as for --by-rule); their scans' releases are then combined.
            sql += (
                " AND r.normalized IN (SELECT r2.normalized FROM distributions d2 "
                "JOIN scans s2 ON s2.id = d2.scan_id JOIN releases r2 ON r2.id = s2.release_id "
                "WHERE d2.rules_matched != '[]')"
            )
        sql += " ORDER BY s.scanned_at DESC, s.id DESC"
        parsed: dict[str, list[str]] = {}
        if not findings_only:
            if limit is not None:
                sql += " LIMIT ?"
                params.append(limit)
            rows = self._query(sql, params)
            verdicts = self._release_verdicts([row[-1] for row in rows])
            return [ListedScan(_scan_of(row, parsed), *verdicts[row[-1]]) for row in rows]
        # Which scans are listed depends on their releases' verdicts: pages of candidates until enough. A
        # release can be `findings` only if a distribution of one of its spellings matched a rule: only
        # those are combined (a project of 160,000 clean versions and one flagged took 7.5 s without).
        spellings: dict[int, list[int]] = {}
        listed: list[ListedScan] = []
        known: dict[int, tuple[str, int]] = {}
        page = min(limit or 1_000, 20_000)
        with self._lock:
            cursor = self._db.execute(sql, params)
            try:
                while (limit is None or len(listed) < limit) and (rows := cursor.fetchmany(page)):
                    unknown = sorted({row[-1] for row in rows} - known.keys())
                    self._read_spellings([r for r in unknown if r not in spellings], spellings)
                    matched = self._with_a_match([s for r in unknown for s in spellings[r]])
                    flagged = [r for r in unknown if not matched.isdisjoint(spellings[r])]
                    known.update(dict.fromkeys(unknown, ("", 0)))  # not `findings`: never listed here
                    known.update(self._release_verdicts(flagged, spellings))
                    listed.extend(
                        ListedScan(_scan_of(row, parsed), *known[row[-1]])
                        for row in rows
                        if known[row[-1]][0] == "findings"
                    )
                    page = min(page * 2, 20_000)
            finally:
                cursor.close()
        return listed if limit is None else listed[:limit]

    def _with_a_match(self, release_ids: Sequence[int]) -> set[int]:
        """Which of ``release_ids`` have a distribution stored with a rule matched."""
        matched: set[int] = set()
        for chunk in _chunks(sorted(set(release_ids))):
            marks = ", ".join("?" * len(chunk))
            matched.update(
                release_id
                for (release_id,) in self._query(
                    "SELECT DISTINCT s.release_id FROM distributions d JOIN scans s ON s.id = d.scan_id "
                    f"WHERE d.rules_matched != '[]' AND s.release_id IN ({marks})",
                    chunk,
                )
            )
        return matched

    def _release_verdicts(
        self, release_ids: Sequence[int], spellings: dict[int, list[int]] | None = None
    ) -> dict[int, tuple[str, int]]:
        """Stored release id -> the verdict and score of the release it is part of (every spelling of its
        version one release), as :meth:`release` shows it: the same rule (:func:`_combine`,
        :func:`_combined_release`), for many releases at once. A few queries per 500 releases, then each
        release's rows once, grouped in Python: linear in the rows of the releases asked for.

        ``spellings`` (stored release id -> every stored release of the same version, itself included),
        kept across calls by a caller asking page after page: each project's versions are read and
        compared once (a project of 160,000 versions, read again for each page, took 23 s)."""
        wanted = sorted(set(release_ids))
        if not wanted:
            return {}
        spellings = {} if spellings is None else spellings
        self._read_spellings([release_id for release_id in wanted if release_id not in spellings], spellings)
        group_of: dict[int, int] = {}  # stored release id -> its release (a group of spellings)
        groups: list[list[int]] = []
        for release_id in wanted:
            if release_id in group_of:
                continue
            ids = spellings[release_id]
            for member in ids:
                group_of[member] = len(groups)
            groups.append(ids)
        scan_rows: dict[int, list[Sequence[Any]]] = {}
        stored: dict[int, list[_StoredRow]] = {}
        rule_sets: dict[str, frozenset[str]] = {}
        for chunk in _chunks(sorted(group_of)):
            marks = ", ".join("?" * len(chunk))
            for row in self._query(
                f"SELECT {_SCAN_COLUMNS}, s.error_per_file, s.release_id {_SCAN_FROM} "
                f"WHERE s.release_id IN ({marks})",
                chunk,
            ):
                scan_rows.setdefault(group_of[row[-1]], []).append(row[:-1])
            for row in self._query(
                f"SELECT {_STORED_ROW_COLUMNS}, s.release_id FROM distributions d "
                f"JOIN scans s ON s.id = d.scan_id WHERE s.release_id IN ({marks})",
                chunk,
            ):
                stored.setdefault(group_of[row[-1]], []).append(_stored_row(row, rule_sets))
        verdicts: dict[int, tuple[str, int]] = {}
        parsed: dict[str, list[str]] = {}
        for group, rows in scan_rows.items():
            rows.sort(key=lambda row: -row[0])  # newest first, as release() reads them
            shown_from = sorted(stored.get(group, ()), key=lambda row: row.id)  # in stored order
            verdict = _verdict_and_score(*_combine(rows, shown_from, parsed))
            for release_id in groups[group]:
                verdicts[release_id] = verdict
        return verdicts

    def _read_spellings(self, release_ids: Sequence[int], spellings: dict[int, list[int]]) -> None:
        """Put in ``spellings`` every stored release of the projects of ``release_ids``, each mapped to the
        stored releases of its version (every spelling PEP 440 calls equal: `1.0`, `1.0.0`)."""
        names: set[str] = set()
        for chunk in _chunks(sorted(release_ids)):
            marks = ", ".join("?" * len(chunk))
            names.update(
                name
                for (name,) in self._query(f"SELECT normalized FROM releases WHERE id IN ({marks})", chunk)
            )
        projects: dict[str, dict[int, str]] = {}
        for chunk in _chunks(sorted(names)):
            marks = ", ".join("?" * len(chunk))
            for release_id, normalized, version in self._query(
                f"SELECT id, normalized, version FROM releases WHERE normalized IN ({marks})", chunk
            ):
                projects.setdefault(normalized, {})[release_id] = version
        for versions in projects.values():
            together: dict[object, list[int]] = {}
            if len(versions) == 1:  # one spelling: nothing to compare
                together = {None: list(versions)}
            else:
                for release_id, version in versions.items():
                    together.setdefault(version_key(version), []).append(release_id)
            for ids in together.values():
                for release_id in ids:
                    spellings[release_id] = ids

    def _pages(self, sql: str, params: Sequence[Any] = (), page: int = 10_000) -> Iterator[list[Any]]:
        """The rows of a query, ``page`` at a time (a whole store's rows are never all in memory)."""
        with self._lock:
            cursor = self._db.execute(sql, params)
            try:
                while batch := cursor.fetchmany(page):
                    yield batch
            finally:
                cursor.close()

    def _shown_with_findings(self) -> dict[int, tuple[int, str, str]]:
        """Every distribution row with findings that its release is shown with (:class:`StoredRelease`, by
        :func:`_shown_rows`, the rule :meth:`release` applies): row id -> (the release, as a number, every
        spelling of its version one release; file name; sha256). One pass over the rows of the projects that
        have a finding, a project at a time."""
        shown: dict[int, tuple[int, str, str]] = {}
        releases = 0
        project: dict[str, list[tuple[Any, ...]]] = {}  # the rows of one project, per version as stored
        rule_sets: dict[str, frozenset[str]] = {"[]": frozenset()}  # each JSON list is parsed once

        def settle() -> None:
            nonlocal releases
            together: dict[object, list[tuple[Any, ...]]] = {}
            if len(project) == 1:  # one spelling: nothing to compare
                together = {None: next(iter(project.values()))}
            else:
                for version, rows in project.items():
                    together.setdefault(version_key(version), []).extend(rows)
            for rows in together.values():
                releases += 1
                first_scan = rows[0][1]
                if all(row[1] == first_scan for row in rows):
                    # Read by one scan only: every row is shown (what _shown_rows finds, without the work).
                    for dist_id, _, _, filename, digest, _, rules in rows:
                        if rules != "[]":
                            shown[dist_id] = (releases, filename, str(digest).lower())
                    continue
                stored = []
                for dist_id, scan_id, ruleset_id, filename, digest, complete, rules in rows:
                    matched = rule_sets.get(rules)
                    if matched is None:
                        matched = rule_sets[rules] = frozenset(json.loads(rules))
                    stored.append(
                        _StoredRow(dist_id, scan_id, ruleset_id, filename, str(digest).lower(), None,
                                   bool(complete), matched)
                    )  # fmt: skip
                for item in _shown_rows(stored):
                    if item.row.rules:
                        shown[item.row.id] = (releases, item.row.filename, item.row.sha256)
            project.clear()

        # Rows stored without bytes have no findings and settle no read: only the files read count here.
        sql = """
            SELECT r.normalized, r.version, d.id, d.scan_id, s.ruleset_id, d.filename, d.sha256, d.complete,
                   d.rules_matched
            FROM releases r JOIN scans s ON s.release_id = r.id JOIN distributions d ON d.scan_id = s.id
            WHERE d.sha256 != '' AND r.normalized IN (
                SELECT r2.normalized FROM distributions d2 JOIN scans s2 ON s2.id = d2.scan_id
                JOIN releases r2 ON r2.id = s2.release_id WHERE d2.rules_matched != '[]'
            )
            ORDER BY r.normalized
        """
        current = None
        for batch in self._pages(sql):
            for normalized, version, *stored in batch:
                if normalized != current:
                    if project:
                        settle()
                    current = normalized
                project.setdefault(version, []).append(tuple(stored))
        if project:
            settle()
        return shown

    def rule_counts(self, *, since: str | None = None) -> list[dict[str, Any]]:
        """Per rule: how many releases and files it matched, its weight, last seen; each release as
        :meth:`release` shows it (:class:`StoredRelease`: every spelling of its version one release, each
        file from its newest scan and from the earlier scans whose findings no later one refuted), a hit
        counted when its scan is since ``since``. A member matched by several scans is one file."""
        shown = self._shown_with_findings()
        if not shown:
            return []
        sql = (
            "SELECT d.id, m.rule, m.weight, f.path, s.scanned_at FROM matches m "
            "JOIN files f ON f.id = m.file_id JOIN distributions d ON d.id = f.distribution_id "
            "JOIN scans s ON s.id = d.scan_id"
        )
        params: list[Any] = []
        if since is not None:
            sql += " WHERE s.scanned_at >= ?"
            params.append(since)
        # Per (rule, release, file name and bytes, member): the highest weight, the newest scan.
        per_file: dict[tuple[str, tuple[int, str, str], str], tuple[int, str]] = {}
        for batch in self._pages(sql, params):
            for dist_id, rule, weight, path, scanned_at in batch:
                where = shown.get(dist_id)
                if where is None:
                    continue
                key = (rule, where, path)
                known = per_file.get(key)
                if known is None:
                    per_file[key] = (weight, scanned_at)
                elif weight > known[0] or scanned_at > known[1]:
                    per_file[key] = (max(known[0], weight), max(known[1], scanned_at))
        per_rule: dict[str, tuple[int, set[int], int, str]] = {}
        for (rule, (release, _, _), _), (weight, scanned_at) in per_file.items():
            top, releases, files, last = per_rule.get(rule, (weight, set(), 0, scanned_at))
            releases.add(release)
            per_rule[rule] = (max(top, weight), releases, files + 1, max(last, scanned_at))
        counts = [
            {"rule": rule, "weight": top, "releases": len(releases), "files": files, "last_seen": last}
            for rule, (top, releases, files, last) in per_rule.items()
        ]
        return sorted(counts, key=lambda count: (-count["releases"], count["rule"]))

    def scans_per_day(self, *, since: str | None = None) -> list[dict[str, Any]]:
        """Per UTC day with scans (oldest first): how many scans, and how many of them had findings."""
        sql = "SELECT substr(scanned_at, 1, 10), COUNT(*), SUM(verdict = 'findings') FROM scans"
        params: list[Any] = []
        if since is not None:
            sql += " WHERE scanned_at >= ?"
            params.append(since)
        sql += " GROUP BY 1 ORDER BY 1"
        return [{"day": r[0], "scans": r[1], "findings": r[2]} for r in self._query(sql, params)]

    def findings(self, scan_id: int) -> list[Finding]:
        rows = self._query(
            "SELECT d.filename, f.path, m.rule, m.weight, m.patterns FROM matches m "
            "JOIN files f ON f.id = m.file_id JOIN distributions d ON d.id = f.distribution_id "
            "WHERE d.scan_id = ? ORDER BY d.id, f.id, m.id",
            (scan_id,),
        )
        return [Finding(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]

    def details(self, scan_id: int) -> list[dict[str, Any]]:
        """The distributions of a scan, each with its issues and its matching files and matches."""
        return self._distribution_details("scan_id = ?", (scan_id,))

    def _distribution_details(self, where: str, params: Sequence[Any]) -> list[dict[str, Any]]:
        dists = self._query(
            "SELECT id, filename, url, format, size, sha256, files_scanned, bytes_scanned, score, "
            f"rules_matched, top_file, verdict, complete, listed_sha256 FROM distributions WHERE {where} "
            "ORDER BY id",
            params,
        )
        out = []
        for d in dists:
            files = []
            for f in self._query(
                "SELECT id, path, size, sha256, score FROM files WHERE distribution_id = ? ORDER BY id",
                (d[0],),
            ):
                matches = [
                    {"rule": m[0], "namespace": m[1], "weight": m[2], "tags": json.loads(m[3]),
                     "metadata": json.loads(m[4]), "patterns": json.loads(m[5])}
                    for m in self._query(
                        "SELECT rule, namespace, weight, tags, metadata, patterns FROM matches "
                        "WHERE file_id = ? ORDER BY id",
                        (f[0],),
                    )
                ]  # fmt: skip
                files.append({"path": f[1], "size": f[2], "sha256": f[3], "score": f[4], "matches": matches})
            issues = [
                {"path": i[0], "kind": i[1], "message": i[2], "unscanned": bool(i[3])}
                for i in self._query(
                    "SELECT path, kind, message, unscanned FROM issues WHERE distribution_id = ? ORDER BY id",
                    (d[0],),
                )
            ]
            out.append({
                "name": d[1], "url": d[2], "format": d[3], "size": d[4], "sha256": d[5],
                "files_scanned": d[6], "bytes_scanned": d[7], "score": d[8],
                "rules_matched": json.loads(d[9]), "top_file": d[10], "verdict": d[11],
                "complete": bool(d[12]), "issues": issues, "files": files, "listed_sha256": d[13],
            })  # fmt: skip
        return out

    def count(self, table: str) -> int:
        tables = {
            "releases",
            "scans",
            "distributions",
            "files",
            "matches",
            "issues",
            "rulesets",
            "content_cache",
        }
        if table not in tables:
            raise ValueError(f"unknown table {table!r}")
        return int(self._query(f"SELECT COUNT(*) FROM {table}")[0][0])

    def integrity_check(self) -> str:
        return str(self._query("PRAGMA integrity_check")[0][0])


def findings_of(result: TargetResult) -> list[Finding]:
    """The findings of a scan result, shaped as :meth:`Store.findings` returns stored ones."""
    return [
        Finding(
            dist.name,
            file.path,
            match.identifier,
            match.weight,
            _patterns(match, file.is_text),
        )
        for dist in result.distributions
        for file in dist.files
        for match in file.matches
    ]
