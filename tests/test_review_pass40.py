"""Review pass 40 of pip's ``find-links`` (commit feb93e8): what pip reads from a find-links location, and
nothing else, is scanned with the index's files.

Real files and directories, the fake index on 127.0.0.1, the CLI; each test sets ``PIP_FIND_LINKS`` itself
(``conftest`` clears the machine's).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from dragonfly_hybrid.pypi.index import PyPIClient

from tests.fakes.pypi import FakeIndex, wheel, write
from tests.test_find_links import BAD, CLEAN, distributions, scan


@pytest.fixture
def counting_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """A plain static server on 127.0.0.1: its base URL, the directory it serves, the paths asked of it."""
    root = tmp_path / "served"
    root.mkdir()
    asked: list[str] = []

    class Counting(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            asked.append(self.path)

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Counting, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", root, asked
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_a_poetry_source_index_release_with_a_find_links_copy_is_not_a_false_incomplete(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """A poetry.lock entry of a source index is looked up on that index alone (a client of its own): its
    find-links files were listed there, then read by the main client, which did not know them as local
    files (``file:`` asked of httpx: "could not download", exit 3). A lock names its own index: poetry
    does not read pip's find-links, so they are not candidates of it."""
    name, content = wheel("pkg", "1.0", CLEAN)
    fake_index.add("pkg", (name, content))
    write(tmp_path / "links" / name, wheel("pkg", "1.0", BAD)[1])
    lock = tmp_path / "poetry.lock"
    lock.write_text(
        '[[package]]\nname = "pkg"\nversion = "1.0"\n'
        f'files = [{{file = "{name}", hash = "sha256:{hashlib.sha256(content).hexdigest()}"}}]\n'
        f'[package.source]\ntype = "legacy"\nurl = "{fake_index.url}"\nreference = "private"\n'
    )
    env: dict[str, str | None] = {"PIP_FIND_LINKS": str(tmp_path / "links")}
    result, report = scan("-R", lock, "-r", rules_dir, "--index-url", fake_index.url, env=env)
    assert result.exit_code == 0, result.output
    assert distributions(report) == [(name, fake_index.file_url("pkg", name), "clean")]


def test_only_wheels_and_sdists_of_a_find_links_directory_are_read(tmp_path: Path) -> None:
    """pip takes a find-links file only with a wheel's or an archive's extension (an ``.egg`` is skipped):
    the scanner read ``pkg-1.0-py2.7.egg`` from the user's disk for ``pkg==1.0``."""
    links = tmp_path / "links"
    for filename in ("pkg-1.0-py2.7.egg", "pkg-1.0.exe", "pkg-1.0.tar.bz2", "pkg-1.0.zip", "Pkg-1.0.tar.gz"):
        write(links / filename, b"x")
    with PyPIClient("http://127.0.0.1:9/simple/", find_links=[str(links)]) as client:
        found, problems = client.find_links_packages("pkg")
    assert problems == []
    assert sorted(p.filename for p in found) == ["Pkg-1.0.tar.gz", "pkg-1.0.tar.bz2", "pkg-1.0.zip"]


def test_a_find_links_page_is_asked_once_per_run_as_pip_asks_it(
    fake_index: FakeIndex, counting_server: tuple[str, Path, list[str]], tmp_path: Path, rules_dir: Path
) -> None:
    """pip reads each find-links location once per run; the scanner listed the directory (and asked the
    page) again for every pin: 200 pins against a directory of 20,000 files took minutes. Counted on a
    real page over HTTP: three pins, one request."""
    base, root, asked = counting_server
    for project in ("aa", "bb", "cc"):
        fake_index.add(project, wheel(project, "1.0", CLEAN))
    write(root / "page.html", b"<a href='nothing-1.0.tar.gz'>nothing</a>")
    pins = write(tmp_path / "requirements.txt", b"aa==1.0\nbb==1.0\ncc==1.0\n")
    env: dict[str, str | None] = {"PIP_FIND_LINKS": base + "page.html"}
    result, report = scan("-R", pins, "-r", rules_dir, "--index-url", fake_index.url, env=env)
    assert result.exit_code == 0, result.output
    assert len(report["targets"]) == 3
    assert asked == ["/page.html"]


def test_hash_checking_mode_takes_only_the_copy_of_an_allowed_digest(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """Held: in hash-checking mode pip installs only bytes of an allowed hash, from the index or
    find-links; the other copy of that name is left aside (neither a finding nor an incomplete scan)."""
    name, clean = wheel("pkg", "1.0", CLEAN)
    bad = wheel("pkg", "1.0", BAD)[1]
    fake_index.add("pkg", (name, clean))
    links = tmp_path / "links"
    write(links / name, bad)
    env: dict[str, str | None] = {"PIP_FIND_LINKS": str(links)}
    for allowed, url, verdict, code in (
        (clean, fake_index.file_url("pkg", name), "clean", 0),
        (bad, (links / name).as_uri(), "findings", 1),
    ):
        pins = write(
            tmp_path / "r.txt", f"pkg==1.0 --hash=sha256:{hashlib.sha256(allowed).hexdigest()}\n".encode()
        )
        result, report = scan("-R", pins, "-r", rules_dir, "--index-url", fake_index.url, env=env)
        assert result.exit_code == code, result.output
        assert distributions(report) == [(name, url, verdict)]


def test_find_links_credentials_are_never_shown(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """Held: a find-links URL naming a file that is missing, a local page's link, an unreachable page:
    each named without its password."""
    fake_index.add("pkg", wheel("pkg", "1.0", CLEAN))
    secret = f"http://u:s3cret@127.0.0.1:{fake_index.port}"
    page = write(tmp_path / "links" / "p.html", f'<a href="{secret}/x/pkg-1.0.tar.gz">x</a>'.encode())
    for target, location in (
        ("pkg==1.0", f"{secret}/missing/pkg-1.0-py3-none-any.whl"),
        ("pkg==1.0", str(page)),
        ("absent", "http://u:s3cret@127.0.0.1:1/x/"),
    ):
        env: dict[str, str | None] = {"PIP_FIND_LINKS": location}
        result, _ = scan(target, "-r", rules_dir, "--index-url", fake_index.url, env=env)
        assert result.exit_code == 3, result.output
        assert "s3cret" not in result.output and "127.0.0.1" in result.output
