"""Node pass 32: a chaos test of the mainframe node. For a handful of seeds, the fake mainframe (behind a
Cloudflare-Access-like login redirect) and its file host misbehave at random moments: 503s and dropped
connections on claims, submissions and ``GET /rules``, an expired session (302 to the login page), a slow
``GET /rules``, a rule set that does not compile then is fixed, slow downloads; then SIGTERM, sometimes a
second one. Whatever happened, at the end: every claimed job is settled once (claimed = finished +
dropped), a finished job has exactly one result on the server, nothing is sent for a job after it was
counted dropped, every result's ``commit`` names the set its rules came from, and the logs hold no secret
and no traceback. One seed runs the real command, which must exit 0 after its drain."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid.logs import JsonFormatter
from dragonfly_hybrid.node import pipeline
from dragonfly_hybrid.node.pipeline import Node, Work

from tests.fakes.mainframe import DEFAULT_RULES, FakeMainframe
from tests.test_node import LIGHT, MARK, node_process, run_node, settings_for
from tests.test_node_pass27 import BROKEN, FIXED, HANG_GUARD, AccessMainframe, settled
from tests.test_node_pass27 import access as access  # fixtures
from tests.test_node_pass27 import trap as trap

RELEASES = 30
EXPECTED = {
    # rule set -> (rules matching MARK, rules matching LIGHT)
    "fake-rules-1": ({"test_marker"}, {"light_marker"}),
    "c2": ({"fixed"}, set()),
}


@dataclass(frozen=True)
class Settled:
    name: str
    assignment_id: str
    outcome: str
    at: float


def add_marked_releases(fake: FakeMainframe) -> dict[str, tuple[bool, bool]]:
    """``pkg<i>`` releases; name -> (has MARK, has LIGHT)."""
    marks = {}
    for i in range(RELEASES):
        marked, light = i % 3 == 0, i % 5 == 0
        setup = MARK if marked else b"print('hello')\n"
        init = LIGHT if light else b"print('hello')\n"
        fake.add_release(f"pkg{i}", "1.0", {"setup.py": setup, f"pkg{i}/__init__.py": init})
        marks[f"pkg{i}"] = (marked, light)
    return marks


def chaos(
    fake: FakeMainframe, rng: random.Random, *, rules_fixed: bool, signals: int, kill: Callable[[], None]
) -> tuple[threading.Thread, list[str]]:
    """A thread that injects the faults in a random order at random moments, then signals the node; and
    the list of what it did (for the failure message: the seed reproduces it)."""
    done: list[str] = []

    def pause() -> None:
        time.sleep(rng.uniform(0.0, 0.3))

    def slow_rules() -> None:
        fake.delay("rules", 1.0)
        fake.set_rules("c3", DEFAULT_RULES)  # a new name: the node's next jobs fetch it (slowly)
        time.sleep(rng.uniform(0.5, 1.5))
        fake.delay("rules", 0)

    def broken_then_fixed() -> None:
        # Once the node has its first set (a first set that does not compile stops it: exit 3, by design).
        fake.wait_until(lambda: len(fake.claims) >= 1, timeout=HANG_GUARD)
        fake.set_rules("c2", BROKEN)
        # Fixed once a job handed out with the broken set has a result (scanned with the last good set).
        fake.wait_until(lambda: any(j.hash == "c2" and j.result for j in fake.jobs()), timeout=5)
        if rules_fixed:
            fake.set_rules("c2", FIXED)

    events: list[tuple[str, Callable[[], None]]] = [
        # Claims fail at most twice in a row: a node waits 1 s, then 2, 4, 8 s... between failed claims.
        ("503 claims", lambda: fake.fail_next("jobs", 503, 1)),
        ("503 submits", lambda: fake.fail_next("package", 503, rng.randint(1, 3))),
        ("503 rules", lambda: fake.fail_next("rules", 503, rng.randint(1, 2))),
        ("drop claims", lambda: fake.drop_next("jobs", 1)),
        ("drop submits", lambda: fake.drop_next("package", rng.randint(1, 2), processed=rng.random() < 0.5)),
        ("drop rules", lambda: fake.drop_next("rules", 1)),
        ("session expired", fake.expire_tokens),
        ("slow downloads", lambda: fake.delay("files", rng.uniform(0.05, 0.3))),
        ("slow rules", slow_rules),
        ("broken rules", broken_then_fixed),
    ]
    rng.shuffle(events)
    wanted = rng.randint(2, 8)

    def run() -> None:
        for label, event in events:
            pause()
            event()
            done.append(label)
        fake.wait_until(lambda: len(fake.results) >= wanted, timeout=HANG_GUARD)
        for n in range(signals):
            if n:
                time.sleep(rng.uniform(0.0, 0.5))
            done.append("SIGTERM")
            kill()

    return threading.Thread(target=run), done


def landed(fake: FakeMainframe) -> dict[str, list[float]]:
    """assignment_id -> when each submission the server took for it was recorded: those answered 200, and
    one whose answer was dropped after it was taken (the job holds its body, no 200 does)."""
    taken: dict[str, list[float]] = {}
    unanswered: dict[str, float] = {}
    for s in fake.submissions:
        if s.status == 200:
            taken.setdefault(s.body["assignment_id"], []).append(s.at)
        elif s.status is None:
            unanswered[s.body["assignment_id"]] = s.at
    for state in fake.jobs():
        held = None if state.result is None else state.result["assignment_id"]
        if held is not None and held not in taken:
            taken[held] = [unanswered[held]]
    return taken


def check_results(fake: FakeMainframe, marks: dict[str, tuple[bool, bool]]) -> None:
    """Every result the server holds names the set whose rules it carries."""
    for state in fake.jobs():
        body = state.result
        if body is None or "reason" in body:
            continue
        assert body["commit"] in ("fake-rules-1", "c2", "c3"), body
        rules = "fake-rules-1" if body["commit"] == "c3" else body["commit"]  # c3: rules-1's sources
        marked, light = marks[body["name"]]
        expected = (EXPECTED[rules][0] if marked else set()) | (EXPECTED[rules][1] if light else set())
        assert set(body["rules_matched"]) == expected, body


SEEDS = range(int(os.environ.get("DRAGONFLY_CHAOS_SEEDS", "4")))
"""More seeds for a longer hunt: ``DRAGONFLY_CHAOS_SEEDS=50``."""


@pytest.mark.parametrize("seed", SEEDS)
def test_chaos_every_claimed_job_is_settled_once_and_every_result_names_its_rules(
    access: AccessMainframe,
    trap: FakeMainframe,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
) -> None:
    rng = random.Random(seed)
    monkeypatch.setattr(pipeline, "RULES_REFETCH_AFTER", 0.3)
    marks = add_marked_releases(access)
    records: list[Settled] = []
    real_settle = Node._settle

    def settle(self: Node, work: Work, outcome: str) -> None:  # type: ignore[type-arg]
        if id(work) in self._held:
            job = work.job
            records.append(Settled(job.name, job.assignment_id, outcome, time.monotonic()))
        real_settle(self, work, outcome)

    monkeypatch.setattr(Node, "_settle", settle)
    logs = io.StringIO()
    handler = logging.StreamHandler(logs)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("dragonfly_hybrid")
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.DEBUG)
    finished = threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []
    real_run = Node.run

    async def run(self: Node[Any]) -> None:
        loops.append(asyncio.get_running_loop())
        await real_run(self)

    monkeypatch.setattr(Node, "run", run)

    def kill() -> None:
        # Sent from the node's loop while it runs, where its handlers are in place: sent from this thread,
        # a signal could land as the loop closed (asyncio then puts the default action back) and end pytest.
        if loops and not finished.is_set():
            with contextlib.suppress(RuntimeError):  # the loop is closed: the node is done
                loops[0].call_soon_threadsafe(os.kill, os.getpid(), signal.SIGTERM)

    # Every seed of four: a drain, a drain cut by a second signal, a grace period that ends (1 s), both.
    signals, grace = 1 + seed % 2, 20.0 if seed % 4 < 2 else 1.0
    thread, done = chaos(access, rng, rules_fixed=rng.random() < 0.7, signals=signals, kill=kill)
    thread.start()
    try:
        metrics = run_node(settings_for(access, tmp_path, bulk_size=2, grace_period=grace))
    finally:
        finished.set()
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a late signal must not end pytest
        thread.join()
        signal.signal(signal.SIGTERM, previous)
        logger.removeHandler(handler)
    story = f"seed {seed}, grace {grace}: {done}"

    claimed, finished_jobs, dropped = settled(metrics)
    assert claimed == len(access.claims) > 0, story
    assert claimed == finished_jobs + dropped, story
    by_assignment = {r.assignment_id: r for r in records}
    assert len(records) == len(by_assignment) == claimed, story  # each claimed job settled once
    assert set(by_assignment) == {c.assignment_id for c in access.claims}, story
    taken = landed(access)
    for record in records:
        times = taken.get(record.assignment_id, [])
        if record.outcome in ("success", "failure"):
            assert len(times) == 1, (story, record, times)
        else:
            assert len(times) <= 1, (story, record, times)
            if record.outcome != "grace-period-over":  # one unanswered then may land: the node cannot know
                assert all(at < record.at for at in times), (story, record, times)
    check_results(access, marks)
    assert trap.requests == [], story
    text = logs.getvalue()
    assert '"exception"' not in text, story
    for secret in (access.worker.client_secret, access.worker.password, *access.issued_tokens):
        assert secret not in text, story


def test_chaos_the_command_drains_and_exits_0_with_no_traceback_nor_secret(
    access: AccessMainframe, trap: FakeMainframe, tmp_path: Path
) -> None:
    """The real command under the same chaos (a seed of its own), signalled once: exit 0 after its drain,
    every claimed job given one result, nothing on stderr that is a traceback or a secret."""
    rng = random.Random(100)
    marks = add_marked_releases(access)
    child = node_process(access, tmp_path, DRAGONFLY_BULK_SIZE="2", DRAGONFLY_LOG_LEVEL="DEBUG")
    thread, done = chaos(
        access, rng, rules_fixed=True, signals=1, kill=lambda: child.send_signal(signal.SIGTERM)
    )
    thread.start()
    try:
        _, stderr = child.communicate(timeout=HANG_GUARD)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        thread.join()
    assert done[-1] == "SIGTERM", done
    assert child.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    for secret in (access.worker.client_secret, *access.issued_tokens):
        assert secret not in stderr
    taken = landed(access)
    # A drain (grace period 20 s): every claimed job has one result, except one whose submission's answer
    # was lost after it landed (its retry answered 409): it is on the server once all the same.
    assert {c.assignment_id for c in access.claims} == set(taken), done
    assert all(len(times) == 1 for times in taken.values()), done
    check_results(access, marks)
    assert trap.requests == []
