"""Node and watch pass 30: a review of pass 29 (b811878), with real processes, real signals and real HTTP on
127.0.0.1. Each test of a fix fails on the code before it; the ``review`` tests pin what held:

* a node against the mainframe signalled while its first rule set was fetched (``GET /rules`` retried while
  the mainframe answered 503) went on fetching, a second signal too, then exited 3 naming the fetch: it
  held nothing, and stops at once with 0, as during the first login;
* ``watch`` cut short (a second signal, the grace period over) while a stored release's webhook was being
  posted: the release was in the store, but never logged as stored nor with its findings, the serial not
  moved past it (the next run skips it as stored: a finding in the store alone). It is logged as stored
  when the watcher stopped, its webhook said to be cut short.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.mainframe import FakeMainframe
from tests.fakes.pypi import FakeIndex, wheel
from tests.test_node import MARK, add_releases, node_process
from tests.test_node_pass29 import SIGNALS, WRITE_HELD, clean_env, logged_stored_at_stop, signalled_while_held
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
from tests.test_watch import BAD, publish
from tests.test_watch_logs import stopped, wait_for


@pytest.fixture
def fake() -> Iterator[FakeMainframe]:
    with FakeMainframe(job_timeout=30) as server:
        yield server


# --- a signal while the node fetches its first rule set ----------------------------------------------------


@SIGNALS
def test_a_signal_while_the_first_rule_set_is_fetched_stops_the_node_with_0(
    fake: FakeMainframe, tmp_path: Path, sig: signal.Signals
) -> None:
    """Logged in, the node fetches its first rule set before it claims anything; the mainframe answers 503,
    so ``GET /rules`` is retried (6 tries, backing off). The signal stopped nothing: the node fetched on,
    then exited 3 (``GET /rules failed after 6 attempts``) having held no job. It stops at once, exit 0,
    the rules not asked for again (but a retry already under way as the signal came: the backoff's jitter
    can be a few milliseconds)."""
    add_releases(fake, 2)
    fake.fail_next("rules", 503, count=1_000_000)
    child = node_process(fake, tmp_path)
    assert fake.wait_until(lambda: fake.count("rules", 503) >= 1, timeout=HANG_GUARD)
    asked = fake.count("rules")
    child.send_signal(sig)
    status, stderr = stopped(child)
    assert status == 0, stderr
    assert "Traceback" not in stderr and "error:" not in stderr, stderr
    assert "stopping: no new claims" in stderr
    assert fake.count("rules") <= asked + 1 and not fake.claims


def test_review_a_node_whose_first_rules_come_after_a_503_still_claims_and_submits(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """What holds with the first rule set given up at a stop: without a signal, the fetch is retried past
    the 503s and the node claims and submits every job (``--once``)."""
    add_releases(fake, 2)
    fake.fail_next("rules", 503, count=2)
    status, stderr = stopped(node_process(fake, tmp_path, "--once"))
    assert status == 0, stderr
    assert sorted(s.body["name"] for s in fake.results) == ["pkg0", "pkg1"]


# --- a standalone run stopped before every release was written ---------------------------------------------


def test_review_a_standalone_list_with_a_duplicate_and_max_jobs_counts_what_was_to_be_written(
    fake_index: FakeIndex, rules_dir: Path, tmp_path: Path
) -> None:
    """What holds: four lines, one release twice, ``--max-jobs 3``, claimed one at a time; SIGINT while the
    first is downloading. The first is drained and written; the count is of the releases the run was to
    write (the duplicate is one of them, the fourth is not): 2 of 3, exit 130."""
    [held] = fake_index.add("held", wheel("held", "1.0", {"held/__init__.py": MARK}))
    fake_index.add("later", wheel("later", "1.0", {"later/__init__.py": MARK}))
    fake_index.faults.delay[held.filename] = HANG_GUARD
    jobs = tmp_path / "releases.txt"
    jobs.write_text("held==1.0\nheld==1.0\nlater==1.0\nlater==1.0\n")
    args = ["--jobs-file", str(jobs), "--max-jobs", "3", "--index-url", fake_index.url, "-r", str(rules_dir),
            "--bulk-size", "1", "--metrics-port", "0"]  # fmt: skip
    status, stdout, stderr = signalled_while_held(fake_index, held.filename, args, signal.SIGINT, tmp_path)
    assert status == 130, stderr
    [error] = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert error.startswith("error: stopped by SIGINT: 2 of 3 release(s) have no result line"), error
    assert [json.loads(line)["name"] for line in stdout.splitlines()] == ["held"]


# --- watch: a webhook under way when the watcher is cut short ----------------------------------------------


class SilentHook:
    """A webhook receiver that reads each request and never answers (a host that hangs): :attr:`posted`
    is set at the first request's bytes."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        self.posted = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}/hook/secret-token"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            self._held.append(conn)
            if conn.recv(65536):
                self.posted.set()

    def close(self) -> None:
        self._server.close()
        for conn in self._held:
            conn.close()


def test_a_release_whose_webhook_is_cut_when_the_watcher_stops_is_logged_as_stored(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """A release with findings is stored, then its webhook posted to a host that never answers (retried
    for 45 s); a second SIGTERM ends the grace period: the release stayed in the store, logged only as
    "unfinished when the grace period ended" ("scanned on the next run"), never as stored nor with its
    findings, and the serial stayed before it; the next run skips it as stored. It is logged as stored
    when the watcher stopped, with its verdict and rules, its webhook said to be cut short; the serial moves
    past it, exit 0, and the next run stores nothing again."""
    store = tmp_path / "store.db"
    baseline(fake_index, store, rules_dir)
    publish(fake_index, "flagged", "1.0", BAD)
    hook = SilentHook()
    args = watch_args(fake_index, store, rules_dir, "--interval", "0.5", "--webhook", hook.url,
                      "--log-format", "json")  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-m", "dragonfly_hybrid.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    lines = []
    try:
        wait_for(hook.posted.is_set, child)
        assert child.stderr is not None
        child.send_signal(signal.SIGTERM)
        for line in child.stderr:
            lines.append(line)
            if '"stopping: no new polls' in line:
                break
        child.send_signal(signal.SIGTERM)  # the grace period ends now, the webhook unanswered
        status, rest = stopped(child)
    finally:
        hook.close()
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = "".join(lines) + rest
    assert status == 0, stderr
    assert "secret-token" not in stderr
    logged_stored_at_stop(stderr, "its webhook was cut short", store, fake_index)

    again = cli(*watch_args(fake_index, store, rules_dir, "--once"))
    assert again.returncode == 0, again.stderr
    no_traceback(again)
    assert files_stored(store) == files_listed(fake_index)
    assert serial_of(store) == fake_index.serial


WRITE_FAILS = WRITE_HELD.replace(
    "time.sleep(0.02)\n",
    "time.sleep(0.02)\n            raise sqlite3.OperationalError('database or disk is full')\n",
)
""":data:`WRITE_HELD`, the write then failing inside its transaction (rolled back)."""


def cut_write(
    fake_index: FakeIndex, tmp_path: Path, store: Path, rules_dir: Path, sitecustomize: str
) -> tuple[subprocess.Popen[str], Path, list[str]]:
    """A watcher (JSON logs) whose write of the release ``flagged`` waits (``sitecustomize``: a variant of
    :data:`WRITE_HELD`) while two SIGTERMs end its grace period; the child, the file that lets the write go
    on, and the log lines read so far."""
    publish(fake_index, "flagged", "1.0", BAD)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(sitecustomize)
    hold = tmp_path / "hold"
    path = os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**clean_env(), "PYTHONPATH": path, "DRAGONFLY_TEST_HOLD": str(hold)}
    args = watch_args(fake_index, store, rules_dir, "--interval", "0.5", "--log-format", "json")
    child = subprocess.Popen(
        [sys.executable, "-m", "dragonfly_hybrid.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        wait_for(lambda: Path(f"{hold}.held").exists(), child)
        assert child.stderr is not None
        for said in ('"stopping: no new polls', '"unfinished when the grace period ended"'):
            child.send_signal(signal.SIGTERM)
            for line in child.stderr:
                lines.append(line)
                if said in line:
                    break
    except BaseException:
        child.kill()
        child.wait()
        raise
    return child, hold, lines


def test_review_a_watcher_killed_while_it_waits_for_a_cut_write_leaves_the_store_as_before_it(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """What holds: the write pass 29 waits for is one transaction. SIGTERM, a second one while the release's
    write waits inside its transaction (its ``releases`` row inserted), a third one (nothing left to stop:
    the watcher still waits for the write), then SIGKILL: the store is whole, holds no part of the release
    and its serial is before it; the next run stores and announces it once."""
    store = tmp_path / "store.db"
    before = baseline(fake_index, store, rules_dir)
    child, _, _ = cut_write(fake_index, tmp_path, store, rules_dir, WRITE_HELD)
    child.send_signal(signal.SIGTERM)
    child.kill()
    child.communicate(timeout=HANG_GUARD)
    assert child.returncode == -signal.SIGKILL
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert db.execute("SELECT count(*) FROM releases WHERE normalized = 'flagged'").fetchone() == (0,)
    assert serial_of(store) == before

    again = cli(*watch_args(fake_index, store, rules_dir, "--once", "--webhook", fake_index.hook_url))
    assert again.returncode == 0, again.stderr
    no_traceback(again)
    assert files_stored(store) == files_listed(fake_index) and serial_of(store) == fake_index.serial
    assert [hook["name"] for hook in fake_index.hooks] == ["flagged"]


def test_review_a_cut_write_that_fails_exits_3_naming_the_store_and_leaves_the_release_to_the_next_run(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """What holds: the write waited for after the grace period fails (a full disk) and is rolled back: no
    line says the release was stored, the serial stays before it, the watcher exits 3 with one ``error:``
    line naming the store, and the next run stores it."""
    store = tmp_path / "store.db"
    before = baseline(fake_index, store, rules_dir)
    child, hold, lines = cut_write(fake_index, tmp_path, store, rules_dir, WRITE_FAILS)
    hold.touch()
    status, rest = stopped(child)
    stderr = "".join(lines) + rest
    assert status == 3, stderr
    assert "Traceback" not in stderr
    [error] = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert str(store) in error and "database or disk is full" in error, error
    assert "release stored as the watcher stopped" not in stderr
    assert serial_of(store) == before

    again = cli(*watch_args(fake_index, store, rules_dir, "--once"))
    assert again.returncode == 0, again.stderr
    assert files_stored(store) == files_listed(fake_index) and serial_of(store) == fake_index.serial
