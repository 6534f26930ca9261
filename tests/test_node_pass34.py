"""Node pass 34: the two problems the thirty-third passes left, against the fake mainframe over real HTTP on
127.0.0.1 (the configuration error in real node processes). Each test of a fix fails on the code before it;
the ``review`` tests pin what held:

* ``DRAGONFLY_CLIENT_ID`` and ``DRAGONFLY_CF_ACCESS_CLIENT_ID`` (or the two secret spellings) with different
  values in one source were merged silently: a leftover of one spelling and a new pair of the other made a
  mixed id and secret, refused at every login, then exit 3. Exit 2 now, naming both variables, no value;
* a 429 or 503 with ``Retry-After`` answered to ``GET /rules``, ``PUT /package`` or ``POST /jobs`` was
  retried after the call backoff alone (a claim: after the node's claim backoff, from 1 s). The wait asked
  is honoured now, capped by the backoff's cap, and a submission's only within its deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import time
from collections.abc import Coroutine, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any, TypeVar

import pytest
from dragonfly_hybrid.node.jobs import MainframeError, SubmitOutcome
from dragonfly_hybrid.node.mainframe import Backoff
from dragonfly_hybrid.node.settings import load_settings

from tests.fakes.mainframe import FakeMainframe, _Reply, _route_of
from tests.test_mainframe import client_for, success
from tests.test_node import spawn_node

T = TypeVar("T")
HANG_GUARD = 60
OLD_ID = "retired.access"
OLD_SECRET = "retired-secret-4f1c9e"
SLOW = Backoff(0.001, 10.0)
"""A retry backoff of about nothing whose cap lets a Retry-After of a second or two through."""

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def fake() -> Iterator[FakeMainframe]:
    with FakeMainframe(job_timeout=30) as server:
        yield server


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, HANG_GUARD))


# --- two spellings of one setting ---------------------------------------------------------------------------


def _mixed_pair(fake: FakeMainframe, leftover: str) -> dict[str, str]:
    """The worker's service token under the reference node's names, plus a leftover of the older spelling
    (``DRAGONFLY_CLIENT_ID`` or ``_SECRET``) from a retired token: pydantic took the leftover."""
    worker = fake.worker
    variables = {
        "DRAGONFLY_CF_ACCESS_CLIENT_ID": worker.client_id,
        "DRAGONFLY_CF_ACCESS_CLIENT_SECRET": worker.client_secret,
    }
    if leftover == "id":
        variables["DRAGONFLY_CLIENT_ID"] = OLD_ID
    else:
        variables["DRAGONFLY_CLIENT_SECRET"] = OLD_SECRET
    return variables


def _start_node(fake: FakeMainframe, tmp_path: Path, source: str, leftover: str) -> subprocess.Popen[str]:
    """``node --once`` with its credentials in ``source`` (the environment, ``.env`` or the TOML file)."""
    environment = {k: v for k, v in os.environ.items() if not k.upper().startswith("DRAGONFLY_")}
    environment.update(
        DRAGONFLY_BASE_URL=fake.url,
        DRAGONFLY_METRICS_PORT="off",
        DRAGONFLY_LOAD_DURATION="0.2",
        DRAGONFLY_RULES_CACHE_DIR=str(tmp_path / "cache"),
    )
    credentials = _mixed_pair(fake, leftover)
    args = ["--once"]
    if source == "environment":
        environment.update(credentials)
    elif source == "dotenv":
        (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in credentials.items()))
    else:  # the leftover written last: the last key won
        lines = [f'{k.removeprefix("DRAGONFLY_").lower()} = "{v}"\n' for k, v in credentials.items()]
        (tmp_path / "node.toml").write_text("".join(lines))
        args += ["--config", str(tmp_path / "node.toml")]
    return spawn_node(args, environment, tmp_path)


@pytest.mark.parametrize("leftover", ["id", "secret"])
@pytest.mark.parametrize("source", ["environment", "dotenv", "toml"])
def test_two_spellings_with_different_values_are_a_config_error(
    fake: FakeMainframe, tmp_path: Path, source: str, leftover: str
) -> None:
    """A leftover DRAGONFLY_CLIENT_ID (or _SECRET) beside a new DRAGONFLY_CF_ACCESS_ pair: the node logged in
    with a mixed pair, was refused five times and exited 3. Now exit 2 before any login: one line naming
    both spellings (the TOML keys for the file), never a value."""
    proc = _start_node(fake, tmp_path, source, leftover)
    _, stderr = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 2, stderr
    assert fake.login_attempts == 0 and fake.requests == []
    problems = [line for line in stderr.splitlines() if "CLIENT" in line.upper()]
    assert len(problems) == 1, stderr
    kind = "ID" if leftover == "id" else "SECRET"
    names = [f"DRAGONFLY_CLIENT_{kind}", f"DRAGONFLY_CF_ACCESS_CLIENT_{kind}"]
    if source == "toml":
        names = [name.removeprefix("DRAGONFLY_").lower() for name in names]
    assert all(name in problems[0] for name in names), stderr
    for value in (OLD_ID, OLD_SECRET, fake.worker.client_id, fake.worker.client_secret):
        assert value not in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize("source", ["environment", "dotenv", "toml"])
def test_review_the_same_value_under_both_spellings_is_fine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str
) -> None:
    pairs = {"CLIENT_ID": "node.access", "CLIENT_SECRET": "s3cret-value"}
    spellings = {f"{prefix}{name}": value for name, value in pairs.items() for prefix in ("", "CF_ACCESS_")}
    config = None
    if source == "environment":
        for name, value in spellings.items():
            monkeypatch.setenv(f"DRAGONFLY_{name}", value)
    elif source == "dotenv":
        (tmp_path / ".env").write_text("".join(f"DRAGONFLY_{k}={v}\n" for k, v in spellings.items()))
    else:
        config = tmp_path / "node.toml"
        config.write_text("".join(f'{k.lower()} = "{v}"\n' for k, v in spellings.items()))
    settings = load_settings(config)
    assert settings.client_id == "node.access" and settings.client_secret is not None
    assert settings.client_secret.get_secret_value() == "s3cret-value"


def test_review_sources_keep_their_precedence_between_spellings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Only one source giving both spellings is refused: the environment's DRAGONFLY_CF_ACCESS_CLIENT_ID
    still overrides a ``.env`` DRAGONFLY_CLIENT_ID, which overrides the TOML's ``cf_access_client_id``."""
    config = tmp_path / "node.toml"
    config.write_text('cf_access_client_id = "toml.access"\n')
    (tmp_path / ".env").write_text("DRAGONFLY_CLIENT_ID=dotenv.access\n")
    assert load_settings(config).client_id == "dotenv.access"
    monkeypatch.setenv("DRAGONFLY_CF_ACCESS_CLIENT_ID", "env.access")
    assert load_settings(config).client_id == "env.access"


def test_a_toml_key_written_twice_in_two_cases_is_refused(tmp_path: Path) -> None:
    """TOML keys are read case-insensitively: ``bulk_size`` and ``BULK_SIZE`` with different values were one
    setting, the last one silently; refused now, as two spellings are. Written alike, it is fine."""
    config = tmp_path / "node.toml"
    config.write_text("bulk_size = 3\nBULK_SIZE = 3\n")
    assert load_settings(config).bulk_size == 3
    config.write_text("bulk_size = 3\nBULK_SIZE = 4\n")
    with pytest.raises(ValueError, match=r"bulk_size and BULK_SIZE in .* are one setting"):
        load_settings(config)


# --- Retry-After on API calls -------------------------------------------------------------------------------


def _asking(fake: FakeMainframe, route: str, status: int, retry_after: str, count: int) -> list[float]:
    """The next ``count`` calls of ``route`` are answered ``status`` with ``Retry-After: retry_after``;
    returns the list the arrival times of that route's calls go to."""
    original = fake._handle
    arrivals: list[float] = []

    def handle(method: str, path: str, query: str, headers: Any, body: bytes) -> Any:
        if _route_of(method, path) == route:
            arrivals.append(time.monotonic())
            if len(arrivals) <= count:
                return _Reply(
                    status, b'{"detail": "slow down"}', "application/json", {"Retry-After": retry_after}
                )
        return original(method, path, query, headers, body)

    fake._handle = handle  # type: ignore[method-assign]
    return arrivals


def _gaps(arrivals: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(arrivals)]


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("form", ["seconds", "date"])
def test_rules_wait_for_retry_after(fake: FakeMainframe, status: int, form: str) -> None:
    """GET /rules answered 429/503 with Retry-After: the next try came after the call backoff alone."""
    asked = "1" if form == "seconds" else formatdate(time.time() + 2, usegmt=True)  # 1 to 2 s from now
    arrivals = _asking(fake, "rules", status, asked, 1)

    async def scenario() -> None:
        async with client_for(fake, retry_backoff=SLOW) as client:
            await client.get_rules()

    run(scenario())
    [gap] = _gaps(arrivals)
    assert gap >= 0.9


@pytest.mark.parametrize("status", [429, 503])
def test_submit_waits_for_retry_after_within_its_deadline(fake: FakeMainframe, status: int) -> None:
    fake.add_release("demo", "1.0")
    arrivals = _asking(fake, "package", status, "1", 1)

    async def scenario() -> SubmitOutcome:
        async with client_for(fake, retry_backoff=SLOW) as client:
            [job] = await client.claim_jobs(1)
            return await client.submit(success(job), deadline=time.monotonic() + 20)

    assert run(scenario()) is SubmitOutcome.ACCEPTED
    [gap] = _gaps(arrivals)
    assert gap >= 0.95
    assert len(arrivals) == 2 and [s.status for s in fake.submissions] == [200]  # injected: not recorded


def test_submit_whose_retry_after_outlives_its_lease_fails_now(fake: FakeMainframe) -> None:
    """Retry-After: 20 with 5 s of lease left: the submission was retried on the backoff (a try every few
    ms) until the deadline. It is the deadline's MainframeError at once now, with one PUT sent: waiting 20 s
    would outlive the lease."""
    fake.add_release("demo", "1.0")
    arrivals = _asking(fake, "package", 429, "20", 1000)

    async def scenario() -> None:
        async with client_for(fake, retry_backoff=SLOW) as client:
            [job] = await client.claim_jobs(1)
            await client.submit(success(job), deadline=time.monotonic() + 5)

    with pytest.raises(MainframeError, match=r"deadline passed after 1 attempts \(HTTP 429; its Retry-After"):
        run(scenario())
    assert len(arrivals) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_a_claim_asked_to_retry_after_claims_again_then(fake: FakeMainframe, status: int) -> None:
    """POST /jobs answered 429/503 with Retry-After leased nothing: the claim was a MainframeError at once,
    and the node claimed again after its own backoff (1 s, then 2 s...), whatever the server asked. It is
    claimed again after the wait asked."""
    fake.add_release("demo", "1.0")
    arrivals = _asking(fake, "jobs", status, "1", 1)

    async def scenario() -> int:
        async with client_for(fake, retry_backoff=SLOW) as client:
            return len(await client.claim_jobs(5))

    assert run(scenario()) == 1
    [gap] = _gaps(arrivals)
    assert gap >= 0.95
    assert [c.attempt for c in fake.claims] == [1]


def test_a_claim_waiting_out_retry_after_is_not_sent_once_stopped(fake: FakeMainframe) -> None:
    fake.add_release("demo", "1.0")
    arrivals = _asking(fake, "jobs", 429, "10", 1)

    async def scenario() -> list[Any]:
        stop = asyncio.Event()
        async with client_for(fake, retry_backoff=SLOW) as client:
            claim = asyncio.ensure_future(client.claim_jobs(5, stop=stop))
            while not arrivals:
                await asyncio.sleep(0.01)
            stop.set()
            return await claim

    assert run(scenario()) == []
    assert len(arrivals) == 1 and fake.claims == []


def test_review_retry_after_is_capped_and_a_claim_without_one_is_not_repeated(fake: FakeMainframe) -> None:
    """A Retry-After of a day waits the backoff's cap; a 503 without one, or a 500 with one, answered to a
    claim is still the MainframeError the node backs off from (the claim may have happened)."""
    _asking(fake, "rules", 429, "86400", 2)

    async def scenario() -> None:
        async with client_for(fake, retry_backoff=Backoff(0.001, 0.05)) as client:
            await client.get_rules()
            fake.fail_next("jobs", 503)
            with pytest.raises(MainframeError, match="answered HTTP 503"):
                await client.claim_jobs(1)
            original = fake._handle

            def handle(method: str, path: str, query: str, headers: Any, body: bytes) -> Any:
                if _route_of(method, path) == "jobs":
                    return _Reply(500, b"{}", "application/json", {"Retry-After": "1"})
                return original(method, path, query, headers, body)

            fake._handle = handle  # type: ignore[method-assign]
            with pytest.raises(MainframeError, match="answered HTTP 500"):
                await client.claim_jobs(1)

    run(scenario())
    assert fake.count("rules") == 1 and fake.count("jobs") == 1  # the injected answers are not recorded
