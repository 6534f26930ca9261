"""Versions with a number past Python's 4300-digit limit for ``int(str)``: ``packaging`` raises
``ValueError`` (not ``InvalidVersion`` or ``InvalidSpecifier``) for them, and every place that read a
version or a Requires-Python crashed with a traceback (exit 3, "internal error"). Each is an answer now:
a version that is not one (exit 2), or a Requires-Python that is ignored as pip ignores an invalid one;
likewise an option's number and a TOML file's (exit 2)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.fakes.pypi import FakeFile, FakeIndex, sdist, wheel
from tests.test_redteam_watch_crash import cli
from tests.test_watch import CLEAN

HUGE = "1" * 5000


def _no_traceback(stderr: str) -> None:
    assert "Traceback" not in stderr and "internal error" not in stderr, stderr


def test_a_pinned_version_past_the_digit_limit_is_a_usage_error() -> None:
    done = cli("scan", f"demo=={HUGE}", "-q", "--index-url", "http://127.0.0.1:9/simple/")
    assert done.returncode == 2, done.stderr
    assert "is not a valid version (PEP 440)" in done.stderr
    _no_traceback(done.stderr)


def test_a_python_version_past_the_digit_limit_is_a_usage_error(fake_index: FakeIndex) -> None:
    done = cli("scan", "demo==1.0", "-q", "--index-url", fake_index.url, "--python-version", f"3.{HUGE}")
    assert done.returncode == 2, done.stderr
    assert "--python-version" in done.stderr
    _no_traceback(done.stderr)


def test_an_index_whose_requires_python_is_past_the_digit_limit_is_ignored_as_pip_does(
    fake_index: FakeIndex,
) -> None:
    """The index is the attacker's: a Requires-Python of ``>=3.<5000 digits>`` on a release's files
    crashed ``scan NAME`` (picking the release) and ``scan NAME==VERSION``. Ignored now, as an invalid
    Requires-Python is: the files are scanned."""
    files = [sdist("demo", "1.0", {"setup.py": CLEAN}), wheel("demo", "1.0", {"demo/__init__.py": CLEAN})]
    fake_index.add("demo", *(FakeFile(name, data, requires_python=f">=3.{HUGE}") for name, data in files))
    for target in ("demo", "demo==1.0"):
        done = cli("scan", target, "-q", "-f", "json", "--index-url", fake_index.url)
        assert done.returncode == 0, done.stderr
        assert '"verdict": "clean"' in done.stdout
        _no_traceback(done.stderr)


def test_an_option_number_past_the_digit_limit_is_a_usage_error(tmp_path: Path) -> None:
    target = tmp_path / "clean.py"
    target.write_bytes(CLEAN)
    done = cli("scan", str(target), "-q", "--threads", HUGE)
    assert done.returncode == 2, done.stderr
    assert "--threads" in done.stderr and "too large" in done.stderr
    _no_traceback(done.stderr)


@pytest.mark.parametrize(
    "toml", [f"bulk_size = {HUGE}\n", "bulk_size = " + "[" * 100_000], ids=["huge-integer", "nested-arrays"]
)
def test_a_node_config_file_past_pythons_limits_is_a_configuration_error(tmp_path: Path, toml: str) -> None:
    """``tomllib`` raises ``ValueError`` (not ``TOMLDecodeError``) for the one and ``RecursionError`` for the
    other: the node's ``DRAGONFLY_CONFIG`` file (and lock files) ended in a traceback."""
    config = tmp_path / "node.toml"
    config.write_text(toml)
    done = cli("node", "--once", env={**os.environ, "DRAGONFLY_CONFIG": str(config)})
    assert done.returncode == 2, done.stderr
    assert f"{config} is not valid TOML" in done.stderr
    _no_traceback(done.stderr)
