"""How `report` scales with a results store's size: a synthetic store of ``DFH_BENCH_STORE_RELEASES``
releases (default 20,000), each scanned under rule set A (two distributions, one matching file each, two
rules), every third rescanned under rule set B (the same bytes, one rule fewer: its earlier finding stays
shown, the case that made the combined view an O(n^2) query once). Every row in the same run:

* ``read-every-hit``: the baseline, one SQL pass joining every match to its file, distribution and scan;
* ``rule-counts``: ``Store.rule_counts()`` (what ``report --by-rule`` prints);
* ``release-x200``: ``Store.release()`` of 200 releases spread over the store (``report NAME==VERSION``);
* ``cli-by-rule``: ``python -m dragonfly_hybrid.cli report --by-rule -f json`` in a fresh process;
* ``list-scans``: ``Store.scans(limit=100_000)``, every scan (``report --all --limit 100000`` without the
  release verdicts: each scan's own row);
* ``list-scans-with-release``: ``Store.listed_scans(limit=100_000)``, the same scans each with its release's
  verdict and score as ``Store.release()`` combines them (what ``report --all`` lists); its ratio to
  ``list-scans`` is printed too;
* ``list-findings-with-release``: ``Store.listed_scans(findings_only=True, limit=100_000)`` (``report``'s
  recent findings: the scans of releases flagged as a whole);
* ``findings-50`` and ``findings-50-with-release``: ``report`` as it runs by default (recent findings,
  ``--limit 50``): ``Store.scans(findings_only=True, limit=50)`` (each scan's own verdict, as ``report``
  listed them before) and ``Store.listed_scans(findings_only=True, limit=50)`` (one pass over the
  distributions for the projects with a finding, then 50 scans' releases combined); their ratio is printed;
* ``rule-counts-wide``: ``Store.rule_counts()`` on another store, one release of ``DFH_BENCH_WIDE_FILES``
  files (default 4,000) rescanned under a narrower rule set (a shape the SQL copy of the rule made
  quadratic: 11 s at 4,000 files);
* ``release-erring-scans``: ``Store.release()`` of one release with 4,000 scans whose error is about no
  one file (the index could not be read) and 4,000 without (each erring scan was once compared with every
  later one: 2.6 s at 2,000 of each);
* ``shown-rows-unlisted``: the combined view's rule alone (``store.db._shown_rows``) on 20,000 files not
  fetched, listed without a digest, beside 20,000 read (each was once compared with every read: 9.8 s);
* ``findings-one-project`` and ``findings-one-project-own``: ``report``'s recent findings (``--limit 50``)
  on another store, one project of ``DFH_BENCH_VERSIONS`` versions (default 40,000), each scanned clean but
  its oldest, flagged: ``Store.listed_scans`` (each release's versions were read and compared again for
  each page of candidates, and every candidate combined: 23 s at 160,000 versions) and ``Store.scans``
  (each scan's own verdict); their ratio is printed.

The last three are the shapes the thirteenth red-team pass found quadratic; they are timed here, not in
the test suite.

The summary prints each row's median and its ratio to ``read-every-hit``: a ratio that grows with the
store's size is a query that does not scale.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid.store import db as store_db
from dragonfly_hybrid.store.db import Store

from bench.conftest import medians_printed, record_median

REPO = Path(__file__).resolve().parents[1]
GROUP = "store"
BASELINE = "read-every-hit"


def _releases() -> int:
    return int(os.environ.get("DFH_BENCH_STORE_RELEASES", "20000"))


def _rounds() -> int:
    return int(os.environ.get("DFH_BENCH_ROUNDS", "3"))


def _write_store(
    path: Path,
    releases: list[tuple[int, str]],
    scans: list[tuple[int, int, int, str, str]],
    dists: list[tuple[int, int, str, str, str]],
    matches: list[tuple[int, str]],
) -> None:
    """A store at ``path`` of rule sets 1 and 2 and these rows: releases (id, name), scans (id, release,
    rule set, time, rules matched), distributions (id, scan, file name, sha256, rules matched) each with
    one file, ``x.py`` (its id the distribution's), and matches (file, rule)."""
    Store(path).close()  # the current schema
    db = sqlite3.connect(path)
    db.executemany(
        "INSERT INTO rulesets (id, hash, count, first_seen) VALUES (?, ?, 2, '2026-01-01T00:00:00+00:00')",
        [(1, "a" * 64), (2, "b" * 64)],
    )
    db.executemany(
        "INSERT INTO releases (id, name, normalized, version) VALUES (?, ?, ?, '1.0')",
        [(release_id, name, name) for release_id, name in releases],
    )
    db.executemany(
        "INSERT INTO scans (id, release_id, ruleset_id, source, scanned_at, verdict, score, rules_matched) "
        "VALUES (?, ?, ?, 'scan', ?, 'findings', 5, ?)",
        scans,
    )
    db.executemany(
        "INSERT INTO distributions (id, scan_id, filename, url, format, size, sha256, files_scanned, "
        "bytes_scanned, score, rules_matched, top_file, verdict, complete) "
        "VALUES (?, ?, ?, NULL, 'zip', 100, ?, 10, 1000, 5, ?, 'x.py', 'findings', 1)",
        dists,
    )
    db.executemany(
        "INSERT INTO files (id, distribution_id, path, size, sha256, score) VALUES (?, ?, 'x.py', 10, '', 5)",
        [(dist[0], dist[0]) for dist in dists],
    )
    db.executemany(
        "INSERT INTO matches (file_id, rule, namespace, weight, tags, metadata, patterns) "
        "VALUES (?, ?, 'default', 5, '[]', '{}', '[]')",
        matches,
    )
    db.commit()
    db.close()


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "results.db"
    scans: list[tuple[int, int, int, str, str]] = []
    dists: list[tuple[int, int, str, str, str]] = []
    matches: list[tuple[int, str]] = []
    for i in range(_releases()):
        for ruleset in (1, 2) if i % 3 == 0 else (1,):
            rules = ["bench_a", "bench_b"] if ruleset == 1 else ["bench_a"]
            scan_id = len(scans) + 1
            scans.append((scan_id, i + 1, ruleset, f"2026-01-0{ruleset}T00:00:00+00:00", json.dumps(rules)))
            for d in range(2):
                dist_id = len(dists) + 1
                dists.append((dist_id, scan_id, f"p{i}-1.0-{d}.whl", f"{i:032x}{d:032x}", json.dumps(rules)))
                matches.extend((dist_id, rule) for rule in rules)
    _write_store(path, [(i + 1, f"p{i}") for i in range(_releases())], scans, dists, matches)
    print(f"\n[store] {path}: {_releases()} releases, {len(scans)} scans, {len(dists)} distributions")
    return path


@pytest.fixture(scope="module")
def medians(request: pytest.FixtureRequest) -> Iterator[dict[str, float]]:
    yield from medians_printed(request, f"store of {_releases()} releases", "read-every-hit")


@pytest.mark.benchmark(group=GROUP)
def test_read_every_hit(benchmark: Any, store_path: Path, medians: dict[str, float]) -> None:
    def read() -> int:
        with sqlite3.connect(store_path) as db:
            return int(
                db.execute(
                    "SELECT COUNT(*) FROM matches m JOIN files f ON f.id = m.file_id "
                    "JOIN distributions d ON d.id = f.distribution_id JOIN scans s ON s.id = d.scan_id"
                ).fetchone()[0]
            )

    assert benchmark.pedantic(read, rounds=_rounds(), iterations=1) > 0
    record_median(benchmark, medians, GROUP, BASELINE)


@pytest.mark.benchmark(group=GROUP)
def test_rule_counts(benchmark: Any, store_path: Path, medians: dict[str, float]) -> None:
    def counts() -> list[dict[str, Any]]:
        with Store(store_path) as db:
            return db.rule_counts()

    rules = {r["rule"]: r["releases"] for r in benchmark.pedantic(counts, rounds=_rounds(), iterations=1)}
    # The rescan under B lacks bench_b: its finding under A still counts in every release.
    assert rules == {"bench_a": _releases(), "bench_b": _releases()}
    record_median(benchmark, medians, GROUP, "rule-counts")


@pytest.mark.benchmark(group=GROUP)
def test_release(benchmark: Any, store_path: Path, medians: dict[str, float]) -> None:
    step = max(1, _releases() // 200)

    def releases() -> list[str]:
        with Store(store_path) as db:
            shown = [db.release(f"p{i}", "1.0") for i in range(0, step * 200, step)]
        return [r.verdict for r in shown if r is not None]

    assert set(benchmark.pedantic(releases, rounds=_rounds(), iterations=1)) == {"findings"}
    record_median(benchmark, medians, GROUP, "release-x200")


@pytest.mark.benchmark(group=GROUP)
def test_cli_by_rule(benchmark: Any, store_path: Path, medians: dict[str, float]) -> None:
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "report", "--by-rule", "--store"]
    command.append(str(store_path))
    env = {**os.environ, "PYTHONPATH": str(REPO / "python")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)

    def run() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*command, "-f", "json"], env=env, capture_output=True, check=False)

    done = benchmark.pedantic(run, rounds=_rounds(), iterations=1)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert {r["rule"] for r in json.loads(done.stdout)["rules"]} == {"bench_a", "bench_b"}
    record_median(benchmark, medians, GROUP, "cli-by-rule")


LIST_LIMIT = 100_000
"""``report --limit`` in the listing rows: more than the default store's scans, so every scan is listed."""


@pytest.mark.benchmark(group=GROUP)
def test_list_scans(benchmark: Any, store_path: Path, medians: dict[str, float]) -> None:
    def listing() -> int:
        with Store(store_path) as db:
            return len(db.scans(limit=LIST_LIMIT))

    assert benchmark.pedantic(listing, rounds=_rounds(), iterations=1) == _releases() + (_releases() + 2) // 3
    record_median(benchmark, medians, GROUP, "list-scans")


@pytest.mark.benchmark(group=GROUP)
def test_list_scans_with_release_verdicts(
    benchmark: Any, store_path: Path, medians: dict[str, float]
) -> None:
    def listing() -> set[tuple[str, str, int]]:
        with Store(store_path) as db:
            listed = db.listed_scans(limit=LIST_LIMIT)
        assert len(listed) == _releases() + (_releases() + 2) // 3
        return {(item.scan.verdict, item.release_verdict, item.release_score) for item in listed}

    assert benchmark.pedantic(listing, rounds=_rounds(), iterations=1) == {("findings", "findings", 5)}
    record_median(benchmark, medians, GROUP, "list-scans-with-release")
    if "list-scans" in medians and "list-scans-with-release" in medians:
        ratio = medians["list-scans-with-release"] / medians["list-scans"]
        print(f"\n[store] listing {LIST_LIMIT:,} scans: with the release verdicts / without: {ratio:.2f}x")


@pytest.mark.benchmark(group=GROUP)
def test_list_findings_with_release_verdicts(
    benchmark: Any, store_path: Path, medians: dict[str, float]
) -> None:
    def listing() -> int:
        with Store(store_path) as db:
            return len(db.listed_scans(findings_only=True, limit=LIST_LIMIT))

    assert benchmark.pedantic(listing, rounds=_rounds(), iterations=1) == _releases() + (_releases() + 2) // 3
    record_median(benchmark, medians, GROUP, "list-findings-with-release")


@pytest.mark.benchmark(group=GROUP)
def test_recent_findings(benchmark: Any, store_path: Path, medians: dict[str, float]) -> None:
    def listing() -> int:
        with Store(store_path) as db:
            return len(db.scans(findings_only=True, limit=50))

    assert benchmark.pedantic(listing, rounds=_rounds(), iterations=1) == min(50, _releases())
    record_median(benchmark, medians, GROUP, "findings-50")


@pytest.mark.benchmark(group=GROUP)
def test_recent_findings_with_release_verdicts(
    benchmark: Any, store_path: Path, medians: dict[str, float]
) -> None:
    def listing() -> int:
        with Store(store_path) as db:
            return len(db.listed_scans(findings_only=True, limit=50))

    assert benchmark.pedantic(listing, rounds=_rounds(), iterations=1) == min(50, _releases())
    record_median(benchmark, medians, GROUP, "findings-50-with-release")
    if "findings-50" in medians and "findings-50-with-release" in medians:
        ratio = medians["findings-50-with-release"] / medians["findings-50"]
        print(f"\n[store] recent findings (--limit 50): with the release verdicts / without: {ratio:.1f}x")


@pytest.fixture(scope="module")
def wide_store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One release of ``DFH_BENCH_WIDE_FILES`` files, each matching under rule set A, rescanned under B."""
    files = int(os.environ.get("DFH_BENCH_WIDE_FILES", "4000"))
    path = tmp_path_factory.mktemp("wide") / "results.db"
    when = "2026-01-01T00:00:00+00:00"
    dists = [
        (scan * files + i + 1, scan + 1, f"w-{i}.whl", f"{i:064x}", '["bench_a"]' if scan == 0 else "[]")
        for scan in range(2)
        for i in range(files)
    ]
    matches = [(i + 1, "bench_a") for i in range(files)]
    _write_store(path, [(1, "wide")], [(1, 1, 1, when, "[]"), (2, 1, 2, when, "[]")], dists, matches)
    return path


@pytest.mark.benchmark(group=GROUP)
def test_rule_counts_wide_release(benchmark: Any, wide_store_path: Path, medians: dict[str, float]) -> None:
    def counts() -> list[dict[str, Any]]:
        with Store(wide_store_path) as db:
            return db.rule_counts()

    rules = benchmark.pedantic(counts, rounds=_rounds(), iterations=1)
    assert [(r["rule"], r["releases"]) for r in rules] == [("bench_a", 1)]
    record_median(benchmark, medians, GROUP, "rule-counts-wide")


@pytest.fixture(scope="module")
def erring_store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("erring") / "results.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO rulesets (id, hash, count, first_seen) VALUES (1, ?, 1, '2026-01-01T00:00:00Z')",
        ("a" * 64,),
    )
    db.execute("INSERT INTO releases (id, name, normalized, version) VALUES (1, 'pkg', 'pkg', '1.0')")
    db.executemany(
        "INSERT INTO scans (id, release_id, ruleset_id, source, scanned_at, verdict, score, rules_matched, "
        "error) VALUES (?, 1, 1, 'scan', '2026-01-01T00:00:00Z', 'clean', 0, '[]', ?)",
        [(i, "the index could not be read" if i <= 4000 else None) for i in range(1, 8001)],
    )
    db.executemany(
        "INSERT INTO distributions (scan_id, filename, url, format, size, sha256, files_scanned, "
        "bytes_scanned, score, rules_matched, top_file, verdict, complete) "
        "VALUES (?, ?, NULL, 'zip', 1, ?, 1, 1, 0, '[]', NULL, 'clean', 1)",
        [(i, name, name[0] * 64) for i in range(1, 8001) for name in ("a.whl", "b.whl")],
    )
    db.commit()
    db.close()
    return path


@pytest.mark.benchmark(group=GROUP)
def test_release_with_erring_scans(
    benchmark: Any, erring_store_path: Path, medians: dict[str, float]
) -> None:
    def release() -> str:
        with Store(erring_store_path) as db:
            shown = db.release("pkg", "1.0")
        assert shown is not None
        return shown.verdict

    assert benchmark.pedantic(release, rounds=_rounds(), iterations=1) == "incomplete"
    record_median(benchmark, medians, GROUP, "release-erring-scans")


@pytest.mark.benchmark(group=GROUP)
def test_shown_rows_unlisted(benchmark: Any, medians: dict[str, float]) -> None:
    row = store_db._StoredRow
    rows = [row(i, 1, 1, f"gone{i}.whl", "", None, False, frozenset()) for i in range(20_000)]
    rows += [
        row(20_000 + i, 2, 1, f"read{i}.whl", f"{i:064x}", None, True, frozenset()) for i in range(20_000)
    ]
    shown = benchmark.pedantic(lambda: store_db._shown_rows(rows), rounds=_rounds(), iterations=1)
    assert len(shown) == 40_000
    record_median(benchmark, medians, GROUP, "shown-rows-unlisted")


@pytest.fixture(scope="module")
def one_project_store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    versions = int(os.environ.get("DFH_BENCH_VERSIONS", "40000"))
    path = tmp_path_factory.mktemp("one-project") / "results.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO rulesets (id, hash, count, first_seen) VALUES (1, ?, 1, '2026-01-01T00:00:00Z')",
        ("a" * 64,),
    )
    db.executemany(
        "INSERT INTO releases (id, name, normalized, version) VALUES (?, 'big', 'big', ?)",
        [(i, f"1.{i}") for i in range(1, versions + 1)],
    )
    db.executemany(
        "INSERT INTO scans (id, release_id, ruleset_id, source, scanned_at, verdict, score, rules_matched) "
        "VALUES (?, ?, 1, 'scan', ?, ?, ?, ?)",
        [
            (
                i,
                i,
                f"2026-01-01T00:00:00.{i:06d}Z",
                *(("findings", 5, '["r"]') if i == 1 else ("clean", 0, "[]")),
            )
            for i in range(1, versions + 1)
        ],
    )
    db.executemany(
        "INSERT INTO distributions (scan_id, filename, url, format, size, sha256, files_scanned, "
        "bytes_scanned, score, rules_matched, top_file, verdict, complete) "
        "VALUES (?, ?, NULL, 'sdist', 1, ?, 1, 1, ?, ?, NULL, ?, 1)",
        [
            (
                i,
                f"big-1.{i}.tar.gz",
                f"{i:064x}",
                *((5, '["r"]', "findings") if i == 1 else (0, "[]", "clean")),
            )
            for i in range(1, versions + 1)
        ],
    )
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize("with_release", [False, True], ids=["own", "with-release"])
@pytest.mark.benchmark(group=GROUP)
def test_recent_findings_of_one_project_of_many_versions(
    benchmark: Any, one_project_store_path: Path, medians: dict[str, float], with_release: bool
) -> None:
    def findings() -> list[str]:
        with Store(one_project_store_path) as db:
            if with_release:
                return [listed.scan.version for listed in db.listed_scans(findings_only=True, limit=50)]
            return [scan.version for scan in db.scans(findings_only=True, limit=50)]

    assert benchmark.pedantic(findings, rounds=_rounds(), iterations=1) == ["1.1"]
    record_median(
        benchmark, medians, GROUP, "findings-one-project" if with_release else "findings-one-project-own"
    )
    if "findings-one-project" in medians and "findings-one-project-own" in medians:
        ratio = medians["findings-one-project"] / medians["findings-one-project-own"]
        print(
            "\n[store] recent findings, one project of many versions: with the release verdicts / "
            f"without: {ratio:.0f}x"
        )
