"""The dependencies pip would install for the releases of ``scan -R requirements.txt``, read from the files
already downloaded, so that ``scan`` can say which of them no ``-R`` file pins (and so were not scanned).

What a file declares: a wheel's ``*.dist-info/METADATA``; an sdist's ``PKG-INFO`` when it is Metadata 2.2+ and
``Requires-Dist`` is not ``Dynamic`` (older sdists' are known only once built; and since pip builds an sdist
and reads the build's, never the PKG-INFO, an sdist pip would install has them unknown too, unless a wheel
that fits this Python and platform is there). A ``name @ URL`` dependency is never the pinned release of that
name: pip installs it from the URL. ``Requires-Dist`` markers are evaluated for the Python the scan selects
files for and this platform, with the extras the requirements ask for and those the dependencies ask of the
named releases (``foo[x]`` in foo's own metadata). The archives are the attacker's: a metadata file over
:data:`METADATA_LIMIT` is refused, no more than that is ever inflated from it (so only stored or deflated zip
members are read), a zip's central directory over :data:`CENTRAL_DIRECTORY_LIMIT` is not parsed, a tarball is
walked through at most :data:`TAR_WALK_LIMIT` inflated bytes, and any error makes that file's dependencies
"unknown"."""

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

from dragonfly_hybrid.pypi.index import PIP_DEFAULTS, normalize_name, pip_candidate
from dragonfly_hybrid.pypi.pip_names import SDIST_EXTENSIONS
from dragonfly_hybrid.report import printable

if TYPE_CHECKING:
    from dragonfly_hybrid.pypi.index import DistributionFile, Release
    from dragonfly_hybrid.pypi.pipconfig import CandidateFiles
    from dragonfly_hybrid.pypi.requirements import Pins

METADATA_LIMIT = 1 << 20
"""Bytes of a METADATA / PKG-INFO read at most (a larger one is refused)."""
TAR_WALK_LIMIT = 64 << 20
"""Inflated bytes of an sdist's tarball walked at most looking for its PKG-INFO."""
CENTRAL_DIRECTORY_LIMIT = 8 << 20
"""Bytes of a zip's central directory parsed at most (zipfile keeps an object per entry: ~10 times that)."""
NOTE_NAMES_LIMIT = 50
"""Dependencies named in one note at most (the metadata may declare thousands)."""
EVALUATION_LIMIT = 1 << 18
"""Markers evaluated at most for one release (its requirements times its extras; a few µs each)."""
SDIST_UNKNOWN = "an sdist's are known once built"

_WHEEL_METADATA = re.compile(r"^([^/]+)-[^/-]+\.dist-info/METADATA$")
_SDIST_PKG_INFO = re.compile(r"^[^/]+/PKG-INFO$")
_TAR_OPENERS = {b"\x1f\x8b": gzip.open, b"BZh": bz2.open, b"\xfd7zXZ\x00": lzma.open}


class Unknown(Exception):
    """Why a file's dependencies cannot be told."""


def wants_notes(pins: Pins) -> bool:
    """Whether the pins come from pip requirements files not in hash-checking mode (where pip refuses an
    unpinned dependency; a ``--hash`` turns it on, but with pip 26's ``no-require-hashes``); lock files list
    every dependency."""
    from_requirements = [pin for pin in pins.pins if pin.line is not None]
    hashed = pins.no_require_hashes is None and any(p.hashes for p in from_requirements)
    return bool(from_requirements) and pins.require_hashes is None and not hashed


@dataclass
class _Declared:
    """What the downloaded files of one release declare."""

    label: str
    key: str
    requires: list[Requirement]
    """The union over its files whose dependencies are known."""
    unknown: list[str]


@dataclass
class DependencyNotes:
    """Collects, release by release, what the files declare; :meth:`lines` says which dependencies no ``-R``
    file names."""

    named: frozenset[str]
    """Normalized names the -R files give pip (pins, and named URL requirements, already reported)."""
    extras: dict[str, frozenset[str]]
    """Normalized extras asked for each normalized name."""
    python: Version
    constrained: frozenset[str] = frozenset()
    """Normalized names of the -c files' constraints (pip installs them at that version: still unscanned)."""
    candidates: CandidateFiles = PIP_DEFAULTS
    """pip's settings that decide which files it takes (``no-binary``: it builds the sdist)."""
    _declared: list[_Declared] = field(default_factory=list)

    def add(self, release: Release, fetched: Sequence[tuple[DistributionFile, Path]]) -> None:
        """Read what the downloaded files of ``release`` declare (the union over its files)."""
        requires: list[Requirement] = []
        unknown: list[str] = []
        wheel_known = False
        # pip takes a yanked file of a pinned release only when every file it could take here is yanked.
        project = normalize_name(release.name)
        takeable = [f for f, _ in fetched if pip_candidate(f, self.python, project, self.candidates)]
        yanked_ok = all(f.yanked for f in takeable)
        for file, path in fetched:
            try:
                declared = _declared(path, file.filename, project)
            except Unknown as why:
                unknown.append(f"{printable(file.filename)}: {why}")
                continue
            if declared is None:  # not a distribution pip installs (an egg, an installer)
                continue
            if not file.filename.endswith(".whl"):
                # pip builds an sdist and reads what the build says, never its PKG-INFO: that is named,
                # yet the build (the attacker's code) may say otherwise.
                unknown.append(f"{printable(file.filename)}: {SDIST_UNKNOWN}")
            # A wheel for another platform or Python (its tags, its Requires-Python) is not one pip takes
            # here: it builds the sdist.
            wheel_known |= (
                file.filename.endswith(".whl") and file in takeable and (yanked_ok or not file.yanked)
            )
            requires += declared
        if wheel_known:  # pip installs a wheel when one fits; one built from the sdist declares the same
            unknown = [u for u in unknown if not u.endswith(SDIST_UNKNOWN)]
        label = printable(f"{release.name}=={release.version}")
        self._declared.append(_Declared(label, project, requires, unknown))

    def lines(self) -> list[str]:
        lines = []
        for release, (installed, evaluated) in zip(self._declared, self._installed(), strict=True):
            missing: dict[str, set[str]] = {}
            from_url: dict[str, set[str]] = {}
            for requirement in installed:
                name = normalize_name(requirement.name)
                if requirement.url is not None and (name in self.named or name in self.constrained):
                    # pip installs it from that URL, not the pinned release that was scanned
                    from_url.setdefault(name, set()).add("")
                elif name not in self.named:
                    shown = printable(str(requirement.specifier)) if requirement.url is None else ""
                    missing.setdefault(name, set()).add(shown)
            constrained = {n: s for n, s in missing.items() if n in self.constrained}
            unpinned = {n: s for n, s in missing.items() if n not in self.constrained}
            if unpinned:
                lines.append(f"not pinned, so not scanned: {_listed(unpinned)} (required by {release.label})")
            if constrained:
                lines.append(
                    f"pinned only by a -c constraint, so not scanned: {_listed(constrained)} "
                    f"(required by {release.label})"
                )
            if from_url:
                lines.append(
                    f"from a URL, not the pinned release, so not scanned: {_listed(from_url)} "
                    f"(required by {release.label})"
                )
            unknown = release.unknown + (
                [] if evaluated else [f"over {EVALUATION_LIMIT} markers to evaluate"]
            )
            if unknown:
                lines.append(f"dependencies unknown, not checked: {release.label} ({'; '.join(unknown)})")
        return lines

    def _installed(self) -> list[tuple[list[Requirement], bool]]:
        """The requirements of each release pip installs: with the extras the -R lines ask for, and those
        the installed requirements ask of a named release (``foo[x]`` in foo's own metadata, ``bar[y]``
        of a pinned bar), to a fixed point; and whether they were all evaluated (each requirement once per
        extra, at most :data:`EVALUATION_LIMIT` times a release)."""
        environment = marker_environment(self.python)
        releases: dict[str, list[int]] = {}
        for at, release in enumerate(self._declared):
            releases.setdefault(release.key, []).append(at)
        installed: list[dict[int, Requirement]] = [{} for _ in self._declared]
        evaluations = [0] * len(self._declared)
        asked = {key: set(extras) for key, extras in self.extras.items()}
        pending = [
            (at, extra) for at, r in enumerate(self._declared) for extra in ("", *asked.get(r.key, ()))
        ]
        while pending:
            at, extra = pending.pop()
            release = self._declared[at]
            evaluations[at] += len(release.requires)
            if evaluations[at] > EVALUATION_LIMIT:
                continue
            for index, requirement in enumerate(release.requires):
                if index in installed[at] or not _applies(requirement, environment, extra):
                    continue
                installed[at][index] = requirement
                name = normalize_name(requirement.name)
                for wanted in {normalize_name(e) for e in requirement.extras} - asked.get(name, set()):
                    asked.setdefault(name, set()).add(wanted)
                    pending += [(other, wanted) for other in releases.get(name, ())]
        return [
            (list(found.values()), count <= EVALUATION_LIMIT)
            for found, count in zip(installed, evaluations, strict=True)
        ]


def _listed(missing: dict[str, set[str]]) -> str:
    """``bar, baz>=2``: a name with one specifier in every file shows it; with several, the name alone; no
    more than :data:`NOTE_NAMES_LIMIT` names."""
    shown = [name + (next(iter(specs)) if len(specs) == 1 else "") for name, specs in sorted(missing.items())]
    more = len(shown) - NOTE_NAMES_LIMIT
    return ", ".join(shown[:NOTE_NAMES_LIMIT]) + (f" and {more} more" if more > 0 else "")


def dependency_notes(
    paths: Sequence[Path], pins: Pins, python: Version, candidates: CandidateFiles = PIP_DEFAULTS
) -> DependencyNotes:
    """Notes for the pins of requirements files ``paths`` (already read without error into ``pins``), for
    pip on ``python`` under its ``candidates`` settings."""
    named = {normalize_name(pin.name) for pin in pins.pins}
    extras: dict[str, frozenset[str]] = {}
    # pip's constraint setting's files are read into no -R file: their constraints are the settings'.
    constrained = {constraint.name for constraint in pins.settings.constraints}
    for name, asked, is_constraint in _named_entries(paths):
        if is_constraint:
            constrained.add(name)
            continue
        named.add(name)
        extras[name] = extras.get(name, frozenset()) | asked
    return DependencyNotes(frozenset(named), extras, python, frozenset(constrained), candidates)


def _named_entries(paths: Sequence[Path]) -> list[tuple[str, frozenset[str], bool]]:
    """``(normalized name, normalized extras, is a constraint)`` of every named line (pins, URL ones,
    constraints) of the requirements files; ``Pins`` keeps no extras, so the files are read again with pip's
    parser."""
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
            if entry.name:
                extras = frozenset(normalize_name(e) for e in entry.extras)
                found.append((normalize_name(entry.name), extras, bool(entry.is_constraint)))
    return found


def marker_environment(python: Version) -> dict[str, str]:
    """pip's marker environment on this platform, for the Python the scan selects files for."""
    environment: dict[str, str] = dict(default_environment())  # type: ignore[arg-type]
    major, minor, micro = (*python.release, 0, 0)[:3]
    environment["python_version"] = f"{major}.{minor}"
    environment["python_full_version"] = f"{major}.{minor}.{micro}"
    return environment


def _applies(requirement: Requirement, environment: dict[str, str], extra: str) -> bool:
    """Whether pip installs ``requirement`` with ``extra`` asked for ("": none); a marker that cannot be
    evaluated counts as true (better a note too many)."""
    if requirement.marker is None:
        return True
    try:
        return requirement.marker.evaluate({**environment, "extra": extra})
    except Exception:  # an undefined comparison or name in the attacker's metadata
        return True


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
    with path.open("rb") as stream:
        # zipfile parses the whole central directory (the size its end record gives) before anything: an
        # archive of a million empty entries costs seconds and half a GiB. (No public API tells the size.)
        end = zipfile._EndRecData(stream)  # type: ignore[attr-defined]
    if end is not None and end[zipfile._ECD_SIZE] > CENTRAL_DIRECTORY_LIMIT:  # type: ignore[attr-defined]
        raise Unknown(f"its central directory is over {CENTRAL_DIRECTORY_LIMIT >> 20} MiB")
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
        if found[0].compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            # zipfile inflates bzip2 and lzma a whole read at a time: a few KiB of bzip2 are GiBs of zeros.
            raise Unknown(f"its metadata is compressed with method {found[0].compress_type}, not read")
        with archive.open(found[0]) as member:
            return _bounded(member)


def _tar_pkg_info(path: Path, head: bytes) -> bytes:
    opener = next((open_ for magic, open_ in _TAR_OPENERS.items() if head.startswith(magic)), None)
    raw: IO[bytes] = opener(path, "rb") if opener is not None else path.open("rb")  # type: ignore[operator]
    found = None
    with raw, tarfile.open(fileobj=_Capped(raw), mode="r|") as archive:  # type: ignore[call-overload]
        try:
            for member in archive:
                if not _SDIST_PKG_INFO.match(member.name):
                    continue
                if found is not None:  # unpacked, the last one is on disk: pip reads neither, it builds
                    raise Unknown("several metadata files")
                if not member.isfile():
                    raise Unknown("its PKG-INFO is not a file")
                if member.size > METADATA_LIMIT:
                    raise Unknown("its metadata is over 1 MiB")
                extracted = archive.extractfile(member)
                assert extracted is not None
                found = _bounded(extracted)
        except _WalkLimit:
            if found is None:
                raise
    if found is None:
        raise Unknown("no PKG-INFO")
    return found


class _WalkLimit(Unknown):
    """The tarball goes on past :data:`TAR_WALK_LIMIT` (a PKG-INFO found before it is taken)."""


class _Capped:
    """A reader of an inflated stream that refuses to go past :data:`TAR_WALK_LIMIT` bytes."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.read_so_far = 0

    def read(self, size: int = -1) -> bytes:
        if self.read_so_far > TAR_WALK_LIMIT:
            raise _WalkLimit(f"no PKG-INFO in its first {TAR_WALK_LIMIT >> 20} MiB")
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
