"""Red-team pass 23: ``watch`` and the results store under crashes and concurrency, with real processes.

The README promises that ``watch`` resumes after a restart, a crash or ``kill -9`` with nothing missed and
nothing stored twice, that readers never see half a release, and that a store that cannot be used is an
error naming it. Each test below that pins a fix fails on the code it was written against:

* a store that failed while ``watch`` ran (a full disk, pages found corrupt) lost the release with a
  logged traceback and ``watch --once`` exited 0; ``report`` and ``diff`` on corrupt pages ended in an
  internal error with a traceback;
* ``Store.release`` (``report NAME==VERSION``) read the scans and their files in two snapshots: a scan
  committed in between showed files from a scan it does not list;
* ``report`` could not read a store whose directory it cannot write (a read-only mount, another user's
  store) while no writer had it open: "attempt to write a readonly database";
* a second SIGTERM (or the grace period's end) during a download printed asyncio's "exception was never
  retrieved" tracebacks.

The kill-point test pins what held: a watcher killed right after any commit of a poll, then restarted,
stores every file exactly once, as a run never killed does.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dragonfly_hybrid.report import NotDownloaded, TargetResult
from dragonfly_hybrid.store.db import Store
from dragonfly_hybrid.watch.source import SERIAL_KEY

from tests.fakes.pypi import FakeIndex
from tests.test_watch import BAD, publish

HANG_GUARD = 120
"""Seconds any child may run (each needs a few when nothing hangs)."""


def cli(
    *args: str,
    prefix: tuple[str, ...] = (),
    stdout: int | Path = subprocess.PIPE,
    stderr: int | Path = subprocess.PIPE,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """A command of the CLI as a real process (``prefix``: what it runs under), under the hang guard, its
    stdout and stderr each a pipe or a file (``/dev/full``)."""
    streams = {
        name: open(target, "w") if isinstance(target, Path) else None
        for name, target in (("stdout", stdout), ("stderr", stderr))
    }
    try:
        return subprocess.run(
            [*prefix, sys.executable, "-m", "dragonfly_hybrid.cli", *args],
            stdout=streams["stdout"] or stdout,
            stderr=streams["stderr"] or stderr,
            text=True,
            timeout=HANG_GUARD,
            check=False,
            cwd=cwd,
            env=env,
            preexec_fn=preexec_fn,
        )
    finally:
        for stream in streams.values():
            if stream is not None:
                stream.close()


def watch_args(index: FakeIndex, store: Path, rules_dir: Path, *extra: str) -> list[str]:
    return ["watch", "--store", str(store), "--rules", str(rules_dir), "--index-url", index.url,
            "--threads", "2", *extra]  # fmt: skip


def baseline(index: FakeIndex, store: Path, rules_dir: Path) -> int:
    """A first ``watch --once`` on an index with an old release: the baseline serial."""
    publish(index, "seed", "1.0", old=True)
    done = cli(*watch_args(index, store, rules_dir, "--once"))
    assert done.returncode == 0, done.stderr
    return serial_of(store)


def serial_of(store: Path) -> int:
    with Store(store, readonly=True) as db:
        return int(db.get_state(SERIAL_KEY) or 0)


def files_stored(store: Path) -> Counter[tuple[str, str, str, str]]:
    """How many times each file read (project, version, file name, sha256) is stored."""
    with Store(store, readonly=True) as db:
        rows = db._query(
            "SELECT r.normalized, r.version, d.filename, d.sha256 FROM distributions d "
            "JOIN scans s ON s.id = d.scan_id JOIN releases r ON r.id = s.release_id WHERE d.sha256 != ''"
        )
    return Counter(tuple(row) for row in rows)


def files_listed(index: FakeIndex, *, but: str = "seed") -> Counter[tuple[str, str, str, str]]:
    return Counter(
        (project, "1.0", file.filename, file.sha256)
        for project, files in index.projects.items()
        if project != but
        for file in files
    )


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr


# --- a store that fails while it is used -----------------------------------------------------------------


def test_a_store_that_fills_up_while_watching_stops_the_watcher_with_exit_3_and_loses_nothing(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """A real full disk: the child may not write files past 40 kB (RLIMIT_FSIZE; Python ignores SIGXFSZ,
    so a write past it fails with EFBIG), so the store's write-ahead log fills while releases are stored.
    The watcher stopped storing, logged each lost release with a traceback, and exited 0 ("--once done")
    as if it had stored them. Now it stops at once with one error line naming the store, exit 3, and the
    next run stores every release exactly once."""
    store = tmp_path / "store.db"
    before = baseline(fake_index, store, rules_dir)
    for i in range(6):
        publish(fake_index, f"pkg{i}", "1.0", BAD)

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))

    full = cli(*watch_args(fake_index, store, rules_dir, "--once"), preexec_fn=small_files)
    assert full.returncode == 3, full.stderr
    assert f"error: the store {store} failed: " in full.stderr
    no_traceback(full)
    assert serial_of(store) == before  # the round was not finished: the next run looks at it again

    again = cli(*watch_args(fake_index, store, rules_dir, "--once"))
    assert again.returncode == 0, again.stderr
    assert serial_of(store) == fake_index.serial
    assert files_stored(store) == files_listed(fake_index)


def zero_root_page(store: Path, table: str) -> None:
    """Overwrite the root page of ``table`` with zeros: the store opens (header and schema are sound) and
    every other table reads and writes, but any use of ``table`` finds the store "malformed"."""
    db = sqlite3.connect(store)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        root = int(db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0])
    finally:
        db.close()
    with store.open("r+b") as file:
        file.seek((root - 1) * page_size)
        file.write(bytes(page_size))


def test_a_store_with_corrupt_pages_is_one_error_line_naming_it_never_a_traceback(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """The ``files`` table (a release's matching files) of a store is corrupt. ``watch`` logged the
    release it could not store with a traceback and exited 0; ``report`` and ``diff`` ended in "internal
    error" with a traceback (exit 3). Each now says ``error: ... the store PATH ...: database disk image
    is malformed``: ``watch`` exits 3, ``report`` 2, and ``diff`` 1 (NEW's finding is never hidden behind
    the store's failure; without one it would be 3)."""
    store = tmp_path / "store.db"
    before = baseline(fake_index, store, rules_dir)
    publish(fake_index, "old", "1.0", BAD)
    stored = cli(*watch_args(fake_index, store, rules_dir, "--once"))
    assert stored.returncode == 0, stored.stderr
    zero_root_page(store, "files")
    publish(fake_index, "new", "1.0", BAD)

    watched = cli(*watch_args(fake_index, store, rules_dir, "--once"))
    assert watched.returncode == 3, watched.stderr
    assert f"error: the store {store} failed: database disk image is malformed" in watched.stderr
    no_traceback(watched)
    assert serial_of(store) == before + 1  # "new" was not stored: the next run looks at it again

    report = cli("report", "old==1.0", "--store", str(store), "-f", "json")
    assert report.returncode == 2, report.stderr
    assert f"error: cannot read the store {store}: database disk image is malformed" in report.stderr
    no_traceback(report)

    diff = cli("diff", "old==1.0", "new==1.0", "--store", str(store), "--rules", str(rules_dir),
               "--index-url", fake_index.url)  # fmt: skip
    assert diff.returncode == 1, diff.stderr
    assert f"error: the store {store} failed: database disk image is malformed" in diff.stderr
    no_traceback(diff)


# --- readers -----------------------------------------------------------------------------------------------


def failed_download(name: str, filename: str) -> TargetResult:
    """A scan of ``name==1.0`` that could not download ``filename`` (a row without bytes): no engine."""
    result = TargetResult.failed(f"{name}==1.0", "release", name, "1.0", f"{filename}: HTTP 404")
    missing = NotDownloaded(
        filename=filename, url=f"https://files.example/{filename}", size=1, kind="download-failed",
        message="HTTP 404", sha256="ab" * 32,
    )  # fmt: skip
    return dataclasses.replace(result, not_downloaded=(missing,), error_per_file=True)


def test_a_release_read_while_a_scan_of_it_commits_is_one_state_of_the_store(tmp_path: Path) -> None:
    """``Store.release`` reads a release's scans, then their distributions. A writer (another connection)
    commits a scan of that release just as the second query starts (SQLite's statement trace is the
    moment): the release came out with a file from a scan its ``scans`` do not list (``report -f json``:
    a ``scan_id`` that names no scan). It is read in one transaction now: the new scan is not in it."""
    store = tmp_path / "store.db"
    with Store(store) as writer:
        writer.record(failed_download("pkg", "a.whl"), rules_hash="1" * 64, source="watch")
    committed: list[int] = []
    with Store(store) as writer, Store(store, readonly=True) as reader:

        def between(statement: str) -> None:
            if "FROM distributions d JOIN scans s" in statement and not committed:
                scan = writer.record(failed_download("pkg", "b.whl"), rules_hash="1" * 64, source="watch")
                committed.append(scan)

        reader._db.set_trace_callback(between)
        release = reader.release("pkg", "1.0")
        reader._db.set_trace_callback(None)
        assert committed, "the writer did not commit between the reader's queries"
        assert release is not None
        listed = {scan.id for scan in release.scans}
        assert {d["scan_id"] for d in release.distributions} <= listed, (listed, release.distributions)
        assert [d["name"] for d in release.distributions] == ["a.whl"]
        after = reader.release("pkg", "1.0")  # the next read sees the scan committed, whole
        assert after is not None and {d["name"] for d in after.distributions} == {"a.whl", "b.whl"}
        assert {d["scan_id"] for d in after.distributions} <= {scan.id for scan in after.scans}


@contextmanager
def unwritable(directory: Path) -> Iterator[tuple[str, ...]]:
    """The prefix of a command run by a user who cannot write ``directory`` (mode 0555; as root, without
    the capabilities that override file modes, dropped with ``setpriv``), then its mode back."""
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        prefix = (setpriv or "setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner")
        usable = setpriv is not None and subprocess.run([*prefix, "true"], check=False).returncode == 0
        if not usable:
            pytest.skip("root without a working setpriv: no way to run as a user lacking write access")
    directory.chmod(0o555)
    try:
        yield prefix
    finally:
        directory.chmod(0o755)


def test_report_reads_a_store_whose_directory_it_cannot_write(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """The README asks for a store only its user can write; another user's ``report`` (or any on a
    read-only mount) failed whenever no writer had the store open: "cannot open the store: ...: attempt to
    write a readonly database" (SQLite cannot create the ``-shm`` file it reads a WAL store through).
    It reads the store now; writers still need the directory, and say so at once (exit 2)."""
    directory = tmp_path / "shared"
    directory.mkdir()
    store = directory / "store.db"
    baseline(fake_index, store, rules_dir)
    publish(fake_index, "flagged", "1.0", BAD)
    assert cli(*watch_args(fake_index, store, rules_dir, "--once")).returncode == 0
    assert sorted(p.name for p in directory.iterdir()) == ["store.db"]  # no writer has it open

    with unwritable(directory) as prefix:
        listed = cli("report", "--store", str(store), "--all", "-f", "json", prefix=prefix)
        assert listed.returncode == 0, listed.stderr
        assert [(s["name"], s["verdict"]) for s in json.loads(listed.stdout)["scans"]] == [
            ("flagged", "findings")
        ]
        one = cli("report", "flagged==1.0", "--store", str(store), "-f", "json", prefix=prefix)
        assert one.returncode == 0, one.stderr
        assert json.loads(one.stdout)["verdict"] == "findings"
        writer = cli(*watch_args(fake_index, store, rules_dir, "--once"), prefix=prefix)
        assert writer.returncode == 2 and "error: cannot open the store: " in writer.stderr, writer.stderr
        no_traceback(writer)


READ_WITHOUT_LOCKS = """
import sys
from dragonfly_hybrid.store.db import Store, StoreError
with Store(sys.argv[1], readonly=True) as db:
    print("open", flush=True)
    sys.stdin.readline()  # the parent writes meanwhile
    try:
        with db.snapshot():
            db.get_state("serial")
        print("read")
    except StoreError as err:
        print("StoreError:", err)
"""


def test_a_store_read_without_locks_that_a_writer_changes_meanwhile_is_an_error(tmp_path: Path) -> None:
    """Read without locks (its directory not writable, no ``-wal`` file), a store that a writer opens and
    checkpoints into meanwhile may be read half old, half new: the read fails, saying to run it again."""
    directory = tmp_path / "shared"
    directory.mkdir()
    store = directory / "store.db"
    with Store(store) as db:
        db.set_state(SERIAL_KEY, "1")
    with unwritable(directory) as prefix:
        child = subprocess.Popen(
            [*prefix, sys.executable, "-c", READ_WITHOUT_LOCKS, str(store)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline().strip() == "open"
            directory.chmod(0o755)  # the store's owner writes; its last connection checkpoints on close
            with Store(store) as db:
                db.set_state(SERIAL_KEY, "2")
            child.stdin.write("\n")
            child.stdin.flush()
            out, err = child.communicate(timeout=HANG_GUARD)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 0, err
    assert out.startswith("StoreError: it changed while it was read without locks"), out + err
    with Store(store, readonly=True) as db:  # and read again, it is the new state
        assert db.get_state(SERIAL_KEY) == "2"


# --- signals ------------------------------------------------------------------------------------------


def test_a_second_sigterm_during_a_download_stops_at_once_without_a_stray_traceback(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """SIGTERM drains; a second ends the grace period at once. The node then cancelled its stages and left
    the download's thread to fail when the downloader closed: asyncio printed "_GatheringFuture exception
    was never retrieved" and "Future exception was never retrieved" with tracebacks on every such stop.
    Exit 0, the serial unmoved, and the restart stores the release once."""
    store = tmp_path / "store.db"
    before = baseline(fake_index, store, rules_dir)
    publish(fake_index, "slow", "1.0")
    for file in fake_index.projects["slow"]:
        fake_index.faults.delay[file.filename] = 60.0
    command = [sys.executable, "-m", "dragonfly_hybrid.cli",
               *watch_args(fake_index, store, rules_dir, "--interval", "0.5")]  # fmt: skip
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(r.startswith("/files/slow/") for r in fake_index.requests):
            assert time.monotonic() < deadline and child.poll() is None, "no download started"
            time.sleep(0.05)
        child.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=HANG_GUARD)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert "never retrieved" not in err and "Traceback" not in err, err
    assert serial_of(store) == before and files_stored(store) == Counter()
    fake_index.faults.delay.clear()
    again = cli(*watch_args(fake_index, store, rules_dir, "--once"))
    assert again.returncode == 0, again.stderr
    assert files_stored(store) == files_listed(fake_index)


# --- kill -9 at every commit (held) -------------------------------------------------------------------------


KILL_AT_COMMIT = """
import os, signal, sqlite3

_at = int(os.environ["DRAGONFLY_TEST_KILL_AT_COMMIT"])
_seen = [0]


class _Connection(sqlite3.Connection):
    def execute(self, sql, *args, **kwargs):
        result = super().execute(sql, *args, **kwargs)
        if sql.strip().upper() == "COMMIT":
            _seen[0] += 1
            if _seen[0] == _at:
                os.kill(os.getpid(), signal.SIGKILL)  # right after the N-th commit reached the file
        return result


_connect = sqlite3.connect


def _connect_counting(*args, **kwargs):
    kwargs.setdefault("factory", _Connection)
    return _connect(*args, **kwargs)


sqlite3.connect = _connect_counting
"""
"""A ``sitecustomize`` for the child: SIGKILL right after its N-th ``COMMIT`` (the product's own SQL,
on a real SQLite file; only the moment is chosen)."""


def test_a_watcher_killed_after_any_commit_resumes_storing_every_file_exactly_once(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """Held: a poll's commits are each release (with its content-cache entries, which may share a
    commit) and the serial (opening a store at this version commits nothing). Killed with SIGKILL right
    after each in turn (on a fresh copy of the store), then restarted, the watcher ends with every file
    stored exactly once and the serial at the index's, as a run never killed."""
    first = tmp_path / "first.db"
    baseline(fake_index, first, rules_dir)
    publish(fake_index, "flagged", "1.0", BAD)
    publish(fake_index, "plain", "1.0")
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_AT_COMMIT)
    path = os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])
    commits = 0
    while True:
        commits += 1
        store = tmp_path / f"killed-{commits}.db"
        shutil.copy(first, store)
        env = {**os.environ, "PYTHONPATH": path, "DRAGONFLY_TEST_KILL_AT_COMMIT": str(commits)}
        killed = cli(*watch_args(fake_index, store, rules_dir, "--once"), env=env)
        if killed.returncode != -signal.SIGKILL:  # past the last commit: the run ended by itself
            assert killed.returncode == 0, killed.stderr
            break
        with Store(store) as db:
            assert db.integrity_check() == "ok"
        resumed = cli(*watch_args(fake_index, store, rules_dir, "--once"))
        assert resumed.returncode == 0, resumed.stderr
        assert serial_of(store) == fake_index.serial, commits
        assert files_stored(store) == files_listed(fake_index), commits
    assert commits > 3  # at least the two releases and the serial: each was a kill point
