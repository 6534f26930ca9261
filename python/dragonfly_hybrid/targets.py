"""What ``dragonfly-hybrid scan`` scans: target parsing, PyPI resolution and download, scanning.

A target is, in this order:

1. an existing path: a file (an archive, whose format is detected from its bytes, or a loose file) or a
   directory (every regular file under it, recursively, in sorted order; symbolic links are not followed;
   each file is one distribution named by its path relative to the directory);
2. a PyPI requirement ``name==version`` or a bare ``name`` (the latest release), when the string is a valid
   PEP 508 project name (and a PEP 440 version). A string that contains a path separator or ends like an
   archive or a Python file (``.tar.gz``, ``.whl``, ``.zip``, ``.py``...) is always taken as a path, so a
   mistyped file name is reported as a missing file, not looked up on the index.

Anything else is a usage error (:class:`TargetError`), as are a project or version the index does not
have (:class:`~dragonfly_hybrid.pypi.index.ProjectNotFound`,
:class:`~dragonfly_hybrid.pypi.index.VersionNotFound`, raised by :meth:`TargetScanner.resolve` before
anything is scanned). An index that cannot be reached and files that cannot be downloaded make the target
``incomplete`` instead: what was downloaded is still scanned, so a rule match elsewhere in the release is
never lost.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from packaging.version import InvalidVersion, Version

from dragonfly_hybrid._core import DistributionResult, Scanner
from dragonfly_hybrid.http_client import redact_url
from dragonfly_hybrid.pypi.index import (
    DistributionFile,
    IndexUnavailable,
    ProgressCallback,
    PyPIClient,
    PyPIError,
    Release,
)
from dragonfly_hybrid.report import TargetKind, TargetResult

PATH_SUFFIXES = (
    ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar", ".zip", ".whl", ".egg",
    ".py", ".pyi", ".pth",
)  # fmt: skip
"""A nonexistent target ending like this is a missing file, never a PyPI name."""

_NAME = r"[A-Z0-9](?:[A-Z0-9._-]*[A-Z0-9])?"
_REQUIREMENT = re.compile(rf"^\s*(?P<name>{_NAME})\s*(?:==\s*(?P<version>\S+?)\s*)?$", re.IGNORECASE)
DOWNLOAD_THREADS = 4


class TargetError(ValueError):
    """A target that is neither an existing path nor a PyPI requirement (a usage error)."""


@dataclass(frozen=True)
class PathTarget:
    raw: str
    path: Path
    is_directory: bool


@dataclass(frozen=True)
class ReleaseTarget:
    raw: str
    name: str
    version: str | None


Target = PathTarget | ReleaseTarget


def _looks_like_path(raw: str) -> bool:
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(sep in raw for sep in separators) or raw.lower().endswith(PATH_SUFFIXES)


def parse_target(raw: str) -> Target:
    """Classify one command-line target (see the module docstring)."""
    path = Path(raw)
    if os.path.lexists(raw):
        try:
            mode = path.stat().st_mode
        except OSError as err:
            raise TargetError(f"cannot read {raw}: {err.strerror or err}") from err
        if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
            return PathTarget(raw, path, stat.S_ISDIR(mode))
        raise TargetError(f"{raw} is neither a regular file nor a directory")
    match = _REQUIREMENT.match(raw)
    if match is None or _looks_like_path(raw):
        raise TargetError(f"{raw}: no such file or directory, and not a PyPI project name or name==version")
    version = match.group("version")
    if version is not None:
        try:
            Version(version)
        except InvalidVersion as err:
            raise TargetError(f"{raw}: {version!r} is not a valid version (PEP 440)") from err
    return ReleaseTarget(raw, match.group("name"), version)


def directory_files(root: Path) -> tuple[list[Path], list[str]]:
    """Every regular file under ``root``, recursively, sorted, and an error per unreadable directory.

    Symbolic links (to files or directories) are not followed; nothing is skipped silently.
    """
    found: list[Path] = []
    errors: list[str] = []

    def unreadable(err: OSError) -> None:
        errors.append(f"cannot list {err.filename}: {err.strerror or err}")

    for dirpath, _dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=False):
        for filename in filenames:
            path = Path(dirpath, filename)
            try:
                if stat.S_ISREG(path.lstat().st_mode):
                    found.append(path)
            except OSError as err:
                unreadable(err)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix()), errors


class Hooks(Protocol):
    """Progress notifications (the CLI shows them as a progress display)."""

    def stage(self, text: str) -> None: ...

    def target_done(self) -> None: ...

    def download(self, filename: str, size: int | None) -> ProgressCallback: ...

    def downloaded(self, filename: str) -> None: ...


class NoHooks:
    """Hooks that show nothing."""

    def stage(self, text: str) -> None:
        pass

    def target_done(self) -> None:
        pass

    def download(self, filename: str, size: int | None) -> ProgressCallback:
        return lambda received, total: None

    def downloaded(self, filename: str) -> None:
        pass


@dataclass(frozen=True)
class Resolved:
    """A target ready to scan: a path, a resolved release, or a release the index could not serve."""

    target: Target
    release: Release | None = None
    error: str | None = None


class TargetScanner:
    """Scans targets with one ``Scanner``, fetching releases through one ``PyPIClient`` (None when every
    target is a path: ``scan`` of local files opens no index client)."""

    def __init__(self, scanner: Scanner, pypi: PyPIClient | None, hooks: Hooks | None = None) -> None:
        self.scanner = scanner
        self._pypi = pypi
        self.hooks: Hooks = hooks or NoHooks()

    @property
    def pypi(self) -> PyPIClient:
        if self._pypi is None:
            raise RuntimeError("a release target needs an index client: TargetScanner was given none")
        return self._pypi

    def resolve(self, target: Target) -> Resolved:
        """Look a release up on the index. Raises ``ProjectNotFound``/``VersionNotFound`` (usage errors)."""
        if isinstance(target, PathTarget):
            return Resolved(target)
        self.hooks.stage(f"resolving {target.raw}")
        try:
            return Resolved(target, release=self.pypi.resolve(target.name, target.version))
        except IndexUnavailable as err:
            return Resolved(target, error=str(err))

    def scan(self, resolved: Resolved) -> TargetResult:
        target = resolved.target
        if isinstance(target, PathTarget):
            return self._scan_directory(target) if target.is_directory else self._scan_file(target)
        if resolved.release is None:
            return TargetResult.failed(
                target.raw, "release", target.name, target.version, resolved.error or ""
            )
        return self._scan_release(target, resolved.release)

    def _scan_file(self, target: PathTarget) -> TargetResult:
        self.hooks.stage(f"scanning {target.raw}")
        name = target.path.name
        try:
            dist = self.scanner.scan_path(str(target.path), name)
        except OSError as err:
            return TargetResult.failed(target.raw, "file", name, None, f"cannot read {target.raw}: {err}")
        kind: TargetKind = "file" if dist.format == "file" else "archive"
        return TargetResult.from_distributions(target.raw, kind, name, [dist])

    def _scan_directory(self, target: PathTarget) -> TargetResult:
        self.hooks.stage(f"scanning {target.raw}")
        name = target.path.resolve().name or target.raw
        files, errors = directory_files(target.path)
        if not files:
            reason = "; ".join(errors) or f"no regular files under {target.raw}"
            return TargetResult.failed(target.raw, "directory", name, None, reason)
        items = [(p.relative_to(target.path).as_posix(), str(p), None) for p in files]
        dists, read_errors = self._scan_items(items)
        error = "; ".join(errors + read_errors) or None
        return TargetResult.from_distributions(target.raw, "directory", name, dists, error)

    def _scan_items(
        self, items: Sequence[tuple[str, bytes | str, str | None]]
    ) -> tuple[list[DistributionResult], list[str]]:
        """``scan_many``; when a file cannot be read, scan one by one to name every unreadable file."""
        try:
            return self.scanner.scan_many(items), []
        except OSError:
            pass
        dists: list[DistributionResult] = []
        errors: list[str] = []
        for name, source, _url in items:
            try:
                dists.append(self.scanner.scan_path(str(source), name))
            except OSError as err:
                errors.append(f"cannot read {name}: {err.strerror or err}")
        return dists, errors

    def _scan_release(self, target: ReleaseTarget, release: Release) -> TargetResult:
        label = f"{release.name}=={release.version}"
        self.hooks.stage(f"downloading {label}")
        with tempfile.TemporaryDirectory(prefix="dragonfly-hybrid-") as tmp:
            fetched, errors = self._download_all(release.files, Path(tmp))
            if not fetched:
                return TargetResult.failed(
                    target.raw, "release", release.name, release.version, "; ".join(errors)
                )
            self.hooks.stage(f"scanning {label}")
            items = [(f.filename, str(path), redact_url(f.url)) for f, path in fetched]
            result = self.scanner.scan_release(release.name, release.version, items)
        return TargetResult.from_release(target.raw, result, "; ".join(errors) or None)

    def _download_all(
        self, files: Sequence[DistributionFile], directory: Path
    ) -> tuple[list[tuple[DistributionFile, Path]], list[str]]:
        """Download files concurrently; returns what arrived (in index order) and an error per failure."""
        paths = [directory / f"{i:04d}.dist" for i in range(len(files))]
        with ThreadPoolExecutor(max_workers=max(1, min(DOWNLOAD_THREADS, len(files)))) as pool:
            outcomes = list(pool.map(self._download, files, paths))
        fetched = [(f, p) for f, p, err in zip(files, paths, outcomes, strict=True) if err is None]
        return fetched, [err for err in outcomes if err is not None]

    def _download(self, file: DistributionFile, path: Path) -> str | None:
        """Download one file to ``path``; the error message, or None on success."""
        progress = self.hooks.download(file.filename, file.size)
        try:
            with path.open("w+b") as sink:
                self.pypi.download(file, sink, progress)
        except PyPIError as err:
            return str(err)
        except OSError as err:
            return f"cannot store {file.filename}: {err}"
        finally:
            self.hooks.downloaded(file.filename)
        return None
