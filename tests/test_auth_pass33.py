"""Authentication pass 33: the node's two login schemes against the contract's "Authentication" section,
against the fake mainframe over real HTTP on 127.0.0.1. Each test of a fix fails on the code before it; the
``review`` tests pin what held:

* the ``CF_Authorization`` cookie was the first ``Set-Cookie`` naming it: a deletion sent before the new
  cookie (or an older one, one for another path or domain) became the session, refused on every call, a
  login each. It is read as a browser keeps it: the last wins, an expired one deletes it, one for another
  domain or a path not covering the API is not the session;
* a token whose ``exp`` (or an Auth0 ``expires_in``) is an integer too large for a float crashed the login
  (OverflowError); NaN or infinity made a session never renewed before it was refused;
* a login answered with a redirect that sets the cookie was a failed login, forever;
* a login answered 429 or 503 with ``Retry-After`` was tried again at once (full jitter from 0 s).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from dragonfly_hybrid.node.jobs import MainframeError
from dragonfly_hybrid.node.mainframe import (
    DEFAULT_SESSION_LIFETIME,
    AuthError,
    Backoff,
    MainframeClient,
    jwt_expiry,
)
from dragonfly_hybrid.node.settings import ConfigError, NodeSettings

from tests.fakes.mainframe import (
    API_ROUTES,
    CF_COOKIE,
    FakeMainframe,
    _b64url,
    _json_reply,
    _Reply,
    _route_of,
)
from tests.test_mainframe import FAST, settings_for
from tests.test_node import node_process

T = TypeVar("T")
HANG_GUARD = 60

pytestmark = pytest.mark.usefixtures("clean_env")


class _Pairs(dict[str, str]):
    """Reply headers that may repeat a name (several ``Set-Cookie``): the fake's handler sends ``items()``."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs

    def items(self) -> Any:
        return list(self.pairs)


class AuthMainframe(FakeMainframe):
    """The fake mainframe whose logins answer what a test asks: :attr:`cookies` turns the token issued into
    the ``Set-Cookie`` values sent, :attr:`login_status` and :attr:`login_headers` change the Cloudflare
    login's answer, :attr:`oauth_answer` the Auth0 one. Records the ``Cookie`` header of every API call and
    every Auth0 request body."""

    def __init__(self, **kwargs: Any) -> None:
        self.cookies: Callable[[str], list[str]] = lambda token: [f"{CF_COOKIE}={token}; Path=/"]
        self.login_status = 200
        self.login_headers: dict[str, str] = {}
        self.oauth_answer: Callable[[dict[str, Any]], dict[str, Any]] = lambda answer: answer
        self.sent_cookies: list[str | None] = []
        self.oauth_bodies: list[dict[str, Any]] = []
        super().__init__(**kwargs)

    def _handle(self, method: str, path: str, query: str, headers: Any, body: bytes) -> Any:
        if _route_of(method, path) in API_ROUTES:
            with self._lock:
                self.sent_cookies.append(headers.get("Cookie"))
        return super()._handle(method, path, query, headers, body)

    def _root(self, headers: Any) -> tuple[_Reply, str | None]:
        reply, worker = super()._root(headers)
        cookie = reply.headers.get("Set-Cookie")
        if cookie is None:
            return reply, worker
        token = cookie.split(";")[0].partition("=")[2]
        pairs = [("Set-Cookie", value) for value in self.cookies(token)] + list(self.login_headers.items())
        return replace(reply, status=self.login_status, headers=_Pairs(pairs)), worker

    def _oauth(self, body: bytes) -> tuple[_Reply, str | None]:
        self.oauth_bodies.append(json.loads(body))
        reply, worker = super()._oauth(body)
        if reply.status != 200:
            return reply, worker
        answer = self.oauth_answer(json.loads(reply.body))
        return _Reply(200, json.dumps(answer).encode()), worker


@pytest.fixture
def fake() -> Iterator[AuthMainframe]:
    with AuthMainframe() as server:
        yield server


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, HANG_GUARD))


def calls(
    fake: FakeMainframe, count: int = 4, *, scheme: str = "cloudflare", **options: Any
) -> MainframeClient:
    """A client of ``fake`` (quick retries) after ``count`` ``GET /rules`` made one after the other."""

    async def scenario() -> MainframeClient:
        options.setdefault("login_backoff", FAST)
        async with MainframeClient(
            settings_for(fake, scheme=scheme), retry_backoff=FAST, **options
        ) as client:
            for _ in range(count):
                await client.get_rules()
            return client

    return run(scenario())


# --- the CF_Authorization cookie ----------------------------------------------------------------------------

EXPIRED = "Expires=Thu, 01 Jan 1970 00:00:00 GMT"


@pytest.mark.parametrize(
    "cookies",
    [
        ["{c}=stale; Path=/", "{c}={t}; Path=/"],
        ["{c}=deleted; " + EXPIRED + "; Path=/", "{c}={t}; Path=/; Secure; HttpOnly; SameSite=None"],
        ["{c}=deleted; Max-Age=0", "{c}={t}; Max-Age=86400"],
        ["{c}=other; Path=/elsewhere", "{c}={t}; Path=/"],
        ["{c}=other; Domain=other.example", "{c}={t}; Domain=127.0.0.1; Path=/; SameSite=Lax"],
        ["__cf_bm=bot; Path=/; HttpOnly", '{c}="{t}"; Path=/; Expires=Fri, 01 Jan 2100 00:00:00 GMT'],
    ],
    ids=[
        "older-first",
        "deletion-first",
        "max-age-0-first",
        "other-path-first",
        "other-domain-first",
        "quoted",
    ],
)
def test_the_session_is_the_cookie_a_browser_would_keep(fake: AuthMainframe, cookies: list[str]) -> None:
    """Several ``Set-Cookie`` headers: the one a browser keeps for the API is the session. The first was
    taken: a deletion or an older cookie sent first was refused on every call (a login each, then the
    call failed)."""
    fake.cookies = lambda token: [c.format(c=CF_COOKIE, t=token) for c in cookies]
    calls(fake)
    assert fake.logins == 1
    assert fake.count("rules", 200) == 4 and fake.count("rules", 401) == 0
    [token] = fake.issued_tokens
    assert set(fake.sent_cookies) == {f"{CF_COOKIE}={token}"}


@pytest.mark.parametrize(
    "cookies",
    [
        ["{c}={t}; Max-Age=0"],
        ["{c}={t}; " + EXPIRED],
        ["{c}={t}; Path=/", "{c}=; Max-Age=-1; Path=/"],
        ["{c}={t}; Path=/elsewhere"],
        ["{c}={t}; Domain=other.example"],
    ],
    ids=["max-age-0", "expires-past", "set-then-deleted", "other-path", "other-domain"],
)
def test_a_cookie_that_is_not_the_sessions_is_not_sent(
    fake: AuthMainframe, caplog: pytest.LogCaptureFixture, cookies: list[str]
) -> None:
    """A cookie deleted by its own answer, or set for another path or domain, is no session: the node
    sends the service token's headers (the contract allows it), as when no cookie is set."""
    fake.cookies = lambda token: [c.format(c=CF_COOKIE, t=token) for c in cookies]
    with caplog.at_level(logging.WARNING, logger="dragonfly_hybrid"):
        calls(fake)
    assert f"without a {CF_COOKIE} cookie" in caplog.text
    assert fake.sent_cookies == [None] * 4 and fake.count("rules", 200) == 4
    assert fake.login_attempts == 1


@pytest.mark.parametrize("status", [302, 303, 307])
def test_a_login_redirect_that_sets_the_cookie_is_a_login_and_is_not_followed(
    fake: AuthMainframe, status: int
) -> None:
    """Cloudflare in front of an origin whose ``GET /`` redirects: the cookie is set on the redirect. That
    was a failed login, five of them, then exit 3; a browser keeps the cookie, and so does the node (the
    redirect is not followed)."""
    fake.login_status = status
    fake.login_headers = {"Location": "/docs"}
    calls(fake)
    assert fake.login_attempts == 1 and fake.count("rules", 200) == 4
    assert not [r for r in fake.requests if r.path == "/docs"]


def test_review_a_login_redirect_without_the_cookie_is_a_failed_login(fake: AuthMainframe) -> None:
    fake.login_status = 302
    fake.login_headers = {"Location": "https://team.cloudflareaccess.com/cdn-cgi/access/login/x"}
    fake.cookies = lambda token: ["CF_AppSession=x; Path=/"]
    with pytest.raises(AuthError, match=r"answered HTTP 302.*gave up after 2 attempts"):
        calls(fake, 1, login_attempts=2)


# --- the token's exp, read without verifying ---------------------------------------------------------------


def _jwt(payload: str) -> str:
    """A token whose payload is ``payload`` as it is (JSON that ``make_jwt`` cannot write: NaN, 10**400)."""
    return f"{_b64url(b'{}')}.{_b64url(payload.encode())}.sig"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ('{"exp": NaN}', None),
        ('{"exp": Infinity}', None),
        ('{"exp": -Infinity}', None),
        ('{"exp": 1e400}', None),
        ('{"exp": 1' + "0" * 400 + "}", None),
        ('{"exp": "1700000000"}', None),
        ('{"exp": true}', None),
        ("{}", None),
        ("[1]", None),
        ('{"exp": 1700000000}', 1700000000.0),
        ('{"exp": 1700000000.5}', 1700000000.5),
        ('{"exp": -5}', -5.0),
    ],
)
def test_jwt_expiry_is_a_finite_number_or_none(payload: str, expected: float | None) -> None:
    """An integer too large for a float raised OverflowError (out of the login: a crash); NaN and infinity
    came back as they are (a session never renewed before it was refused)."""
    assert jwt_expiry(_jwt(payload)) == expected


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b", "a.!!!.c", "a.b.c.d", "", "...", "e30.e30"])
def test_review_a_token_that_is_no_jwt_has_no_expiry(token: str) -> None:
    assert jwt_expiry(token) is None


@pytest.mark.parametrize(
    "exp",
    ["NaN", "Infinity", "1e400", "1" + "0" * 400, '"soon"', "-1", "0", "null"],
    ids=["nan", "inf", "1e400", "10**400", "string", "negative", "0", "null"],
)
def test_a_cookie_whose_exp_is_no_usable_time_lasts_the_default_lifetime(
    fake: AuthMainframe, caplog: pytest.LogCaptureFixture, exp: str
) -> None:
    """The node logs in once, is renewed after the default lifetime (not never, not per call), and says so;
    an ``exp`` of ``10**400`` crashed the login."""
    tokens: list[str] = []

    def cookie(issued: str) -> list[str]:
        token = _jwt(f'{{"sub": "w", "exp": {exp}}}')
        tokens.append(token)
        fake._tokens[token] = fake._tokens[issued]  # the fake's lock is held: _root runs under it
        return [f"{CF_COOKIE}={token}; Path=/"]

    fake.cookies = cookie
    with caplog.at_level(logging.INFO, logger="dragonfly_hybrid"):
        calls(fake, 3)
    assert fake.logins == 1 and fake.count("rules", 200) == 3
    renewing = [r.getMessage() for r in caplog.records if "renewing in" in r.getMessage()]
    assert renewing == [renewing[0]] and f"renewing in {DEFAULT_SESSION_LIFETIME - 60:.0f} s" in renewing[0]
    assert "Traceback" not in caplog.text and tokens[0] not in caplog.text


# --- 401/403 on a call, failed logins -----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["cloudflare", "auth0"])
@pytest.mark.parametrize("status", [401, 403])
def test_review_a_call_refused_after_a_new_login_too_is_repeated_once_not_twice(
    fake: AuthMainframe, scheme: str, status: int
) -> None:
    """A claim refused, then refused again after the new login: one new login, one repetition, then the
    claim fails (a claim is never repeated blindly); nothing was leased."""
    fake.add_release("demo", "1.0")

    async def scenario() -> None:
        async with MainframeClient(settings_for(fake, scheme=scheme), login_backoff=FAST) as client:
            await client.login()
            fake.unauthorized_next(2, status=status)
            with pytest.raises(MainframeError, match=f"HTTP {status}"):
                await client.claim_jobs(1)

    run(scenario())
    assert fake.count("jobs", status) == 2 and fake.count("jobs") == 2
    assert fake.logins == 2 and fake.claims == []


@pytest.mark.parametrize("status", [429, 503])
@pytest.mark.parametrize("scheme", ["cloudflare", "auth0"])
def test_a_login_asked_to_retry_after_a_second_waits_that_long(
    fake: AuthMainframe, scheme: str, status: int
) -> None:
    """``Retry-After`` on a refused login: the next attempt came after the jittered backoff alone (from 0 s),
    the wait the server asked for ignored. It is waited now (up to the backoff's cap)."""
    route = "root" if scheme == "cloudflare" else "oauth"
    original = fake._handle
    arrivals: list[float] = []

    def handle(method: str, path: str, query: str, headers: Any, body: bytes) -> Any:
        if _route_of(method, path) == route:
            arrivals.append(time.monotonic())
            if len(arrivals) <= 2:
                return _Reply(status, b"{}", "application/json", {"Retry-After": "1"})
        return original(method, path, query, headers, body)

    fake._handle = handle  # type: ignore[method-assign]
    client = calls(fake, 1, scheme=scheme, login_backoff=Backoff(0.001, 10.0))
    assert client.login_failures == 2 and client.logins == 1
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert len(gaps) == 2 and min(gaps) >= 0.95


def test_review_retry_after_is_capped_by_the_login_backoff(fake: AuthMainframe) -> None:
    """A Retry-After of a day does not stall the node a day: the backoff's cap bounds it."""
    fake.fail_next("root", 429, count=1)
    original = fake._handle

    def handle(method: str, path: str, query: str, headers: Any, body: bytes) -> Any:
        reply = original(method, path, query, headers, body)
        if reply is not None and reply.status == 429:
            reply = replace(reply, headers={"Retry-After": "86400"})
        return reply

    fake._handle = handle  # type: ignore[method-assign]
    client = calls(fake, 1, login_backoff=Backoff(0.001, 0.05))
    assert client.login_failures == 1 and client.logins == 1


@pytest.mark.parametrize("scheme", ["cloudflare", "auth0"])
def test_review_dropped_and_failed_logins_back_off_and_give_up_at_start(
    fake: AuthMainframe, scheme: str
) -> None:
    route = "root" if scheme == "cloudflare" else "oauth"
    fake.drop_next(route, 2)
    fake.fail_next(route, 500, 1)
    client = calls(fake, 1, scheme=scheme, login_attempts=4)
    assert client.login_failures == 3 and client.logins == 1
    fake.drop_next(route, 100)
    with pytest.raises(AuthError, match="gave up after 3 attempts"):
        calls(fake, 1, scheme=scheme, login_attempts=3)


# --- Auth0 --------------------------------------------------------------------------------------------------


def test_review_the_password_grant_body_and_the_bearer_token(fake: AuthMainframe) -> None:
    worker = fake.worker
    calls(fake, 2, scheme="auth0")
    assert fake.oauth_bodies == [
        {
            "client_id": worker.client_id,
            "client_secret": worker.client_secret,
            "audience": "https://dragonfly.vipyrsec.com",
            "grant_type": "password",
            "username": worker.username,
            "password": worker.password,
        }
    ]
    assert fake.sent_cookies == [None, None] and fake.count("rules", 200) == 2


@pytest.mark.parametrize(
    "expires_in",
    ["missing", 0, -30, "3600", None, True, float("nan"), float("inf"), 10**400],
    ids=["missing", "0", "negative", "string", "null", "true", "nan", "inf", "10**400"],
)
def test_an_expires_in_that_is_no_usable_time_lasts_the_default_lifetime(
    fake: AuthMainframe, caplog: pytest.LogCaptureFixture, expires_in: object
) -> None:
    """One login, renewed after the default lifetime; ``10**400`` crashed the login (OverflowError), NaN and
    infinity made the session never renewed before it was refused."""

    def answer(data: dict[str, Any]) -> dict[str, Any]:
        if expires_in == "missing":
            del data["expires_in"]
        else:
            data["expires_in"] = expires_in
        return data

    fake.oauth_answer = answer
    with caplog.at_level(logging.INFO, logger="dragonfly_hybrid"):
        calls(fake, 3, scheme="auth0")
    assert fake.logins == 1 and fake.count("rules", 200) == 3
    assert f"renewing in {DEFAULT_SESSION_LIFETIME - 60:.0f} s" in caplog.text


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        ({"token_type": "Bearer", "expires_in": 60}, "without access_token"),
        ({"access_token": "", "expires_in": 60}, "empty access_token"),
        ([], "without access_token"),
    ],
)
def test_review_an_auth0_answer_without_a_token_is_a_failed_login(
    fake: AuthMainframe, answer: object, shown: str
) -> None:
    fake.oauth_answer = lambda data: answer  # type: ignore[assignment,return-value]
    with pytest.raises(AuthError, match=shown):
        calls(fake, 1, scheme="auth0", login_attempts=2)
    assert fake.count("rules") == 0


def test_review_an_auth0_error_is_named_without_a_secret(
    fake: AuthMainframe, caplog: pytest.LogCaptureFixture
) -> None:
    """``invalid_grant`` named in the error and the log lines; the password, the client secret (even echoed
    back in ``error_description``) never, at DEBUG with httpx's and httpcore's loggers on."""
    worker = fake.worker
    original = fake._oauth

    def oauth(body: bytes) -> tuple[_Reply, str | None]:
        echo = f"Wrong password {worker.password} for client secret {worker.client_secret}"
        return _json_reply(403, {"error": "invalid_grant", "error_description": echo}), None

    fake._oauth = oauth  # type: ignore[method-assign]
    for name in ("httpx", "httpcore", "httpcore.http11", "hpack", "h2"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG), pytest.raises(AuthError) as caught:
            calls(fake, 1, scheme="auth0", login_attempts=2)
    finally:
        for name in ("httpx", "httpcore", "httpcore.http11", "hpack", "h2"):
            logging.getLogger(name).setLevel(logging.NOTSET)
        fake._oauth = original  # type: ignore[method-assign]
    error = str(caught.value)
    assert "HTTP 403 (invalid_grant: Wrong password" in error and "gave up after 2 attempts" in error
    for text in (error, caplog.text):
        assert worker.password not in text and worker.client_secret not in text


def test_review_the_auth0_domain_and_audience_defaults_and_overrides() -> None:
    values = {"client_id": "id", "client_secret": "secret-1", "username": "u", "password": "pass-1"}
    default = NodeSettings(**values, _env_file=None)  # type: ignore[arg-type]
    assert default.auth0_token_url() == "https://vipyrsec.us.auth0.com/oauth/token"
    assert default.audience == "https://dragonfly.vipyrsec.com"
    other = NodeSettings(  # type: ignore[call-arg]
        **values, auth0_domain="tenant.eu.auth0.com/", audience="https://api.example", _env_file=None
    )
    assert other.auth0_token_url() == "https://tenant.eu.auth0.com/oauth/token"
    assert other.audience == "https://api.example"


# --- secrets, Cloudflare ------------------------------------------------------------------------------------


def test_review_no_cloudflare_secret_or_token_is_logged_at_debug_with_the_http_libraries_on(
    fake: AuthMainframe, caplog: pytest.LogCaptureFixture
) -> None:
    worker = fake.worker
    names = ("httpx", "httpcore", "httpcore.http11", "httpcore.connection", "hpack", "h2")
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        with caplog.at_level(logging.DEBUG):
            calls(fake, 2)
            fake.expire_tokens()
            calls(fake, 1)
            fake.fail_next("root", 503, count=10)
            with pytest.raises(AuthError) as caught:
                calls(fake, 1, login_attempts=2)
    finally:
        for name in names:
            logging.getLogger(name).setLevel(logging.NOTSET)
    assert fake.logins == 2 and len(fake.issued_tokens) == 2
    for text in (caplog.text, str(caught.value)):
        for secret in (worker.client_secret, *fake.issued_tokens):
            assert secret not in text


# --- configuration ------------------------------------------------------------------------------------------

SECRET = "pass33-S3cr3t-value"


@pytest.mark.parametrize(
    ("values", "scheme_or_missing"),
    [
        ({"client_id": "id", "client_secret": SECRET}, "cloudflare"),
        ({"client_id": "id", "client_secret": SECRET, "username": "u", "password": SECRET}, "auth0"),
        ({}, "DRAGONFLY_CLIENT_ID and DRAGONFLY_CLIENT_SECRET"),
        ({"client_id": "id"}, "cloudflare authentication needs DRAGONFLY_CLIENT_SECRET ("),
        ({"client_secret": SECRET}, "cloudflare authentication needs DRAGONFLY_CLIENT_ID ("),
        (
            {"client_id": "id", "client_secret": "", "password": SECRET},
            "DRAGONFLY_CLIENT_SECRET, DRAGONFLY_USERNAME",
        ),
        (
            {"username": "u"},
            "auth0 authentication needs DRAGONFLY_CLIENT_ID, DRAGONFLY_CLIENT_SECRET, DRAGONFLY_PASSWORD",
        ),
    ],
)
def test_review_the_scheme_is_chosen_by_the_configuration(
    values: dict[str, str], scheme_or_missing: str
) -> None:
    settings = NodeSettings(**values, _env_file=None)  # type: ignore[arg-type]
    if scheme_or_missing in ("cloudflare", "auth0"):
        assert settings.auth_scheme() == scheme_or_missing
        return
    with pytest.raises(ConfigError) as caught:
        settings.auth_scheme()
    assert scheme_or_missing in str(caught.value) and SECRET not in str(caught.value)


def test_review_a_node_with_half_a_service_token_exits_2_naming_the_variable(
    fake: AuthMainframe, tmp_path: Path
) -> None:
    proc = node_process(fake, tmp_path, "--once", DRAGONFLY_CLIENT_ID="", DRAGONFLY_CLIENT_SECRET=SECRET)
    stdout, stderr = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == 2, stderr
    assert "DRAGONFLY_CLIENT_ID" in stderr and "Traceback" not in stderr
    assert SECRET not in stdout + stderr and fake.requests == []
