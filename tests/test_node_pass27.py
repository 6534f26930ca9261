"""Node pass 27: the problems pass 26 left open (jobs left at the end of the grace period, a redirect to the
login page, a base URL with a query or fragment, a rule set that did not compile under a commit name the
mainframe later serves fixed), and a review of ``SinkBroken``, against the fake mainframe over real HTTP
on 127.0.0.1, with real signals and real processes. Each test of a fix fails on the code before it; the
others pin what held.
"""

from __future__ import annotations

import asyncio
import errno
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid._core import Limits
from dragonfly_hybrid.node import pipeline
from dragonfly_hybrid.node.jobs import Job, SubmitOutcome
from dragonfly_hybrid.node.mainframe import Backoff, MainframeClient
from dragonfly_hybrid.node.metrics import NodeMetrics
from dragonfly_hybrid.node.pipeline import Node, NodeOptions, RuleState
from dragonfly_hybrid.node.settings import ConfigError, NodeSettings, load_settings
from dragonfly_hybrid.node.sinks import JsonLinesSink
from dragonfly_hybrid.node.sources import LocalSource
from dragonfly_hybrid.rules_loader import compile_cached

from tests.fakes.mainframe import API_ROUTES, DEFAULT_RULES, FakeMainframe, _Reply, _route_of
from tests.fakes.pypi import FakeIndex, wheel
from tests.test_node import (
    MARK,
    accepted_by_job,
    add_releases,
    node_process,
    run_node,
    settings_for,
    zip_of,
)
from tests.test_redteam_node_pass26 import body_of

HANG_GUARD = 60
"""Seconds a node process or a scenario may take (each needs a few when nothing is wrong)."""


@pytest.fixture
def fake() -> Iterator[FakeMainframe]:
    with FakeMainframe(job_timeout=30) as server:
        yield server


def sample(metrics: NodeMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def settled(metrics: NodeMetrics) -> tuple[float, float, float]:
    """(claimed, finished, dropped) jobs, every outcome and reason summed."""
    totals = {"dragonfly_jobs_finished_total": 0.0, "dragonfly_jobs_dropped_total": 0.0}
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name in totals:
                totals[s.name] += s.value
    claimed = sample(metrics, "dragonfly_jobs_claimed_total")
    return claimed, totals["dragonfly_jobs_finished_total"], totals["dragonfly_jobs_dropped_total"]


# --- 1. jobs in flight when the grace period ends -----------------------------------------------------------


@pytest.mark.parametrize("second_signal", [False, True], ids=["grace-period-over", "second-signal"])
def test_jobs_in_flight_when_the_grace_period_ends_are_counted_and_logged_as_dropped(
    fake: FakeMainframe, tmp_path: Path, caplog: pytest.LogCaptureFixture, second_signal: bool
) -> None:
    """The node exited at the end of the grace period (or at a second signal) without settling what it
    still held: ``dragonfly_jobs_claimed_total`` went up by jobs that were neither finished nor dropped, and
    no line named them. Each is now dropped (``reason="grace-period-over"``) and logged by name, so that
    claimed = finished + dropped once the node has stopped."""
    add_releases(fake, 6)
    fake.delay("files", 10.0)  # every download still running when the node is told to stop

    def interrupt() -> None:
        # SIGINT, which the node handles as SIGTERM: were its handler missing, pytest would be interrupted
        # (a failure), not killed.
        assert fake.wait_until(lambda: len(fake.claims) >= 1, timeout=HANG_GUARD)
        os.kill(os.getpid(), signal.SIGINT)
        if second_signal:
            time.sleep(0.3)
            os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt)
    thread.start()
    caplog.set_level(logging.INFO, logger="dragonfly_hybrid")
    grace = 60 if second_signal else 1
    metrics = run_node(settings_for(fake, tmp_path, grace_period=grace))
    thread.join()
    claimed, finished, dropped = settled(metrics)
    assert claimed == len(fake.claims) > 0
    assert claimed == finished + dropped
    left = sample(metrics, "dragonfly_jobs_dropped_total", reason="grace-period-over")
    assert left == claimed - len(fake.results) > 0
    assert sample(metrics, "dragonfly_jobs_in_flight") == 0
    named = [r.job for r in caplog.records if r.getMessage() == "unfinished when the grace period ended"]  # type: ignore[attr-defined]
    assert sorted(named) == sorted({c.name for c in fake.claims} - {s.body["name"] for s in fake.results})


# --- 2. a redirect to the login page ------------------------------------------------------------------------


class AccessMainframe(FakeMainframe):
    """The fake mainframe behind Cloudflare Access as it answers a browser: an API call without a valid
    session (an expired cookie) is redirected (302) to the team's login page at ``login_url`` (another
    host), not answered 401. :meth:`redirect_next` answers the next API calls with another 3xx instead,
    without doing anything."""

    def __init__(self, login_url: str, **kwargs: Any) -> None:
        self.login_url = login_url
        self._redirect_lock = threading.Lock()
        self._next: list[tuple[int, str]] = []
        self.redirected: list[tuple[str, int]] = []
        """(route, status) of every API call answered with a redirect."""
        super().__init__(**kwargs)

    def redirect_next(self, status: int, location: str) -> None:
        with self._redirect_lock:
            self._next.append((status, location))

    def _handle(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Any:
        route = _route_of(method, path)
        if route not in API_ROUTES:
            return super()._handle(method, path, query, headers, body)
        with self._redirect_lock:
            forced = self._next.pop(0) if self._next else None
        if forced is not None:
            reply: _Reply | None = _Reply(forced[0], b"", "text/html", {"Location": forced[1]})
        else:
            reply = super()._handle(method, path, query, headers, body)
            if reply is not None and reply.status == 401:
                location = (
                    f"{self.login_url}/cdn-cgi/access/login/mainframe.example?kid=k&redirect_url={path}"
                )
                reply = replace(
                    reply, status=302, body=b"", content_type="text/html", headers={"Location": location}
                )
        if reply is not None and 300 <= reply.status < 400:
            with self._redirect_lock:
                self.redirected.append((str(route), reply.status))
        return reply


@pytest.fixture
def trap() -> Iterator[FakeMainframe]:
    """Another host, where redirects point: nothing may reach it."""
    with FakeMainframe() as server:
        yield server


@pytest.fixture
def access(trap: FakeMainframe) -> Iterator[AccessMainframe]:
    with AccessMainframe(trap.url, job_timeout=30) as server:
        yield server


def with_client(fake: FakeMainframe, scenario: Callable[[MainframeClient], Any]) -> Any:
    """``scenario(client)`` run with a logged-in client of ``fake`` (quick retries)."""

    async def run() -> Any:
        settings = NodeSettings(**fake.node_settings(metrics_port=None), _env_file=None)  # type: ignore[call-arg]
        quick = Backoff(0.05, 0.1)
        async with MainframeClient(settings, retry_backoff=quick, login_backoff=quick) as client:
            await client.login()
            return await asyncio.wait_for(scenario(client), HANG_GUARD)

    return asyncio.run(run())


@pytest.mark.parametrize("call", ["submit", "claim", "rules"])
def test_a_redirect_to_the_login_page_is_an_expired_session(
    access: AccessMainframe, trap: FakeMainframe, call: str
) -> None:
    """Cloudflare Access sends the calls of an expired session to its login page (302), where a 401 would
    have the node log in again: a submission was "rejected" and dropped (its job leased again, its scan
    lost), a claim or a ``GET /rules`` failed, and kept failing till the session's own renewal (minutes).
    A redirect to a login is an expired session now: the client logs in again and repeats the call once,
    as after a 401; it never follows the redirect (the body never goes to the other host)."""
    access.add_release("held", "1.0", {"setup.py": MARK})
    access.add_release("next", "1.0", {"setup.py": MARK})

    async def scenario(client: MainframeClient) -> object:
        [job] = await client.claim_jobs(1)
        access.expire_tokens()
        if call == "submit":
            return await client.submit(body_of(job), deadline=time.monotonic() + 30)
        if call == "claim":
            return [j.name for j in await client.claim_jobs(1)]
        return (await client.get_rules()).hash

    expected = {"submit": SubmitOutcome.ACCEPTED, "claim": ["next"], "rules": "fake-rules-1"}
    assert with_client(access, scenario) == expected[call]
    route = {"submit": "package", "claim": "jobs", "rules": "rules"}[call]
    assert access.redirected == [(route, 302)]
    assert access.logins == 2
    assert trap.requests == []
    if call == "submit":
        assert accepted_by_job(access) == {("held", "1.0"): 1}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_another_redirect_of_a_submission_is_an_error_naming_its_status_and_is_not_followed(
    access: AccessMainframe, trap: FakeMainframe, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    """What held, and holds: a redirect elsewhere than a login page (another host, another path) is not
    followed, the body never leaves for the other host, no new login is made, and the error names the
    status."""
    access.add_release("held", "1.0", {"setup.py": MARK})

    async def scenario(client: MainframeClient) -> SubmitOutcome:
        [job] = await client.claim_jobs(1)
        access.redirect_next(status, trap.url + "/package")
        return await client.submit(body_of(job), deadline=time.monotonic() + 30)

    assert with_client(access, scenario) is SubmitOutcome.REJECTED
    assert access.redirected == [("package", status)] and access.logins == 1
    assert trap.requests == [] and access.results == []
    assert f"rejected (HTTP {status}" in caplog.text


def test_a_node_whose_session_access_redirects_mid_run_delivers_every_result_once(
    access: AccessMainframe, trap: FakeMainframe, tmp_path: Path
) -> None:
    """The whole node: the session ends mid-run behind Cloudflare Access (its calls redirected to the
    login page). Before, its claims failed till a ``--once`` run gave up (exit 3) and its submissions were
    dropped; every job is now delivered once."""
    add_releases(access, 8)

    def expire() -> None:
        access.wait_until(lambda: len(access.results) >= 2, timeout=HANG_GUARD)
        access.expire_tokens()

    thread = threading.Thread(target=expire)
    thread.start()
    run_node(settings_for(access, tmp_path, bulk_size=2), once=True)
    thread.join()
    assert accepted_by_job(access) == {(f"pkg{i}", "1.0"): 1 for i in range(8)}
    assert access.redirected and trap.requests == []


# --- 3. a base URL with a query string or a fragment --------------------------------------------------------

SECRET_IN_URL = "s3cr3t-t0ken"


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("base_url", f"https://mainframe.example/?token={SECRET_IN_URL}"),
        ("base_url", f"https://mainframe.example/#{SECRET_IN_URL}"),
        ("base_url", "https://mainframe.example/api?"),
        ("base_url", f"https://mainframe.example?{SECRET_IN_URL}"),
        ("auth0_domain", f"tenant.example?x={SECRET_IN_URL}"),
        ("auth0_domain", f"https://tenant.example/#{SECRET_IN_URL}"),
    ],
)
def test_a_url_with_a_query_or_a_fragment_is_refused_at_start(field: str, value: str) -> None:
    """Accepted, ``https://h/?x=1`` had the node call ``https://h/?x=1/jobs`` (every path in the query
    string) and ``https://h/#f`` call ``https://h/`` for everything. It is refused at start, naming the
    variable, never the value (it may carry a token)."""
    with pytest.raises(ConfigError) as caught:
        load_settings(None, {field: value}, env_file=None)
    message = str(caught.value)
    assert f"DRAGONFLY_{field.upper()}: must not have a query string (?) or a fragment (#)" in message
    assert SECRET_IN_URL not in message


@pytest.mark.parametrize("by_flag", [False, True], ids=["variable", "flag"])
def test_a_node_given_a_base_url_with_a_query_exits_2_in_one_line(
    fake: FakeMainframe, tmp_path: Path, by_flag: bool
) -> None:
    url = f"{fake.url}/?token={SECRET_IN_URL}"
    args = ("--once", "--base-url", url) if by_flag else ("--once",)
    env = {} if by_flag else {"DRAGONFLY_BASE_URL": url}
    proc = node_process(fake, tmp_path, *args, **env)
    _, stderr = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 2, stderr
    assert "DRAGONFLY_BASE_URL" + (" (--base-url)" if by_flag else "") + ": must not have" in stderr
    assert SECRET_IN_URL not in stderr and "Traceback" not in stderr
    assert fake.logins == 0 and fake.claims == []


# --- 4. a rule set that did not compile, served fixed under the same commit name ----------------------------

BROKEN = {"m.yar": "rule m { condition: nope }"}
FIXED = {"m.yar": 'rule fixed { strings: $a = "DRAGONFLY_TEST_MARKER" condition: $a }'}


def serve_broken_then_fixed(fake: FakeMainframe) -> threading.Thread:
    """After the first result, the mainframe serves commit ``c2`` broken (job ``b``), then the same name
    fixed (jobs ``c``, ``d``)."""

    def change() -> None:
        fake.wait_until(lambda: len(fake.results) >= 1, timeout=HANG_GUARD)
        fake.set_rules("c2", BROKEN)
        fake.add_release("b", "1.0", {"setup.py": MARK})
        fake.wait_until(lambda: len(fake.results) >= 2, timeout=HANG_GUARD)
        fake.set_rules("c2", FIXED)
        fake.add_release("c", "1.0", {"setup.py": MARK})
        fake.wait_until(lambda: len(fake.results) >= 3, timeout=HANG_GUARD)
        fake.add_release("d", "1.0", {"setup.py": MARK})

    thread = threading.Thread(target=change)
    thread.start()
    return thread


def test_a_rule_set_served_fixed_under_the_name_that_did_not_compile_is_fetched_again(
    fake: FakeMainframe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit whose sources did not compile was remembered for good: served fixed later under the same
    name (the mainframe's checkout of that commit repaired, a truncated answer), it was never fetched
    again, and every job naming it was scanned with the old set for as long as the node ran. It is fetched
    again once the back-off of a failed fetch is over (0 here)."""
    monkeypatch.setattr(pipeline, "RULES_REFETCH_AFTER", 0.0)
    fake.add_release("a", "1.0", {"setup.py": MARK})
    thread = serve_broken_then_fixed(fake)
    run_node(settings_for(fake, tmp_path, bulk_size=1), max_jobs=4)
    thread.join()
    commits = {s.body["name"]: (s.body["commit"], s.body["rules_matched"]) for s in fake.results}
    assert commits["b"] == ("fake-rules-1", ["test_marker"])  # the broken set: the last good one
    assert commits["c"] == commits["d"] == ("c2", ["fixed"])


def test_a_rule_set_that_did_not_compile_is_not_fetched_again_within_the_back_off(
    fake: FakeMainframe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What holds: within the back-off, jobs naming the set that did not compile are scanned with the last
    good set without a ``GET /rules`` each."""
    monkeypatch.setattr(pipeline, "RULES_REFETCH_AFTER", 3600.0)
    fake.add_release("a", "1.0", {"setup.py": MARK})
    thread = serve_broken_then_fixed(fake)
    run_node(settings_for(fake, tmp_path, bulk_size=1), max_jobs=4)
    thread.join()
    assert {s.body["commit"] for s in fake.results} == {"fake-rules-1"}
    assert fake.count("rules") == 2  # the first set, then c2 once


# --- 5. review of SinkBroken (87bdd9e) ----------------------------------------------------------------------


class BreakingStream(io.StringIO):
    """A results stream whose writes fail (a full disk) from the ``break_at``-th on; ``on_write(n)`` is
    called before the n-th write."""

    def __init__(self, break_at: int, on_write: Callable[[int], None] = lambda n: None) -> None:
        super().__init__()
        self.break_at = break_at
        self.on_write = on_write
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        self.on_write(self.writes)
        if self.writes >= self.break_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return super().write(text)


@pytest.mark.parametrize(
    ("break_at", "drain"),
    [(1, False), (3, False), (3, True)],
    ids=["at-the-first-job", "mid-run", "during-a-drain"],
)
def test_review_a_broken_sink_stops_claiming_and_loses_no_claimed_job_silently(
    fake: FakeMainframe, caplog: pytest.LogCaptureFixture, break_at: int, drain: bool
) -> None:
    """What held: whenever the sink breaks (at the first result, while other jobs are downloading, scanning
    and being delivered, after a stop was requested), the node claims no more, every claimed job is
    either written or logged by name as not written (no traceback), the stop is logged once however many
    deliveries fail, and claimed = finished + dropped."""
    releases = []
    for i in range(30):
        url = fake.host_file(f"r{i}-1.0-py3-none-any.whl", zip_of({f"r{i}/__init__.py": MARK}))
        releases.append((f"r{i}", "1.0", [url]))
    fake.delay("files", 0.05)  # downloads overlap scans and deliveries
    rules = compile_cached(dict(DEFAULT_RULES), None)
    metrics = NodeMetrics()
    holder: dict[str, Node[Job]] = {}

    def before_write(n: int) -> None:
        if drain and n == 1:
            holder["node"].request_stop()  # as SIGTERM does, before the sink breaks

    stream = BreakingStream(break_at, before_write)
    sink = JsonLinesSink(stream)

    async def run() -> None:
        source = LocalSource(releases, rules.hash)
        state = RuleState(source, Limits(), 2, None, initial=(rules, rules.hash), fast_scan=True)
        options = NodeOptions(once=True, bulk_size=4, submit_concurrency=4)
        node = holder["node"] = Node(source, sink, state, options, threads=2, metrics=metrics)
        await asyncio.wait_for(node.run(), HANG_GUARD)

    caplog.set_level(logging.INFO, logger="dragonfly_hybrid")
    asyncio.run(run())
    assert sink.error is not None
    claimed, finished, dropped = settled(metrics)
    assert 0 < claimed < len(releases) and claimed == finished + dropped
    written = {json.loads(line)["name"] for line in stream.getvalue().splitlines()}
    assert len(written) == break_at - 1 == finished
    not_written = [r.job for r in caplog.records if r.getMessage() == "result not delivered within the lease"]  # type: ignore[attr-defined]
    assert (
        len(not_written) == dropped == sample(metrics, "dragonfly_jobs_dropped_total", reason="submit-error")
    )
    assert written.isdisjoint(not_written) and len(written) + len(set(not_written)) == claimed
    assert not any(r.exc_info for r in caplog.records)
    assert sum(r.getMessage().startswith("stopping") for r in caplog.records) == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a device that is always full)")
def test_review_a_standalone_run_of_many_releases_into_a_full_disk_exits_3_in_plain_lines(
    fake_index: FakeIndex, rules_dir: Path, tmp_path: Path
) -> None:
    """What held: the exit code is 3 with many releases in flight when the first write fails, one line per
    release not written and one error, no traceback."""
    args = []
    for i in range(8):
        fake_index.add(f"demo{i}", wheel(f"demo{i}", "1.0", {f"demo{i}/__init__.py": MARK}))
        args += ["--job", f"demo{i}==1.0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGONFLY_")} | {
        "DRAGONFLY_METRICS_PORT": "off"
    }
    command = [sys.executable, "-m", "dragonfly_hybrid.cli", "node", *args, "--index-url", fake_index.url]
    command += ["-r", str(rules_dir), "--output", "/dev/full"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=env, check=False, cwd=tmp_path
    )
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("result not written") == 8
    assert done.stderr.endswith("error: cannot write the results to /dev/full: No space left on device\n")
