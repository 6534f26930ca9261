"""Red-team pass 24: the node as a service that must never lose a job or a result, nor leak a secret, against
the fake mainframe over real HTTP on 127.0.0.1, with real processes and real signals. Its network and
lifecycle: logins that fail or hand out garbage, answers lost or garbled, a rules endpoint that keeps
failing, SIGTERM/SIGINT while the node logs in again or claims, a second signal, and settings that can
never work.

Each test of a fix fails on the code before it; the others pin what held (a claim sent before the signal is
finished; a second signal ends the drain at once). Node processes run under a hang guard (communicate's
timeout): a node that waits out its grace period (set to an hour where that is the failure) fails the test
instead of holding it.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid.node import pipeline
from dragonfly_hybrid.node.settings import NodeSettings
from pydantic import SecretStr

from tests.fakes.mainframe import FakeMainframe
from tests.test_node import MARK, accepted_by_job, add_releases, node_process, run_node, settings_for

HANG_GUARD = 60
"""Seconds a node process may take to stop (each needs a few when nothing is wrong)."""
SECRET = "S3cr3t-pass24-XYZZY"


class FaultyMainframe(FakeMainframe):
    """The fake mainframe with the faults of this pass: logins that hand out a token that cannot be sent
    back in a header, and answers whose body does not decode as their ``Content-Encoding`` says."""

    def __init__(self, **kwargs: Any) -> None:
        # Set before the server starts: its threads read them.
        self.bad_tokens = 0
        """The next this many logins issue their token with :attr:`bad_suffix` appended."""
        self.bad_suffix = "\u00e9"
        self.garbled: Counter[str] = Counter()
        """Route (``root``, ``jobs``, ``package``) -> how many of its next answers to garble."""
        self.claim_arrived = threading.Event()
        """Set when a ``POST /jobs`` reaches the fake (before any delay)."""
        self._faults_lock = threading.Lock()
        super().__init__(**kwargs)

    def _issue(self, worker: str) -> str:  # called with the fake's lock held
        token = super()._issue(worker)
        if self.bad_tokens <= 0:
            return token
        self.bad_tokens -= 1
        bad = token + self.bad_suffix
        self._tokens[bad] = self._tokens.pop(token)
        return bad

    def _handle(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Any:
        route = {"/": "root", "/jobs": "jobs", "/package": "package"}.get(path, "")
        if route == "jobs":
            self.claim_arrived.set()
        reply = super()._handle(method, path, query, headers, body)
        with self._faults_lock:
            garble = reply is not None and self.garbled[route] > 0
            if garble:
                self.garbled[route] -= 1
        if garble and reply is not None:
            # Announced as gzip, sent as it is (JSON): the body cannot be decoded.
            reply = replace(reply, headers={**reply.headers, "Content-Encoding": "gzip"})
        return reply


@pytest.fixture
def fake() -> Iterator[FakeMainframe]:
    with FakeMainframe(job_timeout=30) as server:
        yield server


@pytest.fixture
def faulty() -> Iterator[FaultyMainframe]:
    server = FaultyMainframe(job_timeout=30)
    try:
        yield server
    finally:
        server.close()


def stderr_reader(proc: subprocess.Popen[str], wanted: str) -> tuple[threading.Event, list[str]]:
    """Read the process's stderr in the background; the event is set once a line holds ``wanted``."""
    seen, lines = threading.Event(), []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if wanted in line:
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    return seen, lines


def finished(proc: subprocess.Popen[str]) -> int:
    """The exit status of a node told to stop (hang guard: HANG_GUARD seconds)."""
    try:
        return proc.wait(timeout=HANG_GUARD)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the node did not stop within {HANG_GUARD} s") from None


# --- SIGTERM/SIGINT while the node logs in again ------------------------------------------------------------


def _node_logging_in_again(fake: FakeMainframe, tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    """A node that has done its first jobs and is now logging in again, in vain (its token expired, every
    login answers 503), with a job queued it has not claimed."""
    add_releases(fake, 3)
    proc = node_process(fake, tmp_path, **env)
    assert fake.wait_until(lambda: len(fake.results) == 3, timeout=30)
    fake.fail_next("root", 503, count=1_000_000)
    fake.expire_tokens()
    assert fake.wait_until(lambda: fake.count("root", 503) >= 2, timeout=30)
    fake.add_release("late", "1.0", {"setup.py": MARK})
    return proc


def test_a_node_stopped_while_it_logs_in_again_sends_no_claim_when_the_login_works(
    faulty: FaultyMainframe, tmp_path: Path
) -> None:
    """SIGTERM logs "stopping: no new claims", yet the claim waiting for the login went out once the login
    worked: the node claimed (and leased) jobs after it was told to stop; near the end of the grace period
    they were left at once, each lease an attempt of the three the server gives a job."""
    proc = _node_logging_in_again(faulty, tmp_path)
    stopping, lines = stderr_reader(proc, "stopping: no new claims")
    proc.send_signal(signal.SIGTERM)
    assert stopping.wait(timeout=HANG_GUARD), "".join(lines)
    faulty.clear_faults()  # the logins work again
    assert finished(proc) == 0, "".join(lines)
    assert faulty.state("late", "1.0").status == "QUEUED", "".join(lines)  # never claimed
    assert {c.name for c in faulty.claims} == {"pkg0", "pkg1", "pkg2"}
    assert set(accepted_by_job(faulty).values()) == {1}


def test_a_node_stopped_while_its_logins_keep_failing_exits_without_waiting_out_the_grace_period(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """Nothing in flight, the mainframe's login down: the drain waited for the claim, which waited for the
    login, for the whole grace period (here an hour; 60 s by default)."""
    proc = _node_logging_in_again(fake, tmp_path, DRAGONFLY_GRACE_PERIOD="3600")
    stopping, lines = stderr_reader(proc, "stopping: no new claims")
    proc.send_signal(signal.SIGINT)
    assert finished(proc) == 0, "".join(lines)
    assert stopping.is_set()
    assert fake.state("late", "1.0").status == "QUEUED"


def test_a_claim_sent_before_the_signal_is_finished_and_submitted(
    faulty: FaultyMainframe, tmp_path: Path
) -> None:
    """What held, and what the fix above must keep: a claim the server has (its answer slow) is awaited
    after SIGTERM, and each job it leased is scanned and submitted once."""
    add_releases(faulty, 4)
    faulty.delay("jobs", 2.0)
    proc = node_process(faulty, tmp_path, DRAGONFLY_BULK_SIZE="4")
    assert faulty.claim_arrived.wait(timeout=30)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 0, stderr
    assert len(faulty.claims) == 4, stderr
    assert accepted_by_job(faulty) == Counter({(f"pkg{i}", "1.0"): 1 for i in range(4)})


def test_a_second_signal_ends_the_drain_at_once_and_nothing_is_submitted_twice(
    fake: FakeMainframe, tmp_path: Path
) -> None:
    """What held: the second signal ends an hour-long grace period; the jobs still downloading are left
    to the server (PENDING, unanswered), none is answered twice."""
    add_releases(fake, 6)
    fake.delay("files", 5.0)
    proc = node_process(fake, tmp_path, DRAGONFLY_GRACE_PERIOD="3600", DRAGONFLY_BULK_SIZE="3")
    stopping, lines = stderr_reader(proc, "stopping: no new claims")
    assert fake.wait_until(lambda: fake.count("files") >= 1 or len(fake.claims) >= 3, timeout=30)
    proc.send_signal(signal.SIGTERM)
    assert stopping.wait(timeout=HANG_GUARD), "".join(lines)
    proc.send_signal(signal.SIGTERM)
    assert finished(proc) == 0, "".join(lines)
    assert any("grace period over" in line for line in lines), "".join(lines)
    assert set(accepted_by_job(fake).values()) <= {1}
    unanswered = {(c.name, c.version) for c in fake.claims} - set(accepted_by_job(fake))
    assert unanswered and all(fake.state(*key).status == "PENDING" for key in unanswered)


# --- logins that hand out a token the node cannot send back -------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "suffix"),
    [("cloudflare", "\u00e9"), ("cloudflare", "\x01"), ("auth0", "\u00e9"), ("auth0", "\r\n")],
)
def test_a_token_that_cannot_be_sent_back_is_a_failed_login(
    faulty: FaultyMainframe, tmp_path: Path, scheme: str, suffix: str
) -> None:
    """A login mid-run that hands out a token holding a non-ASCII character crashed the node (a
    UnicodeEncodeError out of the claim: every job in flight abandoned); one holding a control character
    failed every call as a transport error, and no 401 ever came to log in again: each result was dropped
    at its lease's end. Such a token is now a failed login, retried with backoff like any other."""
    add_releases(faulty, 12)
    faulty.delay("files", 0.05)
    faulty.bad_suffix = suffix

    def spoil_the_next_logins() -> None:
        faulty.wait_until(lambda: len(faulty.results) >= 3, timeout=30)
        with faulty._lock:
            faulty.bad_tokens = 2
        faulty.expire_tokens()

    thread = threading.Thread(target=spoil_the_next_logins)
    thread.start()
    metrics = run_node(settings_for(faulty, tmp_path, scheme=scheme), once=True)
    thread.join()
    assert accepted_by_job(faulty) == Counter({(f"pkg{i}", "1.0"): 1 for i in range(12)})
    assert faulty.bad_tokens == 0  # both bad tokens were handed out (and refused)
    assert metrics.registry.get_sample_value("dragonfly_http_errors_total", {"kind": "login"}) == 2


# --- answers whose body does not decode ---------------------------------------------------------------------


def test_a_claim_answer_that_does_not_decode_is_a_lost_answer(
    faulty: FaultyMainframe, tmp_path: Path
) -> None:
    """httpx's DecodingError is no TransportError: out of a claim it crashed the node (exit 3, every job in
    flight abandoned). It is an answer lost after the request was sent: the claim's jobs come back when
    their leases end, and the node claims again."""
    add_releases(faulty, 10)
    faulty.garbled["jobs"] = 1
    metrics = run_node(settings_for(faulty, tmp_path, bulk_size=4), once=True)
    lost = {c.name for c in faulty.claims[:4]}  # the first claim's jobs: leased, the answer unreadable
    assert {name for name, _ in accepted_by_job(faulty)} == {f"pkg{i}" for i in range(10)} - lost
    assert set(accepted_by_job(faulty).values()) == {1}
    assert all(faulty.state(name, "1.0").status == "PENDING" for name in lost)
    assert metrics.registry.get_sample_value("dragonfly_http_errors_total", {"kind": "network"}) == 1


def test_a_submission_answer_that_does_not_decode_is_retried(faulty: FaultyMainframe, tmp_path: Path) -> None:
    """Out of ``PUT /package`` the DecodingError was "delivering the result failed": never retried, so a
    garbled 503 lost the result. It is retried as any lost answer."""
    add_releases(faulty, 4)
    faulty.fail_next("package", 503, count=2)
    faulty.garbled["package"] = 2
    metrics = run_node(settings_for(faulty, tmp_path), once=True)
    assert [s.status for s in faulty.submissions].count(503) == 2
    assert accepted_by_job(faulty) == Counter({(f"pkg{i}", "1.0"): 1 for i in range(4)})
    sample = metrics.registry.get_sample_value
    assert sample("dragonfly_jobs_claimed_total") == sample(
        "dragonfly_jobs_finished_total", {"outcome": "success"}
    )


def test_a_login_answer_that_does_not_decode_is_a_failed_login(
    faulty: FaultyMainframe, tmp_path: Path
) -> None:
    """At start-up it was a crash with a traceback (exit 3 at once); it is a failed login, retried."""
    add_releases(faulty, 2)
    faulty.garbled["root"] = 1
    run_node(settings_for(faulty, tmp_path), once=True)
    assert len(accepted_by_job(faulty)) == 2
    assert faulty.logins == 2  # the garbled one and the one that worked


# --- a rules endpoint that keeps failing --------------------------------------------------------------------


def test_a_rules_endpoint_that_keeps_failing_is_asked_once_not_once_per_job(
    fake: FakeMainframe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jobs naming a new rule set while ``GET /rules`` answers 503: each job fetched the set again (six
    tries with backoff, up to ~30 s; with a hanging endpoint six request timeouts, 3 minutes by default),
    one after the other under the rules lock, so the jobs behind lost their leases, each lease an attempt
    of three. A failed fetch is now not repeated for a minute; its jobs are scanned with the last good set
    (their results say which)."""
    # The six tries always end first here (raising=False: the code before the fix has no budget).
    monkeypatch.setattr(pipeline, "RULES_FETCH_BUDGET", 60.0, raising=False)
    add_releases(fake, 3)
    late = 6

    def new_rules_unreachable() -> None:
        fake.wait_until(lambda: len(fake.results) >= 3, timeout=30)
        fake.fail_next("rules", 503, count=1_000_000)
        fake.set_rules("fake-rules-2")
        for i in range(late):
            fake.add_release(f"late{i}", "1.0", {"setup.py": MARK})

    thread = threading.Thread(target=new_rules_unreachable)
    thread.start()
    run_node(settings_for(fake, tmp_path), max_jobs=3 + late)
    thread.join()
    assert fake.count("rules", 503) == 6  # one fetch: the first try and five retries
    results = {s.body["name"]: s.body for s in fake.results}
    assert len(results) == 3 + late and set(accepted_by_job(fake).values()) == {1}
    for i in range(late):
        assert results[f"late{i}"]["commit"] == "fake-rules-1"  # what it was scanned with


# --- settings that can never work ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DRAGONFLY_CLIENT_SECRET", SECRET + "\n"),  # a secret file's trailing newline
        ("DRAGONFLY_CLIENT_SECRET", "s\u00e9cret-" + SECRET),
        ("DRAGONFLY_CLIENT_SECRET", " " + SECRET),
        ("DRAGONFLY_CLIENT_ID", "id\r\nX-Injected: " + SECRET),
        ("DRAGONFLY_BASE_URL", f"http://user:{SECRET}@127.0.0.1:not-a-port/"),
        ("DRAGONFLY_BASE_URL", "http://127.0.0.1:99999"),
        ("DRAGONFLY_AUTH0_DOMAIN", "tenant.example:80:80"),
    ],
)
def test_settings_that_can_never_work_are_exit_2_naming_the_variable_and_not_the_secret(
    fake: FakeMainframe, tmp_path: Path, variable: str, value: str
) -> None:
    """A Cloudflare service token with a line break, a non-ASCII character or whitespace at an end (sent in
    a header) was five failed logins and exit 3 ("cannot log in"), or an internal error with a traceback;
    a URL whose port is not a number up to 65535 was an internal error at the first request (httpx reads
    the port, the standard parser the validation used does not). Each is now exit 2 at start, naming the
    variable, before any request."""
    proc = node_process(fake, tmp_path, "--once", **{variable: value})
    stdout, stderr = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 2, stderr
    assert variable in stderr and "Traceback" not in stderr, stderr
    assert SECRET not in stderr + stdout
    assert fake.requests == []


@pytest.mark.usefixtures("clean_env")
def test_auth0_credentials_go_in_a_json_body_so_any_character_is_fine() -> None:
    """The header check is the Cloudflare token's only: the Auth0 password grant sends its credentials as
    JSON, where a non-ASCII password (or client secret) travels as it is."""
    settings = NodeSettings(
        client_id="id",
        client_secret=SecretStr("s\u00e9cret"),
        username="user",
        password=SecretStr("p\u00e4ssw\u00f6rd\n"),
        _env_file=None,  # type: ignore[call-arg]
    )
    assert settings.auth_scheme() == "auth0"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_node_signalled_during_its_first_login_exits_0_at_once(
    fake: FakeMainframe, tmp_path: Path, sig: signal.Signals
) -> None:
    """Before its handlers were installed (the first login, retried while the mainframe is down), SIGTERM
    killed the node (143) and SIGINT was "interrupted" (130): the node holds nothing yet, so it stops as
    after a drain, with 0."""
    fake.fail_next("root", 503, count=1_000_000)
    add_releases(fake, 1)
    proc = node_process(fake, tmp_path)
    assert fake.wait_until(lambda: fake.count("root", 503) >= 2, timeout=30)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 0, stderr
    assert "signalled while logging in" in stderr
    assert not fake.claims
