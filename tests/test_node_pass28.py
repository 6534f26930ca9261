"""Node pass 28: a review of pass 27 (5328cd0: jobs left at the grace period's end, a redirect to a login
page, a base URL with a query or fragment, a rule set that did not compile fetched again after 60 s),
against the fake mainframe over real HTTP on 127.0.0.1. Each test of a fix fails on the code before it;
the others pin what held.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dragonfly_hybrid._core import Limits
from dragonfly_hybrid.node.mainframe import MainframeClient
from dragonfly_hybrid.node.metrics import NodeMetrics
from dragonfly_hybrid.node.pipeline import RuleState
from dragonfly_hybrid.node.service import LocalJobs, serve
from dragonfly_hybrid.node.settings import ConfigError, NodeSettings, load_settings
from dragonfly_hybrid.node.sources import MainframeSource
from dragonfly_hybrid.rules_loader import compile_cached

from tests.fakes.mainframe import DEFAULT_RULES, FakeMainframe
from tests.fakes.pypi import FakeIndex, wheel
from tests.test_node import MARK, add_releases, run_node, settings_for, zip_of
from tests.test_node_pass27 import BROKEN, HANG_GUARD, AccessMainframe, sample, settled, with_client
from tests.test_node_pass27 import access as access  # fixtures
from tests.test_node_pass27 import trap as trap


@pytest.fixture
def fake() -> Iterator[FakeMainframe]:
    with FakeMainframe(job_timeout=30) as server:
        yield server


# --- jobs left when the grace period ends -------------------------------------------------------------------


def test_review_a_submission_that_lands_after_the_grace_period_is_counted_once(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """What held: submissions sent, still unanswered when the grace period ends, land on the server after
    the node has counted their jobs dropped (it cannot know): each job is counted once (never finished as
    well), claimed = finished + dropped, and nothing is in flight at exit."""
    add_releases(fake, 6)
    fake.delay("package", 3.0)  # every submission answered after the grace period (1 s)

    def interrupt() -> None:
        assert fake.wait_until(lambda: fake.count("package") >= 1 or len(fake.claims) >= 1, HANG_GUARD)
        time.sleep(1.0)  # the submissions are sent
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=interrupt)
    thread.start()
    metrics = run_node(settings_for(fake, tmp_path, grace_period=1))
    thread.join()
    claimed, finished, dropped = settled(metrics)
    assert claimed == len(fake.claims) > 0 and claimed == finished + dropped
    assert sample(metrics, "dragonfly_jobs_dropped_total", reason="grace-period-over") > 0
    assert sample(metrics, "dragonfly_jobs_in_flight") == 0


# --- a redirect to the login page ---------------------------------------------------------------------------


def test_redirects_are_counted_in_the_http_errors_metric(
    access: AccessMainframe, trap: FakeMainframe, tmp_path: Path
) -> None:
    """A call redirected to the login page is an expired session, as a 401 is; the 401 is counted in
    ``dragonfly_http_errors_total``, the redirect was counted nowhere: a node whose calls Cloudflare Access
    sent to its login page on every call (each followed by a login) showed no error at all. Each redirect
    is counted now, as ``kind="3xx"``."""
    add_releases(access, 6)

    def expire() -> None:
        access.wait_until(lambda: len(access.results) >= 2, timeout=HANG_GUARD)
        access.expire_tokens()

    thread = threading.Thread(target=expire)
    thread.start()
    metrics = run_node(settings_for(access, tmp_path, bulk_size=2), once=True)
    thread.join()
    assert access.redirected and trap.requests == []
    assert sample(metrics, "dragonfly_http_errors_total", kind="3xx") == len(access.redirected)
    assert len(access.results) == 6


# --- a base URL with a query or fragment --------------------------------------------------------------------


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    "url",
    [
        "http://[::1]:8000",
        "http://[fe80::1%25eth0]:8000/api",
        "https://mainframe.example/a%3Fb/c%23d",
        "https://user:p%3Fss%23@mainframe.example/api/",
        "HTTPS://MAINFRAME.EXAMPLE/api",
    ],
)
def test_review_legitimate_base_urls_are_still_accepted(url: str) -> None:
    """What held: IPv6 literals (a zone id too), percent-encoded ``?`` and ``#`` in the path or the
    password, upper-case schemes are accepted; only a literal ``?`` or ``#`` is refused."""
    assert load_settings(None, {"base_url": url}, env_file=None).base_url == url.rstrip("/")
    with pytest.raises(ConfigError):
        load_settings(None, {"base_url": "https://mainframe.example/api?"}, env_file=None)


# --- a rule set that did not compile ------------------------------------------------------------------------


def test_jobs_naming_two_unusable_rule_sets_in_turn_fetch_each_once_within_the_back_off(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """Only the last unusable set was remembered: jobs naming two of them in turn (two mainframe replicas
    on two commits, the one served not compiling) had every job fetch ``GET /rules`` and compile the set
    again under the rules lock, each scan waiting its turn. Each set is remembered for its own 60 s now;
    every job is scanned with the last good set, and its commit says so."""

    async def scenario(client: MainframeClient) -> list[str]:
        state = RuleState(MainframeSource(client), Limits(), 2, tmp_path / "cache", fast_scan=True)
        loading = await state.start()
        if loading is not None:
            await loading
        fake.set_rules("a", BROKEN)
        commits = []
        for wanted in ["a", "b"] * 4:
            await state.ensure(wanted)
            commits.append(state.commit)
        return commits

    assert with_client(fake, scenario) == ["fake-rules-1"] * 8
    assert fake.count("rules") == 3  # the first set, then one fetch for each of "a" and "b"


# --- the standalone node: a release the node cannot finish ------------------------------------------------


def test_a_standalone_release_whose_download_keeps_failing_is_written_as_a_failure(
    fake_index: FakeIndex, rules_dir: Path, tmp_path: Path
) -> None:
    """A standalone run has no server to lease a job again: a release whose download kept failing (a body
    cut off on every try) was "left to be leased again", no line was written for it and the run exited 0,
    as if it had been scanned. It is written as a failure naming the error."""
    fake_index.add("good", wheel("good", "1.0", {"good/__init__.py": MARK}))
    [cut] = fake_index.add("cut", wheel("cut", "1.0", {"cut/__init__.py": MARK}))
    fake_index.faults.drop.add(cut.filename)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRAGONFLY_")}
    command = [
        sys.executable,
        "-m",
        "dragonfly_hybrid.cli",
        "node",
        "--job",
        "good==1.0",
        "--job",
        "cut==1.0",
    ]
    command += ["--index-url", fake_index.url, "-r", str(rules_dir), "--metrics-port", "0"]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=120, env=env, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    lines = {line["name"]: line for line in map(json.loads, done.stdout.splitlines())}
    assert set(lines) == {"good", "cut"}
    assert lines["good"]["status"] == "success" and lines["good"]["rules_matched"] == ["test_marker"]
    assert lines["cut"]["status"] == "failure" and "TruncatedBody" in lines["cut"]["reason"]
    assert "leased again" not in done.stderr and "Traceback" not in done.stderr


@pytest.mark.usefixtures("clean_env")
def test_a_standalone_release_whose_lease_ran_short_is_written_as_a_failure(fake: FakeMainframe) -> None:
    """A standalone job whose lease (``--job-timeout``) was nearly over when its scan would start was left
    "to the server" too: no line, exit 0. It is a failure saying why (never a clean result: its downloads
    were not even started)."""
    rules = compile_cached(dict(DEFAULT_RULES), None)
    releases = []
    for i in range(3):
        url = fake.host_file(f"r{i}-1.0-py3-none-any.whl", zip_of({f"r{i}/__init__.py": MARK}))
        releases.append((f"r{i}", "1.0", [url]))
    stream = io.StringIO()
    settings = NodeSettings(metrics_port=None, threads=2, job_timeout=4, _env_file=None)  # type: ignore[call-arg]
    metrics = NodeMetrics()
    asyncio.run(serve(settings, local=LocalJobs(releases, rules, stream), once=True, metrics=metrics))
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert sorted(line["name"] for line in lines) == ["r0", "r1", "r2"]
    assert {line["status"] for line in lines} == {"failure"}
    assert all("DRAGONFLY_JOB_TIMEOUT" in line["reason"] for line in lines)
    assert fake.count("files") == 0
    claimed, finished, dropped = settled(metrics)
    assert claimed == finished == 3 and dropped == 0
