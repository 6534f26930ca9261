"""Pass 29 on the output files (``output_file``: ``scan -o``, ``report --html``), the directory walk that
leaves the report out, the store's lock-free read, and numbers past Python's limits, with real processes.
Each test pins a fix and fails on the code it was written against (679cad7):

* ``scan --store S -o S`` (or ``-o $DRAGONFLY_STORE``) replaced the store with the report (every scan lost,
  exit 0), and ``scan -r rules.yar -o rules.yar`` a rule source with it;
* another user's symbolic link in a sticky directory (``-o /tmp/report.txt``) was followed (``realpath``,
  where the kernel's ``protected_symlinks`` refuses): the report went beside its target, made theirs;
* a bind-mounted FILE (EBUSY on rename) was copied over with ``shutil.copyfile``: a full disk left it cut
  (neither the last report nor the new one), and so did SIGTERM during the copy;
* a hard link made to the report's temporary file under a scanned directory while the scan ran was left
  out of the walk with it (by inode): content put there was never scanned, and the verdict was clean;
* a store read without locks and removed meanwhile ended ``diff`` in a traceback (``FileNotFoundError``
  from the check that it had not changed);
* ``--max-download-size`` of 400 digits, ``report --since`` of 400 digits, a lock file with a TOML
  integer past 4300 digits or arrays nested 100,000 deep: tracebacks; a project list whose
  ``meta._last-serial`` is not a number (or is 1e400) was retried forever by ``watch`` (it is an index
  that cannot be watched, as one whose projects' serials are not).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from dragonfly_hybrid.store.db import Store

from tests.fakes.pypi import FakeIndex
from tests.test_redteam_watch_crash import HANG_GUARD, cli, failed_download, unwritable
from tests.test_store_pass27 import no_traceback
from tests.test_store_pass27 import store as store  # a fixture: a store holding old==1.0
from tests.test_store_pass28 import sticky_shared
from tests.test_watch import BAD, CLEAN, publish
from tests.test_watch_logs import JSON_TYPE, watch_cli

HUGE = "1" * 5000


def _child(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _finish(child: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        out, err = child.communicate("\n", timeout=HANG_GUARD)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


# --- 1. the report never replaces what the scan reads ----------------------------------------------------


def test_scan_never_writes_its_report_over_its_store(tmp_path: Path) -> None:
    """``scan x --store S -o S`` replaced the store with the report: every scan in it lost, exit 0."""
    target = tmp_path / "clean.py"
    target.write_bytes(CLEAN)
    store = tmp_path / "store.db"
    assert cli("scan", str(target), "-q", "--store", str(store)).returncode == 0
    before = store.read_bytes()
    done = cli("scan", str(target), "-q", "--store", str(store), "-o", str(store))
    assert (done.returncode, done.stderr) == (
        2, f"error: cannot write {store}: it is the store it keeps the results in\n"
    )  # fmt: skip
    env = {**os.environ, "DRAGONFLY_STORE": str(store)}
    done = cli("scan", str(target), "-q", "-o", "store.db", cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr
    assert store.read_bytes() == before


def test_scan_never_writes_its_report_over_a_rule_source(rules_dir: Path, tmp_path: Path) -> None:
    """``scan x -r rules.yar -o rules.yar`` (or a file of a ``-r`` directory) replaced the rules with the
    report, as ``rules compile`` no longer does."""
    target = tmp_path / "clean.py"
    target.write_bytes(CLEAN)
    source = rules_dir / "marker.yar"
    before = source.read_bytes()
    for given in (source, rules_dir):
        done = cli("scan", str(target), "-q", "-r", str(given), "-o", str(source))
        assert done.returncode == 2, done.stderr
        assert done.stderr == f"error: cannot write {source}: it is the rule source {source}\n"
        assert source.read_bytes() == before


def test_another_users_link_in_a_sticky_directory_is_not_followed(tmp_path: Path) -> None:
    """``scan -o /tmp/report.txt`` where another user had planted ``/tmp/report.txt`` as a symbolic link
    to a file of theirs, in a directory of theirs: the path was resolved (``realpath``: no kernel check),
    the report written beside the link's target and, as root, given to that user (their file's owner).
    The kernel (``protected_symlinks``) refuses to follow such a link for an open; so does the report:
    one line, exit 2, nothing written."""
    shared = sticky_shared(tmp_path)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    theirs.chmod(0o777)
    bait = theirs / "report.txt"
    bait.write_text("theirs")
    os.chown(bait, 65534, 65534)
    bait.chmod(0o666)
    planted = shared / "report.txt"
    planted.symlink_to(bait)
    os.lchown(planted, 65534, 65534)
    target = tmp_path / "clean.py"
    target.write_bytes(CLEAN)
    done = cli("scan", str(target), "-q", "-o", str(planted))
    assert done.returncode == 2, done.stderr
    said = f"error: cannot write {planted}: it is another user's symbolic link in a sticky directory\n"
    assert done.stderr == said
    assert bait.read_text() == "theirs"
    assert [p.name for p in theirs.iterdir()] == ["report.txt"]
    own = shared / "mine.txt"  # this user's own link there is followed, as the kernel follows it
    own.symlink_to(tmp_path / "out.txt")
    assert cli("scan", str(target), "-q", "-o", str(own)).returncode == 0
    assert "clean.py" in (tmp_path / "out.txt").read_text()


# --- 2. a bind-mounted FILE --------------------------------------------------------------------------------


def _bind(source: Path, mount_point: Path) -> None:
    if subprocess.run(["mount", "--bind", str(source), str(mount_point)], capture_output=True).returncode:
        pytest.skip("no bind mounts here")


@contextmanager
def page_bound_on_a_full_disk(mount: list[str], tmp_path: Path, chunk: int) -> Iterator[tuple[Path, Path]]:
    """``tmp_path/site/page.html`` bind-mounted on ``mounted.html`` ("the previous page") of a file system
    mounted by ``mount`` (its arguments but the mount point) on ``tmp_path/full`` and then filled up by
    ``chunk``-byte writes: (the mounted file, the page). Skips where nothing can be mounted."""
    full = tmp_path / "full"
    full.mkdir()
    if subprocess.run(["mount", *mount, str(full)], capture_output=True).returncode:
        pytest.skip(f"cannot mount {mount[-1]} here")
    try:
        source = full / "mounted.html"
        source.write_text("the previous page")
        try:
            with (full / "filler").open("wb") as filler:
                while True:
                    filler.write(b"\0" * chunk)
                    filler.flush()
        except OSError:
            pass  # no room left
        site = tmp_path / "site"
        site.mkdir()
        page = site / "page.html"
        page.write_text("")
        _bind(source, page)
        try:
            yield source, page
        finally:
            subprocess.run(["umount", str(page)], check=True)
    finally:
        subprocess.run(["umount", str(full)], check=True)


def test_a_full_disk_under_a_bind_mounted_file_leaves_it_as_it_was(store: Path, tmp_path: Path) -> None:
    """A FILE bind-mounted from a full file system: the copy over it truncated it, then ran out of room
    (``report --html``: the last page gone, a cut one in its place; ``scan``: the same, "cannot write the
    output"). Its room is taken first: it stays as it was, one line names it, no temporary file stays."""
    with page_bound_on_a_full_disk(["-t", "tmpfs", "-o", "size=64k", "tmpfs"], tmp_path, 4096) as (_, page):
        report = cli("report", "--store", str(store), "--all", "--html", str(page))
        scan = cli("scan", str(store), "-q", "-f", "html", "-o", str(page))
        assert page.read_text() == "the previous page"
    for done, code in ((report, 2), (scan, 3)):
        no_traceback(done)
        assert (done.returncode, done.stderr) == (
            code, f"error: cannot write {page}: No space left on device\n"
        )  # fmt: skip
    assert [p.name for p in page.parent.iterdir()] == ["page.html"]


SIGNALLED_IN_THE_COPY = """
import os, signal, sys

final = sys.argv[1]
before = os.stat(final).st_size
armed = False

def hook(event, args):
    global armed
    if event == "open" and args and isinstance(args[0], (str, os.PathLike)) and os.fspath(args[0]) == final:
        armed = armed or bool(args[2] & (os.O_WRONLY | os.O_RDWR))

def profile(frame, event, arg):
    global armed
    if armed and os.stat(final).st_size != before:  # FILE opened and being written over: SIGTERM
        armed = False
        os.kill(os.getpid(), signal.SIGTERM)

sys.addaudithook(hook)
sys.setprofile(profile)
sys.argv = ["dragonfly-hybrid", *sys.argv[2:]]
from dragonfly_hybrid.cli import run
run()
"""


def test_sigterm_while_a_bind_mounted_file_is_overwritten_leaves_it_whole(
    store: Path, tmp_path: Path
) -> None:
    """SIGTERM once the copy over a bind-mounted FILE had begun ended the process with FILE truncated: an
    empty page, where the whole last one had been. The signal acts once the copy is whole."""
    site = tmp_path / "site"
    site.mkdir()
    page = site / "page.html"
    page.write_text("the previous page")
    source = tmp_path / "mounted.html"
    source.write_text("the previous page")
    _bind(source, page)
    try:
        child = _child(SIGNALLED_IN_THE_COPY, str(page), "report", "--store", str(store), "--all", "--html",
                       str(page))  # fmt: skip
        done = _finish(child)
    finally:
        subprocess.run(["umount", str(page)], check=True)
    assert done.returncode == -signal.SIGTERM, done.stderr
    written = source.read_text()
    assert "old==1.0" in written and written.rstrip().endswith("</html>"), written[-200:]
    assert [p.name for p in site.iterdir()] == ["page.html"]


# --- 3. the report's temporary file under a scanned directory ----------------------------------------------

PAUSED_WALK = """
import sys
import dragonfly_hybrid.targets as targets

walk = targets.directory_files

def paused(root, skip=frozenset()):
    print("walking", file=sys.stderr, flush=True)
    sys.stdin.readline()  # the parent acts: a hard link made to the report's temporary file
    return walk(root, skip)

targets.directory_files = paused
sys.argv = ["dragonfly-hybrid", *sys.argv[1:]]
from dragonfly_hybrid.cli import run
run()
"""


def test_a_hard_link_made_to_the_reports_temporary_file_during_the_scan_is_scanned(
    rules_dir: Path, tmp_path: Path
) -> None:
    """``scan pkg -o pkg/report.json``: the walk leaves out the file the report is written to, by inode.
    A hard link to it made under the tree while the scan ran (its bytes whatever the linker wrote) was left
    out with it: the flagged ``planted.py`` was never scanned and the verdict was clean. A file with
    another name is scanned (under each name)."""
    tree = tmp_path / "pkg"
    tree.mkdir()
    (tree / "setup.py").write_bytes(CLEAN)
    out = tree / "report.json"
    child = _child(PAUSED_WALK, "scan", str(tree), "-q", "-f", "json", "-r", str(rules_dir), "-o", str(out))
    try:
        assert child.stderr is not None
        line = child.stderr.readline()
        assert line == "walking\n", line + child.stderr.read()
        [partial] = tree.glob(".report.json.*.partial")
        planted = tree / "planted.py"
        os.link(partial, planted)
        planted.write_bytes(BAD)
    finally:
        done = _finish(child)
    assert done.returncode == 1, done.stderr
    assert "planted.py" in out.read_text()


# --- 4. the store read without locks ---------------------------------------------------------------------


def test_diff_on_a_store_removed_during_a_lock_free_read_is_one_line(
    fake_index: FakeIndex, rules_dir: Path, tmp_path: Path
) -> None:
    """A store whose directory this user cannot write is read without locks; removed while ``diff`` ran,
    the check that it had not changed meanwhile raised FileNotFoundError: a traceback, exit 3. It is a
    store that failed: one line naming it, NEW scanned, exit 3 (nothing new, the store failed)."""
    directory = tmp_path / "shared"
    directory.mkdir()
    store = directory / "store.db"
    with Store(store) as db:
        db.record(failed_download("seed", "a.whl"), rules_hash="1" * 64, source="watch")
    publish(fake_index, "new", "1.0")
    fake_index.faults.delay["new-1.0.tar.gz"] = HANG_GUARD  # until the store is gone (unblocked)
    old = tmp_path / "old.py"
    old.write_bytes(CLEAN)
    args = ["diff", str(old), "new==1.0", "--store", str(store), "--rules", str(rules_dir), "--index-url",
            fake_index.url]  # fmt: skip
    with unwritable(directory) as prefix:
        child = subprocess.Popen(
            [*prefix, sys.executable, "-m", "dragonfly_hybrid.cli", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            waited = threading.Timer(HANG_GUARD, child.kill)
            waited.start()
            while "/files/new/new-1.0.tar.gz" not in fake_index.requests and child.poll() is None:
                time.sleep(0.05)
            waited.cancel()
            store.unlink()
            fake_index.unblocked.set()
            out, err = child.communicate(timeout=HANG_GUARD)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    no_traceback(subprocess.CompletedProcess(child.args, child.returncode, out, err))
    assert child.returncode == 3, err
    assert f"error: the store {store} failed: it cannot be found again after it was read" in err, err
    assert "nothing new in new==1.0" in out


# --- 5. numbers past Python's limits ---------------------------------------------------------------------


def test_a_size_or_a_duration_past_a_floats_range_is_a_usage_error(tmp_path: Path) -> None:
    """``--max-download-size 999...`` (400 digits) and ``report --since 999...h`` raised OverflowError (a
    float's infinity to an integer, a timedelta out of range): tracebacks, exit 3."""
    target = tmp_path / "clean.py"
    target.write_bytes(CLEAN)
    done = cli("scan", str(target), "-q", "--max-download-size", "9" * 400)
    no_traceback(done)
    assert done.returncode == 2 and "is too large a size" in done.stderr, done.stderr
    store = tmp_path / "store.db"
    with Store(store) as db:
        db.record(failed_download("old", "a.whl"), rules_hash="1" * 64, source="watch")
    for since in ("9" * 400 + "h", "99999999999d"):  # past a float's range; before year 1
        done = cli("report", "--store", str(store), "--all", "-f", "json", "--since", since)
        no_traceback(done)
        assert done.returncode == 0, done.stderr
        assert '"old"' in done.stdout  # everything stored is newer than that


@pytest.mark.parametrize(
    ("document", "said"),
    [(f"version = {HUGE}\n", "ValueError: Exceeds the limit"), ("x = " + "[" * 100_000, "RecursionError")],
    ids=["huge-integer", "nested-arrays"],
)
def test_a_lock_file_past_pythons_limits_is_a_usage_error(tmp_path: Path, document: str, said: str) -> None:
    """A uv.lock whose ``version`` is a TOML integer of 5,000 digits, or arrays nested 100,000 deep:
    tomllib raised ValueError or RecursionError, not TOMLDecodeError, and ``scan -R`` ended in a
    traceback."""
    lock = tmp_path / "uv.lock"
    lock.write_text(document)
    done = cli("scan", "-R", str(lock), "-q", "--index-url", "http://127.0.0.1:9/simple/")
    no_traceback(done)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {lock} is not valid TOML: {said}"), done.stderr


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b'{"meta": {"_last-serial": "x"}, "projects": []}', "ValueError"),
        (b'{"meta": {"_last-serial": "' + HUGE.encode() + b'"}, "projects": []}', "ValueError"),
        (b'{"meta": {"_last-serial": 1e400}, "projects": []}', "OverflowError"),
        (b'{"projects": [{"name": "seed", "_last-serial": 1e400}]}', "OverflowError"),
    ],
    ids=["word", "huge-string", "infinity", "a-projects-infinity"],
)
def test_a_project_list_whose_serial_is_no_number_stops_the_watch(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, body: bytes, said: str
) -> None:
    """The index's own ``_last-serial`` was read outside the check of the list, and OverflowError (1e400:
    infinity) was not caught in the projects' either: a word, a string past 4300 digits or 1e400 was an
    "unexpected answer", retried forever. It is a list that cannot be watched: one request, exit 2."""
    fake_index.faults.project_list = (body, JSON_TYPE)
    done = watch_cli(fake_index, tmp_path / "store.db", rules_dir, "--interval", "0.05")
    assert done.returncode == 2, done.stderr
    assert fake_index.requests.count("/simple/") == 1
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert f"cannot watch this index: {fake_index.url}" in error and said in error
