"""Where pip changed between 23.2 (installed here) and 26.3 (current) in what ``scan`` reproduces (pass 49).

pip 26.3 is not installed on CI machines: each test states its behaviour, checked by hand with the pip 26.3
wheel (``python pip-26.3-py3-none-any.whl/pip download --no-deps --index-url URL SPEC``) against the same
files served on 127.0.0.1.
"""

from __future__ import annotations

import io

import pytest
from dragonfly_hybrid.pypi.index import PyPIClient, VersionNotFound

from tests.fakes.pypi import FakeFile, FakeIndex, wheel


def test_a_wheel_version_with_blanks_is_read_as_pip_26_reads_it(fake_index: FakeIndex) -> None:
    """pip 25.3 and later read a wheel's name as packaging does, whose PEP 440 version allows blanks around
    it: pip 26.3 installs ``foo-%202.0-py3-none-any.whl`` as foo 2.0 (checked by hand: "Saved ./foo-
    2.0-py3-none-any.whl"). pip 23.2's pattern skipped it and installs 1.0, as ``scan foo`` did: the wheel
    current pip installs was never scanned."""
    _, content = wheel("foo", "2.0", {"evil.py": b"import os\n"})
    fake_index.add(
        "foo",
        wheel("foo", "1.0", {"m.py": b"pass\n"}),
        FakeFile(
            "foo- 2.0-py3-none-any.whl", content, listed_url="../../files/foo/foo-%202.0-py3-none-any.whl"
        ),
    )
    assert picked_and_downloaded(fake_index) == ("2.0", "foo- 2.0-py3-none-any.whl", content)


@pytest.mark.parametrize(
    ("filename", "pin"),
    [
        ("foo-1.0_1-py3-none-any.whl", "1.0.post1"),  # "1.0_1" is no PEP 440 version (pip 23.2: 1.0-1)
        ("foo-3.0-.py3-none-any.whl", "3.0"),  # an empty interpreter in the tag set
        ("foo__x-3.0-py3-none-any.whl", "3.0"),  # "__" in the name (PEP 427 escaping never writes it)
    ],
)
def test_a_wheel_name_pip_26_refuses_is_no_file_of_the_release(
    fake_index: FakeIndex, filename: str, pin: str
) -> None:
    """pip 26.3 skips these wheels ("No matching distribution found for foo==3.0", checked by hand for each),
    where pip 23.2 installs them: they are no longer listed as a release's files, so a pin to them is
    refused rather than scanned as what pip installs."""
    project = "foo-x" if filename.startswith("foo__x") else "foo"
    _, content = wheel(project, pin, {"m.py": b"pass\n"})
    fake_index.add(project, wheel(project, "1.0", {"m.py": b"pass\n"}), FakeFile(filename, content))
    with PyPIClient(fake_index.url, backoff=0.0) as pypi, pytest.raises(VersionNotFound):
        pypi.resolve(project, pin, find_links=False)


def test_an_encoded_slash_ends_the_file_name_as_pip_reads_it(fake_index: FakeIndex) -> None:
    """pip names a file by the last segment of its URL's path once percent-decoded: pip 26.3 installs
    ``evil%2Ffoo-3.0-py3-none-any.whl`` as foo 3.0 (checked by hand: "Saved ./foo-3.0-py3-none-any.whl";
    pip 23.2 too). Decoding the last segment alone named it ``evil/foo-3.0-...``, no file of foo: ``scan
    foo`` scanned 1.0 while pip installs 3.0."""
    _, content = wheel("foo", "3.0", {"evil.py": b"import os\n"})
    fake_index.add(
        "foo",
        wheel("foo", "1.0", {"m.py": b"pass\n"}),
        FakeFile(
            "evil/foo-3.0-py3-none-any.whl",
            content,
            listed_url="../../files/foo/evil%2Ffoo-3.0-py3-none-any.whl",
        ),
    )
    assert picked_and_downloaded(fake_index) == ("3.0", "foo-3.0-py3-none-any.whl", content)


def picked_and_downloaded(fake_index: FakeIndex) -> tuple[str, str, bytes]:
    """The version ``resolve("foo")`` picks, its one file's name and the bytes downloaded for it."""
    with PyPIClient(fake_index.url, backoff=0.0) as pypi:
        release = pypi.resolve("foo", find_links=False)
        (file,) = release.files
        sink = io.BytesIO()
        pypi.download(file, sink)
    return release.version, file.filename, sink.getvalue()
