"""The dependencies pip would install for the releases of ``scan -R requirements.txt``, read from the files
already downloaded, so that ``scan`` can say which of them no ``-R`` file pins (and so were not scanned).

What a file declares: a wheel's ``*.dist-info/METADATA``; an sdist's ``PKG-INFO`` when it is Metadata 2.2+
and ``Requires-Dist`` is not ``Dynamic`` (older sdists' are known only once built). ``Requires-Dist``
markers are evaluated for the Python the scan selects files for and this platform, with the extras the
requirements ask for. The archives are the attacker's: a metadata file over :data:`METADATA_LIMIT` is
refused, no more than that is ever inflated from it, a tarball is walked through at most
:data:`TAR_WALK_LIMIT` inflated bytes, and any error makes that file's dependencies "unknown".
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import IO, TYPE_CHECKING

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from dragonfly_hybrid.pypi.index import normalize_name
from dragonfly_hybrid.pypi.pip_names import SDIST_EXTENSIONS
from dragonfly_hybrid.report import printable

if TYPE_CHECKING:
    from dragonfly_hybrid.pypi.index import DistributionFile, Release
    from dragonfly_hybrid.pypi.requirements import Pins

METADATA_LIMIT = 1 << 20
"""Bytes of a METADATA / PKG-INFO read at most (a larger one is refused)."""
TAR_WALK_LIMIT = 64 << 20
"""Inflated bytes of an sdist's tarball walked at most looking for its PKG-INFO."""
SDIST_UNKNOWN = "an sdist's are known once built"

_WHEEL_METADATA = re.compile(r"^([^/]+)-[^/-]+\.dist-info/METADATA$")
_SDIST_PKG_INFO = re.compile(r"^[^/]+/PKG-INFO$")
_TAR_OPENERS = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}


class Unknown(Exception):
    """Why a file's dependencies cannot be told."""


def wants_notes(pins: Pins) -> bool:
    """Whether the pins come from pip requirements files not in hash-checking mode (where pip refuses an
    unpinned dependency); lock files list every dependency."""
    from_requirements = [pin for pin in pins.pins if pin.line is not None]
    return (
        bool(from_requirements)
        and pins.require_hashes is None
        and not any(p.hashes for p in from_requirements)
    )


@dataclass
class DependencyNotes:
    """Collects, release by release, the dependencies no ``-R`` file names; :meth:`lines` says them."""

    named: frozenset[str]
    """Normalized names the -R files give pip (pins, and named URL requirements, already reported)."""
    extras: dict[str, frozenset[str]]
    """Normalized extras asked for each normalized name."""
    python: Version
    _lines: list[str] = field(default_factory=list)

    def add(self, release: Release, fetched: Sequence[tuple[DistributionFile, Path]]) -> None:
        """Read what the downloaded files of ``release`` declare (the union over its files)."""
        key = normalize_name(release.name)
        environment = _environment(self.python)
        missing: dict[str, set[str]] = {}
        unknown: list[str] = []
        wheel_known = False
        for file, path in fetched:
            try:
                requires = _declared(path, file.filename, key)
            except Unknown as why:
                unknown.append(f"{printable(file.filename)}: {why}")
                continue
            if requires is None:  # not a distribution pip installs (an egg, an installer)
                continue
            wheel_known |= file.filename.endswith(".whl")
            for requirement in requires:
                name = normalize_name(requirement.name)
                if name in self.named or not _applies(requirement, environment, self.extras.get(key)):
                    continue
                shown = str(requirement.specifier) if requirement.url is None else ""
                missing.setdefault(name, set()).add(shown)
        if wheel_known:  # pip installs a wheel when one fits; one built from the sdist declares the same
            unknown = [u for u in unknown if not u.endswith(SDIST_UNKNOWN)]
        label = printable(f"{release.name}=={release.version}")
        if missing:
            # A name with one specifier in every file shows it; with several, the name alone.
            shown = ", ".join(
                name + (next(iter(specs)) if len(specs) == 1 else "")
                for name, specs in sorted(missing.items())
            )
            self._lines.append(f"not pinned, so not scanned: {shown} (required by {label})")
        if unknown:
            self._lines.append(f"dependencies unknown, not checked: {label} ({'; '.join(unknown)})")

    def lines(self) -> list[str]:
        return list(self._lines)


def dependency_notes(paths: Sequence[Path], pins: Pins, python: Version) -> DependencyNotes:
    """Notes for the pins of requirements files ``paths`` (already read without error into ``pins``)."""
    named = {normalize_name(pin.name) for pin in pins.pins}
    extras: dict[str, frozenset[str]] = {}
    for name, asked in _named_entries(paths):
        named.add(name)
        extras[name] = extras.get(name, frozenset()) | asked
    return DependencyNotes(frozenset(named), extras, python)


def _named_entries(paths: Sequence[Path]) -> list[tuple[str, frozenset[str]]]:
    """``(normalized name, normalized extras)`` of every named requirement line (pins and URL ones) of
    the requirements files; ``Pins`` keeps no extras, so the files are read again with pip's parser."""
    from pip_requirements_parser import RequirementsFile  # type: ignore[import-untyped,import-not-found,unused-ignore]

    from dragonfly_hybrid.pypi.requirements import lock_format

    found = []
    for path in paths:
        if lock_format(path) != "requirements":
            continue
        try:
            parsed = RequirementsFile.from_file(str(path), include_nested=True)
        except Exception:  # read once without error already: changed since, its extras are not known
            continue
        for entry in parsed.requirements:
            if entry.is_constraint or not entry.name:
                continue
            found.append((normalize_name(entry.name), frozenset(normalize_name(e) for e in entry.extras)))
    return found


def _environment(python: Version) -> dict[str, str]:
    """pip's marker environment on this platform, for the Python the scan selects files for."""
    environment: dict[str, str] = dict(default_environment())  # type: ignore[arg-type]
    major, minor, micro = (*python.release, 0, 0)[:3]
    environment["python_version"] = f"{major}.{minor}"
    environment["python_full_version"] = f"{major}.{minor}.{micro}"
    return environment


def _applies(requirement: Requirement, environment: dict[str, str], extras: frozenset[str] | None) -> bool:
    """Whether pip installs ``requirement`` with ``extras`` asked for (none: only markers without
    ``extra``); a marker that cannot be evaluated counts as true (better a note too many)."""
    if requirement.marker is None:
        return True
    for extra in ("", *sorted(extras or ())):
        try:
            if requirement.marker.evaluate({**environment, "extra": extra}):
                return True
        except Exception:  # an undefined comparison or name in the attacker's metadata
            return True
    return False


def _declared(path: Path, filename: str, project: str) -> list[Requirement] | None:
    """The ``Requires-Dist`` of a downloaded file; None for a file pip does not install (an egg, an
    installer); :class:`Unknown` when it cannot be told."""
    is_wheel = filename.endswith(".whl")  # pip matches suffixes case-sensitively
    if not is_wheel and not filename.endswith(SDIST_EXTENSIONS):
        return None
    try:
        with path.open("rb") as stream:
            head = stream.read(6)
        if head.startswith(b"PK\x03\x04"):
            metadata = _zip_metadata(path, is_wheel, project)
        elif is_wheel:
            raise Unknown("not a zip archive")
        else:
            metadata = _tar_pkg_info(path, head)
    except Unknown:
        raise
    except Exception as err:  # the archive is the attacker's: any failure of the readers is a bad archive
        raise Unknown(f"unreadable ({type(err).__name__})") from None
    return _requires(metadata, is_wheel)


def _zip_metadata(path: Path, is_wheel: bool, project: str) -> bytes:
    pattern = _WHEEL_METADATA if is_wheel else _SDIST_PKG_INFO
    with zipfile.ZipFile(path) as archive:
        found = [info for info in archive.infolist() if pattern.match(info.filename)]
        if is_wheel and len(found) > 1:  # pip takes the project's own .dist-info
            found = [i for i in found if normalize_name(_WHEEL_METADATA.match(i.filename)[1]) == project]  # type: ignore[index]
        if not found:
            raise Unknown(f"no {'.dist-info/METADATA' if is_wheel else 'PKG-INFO'}")
        if len(found) > 1:
            raise Unknown("several metadata files")
        if found[0].file_size > METADATA_LIMIT:
            raise Unknown("its metadata is over 1 MiB")
        with archive.open(found[0]) as member:
            return _bounded(member)


def _tar_pkg_info(path: Path, head: bytes) -> bytes:
    opener = next((open_ for magic, open_ in _TAR_OPENERS.items() if head.startswith(magic)), None)
    raw: IO[bytes] = opener(path, "rb") if opener is not None else path.open("rb")  # type: ignore[operator]
    with raw, tarfile.open(fileobj=_Capped(raw), mode="r|") as archive:  # type: ignore[call-overload]
        for member in archive:
            if not _SDIST_PKG_INFO.match(member.name):
                continue
            if not member.isfile():
                raise Unknown("its PKG-INFO is not a file")
            if member.size > METADATA_LIMIT:
                raise Unknown("its metadata is over 1 MiB")
            extracted = archive.extractfile(member)
            assert extracted is not None
            return _bounded(extracted)
    raise Unknown("no PKG-INFO")


class _Capped:
    """A reader of an inflated stream that refuses to go past :data:`TAR_WALK_LIMIT` bytes."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.read_so_far = 0

    def read(self, size: int = -1) -> bytes:
        if self.read_so_far > TAR_WALK_LIMIT:
            raise Unknown(f"no PKG-INFO in its first {TAR_WALK_LIMIT >> 20} MiB")
        data = self.raw.read(min(size, TAR_WALK_LIMIT + 1) if size >= 0 else TAR_WALK_LIMIT + 1)
        self.read_so_far += len(data)
        return data


def _bounded(member: IO[bytes]) -> bytes:
    """A member's bytes, never inflating more than :data:`METADATA_LIMIT` (its declared size may lie)."""
    data = member.read(METADATA_LIMIT + 1)
    if len(data) > METADATA_LIMIT:
        raise Unknown("its metadata is over 1 MiB")
    return data


def _requires(metadata: bytes, is_wheel: bool) -> list[Requirement]:
    """The ``Requires-Dist`` requirements of a METADATA / PKG-INFO; :class:`Unknown` for an sdist's
    before Metadata 2.2 or with them ``Dynamic``, or an invalid line."""
    headers = BytesHeaderParser().parsebytes(metadata)
    if not is_wheel:
        try:
            version = Version(str(headers.get("Metadata-Version", "")).strip())
        except InvalidVersion:
            raise Unknown(SDIST_UNKNOWN) from None
        dynamic = {str(value).strip().lower() for value in headers.get_all("Dynamic", [])}
        if version < Version("2.2") or "requires-dist" in dynamic:
            raise Unknown(SDIST_UNKNOWN)
    requirements = []
    for line in headers.get_all("Requires-Dist", []):
        try:
            requirements.append(Requirement(str(line).strip()))
        except InvalidRequirement:
            raise Unknown("an invalid Requires-Dist") from None
    return requirements
