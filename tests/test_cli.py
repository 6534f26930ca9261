"""The ``dragonfly-hybrid`` CLI, in-process (typer's CliRunner) and as a real subprocess.

Exit codes are a public contract: 0 clean, 1 findings, 2 usage/configuration error, 3 incomplete.
A project or version the index does not have is a usage error (2); an index that cannot be reached or a
file that cannot be downloaded (too large, wrong sha256, connection lost) is "could not scan" (3).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from dragonfly_hybrid import __version__
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.cli.common import parse_size
from typer.testing import CliRunner, Result

from tests.fakes.pypi import (
    BROKEN_RULE,
    LIGHT_MARKER,
    MARKER,
    MARKER_RULE,
    FakeFile,
    FakeIndex,
    sdist,
    validate_sarif,
    wheel,
    write,
)

SETUP = b"import os\n# " + MARKER + b"\n"


def run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def run_json(*args: object) -> tuple[int, dict[str, Any]]:
    result = run("scan", "--format", "json", *args)
    return result.exit_code, json.loads(result.stdout)


def subprocess_run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


@pytest.fixture
def archives(tmp_path: Path) -> dict[str, Path]:
    """A malicious sdist, a clean wheel, a loose file with a light marker, an sdist with a big member."""
    out = tmp_path / "in"
    return {
        "bad": write(out / "bad-0.1.tar.gz", sdist("bad", "0.1", {"setup.py": SETUP})[1]),
        "clean": write(
            out / "clean-0.1-py3-none-any.whl", wheel("clean", "0.1", {"clean/__init__.py": b""})[1]
        ),
        "light": write(out / "loose.py", b"# " + LIGHT_MARKER + b"\n"),
        "big": write(out / "big-1.0.tar.gz", sdist("big", "1.0", {"blob.bin": b"\0" * 5000})[1]),
    }


# ----------------------------------------------------------------------------------------- exit codes


def test_clean_scan_exits_0(archives: dict[str, Path], rules_dir: Path) -> None:
    result = run("scan", "--rules", rules_dir, archives["clean"])
    assert result.exit_code == 0, result.output
    assert "clean" in result.stdout and "clean-0.1-py3-none-any.whl" in result.stdout


def test_findings_exit_1_and_table_shows_them(archives: dict[str, Path], rules_dir: Path) -> None:
    result = run("scan", "-r", rules_dir, archives["clean"], archives["bad"])
    assert result.exit_code == 1, result.output
    assert "test_marker" in result.stdout and "bad-0.1.tar.gz/bad-0.1/setup.py" in result.stdout
    assert result.stderr == ""


def test_incomplete_exits_3_and_findings_win(archives: dict[str, Path], rules_dir: Path) -> None:
    code, document = run_json("-r", rules_dir, "--max-member-size", "1K", archives["big"])
    assert code == 3
    (target,) = document["targets"]
    assert target["verdict"] == "incomplete" and target["distributions"][0]["issues"][0]["unscanned"]
    code, document = run_json("-r", rules_dir, "--max-member-size", "1KiB", archives["big"], archives["bad"])
    assert code == 1 and document["summary"] == {**document["summary"], "findings": 1, "incomplete": 1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing-1.0.tar.gz"], "missing-1.0.tar.gz: no such file or directory"),
        (["./nowhere/x"], "./nowhere/x: no such file or directory"),
        (["not a name!"], "not a PyPI project name"),
        (["pkg==not-a-version!"], "is not a valid version"),
    ],
)
def test_bad_targets_exit_2_with_one_error_line(rules_dir: Path, args: list[str], message: str) -> None:
    result = run("scan", "--rules", rules_dir, *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stdout == ""


def test_bad_size_option_exits_2(archives: dict[str, Path], rules_dir: Path) -> None:
    result = run("scan", "--rules", rules_dir, "--max-member-size", "12Q", archives["clean"])
    assert result.exit_code == 2
    assert "'12Q' is not a size" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0", 0), ("1500", 1500), ("5K", 5000), ("128M", 128_000_000), ("2G", 2_000_000_000),
     ("64MiB", 64 << 20), ("1kib", 1024), ("1.5 MB", 1_500_000), ("3GiB", 3 << 30)],
)  # fmt: skip
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


# --------------------------------------------------------------------------------------------- rules


def test_rules_from_a_single_file(archives: dict[str, Path], tmp_path: Path) -> None:
    rule = write(tmp_path / "only.yar", MARKER_RULE.encode())
    code, document = run_json("--rules", rule, archives["bad"], archives["light"])
    assert code == 1 and document["rules"]["count"] == 1
    assert [t["verdict"] for t in document["targets"]] == ["findings", "clean"]


def test_rules_directory_is_read_recursively(archives: dict[str, Path], rules_dir: Path) -> None:
    code, document = run_json("--rules", rules_dir, archives["light"])
    assert code == 1 and document["rules"]["count"] == 2
    assert document["targets"][0]["rules_matched"] == ["light_marker"]


def test_rules_check_prints_count_and_hash(rules_dir: Path) -> None:
    result = run("rules", "check", rules_dir)
    assert result.exit_code == 0
    assert result.stdout.startswith("ok: 2 rule(s), hash ") and len(result.stdout.split()[-1]) == 64


def test_compile_error_exits_2_with_file_and_line(rules_dir: Path, archives: dict[str, Path]) -> None:
    broken = write(rules_dir / "sub" / "broken.yar", BROKEN_RULE.encode())
    for args in (["rules", "check", rules_dir], ["scan", "--rules", rules_dir, archives["clean"]]):
        result = run(*args)
        assert result.exit_code == 2, args
        assert result.stderr.startswith("error: rules do not compile")
        assert f"{broken}:3:" in result.stderr, result.stderr


def test_compiled_blob_round_trip(rules_dir: Path, archives: dict[str, Path], tmp_path: Path) -> None:
    blob = tmp_path / "rules.bin"
    compiled = run("rules", "compile", rules_dir, "-o", blob)
    assert compiled.exit_code == 0 and blob.stat().st_size > 0
    _, from_sources = run_json("--rules", rules_dir, archives["bad"])
    code, from_blob = run_json("--rules", blob, archives["bad"])
    assert code == 1
    assert from_blob["rules"] == from_sources["rules"]
    assert from_blob["targets"][0]["rules_matched"] == ["test_marker"]


def test_unreadable_rules_exit_2(tmp_path: Path, archives: dict[str, Path]) -> None:
    empty = tmp_path / "empty-rules"
    empty.mkdir()
    for rules in (tmp_path / "absent.yar", empty, write(tmp_path / "junk.yar", b"\xff\xfe\x00junk")):
        result = run("scan", "--rules", rules, archives["clean"])
        assert result.exit_code == 2, rules
        assert result.stderr.startswith("error: ") and "Traceback" not in result.output


# -------------------------------------------------------------------------------------- formats, output


def test_output_file_json_and_quiet(archives: dict[str, Path], rules_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    result = run(
        "scan", "-q", "-r", rules_dir, "-f", "json", "-o", report, archives["bad"], archives["clean"]
    )
    assert result.exit_code == 1 and result.stdout == ""
    document = json.loads(report.read_text())
    assert set(document) == {"tool", "rules", "targets", "summary"}
    assert document["tool"] == {"name": "dragonfly-hybrid", "version": __version__}
    assert [t["kind"] for t in document["targets"]] == ["archive", "archive"]
    assert document["summary"]["exit_code"] == 1


def test_ndjson_and_sarif_formats(archives: dict[str, Path], rules_dir: Path) -> None:
    result = run("scan", "-r", rules_dir, "-f", "ndjson", archives["bad"], archives["light"])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["target"] for line in lines] == [str(archives["bad"]), str(archives["light"])]
    assert lines[1]["kind"] == "file"
    result = run("scan", "-r", rules_dir, "-f", "sarif", archives["bad"])
    sarif = json.loads(result.stdout)
    validate_sarif(sarif)
    assert result.exit_code == 1 and sarif["version"] == "2.1.0"
    assert sarif["runs"][0]["results"][0]["ruleId"] == "test_marker"


def test_the_digest_formats_carry_the_digests(archives: dict[str, Path], rules_dir: Path) -> None:
    """``scan`` hashes only for the formats that show digests: those must still carry them."""
    archive, setup = (
        hashlib.sha256(archives["bad"].read_bytes()).hexdigest(),
        hashlib.sha256(SETUP).hexdigest(),
    )
    _, document = run_json("-r", rules_dir, archives["bad"])
    [dist] = document["targets"][0]["distributions"]
    assert (dist["sha256"], [f["sha256"] for f in dist["files"]]) == (archive, [setup])
    line = json.loads(run("scan", "-r", rules_dir, "-f", "ndjson", archives["bad"]).stdout)
    assert line["distributions"][0]["sha256"] == archive
    sarif = json.loads(run("scan", "-r", rules_dir, "-f", "sarif", archives["bad"]).stdout)
    assert setup in json.dumps(sarif["runs"][0]["results"][0]["properties"])


def test_markdown_format(archives: dict[str, Path], rules_dir: Path) -> None:
    result = run("scan", "-r", rules_dir, "-f", "markdown", archives["bad"], archives["clean"])
    assert result.exit_code == 1
    assert result.stdout.startswith("## dragonfly-hybrid: findings\n")
    assert (
        "| `test_marker` | 5 | the test marker string | `bad-0.1.tar.gz/bad-0.1/setup.py:2` "
        "| `# DRAGONFLY_TEST_MARKER` |"
    ) in result.stdout


def test_min_score_decides_which_findings_fail(archives: dict[str, Path], rules_dir: Path) -> None:
    light = run("scan", "-r", rules_dir, "--min-score", "2", archives["light"])  # weight 1: below
    assert light.exit_code == 0, light.output
    assert "findings (below --min-score)" in light.stdout and "light_marker" in light.stdout
    assert run("scan", "-r", rules_dir, "--min-score", "1", archives["light"]).exit_code == 1
    assert run("scan", "-r", rules_dir, "--min-score", "5", archives["bad"]).exit_code == 1
    below_and_incomplete = run(
        "scan",
        "-r",
        rules_dir,
        "--min-score",
        "2",
        "--max-member-size",
        "1K",
        archives["light"],
        archives["big"],
    )
    assert below_and_incomplete.exit_code == 3
    code, document = run_json("-r", rules_dir, "--min-score", "6", archives["bad"])
    assert (
        code == 0
        and document["summary"]["exit_code"] == 0
        and document["targets"][0]["verdict"] == "findings"
    )
    negative = run("scan", "-r", rules_dir, "--min-score", "-1", archives["bad"])
    assert negative.exit_code == 2 and "--min-score" in negative.stderr


def test_unwritable_output_exits_2(archives: dict[str, Path], rules_dir: Path, tmp_path: Path) -> None:
    result = run("scan", "-r", rules_dir, "-o", tmp_path / "no" / "such" / "dir.json", archives["clean"])
    assert result.exit_code == 2 and "cannot write" in result.stderr


def test_directory_target(archives: dict[str, Path], rules_dir: Path, tmp_path: Path) -> None:
    directory = archives["bad"].parent
    write(directory / "nested" / "deeper" / "x.txt", b"plain")
    (directory / "link.py").symlink_to(archives["light"])
    code, document = run_json("-r", rules_dir, "--max-member-size", "1M", directory)
    assert code == 1
    (target,) = document["targets"]
    assert target["kind"] == "directory" and target["name"] == "in"
    # The link to a file of the directory is scanned under its own name (see tests/test_local_scans.py).
    assert [d["name"] for d in target["distributions"]] == [
        "bad-0.1.tar.gz", "big-1.0.tar.gz", "clean-0.1-py3-none-any.whl", "link.py", "loose.py",
        "nested/deeper/x.txt",
    ]  # fmt: skip
    assert target["score"] == 5 and sorted(target["rules_matched"]) == ["light_marker", "test_marker"]


def test_empty_directory_is_incomplete(rules_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, document = run_json("-r", rules_dir, empty)
    assert code == 3 and "no regular files" in document["targets"][0]["error"]


def test_version() -> None:
    for args in (["version"], ["--version"]):
        result = run(*args)
        assert result.exit_code == 0 and result.stdout.strip() == f"dragonfly-hybrid {__version__}"


def test_help_documents_exit_codes() -> None:
    result = run("scan", "--help")
    assert result.exit_code == 0
    assert "Exit codes" in result.stdout and "could not scan" in result.stdout


LIMIT_FLAGS = ["--max-member-size", "--max-total-size", "--max-members", "--max-ratio", "--max-depth",
               "--timeout"]  # fmt: skip
PUBLIC_FLAGS = {
    "scan": ["--requirements", "-R", "--store", "--rules", "-r", "--format", "-f", "--min-score", "--output",
             "-o", "--threads", *LIMIT_FLAGS, "--max-download-size", "--index-url", "--extra-index-url",
             "--python-version", "--allow-skipped", "--quiet", "-q"],
    "watch": ["--store", "--rules", "-r", "--index-url", "--include", "--exclude", "--max-size", "--webhook",
              "--webhook-min-score", "--interval", "--lease", "--threads", *LIMIT_FLAGS,
              "--max-download-size", "--once", "--max-jobs", "--log-format", "--log-level"],
}  # fmt: skip


@pytest.mark.parametrize("command", sorted(PUBLIC_FLAGS))
def test_public_flags_are_pinned(command: str) -> None:
    """Flags are a public contract: scripts and CI use them. ``scan`` and ``watch`` share the limit flags
    (one definition, ``cli.common.limit_options``), with the same defaults and help."""
    group: Any = typer.main.get_command(app)
    params = group.commands[command].params
    flags = [flag for p in params if p.param_type_name == "option" for flag in p.opts + p.secondary_opts]
    assert flags == PUBLIC_FLAGS[command]
    limits = {p.opts[0]: (p.default, p.help) for p in params if p.opts[0] in LIMIT_FLAGS}
    assert limits["--max-member-size"][0] == 256_000_000 and limits["--timeout"][0] == 10.0
    scan_limits = {p.opts[0]: (p.default, p.help) for p in group.commands["scan"].params}
    assert all(scan_limits[flag] == value for flag, value in limits.items())


# ----------------------------------------------------------------------------------------------- PyPI


def publish(index: FakeIndex) -> None:
    index.add(
        "demo", sdist("demo", "1.0", {"setup.py": SETUP}), wheel("demo", "1.0", {"demo/__init__.py": b""})
    )
    index.add("demo", sdist("demo", "2.0", {"setup.py": b"print('fine')\n"}))
    index.add("demo", sdist("demo", "3.0b1", {"setup.py": SETUP}))


def test_release_end_to_end(fake_index: FakeIndex, rules_dir: Path) -> None:
    publish(fake_index)
    code, document = run_json("-r", rules_dir, "--index-url", fake_index.url, "demo==1.0")
    assert code == 1
    (target,) = document["targets"]
    assert (target["kind"], target["name"], target["version"], target["score"]) == (
        "release",
        "demo",
        "1.0",
        5,
    )
    assert [d["name"] for d in target["distributions"]] == ["demo-1.0-py3-none-any.whl", "demo-1.0.tar.gz"]
    assert target["distributions"][1]["url"] == fake_index.file_url("demo", "demo-1.0.tar.gz")
    assert target["inspector_url"].endswith("/files/demo/demo-1.0.tar.gz/demo-1.0/setup.py")


def test_latest_release(fake_index: FakeIndex, rules_dir: Path) -> None:
    publish(fake_index)
    code, document = run_json("-r", rules_dir, "--index-url", fake_index.url, "demo")
    assert code == 0
    assert document["targets"][0]["version"] == "2.0" and document["targets"][0]["verdict"] == "clean"


@pytest.mark.parametrize(
    ("target", "message"),
    [("nope==1.0", "no project named 'nope'"), ("demo==9.0", "has no files for version 9.0")],
)
def test_unknown_project_or_version_exits_2(
    fake_index: FakeIndex, rules_dir: Path, target: str, message: str
) -> None:
    publish(fake_index)
    result = run("scan", "-r", rules_dir, "--index-url", fake_index.url, target)
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert result.stdout == ""


def test_oversized_download_exits_3_naming_the_cap(fake_index: FakeIndex, rules_dir: Path) -> None:
    fake_index.add("huge", FakeFile("huge-1.0.tar.gz", os.urandom(5000), listed_size=-1))
    code, document = run_json(
        "-r", rules_dir, "--index-url", fake_index.url, "--max-download-size", "2K", "huge"
    )
    assert code == 3
    assert "huge-1.0.tar.gz exceeds the download size cap of 2000 bytes" in document["targets"][0]["error"]


def test_sha256_mismatch_exits_3(fake_index: FakeIndex, rules_dir: Path) -> None:
    name, data = sdist("demo", "1.0", {"setup.py": b"fine"})
    fake_index.add("demo", FakeFile(name, data, listed_sha256="ab" * 32))
    result = run("scan", "-r", rules_dir, "--index-url", fake_index.url, "demo==1.0")
    assert result.exit_code == 3
    assert "sha256 of demo-1.0.tar.gz" in result.stdout and "incomplete" in result.stdout


def test_partial_download_failure_keeps_findings(fake_index: FakeIndex, rules_dir: Path) -> None:
    publish(fake_index)
    fake_index.faults.drop.add("demo-1.0-py3-none-any.whl")
    code, document = run_json("-r", rules_dir, "--index-url", fake_index.url, "demo==1.0")
    assert code == 1
    (target,) = document["targets"]
    assert target["verdict"] == "findings" and "demo-1.0-py3-none-any.whl" in target["error"]
    assert [d["name"] for d in target["distributions"]] == ["demo-1.0.tar.gz"]


def test_transient_errors_are_retried(fake_index: FakeIndex, rules_dir: Path) -> None:
    publish(fake_index)
    fake_index.faults.fail_first["/simple/demo/"] = 1
    fake_index.faults.fail_first["/files/demo/demo-1.0.tar.gz"] = 1
    code, _ = run_json("-r", rules_dir, "--index-url", fake_index.url, "demo==1.0")
    assert code == 1


def test_index_down_exits_3(fake_index: FakeIndex, rules_dir: Path) -> None:
    fake_index.faults.project_status["demo"] = 503
    code, document = run_json("-r", rules_dir, "--index-url", fake_index.url, "demo==1.0")
    assert code == 3 and "HTTP 503" in document["targets"][0]["error"]


# ------------------------------------------------------------------------------------------ subprocess


def test_subprocess_scan_findings_json(archives: dict[str, Path], rules_dir: Path) -> None:
    done = subprocess_run("scan", "--rules", rules_dir, "--format", "json", "--quiet", archives["bad"])
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert document["summary"]["verdict"] == "findings" and done.stderr == ""


def test_subprocess_release_and_compile_error(fake_index: FakeIndex, rules_dir: Path, tmp_path: Path) -> None:
    publish(fake_index)
    done = subprocess_run("scan", "-r", rules_dir, "--index-url", fake_index.url, "-f", "sarif", "demo==1.0")
    assert done.returncode == 1, done.stderr
    sarif = json.loads(done.stdout)
    validate_sarif(sarif)
    assert sarif["runs"][0]["results"][0]["ruleId"] == "test_marker"
    broken = write(tmp_path / "broken.yar", BROKEN_RULE.encode())
    done = subprocess_run("rules", "check", broken)
    assert done.returncode == 2
    assert f"{broken}:3:" in done.stderr and "Traceback" not in done.stderr
    done = subprocess_run("scan", "-r", rules_dir, "no-such-file.whl")
    assert done.returncode == 2 and done.stderr.startswith("error: no-such-file.whl: no such file")
