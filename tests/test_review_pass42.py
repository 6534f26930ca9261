"""Review pass 42: leftovers of pip's settings and find-links. pip's ``require-hashes`` setting turns on
hash-checking mode; a lock's entries take no find-links; a ``file:`` URL of another host is not read as the
local path of that name; a remote page's ``file:`` link fails at once.

Real files, the fake index on 127.0.0.1, the CLI and the API; real ``pip download`` where pip can say what it
does. Each test sets its PIP_* variables itself (``conftest`` clears the machine's).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from dragonfly_hybrid import fetch_and_scan
from dragonfly_hybrid.cli import app
from typer.testing import CliRunner

from tests.fakes.pypi import FakeFile, FakeIndex, wheel, write
from tests.test_find_links import BAD, CLEAN, distributions, scan


def pip_download(into: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Real ``pip download --no-deps ARGS`` into ``into`` (pip's settings: ``env`` only)."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-d", str(into), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **env},
    )


def _metadata_wheel(name: str, version: str, requires: str) -> tuple[str, bytes]:
    """A clean wheel whose METADATA declares ``requires``."""
    from tests.fakes.pypi import zip_bytes

    stem = f"{name}-{version}"
    return f"{stem}-py3-none-any.whl", zip_bytes(
        {
            "pkg/__init__.py": b"pass\n",
            f"{stem}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            f"Requires-Dist: {requires}\n".encode(),
            f"{stem}.dist-info/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        }
    )


@pytest.mark.parametrize("where", ["environment", "pip.conf"])
def test_pips_require_hashes_setting_turns_on_hash_checking_mode_for_requirements_files(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, where: str
) -> None:
    """pip refuses ``pkg==1.0`` without ``--hash`` under ``PIP_REQUIRE_HASHES=1`` (or pip.conf's
    ``require-hashes = true``), as under a ``--require-hashes`` line; ``scan -R`` scanned it (exit 0) and
    noted a dependency pip never reaches."""
    fake_index.add("pkg", _metadata_wheel("pkg", "1.0", "unpinned-dep"))
    requirements = write(tmp_path / "requirements.txt", b"pkg==1.0\n")
    if where == "environment":
        env = {"PIP_CONFIG_FILE": "/dev/null", "PIP_REQUIRE_HASHES": "1"}
        named = "require-hashes (environment)"
    else:
        conf = write(tmp_path / "pip.conf", b"[global]\nrequire-hashes = true\n")
        env = {"PIP_CONFIG_FILE": str(conf)}
        named = f"require-hashes ({conf})"
    pip = pip_download(tmp_path / "pip", env, "--index-url", fake_index.url, "-r", str(requirements))
    assert pip.returncode != 0 and "Hashes are required in --require-hashes mode" in pip.stderr, pip.stderr
    result, _ = scan("-R", requirements, "-r", rules_dir, "--index-url", fake_index.url, env={**env})
    assert result.exit_code == 2, result.output
    assert f"{requirements}:1" in result.stderr and named in result.stderr
    assert "hash-checking mode" in result.stderr and "not pinned, so not scanned" not in result.stderr
    # Turned off again by a later source (the environment over pip.conf), pip and scan both take the file.
    if where == "pip.conf":
        env["PIP_REQUIRE_HASHES"] = "0"
        assert (
            pip_download(
                tmp_path / "pip", env, "--index-url", fake_index.url, "-r", str(requirements)
            ).returncode
            == 0
        )
        result, _ = scan("-R", requirements, "-r", rules_dir, "--index-url", fake_index.url, env={**env})
        assert result.exit_code == 0, result.output
        assert "not pinned, so not scanned: unpinned-dep (required by pkg==1.0)" in result.stderr


@pytest.mark.parametrize("kind", ["poetry", "pylock"])
def test_a_lock_entry_naming_no_index_takes_no_find_links(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, kind: str
) -> None:
    """A poetry.lock entry without a ``source`` (a pylock entry without URLs or ``index``) is looked up on
    the configured index, and took pip's find-links there too: an unreadable location made it incomplete
    (exit 3), a flagged copy in one a finding. Its installer never reads pip's find-links."""
    name, content = wheel("pkg", "1.0", CLEAN)
    fake_index.add("pkg", (name, content))
    sha256 = hashlib.sha256(content).hexdigest()
    links = tmp_path / "links"
    write(links / name, wheel("pkg", "1.0", BAD)[1])
    if kind == "poetry":
        lock = write(
            tmp_path / "poetry.lock",
            '[[package]]\nname = "pkg"\nversion = "1.0"\n'
            f'files = [{{file = "{name}", hash = "sha256:{sha256}"}}]\n'.encode(),
        )
    else:
        lock = write(
            tmp_path / "pylock.toml",
            'lock-version = "1.0"\ncreated-by = "test"\n[[packages]]\nname = "pkg"\nversion = "1.0"\n'
            f'wheels = [{{ name = "{name}", hashes = {{ sha256 = "{sha256}" }} }}]\n'.encode(),
        )
    env: dict[str, str | None] = {"PIP_FIND_LINKS": f"{tmp_path / 'missing'} {links}"}
    result, report = scan("-R", lock, "-r", rules_dir, "--index-url", fake_index.url, env=env)
    assert result.exit_code == 0, result.output
    assert distributions(report) == [(name, fake_index.file_url("pkg", name), "clean")]
    # A requirements line of that release still takes them, as pip does.
    requirements = write(tmp_path / "requirements.txt", b"pkg==1.0\n")
    result, report = scan("-R", requirements, "-r", rules_dir, "--index-url", fake_index.url, env=env)
    assert result.exit_code == 1, result.output  # the flagged copy; the missing location: incomplete too
    assert report["targets"][0]["verdict"] == "findings" and "find-links" in report["targets"][0]["error"]


def test_fetch_and_scan_and_diff_keep_the_find_links_of_index_releases(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Held: releases named by the caller (not by a lock) take pip's find-links, as pip's installs do."""
    name, content = wheel("pkg", "1.0", CLEAN)
    fake_index.add("pkg", (name, content))
    links = tmp_path / "links"
    write(links / name, wheel("pkg", "1.0", BAD)[1])
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    result = fetch_and_scan("pkg==1.0", index_url=fake_index.url)
    assert (links / name).as_uri() in [d.url for d in result.distributions]
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "missing"))
    diff = CliRunner().invoke(
        app,
        [
            "diff",
            "pkg==1.0",
            "pkg==1.0",
            "-r",
            str(rules_dir),
            "--index-url",
            fake_index.url,
            "-f",
            "json",
            "--store",
            str(tmp_path / "s.db"),
        ],
        catch_exceptions=False,
    )
    assert diff.exit_code == 3, diff.output
    assert f"find-links {tmp_path / 'missing'}" in json.loads(diff.stdout)["new"]["error"]


def test_a_find_links_file_url_of_another_host_is_not_read_as_a_local_path(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """``file://otherhost/DIR`` read the local ``DIR`` (its flagged wheel: exit 1); pip 23.2 refuses a
    non-local ``file:`` URL (``url_to_path``: "non-local file URIs are not supported"). A location that
    cannot be read: the release incomplete, naming it. So is a local page's link to one."""
    fake_index.add("pkg", wheel("pkg", "1.0", CLEAN))
    links = tmp_path / "links"
    name, content = wheel("pkg", "1.0", BAD)
    write(links / name, content)
    for location in (f"file://otherhost{links}", f"file://otherhost{links / name}"):
        result, report = scan(
            "pkg==1.0", "-r", rules_dir, "--index-url", fake_index.url, env={"PIP_FIND_LINKS": location}
        )
        assert result.exit_code == 3, result.output
        (target,) = report["targets"]
        assert f"find-links {location} could not be read" in target["error"]
        assert "another host" in target["error"]
        assert [d["verdict"] for d in target["distributions"]] == ["clean"]
    page = write(tmp_path / "page" / "links.html", f'<a href="file://otherhost{links / name}">x</a>'.encode())
    result, report = scan(
        "pkg==1.0", "-r", rules_dir, "--index-url", fake_index.url, env={"PIP_FIND_LINKS": str(page.parent)}
    )
    assert result.exit_code == 3, result.output
    assert "another host" in report["targets"][0]["error"]
    # localhost is local, as pip reads it.
    result, _ = scan(
        "pkg==1.0",
        "-r",
        rules_dir,
        "--index-url",
        fake_index.url,
        env={"PIP_FIND_LINKS": f"file://localhost{links}"},
    )
    assert result.exit_code == 1, result.output


def test_a_remote_find_links_pages_file_link_fails_at_once(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """A remote page's ``file:`` link was asked of httpx three times with backoff ("after 3 attempts");
    it is not read (a remote page does not choose a local file): it fails at once, saying so."""
    fake_index.add("pkg", wheel("pkg", "1.0", CLEAN))
    name, content = wheel("pkg", "1.0", BAD)
    local = write(tmp_path / "elsewhere" / name, content)
    with FakeIndex() as page:
        page.add("pkg", FakeFile(name, content, listed_url=local.as_uri()))
        env: dict[str, str | None] = {"PIP_FIND_LINKS": f"{page.url}pkg/"}
        result, report = scan("pkg==1.0", "-r", rules_dir, "--index-url", fake_index.url, env=env)
    assert result.exit_code == 3, result.output
    (target,) = report["targets"]
    assert "a remote page's file: link is not read" in result.output + json.dumps(report)
    assert "attempts" not in result.output + json.dumps(report)
    assert "findings" not in [d["verdict"] for d in target["distributions"]]
