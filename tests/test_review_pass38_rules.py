"""Review pass 38 of the rules commands (``rules check``, ``rules test``) and of rule folders.

Real archives and folders built here; the CLI runs in-process (``CliRunner``), with the session's rules cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from dragonfly_hybrid import load_rules

from tests.fakes.pypi import LIGHT_RULE, MARKER_RULE, sdist, write
from tests.test_rules_test_cmd import run, run_json

RULES = """
rule strong { meta: weight = 7 strings: $a = "STRONG_MARK" condition: $a }
rule exactly_five { meta: weight = 5 strings: $a = "FIVE_MARK" condition: $a }
rule negative { meta: weight = -9 strings: $a = "NEGATIVE_MARK" condition: $a }
rule text_weight { meta: weight = "9" strings: $a = "TEXT_WEIGHT_MARK" condition: $a }
rule hint { meta: weight = 1 strings: $a = "HINT_MARK" condition: $a }
"""


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    return write(tmp_path / "rules" / "test.yar", RULES.encode())


def test_two_releases_shown_under_one_name_are_counted_apart(rules_file: Path, tmp_path: Path) -> None:
    """``caf\\xe9.py`` (a byte that is not UTF-8) and a file named with that text were one release: the
    clean one took the other's finding, recall read 100% for 50% and ``--min-recall 1`` passed."""
    mal = tmp_path / "mal"
    mal.mkdir()
    (mal / os.fsdecode(b"caf\xe9.py")).write_bytes(b"x = 'STRONG_MARK'\n")
    (mal / "caf\\xe9.py").write_bytes(b"x = 1\n")
    code, doc = run_json(rules_file, "--malicious", mal, "--min-recall", "1")
    m = doc["malicious"]
    assert (m["releases"], m["flagged"], m["recall"]) == (2, 1, 0.5)
    assert [r["findings"] for r in m["missed"]] == [[]]
    assert code == 1 and doc["exit_code"] == 1


def test_the_table_escapes_names_from_the_samples(rules_file: Path, tmp_path: Path) -> None:
    """Release, member and issue names were written raw: a sample named with a newline forged a row, an
    escape sequence drove the terminal."""
    mal, ben = tmp_path / "mal", tmp_path / "ben"
    write(mal / "evil\x1b]0;owned\x07\n  forged-1.0.tar.gz: looks.py", b"HINT_MARK")
    os.mkfifo(mal / "pipe\x1b[5m")
    name, data = sdist("m", "1.0", {"pkg/\x1b[2Jx\u202e.py": b"STRONG_MARK"})
    write(ben / name, data)
    result = run("rules", "test", rules_file, "--malicious", mal, "--benign", ben)
    assert result.exit_code == 0
    out = result.stdout
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\n  forged" not in out
    assert "  evil\\x1b]0;owned\\x07\\n  forged-1.0.tar.gz: looks.py: hint\n" in out
    assert "in m-1.0.tar.gz!m-1.0/pkg/\\x1b[2Jx\\u202e.py: STRONG_MARK" in out
    assert "    pipe\\x1b[5m: a FIFO, socket or device, not read" in out


@pytest.mark.parametrize("value", ["1e9999999%", "-1e9999999%"])
def test_a_threshold_past_decimal_range_is_a_usage_error(
    rules_file: Path, tmp_path: Path, value: str
) -> None:
    """Decimal's Overflow escaped parse_fraction: a traceback and exit 1, "threshold not met" to a CI."""
    write(tmp_path / "mal" / "x.py", b"x = 1\n")
    result = run("rules", "test", rules_file, "--malicious", tmp_path / "mal", "--min-recall", value)
    assert result.exit_code == 2
    assert result.stderr == f"error: bad threshold: {value!r} is not a number\n"


@pytest.mark.parametrize("value", ["-0", "-0%", "-0.0"])
def test_minus_zero_is_zero(rules_file: Path, tmp_path: Path, value: str) -> None:
    write(tmp_path / "mal" / "x.py", b"x = 1\n")
    result = run(
        "rules",
        "test",
        rules_file,
        "--malicious",
        tmp_path / "mal",
        "--min-recall",
        value,
        "--format",
        "json",
    )
    assert result.exit_code == 0
    assert '"min_recall": 0.0,' in result.stdout and "-0.0" not in result.stdout


@pytest.mark.parametrize(
    ("value", "code"), [("0", 0), ("1e-9", 0), ("50 %", 0), ("50%", 0), ("50.1%", 1), ("1", 1), ("100%", 1)]
)
def test_threshold_spellings(rules_file: Path, tmp_path: Path, value: str, code: int) -> None:
    mal = tmp_path / "mal"
    write(mal / "a.py", b"STRONG_MARK")
    write(mal / "b.py", b"x = 1\n")
    assert run_json(rules_file, "--malicious", mal, "--min-recall", value)[0] == code


def test_weights_at_the_edges(rules_file: Path, tmp_path: Path) -> None:
    """A weight equal to --flag-weight flags; negative and non-integer weights (0) do not; a sub-folder
    release with an archive inside an archive is read to the inner member."""
    mal = tmp_path / "mal"
    write(mal / "five.py", b"FIVE_MARK")
    write(mal / "negative.py", b"NEGATIVE_MARK")
    write(mal / "text.py", b"TEXT_WEIGHT_MARK")
    inner_name, inner = sdist("inner", "1.0", {"pkg/x.py": b"STRONG_MARK"})
    outer_name, outer = sdist("outer", "1.0", {"vendor/" + inner_name: inner})
    write(mal / "nested@1.0" / "sub" / outer_name, outer)
    (tmp_path / "ben").mkdir()
    code, doc = run_json(rules_file, "--malicious", mal, "--benign", tmp_path / "ben", "--limit", 0)
    assert code == 0
    m = doc["malicious"]
    assert (m["releases"], m["flagged"], m["with_findings"], m["incomplete"]) == (4, 2, 4, 0)
    assert sorted(r["release"] for r in m["missed"]) == ["negative.py", "text.py"]
    weights = {r["rule"]: r["weight"] for r in doc["per_rule"]}
    assert weights == {"exactly_five": 5, "hint": None, "negative": -9, "strong": 7, "text_weight": 0}
    assert doc["benign"]["releases"] == 0 and doc["benign"]["flagged_rate"] == 0.0
    assert doc["benign"]["flagged_rate_worst"] == 0.0
    code, doc = run_json(rules_file, "--malicious", mal, "--flag-weight", 6)
    assert doc["malicious"]["flagged"] == 1


def test_a_linked_folder_in_a_rules_folder_is_read(tmp_path: Path) -> None:
    """``rglob`` did not follow a link to a folder: its rules were dropped unseen ("ok: 1 rule(s)")."""
    write(tmp_path / "shared" / "light.yar", LIGHT_RULE.encode())
    rules = tmp_path / "rules"
    write(rules / "main.yar", MARKER_RULE.encode())
    (rules / "shared").symlink_to(tmp_path / "shared")
    (rules / "again").symlink_to(rules)  # a loop: walked once
    assert sorted(load_rules([rules]).identifiers) == ["light_marker", "test_marker"]
    result = run("rules", "check", rules)
    assert result.exit_code == 0 and result.stdout.startswith("ok: 2 rule(s)")


def test_an_unusable_rules_cache_is_named_in_the_warning(tmp_path: Path) -> None:
    """The warning said only "ignoring an unusable cached rule set" (the path and the reason were logging
    extras the CLI does not print): at every start, with nothing to find the cause by."""
    rules = tmp_path / "rules"
    write(rules / "main.yar", MARKER_RULE.encode())
    not_a_folder = tmp_path / "cache-is-a-file"
    not_a_folder.write_text("")
    env = {**os.environ, "DRAGONFLY_RULES_CACHE_DIR": str(not_a_folder)}
    done = subprocess.run(
        [sys.executable, "-m", "dragonfly_hybrid.cli", "rules", "check", str(rules)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    [line] = [line for line in done.stderr.splitlines() if "unusable cached rule set" in line]
    assert str(not_a_folder) in line and "Not a directory" in line, line


def test_a_duplicate_rule_names_both_files(tmp_path: Path) -> None:
    """The error named the second declaration's file only: with two folders of rules, nothing said where
    the first one was."""
    rules = tmp_path / "rules"
    write(rules / "one.yar", b"rule same { condition: true }\n")
    write(rules / "two.yar", b"\nrule same { condition: false }\n")
    result = run("rules", "check", rules)
    assert result.exit_code == 2
    [line] = [line for line in result.output.splitlines() if "duplicate rule" in line]
    assert line.endswith(
        "two.yar:2:6: duplicate rule `same`: duplicate declaration of `same` "
        f"(`same` declared here for the first time: {rules / 'one.yar'}:1:6)"
    ), line


def test_a_duplicate_rule_in_another_folder_names_the_first_file_by_its_path(tmp_path: Path) -> None:
    """Pass 44: with two folders the first declaration was named by its origin label (``one.yar``), the
    second by its path (``b/sub/two.yar``): both by path now."""
    write(tmp_path / "a" / "one.yar", b"rule same { condition: true }\n")
    write(tmp_path / "b" / "sub" / "two.yar", b"rule same { condition: false }\n")
    result = run("rules", "check", tmp_path / "a", tmp_path / "b")
    assert result.exit_code == 2
    [line] = [line for line in result.output.splitlines() if "duplicate rule" in line]
    first = tmp_path / "a" / "one.yar"
    assert line.endswith(f"(`same` declared here for the first time: {first}:1:6)"), line
