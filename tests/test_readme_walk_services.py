"""An operator's walk through README.md's node and store sections: claims found missing or wrong, pinned.

* the node's first login gives up after the number of tries the README gives, exit 3;
* the node's log levels: a submitted failure is INFO, a failed download and findings submitted for a
  release that could not be scanned whole are WARNINGs (the README said "warnings for partial scans");
* a store found corrupt as it is opened is exit 2 for every command (the README gave 3 for `diff`,
  `watch`, `scan --store`, which holds for a store that fails once open);
* `watch --help` and `report --help` give the exit codes the README gives for a failing store.
* Compose fixes the metrics address in `environment:`: the README said it passed every setting of `.env`.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from dragonfly_hybrid.store.db import Store

from tests.fakes.pypi import MARKER, FakeIndex, wheel, zip_bytes
from tests.test_readme_contract import README, section

HANG_GUARD = 60


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dragonfly_hybrid.cli", *args],
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        check=False,
        env={**os.environ, **(env or {})},
    )


def one_line(text: str) -> str:
    """The README's text with its line breaks as spaces (sentences wrap at 108 columns)."""
    return " ".join(text.split())


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr, done.stderr


@pytest.fixture
def quiet_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """No metrics endpoint (tests run side by side) and no setting from the outside."""
    for name in list(os.environ):
        if name.upper().startswith("DRAGONFLY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DRAGONFLY_METRICS_PORT", "off")


def test_the_first_login_gives_up_after_the_tries_the_readme_gives_and_exits_3(
    quiet_node: None, tmp_path: Path
) -> None:
    text = one_line(section("## Running a node"))
    match = re.search(r"The first login is tried (\d+) times in all, then the node exits 3", text)
    assert match, "the README does not say how often the first login is tried"
    tries = int(match.group(1))
    with socket.socket() as probe:  # a port nothing listens on: the mainframe is unreachable
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "DRAGONFLY_BASE_URL": f"http://127.0.0.1:{port}",
        "DRAGONFLY_CLIENT_ID": "node.access",
        "DRAGONFLY_CLIENT_SECRET": "not-shown-anywhere",
        "DRAGONFLY_RULES_CACHE_DIR": "off",
    }
    done = cli("node", env=env)
    assert done.returncode == 3, done.stderr
    assert done.stderr.count("WARNING dragonfly_hybrid.mainframe: login to") == tries - 1
    assert done.stderr.rstrip().splitlines()[-1].startswith("error: cannot log in to the mainframe: ")
    assert f"gave up after {tries} attempts" in done.stderr
    assert "not-shown-anywhere" not in done.stderr
    no_traceback(done)


def test_the_node_logs_failures_at_info_and_failed_downloads_and_partial_findings_as_warnings(
    quiet_node: None, fake_index: FakeIndex, rules_dir: Path
) -> None:
    text = one_line(section("### Metrics and health"))
    assert (
        "one line per claim batch and per submitted result (INFO, a `failure` too, with its `error`), "
        "warnings for dropped jobs, failed downloads and findings submitted for a release that could not "
        "be scanned whole (`unscanned`: what was left)" in text
    )
    bomb = b"\0" * 5_000_000  # deflates far past a ratio of 10 (its first MiB is not held to it)
    fake_index.add("bomb", ("bomb-1.0-py3-none-any.whl", zip_bytes({"a.py": bomb})))
    fake_index.add("flagged", ("flagged-1.0-py3-none-any.whl", zip_bytes({"a.py": bomb, "b.py": MARKER})))
    fake_index.add("gone", wheel("gone", "1.0", {"g.py": b"x = 1\n"}))
    fake_index.faults.missing.add("gone-1.0-py3-none-any.whl")
    jobs = ["--job", "bomb==1.0", "--job", "flagged==1.0", "--job", "gone==1.0"]
    done = cli(
        "node", *jobs, "--index-url", fake_index.url, "-r", str(rules_dir), "--log-format", "json",
        env={"DRAGONFLY_MAX_RATIO": "10", "DRAGONFLY_RULES_CACHE_DIR": "off"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    no_traceback(done)
    records = [json.loads(line) for line in done.stderr.splitlines()]
    levels = {(r["message"], r.get("job"), r.get("result")): r["level"] for r in records}
    assert levels[("result submitted", "bomb", "failure")] == "info"
    assert levels[("result submitted", "gone", "failure")] == "info"
    assert levels[("result submitted", "flagged", "success")] == "info"
    assert levels[("download failed", "gone", None)] == "warning"
    [partial] = [r for r in records if r["message"] == "submitting findings for a partly unscanned release"]
    assert partial["level"] == "warning" and partial["job"] == "flagged" and partial["version"] == "1.0"
    assert "compression-ratio" in partial["unscanned"]
    results = {r["name"]: r for r in map(json.loads, done.stdout.splitlines())}
    assert results["bomb"]["status"] == results["gone"]["status"] == "failure"
    assert results["flagged"]["status"] == "success"


def corrupt_store(path: Path) -> None:
    """A store whose every page past the first two is garbage: found malformed as it is opened."""
    with Store(path):
        pass
    size = path.stat().st_size
    assert size > 2 * 4096
    with path.open("r+b") as file:
        file.seek(2 * 4096)
        file.write(b"\xff" * (size - 2 * 4096))


def test_a_store_found_corrupt_as_it_is_opened_is_exit_2_for_every_command(
    tmp_path: Path, rules_dir: Path
) -> None:
    text = one_line(section("### The results store"))
    assert (
        "corrupt pages met as the store is opened (`cannot open the store: PATH: ...`) are exit 2 for every "
        "command, as any store that cannot be opened" in text
    )
    store = tmp_path / "store.db"
    corrupt_store(store)
    first = tmp_path / "a-1.0-py3-none-any.whl"
    second = tmp_path / "a-1.1-py3-none-any.whl"
    first.write_bytes(zip_bytes({"a.py": b"x = 1\n"}))
    second.write_bytes(zip_bytes({"a.py": b"x = 2\n"}))
    rules = ["-r", str(rules_dir)]
    unreachable = "http://127.0.0.1:9/simple/"  # never asked: the store is opened first
    commands = {
        "report": ["report", "--store", str(store)],
        "scan": ["scan", str(first), "--store", str(store), *rules, "-q"],
        "diff": ["diff", str(first), str(second), "--store", str(store), *rules],
        "watch": ["watch", "--once", "--store", str(store), "--index-url", unreachable, *rules],
    }
    env = {"DRAGONFLY_RULES_CACHE_DIR": "off"}
    for command, args in commands.items():
        done = cli(*args, env=env)
        assert done.returncode == 2, (command, done.stderr)
        assert f"error: cannot open the store: {store}: database disk image is malformed" in done.stderr
        no_traceback(done)


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("watch", ("3", "could not run", "or the store failed while watching")),
        ("report", ("2", "no store", "or a store that cannot be read (corrupt pages)")),
    ],
)
def test_the_help_gives_the_exit_code_the_readme_gives_for_a_failing_store(
    command: str, words: tuple[str, str, str]
) -> None:
    """The README (and a run) say: a store failing while `watch` runs is exit 3, a store `report` cannot
    read is exit 2; the `--help` text left both out."""
    done = cli(command, "--help", env={"COLUMNS": "300", "NO_COLOR": "1", "TERM": "dumb"})
    assert done.returncode == 0, done.stderr
    shown = one_line(re.sub(r"[│╭╮╰╯─]", " ", done.stdout))
    code, first, last = words
    exit_codes = shown[shown.index("Exit codes:") :]
    clause = re.search(rf"\b{code} {first}[^;]*", exit_codes)
    assert clause and last in clause.group(0), exit_codes
    readme = one_line(README)
    if command == "watch":
        assert "or the store failed while watching, with or without `--once`" in readme
    else:
        assert "a store that cannot be read (corrupt pages, `cannot read the store PATH: ...`)" in readme


def test_the_settings_compose_fixes_are_the_ones_the_readme_names() -> None:
    """The README said Compose passes every setting of `.env` but three to the node; `environment:` also
    fixes the metrics address (a `DRAGONFLY_METRICS_PORT` in `.env` changed nothing)."""
    compose = (Path(__file__).parents[1] / "compose.yaml").read_text(encoding="utf-8")
    block = re.search(r"\n    environment:\n((?:      .*\n)+)", compose)
    assert block, "compose.yaml has no environment block"
    entries = dict(re.findall(r"^ +(DRAGONFLY_\w+): *(.*)$", block.group(1), re.MULTILINE))
    fixed = {name for name, value in entries.items() if "${" not in value}
    text = one_line(README[README.index("\n### Docker\n") : README.index("\n### Standalone: `--job`\n")])
    match = re.search(r"every other setting in `\.env` to the node, but for (.*?), which it fixes", text)
    assert match, "the README does not name the settings Compose fixes"
    assert set(re.findall(r"`(DRAGONFLY_\w+)`", match.group(1))) == fixed
