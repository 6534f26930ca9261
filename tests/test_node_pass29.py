"""Node and watch pass 29: a review of pass 28 (937bf75, 679cad7) and three problems its notes left, with
real processes, real signals and real HTTP on 127.0.0.1. Each test of a fix fails on the code before it:

* a standalone node (``--job``/``--jobs-file``) stopped by SIGTERM/SIGINT exited 0 with releases of its
  list never claimed, or unfinished when the grace period ended: a results file missing lines read as a
  finished run. It exits 128 + the signal's number (143, 130), as ``scan`` does;
* ``watch`` cut short (a second signal, the grace period over) while a release was being written to the
  store: the write went on in its thread and stored the release, counted unfinished and never logged nor
  announced (the next run skips it as stored: a finding in the store alone). It is waited for and logged;
* a stop the node asked for itself (``watch``'s store failing at a serial commit sets the stop event) made
  the user's first signal a second one, which cut the work it was to let finish;
* a project page that failed a poll left the poll's other pages running (``asyncio.gather`` does not
  cancel them): each failed poll went on asking the index for its pages, a thread each, beside the next.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from dragonfly_hybrid._core import Limits
from dragonfly_hybrid.node.metrics import NodeMetrics
from dragonfly_hybrid.node.pipeline import Node, NodeOptions, RuleState, install_signal_handlers
from dragonfly_hybrid.node.sinks import JsonLinesSink
from dragonfly_hybrid.node.sources import LocalSource
from dragonfly_hybrid.rules_loader import load_rules
from dragonfly_hybrid.store.db import Store
from dragonfly_hybrid.watch.source import PAGE_CONCURRENCY, PyPIWatchSource, WatchIndexError

from tests.fakes.pypi import FakeIndex, wheel
from tests.test_node import MARK
from tests.test_node_pass27 import settled
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
from tests.test_watch_logs import records, stopped, wait_for

SIGNALS = pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DRAGONFLY_")}


def signalled_while_held(
    fake_index: FakeIndex, held: str, args: list[str], sig: signal.Signals, cwd: Path
) -> tuple[int, str, str]:
    """``dragonfly-hybrid node ARGS`` (standalone) signalled with ``sig`` once the download of the file
    ``held`` (delayed by the test) has started, then that download let go: exit code, stdout, stderr."""
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "node", *args]
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=cwd
    )
    try:
        wait_for(lambda: any(r.endswith(f"/{held}") for r in fake_index.requests), child)
        child.send_signal(sig)
        fake_index.unblocked.set()  # the release in flight is finished and written
        stdout, stderr = child.communicate(timeout=HANG_GUARD)
    finally:
        fake_index.unblocked.set()
        if child.poll() is None:
            child.kill()
            child.wait()
    return child.returncode, stdout, stderr


def logged_stored_at_stop(stderr: str, webhook: str, store: Path, index: FakeIndex) -> None:
    """The watcher's log says ``flagged`` was stored as it stopped (``webhook``: what became of its
    webhook), counts it, and the store holds every file with the serial the index's."""
    assert "Traceback" not in stderr
    logged = [r for r in records(stderr) if r.get("project") == "flagged"]
    assert {
        "message": f"release stored as the watcher stopped; {webhook}",
        "verdict": "findings",
        "rules": "test_marker",
    }.items() <= logged[-1].items(), logged
    assert "1 release(s) stored" in stderr
    assert files_stored(store) == files_listed(index) and serial_of(store) == index.serial


# --- a standalone node stopped before every release was written -------------------------------------------


@SIGNALS
def test_a_standalone_node_signalled_before_every_release_is_written_exits_128_plus_the_signal(
    fake_index: FakeIndex, rules_dir: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    """Three releases, claimed one at a time (``--bulk-size 1``), the first held downloading: the signal
    drains the first (written) and claims nothing more. The run exited 0, a script took the results file
    for the whole list; it exits 128 + the signal's number with one error line, the line written kept."""
    [held] = fake_index.add("held", wheel("held", "1.0", {"held/__init__.py": MARK}))
    fake_index.add("later", wheel("later", "1.0", {"later/__init__.py": MARK}))
    fake_index.add("last", wheel("last", "1.0", {"last/__init__.py": MARK}))
    fake_index.faults.delay[held.filename] = HANG_GUARD
    jobs = tmp_path / "releases.txt"
    jobs.write_text("held==1.0\nlater==1.0\nlast==1.0\n")
    results = tmp_path / "results.jsonl"
    args = ["--jobs-file", str(jobs), "-o", str(results), "--index-url", fake_index.url, "-r", str(rules_dir),
            "--bulk-size", "1", "--metrics-port", "0"]  # fmt: skip
    status, _, stderr = signalled_while_held(fake_index, held.filename, args, sig, tmp_path)
    assert status == 128 + sig, stderr
    assert "Traceback" not in stderr
    [error] = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert error == f"error: stopped by {sig.name}: 2 of 3 release(s) have no result line (not scanned, or " \
        "unfinished when the grace period ended)"  # fmt: skip
    [line] = [json.loads(text) for text in results.read_text().splitlines()]
    assert line["name"] == "held" and line["rules_matched"] == ["test_marker"]
    assert not [r for r in fake_index.requests if r.startswith(("/files/later/", "/files/last/"))]


def test_review_a_standalone_node_signalled_as_its_last_release_is_written_exits_0(
    fake_index: FakeIndex, rules_dir: Path, tmp_path: Path
) -> None:
    """What holds: the signal came while the only release was in flight; it is drained and written, so the
    list is done and the exit is 0 (only a list left unwritten is 143)."""
    [held] = fake_index.add("held", wheel("held", "1.0", {"held/__init__.py": MARK}))
    fake_index.faults.delay[held.filename] = HANG_GUARD
    args = ["--job", "held==1.0", "--index-url", fake_index.url, "-r", str(rules_dir), "--metrics-port", "0"]
    status, stdout, stderr = signalled_while_held(fake_index, held.filename, args, signal.SIGTERM, tmp_path)
    assert status == 0, stderr
    assert [json.loads(line)["name"] for line in stdout.splitlines()] == ["held"]


def test_review_a_standalone_release_with_findings_and_a_failed_download_is_written_with_its_findings(
    fake_index: FakeIndex, rules_dir: Path, tmp_path: Path
) -> None:
    """What holds (937bf75): with nobody to lease it again, a release whose one file kept failing is a
    failure, but findings in its other file come first: written as a success naming the rule, exit 0."""
    fake_index.add(
        "mixed",
        wheel("mixed", "1.0", {"mixed/__init__.py": MARK}),
        ("mixed-1.0.tar.gz", b"cut off on every try" * 100),
    )
    fake_index.faults.drop.add("mixed-1.0.tar.gz")
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "node", "--job", "mixed==1.0", "--index-url",
               fake_index.url, "-r", str(rules_dir), "--metrics-port", "0"]  # fmt: skip
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD,
        env=clean_env(),
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [line] = [json.loads(text) for text in done.stdout.splitlines()]
    assert line["status"] == "success" and line["rules_matched"] == ["test_marker"]
    assert "submitting findings for a partly unscanned release" in done.stderr


# --- a stop the node asked for itself, then the user's first signal ----------------------------------------


def test_the_first_signal_after_a_stop_the_node_asked_for_itself_drains(
    fake_index: FakeIndex, rules_dir: Path
) -> None:
    """``watch``'s source sets the node's stop event when the store fails at a serial commit (so does any
    source given the node's ``stop``); the handler read "stopping" as "signalled once already", so the
    user's first SIGTERM ended the grace period: the release in flight was dropped. It drains now: the
    release is finished and written."""
    [held] = fake_index.add("held", wheel("held", "1.0", {"held/__init__.py": MARK}))
    fake_index.faults.delay[held.filename] = HANG_GUARD
    url = fake_index.file_url("held", held.filename)
    rules = load_rules([rules_dir])
    stream = io.StringIO()
    metrics = NodeMetrics()

    async def scenario() -> None:
        stop = asyncio.Event()
        source = LocalSource([("held", "1.0", [url])], rules.hash)
        state = RuleState(source, Limits(), 2, None, initial=(rules, rules.hash), fast_scan=True)
        node = Node(source, JsonLinesSink(stream), state, NodeOptions(once=True), threads=2, metrics=metrics,
                    stop=stop)  # fmt: skip
        install_signal_handlers(node)
        running = asyncio.ensure_future(node.run())
        while f"/files/held/{held.filename}" not in fake_index.requests:
            await asyncio.sleep(0.02)
        stop.set()  # what PyPIWatchSource._commit does when the store fails
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.2)  # the handler has run
        fake_index.unblocked.set()
        await asyncio.wait_for(running, HANG_GUARD)

    try:
        asyncio.run(scenario())
    finally:
        fake_index.unblocked.set()
    assert [json.loads(line)["name"] for line in stream.getvalue().splitlines()] == ["held"]
    assert settled(metrics) == (1, 1, 0)


# --- watch: a store write under way when the watcher is cut short ------------------------------------------


WRITE_HELD = """
import os
import sqlite3
import time

_HOLD = os.environ["DRAGONFLY_TEST_HOLD"]


class _Connection(sqlite3.Connection):
    def execute(self, sql, params=(), *args, **kwargs):
        if sql.lstrip().startswith("INSERT INTO scans"):
            open(_HOLD + ".held", "w").close()
            while not os.path.exists(_HOLD):
                time.sleep(0.02)
        return super().execute(sql, params, *args, **kwargs)


_connect = sqlite3.connect


def _connect_held(*args, **kwargs):
    kwargs.setdefault("factory", _Connection)
    return _connect(*args, **kwargs)


sqlite3.connect = _connect_held
"""
"""A ``sitecustomize`` for the child: a release's write to the store waits, inside its transaction (the
product's own SQL on a real SQLite file), until the file ``DRAGONFLY_TEST_HOLD`` names exists; a file
beside it, ending ``.held``, says the write is waiting."""


def test_a_release_whose_store_write_runs_when_the_watcher_is_cut_short_is_logged_as_stored(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """SIGTERM, then a second one while the release's write waits in its transaction: the watcher counted
    the release unfinished ("scanned on the next run"), saved the content cache and closed the store while
    the write went on in its thread; the write then stored the release whole, but no line said so, none
    showed its findings, and the next run skips it as stored. The write is waited for before the store is
    closed, the release logged with its findings and counted, the serial moved past it; exit 0, no
    traceback, and the next run stores and announces nothing again."""
    store = tmp_path / "store.db"
    baseline(fake_index, store, rules_dir)
    publish(fake_index, "flagged", "1.0", BAD)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(WRITE_HELD)
    hold = tmp_path / "hold"
    path = os.pathsep.join([str(hook), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "PYTHONPATH": path, "DRAGONFLY_TEST_HOLD": str(hold)}
    args = watch_args(fake_index, store, rules_dir, "--interval", "0.5", "--webhook", fake_index.hook_url,
                      "--log-format", "json")  # fmt: skip
    child = subprocess.Popen(
        [sys.executable, "-m", "dragonfly_hybrid.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for(lambda: Path(f"{hold}.held").exists(), child)
        assert child.stderr is not None
        child.send_signal(signal.SIGTERM)
        lines = []
        for line in child.stderr:
            lines.append(line)
            if '"stopping: no new polls' in line:
                break
        child.send_signal(signal.SIGTERM)  # the grace period ends now
        for line in child.stderr:
            lines.append(line)
            if '"unfinished when the grace period ended"' in line:
                break
        hold.touch()
        _, rest = stopped(child, HANG_GUARD)
    finally:
        hold.touch()
        if child.poll() is None:
            child.kill()
            child.wait()
    stderr = "".join(lines) + rest
    assert child.returncode == 0, stderr
    logged_stored_at_stop(stderr, "no webhook sent", store, fake_index)

    again = cli(*watch_args(fake_index, store, rules_dir, "--once", "--webhook", fake_index.hook_url))
    assert again.returncode == 0, again.stderr
    no_traceback(again)
    assert files_stored(store) == files_listed(fake_index) and fake_index.hooks == []


# --- watch: a project page that fails a poll -------------------------------------------------------------


def test_a_page_that_fails_a_poll_leaves_none_of_its_other_pages_asked_for(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """The first changed project's page is refused (403: no retry), the others' held: the poll fails, and
    gather left its other pages running, asking the index for every remaining page (a daemon thread each)
    as the held ones were answered, while the watcher polled again. Only the pages asked for when the poll
    failed are ever asked for now."""
    store = tmp_path / "store.db"
    baseline(fake_index, store, rules_dir)
    names = [f"p{i:02d}" for i in range(3 * PAGE_CONCURRENCY)]
    for name in names:
        publish(fake_index, name, "1.0")
    fake_index.faults.project_status["p00"] = 403
    answer = fake_index.json_page

    async def scenario() -> int:
        loop = asyncio.get_running_loop()
        release = asyncio.Event()

        def held(name: str) -> dict[str, object]:
            asyncio.run_coroutine_threadsafe(release.wait(), loop).result(HANG_GUARD)
            return answer(name)

        fake_index.json_page = held  # type: ignore[method-assign]  # the server thread calls it per request
        with Store(store) as db:
            source = PyPIWatchSource(db, "rules", index_url=fake_index.url)
            with pytest.raises(WatchIndexError):
                await source.claim(10)
            release.set()
            await asyncio.sleep(1.0)  # the pages left running, if any, are asked for meanwhile
            await source.aclose()
        return len([r for r in fake_index.requests if r.startswith("/simple/p")])

    try:
        asked = asyncio.run(scenario())
    finally:
        fake_index.json_page = answer  # type: ignore[method-assign]
    assert asked <= PAGE_CONCURRENCY + 1, asked  # the refused page's slot may start one more
    assert Counter(fake_index.requests)["/simple/p00/"] == 1
