"""Report rendering over real scan results: verdicts, exit codes, pinned JSON keys, NDJSON, SARIF, table."""

from __future__ import annotations

import errno
import hashlib
import heapq
import io
import json
import os
import random
import re
import subprocess
import sys
import threading
import unicodedata
import warnings
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import replace
from html import unescape
from pathlib import Path
from typing import Any, get_args

import pytest
from dragonfly_hybrid import Limits, RuleMatch, Rules, Scanner
from dragonfly_hybrid.report import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_INCOMPLETE,
    FILE_TABLE_WIDTH,
    FLAGGED_DEPENDENCY_RULE,
    REPORT_DIGESTS,
    SARIF_MAX_RESULTS,
    TABLE_MAX_FINDINGS,
    TABLE_WIDE_COLUMNS,
    Finding,
    Origin,
    ReportFormat,
    TargetResult,
    artifact_uri,
    exit_code,
    first_pattern,
    heaviest_findings,
    human_size,
    json_document,
    meta_value,
    ndjson_line,
    origin_uri,
    plain_table,
    printable,
    project_and_version,
    render,
    render_table,
    sarif_document,
    target_json,
    top_findings,
    write_framed_json,
)
from dragonfly_hybrid.report_markdown import markdown_report
from dragonfly_hybrid.rules_loader import load_rules
from markdown_it import MarkdownIt
from rich.cells import cell_len
from rich.console import Console

from tests.fakes.pypi import (
    LIGHT_MARKER,
    LIGHT_RULE,
    MARKER,
    MARKER_RULE,
    sdist,
    validate_sarif,
    wheel,
    write,
)

SETUP = b"import os\n# " + MARKER + b"\n"


@pytest.fixture(scope="module")
def rules() -> Rules:
    return Rules.compile({"marker.yar": MARKER_RULE, "light.yar": LIGHT_RULE})


@pytest.fixture(scope="module")
def scanner(rules: Rules) -> Scanner:
    return Scanner(rules, Limits(max_member_size=4096), threads=2)


def release_dists(tmp_path: Path) -> list[tuple[str, bytes | str, str | None]]:
    name, data = sdist("demo", "0.1", {"setup.py": SETUP, "demo/util.py": b"# " + LIGHT_MARKER + b"\n"})
    wheel_name, wheel_data = wheel("demo", "0.1", {"demo/__init__.py": b"# " + LIGHT_MARKER + b"\n"})
    return [
        (name, data, f"https://files.example/packages/ab/cd/{name}"),
        (
            wheel_name,
            str(write(tmp_path / wheel_name, wheel_data)),
            f"https://files.example/packages/ef/{wheel_name}",
        ),
    ]


@pytest.fixture
def results(tmp_path: Path, scanner: Scanner) -> list[TargetResult]:
    """A release with findings, a clean file, an incomplete archive and a target that failed to download."""
    release = scanner.scan_release("demo", "0.1", release_dists(tmp_path))
    clean = write(tmp_path / "clean.py", b"print('hello')\n")
    big_name, big_data = sdist("big", "1.0", {"blob.bin": b"\0" * 10_000})
    big = write(tmp_path / big_name, big_data)
    return [
        TargetResult.from_release("demo==0.1", release),
        TargetResult.from_distributions(str(clean), "file", "clean.py", [scanner.scan_path(str(clean))]),
        TargetResult.from_distributions(str(big), "archive", big_name, [scanner.scan_path(str(big))]),
        TargetResult.failed("gone==1.0", "release", "gone", "1.0", "could not download gone-1.0.tar.gz"),
    ]


def test_each_format_reads_the_same_from_a_scan_that_takes_only_the_digests_it_shows(
    tmp_path: Path, scanner: Scanner, rules: Rules
) -> None:
    """``scan`` takes only the digests its format shows (``REPORT_DIGESTS``): each report must read the same
    from a Scanner that hashes everything and from one that takes only those, and show what it takes."""
    assert set(REPORT_DIGESTS) == set(get_args(ReportFormat))

    def reports(engine: Scanner) -> list[TargetResult]:
        release = engine.scan_release("demo", "0.1", release_dists(tmp_path))
        return [TargetResult.from_release("demo==0.1", release)]

    def rendered(targets: list[TargetResult], fmt: ReportFormat) -> str:
        out = io.StringIO()
        render(targets, rules, fmt, out)
        return out.getvalue()

    digested = reports(scanner)
    setup_digest = hashlib.sha256(SETUP).hexdigest()
    sdist_digest = digested[0].distributions[0].sha256
    assert len(sdist_digest) == 64
    for fmt in get_args(ReportFormat):
        takes = REPORT_DIGESTS[fmt]
        taken = reports(Scanner(rules, scanner.limits, threads=2, digests=takes))
        full = rendered(digested, fmt)
        assert full == rendered(taken, fmt), f"{fmt} shows a digest its scan does not take (REPORT_DIGESTS)"
        assert (setup_digest in full) == (takes is not False), fmt
        assert (sdist_digest in full) == (takes is True), f"{fmt} takes a digest it does not show"


# -------------------------------------------------------------------------------------- data model


def test_verdicts_scores_and_exit_codes(results: list[TargetResult]) -> None:
    demo, clean, big, gone = results
    assert (demo.verdict, demo.score, sorted(demo.rules_matched)) == (
        "findings",
        6,
        ["light_marker", "test_marker"],
    )
    assert demo.top_file == "demo-0.1.tar.gz/demo-0.1/setup.py"
    assert demo.inspector_url and demo.inspector_url.startswith("https://inspector.pypi.io/project/demo/0.1/")
    assert (clean.verdict, clean.score, clean.error) == ("clean", 0, None)
    assert big.verdict == "incomplete" and big.issues and big.issues[0][1].unscanned
    assert (gone.verdict, gone.distributions, gone.error) == (
        "incomplete",
        [],
        "could not download gone-1.0.tar.gz",
    )
    assert exit_code([clean]) == EXIT_CLEAN
    assert exit_code([clean, big]) == exit_code([gone]) == EXIT_INCOMPLETE
    assert exit_code(results) == EXIT_FINDINGS  # findings win over incomplete


def test_findings_in_an_incomplete_distribution_are_findings(tmp_path: Path, scanner: Scanner) -> None:
    name, data = sdist("mixed", "1.0", {"setup.py": SETUP, "blob.bin": b"\0" * 10_000})
    dist = scanner.scan_bytes(data, name)
    assert not dist.complete
    result = TargetResult.from_distributions(name, "archive", name, [dist])
    assert result.verdict == "findings" and exit_code([result]) == EXIT_FINDINGS


def test_release_download_error_makes_a_clean_release_incomplete(tmp_path: Path, scanner: Scanner) -> None:
    wheel_name, wheel_data = wheel("demo", "0.1", {"demo/__init__.py": b""})
    release = scanner.scan_release("demo", "0.1", [(wheel_name, wheel_data, None)])
    assert release.verdict == "clean"
    result = TargetResult.from_release("demo", release, error="could not download demo-0.1.tar.gz")
    assert (result.verdict, result.error) == ("incomplete", "could not download demo-0.1.tar.gz")


def test_directory_score_is_the_maximum(tmp_path: Path, scanner: Scanner) -> None:
    a = scanner.scan_bytes(SETUP, "a.py")
    b = scanner.scan_bytes(b"# " + LIGHT_MARKER, "b.py")
    result = TargetResult.from_distributions("dir", "directory", "dir", [a, b])
    assert (result.score, result.rules_matched, result.top_file) == (
        5,
        ["test_marker", "light_marker"],
        "a.py",
    )


# ---------------------------------------------------------------------------------------------- JSON

DOCUMENT_KEYS = {"tool", "rules", "targets", "summary"}
TARGET_KEYS = {
    "target", "kind", "name", "version", "verdict", "score", "rules_matched", "inspector_url", "error",
    "origin", "distributions",
}  # fmt: skip
DISTRIBUTION_KEYS = {
    "name", "url", "format", "size", "sha256", "files_scanned", "bytes_scanned", "score", "rules_matched",
    "top_file", "verdict", "complete", "issues", "files",
}  # fmt: skip
SUMMARY_KEYS = {
    "targets", "distributions", "files_scanned", "bytes_scanned", "findings", "incomplete", "verdict",
    "exit_code",
}  # fmt: skip


def test_json_document_shape_is_pinned(results: list[TargetResult], rules: Rules) -> None:
    document = json.loads(json.dumps(json_document(results, rules)))
    assert set(document) == DOCUMENT_KEYS
    assert document["tool"]["name"] == "dragonfly-hybrid" and set(document["tool"]) == {"name", "version"}
    assert document["rules"] == {"hash": rules.hash, "count": 2}
    assert [set(t) for t in document["targets"]] == [TARGET_KEYS] * 4
    dists = [d for t in document["targets"] for d in t["distributions"]]
    assert all(set(d) == DISTRIBUTION_KEYS for d in dists)
    issues = [i for d in dists for i in d["issues"]]
    assert issues and all(set(i) == {"path", "kind", "message", "unscanned"} for i in issues)
    files = [f for d in dists for f in d["files"]]
    assert files and all(set(f) == {"path", "size", "sha256", "score", "matches"} for f in files)
    matches = [m for f in files for m in f["matches"]]
    assert all(set(m) == {"rule", "namespace", "tags", "weight", "metadata", "patterns"} for m in matches)
    pattern_keys = {"identifier", "offset", "length", "line", "column", "data", "snippet"}
    assert all(set(p) == pattern_keys for m in matches for p in m["patterns"])
    marker = next(m for m in matches if m["rule"] == "test_marker")
    assert marker["weight"] == 5 and marker["tags"] == ["test"]
    assert marker["metadata"]["description"] == "the test marker string"
    assert marker["patterns"][0] == {
        "identifier": "$marker",
        "offset": SETUP.index(MARKER),
        "length": len(MARKER),
        "line": 2,
        "column": 3,
        "data": MARKER.decode(),
        "snippet": "# " + MARKER.decode(),
    }
    assert set(document["summary"]) == SUMMARY_KEYS
    assert document["summary"] == {
        "targets": 4,
        "distributions": 4,
        "files_scanned": document["summary"]["files_scanned"],
        "bytes_scanned": document["summary"]["bytes_scanned"],
        "findings": 1,
        "incomplete": 2,
        "verdict": "findings",
        "exit_code": 1,
    }
    assert document["summary"]["files_scanned"] >= 7


def test_release_target_json(results: list[TargetResult]) -> None:
    demo = target_json(results[0])
    assert (demo["kind"], demo["name"], demo["version"], demo["target"]) == (
        "release",
        "demo",
        "0.1",
        "demo==0.1",
    )
    assert demo["distributions"][0]["url"].startswith("https://files.example/packages/ab/cd/")


def test_meta_values_are_json_safe() -> None:
    assert meta_value(b"ab\xff\x80c") == "ab\\xff\\x80c"
    assert meta_value(float("nan")) == "nan" and meta_value(float("inf")) == "inf"
    assert meta_value(True) is True and meta_value(7) == 7 and meta_value("é") == "é"


def test_ndjson_is_one_target_per_line(results: list[TargetResult], rules: Rules) -> None:
    out = io.StringIO()
    render(results, rules, "ndjson", out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 4
    assert [json.loads(line) for line in lines] == [json.loads(json.dumps(target_json(t))) for t in results]
    assert ndjson_line(results[1]) == lines[1]


# --------------------------------------------------------------------------------------------- SARIF


def test_printable_escapes_exactly_the_control_format_and_separator_characters() -> None:
    """Every code point: escaped when its category is C* or Z* (the space excepted), else kept as is."""
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        hidden = unicodedata.category(char)[0] in "CZ" and char != " "
        assert (printable(char) != char) == hidden, hex(code)
    assert printable("ok \u202eevil\u200b", 8) == "ok \\u20…"  # clipped after escaping


def test_sarif_validates_against_the_official_schema(results: list[TargetResult], rules: Rules) -> None:
    out = io.StringIO()
    render(results, rules, "sarif", out)
    document = json.loads(out.getvalue())
    validate_sarif(document)
    assert document["version"] == "2.1.0" and len(document["runs"]) == 1


def test_sarif_is_the_document_with_one_result_and_one_rule_per_line(
    results: list[TargetResult], rules: Rules
) -> None:
    out = io.StringIO()
    render(results, rules, "sarif", out)
    text = out.getvalue()
    document = sarif_document(results, rules)
    assert json.loads(text) == document
    run = document["runs"][0]
    assert run["results"] and run["tool"]["driver"]["rules"]
    lines = [line.strip().rstrip(",") for line in text.splitlines()]
    objects = [json.loads(line) for line in lines if line.startswith("{") and line.endswith("}")]
    for item in [*run["results"], *run["tool"]["driver"]["rules"]]:  # each whole on a line of its own
        assert objects.count(item) == 1
    # Elsewhere the layout is json.dump(indent=2)'s.
    frame = {"runs": [{**run, "results": [], "tool": {"driver": {**run["tool"]["driver"], "rules": []}}}]}
    framed = io.StringIO()
    write_framed_json(frame, framed)
    assert framed.getvalue() == json.dumps(frame, indent=2, ensure_ascii=False)


def test_sarif_results_rules_and_locations(results: list[TargetResult], rules: Rules) -> None:
    run = sarif_document(results, rules)["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "dragonfly-hybrid"
    assert {r["id"] for r in driver["rules"]} == {"test_marker", "light_marker"}
    marker_rule = next(r for r in driver["rules"] if r["id"] == "test_marker")
    assert marker_rule["shortDescription"] == {"text": "the test marker string"}
    assert marker_rule["properties"]["weight"] == 5 and marker_rule["properties"]["tags"] == [
        "security",
        "test",
    ]
    assert marker_rule["properties"]["security-severity"] == "5.0"
    assert marker_rule["fullDescription"]["text"].startswith("the test marker string (YARA rule test_marker")
    assert (
        "weight 5" in marker_rule["help"]["text"]
        and "**the test marker string**" in marker_rule["help"]["markdown"]
    )
    light_rule = next(r for r in driver["rules"] if r["id"] == "light_marker")
    assert light_rule["properties"]["security-severity"] == "1.0" and "by tests" in light_rule["help"]["text"]
    by_rule = {r["ruleId"]: r for r in run["results"]}
    marker = by_rule["test_marker"]
    assert marker["level"] == "error" and by_rule["light_marker"]["level"] == "warning"
    assert driver["rules"][marker["ruleIndex"]]["id"] == "test_marker"
    location = marker["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "demo-0.1.tar.gz/demo-0.1/setup.py"
    assert location["region"] == {
        "startLine": 2,
        "startColumn": 3,
        "endColumn": 3 + len(MARKER),
        "snippet": {"text": "# DRAGONFLY_TEST_MARKER"},
        "byteOffset": SETUP.index(MARKER),
        "byteLength": len(MARKER),
    }
    assert "test_marker" in marker["message"]["text"] and "demo-0.1/setup.py" in marker["message"]["text"]
    assert marker["properties"]["score"] == 5 and len(marker["properties"]["sha256"]) == 64
    assert len(run["results"]) == 3  # test_marker in setup.py, light_marker in the sdist and in the wheel


def test_sarif_notifications_and_execution_success(results: list[TargetResult], rules: Rules) -> None:
    invocation = sarif_document(results, rules)["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False
    notes = invocation["toolExecutionNotifications"]
    assert any(
        n["level"] == "error" and "could not download gone-1.0.tar.gz" in n["message"]["text"] for n in notes
    )
    issue = next(n for n in notes if n["properties"].get("kind") == "member-too-large")
    assert issue["level"] == "error" and issue["properties"]["unscanned"] is True
    assert (
        issue["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        == "big-1.0.tar.gz/big-1.0/blob.bin"
    )
    clean_only = sarif_document(results[1:2], rules)
    assert clean_only["runs"][0]["invocations"][0]["executionSuccessful"] is True
    assert clean_only["runs"][0]["results"] == [] and clean_only["runs"][0]["tool"]["driver"]["rules"] == []
    validate_sarif(clean_only)


def test_sarif_uris_are_escaped(scanner: Scanner, rules: Rules) -> None:
    _, data = sdist("odd", "1.0", {"dir with space/ümlaut #1?.py": SETUP})
    dist = scanner.scan_bytes(data, "c:odd 1.0.tar.gz")
    (file,) = dist.files
    uri = artifact_uri(dist, file.path)
    assert uri == "c%3Aodd%201.0.tar.gz/odd-1.0/dir%20with%20space/%C3%BCmlaut%20%231%3F.py"
    result = TargetResult.from_distributions("odd", "archive", dist.name, [dist])
    validate_sarif(sarif_document([result], rules))


# --------------------------------------------------------------------------------------------- table


def test_table_lists_targets_findings_and_issues(results: list[TargetResult], rules: Rules) -> None:
    out = io.StringIO()
    render(results, rules, "table", out)
    text = out.getvalue()
    for expected in (
        "demo==0.1",
        "findings",
        "clean",
        "incomplete",
        "test_marker",
        "demo-0.1.tar.gz/demo-0.1/setup.py",
        "could not download gone-1.0.tar.gz",
        "Issues in",
        "big-1.0.tar.gz/big-1.0/blob.bin",
        rules.hash[:12],
    ):
        assert expected in text, expected
    assert "\x1b[" not in text  # no colour codes in a file
    quiet = io.StringIO()
    render(results, rules, "table", quiet, quiet=True)
    assert rules.hash[:12] not in quiet.getvalue()


# ------------------------------------------------------------------------------ SARIF for GitHub


def fingerprints(document: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(rule, location URI with the version taken out) -> fingerprint, for every result."""
    return {
        (r["ruleId"], r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]): next(
            iter(r["partialFingerprints"].values())
        )
        for r in document["runs"][0]["results"]
    }


def scan_release_version(scanner: Scanner, version: str, setup: bytes, tmp_path: Path) -> TargetResult:
    name, data = sdist("demo", version, {"setup.py": setup, "demo/util.py": b"# " + LIGHT_MARKER + b"\n"})
    wheel_name, wheel_data = wheel("demo", version, {"demo/__init__.py": b"x = 1\n# " + LIGHT_MARKER + b"\n"})
    release = scanner.scan_release("demo", version, [(name, data, None), (wheel_name, wheel_data, None)])
    return TargetResult.from_release(f"demo=={version}", release)


def test_sarif_fingerprints_are_stable_across_runs_and_versions(
    tmp_path: Path, scanner: Scanner, rules: Rules
) -> None:
    old = sarif_document([scan_release_version(scanner, "0.1", SETUP, tmp_path)], rules)
    again = sarif_document([scan_release_version(scanner, "0.1", SETUP, tmp_path)], rules)
    # The next version moves the marker to another line; the matched bytes and the file are the same.
    new = sarif_document(
        [scan_release_version(scanner, "0.2", b"import sys\n\n" + SETUP + b"print(1)\n", tmp_path)], rules
    )
    validate_sarif(old)
    assert fingerprints(old) == fingerprints(again)
    old_prints, new_prints = fingerprints(old), fingerprints(new)
    assert len(set(old_prints.values())) == 3  # each (rule, file) its own identity
    for (rule, uri), value in old_prints.items():
        assert new_prints[(rule, uri.replace("0.1", "0.2"))] == value, (rule, uri)
    changed = sarif_document(
        [scan_release_version(scanner, "0.2", b"# " + MARKER + b"-and-more\n", tmp_path)], rules
    )
    # A different match of the same rule in the same file is the same rule and file: same identity too
    # only when the matched bytes are the same.
    assert (
        fingerprints(changed)[("test_marker", "demo-0.2.tar.gz/demo-0.2/setup.py")]
        == (old_prints[("test_marker", "demo-0.1.tar.gz/demo-0.1/setup.py")])
    )
    other_rule = sarif_document(
        [scan_release_version(scanner, "0.2", b"# " + LIGHT_MARKER + b"\n", tmp_path)], rules
    )
    assert fingerprints(other_rule)[("light_marker", "demo-0.2.tar.gz/demo-0.2/setup.py")] not in set(
        old_prints.values()
    )


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("Demo_Pkg-1.0.post1.tar.gz", ("demo-pkg", "1.0.post1")),
        ("demo_pkg-2.0-py3-none-any.whl", ("demo-pkg", "2.0")),
        ("demo-0.1-py3.8.egg", ("demo", "0.1")),
        ("setup.py", ("setup.py", None)),
        ("weird.zip", ("weird.zip", None)),
    ],
)
def test_project_and_version_from_file_names(filename: str, expected: tuple[str, str | None]) -> None:
    assert project_and_version(filename) == expected


def test_requirements_origin_places_results_in_the_repository(
    tmp_path: Path, scanner: Scanner, rules: Rules, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    flagged = replace(
        TargetResult.from_release("demo==0.1", scanner.scan_release("demo", "0.1", release_dists(tmp_path))),
        origin=Origin("requirements/base.txt", 7),
    )
    clean_name, clean_data = wheel("fine", "1.0", {"fine/__init__.py": b""})
    clean = replace(
        TargetResult.from_release(
            "fine==1.0", scanner.scan_release("fine", "1.0", [(clean_name, clean_data, None)])
        ),
        origin=Origin(str(tmp_path / "requirements" / "base.txt"), 8),
    )
    document = sarif_document([flagged, clean], rules)
    validate_sarif(document)
    run = document["runs"][0]
    members = [r for r in run["results"] if r["ruleId"] != FLAGGED_DEPENDENCY_RULE]
    assert len(members) == 3
    for result in members:
        (related,) = result["relatedLocations"]
        assert related["physicalLocation"] == {
            "artifactLocation": {"uri": "requirements/base.txt"},
            "region": {"startLine": 7},
        }
        assert "demo==0.1" in related["message"]["text"]
    # One result on the requirement line itself (GitHub can show it in the repository), none for the
    # clean dependency.
    (dependency,) = [r for r in run["results"] if r["ruleId"] == FLAGGED_DEPENDENCY_RULE]
    assert dependency["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "requirements/base.txt"},
        "region": {"startLine": 7},
    }
    assert dependency["level"] == "error" and "demo==0.1" in dependency["message"]["text"]
    related_uris = [r["physicalLocation"]["artifactLocation"]["uri"] for r in dependency["relatedLocations"]]
    assert related_uris[0] == "demo-0.1.tar.gz/demo-0.1/setup.py" and len(related_uris) == 3
    rule = run["tool"]["driver"]["rules"][dependency["ruleIndex"]]
    assert rule["id"] == FLAGGED_DEPENDENCY_RULE and rule["properties"]["security-severity"] == "5.0"
    # An absolute requirements path inside the working directory is written relative to it.
    assert origin_uri(str(tmp_path / "requirements" / "base.txt")) == "requirements/base.txt"
    assert origin_uri("/elsewhere/req s.txt") == "file:///elsewhere/req%20s.txt"


def many_matches_zip(count: int) -> bytes:
    """A zip of ``count`` files that match the light rule, and one that matches the heavy rule."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for i in range(count):
            archive.writestr(f"pkg/m{i:05}.py", b"# " + LIGHT_MARKER + b"\n")
        archive.writestr("pkg/zz_heavy.py", SETUP)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def many(rules: Rules) -> TargetResult:
    """One target with more findings than GitHub keeps (5,000) and than any report shows."""
    dist = Scanner(rules, threads=2).scan_bytes(many_matches_zip(SARIF_MAX_RESULTS + 200), "many.zip")
    return TargetResult.from_distributions("many.zip", "archive", "many.zip", [dist])


def ranked_members_zip(seed: int) -> bytes:
    """A zip whose members, in shuffled order, match the heavy rule, the light one, both or neither;
    two members share a path (the ranking then falls back to scan order)."""
    rng = random.Random(seed)
    contents = [MARKER, LIGHT_MARKER, MARKER + b" " + LIGHT_MARKER, b"nothing"]
    names = [f"pkg/{rng.choice('abc')}/m{i:03}.py" for i in range(60)] + ["pkg/a/m000.py"]
    rng.shuffle(names)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns of the duplicate name
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
            for name in names:
                archive.writestr(name, b"# " + rng.choice(contents) + b"\n")
    return buffer.getvalue()


def finding_keys(findings: Iterable[Finding]) -> list[tuple[str, str, str, int]]:
    return [(f.dist.name, f.file.path, f.match.identifier, first_offset(f.match)) for f in findings]


def first_offset(match: RuleMatch) -> int:
    pattern = first_pattern(match)
    return -1 if pattern is None else pattern.offset


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_binding_counts_and_top_findings_agree_with_the_files(rules: Rules, seed: int) -> None:
    dist = Scanner(rules, threads=2).scan_bytes(ranked_members_zip(seed), "ranked.zip")
    pairs = [(file, match) for file in dist.files for match in file.matches]
    assert dist.file_count == len(dist.files) > 10
    assert dist.match_count == len(pairs) > dist.file_count  # some files match both rules
    # Python's sort is stable: ties keep scan order, as the binding promises.
    expected = sorted(pairs, key=lambda p: (-p[1].weight, p[0].path, p[1].identifier))
    heaviest = sum(m.weight == expected[0][1].weight for _, m in pairs)
    assert 7 < heaviest < len(pairs)
    # Only hits as heavy as the n-th are ranked: n at either side of a weight's last hit.
    for n in (0, 1, 7, heaviest - 1, heaviest, heaviest + 1, len(pairs) - 1, len(pairs), len(pairs) + 5):
        got = [(f.path, m.identifier, f.sha256, first_offset(m)) for f, m in dist.top_findings(n)]
        assert got == [(f.path, m.identifier, f.sha256, first_offset(m)) for f, m in expected[:n]]
    counts: dict[str, tuple[int, int]] = {}
    for _, match in pairs:
        weight, hits = counts.get(match.identifier, (match.weight, 0))
        counts[match.identifier] = (weight, hits + 1)
    assert dist.rule_file_counts() == counts


@pytest.mark.parametrize(
    "made",
    [[(4, "b.zip"), (5, "a.zip"), (6, "a.zip")], [(7, "one.zip")]],
    ids=["three-distributions", "one-distribution"],  # one: the engine's own order is taken as it is
)
def test_top_findings_of_a_target_is_the_ranking_of_all_its_findings(
    rules: Rules, made: list[tuple[int, str]]
) -> None:
    scanner = Scanner(rules, threads=2)
    # Two distributions of one name: ties between them keep distribution order.
    dists = [scanner.scan_bytes(ranked_members_zip(seed), name) for seed, name in made]
    target = TargetResult.from_distributions("dir", "directory", "dir", dists)
    assert target.match_count == len(target.findings)
    for limit in (1, 10, 50, len(target.findings) + 1):
        expected = heapq.nsmallest(
            limit,
            target.findings,
            key=lambda f: (-f.match.weight, f.dist.name, f.file.path, f.match.identifier),
        )
        got = top_findings(target, limit)
        assert finding_keys(got) == finding_keys(expected)
        assert [id(f.dist) for f in got] == [id(f.dist) for f in expected]
        heaviest = heaviest_findings([target], limit)  # one target: its own ranking
        assert all(t is target for t, _ in heaviest)
        assert finding_keys(f for _, f in heaviest) == finding_keys(expected)


def test_sarif_keeps_the_heaviest_results_github_shows(many: TargetResult, rules: Rules) -> None:
    document = sarif_document([many], rules)
    validate_sarif(document)
    results = document["runs"][0]["results"]
    assert len(results) == SARIF_MAX_RESULTS == 5000
    assert results[0]["ruleId"] == "test_marker"  # the heaviest is never the one dropped
    notes = document["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert any("201 of 5201 finding(s) left out" in n["message"]["text"] for n in notes)


# -------------------------------------------------------------------------------------- markdown


HOSTILE_PATH = "pkg/a|b `x` <img src=x onerror=alert(1)> [l](http://e.x) *em*\x1b[31m.py"


def markdown_html(text: str) -> str:
    """The HTML GitHub-flavoured markdown (tables, raw HTML allowed) makes of ``text``."""
    return MarkdownIt("commonmark").enable("table").render(text)


def table_rows(html: str) -> list[list[str]]:
    """Every table row of rendered markdown, as the text of its cells."""
    return [
        [
            unescape(re.sub(r"<[^>]+>", "", cell))
            for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
        ]
        for row in re.findall(r"<tr>(.*?)</tr>", html, re.S)
    ]


def hostile_target(scanner: Scanner, tmp_path: Path) -> TargetResult:
    """An sdist whose member name and matched line try to break out of a markdown table."""
    snippet_line = b"x = '|' + '`' # " + MARKER + b" <b>bold</b>\x07\n"
    _, data = sdist("evil", "1.0", {HOSTILE_PATH: snippet_line})
    archive = write(tmp_path / "evil-1.0.tar.gz", data)
    return TargetResult.from_distributions(
        str(archive), "archive", archive.name, [scanner.scan_path(str(archive))]
    )


def test_markdown_report_summary_findings_and_issues(
    results: list[TargetResult], rules: Rules, scanner: Scanner, tmp_path: Path
) -> None:
    out = io.StringIO()
    render([*results, hostile_target(scanner, tmp_path)], rules, "markdown", out)
    text = out.getvalue()
    assert text.startswith("## dragonfly-hybrid: findings\n")
    assert "5 target(s): 2 with findings, 2 incomplete, 1 clean" in text and "exit code 1" in text
    html = markdown_html(text)
    assert "<img" not in html and "<b>" not in html and "<a " not in html and "<em>" not in html
    assert "\x1b" not in text and "\x07" not in text
    rows = table_rows(html)
    overview = rows[: rows.index(["Rule", "Weight", "Description", "File", "Snippet"])]
    assert overview[0] == ["Target", "Verdict", "Score", "Findings", "Size", "Issues"]
    assert [r[:4] for r in overview[1:3]] == [
        ["demo==0.1", "findings", "6", "3"],
        [overview[2][0], "findings", "5", "1"],
    ]
    assert [r[1] for r in overview[3:]] == ["incomplete", "incomplete", "clean"]
    assert overview[1][4].endswith(" kB") or overview[1][4].endswith(" B")
    finding_rows = [r for r in rows if len(r) == 5 and r[0] in ("test_marker", "light_marker")]
    assert [
        "test_marker",
        "5",
        "the test marker string",
        "demo-0.1.tar.gz/demo-0.1/setup.py:2",
        "# DRAGONFLY_TEST_MARKER",
    ] == finding_rows[0]
    hostile = next(r for r in finding_rows if r[3].startswith("evil-1.0.tar.gz/"))
    # Every cell is where it belongs: the pipe and the backticks stayed inside their code spans.
    assert hostile[3] == "evil-1.0.tar.gz/evil-1.0/" + HOSTILE_PATH.replace("\x1b", "\\x1b") + ":1"
    assert "DRAGONFLY_TEST_MARKER" in hostile[4]
    assert "### Issues" in text and "could not download gone\\-1\\.0\\.tar\\.gz" in text
    assert "`big-1.0.tar.gz/big-1.0/blob.bin`: member\\-too\\-large" in text


def test_markdown_report_is_bounded(many: TargetResult, rules: Rules) -> None:
    text = markdown_report([many], rules)
    rows = table_rows(markdown_html(text))
    assert len([r for r in rows if r[0] in ("test_marker", "light_marker")]) == TABLE_MAX_FINDINGS == 10
    assert rows[rows.index(["Rule", "Weight", "Description", "File", "Snippet"]) + 1][0] == "test_marker"
    assert f"… and {SARIF_MAX_RESULTS + 201 - 10} more finding(s); use `-f json` for all" in text
    assert len(text) < 5000


def test_markdown_report_bounds_targets_and_puts_findings_first(
    results: list[TargetResult], rules: Rules
) -> None:
    release, clean = results[0], results[1]
    many_targets = [replace(clean, target=f"clean-{i}.py") for i in range(60)] + [release] * 12
    text = markdown_report(many_targets, rules)
    overview = table_rows(markdown_html(text))[1:51]
    assert [row[0] for row in overview[:12]] == ["demo==0.1"] * 12 and overview[12][1] == "clean"
    assert "… and 22 more target(s); use `-f json` for all" in text
    assert text.count("### Findings in") == 10 and "… and 2 more target(s) with findings" in text


# ----------------------------------------------------------------------------------------- table


TableRenderer = Callable[[list[TargetResult], Rules, int, int], str]


def rich_table(targets: list[TargetResult], rules: Rules, width: int, min_score: int) -> str:
    out = io.StringIO()
    render_table(targets, rules, Console(file=out, width=width), min_score=min_score)
    return out.getvalue()


def text_table(targets: list[TargetResult], rules: Rules, width: int, min_score: int) -> str:
    return plain_table(targets, rules, width, min_score=min_score)


@pytest.fixture(params=[rich_table, text_table], ids=["terminal", "file"])
def table_text(request: pytest.FixtureRequest) -> TableRenderer:
    """The table as a terminal shows it (rich) and as a file or a pipe gets it (plain text): both are
    held to the same promises."""
    renderer: TableRenderer = request.param
    return renderer


@pytest.mark.parametrize("width", [80, 160])
def test_table_explains_findings_without_breaking_rule_names(
    table_text: TableRenderer, width: int, tmp_path: Path, scanner: Scanner
) -> None:
    long_rule = MARKER_RULE.replace("rule test_marker", "rule obfuscation_exec_decoded_payload_marker")
    long_rules = Rules.compile({"long.yar": long_rule})
    name, data = sdist("demo", "0.1", {"setup.py": SETUP, "demo/" + "deep/" * 12 + "x.py": SETUP})
    dist = Scanner(long_rules).scan_bytes(data, name)
    target = TargetResult.from_distributions(name, "archive", name, [dist])
    text = table_text([target], long_rules, width, 0)
    assert all(len(line) <= width for line in text.splitlines())
    assert "obfuscation_exec_decoded_payload_marker" in text  # whole, on one line
    # Paths and descriptions fold at the narrow width; their words are all there.
    assert "the test marker string" in text
    assert "demo-0.1.tar.gz/demo-0.1/setup.py" in re.sub(r"\s+", "", text)
    assert "DRAGONFLY_TEST_MARKER" in text  # the snippet
    assert re.search(r"\d+(\.\d)? (B|kB) scanned with 1 rule", text)
    assert not re.search(r"\d{4,} bytes", text)


def test_table_is_bounded(table_text: TableRenderer, many: TargetResult, rules: Rules) -> None:
    text = table_text([many], rules, 160, 0)
    assert text.count("light_marker") == TABLE_MAX_FINDINGS - 1 and text.count("test_marker") == 1
    assert f"… and {SARIF_MAX_RESULTS + 201 - 10} more finding(s); use -f json for all" in text
    assert len(text.splitlines()) < 40


def test_table_escapes_control_characters(
    table_text: TableRenderer, scanner: Scanner, rules: Rules, tmp_path: Path
) -> None:
    target = replace(hostile_target(scanner, tmp_path), target="evil[bold]-1.0[/bold].tar.gz")
    text = table_text([target], rules, 200, 0)
    assert "\x1b" not in text and "\x07" not in text
    assert "\\x1b[31m" in text
    # Names are shown as they are, never read as console markup.
    assert text.count("evil[bold]-1.0[/bold].tar.gz") == 3  # overview row, findings title, issues title


@pytest.mark.parametrize("width", [80, 100, 120, 160])
def test_table_fits_wide_characters_in_the_width(
    table_text: TableRenderer, width: int, scanner: Scanner, rules: Rules, tmp_path: Path
) -> None:
    """East Asian characters take two columns: lines are measured in columns, not characters."""
    member = "数据处理/" * 6 + "模块.py"
    _, data = sdist("wide", "1.0", {member: SETUP})
    archive = write(tmp_path / "wide-1.0.tar.gz", data)
    target = TargetResult.from_distributions(
        str(archive), "archive", archive.name, [scanner.scan_path(str(archive))]
    )
    text = table_text([target], rules, width, 0)
    assert all(cell_len(line) <= width for line in text.splitlines()), text
    assert "wide-1.0.tar.gz/wide-1.0/" in text
    if width < TABLE_WIDE_COLUMNS:  # the location folds in a column of its own: read together, it is whole
        assert f"wide-1.0.tar.gz/wide-1.0/{member}:2" in re.sub(r"\s+", "", text)
    assert "test_marker" in text and "DRAGONFLY_TEST_MARKER" in text


def test_file_table_is_plain_aligned_text(results: list[TargetResult], rules: Rules) -> None:
    """A file or a pipe gets the table as plain text: every overview row's cells start in the columns of
    the header, a finding's rule, weight and location share a line."""
    out = io.StringIO()
    render(results, rules, "table", out)
    text = out.getvalue()
    assert text == plain_table(results, rules, FILE_TABLE_WIDTH)
    lines = text.splitlines()
    header = lines[lines.index("Scan results") + 2]
    starts = [header.index(h) for h in ("Verdict", "Score", "Findings", "Size", "Issues")]
    row = next(line for line in lines if line.startswith("  demo==0.1 "))
    assert row[starts[0] :].startswith("findings")
    score_end, issues_end = starts[1] + len("Score"), starts[4] + len("Issues")
    assert row[:score_end].endswith(" 6") and row[:issues_end].endswith(" 0")  # numbers right-aligned
    finding = next(line for line in lines if "demo-0.1.tar.gz/demo-0.1/setup.py:2" in line)
    assert re.match(r"  test_marker +5  demo-0\.1\.tar\.gz/", finding)


def test_file_table_does_not_import_rich(tmp_path: Path) -> None:
    """Importing and running rich's layout is most of a large table's cost: a file never pays for it."""
    script = """
import io, sys
from dragonfly_hybrid import Rules, Scanner
from dragonfly_hybrid.report import TargetResult, render
from tests.fakes.pypi import MARKER, MARKER_RULE, sdist
rules = Rules.compile({"marker.yar": MARKER_RULE})
name, data = sdist("demo", "0.1", {"setup.py": b"# " + MARKER + b"\\n"})
target = TargetResult.from_distributions(name, "archive", name, [Scanner(rules).scan_bytes(data, name)])
out = io.StringIO()
render([target], rules, "table", out)
assert "test_marker" in out.getvalue(), out.getvalue()
print(sorted(m for m in sys.modules if m.split(".")[0] == "rich"))
"""
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo / "python"), str(repo)])}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_terminal_table_is_rich(results: list[TargetResult], rules: Rules) -> None:
    """A terminal keeps rich's table (its heavy rule under the overview's header, colour)."""
    controller, terminal = os.openpty()
    received = bytearray()

    def read_all() -> None:
        try:
            while chunk := os.read(controller, 65536):
                received.extend(chunk)
        except OSError as error:  # Linux: EIO once the terminal side is closed, the end of the output
            if error.errno != errno.EIO:
                raise

    reader = threading.Thread(target=read_all)
    reader.start()
    try:
        with open(terminal, "w", encoding="utf-8", closefd=True) as out:
            assert out.isatty()
            render(results, rules, "table", out)
    finally:
        reader.join(timeout=30)
        os.close(controller)
    text = received.decode()
    assert "━━━" in text and "test_marker" in text
    out_file = io.StringIO()
    render(results, rules, "table", out_file)
    assert "━" not in out_file.getvalue()


@pytest.mark.parametrize(
    ("size", "shown"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (1234, "1.2 kB"), (999_949, "999.9 kB"),
     (999_950, "1.0 MB"), (12_345_678, "12.3 MB"), (3 * 10**12, "3.0 TB")],
)  # fmt: skip
def test_human_size(size: int, shown: str) -> None:
    assert human_size(size) == shown


def test_printable_escapes_controls_and_clips() -> None:
    assert printable("a\nb\t\x1b[0m\u202egnp.exe\u200b") == "a\\nb\\t\\x1b[0m\\u202egnp.exe\\u200b"
    assert printable("x" * 100, 10) == "x" * 9 + "…"
    assert printable("ünïcode ok") == "ünïcode ok"


# ------------------------------------------------------------------------------------- --min-score


def test_min_score_sets_the_exit_code_and_marks_targets_below(
    table_text: TableRenderer, results: list[TargetResult], rules: Rules
) -> None:
    release, clean, incomplete, _ = results
    assert exit_code([release, clean], min_score=6) == EXIT_FINDINGS  # the release scores 6
    assert exit_code([release, clean], min_score=7) == EXIT_CLEAN
    assert exit_code([release, incomplete], min_score=7) == EXIT_INCOMPLETE
    assert release.fails(6) and not release.fails(7)
    text = table_text([release, clean], rules, 160, 7)
    assert "findings (below --min-score)" in text and "below --min-score 7 do not fail the run" in text
    sarif = sarif_document([release], rules, min_score=7)
    validate_sarif(sarif)
    assert {r["level"] for r in sarif["runs"][0]["results"]} == {"note"}
    assert sarif["runs"][0]["invocations"][0]["exitCode"] == EXIT_CLEAN
    out = io.StringIO()
    render([release], rules, "json", out, min_score=7)
    assert json.loads(out.getvalue())["summary"]["exit_code"] == EXIT_CLEAN
    assert "findings below \\-\\-min\\-score" in markdown_report([release], rules, min_score=7)


# ------------------------------------------------------------------------------ match locations

BUNDLED_SAMPLES = Path(__file__).parent / "fixtures" / "rules"


def regions(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Member URI -> region of the first result located there."""
    found: dict[str, dict[str, Any]] = {}
    for result in document["runs"][0]["results"]:
        physical = result["locations"][0]["physicalLocation"]
        found.setdefault(physical["artifactLocation"]["uri"], physical.get("region", {}))
    return found


def test_sarif_regions_give_lines_and_columns_in_text_files(
    table_text: TableRenderer, scanner: Scanner, rules: Rules
) -> None:
    prefix = "s = '\U0001d518ü' + '"  # an astral character counts 2 UTF-16 code units, ü one
    text = f"# café\n{prefix}".encode() + MARKER + b"'\r\n"
    long_line = b"x" * 300 + b" " + MARKER + b"\n"
    binary = b"\x00\x01\x02" + MARKER + b"\x00"
    _, data = sdist("loc", "1.0", {"a.py": text, "long.py": b"\n\n" + long_line, "blob.bin": binary})
    dist = scanner.scan_bytes(data, "loc-1.0.tar.gz")
    document = sarif_document([TargetResult.from_distributions("loc", "archive", dist.name, [dist])], rules)
    validate_sarif(document)
    assert document["runs"][0]["columnKind"] == "utf16CodeUnits"
    found = regions(document)
    start = len(prefix) + 1 + 1
    assert found["loc-1.0.tar.gz/loc-1.0/a.py"] == {
        "startLine": 2,
        "startColumn": start,
        "endColumn": start + len(MARKER),
        "snippet": {"text": f"{prefix}{MARKER.decode()}'"},  # without the line ending
        "byteOffset": text.index(MARKER),
        "byteLength": len(MARKER),
    }
    # The snippet of a long line starts after the line does: the line is known, the column is not.
    long = found["loc-1.0.tar.gz/loc-1.0/long.py"]
    assert long["startLine"] == 3 and "startColumn" not in long and MARKER.decode() in long["snippet"]["text"]
    # A binary file has no columns nor snippet: its region is the bytes (and the line GitHub requires).
    assert found["loc-1.0.tar.gz/loc-1.0/blob.bin"] == {
        "startLine": 1,
        "byteOffset": 3,
        "byteLength": len(MARKER),
    }
    table = table_text([TargetResult.from_distributions("loc", "archive", dist.name, [dist])], rules, 200, 0)
    assert "loc-1.0.tar.gz/loc-1.0/a.py:2" in table and "loc-1.0.tar.gz/loc-1.0/long.py:3" in table
    assert "loc-1.0.tar.gz/loc-1.0/blob.bin (byte 3)" in table and "\\x00\\x01" not in table
    assert f"{prefix}{MARKER.decode()}'" in table
    assert "…xxxxxxxxxxxxxxx DRAGONFLY_TEST_MARKER" in table


def test_sarif_of_a_malicious_sdist_and_wheel_with_the_bundled_rules() -> None:
    bundled = load_rules([])
    header = "# -*- coding: utf-8 -*-\n# déjà vu\n\n".encode()
    sources = {
        "setup.py": header + (BUNDLED_SAMPLES / "install_cmdclass_shell/positive/setup.py").read_bytes(),
        "joined.py": header
        + (BUNDLED_SAMPLES / "obfuscation_exec_decoded_payload/positive/fixture_pkg/joined.py").read_bytes(),
    }
    name, data = sdist("fixture-pkg", "0.1", {"setup.py": sources["setup.py"]})
    wheel_name, wheel_data = wheel("fixture_pkg", "0.1", {"fixture_pkg/joined.py": sources["joined.py"]})
    release = Scanner(bundled, threads=2).scan_release(
        "fixture-pkg", "0.1", [(name, data, None), (wheel_name, wheel_data, None)]
    )
    target = TargetResult.from_release("fixture-pkg==0.1", release)
    assert {"install_cmdclass_shell", "obfuscation_exec_decoded_payload"} <= set(target.rules_matched)
    document = sarif_document([target], bundled)
    validate_sarif(document)
    results = document["runs"][0]["results"]
    for result in results:
        physical = result["locations"][0]["physicalLocation"]
        source = sources[physical["artifactLocation"]["uri"].rsplit("/", 1)[1]]
        region = physical["region"]
        matched = source[region["byteOffset"] : region["byteOffset"] + region["byteLength"]].decode()
        line = source.decode().split("\n")[region["startLine"] - 1]
        # Line and column point at the bytes the region holds (the samples are ASCII after the header).
        assert region["startLine"] == source[: region["byteOffset"]].count(b"\n") + 1
        assert line[region["startColumn"] - 1 :].startswith(matched.split("\n")[0]), (result["ruleId"], line)
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in results}
    assert uris == {"fixture_pkg-0.1.tar.gz/fixture_pkg-0.1/setup.py",
                    "fixture_pkg-0.1-py3-none-any.whl/fixture_pkg/joined.py"}  # fmt: skip
    rule = next(
        r for r in document["runs"][0]["tool"]["driver"]["rules"] if r["id"] == "install_cmdclass_shell"
    )
    assert rule["shortDescription"]["text"] and float(rule["properties"]["security-severity"]) >= 5.0
