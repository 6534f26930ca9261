"""The content cache persisted in the results store: a file already scanned with the same rules is never
scanned again, across runs (``scan --store``, ``diff``) and rule changes, and never reused by other rules.

The observable is the engine's own counters (``Scanner.cache_stats``: ``misses`` are files YARA-X
scanned), which ``scan --store`` prints on stderr and ``watch`` in its summary; never timing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid._core import DistributionResult, Limits, Rules, Scanner, distributions_json
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.cli.scan import shares_contents
from dragonfly_hybrid.node.mainframe import MainframeClient
from dragonfly_hybrid.node.pipeline import RuleState
from dragonfly_hybrid.node.settings import NodeSettings
from dragonfly_hybrid.node.sources import MainframeSource
from dragonfly_hybrid.rules_loader import load_rules
from dragonfly_hybrid.store import content_cache
from dragonfly_hybrid.store.content_cache import StoreContentCache, cached_scanner, entries_key
from dragonfly_hybrid.store.db import Store
from dragonfly_hybrid.targets import PathTarget, ReleaseTarget
from typer.testing import CliRunner, Result

from tests.fakes.mainframe import FakeMainframe
from tests.fakes.pypi import (
    LIGHT_MARKER,
    LIGHT_RULE,
    MARKER,
    MARKER_RULE,
    FakeIndex,
    sdist,
    wheel,
    write,
    zip_bytes,
)

BAD = b"import os\n# " + MARKER + b"\n"
LIGHT = b"# " + LIGHT_MARKER + b"\n"
CLEAN = b"print('hello')\n"
CACHE_LINE = re.compile(
    r"content cache: (\d+) entries loaded from .*; (\d+) file\(s\) answered from the cache, "
    r"(\d+) scanned with YARA-X, (\d+) new entries saved"
)


def some_key(seed: bytes) -> bytes:
    """A 32-byte cache key for store tests that never reach the engine."""
    return hashlib.sha256(seed).digest()


def engine_key(rules: Rules, content: bytes, name: str) -> bytes:
    """The key the engine files ``content`` under when it scans it as ``name`` with ``rules``."""
    recording = Scanner(rules, threads=1, record_cache=True)
    recording.scan_bytes(content, name)
    [(key, _)] = recording.cache_export()
    return key


def run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def cache_line(result: Result) -> tuple[int, int, int, int]:
    """(entries loaded, files from the cache, files scanned by YARA-X, new entries saved) of a scan."""
    found = CACHE_LINE.search(result.stderr)
    assert found, result.stderr
    loaded, hits, misses, saved = (int(g) for g in found.groups())
    return loaded, hits, misses, saved


def findings(document: dict[str, Any]) -> list[tuple[str, str, list[tuple[str, int, int]]]]:
    """(file, rule, [(pattern, offset, length)]) of every match of a ``scan --format json`` report."""
    out = []
    for target in document["targets"]:
        for dist in target["distributions"]:
            for file in dist["files"]:
                for match in file["matches"]:
                    patterns = [(p["identifier"], p["offset"], p["length"]) for p in match["patterns"]]
                    out.append((file["path"], match["rule"], patterns))
    return sorted(out)


def shape(result: DistributionResult) -> tuple[object, ...]:
    """Everything a report shows of a scanned distribution."""
    files = [
        (f.path, f.score, [(m.identifier, [(p.identifier, p.offset, p.length, p.data) for p in m.patterns])
                           for m in f.matches])
        for f in result.files
    ]  # fmt: skip
    return result.verdict, result.score, result.files_scanned, result.bytes_scanned, files


@pytest.fixture
def rules(rules_dir: Path) -> Rules:
    return load_rules([rules_dir])


# ------------------------------------------------------------------------------------------- the store


def test_entries_are_kept_per_rule_set_once_and_read_back_in_pages(tmp_path: Path) -> None:
    entries = [(some_key(bytes([i])), b"" if i % 2 else b"\x01match") for i in range(5)]
    with Store(tmp_path / "s.db") as db:
        assert db.save_content_cache("rules-a", entries) == 5
        # INSERT OR IGNORE: a second save of the same contents adds nothing and changes nothing.
        assert db.save_content_cache("rules-a", [(d, b"\x01other") for d, _ in entries]) == 0
        pages = list(db.content_cache_pages("rules-a", page=2))
        assert [len(p) for p in pages] == [2, 2, 1]
        assert sorted(e for p in pages for e in p) == sorted(entries)
        assert list(db.content_cache_pages("rules-b")) == []  # another rule set sees nothing
        assert db.content_cache_entries("rules-a") == 5 and db.content_cache_entries() == 5
        # replace=True (entries the engine refused) overwrites.
        assert db.save_content_cache("rules-a", [(entries[0][0], b"\x01fresh")], replace=True) == 0
        assert dict(e for p in db.content_cache_pages("rules-a") for e in p)[entries[0][0]] == b"\x01fresh"
        with pytest.raises(ValueError, match="content-cache key is 32 bytes, not 5"):
            db.save_content_cache("rules-a", [(b"short", b"")])


def test_each_rule_set_is_bounded_and_only_the_latest_rule_sets_are_kept(tmp_path: Path) -> None:
    older = [(some_key(b"old%d" % i), b"") for i in range(4)]
    newer = [(some_key(b"new%d" % i), b"") for i in range(4)]
    with Store(tmp_path / "s.db") as db:
        db.save_content_cache("rules-a", older, limit=5)
        assert db.save_content_cache("rules-a", newer, limit=5) == 4
        kept = {d for p in db.content_cache_pages("rules-a") for d, _ in p}
        # The oldest entries go first: every new one stays, one old one is left.
        assert len(kept) == 5 and {d for d, _ in newer} <= kept
        assert db.content_cache_entries("rules-a") == 5 == db.count("content_cache")

        for name in ("rules-b", "rules-c", "rules-d"):
            db.save_content_cache(name, newer[:1], rule_sets=3)
        # rules-a was saved to least recently: its entries are gone, the three others stay.
        assert db.content_cache_entries("rules-a") == 0
        assert list(db.content_cache_pages("rules-a")) == []
        assert db.content_cache_entries() == 3 == db.count("content_cache")


# ------------------------------------------------------------------------------------------ the engine


def test_a_new_scanner_loaded_from_the_store_scans_nothing_it_has_seen(tmp_path: Path, rules: Rules) -> None:
    name, data = sdist("pkg", "1.0", {"setup.py": BAD, "light.py": LIGHT, "clean.py": CLEAN})
    with Store(tmp_path / "s.db") as db:
        first, cache = cached_scanner(rules, None, 2, db)
        assert cache is not None
        fresh = first.scan_bytes(data, name)
        assert first.cache_stats["misses"] == 4  # PKG-INFO and the three files
        assert cache.save(first) == 4 and cache.save(first) == 0  # each entry is exported once

        second, cache = cached_scanner(rules, None, 2, db)
        assert cache is not None and cache.loaded == 4
        again = second.scan_bytes(data, name)
        assert second.cache_stats == {"entries": 4, "hits": 4, "misses": 0}
        assert cache.save(second) == 0
    # Answers from the cache are the same findings, with the same patterns and offsets.
    assert shape(again) == shape(fresh)
    assert sorted(fresh.rules_matched) == ["light_marker", "test_marker"] and len(fresh.files) == 2


def test_entries_saved_by_another_version_of_the_engine_are_not_taken(
    tmp_path: Path, rules: Rules, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry is what one version found in a content: a "no match" saved before an upgrade (another
    YARA-X, a fixed matcher) must not stand for what the upgraded engine would find. The version is part of
    the entries' key (the upgrade is this module's version string changed: no other version can run here)."""
    name, data = sdist("pkg", "1.0", {"setup.py": BAD, "clean.py": CLEAN})
    with Store(tmp_path / "s.db") as db:
        before, cache = cached_scanner(rules, None, 2, db)
        before.scan_bytes(data, name)
        assert cache is not None and cache.save(before) == 3
        monkeypatch.setattr(content_cache, "__version__", "99.0.0")
        after, cache = cached_scanner(rules, None, 2, db)
        assert cache is not None and cache.loaded == 0
        after.scan_bytes(data, name)
        assert after.cache_stats["misses"] == 3
        assert cache.save(after) == 3 and db.content_cache_entries() == 6


def test_entries_the_engine_refuses_are_logged_scanned_again_and_replaced(
    tmp_path: Path, rules: Rules, caplog: pytest.LogCaptureFixture
) -> None:
    with Store(tmp_path / "s.db") as db:
        key = engine_key(rules, BAD, "setup.py")
        db.save_content_cache(entries_key(rules), [(key, b"\x09not an entry this engine writes")])
        scanner = Scanner(rules, threads=2, record_cache=True)
        cache = StoreContentCache(db)
        with caplog.at_level(logging.INFO, logger="dragonfly_hybrid.store.content_cache"):
            load = cache.load(scanner)
        assert (load.loaded, load.refused) == (0, 1)
        assert load.reason is not None and "unknown cache entry format version 9" in load.reason
        refused = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert refused and getattr(refused[0], "reason", None) == load.reason
        result = scanner.scan_bytes(BAD, "setup.py")
        assert result.rules_matched == ["test_marker"] and scanner.cache_stats["misses"] == 1
        cache.save(scanner)  # overwrites the refused entry

        reloaded = Scanner(rules, threads=2, record_cache=True)
        assert StoreContentCache(db).load(reloaded).refused == 0
        assert reloaded.scan_bytes(BAD, "setup.py").rules_matched == ["test_marker"]
        assert reloaded.cache_stats["misses"] == 0


# --------------------------------------------------------------------------------------- scan --store


def test_scan_store_twice_then_another_archive_with_the_same_files_scans_nothing_again(
    tmp_path: Path, rules_dir: Path
) -> None:
    store = tmp_path / "store.db"
    members = {"setup.py": BAD, "pkg/light.py": LIGHT, "pkg/clean.py": CLEAN}
    tarball = write(tmp_path / "pkg-1.0.tar.gz", sdist("pkg", "1.0", members)[1])
    other = write(tmp_path / "repack.zip", zip_bytes({f"elsewhere/{k}": v for k, v in members.items()}))
    args = ("scan", "-r", rules_dir, "--store", store, "--format", "json")

    first = run(*args, tarball)
    assert first.exit_code == 1 and cache_line(first) == (0, 0, 4, 4)
    second = run(*args, tarball)
    assert second.exit_code == 1 and cache_line(second) == (4, 4, 0, 0)
    assert findings(json.loads(second.stdout)) == findings(json.loads(first.stdout))

    repacked = run(*args, other)
    assert repacked.exit_code == 1 and cache_line(repacked) == (4, 3, 0, 0)  # no PKG-INFO in the zip
    assert {(rule, patterns[0][1]) for _, rule, patterns in findings(json.loads(repacked.stdout))} == {
        ("test_marker", len(b"import os\n# ")),
        ("light_marker", 2),
    }
    with Store(store, readonly=True) as db:
        assert db.content_cache_entries() == 4
    assert CACHE_LINE.search(run(*args, "-q", tarball).stderr) is None  # --quiet: no summary line


def test_another_rule_set_never_reuses_the_entries(tmp_path: Path, rules_dir: Path) -> None:
    store = tmp_path / "store.db"
    tarball = write(tmp_path / "pkg-1.0.tar.gz", sdist("pkg", "1.0", {"setup.py": BAD, "a.py": LIGHT})[1])
    light_only = write(tmp_path / "light.yar", LIGHT_RULE.encode())
    assert cache_line(run("scan", "-r", rules_dir, "--store", store, tarball)) == (0, 0, 3, 3)

    # The contents matched nothing but test_marker under the first rules; the light rule must still match.
    other = run("scan", "-r", light_only, "--store", store, "--format", "json", tarball)
    assert other.exit_code == 1 and cache_line(other) == (0, 0, 3, 3)
    assert [rule for _, rule, _ in findings(json.loads(other.stdout))] == ["light_marker"]
    with Store(store, readonly=True) as db:
        assert db.content_cache_entries(entries_key(load_rules([rules_dir]))) == 3
        assert db.content_cache_entries(entries_key(load_rules([light_only]))) == 3
    assert cache_line(run("scan", "-r", rules_dir, "--store", store, tarball)) == (3, 3, 0, 0)


def test_what_diff_scanned_is_not_scanned_again_by_scan(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    for version, body in (("1.0", LIGHT), ("1.1", BAD)):
        files = {"lib/util.py": LIGHT, "lib/new.py": body}
        fake_index.add("trusted", sdist("trusted", version, files), wheel("trusted", version, files))
    common = ("-r", rules_dir, "--index-url", fake_index.url, "--store", tmp_path / "store.db")
    assert run("diff", "trusted==1.0", "trusted==1.1", *common).exit_code == 1
    # Both releases were scanned by diff; scanning one of them again finds every file in the cache.
    rescan = run("scan", "trusted==1.1", *common)
    assert rescan.exit_code == 1
    loaded, hits, misses, saved = cache_line(rescan)
    assert loaded > 0 and hits > 0 and (misses, saved) == (0, 0)


# -------------------------------------------------------------------------------- rules that change


@pytest.fixture
def mainframe() -> Iterator[FakeMainframe]:
    with FakeMainframe(job_timeout=30) as server:
        yield server


def test_rule_changes_save_the_outgoing_scanner_and_load_the_new_one(
    mainframe: FakeMainframe, tmp_path: Path
) -> None:
    mainframe.set_rules("commit-1", {"m.yar": MARKER_RULE})
    data = zip_bytes({"a.py": BAD, "b.py": LIGHT})

    async def scenario(db: Store) -> list[dict[str, int]]:
        settings = NodeSettings(**mainframe.node_settings(metrics_port=None), _env_file=None)  # type: ignore[call-arg]
        seen = []
        async with MainframeClient(settings) as client:
            await client.login()
            state = RuleState(MainframeSource(client), Limits(), 2, None, content_cache=StoreContentCache(db))
            first = await state.ensure(None)
            first.scan_bytes(data, "x.zip")
            seen.append(first.cache_stats)
            mainframe.set_rules("commit-2", {"l.yar": LIGHT_RULE})
            second = await state.ensure("commit-2")
            assert second is not first and second.rules.hash != first.rules.hash
            second.scan_bytes(data, "x.zip")
            seen.append(second.cache_stats)
            mainframe.set_rules("commit-1", {"m.yar": MARKER_RULE})
            third = await state.ensure("commit-1")
            result = third.scan_bytes(data, "x.zip")
            assert result.rules_matched == ["test_marker"]
            seen.append(third.cache_stats)
        return seen

    with Store(tmp_path / "s.db") as db:
        first, second, third = asyncio.run(scenario(db))
        marker_rules = Rules.compile({"m.yar": MARKER_RULE})
        assert db.content_cache_entries(entries_key(marker_rules)) == 2  # saved when the rules changed
    assert first["misses"] == 2
    assert second["misses"] == 2  # nothing from the other rule set
    assert third == {"entries": 2, "hits": 2, "misses": 0}  # loaded again when the rules came back


# ------------------------------------------------------------------------------------- no content cache


def test_without_the_content_cache_results_are_the_same_and_nothing_is_kept(
    tmp_path: Path, rules: Rules
) -> None:
    # The same contents under several names, matching and not: the cache would answer the copies.
    _, data = wheel(
        "dup", "1.0", {"a/bad.py": BAD, "b/bad.py": BAD, "a/light.py": LIGHT, "x.py": CLEAN, "y.py": CLEAN}
    )
    # One thread for the cached scan: with two, both copies of a content can miss at once.
    cached, uncached = Scanner(rules, threads=1), Scanner(rules, threads=2, content_cache=False)
    with_cache, without = cached.scan_bytes(data, "dup.whl"), uncached.scan_bytes(data, "dup.whl")
    assert cached.content_cache and not uncached.content_cache
    assert with_cache.files and with_cache.verdict == "findings"
    assert distributions_json([without], 0) == distributions_json([with_cache], 0)  # sha256 of matches too
    assert cached.cache_stats["hits"] >= 2
    assert uncached.cache_stats == {
        "entries": 0,
        "hits": 0,
        "misses": cached.cache_stats["misses"] + cached.cache_stats["hits"],
    }


def test_no_content_cache_cannot_record_or_load_entries(rules: Rules) -> None:
    with pytest.raises(ValueError, match="record_cache needs the content cache"):
        Scanner(rules, record_cache=True, content_cache=False)
    with pytest.raises(ValueError, match="no content cache"):
        Scanner(rules, content_cache=False).cache_import([(some_key(BAD), b"")])


def archive_target(tmp_path: Path, filename: str) -> PathTarget:
    return PathTarget(filename, tmp_path / filename, is_directory=False)


def test_scan_uses_the_content_cache_unless_its_archives_are_of_distinct_projects(tmp_path: Path) -> None:
    archive = archive_target(tmp_path, "a.whl")
    directory = PathTarget("d", tmp_path, is_directory=True)
    release = ReleaseTarget("pkg==1.0", "pkg", "1.0")
    assert not shares_contents([archive], None)
    assert shares_contents([archive, archive], None)
    distinct = ["flask-3.0.3.tar.gz", "Babel-2.15.0-py3-none-any.whl", "python-dateutil-2.9.0.post0.tar.gz"]
    assert not shares_contents([archive_target(tmp_path, name) for name in distinct], None)
    for pair in [
        ("Foo_Bar-1.0.tar.gz", "foo.bar-2.0-py3-none-any.whl"),  # sdist and wheel, two versions
        ("python-dateutil-2.9.0.tar.gz", "python_dateutil-2.9.0-py2.py3-none-any.whl"),
        ("pkg-1.0.zip", "PKG-1.0.tgz"),
        ("notes.zip", "notes.zip"),  # no version part: the whole name
    ]:
        assert shares_contents([archive_target(tmp_path, name) for name in pair], None), pair
    assert shares_contents([directory], None) and shares_contents([release], None)
    with Store(tmp_path / "store.db") as store:
        assert shares_contents([archive], store)
        scanner, cache = cached_scanner(load_rules([]), None, 1, store, content_cache=False)
        assert scanner.content_cache and cache is not None  # a store keeps what it saw: always cached
    scanner, _ = cached_scanner(load_rules([]), None, 1, None, content_cache=False)
    assert not scanner.content_cache
