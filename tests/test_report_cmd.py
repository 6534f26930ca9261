"""``report``: recent findings, hits per rule and one release's details, from a store that ``scan --store``
filled from the fake index; table and JSON; ``--since``."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.cli.store import parse_since
from dragonfly_hybrid.store.db import Store
from typer.testing import CliRunner, Result

from tests.fakes.pypi import LIGHT_MARKER, LIGHT_RULE, MARKER, MARKER_RULE, FakeFile, FakeIndex, sdist, wheel

BAD = b"import os\n# " + MARKER + b"\n"


def run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def embedded_data(html: str) -> dict[str, Any]:
    """The page model an HTML report embeds (``<script type="application/json" id="report-data">``)."""
    blob = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', html, re.S)
    assert blob is not None
    return dict(json.loads(blob.group(1)))


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
    embedded = embedded_data(shown)
    assert [(r["verdict"], r["score"]) for r in embedded["releases"]] == [("findings", 5)]
    assert [f["file"] for f in embedded["findings"]] == ["pkg-1.0.tar.gz/pkg-1.0/setup.py"]
    assert [d["name"] for d in embedded["distributions"]] == ["pkg-1.0.tar.gz", "pkg-1.0-py3-none-any.whl"]
    assert all(" by watch, rules " in d["scan"] for d in embedded["distributions"])
    assert "<th>Scanned at (UTC), by, rules</th>" in shown


def test_every_spelling_of_a_version_is_one_release_in_the_report(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """Scans store a release under the version as the index spells it: `1.0.0` (a flagged wheel), then,
    once the index lists `1.0`, a clean sdist under `1.0`. `report pkg==1.0` showed the clean half only,
    and `report pkg==1` found nothing."""
    store = tmp_path / "store.db"
    scan = ("scan", "-r", rules_dir, "--index-url", fake_index.url, "--store", store, "-q")
    fake_index.add("pkg", wheel("pkg", "1.0.0", {"pkg/__init__.py": BAD}))
    assert run(*scan, "pkg==1").exit_code == 1
    fake_index.projects["pkg"].clear()
    fake_index.add("pkg", sdist("pkg", "1.0", {"setup.py": b"pass\n"}))
    assert run(*scan, "pkg==1.0.0").exit_code == 0
    for spelled in ("1.0", "1.0.0", "1"):
        data = json.loads(run("report", f"pkg=={spelled}", "--store", store, "-f", "json").stdout)
        assert data["verdict"] == "findings" and len(data["scans"]) == 2, spelled


def test_a_failed_download_counts_until_a_scan_reads_that_file(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """Scan 1 (`scan --store`) reads the sdist, the wheel 404s: incomplete, the wheel stored as a row without
    bytes. Scan 2 (hash mode, only the sdist allowed) is clean. The wheel was never scanned: the release
    stays incomplete in `report` (table, JSON, page), the wheel shown from scan 1 with its error, dated,
    until a scan reads the wheel (scan 4, the whole release)."""
    sdist_name, sdist_data = sdist("pkg", "1.0", {"setup.py": b"pass\n"})
    wheel_name, wheel_data = wheel("pkg", "1.0", {"pkg/__init__.py": b"pass\n"})
    fake_index.add("pkg", (sdist_name, sdist_data), (wheel_name, wheel_data))
    fake_index.faults.missing.add(wheel_name)
    store = tmp_path / "store.db"
    scan = ("scan", "-r", rules_dir, "--index-url", fake_index.url, "--store", store, "-q")
    assert run(*scan, "pkg==1.0").exit_code == 3
    digest = hashlib.sha256(sdist_data).hexdigest()
    (tmp_path / "req.txt").write_text(f"pkg==1.0 --hash=sha256:{digest}\n")
    assert run(*scan, "-R", tmp_path / "req.txt").exit_code == 0

    data = json.loads(run("report", "pkg==1.0", "--store", store, "-f", "json").stdout)
    first, second = sorted(s["id"] for s in data["scans"])
    assert data["verdict"] == "incomplete" and data["id"] == second
    assert [(d["name"], d["scan_id"], d["sha256"]) for d in data["distributions"]] == [
        (wheel_name, first, ""),
        (sdist_name, second, digest),
    ]
    assert data["distributions"][0]["listed_sha256"] == hashlib.sha256(wheel_data).hexdigest()
    assert data["error"].startswith(f"could not download {wheel_name}")
    assert re.search(rf"\(scan {first}, \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)$", data["error"])
    table = run("report", "pkg==1.0", "--store", store).stdout
    assert table.startswith("pkg==1.0 incomplete score 0\ncombined from 2 scans")
    assert f"error (scan {first}): could not download {wheel_name}" in table
    assert f"unscanned [download-failed] {wheel_name}: could not download {wheel_name}" in table
    page = tmp_path / "pkg.html"
    assert run("report", "pkg==1.0", "--store", store, "--html", page).exit_code == 0
    embedded = embedded_data(page.read_text("utf-8"))
    assert [r["verdict"] for r in embedded["releases"]] == ["incomplete"]
    assert any(wheel_name in i["message"] and i["kind"] == "error" for i in embedded["issues"])

    # The sdist alone again: the wheel is still unscanned.
    assert run(*scan, "-R", tmp_path / "req.txt").exit_code == 0
    assert json.loads(run("report", "pkg==1.0", "--store", store, "-f", "json").stdout)["verdict"] == (
        "incomplete"
    )
    # The whole release read: the wheel too.
    fake_index.faults.missing.clear()
    assert run(*scan, "pkg==1.0").exit_code == 0
    data = json.loads(run("report", "pkg==1.0", "--store", store, "-f", "json").stdout)
    assert (data["verdict"], data["error"]) == ("clean", None)
    assert len(data["scans"]) == 1 and {d["name"] for d in data["distributions"]} == {sdist_name, wheel_name}


def test_a_failed_download_is_not_settled_by_a_scan_of_other_files(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """Red-team finding (eleventh pass): scan 1 reads the sdist, the flagged py3 wheel 404s. A py2 wheel is
    uploaded; a hash-mode `scan -R` reads the sdist and the py2 wheel: every file scan 1 read, and one more.
    That settled scan 1's error and `report` showed the release clean, though the py3 wheel was never
    read."""
    flagged = FakeFile(*wheel("pkg", "1.0", {"pkg/__init__.py": BAD}))
    clean_sdist = FakeFile(*sdist("pkg", "1.0", {"setup.py": b"pass\n"}))
    fake_index.add("pkg", flagged, clean_sdist)
    fake_index.faults.missing.add(flagged.filename)
    store = tmp_path / "store.db"
    scan = ("scan", "-r", rules_dir, "--index-url", fake_index.url, "--store", store, "-q")
    assert run(*scan, "pkg==1.0").exit_code == 3
    later = FakeFile("pkg-1.0-py2-none-any.whl", wheel("pkg", "1.0", {"pkg/__init__.py": b"pass\n"})[1])
    fake_index.add("pkg", later)
    requirements = tmp_path / "req.txt"
    requirements.write_text(f"pkg==1.0 --hash=sha256:{clean_sdist.sha256} --hash=sha256:{later.sha256}\n")
    assert run(*scan, "-R", requirements).exit_code == 0

    data = json.loads(run("report", "pkg==1.0", "--store", store, "-f", "json").stdout)
    assert data["verdict"] == "incomplete"
    assert data["error"] is not None and f"could not download {flagged.filename}" in data["error"]
    unread = [d for d in data["distributions"] if d["name"] == flagged.filename]
    assert [(d["sha256"], d["listed_sha256"], d["complete"]) for d in unread] == [("", flagged.sha256, False)]
    # Once the wheel can be downloaded, a scan of it settles it: its finding shows.
    fake_index.faults.missing.clear()
    assert run(*scan, "pkg==1.0").exit_code == 1
    data = json.loads(run("report", "pkg==1.0", "--store", store, "-f", "json").stdout)
    assert (data["verdict"], data["error"]) == ("findings", None)


def test_a_rescan_under_a_rule_set_that_lacks_a_rule_keeps_the_finding_labelled(
    fake_index: FakeIndex, tmp_path: Path
) -> None:
    """Red-team finding (eleventh pass): `scan -r A` finds test_marker; `scan -r B` of the same bytes, a set
    without that rule, made `report` show the release clean (table, JSON, page) and `--by-rule` empty. The
    finding stays, labelled as from an earlier rule set, until a scan under rule set A reads the file
    again."""
    rules_a, rules_b = tmp_path / "rules_a", tmp_path / "rules_b"
    rules_a.mkdir()
    rules_b.mkdir()
    (rules_a / "marker.yar").write_text(MARKER_RULE)
    (rules_b / "light.yar").write_text(LIGHT_RULE)
    fake_index.add("evil", sdist("evil", "1.0", {"setup.py": BAD}))
    store = tmp_path / "store.db"
    scan = ("scan", "evil==1.0", "--index-url", fake_index.url, "--store", store, "-q")
    assert run(*scan, "-r", rules_a).exit_code == 1
    assert run(*scan, "-r", rules_b).exit_code == 0

    data = json.loads(run("report", "evil==1.0", "--store", store, "-f", "json").stdout)
    first, second = sorted(s["id"] for s in data["scans"])
    assert (data["verdict"], data["score"], data["rules_matched"]) == ("findings", 5, ["test_marker"])
    assert [(d["scan_id"], d["verdict"], d["earlier_rule_set"]) for d in data["distributions"]] == [
        (first, "findings", True),
        (second, "clean", False),
    ]
    table = run("report", "evil==1.0", "--store", store).stdout
    assert table.startswith("evil==1.0 findings score 5\n")
    assert f"scan {first}, an earlier rule set" in table and "test_marker" in table
    rules = json.loads(run("report", "--by-rule", "--store", store, "-f", "json").stdout)["rules"]
    assert [(r["rule"], r["releases"], r["files"]) for r in rules] == [("test_marker", 1, 1)]
    page = tmp_path / "evil.html"
    assert run("report", "evil==1.0", "--store", store, "--html", page).exit_code == 0
    embedded = embedded_data(page.read_text("utf-8"))
    assert [r["verdict"] for r in embedded["releases"]] == ["findings"]
    assert [(f["rule"], f["file"]) for f in embedded["findings"]] == [
        ("test_marker", "evil-1.0.tar.gz/evil-1.0/setup.py (an earlier rule set)")
    ]
    assert embedded["distributions"][0]["scan"].startswith("an earlier rule set: ")

    # Rule set A again: its scan is the newest, and the finding is its own again, once.
    assert run(*scan, "-r", rules_a).exit_code == 1
    data = json.loads(run("report", "evil==1.0", "--store", store, "-f", "json").stdout)
    assert [(d["verdict"], d["earlier_rule_set"]) for d in data["distributions"]] == [("findings", False)]


def _store_bytes(store: Path) -> str:
    """Every byte of the store (its WAL too), as text to search."""
    return "".join(p.read_bytes().decode("latin-1") for p in store.parent.glob(store.name + "*"))


def test_a_signed_urls_token_never_shows_in_outputs_nor_in_the_store(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """The index lists pkg's wheel at a signed URL (``?token=...``, the file is served there, with a
    finding) and another wheel at one that 404s. Neither token appears in any scan format, stderr, the
    store, or `report` (table, JSON, by rule, HTML); the keys do, with ``<redacted>``."""
    good_token, lost_token = "S1GNED-T0KEN-ok", "S1GNED-T0KEN-404"
    wheel_name, wheel_data = wheel("pkg", "1.0", {"pkg/__init__.py": BAD})
    lost_name, lost_data = wheel("pkg", "1.0", {"pkg/__init__.py": b"pass\n"})
    lost_name = lost_name.replace("py3-none-any", "cp312-abi3-linux_x86_64")
    fake_index.add(
        "pkg",
        sdist("pkg", "1.0", {"setup.py": b"pass\n"}),
        FakeFile(  # served at /files/pkg/<name>?token=...: the handler reads the query as part of the name
            f"{wheel_name}?token={good_token}&expires=1",
            wheel_data,
            listed_url=f"{fake_index.file_url('pkg', wheel_name)}?token={good_token}&expires=1",
            listed_name=wheel_name,
        ),
        FakeFile(
            lost_name,
            lost_data,
            listed_url=f"{fake_index.file_url('pkg', lost_name)}?token={lost_token}",
        ),
    )
    fake_index.faults.missing.add(lost_name)
    store = tmp_path / "store.db"
    shown: list[str] = []
    for fmt in ("table", "json", "ndjson", "sarif", "markdown", "html"):
        result = run("scan", "pkg==1.0", "-r", rules_dir, "--index-url", fake_index.url, "--store", store,
                     "-f", fmt)  # fmt: skip
        assert result.exit_code == 1, result.output  # the finding; the lost wheel: an error too
        shown += [result.stdout, result.stderr]
    data = json.loads(
        run("scan", "pkg==1.0", "-r", rules_dir, "--index-url", fake_index.url, "-f", "json").stdout
    )
    (target,) = data["targets"]
    assert "token=<redacted>" in target["error"]
    assert [d["url"] for d in target["distributions"] if d["name"] == wheel_name] == [
        f"{fake_index.file_url('pkg', wheel_name)}?token=<redacted>&expires=<redacted>"
    ]
    for args in (("pkg==1.0",), ("pkg==1.0", "-f", "json"), ("--by-rule",), ("--all", "-f", "json")):
        result = run("report", *args, "--store", store)
        assert result.exit_code == 0, result.output
        shown += [result.stdout, result.stderr]
    page = tmp_path / "pkg.html"
    assert run("report", "pkg==1.0", "--store", store, "--html", page).exit_code == 0
    shown.append(page.read_text("utf-8"))
    shown.append(_store_bytes(store))
    everything = "\n".join(shown)
    assert "token=<redacted>" in everything and wheel_name in everything
    assert good_token not in everything and lost_token not in everything


def test_a_rescan_that_did_not_read_the_flagged_member_refutes_nothing(
    fake_index: FakeIndex, tmp_path: Path
) -> None:
    """Red-team finding (thirteenth pass): `scan -r A` flags setup.py; `scan -r A --max-member-size 1KiB`
    reads the sdist but only setup.py's first KiB (the marker is further on): it took the finding away as a
    read under that rule set that did not report it (the release `incomplete`, no rule), and a later
    `scan -r B` (a set without the rule) showed the release clean (JSON, table, --by-rule). Only a read of
    the file whole refutes: the finding stays, from the earlier scan."""
    rules_a, rules_b = tmp_path / "rules_a", tmp_path / "rules_b"
    rules_a.mkdir()
    rules_b.mkdir()
    (rules_a / "marker.yar").write_text(MARKER_RULE)
    (rules_b / "light.yar").write_text(LIGHT_RULE)
    fake_index.add("pkg", sdist("pkg", "1.0", {"setup.py": b"#" * 20_000 + b"\n" + BAD, "a.py": b"pass\n"}))
    store = tmp_path / "store.db"
    scan = ("scan", "pkg==1.0", "--index-url", fake_index.url, "--store", store, "-q")
    assert run(*scan, "-r", rules_a).exit_code == 1
    assert run(*scan, "-r", rules_a, "--max-member-size", "1KiB").exit_code == 3  # incomplete

    data = json.loads(run("report", "pkg==1.0", "--store", store, "-f", "json").stdout)
    assert (data["verdict"], data["rules_matched"]) == ("findings", ["test_marker"])
    first, second = sorted(s["id"] for s in data["scans"])
    assert [(d["scan_id"], d["complete"], d["findings_only"], d["earlier_rule_set"]) for d in
            data["distributions"]] == [(first, True, True, False), (second, False, False, False)]  # fmt: skip
    table = run("report", "pkg==1.0", "--store", store).stdout
    assert "and findings of earlier scans" in table and f"scan {first}, an earlier scan" in table

    assert run(*scan, "-r", rules_b).exit_code == 0
    data = json.loads(run("report", "pkg==1.0", "--store", store, "-f", "json").stdout)
    assert (data["verdict"], data["score"], data["rules_matched"]) == ("findings", 5, ["test_marker"])
    assert [(d["scan_id"], d["earlier_rule_set"]) for d in data["distributions"]] == [
        (first, True),
        (max(s["id"] for s in data["scans"]), False),
    ]
    rules = json.loads(run("report", "--by-rule", "--store", store, "-f", "json").stdout)["rules"]
    assert [(r["rule"], r["releases"], r["files"]) for r in rules] == [("test_marker", 1, 1)]

    # Rule set A reads the whole file again: its finding is its own, from the newest read.
    assert run(*scan, "-r", rules_a).exit_code == 1
    data = json.loads(run("report", "pkg==1.0", "--store", store, "-f", "json").stdout)
    assert [(d["verdict"], d["findings_only"]) for d in data["distributions"]] == [("findings", False)]


def test_hits_per_rule_count_every_spelling_of_a_version_as_one_release(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """Red-team finding (thirteenth pass): a lock file stores pkg's wheel under version `1.0.0`, `scan
    pkg==1.0` the same wheel under `1.0`. `report pkg==1.0` shows one release, one flagged file; --by-rule
    counted 2 releases and 2 files (it took each stored spelling for a release)."""
    [flagged] = fake_index.add("pkg", wheel("pkg", "1.0", {"pkg/__init__.py": BAD}))
    lock = tmp_path / "pylock.toml"
    lock.write_text(
        'lock-version = "1.0"\ncreated-by = "test"\n[[packages]]\nname = "pkg"\nversion = "1.0.0"\n'
        f'wheels = [{{ url = "{fake_index.file_url("pkg", flagged.filename)}", '
        f'hashes = {{ sha256 = "{flagged.sha256}" }} }}]\n'
    )
    store = tmp_path / "store.db"
    assert run("scan", "-R", lock, "-r", rules_dir, "--store", store, "-q").exit_code == 1
    scan = ("scan", "pkg==1.0", "-r", rules_dir, "--index-url", fake_index.url, "--store", store, "-q")
    assert run(*scan).exit_code == 1
    data = json.loads(run("report", "pkg==1.0", "--store", store, "-f", "json").stdout)
    assert data["verdict"] == "findings" and len(data["distributions"]) == 1
    rules = json.loads(run("report", "--by-rule", "--store", store, "-f", "json").stdout)["rules"]
    assert [(r["rule"], r["releases"], r["files"]) for r in rules] == [("test_marker", 1, 1)]


def test_a_lock_files_file_with_no_sha256_is_settled_only_by_a_read_from_its_url(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """Red-team finding (thirteenth pass): a pylock.toml gives its wheel (on another host) a sha512 only,
    and the download fails: the row stored without bytes lists no sha256. `scan pkg==1.0` then read the
    index's own (clean) file of that name, which settled the row, and `report` showed the release clean
    though the lock's bytes were never scanned. With no digest, only a read from the same URL settles it."""
    with FakeIndex() as other_host:
        [theirs] = other_host.add("pkg", wheel("pkg", "1.0", {"pkg/__init__.py": BAD}))
        other_host.faults.missing.add(theirs.filename)
        [ours] = fake_index.add("pkg", wheel("pkg", "1.0", {"pkg/__init__.py": b"pass\n"}))
        assert ours.filename == theirs.filename
        lock = tmp_path / "pylock.toml"
        lock.write_text(
            'lock-version = "1.0"\ncreated-by = "test"\n[[packages]]\nname = "pkg"\nversion = "1.0"\n'
            f'wheels = [{{ url = "{other_host.file_url("pkg", theirs.filename)}", '
            f'hashes = {{ sha512 = "{hashlib.sha512(theirs.content).hexdigest()}" }} }}]\n'
        )
        store = tmp_path / "store.db"
        scan = ("scan", "-r", rules_dir, "--store", store, "-q")
        assert run(*scan, "-R", lock).exit_code == 3
        assert run(*scan, "pkg==1.0", "--index-url", fake_index.url).exit_code == 0
        data = json.loads(run("report", "pkg==1.0", "--store", store, "-f", "json").stdout)
        assert data["verdict"] == "incomplete" and f"could not download {theirs.filename}" in data["error"]
        assert [(d["sha256"], d["listed_sha256"]) for d in data["distributions"]] == [
            ("", None),
            (ours.sha256, None),
        ]
        # The lock's file read from its URL (its bytes now match its sha512) settles it.
        other_host.faults.missing.clear()
        assert run(*scan, "-R", lock).exit_code == 1
        data = json.loads(run("report", "pkg==1.0", "--store", store, "-f", "json").stdout)
        assert (data["verdict"], data["error"]) == ("findings", None)


def test_member_names_in_a_releases_details_are_text_not_markup_or_escapes(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """A stored member path is shown as the text it is: rich markup in it ([link=...] made a hyperlink, a
    closing tag alone raised MarkupError and the release could not be shown), :emoji: codes, and terminal
    escapes (an OSC 8 hyperlink, a colour) or bidi overrides, which went to the terminal raw."""
    names = [
        "[link=https://evil.example/]LINK[/link].py",
        "[/bold]closing.py",
        "\x1b]8;;https://evil.example/\x1b\\OSC\x1b]8;;\x1b\\.py",
        "\x1b[31mred.py",
        ":thumbs_up:.py",
        "bidi\u202eyp.py",
    ]
    fake_index.add("evil", sdist("evil", "1.0", {name: BAD for name in names}))
    store = tmp_path / "store.db"
    assert (
        run("scan", "evil==1.0", "-r", rules_dir, "--index-url", fake_index.url, "--store", store).exit_code
        == 1
    )
    result = run("report", "evil==1.0", "--store", store)
    assert result.exit_code == 0, result.output
    shown = result.stdout.replace("\n", "")  # long paths are folded over lines
    for literal in ("[link=https://evil.example/]LINK[/link].py", "[/bold]closing.py", ":thumbs_up:.py"):
        assert literal in shown
    assert "\\x1b]8;;https://evil.example/" in shown and "\\x1b[31mred.py" in shown
    assert "bidi\\u202eyp.py" in shown
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout


def test_the_list_shows_each_scans_release_verdict_where_a_partial_scan_differs(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """`scan pkg==1.0` flags the sdist; a hash-mode `scan -R` then reads the clean wheel alone. The list
    (`report`, `--all`, JSON, the `--html` page) showed that newer scan as `clean`, and `report --since`
    (after the first scan) listed nothing under "Recent findings", while `report pkg==1.0` says `findings`.
    Each row stays a scan (its own `verdict` and `score`), with its release's as a whole beside it."""
    flagged = FakeFile(*sdist("pkg", "1.0", {"setup.py": BAD}))
    clean = FakeFile(*wheel("pkg", "1.0", {"pkg/__init__.py": b"pass\n"}))
    fake_index.add("pkg", flagged, clean)
    store = tmp_path / "store.db"
    scan = ("scan", "-r", rules_dir, "--index-url", fake_index.url, "--store", store, "-q")
    assert run(*scan, "pkg==1.0").exit_code == 1
    between = datetime.now(timezone.utc).isoformat()
    (tmp_path / "req.txt").write_text(f"pkg==1.0 --hash=sha256:{clean.sha256}\n")
    assert run(*scan, "-R", tmp_path / "req.txt").exit_code == 0

    whole = json.loads(run("report", "pkg==1.0", "--store", store, "-f", "json").stdout)
    assert (whole["verdict"], whole["score"]) == ("findings", 5)
    # Recent findings since the first scan: its release has findings, though the scan since had none.
    data = json.loads(run("report", "--since", between, "--store", store, "-f", "json").stdout)
    assert [(s["name"], s["verdict"]) for s in data["scans"]] == [("pkg", "clean")]
    assert [(s["release_verdict"], s["release_score"]) for s in data["scans"]] == [("findings", 5)]
    table = run("report", "--since", between, "--store", store).stdout
    assert "Recent findings" in table and "clean (release: findings, score 5)" in table
    expected = [("clean", 0, "findings", 5), ("findings", 5, "findings", 5)]  # the partial scan, the first
    for args in (("--all",), ()):
        data = json.loads(run("report", *args, "--store", store, "-f", "json").stdout)
        shown = [(s["verdict"], s["score"], s["release_verdict"], s["release_score"]) for s in data["scans"]]
        assert shown == expected, args

    page = tmp_path / "list.html"
    assert run("report", "--all", "--store", store, "--html", page).exit_code == 0
    embedded = embedded_data(page.read_text("utf-8"))
    assert [(r["verdict"], r["release_verdict"], r["release_score"]) for r in embedded["releases"]] == [
        ("clean", "findings", 5),
        ("findings", "findings", 5),
    ]
    shown_html = page.read_text("utf-8")
    assert "release: findings, score 5</span>" in shown_html
    # Two scans of one release: the summary counts the release once, by its verdict as a whole.
    assert (
        '<p class="summary">1 release(s) in 2 scans <span class="verdict v-findings">1 findings</span>'
        in shown_html
    )
    assert 'data-verdict="clean"' not in shown_html  # the verdict filter goes by the release's verdict


def test_issues_of_a_row_shown_only_for_its_findings_are_not_printed(
    fake_index: FakeIndex, tmp_path: Path
) -> None:
    """`scan -r A --max-member-size 1KiB` flags setup.py and leaves big.py unscanned; `scan -r B` (a set
    without the rule) reads everything. The release is `findings` (rule set A's, shown for them) and
    nothing is left unscanned, but `report pkg==1.0` printed scan 1's `unscanned [member-too-large]` line as
    if it still counted. The JSON keeps that scan's issues with its row."""
    rules_a, rules_b = tmp_path / "rules_a", tmp_path / "rules_b"
    rules_a.mkdir()
    rules_b.mkdir()
    (rules_a / "marker.yar").write_text(MARKER_RULE)
    (rules_b / "light.yar").write_text(LIGHT_RULE)
    fake_index.add("pkg", sdist("pkg", "1.0", {"setup.py": BAD, "big.py": b"#" * 20_000 + b"\n"}))
    store = tmp_path / "store.db"
    scan = ("scan", "pkg==1.0", "--index-url", fake_index.url, "--store", store, "-q")
    assert run(*scan, "-r", rules_a, "--max-member-size", "1KiB").exit_code == 1
    assert run(*scan, "-r", rules_b).exit_code == 0

    data = json.loads(run("report", "pkg==1.0", "--store", store, "-f", "json").stdout)
    assert (data["verdict"], data["error"]) == ("findings", None)
    earlier, newest = data["distributions"]
    assert (earlier["findings_only"], newest["findings_only"]) == (True, False)
    assert [i["kind"] for i in earlier["issues"]] == ["member-too-large"] and newest["issues"] == []
    table = run("report", "pkg==1.0", "--store", store).stdout
    assert "test_marker" in table and "an earlier rule set" in table
    assert "member-too-large" not in table and "unscanned" not in table
    page = tmp_path / "pkg.html"
    assert run("report", "pkg==1.0", "--store", store, "--html", page).exit_code == 0
    shown = embedded_data(page.read_text("utf-8"))
    assert [f["rule"] for f in shown["findings"]] == ["test_marker"] and shown["issues"] == []
