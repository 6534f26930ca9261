"""A fake Dragonfly mainframe and PyPI-like file host, over real HTTP on 127.0.0.1, for integration tests.

It speaks the contract in ``docs/dragonfly-api.md``:

* ``GET /``: server info; with ``CF-Access-Client-Id`` / ``-Secret`` headers, a Cloudflare Access login that
  sets a ``CF_Authorization`` cookie holding an unsigned JWT with ``exp`` (403 for unknown credentials).
* ``POST /oauth/token``: the Auth0 password grant (point ``auth0_domain`` at :attr:`FakeMainframe.url`).
* ``GET /rules``, ``POST /jobs?batch=N``, ``PUT /package``: need a valid cookie, ``Bearer`` token or the two
  Cloudflare headers (as Cloudflare accepts); otherwise 401. The token identifies the *worker*.
* ``GET /packages/ab/cd/<hash>/<filename>``: the hosted distribution files (PyPI-shaped URLs, so inspector
  URLs derived from them look real).

Leases: a claim sets the job PENDING for the claiming worker with a fresh ``assignment_id`` and
``attempt + 1``. After :attr:`FakeMainframe.job_timeout` seconds the lease has *expired*: any worker may claim
the job again, and an expired lease of the ``max_attempts``-th attempt dead-letters the job (FAILED). A
result is accepted (200) only from the worker holding the current lease with the matching ``attempt`` and
``assignment_id``; a result for an expired lease that nobody re-claimed yet is still accepted unless
``strict_leases`` is set. Everything else gets 409 (already finished, dead-lettered, lease moved on, other
worker), 404 (unknown release) or 422 (invalid body).

Faults (``route`` is one of :data:`ROUTES`, or an exact request path such as a file's URL path, or a full
URL): :meth:`FakeMainframe.fail_next`, :meth:`drop_next` (close the connection without an answer, before or
after processing), :meth:`delay`, :meth:`expire_tokens`, :meth:`unauthorized_next`, :meth:`set_rules`.

Records: :attr:`submissions` (every ``PUT /package`` with the submitting worker and the status answered),
:attr:`results` (the accepted ones), :attr:`claims`, :attr:`requests`, login counters.

Every public method is thread-safe (one lock guards all state; handlers run in server threads).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.pypi import LIGHT_RULE, MARKER_RULE
from tests.fakes.pypi import sdist as build_sdist
from tests.fakes.pypi import wheel as build_wheel

ROUTES = ("root", "oauth", "rules", "jobs", "package", "files")
"""Route names for the fault switches: ``GET /`` (info and Cloudflare login), ``POST /oauth/token``,
``GET /rules``, ``POST /jobs``, ``PUT /package``, ``GET /packages/...`` (hosted files)."""
API_ROUTES = ("rules", "jobs", "package")
DEFAULT_AUDIENCE = "https://dragonfly.vipyrsec.com"
CF_COOKIE = "CF_Authorization"
DEFAULT_RULES = {"test_marker": MARKER_RULE, "light_marker": LIGHT_RULE}

QUEUED, PENDING, FINISHED, FAILED = "QUEUED", "PENDING", "FINISHED", "FAILED"


@dataclass(frozen=True)
class Worker:
    """A node identity and its credentials for both schemes."""

    name: str
    client_id: str
    client_secret: str = field(repr=False)
    username: str
    password: str = field(repr=False)


@dataclass(frozen=True)
class JobState:
    """A snapshot of one release's job on the fake."""

    name: str
    version: str
    distributions: tuple[str, ...]
    status: str
    """QUEUED, PENDING, FINISHED or FAILED."""
    attempt: int
    assignment_id: str | None
    worker: str | None
    """The worker holding (or that last held) the lease."""
    hash: str | None
    """The rules hash handed out with the last claim."""
    leased_at: float | None
    """``time.monotonic()`` of the last claim."""
    result: dict[str, Any] | None = None
    """The accepted body (success or failure)."""
    reason: str | None = None
    """Why the job FAILED (the submitted reason, or dead-lettering)."""


@dataclass(frozen=True)
class Claim:
    worker: str
    name: str
    version: str
    attempt: int
    assignment_id: str
    at: float


@dataclass(frozen=True)
class Submission:
    """One ``PUT /package`` request: who sent it, the body, what the fake answered (None: dropped)."""

    worker: str | None
    body: Any
    status: int | None
    at: float


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    route: str | None
    worker: str | None
    status: int | None
    """None: the connection was dropped without an answer."""
    user_agent: str | None = None


@dataclass
class _Job:
    name: str
    version: str
    distributions: list[str]
    status: str = QUEUED
    attempt: int = 0
    assignment_id: str | None = None
    worker: str | None = None
    hash: str | None = None
    leased_at: float | None = None
    result: dict[str, Any] | None = None
    reason: str | None = None


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
    drip: float = 0.0
    """Seconds between the body's bytes (0: the body in one write)."""


def _json_reply(status: int, data: object, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(data).encode(), "application/json", headers or {})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims: Mapping[str, object]) -> str:
    """An unsigned JWT (``alg: none``) carrying ``claims`` (padding stripped, as real tokens are)."""
    header = _b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(dict(claims)).encode())
    return f"{header}.{payload}.{_b64url(b'fake-signature')}"


def pypi_path(filename: str, content: bytes) -> str:
    """``/packages/ab/cd/<rest>/<filename>`` from the blake2b-256 of ``content``, as PyPI lays files out."""
    digest = hashlib.blake2b(content, digest_size=32).hexdigest()
    return f"/packages/{digest[:2]}/{digest[2:4]}/{digest[4:]}/{filename}"


def _route_of(method: str, path: str) -> str | None:
    if path == "/":
        return "root" if method == "GET" else None
    if path.startswith("/packages/"):
        return "files" if method == "GET" else None
    expected = {"/oauth/token": ("POST", "oauth"), "/rules": ("GET", "rules"), "/jobs": ("POST", "jobs")}
    expected["/package"] = ("PUT", "package")
    if path in expected and expected[path][0] == method:
        return expected[path][1]
    return None


def _fault_key(route: str) -> str:
    if route.startswith(("http://", "https://")):
        return urlsplit(route).path
    if route.startswith("/"):
        return route
    if route not in ROUTES:
        raise ValueError(f"unknown route {route!r}: use one of {', '.join(ROUTES)} or a request path")
    return route


def _validation_errors(body: object) -> list[dict[str, object]]:
    """FastAPI-style ``detail`` entries for an invalid ``PUT /package`` body (empty when valid)."""
    if not isinstance(body, dict):
        return [{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}]
    fields: dict[str, Callable[[object], bool]] = {
        "name": lambda v: isinstance(v, str),
        "version": lambda v: isinstance(v, str),
        "attempt": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "assignment_id": lambda v: isinstance(v, str),
    }
    if "reason" in body:
        fields["reason"] = lambda v: isinstance(v, str)
    else:
        fields["score"] = lambda v: isinstance(v, int) and not isinstance(v, bool)
        fields["inspector_url"] = lambda v: v is None or isinstance(v, str)
        fields["rules_matched"] = lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)
        fields["commit"] = lambda v: isinstance(v, str)
    errors: list[dict[str, object]] = []
    for key, check in fields.items():
        if key not in body:
            errors.append({"loc": ["body", key], "msg": "Field required", "type": "missing"})
        elif not check(body[key]):
            errors.append({"loc": ["body", key], "msg": "Input has the wrong type", "type": "type_error"})
    return errors


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections do not keep a thread forever
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stalls

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        reply = self.server.fake._handle(self.command, split.path, split.query, self.headers, body)
        if reply is None:  # drop: close without an answer
            self.close_connection = True
            return
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if not reply.drip:
            self.wfile.write(reply.body)
            return
        self.wfile.flush()
        for offset in range(len(reply.body)):
            if self.server.fake.closed:
                return
            self.wfile.write(reply.body[offset : offset + 1])  # a ConnectionError once the client leaves
            self.wfile.flush()
            time.sleep(reply.drip)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops SYNs under concurrent connects (1 s client stalls)
    fake: FakeMainframe

    def server_activate(self) -> None:
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().server_activate()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Cut every open (kept-alive) connection, so a closed fake really stops answering."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that went away is no error
            super().handle_error(request, client_address)


class FakeMainframe:
    """The fake mainframe + file host, started on construction: ``with FakeMainframe() as fake: ...``."""

    def __init__(
        self,
        *,
        job_timeout: float = 120.0,
        port: int = 0,
        token_ttl: float = 3600.0,
        max_attempts: int = 3,
        cookie_login: bool = True,
        strict_leases: bool = False,
        audience: str = DEFAULT_AUDIENCE,
    ) -> None:
        self.job_timeout = job_timeout
        """The lease (``JOB_TIMEOUT``), seconds; may be changed at any time."""
        self.token_ttl = token_ttl
        """Lifetime of newly issued tokens, seconds."""
        self.max_attempts = max_attempts
        self.cookie_login = cookie_login
        """False: the Cloudflare login sets no cookie (a server without Cloudflare in front)."""
        self.strict_leases = strict_leases
        """True: a result for an expired lease gets 409 even when nobody re-claimed the job."""
        self.opaque_tokens = False
        """True: issue tokens that are not JWTs (no readable ``exp``)."""
        self.audience = audience
        self.rules_hash = "fake-rules-1"
        self.rules: dict[str, str] = dict(DEFAULT_RULES)
        self._lock = threading.Lock()
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._files: dict[str, bytes] = {}
        self._workers: dict[str, Worker] = {}
        self._tokens: dict[str, tuple[str, float]] = {}
        self._fail: dict[str, list[tuple[int, int]]] = {}
        self._drop: dict[str, list[tuple[int, bool]]] = {}
        self._delay: dict[str, float] = {}
        self._drip: dict[str, float] = {}
        self._unauthorized: list[int] = []
        self._submissions: list[Submission] = []
        self._claims: list[Claim] = []
        self._requests: list[RequestRecord] = []
        self.login_attempts = 0
        self._logins: Counter[str] = Counter()
        self.worker = self.add_worker("worker-1")
        """The default worker."""
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._serve, name="fake-mainframe", daemon=True)
        self._thread.start()
        self.closed = False

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=0.02)

    # ----------------------------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL (no trailing slash); also the Auth0 "domain" to configure (it has a scheme)."""
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._server.shutdown()
        self._server.server_close()
        self._server.close_connections()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeMainframe:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------------------------- set-up

    def add_worker(self, name: str) -> Worker:
        """A new worker identity with fresh credentials for both schemes."""
        worker = Worker(
            name=name,
            client_id=f"{name}.access",
            client_secret=secrets.token_hex(16),
            username=f"{name}@nodes.test",
            password=secrets.token_hex(16),
        )
        with self._lock:
            self._workers[name] = worker
        return worker

    def node_settings(
        self, worker: Worker | str | None = None, *, scheme: str = "cloudflare", **extra: Any
    ) -> dict[str, Any]:
        """Keyword arguments for ``NodeSettings`` that make a node log in here as ``worker``."""
        if worker is None:
            worker = self.worker
        elif isinstance(worker, str):
            worker = self._workers[worker]
        values: dict[str, Any] = {
            "base_url": self.url,
            "client_id": worker.client_id,
            "client_secret": worker.client_secret,
        }
        if scheme == "auth0":
            values.update(
                auth0_domain=self.url,
                audience=self.audience,
                username=worker.username,
                password=worker.password,
            )
        elif scheme != "cloudflare":
            raise ValueError(f"unknown scheme {scheme!r}")
        values.update(extra)
        return values

    def host_file(self, filename: str, content: bytes) -> str:
        """Serve ``content`` at a PyPI-shaped URL ending in ``filename``; returns the URL."""
        path = pypi_path(filename, content)
        with self._lock:
            self._files[path] = content
        return self.url + path

    def add_release(
        self,
        name: str,
        version: str,
        files: Mapping[str, bytes] | None = None,
        *,
        sdist: bool = True,
        wheel: bool = True,
        distributions: Iterable[str] = (),
    ) -> list[str]:
        """Queue a job for ``name==version``; returns its distribution URLs.

        With ``files`` (archive-relative path -> content), an sdist (``.tar.gz``, members under
        ``name-version/``) and/or a wheel (files at the root) are built in memory and hosted here.
        ``distributions`` adds URLs as they are (e.g. :meth:`host_file` URLs of hand-made archives, or a
        URL that 404s). No files and no distributions: a job whose distribution list is empty.
        """
        urls = []
        if files is not None:
            builders = [b for b, wanted in ((build_sdist, sdist), (build_wheel, wheel)) if wanted]
            for build in builders:
                filename, content = build(name, version, dict(files))
                urls.append(self.host_file(filename, content))
        urls.extend(distributions)
        with self._lock:
            if (name, version) in self._jobs:
                raise ValueError(f"{name} {version} is already queued")
            self._jobs[(name, version)] = _Job(name, version, urls)
        return urls

    def set_rules(self, hash: str, rules: Mapping[str, str] | None = None) -> None:
        """Change the rule set (and its hash) served from now on and handed out with new claims."""
        with self._lock:
            self.rules_hash = hash
            if rules is not None:
                self.rules = dict(rules)

    # ------------------------------------------------------------------------------------- faults

    def fail_next(self, route: str, status: int = 500, count: int = 1) -> None:
        """Answer ``status`` (without doing anything) to the next ``count`` requests of ``route``."""
        with self._lock:
            self._fail.setdefault(_fault_key(route), []).append((count, status))

    def drop_next(self, route: str, count: int = 1, *, processed: bool = False) -> None:
        """Close the connection without an answer on the next ``count`` requests of ``route``;
        ``processed=True`` first does the work (a claim leases jobs, a result is recorded)."""
        with self._lock:
            self._drop.setdefault(_fault_key(route), []).append((count, processed))

    def delay(self, route: str, seconds: float) -> None:
        """Wait ``seconds`` before answering every request of ``route`` (0 removes the delay)."""
        with self._lock:
            self._delay[_fault_key(route)] = seconds

    def drip(self, route: str, seconds: float) -> None:
        """Send the answers of ``route`` a byte every ``seconds`` (0 removes the drip): never silent long
        enough for a read timeout."""
        with self._lock:
            self._drip[_fault_key(route)] = seconds

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (the next API call with one gets 401)."""
        with self._lock:
            self._tokens = {token: (worker, 0.0) for token, (worker, _) in self._tokens.items()}

    def unauthorized_next(self, count: int = 1, status: int = 401) -> None:
        """Answer ``status`` (401 or 403) to the next ``count`` API calls, whatever their credentials."""
        with self._lock:
            self._unauthorized.extend([status] * count)

    def clear_faults(self) -> None:
        with self._lock:
            self._fail.clear()
            self._drop.clear()
            self._delay.clear()
            self._drip.clear()
            self._unauthorized.clear()

    # ------------------------------------------------------------------------------------ records

    @property
    def submissions(self) -> list[Submission]:
        """Every ``PUT /package`` that reached the fake, in order, with worker and answer."""
        with self._lock:
            return list(self._submissions)

    @property
    def results(self) -> list[Submission]:
        """The accepted submissions (answered 200), in order."""
        with self._lock:
            return [s for s in self._submissions if s.status == 200]

    @property
    def claims(self) -> list[Claim]:
        with self._lock:
            return list(self._claims)

    @property
    def requests(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._requests)

    def count(self, route: str, status: int | None = None) -> int:
        """How many requests of ``route`` arrived (optionally: that were answered ``status``)."""
        return sum(1 for r in self.requests if r.route == route and (status is None or r.status == status))

    @property
    def logins(self) -> int:
        """Successful logins (either scheme), all workers."""
        with self._lock:
            return sum(self._logins.values())

    @property
    def issued_tokens(self) -> list[str]:
        """Every token (cookie value or bearer token) issued so far, e.g. to check none leaks into logs."""
        with self._lock:
            return list(self._tokens)

    def logins_of(self, worker: str) -> int:
        with self._lock:
            return self._logins[worker]

    def state(self, name: str, version: str) -> JobState:
        """A snapshot of the job of ``name==version`` (KeyError when unknown)."""
        with self._lock:
            job = self._jobs[(name, version)]
            self._dead_letter_if_due(job, time.monotonic())
            return _snapshot(job)

    def jobs(self) -> list[JobState]:
        with self._lock:
            now = time.monotonic()
            for job in self._jobs.values():
                self._dead_letter_if_due(job, now)
            return [_snapshot(job) for job in self._jobs.values()]

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Poll ``predicate`` until it holds (True) or ``timeout`` seconds pass (False)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    # ---------------------------------------------------------------------------- request handling

    def _handle(self, method: str, path: str, query: str, headers: Any, body: bytes) -> _Reply | None:
        route = _route_of(method, path)
        keys = [k for k in (route, path) if k is not None]
        with self._lock:
            pause = max((self._delay.get(k, 0.0) for k in keys), default=0.0)
        if pause > 0:
            time.sleep(pause)
        with self._lock:
            reply, drop = self._faulted(keys)
            worker = None
            if reply is None and (drop is None or drop):
                reply, worker = self._serve_route(route, method, path, query, headers, body)
            if drop is not None:
                reply = None
            drip = max((self._drip.get(k, 0.0) for k in keys), default=0.0)
            if reply is not None and drip > 0:
                reply = replace(reply, drip=drip)
            if worker is None and route in API_ROUTES:
                worker = self._authenticate(headers)
            self._record(
                RequestRecord(method, path, route, worker, None, headers.get("User-Agent")), body, reply
            )
        return reply

    def _faulted(self, keys: list[str]) -> tuple[_Reply | None, bool | None]:
        """(forced reply, drop) from the fault switches; drop is None (no drop) or "processed first"."""
        for key in keys:
            status = _take(self._fail, key)
            if status is not None:
                return _json_reply(status, {"detail": f"injected HTTP {status}"}), None
            processed = _take(self._drop, key)
            if processed is not None:
                return None, processed
        return None, None

    def _record(self, record: RequestRecord, body: bytes, reply: _Reply | None) -> None:
        status = None if reply is None else reply.status
        self._requests.append(replace(record, status=status))
        worker = record.worker
        if record.route == "package":
            try:
                parsed: Any = json.loads(body)
            except ValueError:
                parsed = body.decode("utf-8", "replace")
            self._submissions.append(Submission(worker, parsed, status, time.monotonic()))

    def _serve_route(
        self, route: str | None, method: str, path: str, query: str, headers: Any, body: bytes
    ) -> tuple[_Reply, str | None]:
        if route is None:
            return _json_reply(404 if method == "GET" else 405, {"detail": "Not Found"}), None
        if route == "root":
            return self._root(headers)
        if route == "oauth":
            return self._oauth(body)
        if route == "files":
            content = self._files.get(path)
            if content is None:
                return _json_reply(404, {"detail": "no such file"}), None
            return _Reply(200, content, "application/octet-stream"), None
        worker = self._authenticate(headers)
        if self._unauthorized:
            status = self._unauthorized.pop(0)
            return _json_reply(status, {"detail": "injected: not authenticated"}), worker
        if worker is None:
            return _json_reply(401, {"detail": "Not authenticated"}), None
        if route == "rules":
            return _json_reply(200, {"hash": self.rules_hash, "rules": self.rules}), worker
        if route == "jobs":
            return self._claim(worker, query), worker
        return self._submit(worker, body), worker

    # ------------------------------------------------------------------------------------- auth

    def _issue(self, worker: str) -> str:
        now = time.time()
        if self.opaque_tokens:
            token = "opaque-" + secrets.token_hex(16)
        else:
            claims = {"sub": worker, "iat": now, "exp": now + self.token_ttl, "jti": uuid.uuid4().hex}
            token = make_jwt(claims)
        self._tokens[token] = (worker, time.monotonic() + self.token_ttl)
        self._logins[worker] += 1
        return token

    def _token_worker(self, token: str) -> str | None:
        found = self._tokens.get(token)
        if found is None or time.monotonic() >= found[1]:
            return None
        return found[0]

    def _cf_worker(self, headers: Any) -> str | None:
        client_id = headers.get("CF-Access-Client-Id")
        secret = headers.get("CF-Access-Client-Secret")
        for worker in self._workers.values():
            if worker.client_id == client_id and secrets.compare_digest(worker.client_secret, secret or ""):
                return worker.name
        return None

    def _authenticate(self, headers: Any) -> str | None:
        authorization = headers.get("Authorization", "")
        if authorization.startswith("Bearer "):
            return self._token_worker(authorization[len("Bearer ") :])
        for cookie in headers.get_all("Cookie") or []:
            for part in cookie.split(";"):
                key, _, value = part.strip().partition("=")
                if key == CF_COOKIE:
                    return self._token_worker(value)
        if headers.get("CF-Access-Client-Id") is not None:
            return self._cf_worker(headers)
        return None

    def _root(self, headers: Any) -> tuple[_Reply, str | None]:
        info = {"server_commit": "fake-mainframe", "rules_commit": self.rules_hash}
        if headers.get("CF-Access-Client-Id") is None and headers.get("CF-Access-Client-Secret") is None:
            return _json_reply(200, info), self._authenticate(headers)
        self.login_attempts += 1
        worker = self._cf_worker(headers)
        if worker is None:
            return _json_reply(403, {"detail": "Forbidden: invalid service token"}), None
        token = self._issue(worker)
        if not self.cookie_login:
            return _json_reply(200, info), worker
        cookie = f"{CF_COOKIE}={token}; Path=/; HttpOnly; SameSite=None"
        return _json_reply(200, info, {"Set-Cookie": cookie}), worker

    def _oauth(self, body: bytes) -> tuple[_Reply, str | None]:
        self.login_attempts += 1
        try:
            grant = json.loads(body)
        except ValueError:
            grant = None
        if not isinstance(grant, dict) or grant.get("grant_type") != "password":
            return _json_reply(400, {"error": "unsupported_grant_type"}), None
        worker = next((w for w in self._workers.values() if w.username == grant.get("username")), None)
        valid = worker is not None and all(
            grant.get(key) == getattr(worker, key) for key in ("client_id", "client_secret", "password")
        )
        if worker is None or not valid:
            error = {"error": "invalid_grant", "error_description": "Wrong email or password."}
            return _json_reply(403, error), None
        if grant.get("audience") != self.audience:
            return _json_reply(403, {"error": "access_denied", "error_description": "Unknown audience"}), None
        token = self._issue(worker.name)
        ttl = self.token_ttl
        expires_in: float = int(ttl) if float(ttl).is_integer() else ttl
        answer = {"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}
        return _json_reply(200, answer), worker.name

    # ----------------------------------------------------------------------------------- leases

    def _expired(self, job: _Job, now: float) -> bool:
        return job.status == PENDING and job.leased_at is not None and now - job.leased_at >= self.job_timeout

    def _dead_letter_if_due(self, job: _Job, now: float) -> None:
        if self._expired(job, now) and job.attempt >= self.max_attempts:
            job.status = FAILED
            job.reason = f"dead-lettered: {job.attempt} attempts timed out"

    def _claim(self, worker: str, query: str) -> _Reply:
        try:
            batch = int(parse_qs(query).get("batch", ["1"])[0])
        except ValueError:
            batch = 0
        if batch < 1:
            detail = [{"loc": ["query", "batch"], "msg": "Input should be a positive integer"}]
            return _json_reply(422, {"detail": detail})
        now = time.monotonic()
        claimed: list[dict[str, object]] = []
        for job in self._jobs.values():
            if len(claimed) == batch:
                break
            self._dead_letter_if_due(job, now)
            if job.status == QUEUED or self._expired(job, now):
                claimed.append(self._lease(job, worker, now))
        return _json_reply(200, claimed)

    def _lease(self, job: _Job, worker: str, now: float) -> dict[str, object]:
        job.status = PENDING
        job.attempt += 1
        job.assignment_id = str(uuid.uuid4())
        job.worker = worker
        job.hash = self.rules_hash
        job.leased_at = now
        self._claims.append(Claim(worker, job.name, job.version, job.attempt, job.assignment_id, now))
        return {
            "name": job.name,
            "version": job.version,
            "distributions": list(job.distributions),
            "hash": job.hash,
            "attempt": job.attempt,
            "assignment_id": job.assignment_id,
        }

    def _submit(self, worker: str, raw: bytes) -> _Reply:
        try:
            body = json.loads(raw)
        except ValueError:
            return _json_reply(422, {"detail": [{"loc": ["body"], "msg": "JSON decode error"}]})
        errors = _validation_errors(body)
        if errors:
            return _json_reply(422, {"detail": errors})
        job = self._jobs.get((body["name"], body["version"]))
        if job is None:
            return _json_reply(404, {"detail": f"no release {body['name']} {body['version']}"})
        conflict = self._conflict(job, worker, body)
        if conflict is not None:
            return _json_reply(409, {"detail": conflict})
        job.result = body
        if "reason" in body:
            job.status, job.reason = FAILED, body["reason"]
        else:
            job.status = FINISHED
        return _json_reply(200, {"detail": "ok"})

    def _conflict(self, job: _Job, worker: str, body: dict[str, Any]) -> str | None:
        now = time.monotonic()
        self._dead_letter_if_due(job, now)
        if job.status == FINISHED:
            return "already finished"
        if job.status == FAILED:
            return f"already failed ({job.reason})"
        if job.status != PENDING:
            return "not leased"
        if body["assignment_id"] != job.assignment_id or body["attempt"] != job.attempt:
            return "the lease has moved on (attempt/assignment_id is not the current one)"
        if worker != job.worker:
            return "the lease belongs to another worker"
        if self.strict_leases and self._expired(job, now):
            return "the lease has expired"
        return None


def _take(faults: dict[str, list[tuple[int, Any]]], key: str) -> Any:
    """Consume one use of the oldest pending fault under ``key``; its value, or None."""
    queue = faults.get(key)
    if not queue:
        return None
    count, value = queue[0]
    if count <= 1:
        queue.pop(0)
    else:
        queue[0] = (count - 1, value)
    return value


def _snapshot(job: _Job) -> JobState:
    return JobState(
        name=job.name,
        version=job.version,
        distributions=tuple(job.distributions),
        status=job.status,
        attempt=job.attempt,
        assignment_id=job.assignment_id,
        worker=job.worker,
        hash=job.hash,
        leased_at=job.leased_at,
        result=None if job.result is None else dict(job.result),
        reason=job.reason,
    )


__all__ = [
    "API_ROUTES",
    "DEFAULT_RULES",
    "ROUTES",
    "Claim",
    "FakeMainframe",
    "JobState",
    "RequestRecord",
    "Submission",
    "Worker",
    "make_jwt",
    "pypi_path",
]
