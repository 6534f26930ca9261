"""Red-team pass 25: this session's own changes (a full disk is one error line and exit 3; a standalone node
whose results cannot be written exits 3; ``report`` reads in one transaction, and reads a store whose
directory it cannot write without locks), met by a careless user and an unlucky machine, with real
processes. Each test pins a fix and fails on the code it was written against:

* ``--version`` into a full disk ended in a traceback and exit 1 (the code for findings);
* with stderr on a full disk (``... >log 2>&1``, or ``2>>log``), a diagnostic that could not be written
  ended every command with exit 1: a clean scan, a usage error, a ``watch`` that stored every release, a
  standalone node whose results could not be written;
* a store named through a symbolic link (or a hard link) in a directory ``report`` cannot write was read
  without locks while its ``-wal`` file held committed scans: the report silently left them out;
* a ``report`` whose store a writer changed while it was read without locks wrote its report (stdout,
  the ``--html`` page) from that mixed read before it failed;
* a store copied over in place keeping its modification time (``cp -p``) while it was read without
  locks was not seen to change: the read mixed the two;
* a standalone node's results file cut mid-line by a full disk glued the next run's first result to the
  cut line: a JSON lines reader lost it.

What held is pinned too: a ``report --html`` holding its read transaction does not block a writer.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from dragonfly_hybrid.store.db import Store

from tests.fakes.pypi import FakeIndex
from tests.test_redteam_watch_crash import HANG_GUARD, failed_download, unwritable
from tests.test_redteam_watch_crash import cli as run
from tests.test_watch import BAD, publish

FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full (a device always full)")


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in (done.stderr or ""), done.stderr


# --- a full disk ------------------------------------------------------------------------------------------


@needs_dev_full
def test_version_into_a_full_disk_is_one_error_line_and_exit_3() -> None:
    """``--version`` is answered before the app loads, and its write was guarded for a closed pipe only: a
    full disk was a traceback and exit 1. It is now what every command does: one line, exit 3."""
    done = run("--version", stdout=FULL)
    assert done.returncode == 3, done.stderr
    assert done.stderr == "error: cannot write the output: No space left on device\n"


@pytest.fixture
def shadowing_project(tmp_path: Path) -> Path:
    """A directory ``work`` holding a local directory ``six`` (a PyPI name too: ``scan six`` scans the
    directory and always prints a note on stderr saying so) with a file the marker rule matches, and
    ``clean`` with one it does not."""
    work = tmp_path / "work"
    (work / "six").mkdir(parents=True)
    (work / "six" / "setup.py").write_bytes(BAD)
    (work / "clean").mkdir()
    (work / "clean" / "setup.py").write_bytes(b"print('hello')\n")
    return work


@needs_dev_full
@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("scan", "six", "clean", "-q", "-f", "json"), 1),  # findings (the note about `six` is lost)
        (("scan", "clean", "missing.tar.gz", "-q"), 2),  # a usage error, its error line lost
        (("report", "--store", "none.db"), 2),  # no store
    ],
    ids=["scan-findings", "scan-usage-error", "report-no-store"],
)
def test_stderr_on_a_full_disk_never_changes_the_exit_code(
    args: tuple[str, ...], expected: int, shadowing_project: Path, rules_dir: Path
) -> None:
    """The error of the diagnostic that could not be written escaped the handler printing it: every
    command exited 1, which claims findings nobody saw (a usage error too). The diagnostic is dropped
    now, and the exit code is the command's own; stdout (the report) is whole."""
    extra = ("-r", str(rules_dir)) if args[0] == "scan" else ()
    done = run(*args, *extra, stderr=FULL, cwd=shadowing_project)
    assert done.returncode == expected
    if expected == 1:
        targets = {t["target"]: t["verdict"] for t in json.loads(done.stdout)["targets"]}
        assert targets == {"six": "findings", "clean": "clean"}


@needs_dev_full
def test_a_clean_scan_with_stderr_on_a_full_disk_exits_0_with_its_report(
    shadowing_project: Path, rules_dir: Path
) -> None:
    """A clean scan whose note could not be written exited 1 ("findings") with no report at all."""
    (shadowing_project / "six" / "setup.py").write_bytes(b"print('hi')\n")
    done = run("scan", "six", "-q", "-f", "json", "-r", str(rules_dir), stderr=FULL, cwd=shadowing_project)
    assert done.returncode == 0
    assert [t["verdict"] for t in json.loads(done.stdout)["targets"]] == ["clean"]


@needs_dev_full
def test_a_watcher_with_stderr_on_a_full_disk_exits_0_once_it_stored_everything(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """``watch --once`` ends with a summary line on stderr: on a full disk, its error made the watcher
    exit 1 (never a code of ``watch``) after it had stored every release."""
    store = tmp_path / "store.db"
    publish(fake_index, "seed", "1.0", old=True)
    args = ("watch", "--once", "--store", str(store), "-r", str(rules_dir), "--index-url", fake_index.url)
    assert run(*args).returncode == 0
    publish(fake_index, "flagged", "1.0", BAD)
    done = run(*args, stderr=FULL)
    assert done.returncode == 0
    with Store(store, readonly=True) as db:
        assert [listed.scan.name for listed in db.listed_scans()] == ["flagged"]


@needs_dev_full
def test_a_standalone_node_on_a_full_disk_exits_3_even_when_stderr_is_full_too(
    fake_index: FakeIndex, rules_dir: Path
) -> None:
    """``node --job ... >log 2>&1`` on a full disk: the results could not be written (exit 3), nor could
    the line saying so; the node exited 1, a code it never has."""
    publish(fake_index, "flagged", "1.0", BAD)
    args = ("node", "--job", "flagged==1.0", "--index-url", fake_index.url, "-r", str(rules_dir))
    done = run(*args, stdout=FULL, stderr=FULL)
    assert done.returncode == 3


# --- reading a store without locks --------------------------------------------------------------------------


def _link(store: Path, link: Path, kind: str) -> None:
    if kind == "symlink":
        link.symlink_to(store)
    else:
        os.link(store, link)


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_a_store_named_through_a_link_is_never_read_without_its_wal(tmp_path: Path, kind: str) -> None:
    """A store whose ``-wal`` file holds a committed scan, in a directory this user cannot write, named
    through a link in another such directory. ``report`` looked for the ``-wal`` file beside the link,
    found none, and read the main file alone: exit 0, the committed scan silently missing.

    * symlink: a copy of a store taken while a watcher had it open (the store and its ``-wal``; the
      ``-shm`` file is not kept: it is rebuilt from the ``-wal``), named through a symbolic link;
    * hard link: a watcher holding the store open (its ``-wal`` and ``-shm`` beside it); the link's
      directory has no ``-shm`` for it, and SQLite cannot make one there.

    It now looks where SQLite does (beside the link's target) and never reads a hard-linked file without
    locks: the report has the scan, or it fails (exit 2); it is never one without it."""
    data = tmp_path / "data"
    links = tmp_path / "links"
    data.mkdir()
    links.mkdir()
    store = data / "store.db"
    with Store(store) as db:
        db.record(failed_download("old", "a.whl"), rules_hash="1" * 64, source="watch")
    writer = Store(store)
    try:
        writer._db.execute("PRAGMA wal_autocheckpoint = 0")  # the commit stays in the -wal
        writer.record(failed_download("committed", "b.whl"), rules_hash="1" * 64, source="watch")
        if kind == "symlink":
            copy = tmp_path / "copy"
            copy.mkdir()
            for name in ("store.db", "store.db-wal"):
                shutil.copyfile(data / name, copy / name)
            target = copy / "store.db"
        else:
            target = store
        _link(target, links / "store.db", kind)
        with unwritable(target.parent) as prefix, unwritable(links):
            done = run("report", "--store", str(links / "store.db"), "--all", "-f", "json", prefix=prefix)
    finally:
        writer.close()
    no_traceback(done)
    if done.returncode == 0:
        assert sorted(s["name"] for s in json.loads(done.stdout)["scans"]) == ["committed", "old"]
    else:
        assert done.returncode == 2 and "error: cannot open the store: " in done.stderr, done.stderr
    if kind == "symlink":  # the copy holds the commit: its owner reads it
        owner = run("report", "--store", str(links / "store.db"), "--all", "-f", "json")
        assert sorted(s["name"] for s in json.loads(owner.stdout)["scans"]) == ["committed", "old"]


PAUSED_REPORT = """
import sys
from dragonfly_hybrid.store.db import Store

read = Store.listed_scans

def listed_then_pause(self, *args, **kwargs):
    found = read(self, *args, **kwargs)
    print("read", file=sys.stderr, flush=True)
    sys.stdin.readline()  # the parent writes meanwhile
    return found

Store.listed_scans = listed_then_pause
sys.argv = ["dragonfly-hybrid", *sys.argv[1:]]
from dragonfly_hybrid.cli import run
run()
"""


def paused_report(
    args: list[str], between: Callable[[], None], prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """``report ARGS`` as a real process, paused once it has read the scans it lists, while ``between``
    runs."""
    child = subprocess.Popen(
        [*prefix, sys.executable, "-c", PAUSED_REPORT, "report", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    guard = threading.Timer(HANG_GUARD, child.kill)  # a child stuck before its pause is killed
    guard.start()
    try:
        assert child.stderr is not None
        line = child.stderr.readline()
        assert line == "read\n", line + child.stderr.read()
        between()
        out, err = child.communicate("\n", timeout=HANG_GUARD)
    finally:
        guard.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


@pytest.mark.parametrize("output", ["json", "html"])
def test_a_report_of_a_store_changed_while_read_without_locks_writes_nothing(
    tmp_path: Path, output: str
) -> None:
    """Read without locks (its directory not writable, no writer), a store a writer opened and
    checkpointed into while ``report`` read it: the report failed as it should (exit 2, "run the command
    again"), but only after writing what it read, which may mix two states of the store: the whole JSON
    on stdout, the ``--html`` page over the previous one. Nothing is written now."""
    directory = tmp_path / "shared"
    directory.mkdir()
    store = directory / "store.db"
    page = tmp_path / "report.html"
    page.write_text("the previous page")
    with Store(store) as db:
        db.record(failed_download("old", "a.whl"), rules_hash="1" * 64, source="watch")

    def write() -> None:
        directory.chmod(0o755)  # the store's owner writes; its last connection checkpoints on close
        with Store(store) as db:
            db.record(failed_download("new", "b.whl"), rules_hash="1" * 64, source="watch")

    args = ["--store", str(store), "--all", *(["--html", str(page)] if output == "html" else ["-f", "json"])]
    with unwritable(directory) as prefix:
        done = paused_report(args, write, prefix)
    assert done.returncode == 2, done.stderr
    assert "it changed while it was read without locks" in done.stderr, done.stderr
    assert "run the command again" in done.stderr
    assert done.stdout == ""
    assert page.read_text() == "the previous page"


def test_a_report_reading_in_one_transaction_does_not_block_a_writer(tmp_path: Path) -> None:
    """What held: ``report --html`` reads in one transaction; while it holds it, a writer (another
    process's scan) commits without waiting (WAL), and the page shows the store as it was when the report
    began."""
    store = tmp_path / "store.db"
    page = tmp_path / "report.html"
    with Store(store) as db:
        db.record(failed_download("old", "a.whl"), rules_hash="1" * 64, source="watch")
    committed: list[int] = []

    def write() -> None:  # a lock held would make this fail with "database is locked" (busy timeout)
        with Store(store) as db:
            committed.append(db.record(failed_download("new", "b.whl"), rules_hash="1" * 64, source="scan"))

    done = paused_report(["--store", str(store), "--all", "--html", str(page)], write)
    assert done.returncode == 0, done.stderr
    assert committed
    html = page.read_text()
    assert "old==1.0" in html and "new==1.0" not in html
    with Store(store, readonly=True) as db:
        assert sorted(listed.scan.name for listed in db.listed_scans(findings_only=False)) == ["new", "old"]


# --- a standalone node's results file -------------------------------------------------------------------


def test_results_appended_after_a_line_cut_by_a_full_disk_are_whole_lines(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """``node --job ... -o FILE`` appends. A full disk (here: the child may not write files past 500
    bytes, RLIMIT_FSIZE; Python ignores SIGXFSZ, so the write fails with EFBIG) cut a result mid-line and
    the node exited 3; the next run, the disk freed, wrote its first result onto the cut line: one line no
    JSON reader parses, and that result was lost. It starts on a line of its own now."""
    for name in ("first", "second", "third"):
        publish(fake_index, name, "1.0", BAD)
    results = tmp_path / "results.jsonl"
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (500, 500))

    base = ("node", "--index-url", fake_index.url, "-r", str(rules_dir), "--threads", "1", "-o", str(results))
    jobs = ("--job", "first==1.0", "--job", "second==1.0", "--job", "third==1.0")
    cut = run(*base, *jobs, env=env, preexec_fn=small_files)
    assert cut.returncode == 3, cut.stderr
    assert f"error: cannot write the results to {results}: File too large" in cut.stderr
    assert not results.read_bytes().endswith(b"\n")  # a line was cut

    again = run(*base, "--job", "third==1.0", env=env)
    assert again.returncode == 0, again.stderr
    lines = results.read_text().splitlines()
    parsed = []
    for line in lines[:-1]:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            continue  # the cut line
    last = json.loads(lines[-1])
    assert (last["status"], last.get("name")) == ("success", "third"), last
    assert len(parsed) == len(lines) - 2  # every line but the cut one


READ_SERIAL_WITHOUT_LOCKS = """
import sys
from dragonfly_hybrid.store.db import Store, StoreError
with Store(sys.argv[1], readonly=True) as db:
    print("without locks" if db._unlocked is not None else "with locks", flush=True)
    sys.stdin.readline()  # the parent writes meanwhile
    try:
        with db.snapshot():
            serial = db.get_state("serial")
        print("read", serial)
    except StoreError as err:
        print("StoreError:", err)
"""


def test_a_store_copied_over_in_place_keeping_its_time_is_a_change(tmp_path: Path) -> None:
    """A store read without locks is checked for a change by its inode, size and modification time. A
    copy written over it in place that keeps the time (``cp -p``, ``rsync -t --inplace``: restoring a
    backup) changes none of them when the copy has the same size (a store's size is a whole number of
    pages): the read went on, half old store, half copy, and no error. The change time, which no one can
    set, is checked too now."""
    directory = tmp_path / "shared"
    directory.mkdir()
    store = directory / "store.db"
    backup = tmp_path / "backup.db"
    for path, serial in ((store, "1"), (backup, "2")):
        with Store(path) as db:
            db.set_state("serial", serial)
    assert store.stat().st_size == backup.stat().st_size
    with unwritable(directory) as prefix:
        child = subprocess.Popen(
            [*prefix, sys.executable, "-c", READ_SERIAL_WITHOUT_LOCKS, str(store)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        guard = threading.Timer(HANG_GUARD, child.kill)  # a child stuck before its pause is killed
        guard.start()
        try:
            assert child.stdout is not None and child.stdin is not None
            assert child.stdout.readline() == "without locks\n"
            kept = store.stat()
            store.write_bytes(backup.read_bytes())  # in place: the same inode
            os.utime(store, ns=(kept.st_atime_ns, kept.st_mtime_ns))  # and its time, as cp -p does
            assert (store.stat().st_ino, store.stat().st_size) == (kept.st_ino, kept.st_size)
            out, err = child.communicate("\n", timeout=HANG_GUARD)
        finally:
            guard.cancel()
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 0, err
    assert out.startswith("StoreError: it changed while it was read without locks"), out + err
