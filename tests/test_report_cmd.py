"""``report``: recent findings, hits per rule and one release's details, from a store that ``scan --store``
filled from the fake index; table and JSON; ``--since``."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.cli.store import parse_since
from dragonfly_hybrid.store.db import Store
from typer.testing import CliRunner, Result

from tests.fakes.pypi import LIGHT_MARKER, MARKER, FakeIndex, sdist, wheel

BAD = b"import os\n# " + MARKER + b"\n"


def run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def store(fake_index: FakeIndex, tmp_path: Path, rules_dir: Path) -> Path:
    fake_index.add("evil", sdist("evil", "1.0", {"setup.py": BAD, "x.py": b"# " + LIGHT_MARKER}))
    fake_index.add("light", wheel("light", "0.1", {"light/a.py": b"# " + LIGHT_MARKER}))
    fake_index.add("good", sdist("good", "1.0", {"a.py": b"pass\n"}))
    path = tmp_path / "store.db"
    targets = ("evil==1.0", "light==0.1", "good==1.0")
    result = run("scan", *targets, "-r", rules_dir, "--index-url", fake_index.url, "--store", path, "-q")
    assert result.exit_code == 1, result.output
    return path


def test_recent_findings_table_and_json(store: Path) -> None:
    result = run("report", "--store", store)
    assert result.exit_code == 0, result.output
    assert (
        "Recent findings" in result.stdout and "evil==1.0" in result.stdout and "light==0.1" in result.stdout
    )
    assert "good==1.0" not in result.stdout
    data = json.loads(run("report", "--store", store, "--format", "json").stdout)
    assert [(s["name"], s["verdict"]) for s in data["scans"]] == [("light", "findings"), ("evil", "findings")]
    every = json.loads(run("report", "--store", store, "--all", "-f", "json").stdout)
    assert {s["name"] for s in every["scans"]} == {"evil", "light", "good"}
    assert json.loads(run("report", "--store", store, "--since", "2999-01-01", "-f", "json").stdout) == {
        "scans": []
    }
    assert (
        len(json.loads(run("report", "--store", store, "--since", "1h", "-f", "json").stdout)["scans"]) == 2
    )


def test_hits_per_rule(store: Path) -> None:
    data = json.loads(run("report", "--store", store, "--by-rule", "-f", "json").stdout)["rules"]
    counts = {r["rule"]: (r["releases"], r["files"], r["weight"]) for r in data}
    assert counts == {"light_marker": (2, 2, 1), "test_marker": (1, 1, 5)}
    table = run("report", "--store", store, "--by-rule").stdout
    assert "Hits per rule" in table and "light_marker" in table


def test_release_details_with_matched_strings_and_offsets(store: Path) -> None:
    result = run("report", "evil==1.0", "--store", store)
    assert result.exit_code == 0, result.output
    assert "evil-1.0.tar.gz/evil-1.0/setup.py" in result.stdout
    assert "DRAGONFLY_TEST_MARKER" in result.stdout and "$marker" in result.stdout
    data = json.loads(run("report", "evil==1.0", "--store", store, "-f", "json").stdout)
    assert data["verdict"] == "findings" and data["score"] == 6
    files = {f["path"]: f for d in data["distributions"] for f in d["files"]}
    pattern = files["evil-1.0/setup.py"]["matches"][0]["patterns"][0]
    assert pattern == {
        "identifier": "$marker",
        "offset": 12,
        "length": len(MARKER),
        "data": MARKER.decode(),
        "line": 2,
        "column": 3,
        "snippet": ["# ", MARKER.decode(), ""],  # the match's line split around it
    }


def test_report_usage_errors(store: Path, tmp_path: Path) -> None:
    assert run("report", "nope==1.0", "--store", store).exit_code == 2
    assert run("report", "--store", tmp_path / "missing.db").exit_code == 2
    bad = run("report", "--store", store, "--since", "yesterday-ish")
    assert bad.exit_code == 2 and "not a time" in bad.stderr
    assert run("report", "evil", "--store", store).exit_code == 2  # not name==version


def test_parse_since() -> None:
    now = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)
    assert parse_since("24h", now) == "2026-01-30T12:00:00+00:00"
    assert parse_since("7d", now) == "2026-01-24T12:00:00+00:00"
    assert parse_since("2026-01-02", now) == "2026-01-02T00:00:00+00:00"
    assert parse_since("2026-01-02T03:04:05Z", now) == "2026-01-02T03:04:05+00:00"
    with pytest.raises(ValueError):
        parse_since("soon", now)


def test_report_reads_while_the_store_is_open_for_writing(store: Path) -> None:
    with Store(store) as writer, writer.transaction():
        result = run("report", "--store", store, "-f", "json")  # a reader is not blocked by the writer
        assert result.exit_code == 0 and len(json.loads(result.stdout)["scans"]) == 2


def test_a_release_watch_stored_in_pieces_is_reported_whole(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """`watch` stores pkg 1.0's sdist (findings), then a wheel uploaded later, as a scan of that wheel
    alone (clean): the release, its hits per rule and its page still have the sdist's findings."""
    store = tmp_path / "store.db"
    watch = (
        "watch",
        "--once",
        "--store",
        store,
        "-r",
        rules_dir,
        "--index-url",
        fake_index.url,
        "--threads",
        2,
    )
    fake_index.add("seed", sdist("seed", "1.0", {"a.py": b"pass\n"}))
    assert run(*watch).exit_code == 0  # the baseline
    fake_index.add("pkg", sdist("pkg", "1.0", {"setup.py": BAD}))
    assert run(*watch).exit_code == 0
    fake_index.add("pkg", wheel("pkg", "1.0", {"pkg/__init__.py": b"pass\n"}))
    assert run(*watch).exit_code == 0
    with Store(store, readonly=True) as db:
        newest = db.latest_scan("pkg", "1.0")
        assert newest is not None and newest.verdict == "clean"  # the wheel's scan alone

    data = json.loads(run("report", "pkg==1.0", "--store", store, "-f", "json").stdout)
    assert (data["verdict"], data["score"], data["rules_matched"]) == ("findings", 5, ["test_marker"])
    sdist_scan, wheel_scan = (s["id"] for s in reversed(data["scans"]))
    assert data["id"] == wheel_scan and [s["verdict"] for s in data["scans"]] == ["clean", "findings"]
    assert [(d["name"], d["scan_id"]) for d in data["distributions"]] == [
        ("pkg-1.0.tar.gz", sdist_scan),
        ("pkg-1.0-py3-none-any.whl", wheel_scan),
    ]
    table = run("report", "pkg==1.0", "--store", store).stdout
    assert table.startswith("pkg==1.0 findings score 5\ncombined from 2 scans, the newest of each file:\n")
    assert f"scan {sdist_scan}: scanned " in table and "pkg-1.0.tar.gz/pkg-1.0/setup.py" in table

    rules = json.loads(run("report", "--by-rule", "--store", store, "-f", "json").stdout)["rules"]
    assert [(r["rule"], r["releases"], r["files"]) for r in rules] == [("test_marker", 1, 1)]

    page = tmp_path / "pkg.html"
    assert run("report", "pkg==1.0", "--store", store, "--html", page).exit_code == 0
    shown = page.read_text(encoding="utf-8")
    blob = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', shown, re.S)
    assert blob is not None
    embedded = json.loads(blob.group(1))
    assert [(r["verdict"], r["score"]) for r in embedded["releases"]] == [("findings", 5)]
    assert [f["file"] for f in embedded["findings"]] == ["pkg-1.0.tar.gz/pkg-1.0/setup.py"]
    assert [d["name"] for d in embedded["distributions"]] == ["pkg-1.0.tar.gz", "pkg-1.0-py3-none-any.whl"]
    assert all(" by watch, rules " in d["scan"] for d in embedded["distributions"])
    assert "<th>Scanned at (UTC), by, rules</th>" in shown
