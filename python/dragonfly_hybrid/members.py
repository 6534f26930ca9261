"""The members of a distribution with the SHA-256 of each: what ``diff`` compares to show files added,
removed and changed.

The engine reports only the files that matched a rule, so the listing is made here, with :mod:`zipfile`
and :mod:`tarfile`, reading (never extracting) every member. Members are labelled as in scan reports:
``<distribution>/<member>``, and a plain file by its own name. Nested archives are listed as one member
(their bytes' hash), not opened.

The listing is bounded like a scan (``Limits``): at most ``max_members`` members and ``max_total_size``
bytes read per distribution, ``max_member_size`` per member. Past a bound, or in an archive that cannot be
read, the listing stops and :attr:`MemberListing.problems` says why, so a partial list is never taken for
a complete one.
"""

from __future__ import annotations

import hashlib
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from dragonfly_hybrid._core import Limits
from dragonfly_hybrid.targets import member_name

_CHUNK = 1 << 20


@dataclass
class MemberListing:
    """Member label -> SHA-256 (hex), and why the listing is incomplete, if it is."""

    hashes: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def merge(self, other: MemberListing) -> None:
        self.hashes.update(other.hashes)
        self.problems.extend(other.problems)


class _OverLimit(Exception):
    pass


class _Budget:
    def __init__(self, label: str, limits: Limits) -> None:
        self.label = label
        self.limits = limits
        self.members = 0
        self.total = 0

    def member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise _OverLimit(
                f"{self.label}: more than {self.limits.max_members} members; the rest not compared"
            )

    def digest(self, name: str, stream: IO[bytes]) -> str:
        sha = hashlib.sha256()
        size = 0
        while chunk := stream.read(_CHUNK):
            size += len(chunk)
            self.total += len(chunk)
            if size > self.limits.max_member_size:
                limit = self.limits.max_member_size
                raise _OverLimit(f"{self.label}/{name}: larger than {limit} bytes; the rest not compared")
            if self.total > self.limits.max_total_size:
                limit = self.limits.max_total_size
                raise _OverLimit(f"{self.label}: more than {limit} bytes inflated; the rest not compared")
            sha.update(chunk)
        return sha.hexdigest()


def _zip_members(path: Path, budget: _Budget) -> Iterator[tuple[str, str]]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.is_dir():
                continue
            budget.member()
            with archive.open(info) as stream:
                yield info.filename, budget.digest(info.filename, stream)


def _tar_members(path: Path, budget: _Budget) -> Iterator[tuple[str, str]]:
    with tarfile.open(path, "r:*") as archive:
        for member in archive:
            if not member.isreg():
                continue  # directories, links and devices have no content of their own
            budget.member()
            stream = archive.extractfile(member)
            if stream is not None:
                with stream:
                    yield member.name, budget.digest(member.name, stream)


def list_members(path: Path, label: str, limits: Limits) -> MemberListing:
    """The members of the archive at ``path`` (zip, wheel, egg, tar in any compression), or the file itself
    when it is not an archive, labelled under ``label``."""
    listing = MemberListing()
    budget = _Budget(label, limits)
    try:
        if zipfile.is_zipfile(path):
            members = _zip_members(path, budget)
        elif tarfile.is_tarfile(path):
            members = _tar_members(path, budget)
        else:
            with path.open("rb") as stream:
                listing.hashes[label] = _whole(stream)
            return listing
        for name, digest in members:
            listing.hashes[f"{label}/{name}"] = digest
    except _OverLimit as err:
        listing.problems.append(str(err))
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError, zlib.error, lzma.LZMAError,
            NotImplementedError, RuntimeError) as err:  # fmt: skip
        listing.problems.append(f"{label}: cannot list its members ({type(err).__name__}: {err})")
    return listing


def _whole(stream: IO[bytes]) -> str:
    sha = hashlib.sha256()
    while chunk := stream.read(_CHUNK):
        sha.update(chunk)
    return sha.hexdigest()


def list_tree(root: Path, files: list[Path], limits: Limits) -> MemberListing:
    """The members of every file under a directory (``files``, from ``targets.directory_files``), each
    labelled by its path relative to ``root``; archives are listed member by member."""
    listing = MemberListing()
    for path in files:
        listing.merge(list_members(path, member_name(root, path), limits))
    return listing
