"""Shared fixtures. Archive builders and the fake index live in ``tests/fakes/pypi.py``."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.pypi import LIGHT_RULE, MARKER_RULE, FakeIndex


@pytest.fixture(autouse=True, scope="session")
def _rules_cache_in_tmp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Commands cache compiled rules (``rules_loader.rules_cache_dir``): in a directory of the test session,
    never the user's, shared by the session's tests (and their subprocesses) as it is by a user's commands."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DRAGONFLY_RULES_CACHE_DIR", str(tmp_path_factory.mktemp("rules-cache")))
        yield


@pytest.fixture
def fake_index() -> Iterator[FakeIndex]:
    """A started fake simple index on 127.0.0.1 (see ``tests/fakes/pypi.py``)."""
    with FakeIndex() as index:
        yield index


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """A rule directory: ``test_marker`` (weight 5) and, in a subdirectory, ``light_marker`` (weight 1)."""
    directory = tmp_path / "rules"
    (directory / "sub").mkdir(parents=True)
    (directory / "marker.yar").write_text(MARKER_RULE)
    (directory / "sub" / "light.yara").write_text(LIGHT_RULE)
    return directory


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No DRAGONFLY_* variable from the outside, and a working directory without a .env (for the settings
    tests: ``pytestmark = pytest.mark.usefixtures("clean_env")``)."""
    for name in list(os.environ):
        if name.upper().startswith("DRAGONFLY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def _package_logging_restored() -> Iterator[None]:
    """In-process ``watch``/``node`` runs route the package's logs to the stderr of their CliRunner (closed
    afterwards) and stop propagation: undo that, so later tests log normally and ``caplog`` sees them."""
    logger = logging.getLogger("dragonfly_hybrid")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture(autouse=True)
def _no_outside_pip_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """``scan`` reads pip's configuration and PIP_* variables (as pip does): tests start from none, so that
    a find-links, cert or index of the machine running them changes nothing; tests set what they test."""
    for name in list(os.environ):
        if name.upper().startswith("PIP_") or name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
