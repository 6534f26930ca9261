"""What ``dragonfly-hybrid scan`` scans: target parsing, PyPI resolution and download, scanning.

A target is, in this order:

1. an existing path: a file (an archive, whose format is detected from its bytes, or a loose file) or a
   directory (every regular file under it, recursively, in sorted order; symbolic links are not followed;
   each file is one distribution named by its path relative to the directory);
2. a PyPI requirement ``name==version`` or a bare ``name`` (the latest release pip would install: not
   yanked, Requires-Python admitting the target Python), when the string is a valid PEP 508 project name
   (and a PEP 440 version). A string that contains a path separator or ends like an archive or a Python
   file (``.tar.gz``, ``.whl``, ``.zip``, ``.py``...) is always taken as a path, so a mistyped file name is
   reported as a missing file, not looked up on the index. When a name is also an existing path (``six``
   with a ``./six/`` directory), the path wins and :attr:`PathTarget.shadows_name` is set (the CLI prints
   a note); ``pypi:six`` or ``pypi:six==1.16.0`` always means the index.

A release asked for with hashes (``-R`` in pip's hash-checking mode) scans only the files whose digest is
among them: the index's listed digests select the files (a file listing none of the hash algorithms is
downloaded and kept only if it matches), and the downloaded bytes are checked again. Bytes that do not
match make the target incomplete; no allowed file at all too (pip would refuse to install); an allowed
hash that matches no file is a note.

Anything else is a usage error (:class:`TargetError`), as are a project or version the index does not
have (:class:`~dragonfly_hybrid.pypi.index.ProjectNotFound`,
:class:`~dragonfly_hybrid.pypi.index.VersionNotFound`, raised by :meth:`TargetScanner.resolve` before
anything is scanned). An index that cannot be reached and files that cannot be downloaded make the target
``incomplete`` instead: what was downloaded is still scanned, so a rule match elsewhere in the release is
never lost.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import queue
import re
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar

from dragonfly_hybrid._core import DistributionResult, Scanner, ScanProgress
from dragonfly_hybrid.bounds import DEFAULT_MAX_DOWNLOAD_SIZE
from dragonfly_hybrid.http_client import redact_url
from dragonfly_hybrid.report import (
    DOWNLOAD_FAILED_ISSUE,
    NotDownloaded,
    Origin,
    TargetKind,
    TargetResult,
    printable,
)

if TYPE_CHECKING:
    # The index client and pip's settings (packaging, configparser: ~5 ms) are imported where a release
    # is looked up: a scan of local files never needs them.
    from packaging.version import Version

    from dragonfly_hybrid.pypi.index import DistributionFile, ProgressCallback, PyPIClient, Release
    from dragonfly_hybrid.pypi.pipconfig import CandidateFiles, PipSettings
    from dragonfly_hybrid.pypi.requirements import LockedFile

PATH_SUFFIXES = (
    ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar.lzma", ".tlz", ".tar.lz", ".tar.zst",
    ".tzst", ".tar", ".zip", ".whl", ".egg",
    ".py", ".pyi", ".pth",
)  # fmt: skip
"""A nonexistent target ending like this is a missing file, never a PyPI name."""

_NAME = r"[A-Z0-9](?:[A-Z0-9._-]*[A-Z0-9])?"
_REQUIREMENT = re.compile(rf"^\s*(?P<name>{_NAME})\s*(?:==\s*(?P<version>\S+?)\s*)?$", re.IGNORECASE)
DOWNLOAD_THREADS = 4
WAIT_STEP = 0.1
"""Seconds the main thread waits on a worker at a time: signal handlers (Ctrl-C) run in between."""

T = TypeVar("T")


class TargetError(ValueError):
    """A target that is neither an existing path nor a PyPI requirement (a usage error)."""


@dataclass(frozen=True)
class FetchFailure:
    """What :meth:`TargetScanner.download_release` could not fetch: why, and the file it is about (None
    when it is about no one file: no file has a hash the requirements allow)."""

    message: str
    file: DistributionFile | None = None

    def not_downloaded(self) -> NotDownloaded | None:
        """The file as the store keeps a file whose bytes were not scanned (None: about no one file)."""
        if self.file is None:
            return None
        return NotDownloaded(
            filename=self.file.filename,
            url=redact_url(self.file.url),
            size=self.file.size or 0,
            kind=DOWNLOAD_FAILED_ISSUE,
            message=self.message,
            sha256=self.file.sha256,
        )


@dataclass(frozen=True)
class PathTarget:
    raw: str
    path: Path
    is_directory: bool
    shadows_name: bool = False
    """The string is also a project name (or ``name==version``) that the path hides."""


@dataclass(frozen=True)
class ReleaseTarget:
    raw: str
    name: str
    version: str | None
    hashes: frozenset[str] = frozenset()
    """``algorithm:hex`` digests allowed for its files (empty: every file of the release)."""
    origin: Origin | None = None
    """The requirements-file line that asked for it."""
    locked: tuple[LockedFile, ...] = ()
    """The files a lock file names, with their URLs: the release is these, not the index's files."""
    index_url: str | None = None
    """The index to look it up on instead of the configured ones (a lock file's source)."""
    find_links: bool = True
    """Whether pip's find-links offer candidates (not to a lock's entry: its installer never reads them)."""


INDEX_PREFIX = "pypi:"
"""``pypi:name`` / ``pypi:name==version``: always the index, even when a path of that name exists."""


Target = PathTarget | ReleaseTarget


def _looks_like_path(raw: str) -> bool:
    separators = {"/", os.sep} | ({os.altsep} if os.altsep else set())
    return any(sep in raw for sep in separators) or raw.lower().endswith(PATH_SUFFIXES)


def parse_target(raw: str) -> Target:
    """Classify one command-line target (see the module docstring)."""
    if raw.startswith(INDEX_PREFIX):
        return release_target(raw[len(INDEX_PREFIX) :], raw)
    path = Path(raw)
    if os.path.lexists(raw):
        try:
            mode = path.stat().st_mode
        except OSError as err:
            raise TargetError(f"cannot read {raw}: {err.strerror or err}") from err
        if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
            shadows = _REQUIREMENT.match(raw) is not None and not _looks_like_path(raw)
            return PathTarget(raw, path, stat.S_ISDIR(mode), shadows)
        raise TargetError(f"{raw} is neither a regular file nor a directory")
    if _looks_like_path(raw):
        raise TargetError(f"{raw}: no such file or directory, and not a PyPI project name or name==version")
    return release_target(raw)


def release_target(requirement: str, raw: str | None = None) -> ReleaseTarget:
    """``name`` or ``name==version`` as a release to look up on the index (``raw``: as the user wrote it);
    :class:`TargetError` for anything else."""
    raw = requirement if raw is None else raw
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise TargetError(f"{raw}: no such file or directory, and not a PyPI project name or name==version")
    version = match.group("version")
    if version is not None:
        from packaging.version import InvalidVersion, Version

        try:
            Version(version)
        except (InvalidVersion, ValueError) as err:  # ValueError: a number past Python's 4300 digits
            raise TargetError(f"{raw}: {version!r} is not a valid version (PEP 440)") from err
    return ReleaseTarget(raw, match.group("name"), version)


FileIdentity = tuple[int, int]
"""A file's device and inode numbers."""


def stream_identity(stream: IO[Any]) -> frozenset[FileIdentity]:
    """The regular file ``stream`` writes to, if any, as ``directory_files``'s ``skip`` takes it."""
    try:
        status = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # no file descriptor (a StringIO, a closed stream)
        return frozenset()
    return frozenset({(status.st_dev, status.st_ino)}) if stat.S_ISREG(status.st_mode) else frozenset()


def directory_files(root: Path, skip: frozenset[FileIdentity] = frozenset()) -> tuple[list[Path], list[str]]:
    """Every file under ``root`` to scan, recursively, sorted, and a problem per entry left unscanned.
    ``skip``: files left out, by identity: the report being written (``scan . -o report.json``, a new
    file under the tree), whose bytes are the scanner's own, not the tree's; unless it has another name
    (a hard link someone made to it during the scan): then it is scanned under each.

    Regular files are scanned. A symbolic link to a regular file under ``root`` is scanned too, under
    the link's own name (rules pick files by name); any other link (to a directory, out of ``root``,
    dangling) is not followed, and neither are FIFOs, sockets and devices: each is a problem, so the
    directory's verdict is incomplete, never clean. The walk keeps its own stack: a tree nested
    thousands of levels deep is listed, not a recursion error.
    """
    found: list[Path] = []
    problems: list[str] = []
    real_root = root.resolve()

    def left(path: Path, why: str) -> None:
        problems.append(f"{member_name(root, path)}: {why}")

    pending = [root]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as entries:
                listed = list(entries)
        except OSError as err:
            problems.append(f"cannot list {member_name(root, directory) or '.'}: {err.strerror or err}")
            continue
        for entry in listed:
            path = Path(entry.path)
            try:
                status = entry.stat(follow_symlinks=False)
                mode = status.st_mode
                if (status.st_dev, status.st_ino) in skip and status.st_nlink == 1:
                    continue  # linked under another name too, it holds what someone else put there: scanned
                if stat.S_ISDIR(mode):
                    pending.append(path)
                elif stat.S_ISREG(mode):
                    found.append(path)
                elif stat.S_ISLNK(mode):
                    if _links_to_a_file_under(path, real_root):
                        found.append(path)
                    else:
                        left(path, f"a symbolic link to {os.readlink(path)!r}, not followed")
                else:
                    left(path, "a FIFO, socket or device, not read")
            except OSError as err:
                left(path, f"cannot read: {err.strerror or err}")
    # Sorted both: scandir's order is the file system's, and a report must read the same run after run.
    return sorted(found, key=lambda p: member_name(root, p)), sorted(problems)


def _links_to_a_file_under(link: Path, real_root: Path) -> bool:
    try:
        target = link.resolve(strict=True)
        return target.is_relative_to(real_root) and stat.S_ISREG(target.stat().st_mode)
    except (OSError, RuntimeError):  # dangling, a loop (RuntimeError before Python 3.13)
        return False


def member_name(root: Path, path: Path) -> str:
    """``path`` relative to ``root``, with ``/``: a directory member's name in reports. Bytes that are
    not UTF-8 are shown as ``\\xNN`` escapes (the file is still read by its real name)."""
    relative = os.fsencode(path.relative_to(root).as_posix())
    return "" if relative == b"." else relative.decode("utf-8", "backslashreplace")


class Hooks(Protocol):
    """Progress notifications (the CLI shows them as a progress display)."""

    def stage(self, text: str) -> None: ...

    def target_done(self) -> None: ...

    def download(self, filename: str, size: int | None) -> ProgressCallback: ...

    def downloaded(self, filename: str) -> None: ...

    def scanning(self, progress: ScanProgress, distributions: int) -> None: ...

    def scanned(self) -> None: ...


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

    def scanning(self, progress: ScanProgress, distributions: int) -> None:
        pass

    def scanned(self) -> None:
        pass


def wait_for(thread: threading.Thread) -> None:
    """Wait for ``thread`` in short steps, so that this (main) thread still runs signal handlers."""
    while thread.is_alive():
        thread.join(WAIT_STEP)


def run_in_worker(call: Callable[[], T]) -> T:
    """``call()`` on a daemon thread, waited for with :func:`wait_for`: a thread inside the engine runs no
    Python signal handler until the engine returns, so Ctrl-C would wait for the whole scan. The thread is
    a daemon so that a process exiting on a signal does not wait for it either."""
    outcome: list[tuple[T, None] | tuple[None, BaseException]] = []

    def work() -> None:
        try:
            outcome.append((call(), None))
        except BaseException as err:  # handed to the waiting thread, which raises it
            outcome.append((None, err))

    thread = threading.Thread(target=work, name="dragonfly-hybrid-scan", daemon=True)
    thread.start()
    wait_for(thread)
    value, error = outcome[0]
    if error is not None:
        raise error
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class Resolved:
    """A target ready to scan: a path, a resolved release, or a release the index could not serve."""

    target: Target
    release: Release | None = None
    error: str | None = None


def locked_release(name: str, version: str, files: Sequence[LockedFile]) -> Release:
    """The release a lock file names: its files at their URLs, with the lock's hashes as their digests
    (checked against the bytes when they arrive)."""
    from dragonfly_hybrid.pypi.index import DistributionFile, Release
    from dragonfly_hybrid.pypi.pip_names import url_filename

    def digests(file: LockedFile) -> tuple[tuple[str, str], ...]:
        return tuple(sorted((alg, value) for alg, _, value in (h.partition(":") for h in file.hashes)))

    return Release(
        name,
        version,
        tuple(
            DistributionFile(
                filename=url_filename(file.url),
                url=file.url,
                sha256=dict(digests(file)).get("sha256"),
                size=file.size,
                yanked=False,
                digests=digests(file),
            )
            for file in files
        ),
    )


def _matching_their_locks(
    fetched: Sequence[tuple[DistributionFile, Path]], failures: list[FetchFailure]
) -> list[tuple[DistributionFile, Path]]:
    """The downloaded files of a lock whose bytes have one of the hashes the lock gives each of them (a
    file given none is kept, as its installer takes it unchecked); an error for each other one. SHA-256
    was checked while downloading; the other algorithms are checked here."""
    kept = []
    for file, path in fetched:
        others = {alg for alg, _ in file.digests} - ({"sha256"} if file.sha256 else set())
        locked = _listed(file)
        actual = _file_hashes(path, others) if others else set()
        if others and not actual & locked:
            expected = " or ".join(sorted(h for h in locked if h.partition(":")[0] in others))
            message = (
                f"{file.filename}: the downloaded bytes have {', '.join(sorted(actual))}, expected {expected}"
            )
            failures.append(FetchFailure(message, file))
        else:
            kept.append((file, path))
    return kept


def _listed(file: DistributionFile) -> set[str]:
    """``algorithm:hex`` of every digest the index lists for ``file``."""
    listed = {f"{alg}:{value}" for alg, value in file.digests}
    if file.sha256:
        listed.add(f"sha256:{file.sha256}")
    return listed


def _hash_verdict(file: DistributionFile, allowed: frozenset[str]) -> bool | None:
    """Whether the index's digests put ``file`` among the ``allowed`` hashes: True (an allowed digest is
    listed), False (it lists a digest for every algorithm of ``allowed``, none allowed), None (some
    algorithm of ``allowed`` is not listed: only its bytes can tell). Always True without hashes."""
    if not allowed:
        return True
    listed = _listed(file)
    if listed & allowed:
        return True
    listed_algorithms = {h.partition(":")[0] for h in listed}
    if {h.partition(":")[0] for h in allowed} <= listed_algorithms:
        return False
    return None


def _hash_candidates(
    files: Sequence[DistributionFile],
    allowed: frozenset[str],
    python: Version,
    project: str,
    candidates: CandidateFiles,
) -> list[DistributionFile]:
    """The ``files`` to download for the ``allowed`` hashes, as pip's ``filter_unallowed_hashes`` keeps its
    candidates: those the index lists an allowed digest for, and those only their bytes can tell; but when
    no file pip could take here (under pip's ``candidates`` settings) lists an allowed digest, every file
    pip could take here and only those (pip then keeps every candidate, and installs the best one if its
    bytes match, whatever digest the index lists)."""
    from dragonfly_hybrid.pypi.index import pip_candidate

    def takes(file: DistributionFile) -> bool:
        return pip_candidate(file, python, project, candidates)

    verdicts = [(file, _hash_verdict(file, allowed)) for file in files]
    if any(verdict is True and takes(file) for file, verdict in verdicts):
        return [file for file, verdict in verdicts if verdict is not False]
    # Not a file pip never takes here, whatever it lists: its bytes would answer for a release pip refuses.
    return [file for file in files if takes(file)]


def _file_hashes(path: Path, algorithms: set[str]) -> set[str]:
    """``algorithm:hex`` of the file's bytes for each of ``algorithms``."""
    hashers = {alg: hashlib.new(alg) for alg in algorithms}
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            for hasher in hashers.values():
                hasher.update(chunk)
    return {f"{alg}:{hasher.hexdigest()}" for alg, hasher in hashers.items()}


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.stat().st_mode)
    except OSError:
        return False


def _file_result(target: PathTarget, dist: DistributionResult) -> TargetResult:
    kind: TargetKind = "file" if dist.format == "file" else "archive"
    return TargetResult.from_distributions(target.raw, kind, target.path.name, [dist])


def _directory_name(target: PathTarget) -> str:
    return target.path.resolve().name or target.raw


def _file_name(path: Path) -> str:
    """A file target's name in reports: its base name, bytes that are not UTF-8 as ``\\xNN`` escapes."""
    return os.fsencode(path.name).decode("utf-8", "backslashreplace")


def _directory_result(
    target: PathTarget, dists: Sequence[DistributionResult], errors: Sequence[str]
) -> TargetResult:
    """A directory's result from its members' distributions; ``errors``: the members not scanned."""
    error = "; ".join(errors) or None
    return TargetResult.from_distributions(target.raw, "directory", _directory_name(target), dists, error)


FetchedCallback = Callable[[ReleaseTarget, "Release", Sequence[tuple["DistributionFile", Path]]], None]


class TargetScanner:
    """Scans targets with one ``Scanner``, fetching releases through one ``PyPIClient`` (None when every
    target is a path: ``scan`` of local files opens no index client).

    Every scan counts into ``progress`` and runs on a worker thread (:func:`run_in_worker`); cancelling
    ``progress`` makes the scan in flight raise ``ScanCancelled`` within milliseconds."""

    def __init__(
        self,
        scanner: Scanner,
        pypi: PyPIClient | None,
        hooks: Hooks | None = None,
        note: Callable[[str], None] | None = None,
        progress: ScanProgress | None = None,
        own_output: frozenset[FileIdentity] = frozenset(),
        on_fetched: FetchedCallback | None = None,
        *,
        refuses_unhashed: bool = True,
    ) -> None:
        self.scanner = scanner
        self.refuses_unhashed = refuses_unhashed
        """Whether a name on the command line without hashes is refused in pip's hash-checking mode
        (:meth:`_command_line_hashes`); False for ``diff`` and ``fetch_and_scan``: they scan the release
        asked for, install none, and take no -R file that could give one hashes."""
        self.on_fetched = on_fetched
        """Called with each release scanned and its downloaded files, before they are deleted."""
        self.own_output = own_output
        """The report's file (``stream_identity``): left out of the directories walked."""
        self._pypi = pypi
        self.hooks: Hooks = hooks or NoHooks()
        self.note = note or (lambda text: None)
        """Called with remarks that change no verdict (an allowed hash that matches no file)."""
        self.progress = progress or ScanProgress()

    def _engine(self, distributions: int, call: Callable[[], T]) -> T:
        """Run one engine call of ``distributions`` distributions, showing its progress."""
        self.hooks.scanning(self.progress, distributions)
        try:
            return run_in_worker(call)
        finally:
            self.hooks.scanned()

    @property
    def pypi(self) -> PyPIClient:
        if self._pypi is None:
            raise RuntimeError("a release target needs an index client: TargetScanner was given none")
        return self._pypi

    def resolve(self, target: Target) -> Resolved:
        """Look a release up on the index. Raises ``ProjectNotFound``/``VersionNotFound`` (usage errors)."""
        if isinstance(target, PathTarget):
            return Resolved(target)
        from dragonfly_hybrid.pypi.index import IndexUnavailable

        self.hooks.stage(f"resolving {target.raw}")
        if target.locked:
            assert target.version is not None
            return Resolved(target, release=locked_release(target.name, target.version, target.locked))
        try:
            if target.index_url is None:
                target = self._command_line_hashes(target)
                release = self.pypi.resolve(
                    target.name, target.version, find_links=target.find_links, hashes=target.hashes
                )
                return Resolved(target, release=release)
            with self.pypi.on_index(target.index_url) as source:
                return Resolved(target, release=source.resolve(target.name, target.version))
        except IndexUnavailable as err:
            return Resolved(target, error=str(err))

    def _command_line_hashes(self, target: ReleaseTarget) -> ReleaseTarget:
        """A name given on the command line with the hashes its constraints all allow, as pip 26.3 checks
        a requirement without hashes of its own (a -R pin took them when read). In pip's hash-checking
        mode one without any is :class:`VersionNotFound` (a usage error): pip refuses it."""
        if target.origin is not None or target.locked or target.hashes or not target.find_links:
            return target
        hashes = self.pypi.constraint_hashes(target.name)
        if not hashes and self.pypi.hash_mode is not None and self.refuses_unhashed:
            from dragonfly_hybrid.pypi.index import VersionNotFound

            raise VersionNotFound(
                f"{target.raw}: in hash-checking mode (turned on by {self.pypi.hash_mode}) pip refuses a "
                "requirement without --hash options, which a name on the command line cannot have: pin it "
                "with its hashes in a -R file"
            )
        return dataclasses.replace(target, hashes=hashes)

    def scan_all(self, resolved: Sequence[Resolved]) -> Iterator[TargetResult]:
        """The result of every target, in order. The local paths are scanned first, all in one engine
        call (so that both cores work across small archives); releases are downloaded and scanned as
        they come."""
        local = self._scan_local([item.target for item in resolved])
        for index, item in enumerate(resolved):
            result = local.get(index)
            yield result if result is not None else self.scan(item)

    def _scan_local(self, targets: Sequence[Target]) -> dict[int, TargetResult]:
        """Results, by position in ``targets``, of the regular files and non-empty directories among
        them, from one ``scan_many``. A path that is gone or no longer a regular file is left to
        :meth:`scan`, which names the problem; one unreadable at read time becomes its distribution's
        ``unreadable`` issue (an incomplete verdict), as with ``scan_path``."""
        items: list[tuple[str, bytes | str, str | None]] = []
        spans: list[tuple[int, PathTarget, int, list[str]]] = []
        for index, target in enumerate(targets):
            if not isinstance(target, PathTarget):
                continue
            if target.is_directory:
                files, errors = directory_files(target.path, self.own_output)
                if not files:
                    continue
                spans.append((index, target, len(items), errors))
                items.extend((member_name(target.path, p), str(p), None) for p in files)
            elif _is_regular_file(target.path):
                spans.append((index, target, len(items), []))
                items.append((_file_name(target.path), str(target.path), None))
        if not spans:
            return {}
        self.hooks.stage(f"scanning {len(spans)} local target{'s' if len(spans) > 1 else ''}")
        try:
            dists = self._engine(len(items), lambda: self.scanner.scan_many(items, progress=self.progress))
        except OSError:
            return {}  # scanned one by one, which names every file that could not be read
        ends = [start for _, _, start, _ in spans[1:]] + [len(items)]
        results: dict[int, TargetResult] = {}
        for (index, target, start, errors), end in zip(spans, ends, strict=True):
            part = dists[start:end]
            if target.is_directory:
                results[index] = _directory_result(target, part, errors)
            else:
                results[index] = _file_result(target, part[0])
        return results

    def scan(self, resolved: Resolved) -> TargetResult:
        target = resolved.target
        if isinstance(target, PathTarget):
            return self._scan_directory(target) if target.is_directory else self._scan_file(target)
        if resolved.release is None:
            result = TargetResult.failed(
                target.raw, "release", target.name, target.version, resolved.error or ""
            )
        else:
            result = self._scan_release(target, resolved.release)
        return dataclasses.replace(result, origin=target.origin)

    def _scan_file(self, target: PathTarget) -> TargetResult:
        self.hooks.stage(f"scanning {target.raw}")
        name = _file_name(target.path)
        try:
            dist = self._engine(
                1, lambda: self.scanner.scan_path(str(target.path), name, progress=self.progress)
            )
        except OSError as err:
            return TargetResult.failed(target.raw, "file", name, None, f"cannot read {target.raw}: {err}")
        return _file_result(target, dist)

    def _scan_directory(self, target: PathTarget) -> TargetResult:
        self.hooks.stage(f"scanning {target.raw}")
        files, errors = directory_files(target.path, self.own_output)
        if not files:
            reason = "; ".join(errors) or f"no regular files under {target.raw}"
            return TargetResult.failed(target.raw, "directory", _directory_name(target), None, reason)
        items = [(member_name(target.path, p), str(p), None) for p in files]
        dists, read_errors = self._scan_items(items)
        return _directory_result(target, dists, errors + read_errors)

    def _scan_items(
        self, items: Sequence[tuple[str, bytes | str, str | None]]
    ) -> tuple[list[DistributionResult], list[str]]:
        """``scan_many``; when a file cannot be read, scan one by one to name every unreadable file."""
        try:
            return self._engine(len(items), lambda: self.scanner.scan_many(items, progress=self.progress)), []
        except OSError:
            pass
        dists: list[DistributionResult] = []
        errors: list[str] = []
        for name, source, _url in items:
            try:
                scan = functools.partial(self.scanner.scan_path, str(source), name, progress=self.progress)
                dists.append(self._engine(1, scan))
            except OSError as err:
                errors.append(f"cannot read {name}: {err.strerror or err}")
        return dists, errors

    def _scan_release(self, target: ReleaseTarget, release: Release) -> TargetResult:
        self.hooks.stage(f"downloading {release.name}=={release.version}")
        with tempfile.TemporaryDirectory(prefix="dragonfly-hybrid-") as tmp:
            fetched, failures = self.download_release(target, release, Path(tmp))
            result = self.scan_downloaded(target, release, fetched, failures)
            if self.on_fetched is not None:
                self.on_fetched(target, release, fetched)
            return result

    def download_release(
        self, target: ReleaseTarget, release: Release, directory: Path
    ) -> tuple[list[tuple[DistributionFile, Path]], list[FetchFailure]]:
        """Download into ``directory`` the files of ``release`` that the target's hashes allow (every file
        when it has none), checked against them; what arrived (in index order) and each failure (a
        find-links location that could not be read among them: the release may have files not seen)."""
        from dragonfly_hybrid.pypi.index import PIP_DEFAULTS, normalize_name

        # A lock's entry takes none of pip's settings (its installer's own decide).
        candidates = self.pypi.candidate_files if target.find_links else PIP_DEFAULTS
        project = normalize_name(release.name)
        files = _hash_candidates(release.files, target.hashes, self.pypi.python_version, project, candidates)
        # With hashes, pip checks the bytes against them only (26.3: "an index-provided hash must not
        # override one supplied by the user"); _check_hashes does.
        fetched, failures = self._download_all(files, directory, listed_digest=not target.hashes)
        if target.hashes:
            label = f"{release.name}=={release.version}"
            fetched, failures = self._check_hashes(target, label, fetched, failures, release.files)
        if target.locked:
            fetched = _matching_their_locks(fetched, failures)
        return fetched, [*failures, *(FetchFailure(problem) for problem in release.problems)]

    def scan_downloaded(
        self,
        target: ReleaseTarget,
        release: Release,
        fetched: Sequence[tuple[DistributionFile, Path]],
        failures: Sequence[FetchFailure],
    ) -> TargetResult:
        """Scan the files of ``release`` that :meth:`download_release` fetched (``failures``: the rest).
        Each file not fetched is named in the result's ``not_downloaded``, for the store."""
        error = "; ".join(failure.message for failure in failures)
        if not fetched:
            result = TargetResult.failed(target.raw, "release", release.name, release.version, error)
        else:
            self.hooks.stage(f"scanning {release.name}=={release.version}")
            items = [(f.filename, str(path), redact_url(f.url)) for f, path in fetched]
            scanned = self._engine(
                len(items),
                lambda: self.scanner.scan_release(
                    release.name, release.version, items, progress=self.progress
                ),
            )
            result = TargetResult.from_release(target.raw, scanned, error or None)
        not_downloaded = [failure.not_downloaded() for failure in failures]
        return dataclasses.replace(
            result,
            not_downloaded=tuple(file for file in not_downloaded if file is not None),
            error_per_file=None not in not_downloaded,
        )

    def _check_hashes(
        self,
        target: ReleaseTarget,
        label: str,
        fetched: list[tuple[DistributionFile, Path]],
        failures: list[FetchFailure],
        listed: Sequence[DistributionFile],
    ) -> tuple[list[tuple[DistributionFile, Path]], list[FetchFailure]]:
        """Keep the downloaded files whose bytes have an allowed hash; an error for a selected file whose
        bytes do not (the index listed an allowed digest for other bytes) and when nothing is allowed."""
        where = f" ({target.origin.path}:{target.origin.line})" if target.origin else ""
        kept: list[tuple[DistributionFile, Path]] = []
        matched: set[str] = set()
        # What the refused downloads' bytes have: the index may list other digests, and the user fixing the
        # requirement needs these (as pip's "Got" line).
        got: dict[DistributionFile, str] = {}
        for file, path in fetched:
            actual = _file_hashes(path, {h.partition(":")[0] for h in target.hashes})
            if actual & target.hashes:
                kept.append((file, path))
                matched |= actual & target.hashes
                continue
            got[file] = ", ".join(sorted(actual))
            if _hash_verdict(file, target.hashes):
                expected = " or ".join(sorted(h for h in target.hashes if h in _listed(file)))
                message = (
                    f"{file.filename}: the downloaded bytes have {', '.join(sorted(actual))}, expected "
                    f"{expected}{where}"
                )
                failures.append(FetchFailure(message, file))
        if not kept and not failures:
            files = (
                ", ".join(
                    f"{f.filename} sha256:{f.sha256 or '(not listed)'}"
                    + (f" (downloaded bytes: {got[f]})" if f in got else "")
                    for f in listed
                )
                or "none"
            )
            failures.append(
                FetchFailure(
                    f"no file of {label} has a hash allowed by the requirements{where} (pip would refuse "
                    f"to install it): allowed {', '.join(sorted(target.hashes))}; files: {files}"
                )
            )
        unmatched_hashes = target.hashes - matched - {h for f in listed for h in _listed(f)}
        for unmatched in sorted(unmatched_hashes) if kept else ():  # else the error lists them
            self.note(f"{target.raw}{where}: hash {unmatched} matches no file of {label}")
        return kept, failures

    def _download_all(
        self, files: Sequence[DistributionFile], directory: Path, *, listed_digest: bool = True
    ) -> tuple[list[tuple[DistributionFile, Path]], list[FetchFailure]]:
        """Download files concurrently into ``directory`` (``listed_digest``: as ``PyPIClient.download``);
        returns what arrived (in index order) and each failure.

        The downloads run on daemon threads waited for with :func:`wait_for`: a process stopped by a
        signal neither waits for a slow download nor leaves it running."""
        paths = [directory / f"{i:04d}.dist" for i in range(len(files))]
        outcomes: list[str | None] = [None] * len(files)
        pending: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(len(files)):
            pending.put(i)

        def work() -> None:
            while True:
                try:
                    i = pending.get_nowait()
                except queue.Empty:
                    return
                outcomes[i] = self._download(files[i], paths[i], listed_digest)

        threads = [
            threading.Thread(target=work, name=f"dragonfly-hybrid-download-{n}", daemon=True)
            for n in range(max(1, min(DOWNLOAD_THREADS, len(files))))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            wait_for(thread)
        fetched = [(f, p) for f, p, err in zip(files, paths, outcomes, strict=True) if err is None]
        failures = [FetchFailure(err, f) for f, err in zip(files, outcomes, strict=True) if err is not None]
        return fetched, failures

    def _download(self, file: DistributionFile, path: Path, listed_digest: bool = True) -> str | None:
        """Download one file to ``path``; the error message, or None on success."""
        from dragonfly_hybrid.pypi.index import PyPIError

        progress = self.hooks.download(file.filename, file.size)
        try:
            with path.open("w+b") as sink:
                self.pypi.download(file, sink, progress, listed_digest=listed_digest)
        except PyPIError as err:
            return str(err)
        except OSError as err:
            return f"cannot store {file.filename}: {err}"
        finally:
            self.hooks.downloaded(file.filename)
        return None


def index_settings(
    index_url: str | None = None,
    extra_index_urls: Sequence[str] = (),
    from_requirements: PipSettings | None = None,
    pip: PipSettings | None = None,
    *,
    reads_pip: bool = True,
) -> PipSettings:
    """pip's settings as ``scan`` uses them: pip's configuration files and environment (``pip``: as read
    already, else read now), then the command line, then the requirements files' option lines, which pip
    applies last (a file's ``--index-url`` wins over ``-i``; see :mod:`dragonfly_hybrid.pypi.pipconfig`),
    pip's ``constraint`` files' first (read now, unless with the requirements files, or ``reads_pip`` is
    False: only lock files' entries are looked up). Raises :class:`PipConfigError` for a constraint file
    that cannot be read or that pip refuses. A URL constraint read with the requirements files is not
    kept: they named it as skipped (read now, it refuses the name it constrains)."""
    from dragonfly_hybrid.pypi.pipconfig import PipConfigError, pip_settings

    pip = pip_settings() if pip is None else pip
    settings = pip.overlay(index_url=index_url, extra_index_urls=tuple(extra_index_urls))
    constraints = () if from_requirements is None else from_requirements.constraints
    constraints = tuple(c for c in constraints if c.url is None)
    if (
        reads_pip
        and pip.constraint_files
        and (from_requirements is None or not from_requirements.constraint_files)
    ):
        # pip reads them into every install, as -c files (read_pins read them with the requirements files).
        from dragonfly_hybrid.pypi.requirements import RequirementsError, read_constraints

        try:
            from_requirements = read_constraints(pip)
            constraints = from_requirements.constraints
        except RequirementsError as err:  # the lines it quotes are the file's: none reaches a terminal raw
            raise PipConfigError("\n".join(printable(line) for line in str(err).split("\n"))) from None
    if from_requirements is not None:
        settings = settings.overlay(
            index_url=from_requirements.index_url,
            extra_index_urls=from_requirements.extra_index_urls,
            trusted_hosts=from_requirements.trusted_hosts,
            refused=from_requirements.refused,
            release_control=from_requirements.release_control,
            format_control=from_requirements.format_control,
            prefer_binary=from_requirements.prefer_binary,
            constraints=constraints,
        )
    return settings


def open_index(
    settings: PipSettings,
    *,
    python_version: Version | None = None,
    max_download_size: int = DEFAULT_MAX_DOWNLOAD_SIZE,
    reads_pip: bool = True,
) -> PyPIClient:
    """A client for the indexes and find-links of ``settings`` (``python_version``: default, the running
    Python's; ``reads_pip``: some release is looked up as pip looks it up, not only lock files' entries).
    Raises :class:`PipConfigError` for settings that cannot be honoured (``no-index``, ``--find-links`` in
    a requirements file; pip's ``requirement`` files, for ``reads_pip``) and
    :class:`NetworkSettingsError` for unloadable certificates."""
    from dragonfly_hybrid.pypi.index import RUNNING_PYTHON, PyPIClient
    from dragonfly_hybrid.pypi.pipconfig import hash_checking_mode, network_of

    settings.check(reads_pip=reads_pip)
    urls = settings.index_urls
    client = PyPIClient(
        urls[0],
        extra_index_urls=urls[1:],
        network=network_of(settings),
        python_version=RUNNING_PYTHON if python_version is None else python_version,
        max_download_size=max_download_size,
        find_links=settings.find_links,
        uploaded_prior_to=settings.uploaded_prior_to,
        release_control=settings.release_control,
        candidate_files=settings.candidate_files,
        constraints=settings.constraints,
    )
    client.hash_mode = hash_checking_mode(
        settings.require_hashes, settings.no_require_hashes, settings.constraints
    )
    return client
