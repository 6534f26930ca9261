"""An index's files as pip names and versions them, and which of them pip could install here.

pip names a listed file by the last segment of its URL (percent-decoded), never by the index's
``filename`` field or a link's text, and reads the version from that name: a wheel's second field, or for
an sdist what follows the first ``-`` whose prefix normalizes to the project's name, less a trailing
``-pyX.Y`` (the one Python the sdist is for). An index that lists
``foo-1.0-py3-none-any.whl`` under the name ``foo-0.9-...`` (a mirror, a proxy, a private index) had us
scan another file than the one pip installs for ``foo==1.0``; reading the page pip's way closes that gap.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Iterable
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from packaging.tags import Tag
    from packaging.version import Version
    from pypi_simple import DistributionPackage, ProjectPage

# The source archive formats pip unpacks, matched as pip matches them: case-sensitively.
SDIST_EXTENSIONS = (
    ".tar.gz",
    ".tgz",
    ".tar",
    ".tar.bz2",
    ".tbz",
    ".tar.xz",
    ".txz",
    ".tlz",
    ".tar.lz",
    ".tar.lzma",
    ".zip",
)
# What pip (23.2 to 26.3) reads at the end of an sdist's version as the one Python it is for
# (``foo-2.0-py3.8.tar.gz`` is version 2.0, for Python 3.8 only).
_PY_SUFFIX = re.compile(r"-py([123]\.?[0-9]?)$")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def url_filename(url: str) -> str:
    """The name pip gives the file at ``url``: the last segment of its path once percent-decoded, so that an
    encoded ``/`` (``evil%2Ffoo-2.0.tar.gz``) ends a segment too, as pip 23.2 and 26.3 read it."""
    return unquote(urlsplit(url).path).rstrip("/").rsplit("/", 1)[-1]


def listed_version(filename: str, project: str) -> str | None:
    """The version pip reads from a file named ``filename`` of ``project``; None when pip would skip the
    file (another project's, a name that does not parse). Formats pip does not install (eggs, installers)
    are read as :func:`pypi_simple.parse_filename` reads them, so that they are still scanned."""
    if filename.endswith(".whl"):
        from packaging.utils import InvalidWheelFilename, parse_wheel_filename

        # pip 26.3's reading (packaging's): the version is PEP 440, blanks around it allowed, so that
        # ``foo-%202.0-py3-none-any.whl`` is 2.0; pip 23.2's pattern skipped that file and took
        # ``foo-1.0_1-...`` (no PEP 440 version) as 1.0.post1.
        try:
            wheel_name = parse_wheel_filename(filename)[0]
        except InvalidWheelFilename:
            return None
        if wheel_name != _normalized(project):
            return None
        return filename.split("-")[1].strip().replace("_", "-")  # spelled as pip 23.2 spelled it
    stem = next((filename[: -len(ext)] for ext in SDIST_EXTENSIONS if filename.endswith(ext)), None)
    if stem is not None:
        wanted = _normalized(project)
        for at, char in enumerate(stem):
            if char == "-" and _normalized(stem[:at]) == wanted:
                return _PY_SUFFIX.sub("", stem[at + 1 :]) or None
        return None
    from pypi_simple import UnparsableFilenameError, parse_filename

    try:
        name, version, _ = parse_filename(filename, project_hint=project)
    except UnparsableFilenameError:
        return None
    return version if _normalized(name) == _normalized(project) else None


def as_pip_reads(page: ProjectPage) -> ProjectPage:
    """``page`` with each file named and versioned from its URL (pip's way), and the files pip would skip
    left out."""
    packages = []
    for package in page.packages:
        filename = url_filename(package.url)
        version = listed_version(filename, page.project)
        if version is not None:
            packages.append(dataclasses.replace(package, filename=filename, version=version))
    return dataclasses.replace(page, packages=packages)


@lru_cache(maxsize=4)
def _supported_tags(major: int, minor: int) -> frozenset[Tag]:
    from packaging import tags

    if (major, minor) == sys.version_info[:2]:
        return frozenset(tags.sys_tags())
    # Another Python asked for (``--python-version``): its tags on this platform, as ``pip download
    # --python-version`` takes them.
    version = (major, minor)
    # pip names the interpreter too, which adds ``cp3X-none-any``.
    interpreter = f"cp{major}{minor}"
    return frozenset([*tags.cpython_tags(version), *tags.compatible_tags(version, interpreter=interpreter)])


def runs_on(filename: str, python: Version) -> bool:
    """pip could install this file on ``python`` here: an sdist (but for another Python when its name ends
    in ``-pyX.Y``), or a wheel one of whose tags this platform supports (formats pip does not install:
    False)."""
    if filename.endswith(SDIST_EXTENSIONS):
        stem = next(filename[: -len(ext)] for ext in SDIST_EXTENSIONS if filename.endswith(ext))
        only = _PY_SUFFIX.search(stem)
        return only is None or only[1] == f"{python.major}.{python.minor}"
    if not filename.endswith(".whl"):
        return False
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        wheel_tags = parse_wheel_filename(filename)[3]
    except InvalidWheelFilename:
        return False
    return not _supported_tags(python.major, python.minor).isdisjoint(wheel_tags)


def any_runs_on(packages: Iterable[DistributionPackage], python: Version) -> bool:
    return any(runs_on(p.filename, python) for p in packages)
