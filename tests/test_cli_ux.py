"""The CLI's manners, as real processes: help in words, bad choices and store paths as usage errors, and a
closed stdout (``... | head``) ending quietly with exit 141 instead of 1 (the code for findings)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import typer
from dragonfly_hybrid import bundled_rules_dir
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.cli.base import EXIT_CLOSED_PIPE
from typer.testing import CliRunner

from tests.fakes.pypi import MARKER, FakeIndex, sdist, write

PYTHON_TYPES = ("<list[", "<int", "<float", "<str", "<bool", "<path", "[x>=", "<=x", "range>")


def _command_paths(command: click.Command, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, (*prefix, name))


ALL_COMMANDS = sorted(_command_paths(typer.main.get_command(app)))


def cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, env=env)


def test_every_command_is_covered() -> None:
    names = {" ".join(path) for path in ALL_COMMANDS}
    assert {"", "scan", "node", "watch", "report", "diff", "config", "rules", "rules test"} <= names


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "root")
def test_help_names_values_in_words_not_python_types(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    shown = [t for t in PYTHON_TYPES if t in result.output]
    assert not shown, f"{' '.join(path)} --help shows {shown}:\n{result.output}"


def test_help_shows_metavars_choices_and_ranges_in_words() -> None:
    scan_help = CliRunner().invoke(app, ["scan", "--help"], terminal_width=200).output
    assert "{table,json," in scan_help
    assert "TARGET" in scan_help
    assert "10000000" in scan_help  # --max-members: the range, said in words
    watch_help = CliRunner().invoke(app, ["watch", "--help"], terminal_width=200).output
    assert "{text,json}" in watch_help and "SECONDS" in watch_help


@pytest.mark.parametrize(
    ("args", "flag", "choices"),
    [
        (("scan", "--format", "xml", "x"), "--format", "table, json"),
        (("scan", "-f", "xml", "x"), "--format", "table, json, ndjson"),
        (("report", "--format", "xml"), "--format", "table, json"),
        (("diff", "a==1", "a==2", "--format", "xml"), "--format", "table, json"),
        (("rules", "test", "--format", "xml"), "--format", "table, json"),
        (("watch", "--log-format", "xml"), "--log-format", "text, json"),
        (("node", "--log-format", "xml"), "--log-format", "text, json"),
    ],
)
def test_a_bad_choice_is_a_usage_error_listing_the_choices(
    args: tuple[str, ...], flag: str, choices: str
) -> None:
    done = cli(*args)
    assert done.returncode == 2, done.stderr
    assert f"error: invalid value for {flag}: 'xml' (choose from {choices}" in done.stderr
    assert "Value error" not in done.stderr and "Traceback" not in done.stderr


def test_a_number_out_of_range_is_a_usage_error_naming_the_flag_and_range() -> None:
    done = cli("report", "--limit", "0")
    assert done.returncode == 2
    assert "--limit" in done.stderr and "1 or more" in done.stderr


@pytest.mark.parametrize("command", ["scan", "watch", "diff", "report"])
def test_store_in_a_missing_directory_is_a_usage_error_and_creates_nothing(
    command: str, tmp_path: Path
) -> None:
    store = tmp_path / "nonexistent" / "dir" / "s.db"
    args = {
        "scan": ("scan", "--store", store, "x"),
        "watch": ("watch", "--store", store, "--once"),
        "diff": ("diff", "--store", store, "a==1", "a==2"),
        "report": ("report", "--store", store),
    }[command]
    done = cli(*args)
    assert done.returncode == 2, done.stderr
    assert str(store) in done.stderr
    assert not (tmp_path / "nonexistent").exists()


def test_the_default_store_location_is_created_when_missing(fake_index: FakeIndex, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DRAGONFLY_STORE"}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    done = cli("watch", "--once", "--index-url", fake_index.url, env=env)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "xdg" / "dragonfly-hybrid" / "store.db").is_file()


@pytest.mark.parametrize("args", [("watch", "--once"), ("scan", "x"), ("diff", "a==1", "a==2")])
def test_store_from_the_environment_in_a_missing_directory_is_a_usage_error(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    store = tmp_path / "nonexistent" / "s.db"
    env = {**os.environ, "DRAGONFLY_STORE": str(store)}
    done = cli(*args, env=env)
    assert done.returncode == 2
    assert f"cannot create the store {store}: directory {store.parent} does not exist" in done.stderr
    assert not store.parent.exists()


# ------------------------------------------------------------------------------------------- closed pipe


def _run_into_closed_pipe(*args: object, read_first: int = 0) -> tuple[int, str]:
    """Run the CLI with stdout a real pipe whose reader reads ``read_first`` bytes, then closes it (as
    ``| head -c N`` does); the exit code and stderr."""
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", *map(str, args)]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None and process.stderr is not None
        if read_first:
            process.stdout.read(read_first)
        process.stdout.close()
        stderr = process.stderr.read().decode()
        return process.wait(timeout=120), stderr


@pytest.fixture
def malicious_sdist(tmp_path: Path) -> Path:
    files = {f"pkg/m{i}.py": b"import os\n# " + MARKER + b"\n" for i in range(400)}
    return write(tmp_path / "bad-0.1.tar.gz", sdist("bad", "0.1", files)[1])


@pytest.fixture
def store_with_findings(fake_index: FakeIndex, rules_dir: Path, tmp_path: Path) -> Path:
    files = {f"pkg/m{i}.py": b"import os\n# " + MARKER + b"\n" for i in range(400)}
    fake_index.add("evil", sdist("evil", "1.0", files))
    path = tmp_path / "store.db"
    args = ["scan", "evil==1.0", "-r", str(rules_dir), "--index-url", fake_index.url, "--store", str(path)]
    assert CliRunner().invoke(app, [*args, "-q"]).exit_code == 1
    return path


@pytest.mark.parametrize("read_first", [0, 10])
def test_scan_into_a_closed_pipe_exits_141_quietly(
    malicious_sdist: Path, rules_dir: Path, read_first: int
) -> None:
    code, stderr = _run_into_closed_pipe(
        "scan", "-q", "-r", rules_dir, "-f", "json", malicious_sdist, read_first=read_first
    )
    assert code == EXIT_CLOSED_PIPE == 141, stderr
    assert stderr == ""


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
@pytest.mark.parametrize(
    "args",
    [
        ("scan", "-f", "json"),
        ("scan", "-f", "table"),
        ("scan", "-f", "sarif", "-o", "/dev/full"),
        ("report",),
    ],
    ids=["scan-json-stdout", "scan-table-stdout", "scan-sarif-o", "report"],
)
def test_a_full_disk_is_one_error_line_and_exit_3(
    args: tuple[str, ...], malicious_sdist: Path, rules_dir: Path, store_with_findings: Path
) -> None:
    """A report that could not be written is neither findings (1) nor clean (0), and not a crash."""
    extra = (
        ("--store", store_with_findings) if args[0] == "report" else ("-q", "-r", rules_dir, malicious_sdist)
    )
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", *map(str, args + extra)]
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            command, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, check=False
        )
    assert done.returncode == 3, done.stderr
    assert done.stderr == "error: cannot write the output: No space left on device\n"


def _file_size_limit() -> None:
    """In the child: files may not grow past 40 kB (writes past it fail with EFBIG, as on a full disk);
    the store's shared-memory file (32 kB) still fits."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))


@pytest.mark.parametrize("command", ["report --html", "rules compile -o"])
def test_a_file_that_cannot_be_written_whole_leaves_the_last_whole_one(
    command: str, store_with_findings: Path, rules_dir: Path, tmp_path: Path
) -> None:
    """A page or blob cut short by a full disk replaced the last whole one (an empty or truncated file):
    it is written under a temporary name and renamed only once whole."""
    target = tmp_path / "out"
    target.write_text("the last whole one\n")
    if command == "report --html":
        args = ["report", "--store", str(store_with_findings), "--html", str(target)]
    else:  # a blob of the bundled rules: larger than the limit
        args = ["rules", "compile", str(rules_dir), str(bundled_rules_dir()), "-o", str(target)]
    env = {**os.environ, "DRAGONFLY_RULES_CACHE_DIR": "off"}
    done = subprocess.run(
        [sys.executable, "-m", "dragonfly_hybrid.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        preexec_fn=_file_size_limit,
    )
    assert done.returncode == 2, done.stderr
    assert f"error: cannot write {target}: File too large" in done.stderr
    assert target.read_text() == "the last whole one\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


def test_report_exits_0_with_findings_in_it_and_2_without_a_store(
    store_with_findings: Path, tmp_path: Path
) -> None:
    """``report`` queries, it does not judge: findings in the store are not exit 1."""
    shown = cli("report", "--store", store_with_findings)
    assert shown.returncode == 0 and "evil==1.0" in shown.stdout
    assert cli("report", "evil==1.0", "--store", store_with_findings).returncode == 0
    missing = cli("report", "--store", tmp_path / "none.db")
    assert missing.returncode == 2 and "no store at" in missing.stderr


@pytest.mark.parametrize(
    ("args", "read_first"),
    [
        # the release's details are larger than a pipe's buffer: the reader reads a little, then closes
        (("report", "evil==1.0"), 20),
        (("report", "evil==1.0", "-f", "json"), 20),
        # small outputs fit in the buffer: the reader closes before anything is written
        (("report", "--by-rule"), 0),
        (("report", "--all"), 0),
        (("report", "--all", "-f", "json"), 0),
    ],
)
def test_report_into_a_closed_pipe_exits_141_quietly(
    store_with_findings: Path, args: tuple[str, ...], read_first: int
) -> None:
    code, stderr = _run_into_closed_pipe(*args, "--store", store_with_findings, read_first=read_first)
    assert (code, stderr) == (EXIT_CLOSED_PIPE, "")


@pytest.mark.parametrize(
    "args", [("config",), ("version",), ("--help",), ("scan", "--help"), ("rules", "--help")]
)
def test_small_outputs_into_a_closed_pipe_exit_141_quietly(args: tuple[str, ...]) -> None:
    code, stderr = _run_into_closed_pipe(*args)
    assert (code, stderr) == (EXIT_CLOSED_PIPE, "")


def test_rules_check_into_a_closed_pipe_exits_141_quietly(rules_dir: Path) -> None:
    code, stderr = _run_into_closed_pipe("rules", "check", rules_dir)
    assert (code, stderr) == (EXIT_CLOSED_PIPE, "")
