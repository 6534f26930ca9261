"""Stopping ``scan`` with Ctrl-C (SIGINT) or SIGTERM at every stage, and its live progress display: real
processes, real signals, a real pseudo-terminal.

The archive is built to take far longer to scan than the bound each test allows after the signal
(``SLOW_RULE`` on 1200 distinct members of 64 KiB: over 30 s on 2 threads), so
a test passes only if the scan really stops; the bounds are generous, not performance targets.
"""

from __future__ import annotations

import json
import os
import pty
import random
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.pypi import SLOW_RULE, FakeFile, FakeIndex, sdist, slow_tarball, tar_gz_bytes, wheel

MEMBERS = 1200
STOP_BOUND = 5.0
"""Seconds allowed from the signal to the exit (the whole scan takes over 30 s)."""
HELP_ENV = {**os.environ, "COLUMNS": "200"}


@pytest.fixture(scope="module")
def slow_scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tarball of distinct random members (the content cache cannot skip any) and the slow rule."""
    directory = tmp_path_factory.mktemp("slow")
    archive = directory / "slow.tar"
    archive.write_bytes(slow_tarball(MEMBERS))
    rule = directory / "slow.yar"
    rule.write_text(SLOW_RULE)
    return archive, rule


class Terminal:
    """A ``scan`` process whose stderr is a pseudo-terminal (so it shows its progress display)."""

    def __init__(self, *args: str | Path, cwd: Path) -> None:
        master, child = pty.openpty()
        env = {**os.environ, "COLUMNS": "200", "TERM": "xterm"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dragonfly_hybrid.cli", "scan", *map(str, args)],
            stdout=subprocess.DEVNULL,
            stderr=child,
            cwd=cwd,
            env=env,
        )
        os.close(child)
        self.master = master
        self.output = ""

    def read(self, seconds: float) -> None:
        """Collect what the process writes for up to ``seconds`` (less when it exits)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([self.master], [], [], min(left, 0.05))
            if not ready:
                if self.process.poll() is not None:
                    return
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the other end is closed: the process exited
                return
            if not data:
                return
            self.output += data.decode("utf-8", "replace")

    def wait_for(self, pattern: str, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while re.search(pattern, self.output) is None:
            assert time.monotonic() < deadline, f"no {pattern!r} in {self.output[-2000:]!r}"
            assert self.process.poll() is None, f"exited {self.process.returncode}: {self.output[-2000:]!r}"
            self.read(0.1)

    def stop(self, signum: int) -> tuple[int, float]:
        """Send ``signum``; the exit code and the seconds it took to exit."""
        sent = time.monotonic()
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=60)
        finally:
            self.process.kill()
        elapsed = time.monotonic() - sent
        self.read(1)
        return code, elapsed

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        os.close(self.master)


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    started: list[Terminal] = []
    yield started
    for terminal in started:
        terminal.close()


def files_counts(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"(\d+) files, [\d.]+ [kMGT]?B", text)]


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_scanning_stops_within_seconds(
    slow_scan: tuple[Path, Path], tmp_path: Path, terminals: list[Terminal], signum: int, code: int
) -> None:
    archive, rule = slow_scan
    report = tmp_path / "report.json"
    report.write_text("the previous report\n")
    terminal = Terminal(archive, "--rules", rule, "--threads", "2", "-f", "json", "-o", report, cwd=tmp_path)
    terminals.append(terminal)
    terminal.wait_for(r"[1-9]\d* files, ")
    exit_code, elapsed = terminal.stop(signum)
    assert exit_code == code, terminal.output[-2000:]
    assert elapsed < STOP_BOUND
    assert terminal.output.count("stopping…") == 1
    # The report is not replaced by a partial one, and no partial file is left next to it.
    assert report.read_text() == "the previous report\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_the_progress_display_counts_files_and_bytes_as_they_are_scanned(
    slow_scan: tuple[Path, Path], tmp_path: Path, terminals: list[Terminal]
) -> None:
    archive, rule = slow_scan
    terminal = Terminal(archive, "--rules", rule, "--threads", "2", cwd=tmp_path)
    terminals.append(terminal)
    terminal.wait_for(r"[1-9]\d* files, ")
    terminal.read(1.5)  # ~10 refreshes a second: several counts in that time
    counts = files_counts(terminal.output)
    assert len(set(counts)) >= 3, terminal.output[-2000:]
    assert counts == sorted(counts)
    assert "0/1 distributions" in terminal.output
    assert re.search(r"\d+ files, \d+\.\d MB", terminal.output), terminal.output[-2000:]
    terminal.stop(signal.SIGINT)


def test_without_a_terminal_nothing_but_the_stopping_line_is_shown(
    slow_scan: tuple[Path, Path], tmp_path: Path
) -> None:
    archive, rule = slow_scan
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "scan", str(archive), "--rules", str(rule)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # well into the scan, far from its end
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=STOP_BOUND)
    finally:
        process.kill()
    assert process.returncode == 130
    assert (stdout, stderr) == ("", "stopping…\n")


def test_a_signal_while_downloading_from_a_slow_index_stops_within_seconds(
    fake_index: FakeIndex, tmp_path: Path, terminals: list[Terminal]
) -> None:
    filename, content = sdist("slowpkg", "1.0", {"setup.py": b"print('hi')\n"})
    wheel_name, wheel_content = wheel("slowpkg", "1.0", {"slowpkg/data.bin": random.randbytes(300_000)})
    fake_index.add("slowpkg", FakeFile(filename, content), FakeFile(wheel_name, wheel_content))
    fake_index.faults.delay[filename] = 120
    terminal = Terminal("slowpkg==1.0", "--index-url", fake_index.url, cwd=tmp_path)
    terminals.append(terminal)
    terminal.wait_for(r"downloading slowpkg==1\.0")
    # The wheel arrives while the sdist hangs: the bar of all the downloads has moved.
    terminal.wait_for(r"all downloads[^\r\n]*?[1-9][\d.]*/[\d.]+ kB")
    exit_code, elapsed = terminal.stop(signal.SIGINT)
    assert exit_code == 130, terminal.output[-2000:]
    assert elapsed < STOP_BOUND
    assert "stopping…" in terminal.output


def test_a_signal_while_resolving_on_an_index_that_never_answers_stops_within_seconds(
    tmp_path: Path,
) -> None:
    # A listening socket nobody accepts from: the connection is made, the request sent, no answer comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/simple/"
        command = [sys.executable, "-m", "dragonfly_hybrid.cli", "scan", "somepkg", "--index-url", url]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(3)  # started, and waiting for the index
            sent = time.monotonic()
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=STOP_BOUND)
            elapsed = time.monotonic() - sent
        finally:
            process.kill()
    assert process.returncode == 130, stderr
    assert elapsed < STOP_BOUND
    assert stderr == "stopping…\n"


def test_the_exit_code_of_a_stopped_scan_is_documented_in_help_and_readme() -> None:
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "scan", "--help"]
    help_text = subprocess.run(command, capture_output=True, text=True, check=True, env=HELP_ENV).stdout
    assert "130 (143 for SIGTERM)" in help_text
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "| 130 | stopped by Ctrl-C (SIGINT); 143 for SIGTERM." in readme


# ------------------------------------------------------------------------ the report file (--output)


def scan_to(output: Path | str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    archive = tmp_path / "pkg-1.0.tar.gz"
    archive.write_bytes(tar_gz_bytes({"pkg-1.0/setup.py": b"print('hello')\n"}))
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "scan", "-q", "-f", "json", "-o", str(output)]
    return subprocess.run([*command, str(archive)], capture_output=True, text=True, timeout=120, check=False)


def test_a_complete_report_replaces_the_file_a_symbolic_link_points_to(tmp_path: Path) -> None:
    (tmp_path / "reports").mkdir()
    real = tmp_path / "reports" / "report.json"
    real.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    done = scan_to(link, tmp_path)
    assert done.returncode == 0, done.stderr
    assert link.is_symlink()
    assert json.loads(real.read_text())["summary"]["targets"] == 1
    assert sorted(p.name for p in real.parent.iterdir()) == ["report.json"]


def test_a_report_to_a_device_is_written_in_place(tmp_path: Path) -> None:
    done = scan_to("/dev/null", tmp_path)
    assert done.returncode == 0, done.stderr
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize("directory", ["tmp", "/"])
def test_a_report_to_a_directory_is_a_usage_error(tmp_path: Path, directory: str) -> None:
    target = tmp_path if directory == "tmp" else Path(directory)  # "/" has no name to put a temporary beside
    done = scan_to(target, tmp_path)
    assert done.returncode == 2
    assert done.stderr == f"error: cannot write {target}: it is a directory\n"
