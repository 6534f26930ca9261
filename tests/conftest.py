"""Shared fixtures. Archive builders and the fake index live in ``tests/fake_pypi.py``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_pypi import LIGHT_RULE, MARKER_RULE, FakeIndex


@pytest.fixture
def fake_index() -> Iterator[FakeIndex]:
    """A started fake simple index on 127.0.0.1 (see ``tests/fake_pypi.py``)."""
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
