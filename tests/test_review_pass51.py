"""Review of passes 49 and 50 (wheel names read by packaging's rules, ``url_filename`` decoding the whole
path, pip's ``uploaded-prior-to``) against pip 26.3, run from its wheel (``python
pip-26.3-py3-none-any.whl/pip download --no-deps``, PIP_CONFIG_FILE=/dev/null) against the same files served
on 127.0.0.1.

A find-links ``file:`` URL whose path holds ``%00`` (the location itself, or a link of a local page) made
``scan`` stop with an internal error and a traceback (``ValueError: embedded null byte`` from ``stat``);
pip 26.3 warns "Location 'file:///.../x%00y/' is ignored: it is neither a file nor a directory." and goes
on. ``scan`` says so as it says it of any find-links location it cannot read: the release is incomplete.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from dragonfly_hybrid.cli import app
from dragonfly_hybrid.pypi.index import PyPIClient
from typer.testing import CliRunner, Result

from tests.fakes.pypi import MARKER, FakeFile, FakeIndex, wheel, write

CLEAN = {"pkg/__init__.py": b"pass\n"}
BAD = {"pkg/__init__.py": b"import os\n# " + MARKER + b"\n"}


def scan(*args: object, env: dict[str, str | None]) -> tuple[Result, dict]:
    result = CliRunner().invoke(
        app, ["scan", *(str(a) for a in args), "-f", "json", "-q"], catch_exceptions=False, env=env
    )
    return result, json.loads(result.stdout) if result.stdout.strip() else {}


def test_a_find_links_file_url_with_an_encoded_nul_is_unreadable_not_a_crash(
    fake_index: FakeIndex, rules_dir: Path, tmp_path: Path
) -> None:
    fake_index.add("pkg", FakeFile(*wheel("pkg", "1.0", CLEAN)))
    location = (tmp_path / "links").as_uri() + "%00x/"
    env: dict[str, str | None] = {"PIP_FIND_LINKS": location, "PIP_CONFIG_FILE": "/dev/null"}
    assert_incomplete_naming_the_nul(fake_index, rules_dir, env)


def test_a_local_page_linking_to_a_path_with_an_encoded_nul_is_unreadable_not_a_crash(
    fake_index: FakeIndex, rules_dir: Path, tmp_path: Path
) -> None:
    """The link's name is pkg-2.0-py3-none-any.whl (the NUL is in a directory), the newest release: read at
    download time, it raised the same ValueError in the download thread, and the file was reported as a
    corrupt archive."""
    fake_index.add("pkg", FakeFile(*wheel("pkg", "1.0", CLEAN)))
    name, content = wheel("pkg", "2.0", BAD)
    write(tmp_path / "files" / name, content)
    write(tmp_path / "links" / "index.html", f'<a href="../files%00/{name}">{name}</a>'.encode())
    env: dict[str, str | None] = {"PIP_FIND_LINKS": str(tmp_path / "links"), "PIP_CONFIG_FILE": "/dev/null"}
    assert_incomplete_naming_the_nul(fake_index, rules_dir, env)


def test_a_naive_cutoff_given_to_the_client_is_local_time_as_pip_reads_it(fake_index: FakeIndex) -> None:
    """pip 26.3 reads ``--uploaded-prior-to 2024-01-01T00:00:00`` in the local time zone; the client compared
    a naive cutoff with the index's aware times: TypeError."""
    fake_index.add(
        "pkg",
        FakeFile(*wheel("pkg", "1.0", CLEAN), upload_time="2023-06-01T00:00:00Z"),
        FakeFile(*wheel("pkg", "2.0", CLEAN), upload_time="2024-03-01T00:00:00Z"),
    )
    cutoff = datetime(2024, 1, 1)
    with PyPIClient(fake_index.url, uploaded_prior_to=cutoff) as pypi:
        assert pypi.resolve("pkg").version == "1.0"
        assert pypi.uploaded_prior_to == cutoff.astimezone()


def assert_incomplete_naming_the_nul(
    fake_index: FakeIndex, rules_dir: Path, env: dict[str, str | None]
) -> None:
    """``scan pkg`` with ``env`` is incomplete (exit 3), naming the encoded NUL, without a traceback."""
    result, report = scan("pkg", "-r", rules_dir, "--index-url", fake_index.url, env=env)
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    (target,) = report["targets"]
    assert target["verdict"] == "incomplete"
    assert "encoded NUL (%00)" in target["error"]
