"""pip's ``find-links`` (``PIP_FIND_LINKS``, ``find-links`` in pip.conf) adds candidates to every release:
for ``pkg==1.0`` pip may install ``pkg-1.0-py3-none-any.whl`` from a find-links directory or page, other
bytes than the index's file of that name. ``scan`` ignored them with a note and said clean; their files are
now scanned with the index's, and a location that cannot be read makes the scan incomplete (exit 3).

Real servers on 127.0.0.1 (the fake index; a plain ``http.server`` for find-links pages), real files, the
CLI. Each test sets PIP_FIND_LINKS / PIP_CONFIG_FILE itself (``conftest`` clears the machine's).
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dragonfly_hybrid.cli import app
from typer.testing import CliRunner, Result

from tests.fakes.pypi import MARKER, FakeIndex, sdist, wheel, write

BAD = {"pkg/__init__.py": b"import os\n# " + MARKER + b"\n"}
CLEAN = {"pkg/__init__.py": b"pass\n"}


def scan(*args: object, env: dict[str, str | None]) -> tuple[Result, dict]:
    result = CliRunner().invoke(
        app, ["scan", *(str(a) for a in args), "-f", "json", "-q"], catch_exceptions=False, env=env
    )
    return result, json.loads(result.stdout) if result.stdout.strip() else {}


def distributions(report: dict) -> list[tuple[str, str, str]]:
    """``(filename, url, verdict)`` of every distribution of the report's one target."""
    (target,) = report["targets"]
    return sorted((d["name"], d["url"], d["verdict"]) for d in target["distributions"])


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    """``pkg==1.0`` on the index: one clean wheel."""
    fake_index.add("pkg", wheel("pkg", "1.0", CLEAN))
    return fake_index


@pytest.fixture
def links_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A plain static server on 127.0.0.1 (``python -m http.server``: its directory listings are pages of
    links, as people serve find-links): its base URL and the directory it serves."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("where", ["environment", "pip.conf"])
def test_a_flagged_wheel_of_the_same_name_in_a_find_links_directory_is_scanned(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, where: str
) -> None:
    links = tmp_path / "links"
    name, content = wheel("pkg", "1.0", BAD)
    write(links / name, content)
    if where == "environment":
        (tmp_path / "empty").mkdir()
        env: dict[str, str | None] = {"PIP_FIND_LINKS": f"{tmp_path / 'empty'}  {links}"}  # pip splits it
    else:
        conf = write(tmp_path / "pip.conf", f"[global]\nfind-links =\n    {links}\n".encode())
        env = {"PIP_CONFIG_FILE": str(conf)}
    result, report = scan("pkg==1.0", "-r", rules_dir, "--index-url", index.url, env=env)
    assert result.exit_code == 1, result.output  # exit 0 before: the find-links wheel was never read
    assert "find-links" not in result.stderr  # no "ignoring" note
    # Both files of that name are scanned and told apart by their origin.
    assert distributions(report) == sorted(
        [(name, index.file_url("pkg", name), "clean"), (name, (links / name).as_uri(), "findings")]
    )


def test_find_links_of_other_versions_or_projects_change_nothing(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    links = tmp_path / "links"
    for name, content in (
        wheel("pkg", "1.0.1", BAD),
        wheel("pkg", "0.9", BAD),
        wheel("other", "1.0", BAD),
        wheel("pkgx", "1.0", BAD),
        sdist("pkg-extra", "1.0", BAD),
    ):
        write(links / name, content)
    write(links / "README.txt", b"# " + MARKER + b"\n")
    without, plain = scan("pkg==1.0", "-r", rules_dir, "--index-url", index.url, env={})
    result, report = scan(
        "pkg==1.0", "-r", rules_dir, "--index-url", index.url, env={"PIP_FIND_LINKS": str(links)}
    )
    assert (result.exit_code, without.exit_code) == (0, 0), result.output
    assert distributions(report) == distributions(plain)
    # Yet an equal version spelled otherwise, or a local one, is pip's candidate for ==1.0: scanned.
    write(links / "pkg-1.0.0.tar.gz", sdist("pkg", "1.0.0", BAD)[1])
    result, report = scan(
        "pkg==1.0", "-r", rules_dir, "--index-url", index.url, env={"PIP_FIND_LINKS": str(links)}
    )
    assert result.exit_code == 1, result.output
    assert (links / "pkg-1.0.0.tar.gz").as_uri() in [url for _, url, _ in distributions(report)]


def test_a_newer_release_in_find_links_is_the_one_a_bare_name_scans(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip picks the newest version among the index's and find-links' files: so does ``scan pkg``."""
    links = tmp_path / "links"
    name, content = wheel("pkg", "2.0", BAD)
    write(links / name, content)
    result, report = scan(
        "pkg", "-r", rules_dir, "--index-url", index.url, env={"PIP_FIND_LINKS": str(links)}
    )
    assert result.exit_code == 1, result.output
    assert report["targets"][0]["version"] == "2.0"


def test_a_find_links_location_that_cannot_be_read_makes_the_scan_incomplete(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    missing = tmp_path / "no-such-dir"
    result, report = scan(
        "pkg==1.0", "-r", rules_dir, "--index-url", index.url, env={"PIP_FIND_LINKS": str(missing)}
    )
    assert result.exit_code == 3, result.output
    (target,) = report["targets"]
    assert target["verdict"] == "incomplete" and f"find-links {missing}" in target["error"]
    assert [d["verdict"] for d in target["distributions"]] == ["clean"]  # the index's file is still scanned
    # An unreachable page, whose URL carries credentials: named, never with them.
    secret = f"http://scanner:s3cret-token@127.0.0.1:{index.port}/nowhere/"
    result, report = scan(
        "pkg==1.0", "-r", rules_dir, "--index-url", index.url, env={"PIP_FIND_LINKS": secret}
    )
    assert result.exit_code == 3, result.output
    assert f"127.0.0.1:{index.port}/nowhere/" in report["targets"][0]["error"]
    assert "s3cret-token" not in result.output
    # A project the index does not have, with find-links unreadable: pip may find it there (not a usage
    # error: incomplete).
    result, _ = scan(
        "absent==1.0", "-r", rules_dir, "--index-url", index.url, env={"PIP_FIND_LINKS": str(missing)}
    )
    assert result.exit_code == 3, result.output
    assert "no project named 'absent'" in result.output and str(missing) in result.output


def test_a_find_links_page_served_over_http_is_read_as_pip_reads_it(
    index: FakeIndex, links_server: tuple[str, Path], tmp_path: Path, rules_dir: Path
) -> None:
    base, root = links_server
    name, content = wheel("pkg", "1.0", BAD)
    write(root / "wheels" / name, content)
    env: dict[str, str | None] = {"PIP_FIND_LINKS": base + "wheels/"}  # the server's directory listing
    result, report = scan("pkg==1.0", "-r", rules_dir, "--index-url", index.url, env=env)
    assert result.exit_code == 1, result.output
    assert (name, base + "wheels/" + name, "findings") in distributions(report)
    # A page whose link names a digest the bytes do not have: never scanned as that file.
    digest = hashlib.sha256(b"other bytes").hexdigest()
    write(root / "page.html", f'<a href="wheels/{name}#sha256={digest}">{name}</a>'.encode())
    env = {"PIP_FIND_LINKS": base + "page.html"}
    result, report = scan("pkg==1.0", "-r", rules_dir, "--index-url", index.url, env=env)
    assert result.exit_code == 3, result.output
    assert f"sha256 of {name} is {hashlib.sha256(content).hexdigest()}" in report["targets"][0]["error"]
    # The URL of the file itself is a candidate too.
    env = {"PIP_FIND_LINKS": base + "wheels/" + name}
    result, report = scan("pkg==1.0", "-r", rules_dir, "--index-url", index.url, env=env)
    assert result.exit_code == 1, result.output
