"""What ``watch`` says and when it stops, as real processes against the fake index: an index whose project
list is not PEP 691 JSON stops the run at once (exit 2, one request, no re-download loop); findings are
logged at WARNING with score and rules; idle polls give a sign of life; none of the node's words
(jobs claimed, results submitted) appear."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path

import pytest
from dragonfly_hybrid.store.db import Store
from dragonfly_hybrid.watch.source import PyPIWatchSource

from tests.fakes.pypi import HTML_TYPE, JSON_TYPE, MARKER, FakeFile, FakeIndex, sdist, wheel

BAD = b"import os\n# " + MARKER + b"\n"
CLEAN = b"print('hello')\n"
NODE_WORDS = ("claim", "submit", "job")


def watch_command(index: FakeIndex, store: Path, rules_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "dragonfly_hybrid.cli", "watch", "--store", str(store),
            "--rules", str(rules_dir), "--index-url", index.url, "--threads", "2",
            "--log-format", "json", *extra]  # fmt: skip


def watch_cli(
    index: FakeIndex, store: Path, rules_dir: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    command = watch_command(index, store, rules_dir, *extra)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def records(stderr: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def publish(index: FakeIndex, name: str, version: str, body: bytes) -> None:
    files = [sdist(name, version, {"setup.py": body}), wheel(name, version, {f"{name}/__init__.py": body})]
    index.add(name, *(FakeFile(f, data) for f, data in files))


HTML_LIST = b'<!DOCTYPE html><html><body><a href="/simple/seed/">seed</a></body></html>'


@pytest.mark.parametrize(
    ("body", "content_type", "said"),
    [
        (HTML_LIST, "text/html", "answered text/html, not the PEP 691 JSON project list"),
        (HTML_LIST, HTML_TYPE, f"answered {HTML_TYPE}, not the PEP 691 JSON project list"),
        (b'{"meta": {"api-version": "1.0"}, "projects": [{"name": "se', JSON_TYPE, "JSONDecodeError"),
        (b'{"meta": {"api-version": "1.0"}, "projects": [{"name": "seed"}]}', JSON_TYPE, "KeyError"),
        # The decoder's RecursionError escaped as a traceback.
        (b'{"projects": ' + b"[" * 100_000, JSON_TYPE, "RecursionError"),
        (b'{"projects": [{"name": "seed", "_last-serial": ' + b"1" * 5000 + b"}]}", JSON_TYPE, "ValueError"),
    ],
    ids=["html", "pep503-html", "truncated-json", "json-without-serials", "nested-json", "huge-serial"],
)
def test_an_index_without_a_json_project_list_stops_the_watch_after_one_request(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, body: bytes, content_type: str, said: str
) -> None:
    fake_index.faults.project_list = (body, content_type)
    # Not --once: a transient failure would be retried forever; this one must stop the run.
    done = watch_cli(fake_index, tmp_path / "store.db", rules_dir, "--interval", "0.05")
    assert done.returncode == 2, done.stderr
    assert fake_index.requests.count("/simple/") == 1
    [error] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert f"cannot watch this index: {fake_index.url}" in error and said in error
    assert "_last-serial" in error and "Traceback" not in done.stderr


def test_findings_are_warnings_idle_polls_say_so_and_no_node_words(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    store = tmp_path / "store.db"
    publish(fake_index, "seed", "1.0", CLEAN)
    assert watch_cli(fake_index, store, rules_dir, "--once").returncode == 0  # the baseline
    publish(fake_index, "evil", "1.0", BAD)
    publish(fake_index, "good", "1.0", CLEAN)
    fake_index.faults.missing.add("broken-1.0.tar.gz")
    publish(fake_index, "broken", "1.0", CLEAN)
    busy = watch_cli(fake_index, store, rules_dir, "--once", "--log-level", "DEBUG")
    assert busy.returncode == 0, busy.stderr
    lines = records(busy.stderr)
    by_project = {line.get("project"): line for line in lines if str(line["message"]).startswith("release ")}
    evil, good, broken = by_project["evil"], by_project["good"], by_project["broken"]
    assert (evil["level"], evil["message"]) == ("warning", "release has findings")
    assert evil["score"] == 5 and evil["rules"] == "test_marker"
    assert (good["level"], good["message"]) == ("info", "release stored")
    assert broken["level"] == "warning" and "broken-1.0.tar.gz" in str(broken["error"])
    idle = watch_cli(fake_index, store, rules_dir, "--once")
    assert idle.returncode == 0, idle.stderr
    [alive] = [line for line in records(idle.stderr) if str(line["message"]).startswith("no new releases")]
    assert alive["level"] == "info" and "0 stored by this run so far" in str(alive["message"])
    for run in (busy, idle):
        said = run.stderr.lower()
        assert not [word for word in NODE_WORDS if word in said], run.stderr


def test_idle_polls_log_a_sign_of_life_at_the_first_then_periodically(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    publish(fake_index, "seed", "1.0", CLEAN)
    with Store(tmp_path / "store.db") as store:
        source = PyPIWatchSource(
            store, "rules", index_url=fake_index.url, clock=lambda: now[0], idle_notice=600.0
        )

        async def poll_at(moments: list[float]) -> None:
            for moment in moments:
                now[0] = moment
                assert await source.claim(10) == []

        with caplog.at_level(logging.INFO, logger="dragonfly_hybrid.watch"):
            asyncio.run(poll_at([0.0]))  # the baseline
            asyncio.run(poll_at([10.0, 100.0, 500.0, 620.0, 700.0, 1300.0]))
            asyncio.run(source.aclose())
    alive = [r for r in caplog.records if r.getMessage().startswith("no new releases")]
    assert len(alive) == 3  # at 10 (the first idle poll), 620 and 1300
    assert all(r.levelno == logging.INFO for r in alive)


# ------------------------------------------------------------------------------ hostile index answers


def release_lines(stderr: str, project: str) -> list[dict[str, object]]:
    return [
        r for r in records(stderr) if r.get("project") == project and str(r["message"]).startswith("release")
    ]


@pytest.mark.parametrize(
    ("list_date", "list_headers"),
    [
        (formatdate(), []),  # "... -0000": RFC 5322's UTC with no known local offset (a naive datetime)
        (None, [("Date", formatdate(usegmt=True))]),  # two Date headers, joined by the client
    ],
    ids=["date-zone-0000", "two-date-headers"],
)
def test_index_times_without_a_zone_are_read_as_utc(
    fake_index: FakeIndex,
    tmp_path: Path,
    rules_dir: Path,
    list_date: str | None,
    list_headers: list[tuple[str, str]],
) -> None:
    store = tmp_path / "store.db"
    fake_index.faults.list_date = list_date
    fake_index.faults.list_headers = list_headers
    publish(fake_index, "seed", "1.0", CLEAN)
    baseline = watch_cli(fake_index, store, rules_dir, "--once")
    assert baseline.returncode == 0, baseline.stderr
    naive = FakeFile(*sdist("naive", "1.0", {"setup.py": BAD}), upload_time="2099-01-01T00:00:00")  # no "Z"
    fake_index.add("naive", naive)
    found = watch_cli(fake_index, store, rules_dir, "--once")
    assert found.returncode == 0, found.stderr
    [stored] = release_lines(found.stderr, "naive")
    assert stored["message"] == "release has findings"


def wait_for(condition: Callable[[], bool], child: subprocess.Popen[str], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert child.poll() is None, "the watcher stopped"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def stopped(child: subprocess.Popen[str], seconds: float = 120.0) -> tuple[int, str]:
    """The exit status and the rest of stderr of a child that should stop by itself (hang guard:
    ``seconds``). Read through the file objects a caller may have iterated already: ``communicate(timeout=)``
    reads the pipes' descriptors and loses the lines those objects had read ahead (a line logged, never seen:
    a flaky test)."""
    rest: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda name=name, pipe=pipe: rest.update({name: pipe.read()}), daemon=True)
        for name, pipe in (("stdout", child.stdout), ("stderr", child.stderr))
        if pipe is not None
    ]
    for reader in readers:
        reader.start()
    try:
        child.wait(timeout=seconds)
        for reader in readers:
            reader.join(seconds)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, rest.get("stderr", "")


def stored_releases(store: Path) -> list[str]:
    with Store(store, readonly=True) as db:
        return [f"{s.name}=={s.version}" for s in db.scans()]


def test_an_index_answer_the_watcher_did_not_expect_is_logged_and_polled_again(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    store = tmp_path / "store.db"
    publish(fake_index, "seed", "1.0", CLEAN)
    assert watch_cli(fake_index, store, rules_dir, "--once").returncode == 0  # the baseline
    publish(fake_index, "odd", "1.0", BAD)
    fake_index.faults.page_meta["odd"] = {"_last-serial": "not-a-number"}
    once = watch_cli(fake_index, store, rules_dir, "--once")
    assert once.returncode == 3, once.stderr
    [error] = [line for line in once.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith(
        f"error: cannot poll the index: unexpected answer from {fake_index.url}: ValueError"
    )
    assert "Traceback" not in once.stderr

    # Without --once the watcher logs it, polls again with backoff, and goes on once the index recovers.
    command = watch_command(fake_index, store, rules_dir, "--interval", "0.05")
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: fake_index.requests.count("/simple/odd/") >= 4, child)
        del fake_index.faults.page_meta["odd"]
        wait_for(lambda: "odd==1.0" in stored_releases(store), child)
    finally:
        child.send_signal(signal.SIGTERM)
        _, stderr = child.communicate(timeout=60)
    assert child.returncode == 0, stderr
    failed = [r for r in records(stderr) if r["message"] == "polling the index failed; trying again"]
    assert failed and all("ValueError" in str(r["error"]) for r in failed)
    assert [r["message"] for r in release_lines(stderr, "odd")] == ["release has findings"]
