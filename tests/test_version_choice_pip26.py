"""Pass 48's version choice run with pip 26.3 as the oracle (red-team pass 55).

``tests/test_version_choice_differential.py``'s generator was run by hand with pip 26.3's wheel first on
``sys.path`` (seeds 1-9, 30-200 projects each, HTML and JSON pages, ``--python-version 3.8``, invalid
Requires-Python clauses, ``PIP_ALL_RELEASES``/``PIP_ONLY_FINAL`` given to both sides): every file pip 26.3
downloaded was scanned, and a bare name reported pip's version. A pin reports the version asked for:
``scan foo==1.0`` scans every version ``==1.0`` matches and says ``1.0`` where pip installs ``1.0+cu1``
(the label of the stored release too, which ``report foo==1.0`` finds; labelling it with pip's choice was
tried and undone for that). CI has pip 23.2 only, which picks the same file in every case below (each also
checked by hand with pip 26.3).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from dragonfly_hybrid.pypi.index import PyPIClient, VersionNotFound

from tests.fakes.pypi import FakeFile, FakeIndex, wheel
from tests.test_version_choice_differential import _pip_pick

WINDOWS = "cp311-cp311-win_amd64"


def _wheel(
    version: str, tags: str = "py3-none-any", yanked: bool = False, requires_python: str | None = None
) -> FakeFile:
    filename, content = wheel("foo", version, {"m.py": b"pass\n"})
    return FakeFile(filename.replace("py3-none-any", tags), content, yanked, requires_python=requires_python)


# (files of foo, the version pip 23.2 and 26.3 install for `foo==1.0`, checked by hand with both)
CASES = {
    "1.0 yanked": ([_wheel("1.0", yanked=True), _wheel("1.0+cu1")], "1.0+cu1"),
    "neither yanked": ([_wheel("1.0"), _wheel("1.0+cu1")], "1.0+cu1"),
    "both yanked": ([_wheel("1.0", yanked=True), _wheel("1.0+cu1", yanked=True)], "1.0+cu1"),
    "local yanked": ([_wheel("1.0"), _wheel("1.0+cu1", yanked=True)], "1.0"),
    "local for Windows only": ([_wheel("1.0"), _wheel("1.0+cu1", WINDOWS)], "1.0"),
    "1.0 yanked, local for Windows": ([_wheel("1.0", yanked=True), _wheel("1.0+cu1", WINDOWS)], "1.0"),
    "local for Python 3.13+": ([_wheel("1.0"), _wheel("1.0+cu1", requires_python=">=3.13")], "1.0"),
    "two locals, the higher for Windows": (
        [_wheel("1.0", yanked=True), _wheel("1.0+cu1"), _wheel("1.0+cu2", WINDOWS)],
        "1.0+cu1",
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_a_pin_scans_the_version_pip_installs_under_the_version_asked(
    fake_index: FakeIndex, tmp_path: Path, case: str
) -> None:
    """Every version `==1.0` matches is scanned, the one pip installs among them (the newest with a file it
    takes here, its tags, its Requires-Python; a yanked one only when all those are yanked) included; the
    release is reported as the version asked for."""
    files, installed = CASES[case]
    fake_index.add("foo", *files)
    release = PyPIClient(fake_index.url).resolve("foo", "1.0")
    assert release.version == "1.0"
    assert sorted(f.filename for f in release.files) == sorted(f.filename for f in files)  # none lost
    (picked,) = _pip_pick(fake_index, tmp_path, "foo==1.0")
    assert picked.split("-")[1] == installed
    assert picked in {f.filename for f in release.files}


@pytest.mark.parametrize(
    ("files", "installed"),
    [
        ([_wheel("1.0", yanked=True), _wheel("2.0a1")], None),  # a final release (yanked) keeps 2.0a1 out
        ([_wheel("1.0", WINDOWS, yanked=True), _wheel("2.0a1")], "2.0a1"),  # no final file pip takes here
        ([_wheel("1.0", yanked=True), _wheel("0.9"), _wheel("2.0a1")], "0.9"),
    ],
)
def test_a_bare_name_with_its_final_release_yanked_takes_no_pre_release(
    fake_index: FakeIndex, tmp_path: Path, files: list[FakeFile], installed: str | None
) -> None:
    """pip (23.2 as 26.3, the latter checked by hand) keeps pre-releases only when no final version has a
    file it takes here, yanked ones counted, then drops the yanked ones: with `1.0` yanked beside `2.0a1`, it
    installs nothing, where `scan foo` scanned `2.0a1`."""
    fake_index.add("foo", *files)
    picked = _pip_pick(fake_index, tmp_path, "foo")
    assert [name.split("-")[1] for name in picked] == ([installed] if installed else [])
    client = PyPIClient(fake_index.url)
    if installed is None:
        with pytest.raises(VersionNotFound, match="final releases are yanked, and pip takes no pre-release"):
            client.resolve("foo")
    else:
        assert client.resolve("foo").version == installed
