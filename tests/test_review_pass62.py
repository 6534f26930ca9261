"""Review pass 62: pip's ``constraint`` setting as ``scan`` reads it (``PIP_CONSTRAINT``), held against the
installed pip (23.2; pip 26.3 by hand gave the same): a clean verdict only when every file pip downloads
was scanned. ``PIP_*`` are cleared per test (``conftest``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.fakes.pypi import FakeIndex, wheel, write
from tests.test_find_links import BAD, CLEAN, scan
from tests.test_review_pass42 import pip_download


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    """foo-bar: 1.0 clean, 2.0 malicious; pkg: 1.0 clean."""
    fake_index.add("foo-bar", wheel("foo_bar", "1.0", CLEAN), wheel("foo_bar", "2.0", BAD))
    fake_index.add("pkg", wheel("pkg", "1.0", CLEAN))
    return fake_index


def pip_files(index: FakeIndex, tmp_path: Path, env: dict[str, str], *args: str) -> list[str] | None:
    """The files ``pip download --no-deps ARGS`` saves under ``env`` (None: pip fails)."""
    into = tmp_path / f"pip-{len(list(tmp_path.iterdir()))}"
    done = pip_download(into, {"PIP_CONFIG_FILE": "/dev/null", **env}, "--index-url", index.url, *args)
    return sorted(p.name for p in into.iterdir()) if done.returncode == 0 else None


def test_a_requirements_file_a_constraint_file_reads_is_refused_for_a_bare_name(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip reads a ``-r`` line of a constraints file as a requirements file: it downloads pkg too. scan
    scanned foo-bar alone and gave a clean verdict."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "c.txt", b"foo-bar<2\n-r r.txt\n")
    write(tmp_path / "r.txt", b"pkg==1.0\n")
    env = {"PIP_CONSTRAINT": "c.txt"}
    assert pip_files(index, tmp_path, env, "foo-bar") == [
        "foo_bar-1.0-py3-none-any.whl",
        "pkg-1.0-py3-none-any.whl",
    ]
    result, _ = scan("foo-bar", "-r", rules_dir, "--index-url", index.url, env={**env})
    assert result.exit_code == 2, result.output
    assert "c.txt:2" not in result.stderr and "r.txt:1: pip installs this requirement too" in result.stderr
    # With -R, the files' requirements are read as pins: pkg is scanned.
    req = write(tmp_path / "req.txt", b"foo-bar==1.0\n")
    result, report = scan("-R", req, "-r", rules_dir, "--index-url", index.url, env={**env})
    assert result.exit_code == 0, result.output
    assert sorted(t["name"] for t in report["targets"]) == ["foo-bar", "pkg"]


def test_a_constraint_without_a_specifier_admits_every_version(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """A bare name as a constraint was a traceback (exit 3)."""
    env = {"PIP_CONSTRAINT": str(write(tmp_path / "c.txt", b"foo-bar\n"))}
    assert pip_files(index, tmp_path, env, "foo-bar") == ["foo_bar-2.0-py3-none-any.whl"]
    result, report = scan("foo-bar", "-r", rules_dir, "--index-url", index.url, env={**env})
    assert result.exit_code == 1, result.output
    assert [t["version"] for t in report["targets"]] == ["2.0"]


@pytest.mark.parametrize("scheme", ["https", "file"])
def test_a_constraint_file_named_by_url_is_refused_without_its_password(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, scheme: str
) -> None:
    """pip fetches a constraints file named by URL; scan read it as a path (``https:/user:s3cret@...``),
    quoting the password in its error."""
    constraints = write(tmp_path / "c.txt", b"foo-bar<2\n")
    url = f"https://user:s3cret@127.0.0.1:{index.port}/c.txt" if scheme == "https" else constraints.as_uri()
    result, _ = scan("foo-bar", "-r", rules_dir, "--index-url", index.url, env={"PIP_CONSTRAINT": url})
    assert result.exit_code == 2, result.output
    assert "pip fetches this constraints file from its URL" in result.stderr
    assert "s3cret" not in result.output and "Traceback" not in result.output


def test_a_url_constraint_on_a_pin_is_where_pip_takes_the_file_from(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip downloads a pinned name from its constraint's URL, not the index: scan scanned the index's
    clean file and gave a clean verdict."""
    (tmp_path / "local").mkdir()
    name, data = wheel("foo_bar", "1.0", BAD)
    local = write(tmp_path / "local" / name, data)
    env = {"PIP_CONSTRAINT": str(write(tmp_path / "c.txt", f"foo-bar @ {local.as_uri()}\n".encode()))}
    into = tmp_path / "pip"
    done = pip_download(
        into, {"PIP_CONFIG_FILE": "/dev/null", **env}, "--index-url", index.url, "foo-bar==1.0"
    )
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256((into / name).read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()
    result, _ = scan("foo-bar==1.0", "-r", rules_dir, "--index-url", index.url, env={**env})
    assert result.exit_code == 2, result.output
    assert f"makes pip install foo-bar from {local.as_uri()}" in result.stderr
