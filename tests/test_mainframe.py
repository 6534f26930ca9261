"""The mainframe client against the fake mainframe, over real HTTP on 127.0.0.1 (no mocked httpx)."""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import random
import re
import tarfile
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import httpx
import pytest
from dragonfly_hybrid import __version__
from dragonfly_hybrid.node.jobs import (
    FailureBody,
    Job,
    MainframeError,
    RulesPayload,
    SubmitOutcome,
    SuccessBody,
)
from dragonfly_hybrid.node.mainframe import (
    MIN_SESSION_REUSE,
    AuthError,
    Backoff,
    MainframeClient,
    jwt_expiry,
    parse_job,
    parse_rules,
    refresh_delay,
)
from dragonfly_hybrid.node.settings import ConfigError, NodeSettings

from tests.fakes.mainframe import FakeMainframe, make_jwt

T = TypeVar("T")
FAST = Backoff(0.005, 0.02)


pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def fake_mainframe() -> Iterator[FakeMainframe]:
    """A started fake mainframe + file host on 127.0.0.1 (see ``tests/fakes/mainframe.py``)."""
    with FakeMainframe() as fake:
        yield fake


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def settings_for(fake: FakeMainframe, worker: str | None = None, **values: Any) -> NodeSettings:
    return NodeSettings(**fake.node_settings(worker, **values), _env_file=None)  # type: ignore[call-arg]


def client_for(
    fake: FakeMainframe, worker: str | None = None, *, scheme: str = "cloudflare", **options: Any
) -> MainframeClient:
    options = {"retry_backoff": FAST, "login_backoff": FAST, **options}
    return MainframeClient(settings_for(fake, worker, scheme=scheme), **options)


def success(job: Job, **changes: Any) -> SuccessBody:
    values: dict[str, Any] = {
        "name": job.name,
        "version": job.version,
        "score": 5,
        "inspector_url": None,
        "rules_matched": ["test_marker"],
        "commit": job.hash,
        "attempt": job.attempt,
        "assignment_id": job.assignment_id,
    }
    values.update(changes)
    return SuccessBody(**values)


# -------------------------------------------------------------------------------------- happy paths


@pytest.mark.parametrize("scheme", ["cloudflare", "auth0"])
def test_claim_and_submit(fake_mainframe: FakeMainframe, scheme: str) -> None:
    fake = fake_mainframe
    urls = fake.add_release("demo", "1.0", {"demo/__init__.py": b"DRAGONFLY_TEST_MARKER"})

    async def scenario() -> tuple[dict[str, Any], Any, list[Job], SubmitOutcome]:
        async with client_for(fake, scheme=scheme) as client:
            assert client.auth_scheme == scheme
            info = await client.server_info()
            rules = await client.get_rules()
            jobs = await client.claim_jobs(5)
            outcome = await client.submit(success(jobs[0], inspector_url=urls[0] + "/x.py"))
            assert await client.claim_jobs(5) == []
            return info, rules, jobs, outcome

    info, rules, jobs, outcome = run(scenario())
    assert info["rules_commit"] == fake.rules_hash
    assert rules.hash == fake.rules_hash and set(rules.rules) == {"test_marker", "light_marker"}
    assert len(jobs) == 1
    job = jobs[0]
    assert (job.name, job.version, job.distributions, job.hash, job.attempt) == (
        "demo",
        "1.0",
        urls,
        fake.rules_hash,
        1,
    )
    assert outcome is SubmitOutcome.ACCEPTED
    [result] = fake.results
    assert result.worker == "worker-1"
    assert result.body["assignment_id"] == job.assignment_id and result.body["score"] == 5
    state = fake.state("demo", "1.0")
    assert state.status == "FINISHED" and state.result == result.body
    assert fake.logins == 1
    api = [r for r in fake.requests if r.route in ("rules", "jobs", "package")]
    assert all(r.worker == "worker-1" for r in api)
    assert all(r.user_agent == f"dragonfly-hybrid/{__version__}" for r in fake.requests)


def test_failure_body(fake_mainframe: FakeMainframe) -> None:
    fake_mainframe.add_release("broken", "0.1", {"x.py": b""})

    async def scenario() -> SubmitOutcome:
        async with client_for(fake_mainframe) as client:
            [job] = await client.claim_jobs(1)
            body = FailureBody(job.name, job.version, "corrupt archive", job.attempt, job.assignment_id)
            return await client.submit(body)

    assert run(scenario()) is SubmitOutcome.ACCEPTED
    state = fake_mainframe.state("broken", "0.1")
    assert (state.status, state.reason) == ("FAILED", "corrupt archive")


def test_batches(fake_mainframe: FakeMainframe) -> None:
    for index in range(3):
        fake_mainframe.add_release(f"p{index}", "1.0")  # no distributions at all: allowed

    async def scenario() -> list[list[Job]]:
        async with client_for(fake_mainframe) as client:
            return [await client.claim_jobs(2) for _ in range(3)]

    first, second, third = run(scenario())
    assert [j.name for j in first] == ["p0", "p1"] and [j.name for j in second] == ["p2"] and third == []
    assert first[0].distributions == []
    with pytest.raises(ValueError):
        run(client_for(fake_mainframe).claim_jobs(0))


def test_file_host_serves_pypi_shaped_urls(fake_mainframe: FakeMainframe) -> None:
    sdist_url, wheel_url = fake_mainframe.add_release("demo-pkg", "2.0", {"demo_pkg/a.py": b"print('a')"})
    assert re.fullmatch(
        r"http://127\.0\.0\.1:\d+/packages/[0-9a-f]{2}/[0-9a-f]{2}/[0-9a-f]{60}/.+", sdist_url
    )
    assert sdist_url.endswith("/demo_pkg-2.0.tar.gz") and wheel_url.endswith("/demo_pkg-2.0-py3-none-any.whl")
    content = httpx.get(sdist_url).content
    with tarfile.open(fileobj=io.BytesIO(content)) as archive:
        assert "demo_pkg-2.0/demo_pkg/a.py" in archive.getnames()
    fake_mainframe.fail_next(wheel_url, 503)  # faults can target one file
    assert httpx.get(wheel_url).status_code == 503
    assert httpx.get(wheel_url).status_code == 200
    assert httpx.get(sdist_url + "-missing").status_code == 404


# --------------------------------------------------------------------------------------------- auth


def test_one_login_for_many_concurrent_calls(fake_mainframe: FakeMainframe) -> None:
    fake_mainframe.delay("root", 0.1)  # a slow login: every call arrives while it runs

    async def scenario() -> MainframeClient:
        async with client_for(fake_mainframe) as client:
            await asyncio.gather(*(client.get_rules() for _ in range(20)))
            return client

    client = run(scenario())
    assert fake_mainframe.logins == 1 and client.logins == 1
    assert fake_mainframe.count("rules", 200) == 20


@pytest.mark.parametrize("scheme", ["cloudflare", "auth0"])
def test_relogin_after_401_once_for_concurrent_calls(fake_mainframe: FakeMainframe, scheme: str) -> None:
    async def scenario() -> None:
        async with client_for(fake_mainframe, scheme=scheme) as client:
            await client.get_rules()
            fake_mainframe.expire_tokens()
            await asyncio.gather(*(client.get_rules() for _ in range(10)))

    run(scenario())
    assert fake_mainframe.logins == 2
    assert fake_mainframe.count("rules", 401) == 10  # every call was refused once, then repeated
    assert fake_mainframe.count("rules", 200) == 11


def test_relogin_after_403(fake_mainframe: FakeMainframe) -> None:
    fake_mainframe.add_release("demo", "1.0")

    async def scenario() -> list[Job]:
        async with client_for(fake_mainframe) as client:
            await client.login()
            fake_mainframe.unauthorized_next(1, status=403)
            return await client.claim_jobs(1)

    assert len(run(scenario())) == 1
    assert fake_mainframe.logins == 2
    assert len(fake_mainframe.claims) == 1  # the refused POST /jobs leased nothing


@pytest.mark.parametrize("scheme", ["cloudflare", "auth0"])
def test_relogin_before_expiry(fake_mainframe: FakeMainframe, scheme: str) -> None:
    fake_mainframe.token_ttl = 2.0  # the client renews after about 1 s (half of a short lifetime)

    async def scenario() -> None:
        async with client_for(fake_mainframe, scheme=scheme, refresh_margin=1.5) as client:
            await client.get_rules()
            await client.get_rules()
            await asyncio.sleep(MIN_SESSION_REUSE + 0.2)
            await client.get_rules()

    run(scenario())
    assert fake_mainframe.logins == 2
    assert fake_mainframe.count("rules", 401) == 0  # renewed proactively, never refused


def test_token_without_exp_gets_a_default_lifetime(
    fake_mainframe: FakeMainframe, caplog: pytest.LogCaptureFixture
) -> None:
    fake_mainframe.opaque_tokens = True

    async def scenario() -> None:
        async with client_for(fake_mainframe) as client:
            for _ in range(3):
                await client.get_rules()

    with caplog.at_level(logging.WARNING, logger="dragonfly_hybrid"):
        run(scenario())
    assert fake_mainframe.logins == 1  # not a login per call
    assert "no readable exp claim" in caplog.text
    assert "opaque-" not in caplog.text


def test_login_without_cookie_falls_back_to_headers(fake_mainframe: FakeMainframe) -> None:
    fake_mainframe.cookie_login = False
    fake_mainframe.add_release("demo", "1.0")

    async def scenario() -> list[Job]:
        async with client_for(fake_mainframe) as client:
            return await client.claim_jobs(1)

    assert len(run(scenario())) == 1
    assert fake_mainframe.claims[0].worker == "worker-1"


def test_two_workers_are_told_apart(fake_mainframe: FakeMainframe) -> None:
    fake_mainframe.add_worker("worker-2")
    for index in range(4):
        fake_mainframe.add_release(f"p{index}", "1.0")

    async def scenario() -> None:
        async with (
            client_for(fake_mainframe) as one,
            client_for(fake_mainframe, "worker-2", scheme="auth0") as two,
        ):
            jobs_one, jobs_two = await asyncio.gather(one.claim_jobs(2), two.claim_jobs(2))
            outcomes = await asyncio.gather(
                *(one.submit(success(j)) for j in jobs_one), *(two.submit(success(j)) for j in jobs_two)
            )
            assert set(outcomes) == {SubmitOutcome.ACCEPTED}

    run(scenario())
    claimed_by = {claim.name: claim.worker for claim in fake_mainframe.claims}
    submitted_by = {result.body["name"]: result.worker for result in fake_mainframe.results}
    assert claimed_by == submitted_by
    assert sorted(claimed_by.values()) == ["worker-1", "worker-1", "worker-2", "worker-2"]


def test_login_failures_back_off_and_give_up_at_startup(fake_mainframe: FakeMainframe) -> None:
    fake_mainframe.fail_next("root", 503, count=100)
    kinds: list[str] = []

    async def scenario() -> MainframeClient:
        client = client_for(fake_mainframe, login_attempts=4, on_http_error=kinds.append)
        async with client:
            with pytest.raises(AuthError, match="gave up after 4 attempts") as caught:
                await client.get_rules()
            assert "HTTP 503" in str(caught.value)
        return client

    client = run(scenario())
    assert fake_mainframe.count("root") == 4  # bounded, and nothing else was attempted
    assert fake_mainframe.count("rules") == 0
    assert client.login_failures == 4 and kinds == ["login"] * 4


def test_concurrent_callers_share_a_failed_startup_login(fake_mainframe: FakeMainframe) -> None:
    fake_mainframe.fail_next("root", 503, count=100)

    async def scenario() -> list[BaseException | RulesPayload]:
        async with client_for(fake_mainframe, login_attempts=3) as client:
            return await asyncio.gather(*(client.get_rules() for _ in range(5)), return_exceptions=True)

    outcomes = run(scenario())
    assert all(isinstance(outcome, AuthError) for outcome in outcomes)
    assert fake_mainframe.count("root") == 3  # one round of attempts, not one per caller


def test_login_failures_during_a_run_keep_retrying(fake_mainframe: FakeMainframe) -> None:
    async def scenario() -> None:
        async with client_for(fake_mainframe, login_attempts=2) as client:
            await client.login()
            fake_mainframe.expire_tokens()
            fake_mainframe.fail_next("root", 503, count=5)  # more failures than login_attempts
            await client.get_rules()

    run(scenario())
    assert fake_mainframe.count("root", 503) == 5
    assert fake_mainframe.logins == 2


def test_backoff_is_exponential_capped_and_jittered() -> None:
    backoff = Backoff(1.0, 60.0)
    assert [backoff.ceiling(n) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff.ceiling(10_000) == 60
    random.seed(7)
    delays = [backoff.delay(5) for _ in range(200)]
    assert all(0 <= d <= 32 for d in delays) and len(set(delays)) > 150


@pytest.mark.parametrize("scheme", ["cloudflare", "auth0"])
def test_secrets_never_logged_or_shown(
    fake_mainframe: FakeMainframe, caplog: pytest.LogCaptureFixture, scheme: str
) -> None:
    fake_mainframe.add_release("demo", "1.0")
    worker = fake_mainframe.worker
    wrong = NodeSettings(
        **{**fake_mainframe.node_settings(scheme=scheme), "client_secret": "wrong-" + worker.client_secret},
        _env_file=None,  # type: ignore[call-arg]
    )

    async def scenario() -> tuple[str, str]:
        async with client_for(fake_mainframe, scheme=scheme) as client:
            await client.claim_jobs(1)
            fake_mainframe.expire_tokens()
            await client.get_rules()
            shown = repr(client)
        async with MainframeClient(wrong, login_backoff=FAST, login_attempts=2) as refused:
            with pytest.raises(AuthError) as caught:
                await refused.claim_jobs(1)
        return shown, str(caught.value) + repr(caught.value)

    with caplog.at_level(logging.DEBUG):
        shown, error = run(scenario())
    assert "HTTP 403" in error
    tokens = fake_mainframe.issued_tokens
    assert tokens
    for text in (caplog.text, shown, error):
        for secret in (worker.client_secret, worker.password, *tokens):
            assert secret not in text


def test_missing_credentials_are_a_config_error() -> None:
    with pytest.raises(ConfigError, match="DRAGONFLY_CLIENT_ID"):
        MainframeClient(NodeSettings(_env_file=None))  # type: ignore[call-arg]


# -------------------------------------------------------------------------------------------- leases


def test_expired_lease_is_reclaimed_and_old_result_gets_409(fake_mainframe: FakeMainframe) -> None:
    fake = fake_mainframe
    fake.job_timeout = 0.2
    fake.add_worker("worker-2")
    fake.add_release("demo", "1.0")

    async def scenario() -> tuple[Job, Job, SubmitOutcome, SubmitOutcome]:
        async with client_for(fake) as one, client_for(fake, "worker-2") as two:
            [first] = await one.claim_jobs(1)
            assert await two.claim_jobs(1) == []  # leased
            await asyncio.sleep(0.25)
            [second] = await two.claim_jobs(1)
            late = await one.submit(success(first), deadline=time.monotonic() + 5)
            fresh = await two.submit(success(second))
            return first, second, late, fresh

    first, second, late, fresh = run(scenario())
    assert second.attempt == first.attempt + 1 == 2
    assert second.assignment_id != first.assignment_id
    assert late is SubmitOutcome.LEASE_LOST and fresh is SubmitOutcome.ACCEPTED
    from_one = [s for s in fake.submissions if s.worker == "worker-1"]
    assert [s.status for s in from_one] == [409]  # a 409 is never retried
    assert [r.worker for r in fake.results] == ["worker-2"]
    assert [(c.worker, c.attempt) for c in fake.claims] == [("worker-1", 1), ("worker-2", 2)]


def test_dead_letter_after_three_expired_attempts(fake_mainframe: FakeMainframe) -> None:
    fake_mainframe.job_timeout = 0.1
    fake_mainframe.add_release("demo", "1.0")

    async def scenario() -> tuple[list[Job], SubmitOutcome]:
        async with client_for(fake_mainframe) as client:
            jobs = []
            for _ in range(3):
                jobs.extend(await client.claim_jobs(1))
                await asyncio.sleep(0.12)
            assert await client.claim_jobs(1) == []
            return jobs, await client.submit(success(jobs[-1]))

    jobs, outcome = run(scenario())
    assert [j.attempt for j in jobs] == [1, 2, 3]
    assert outcome is SubmitOutcome.LEASE_LOST
    state = fake_mainframe.state("demo", "1.0")
    assert state.status == "FAILED" and state.reason is not None and "dead-lettered" in state.reason


def test_result_from_another_worker_gets_409(fake_mainframe: FakeMainframe) -> None:
    fake_mainframe.add_worker("worker-2")
    fake_mainframe.add_release("demo", "1.0")

    async def scenario() -> SubmitOutcome:
        async with client_for(fake_mainframe) as one, client_for(fake_mainframe, "worker-2") as two:
            [job] = await one.claim_jobs(1)
            return await two.submit(success(job))

    assert run(scenario()) is SubmitOutcome.LEASE_LOST
    assert fake_mainframe.state("demo", "1.0").status == "PENDING"


def test_not_found_and_rejected(fake_mainframe: FakeMainframe, caplog: pytest.LogCaptureFixture) -> None:
    fake_mainframe.add_release("demo", "1.0")

    async def scenario() -> tuple[SubmitOutcome, SubmitOutcome]:
        async with client_for(fake_mainframe) as client:
            [job] = await client.claim_jobs(1)
            unknown = await client.submit(success(job, name="nope"))
            invalid = await client.submit(success(job, score="high"))
            return unknown, invalid

    with caplog.at_level(logging.WARNING, logger="dragonfly_hybrid"):
        unknown, invalid = run(scenario())
    assert unknown is SubmitOutcome.NOT_FOUND and invalid is SubmitOutcome.REJECTED
    assert "score" in caplog.text  # the server's detail is logged
    assert [s.status for s in fake_mainframe.submissions] == [404, 422]


# -------------------------------------------------------------------------------------------- faults


def test_5xx_retried_for_rules_and_submit(fake_mainframe: FakeMainframe) -> None:
    fake_mainframe.add_release("demo", "1.0")
    kinds: list[str] = []

    async def scenario() -> SubmitOutcome:
        async with client_for(fake_mainframe, on_http_error=kinds.append) as client:
            fake_mainframe.fail_next("rules", 503, count=2)
            await client.get_rules()
            [job] = await client.claim_jobs(1)
            fake_mainframe.fail_next("package", 500, count=2)
            return await client.submit(success(job), deadline=time.monotonic() + 10)

    assert run(scenario()) is SubmitOutcome.ACCEPTED
    assert fake_mainframe.count("rules") == 3
    assert [s.status for s in fake_mainframe.submissions] == [500, 500, 200]
    assert kinds == ["5xx"] * 4


def test_rules_give_up_after_retries(fake_mainframe: FakeMainframe) -> None:
    fake_mainframe.fail_next("rules", 502, count=100)

    async def scenario() -> None:
        async with client_for(fake_mainframe, retries=2) as client:
            await client.get_rules()

    with pytest.raises(MainframeError, match=r"GET /rules failed after 3 attempts \(HTTP 502\)"):
        run(scenario())
    assert fake_mainframe.count("rules") == 3


def test_dropped_connection_retried_for_put(fake_mainframe: FakeMainframe) -> None:
    fake_mainframe.add_release("demo", "1.0")

    async def scenario() -> SubmitOutcome:
        async with client_for(fake_mainframe) as client:
            [job] = await client.claim_jobs(1)
            fake_mainframe.drop_next("package")
            return await client.submit(success(job))

    assert run(scenario()) is SubmitOutcome.ACCEPTED
    assert [s.status for s in fake_mainframe.submissions] == [None, 200]


def test_put_whose_answer_was_lost_then_409(
    fake_mainframe: FakeMainframe, caplog: pytest.LogCaptureFixture
) -> None:
    fake_mainframe.add_release("demo", "1.0")

    async def scenario() -> SubmitOutcome:
        async with client_for(fake_mainframe) as client:
            [job] = await client.claim_jobs(1)
            fake_mainframe.drop_next("package", processed=True)
            return await client.submit(success(job))

    with caplog.at_level(logging.INFO, logger="dragonfly_hybrid"):
        assert run(scenario()) is SubmitOutcome.LEASE_LOST
    assert "probably landed" in caplog.text
    assert fake_mainframe.state("demo", "1.0").status == "FINISHED"


def test_submit_gives_up_at_the_deadline(fake_mainframe: FakeMainframe) -> None:
    fake_mainframe.add_release("demo", "1.0")

    async def scenario(delay: bool) -> None:
        async with client_for(fake_mainframe) as client:
            [job] = await client.claim_jobs(1)
            if delay:
                fake_mainframe.delay("package", 2.0)
            else:
                fake_mainframe.fail_next("package", 503, count=1000)
            await client.submit(success(job), deadline=time.monotonic() + 0.3)

    with pytest.raises(MainframeError, match="deadline passed"):
        run(scenario(delay=False))
    fake_mainframe.clear_faults()
    fake_mainframe.add_release("slow", "1.0")
    with pytest.raises(MainframeError, match="deadline passed"):
        run(scenario(delay=True))


def test_claim_not_repeated_once_sent(fake_mainframe: FakeMainframe) -> None:
    """A lost claim answer is an error, not [] ("no job": a `--once` node would stop as drained), and no
    second POST; the lease expires and the job comes back."""
    fake_mainframe.job_timeout = 0.2
    fake_mainframe.add_release("demo", "1.0")

    async def scenario() -> tuple[list[str], list[Job]]:
        problems = []
        async with client_for(fake_mainframe) as client:
            fake_mainframe.drop_next("jobs", processed=True)
            with pytest.raises(MainframeError) as lost:
                await client.claim_jobs(1)
            problems.append(str(lost.value))
            fake_mainframe.fail_next("jobs", 503)
            with pytest.raises(MainframeError) as failed:
                await client.claim_jobs(1)
            problems.append(str(failed.value))
            await asyncio.sleep(0.25)
            return problems, await client.claim_jobs(1)

    (lost, failed), again = run(scenario())
    assert lost.startswith(f"POST /jobs on {fake_mainframe.url}") and "after the request was sent" in lost
    assert failed.startswith(f"POST /jobs on {fake_mainframe.url}") and "answered HTTP 503" in failed
    assert fake_mainframe.count("jobs") == 3  # neither failure was repeated
    assert [c.attempt for c in fake_mainframe.claims] == [1, 2]
    assert again[0].attempt == 2 and again[0].assignment_id == fake_mainframe.claims[1].assignment_id


def test_claim_retried_on_connect_errors(fake_mainframe: FakeMainframe) -> None:
    kinds: list[str] = []

    async def scenario() -> None:
        async with client_for(fake_mainframe, retries=2, on_http_error=kinds.append) as client:
            await client.login()
            fake_mainframe.close()  # nothing listens any more: the request provably never left
            await client.claim_jobs(1)

    with pytest.raises(MainframeError, match=r"POST /jobs on .* failed after 3 attempts \(ConnectError"):
        run(scenario())
    assert kinds == ["connect"] * 3


# ------------------------------------------------------------------------------------------- parsing


def test_jwt_expiry() -> None:
    assert jwt_expiry(make_jwt({"exp": 1_700_000_000})) == 1_700_000_000
    assert jwt_expiry(make_jwt({"exp": 1.5})) == 1.5
    for bad in (
        "",
        "abc",
        "a.b",
        "a.!!!.c",
        make_jwt({"exp": "soon"}),
        make_jwt({"exp": True}),
        make_jwt({}),
    ):
        assert jwt_expiry(bad) is None
    assert jwt_expiry("x.WzFd.y") is None  # the payload is [1], not an object
    # A payload of nested brackets: the decoder's RecursionError crashed the login.
    nested = base64.urlsafe_b64encode(b"[" * 100_000).decode().rstrip("=")
    assert jwt_expiry(f"x.{nested}.y") is None


def test_refresh_delay() -> None:
    assert refresh_delay(3600, 60) == 3540
    assert refresh_delay(100, 60) == 50
    assert refresh_delay(0.5, 60) == MIN_SESSION_REUSE


def test_parsers() -> None:
    job = {
        "name": "a",
        "version": "1",
        "distributions": ["u"],
        "hash": "h",
        "attempt": 1,
        "assignment_id": "x",
    }
    assert parse_job(job) == Job("a", "1", ["u"], "h", 1, "x")
    broken: Any
    for broken in ({**job, "attempt": "1"}, {**job, "distributions": [1]}, {**job, "hash": None}, []):
        with pytest.raises(ValueError):
            parse_job(broken)
    assert parse_rules({"hash": "h", "rules": {"r": "rule r { condition: true }"}}).hash == "h"
    broken_rules: Any
    for broken_rules in ({"hash": "h", "rules": {"r": 1}}, {"rules": {}}, "x"):
        with pytest.raises(ValueError):
            parse_rules(broken_rules)
