"""Start-up: what a command imports (not how long it takes: that is ``bench/``), and the compiled-rules cache
that spares ``scan`` compiling the same rules at every start."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from dragonfly_hybrid import rules_loader
from dragonfly_hybrid._core import Rules
from dragonfly_hybrid.cli import app, main, rules_arguments
from dragonfly_hybrid.cli.app import COMMANDS
from dragonfly_hybrid.rules_loader import RULES_CACHE_ENV, load_rules, prefetch_rules, rules_cache_dir
from typer.testing import CliRunner

from tests.fakes.pypi import LIGHT_RULE, MARKER_RULE

# Heavy packages a command must import only when it needs them: the node and watch services, their
# settings (pydantic-settings), the index client's parser (pypi_simple: requests, BeautifulSoup) and httpx.
NEVER_AT_START = (
    "pydantic_settings",
    "pypi_simple",
    "requests",
    "bs4",
    "httpx",
    "dragonfly_hybrid.node",
    "dragonfly_hybrid.watch",
)
_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \| (?P<indent>\s*)(?P<module>\S+)$")


def imported_modules(*args: str, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """The modules ``python -X importtime -m dragonfly_hybrid.cli ARGS`` imports, and its stdout."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dragonfly_hybrid.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    modules = {m.group("module") for line in done.stderr.splitlines() if (m := _IMPORT_LINE.match(line))}
    assert "dragonfly_hybrid.cli" in modules, done.stderr[-2000:]
    return modules, done.stdout


def loaded(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


def test_version_imports_no_heavy_package() -> None:
    modules, out = imported_modules("--version")
    assert out.startswith("dragonfly-hybrid ")
    # Nor the CLI framework and what it brings (typer builds pydantic-based parsers for a command's options).
    for package in (*NEVER_AT_START, "pydantic", "typer", "rich"):
        assert not loaded(modules, package), f"--version imports {loaded(modules, package)}"


def test_version_in_any_other_form_goes_through_the_app() -> None:
    modules, out = imported_modules("version")
    assert out.startswith("dragonfly-hybrid ") and "typer" in modules


def test_scan_of_a_local_file_imports_no_index_node_or_watch_package(tmp_path: Path) -> None:
    target = tmp_path / "setup.py"
    target.write_text("print('hello')\n")
    modules, out = imported_modules(
        "scan", "--format", "json", "--quiet", str(target), env={RULES_CACHE_ENV: str(tmp_path / "cache")}
    )
    assert '"verdict": "clean"' in out
    for package in NEVER_AT_START:
        assert not loaded(modules, package), f"scan imports {loaded(modules, package)}"


# What `scan` of a local file with a JSON report does not need: the other commands' modules (each command
# is built alone) and what only a table, the progress display, an index lookup, a requirements or lock file
# or a results store needs; nor pydantic, with which typer would coerce every option (our command classes
# coerce them: cli/base.py).
NOT_FOR_A_LOCAL_SCAN = (
    "pydantic",
    "dragonfly_hybrid.cli.node",
    "dragonfly_hybrid.cli.store",
    "dragonfly_hybrid.cli.rules",
    "dragonfly_hybrid.rules_eval",
    "dragonfly_hybrid.cli.scan_progress",
    "rich",
    "ssl",
    "packaging",
    "tomllib",
    "configparser",
    "sqlite3",
    "logging",
    "dragonfly_hybrid.pypi",
    "dragonfly_hybrid.store.db",
    "dragonfly_hybrid.store.content_cache",
)
COMMAND_MODULES = ("scan", "node", "store", "rules")


@pytest.mark.parametrize("rules", ["bundled", "directory"])
def test_scan_of_a_local_file_imports_no_other_command_table_or_display(tmp_path: Path, rules: str) -> None:
    target = tmp_path / "setup.py"
    target.write_text("print('hello')\n")
    rules_args = []
    if rules == "directory":
        (tmp_path / "rules").mkdir()
        (tmp_path / "rules" / "marker.yar").write_text(MARKER_RULE)
        rules_args = ["-r", str(tmp_path / "rules")]
    modules, out = imported_modules(
        "scan",
        "--format",
        "json",
        "--quiet",
        *rules_args,
        str(target),
        env={RULES_CACHE_ENV: str(tmp_path / "cache")},
    )
    assert '"verdict": "clean"' in out
    for package in NOT_FOR_A_LOCAL_SCAN:
        assert not loaded(modules, package), f"scan imports {loaded(modules, package)}"


def test_scan_with_options_of_every_simple_type_imports_no_pydantic(tmp_path: Path) -> None:
    target = tmp_path / "setup.py"
    target.write_text("print('hello')\n")
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "marker.yar").write_text(MARKER_RULE)
    output = tmp_path / "out.json"
    modules, _ = imported_modules(
        *("scan", "-f", "json", "-o", str(output), "-r", str(rules), "--threads", "2", "--max-depth", "3"),
        *("--timeout", "30", "--max-member-size", "1MiB", "--python-version", "3.11", "--min-score", "1"),
        str(target),
        env={RULES_CACHE_ENV: str(tmp_path / "cache")},
    )
    assert json.loads(output.read_text())["summary"]["exit_code"] == 0
    assert not loaded(modules, "pydantic"), f"scan imports {loaded(modules, 'pydantic')}"


@pytest.mark.parametrize("args", [["version"], ["--help"], ["scan", "--help"], ["rules", "check", "--help"]])
def test_help_and_version_import_no_pydantic(args: list[str]) -> None:
    modules, out = imported_modules(*args)
    assert out, "printed nothing"
    assert not loaded(modules, "pydantic"), f"{' '.join(args)} imports {loaded(modules, 'pydantic')}"


def test_version_command_imports_no_command_module() -> None:
    modules, out = imported_modules("version")
    assert out.startswith("dragonfly-hybrid ")
    for name in COMMAND_MODULES:
        assert f"dragonfly_hybrid.cli.{name}" not in modules


def test_top_level_help_and_unknown_commands_get_the_whole_app() -> None:
    modules, out = imported_modules("--help")
    listed = {line.split()[1] for line in out.splitlines() if line.startswith("│ ") and len(line.split()) > 2}
    assert set(COMMANDS) <= listed, out
    assert all(f"dragonfly_hybrid.cli.{name}" in modules for name in COMMAND_MODULES)
    done = subprocess.run(
        [sys.executable, "-m", "dragonfly_hybrid.cli", "scna"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "No such command 'scna'" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["x.whl"], []),
        (["-f", "json", "-o", "out.json", "-R", "req.txt", "x.whl"], []),
        (["--rules", "mine", "x.whl"], ["mine"]),
        (["--rules=mine", "-r", "more", "-rthird", "x.whl"], ["mine", "more", "third"]),
        (["-qr", "mine", "x.whl"], None),
        (["x.whl", "-r"], None),
        (["--", "-r"], []),
    ],
)
def test_scan_rules_arguments_are_read_ahead_of_the_parser(
    args: list[str], expected: list[str] | None
) -> None:
    assert rules_arguments(args) == expected


# ------------------------------------------------------------------------------------ compiled-rules cache


def write_rules(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "rules.yar").write_text(text)
    return directory


def test_sources_compiled_once_are_loaded_from_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    marker = write_rules(tmp_path / "marker", MARKER_RULE)
    first = load_rules([marker], cache_dir=cache)
    [entry] = list(cache.iterdir())
    assert Rules.deserialize(entry.read_bytes()).hash == first.hash
    # Put another set's blob in the entry: what loads is the entry, so the compile really was skipped.
    light = load_rules([write_rules(tmp_path / "light", LIGHT_RULE)])
    entry.write_bytes(light.serialize())
    assert load_rules([marker], cache_dir=cache).identifiers == light.identifiers
    assert load_rules([marker]).identifiers == first.identifiers, "without a cache: compiled"


def test_changed_sources_are_compiled_again_under_another_entry(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    rules = write_rules(tmp_path / "rules", MARKER_RULE)
    load_rules([rules], cache_dir=cache)
    write_rules(rules, MARKER_RULE + "\n" + LIGHT_RULE)
    both = load_rules([rules], cache_dir=cache)
    assert len(both) == 2
    assert len(list(cache.iterdir())) == 2


def test_a_damaged_entry_is_ignored_and_written_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "cache"
    rules = write_rules(tmp_path / "rules", MARKER_RULE)
    expected = load_rules([rules], cache_dir=cache)
    [entry] = list(cache.iterdir())
    entry.write_bytes(entry.read_bytes()[:1000])  # truncated, as by a crash of a writer without rename
    assert load_rules([rules], cache_dir=cache).hash == expected.hash
    assert "ignoring an unusable cached rule set" in caplog.text
    assert Rules.deserialize(entry.read_bytes()).hash == expected.hash, "the entry was rewritten"
    assert [p.name for p in cache.iterdir()] == [entry.name], "no partial file left behind"


def test_an_unwritable_cache_costs_only_the_compile(tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("")
    rules = write_rules(tmp_path / "rules", MARKER_RULE)
    assert load_rules([rules], cache_dir=blocked / "cache").identifiers == ["test_marker"]


def test_cache_dir_follows_the_variable_then_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(RULES_CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert rules_cache_dir() == tmp_path / "xdg" / "dragonfly-hybrid" / "rules"
    monkeypatch.setenv(RULES_CACHE_ENV, str(tmp_path / "mine"))
    assert rules_cache_dir() == tmp_path / "mine"
    for off in ("off", "0", "none", ""):
        monkeypatch.setenv(RULES_CACHE_ENV, off)
        assert rules_cache_dir() is None


def test_scan_keeps_compiled_rules_in_the_cache_unless_turned_off(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    target = tmp_path / "setup.py"
    target.write_text("print('hello')\n")
    rules = write_rules(tmp_path / "rules", MARKER_RULE)
    cache = tmp_path / "cache"
    monkeypatch.setenv(RULES_CACHE_ENV, str(cache))
    args = ["scan", "--rules", str(rules), "--format", "json", "--quiet", str(target)]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert len(list(cache.iterdir())) == 1
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(RULES_CACHE_ENV, "off")
    assert CliRunner().invoke(app, args).exit_code == 0
    assert not (tmp_path / "xdg").exists()


# ------------------------------------------------------------------------------- bundled rules, prefetched


def deserializing_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads ``rules_loader`` deserializes rule sets on, from now on (the real
    ``Rules`` does the work)."""
    threads: list[str] = []

    class RecordingRules:
        compile = staticmethod(Rules.compile)

        @staticmethod
        def deserialize(data: bytes) -> Rules:
            threads.append(threading.current_thread().name)
            return Rules.deserialize(data)

    monkeypatch.setattr(rules_loader, "Rules", RecordingRules)
    return threads


def test_the_prefetched_bundled_set_is_what_load_rules_returns(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(RULES_CACHE_ENV, str(cache))
    expected = load_rules(cache_dir=cache)  # compiled and cached
    threads = deserializing_threads(monkeypatch)
    prefetch_rules()
    assert load_rules(cache_dir=cache).hash == expected.hash
    assert threads == ["rules-prefetch"]


def test_a_prefetch_from_another_cache_is_dropped(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    expected = load_rules(cache_dir=second)
    load_rules(cache_dir=first)
    [entry] = list(first.iterdir())
    light = load_rules([write_rules(tmp_path / "light", LIGHT_RULE)])
    entry.write_bytes(light.serialize())
    monkeypatch.setenv(RULES_CACHE_ENV, str(first))
    prefetch_rules()
    assert load_rules(cache_dir=second).hash == expected.hash
    # The dropped prefetch still runs to its end on its own thread: once it is done, every load counted
    # below is the caller's (counted while it ran, it failed this test in 2 of about 60 runs).
    for thread in threading.enumerate():
        if thread.name == "rules-prefetch":
            thread.join()
    threads = deserializing_threads(monkeypatch)
    assert load_rules(cache_dir=first).hash == light.hash, "the first cache's entry, read again"
    assert threads == [threading.current_thread().name]


def test_a_prefetch_that_misses_leaves_compiling_and_caching_to_load_rules(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(RULES_CACHE_ENV, str(cache))
    prefetch_rules()
    rules = load_rules(cache_dir=cache)
    [entry] = list(cache.iterdir())
    assert Rules.deserialize(entry.read_bytes()).hash == rules.hash


def run_main(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["dragonfly-hybrid", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 0
    return capsys.readouterr().out


def test_scan_loads_the_bundled_rules_while_it_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(RULES_CACHE_ENV, str(cache))
    bundled = load_rules(cache_dir=cache)
    target = tmp_path / "setup.py"
    target.write_text("print('hello')\n")
    threads = deserializing_threads(monkeypatch)
    out = run_main(monkeypatch, capsys, "scan", "--format", "json", "--quiet", str(target))
    assert json.loads(out)["rules"]["hash"] == bundled.hash
    assert threads == ["rules-prefetch"]

    blob = tmp_path / "light.rules"
    blob.write_bytes(load_rules([write_rules(tmp_path / "light", LIGHT_RULE)]).serialize())
    out = run_main(monkeypatch, capsys, "scan", "-r", str(blob), "--format", "json", "--quiet", str(target))
    assert json.loads(out)["rules"]["count"] == 1
    assert threads[1:] == ["rules-prefetch"], "--rules: the blob it names is loaded ahead, and only it"


def test_scan_loads_the_rules_it_is_given_while_it_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(RULES_CACHE_ENV, str(cache))
    light = write_rules(tmp_path / "light", LIGHT_RULE)
    expected = load_rules([light], cache_dir=cache)  # compiled and cached
    target = tmp_path / "setup.py"
    target.write_text("print('hello')\n")
    threads = deserializing_threads(monkeypatch)
    out = run_main(monkeypatch, capsys, "scan", "--rules", str(light), "-f", "json", "-q", str(target))
    assert json.loads(out)["rules"]["hash"] == expected.hash
    assert threads == ["rules-prefetch"]
    # A prefetch of other paths is dropped: the command loads what it was given.
    prefetch_rules([tmp_path / "elsewhere"])
    assert load_rules([light], cache_dir=cache).hash == expected.hash
    assert threads[1:] == [threading.current_thread().name]


# What runs the program, with an exit hook that says whether the interpreter was finalised.
_PROGRAM_WITH_EXIT_HOOK = """
import atexit, sys
atexit.register(lambda: print("finalised", file=sys.stderr, flush=True))
sys.argv = ["dragonfly-hybrid", *sys.argv[1:]]
from dragonfly_hybrid.cli import {entry}
{entry}()
"""


def run_program(entry: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _PROGRAM_WITH_EXIT_HOOK.format(entry=entry), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("fmt", ["json", "table"])
def test_a_scan_run_as_the_program_ends_the_process_at_once_with_its_output_flushed(
    tmp_path: Path, fmt: str
) -> None:
    target = tmp_path / "setup.py"
    target.write_text("DRAGONFLY_TEST_MARKER = 1\n")
    rules = write_rules(tmp_path / "rules", MARKER_RULE)
    args = ["scan", "--rules", str(rules), "-f", fmt, "-q", str(target)]
    program = run_program("run", *args)
    in_process = run_program("main", *args)  # as tests and embedders call it: the interpreter ends normally
    assert "finalised" not in program.stderr and "finalised" in in_process.stderr
    assert program.returncode == in_process.returncode == 1, program.stderr  # findings
    # Everything was written: the JSON document whole (its tail is written through Python's buffer).
    assert program.stdout == in_process.stdout
    if fmt == "json":
        assert json.loads(program.stdout)["summary"]["verdict"] == "findings"


def test_other_commands_run_as_the_program_end_as_usual() -> None:
    done = run_program("run", "version")
    assert done.returncode == 0 and "finalised" in done.stderr
    assert done.stdout.startswith("dragonfly-hybrid ")
