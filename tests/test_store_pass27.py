"""Pass 27 on the store and the commands that read it, with real processes. Each test pins a fix and fails
on the code it was written against:

* a store on a full disk did not open, even for ``report`` (exit 2): SQLite could not make the -shm file
  it reads a WAL store through, and every writable open rewrote ``schema_version`` though nothing needed
  migrating; ``report`` now reads the file as it is (the lock-free read), and ``diff`` reads from it;
* ``diff OLD NEW --store`` whose store failed exited 3 although NEW had findings OLD did not;
* the HTML list page's summary counted ``Foo_Bar==1.0`` and ``foo-bar==1.0.0`` (one release on PyPI, and in
  the store) as two releases;
* ``report --html FILE`` (``output_file``, shared with ``scan -o`` and ``rules compile -o``) made a 0600 FILE
  world-readable, left its temporary file behind on SIGTERM, wrote through a link planted under its
  guessable temporary name, replaced the store itself when FILE was the store, and could no longer write a
  FILE it may write in a directory it may not.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from dragonfly_hybrid.report import TargetResult
from dragonfly_hybrid.store.db import Store

from tests.fakes.pypi import FakeIndex
from tests.test_redteam_watch_crash import HANG_GUARD, cli, failed_download, unwritable, zero_root_page
from tests.test_watch import BAD, publish


def no_room() -> None:
    """In the child: no file may grow past 4 kB (RLIMIT_FSIZE; Python ignores SIGXFSZ, so a write past it
    fails with EFBIG): a full disk, on which SQLite cannot size the 32 kB shared-memory file (-shm) beside a
    store, nor append to its write-ahead log. The small archives of the fake index still download."""
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))


def no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr


def diff_args(index: FakeIndex, store: Path, rules_dir: Path) -> list[str]:
    return ["diff", "old==1.0", "new==1.0", "--store", str(store), "--rules", str(rules_dir),
            "--index-url", index.url, "-f", "json"]  # fmt: skip


# --- 1. a store on a full disk ---------------------------------------------------------------------------


def test_report_reads_a_store_on_a_full_disk(tmp_path: Path) -> None:
    """Reading needs no room, but SQLite makes a -shm file beside a WAL store to read it: ``report`` exited
    2 ("cannot open the store: ...: disk I/O error"). With no -wal holding commits (no writer has it open),
    it reads the file as it is, as for a directory it cannot write."""
    store = tmp_path / "store.db"
    with Store(store) as db:
        db.record(failed_download("old", "a.whl"), rules_hash="1" * 64, source="watch")
    done = cli("report", "--store", str(store), "--all", "-f", "json", preexec_fn=no_room)
    assert done.returncode == 0, done.stderr
    assert [scan["name"] for scan in json.loads(done.stdout)["scans"]] == ["old"]


@pytest.fixture
def both_sides_stored(fake_index: FakeIndex, tmp_path: Path, rules_dir: Path) -> Path:
    """A store holding ``old==1.0`` (clean) and ``new==1.0`` (the marker rule matches), as a first diff
    stored them."""
    publish(fake_index, "old", "1.0")
    publish(fake_index, "new", "1.0", BAD)
    store = tmp_path / "store.db"
    first = cli(*diff_args(fake_index, store, rules_dir))
    assert first.returncode == 1, first.stderr
    assert [json.loads(first.stdout)[side]["from"] for side in ("old", "new")] == ["scan", "scan"]
    return store


@pytest.mark.parametrize("writer", ["none", "holding it open"])
def test_diff_reads_both_sides_from_a_store_on_a_full_disk(
    fake_index: FakeIndex, both_sides_stored: Path, rules_dir: Path, writer: str
) -> None:
    """The disk filled; both releases are in the store. ``diff`` opened the store for writing and exited
    2: SQLite could not make its -shm file (no writer), or, with a writer holding the store open (its -shm
    there), the opening rewrote ``schema_version``, which needed room in the log. Opening writes nothing
    now that needs no writing, and a store that cannot be opened for writing is read: both sides come from
    it, exit 1 (NEW's finding)."""
    holder = None
    if writer != "none":
        holder = Store(both_sides_stored)
        holder._db.execute("PRAGMA wal_autocheckpoint = 0")  # its log grows past the child's 4 kB
        for i in range(3):
            holder.record(failed_download(f"other{i}", "a.whl"), rules_hash="1" * 64, source="watch")
    try:
        done = cli(*diff_args(fake_index, both_sides_stored, rules_dir), preexec_fn=no_room)
    finally:
        if holder is not None:
            holder.close()
    no_traceback(done)
    assert done.returncode == 1, done.stderr
    answer = json.loads(done.stdout)
    assert [answer[side]["from"] for side in ("old", "new")] == ["store", "store"]
    assert answer["exit_code"] == 1


def test_diff_that_cannot_store_a_scan_on_a_full_disk_still_exits_1_for_findings(
    fake_index: FakeIndex, both_sides_stored: Path, rules_dir: Path
) -> None:
    """NEW is a release the store lacks: it is scanned, and cannot be stored. The finding wins (exit 1);
    the store's failure is one line."""
    publish(fake_index, "newer", "1.0", BAD + b"# other bytes\n")
    args = diff_args(fake_index, both_sides_stored, rules_dir)
    args[2] = "newer==1.0"
    done = cli(*args, preexec_fn=no_room)
    no_traceback(done)
    assert done.returncode == 1, done.stderr
    assert f"error: the store {both_sides_stored} failed: " in done.stderr
    assert "newer==1.0 not stored" in done.stderr


OPEN_FOR_WRITING = """
import sys
from dragonfly_hybrid.store.db import Store
Store(sys.argv[1]).close()
print("opened")
"""


def test_opening_a_store_at_this_version_writes_nothing(tmp_path: Path) -> None:
    """Every opening for writing (``scan --store``, ``watch``, ``diff``) rewrote ``schema_version`` in a
    transaction of its own, though nothing needed migrating: on a full disk, with a watcher holding the
    store open (its -shm there), the log could not take it and the store did not open ("disk I/O error").
    Opening a store already at this version writes nothing."""
    store = tmp_path / "store.db"
    holder = Store(store)
    try:
        holder._db.execute("PRAGMA wal_autocheckpoint = 0")  # its log grows past the child's 4 kB
        for i in range(3):
            holder.record(failed_download(f"other{i}", "a.whl"), rules_hash="1" * 64, source="watch")
        done = subprocess.run(
            [sys.executable, "-c", OPEN_FOR_WRITING, str(store)],
            capture_output=True, text=True, timeout=HANG_GUARD, check=False, preexec_fn=no_room,
        )  # fmt: skip
    finally:
        holder.close()
    assert (done.returncode, done.stdout) == (0, "opened\n"), done.stderr


# --- 2. diff's exit code when the store fails --------------------------------------------------------------


def test_a_store_failing_during_diff_never_hides_news_findings(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """The store's ``files`` table is corrupt: reading OLD's stored findings fails. ``diff`` stopped with
    exit 3 though NEW has a rule OLD does not; a script checking for 1 took it for "could not tell".
    As for ``scan --store``: one ``error:`` line naming the store, the sides scanned, exit 1."""
    publish(fake_index, "old", "1.0")
    store = tmp_path / "store.db"
    stored = cli(
        "scan", "old==1.0", "--store", str(store), "-r", str(rules_dir), "--index-url", fake_index.url
    )
    assert stored.returncode == 0, stored.stderr
    zero_root_page(store, "files")
    publish(fake_index, "new", "1.0", BAD)
    done = cli(*diff_args(fake_index, store, rules_dir))
    no_traceback(done)
    assert done.returncode == 1, done.stderr
    assert f"error: the store {store} failed: database disk image is malformed" in done.stderr
    answer = json.loads(done.stdout)
    assert answer["exit_code"] == 1 and answer["new_rules"]


# --- 3. the list page's summary ----------------------------------------------------------------------------


def _failed(name: str, version: str) -> TargetResult:
    return dataclasses.replace(failed_download(name, "a.whl"), target=f"{name}=={version}", version=version)


def test_the_list_pages_summary_counts_each_spelling_of_a_release_once(tmp_path: Path) -> None:
    """``Foo_Bar==1.0`` and ``foo-bar==1.0.0`` are one release (PEP 503, PEP 440): PyPI cannot hold both,
    and the store combines them. The page's summary said "2 release(s) ... 2 incomplete"."""
    store = tmp_path / "store.db"
    page = tmp_path / "page.html"
    with Store(store) as db:
        db.record(_failed("Foo_Bar", "1.0"), rules_hash="1" * 64, source="watch")
        db.record(_failed("foo-bar", "1.0.0"), rules_hash="1" * 64, source="scan")
        db.record(_failed("other", "1.0"), rules_hash="1" * 64, source="scan")
    done = cli("report", "--store", str(store), "--all", "--html", str(page))
    assert done.returncode == 0, done.stderr
    summary = re.search(r'<p class="summary">(.*?)</p>', page.read_text())
    assert summary is not None
    text = re.sub(r"<[^>]+>", "", summary.group(1))
    assert text.startswith("2 release(s) in 3 scans 2 incomplete · "), text


# --- 4. output_file (report --html FILE) --------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store.db"
    with Store(path) as db:
        db.record(failed_download("old", "a.whl"), rules_hash="1" * 64, source="watch")
    return path


def usual_umask() -> None:
    os.umask(0o022)


def test_a_private_page_stays_private(store: Path, tmp_path: Path) -> None:
    """A 0600 page written again became 0644 (the temporary file's mode, renamed over it): readable by
    every user. It keeps its mode."""
    page = tmp_path / "page.html"
    page.write_text("the previous page")
    page.chmod(0o600)
    done = cli(
        "report", "--store", str(store), "--all", "--html", str(page), preexec_fn=lambda: os.umask(0o022)
    )
    assert done.returncode == 0, done.stderr
    assert "old==1.0" in page.read_text()
    assert page.stat().st_mode & 0o777 == 0o600


def test_the_store_itself_is_never_replaced_by_the_page(store: Path) -> None:
    """``report --store S --html S`` (a slip of the keyboard) replaced the store with the page: every
    scan lost. It is a usage error now, and the store is untouched."""
    before = store.read_bytes()
    done = cli("report", "--store", str(store), "--html", str(store))
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: cannot write {store}: it is the store it reports on\n"
    assert store.read_bytes() == before


def test_a_page_it_may_write_in_a_directory_it_may_not_is_written(store: Path, tmp_path: Path) -> None:
    """Writing under a temporary name needs the directory: a page this user may write, in a directory it
    may not (a web root), could no longer be written (exit 2, "Permission denied"), as it was before the
    rename. It is written in place there."""
    site = tmp_path / "site"
    site.mkdir()
    page = site / "page.html"
    page.write_text("the previous page")
    with unwritable(site) as prefix:
        done = cli("report", "--store", str(store), "--all", "--html", str(page), prefix=prefix)
    assert done.returncode == 0, done.stderr
    assert "old==1.0" in page.read_text()
    assert sorted(p.name for p in site.iterdir()) == ["page.html"]


PAUSED_PAGE = """
import os, sys
import dragonfly_hybrid.html_report as html

write = html.write_page

def paused(page, out):
    print(os.getpid(), file=sys.stderr, flush=True)
    sys.stdin.readline()  # the parent acts: a link planted, a signal
    out.write("<!doctype html>")
    out.flush()
    print("writing", file=sys.stderr, flush=True)
    sys.stdin.readline()
    write(page, out)

html.write_page = paused
sys.argv = ["dragonfly-hybrid", *sys.argv[1:]]
from dragonfly_hybrid.cli import run
run()
"""


def paused_page(
    args: list[str], before: Callable[[int], None], during: Callable[[subprocess.Popen[str]], None]
) -> subprocess.CompletedProcess[str]:
    """``report ARGS`` as a real process writing its ``--html`` page: ``before(pid)`` runs before it opens
    the page, ``during(child)`` once it has written part of it."""
    child = subprocess.Popen(
        [sys.executable, "-c", PAUSED_PAGE, "report", *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    guard = threading.Timer(HANG_GUARD, child.kill)  # a child stuck before its pause is killed
    guard.start()
    try:
        assert child.stderr is not None and child.stdin is not None
        line = child.stderr.readline()
        assert line.strip().isdigit(), line + child.stderr.read()
        before(int(line))
        child.stdin.write("\n")
        child.stdin.flush()
        line = child.stderr.readline()
        assert line == "writing\n", line + child.stderr.read()
        during(child)
        out, err = child.communicate("\n", timeout=HANG_GUARD)
    finally:
        guard.cancel()
        if child.poll() is None:
            child.kill()
            child.wait()
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def test_sigterm_while_a_page_is_written_leaves_no_temporary_file(store: Path, tmp_path: Path) -> None:
    """SIGTERM (its default action: ``report`` has no handler) while the page was written left
    ``.page.html.PID.partial`` behind, half a page, at every such stop. It is removed, the process still
    ends as SIGTERM ends it, and the last whole page stays."""
    site = tmp_path / "site"
    site.mkdir()
    page = site / "page.html"
    page.write_text("the previous page")
    done = paused_page(
        ["--store", str(store), "--all", "--html", str(page)],
        lambda pid: None,
        lambda child: child.send_signal(signal.SIGTERM),
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert sorted(p.name for p in site.iterdir()) == ["page.html"]
    assert page.read_text() == "the previous page"


def test_a_link_planted_under_the_temporary_name_is_not_written_through(store: Path, tmp_path: Path) -> None:
    """The temporary name was ``.NAME.PID.partial``: anyone who can write the directory (``-o
    /tmp/report.json``) could plant a symbolic link there to a file of the user's, which the report then
    overwrote (and the link became the page). The temporary file is made new, under a name no one knows."""
    shared = tmp_path / "shared"
    shared.mkdir()
    page = shared / "page.html"
    victim = tmp_path / "victim"
    victim.write_text("the user's own file")

    def plant(pid: int) -> None:
        (shared / f".page.html.{pid}.partial").symlink_to(victim)

    done = paused_page(["--store", str(store), "--all", "--html", str(page)], plant, lambda child: None)
    assert done.returncode == 0, done.stderr
    assert victim.read_text() == "the user's own file"
    assert not page.is_symlink() and "old==1.0" in page.read_text()
