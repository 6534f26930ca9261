"""Pass 37, a review of pass 36 (``Retry-After`` waits, file names cut at ``;``).

A file name taken from a URL is cut at its path parameters before it is percent-decoded: an encoded
``%3B`` is part of the name, as pip and the index name the file (``watch`` looks a file up in its store by
the index's name, and stores it by this one). ``watch --once`` against an index that keeps answering 503
with a ``Retry-After`` fails once its lookup's tries are over, with no wait for a next poll, and a signal
ends the lookup's wait. Real HTTP on 127.0.0.1 against the rate-limiting fake index of pass 36; real
subprocesses and signals.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dragonfly_hybrid.pypi.download import filename_of
from dragonfly_hybrid.watch.source import WatchJob

from tests.test_index_retry_pass36 import SECRET, SIGNAL_BOUND, LimitingIndex

RULE = 'rule never { strings: $a = "never-in-any-file-0f2e" condition: $a }\n'


@pytest.fixture
def index() -> Iterator[LimitingIndex]:
    with LimitingIndex() as started:
        yield started  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://h.example/p/pkg-1.0%3Bb.tar.gz", "pkg-1.0;b.tar.gz"),
        (f"https://h.example/p/pkg-1.0%3Bb.tar.gz;token={SECRET}", "pkg-1.0;b.tar.gz"),
        ("https://h.example/p/pkg-1.0%2Blocal-py3-none-any.whl", "pkg-1.0+local-py3-none-any.whl"),
        (f"https://h.example/p/pkg-1.0.whl;token={SECRET}?sig={SECRET}", "pkg-1.0.whl"),
        (f"https://h.example/;token={SECRET}", "distribution"),
    ],
)
def test_an_encoded_semicolon_is_part_of_a_file_name(url: str, name: str) -> None:
    """Only a real ``;`` starts a path parameter: ``%3B`` was decoded first, then cut (``pkg-1.0``), so
    the name stored for the file was not the index's and ``watch`` never found it stored."""
    assert filename_of(url) == name
    assert WatchJob("pkg", "1.0", (url,), {}).unscanned(url, "HTTP 404").filename == name


def _watch_once(index: LimitingIndex, tmp_path: Path) -> subprocess.Popen[str]:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "never.yara").write_text(RULE)
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "watch", "--once", "--store",
               str(tmp_path / "store.db"), "--rules", str(rules), "--index-url", index.url,
               "--threads", "1"]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def test_watch_once_fails_when_its_lookups_tries_are_over(index: LimitingIndex, tmp_path: Path) -> None:
    """The lookup waits the 1 s asked between its 3 tries, then ``--once`` exits 3: no next poll, so no
    wait for one (nor a message promising it)."""
    index.answers["/simple/"] = [(503, "1")]
    index.always.add("/simple/")
    process = _watch_once(index, tmp_path)
    try:
        _, stderr = process.communicate(timeout=30)  # a hang guard: the tries take 2 s
    finally:
        process.kill()
    assert process.returncode == 3, stderr
    assert "cannot poll the index" in stderr and "HTTP 503" in stderr
    assert "next poll" not in stderr and "Traceback" not in stderr
    assert len(index.times("/simple/")) == 3
    assert all(gap >= 1.0 for gap in index.gaps("/simple/"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_watch_onces_wait_inside_a_lookup(
    index: LimitingIndex, tmp_path: Path, signum: int
) -> None:
    """A Retry-After of an hour between the lookup's tries: a signal ends the run at once (a normal stop)."""
    index.answers["/simple/"] = [(429, "3600")]
    index.always.add("/simple/")
    process = _watch_once(index, tmp_path)
    try:
        while not index.times("/simple/") and process.poll() is None:
            time.sleep(0.05)
        time.sleep(1)  # into the wait
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=SIGNAL_BOUND)
    finally:
        process.kill()
    assert process.returncode == 0, stderr  # watch's normal stop (README): the poll is left for the next run
    assert "this poll is left for the next run" in stderr and "Traceback" not in stderr
    assert len(index.times("/simple/")) == 1
