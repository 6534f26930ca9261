"""Pass 28 on ``watch`` and the CLI's top level (a red-team of pass 27), with real processes. Each test
pinning a fix fails on the code it was written against:

* SIGTERM while the index had not answered the project list or a project page yet: the watcher waited
  for the answer (megabytes from PyPI, an index that trickles) before giving the poll up, and a second
  signal did not help: the request's thread was waited for at exit. It stops at once now, leaving the
  poll to the next run, which stores each release once;
* started without fd 2 (``2>&-``), a usage error naming a file whose name is not UTF-8 exited 1 (the code
  for findings): the stand-in stderr was strict, the error line's surrogate escapes raised, and so did the
  traceback printed for them. Without fd 1 (``>&-``), a JSON or NDJSON scan of such a file exited 3 (an
  internal error) where a pipe took it: what is discarded is never refused now.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
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
from tests.test_watch_logs import records, wait_for
from tests.test_watch_pass27 import closing, page_held

# --- no stdout, no stderr: names that are not UTF-8 ------------------------------------------------------


def test_a_usage_error_naming_a_file_that_is_not_utf8_exits_2_without_stderr(tmp_path: Path) -> None:
    missing = os.fsdecode(bytes(tmp_path) + b"/\xff\xfe-missing-1.0.tar.gz")
    assert cli("scan", missing).returncode == 2  # what a real stderr gives (the reference)
    done = cli("scan", missing, preexec_fn=closing(2))
    assert done.returncode == 2, done.stdout
    assert done.stdout == ""


@pytest.mark.parametrize("fmt", ["json", "ndjson", "table"])
def test_a_scan_of_a_file_that_is_not_utf8_keeps_exit_1_without_stdout(
    tmp_path: Path, rules_dir: Path, fmt: str
) -> None:
    target = write(
        Path(os.fsdecode(bytes(tmp_path) + b"/\xffbad-0.1.tar.gz")), sdist("bad", "0.1", {"setup.py": BAD})[1]
    )
    done = cli("scan", str(target), "-r", str(rules_dir), "-f", fmt, preexec_fn=closing(1))
    assert done.returncode == 1, done.stderr
    no_traceback(done)


# --- a signal while the index has not answered ----------------------------------------------------------


@contextmanager
def list_held(index: FakeIndex) -> Iterator[threading.Event]:
    """The project list is answered only once the event yielded is set (or the hang guard passed)."""
    answer = index.json_index
    release = threading.Event()

    def held() -> dict[str, object]:
        release.wait(HANG_GUARD)
        return answer()

    index.json_index = held  # type: ignore[method-assign]  # the server thread calls it per request
    try:
        yield release
    finally:
        release.set()
        index.json_index = answer  # type: ignore[method-assign]


@pytest.mark.parametrize("held", ["/simple/", "/simple/held/"], ids=["project-list", "project-page"])
def test_a_signal_while_the_index_has_not_answered_stops_the_watcher_without_waiting_for_it(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, held: str
) -> None:
    """The answer is held until the watcher has exited: the watcher waited for it (the grace period, then
    the request's read timeout, then its retries) and the hang guard ended it. Now it exits 0 at once, the
    held request asked once, nothing downloaded, the serial unmoved; the next run stores each release once.
    """
    store = tmp_path / "store.db"
    before = baseline(fake_index, store, rules_dir)
    publish(fake_index, "first", "1.0", BAD)
    publish(fake_index, "held", "1.0", CLEAN)
    asked = fake_index.requests.count(held)
    args = watch_args(fake_index, store, rules_dir, "--interval", "0.5", "--log-format", "json")
    hold = list_held(fake_index) if held == "/simple/" else page_held(fake_index, "held")
    with hold:
        child = subprocess.Popen(
            [sys.executable, "-m", "dragonfly_hybrid.cli", *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: fake_index.requests.count(held) > asked, child)
            child.send_signal(signal.SIGTERM)
            _, stderr = child.communicate(timeout=HANG_GUARD)  # the answer is still held
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert child.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "stopping: this poll is left for the next run" in [r["message"] for r in records(stderr)]
    assert fake_index.requests.count(held) == asked + 1  # not asked again
    assert not [r for r in fake_index.requests if r.startswith("/files/")]
    assert files_stored(store) == Counter() and serial_of(store) == before

    again = cli(*watch_args(fake_index, store, rules_dir, "--once"))
    assert again.returncode == 0, again.stderr
    assert files_stored(store) == files_listed(fake_index) and serial_of(store) == fake_index.serial
