"""Pass 28 on the output files (``output_file``: ``scan -o``, ``report --html``, ``rules compile -o``) and
the store's read path, with real processes. Each test pins a fix and fails on the code it was written
against (fd8099c):

* a FILE that was setuid or setgid kept those bits on the report written over it;
* another user's file in a sticky directory (``/tmp``): the whole scan ran, then the rename was refused
  (a traceback, exit 3); it is refused before the scan now (exit 2), as its owner would get the report;
* a FILE that could not be replaced (immutable) was a traceback after ``scan``; one bind-mounted (a
  container's single-file mount: EBUSY) could no longer be written at all;
* SIGTERM while the temporary file could not be removed raised in the middle of the write instead of
  ending the process;
* ``scan -o`` could replace an archive it scanned (or a file under a directory it scanned, or a ``-R``
  file), ``rules compile -o`` the rule source it compiled;
* a stored version past Python's 4300-digit limit ended ``report`` in a traceback;
* on a full disk, ``diff`` on a store that needs migrating and ``report`` on a store whose ``-wal`` holds
  commits said only "disk I/O error".
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from dragonfly_hybrid.store.db import Store

from tests.fakes.pypi import FakeIndex
from tests.test_redteam_watch_crash import HANG_GUARD, cli, failed_download
from tests.test_store import as_written_by
from tests.test_store_pass27 import no_room, no_traceback, paused_page
from tests.test_store_pass27 import store as store  # a fixture: a store holding old==1.0
from tests.test_watch import publish

CLEAN = b"print('hello')\n"


def sticky_shared(tmp_path: Path) -> Path:
    """``tmp_path/shared``: a sticky, world-writable directory of another user (uid 1234), as ``/tmp``."""
    shared = tmp_path / "shared"
    shared.mkdir(exist_ok=True)
    os.chown(shared, 1234, 1234)
    shared.chmod(0o1777)
    return shared


def _scan_clean(tmp_path: Path) -> Path:
    target = tmp_path / "clean.py"
    target.write_bytes(CLEAN)
    return target


def _without_overrides() -> tuple[str, ...]:
    """The prefix of a command run as root without the capabilities that override file modes and
    ownership (as any other user runs); skips the test where there is none."""
    setpriv = shutil.which("setpriv")
    prefix = (setpriv or "setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner")
    if os.geteuid() != 0 or setpriv is None or subprocess.run([*prefix, "true"], check=False).returncode:
        pytest.skip("needs root and a working setpriv")
    return prefix


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``path`` immutable (``chattr +i``: not even root may rename over it, or remove a file from it);
    skips the test where the file system or the user cannot."""
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode:
        pytest.skip("chattr +i is not available here")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


# --- 1. output_file ----------------------------------------------------------------------------------------


def test_a_page_never_becomes_setuid_or_setgid(store: Path, tmp_path: Path) -> None:
    """FILE's mode was copied whole onto the report (``S_IMODE``): a 6755 FILE made a setuid, setgid
    report (of root's, for a root ``report``). Its permissions are kept, never those bits."""
    page = tmp_path / "page.html"
    page.write_text("the previous page")
    page.chmod(0o6755)
    done = cli("report", "--store", str(store), "--all", "--html", str(page))
    assert done.returncode == 0, done.stderr
    assert "old==1.0" in page.read_text()
    assert stat.S_IMODE(page.stat().st_mode) == 0o755


def test_another_users_file_in_a_sticky_directory_is_refused_before_the_scan(tmp_path: Path) -> None:
    """``scan -o /tmp/report.txt`` where another user had made ``/tmp/report.txt`` (writable by all): root
    gave the report to that user (chowned to them, mode 0666); another user scanned to the end, then the
    kernel refused the rename (sticky directory): a traceback, exit 3; root without CAP_FOWNER (as here)
    failed "Operation not permitted". Written in place instead, the report would still be that user's to
    read. It is refused at once: one line, exit 2, the file and the directory as they were."""
    prefix = _without_overrides()
    shared = sticky_shared(tmp_path)
    planted = shared / "report.txt"
    planted.write_text("someone else's")
    os.chown(planted, 65534, 65534)
    planted.chmod(0o666)
    done = cli("scan", str(_scan_clean(tmp_path)), "-q", "-o", str(planted), prefix=prefix)
    no_traceback(done)
    assert done.returncode == 2, done.stderr
    assert done.stderr == (
        f"error: cannot write {planted}: it is another user's file, in a sticky directory: remove it or "
        "write elsewhere\n"
    )
    assert planted.read_text() == "someone else's" and planted.stat().st_uid == 65534
    assert [p.name for p in shared.iterdir()] == ["report.txt"]


def test_a_report_that_cannot_take_files_place_is_one_line_and_exit_3(tmp_path: Path) -> None:
    """The rename that puts the whole report in FILE's place failed (FILE immutable): ``scan`` ended in a
    traceback ("internal error"). One line now, exit 3 (the report is not written), no temporary file."""
    out = tmp_path / "out" / "report.txt"
    out.parent.mkdir()
    out.write_text("the previous report")
    with immutable(out):
        done = cli("scan", str(_scan_clean(tmp_path)), "-q", "-o", str(out))
    no_traceback(done)
    assert done.returncode == 3, done.stderr
    assert done.stderr == f"error: cannot write {out}: Operation not permitted\n"
    assert out.read_text() == "the previous report"
    assert [p.name for p in out.parent.iterdir()] == ["report.txt"]


def test_a_bind_mounted_file_is_written_once_whole(store: Path, tmp_path: Path) -> None:
    """A file bind-mounted on its own (``docker run -v ./page.html:/out/page.html``) cannot be renamed over
    (EBUSY): ``report --html`` on it failed (exit 2), where writing in place had worked. It is overwritten
    once the page is whole, and no temporary file stays."""
    site = tmp_path / "site"
    site.mkdir()
    page = site / "page.html"
    page.write_text("the previous page")
    source = tmp_path / "mounted.html"
    source.write_text("the previous page")
    if subprocess.run(["mount", "--bind", str(source), str(page)], capture_output=True).returncode:
        pytest.skip("no bind mounts here")
    try:
        done = cli("report", "--store", str(store), "--all", "--html", str(page))
        assert done.returncode == 0, done.stderr
        assert "old==1.0" in page.read_text()
        assert [p.name for p in site.iterdir()] == ["page.html"]
    finally:
        subprocess.run(["umount", str(page)], check=True)
    assert "old==1.0" in source.read_text()


def test_sigterm_still_ends_the_process_when_the_temporary_file_cannot_be_removed(
    store: Path, tmp_path: Path
) -> None:
    """The SIGTERM handler's ``unlink`` raised (the directory made immutable meanwhile): the error came out
    of the page being written ("cannot write ...", exit 2) and the process went on instead of ending. It
    ends as SIGTERM ends it, the last whole page kept."""
    site = tmp_path / "site"
    site.mkdir()
    page = site / "page.html"
    page.write_text("the previous page")

    def stop(child: subprocess.Popen[str]) -> None:
        stack.enter_context(immutable(site))  # the temporary file is there already
        child.send_signal(signal.SIGTERM)

    with ExitStack() as stack:
        done = paused_page(["--store", str(store), "--all", "--html", str(page)], lambda pid: None, stop)
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert page.read_text() == "the previous page"


# --- 2. the report never replaces its inputs -------------------------------------------------------------


def test_scan_never_writes_its_report_over_a_file_it_scans(tmp_path: Path) -> None:
    """``scan x.whl -o x.whl`` replaced the wheel with its report (exit 0), and ``scan pkg -o
    pkg/setup.py`` a file of the tree; an old report under a scanned directory was scanned again (its
    findings with it) and replaced. Each is a usage error now, the file as it was."""
    archive = _scan_clean(tmp_path)
    done = cli("scan", str(archive), "-q", "-o", str(archive))
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: cannot write {archive}: it is the scanned file {archive}\n"
    assert archive.read_bytes() == CLEAN

    tree = tmp_path / "pkg"
    (tree / "sub").mkdir(parents=True)
    inside = tree / "sub" / "setup.py"
    inside.write_bytes(CLEAN)
    done = cli("scan", str(tree), "-q", "-o", str(tmp_path / "pkg" / ".." / "pkg" / "sub" / "setup.py"))
    assert done.returncode == 2, done.stderr
    assert done.stderr.endswith(f"it is in the scanned directory {tree}\n"), done.stderr
    assert inside.read_bytes() == CLEAN
    assert sorted(p.name for p in (tree / "sub").iterdir()) == ["setup.py"]


def test_a_new_report_inside_the_scanned_directory_is_not_scanned_itself(tmp_path: Path) -> None:
    """``scan . -o report.json`` in a fresh checkout: the report is written under a temporary name in
    the tree being walked, and that file (empty, or the report's own bytes) was scanned as one of the
    tree's, listed and counted in the report. It is left out; every file of the tree is still scanned."""
    tree = tmp_path / "pkg"
    (tree / "sub").mkdir(parents=True)
    (tree / "setup.py").write_bytes(CLEAN)
    (tree / "sub" / "mod.py").write_bytes(CLEAN)
    out = tree / "report.json"
    done = cli("scan", str(tree), "-q", "-f", "json", "-o", str(out))
    assert done.returncode == 0, done.stderr
    [target] = json.loads(out.read_text())["targets"]
    assert sorted(d["name"] for d in target["distributions"]) == ["setup.py", "sub/mod.py"]
    assert sorted(p.name for p in tree.iterdir()) == ["report.json", "setup.py", "sub"]


def test_scan_never_writes_its_report_over_a_requirements_file(fake_index: FakeIndex, tmp_path: Path) -> None:
    """``scan -R requirements.txt -o requirements.txt`` replaced the pins with the report."""
    publish(fake_index, "old", "1.0")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("old==1.0\n")
    done = cli("scan", "-R", str(requirements), "-q", "-o", str(requirements), "--index-url", fake_index.url)
    assert done.returncode == 2, done.stderr
    assert f"error: cannot write {requirements}: it is the requirements file {requirements}\n" in done.stderr
    assert requirements.read_text() == "old==1.0\n"


def test_rules_compile_never_writes_its_blob_over_a_rule_source(rules_dir: Path) -> None:
    """``rules compile rules/marker.yar -o rules/marker.yar`` replaced the source with its blob."""
    source = rules_dir / "marker.yar"
    before = source.read_bytes()
    for given in (source, rules_dir):
        done = cli("rules", "compile", str(given), "-o", str(source))
        assert done.returncode == 2, done.stderr
        assert done.stderr == f"error: cannot write {source}: it is the rule source {source}\n"
        assert source.read_bytes() == before
    blob = rules_dir / "rules.bin"  # a blob among the sources is no source: written, and again
    for _ in range(2):
        done = cli("rules", "compile", str(rules_dir), "-o", str(blob))
        assert done.returncode == 0, done.stderr


# --- 3. the store's read path ------------------------------------------------------------------------------


def test_a_version_past_pythons_digit_limit_is_a_version_like_any(tmp_path: Path) -> None:
    """A stored version of 5,000 digits: PEP 440 parsing raised ValueError (Python's limit on converting
    long numbers), not InvalidVersion, and ``report`` of the project's releases ended in a traceback. Such a
    version is itself, as any version PEP 440 cannot read."""
    store = tmp_path / "store.db"
    long = "1" * 5000
    with Store(store) as db:
        db.record(failed_download("old", "a.whl"), rules_hash="1" * 64, source="watch")
        long_one = dataclasses.replace(failed_download("old", "b.whl"), target=f"old=={long}", version=long)
        db.record(long_one, rules_hash="1" * 64, source="watch")
    done = cli("report", "--store", str(store), "--all", "-f", "json")
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    assert sorted(len(scan["version"]) for scan in json.loads(done.stdout)["scans"]) == [3, 5000]


def test_diff_on_a_store_to_migrate_on_a_full_disk_says_so(tmp_path: Path) -> None:
    """An older store on a full disk: it cannot be migrated, nor read as it is. ``diff`` said only
    "cannot open the store: PATH: disk I/O error"; it names the full disk and the migration due."""
    store = tmp_path / "store.db"
    with Store(store) as db:
        db.record(failed_download("old", "a.whl"), rules_hash="1" * 64, source="watch")
    as_written_by(store, 4)
    sides = [tmp_path / "a.py", tmp_path / "b.py"]
    for side in sides:
        side.write_bytes(CLEAN)
    done = cli("diff", *map(str, sides), "--store", str(store), preexec_fn=no_room)
    no_traceback(done)
    assert done.returncode == 2, done.stderr
    assert "a full disk?" in done.stderr and "has schema version 4" in done.stderr, done.stderr


KILLED_WRITER = """
import os, signal, sys
from dragonfly_hybrid.store.db import Store
from tests.test_redteam_watch_crash import failed_download
with Store(sys.argv[1]) as db:
    db.record(failed_download("first", "a.whl"), rules_hash="1" * 64, source="watch")
db = Store(sys.argv[1])
db.record(failed_download("second", "a.whl"), rules_hash="1" * 64, source="watch")
os.kill(os.getpid(), signal.SIGKILL)  # its commit stays in the -wal
"""


def test_report_refuses_a_store_whose_log_holds_commits_on_a_full_disk(tmp_path: Path) -> None:
    """A writer killed with kill -9 left its last commit in the -wal; the disk is full. Read as it is,
    the store would lack that commit, so ``report`` refuses it (never stale and silent), and now says why
    (it said "disk I/O error"). With room, it reads both releases."""
    store = tmp_path / "store.db"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(store)], timeout=HANG_GUARD, check=False
    )
    assert killed.returncode == -signal.SIGKILL
    assert Path(f"{store}-wal").stat().st_size > 0
    done = cli("report", "--store", str(store), "--all", "-f", "json", preexec_fn=no_room)
    no_traceback(done)
    assert (done.returncode, done.stdout) == (2, ""), done.stderr
    assert done.stderr.startswith(f"error: cannot open the store: {store}: disk I/O error"), done.stderr
    assert "a full disk?" in done.stderr
    done = cli("report", "--store", str(store), "--all", "-f", "json")
    assert done.returncode == 0, done.stderr
    assert sorted(scan["name"] for scan in json.loads(done.stdout)["scans"]) == ["first", "second"]
