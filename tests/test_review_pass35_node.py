"""Review pass 35 of the node changes of passes 33 and 34, over real HTTP on 127.0.0.1 (the fake mainframe,
the fake index) and in real node processes. Each test of a fix fails on the code before it; the ``review``
tests pin what held:

* a ``CF_Authorization`` cookie whose ``Max-Age`` has more than 4300 digits crashed the login (``int()``
  raised ValueError, which no caller takes): it is read by its sign;
* an empty spelling of a setting beside the other one set (``DRAGONFLY_CF_ACCESS_CLIENT_ID=`` left by a
  compose file, ``DRAGONFLY_CLIENT_ID`` set) was exit 2 as two different values; before pass 34 the set
  one was used, as an empty variable counts as not set. An empty first spelling hiding the other stays an
  error.
"""

from __future__ import annotations

import asyncio
import signal
import time
import warnings
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from dragonfly_hybrid.node.mainframe import Backoff
from dragonfly_hybrid.node.settings import ConfigError, load_settings

from tests.fakes.mainframe import CF_COOKIE, FakeMainframe, _Reply, _route_of
from tests.test_auth_pass33 import AuthMainframe, calls
from tests.test_mainframe import client_for
from tests.test_node import node_process

T = TypeVar("T")
HANG_GUARD = 60

pytestmark = pytest.mark.usefixtures("clean_env")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, HANG_GUARD))


@pytest.fixture
def auth_fake() -> Iterator[AuthMainframe]:
    with AuthMainframe() as server:
        yield server


# --- the CF_Authorization cookie's attributes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("attributes", "kept"),
    [
        ("Max-Age=" + "9" * 5000, True),
        ("Max-Age=-" + "9" * 5000, False),
        ("Max-Age=" + "0" * 5000, False),
        ("Max-Age=-0", False),
    ],
    ids=["huge", "huge-negative", "zeros", "minus-zero"],
)
def test_a_max_age_of_thousands_of_digits_is_read_by_its_sign(
    auth_fake: AuthMainframe, attributes: str, kept: bool
) -> None:
    """5000 digits (a 64 KB header line is accepted): ``int()`` raised ValueError out of the login."""
    auth_fake.cookies = lambda token: [f"{CF_COOKIE}={token}; Path=/; {attributes}"]
    calls(auth_fake, 2)
    [token] = auth_fake.issued_tokens
    assert auth_fake.sent_cookies == [f"{CF_COOKIE}={token}" if kept else None] * 2
    assert auth_fake.login_attempts == 1


@pytest.mark.parametrize(
    "attributes",
    [
        "Max-Age=1e3",
        "Max-Age=+5",
        "Max-Age=",
        "Max-Age",
        "Expires=garbage",
        "Expires=Fri, 31 Dec 99999 23:59:59 GMT",
        "Expires=",
        "Secure; HttpOnly; ; =; ==",
        "Domain=127.0.0.1",
        "Path=",
        "Path=relative",
    ],
)
def test_review_odd_cookie_attributes_keep_the_session(auth_fake: AuthMainframe, attributes: str) -> None:
    """An attribute a browser ignores (no digits, a date it cannot read, no ``=``, an empty or relative
    path: the default path) leaves the cookie the session, without a crash."""
    auth_fake.cookies = lambda token: [f"{CF_COOKIE}={token}; {attributes}"]
    with warnings.catch_warnings(record=True) as shown:
        calls(auth_fake, 2)
    [token] = auth_fake.issued_tokens
    assert auth_fake.sent_cookies == [f"{CF_COOKIE}={token}"] * 2
    # httpx's cookie jar warned "http.cookiejar bug!" with a traceback on stderr for a bare `Max-Age`.
    assert not [str(w.message) for w in shown if "cookiejar" in str(w.message)]


# --- hostile Retry-After ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "9" * 5000,
        "-5",
        "1e9",
        "garbage",
        "Thu, 01 Jan 1970 00:00:00 GMT",
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Fri, 31 Dec 99999 23:59:59 GMT",
        "Mon, 01 Jan 2024 00:00:00 +99999999",
    ],
)
def test_review_a_hostile_retry_after_neither_hangs_nor_crashes_nor_hammers(value: str) -> None:
    """GET /rules answered 503 with each value three times: the call waits at most the backoff's cap each
    time (a few ms here) and is answered on the fourth try: three retries, not a loop."""
    with FakeMainframe() as fake:
        original = fake._handle
        seen: list[float] = []

        def handle(method: str, path: str, query: str, headers: Any, body: bytes) -> Any:
            if _route_of(method, path) == "rules":
                seen.append(time.monotonic())
                if len(seen) <= 3:
                    return _Reply(503, b"{}", "application/json", {"Retry-After": value})
            return original(method, path, query, headers, body)

        fake._handle = handle  # type: ignore[method-assign]

        async def scenario() -> None:
            async with client_for(fake, retry_backoff=Backoff(0.001, 0.05)) as client:
                await client.get_rules()

        run(scenario())
    assert len(seen) == 4


# --- two spellings of one setting: empty is not set ---------------------------------------------------------


def test_an_empty_second_spelling_is_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRAGONFLY_CLIENT_ID", "worker.access")
    monkeypatch.setenv("DRAGONFLY_CF_ACCESS_CLIENT_ID", "")
    monkeypatch.setenv("DRAGONFLY_CLIENT_SECRET", "s3cret-value")
    monkeypatch.setenv("DRAGONFLY_CF_ACCESS_CLIENT_SECRET", "")
    settings = load_settings()
    assert settings.client_id == "worker.access" and settings.auth_scheme() == "cloudflare"


def test_an_empty_second_spelling_in_the_env_file_is_not_set(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "DRAGONFLY_CLIENT_ID=worker.access\nDRAGONFLY_CF_ACCESS_CLIENT_ID=\nDRAGONFLY_CLIENT_SECRET=s3cret\n"
    )
    assert load_settings(env_file=env_file).client_id == "worker.access"


def test_review_an_empty_first_spelling_hiding_the_other_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic takes the first spelling, empty: the other's value would be ignored. Named, not shown."""
    monkeypatch.setenv("DRAGONFLY_CLIENT_ID", "")
    monkeypatch.setenv("DRAGONFLY_CF_ACCESS_CLIENT_ID", "worker.access")
    monkeypatch.setenv("DRAGONFLY_CF_ACCESS_CLIENT_SECRET", "s3cret-value")
    with pytest.raises(ConfigError, match="DRAGONFLY_CLIENT_ID and DRAGONFLY_CF_ACCESS_CLIENT_ID") as caught:
        load_settings()
    assert "worker.access" not in str(caught.value) and "s3cret" not in str(caught.value)


def test_review_unrelated_variables_and_no_env_file_raise_no_conflict(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DRAGONFLY_CLIENT_ID", "worker.access")
    monkeypatch.setenv("DRAGONFLY_CLIENT_SECRET", "s3cret-value")
    monkeypatch.setenv("CF_ACCESS_CLIENT_ID", "something-else")  # no DRAGONFLY_ prefix: not a spelling
    monkeypatch.setenv("DRAGONFLY_USERNAME_OLD", "x")
    assert load_settings(env_file=tmp_path / "absent.env").client_id == "worker.access"


# --- a Retry-After and SIGTERM ------------------------------------------------------------------------------


def test_review_a_node_waiting_out_a_claims_retry_after_stops_on_sigterm(tmp_path: Path) -> None:
    """Every claim answered 429 ``Retry-After: 86400``: the node waits the cap (30 s) before claiming
    again. A SIGTERM during that wait ends it with exit 0 and no second claim (without the stop wired
    into the wait, the claim went out when the wait was over)."""
    with FakeMainframe() as fake:
        original = fake._handle
        claims: list[float] = []

        def handle(method: str, path: str, query: str, headers: Any, body: bytes) -> Any:
            if _route_of(method, path) == "jobs":
                claims.append(time.monotonic())
                return _Reply(429, b"{}", "application/json", {"Retry-After": "86400"})
            return original(method, path, query, headers, body)

        fake._handle = handle  # type: ignore[method-assign]
        process = node_process(fake, tmp_path)
        assert fake.wait_until(lambda: bool(claims), timeout=HANG_GUARD), "no claim came"
        time.sleep(0.3)  # into the wait
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=HANG_GUARD)
    assert process.returncode == 0, stderr
    assert len(claims) == 1
