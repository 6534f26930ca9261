"""Asynchronous client of the Dragonfly mainframe API (the contract in ``docs/dragonfly-api.md``).

Authentication is chosen by :meth:`NodeSettings.auth_scheme`:

* **Cloudflare Access service token**: ``GET {base}/`` with ``CF-Access-Client-Id`` / ``-Secret`` headers;
  the ``CF_Authorization`` cookie it sets is sent on every call. The cookie's JWT ``exp`` (read without
  verifying) decides when to log in again, ``refresh_margin`` seconds early. A token without a readable
  ``exp`` is assumed to last :data:`DEFAULT_SESSION_LIFETIME` (a warning is logged; the 401 path covers a
  wrong guess). The cookie is read as a browser keeps it (the last ``Set-Cookie`` wins; an expired one,
  one for another domain or path is not the session), from a 2xx answer or a redirect (not followed). A
  login answered 2xx without the cookie (no Cloudflare in front) falls back to sending the two headers on
  every call, which the contract allows.
* **Auth0 password grant**: ``POST https://{auth0_domain}/oauth/token``; ``Authorization: Bearer``, renewed
  ``refresh_margin`` seconds before ``expires_in`` runs out.

Either way, a 401/403 answer, or a redirect to a login page (Cloudflare Access sends the calls of an expired
session to its team's ``/cdn-cgi/access/login/...``), makes the client log in again once and repeat the call
once; redirects are never followed (a submission's body never goes to another host). Only one login runs
at a time: concurrent callers wait for it and share its result. Failed logins back off exponentially
with full jitter (capped), at least as long as a ``Retry-After`` asks (up to the cap). The very first
login (start-up) gives up after ``login_attempts`` tries with :class:`AuthError`; once the node has
logged in, a later login keeps retrying for as long as it takes.

Retries of the calls themselves:

* ``GET /`` and ``GET /rules`` are idempotent: 5xx, 429, persistent 401/403 (or login redirects), timeouts
  and network errors are retried with backoff (``retries`` times), then :class:`MainframeError`.
* ``PUT /package`` is retried the same way until the caller's ``deadline`` (``time.monotonic()``), or
  ``retries`` times without one. 409 means the lease is lost (:attr:`SubmitOutcome.LEASE_LOST`, never
  retried); 404 and 422/other 4xx, and a redirect elsewhere than a login page, are final outcomes too. A
  409 after an earlier attempt whose answer was lost (dropped connection, 5xx) may mean that attempt
  landed: it is logged as such.
* ``POST /jobs`` is **not** idempotent (each call leases jobs). It is retried only when the request cannot
  have reached the server (connect errors, connect/pool timeouts). After a read timeout, a dropped
  connection or a 5xx the claim may have happened server-side, but the answer is lost: ``claim_jobs``
  raises :class:`MainframeError` (so does any other answer that is not a list of jobs) and the caller
  claims again after its backoff; ``[]`` always means the server had no job. The leases of a lost claim
  expire on the server after ``JOB_TIMEOUT`` and the jobs are handed out again (with ``attempt + 1``).
  A 429 or 503 carrying ``Retry-After`` leased nothing: the claim is repeated after that wait.

A retry after a 429 or 503 waits at least what its ``Retry-After`` asks (seconds or an HTTP date), up to
the backoff's cap; for a submission, only when the wait leaves time for a last try before the deadline
(else it fails at once, as when the deadline has passed).

Secrets (client secret, password, cookies, tokens) never appear in logs, exception messages or reprs:
the client remembers them (:func:`~dragonfly_hybrid.redaction.remember_secret`), and whatever text of the
server's it quotes (an error answer's detail, an OAuth ``error_description``) is redacted first, since a
server, or a proxy in front of it, may echo the request's credentials back.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, TypeVar

import httpx

from dragonfly_hybrid.futures import take_outcome
from dragonfly_hybrid.http11 import Http11Transport
from dragonfly_hybrid.http_client import (
    asked_wait,
    environment_names_a_proxy,
    http_date,
    new_async_client,
    redact_url,
    retry_after,
    tls_context,
)
from dragonfly_hybrid.logs import quiet_http_debug_logs
from dragonfly_hybrid.node.jobs import (
    FailureBody,
    Job,
    MainframeError,
    RulesPayload,
    SubmitOutcome,
    SuccessBody,
)
from dragonfly_hybrid.node.settings import NodeSettings, header_safe
from dragonfly_hybrid.redaction import describe_error, redact_text, remember_secret

logger = logging.getLogger("dragonfly_hybrid.mainframe")

CF_COOKIE = "CF_Authorization"
DEFAULT_SESSION_LIFETIME = 300.0
"""Seconds a session is assumed to last when its token says nothing usable about its expiry."""
DEFAULT_REFRESH_MARGIN = 60.0
"""Seconds before a token's expiry at which the client logs in again."""
MIN_SESSION_REUSE = 1.0
"""A fresh session is reused for at least this long, whatever its token claims (never a login per call)."""

_DETAIL_LIMIT = 300
_MIN_LAST_TRY = 0.1
_T = TypeVar("_T")

HttpErrorHook = Callable[[str], None]
"""Called with a short error kind: ``connect``, ``timeout``, ``network``, ``5xx``, ``401``, ``403``,
``404``, ``409``, ``422``, ``429``, ``4xx`` (other), ``3xx`` (a redirect, never followed), ``login`` (a failed
login attempt)."""


# ------------------------------------------------------------------------------------------------ data


class AuthError(MainframeError):
    """Logging in failed at start-up (after backing off ``login_attempts`` times): fatal."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with full jitter.

    Retry ``n`` (counted from 0) waits ``uniform(0, min(cap, base * 2**n))`` seconds.
    """

    base: float = 1.0
    cap: float = 60.0

    def ceiling(self, retry: int) -> float:
        return float(min(self.cap, self.base * 2 ** min(retry, 32)))

    def delay(self, retry: int) -> float:
        return random.uniform(0.0, self.ceiling(retry))


DEFAULT_RETRY_BACKOFF = Backoff(0.5, 30.0)
"""Backoff between retries of a call: 0.5 s doubling, capped at 30 s (full jitter)."""
DEFAULT_LOGIN_BACKOFF = Backoff(1.0, 60.0)
"""Backoff between failed logins: 1 s doubling, capped at 60 s (full jitter)."""


# ---------------------------------------------------------------------------------------------- tokens


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim (unix seconds) of a JWT, read without verifying it; None when unreadable."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError, RecursionError):  # nested brackets: the decoder's
        return None
    return _seconds(claims.get("exp") if isinstance(claims, dict) else None)


def _seconds(value: object) -> float | None:
    """``value`` as a finite float (a JSON number); None for anything else. A float NaN or infinity (JSON's
    ``NaN``, ``1e400``) made a session never renewed before it was refused, and an integer too large for a
    float (``10**400``) raised OverflowError out of the login: a crash."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        seconds = float(value)
    except OverflowError:
        return None
    return seconds if math.isfinite(seconds) else None


def refresh_delay(lifetime: float, margin: float) -> float:
    """Seconds until a session valid for ``lifetime`` seconds should be renewed.

    ``margin`` seconds early, or halfway through a lifetime shorter than twice the margin; never sooner than
    :data:`MIN_SESSION_REUSE`.
    """
    usable = lifetime - margin if lifetime > 2 * margin else lifetime / 2
    return max(usable, MIN_SESSION_REUSE)


@dataclass(frozen=True)
class _Session:
    headers: dict[str, str] = field(repr=False)
    refresh_at: float
    """``time.monotonic()`` after which the session is renewed before use."""

    def due(self) -> bool:
        return time.monotonic() >= self.refresh_at


class _LoginFailed(Exception):
    """One login attempt failed; the message is safe to log. ``retry_after``: the seconds the answer's
    ``Retry-After`` asked for (None without one)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Authenticator(Protocol):
    scheme: str

    async def login(self, http: httpx.AsyncClient, margin: float) -> _Session: ...


def _session(headers: dict[str, str], lifetime: float, margin: float, token: str | None = None) -> _Session:
    """A session sending ``headers``; ``token``, the credential they carry, is remembered as a secret."""
    remember_secret(token, lasting=False)
    return _Session(headers=headers, refresh_at=time.monotonic() + refresh_delay(lifetime, margin))


def _cookie(response: httpx.Response, name: str, path: str) -> str | None:
    """The cookie ``name`` that ``response`` leaves for the requests to ``path``, as a browser keeps it: the
    last ``Set-Cookie`` of it wins, one already expired (``Max-Age`` <= 0, ``Expires`` past) deletes it,
    one for another domain or for a path that does not cover ``path`` is not ours. (The first was taken: a
    deletion sent before the new cookie became the session, refused on every call, a login each.)"""
    host = response.request.url.host
    value = None
    for header in response.headers.get_list("set-cookie"):
        pair, *attributes = header.split(";")
        key, _, found = pair.partition("=")
        if key.strip() != name:
            continue
        attrs = {k.strip().lower(): v.strip() for k, _, v in (a.partition("=") for a in attributes)}
        domain = attrs.get("domain", "").lstrip(".").lower()
        if domain and host != domain and not host.endswith("." + domain):
            continue
        scope = attrs.get("path", "")
        if scope.startswith("/") and not (
            path == scope or path.startswith(scope if scope.endswith("/") else scope + "/")
        ):
            continue
        value = None if _cookie_expired(attrs) else found.strip().strip('"') or None
    return value


def _cookie_expired(attrs: dict[str, str]) -> bool:
    max_age = attrs.get("max-age", "")
    if re.fullmatch(r"-?[0-9]+", max_age):  # takes precedence over Expires
        # Read by its sign, not int(): past 4300 digits int() raised ValueError out of the login (a crash).
        return max_age.startswith("-") or not max_age.strip("0")
    expires = http_date(attrs.get("expires", ""))
    return expires is not None and expires <= time.time()


def _token_lifetime(token: str) -> float:
    exp = jwt_expiry(token)
    if exp is None:
        logger.warning(
            "the %s cookie has no readable exp claim; assuming it lasts %.0f s",
            CF_COOKIE,
            DEFAULT_SESSION_LIFETIME,
        )
        return DEFAULT_SESSION_LIFETIME
    lifetime = exp - time.time()
    if lifetime <= 0:
        logger.warning(
            "the %s cookie expired %.0f s ago by the local clock (clock skew?); assuming it lasts %.0f s",
            CF_COOKIE,
            -lifetime,
            DEFAULT_SESSION_LIFETIME,
        )
        return DEFAULT_SESSION_LIFETIME
    return lifetime


class _Cloudflare:
    scheme = "cloudflare"

    def __init__(self, settings: NodeSettings) -> None:
        assert settings.client_id is not None and settings.client_secret is not None
        self._url = settings.base_url + "/"
        self._path = httpx.URL(self._url).path
        self._headers = {
            "CF-Access-Client-Id": settings.client_id,
            "CF-Access-Client-Secret": settings.client_secret.get_secret_value(),
        }

    async def login(self, http: httpx.AsyncClient, margin: float) -> _Session:
        response = await http.get(self._url, headers=self._headers)
        http.cookies.delete(CF_COOKIE)  # sent explicitly per request; never from the shared jar
        token = _cookie(response, CF_COOKIE, self._path)
        # A redirect that sets the cookie logged in too (a browser keeps it): it is not followed.
        if not response.is_success and (token is None or not 300 <= response.status_code < 400):
            raise _LoginFailed(
                f"Cloudflare Access login answered HTTP {response.status_code}",
                retry_after(response.headers.get("retry-after")),
            )
        if token is None:
            logger.warning(
                "login answered HTTP %s without a %s cookie (no Cloudflare Access in front?); sending the "
                "service token headers on every call",
                response.status_code,
                CF_COOKIE,
            )
            return _session(dict(self._headers), DEFAULT_SESSION_LIFETIME, margin)
        if not header_safe(token):
            # Sent back as it is, it failed every call after the login (a line break: the request could not
            # be written, and no 401 ever came to log in again), or crashed the node (non-ASCII).
            raise _LoginFailed(f"login set a {CF_COOKIE} cookie that cannot be sent back in an HTTP header")
        return _session({"Cookie": f"{CF_COOKIE}={token}"}, _token_lifetime(token), margin, token)


class _Auth0:
    scheme = "auth0"

    def __init__(self, settings: NodeSettings) -> None:
        assert settings.client_secret is not None and settings.password is not None
        self._url = settings.auth0_token_url()
        self._body = {
            "client_id": settings.client_id,
            "client_secret": settings.client_secret.get_secret_value(),
            "audience": settings.audience,
            "grant_type": "password",
            "username": settings.username,
            "password": settings.password.get_secret_value(),
        }

    async def login(self, http: httpx.AsyncClient, margin: float) -> _Session:
        response = await http.post(self._url, json=self._body)
        if not response.is_success:
            raise _LoginFailed(
                f"Auth0 token endpoint answered HTTP {response.status_code}{_auth0_error(response)}",
                retry_after(response.headers.get("retry-after")),
            )
        try:
            data = _decoded(response)
            token = data["access_token"]
            lifetime = data.get("expires_in", DEFAULT_SESSION_LIFETIME)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise _LoginFailed("Auth0 token endpoint gave an answer without access_token") from None
        if not isinstance(token, str) or not token:
            raise _LoginFailed("Auth0 token endpoint gave an empty access_token")
        if not header_safe(token):
            raise _LoginFailed(
                "Auth0 token endpoint gave an access_token that cannot be sent in an HTTP header"
            )
        seconds = _seconds(lifetime)
        if seconds is None or seconds <= 0:
            seconds = DEFAULT_SESSION_LIFETIME
        return _session({"Authorization": f"Bearer {token}"}, seconds, margin, token)


def _auth0_error(response: httpx.Response) -> str:
    """`` (error: description)`` from an OAuth error answer (these never echo the credentials)."""
    try:
        data = _decoded(response)
    except ValueError:
        return ""
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        return ""
    description = data.get("error_description")
    text = redact_text(data["error"] + (f": {description}" if isinstance(description, str) else ""))
    return f" ({text[:_DETAIL_LIMIT]})"


def _authenticator(settings: NodeSettings) -> _Authenticator:
    """The login of ``settings``' scheme; its secrets are remembered (never shown from now on)."""
    scheme = settings.auth_scheme()
    for secret in (settings.client_secret, settings.password):
        remember_secret(secret.get_secret_value() if secret is not None else None)
    if scheme == "auth0":
        return _Auth0(settings)
    return _Cloudflare(settings)


# -------------------------------------------------------------------------------------------- helpers


def _kind(err: httpx.TransportError) -> str:
    if isinstance(err, httpx.TimeoutException):
        return "timeout"
    if isinstance(err, httpx.ConnectError):
        return "connect"
    return "network"


def _describe(err: BaseException) -> str:
    return describe_error(err)


def _never_sent(err: httpx.TransportError) -> bool:
    """The request provably did not reach the server (so even a non-idempotent call may be repeated)."""
    return isinstance(err, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


_LOGIN_PATH = re.compile(r"/cdn-cgi/access/|log-?in|sign-?in", re.IGNORECASE)


def _to_login(response: httpx.Response) -> bool:
    """A redirect to a login page: Cloudflare Access answers an expired session's calls with a 302 to its
    team's ``https://<team>.cloudflareaccess.com/cdn-cgi/access/login/...`` instead of a 401. (httpx sets
    ``next_request`` for a redirect it does not follow.)"""
    target = response.next_request.url if response.next_request is not None else None
    if target is None:
        return False
    return target.host.endswith(".cloudflareaccess.com") or _LOGIN_PATH.search(target.path) is not None


def _unauthorized(response: httpx.Response) -> bool:
    """The session is no longer good: log in again."""
    return response.status_code in (401, 403) or _to_login(response)


def _transient(response: httpx.Response) -> bool:
    return response.status_code >= 500 or response.status_code in (408, 429) or _unauthorized(response)


def _decoded(response: httpx.Response) -> Any:
    """``response.json()``; a body nested too deeply to decode is a ValueError too: the decoder's
    RecursionError (2 kB of brackets) crashed the node out of a claim, and dropped each job whose rule set
    was fetched."""
    try:
        return response.json()
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


def _detail(response: httpx.Response) -> str:
    """The server's explanation of an error answer, redacted (it may echo the request's credentials),
    shortened."""
    try:
        data = _decoded(response)
        detail = data.get("detail", data) if isinstance(data, dict) else data
        text = detail if isinstance(detail, str) else json.dumps(detail)
    except (ValueError, RecursionError):  # json.dumps: as deep as the decoder let through
        text = response.text
    text = " ".join(redact_text(text).split())
    return text[:_DETAIL_LIMIT] + ("..." if len(text) > _DETAIL_LIMIT else "")


def _status_kind(status: int) -> str:
    if status < 400:
        return "3xx"
    if status >= 500:
        return "5xx"
    if status in (401, 403, 404, 409, 422, 429):
        return str(status)
    return "4xx"


def _require(data: dict[str, Any], key: str, kind: type[_T]) -> _T:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"{key!r} is missing or not a {kind.__name__}")
    return value


def parse_job(item: object) -> Job:
    """A :class:`Job` from one element of the ``POST /jobs`` answer; ValueError when malformed."""
    if not isinstance(item, dict):
        raise ValueError("a job is not a JSON object")
    distributions = _require(item, "distributions", list)
    if not all(isinstance(url, str) for url in distributions):
        raise ValueError("'distributions' holds a non-string")
    return Job(
        name=_require(item, "name", str),
        version=_require(item, "version", str),
        distributions=list(distributions),
        hash=_require(item, "hash", str),
        attempt=_require(item, "attempt", int),
        assignment_id=str(_require(item, "assignment_id", str)),
    )


def parse_rules(data: object) -> RulesPayload:
    """A :class:`RulesPayload` from the ``GET /rules`` answer; ValueError when malformed."""
    if not isinstance(data, dict):
        raise ValueError("the answer is not a JSON object")
    rules = _require(data, "rules", dict)
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in rules.items()):
        raise ValueError("'rules' must map names to source strings")
    return RulesPayload(hash=_require(data, "hash", str), rules=dict(rules))


# --------------------------------------------------------------------------------------------- client


class MainframeClient:
    """The mainframe API for one node (one worker identity). Safe to call from many coroutines at once.

    ``client``: an ``httpx.AsyncClient`` to use (not closed by this object); by default one is created
    (:func:`_new_http_client`: HTTP/1.1 on the package's transport, timeouts from
    ``settings.http_timeout``). The remaining keyword arguments tune retries and logins (tests use small
    values). Raises ConfigError when the settings hold no usable credentials.
    """

    def __init__(
        self,
        settings: NodeSettings,
        *,
        client: httpx.AsyncClient | None = None,
        on_http_error: HttpErrorHook | None = None,
        retries: int = 5,
        retry_backoff: Backoff = DEFAULT_RETRY_BACKOFF,
        login_attempts: int = 5,
        login_backoff: Backoff = DEFAULT_LOGIN_BACKOFF,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
    ) -> None:
        self.settings = settings
        self.base_url = settings.base_url
        self.on_http_error = on_http_error
        self.retries = max(0, retries)
        self.retry_backoff = retry_backoff
        self.login_attempts = max(1, login_attempts)
        self.login_backoff = login_backoff
        self.refresh_margin = refresh_margin
        self.logins = 0
        """Successful logins so far."""
        self.login_failures = 0
        """Failed login attempts so far."""
        self._auth = _authenticator(settings)
        self._owns_client = client is None
        self._http = client if client is not None else _new_http_client(settings)
        self._session: _Session | None = None
        self._lock = asyncio.Lock()
        self._login_rounds = 0
        self._auth_error: AuthError | None = None
        self._shown = redact_url(self.base_url)
        self._urls: dict[tuple[str, tuple[tuple[str, int], ...]], httpx.URL] = {}
        quiet_http_debug_logs()

    @property
    def auth_scheme(self) -> str:
        return self._auth.scheme

    async def __aenter__(self) -> MainframeClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()

    def __repr__(self) -> str:
        return f"<MainframeClient {self._shown} auth={self._auth.scheme}>"

    # ------------------------------------------------------------------------------------------ auth

    async def login(self) -> None:
        """Make sure the client holds a valid session (logs in when needed). At start-up this is the check
        that the credentials work: raises AuthError after ``login_attempts`` failed tries."""
        session = self._session
        if session is None or session.due():
            await self._renew(session)

    async def _current(self) -> _Session:
        session = self._session
        if session is not None and not session.due():
            return session
        return await self._renew(session)

    async def _renew(self, stale: _Session | None) -> _Session:
        """Log in unless another caller already replaced ``stale`` with a valid session.

        Callers that waited for a start-up login which gave up get its AuthError instead of starting
        another round of attempts.
        """
        round_seen = self._login_rounds
        async with self._lock:
            current = self._session
            if current is not None and current is not stale and not current.due():
                return current
            if self._login_rounds != round_seen and self._auth_error is not None:
                raise AuthError(str(self._auth_error))
            self._auth_error = None
            try:
                self._session = await self._login_with_backoff()
            except AuthError as err:
                self._auth_error = err
                raise
            finally:
                self._login_rounds += 1  # counts finished rounds: waiters compare with what they saw
            return self._session

    async def _login_with_backoff(self) -> _Session:
        bounded = self.logins == 0
        failures = 0
        while True:
            try:
                session = await self._auth.login(self._http, self.refresh_margin)
            except (_LoginFailed, httpx.TransportError, httpx.DecodingError) as err:
                reason = str(err) if isinstance(err, _LoginFailed) else _describe(err)
                asked = err.retry_after if isinstance(err, _LoginFailed) else None
            else:
                self.logins += 1
                logger.info(
                    "logged in to %s (%s); renewing in %.0f s",
                    self._shown,
                    self._auth.scheme,
                    session.refresh_at - time.monotonic(),
                )
                return session
            failures += 1
            self.login_failures += 1
            self._notify("login")
            if bounded and failures >= self.login_attempts:
                raise AuthError(
                    f"could not log in to {self._shown} ({self._auth.scheme}): {reason}; "
                    f"gave up after {failures} attempts"
                )
            delay = self.login_backoff.delay(failures - 1)
            if asked is not None:  # a 429/503's Retry-After, up to the backoff's cap
                delay = max(delay, min(asked, self.login_backoff.cap))
            logger.warning("login to %s failed (%s); retrying in %.1f s", self._shown, reason, delay)
            await asyncio.sleep(delay)

    # --------------------------------------------------------------------------------------- requests

    def _notify(self, kind: str) -> None:
        if self.on_http_error is None:
            return
        try:
            self.on_http_error(kind)
        except Exception:
            logger.exception("the on_http_error hook failed")

    async def _send(
        self, method: str, path: str, session: _Session, params: dict[str, int] | None, body: object
    ) -> httpx.Response:
        try:
            url = self._url(path, params)
            response = await self._http.request(method, url, json=body, headers=session.headers)
        except httpx.TransportError as err:
            self._notify(_kind(err))
            raise
        except httpx.DecodingError as err:
            # A body that does not decode as its Content-Encoding says: the answer is lost, as on a dropped
            # connection (no TransportError: a claim's crashed the node, a submission's was never retried).
            self._notify("network")
            raise httpx.RemoteProtocolError(f"the answer could not be decoded ({_describe(err)})") from None
        if response.status_code >= 300:
            # Redirects too: a session Cloudflare Access sends to its login page on every call was counted
            # nowhere, where a 401 loop shows.
            self._notify(_status_kind(response.status_code))
        return response

    def _url(self, path: str, params: dict[str, int] | None) -> httpx.URL:
        """The URL of ``path`` with ``params``, parsed once (httpx parses a URL given as text each call)."""
        key = (path, tuple(params.items()) if params else ())
        url = self._urls.get(key)
        if url is None:
            url = self._urls[key] = httpx.URL(self.base_url + path, params=params)
        return url

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, int] | None = None,
        body: object = None,
        stop: asyncio.Event | None = None,
    ) -> httpx.Response:
        """One authenticated call; after a 401/403 or a redirect to a login page, log in again and repeat it
        once. ``stop``: when it is set before the call is sent (while logging in), the call is not sent:
        :class:`_Stopped`."""
        session = await self._unless_stopped(self._current(), stop)
        response = await self._send(method, path, session, params, body)
        if not _unauthorized(response):
            return response
        logger.info("%s %s answered HTTP %s; logging in again", method, path, response.status_code)
        session = await self._unless_stopped(self._renew(session), stop)
        return await self._send(method, path, session, params, body)

    @staticmethod
    async def _unless_stopped(step: Awaitable[_T], stop: asyncio.Event | None) -> _T:
        """``step``'s result, unless ``stop`` is set first: then ``step`` is cancelled and :class:`_Stopped`
        raised. For the steps before a request is sent (a login, a wait before retrying)."""
        if stop is None:
            return await step
        if stop.is_set():
            if asyncio.iscoroutine(step):
                step.close()
            raise _Stopped
        task = asyncio.ensure_future(step)
        task.add_done_callback(take_outcome)
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            task.cancel()  # this caller was cancelled (the node's grace period over): the step goes too
            raise
        finally:
            stopped.cancel()
        if task.done() and not stop.is_set():
            return task.result()
        task.cancel()  # stopped first, or at the same time: no request goes out after the stop
        raise _Stopped

    async def _within(self, call: Awaitable[_T], deadline: float | None) -> _T:
        if deadline is None:
            return await call
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            if asyncio.iscoroutine(call):
                call.close()
            raise _DeadlinePassed
        try:
            return await asyncio.wait_for(call, remaining)
        except asyncio.TimeoutError:
            raise _DeadlinePassed from None

    async def _pause(
        self,
        retry: int,
        deadline: float | None,
        what: str,
        problem: str,
        asked: float | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        """Sleep before retry number ``retry`` (from 1), or raise MainframeError when out of retries/time.

        With a deadline, the backoff is shortened to half the time left so a last try still fits. ``asked``
        (a Retry-After, :func:`~dragonfly_hybrid.http_client.asked_wait`) is waited at least, up to the
        backoff's cap; with a deadline, a wait that leaves no time for a last try is a passed deadline now (a
        submission never outlives its lease). ``stop``: see :meth:`_unless_stopped`.
        """
        delay = self.retry_backoff.delay(retry - 1)
        wait = 0.0 if asked is None else min(asked, self.retry_backoff.cap)
        if deadline is None:
            if retry > self.retries:
                raise MainframeError(f"{what} failed after {retry} attempts ({problem})")
        else:
            remaining = deadline - time.monotonic()
            if remaining < wait + _MIN_LAST_TRY:
                if remaining >= _MIN_LAST_TRY:
                    problem += f"; its Retry-After of {wait:.0f} s ends too late"
                raise MainframeError(f"{what} failed: deadline passed after {retry} attempts ({problem})")
            delay = min(delay, remaining / 2)
        delay = max(delay, wait)
        logger.warning("%s failed (%s); retrying in %.1f s", what, problem, delay)
        await self._unless_stopped(asyncio.sleep(delay), stop)

    async def _retrying(
        self, method: str, path: str, *, body: object = None, deadline: float | None = None
    ) -> httpx.Response:
        """An idempotent call, retried on transient answers and transport errors; returns the final answer."""
        what = f"{method} {path}"
        retry = 0
        while True:
            asked = None
            try:
                response = await self._within(self._request(method, path, body=body), deadline)
            except httpx.TransportError as err:
                problem = _describe(err)
            except _DeadlinePassed:
                raise MainframeError(f"{what} failed: deadline passed after {retry + 1} attempts") from None
            else:
                if not _transient(response):
                    return response
                problem = f"HTTP {response.status_code}"
                asked = asked_wait(response.status_code, response.headers.get("retry-after"))
            retry += 1
            await self._pause(retry, deadline, what, problem, asked)

    # -------------------------------------------------------------------------------------- endpoints

    async def server_info(self) -> dict[str, Any]:
        """``GET /``: ``{"server_commit": ..., "rules_commit": ...}``."""
        response = await self._retrying("GET", "/")
        data = self._json(response, "GET /")
        if not isinstance(data, dict):
            raise MainframeError(f"GET / on {self._shown} did not answer a JSON object")
        return data

    async def get_rules(self) -> RulesPayload:
        """``GET /rules``: the rule set the mainframe wants used (retried on transient errors)."""
        response = await self._retrying("GET", "/rules")
        try:
            return parse_rules(self._json(response, "GET /rules"))
        except ValueError as err:
            raise MainframeError(f"malformed GET /rules answer from {self._shown}: {err}") from None

    async def claim_jobs(self, batch: int, *, stop: asyncio.Event | None = None) -> list[Job]:
        """``POST /jobs?batch=N``: lease up to ``batch`` jobs; ``[]`` when there is no work.
        :class:`MainframeError` when the claim failed, the answer lost after the request was sent included
        (see the module docstring).

        ``stop`` (the node was asked to stop): a claim not sent yet when it is set (the client logging in
        again, or waiting to retry) is not sent, and ``[]`` is returned; one sent is answered as usual (its
        jobs are leased). Without it, a node stopped while its login failed claimed once the login worked,
        after it had said it claimed no more, and its drain waited out the grace period for the login."""
        if batch < 1:
            raise ValueError(f"batch must be at least 1, not {batch}")
        try:
            return await self._claim_jobs(batch, stop)
        except _Stopped:
            logger.info("POST /jobs not sent: stopping")
            return []

    async def _claim_jobs(self, batch: int, stop: asyncio.Event | None) -> list[Job]:
        what = f"POST /jobs on {self._shown}"
        retry = 0
        while True:
            asked = None
            try:
                response = await self._request("POST", "/jobs", params={"batch": batch}, stop=stop)
            except httpx.TransportError as err:
                if not _never_sent(err):
                    raise MainframeError(
                        f"POST /jobs on {self._shown}: {_describe(err)} after the request was sent (jobs it "
                        "may have leased come back when their leases expire)"
                    ) from None
                problem = _describe(err)
            else:
                # A 429 or 503 with a Retry-After leased nothing and says when to come back: claimed again
                # then (the node's own claim backoff, from 1 s, ignored the wait).
                asked = asked_wait(response.status_code, response.headers.get("retry-after"))
                if asked is None:
                    return self._jobs_from(response)
                problem = f"HTTP {response.status_code}"
            retry += 1
            await self._pause(retry, None, what, problem, asked, stop)

    def _jobs_from(self, response: httpx.Response) -> list[Job]:
        data = self._json(response, "POST /jobs")
        if not isinstance(data, list):
            raise MainframeError(f"POST /jobs on {self._shown} did not answer a JSON array")
        jobs = []
        for item in data:
            try:
                jobs.append(parse_job(item))
            except ValueError as err:
                logger.error("POST /jobs gave a malformed job (%s); its lease will expire", err)
        return jobs

    def _json(self, response: httpx.Response, what: str) -> Any:
        if response.status_code != 200:
            raise MainframeError(
                f"{what} on {self._shown} answered HTTP {response.status_code}: {_detail(response)}"
            )
        try:
            return _decoded(response)
        except ValueError:
            raise MainframeError(f"{what} on {self._shown} did not answer JSON") from None

    async def submit(
        self, body: SuccessBody | FailureBody, *, deadline: float | None = None
    ) -> SubmitOutcome:
        """``PUT /package``: report one job's outcome.

        Retries 5xx, 429, persistent 401/403 (or login redirects) and network errors with backoff until
        ``deadline`` (``time.monotonic()``; without one, ``retries`` times), then raises MainframeError. 409,
        404, other 4xx and other 3xx answers are final (see :class:`SubmitOutcome`; a redirect is never
        followed)."""
        what = f"PUT /package for {body.name} {body.version} (attempt {body.attempt})"
        payload = body.to_json()
        unconfirmed = False
        retry = 0
        while True:
            asked = None
            try:
                response = await self._within(self._request("PUT", "/package", body=payload), deadline)
            except httpx.TransportError as err:
                problem = _describe(err)
                unconfirmed = unconfirmed or not _never_sent(err)
            except _DeadlinePassed:
                raise MainframeError(f"{what} failed: deadline passed after {retry + 1} attempts") from None
            else:
                if not _transient(response):
                    return self._outcome(response, what, unconfirmed)
                problem = f"HTTP {response.status_code}"
                unconfirmed = unconfirmed or response.status_code >= 500
                asked = asked_wait(response.status_code, response.headers.get("retry-after"))
            retry += 1
            await self._pause(retry, deadline, what, problem, asked)

    def _outcome(self, response: httpx.Response, what: str, unconfirmed: bool) -> SubmitOutcome:
        status = response.status_code
        if response.is_success:
            return SubmitOutcome.ACCEPTED
        if status == 409:
            if unconfirmed:
                logger.info(
                    "%s: HTTP 409 after an attempt whose answer was lost; that attempt probably landed", what
                )
            else:
                logger.warning("%s: lease lost (HTTP 409: %s)", what, _detail(response))
            return SubmitOutcome.LEASE_LOST
        if status == 404:
            logger.warning(
                "%s: the mainframe does not know this release (HTTP 404: %s)", what, _detail(response)
            )
            return SubmitOutcome.NOT_FOUND
        logger.error("%s: rejected (HTTP %s: %s)", what, status, _detail(response))
        return SubmitOutcome.REJECTED


class _DeadlinePassed(Exception):
    pass


class _Stopped(Exception):
    """A call was not sent: the caller's ``stop`` was set first."""


def _new_http_client(settings: NodeSettings) -> httpx.AsyncClient:
    """HTTP/1.1 on asyncio streams (:mod:`dragonfly_hybrid.http11`: a claim or a submission costs the event
    loop half the CPU it does through httpx's transport); httpx's own transport, with HTTP/2 when ``h2`` is
    installed, when the environment names a proxy (which only it applies)."""
    lean = not environment_names_a_proxy()
    return new_async_client(
        timeout=settings.http_timeout,
        connect=10.0,
        http2=not lean,
        follow_redirects=False,
        transport=Http11Transport(context=tls_context()) if lean else None,
    )
