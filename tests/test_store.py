"""The embedded results store: schema and migrations, what a scan stores, concurrent readers, kill -9."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from dragonfly_hybrid._core import Scanner
from dragonfly_hybrid.report import TargetResult
from dragonfly_hybrid.rules_loader import load_rules
from dragonfly_hybrid.store import db as store_module
from dragonfly_hybrid.store.db import (
    NOT_DOWNLOADED_SHA256,
    SCHEMA_VERSION,
    NotDownloaded,
    Store,
    StoreError,
    default_store_path,
    findings_of,
)

from tests.fakes.pypi import LIGHT_MARKER, MARKER, sdist, wheel


def release_result(scanner: Scanner, name: str, version: str, marked: bool = True) -> TargetResult:
    body = b"import os\n# " + (MARKER if marked else b"clean") + b"\n"
    files = [
        sdist(name, version, {"setup.py": body, "light.py": b"# " + LIGHT_MARKER}),
        wheel(name, version, {f"{name}/__init__.py": b"pass\n"}),
    ]
    release = scanner.scan_release(name, version, [(f, data, f"https://files/{f}") for f, data in files])
    return TargetResult.from_release(f"{name}=={version}", release)


def as_written_by(path: Path, version: int) -> None:
    """Make the store at ``path`` (written by this code) what schema ``version`` left: what the later
    migrations added taken off again (``DROP COLUMN``: SQLite 3.35)."""
    raw = sqlite3.connect(path)
    if version < 5:
        raw.execute("ALTER TABLE scans DROP COLUMN engine_version")
    if version < 4:
        raw.execute("ALTER TABLE scans DROP COLUMN error_per_file")
        raw.execute("ALTER TABLE distributions DROP COLUMN listed_sha256")
    if version < 3:
        raw.execute("ALTER TABLE content_cache RENAME COLUMN content_key TO sha256")
    if version < 2:
        raw.execute("DROP TABLE content_cache")
        raw.execute("DROP TABLE content_cache_rulesets")
    raw.execute("UPDATE schema_version SET version = ?", (version,))
    raw.commit()
    raw.close()


@pytest.fixture
def scanner(rules_dir: Path) -> Scanner:
    return Scanner(load_rules([rules_dir]), threads=2)


@pytest.fixture
def narrower(rules_dir: Path, tmp_path: Path) -> Scanner:
    """A scanner with the light rule only (``rules_dir`` without test_marker)."""
    light_only = tmp_path / "light_only"
    light_only.mkdir()
    (light_only / "light.yar").write_text((rules_dir / "sub" / "light.yara").read_text())
    return Scanner(load_rules([light_only]), threads=2)


def test_store_in_a_missing_directory_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "store.db"
    with pytest.raises(StoreError, match=f"{re.escape(str(path))}: directory .*missing does not exist"):
        Store(path)
    assert not path.parent.exists()


def test_new_store_is_wal_at_the_current_schema_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "store.db"
    with Store(path, create_parents=True) as db:
        assert db.schema_version() == SCHEMA_VERSION
    with Store(path) as db:
        assert db.schema_version() == SCHEMA_VERSION
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"schema_version", "rulesets", "releases", "scans", "distributions", "files", "matches"} <= tables
    assert {"issues", "watch_state"} <= tables
    raw.close()


def test_migrations_apply_in_order_and_keep_data(
    tmp_path: Path, scanner: Scanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    with Store(path) as db:
        db.record(release_result(scanner, "pkg", "1.0"), rules_hash="h1")
    extra = "CREATE TABLE future_table (key TEXT, value TEXT)"
    monkeypatch.setattr(store_module, "MIGRATIONS", (*store_module.MIGRATIONS, extra))
    with Store(path) as db:
        assert db.schema_version() == SCHEMA_VERSION + 1
        assert db.count("scans") == 1 and db.latest_scan("pkg", "1.0") is not None
        assert db._query("SELECT COUNT(*) FROM future_table")[0][0] == 0


def test_two_watchers_on_one_store_never_mix_baselines_nor_move_the_serial_back(tmp_path: Path) -> None:
    """Two connections, as two watchers have: a baseline is recorded whole by one of them, and a serial
    only ever goes up, each check and write in one transaction."""
    path = tmp_path / "store.db"
    with Store(path) as first, Store(path) as second:
        baseline = {"since": "2026-01-01T00:00:00+00:00", "index": "https://a/simple/", "serial": "10"}
        assert first.set_states_once(baseline, unless=("serial", "since"))
        other = {"since": "2026-02-02T00:00:00+00:00", "index": "https://a/simple/", "serial": "20"}
        assert not second.set_states_once(other, unless=("serial", "since"))
        assert [second.get_state(k) for k in baseline] == list(baseline.values())
        assert second.raise_state("serial", 30) and not first.raise_state("serial", 25)
        assert not first.raise_state("serial", 30) and first.get_state("serial") == "30"
    with Store(tmp_path / "half.db") as half:
        half.set_state("serial", "5")  # half a baseline (a watcher stopped between writes): recorded whole
        assert half.set_states_once(other, unless=("serial", "since"))
        assert [half.get_state(k) for k in other] == list(other.values())


def test_a_version_1_store_migrates_to_the_current_schema_keeping_its_data(
    tmp_path: Path, scanner: Scanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "store.db"
    with Store(path) as db:
        db.record(release_result(scanner, "pkg", "1.0"), rules_hash="h1", rules_count=2)
        db.set_state("serial", "42")
    as_written_by(path, 1)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT version FROM schema_version").fetchone() == (1,)
    assert "content_cache" not in {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}
    raw.close()
    with Store(path) as db:
        assert db.schema_version() == SCHEMA_VERSION == 5
        scan = db.latest_scan("pkg", "1.0")
        assert scan is not None and scan.verdict == "findings" and scan.rules_hash == "h1"
        assert len(db.findings(scan.id)) == 2 and db.get_state("serial") == "42"
        assert db.content_cache_entries() == 0
        assert db.save_content_cache("h1", [(b"\x01" * 32, b"")]) == 1
        assert list(db.content_cache_pages("h1")) == [[(b"\x01" * 32, b"")]]
        assert db.integrity_check() == "ok"


def test_a_version_2_store_drops_its_sha256_keyed_content_cache_and_keeps_the_rest(
    tmp_path: Path, scanner: Scanner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 3: the engine's cache keys are BLAKE3 hashes. Entries stored under SHA-256 keys would never
    be found again (and would take the bound's room), so the migration drops them; scans stay."""
    path = tmp_path / "store.db"
    with Store(path) as db:
        db.record(release_result(scanner, "pkg", "1.0"), rules_hash="h1", rules_count=2)
    as_written_by(path, 2)
    raw = sqlite3.connect(path)
    assert raw.execute("SELECT version FROM schema_version").fetchone() == (2,)
    # Entries as version 2 kept them (this code writes version 3's column).
    raw.executemany(
        "INSERT INTO content_cache (rules_hash, sha256, matches, saved_at) VALUES ('h1', ?, x'', ?)",
        [(bytes([i]) * 32, i + 1) for i in range(3)],
    )
    raw.execute("INSERT INTO content_cache_rulesets (rules_hash, entries, saved_at) VALUES ('h1', 3, 3)")
    raw.commit()
    raw.close()
    with Store(path) as db:
        assert db.schema_version() == SCHEMA_VERSION == 5
        assert db.content_cache_entries() == 0 and db.count("content_cache") == 0
        assert list(db.content_cache_pages("h1")) == []
        scan = db.latest_scan("pkg", "1.0")
        assert scan is not None and scan.verdict == "findings" and len(db.findings(scan.id)) == 2
        assert db.save_content_cache("h1", [(b"\x02" * 32, b"")]) == 1
        assert db.content_cache_entries("h1") == 1
        assert db.integrity_check() == "ok"
    raw = sqlite3.connect(path)
    columns = [r[1] for r in raw.execute("PRAGMA table_info(content_cache)")]
    raw.close()
    assert columns == ["rules_hash", "content_key", "matches", "saved_at"]


def test_a_version_3_store_gains_the_listed_digest_and_keeps_the_error_rule_of_its_scans(
    tmp_path: Path, scanner: Scanner
) -> None:
    """Version 4: a file not downloaded keeps the digest the index listed, a scan whether its error is all
    about such files. A version 3 store has neither: its scans' errors keep the rule they had (settled by a
    later scan without an error that read more), its rows without bytes give way to a later read of the
    name."""
    path = tmp_path / "store.db"
    whole = release_result(scanner, "pkg", "1.0", marked=False)
    sdist_only = dataclasses.replace(
        whole, distributions=whole.distributions[:1], error="could not download the wheel: HTTP 404"
    )
    with Store(path) as db:
        first = db.record(sdist_only, rules_hash="h1")
        db.record(kept_out_result("pkg-1.0.tar.gz", "ab" * 32), rules_hash="h1")
    as_written_by(path, 3)
    with Store(path) as db:
        assert db.schema_version() == SCHEMA_VERSION == 5
        assert db._query("SELECT error_per_file FROM scans") == [(0,), (0,)]
        assert db._query("SELECT listed_sha256 FROM distributions") == [(None,), (None,)]
        release = db.release("pkg", "1.0")
        assert release is not None and release.error is not None
        assert release.error.startswith("pkg-1.0.tar.gz not downloaded; could not download the wheel")
        # The whole release read: every file scan 1 read and a name it did not, and the name kept out.
        db.record(whole, rules_hash="h1")
        release = db.release("pkg", "1.0")
        assert release is not None and release.error is None and release.verdict == "findings"
        assert first not in {scan.id for scan in release.scans}
        assert db.integrity_check() == "ok"


def test_reading_an_older_store_says_which_commands_migrate_it(tmp_path: Path, scanner: Scanner) -> None:
    path = tmp_path / "store.db"
    with Store(path) as db:
        db.record(release_result(scanner, "pkg", "1.0"), rules_hash="h1", rules_count=2)
    as_written_by(path, 1)
    with pytest.raises(
        StoreError,
        match=r"schema version 1 \(this dragonfly-hybrid writes 5\); it is migrated "
        r"when it is next written to: `dragonfly-hybrid scan --store PATH \.\.\.` or `watch",
    ):
        Store(path, readonly=True)


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    Store(path).close()
    raw = sqlite3.connect(path)
    raw.execute("UPDATE schema_version SET version = 99")
    raw.commit()
    raw.close()
    with pytest.raises(StoreError, match="schema version 99"):
        Store(path)
    with pytest.raises(StoreError, match="schema version 99"):
        Store(path, readonly=True)


def test_readonly_store_must_exist_and_cannot_write(tmp_path: Path, scanner: Scanner) -> None:
    with pytest.raises(StoreError, match="no store"):
        Store(tmp_path / "missing.db", readonly=True)
    Store(tmp_path / "s.db").close()
    with Store(tmp_path / "s.db", readonly=True) as db, pytest.raises(StoreError):
        try:
            db.record(release_result(scanner, "pkg", "1.0"), rules_hash="h")
        except sqlite3.OperationalError as err:
            raise StoreError(str(err)) from err


def test_default_path_honours_env_and_xdg(tmp_path: Path) -> None:
    assert default_store_path({"DRAGONFLY_STORE": str(tmp_path / "x.db")}) == tmp_path / "x.db"
    assert default_store_path({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "dragonfly-hybrid" / "store.db"
    assert default_store_path({}).parts[-4:] == (".local", "share", "dragonfly-hybrid", "store.db")


def test_a_scan_is_stored_with_files_matches_offsets_issues_and_rules(
    tmp_path: Path, scanner: Scanner
) -> None:
    result = release_result(scanner, "pkg", "1.0")
    rules = scanner.rules
    with Store(tmp_path / "s.db") as db:
        scan_id = db.record(result, rules_hash=rules.hash, rules_count=rules.count, scan_seconds=0.5)
        scan = db.latest_scan("PKG", "1.0")
        assert scan is not None and scan.id == scan_id
        assert (scan.verdict, scan.score, scan.rules_hash, scan.scan_seconds) == (
            "findings",
            6,
            rules.hash,
            0.5,
        )
        assert set(scan.rules_matched) == {"test_marker", "light_marker"}
        details = db.details(scan_id)
        assert [d["name"] for d in details] == [d.name for d in result.distributions]
        sdist_row = details[0]
        matched = {m["rule"]: m for f in sdist_row["files"] for m in f["matches"]}
        pattern = matched["test_marker"]["patterns"][0]
        assert pattern["data"] == MARKER.decode() and pattern["offset"] == len(b"import os\n# ")
        assert matched["test_marker"]["metadata"]["description"] == "the test marker string"
        assert {f.label for f in db.findings(scan_id)} == {f.label for f in findings_of(result)}
        assert set(db.stored_files("pkg", "1.0").digests) == {d.name for d in result.distributions}
        assert db.rule_counts()[0]["releases"] == 1
        assert db._query("SELECT hash, count FROM rulesets") == [(rules.hash, rules.count)]
        assert db.scans(since="2999-01-01") == [] and len(db.scans(findings_only=True)) == 1


def test_record_unless_stored_never_stores_the_same_files_twice(tmp_path: Path, scanner: Scanner) -> None:
    result = release_result(scanner, "pkg", "1.0")
    files: dict[str, str | None] = {d.name: d.sha256 for d in result.distributions}
    with Store(tmp_path / "s.db") as db:
        assert db.record_unless_stored(result, files, rules_hash="h") is not None
        assert db.record_unless_stored(result, files, rules_hash="h") is None
        assert db.record_unless_stored(result, dict.fromkeys(files), rules_hash="h") is None  # no digests
        assert db.record_unless_stored(result, {**files, "new.whl": None}, rules_hash="h") is not None
        assert db.count("scans") == 2


def test_a_stored_file_is_seen_only_with_the_bytes_the_index_lists(tmp_path: Path, scanner: Scanner) -> None:
    """Another host's bytes under a stored name (a lock file's scan) are not the index's file."""
    result = release_result(scanner, "pkg", "1.0")
    sdist_dist = result.distributions[0]
    files: dict[str, str | None] = {d.name: d.sha256 for d in result.distributions}
    other_bytes = "ab" * 32
    with Store(tmp_path / "s.db") as db:
        db.record(result, rules_hash="h")
        stored = db.stored_files("pkg", "1.0")
        assert stored.has(sdist_dist.name, sdist_dist.sha256.upper())
        assert not stored.has(sdist_dist.name, other_bytes)
        assert stored.has(sdist_dist.name, None)  # the index lists no sha256: the name decides
        assert not stored.has("pkg-1.0-py2-none-any.whl", None)
        other = {**files, sdist_dist.name: other_bytes}
        assert db.record_unless_stored(result, other, rules_hash="h") is not None
        assert db.count("scans") == 2


def kept_out_result(filename: str, listed: str | None) -> TargetResult:
    """A release whose one file ``watch --max-size`` kept out (the index lists ``listed`` for it)."""
    kept_out = NotDownloaded(filename, None, 50_000, "over-max-size", "not downloaded", sha256=listed)
    failed = TargetResult.failed("pkg==1.0", "release", "pkg", "1.0", f"{filename} not downloaded")
    return dataclasses.replace(failed, not_downloaded=(kept_out,), error_per_file=True)


def test_a_file_not_downloaded_is_stored_once_and_never_counts_as_read(tmp_path: Path) -> None:
    """It keeps the digest the index listed: `watch` does not store it again while it is kept out, and
    downloads it once it is not (a placeholder standing for any digest let another host's bytes of that
    name pass for it)."""
    listed = "ab" * 32
    result = kept_out_result("pkg-1.0.tar.gz", listed.upper())
    with Store(tmp_path / "s.db") as db:
        assert db.record_unless_stored(result, {}, rules_hash="h") is not None
        assert db.record_unless_stored(result, {}, rules_hash="h") is None
        stored = db.stored_files("pkg", "1.0")
        assert not stored.has("pkg-1.0.tar.gz", listed) and not stored.has("pkg-1.0.tar.gz", None)
        assert not stored.has("pkg-1.0.tar.gz", "cd" * 32)
        assert stored.has_not_downloaded("pkg-1.0.tar.gz", listed)
        assert not stored.has_not_downloaded("pkg-1.0.tar.gz", "cd" * 32)
        assert not stored.has_not_downloaded("pkg-1.0.tar.gz", None)
        assert db.details(1)[0]["sha256"] == NOT_DOWNLOADED_SHA256


def test_a_release_is_shown_with_every_file_stored_for_it_from_its_newest_scan(
    tmp_path: Path, scanner: Scanner
) -> None:
    """A scan stores only the files it read: the sdist with findings, then a wheel uploaded later (clean),
    then a scan that could download nothing. The release still has findings, from the sdist."""
    sdist_name, sdist_data = sdist("pkg", "1.0", {"setup.py": b"import os\n# " + MARKER + b"\n"})
    wheel_name, wheel_data = wheel("pkg", "1.0", {"pkg/__init__.py": b"pass\n"})

    def scanned(*files: tuple[str, bytes]) -> TargetResult:
        release = scanner.scan_release("pkg", "1.0", [(f, data, f"https://files/{f}") for f, data in files])
        return TargetResult.from_release("pkg==1.0", release)

    with Store(tmp_path / "s.db") as db:
        first = db.record(scanned((sdist_name, sdist_data)), rules_hash="h1", source="watch")
        second = db.record(scanned((wheel_name, wheel_data)), rules_hash="h2", source="watch")
        newest = db.latest_scan("pkg", "1.0")
        assert newest is not None and newest.verdict == "clean"  # the wheel's scan alone
        release = db.release("PKG", "1.0")
        assert release is not None
        assert (release.verdict, release.score, release.rules_matched) == ("findings", 5, ["test_marker"])
        assert [(d["name"], d["scan_id"]) for d in release.distributions] == [
            (sdist_name, first),
            (wheel_name, second),
        ]
        assert [s.id for s in release.scans] == [second, first] and release.error is None
        assert [(c["rule"], c["releases"], c["files"]) for c in db.rule_counts()] == [("test_marker", 1, 1)]

        # The same sdist scanned again (other rules): that scan replaces its older one.
        third = db.record(scanned((sdist_name, sdist_data)), rules_hash="h3")
        release = db.release("pkg", "1.0")
        assert release is not None and release.verdict == "findings"
        assert [(d["name"], d["scan_id"]) for d in release.distributions] == [
            (wheel_name, second),
            (sdist_name, third),
        ]
        # Other bytes under the sdist's name (another host's file): another file, shown beside it.
        other_sdist = sdist("pkg", "1.0", {"setup.py": b"pass\n"})
        assert other_sdist[0] == sdist_name
        fourth = db.record(scanned(other_sdist), rules_hash="h3")
        release = db.release("pkg", "1.0")
        assert release is not None
        assert [d["scan_id"] for d in release.distributions] == [second, third, fourth]
        assert release.verdict == "findings" and db.rule_counts()[0]["releases"] == 1

        failed = TargetResult.failed("pkg==1.0", "release", "pkg", "1.0", "pkg-1.0.tar.gz: HTTP 404")
        fifth = db.record(failed, rules_hash="h3")
        release = db.release("pkg", "1.0")
        assert release is not None and [s.id for s in release.scans] == [fifth, fourth, third, second]
        assert (release.verdict, release.error) == ("findings", "pkg-1.0.tar.gz: HTTP 404")
        assert release.json()["id"] == fifth and release.json()["verdict"] == "findings"


def test_a_file_stored_without_its_bytes_gives_way_only_to_a_scan_of_the_listed_bytes(
    tmp_path: Path, scanner: Scanner
) -> None:
    filename, data = wheel("pkg", "1.0", {"pkg/__init__.py": b"pass\n"})
    _, other_data = wheel("pkg", "1.0", {"pkg/__init__.py": b"print('other host')\n"})

    def scanned(payload: bytes) -> TargetResult:
        release = scanner.scan_release("pkg", "1.0", [(filename, payload, f"https://files/{filename}")])
        return TargetResult.from_release("pkg==1.0", release)

    with Store(tmp_path / "s.db") as db:
        kept_out = db.record(kept_out_result(filename, hashlib.sha256(data).hexdigest()), rules_hash="h")
        release = db.release("pkg", "1.0")
        assert release is not None and release.verdict == "incomplete"
        other = db.record(scanned(other_data), rules_hash="h")  # other bytes of that name: another file
        release = db.release("pkg", "1.0")
        assert release is not None and release.verdict == "incomplete"
        assert [(d["scan_id"], d["complete"]) for d in release.distributions] == [
            (kept_out, False),
            (other, True),
        ]
        scan_id = db.record(scanned(data), rules_hash="h")
        release = db.release("pkg", "1.0")
        assert release is not None and (release.verdict, release.error) == ("clean", None)
        assert [(d["name"], d["scan_id"]) for d in release.distributions] == [
            (filename, other),
            (filename, scan_id),
        ]


def test_a_file_stored_without_a_listed_digest_gives_way_to_a_later_scan_of_its_name(
    tmp_path: Path, scanner: Scanner
) -> None:
    """The index listed no digest (or the store is older than version 4): the name alone tells the file."""
    filename, data = wheel("pkg", "1.0", {"pkg/__init__.py": b"pass\n"})
    release_result = TargetResult.from_release(
        "pkg==1.0", scanner.scan_release("pkg", "1.0", [(filename, data, f"https://files/{filename}")])
    )
    with Store(tmp_path / "s.db") as db:
        earlier = db.record(release_result, rules_hash="h")
        db.record(kept_out_result(filename, None), rules_hash="h")
        release = db.release("pkg", "1.0")
        assert release is not None and release.verdict == "incomplete"  # read before: not settled
        scan_id = db.record(release_result, rules_hash="h")
        release = db.release("pkg", "1.0")
        assert release is not None and (release.verdict, release.error) == ("clean", None)
        assert [d["scan_id"] for d in release.distributions] == [scan_id] and earlier < scan_id


def test_a_finding_of_an_earlier_rule_set_stays_until_that_rule_set_reads_the_file_again(
    tmp_path: Path, scanner: Scanner, narrower: Scanner
) -> None:
    """The newest scan of a file gives its verdict; what an earlier rule set reported that it did not stays
    shown (and counted by rule) until a later scan under that rule set reads the file."""
    files = [sdist("pkg", "1.0", {"setup.py": b"# " + MARKER + b"\n", "light.py": b"# " + LIGHT_MARKER})]

    def scanned(engine: Scanner) -> TargetResult:
        release = engine.scan_release("pkg", "1.0", [(f, data, f"https://files/{f}") for f, data in files])
        return TargetResult.from_release("pkg==1.0", release)

    with Store(tmp_path / "s.db") as db:
        first = db.record(scanned(scanner), rules_hash="A")  # both rules
        second = db.record(scanned(narrower), rules_hash="B")  # light_marker only
        release = db.release("pkg", "1.0")
        assert release is not None and release.verdict == "findings"
        assert set(release.rules_matched) == {"test_marker", "light_marker"} and release.score == 6
        assert [(d["scan_id"], d["earlier_rule_set"]) for d in release.distributions] == [
            (first, True),
            (second, False),
        ]
        assert {(c["rule"], c["releases"], c["files"]) for c in db.rule_counts()} == {
            ("test_marker", 1, 1),
            ("light_marker", 1, 1),  # one member, matched under both rule sets
        }
        # Rule set A reads the file again and does not report test_marker (limits, say): it is gone.
        db.record(scanned(narrower), rules_hash="A")
        release = db.release("pkg", "1.0")
        assert release is not None and release.rules_matched == ["light_marker"]
        assert not any(d["earlier_rule_set"] for d in release.distributions)
        assert [c["rule"] for c in db.rule_counts()] == ["light_marker"]


def test_listed_scans_carry_their_releases_verdict_and_list_as_findings_what_it_flags_now(
    tmp_path: Path, scanner: Scanner, narrower: Scanner
) -> None:
    """`report`'s list (:meth:`Store.listed_scans`): each scan with its own verdict and its release's as
    `release()` gives it; "recent findings" are the scans of releases flagged as a whole. A clean scan of
    the wheel alone (a file added later) is listed with the sdist's findings; once rule set A reads the
    sdist whole again and does not report test_marker (refuted), no scan of the release is a finding,
    though the first scan's own verdict stays `findings` (what :meth:`Store.scans` filters by)."""
    sdist_file = sdist("pkg", "1.0", {"setup.py": b"import os\n# " + MARKER + b"\n"})
    wheel_file = wheel("pkg", "1.0", {"pkg/__init__.py": b"pass\n"})

    def scanned(engine: Scanner, *files: tuple[str, bytes]) -> TargetResult:
        release = engine.scan_release("pkg", "1.0", [(f, data, f"https://files/{f}") for f, data in files])
        return TargetResult.from_release("pkg==1.0", release)

    def listed(db: Store, findings_only: bool = False) -> list[tuple[int, str, int, str, int]]:
        return [
            (item.scan.id, item.scan.verdict, item.scan.score, item.release_verdict, item.release_score)
            for item in db.listed_scans(findings_only=findings_only)
        ]

    with Store(tmp_path / "s.db") as db:
        first = db.record(scanned(scanner, sdist_file), rules_hash="A")
        partial = db.record(scanned(scanner, wheel_file), rules_hash="A")
        release = db.release("pkg", "1.0")
        assert release is not None and (release.verdict, release.score) == ("findings", 5)
        both = [(partial, "clean", 0, "findings", 5), (first, "findings", 5, "findings", 5)]
        assert listed(db) == listed(db, findings_only=True) == both
        assert [scan.id for scan in db.scans(findings_only=True)] == [first]  # by each scan's own verdict

        refuting = db.record(scanned(narrower, sdist_file), rules_hash="A")
        release = db.release("pkg", "1.0")
        assert release is not None and (release.verdict, release.score) == ("clean", 0)
        assert listed(db, findings_only=True) == []
        assert listed(db) == [
            (refuting, "clean", 0, "clean", 0),
            (partial, "clean", 0, "clean", 0),
            (first, "findings", 5, "clean", 0),
        ]
        assert db.listed_scans(limit=1)[0].json() == {
            **db.scans(limit=1)[0].json(),
            "release_verdict": "clean",
            "release_score": 0,
        }


def test_listed_scans_give_each_release_as_release_shows_it(tmp_path: Path) -> None:
    """Over random stores (two spellings of each version, three rule sets, files read whole or not, files
    not fetched with and without a listed digest, errors about files or the whole release, scores, scans
    on the same day): every listed scan's release verdict and score are `release()`'s; the list is
    `scans()`'s, in its order; "findings only" is the scans of the releases flagged, bounded by `limit`
    and `since` after that filter."""
    disagreeing = []
    for seed in range(150):
        rnd = random.Random(seed)
        path = tmp_path / f"{seed}.db"
        _random_store(path, rnd, varied=True)
        with Store(path, readonly=True) as db:
            listed = db.listed_scans()
            assert [item.scan for item in listed] == db.scans(), seed
            for item in listed:
                release = db.release(item.scan.name, item.scan.version)
                assert release is not None
                if (item.release_verdict, item.release_score) != (release.verdict, release.score):
                    disagreeing.append((seed, item, release.verdict, release.score))
            flagged = [item for item in listed if item.release_verdict == "findings"]
            assert db.listed_scans(findings_only=True) == flagged, seed
            assert db.listed_scans(findings_only=True, limit=2) == flagged[:2], seed
            assert db.listed_scans(limit=3) == listed[:3], seed
            since = "2026-01-03"
            assert db.listed_scans(since=since, findings_only=True) == [
                item for item in flagged if item.scan.scanned_at >= since
            ], seed
    assert disagreeing == []


def test_readers_run_while_a_writer_writes_and_never_see_half_a_release(
    tmp_path: Path, scanner: Scanner
) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    results = [release_result(scanner, f"pkg{i}", "1.0", marked=i % 2 == 0) for i in range(60)]
    done = threading.Event()
    errors: list[BaseException] = []
    reads = [0]

    def write() -> None:
        try:
            with Store(path) as db:
                for result in results:
                    db.record(result, rules_hash="h")
        except BaseException as err:
            errors.append(err)
        finally:
            done.set()

    def read() -> None:
        try:
            with Store(path, readonly=True) as db:
                while not done.is_set():
                    rows = db._query(
                        "SELECT s.id, COUNT(d.id) FROM scans s LEFT JOIN distributions d ON d.scan_id = s.id "
                        "GROUP BY s.id"
                    )
                    assert all(count == 2 for _, count in rows), rows
                    reads[0] += 1
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=write), *(threading.Thread(target=read) for _ in range(2))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert reads[0] > 0
    with Store(path, readonly=True) as db:
        assert db.count("scans") == 60 and db.count("distributions") == 120


CHILD = r"""
import sys
from dragonfly_hybrid._core import Scanner
from dragonfly_hybrid.report import TargetResult
from dragonfly_hybrid.rules_loader import load_rules
from dragonfly_hybrid.store.db import Store

from tests.fakes.pypi import MARKER, sdist

scanner = Scanner(load_rules([sys.argv[2]]), threads=1)
# Many matching files per release: every transaction writes hundreds of rows.
files = {f"m{i}.py": b"# " + MARKER for i in range(150)}
data = sdist("pkg", "1.0", files)[1]
release = scanner.scan_release("pkg", "1.0", [("pkg-1.0.tar.gz", data, None)])
with Store(sys.argv[1]) as db:
    for i in range(100000):
        result = TargetResult.from_release(f"pkg{i}==1.0", release)
        result = TargetResult(**{**result.__dict__, "name": f"pkg{i}"})
        db.record(result, rules_hash="h")
        print(i, flush=True)
"""


def test_kill_9_mid_write_leaves_a_sound_store_with_every_committed_release(
    tmp_path: Path, rules_dir: Path
) -> None:
    path = tmp_path / "s.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(rules_dir)],
        cwd=Path(__file__).resolve().parents[1],  # the repository root: `tests` imports as a package
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    committed = []
    assert child.stdout is not None
    try:
        for line in child.stdout:
            committed.append(int(line))
            if len(committed) >= 15:
                break
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL, child.stderr.read() if child.stderr else ""
    assert len(committed) >= 15
    with Store(path) as db:
        assert db.integrity_check() == "ok"
        for i in committed:
            scan = db.latest_scan(f"pkg{i}", "1.0")
            assert scan is not None and scan.verdict == "findings"
            assert len(db.findings(scan.id)) == 150
        # Whatever was in flight is either all there or not there at all.
        rows = db._query(
            "SELECT s.id, COUNT(f.id) FROM scans s JOIN distributions d ON d.scan_id = s.id "
            "JOIN files f ON f.distribution_id = d.id GROUP BY s.id"
        )
        assert all(count == 150 for _, count in rows)
        assert db.count("scans") >= len(committed)
        assert json.loads(db._query("SELECT rules_matched FROM scans LIMIT 1")[0][0]) == ["test_marker"]


def test_an_error_counts_until_a_later_error_free_scan_stored_its_files_and_more(
    tmp_path: Path, scanner: Scanner
) -> None:
    """The store cannot tell which file an error was about (a file that could not be downloaded leaves no
    row): a scan's error counts until a later scan without an error read every file it read, the same
    bytes, and a file name more. The same files, others, other bytes, or a scan with an error of its own
    do not settle it."""
    sdist_file = sdist("pkg", "1.0", {"setup.py": b"pass\n"})
    wheel_file = wheel("pkg", "1.0", {"pkg/__init__.py": b"pass\n"})
    other_sdist = sdist("pkg", "1.0", {"setup.py": b"x = 1\n"})
    assert other_sdist[0] == sdist_file[0] and other_sdist[1] != sdist_file[1]

    def scanned(*files: tuple[str, bytes], error: str | None = None) -> TargetResult:
        release = scanner.scan_release("pkg", "1.0", [(f, data, f"https://files/{f}") for f, data in files])
        return TargetResult.from_release("pkg==1.0", release, error)

    def shown(db: Store) -> tuple[str, str | None, list[int]]:
        release = db.release("pkg", "1.0")
        assert release is not None
        return release.verdict, release.error, [s.id for s in release.scans]

    lost = f"could not download {wheel_file[0]}: HTTP 404"
    with Store(tmp_path / "s.db") as db:
        failed = db.record(scanned(sdist_file, error=lost), rules_hash="h")
        assert shown(db) == ("incomplete", lost, [failed])
        dated = db.release("pkg", "1.0")
        assert dated is not None
        label = f"scan {failed}, {dated.newest.scanned_at[:19].replace('T', ' ')} UTC"
        same = db.record(scanned(sdist_file), rules_hash="h")  # hash mode: the sdist alone
        assert shown(db) == ("incomplete", f"{lost} ({label})", [same, failed])
        wheel_only = db.record(scanned(wheel_file), rules_hash="h")  # not the sdist scan 1 read
        assert shown(db) == ("incomplete", f"{lost} ({label})", [wheel_only, same, failed])
        others = db.record(scanned(other_sdist, wheel_file), rules_hash="h")  # another host's sdist
        assert shown(db)[:2] == ("incomplete", f"{lost} ({label})") and failed in shown(db)[2]
        erring = db.record(scanned(sdist_file, wheel_file, error="timeout"), rules_hash="h")
        assert shown(db)[0] == "incomplete" and failed in shown(db)[2]
        whole = db.record(scanned(sdist_file, wheel_file), rules_hash="h")
        verdict, error, scans = shown(db)
        # `whole` read every file scan 1 read and the wheel: scan 1's error is settled. It read no more
        # than `erring`, whose error may be about a third file: that one still counts.
        assert verdict == "incomplete" and error is not None and error.startswith(f"timeout (scan {erring}, ")
        assert scans == [whole, erring, others]  # `others`: for its other sdist's bytes


def test_record_unless_stored_counts_only_reads_under_its_rule_set_and_each_copy_of_a_name(
    tmp_path: Path, scanner: Scanner
) -> None:
    """Red-team findings (thirteenth pass): files read under another rule set (a narrower `scan -r`) made a
    watcher's result "stored already" and it was dropped; a name listed twice collapsed to one digest in
    the mapping of files, so a copy never read could pass for read; a file listed without a digest passed
    for read when another host's file of that name was."""
    result = release_result(scanner, "pkg", "1.0")
    files = {d.name: d.sha256 for d in result.distributions}
    with Store(tmp_path / "s.db") as db:
        db.record(result, rules_hash="narrower")
        assert db.record_unless_stored(result, files, rules_hash="h") is not None
        assert db.record_unless_stored(result, files, rules_hash="h") is None
        sdist_name, sdist_digest = next(iter(files.items()))
        copies = [(name, digest, None) for name, digest in files.items()]
        assert db.record_unless_stored(result, copies, rules_hash="h") is None
        twice = [*copies, (sdist_name, "ab" * 32, None)]  # the same name listed again, other bytes
        assert db.record_unless_stored(result, twice, rules_hash="h") is not None
        stored = db.stored_files("pkg", "1.0", "h")
        assert not db.stored_files("pkg", "1.0", "other").has(sdist_name, sdist_digest)
        # No digest listed: the URL it was read from tells the file.
        assert stored.has(sdist_name, None, f"https://files/{sdist_name}")
        assert stored.has(sdist_name, None)
        assert not stored.has(sdist_name, None, f"https://elsewhere/{sdist_name}")
        elsewhere = [(name, None, f"https://elsewhere/{name}") for name in files]
        assert db.record_unless_stored(result, elsewhere, rules_hash="h") is not None


def _synthetic_store(path: Path) -> sqlite3.Connection:
    Store(path).close()
    raw = sqlite3.connect(path)
    raw.executemany(
        "INSERT INTO rulesets (id, hash, count, first_seen) VALUES (?, ?, 1, '2026-01-01T00:00:00+00:00')",
        [(1, "a" * 64), (2, "b" * 64)],
    )
    raw.execute("INSERT INTO releases (id, name, normalized, version) VALUES (1, 'pkg', 'pkg', '1.0')")
    return raw


def _synthetic_scan(
    raw: sqlite3.Connection, scan_id: int, ruleset: int, error: str | None = None, per_file: bool = False
) -> None:
    raw.execute(
        "INSERT INTO scans (id, release_id, ruleset_id, source, scanned_at, verdict, score, rules_matched, "
        "error, error_per_file) VALUES (?, 1, ?, 'scan', '2026-01-01T00:00:00Z', 'clean', 0, '[]', ?, ?)",
        (scan_id, ruleset, error, int(per_file)),
    )


def _synthetic_file(
    raw: sqlite3.Connection, scan_id: int, name: str, sha256: str, rule: str | None = None, url: str = ""
) -> None:
    dist_id = raw.execute(
        "INSERT INTO distributions (scan_id, filename, url, format, size, sha256, files_scanned, "
        "bytes_scanned, score, rules_matched, top_file, verdict, complete) "
        "VALUES (?, ?, ?, 'zip', 1, ?, 1, 1, 0, ?, NULL, 'clean', ?)",
        (scan_id, name, url or f"https://files/{name}", sha256, json.dumps([rule] if rule else []),
         int(sha256 != "")),
    ).lastrowid  # fmt: skip
    if rule is not None:
        _synthetic_hit(raw, dist_id, "x.py", rule)


def _synthetic_hit(raw: sqlite3.Connection, dist_id: int | None, path: str, rule: str) -> None:
    """A file ``path`` of the distribution ``dist_id`` that matched ``rule`` (weight 5)."""
    file_id = raw.execute(
        "INSERT INTO files (distribution_id, path, size, sha256, score) VALUES (?, ?, 1, '', 5)",
        (dist_id, path),
    ).lastrowid
    raw.execute(
        "INSERT INTO matches (file_id, rule, namespace, weight, tags, metadata, patterns) "
        "VALUES (?, ?, 'default', 5, '[]', '{}', '[]')",
        (file_id, rule),
    )


def _random_store(path: Path, rnd: random.Random, *, varied: bool = False) -> None:
    """A random store at ``path``: releases pkg 1.0 (stored as `1.0` and `1.0.0`) and other 2 (as `2` and
    `2.0`), 1 to 8 scans, each under one of three rule sets reading 1 to 3 of three files (a tenth not
    fetched), each with rules r1, r2, both or none, read whole or not. ``varied``: scans on a few days
    (several on one), scores, errors (about the files not fetched or the whole release) and digests listed
    for files not fetched too."""
    raw = _synthetic_store(path)
    raw.execute("INSERT INTO rulesets (id, hash, count, first_seen) VALUES (3, ?, 1, '')", ("c" * 64,))
    raw.executemany(
        "INSERT INTO releases (id, name, normalized, version) VALUES (?, ?, ?, ?)",
        [(2, "pkg", "pkg", "1.0.0"), (3, "other", "other", "2"), (4, "other", "other", "2.0")],
    )
    for scan_id in range(1, rnd.randint(2, 9)):
        day = rnd.randint(1, 4) if varied else scan_id
        error = rnd.choice([None, None, None, "could not download", "index unreachable"]) if varied else None
        raw.execute(
            "INSERT INTO scans (id, release_id, ruleset_id, source, scanned_at, verdict, score, "
            "rules_matched, error, error_per_file) VALUES (?, ?, ?, 'scan', ?, 'clean', 0, '[]', ?, ?)",
            (scan_id, rnd.randint(1, 4), rnd.randint(1, 3), f"2026-01-{day:02d}T00:00:00Z", error,
             int(error == "could not download")),
        )  # fmt: skip
        for file in rnd.sample(range(3), rnd.randint(1, 3)):
            digest = rnd.choice("ab") * 64 if rnd.random() < 0.9 else ""
            matched = bool(digest) and (not varied or rnd.random() < 0.3)  # varied: most files match nothing
            rules = sorted(rnd.sample(["r1", "r2"], rnd.randint(0, 2))) if matched else []
            score = rnd.randint(1, 9) if varied and rules else 0
            listed = rnd.choice([None, "a" * 64]) if varied and not digest else None
            dist_id = raw.execute(
                "INSERT INTO distributions (scan_id, filename, url, format, size, sha256, files_scanned, "
                "bytes_scanned, score, rules_matched, top_file, verdict, complete, listed_sha256) "
                "VALUES (?, ?, NULL, 'zip', 1, ?, 1, 1, ?, ?, NULL, 'clean', ?, ?)",
                (
                    scan_id,
                    f"f{file}.whl",
                    digest,
                    score,
                    json.dumps(rules),
                    int(bool(digest) and rnd.random() < 0.7),
                    listed,
                ),
            ).lastrowid
            for rule in rules:
                _synthetic_hit(raw, dist_id, "m.py", rule)
    raw.commit()
    raw.close()


def test_hits_per_rule_are_what_the_release_views_show(tmp_path: Path) -> None:
    """`report --by-rule` and `report NAME==VERSION` apply one rule: over random stores (two spellings of
    each version, three rule sets, files read whole or not, rescans, files not fetched), the counts per
    rule are those of the releases as `release()` shows them. (Red-team finding, thirteenth pass: the SQL
    copy of the rule counted each spelling as a release and a rescan that did not read the file whole as
    refuting.)"""
    disagreeing = []
    for seed in range(150):
        rnd = random.Random(seed)
        path = tmp_path / f"{seed}.db"
        _random_store(path, rnd)
        with Store(path, readonly=True) as db:
            viewed: dict[str, list[int]] = {}
            for name, version in (("pkg", "1.0"), ("other", "2")):
                release = db.release(name, version)
                files: dict[str, set[tuple[str, str, str]]] = {}
                for d in release.distributions if release is not None else []:
                    for f in d["files"]:
                        for m in f["matches"]:
                            files.setdefault(m["rule"], set()).add((d["name"], d["sha256"], f["path"]))
                for rule, found in files.items():
                    viewed.setdefault(rule, [0, 0])
                    viewed[rule][0] += 1
                    viewed[rule][1] += len(found)
            counted = {c["rule"]: [c["releases"], c["files"]] for c in db.rule_counts()}
            if counted != viewed:
                disagreeing.append((seed, counted, viewed))
    assert disagreeing == []
