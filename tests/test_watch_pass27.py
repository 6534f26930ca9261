"""Pass 27 on ``watch`` and the CLI's top level, with real processes. Each test pinning a fix fails on the
code it was written against:

* started without fd 2 (``2>&-``) a clean scan exited 3 (its traceback printed to stdout, into the
  report), and without fd 1 (``>&-``) every command did, a usage error too: the exit code is the
  command's own now, and what would go to the missing stream is discarded;
* SIGTERM or SIGINT during a poll: the poll's releases were still downloaded, scanned and stored before
  the watcher exited; they are left for the next run now, which stores each once;
* the store failing as a round's serial was committed ended the watcher before the release it had just
  stored (and announced to the webhook) was logged: a finding no log line ever showed, the restart
  skipping it as stored. The line is logged, then the watcher stops: exit 3, one error line;
* a ``--webhook`` URL whose host httpx cannot encode passed the start check, and its first POST raised
  after the release was stored: it is a usage error at start (exit 2).

What held is pinned too: two watchers on one store store each release once and POST it once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fakes.pypi import FakeIndex, sdist, write
from tests.test_redteam_watch_crash import (
    HANG_GUARD,
    baseline,
    cli,
    files_listed,
    files_stored,
    no_traceback,
    serial_of,
    watch_args,
)
from tests.test_watch import BAD, CLEAN, publish
from tests.test_watch_logs import records, stopped, wait_for

# --- no stdout, no stderr -------------------------------------------------------------------------------


def closing(fd: int) -> Callable[[], None]:
    """What the child runs before the program: fd ``fd`` closed, as the shell's ``>&-`` / ``2>&-`` do."""
    return lambda: os.close(fd)


@pytest.fixture
def targets(tmp_path: Path) -> dict[str, Path]:
    out = tmp_path / "in"
    return {
        "clean": write(out / "clean-0.1.tar.gz", sdist("clean", "0.1", {"setup.py": CLEAN})[1]),
        "bad": write(out / "bad-0.1.tar.gz", sdist("bad", "0.1", {"setup.py": BAD})[1]),
        "big": write(out / "big-1.0.tar.gz", sdist("big", "1.0", {"blob.bin": b"\0" * 5000})[1]),
    }


SCANS: dict[str, tuple[tuple[str, ...], int, list[str]]] = {
    "clean": (("clean",), 0, ["clean"]),
    "findings": (("clean", "bad"), 1, ["clean", "findings"]),
    "usage-error": (("clean", "missing-1.0.tar.gz"), 2, []),
    "incomplete": (("big", "--max-member-size", "1K"), 3, ["incomplete"]),
}
"""Scan arguments (a name of ``targets``, or as is), the exit code, the verdicts of the JSON report."""


@pytest.mark.parametrize("scenario", SCANS)
def test_a_scan_without_stderr_keeps_its_exit_code_and_a_whole_report(
    scenario: str, targets: dict[str, Path], rules_dir: Path
) -> None:
    """Without fd 2, Python's ``sys.stderr`` is None: the scan crashed on it (exit 3 for a clean scan, or
    for findings) and printed the traceback to stdout, into the JSON report."""
    names, expected, verdicts = SCANS[scenario]
    args = [str(targets.get(name, name)) for name in names]
    done = cli("scan", *args, "-r", str(rules_dir), "-f", "json", stderr=subprocess.DEVNULL,
               preexec_fn=closing(2))  # fmt: skip
    assert done.returncode == expected, done.stdout
    if verdicts:
        assert [t["verdict"] for t in json.loads(done.stdout)["targets"]] == verdicts
    else:
        assert done.stdout == ""  # the error line is discarded, never printed to stdout instead


@pytest.mark.parametrize("scenario", SCANS)
def test_a_scan_without_stdout_keeps_its_exit_code(
    scenario: str, targets: dict[str, Path], rules_dir: Path
) -> None:
    """Without fd 1 (``>&-``) every command ended in an internal error (exit 3) with a traceback."""
    names, expected, _ = SCANS[scenario]
    args = [str(targets.get(name, name)) for name in names]
    done = cli("scan", *args, "-r", str(rules_dir), stdout=subprocess.DEVNULL, preexec_fn=closing(1))
    assert done.returncode == expected, done.stderr
    no_traceback(done)
    if expected == 2:
        assert done.stderr.startswith("error: missing-1.0.tar.gz: no such file or directory"), done.stderr


COMMANDS = ["scan", "version", "node", "config", "watch", "report", "diff", "rules", "rules check", "bogus"]


@pytest.mark.parametrize("closed", [1, 2], ids=["no-stdout", "no-stderr"])
@pytest.mark.parametrize("command", COMMANDS)
def test_a_usage_error_exits_2_without_stdout_or_stderr(command: str, closed: int) -> None:
    """Scripts rely on 2 for a usage error, whichever stream the process was started without."""
    done = cli(*command.split(), "--bogus-flag", preexec_fn=closing(closed))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    if closed == 1:
        assert "--bogus-flag" in done.stderr or "No such command" in done.stderr, done.stderr


@pytest.mark.parametrize("closed", [1, 2], ids=["no-stdout", "no-stderr"])
def test_help_and_version_exit_0_without_stdout_or_stderr(closed: int) -> None:
    for args in (("--help",), ("watch", "--help"), ("version",), ("--version",)):
        done = cli(*args, preexec_fn=closing(closed))
        assert done.returncode == 0, (args, done.stderr)
        assert "Traceback" not in done.stdout + done.stderr


def test_a_watcher_without_stderr_stores_every_release_and_exits_0(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    store = tmp_path / "store.db"
    baseline(fake_index, store, rules_dir)
    publish(fake_index, "flagged", "1.0", BAD)
    done = cli(*watch_args(fake_index, store, rules_dir, "--once"), preexec_fn=closing(2))
    assert done.returncode == 0 and done.stdout == "", done.stdout
    assert files_stored(store) == files_listed(fake_index)


# --- a signal during a poll -----------------------------------------------------------------------------


@contextmanager
def page_held(index: FakeIndex, project: str) -> Iterator[threading.Event]:
    """The JSON page of ``project`` is answered only once the event yielded is set: a poll held mid-way."""
    answer = index.json_page
    release = threading.Event()

    def held(name: str) -> dict[str, object]:
        if name == project:
            release.wait(HANG_GUARD)
        return answer(name)

    index.json_page = held  # type: ignore[method-assign]  # the server thread calls it per request
    try:
        yield release
    finally:
        release.set()
        index.json_page = answer  # type: ignore[method-assign]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_a_poll_scans_nothing_more_and_the_next_run_stores_that_poll(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, sig: signal.Signals
) -> None:
    """Signalled while the poll read project pages, the watcher went on: the poll's releases were queued
    once the pages came, then downloaded, scanned and stored before it exited. Now the poll is given up:
    nothing downloaded, nothing stored, the serial unmoved; the next run stores each release once."""
    store = tmp_path / "store.db"
    before = baseline(fake_index, store, rules_dir)
    publish(fake_index, "first", "1.0", BAD)
    publish(fake_index, "held", "1.0", CLEAN)
    args = watch_args(fake_index, store, rules_dir, "--interval", "0.5", "--log-format", "json")
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", *args]
    with page_held(fake_index, "held") as release:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: "/simple/held/" in fake_index.requests, child)
            child.send_signal(sig)
            assert child.stderr is not None
            lines = []
            for line in child.stderr:  # the signal is handled before the held page is answered
                lines.append(line)
                if '"stopping: no new polls' in line:
                    break
            release.set()
            _, rest = stopped(child, HANG_GUARD)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    stderr = "".join(lines) + rest
    assert child.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "stopping: this poll is left for the next run" in [r["message"] for r in records(stderr)]
    assert not [r for r in fake_index.requests if r.startswith("/files/")]
    assert files_stored(store) == Counter() and serial_of(store) == before

    again = cli(*watch_args(fake_index, store, rules_dir, "--once"))
    assert again.returncode == 0, again.stderr
    assert files_stored(store) == files_listed(fake_index) and serial_of(store) == fake_index.serial


# --- two watchers on one store (held) -------------------------------------------------------------------


def test_two_watchers_on_one_store_store_and_announce_each_release_once(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """Held: both watchers download the release (its file is held until both asked for it), both scan it,
    one stores it and POSTs the webhook; the other's result is dropped as stored, and it POSTs nothing."""
    store = tmp_path / "store.db"
    baseline(fake_index, store, rules_dir)
    publish(fake_index, "flagged", "1.0", BAD)
    wheel_name = fake_index.projects["flagged"][1].filename
    fake_index.faults.delay[wheel_name] = HANG_GUARD
    args = watch_args(fake_index, store, rules_dir, "--once", "--webhook", fake_index.hook_url)
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", *args]
    children = [
        subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in "ab"
    ]
    try:
        for child in children:
            wait_for(lambda: fake_index.requests.count(f"/files/flagged/{wheel_name}") == 2, child)
        fake_index.unblocked.set()  # both hold the release now: both scan it
        errors = [child.communicate(timeout=HANG_GUARD)[1] for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert [child.returncode for child in children] == [0, 0], errors
    messages = sorted(r.split("dragonfly_hybrid.watch: ")[1].split(" [")[0]
                      for e in errors for r in e.splitlines() if "project=flagged" in r)  # fmt: skip
    assert messages == ["release already stored; this result is dropped", "release has findings"]
    assert files_stored(store) == files_listed(fake_index)
    assert [(h["name"], h["version"]) for h in fake_index.hooks] == [("flagged", "1.0")]
    assert serial_of(store) == fake_index.serial


# --- a webhook URL httpx cannot send to ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["xn--", "hook\u200b.example"], ids=["empty-a-label", "zero-width"])
def test_a_webhook_host_that_cannot_be_encoded_is_refused_at_start(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, host: str
) -> None:
    """The start check took it; the first finding's POST raised (IDNA), after the release was stored: a
    traceback, "storing the release failed", the round left unfinished until the lease ran out."""
    url = f"http://{host}/hooks/T0KEN-SECRET"
    done = cli(*watch_args(fake_index, tmp_path / "store.db", rules_dir, "--once", "--webhook", url))
    assert done.returncode == 2, done.stderr
    assert "must be an http:// or https:// URL" in done.stderr and "T0KEN-SECRET" not in done.stderr
    no_traceback(done)
    assert fake_index.requests == []


# --- the store failing as the serial is committed ---------------------------------------------------------


SERIAL_WRITE_FAILS = """
import sqlite3


class _Connection(sqlite3.Connection):
    def execute(self, sql, params=(), *args, **kwargs):
        if "INTO watch_state" in sql and tuple(params)[:1] == ("serial",):
            raise sqlite3.OperationalError("database or disk is full")
        return super().execute(sql, params, *args, **kwargs)


_connect = sqlite3.connect


def _connect_failing(*args, **kwargs):
    kwargs.setdefault("factory", _Connection)
    return _connect(*args, **kwargs)


sqlite3.connect = _connect_failing
"""
"""A ``sitecustomize`` for the child: every write of the serial fails as on a full disk (the product's own
SQL, on a real SQLite file; only which write fails is chosen)."""


@pytest.mark.parametrize("mode", [("--once",), ("--interval", "0.2")], ids=["once", "watching"])
def test_a_store_failing_at_the_serial_commit_logs_the_stored_release_then_exits_3(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, mode: tuple[str, ...]
) -> None:
    """The release was stored and POSTed, then committing the round's serial failed: the error ended the
    watcher before the release was logged, and the restart skips it as stored, so no log line ever showed
    the finding. It is logged now; the watcher stops with exit 3 and one error line, and the restart
    commits the serial without scanning or POSTing the release again."""
    store = tmp_path / "store.db"
    before = baseline(fake_index, store, rules_dir)
    publish(fake_index, "flagged", "1.0", BAD)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SERIAL_WRITE_FAILS)
    path = os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])
    args = watch_args(fake_index, store, rules_dir, "--webhook", fake_index.hook_url)
    failed = cli(*args, *mode, "--log-format", "json", env={**os.environ, "PYTHONPATH": path})
    assert failed.returncode == 3, failed.stderr
    no_traceback(failed)
    [error] = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: the store {store} failed: database or disk is full")
    logged = [(r["message"], r.get("project")) for r in records(failed.stderr)]
    assert ("release has findings", "flagged") in logged, logged
    assert serial_of(store) == before and files_stored(store) == files_listed(fake_index)
    assert len(fake_index.hooks) == 1

    again = cli(*args, "--once")
    assert again.returncode == 0, again.stderr
    assert serial_of(store) == fake_index.serial and files_stored(store) == files_listed(fake_index)
    assert len(fake_index.hooks) == 1
