"""A real HTTP simple index (PEP 691 JSON and PEP 503 HTML) on 127.0.0.1, plus archive builders for tests.

Also the SARIF check shared by the report and CLI tests: the official OASIS SARIF 2.1.0 JSON schema
(vendored under ``tests/fixtures/sarif``) and GitHub code scanning's upload requirements.

The server runs ``http.server.ThreadingHTTPServer`` in a daemon thread on an ephemeral port. Fault
switches (all per file name or project name) make it answer 404/500, drop connections mid-body, publish a
wrong sha256, omit ``Content-Length``, or require HTTP basic auth.

For ``watch``, the index also serves what PyPI's Simple API gives a watcher: the project list
(``GET /simple/``, PEP 691 JSON) with each project's ``_last-serial`` (every :meth:`FakeIndex.add` is one
change and bumps the global serial), project pages carrying ``meta._last-serial`` and each file's
``upload-time`` (PEP 700), and a webhook receiver (``POST /hook``, bodies in ``FakeIndex.hooks``).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import io
import json
import random
import re
import ssl
import sys
import tarfile
import threading
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote

import jsonschema

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"

MARKER = b"DRAGONFLY_TEST_MARKER"
LIGHT_MARKER = b"DRAGONFLY_LIGHT_MARKER"
MARKER_RULE = """
rule test_marker : test {
  meta:
    weight = 5
    description = "the test marker string"
  strings:
    $marker = "DRAGONFLY_TEST_MARKER"
  condition:
    $marker
}
"""
LIGHT_RULE = """
rule light_marker {
  meta:
    weight = 1
    description = "a light marker"
    author = "tests"
  strings:
    $light = "DRAGONFLY_LIGHT_MARKER"
  condition:
    $light
}
"""
BROKEN_RULE = """rule broken {
  condition:
    undefined_identifier_here
}
"""
SLOW_RULE = """
rule every_byte_a_hundred_times {
  condition:
    for all i in (0..filesize - 1) : (for all j in (0..99) : ((uint8(i) | j) != 256))
}
"""
"""A rule that matches every file after reading each byte a hundred times (about 1 MB/s per thread), for
scans that must take long (see :func:`slow_tarball`)."""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ------------------------------------------------------------------------------------------- archives


def slow_tarball(members: int, size: int = 64 << 10, seed: int = 7) -> bytes:
    """A plain tarball of ``members`` distinct random files of ``size`` bytes: the content cache cannot
    skip any, so :data:`SLOW_RULE` takes about ``members * size / 1 MB`` thread-seconds on it."""
    rng = random.Random(seed)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for i in range(members):
            info = tarfile.TarInfo(f"pkg/member_{i}.bin")
            info.size = size
            archive.addfile(info, io.BytesIO(rng.randbytes(size)))
    return buffer.getvalue()


def tar_gz_bytes(files: dict[str, bytes]) -> bytes:
    """A gzip-compressed tarball of ``path -> content`` (regular files only)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path, content in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mtime = 1_700_000_000
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return buffer.getvalue()


def sdist(name: str, version: str, files: dict[str, bytes]) -> tuple[str, bytes]:
    """``(filename, bytes)`` of an sdist whose members live under ``name-version/``."""
    stem = f"{name.replace('-', '_')}-{version}"
    members = {f"{stem}/PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()}
    members.update({f"{stem}/{path}": content for path, content in files.items()})
    return f"{stem}.tar.gz", tar_gz_bytes(members)


def wheel(name: str, version: str, files: dict[str, bytes]) -> tuple[str, bytes]:
    """``(filename, bytes)`` of a pure-Python wheel (a zip with a dist-info directory)."""
    stem = f"{name.replace('-', '_')}-{version}"
    members = dict(files)
    members[f"{stem}.dist-info/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    )
    members[f"{stem}.dist-info/WHEEL"] = b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    return f"{stem}-py3-none-any.whl", zip_bytes(members)


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


# ----------------------------------------------------------------------------------------------- SARIF


SARIF_SCHEMA = Path(__file__).parent.parent / "fixtures" / "sarif" / "sarif-schema-2.1.0.json"
"""The official OASIS SARIF 2.1.0 JSON schema, vendored unchanged (see ``fixtures/sarif/NOTICE.md``)."""

# GitHub code scanning's documented upload limits ("SARIF results exceed limit", "SARIF support for code
# scanning"): more than these is rejected, or (results, tags) not shown.
GITHUB_MAX_RUNS = 20
GITHUB_SHOWN_RESULTS = 5_000
GITHUB_MAX_RULES = 25_000
GITHUB_SHOWN_TAGS = 10
GITHUB_MAX_LOCATIONS = 1_000
GITHUB_MAX_GZIP_BYTES = 10 * 1024 * 1024
GITHUB_LEVELS = {"note", "warning", "error"}


def validate_sarif(document: dict[str, Any]) -> None:
    """Validate against the official schema, RFC 3986 syntax of every artifact URI, and GitHub code
    scanning's upload requirements."""
    validator = jsonschema.Draft4Validator(json.loads(SARIF_SCHEMA.read_text(encoding="utf-8")))
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    uri_reference = re.compile(
        r"^(?![A-Za-z][A-Za-z0-9+.-]*:)(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2})*$"
    )
    for uri in re.findall(r'"uri": "([^"]*)"', json.dumps(document)):
        assert uri_reference.match(uri), uri
    check_github_upload(document)


def check_github_upload(document: dict[str, Any]) -> None:
    """What GitHub code scanning requires of an uploaded SARIF file beyond the schema: its limits, and the
    properties it reads (rule descriptions and help, ``security-severity``, levels, fingerprints)."""
    assert len(gzip.compress(json.dumps(document).encode())) <= GITHUB_MAX_GZIP_BYTES
    assert document["version"] == "2.1.0" and 1 <= len(document["runs"]) <= GITHUB_MAX_RUNS
    for run in document["runs"]:
        driver = run["tool"]["driver"]
        assert driver["name"]
        rules = driver.get("rules", [])
        ids = [rule["id"] for rule in rules]
        assert len(rules) <= GITHUB_MAX_RULES and len(set(ids)) == len(ids)
        for rule in rules:
            assert rule["shortDescription"]["text"] and rule["fullDescription"]["text"], rule["id"]
            assert rule["help"]["text"] and rule["help"]["markdown"], rule["id"]
            assert len(rule["properties"]["tags"]) <= GITHUB_SHOWN_TAGS
            assert 0.0 <= float(rule["properties"]["security-severity"]) <= 10.0
        assert len(run["results"]) <= GITHUB_SHOWN_RESULTS
        for result in run["results"]:
            assert result["ruleId"] in ids and rules[result["ruleIndex"]]["id"] == result["ruleId"]
            assert result["level"] in GITHUB_LEVELS and result["message"]["text"]
            assert 1 <= len(result["locations"]) <= GITHUB_MAX_LOCATIONS
            assert len(result.get("relatedLocations", [])) <= GITHUB_MAX_LOCATIONS
            assert result["partialFingerprints"] and all(
                isinstance(v, str) and v for v in result["partialFingerprints"].values()
            )
            for location in result["locations"] + result.get("relatedLocations", []):
                physical = location["physicalLocation"]
                assert physical["artifactLocation"]["uri"]
                region = physical.get("region", {"startLine": 1})
                assert region["startLine"] >= 1 and region.get("startColumn", 1) >= 1


# ----------------------------------------------------------------------------------------------- index


@dataclass
class FakeFile:
    filename: str
    content: bytes
    yanked: bool = False
    listed_sha256: str | None = None
    """The digest the index publishes; None: the real one. ``""``: publish none."""
    listed_size: int | None = None
    """The size the index publishes; None: the real one. ``-1``: publish none."""
    upload_time: str | None = None
    """PEP 700 ``upload-time``; None: stamped with the current time when the file is added."""
    requires_python: str | None = None
    """PEP 345 Requires-Python, published as ``requires-python`` / ``data-requires-python``."""
    listed_url: str | None = None
    """The URL the JSON page publishes; None: the file's own, relative to the page."""
    listed_name: str | None = None
    """The name the page lists (JSON ``filename``, HTML link text); None: the file's own."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass
class Faults:
    project_status: dict[str, int] = field(default_factory=dict)
    """Normalized project name -> HTTP status to answer for its page, always."""
    fail_first: Counter[str] = field(default_factory=Counter)
    """Request path -> how many more times to answer 500 before serving it."""
    drop: set[str] = field(default_factory=set)
    """File names whose body is cut off halfway (connection closed), always."""
    drop_first: Counter[str] = field(default_factory=Counter)
    """File name -> how many more times to cut the body off before serving it whole."""
    no_content_length: set[str] = field(default_factory=set)
    """File names served without Content-Length (body delimited by closing the connection)."""
    html_only: bool = False
    """Serve project pages as PEP 503 HTML whatever the client accepts."""
    basic_auth: tuple[str, str] | None = None
    """Require these credentials on every request."""
    missing: set[str] = field(default_factory=set)
    """File names listed on their project page but answered 404."""
    delay: dict[str, float] = field(default_factory=dict)
    """File name -> seconds to wait before serving it (cut short when the server stops)."""
    stale_pages: dict[str, int] = field(default_factory=dict)
    """Normalized project name -> ``_last-serial`` its page claims (older than the listing's)."""
    hook_status: list[int] = field(default_factory=list)
    """Statuses for the next webhook POSTs (then 204)."""
    project_list: tuple[bytes, str] | None = None
    """Body and content type served for the project list (``/simple/``) instead of the PEP 691 JSON."""
    redirect_loop: set[str] = field(default_factory=set)
    """File names answered with a redirect to themselves, always."""
    list_date: str | None = None
    """The ``Date`` header of the project list (``/simple/``), as written; None: the server's clock."""
    list_headers: list[tuple[str, str]] = field(default_factory=list)
    """More headers sent with the project list (a second ``Date``, as a proxy in front may add)."""
    page_meta: dict[str, dict[str, object]] = field(default_factory=dict)
    """Normalized project name -> entries that replace those of its JSON page's ``meta``."""
    padded_pages: dict[str, int] = field(default_factory=dict)
    """Normalized project name -> bytes of whitespace its JSON page starts with (still valid JSON), sent in
    1 MiB writes without Content-Length, as a hostile index may; what was sent is counted in
    ``FakeIndex.page_bytes_sent``."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def date_time_string(self, timestamp: float | None = None) -> str:
        list_date = self.server.index.faults.list_date
        if list_date is not None and self.path == "/simple/":
            return list_date
        return super().date_time_string(timestamp)

    def do_GET(self) -> None:
        index = self.server.index
        index.requests.append(self.path)
        index.accepts.append(self.headers.get("Accept", ""))
        faults = index.faults
        if faults.basic_auth is not None and not self._authorized(faults.basic_auth):
            self._send(401, b"unauthorized", "text/plain", {"WWW-Authenticate": 'Basic realm="fake"'})
            return
        if faults.fail_first[self.path] > 0:
            faults.fail_first[self.path] -= 1
            self._send(500, b"try again", "text/plain")
            return
        if self.path == "/simple/" and faults.project_list is not None:
            self._send(200, *faults.project_list)
            return
        if self.path == "/simple/":
            self._send(200, json.dumps(index.json_index()).encode(), JSON_TYPE, faults.list_headers)
            return
        page = re.fullmatch(r"/simple/([^/]+)/", self.path)
        if page:
            self._project(unquote(page.group(1)))
            return
        file = re.fullmatch(r"/files/([^/]+)/([^/]+)", self.path)
        if file:
            self._file(unquote(file.group(1)), unquote(file.group(2)))
            return
        self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        index = self.server.index
        index.requests.append(f"POST {self.path}")
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/hook":
            self._send(404, b"not found", "text/plain")
            return
        status = index.faults.hook_status.pop(0) if index.faults.hook_status else 204
        if status < 300:
            index.hooks.append(json.loads(body))
        self._send(status, b"", "text/plain")

    def _authorized(self, credentials: tuple[str, str]) -> bool:
        expected = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
        return self.headers.get("Authorization", "") == f"Basic {expected}"

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items() if isinstance(headers, dict) else headers or []:
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _project(self, name: str) -> None:
        index = self.server.index
        if name != normalize(name):
            self._send(301, b"", "text/plain", {"Location": f"/simple/{normalize(name)}/"})
            return
        status = index.faults.project_status.get(name)
        if status is not None:
            self._send(status, b"fault", "text/plain")
            return
        if name not in index.projects:
            self._send(404, b"no such project", "text/plain")
            return
        wants_json = JSON_TYPE in self.headers.get("Accept", "") and not index.faults.html_only
        if wants_json and name in index.faults.padded_pages:
            self._padded_page(name, index.faults.padded_pages[name])
        elif wants_json:
            self._send(200, json.dumps(index.json_page(name)).encode(), JSON_TYPE)
        else:
            self._send(200, index.html_page(name).encode(), f"{HTML_TYPE}; charset=utf-8")

    def _file(self, project: str, filename: str) -> None:
        index = self.server.index
        found = [f for f in index.projects.get(project, []) if f.filename == filename]
        if not found or filename in index.faults.missing:
            self._send(404, b"no such file", "text/plain")
            return
        content = found[0].content
        faults = index.faults
        if filename in faults.redirect_loop:
            self._send(302, b"", "text/plain", {"Location": self.path})
            return
        if filename in faults.delay:
            index.unblocked.wait(faults.delay[filename])  # cut short when the server stops
        if filename in faults.drop:
            self._drop(content)
        elif faults.drop_first[filename] > 0:
            faults.drop_first[filename] -= 1
            self._drop(content)
        elif filename in faults.no_content_length:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(content)
            self.close_connection = True
        else:
            self._send(200, content, "application/octet-stream")

    def _padded_page(self, name: str, padding: int) -> None:
        """The JSON page of ``name`` after ``padding`` bytes of whitespace, delimited by closing the
        connection; stops when the client does."""
        index = self.server.index
        self.send_response(200)
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        piece = b" " * (1 << 20)
        for start in range(0, padding, len(piece)):
            chunk = piece[: padding - start]
            self.wfile.write(chunk)
            index.page_bytes_sent[name] += len(chunk)
        self.wfile.write(json.dumps(index.json_page(name)).encode())

    def _drop(self, content: bytes) -> None:
        """Announce the whole body, send half of it, and close the connection."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content[: len(content) // 2])
        self.wfile.flush()
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    index: FakeIndex

    def handle_error(self, request: object, client_address: object) -> None:
        # Clients that stop reading on purpose (size caps, dropped-connection tests) are not errors.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class FakeIndex:
    """A simple index on 127.0.0.1: ``with FakeIndex() as index: index.add(...); index.url``.

    With ``tls`` (a server-side context), it speaks HTTPS: ``url`` starts with ``https://``.
    """

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.projects: dict[str, list[FakeFile]] = {}
        self.display_names: dict[str, str] = {}
        self.faults = Faults()
        self.serial = 0
        self.project_serials: dict[str, int] = {}
        self.hooks: list[dict[str, Any]] = []
        self.unblocked = threading.Event()
        self.requests: list[str] = []
        self.accepts: list[str] = []
        self.page_bytes_sent: Counter[str] = Counter()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.index = self
        self.scheme = "http"
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._serve, name="fake-pypi", daemon=True)

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=0.02)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        """The index URL to pass as ``--index-url``."""
        return f"{self.scheme}://127.0.0.1:{self.port}/simple/"

    def add(self, project: str, *files: FakeFile | tuple[str, bytes]) -> list[FakeFile]:
        """Publish files under ``project`` (added to what it already has)."""
        key = normalize(project)
        self.display_names.setdefault(key, project)
        added = [f if isinstance(f, FakeFile) else FakeFile(*f) for f in files]
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        for f in added:
            f.upload_time = f.upload_time or now
        self.projects.setdefault(key, []).extend(added)
        self.serial += 1
        self.project_serials[key] = self.serial
        return added

    @property
    def hook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def json_index(self) -> dict[str, object]:
        """The PEP 691 project list, with PyPI's ``_last-serial`` per project and for the index."""
        return {
            "meta": {"api-version": "1.0", "_last-serial": self.serial},
            "projects": [
                {"name": self.display_names.get(key, key), "_last-serial": self.project_serials.get(key, 0)}
                for key in sorted(self.projects)
            ],
        }

    def file_url(self, project: str, filename: str) -> str:
        return f"http://127.0.0.1:{self.port}/files/{normalize(project)}/{filename}"

    def _file_json(self, project: str, file: FakeFile) -> dict[str, object]:
        data: dict[str, object] = {
            # Relative to the page, as real indexes may do: the client must resolve it.
            "url": file.listed_url or f"../../files/{project}/{file.filename}",
            "filename": file.listed_name or file.filename,
            "hashes": {} if file.listed_sha256 == "" else {"sha256": file.listed_sha256 or file.sha256},
            "yanked": "broken" if file.yanked else False,
        }
        if file.upload_time is not None:
            data["upload-time"] = file.upload_time
        if file.requires_python is not None:
            data["requires-python"] = file.requires_python
        if file.listed_size != -1:
            data["size"] = len(file.content) if file.listed_size is None else file.listed_size
        return data

    def json_page(self, project: str) -> dict[str, object]:
        return {
            "meta": {
                "api-version": "1.0",
                "_last-serial": self.faults.stale_pages.get(project, self.project_serials.get(project, 0)),
                **self.faults.page_meta.get(project, {}),
            },
            "name": self.display_names[project],
            "files": [self._file_json(project, f) for f in self.projects[project]],
        }

    def html_page(self, project: str) -> str:
        links = []
        for f in self.projects[project]:
            digest = "" if f.listed_sha256 == "" else f"#sha256={f.listed_sha256 or f.sha256}"
            yanked = ' data-yanked="broken"' if f.yanked else ""
            if f.requires_python is not None:
                yanked += f' data-requires-python="{html.escape(f.requires_python)}"'
            links.append(
                f'<a href="../../files/{project}/{f.filename}{digest}"{yanked}>'
                f"{html.escape(f.listed_name or f.filename)}</a><br/>"
            )
        return "<!DOCTYPE html><html><body>\n" + "\n".join(links) + "\n</body></html>\n"

    def __enter__(self) -> FakeIndex:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.unblocked.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
