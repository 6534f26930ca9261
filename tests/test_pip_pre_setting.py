"""pip's ``pre`` setting (``PIP_PRE``, ``pre = true`` in pip.conf; the command line's ``--pre``): pip's choice
for a bare name may then be a pre-release. ``scan`` ignored it and scanned the newest final release, bytes
pip with the setting does not install. Real ``pip download`` (the installed pip) on the same fake index says
what pip picks; ``PIP_*`` are cleared per test (``conftest``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.pypi import FakeIndex, wheel, write
from tests.test_find_links import BAD, CLEAN, scan
from tests.test_review_pass42 import pip_download


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    fake_index.add("pkg", wheel("pkg", "1.0", CLEAN), wheel("pkg", "2.0b1", BAD))
    return fake_index


def picks(index: FakeIndex, tmp_path: Path, rules_dir: Path, env: dict[str, str]) -> tuple[list[str], str]:
    """The files pip downloads for ``pkg`` and the version ``scan pkg`` scans, with pip's settings ``env``."""
    pip = pip_download(tmp_path / "pip", env, "--index-url", index.url, "pkg")
    assert pip.returncode == 0, pip.stderr
    result, report = scan("pkg", "-r", rules_dir, "--index-url", index.url, env={**env})
    assert result.exit_code in (0, 1), result.output
    (target,) = report["targets"]
    return sorted(p.name for p in (tmp_path / "pip").iterdir()), target["version"]


def test_pip_pre_in_the_environment_picks_the_pre_release(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    env = {"PIP_PRE": "1", "PIP_CONFIG_FILE": "/dev/null"}
    assert picks(index, tmp_path, rules_dir, env) == (["pkg-2.0b1-py3-none-any.whl"], "2.0b1")


def test_pre_in_pip_conf_picks_the_pre_release_and_pip_pre_0_lifts_it(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    conf = write(tmp_path / "pip.conf", b"[global]\npre = true\n")  # pip download reads no [install]
    env = {"PIP_CONFIG_FILE": str(conf)}
    assert picks(index, tmp_path / "a", rules_dir, env) == (["pkg-2.0b1-py3-none-any.whl"], "2.0b1")
    assert picks(index, tmp_path / "b", rules_dir, {**env, "PIP_PRE": "0"}) == (
        ["pkg-1.0-py3-none-any.whl"],
        "1.0",
    )


def test_a_pre_value_pip_refuses_is_a_usage_error(index: FakeIndex, rules_dir: Path) -> None:
    result, _ = scan("pkg", "-r", rules_dir, "--index-url", index.url, env={"PIP_PRE": "maybe"})
    assert result.exit_code == 2, result.output
    assert "pip's pre is 'maybe' (environment)" in result.stderr
