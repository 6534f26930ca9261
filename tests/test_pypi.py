"""PyPI resolution and downloads, against a real HTTP index on 127.0.0.1 (tests/fakes/pypi.py)."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.http_client import redact_url
from dragonfly_hybrid.pypi.index import (
    DEFAULT_INDEX_URL,
    MAX_PAGE_SIZE,
    DigestMismatch,
    DistributionFile,
    DownloadError,
    DownloadTooLarge,
    IndexUnavailable,
    PageTooLarge,
    ProjectNotFound,
    PyPIClient,
    VersionNotFound,
    configured_index_url,
    normalize_name,
)
from dragonfly_hybrid.pypi.pip_names import listed_version, url_filename
from typer.testing import CliRunner

from tests.fakes.pypi import MARKER, FakeFile, FakeIndex, sdist, wheel


def client(index: FakeIndex, **kwargs: object) -> PyPIClient:
    kwargs.setdefault("backoff", 0.0)
    return PyPIClient(index.url, **kwargs)  # type: ignore[arg-type]


def publish_versions(index: FakeIndex) -> None:
    for version in ("1.0", "2.0", "2.1rc1"):
        index.add("Demo_Pkg", sdist("demo-pkg", version, {"setup.py": b"print(1)\n"}))
    index.add("Demo_Pkg", FakeFile(*sdist("demo-pkg", "3.0", {"setup.py": b"x"}), yanked=True))
    index.add("Demo_Pkg", wheel("demo-pkg", "2.0", {"demo_pkg/__init__.py": b""}))


def download(pypi: PyPIClient, file: DistributionFile) -> bytes:
    sink = io.BytesIO()
    pypi.download(file, sink)
    return sink.getvalue()


# --------------------------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Django", "django"), ("zope.interface", "zope-interface"), ("A__b-.-C", "a-b-c"), ("x", "x")],
)
def test_normalize_name_follows_pep_503(name: str, expected: str) -> None:
    assert normalize_name(name) == expected


def test_redact_url_strips_userinfo() -> None:
    assert redact_url("https://user:s3cret@example.org/simple/") == "https://example.org/simple/"
    assert redact_url("https://token@example.org:8443/x?y=1") == "https://example.org:8443/x?y=<redacted>"
    assert redact_url("https://example.org/simple/") == "https://example.org/simple/"


def test_an_errors_description_shows_the_urls_it_quotes_redacted() -> None:
    from dragonfly_hybrid.pypi.index import describe_error

    err = ValueError("fetching https://alice:s3cret@files.example/f.whl?token=SIGNED failed")
    assert describe_error(err) == "ValueError: fetching https://files.example/f.whl?token=<redacted> failed"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://files.example/f-1.0.whl?token=S3CRET&expires=17#sha256=ab",
            "https://files.example/f-1.0.whl?token=<redacted>&expires=<redacted>#sha256=ab",
        ),
        (
            "https://u:p@h.example/f.whl?X-Amz-Signature=S3CRET",
            "https://h.example/f.whl?X-Amz-Signature=<redacted>",
        ),
        ("https://h.example/f.whl?S3CRET", "https://h.example/f.whl?<redacted>"),  # a bare token
        ("https://h.example/f.whl?a=&b=S3CRET=x", "https://h.example/f.whl?a=&b=<redacted>"),
        ("https://h.example/f.whl?", "https://h.example/f.whl?"),
        ("https://h.example/f.whl#sha256=ab", "https://h.example/f.whl#sha256=ab"),
        ("http://[::1/x.whl?token=S3CRET", "http://[::1/x.whl?token=<redacted>"),  # cut by hand
    ],
)
def test_redact_url_hides_query_values_and_keeps_their_keys(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact_url(shown) == shown  # idempotent: stored URLs are redacted again when shown


# -------------------------------------------------------------------------------------- index config


def test_index_url_from_environment_wins(tmp_path: Path) -> None:
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = https://config.example/simple/\n")
    env = {"PIP_INDEX_URL": "https://env.example/simple/", "PIP_CONFIG_FILE": str(config)}
    assert configured_index_url(env, home=tmp_path) == "https://env.example/simple/"


def test_index_url_from_pip_config_file_install_beats_global(tmp_path: Path) -> None:
    config = tmp_path / "pip.conf"
    config.write_text(
        "[global]\nindex-url = https://global.example/simple/\n[install]\nindex-url = https://install.example/simple/\n"
    )
    assert (
        configured_index_url({"PIP_CONFIG_FILE": str(config)}, home=tmp_path)
        == "https://install.example/simple/"
    )


def test_index_url_from_user_and_virtualenv_config(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text("[global]\nindex-url = https://user.example/simple/\n")
    assert configured_index_url({}, home=home) == "https://user.example/simple/"
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / "pip.conf").write_text("[global]\nindex-url = https://venv.example/simple/\n")
    assert configured_index_url({"VIRTUAL_ENV": str(venv)}, home=home) == "https://venv.example/simple/"


def test_index_url_legacy_user_config(tmp_path: Path) -> None:
    (tmp_path / ".pip").mkdir()
    (tmp_path / ".pip" / "pip.conf").write_text("[global]\nindex-url = https://legacy.example/simple/\n")
    assert configured_index_url({"XDG_CONFIG_HOME": str(tmp_path / "none")}, home=tmp_path) == (
        "https://legacy.example/simple/"
    )


def test_index_url_defaults_to_pypi(tmp_path: Path) -> None:
    assert configured_index_url({"PIP_CONFIG_FILE": os.devnull}, home=tmp_path) == DEFAULT_INDEX_URL


# ---------------------------------------------------------------------------------------- resolution


def test_latest_skips_prereleases_and_yanked(fake_index: FakeIndex) -> None:
    publish_versions(fake_index)
    with client(fake_index) as pypi:
        release = pypi.resolve("Demo_Pkg")
    assert (release.name, release.version) == ("Demo_Pkg", "2.0")
    assert [f.filename for f in release.files] == ["demo_pkg-2.0-py3-none-any.whl", "demo_pkg-2.0.tar.gz"]
    assert all(f.url.startswith(f"http://127.0.0.1:{fake_index.port}/files/demo-pkg/") for f in release.files)
    assert all(f.sha256 and f.size for f in release.files)
    # The page was asked for under the PEP 503 normalized name, preferring PEP 691 JSON.
    assert fake_index.requests == ["/simple/demo-pkg/"]
    assert fake_index.accepts[0].startswith("application/vnd.pypi.simple.v1+json")


def test_latest_falls_back_to_prereleases_when_nothing_else(fake_index: FakeIndex) -> None:
    fake_index.add("pre", sdist("pre", "0.1a1", {}), sdist("pre", "0.1b2", {}))
    with client(fake_index) as pypi:
        assert pypi.resolve("pre").version == "0.1b2"


def test_exact_version_may_be_yanked_and_matches_equivalent_spelling(fake_index: FakeIndex) -> None:
    publish_versions(fake_index)
    with client(fake_index) as pypi:
        yanked = pypi.resolve("demo-pkg", "3.0")
        equivalent = pypi.resolve("demo.pkg", "1.0.0")
    assert [f.yanked for f in yanked.files] == [True]
    assert [f.filename for f in equivalent.files] == ["demo_pkg-1.0.tar.gz"]


def the_wheel(filename: str, files: dict[str, bytes] | None = None) -> tuple[str, bytes]:
    """A wheel of ``files`` (a module by default) under ``filename``, its metadata naming the version the
    name does (pip checks it)."""
    name, version = filename.split("-")[:2]
    return filename, wheel(name, version, files or {f"{name}/__init__.py": b"x = 1\n"})[1]


@pytest.mark.parametrize("html_only", [False, True], ids=["json", "html"])
def test_files_are_named_and_versioned_by_their_urls_as_pip_names_them(
    fake_index: FakeIndex, html_only: bool
) -> None:
    """The page lists the 1.0 wheel under a 0.9 name, and a file whose URL names nothing under the 1.0
    wheel's name: pip reads names from URLs, so `foo==1.0` is the first file, and the second is no file of
    the project at all."""
    fake_index.faults.html_only = html_only
    fake_index.add(
        "foo",
        FakeFile(*the_wheel("foo-1.0-py3-none-any.whl"), listed_name="foo-0.9-py3-none-any.whl"),
        FakeFile("clean.bin", b"clean", listed_name="foo-1.0-py3-none-any.whl"),
    )
    with client(fake_index) as pypi:
        release = pypi.resolve("foo", "1.0")
        with pytest.raises(VersionNotFound):
            pypi.resolve("foo", "0.9")
    assert [(f.filename, f.url) for f in release.files] == [
        ("foo-1.0-py3-none-any.whl", fake_index.file_url("foo", "foo-1.0-py3-none-any.whl"))
    ]


def test_an_exact_pin_takes_every_local_version_it_matches(fake_index: FakeIndex) -> None:
    """PEP 440's `==1.0` matches `1.0+evil`, which pip prefers (the higher version); `==1.0+evil` matches
    only itself."""
    fake_index.add("foo", sdist("foo", "1.0", {"setup.py": b""}), the_wheel("foo-1.0+evil-py3-none-any.whl"))
    fake_index.add("bar", the_wheel("bar-2.0+local-py3-none-any.whl"))
    with client(fake_index) as pypi:
        both = pypi.resolve("foo", "1.0")
        local = pypi.resolve("foo", "1.0+evil")
        only_local = pypi.resolve("bar", "2.0")
    assert (both.version, [f.filename for f in both.files]) == (
        "1.0",
        ["foo-1.0+evil-py3-none-any.whl", "foo-1.0.tar.gz"],
    )
    assert (local.version, [f.filename for f in local.files]) == (
        "1.0+evil",
        ["foo-1.0+evil-py3-none-any.whl"],
    )
    assert only_local.version == "2.0+local"


def test_a_bare_name_is_the_latest_release_with_a_file_pip_could_install_here(fake_index: FakeIndex) -> None:
    """2.0 has only a wheel for another platform: pip installs 1.9 here, until 2.0 gets an sdist."""
    fake_index.add(
        "foo", the_wheel("foo-2.0-cp311-cp311-win_amd64.whl"), the_wheel("foo-1.9-py3-none-any.whl")
    )
    with client(fake_index) as pypi:
        before = pypi.resolve("foo")
        fake_index.add("foo", sdist("foo", "2.0", {"setup.py": b""}))
        after = pypi.resolve("foo")
    assert (before.version, [f.filename for f in before.files]) == ("1.9", ["foo-1.9-py3-none-any.whl"])
    assert (after.version, [f.filename for f in after.files]) == (
        "2.0",
        ["foo-2.0-cp311-cp311-win_amd64.whl", "foo-2.0.tar.gz"],
    )


@pytest.mark.parametrize(
    ("filename", "project", "version"),
    [
        ("foo_bar-1.0.tar.gz", "Foo.Bar", "1.0"),
        ("foo-bar-1.0.tar.gz", "foo", "bar-1.0"),  # pip's reading (not a valid version: skipped later)
        ("foo-1.0.TAR.GZ", "foo", None),  # pip matches extensions case-sensitively
        ("foo-1.0.tar.xz", "foo", "1.0"),
        ("foo-1.0.exe", "foo", None),
        ("foo-1.0-py3-none-any.whl", "bar", None),
        ("foo-1.0_rc1-1-py3-none-any.whl", "foo", "1.0-rc1"),
        ("foo-1.0-py3-none.whl", "foo", None),
        ("foo-1.0-py2.7.egg", "foo", "1.0"),  # not pip's, but still a file of the release to scan
        ("clean.bin", "foo", None),
    ],
)
def test_the_version_read_from_a_file_name_is_pips(filename: str, project: str, version: str | None) -> None:
    assert listed_version(filename, project) == version


def test_url_filename_is_the_last_segment_percent_decoded() -> None:
    assert url_filename("https://h/files/a/foo-1.0%2Bevil-py3-none-any.whl?x=1#sha256=00") == (
        "foo-1.0+evil-py3-none-any.whl"
    )


@pytest.mark.parametrize(
    ("pin", "files"),
    [
        ("foo==1.0", ["foo-1.0-py3-none-any.whl", "foo-1.0+evil-py3-none-any.whl"]),
        ("foo", ["foo-2.0-cp311-cp311-win_amd64.whl", "foo-1.9-py3-none-any.whl"]),
        ("foo==1.9", ["foo-1.9-py3-none-any.whl", "foo-1.9-1-py3-none-any.whl"]),
    ],
)
def test_the_file_pip_downloads_is_among_the_files_resolved(
    fake_index: FakeIndex, tmp_path: Path, pin: str, files: list[str]
) -> None:
    """The yardstick, side by side: real `pip download` (wheels only: nothing is built) against the same
    index picks one file; the release resolved for the same requirement holds it."""
    fake_index.add("foo", *(the_wheel(name) for name in files))
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--isolated",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--index-url",
            fake_index.url,
            "-d",
            str(tmp_path),
            pin,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert pip.returncode == 0, pip.stderr
    [downloaded] = [p.name for p in tmp_path.iterdir()]
    name, _, version = pin.partition("==")
    with client(fake_index) as pypi:
        release = pypi.resolve(name, version or None)
    assert downloaded in [f.filename for f in release.files]


def test_unknown_version_names_project_and_known_versions(fake_index: FakeIndex) -> None:
    publish_versions(fake_index)
    with client(fake_index) as pypi, pytest.raises(VersionNotFound) as caught:
        pypi.resolve("demo-pkg", "9.9")
    message = str(caught.value)
    assert "9.9" in message and "Demo_Pkg" in message and "2.0" in message


def test_unknown_project(fake_index: FakeIndex) -> None:
    with client(fake_index) as pypi, pytest.raises(ProjectNotFound, match="no project named 'nope'"):
        pypi.resolve("nope")


def test_html_only_index_is_understood(fake_index: FakeIndex) -> None:
    publish_versions(fake_index)
    fake_index.faults.html_only = True
    with client(fake_index) as pypi:
        release = pypi.resolve("demo-pkg")
    assert release.version == "2.0"
    assert all(f.sha256 for f in release.files)


def test_project_page_is_retried_after_5xx(fake_index: FakeIndex) -> None:
    publish_versions(fake_index)
    fake_index.faults.fail_first["/simple/demo-pkg/"] = 2
    with client(fake_index) as pypi:
        assert pypi.resolve("demo-pkg").version == "2.0"
    assert fake_index.requests == ["/simple/demo-pkg/"] * 3


def test_persistent_5xx_is_index_unavailable_after_bounded_retries(fake_index: FakeIndex) -> None:
    fake_index.faults.project_status["demo"] = 503
    with client(fake_index, retries=3) as pypi, pytest.raises(IndexUnavailable) as caught:
        pypi.resolve("demo")
    assert "3 attempts" in str(caught.value) and "HTTP 503" in str(caught.value)
    assert len(fake_index.requests) == 3


def test_unreachable_index(fake_index: FakeIndex) -> None:
    with PyPIClient("http://127.0.0.1:9/simple/", retries=2, backoff=0.0, timeout=5) as pypi:
        with pytest.raises(IndexUnavailable, match="after 2 attempts"):
            pypi.resolve("anything")


def test_an_index_url_of_a_scheme_no_client_takes_fails_at_once_saying_so() -> None:
    """Not retried (a retried failure reads "after 3 attempts (...)"), and the credentials not shown."""
    with PyPIClient("ftp://alice:s3cret@example.invalid/simple/", backoff=0.0) as pypi:
        with pytest.raises(IndexUnavailable) as caught:
            pypi.resolve("foo")
    message = str(caught.value)
    assert message.startswith("could not fetch ftp://example.invalid/simple/foo/: UnsupportedProtocol: ")
    assert message.endswith("(an index URL starts with http:// or https://)")


def test_credentials_are_used_but_never_shown(fake_index: FakeIndex) -> None:
    publish_versions(fake_index)
    fake_index.faults.basic_auth = ("alice", "s3cret-token")
    url = fake_index.url.replace("http://", "http://alice:s3cret-token@")
    with PyPIClient(url, backoff=0.0) as pypi:
        release = pypi.resolve("demo-pkg")
        fake_index.faults.drop.add(release.files[0].filename)
        with pytest.raises(DownloadError) as download_error:
            download(pypi, release.files[0])
        with pytest.raises(ProjectNotFound) as missing:
            pypi.resolve("missing")
    wrong = fake_index.url.replace("http://", "http://alice:wrong-s3cret@")
    with PyPIClient(wrong, backoff=0.0) as pypi, pytest.raises(IndexUnavailable) as refused:
        pypi.resolve("demo-pkg")
    assert "refused access (HTTP 401)" in str(refused.value)
    for error in (download_error.value, missing.value, refused.value):
        assert "s3cret" not in str(error) and "alice" not in str(error)


# ----------------------------------------------------------------------------------------- downloads


def test_download_verifies_sha256_and_reports_progress(fake_index: FakeIndex) -> None:
    (file,) = fake_index.add("demo", sdist("demo", "1.0", {"a.py": os.urandom(50_000)}))
    seen: list[tuple[int, int | None]] = []
    with client(fake_index) as pypi:
        (dist,) = pypi.resolve("demo", "1.0").files
        sink = io.BytesIO()
        pypi.download(dist, sink, lambda received, total: seen.append((received, total)))
    assert sink.getvalue() == file.content
    assert hashlib.sha256(sink.getvalue()).hexdigest() == dist.sha256
    assert seen[-1] == (len(file.content), len(file.content))


def test_digest_mismatch_names_the_file(fake_index: FakeIndex) -> None:
    fake_index.add("demo", FakeFile(*sdist("demo", "1.0", {"a.py": b"x"}), listed_sha256="0" * 64))
    with client(fake_index) as pypi:
        (dist,) = pypi.resolve("demo", "1.0").files
        with pytest.raises(
            DigestMismatch, match=r"sha256 of demo-1\.0\.tar\.gz is [0-9a-f]{64}, but the index lists 0{64}"
        ):
            download(pypi, dist)


def test_missing_digest_is_accepted(fake_index: FakeIndex) -> None:
    (file,) = fake_index.add("demo", FakeFile(*sdist("demo", "1.0", {}), listed_sha256=""))
    with client(fake_index) as pypi:
        (dist,) = pypi.resolve("demo", "1.0").files
        assert dist.sha256 is None
        assert download(pypi, dist) == file.content


@pytest.mark.parametrize(
    ("listed_size", "no_length", "detail"),
    [
        (None, False, "the index lists 5000 bytes"),
        (-1, False, "the server announces 5000 bytes"),
        (-1, True, "more than 1000 bytes received"),
        (10, True, "more than 1000 bytes received"),
    ],
    ids=["index-size", "content-length", "streamed", "index-lies"],
)
def test_download_cap_is_enforced_and_named(
    fake_index: FakeIndex, listed_size: int | None, no_length: bool, detail: str
) -> None:
    fake_index.add("big", FakeFile("big-1.0.tar.gz", os.urandom(5000), listed_size=listed_size))
    if no_length:
        fake_index.faults.no_content_length.add("big-1.0.tar.gz")
    with client(fake_index, max_download_size=1000) as pypi:
        (dist,) = pypi.resolve("big", "1.0").files
        sink = io.BytesIO()
        with pytest.raises(DownloadTooLarge) as caught:
            pypi.download(dist, sink)
    message = str(caught.value)
    assert "big-1.0.tar.gz exceeds the download size cap of 1000 bytes" in message
    assert detail in message
    assert len(sink.getvalue()) <= 1000


def test_file_at_the_cap_downloads(fake_index: FakeIndex) -> None:
    fake_index.add("exact", FakeFile("exact-1.0.tar.gz", b"z" * 1000, listed_size=-1))
    fake_index.faults.no_content_length.add("exact-1.0.tar.gz")
    with client(fake_index, max_download_size=1000) as pypi:
        (dist,) = pypi.resolve("exact").files
        assert download(pypi, dist) == b"z" * 1000


def test_dropped_connection_is_retried(fake_index: FakeIndex) -> None:
    (file,) = fake_index.add("demo", sdist("demo", "1.0", {"a.py": os.urandom(20_000)}))
    fake_index.faults.drop_first[file.filename] = 1
    fake_index.faults.fail_first[f"/files/demo/{file.filename}"] = 1
    with client(fake_index) as pypi:
        (dist,) = pypi.resolve("demo").files
        assert download(pypi, dist) == file.content
    assert fake_index.requests.count(f"/files/demo/{file.filename}") == 3


def test_persistent_drop_fails_after_bounded_retries(fake_index: FakeIndex) -> None:
    (file,) = fake_index.add("demo", sdist("demo", "1.0", {"a.py": os.urandom(20_000)}))
    fake_index.faults.drop.add(file.filename)
    with client(fake_index, retries=3) as pypi:
        (dist,) = pypi.resolve("demo").files
        with pytest.raises(DownloadError, match=r"could not download demo-1\.0\.tar\.gz .* after 3 attempts"):
            download(pypi, dist)
    assert fake_index.requests.count(f"/files/demo/{file.filename}") == 3


def test_missing_file_is_not_retried(fake_index: FakeIndex) -> None:
    fake_index.add("demo", sdist("demo", "1.0", {}))
    with client(fake_index) as pypi:
        (dist,) = pypi.resolve("demo").files
        gone = DistributionFile("gone.tar.gz", dist.url.replace("demo-1.0", "gone"), None, None, False)
        with pytest.raises(DownloadError, match=r"could not download gone\.tar\.gz: HTTP 404"):
            download(pypi, gone)
    assert len([r for r in fake_index.requests if r.startswith("/files/")]) == 1


# ------------------------------------------------------------------ download errors httpx does not retry


def test_a_redirect_loop_is_a_permanent_download_error_naming_the_file(fake_index: FakeIndex) -> None:
    (file,) = fake_index.add("demo", sdist("demo", "1.0", {"a.py": b"x"}))
    fake_index.faults.redirect_loop.add(file.filename)
    with client(fake_index) as pypi:
        (dist,) = pypi.resolve("demo").files
        with pytest.raises(DownloadError) as caught:
            download(pypi, dist)
    assert caught.value.permanent
    assert str(caught.value) == (
        f"could not download demo-1.0.tar.gz from {dist.url}: TooManyRedirects: "
        "Exceeded maximum allowed redirects."
    )
    # Not tried again: a loop stays a loop.
    assert fake_index.requests.count("/files/demo/demo-1.0.tar.gz") == 21  # the first and 20 redirects


def test_a_url_httpx_refuses_is_a_download_error_without_credentials(fake_index: FakeIndex) -> None:
    bad = DistributionFile(
        "bad-1.0.tar.gz", "http://alice:s3cret@127.0.0.1:9/\x1b[2J.tar.gz", None, None, False
    )
    with client(fake_index) as pypi, pytest.raises(DownloadError) as caught:
        download(pypi, bad)
    message = str(caught.value)
    assert message.startswith("could not download bad-1.0.tar.gz from http://127.0.0.1:9/")
    assert "InvalidURL: Invalid non-printable ASCII character in URL" in message
    assert "s3cret" not in message and "alice" not in message


def scan_json(index: FakeIndex, rules: Path, target: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        app,
        ["scan", "-f", "json", "-r", str(rules), "--index-url", index.url, target],
        catch_exceptions=False,
    )
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.parametrize("fault", ["redirect-loop", "invalid-url"])
def test_scan_reports_a_download_httpx_refuses_as_failed_and_scans_no_empty_file(
    fake_index: FakeIndex, rules_dir: Path, fault: str
) -> None:
    """The file that failed is named in the error, the release is incomplete (exit 3), and nothing stands
    in for it: not the empty file it was to be written to, nor part of it."""
    name, data = sdist("demo", "1.0", {"setup.py": b"# " + MARKER})
    if fault == "redirect-loop":
        fake_index.add("demo", (name, data))
        fake_index.faults.redirect_loop.add(name)
        reason = "TooManyRedirects: Exceeded maximum allowed redirects."
    else:
        fake_index.add("demo", FakeFile(name, data, listed_url=f"{fake_index.url}\x1b[2J/{name}"))
        reason = "InvalidURL: Invalid non-printable ASCII character in URL"
    code, document = scan_json(fake_index, rules_dir, "demo==1.0")
    assert code == 3
    (target,) = document["targets"]
    assert target["verdict"] == "incomplete" and target["distributions"] == []
    assert target["error"].startswith(f"could not download {name} from ") and reason in target["error"]
    assert "corrupt" not in json.dumps(document)


# ---------------------------------------------------------------------------------------- page size cap


def test_a_page_over_the_cap_is_refused_without_reading_the_rest(fake_index: FakeIndex) -> None:
    publish_versions(fake_index)
    fake_index.faults.padded_pages["demo-pkg"] = 1 << 30  # 1 GiB of whitespace, then the page
    with client(fake_index, max_page_size=1 << 20) as pypi, pytest.raises(PageTooLarge) as caught:
        pypi.resolve("demo-pkg")
    assert str(caught.value) == (
        f"the index page {fake_index.url}demo-pkg/ exceeds the cap on index pages of {1 << 20} bytes "
        f"(more than {1 << 20} bytes received)"
    )
    assert fake_index.requests == ["/simple/demo-pkg/"]  # not asked again
    # The client stopped reading and closed the connection: the server could send only what the socket
    # buffers hold beyond the cap, not the gigabyte.
    assert fake_index.page_bytes_sent["demo-pkg"] < 64 << 20


def test_a_page_under_the_cap_is_read(fake_index: FakeIndex) -> None:
    publish_versions(fake_index)
    fake_index.faults.padded_pages["demo-pkg"] = 3 << 20
    with client(fake_index, max_page_size=4 << 20) as pypi:
        assert pypi.resolve("demo-pkg").version == "2.0"


def test_scan_of_a_release_whose_page_is_over_the_default_cap_exits_3(
    fake_index: FakeIndex, rules_dir: Path
) -> None:
    publish_versions(fake_index)
    fake_index.faults.padded_pages["demo-pkg"] = 2 * MAX_PAGE_SIZE
    code, document = scan_json(fake_index, rules_dir, "demo-pkg==1.0")
    assert code == 3
    (target,) = document["targets"]
    assert target["error"] == (
        f"the index page {fake_index.url}demo-pkg/ exceeds the cap on index pages of {MAX_PAGE_SIZE} bytes "
        f"(more than {MAX_PAGE_SIZE} bytes received)"
    )
    assert fake_index.page_bytes_sent["demo-pkg"] < MAX_PAGE_SIZE + (64 << 20)


def test_a_project_page_that_redirects_to_itself_is_an_index_error_not_a_crash() -> None:
    # A redirect loop on the project page (not on a file): httpx's TooManyRedirects is no transport
    # error, and retrying cannot help.
    class Looping(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Looping)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with PyPIClient(f"http://127.0.0.1:{server.server_port}/simple/", backoff=0.0) as pypi:
            with pytest.raises(IndexUnavailable) as caught:
                pypi.resolve("demo")
    finally:
        server.shutdown()
        server.server_close()
    assert "could not fetch" in str(caught.value) and "TooManyRedirects" in str(caught.value)
