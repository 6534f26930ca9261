"""Report rendering over real scan results: verdicts, exit codes, pinned JSON keys, NDJSON, SARIF, table."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from dragonfly_hybrid import Limits, Rules, Scanner
from dragonfly_hybrid.report import (
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_INCOMPLETE,
    TargetResult,
    artifact_uri,
    exit_code,
    json_document,
    meta_value,
    ndjson_line,
    render,
    sarif_document,
    target_json,
)

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


def test_sarif_validates_against_the_official_schema(results: list[TargetResult], rules: Rules) -> None:
    out = io.StringIO()
    render(results, rules, "sarif", out)
    document = json.loads(out.getvalue())
    validate_sarif(document)
    assert document["version"] == "2.1.0" and len(document["runs"]) == 1


def test_sarif_results_rules_and_locations(results: list[TargetResult], rules: Rules) -> None:
    run = sarif_document(results, rules)["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "dragonfly-hybrid"
    assert {r["id"] for r in driver["rules"]} == {"test_marker", "light_marker"}
    marker_rule = next(r for r in driver["rules"] if r["id"] == "test_marker")
    assert marker_rule["shortDescription"] == {"text": "the test marker string"}
    assert marker_rule["properties"]["weight"] == 5 and marker_rule["properties"]["tags"] == ["test"]
    by_rule = {r["ruleId"]: r for r in run["results"]}
    marker = by_rule["test_marker"]
    assert marker["level"] == "error" and by_rule["light_marker"]["level"] == "warning"
    assert driver["rules"][marker["ruleIndex"]]["id"] == "test_marker"
    location = marker["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "demo-0.1.tar.gz/demo-0.1/setup.py"
    assert location["region"] == {"byteOffset": SETUP.index(MARKER), "byteLength": len(MARKER)}
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
