"""Where rules come from (``--rules`` of every command, ``rules check``): each source is read once, a set
without rules is refused, sources with the same name are all kept, and rule directories hold rule files only.

The CLI runs as a real subprocess (``python -m dragonfly_hybrid.cli``, with the rules cache of the test
session unless a test gives its own): that is where the background prefetch of ``scan`` runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from dragonfly_hybrid import Rules, load_rules
from dragonfly_hybrid.errors import NoRulesError

from tests.fakes.pypi import BROKEN_RULE, LIGHT_RULE, MARKER, MARKER_RULE, write

OTHER_RULE = 'rule other_marker { strings: $a = "never-in-the-target" condition: $a }\n'


def dragonfly(
    *args: str | Path, env: dict[str, str] | None = None, pass_fds: tuple[int, ...] = ()
) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", *map(str, args)]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
        pass_fds=pass_fds,
    )


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """A file ``test_marker`` (MARKER_RULE) matches."""
    return write(tmp_path / "target" / "setup.py", b"# " + MARKER + b"\n")


# ------------------------------------------------------------------------------- a source is read once


@pytest.fixture
def rules_pipe() -> Iterator[tuple[int, str]]:
    """``--rules <(cat marker.yar)``: a pipe, its read end open in the child as ``/dev/fd/N``; a thread writes
    MARKER_RULE once and closes the write end. Reading it a second time gives nothing."""
    read_end, write_end = os.pipe()

    def feed() -> None:
        with os.fdopen(write_end, "w") as out:
            out.write(MARKER_RULE)

    writer = threading.Thread(target=feed)
    writer.start()
    yield read_end, f"/dev/fd/{read_end}"
    writer.join()
    os.close(read_end)


@pytest.mark.parametrize("run", ["first", "second"])
def test_scan_with_rules_from_a_pipe_uses_them(
    tmp_path: Path, target: Path, rules_pipe: tuple[int, str], run: str
) -> None:
    # The rules cache on (the default): the prefetch read the pipe, and load_rules read it again (empty).
    fd, path = rules_pipe
    cache = tmp_path / "cache"
    if run == "second":  # the same rules cached by an earlier run (origin: the pipe's name): a hit
        assert load_rules([write(tmp_path / str(fd), MARKER_RULE.encode())], cache_dir=cache).count == 1
    env = {"DRAGONFLY_RULES_CACHE_DIR": str(cache)}
    result = dragonfly("scan", "-f", "json", "--rules", path, target, env=env, pass_fds=(fd,))
    assert result.returncode == 1, result.stdout + result.stderr
    assert '"count": 1' in result.stdout


def test_rules_check_of_a_fifo_reads_it_once(tmp_path: Path) -> None:
    fifo = tmp_path / "rules.yar"
    os.mkfifo(fifo)

    def feed() -> None:
        fifo.write_text(MARKER_RULE)  # blocks until the command opens the FIFO; a second open would hang

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    result = dragonfly("rules", "check", fifo)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 1 rule(s)")


# --------------------------------------------------------------------------------- a set without rules


def empty_sources(tmp_path: Path, kind: str) -> list[Path]:
    if kind == "empty file":
        return [write(tmp_path / "empty.yar", b"")]
    if kind == "comment-only file":
        return [write(tmp_path / "comment.yar", b"// nothing here\n/* nor here */\n")]
    if kind == "directory of comment-only files":
        write(tmp_path / "rules" / "a.yar", b"// a\n")
        write(tmp_path / "rules" / "sub" / "b.yara", b"\n\n")
        return [tmp_path / "rules"]
    if kind == "two empty sources":
        return [write(tmp_path / "one.yar", b""), write(tmp_path / "two" / "x.yar", b"  \n").parent]
    assert kind == "compiled blob of no rule"
    blob = tmp_path / "none.rules"
    blob.write_bytes(Rules.compile({"none.yar": "// no rule\n"}).serialize())
    return [blob]


@pytest.mark.parametrize(
    "kind",
    [
        "empty file",
        "comment-only file",
        "directory of comment-only files",
        "two empty sources",
        "compiled blob of no rule",
    ],
)
def test_a_rule_set_without_rules_is_a_usage_error(tmp_path: Path, target: Path, kind: str) -> None:
    sources = empty_sources(tmp_path, kind)
    rules_args = [arg for source in sources for arg in ("--rules", str(source))]
    for args in (["scan", *rules_args, target], ["rules", "check", *sources]):
        result = dragonfly(*args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("error: no rule defined in "), result.stderr
        assert all(str(source) in result.stderr for source in sources), result.stderr
        assert "ok:" not in result.stdout and "clean" not in result.stdout


def test_no_rules_from_the_api_raises(tmp_path: Path) -> None:
    with pytest.raises(NoRulesError, match=r"comment\.yar"):
        load_rules(empty_sources(tmp_path, "comment-only file"), cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists(), "an empty set is not cached"


@pytest.mark.parametrize("command", ["watch", "node", "diff", "rules compile", "rules test"])
def test_every_command_refuses_a_set_without_rules(tmp_path: Path, target: Path, command: str) -> None:
    empty = write(tmp_path / "empty.yar", b"// none\n")
    args: list[str | Path] = {
        "watch": ["watch", "--once", "--store", tmp_path / "store.db", "--rules", empty],
        "node": ["node", "--job", "foo==1.0", "--rules", empty],
        "diff": ["diff", target, target, "--rules", empty],
        "rules compile": ["rules", "compile", empty, "-o", tmp_path / "out.rules"],
        "rules test": ["rules", "test", empty, "--malicious", target.parent],
    }[command]
    # Nothing to reach: the rules are refused before any index is asked.
    result = dragonfly(*args, env={"PIP_INDEX_URL": "http://127.0.0.1:9/simple/"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: no rule defined in {empty}" in result.stderr


# ------------------------------------------------------------------------------- sources of one name


def two_teams(tmp_path: Path) -> tuple[Path, Path]:
    """``team-a/custom.yar`` (test_marker) and ``team-b/custom.yar`` (other_marker)."""
    return (
        write(tmp_path / "team-a" / "custom.yar", MARKER_RULE.encode()),
        write(tmp_path / "team-b" / "custom.yar", OTHER_RULE.encode()),
    )


def two_rule_directories(tmp_path: Path) -> tuple[Path, Path]:
    """``a/rules`` and ``b/rules``, each with a ``main.yar``."""
    write(tmp_path / "a" / "rules" / "main.yar", MARKER_RULE.encode())
    write(tmp_path / "b" / "rules" / "main.yar", OTHER_RULE.encode())
    return tmp_path / "a" / "rules", tmp_path / "b" / "rules"


@pytest.mark.parametrize("layout", [two_teams, two_rule_directories])
def test_sources_with_the_same_name_are_all_kept(tmp_path: Path, target: Path, layout: object) -> None:
    assert callable(layout)
    first, second = layout(tmp_path)
    for order in ((first, second), (second, first)):
        result = dragonfly("scan", "-f", "json", "-r", order[0], "-r", order[1], target)
        assert result.returncode == 1, result.stderr
        assert '"count": 2' in result.stdout
    checked = dragonfly("rules", "check", first, second)
    assert checked.stdout.startswith("ok: 2 rule(s)"), checked.stdout + checked.stderr


def test_sources_with_the_same_name_are_named_by_their_paths(tmp_path: Path) -> None:
    team_a, team_b = two_teams(tmp_path)
    expected = {"team-a/custom.yar": MARKER_RULE, "team-b/custom.yar": OTHER_RULE}
    assert load_rules([team_a, team_b]).hash == Rules.compile(expected).hash
    # Names that do not clash are what they always were: the rule-set hash (stores, caches) is unchanged.
    light = write(tmp_path / "light" / "light.yar", LIGHT_RULE.encode())
    unique = {"custom.yar": MARKER_RULE, "light/light.yar": LIGHT_RULE}
    assert load_rules([team_a, light.parent]).hash == Rules.compile(unique).hash


def test_a_compile_error_in_one_of_two_files_of_one_name_names_that_file(tmp_path: Path) -> None:
    team_a, _ = two_teams(tmp_path)
    broken = write(tmp_path / "team-b" / "custom.yar", BROKEN_RULE.encode())
    result = dragonfly("rules", "check", team_a, broken)
    assert result.returncode == 2
    assert f"\n{broken}:3:" in result.stderr, result.stderr


def test_a_path_given_twice_is_one_source(tmp_path: Path) -> None:
    rules = write(tmp_path / "rules.yar", MARKER_RULE.encode())
    assert load_rules([rules, tmp_path / "." / "rules.yar"]).hash == load_rules([rules]).hash


# ------------------------------------------------------------------------------------ rule directories


def test_a_non_utf8_file_in_a_rules_directory_is_named(tmp_path: Path, target: Path) -> None:
    write(tmp_path / "rules" / "good.yar", MARKER_RULE.encode())
    write(tmp_path / "rules" / "sub" / "bad.yar", b'rule r2 { strings: $a = "\xff\xfe" condition: $a }\n')
    result = dragonfly("scan", "-r", tmp_path / "rules", target)
    assert result.returncode == 2
    assert f"{tmp_path / 'rules' / 'sub' / 'bad.yar'} is not UTF-8 YARA source" in result.stderr


def test_a_file_name_in_a_message_is_printable(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    write(rules / "good.yar", MARKER_RULE.encode())
    write(Path(os.fsdecode(bytes(rules) + b"/\x1b[2Jevil\xff.yar")), b"\xff")
    result = dragonfly("rules", "check", rules)
    assert result.returncode == 2
    assert "\x1b" not in result.stderr
    assert "\\x1b[2Jevil\\xff.yar is not UTF-8 YARA source" in result.stderr, result.stderr


def test_a_rule_file_whose_name_is_not_utf8_loads(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    write(Path(os.fsdecode(bytes(rules) + b"/caf\xe9.yar")), MARKER_RULE.encode())
    result = dragonfly("rules", "check", rules, write(tmp_path / "other.yar", OTHER_RULE.encode()))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 2 rule(s)")


def test_entries_of_a_rules_directory_that_are_no_files_are_named(tmp_path: Path, target: Path) -> None:
    rules = tmp_path / "rules"
    write(rules / "good.yar", MARKER_RULE.encode())
    os.mkfifo(rules / "fifo.yar")
    (rules / "dangling.yar").symlink_to(tmp_path / "nowhere.yar")
    (rules / "device.yara").symlink_to("/dev/null")
    (rules / "loop.yar").symlink_to(rules / "loop.yar")
    (rules / "folder.yar").mkdir()  # a directory with the suffix is walked, not read
    write(rules / "folder.yar" / "inner.yar", LIGHT_RULE.encode())
    for args in (["scan", "-r", rules, target], ["rules", "check", rules]):
        result = dragonfly(*args)
        assert result.returncode == 2, result.stdout + result.stderr
        for name, what in (
            ("fifo.yar", "a FIFO"),
            ("dangling.yar", "a symbolic link to nothing"),
            ("device.yara", "a character device"),
            ("loop.yar", "a symbolic link loop"),
        ):
            assert f"{rules / name} is {what}, not a rule file" in result.stderr, result.stderr
        assert "folder.yar" not in result.stderr
    for name in ("fifo.yar", "dangling.yar", "device.yara", "loop.yar"):
        (rules / name).unlink()
    assert sorted(load_rules([rules]).identifiers) == ["light_marker", "test_marker"]


def test_scan_reports_what_is_wrong_with_rules_from_a_pipe(tmp_path: Path, target: Path) -> None:
    read_end, write_end = os.pipe()
    os.write(write_end, b'rule r { strings: $a = "\xff" condition: $a }\n')  # fits the pipe's buffer
    os.close(write_end)
    try:
        env = {"DRAGONFLY_RULES_CACHE_DIR": str(tmp_path / "cache")}
        result = dragonfly("scan", "--rules", f"/dev/fd/{read_end}", target, env=env, pass_fds=(read_end,))
    finally:
        os.close(read_end)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"/dev/fd/{read_end} is neither UTF-8 YARA source nor a compiled rule set" in result.stderr


def test_two_rule_files_that_would_share_a_name_are_refused(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    write(Path(os.fsdecode(bytes(rules) + b"/caf\xe9.yar")), MARKER_RULE.encode())
    write(rules / "caf\\xe9.yar", OTHER_RULE.encode())  # the first one's name, spelt out
    result = dragonfly("rules", "check", rules)
    assert result.returncode == 2, result.stdout
    assert "has the name of another rule file (caf\\xe9.yar)" in result.stderr, result.stderr
