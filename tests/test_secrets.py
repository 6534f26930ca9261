"""Secrets never reach a log, an error message or an output (the twelfth red-team pass, docs/security.md):
URL credentials and tokens in every spelling, requirements lines that quote them, proxies, a mainframe
that echoes the node's credentials back, ``config``, the log formatters and the last-resort handler."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import random
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.logs import JsonFormatter, TextFormatter
from dragonfly_hybrid.node.mainframe import AuthError, MainframeClient
from dragonfly_hybrid.node.settings import NodeSettings
from dragonfly_hybrid.pypi.requirements import read_pins
from dragonfly_hybrid.redaction import (
    REDACTED,
    describe_error,
    forget_secrets,
    redact_text,
    redact_url,
    remember_secret,
)
from typer.testing import CliRunner, Result

from tests.fakes.pypi import MARKER, FakeFile, FakeIndex, sdist

SECRET = "S3CR3T-0xdeadbeef"


@pytest.fixture(autouse=True)
def _no_remembered_secrets() -> Iterator[None]:
    forget_secrets()
    yield
    forget_secrets()


def run(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)


def assert_hidden(text: str, *secrets: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} shown in {text!r}"


# ------------------------------------------------------------------------------------------ redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # Path parameters and fragments carry tokens as well as the query does.
        ("https://h.example/d;token=SEC/f.whl", "https://h.example/d;token=<redacted>/f.whl"),
        ("https://h.example/f.whl;SEC?a=1", "https://h.example/f.whl;<redacted>?a=<redacted>"),
        ("https://h.example/f.whl#access_token=SEC", "https://h.example/f.whl#access_token=<redacted>"),
        ("https://h.example/f.whl#sha256=ab&t=SEC", "https://h.example/f.whl#sha256=ab&t=<redacted>"),
        ("https://h.example/f.whl#SEC", "https://h.example/f.whl#<redacted>"),
        # A password with an unencoded / ? or # ends the host part early: everything up to the last @ goes.
        ("https://user:pa/SEC@h.example/simple/", "https://h.example/simple/"),
        ("https://user:pa?SEC@h.example/simple/", "https://h.example/simple/"),
        ("https://user:pa#SEC@h.example/simple/", "https://h.example/simple/"),
        ("https://user:/SEC@[::1]:8080/simple/", "https://[::1]:8080/simple/"),
        ("HTTPS://user:SEC@h.example/simple/", "https://h.example/simple/"),
    ],
)
def test_redact_url_hides_path_parameters_fragments_and_malformed_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown


@pytest.mark.parametrize(
    "url",
    [
        "https://h.example/f-1.0.tar.gz#sha256=" + "a" * 64,
        "https://h.example/f-1.0.tar.gz#md5=abc",
        "git+https://h.example/r.git#egg=r&subdirectory=src",
        "https://h.example:8080/simple/@scope/x/",  # an @ in the path, after a real port
    ],
)
def test_redact_url_keeps_digests_pip_fragments_and_paths(url: str) -> None:
    assert redact_url(url) == url


def test_redact_text_finds_credentials_that_hold_quotes_and_remembered_secrets() -> None:
    assert redact_text("GET 'https://u:pa\"SEC@h.example/x' failed") == "GET 'https://h.example/x' failed"
    assert redact_text("at https://u:pa/SEC@h.example/x: refused") == "at https://h.example/x: refused"
    remember_secret(SECRET)
    echoed = json.dumps({"detail": f'{{"client_secret": "{SECRET}"}}'})
    assert_hidden(redact_text(f"{echoed} Bearer {SECRET}"), SECRET)
    remember_secret("abc")  # too short to scrub everywhere
    assert redact_text("abc") == "abc"


# A password whose unencoded "/" (or "?", "#") follows digits: a parser reads ``user:123`` as a host and a
# valid port. The rule (redaction._starts_credentials): when an "@" follows, a port after a bare name is
# read as credentials; after a host name (dotted, an IP address, localhost), as a path.


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:123/x-SEC@host.example/simple/", "https://host.example/simple/"),
        ("https://user:8080/abc-SEC@host.example", "https://host.example"),
        ("https://user:123?x-SEC@host.example/simple/", "https://host.example/simple/"),
        ("https://user:123#x-SEC@host.example/", "https://host.example/"),
        ("https://user:00080/SEC@[::1]:8080/simple/", "https://[::1]:8080/simple/"),
        (
            "https://user:123/SEC/SEC@SEC@host.example/simple/?t=1",
            "https://host.example/simple/?t=<redacted>",
        ),
        # A user name with an unencoded @ as well: the host part is read after the authority's last @.
        ("https://me@corp:123/SEC@host.example/x", "https://host.example/x"),
        ("https://me@corp.example:pa/SEC@host.example/x", "https://host.example/x"),
        # What the rule costs: a bare host name with a port and an @ in its path is read as credentials.
        ("https://devpi:3141/root/@scope/x/", "https://scope/x/"),
    ],
)
def test_a_password_whose_slash_follows_digits_is_hidden(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown
    assert redact_text(f"GET {url} refused") == f"GET {shown} refused"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # Credentials holding a quote, or a "://", after the digits.
        ("GET 'https://user:123/x'SEC@host.example/s' failed", "GET 'https://host.example/s' failed"),
        ('{"u":"https://user:123/x\\"SEC@host.example/"}', '{"u":"https://host.example/"}'),
        ("https://user:123/x://SEC@host.example/x", "https://host.example/x"),
        ("https://a.example/s,https://user:123/x://SEC@b.example/", "https://a.example/s,https://b.example/"),
        # A port of thousands of digits is no port (and Python's int() refuses so many digits).
        ("see https://user:" + "1" * 5000 + "/x'SEC@host.example/ now", "see https://host.example/ now"),
    ],
)
def test_redact_text_hides_a_password_whose_slash_follows_digits(text: str, shown: str) -> None:
    assert redact_text(text) == shown
    assert redact_text(shown) == shown


def test_no_password_whose_slash_question_mark_or_hash_follows_digits_is_ever_shown() -> None:
    """Random texts of one to three URLs whose password is digits, an unencoded ``/``, ``?`` or ``#``, then
    the secret (a ``://`` in it too; a quote when white space parts the URLs), after user names with and
    without an ``@``, before hosts with and without ports and paths holding an ``@``: never shown."""
    rnd = random.Random(36)
    users = ["u", "user", "__token__", "u%40x", "me@corp"]
    hosts = ["h", "h.example", "h.example:8080", "[::1]:80", "localhost:1", "127.0.0.1:9"]
    paths = ["", "/", "/simple/", "/s?t=1", "/p;k=v", "#f=2", "/@scope/x", "/r.git@v1"]
    for _ in range(20_000):
        spaced = rnd.random() < 0.5
        separator = rnd.choice([" ", "\n", " x://a "] if spaced else [",", "", "'", '"', '","', "(", ")"])
        urls = []
        for _ in range(rnd.randint(1, 3)):
            user = rnd.choice(users)
            inside = ["", "x", "/", "://", "?", "#", *(["'", '"'] if spaced and "@" not in user else [])]
            password = "".join(
                (rnd.choice(["1", "80", "00443", "65536"]), rnd.choice("/?#"), rnd.choice(inside), "SEC")
            )
            host = rnd.choice(hosts) + rnd.choice(paths)
            urls.append(
                f"{rnd.choice(['https', 'git+https'])}://{user}:{password}{rnd.choice(['', '/', '1'])}@{host}"
            )
        before, after = (
            rnd.choice(["", "see ", "'", '"', "[", '{"u":"']),
            rnd.choice(["", " done", "'", "]", ": x"]),
        )
        text = before + separator.join(urls) + after
        assert "SEC" not in redact_text(text), text


@pytest.mark.parametrize(
    "url",
    [
        "https://host.example/@scope/pkg/",
        "https://host/@scope/pkg/",  # no port: a bare name is a host
        "https://host.example/users/me@domain.example/simple/",
        "https://h.example:8080/users/me@domain.example/simple/",
        "https://localhost:8080/simple/@scope/x/",
        "https://127.0.0.1:8080/simple/@scope/x/",
        "https://[::1]:8080/simple/@scope/x/",
        "https://xn--bcher-kva.example:8443/@scope/x/",
        "https://bücher.example:8443/@scope/x/",
        "git+https://git.example:8443/g/r.git@v1.2#egg=r",
        "git+https://github.com/o/r.git@main",
    ],
)
def test_an_at_sign_in_the_path_after_a_host_and_a_port_stays(url: str) -> None:
    assert redact_url(url) == url
    assert redact_text(f"GET {url}: refused") == f"GET {url}: refused"
    assert redact_url(url.replace("://", "://u:SEC@", 1)) == url


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()])
def test_log_lines_hide_a_password_whose_slash_follows_digits(
    formatter: logging.Formatter, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real records through a real handler: the URL as a message argument, in a field, in a traceback; and
    a port of 5,000 digits, which made the formatter raise (logging then printed the raw record)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("dragonfly_hybrid.test_secrets")
    logger.addHandler(handler)
    try:
        url = f"https://node:8080/ss-{SECRET}@mirror.example/simple/"
        logger.warning("could not fetch %s", url, extra={"index": url})
        try:
            raise RuntimeError(f"refused: https://node:123?{SECRET}@mirror.example/x")
        except RuntimeError:
            logger.exception("lost")
        logger.warning("at https://node:%s/x'%s@mirror.example/simple/", "1" * 5000, SECRET)
    finally:
        logger.removeHandler(handler)
    shown = stream.getvalue()
    assert_hidden(shown + capsys.readouterr().err, SECRET, "ss-", "8080/", "Logging error")
    assert shown.count("mirror.example/simple/") == 3 and "RuntimeError: refused" in shown, shown


def test_an_index_url_whose_password_holds_a_slash_after_digits_is_refused_without_showing_it(
    rules_dir: Path,
) -> None:
    """Read as host ``alice``, port 123, the index URL would be asked for at the wrong host (and named with
    its password in the error): refused, as a password with any other unencoded ``/``."""
    index = f"http://alice:123/ss-{SECRET}@127.0.0.1:9/simple/"
    result = run("scan", "demo==1.0", "-r", rules_dir, "--index-url", index)
    assert_hidden(result.output, "alice", "123/", SECRET)
    assert result.exit_code == 3 and "not percent-encoded" in result.output, result.output


URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?:[^\s@]*@)?[^\s'\"<>]+")
"""What :func:`redact_text` takes for a URL, as the regular expression it used to be (it backtracked
quadratically over hostile text: a 96 kB line took 6 s); the hand-written scan must find the same ones,
in a text that quotes one URL (with several, a URL starting in another's host or path ends it: see
:func:`test_redact_text_parts_urls_that_follow_each_other`)."""
URL_WITHOUT_CREDENTIALS = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
HOST_THEN_PATH = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/?#@\s'\"<>]+/")
"""A URL that names a host and then a path before a quote: an ``@`` after that quote is not its."""
HOST_NAME = re.compile(r"(?i:localhost)|[^\W_]+(?:-+[^\W_]+)*(?:\.[^\W_]+(?:-+[^\W_]+)*)+\.?")
"""A host name before a port (a bare word before one may be a user name: ``user:123/x@host``)."""


def _reference(found: re.Match[str]) -> str:
    url = found.group()
    head = HOST_THEN_PATH.match(url)
    authority = head.group()[head.group().index("://") + 3 : -1] if head else ""
    name, colon, port = authority.rpartition(":")
    is_port = port.isascii() and port.isdigit() and int(port) <= 65535
    if head and (not colon or (is_port and HOST_NAME.fullmatch(name))):
        url = URL_WITHOUT_CREDENTIALS.match(url).group()  # type: ignore[union-attr]
        return redact_url(url) + found.string[found.start() + len(url) : found.end()]
    return redact_url(url)


def test_redact_text_finds_the_urls_the_reference_expression_finds() -> None:
    pieces = [*"aZ9+.-:/@'\" <>?#=;&x\t\né", "://", "https://", "u:p@", "?t=1", ";k=v", "#f=2"]
    pieces += ["u:80/", "h.x:80/"]  # a bare name and a host name before a port: the rule's two sides
    rnd = random.Random(35)
    for _ in range(60_000):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(1, 20)))
        if text.count("://") == 1:
            expected = URL_IN_TEXT.sub(_reference, text)
            assert redact_text(text) == expected, text


@pytest.mark.parametrize(
    "piece", ["x://a'", "x://a'y://b@'", "x://'@'", "1://", "a", "x://a:1/b'@", "x://a:1/b,y://c:2/d,"]
)
def test_redact_text_reads_a_long_hostile_line(piece: str) -> None:
    """Shapes that made the expression backtrack over the rest of the line at each URL or letter (its
    time is the benchmark's: bench/test_bench_redaction.py)."""
    text = piece * 20_000 + " see https://u:SEC@h.example/x?token=SEC"
    shown = redact_text(text)
    assert "SEC" not in shown and shown.endswith(" see https://h.example/x?token=<redacted>")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # Fourteenth pass: a URL starting in another's host or path is a URL of its own.
        (
            "https://u:SEC@a.example/simple,https://u2:SEC@b.example/",
            "https://a.example/simple,https://b.example/",
        ),
        (
            '["https://a.example/s","https://u:SEC@b.example/s"]',
            '["https://a.example/s","https://b.example/s"]',
        ),
        ("https://web.example/2020/https://u:SEC@b.example/", "https://web.example/2020/https://b.example/"),
        ("https://pypi.example,https://u:SEC@b.example/s", "https://b.example/s"),
        # In a query it is hidden with the query's values; in credentials, with them.
        (
            "https://a.example/cb?next=https://b.example/p&token=SEC",
            "https://a.example/cb?next=<redacted>&token=<redacted>",
        ),
        ("https://user:pa://SEC@h.example/x", "https://h.example/x"),
        ("https://user:pa/x://SEC@h.example/x", "https://h.example/x"),
        # A digest's value that holds a URL is no digest.
        (
            "https://a.example/f?x=1#sha256=abc,https://u:SEC@b.example/",
            "https://a.example/f?x=<redacted>#sha256=<redacted>",
        ),
        # JSON text that escapes its slashes.
        (
            '{"index": "https:\\/\\/u:SEC@h.example\\/simple?token=SEC"}',
            '{"index": "https:\\/\\/h.example\\/simple?token=<redacted>"}',
        ),
        ('x://u:SEC@a,"y:\\/\\/b" x://u:SEC@a', 'x://a,"y:\\/\\/b" x://a'),
        # A server echoing the request's headers.
        ("Authorization: Basic dTpTRUM=", "Authorization: Basic <redacted>"),
        ('{"proxy-authorization": "Bearer SEC.SEC"}', '{"proxy-authorization": "Bearer <redacted>"}'),
        ("authorization=SEC", "authorization=<redacted>"),
    ],
)
def test_redact_text_hides_urls_that_follow_each_other_escaped_urls_and_echoed_headers(
    text: str, shown: str
) -> None:
    assert redact_text(text) == shown
    assert redact_text(shown) == shown


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        # An @ after a URL's host and path, past a quote, is not that URL's: what follows stays.
        (
            '{"url":"https://h.example/x?t=1","by":"me@h.example"}',
            '{"url":"https://h.example/x?t=<redacted>","by":"me@h.example"}',
        ),
        (
            '<a href="https://h.example/x#k=v">me@h.example</a>',
            '<a href="https://h.example/x#k=<redacted>">me@h.example</a>',
        ),
        ("Authorization header missing", "Authorization header missing"),
    ],
)
def test_redact_text_leaves_what_follows_a_url_after_a_quote(text: str, shown: str) -> None:
    assert redact_text(text) == shown


@pytest.mark.parametrize(
    "form",
    ["p%40ss+w%2Frd+SEC", "p%40ss%20w%2frd%20SEC", "p%40ss%20w%2Frd%20SEC", "p@ss w\\/rd SEC"],
)
def test_a_remembered_secret_is_hidden_form_encoded_in_lower_case_hex_or_with_escaped_slashes(
    form: str,
) -> None:
    remember_secret("p@ss w/rd SEC")
    assert redact_text(f"the server said: {form}.") == "the server said: <redacted>."


def test_an_invalid_url_error_hides_the_part_it_quotes() -> None:
    import httpx

    with pytest.raises(httpx.InvalidURL) as caught:
        httpx.URL("http://user:pa/SEC@h.example/")
    shown = describe_error(caught.value)
    assert shown == f"InvalidURL: Invalid port: {REDACTED}"


# ------------------------------------------------------------------------------ scan against an index


class _Files(BaseHTTPRequestHandler):
    """Serves ``server.files`` by their last path segment, whatever the parameters, query and fragment."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        name = self.path.split("?")[0].rsplit("/", 1)[-1].split(";")[0]
        body = self.server.files.get(name)  # type: ignore[attr-defined]
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")


@pytest.fixture
def file_host() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    server.daemon_threads = True
    server.files = {}  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("where", ["path-parameter", "fragment"])
def test_a_token_in_a_file_urls_path_parameter_or_fragment_is_never_shown_or_stored(
    fake_index: FakeIndex, file_host: ThreadingHTTPServer, rules_dir: Path, tmp_path: Path, where: str
) -> None:
    name, data = sdist("demo", "1.0", {"demo/a.py": b"# " + MARKER})
    file_host.files[name] = data  # type: ignore[attr-defined]
    host = f"http://127.0.0.1:{file_host.server_address[1]}"
    url = (
        f"{host}/p;token={SECRET}/{name}" if where == "path-parameter" else f"{host}/p/{name}#token={SECRET}"
    )
    fake_index.add("demo", FakeFile(name, data, listed_url=url))
    store = tmp_path / "store.db"
    for fmt in ("json", "sarif", "markdown", "html", "table"):
        result = run(
            "scan", "demo==1.0", "-r", rules_dir, "--index-url", fake_index.url, "-f", fmt, "--store", store
        )
        assert result.exit_code == 1, result.output
        assert_hidden(result.output, SECRET)
    report = run("report", "demo==1.0", "--store", store, "-f", "json")
    assert report.exit_code == 0, report.output
    assert_hidden(report.output, SECRET)
    assert_hidden(store.read_bytes().decode("latin-1"), SECRET)
    shown = json.loads(report.stdout)
    assert f"token={REDACTED}" in json.dumps(shown)


def test_a_standalone_nodes_results_show_no_token_of_a_file_url(
    fake_index: FakeIndex, file_host: ThreadingHTTPServer, rules_dir: Path, tmp_path: Path
) -> None:
    """The inspector URL is made from the file's URL path: a path parameter's token must not carry over."""
    name, data = sdist("demo", "1.0", {"demo/a.py": b"# " + MARKER})
    file_host.files[name] = data  # type: ignore[attr-defined]
    url = f"http://u:{SECRET}@127.0.0.1:{file_host.server_address[1]}/p;token={SECRET}/{name}?sig={SECRET}"
    fake_index.add("demo", FakeFile(name, data, listed_url=url))
    out = tmp_path / "results.jsonl"
    command = ["node", "--job", "demo==1.0", "--index-url", fake_index.url, "-r", rules_dir, "-o", out]
    done = subprocess.run(
        [sys.executable, "-m", "dragonfly_hybrid.cli", *map(str, command)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "DRAGONFLY_METRICS_PORT": "off", "DRAGONFLY_LOG_LEVEL": "DEBUG"},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["score"] == 5 and f"/p;token={REDACTED}/" in result["inspector_url"]
    assert_hidden(out.read_text() + done.stdout + done.stderr, SECRET)


@pytest.mark.parametrize("character", ["/", "?", "#"])
def test_an_index_url_whose_password_holds_an_unencoded_character_is_refused_without_showing_it(
    rules_dir: Path, character: str
) -> None:
    password = f"pa{character}ss-{SECRET}"
    result = run(
        "scan", "demo==1.0", "-r", rules_dir, "--index-url", f"http://alice:{password}@127.0.0.1:9/simple/"
    )
    assert result.exit_code == 3, result.output
    assert_hidden(result.output, "alice", f"pa{character}", SECRET)


# ----------------------------------------------------------------------------- requirements and locks


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (f"other @ https://u:{SECRET}@files.example/other-1.0.tar.gz", "skipped"),
        (f"other @ https://files.example/other-1.0.tar.gz?token={SECRET}", "skipped"),
        (f"git+https://u:{SECRET}@github.com/o/r.git#egg=r", "skipped"),
        (f"-e git+https://{SECRET}@github.com/o/r.git#egg=r", "skipped"),
        (f"--index-url https://u:{SECRET}@files.example/simple/ --bogus", "cannot parse"),
        (f"--index-url https://u:{SECRET}@files.example/simple/${{X}}", "expands"),
    ],
)
def test_a_requirements_line_is_quoted_without_its_credentials(
    fake_index: FakeIndex, rules_dir: Path, tmp_path: Path, line: str, message: str
) -> None:
    fake_index.add("demo", sdist("demo", "1.0", {"a.py": b"pass\n"}))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"demo==1.0\n{line}\n")
    result = run("scan", "-R", requirements, "-r", rules_dir, "--index-url", fake_index.url, "-f", "json")
    assert message in result.stderr, result.stderr
    assert_hidden(result.output, SECRET)


def test_skipped_entries_and_errors_of_requirements_files_are_redacted(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"demo==1.0\nother @ https://u:{SECRET}@files.example/other-1.0.tar.gz\n")
    assert_hidden(" ".join(read_pins([requirements]).skipped), SECRET)
    hashed = tmp_path / "hashed.txt"
    hashed.write_text(
        f"demo==1.0 --hash=sha256:{'a' * 64}\nother @ https://u:{SECRET}@files.example/other-1.0.tar.gz\n"
    )
    from dragonfly_hybrid.pypi.requirements import RequirementsError

    with pytest.raises(RequirementsError) as caught:
        read_pins([hashed])
    assert "hash-checking mode" in str(caught.value)
    assert_hidden(str(caught.value), SECRET)


@pytest.mark.parametrize(
    "url",
    [
        f"ftp://u:{SECRET}@files.example/demo-1.0.tar.gz",
        f"http://u:{SECRET}@[::1/demo-1.0.tar.gz",
        f"http://u:pa/{SECRET}@files.example/demo-1.0.tar.gz",  # the port read: pa
    ],
)
def test_a_lock_files_unusable_url_is_named_without_its_credentials(tmp_path: Path, url: str) -> None:
    lock = tmp_path / "pylock.toml"
    lock.write_text(
        'lock-version = "1.0"\ncreated-by = "x"\n[[packages]]\nname = "demo"\nversion = "1.0"\n'
        f'[packages.sdist]\nurl = "{url}"\nhashes = {{sha256 = "{"a" * 64}"}}\n'
    )
    result = run("scan", "-R", lock)
    assert result.exit_code == 2 and "URL" in result.stderr, result.output
    assert_hidden(result.output, SECRET)


# ----------------------------------------------------------------------------------------------- proxies


@pytest.mark.parametrize(
    "proxy",
    [
        f"http://proxyuser:pa/{SECRET}@127.0.0.1:3128",  # httpx: Invalid port: 'pa'
        f"proxyuser:{SECRET}@127.0.0.1:3128",  # httpx: Unknown scheme for proxy URL URL('proxyuser:...')
    ],
)
def test_a_proxy_url_that_cannot_be_used_is_a_usage_error_that_does_not_quote_it(
    fake_index: FakeIndex, rules_dir: Path, proxy: str
) -> None:
    fake_index.add("demo", sdist("demo", "1.0", {"a.py": b"pass\n"}))
    result = run(
        "scan", "demo==1.0", "-r", rules_dir, "--index-url", fake_index.url, env={"PIP_PROXY": proxy}
    )
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error: cannot use the proxy URL"), result.stderr
    assert_hidden(result.output, SECRET, "pa/", "'pa'", "proxyuser")


# ------------------------------------------------------------------------------------------ the node


class _Echo(BaseHTTPRequestHandler):
    """A mainframe (and Auth0 tenant) that logs the node in, then answers every call with an error whose
    body echoes the request's headers and body: the node's credentials, as some proxies and servers do."""

    protocol_version = "HTTP/1.1"
    token = "opaque-session-" + SECRET

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, body: object, headers: tuple[tuple[str, str], ...] = ()) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        echoed = f"{self.headers}{self.rfile.read(length).decode()}"
        if self.command == "GET" and self.path == "/":
            cookie = ("Set-Cookie", f"CF_Authorization={self.token}; Path=/")
            self._reply(200, {"server_commit": "x", "rules_commit": "x"}, (cookie,))
        elif self.path == "/oauth/token" and self.server.auth0_refuses:  # type: ignore[attr-defined]
            self._reply(403, {"error": "invalid_grant", "error_description": echoed})
        elif self.path == "/oauth/token":
            self._reply(200, {"access_token": self.token, "expires_in": 3600})
        else:
            self._reply(self.server.status, {"detail": echoed})  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = _handle


@pytest.fixture
def echo_mainframe() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    server.status = 500  # type: ignore[attr-defined]
    server.auth0_refuses = False  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _settings(server: ThreadingHTTPServer, scheme: str) -> NodeSettings:
    url = f"http://127.0.0.1:{server.server_address[1]}"
    values: dict[str, object] = {"base_url": url, "client_id": "node-1", "client_secret": "cs-" + SECRET}
    if scheme == "auth0":
        values.update(auth0_domain=url, username="node@example.org", password="pw-" + SECRET)
    return NodeSettings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", ["cloudflare", "auth0"])
@pytest.mark.parametrize("status", [500, 400, 409, 422])
def test_a_mainframe_that_echoes_the_nodes_credentials_never_gets_them_logged(
    echo_mainframe: ThreadingHTTPServer, caplog: pytest.LogCaptureFixture, scheme: str, status: int
) -> None:
    echo_mainframe.status = status  # type: ignore[attr-defined]
    from dragonfly_hybrid.node.jobs import FailureBody, MainframeError

    async def session() -> list[str]:
        problems = []
        async with MainframeClient(_settings(echo_mainframe, scheme), retries=0) as client:
            calls = (
                client.claim_jobs(1),
                client.submit(FailureBody("demo", "1.0", "x", 1, "a")),
                client.get_rules(),
            )
            for call in calls:
                try:
                    await call
                except MainframeError as err:  # what the node logs or prints
                    problems.append(str(err))
        return problems

    with caplog.at_level(logging.DEBUG, logger="dragonfly_hybrid"):
        problems = asyncio.run(session())
    shown = caplog.text + "\n".join(problems)
    assert "User-Agent" in shown  # the echo was logged: without its secrets
    assert_hidden(shown, SECRET)


def test_an_auth0_refusal_that_echoes_the_request_does_not_show_its_secrets(
    echo_mainframe: ThreadingHTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    echo_mainframe.auth0_refuses = True  # type: ignore[attr-defined]

    async def login() -> str:
        async with MainframeClient(_settings(echo_mainframe, "auth0"), login_attempts=1) as client:
            with pytest.raises(AuthError) as caught:
                await client.login()
            return str(caught.value)

    with caplog.at_level(logging.DEBUG, logger="dragonfly_hybrid"):
        message = asyncio.run(login())
    assert "invalid_grant" in message
    assert_hidden(message + caplog.text, SECRET)


def test_config_and_the_settings_repr_show_no_credentials_of_urls(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRAGONFLY_BASE_URL", f"https://node:{SECRET}@mainframe.example/api")
    monkeypatch.setenv("DRAGONFLY_AUTH0_DOMAIN", f"https://node:{SECRET}@tenant.example")
    monkeypatch.setenv("DRAGONFLY_CLIENT_SECRET", SECRET)
    result = run("config")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["base_url"] == "https://mainframe.example/api"
    assert shown["auth0_domain"] == "https://tenant.example"
    assert_hidden(result.output, SECRET)
    assert_hidden(repr(NodeSettings()), SECRET)
    # A query string is refused (the node appends its paths to the URL): the error shows neither secret.
    monkeypatch.setenv("DRAGONFLY_BASE_URL", f"https://node:{SECRET}@mainframe.example/?token={SECRET}")
    refused = run("config")
    assert refused.exit_code == 2, refused.output
    assert "DRAGONFLY_BASE_URL: must not have a query string" in refused.output
    assert_hidden(refused.output, SECRET)


# ----------------------------------------------------------------------- logs and the last-resort paths


def _record(message: str, **extra: object) -> logging.LogRecord:
    try:
        raise RuntimeError(f"while fetching https://u:{SECRET}@h.example/x")
    except RuntimeError:
        info = sys.exc_info()
    record = logging.LogRecord("dragonfly_hybrid.x", logging.WARNING, __file__, 1, message, None, info)
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()])
def test_log_lines_are_redacted_whatever_carries_the_secret(formatter: logging.Formatter) -> None:
    remember_secret("cs-" + SECRET)
    basic = base64.b64encode(f"u:{SECRET}".encode()).decode()
    record = _record(
        f"failed: https://u:{SECRET}@h.example/f.whl;sig={SECRET}",
        error=f"answered {{'token': 'cs-{SECRET}'}}",
        errors=[f"https://h.example/f.whl?token={SECRET}"],
    )
    line = formatter.format(record)
    assert "h.example" in line
    assert_hidden(line, SECRET, basic)


def test_an_internal_errors_message_and_traceback_are_redacted(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "import dragonfly_hybrid.cli.app as app\n"
        "from dragonfly_hybrid.redaction import remember_secret\n"
        f"remember_secret({'cs-' + SECRET!r})\n"
        "def boom(command=None):\n"
        f"    raise RuntimeError('lost https://u:{SECRET}@h.example/x?sig={SECRET} and cs-{SECRET}')\n"
        "app.build_app = boom\n"
        "sys.argv = ['dragonfly-hybrid', 'scan']\n"
        "app.main()\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert "Traceback" in done.stderr and "error: internal error: RuntimeError: lost https://h.example/x" in (
        done.stderr
    )
    assert_hidden(done.stderr, SECRET)


class _SignedRedirect(BaseHTTPRequestHandler):
    """A file host that redirects ``/simple/...`` to a signed URL (a token in its query), served with 200."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/simple/"):
            self.send_response(302)
            self.send_header("Location", f"http://{self.headers['Host']}/signed/f.whl?sig=sig-{SECRET}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def redirecting_host() -> Iterator[str]:
    """A started :class:`_SignedRedirect` server on 127.0.0.1: its ``http://127.0.0.1:port``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SignedRedirect)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@contextlib.contextmanager
def _application_logging(level: int) -> Iterator[io.StringIO]:
    """Logging as an application embedding the package sets it up: a plain handler on the root logger (at
    ``level``, httpcore's logger too at DEBUG), every record written; undone afterwards."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root, httpcore = logging.getLogger(), logging.getLogger("httpcore")
    levels = root.level, httpcore.level
    root.addHandler(handler)
    root.setLevel(level)
    if level <= logging.DEBUG:
        httpcore.setLevel(logging.DEBUG)  # the package's node keeps it at INFO once it has run
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        httpcore.setLevel(levels[1])


@pytest.mark.parametrize("level", [logging.INFO, logging.DEBUG])
@pytest.mark.parametrize("flavour", ["blocking", "asyncio"])
def test_httpx_and_httpcore_log_lines_show_no_credentials_or_tokens_to_an_embedding_application(
    redirecting_host: str, level: int, flavour: str
) -> None:
    """httpx logs ``HTTP Request: GET <URL> "HTTP/1.1 302 Found"`` at INFO, httpcore the answer's headers
    (the ``Location`` of a signed URL) at DEBUG: through the package's own clients, to the application's
    handler, without the URL's password or any token."""
    from dragonfly_hybrid.http_client import new_async_client, new_client

    url = f"http://user:pw-{SECRET}@{redirecting_host}/simple/demo/?token=tk-{SECRET}"

    async def fetch_async() -> int:
        async with new_async_client() as client:
            return (await client.get(url)).status_code

    with _application_logging(level) as stream:
        if flavour == "blocking":
            with new_client() as client:
                status = client.get(url).status_code
        else:
            status = asyncio.run(fetch_async())
    shown = stream.getvalue()
    assert_hidden(shown, SECRET)
    assert status == 200
    assert f'HTTP Request: GET http://{redirecting_host}/simple/demo/?token=<redacted> "HTTP/1.1 302' in shown
    assert f"GET http://{redirecting_host}/signed/f.whl?sig=<redacted>" in shown, shown
    if level == logging.DEBUG:  # httpcore's line with the answer's headers
        assert f"(b'Location', b'http://{redirecting_host}/signed/f.whl?sig=<redacted>')" in shown, shown


def test_the_redacting_filter_is_attached_once_and_leaves_the_levels_as_set() -> None:
    from dragonfly_hybrid import logs
    from dragonfly_hybrid.http_client import new_client

    names = ("httpx", "httpcore", "httpcore.http11", "httpcore.connection")
    levels = [logging.getLogger(name).level for name in names]
    for _ in range(2):
        new_client().close()
    for name in names:
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, logs.RedactingFilter) for f in filters) == 1, (name, filters)
    assert [logging.getLogger(name).level for name in names] == levels
