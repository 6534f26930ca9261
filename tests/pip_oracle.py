"""pip's view of an archive: what pip would write to disk when unpacking or installing it.

The oracle of the differential tests (``tests/test_differential.py``). Given archive bytes and the
archive's file name, it does what pip does, for real, in a fresh temporary directory:

* zip or tar: ``name.endswith((".zip", ".whl")) or zipfile.is_zipfile(path)`` unzips, anything else
  is a tarball, its mode taken from the extension (pip's ``unpack_file`` / ``untar_file``);
* zips as pip's ``unzip_file``: every ``infolist()`` record whose name does not end with ``/`` is
  written, its content read BY NAME (``zip.open(name)``: for duplicate names, the last record's
  content); a ``.whl`` as pip's wheel installer writes it, the same but to each name's
  ``os.path.normpath`` form (``pkg/evil.py/.`` is installed as ``pkg/evil.py``);
* tarballs as pip's ``untar_file`` on a Python with PEP 706: ``getmembers()`` first, then
  ``tar.extractall(location, filter=pip_filter)`` where ``pip_filter`` applies ``tarfile.data_filter``
  and turns a filter error into a failure.

pip's leading-directory stripping is left out unless asked for (``strip_leading``): when every name has
the same first component, pip (24.1 and later) strips it from each name of an sdist, and from a hard
link's target when that starts with the same component; the oracle then unpacks into a directory of that
name, so that the names it reports stay archive-relative (``pkg\\setup.py`` is reported as
``pkg/setup.py``). The result is then walked (``os.walk``, directory symlinks not followed); regular
files and symlinks to files are read (reading follows the link, as a build would). An exception while
unpacking makes ``failed`` true; what was written before it still counts.

Nothing from an archive is executed. Hostile sizes are refused before extraction (``capped``): a case
whose members declare more than ``max_bytes`` is not judged.

Only the standard library, and it runs on Python 3.9+ so that it can be run under every CPython pip
supports: ``python3.X tests/pip_oracle.py ARCHIVE [NAME]`` prints the view as JSON, and
``--batch DIR`` reads ``DIR/manifest.json`` (a list of ``[file, name]``) and prints one view per entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import signal
import sys
import tarfile
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from types import ModuleType

ZIP_EXTENSIONS = (".zip", ".whl")
BZ2_EXTENSIONS = (".tar.bz2", ".tbz")
XZ_EXTENSIONS = (".tar.xz", ".txz", ".tlz", ".tar.lz", ".tar.lzma")
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
DEFAULT_TIMEOUT = 10.0


class OracleCapped(Exception):
    """The archive declares more than the oracle is willing to write: the case is not judged."""


class OracleTimeout(Exception):
    """The oracle took longer than its time cap: the case is not judged."""


@dataclass
class PipView:
    """What pip writes for one archive."""

    files: list[tuple[str, str]] = field(default_factory=list)
    """``(relative name, sha256 hex)`` of every file on disk after unpacking, sorted."""
    kind: str = ""
    """``zip`` or ``tar``: how pip decided to unpack it."""
    opened: bool = False
    """The archive itself opened (``ZipFile(...)`` / ``tarfile.open`` + ``getmembers()`` succeeded)."""
    failed: bool = False
    """pip would have raised while unpacking (files written before the error are in ``files``)."""
    error: str = ""
    capped: bool = False
    """Over the oracle's size or time cap: do not judge this case."""
    python: str = field(default_factory=lambda: ".".join(map(str, sys.version_info[:3])))
    marked: list[str] = field(default_factory=list)
    """Names of the written files whose content holds the ``marker`` asked for (generator self-checks)."""

    def to_json(self) -> dict:
        return {
            "files": self.files,
            "kind": self.kind,
            "opened": self.opened,
            "failed": self.failed,
            "error": self.error,
            "capped": self.capped,
            "python": self.python,
            "marked": self.marked,
        }

    @classmethod
    def from_json(cls, obj: dict) -> PipView:
        view = cls(**{k: v for k, v in obj.items() if k != "files"})
        view.files = [(str(n), str(h)) for n, h in obj["files"]]
        return view


def _is_within_directory(directory: str, target: str) -> bool:
    # pip's is_within_directory
    abs_directory = os.path.abspath(directory)
    abs_target = os.path.abspath(target)
    return os.path.commonprefix([abs_directory, abs_target]) == abs_directory  # noqa: RUF071 (as pip)


def _copy_capped(src, dst, budget: list[int]) -> None:
    while True:
        chunk = src.read(64 * 1024)
        if not chunk:
            return
        budget[0] -= len(chunk)
        if budget[0] < 0:
            raise OracleCapped("over the oracle's byte cap")
        dst.write(chunk)


def readers(zstd: bool = False) -> tuple[ModuleType, ModuleType]:
    """The ``tarfile`` and ``zipfile`` pip unpacks with. With ``zstd``: Python 3.14's, which read zstd
    (tarballs in ``r:*`` mode, zip method 93); before 3.14, the ``backports.zstd`` port of those modules."""
    if not zstd or sys.version_info >= (3, 14):
        return tarfile, zipfile
    from backports.zstd import tarfile as zstd_tarfile
    from backports.zstd import zipfile as zstd_zipfile

    return zstd_tarfile, zstd_zipfile


def split_leading_dir(path: str) -> list[str]:
    """pip's ``split_leading_dir``: the first component and the rest, split at the first ``/``, or at the
    first ``\\`` when one comes before any ``/``."""
    path = path.lstrip("/").lstrip("\\")
    if "/" in path and (("\\" in path and path.find("/") < path.find("\\")) or "\\" not in path):
        return path.split("/", 1)
    if "\\" in path:
        return path.split("\\", 1)
    return [path, ""]


def leading_dir(paths: list[str]) -> str | None:
    """The first component every path shares (pip's ``has_leading_dir``), if they do."""
    prefixes = {split_leading_dir(path)[0] for path in paths}
    if len(prefixes) != 1 or "" in prefixes:
        return None
    return prefixes.pop()


def _stripped_location(location: str, lead: str) -> str:
    # Unpacked into a directory named as the leading one, the stripped names come out archive-relative.
    if lead in (".", ".."):
        return location
    inside = os.path.join(location, lead)
    os.makedirs(inside, exist_ok=True)
    return inside


def _unzip(
    path: str,
    location: str,
    max_bytes: int,
    view: PipView,
    zip_module: ModuleType,
    *,
    wheel: bool = False,
    strip_leading: bool = False,
) -> None:
    """pip's ``unzip_file`` (flatten=``strip_leading``), or with ``wheel``, what its wheel installer
    writes: the same, to each name's ``os.path.normpath`` form."""
    with open(path, "rb") as zipfp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zf = zip_module.ZipFile(zipfp, allowZip64=True)
        view.opened = True
        declared = sum(max(info.file_size, 0) for info in zf.infolist())
        if declared > max_bytes:
            raise OracleCapped(f"zip declares {declared} bytes")
        budget = [max_bytes]
        lead = leading_dir(zf.namelist()) if strip_leading and not wheel else None
        if lead is not None:
            location = _stripped_location(location, lead)
        for info in zf.infolist():
            name = info.filename
            if wheel and name.endswith("/"):
                continue  # the installer skips directory entries
            written = split_leading_dir(name)[1] if lead is not None else name
            fn = os.path.join(location, os.path.normpath(written) if wheel else written)
            if not _is_within_directory(location, fn):
                raise RuntimeError(f"zip member {name!r} would be written outside the target directory")
            if fn.endswith("/") or fn.endswith("\\"):
                os.makedirs(fn, exist_ok=True)
                continue
            os.makedirs(os.path.dirname(fn), exist_ok=True)
            with zf.open(name) as fp, open(fn, "wb") as destfp:
                _copy_capped(fp, destfp, budget)


def _tar_mode(filename: str) -> str:
    lower = filename.lower()
    if lower.endswith(".gz") or lower.endswith(".tgz"):
        return "r:gz"
    if lower.endswith(BZ2_EXTENSIONS):
        return "r:bz2"
    if lower.endswith(XZ_EXTENSIONS):
        return "r:xz"
    if lower.endswith(".tar"):
        return "r"
    return "r:*"


def _untar(
    path: str,
    filename: str,
    location: str,
    max_bytes: int,
    view: PipView,
    tar_module: ModuleType,
    *,
    strip_leading: bool = False,
) -> None:
    """pip's ``untar_file`` (pip >= 24.1, PEP 706 branch), with its leading-directory stripping only when
    ``strip_leading``."""
    data_filter = getattr(tar_module, "data_filter", None)
    if data_filter is None:  # pragma: no cover - every supported CPython has it
        raise RuntimeError("this Python has no tarfile.data_filter (PEP 706)")
    tar = tar_module.open(path, _tar_mode(filename), encoding="utf-8")  # type: ignore[call-overload]
    try:
        members = tar.getmembers()
        view.opened = True
        supported = tar_module.SUPPORTED_TYPES
        declared = sum(max(m.size, 0) for m in members if m.isreg() or m.type not in supported)
        if declared > max_bytes:
            raise OracleCapped(f"tar declares {declared} bytes")
        lead = leading_dir([member.name for member in members]) if strip_leading else None
        if lead is not None:
            location = _stripped_location(location, lead)
            for member in members:
                name_lead, member.name = split_leading_dir(member.name)
                if member.islnk() and split_leading_dir(member.linkname)[0] == name_lead:
                    member.linkname = split_leading_dir(member.linkname)[1]

        def pip_filter(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
            orig_mode = member.mode
            try:
                try:
                    member = data_filter(member, location)
                except tar_module.LinkOutsideDestinationError:
                    if sys.version_info[:3] in {(3, 8, 17), (3, 9, 17), (3, 10, 12), (3, 11, 4)}:
                        member = tar_module.tar_filter(member, location)
                    else:
                        raise
            except tar_module.TarError as exc:
                raise RuntimeError(f"Invalid member in the tar file: {exc}") from exc
            if member.isfile() and orig_mode & 0o111:
                member.mode = 0o755
            else:
                member.mode = None  # type: ignore[assignment]
            return member

        tar.extractall(location, filter=pip_filter)
    finally:
        tar.close()


def _walk(location: str, max_bytes: int, marker: bytes | None, marked: list[str]) -> list[tuple[str, str]]:
    files = []
    budget = max_bytes
    for dirpath, _dirnames, filenames in os.walk(location):
        for fname in filenames:
            full = os.path.join(dirpath, fname)
            if os.path.islink(full) and not os.path.isfile(full):
                continue  # dangling, or a link to something that is not a regular file
            if not os.path.isfile(full):
                continue
            real = os.path.realpath(full)
            if not _is_within_directory(os.path.realpath(location), real):
                continue  # never read outside the extraction directory
            size = os.path.getsize(full)
            budget -= size
            if budget < 0:
                raise OracleCapped("extracted files over the oracle's byte cap")
            with open(full, "rb") as f:
                content = f.read()
            rel = os.path.relpath(full, location).replace(os.sep, "/")
            files.append((rel, hashlib.sha256(content).hexdigest()))
            if marker and marker in content:
                marked.append(rel)
    return sorted(files)


def _alarm(seconds: float) -> bool:
    if seconds <= 0 or not hasattr(signal, "setitimer"):
        return False
    try:

        def on_alarm(signum: int, frame: object) -> None:
            raise OracleTimeout(f"over {seconds} s")

        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        return True
    except ValueError:  # not the main thread
        return False


def pip_view(
    data: bytes,
    filename: str,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = DEFAULT_TIMEOUT,
    marker: bytes | None = None,
    zstd: bool = False,
    strip_leading: bool = False,
) -> PipView:
    """Unpack ``data`` (named ``filename``) as pip would, in a temporary directory, and report the files
    (``marker``: also list the files whose content holds it, in ``marked``; ``zstd``: with the readers of
    Python 3.14, see :func:`readers`; ``strip_leading``: with pip's leading-directory stripping, see the
    module's docstring)."""
    view = PipView()
    tar_module, zip_module = readers(zstd)
    base = posixpath.basename(filename.replace("\\", "/")) or "archive"
    tmp = tempfile.mkdtemp(prefix="dfh-oracle-")
    armed = False
    try:
        path = os.path.join(tmp, base)
        with open(path, "wb") as f:
            f.write(data)
        location = os.path.join(tmp, "out")
        os.mkdir(location)
        armed = _alarm(timeout)
        try:
            if base.lower().endswith(ZIP_EXTENSIONS) or zip_module.is_zipfile(path):
                view.kind = "zip"
                wheel = base.lower().endswith(".whl")
                _unzip(path, location, max_bytes, view, zip_module, wheel=wheel, strip_leading=strip_leading)
            else:
                view.kind = "tar"
                _untar(path, base, location, max_bytes, view, tar_module, strip_leading=strip_leading)
        except (OracleCapped, OracleTimeout) as exc:
            view.capped = True
            view.error = f"{type(exc).__name__}: {exc}"
        except Exception as exc:
            view.failed = True
            view.error = f"{type(exc).__name__}: {exc}"
        if not view.capped:
            try:
                view.files = _walk(location, max_bytes, marker, view.marked)
            except (OracleCapped, OracleTimeout) as exc:
                view.capped = True
                view.error = f"{type(exc).__name__}: {exc}"
    finally:
        if armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
        _make_removable(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    return view


def _make_removable(tmp: str) -> None:
    # Extracted directories may have lost their write bit; rmtree needs it.
    for dirpath, dirnames, _ in os.walk(tmp):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                try:
                    os.chmod(p, 0o755)
                except OSError:
                    pass


# --- comparing with the engine ---------------------------------------------------------------------


def normalize_name(name: str) -> str:
    """The comparison form of a member name: lossy UTF-8, ``normpath``, no leading ``/`` or ``./``."""
    try:
        name = os.fsencode(name).decode("utf-8", "replace")
    except UnicodeError:
        name = name.encode("utf-8", "replace").decode("utf-8", "replace")
    name = name.lstrip("/")
    name = posixpath.normpath(name) if name else name
    while name.startswith("./"):
        name = name[2:]
    return name


def name_matches(expected: str, engine_path: str) -> bool:
    """``engine_path`` names ``expected``: equal once normalised, or a nested path ending in ``!/expected``
    (a member of an archive the engine found inside another, e.g. ``<after end of archive>!/setup.py``).
    A name ending in ``/`` names no file pip writes (``setup.py/`` is not ``setup.py``: rules see names)."""
    if engine_path.endswith("/"):
        return False
    want = normalize_name(expected)
    if normalize_name(engine_path) == want:
        return True
    if "!/" in engine_path:
        return normalize_name(engine_path.rsplit("!/", 1)[1]) == want
    return False


def missing(expected: list[tuple[str, str]], engine: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """The ``(name, sha256)`` of ``expected`` that the engine did not report under that name."""
    by_sha: dict[str, list[str]] = {}
    for path, sha in engine:
        by_sha.setdefault(sha, []).append(path)
    return [(n, h) for n, h in expected if not any(name_matches(n, p) for p in by_sha.get(h, ()))]


def _main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "--batch":
        directory = argv[1]
        with open(os.path.join(directory, "manifest.json")) as f:
            manifest = json.load(f)
        out = []
        for file, name in manifest:
            with open(os.path.join(directory, file), "rb") as f:
                out.append(pip_view(f.read(), name).to_json())
        json.dump(out, sys.stdout)
        return 0
    if not argv:
        print(__doc__)
        return 2
    with open(argv[0], "rb") as f:
        data = f.read()
    json.dump(pip_view(data, argv[1] if len(argv) > 1 else argv[0]).to_json(), sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
