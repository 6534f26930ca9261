"""Pass 30 on the output files (``output_file``: ``scan -o``, ``report --html``), with real processes, real
mounts and real links. Each test pins a fix and fails on the code it was written against (1ae8c70):

* a bind-mounted FILE on a file system without ``fallocate`` (ext2, ext3) and out of room: taking its room
  first (``posix_fallocate``, which glibc then emulates by writing zeros past its end) lengthened it with
  zeros before failing: "the previous page" followed by kilobytes of NUL bytes, not the file as it was;
* another user's symbolic link in a sticky directory was refused only as FILE itself: met on the way (a
  directory ``/tmp/theirs/report.txt``, or this user's own link to theirs) it was followed, where the
  kernel's ``protected_symlinks`` checks every link a path resolves through;
* ``--max-members`` of 5,000 digits was "not a whole number", quoted in full.

Ctrl-C while ``scan -o`` writes over a bind-mounted FILE is pinned as it is (it held already: scan's own
handler acts once FILE is whole; before 9d2c8e3 it left FILE empty).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from tests.test_output_pass29 import SIGNALLED_IN_THE_COPY, _bind, _child, _finish, page_bound_on_a_full_disk
from tests.test_redteam_watch_crash import cli
from tests.test_store_pass27 import no_traceback
from tests.test_store_pass27 import store as store  # a fixture: a store holding old==1.0
from tests.test_store_pass28 import sticky_shared
from tests.test_watch import CLEAN

# --- 1. a bind-mounted FILE on a file system without fallocate --------------------------------------------


def test_a_full_disk_without_fallocate_under_a_bind_mounted_file_leaves_it_as_it_was(
    store: Path, tmp_path: Path
) -> None:
    """ext2 has no ``fallocate``: glibc's ``posix_fallocate`` writes a zero into each block past the end
    instead, and a full disk stops it halfway with the file already longer. FILE is cut back to its
    length: the last page, exactly, and one line."""
    if shutil.which("mkfs.ext2") is None:
        pytest.skip("no mkfs.ext2 here")
    image = tmp_path / "ext2.img"
    with image.open("wb") as handle:
        handle.truncate(2 * 1024 * 1024)
    subprocess.run(["mkfs.ext2", "-q", "-F", str(image)], check=True, capture_output=True)
    with page_bound_on_a_full_disk(["-o", "loop", str(image)], tmp_path, 1024) as (source, page):
        done = cli("report", "--store", str(store), "--all", "--html", str(page))
        assert source.read_bytes() == b"the previous page"
    no_traceback(done)
    assert (done.returncode, done.stderr) == (2, f"error: cannot write {page}: No space left on device\n")
    assert [p.name for p in page.parent.iterdir()] == ["page.html"]


def test_ctrl_c_while_scan_overwrites_a_bind_mounted_file_ends_as_scans_ctrl_c(tmp_path: Path) -> None:
    """Ctrl-C held while ``scan -o`` writes over a bind-mounted FILE acts once it is whole, through scan's
    own handler (not Python's KeyboardInterrupt): one ``stopping…`` line, exit 130, no traceback, FILE
    the whole new report and no temporary file beside it."""
    target = tmp_path / "clean.py"
    target.write_bytes(CLEAN)
    site = tmp_path / "site"
    site.mkdir()
    out = site / "report.json"
    out.write_text("")
    source = tmp_path / "mounted.json"
    source.write_text("the previous report")
    _bind(source, out)
    try:
        script = SIGNALLED_IN_THE_COPY.replace("signal.SIGTERM", "signal.SIGINT")
        done = _finish(_child(script, str(out), "scan", str(target), "-q", "-f", "json", "-o", str(out)))
    finally:
        subprocess.run(["umount", str(out)], check=True)
    assert (done.returncode, done.stderr) == (128 + signal.SIGINT, "stopping…\n")
    assert '"clean.py"' in source.read_text() and source.read_text().rstrip().endswith("}")
    assert [p.name for p in site.iterdir()] == ["report.json"]


# --- 2. another user's link met on the way -----------------------------------------------------------------


def _sticky_with_their_link(tmp_path: Path, name: str, to: Path) -> Path:
    """A sticky world-writable directory of uid 1234 holding ``name``, uid 65534's link to ``to``."""
    link = sticky_shared(tmp_path) / name
    link.symlink_to(to)
    os.lchown(link, 65534, 65534)
    return link


def _theirs(tmp_path: Path) -> Path:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    theirs.chmod(0o777)
    return theirs


def test_another_users_link_in_a_sticky_directory_is_not_followed_on_the_way(tmp_path: Path) -> None:
    """``-o /tmp/x/report.txt`` where another user planted ``/tmp/x`` as a link to a directory of theirs,
    and ``-o mine`` where ``mine`` is this user's link to their planted ``/tmp/report.txt``: only FILE
    itself was checked, so both were followed and the report was written in their directory. The kernel
    refuses either link (it checks every link it follows); so does the report: exit 2, nothing written."""
    theirs = _theirs(tmp_path)
    target = tmp_path / "clean.py"
    target.write_bytes(CLEAN)
    planted_directory = _sticky_with_their_link(tmp_path, "x", theirs)
    planted_file = _sticky_with_their_link(tmp_path, "report.txt", theirs / "report.txt")
    mine = tmp_path / "mine"
    mine.symlink_to(planted_file)
    for given in (planted_directory / "report.txt", mine, tmp_path / "shared" / ".." / "mine"):
        done = cli("scan", str(target), "-q", "-o", str(given))
        no_traceback(done)
        assert done.returncode == 2, done.stderr
        said = f"error: cannot write {given}: it is another user's symbolic link in a sticky directory\n"
        assert done.stderr == said
    assert list(theirs.iterdir()) == []
    # The links the kernel follows still are: the directory owner's, and this user's to a file of its own.
    owners = _sticky_with_their_link(tmp_path, "owners", tmp_path / "out.txt")
    os.lchown(owners, 1234, 1234)
    own = tmp_path / "own"
    own.symlink_to(owners)
    assert cli("scan", str(target), "-q", "-o", str(own)).returncode == 0
    assert "clean.py" in (tmp_path / "out.txt").read_text()


# --- 3. a whole number past Python's limit ---------------------------------------------------------------


def test_an_options_whole_number_past_pythons_limit_is_out_of_its_range(tmp_path: Path) -> None:
    """``--max-members 999...`` (5,000 digits): ``int()`` refused it past 4300 digits, and the error said
    it "is not a whole number", quoting all 5,000 digits (a box of 66 lines). It is a whole number out of
    the option's range, said so in one line."""
    target = tmp_path / "clean.py"
    target.write_bytes(CLEAN)
    for option, value, said in (
        ("--max-members", "9" * 5000, "must be a whole number from 1 to"),
        ("--min-score", "-" + "9" * 5000, "must be a whole number 0 or more"),
    ):
        done = cli("scan", str(target), "-q", option, value)
        no_traceback(done)
        assert done.returncode == 2, done.stderr
        assert said in done.stderr and "9" * 100 not in done.stderr, done.stderr
