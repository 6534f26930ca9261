"""pip's ``uploaded-prior-to`` (pip.conf ``uploaded-prior-to``, ``PIP_UPLOADED_PRIOR_TO``): pip 26.3 installs
only index files uploaded before it (PEP 700 ``upload-time``), a supply-chain cool-down. ``scan`` ignored it
and scanned the newest release, while pip installed an older one: the verdict was about other bytes.

pip 26.3 is not installed on CI machines: each test states its behaviour, checked by hand with the pip 26.3
wheel (``python pip-26.3-py3-none-any.whl/pip download --no-deps --index-url URL SPEC``, PIP_CONFIG_FILE=
/dev/null) against the same files served by the fake index on 127.0.0.1. Real servers, files, the CLI.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from dragonfly_hybrid.api import fetch_and_scan
from dragonfly_hybrid.cli import app
from typer.testing import CliRunner, Result

from tests.fakes.pypi import MARKER, FakeFile, FakeIndex, sdist, wheel, write

BAD = {"pkg/__init__.py": b"import os\n# " + MARKER + b"\n"}
CLEAN = {"pkg/__init__.py": b"pass\n"}
BEFORE = "2024-01-01T00:00:00Z"
OLD = "2023-06-01T00:00:00Z"  # before BEFORE
NEW = "2024-03-01T00:00:00Z"  # after it


def scan(*args: object, env: dict[str, str | None]) -> tuple[Result, dict]:
    result = CliRunner().invoke(
        app, ["scan", *(str(a) for a in args), "-f", "json", "-q"], catch_exceptions=False, env=env
    )
    return result, json.loads(result.stdout) if result.stdout.strip() else {}


def files_of(report: dict) -> tuple[str, list[str]]:
    """The version and file names of the report's one target."""
    (target,) = report["targets"]
    return target["version"], sorted(d["name"] for d in target["distributions"])


def upload(files: dict[str, bytes], version: str, when: str, *, sdist_: bool = False) -> FakeFile:
    return FakeFile(*(sdist if sdist_ else wheel)("pkg", version, files), upload_time=when)


def test_a_bare_name_scans_the_newest_release_uploaded_before_the_setting(
    fake_index: FakeIndex, rules_dir: Path
) -> None:
    """pip 26.3 with PIP_UPLOADED_PRIOR_TO=2024-01-01T00:00:00Z installs pkg 1.0 (uploaded 2023-06), not 2.0
    (2024-03) nor 1.5 (2024-02): "Saved ./pkg-1.0-py3-none-any.whl". ``scan pkg`` scanned 2.0 (exit 1)."""
    fake_index.add("pkg", upload(CLEAN, "1.0", OLD), upload(BAD, "1.5", NEW), upload(BAD, "2.0", NEW))
    result, report = scan(
        "pkg", "-r", rules_dir, "--index-url", fake_index.url, env={"PIP_UPLOADED_PRIOR_TO": BEFORE}
    )
    assert result.exit_code == 0, result.output
    assert files_of(report) == ("1.0", ["pkg-1.0-py3-none-any.whl"])
    # Why 1.0 and not the newest, said once on stderr.
    assert "note: pip's uploaded-prior-to: only index files uploaded before 2024-01-01T00:00:00+00:00" in (
        result.stderr
    )


def test_a_pin_to_a_release_uploaded_after_the_setting_is_not_found(
    fake_index: FakeIndex, rules_dir: Path, tmp_path: Path
) -> None:
    """pip 26.3, ``uploaded-prior-to`` in pip.conf's [install]: "ERROR: No matching distribution found for
    pkg==2.0" (uploaded after it); also for a file uploaded exactly at it (pip keeps those strictly before).
    ``scan pkg==2.0`` scanned 2.0."""
    fake_index.add("pkg", upload(CLEAN, "1.0", OLD), upload(BAD, "2.0", NEW))
    conf = write(tmp_path / "pip.conf", f"[install]\nuploaded-prior-to = {OLD}\n".encode())
    for pin in ("pkg==2.0", "pkg==1.0"):  # 1.0 was uploaded at the cut-off itself
        result, _ = scan(
            pin, "-r", rules_dir, "--index-url", fake_index.url, env={"PIP_CONFIG_FILE": str(conf)}
        )
        assert result.exit_code == 2, result.output
        assert f"no files for version {pin[5:]}" in result.stderr
        assert "uploaded-prior-to" in result.stderr  # the user sees why


def test_only_the_files_of_a_release_uploaded_before_the_setting_are_scanned(
    fake_index: FakeIndex, rules_dir: Path, tmp_path: Path
) -> None:
    """pkg 1.0's sdist was uploaded before, its wheel after: pip 26.3 takes the sdist ("Downloading
    pkg-1.0.tar.gz", the wheel without the setting). ``scan -R`` scanned the flagged wheel too (exit 1)."""
    fake_index.add("pkg", upload(CLEAN, "1.0", OLD, sdist_=True), upload(BAD, "1.0", NEW))
    requirements = write(tmp_path / "requirements.txt", b"pkg==1.0\n")
    result, report = scan(
        "-R",
        requirements,
        "-r",
        rules_dir,
        "--index-url",
        fake_index.url,
        env={"PIP_UPLOADED_PRIOR_TO": BEFORE},
    )
    assert result.exit_code == 0, result.output
    assert files_of(report) == ("1.0", ["pkg-1.0.tar.gz"])


def test_an_index_without_upload_times_is_refused(fake_index: FakeIndex, rules_dir: Path) -> None:
    """An HTML (PEP 503) page gives no upload time: pip 26.3 refuses, "ERROR: Index http://127.0.0.1:PORT/
    simple/pkg/ does not provide upload-time metadata." ``scan`` scanned the newest release (exit 1)."""
    fake_index.add("pkg", upload(BAD, "1.0", OLD))
    fake_index.faults.html_only = True
    result, report = scan(
        "pkg", "-r", rules_dir, "--index-url", fake_index.url, env={"PIP_UPLOADED_PRIOR_TO": BEFORE}
    )
    assert result.exit_code == 3, result.output
    assert "no upload time for pkg-1.0-py3-none-any.whl" in result.output
    (target,) = report["targets"]
    assert (target["verdict"], target["distributions"]) == ("incomplete", [])


def test_local_find_links_files_are_exempt(fake_index: FakeIndex, rules_dir: Path, tmp_path: Path) -> None:
    """pip 26.3 exempts local files (``file:`` links): with a find-links directory holding pkg 1.5, it
    installs 1.5 ("Saved ./pkg-1.5-py3-none-any.whl"), not the index's 2.0 uploaded after the setting."""
    fake_index.add("pkg", upload(CLEAN, "1.0", OLD), upload(CLEAN, "2.0", NEW))
    name, content = wheel("pkg", "1.5", BAD)
    write(tmp_path / "links" / name, content)
    env: dict[str, str | None] = {"PIP_UPLOADED_PRIOR_TO": BEFORE, "PIP_FIND_LINKS": str(tmp_path / "links")}
    result, report = scan("pkg", "-r", rules_dir, "--index-url", fake_index.url, env=env)
    assert result.exit_code == 1, result.output
    assert files_of(report) == ("1.5", [name])


@pytest.mark.parametrize("value", ["yesterday", "P3", "P-1D", "2024-13-01"])
def test_an_invalid_value_is_a_usage_error_naming_it(
    fake_index: FakeIndex, rules_dir: Path, value: str
) -> None:
    """pip 26.3 refuses each ("--uploaded-prior-to error: invalid value: 'yesterday': ...", exit 2)."""
    fake_index.add("pkg", upload(CLEAN, "1.0", OLD))
    result, _ = scan(
        "pkg", "-r", rules_dir, "--index-url", fake_index.url, env={"PIP_UPLOADED_PRIOR_TO": value}
    )
    assert result.exit_code == 2, result.output
    assert f"uploaded-prior-to is {value!r}" in result.stderr
    assert "Traceback" not in result.output


def test_a_number_of_days_counts_back_from_now_in_the_api(
    fake_index: FakeIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``P3D``: 3 days ago. pip 26.3 installs 1.0 (uploaded 10 days ago), not 2.0 (an hour ago)."""
    now = datetime.now(timezone.utc)
    stamp = {d: (now - timedelta(days=d)).isoformat().replace("+00:00", "Z") for d in (10, 0)}
    fake_index.add("pkg", upload(CLEAN, "1.0", stamp[10]), upload(CLEAN, "2.0", stamp[0]))
    monkeypatch.setenv("PIP_UPLOADED_PRIOR_TO", "P3D")
    result = fetch_and_scan("pkg", index_url=fake_index.url)
    assert result.version == "1.0"


def test_a_lock_files_entries_are_unchanged(fake_index: FakeIndex, rules_dir: Path, tmp_path: Path) -> None:
    """uv does not read pip's settings: a uv.lock entry on a registry installs that file whatever pip's
    ``uploaded-prior-to`` says (as ``find-links`` are kept from locks)."""
    fake_index.add("pkg", upload(BAD, "2.0", NEW))
    entry = f'[[package]]\nname = "pkg"\nversion = "2.0"\nsource = {{ registry = "{fake_index.url}" }}\n'
    lock = write(tmp_path / "uv.lock", entry.encode())
    result, report = scan("-R", lock, "-r", rules_dir, env={"PIP_UPLOADED_PRIOR_TO": BEFORE})
    assert result.exit_code == 1, result.output
    assert files_of(report) == ("2.0", ["pkg-2.0-py3-none-any.whl"])
