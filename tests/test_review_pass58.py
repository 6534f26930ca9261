"""Red-team pass 58: review of 5d80ef8 (pip's options taught to the requirements parser, ``-C``), b6c21e9
(pip's boolean refusal) and a5ef29f (a yanked final release keeps a bare name's pre-releases out).

Each case below was checked by hand with pip 26.3 (``pip download --no-deps``) and, where it has the option,
pip 23.2 (CI's, the oracle of the cases run here): a yanked final release keeps the pre-releases out only
when it has a file pip would take here (its Requires-Python, its tags: pip drops other files before it
filters pre-releases), whichever index or find-links location lists it; a local find-links file of that
final version is taken; ``uploaded-prior-to`` drops index files before that filter (pip 26.3's
``LinkEvaluator``), so a final uploaded after the cut-off keeps nothing out; ``all-releases`` takes the
pre-release, ``only-final`` nothing. ``-C`` values: pip takes any value holding ``=`` (``=x``, ``key=``,
quoted, with spaces) and refuses one without (``-C key``, ``-C ""``, ``-C a b=c``)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from dragonfly_hybrid.pypi.index import PyPIClient, VersionNotFound, target_python
from dragonfly_hybrid.pypi.pipconfig import ReleaseControl
from dragonfly_hybrid.pypi.requirements import RequirementsError, read_pins

from tests.fakes.pypi import FakeFile, FakeIndex, sdist
from tests.test_version_choice_differential import PIP_DOWNLOAD, _pip_downloads
from tests.test_version_choice_pip26 import WINDOWS, _wheel

YANKED_FINAL = "final releases are yanked, and pip takes no pre-release"
OLD, NEW = "2020-01-01T00:00:00Z", "2026-06-01T00:00:00Z"
CUTOFF = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _pip_takes(work: Path, index_url: str, *args: str) -> list[str]:
    """The files pip 23.2 downloads for a bare ``foo`` (empty when it finds none)."""
    out = work / "pip"
    _pip_downloads(work, [[*PIP_DOWNLOAD, "-d", str(out), "--index-url", index_url, *args, "foo"]])
    return sorted(p.name for p in out.iterdir()) if out.exists() else []


@pytest.mark.parametrize(
    ("files", "python", "installed"),
    [
        # The yanked 1.0 needs Python 3.13+: no file pip takes on 3.8, so 2.0a1 is a candidate.
        ([_wheel("1.0", yanked=True, requires_python=">=3.13"), _wheel("2.0a1")], "3.8", "2.0a1"),
        ([_wheel("1.0", yanked=True, requires_python="<3.9"), _wheel("2.0a1")], "3.8", None),
        # An sdist is a file pip takes on any platform.
        ([FakeFile(*sdist("foo", "1.0", {"m.py": b""}), yanked=True), _wheel("2.0a1")], None, None),
        # A yanked 2.0 keeps 3.0a1 out; 1.0 is pip's choice.
        ([_wheel("2.0", yanked=True), _wheel("1.0"), _wheel("3.0a1")], None, "1.0"),
    ],
)
def test_a_yanked_final_counts_only_with_a_file_pip_takes_for_that_python(
    fake_index: FakeIndex, tmp_path: Path, files: list[FakeFile], python: str | None, installed: str | None
) -> None:
    fake_index.add("foo", *files)
    picked = _pip_takes(tmp_path, fake_index.url, *(["--python-version", python] if python else []))
    assert [name.split("-")[1] for name in picked] == ([installed] if installed else [])
    client = PyPIClient(fake_index.url, python_version=target_python(python))
    if installed is None:
        with pytest.raises(VersionNotFound, match=YANKED_FINAL):
            client.resolve("foo")
    else:
        assert client.resolve("foo").version == installed


@pytest.mark.parametrize("yanked_on_extra", [False, True])
def test_a_yanked_final_on_one_index_keeps_a_pre_release_on_another_out(
    fake_index: FakeIndex, tmp_path: Path, yanked_on_extra: bool
) -> None:
    """pip merges the indexes' files before it filters pre-releases: nothing is installed (23.2 and 26.3)."""
    with FakeIndex() as extra:
        yanked_on, pre_on = (extra, fake_index) if yanked_on_extra else (fake_index, extra)
        yanked_on.add("foo", _wheel("1.0", yanked=True))
        pre_on.add("foo", _wheel("2.0a1"))
        assert _pip_takes(tmp_path, fake_index.url, "--extra-index-url", extra.url) == []
        with pytest.raises(VersionNotFound, match=YANKED_FINAL):
            PyPIClient(fake_index.url, extra_index_urls=[extra.url]).resolve("foo")


@pytest.mark.parametrize(
    ("local", "installed"),
    [
        (_wheel("1.0"), "1.0"),  # the local 1.0 is not yanked: pip takes it
        (_wheel("2.0a1"), None),  # the index's yanked 1.0 keeps the local pre-release out
        (_wheel("1.0", WINDOWS), None),  # a local 1.0 pip cannot take here changes nothing
    ],
)
def test_a_find_links_file_beside_a_yanked_final(
    fake_index: FakeIndex, tmp_path: Path, local: FakeFile, installed: str | None
) -> None:
    fake_index.add("foo", _wheel("1.0", yanked=True), _wheel("2.0a1"))
    links = tmp_path / "links"
    links.mkdir()
    (links / local.filename).write_bytes(local.content)
    picked = _pip_takes(tmp_path, fake_index.url, "--find-links", str(links))
    assert [name.split("-")[1] for name in picked] == ([installed] if installed else [])
    client = PyPIClient(fake_index.url, find_links=[str(links)])
    if installed is None:
        with pytest.raises(VersionNotFound, match=YANKED_FINAL):
            client.resolve("foo")
    else:
        release = client.resolve("foo")
        assert (release.version, [f.filename for f in release.files]) == (installed, [local.filename])


@pytest.mark.parametrize(
    ("files", "installed"),
    [
        # pip 26.3 (checked by hand; pip 23.2 has no uploaded-prior-to) drops a file uploaded at or after
        # the cut-off before it filters pre-releases: a final uploaded later keeps nothing out...
        ([_wheel("1.0", yanked=True), _wheel("2.0a1")], None),
        ([replace(_wheel("1.0", yanked=True), upload_time=NEW), _wheel("2.0a1")], "2.0a1"),
        ([replace(_wheel("1.0"), upload_time=NEW), _wheel("2.0a1")], "2.0a1"),
        # ...and a pre-release uploaded later is no candidate either.
        (
            [
                replace(_wheel("1.0"), upload_time=NEW),
                replace(_wheel("2.0a1"), upload_time=NEW),
                _wheel("0.9"),
            ],
            "0.9",
        ),
    ],
)
def test_uploaded_prior_to_drops_a_final_before_the_pre_release_filter(
    fake_index: FakeIndex, files: list[FakeFile], installed: str | None
) -> None:
    for file in files:
        file.upload_time = file.upload_time or OLD
    fake_index.add("foo", *files)
    client = PyPIClient(fake_index.url, uploaded_prior_to=CUTOFF)
    if installed is None:
        with pytest.raises(VersionNotFound, match=YANKED_FINAL):
            client.resolve("foo")
    else:
        assert client.resolve("foo").version == installed


@pytest.mark.parametrize(
    ("key", "installed", "message"),
    [("all-releases", "2.0a1", None), ("only-final", None, "pip's only-final allows no pre-release")],
)
def test_release_control_of_the_project_beside_a_yanked_final(
    fake_index: FakeIndex, key: str, installed: str | None, message: str | None
) -> None:
    """pip 26.3 (checked by hand): ``--all-releases foo`` installs 2.0a1, ``--only-final foo`` nothing."""
    fake_index.add("foo", _wheel("1.0", yanked=True), _wheel("2.0a1"))
    client = PyPIClient(fake_index.url, release_control=ReleaseControl().apply(key, "foo", "test"))
    if message is not None:
        with pytest.raises(VersionNotFound, match=message):
            client.resolve("foo")
    else:
        assert client.resolve("foo").version == installed


@pytest.mark.parametrize(
    "option", ["-C =x", "-C key=", "-C =", '-C "a b=c"', "-C 'key=a b'", "--config key=val", "-C=k=v"]
)
def test_a_config_settings_value_pip_takes(tmp_path: Path, option: str) -> None:
    """pip 23.2 and 26.3 split the value at its first ``=`` and take any key and value, empty ones too; an
    unambiguous prefix of ``--config-settings`` is that option (optparse)."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"foo==1.0 {option}\n")
    assert [(p.name, p.version) for p in read_pins([requirements]).pins] == [("foo", "1.0")]


@pytest.mark.parametrize("option", ['-C ""', "-C a b=c", "--config-settings key"])
def test_a_config_settings_value_pip_refuses(tmp_path: Path, option: str) -> None:
    """pip 23.2 and 26.3: "Arguments to -C must be of the form KEY=VAL" (``-C a b=c`` gives -C ``a``)."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"foo==1.0 {option}\n")
    with pytest.raises(RequirementsError, match="must be of the form KEY=VAL"):
        read_pins([requirements])
