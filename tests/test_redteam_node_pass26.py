"""Red-team pass 26, on pass 24's node changes and the one after it (the stop event, the rules back-off,
``header_safe``, the URL checks, SIGTERM/SIGINT during the first login), against the fake mainframe over
real HTTP on 127.0.0.1, with real processes and real signals.

A signal at a precise moment of the start-up (between the first login and the node's own handlers) is sent
by the node process to itself from a hook placed there: the moment is a few hundred microseconds wide, too
narrow to hit from outside. Each test of a fix fails on the code before it; the others pin what held. Node
processes run under a hang guard (communicate's timeout).
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from dragonfly_hybrid.http11 import Http11Transport
from dragonfly_hybrid.node import pipeline
from dragonfly_hybrid.node.jobs import Job, SubmitOutcome, SuccessBody
from dragonfly_hybrid.node.mainframe import Backoff, MainframeClient
from dragonfly_hybrid.node.settings import ConfigError, NodeSettings, header_safe, load_settings

from tests.fakes.mainframe import FakeMainframe, make_jwt
from tests.fakes.pypi import LIGHT_RULE
from tests.test_node import MARK, accepted_by_job, add_releases, run_node, settings_for

HANG_GUARD = 60
"""Seconds a node process may take to stop (each needs a few when nothing is wrong)."""


@pytest.fixture
def fake() -> Iterator[FakeMainframe]:
    with FakeMainframe(job_timeout=30) as server:
        yield server


# --- a signal as the first login hands over to the node -----------------------------------------------------

_HOOKS = {
    # Between the first login's end and the node's handlers (the rule state is built in between).
    "handover": """
from dragonfly_hybrid.node import service
built = service.RuleState.__init__
def hooked(self, *args, **kwargs):
    os.kill(os.getpid(), SIG)
    built(self, *args, **kwargs)
service.RuleState.__init__ = hooked
""",
    # Read by the event loop in the same turn as the login's end: its handler ran after the login was done.
    "login-end": """
import asyncio
from dragonfly_hybrid.node import mainframe
login = mainframe._Cloudflare.login
async def hooked(self, http, margin):
    session = await login(self, http, margin)
    os.kill(os.getpid(), SIG)
    await asyncio.sleep(0)
    return session
mainframe._Cloudflare.login = hooked
""",
    # A second signal as the client closes, after a first one stopped the node during its login.
    "closing": """
from dragonfly_hybrid import http11
close = http11.Http11Transport.aclose
async def hooked(self):
    os.kill(os.getpid(), SIG)
    await close(self)
http11.Http11Transport.aclose = hooked
""",
}


def hooked_node(fake: FakeMainframe, tmp_path: Path, hook: str, sig: signal.Signals) -> subprocess.Popen[str]:
    """``dragonfly-hybrid node`` against ``fake``, with ``_HOOKS[hook]`` sending ``sig`` at its moment."""
    # No proxy: the node's own transport (the "closing" hook's) carries its calls.
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith("DRAGONFLY_") and "proxy" not in k.lower()
    }
    for key, value in fake.node_settings(metrics_port=None, load_duration=0.2, grace_period=20).items():
        environment[f"DRAGONFLY_{key.upper()}"] = str(value)
    environment["DRAGONFLY_RULES_CACHE_DIR"] = str(tmp_path / "cache")
    code = "\n".join(
        [
            "import os, signal, sys",
            f"SIG = signal.{sig.name}",
            _HOOKS[hook],
            "sys.argv = ['dragonfly-hybrid', 'node']",
            "from dragonfly_hybrid.cli import run",
            "run()",
        ]
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )


def stopped(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """The exit status and stderr of a node that should stop by itself (hang guard: HANG_GUARD seconds)."""
    try:
        _, stderr = proc.communicate(timeout=HANG_GUARD)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        raise AssertionError(f"the node ran on after the signal:\n{stderr}") from None
    return proc.returncode, stderr


SIGNALS = pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])


def body_of(job: Job) -> SuccessBody:
    """A clean result of ``job``."""
    return SuccessBody(
        name=job.name,
        version=job.version,
        score=0,
        inspector_url=None,
        rules_matched=[],
        commit=job.hash,
        attempt=job.attempt,
        assignment_id=job.assignment_id,
    )


@SIGNALS
def test_a_signal_between_the_first_login_and_the_nodes_handlers_stops_it_with_0(
    fake: FakeMainframe, tmp_path: Path, sig: signal.Signals
) -> None:
    """The login's handlers were removed before the node's were installed: a signal in between (about
    0.4 ms) met its default action, SIGTERM killing the node (143), SIGINT "interrupted" (130). The
    handlers stay until the node's replace them: it stops before claiming, with 0."""
    add_releases(fake, 3)
    status, stderr = stopped(hooked_node(fake, tmp_path, "handover", sig))
    assert status == 0, stderr
    assert "stopping" in stderr
    assert not fake.claims


@SIGNALS
def test_a_signal_read_as_the_first_login_ends_is_not_lost(
    fake: FakeMainframe, tmp_path: Path, sig: signal.Signals
) -> None:
    """A signal whose handler ran once the login task was done (read by the event loop in the turn the
    login ended) only cancelled a finished login: the node started, claimed and ran on as if never told
    to stop (under an orchestrator: killed at the end of its grace period, with its jobs). It stops."""
    add_releases(fake, 3)
    status, stderr = stopped(hooked_node(fake, tmp_path, "login-end", sig))
    assert status == 0, stderr
    assert "signalled as the first login ended" in stderr
    assert not fake.claims


@SIGNALS
def test_a_second_signal_after_a_stop_during_the_first_login_still_exits_0(
    fake: FakeMainframe, tmp_path: Path, sig: signal.Signals
) -> None:
    """After a first signal had stopped the login, its handlers were removed: a second one while the client
    closed its connections killed the node (143; SIGINT 130), where a second signal to a running node
    exits 0."""
    fake.fail_next("root", 503, count=1_000_000)
    add_releases(fake, 1)
    proc = hooked_node(fake, tmp_path, "closing", sig)
    assert fake.wait_until(lambda: fake.count("root", 503) >= 2, timeout=30)
    proc.send_signal(sig)
    status, stderr = stopped(proc)
    assert status == 0, stderr
    assert "signalled while logging in" in stderr
    assert not fake.claims


# --- a rules endpoint slower than the fetch budget ----------------------------------------------------------


def test_a_rules_endpoint_slower_than_the_budget_still_gives_the_node_its_new_rules(
    fake: FakeMainframe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget cancelled the fetch: a ``GET /rules`` that always answered later than it (15 s; the
    request timeout is 30) was cut each time, and the node scanned with its old set for good. The fetch
    now goes on: the first job after its answer takes it (no second fetch). Each result's ``commit`` names
    the set its ``rules_matched`` came from (the new set has no ``test_marker``)."""
    monkeypatch.setattr(pipeline, "RULES_FETCH_BUDGET", 0.5)
    monkeypatch.setattr(pipeline, "RULES_REFETCH_AFTER", 3600.0)  # no second fetch within the test
    add_releases(fake, 2)

    def slow_new_rules() -> None:
        fake.wait_until(lambda: len(fake.results) >= 2, timeout=30)
        fake.delay("rules", 1.5)
        fake.set_rules("fake-rules-2", {"light_marker": LIGHT_RULE})
        fake.add_release("cut", "1.0", {"setup.py": MARK})
        fake.wait_until(lambda: fake.count("rules") >= 2, timeout=30)  # the slow one has answered
        fake.add_release("after", "1.0", {"setup.py": MARK})

    thread = threading.Thread(target=slow_new_rules)
    thread.start()
    run_node(settings_for(fake, tmp_path, bulk_size=1), max_jobs=4)
    thread.join()
    results = {s.body["name"]: s.body for s in fake.results}
    assert set(accepted_by_job(fake).values()) == {1} and len(results) == 4
    assert (results["cut"]["commit"], results["cut"]["rules_matched"]) == ("fake-rules-1", ["test_marker"])
    assert (results["after"]["commit"], results["after"]["rules_matched"]) == ("fake-rules-2", [])
    assert fake.count("rules") == 2  # the first set, then the slow fetch: never a third


def test_a_fetch_cut_by_the_budget_leaves_no_connection_holding_its_answer(fake: FakeMainframe) -> None:
    """What held: the transport closes a connection whose exchange is cancelled, so the late answer to
    ``GET /rules`` is never read as the answer to the next call (a claim, a submission)."""

    async def scenario() -> None:
        settings = NodeSettings(**fake.node_settings(metrics_port=None), _env_file=None)  # type: ignore[call-arg]
        async with MainframeClient(settings) as client:
            await client.login()
            fake.delay("rules", 2.0)
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(client.get_rules(), 0.3)
            fake.delay("rules", 0)
            fake.set_rules("fake-rules-2")
            fake.add_release("pkg", "1.0", {"setup.py": MARK})
            jobs = await client.claim_jobs(5)
            assert [(job.name, job.hash) for job in jobs] == [("pkg", "fake-rules-2")]
            assert (await client.get_rules()).hash == "fake-rules-2"

    asyncio.run(scenario())


# --- JSON nested too deeply to decode -----------------------------------------------------------------------

DEEP = b"[" * 5000 + b"]" * 5000
"""10 kB past the JSON decoder's recursion limit: its RecursionError is no ValueError."""


class DeepMainframe(FakeMainframe):
    """The fake mainframe, whose next answers on a route carry :data:`DEEP` as their body."""

    def __init__(self, **kwargs: Any) -> None:
        self.deep: Counter[str] = Counter()
        """Route -> how many of its next answers are deep (``jobs``, ``rules``, ``oauth``; ``jobs-503``: as
        a 503's detail, the claim made)."""
        self._deep_lock = threading.Lock()
        super().__init__(**kwargs)

    def _handle(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Any:
        route = {"/jobs": "jobs", "/rules": "rules", "/oauth/token": "oauth"}.get(path, "")
        reply = super()._handle(method, path, query, headers, body)
        with self._deep_lock:
            for key in (route, route + "-503"):
                if reply is not None and self.deep[key] > 0:
                    self.deep[key] -= 1
                    status = 503 if key.endswith("-503") else reply.status
                    return replace(reply, status=status, body=DEEP)
        return reply


@pytest.fixture
def deep() -> Iterator[DeepMainframe]:
    server = DeepMainframe(job_timeout=30)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("route", ["jobs", "jobs-503"])
def test_a_claim_answer_nested_too_deeply_is_a_lost_answer_not_a_crash(
    deep: DeepMainframe, tmp_path: Path, route: str
) -> None:
    """``response.json()`` raises RecursionError, no ValueError, for a body nested past the decoder's
    limit (2 kB of brackets): out of a claim (as its answer, or an error answer's detail) it crashed the
    node with a traceback, every job in flight abandoned. The claim's answer is lost, as any unreadable
    one: its jobs come back when their leases end, and the node claims again."""
    add_releases(deep, 8)
    deep.deep[route] = 1
    run_node(settings_for(deep, tmp_path, bulk_size=2), once=True)
    lost = {c.name for c in deep.claims[:2]}  # the first claim's: leased, its answer unreadable
    assert {name for name, _ in accepted_by_job(deep)} == {f"pkg{i}" for i in range(8)} - lost
    assert set(accepted_by_job(deep).values()) == {1}
    assert all(deep.state(name, "1.0").status == "PENDING" for name in lost)


def test_a_rules_answer_nested_too_deeply_is_a_failed_fetch(deep: DeepMainframe, tmp_path: Path) -> None:
    """Out of ``GET /rules`` for a new set, the RecursionError was "scanning failed": the job dropped, and
    the next job fetched again (no back-off), each dropped. A failed fetch now: the jobs are scanned with
    the last good set."""
    add_releases(deep, 2)

    def new_rules() -> None:
        deep.wait_until(lambda: len(deep.results) >= 2, timeout=30)
        with deep._deep_lock:
            deep.deep["rules"] = 1_000_000
        deep.set_rules("fake-rules-2")
        for i in range(3):
            deep.add_release(f"late{i}", "1.0", {"setup.py": MARK})

    thread = threading.Thread(target=new_rules)
    thread.start()
    run_node(settings_for(deep, tmp_path), max_jobs=5)
    thread.join()
    results = {s.body["name"]: s.body for s in deep.results}
    assert len(results) == 5 and set(accepted_by_job(deep).values()) == {1}
    assert all(results[f"late{i}"]["commit"] == "fake-rules-1" for i in range(3))
    assert deep.count("rules") == 2  # the first set; then one fetch (not retried: a 200), not one per job


def test_an_auth0_answer_nested_too_deeply_is_a_failed_login(deep: DeepMainframe, tmp_path: Path) -> None:
    """At start-up it was a crash with a traceback (exit 3 at once); it is a failed login, retried."""
    add_releases(deep, 2)
    deep.deep["oauth"] = 1
    run_node(settings_for(deep, tmp_path, scheme="auth0"), once=True)
    assert len(accepted_by_job(deep)) == 2
    assert deep.count("oauth") == 2


# --- the stop event and submissions -------------------------------------------------------------------------


@pytest.mark.parametrize("first", ["claim", "submission"])
def test_a_submission_waiting_for_a_new_login_when_the_node_stops_is_delivered(
    fake: FakeMainframe, first: str
) -> None:
    """What held: a claim and a submission both wait for a login (the token expired, the login answers
    503), whichever started it. The stop cancels the claim's wait, and the login with it when the claim
    was logging in; the submission logs in itself and is delivered once; nothing more is leased."""
    fake.add_release("held", "1.0", {"setup.py": MARK})
    fake.add_release("queued", "1.0", {"setup.py": MARK})

    async def scenario() -> SubmitOutcome:
        settings = NodeSettings(**fake.node_settings(metrics_port=None), _env_file=None)  # type: ignore[call-arg]
        quick = Backoff(0.1, 0.2)
        async with MainframeClient(settings, login_backoff=quick, retry_backoff=quick) as client:
            await client.login()
            [job] = await client.claim_jobs(1)
            fake.expire_tokens()
            fake.fail_next("root", 503, count=1_000_000)
            stop = asyncio.Event()
            body = body_of(job)
            calls = {
                "claim": lambda: client.claim_jobs(1, stop=stop),
                "submission": lambda: client.submit(body, deadline=time.monotonic() + 30),
            }
            order = [first, *(name for name in calls if name != first)]
            tasks = {}
            for name in order:
                tasks[name] = asyncio.ensure_future(calls[name]())
                await asyncio.sleep(0.2)
            await asyncio.wait_for(until(lambda: fake.count("root", 503) >= 2), HANG_GUARD)
            stop.set()
            assert await asyncio.wait_for(tasks["claim"], HANG_GUARD) == []
            fake.clear_faults()
            outcome = await asyncio.wait_for(tasks["submission"], HANG_GUARD)
            assert isinstance(outcome, SubmitOutcome)
            return outcome

    assert asyncio.run(scenario()) is SubmitOutcome.ACCEPTED
    assert accepted_by_job(fake) == Counter({("held", "1.0"): 1})
    assert [c.name for c in fake.claims] == ["held"]
    assert fake.state("queued", "1.0").status == "QUEUED"


async def until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` without holding up the event loop (the fake's ``wait_until`` sleeps)."""
    while not predicate():
        await asyncio.sleep(0.02)


# --- header_safe and the URL checks -------------------------------------------------------------------------


def _header_sent(transport: httpx.AsyncBaseTransport, value: str) -> bytes | None:
    """The bytes of header ``X-T: value`` as they reach a raw socket (None: the request was not sent)."""
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []

    def answer() -> None:
        connection, _ = server.accept()
        with connection:
            data = b""
            while b"\r\n\r\n" not in data and (chunk := connection.recv(65536)):
                data += chunk
            received.append(data)
            connection.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()

    async def send() -> None:
        async with httpx.AsyncClient(transport=transport) as client:
            await client.get(f"http://127.0.0.1:{server.getsockname()[1]}/", headers={"X-T": value})

    try:
        asyncio.run(send())
    except (httpx.HTTPError, UnicodeError):
        return None
    finally:
        server.close()
    thread.join(timeout=HANG_GUARD)
    head = received[0].split(b"\r\n")
    return next(line[len(b"X-T:") :] for line in head if line.lower().startswith(b"x-t:"))


REAL_TOKENS = [
    make_jwt({"sub": "worker", "exp": 2_000_000_000}),
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImFiYyJ9.eyJhdWQiOlsiYWJjIl0sImV4cCI6MX0.c2lnbmF0dXJl",
    base64.b64encode(bytes(range(40))).decode(),  # standard base64: + / and = padding
    base64.urlsafe_b64encode(bytes(range(200, 241))).decode(),
    "a" * 8000,
    "two words\tand a tab",
]


def test_every_value_header_safe_accepts_goes_out_as_it_is_and_real_tokens_are_accepted() -> None:
    """What held: every real-world token shape is accepted, and what is accepted (random strings of ASCII,
    controls and a few non-ASCII characters) reaches the server byte for byte through both transports
    (ours, and httpx's own when a proxy is configured)."""
    rng = random.Random(26)
    alphabet = [chr(c) for c in range(0x80)] + ["\u00e9", "\u00a0", "\u2028"]
    values = REAL_TOKENS + ["".join(rng.choices(alphabet, k=rng.randint(1, 5))) for _ in range(60)]
    accepted = [value for value in values if header_safe(value)]
    assert set(REAL_TOKENS) <= set(accepted) and len(accepted) < len(values)
    for value in accepted:
        for transport in (Http11Transport(), httpx.AsyncHTTPTransport()):
            assert _header_sent(transport, value) == b" " + value.encode("ascii"), (transport, value)


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("field", "value", "calls"),
    [
        ("base_url", "http://[::1]:8080/", "http://[::1]:8080/jobs"),
        ("base_url", "HTTPS://dragonfly.example", "https://dragonfly.example/jobs"),
        ("base_url", "https://dragonfly.example:8443/api/v1/", "https://dragonfly.example:8443/api/v1/jobs"),
        ("auth0_domain", "tenant.us.auth0.com", "https://tenant.us.auth0.com/oauth/token"),
        ("auth0_domain", "tenant.example:8443/", "https://tenant.example:8443/oauth/token"),
        ("auth0_domain", "[::1]:8443", "https://[::1]:8443/oauth/token"),
    ],
)
def test_valid_addresses_pass_the_new_url_checks(field: str, value: str, calls: str) -> None:
    """What held: an IPv6 host, a trailing slash, an upper-case scheme, a port with a path prefix, and an
    Auth0 domain given as a bare host (with a port too) are accepted, and called where they say."""
    settings = load_settings(None, {field: value}, env_file=None)
    url = settings.base_url + "/jobs" if field == "base_url" else settings.auth0_token_url()
    assert httpx.URL(url) == httpx.URL(calls)


@pytest.mark.usefixtures("clean_env")
def test_a_node_reaches_a_mainframe_named_with_an_upper_case_scheme_and_a_trailing_slash(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """What held: the URL is used as httpx reads it, whatever the case of its scheme."""
    add_releases(fake, 2)
    base = fake.url.replace("http://", "HTTP://") + "/"
    run_node(settings_for(fake, tmp_path, base_url=base), once=True)
    assert accepted_by_job(fake) == Counter({("pkg0", "1.0"): 1, ("pkg1", "1.0"): 1})


@pytest.mark.usefixtures("clean_env")
def test_a_port_that_is_no_number_up_to_65535_is_refused_at_start() -> None:
    """What held: a port that is no number up to 65535 is exit 2 (the node's check), never a crash."""
    for value in ("http://127.0.0.1:65536", "http://127.0.0.1:+80", "http://127.0.0.1:\u0668\u0660"):
        with pytest.raises(ConfigError, match="DRAGONFLY_BASE_URL"):
            load_settings(None, {"base_url": value}, env_file=None)


@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    ("field", "value"),
    [("base_url", "https://mainframe.example:0"), ("auth0_domain", "tenant.example:0/")],
)
def test_port_0_is_refused_at_start_naming_the_variable(field: str, value: str) -> None:
    """Accepted, port 0 had the node's transport call the scheme's default port (80 or 443) instead of
    the one configured: its logins went to another port of the host, and failed as "connect errors"
    after five attempts (exit 3). It is exit 2 at start, naming the variable."""
    with pytest.raises(ConfigError, match=rf"DRAGONFLY_{field.upper()}: must not name port 0"):
        load_settings(None, {field: value}, env_file=None)
