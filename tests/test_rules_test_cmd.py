"""``dragonfly-hybrid rules test``: recall and benign flagged on folders of real archives built here.

Exit codes: 0 measured (thresholds met), 1 a given threshold not met, 2 usage error.
A release is a folder entry: a file (one distribution) or a sub-folder (every file under it).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid import rules_eval
from dragonfly_hybrid.cli import app
from typer.testing import CliRunner, Result

from tests.fakes.pypi import BROKEN_RULE, sdist, wheel, write

RULES = """
rule test_strong {
  meta:
    weight = 7
    description = "a strong marker."
  strings:
    $a = "STRONG_MARKER"
  condition:
    $a
}

rule test_hint {
  meta:
    weight = 3
    description = "a light marker."
  strings:
    $a = "LIGHT_HINT"
  condition:
    $a
}

rule test_setup_only {
  meta:
    weight = 6
    description = "a marker that counts in setup.py only."
    filetype = "setup.py"
  strings:
    $a = "SETUP_MARKER"
  condition:
    $a
}
"""


def run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def run_json(*args: object) -> tuple[int, dict[str, Any]]:
    result = run("rules", "test", "--format", "json", *args)
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    return write(tmp_path / "rules" / "test.yar", RULES.encode())


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    """4 malicious releases (3 flagged) and 4 benign ones (1 flagged), as files and sub-folders."""
    mal = tmp_path / "malicious"
    name, data = sdist("evil", "1.0", {"setup.py": b"# STRONG_MARKER\n"})
    write(mal / name, data)
    # a release of two distributions: only the wheel matches, in setup.py (filetype)
    name, data = sdist("evil2", "1.0", {"README": b"nothing"})
    write(mal / "evil2@1.0" / name, data)
    name, data = wheel("evil2", "1.0", {"setup.py": b"SETUP_MARKER = 1\n"})
    write(mal / "evil2@1.0" / name, data)
    # a loose file
    write(mal / "dropper.py", b"x = 'STRONG_MARKER'\n")
    # missed: only a hint, and the setup-only marker in the wrong file
    name, data = sdist("sneaky", "1.0", {"pkg/core.py": b"LIGHT_HINT SETUP_MARKER\n"})
    write(mal / name, data)
    write(mal / ".hidden", b"STRONG_MARKER")  # ignored

    ben = tmp_path / "benign"
    for i in range(3):
        name, data = sdist(f"good{i}", "1.0", {"setup.py": b"from setuptools import setup\nsetup()\n"})
        write(ben / name, data)
    name, data = wheel("docs", "2.0", {"docs/notes.py": b"# mentions STRONG_MARKER in a comment\n"})
    write(ben / name, data)
    return mal, ben


def test_releases_are_entries(corpus: tuple[Path, Path]) -> None:
    mal, _ = corpus
    entries = rules_eval.release_entries(mal)
    assert [name for name, _ in entries] == [
        "dropper.py",
        "evil-1.0.tar.gz",
        "evil2@1.0",
        "sneaky-1.0.tar.gz",
    ]
    dists = dict(entries)["evil2@1.0"]
    assert [d for d, _ in dists] == ["evil2-1.0-py3-none-any.whl", "evil2-1.0.tar.gz"]


def test_json_counts(rules_file: Path, corpus: tuple[Path, Path]) -> None:
    mal, ben = corpus
    code, doc = run_json(rules_file, "--malicious", mal, "--benign", ben, "--threads", 2)
    assert code == 0
    assert doc["flag_weight"] == 5
    assert doc["rules"]["count"] == 3
    m = doc["malicious"]
    assert (m["releases"], m["flagged"], m["with_findings"]) == (4, 3, 4)
    assert m["recall"] == pytest.approx(0.75)
    assert [r["release"] for r in m["missed"]] == ["sneaky-1.0.tar.gz"]
    hint = m["missed"][0]["findings"]
    assert [(f["rule"], f["weight"]) for f in hint] == [("test_hint", 3)]
    assert hint[0]["file"] == "sneaky-1.0.tar.gz!sneaky-1.0/pkg/core.py"
    assert hint[0]["snippet"] == "LIGHT_HINT"
    b = doc["benign"]
    assert (b["releases"], b["flagged"]) == (4, 1)
    assert b["flagged_rate"] == pytest.approx(0.25)
    flagged = b["flagged_releases"][0]
    assert flagged["release"] == "docs-2.0-py3-none-any.whl"
    assert flagged["findings"] == [
        {
            "rule": "test_strong",
            "weight": 7,
            "file": "docs-2.0-py3-none-any.whl!docs/notes.py",
            "snippet": "STRONG_MARKER",
        }
    ]
    per_rule = {r["rule"]: r for r in doc["per_rule"]}
    assert per_rule["test_strong"] == {
        "rule": "test_strong",
        "weight": 7,
        "malicious": 2,
        "benign": 1,
        "malicious_only": 2,
    }
    assert per_rule["test_setup_only"]["malicious"] == 1
    assert per_rule["test_hint"]["malicious"] == 1
    assert doc["thresholds"] == {"min_recall": None, "max_flagged": None, "met": True, "failures": []}
    assert doc["exit_code"] == 0


def test_flag_weight_option(rules_file: Path, corpus: tuple[Path, Path]) -> None:
    mal, _ = corpus
    _, doc = run_json(rules_file, "--malicious", mal, "--flag-weight", 3)
    assert doc["malicious"]["flagged"] == 4
    _, doc = run_json(rules_file, "--malicious", mal, "--flag-weight", 7)
    assert doc["malicious"]["flagged"] == 2
    assert doc["benign"] is None


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("--min-recall", "0.75"), 0),
        (("--min-recall", "76%"), 1),
        (("--max-flagged", "25%"), 0),
        (("--max-flagged", "0.2"), 1),
        (("--min-recall", "0.5", "--max-flagged", "0.1"), 1),
    ],
)
def test_thresholds(rules_file: Path, corpus: tuple[Path, Path], args: tuple[str, ...], code: int) -> None:
    mal, ben = corpus
    result = run("rules", "test", rules_file, "--malicious", mal, "--benign", ben, *args)
    assert result.exit_code == code
    assert ("thresholds: met" if code == 0 else "thresholds: NOT met") in result.stdout


def test_table(rules_file: Path, corpus: tuple[Path, Path]) -> None:
    mal, ben = corpus
    result = run("rules", "test", rules_file, "--malicious", mal, "--benign", ben)
    assert result.exit_code == 0
    out = result.stdout
    assert "malicious" in out and "75.0%" in out and "25.0%" in out
    assert "missed malicious releases: 1" in out
    assert "  sneaky-1.0.tar.gz: test_hint" in out
    assert "flagged benign releases: 1" in out
    assert "test_strong (weight 7) in docs-2.0-py3-none-any.whl!docs/notes.py: STRONG_MARKER" in out


def test_limit_in_table(rules_file: Path, corpus: tuple[Path, Path]) -> None:
    mal, _ = corpus
    result = run("rules", "test", rules_file, "--malicious", mal, "--flag-weight", 10, "--limit", 1)
    assert "missed malicious releases: 4 (first 1)" in result.stdout
    assert result.stdout.count("\n  ") == 1


def test_bundled_rules_by_default(corpus: tuple[Path, Path]) -> None:
    _, ben = corpus
    code, doc = run_json("--benign", ben)
    assert code == 0
    assert doc["rules"]["count"] >= 18
    assert doc["benign"]["flagged"] == 0


def test_empty_folder_and_empty_release(rules_file: Path, tmp_path: Path) -> None:
    (tmp_path / "empty" / "nothing@1").mkdir(parents=True)
    code, doc = run_json(rules_file, "--malicious", tmp_path / "empty")
    assert code == 0
    missed = doc["malicious"]["missed"]
    assert missed == [{"release": "nothing@1", "incomplete": True, "issues": ["no files"], "findings": []}]
    (tmp_path / "none").mkdir()
    code, doc = run_json(rules_file, "--malicious", tmp_path / "none", "--min-recall", "0.5")
    assert code == 1
    assert doc["malicious"]["releases"] == 0


def test_corrupt_archive_is_incomplete(rules_file: Path, tmp_path: Path) -> None:
    _, data = sdist("cut", "1.0", {"setup.py": b"x" * 5000})
    write(tmp_path / "mal" / "cut-1.0.tar.gz", data[: len(data) // 2])
    code, doc = run_json(rules_file, "--malicious", tmp_path / "mal")
    assert code == 0
    (missed,) = doc["malicious"]["missed"]
    assert missed["incomplete"] is True and missed["issues"]
    assert doc["malicious"]["incomplete"] == 1


def test_entries_that_cannot_be_read_are_releases_that_count(rules_file: Path, tmp_path: Path) -> None:
    mal = tmp_path / "mal"
    write(mal / "dropper.py", b"x = 'STRONG_MARKER'\n")
    (mal / "stale-1.0.tar.gz").symlink_to(tmp_path / "gone" / "stale-1.0.tar.gz")  # a stale cache link
    os.mkfifo(mal / "fifo-1.0.tar.gz")
    write(mal / "partly@1.0" / "setup.py", b"x = 'STRONG_MARKER'\n")
    os.mkfifo(mal / "partly@1.0" / "pipe.py")
    (mal / "partly@1.0" / "linked").symlink_to(tmp_path)  # a link to a directory: not followed
    write(tmp_path / "cache" / "linked-1.0.tar.gz", sdist("linked", "1.0", {"setup.py": b"STRONG_MARKER"})[1])
    (mal / "linked-1.0.tar.gz").symlink_to(tmp_path / "cache" / "linked-1.0.tar.gz")  # read, as before
    code, doc = run_json(rules_file, "--malicious", mal)
    assert code == 0
    m = doc["malicious"]
    assert (m["releases"], m["flagged"], m["incomplete"]) == (5, 3, 3)
    assert m["recall"] == pytest.approx(0.6)
    issues = {r["release"]: r["issues"] for r in m["incomplete_releases"]}
    assert issues == {
        "fifo-1.0.tar.gz": ["fifo-1.0.tar.gz: a FIFO, socket or device, not read"],
        "partly@1.0": [
            "partly@1.0/linked: a symbolic link to a directory, not followed",
            "partly@1.0/pipe.py: a FIFO, socket or device, not read",
        ],
        "stale-1.0.tar.gz": [
            f"stale-1.0.tar.gz: a symbolic link to {str(tmp_path / 'gone' / 'stale-1.0.tar.gz')!r} that "
            "does not resolve, not read"
        ],
    }
    assert [r["release"] for r in m["missed"]] == ["fifo-1.0.tar.gz", "stale-1.0.tar.gz"]
    result = run("rules", "test", rules_file, "--malicious", mal, "--min-recall", "0.7")
    assert result.exit_code == 1
    assert "malicious         5        3  60.0%           3" in result.stdout
    heading = "incomplete malicious releases (not read completely; recall counts those not flagged as missed)"
    assert f"{heading}: 3" in result.stdout
    assert "    partly@1.0/pipe.py: a FIFO, socket or device, not read" in result.stdout
    assert "  recall 60.0% < 70.0% (2 incomplete release(s) not flagged count as missed)" in result.stdout


def _encrypted_wheel(directory: Path, name: str, member: bytes) -> None:
    """A wheel whose one member is marked encrypted: the engine cannot read it (an unscanned issue)."""
    filename, data = wheel(name, "1.0", {f"{name}/__init__.py": member})
    raw = bytearray(data)
    for header in (b"PK\x03\x04", b"PK\x01\x02"):  # the general-purpose flag's bit 0 in both headers
        start = 0
        while (at := raw.find(header, start)) != -1:
            raw[at + (6 if header == b"PK\x03\x04" else 8)] |= 1
            start = at + 4
    write(directory / filename, bytes(raw))


def test_an_incomplete_benign_release_counts_against_max_flagged(rules_file: Path, tmp_path: Path) -> None:
    ben = tmp_path / "ben"
    _encrypted_wheel(ben, "sealed", b"x = 'STRONG_MARKER'\n")
    code, doc = run_json(rules_file, "--benign", ben, "--max-flagged", "0")
    assert code == 1
    b = doc["benign"]
    assert (b["releases"], b["flagged"], b["incomplete"]) == (1, 0, 1)
    assert b["flagged_rate"] == 0.0 and b["flagged_rate_worst"] == 1.0
    (unread,) = b["incomplete_releases"]
    assert unread["release"] == "sealed-1.0-py3-none-any.whl" and "encrypted" in unread["issues"][0]
    assert doc["thresholds"]["met"] is False and doc["exit_code"] == 1
    table = run("rules", "test", rules_file, "--benign", ben, "--max-flagged", "0")
    assert table.exit_code == 1
    assert "incomplete benign releases (not read completely; --max-flagged counts those not flagged as " in (
        table.stdout
    )
    assert "  sealed-1.0-py3-none-any.whl:" in table.stdout and "thresholds: NOT met" in table.stdout
    # A bound, not a veto: with 4 clean releases read, one unread release is at most 20%.
    for i in range(4):
        write(ben / f"good{i}.py", b"x = 1\n")
    code, doc = run_json(rules_file, "--benign", ben, "--max-flagged", "20%")
    assert code == 0 and doc["benign"]["flagged_rate_worst"] == pytest.approx(0.2)
    code, doc = run_json(rules_file, "--benign", ben, "--max-flagged", "19%")
    assert code == 1


def test_a_side_with_no_release_meets_no_threshold(rules_file: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    write(empty / ".cache" / "x.py", b"x = 'STRONG_MARKER'\n")  # dot-entries are not releases
    code, doc = run_json(rules_file, "--benign", empty)
    assert code == 0 and doc["benign"]["releases"] == 0  # measured: nothing, and no threshold asked
    code, doc = run_json(rules_file, "--benign", empty, "--max-flagged", "0")
    assert code == 1 and doc["thresholds"]["failures"] == [f"no benign release in {empty}"]
    code, doc = run_json(rules_file, "--malicious", empty, "--min-recall", "0")
    assert code == 1 and doc["thresholds"]["failures"] == [f"no malicious release in {empty}"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give --malicious DIR, --benign DIR or both"),
        (("--malicious", "missing-dir"), "is not a directory"),
        (("--benign", "BEN", "--min-recall", "0.9"), "--min-recall needs --malicious"),
        (("--malicious", "MAL", "--max-flagged", "0.01"), "--max-flagged needs --benign"),
        (("--malicious", "MAL", "--min-recall", "1.5"), "bad threshold"),
        (("--malicious", "MAL", "--min-recall", "lots"), "bad threshold"),
    ],
)
def test_usage_errors(
    rules_file: Path, corpus: tuple[Path, Path], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    mal, ben = corpus
    real = [
        str(mal) if a == "MAL" else str(ben) if a == "BEN" else str(tmp_path / a) if a == "missing-dir" else a
        for a in args
    ]
    result = run("rules", "test", rules_file, *real)
    assert result.exit_code == 2
    assert message in result.stderr


def test_rules_that_do_not_compile(tmp_path: Path, corpus: tuple[Path, Path]) -> None:
    bad = write(tmp_path / "bad.yar", BROKEN_RULE.encode())
    result = run("rules", "test", bad, "--benign", corpus[1])
    assert result.exit_code == 2
    assert "bad.yar:3" in result.stderr  # file:line of the compile error


def test_names_that_are_not_utf8_are_scanned_and_shown_escaped(rules_file: Path, tmp_path: Path) -> None:
    """A sample named with a byte that is not UTF-8 ended the run with a TypeError (exit 3)."""
    mal = tmp_path / "malicious"
    mal.mkdir()
    (mal / os.fsdecode(b"plain\xfe.py")).write_bytes(b"x = 'STRONG_MARKER'\n")
    folder = mal / os.fsdecode(b"rel\xff")
    folder.mkdir()
    (folder / os.fsdecode(b"inner\xfe.py")).write_bytes(b"x = 'STRONG_MARKER'\n")
    code, data = run_json(rules_file, "--malicious", mal, "--min-recall", "100%")
    assert code == 0, data
    assert (data["malicious"]["releases"], data["malicious"]["flagged"]) == (2, 2)
    table = run("rules", "test", rules_file, "--malicious", mal)
    assert table.exit_code == 0 and "Traceback" not in table.output


def test_a_percentage_threshold_equal_to_the_rate_is_met(rules_file: Path, tmp_path: Path) -> None:
    """9 flagged of 125 is 7.2% exactly; `7.2%` was read as 0.07200000000000001 and not met."""
    mal = tmp_path / "malicious"
    mal.mkdir()
    for i in range(125):
        (mal / f"sample{i:03d}.py").write_bytes(b"x = 'STRONG_MARKER'\n" if i < 9 else b"x = 1\n")
    code, data = run_json(rules_file, "--malicious", mal, "--min-recall", "7.2%")
    assert (code, data["malicious"]["flagged"], data["malicious"]["releases"]) == (0, 9, 125)


def test_snippet_escapes() -> None:
    assert rules_eval.snippet(b"a\nb\\c\xff") == "a\\x0ab\\x5cc\\xff"


@pytest.mark.parametrize(
    ("text", "value"), [("0.9", 0.9), ("90%", 0.9), ("0", 0.0), ("100%", 1.0), ("7.2%", 0.072)]
)
def test_parse_fraction(text: str, value: float) -> None:
    assert rules_eval.parse_fraction(text) == pytest.approx(value)


# ------------------------------------------------------------------ the development split and the benchmark


def _git(repo: Path, *args: str, date: str | None = None) -> None:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(repo),
    }
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


@pytest.fixture
def malregistry(tmp_path: Path) -> Path:
    """A tiny repository laid out like pypi_malregistry, with additions before and after the cutoff."""
    repo = tmp_path / "work"
    repo.mkdir()
    _git(repo, "init", "-q")
    write(repo / "README.md", b"readme")
    write(repo / "old" / "1.0" / "old-1.0.tar.gz", b"old 1.0")
    write(repo / "flat" / "flat-0.1.tar.gz", b"flat")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "first", date="2023-08-16T01:40:36+08:00")
    write(repo / "old" / "2.0" / "old-2.0.tar.gz", b"old 2.0")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "second", date="2024-12-31T23:00:00+00:00")
    write(repo / "new" / "1.0" / "new-1.0.tar.gz", b"new")
    write(repo / "old" / "3.0" / "old-3.0.tar.gz", b"old 3.0 added late")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "late", date="2025-01-01T08:00:00+08:00")  # 2025-01-01T00:00Z: held out
    return repo / ".git"


def test_split_keeps_only_additions_before_the_cutoff(malregistry: Path, tmp_path: Path) -> None:
    from bench.detection import malregistry_split as split

    releases = split.development_set(split.additions(malregistry))
    assert sorted(releases) == ["flat@flat-0.1.tar.gz", "old@1.0", "old@2.0"]
    out = tmp_path / "out"
    counts = split.extract(malregistry, releases, out)
    assert sum(counts.values()) == 3
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    part = split.part_of("old")
    assert f"{part}/old@1.0/old-1.0.tar.gz" in files
    assert (out / part / "old@2.0" / "old-2.0.tar.gz").read_bytes() == b"old 2.0"
    assert not any("new" in f or "3.0" in f for f in files)


def test_split_is_by_package_name_and_stable() -> None:
    from bench.detection import malregistry_split as split

    names = [f"pkg{i}" for i in range(1000)]
    held = [n for n in names if split.part_of(n) == "heldback"]
    assert 150 < len(held) < 250
    assert all(split.part_of(n.upper()) == split.part_of(n) for n in names)
    assert split.part_of("requests") == split.part_of("requests")


def test_benchmark_markdown_and_per_package(tmp_path: Path) -> None:
    from bench.detection import run as bench_run

    folder = tmp_path / "mal"
    for name in ("a@1", "a@2", "b@1"):
        (folder / name).mkdir(parents=True)
        (folder / name / "x.py").write_text("x = 1\n")
    document = {"malicious": {"missed": [{"release": "a@2"}]}}
    packages, recall = bench_run.per_package(folder, document)
    assert packages == 2
    assert recall == pytest.approx((0.5 + 1.0) / 2)
    target = tmp_path / "B.md"
    target.write_text(f"x\n{bench_run.MARKDOWN_BEGIN}\nold\n{bench_run.MARKDOWN_END}\ny\n")
    bench_run.update(target, "new\n")
    assert target.read_text() == f"x\n{bench_run.MARKDOWN_BEGIN}\nnew\n{bench_run.MARKDOWN_END}\ny\n"


def test_benchmark_reports_missing_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.detection import run as bench_run

    monkeypatch.setenv("DFH_DETECTION_MALWARE", str(tmp_path / "nothing"))
    with pytest.raises(bench_run.DataMissing, match=r"malregistry_split\.py"):
        bench_run.malware_dirs()
