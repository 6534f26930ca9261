"""The engine's content cache, persisted in the results store (see :mod:`dragonfly_hybrid.store.db`).

A :class:`Scanner` created with ``record_cache=True`` journals every file content it scans with YARA-X.
:meth:`StoreContentCache.load` fills a new Scanner with the entries stored for its rule set, so those
contents are answered from the cache (``cache_stats["hits"]``) instead of being scanned again
(``cache_stats["misses"]``); :meth:`StoreContentCache.save` writes what a Scanner scanned since the last
save. Entries are kept per :func:`entries_key`: another rule set, or another version of the engine,
never sees them.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

from dragonfly_hybrid import __version__
from dragonfly_hybrid._core import Limits, Rules, Scanner
from dragonfly_hybrid.store.db import Store, StoreError

log = logging.getLogger("dragonfly_hybrid.content_cache")


KEY_LAYOUT = "k2"
"""How the engine derives an entry's key (k2: every key mixes in ``Rules.hash``). Entries of another layout
never answer; keyed apart, they are not loaded to fill the cache's room either."""


def entries_key(rules: Rules) -> str:
    """Whose entries a Scanner of ``rules`` takes and saves: the rule set's hash, the engine's version and
    its key layout. An entry says what this engine found in a content with these rules; a later version
    (another YARA-X, a fixed matcher) may find more, and a stored "no match" must not outlive the version
    that made it."""
    return f"{rules.hash}:{__version__}:{KEY_LAYOUT}"


@dataclass(frozen=True)
class CacheLoad:
    """What one :meth:`StoreContentCache.load` did."""

    loaded: int
    """Entries the engine took."""
    refused: int
    """Entries the engine refused (or did not take because its cache was full)."""
    reason: str | None
    """Why the first refused entry was refused."""


class StoreContentCache:
    """Loads and saves a Scanner's content cache in a :class:`Store`. Thread-safe (the store is).

    Failures to read or write the cache are logged and never fail a scan: the cache only saves work.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.loaded = 0
        self.saved = 0
        self._refused: set[str] = set()
        """Rule sets whose stored entries the engine refused: fresh results overwrite those entries."""

    def load(self, scanner: Scanner) -> CacheLoad:
        """Give ``scanner`` every entry stored for its rule set."""
        rules_hash = scanner.rules.hash
        key = entries_key(scanner.rules)
        loaded = refused = 0
        reason: str | None = None
        try:
            for page in self.store.content_cache_pages(key):
                count, why = scanner.cache_import(page)
                loaded += count
                refused += len(page) - count
                reason = reason or why
                if why is None and count < len(page):
                    break  # the engine's cache is full
        except (StoreError, sqlite3.Error) as err:
            log.warning("content cache not loaded", extra={"store": str(self.store.path), "error": str(err)})
        self.loaded += loaded
        if reason is not None:
            self._refused.add(key)
            log.warning(
                "stored content-cache entries refused; their files will be scanned again",
                extra={"rules": rules_hash[:12], "refused": refused, "reason": reason},
            )
        log.info("content cache loaded", extra={"rules": rules_hash[:12], "entries": loaded})
        return CacheLoad(loaded, refused, reason)

    def save(self, scanner: Scanner) -> int:
        """Store what ``scanner`` scanned since the last save; returns how many entries were new."""
        entries = scanner.cache_export()
        if not entries:
            return 0
        key = entries_key(scanner.rules)
        try:
            added = self.store.save_content_cache(key, entries, replace=key in self._refused)
        except (StoreError, sqlite3.Error) as err:
            log.warning(
                "content cache not saved; those files will be scanned again next time",
                extra={"store": str(self.store.path), "entries": len(entries), "error": str(err)},
            )
            return 0
        self.saved += added
        return added


def cached_scanner(
    rules: Rules,
    limits: Limits | None,
    threads: int | None,
    store: Store | None,
    *,
    content_cache: bool = True,
) -> tuple[Scanner, StoreContentCache | None]:
    """A Scanner for ``rules``; with a store, one that records its cache, loaded from the store. Without a
    store, ``content_cache=False`` gives one with no content cache at all (for contents scanned once)."""
    record = store is not None
    scanner = Scanner(rules, limits, threads, record_cache=record, content_cache=content_cache or record)
    if store is None:
        return scanner, None
    cache = StoreContentCache(store)
    cache.load(scanner)
    return scanner, cache
