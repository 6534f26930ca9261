"""Where a command's report goes (``scan -o``, ``report --html``, ``rules compile -o``): a file written
under a temporary name and renamed once whole, never over what the command reads, never handed to another
user; stdout otherwise."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import IO, Any

from dragonfly_hybrid.cli.common import fail
from dragonfly_hybrid.report import EXIT_USAGE


@contextmanager
def output_file(
    path: Path | None,
    *,
    binary: bool = False,
    inputs: Sequence[tuple[Path, str]] = (),
    unwritten: int = EXIT_USAGE,
) -> Iterator[IO[Any]]:
    """Where the report goes. A file is written under a temporary name next to it and renamed when the
    report is complete, so that a scan stopped halfway (or failing, or SIGTERM) never leaves one that looks
    whole, nor the temporary file; the file keeps its permissions (a 0600 report never becomes readable by
    others), never setuid, setgid or sticky. A device or a pipe (``/dev/null``, a FIFO) is written in place,
    and a symbolic link is followed; so is a file whose directory this user cannot write (as before, it may
    then be left cut), and a file that cannot be replaced (a mount point: a file bind-mounted into a
    container) is overwritten once the report is whole. Another user's file in a sticky directory (``/tmp``)
    is refused: that user would own, or keep reading, the report. ``inputs``: (path, what it is) of files
    it must not replace (the store read, the files scanned); a directory: no file under it. ``unwritten``:
    the exit code when the whole report cannot take FILE's place. Text (UTF-8), or bytes with ``binary``;
    None or ``-``: stdout (``-`` as for the node's ``--output``: never a file named ``-``)."""
    if path is None or str(path) == "-":
        yield sys.stdout.buffer if binary else sys.stdout
        return
    final = Path(os.path.realpath(path))
    if path.is_dir():
        fail(f"cannot write {path}: it is a directory")
    if _planted_link(path):
        fail(f"cannot write {path}: it is another user's symbolic link in a sticky directory")
    for source, what in inputs:
        if final.exists() and (
            final.is_relative_to(os.path.realpath(source))
            if source.is_dir()
            else source.exists() and os.path.samefile(final, source)
        ):
            fail(f"cannot write {path}: it is {what}")
    partial: Path | None = None
    stream: IO[Any]
    try:
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):
            stream = path.open("wb") if binary else path.open("w", encoding="utf-8")
        else:
            partial, stream = _partial_file(final, binary)
    except OSError as err:
        fail(f"cannot write {path}: {err.strerror or err}")
    if partial is None:
        with stream:
            yield stream
        return
    try:
        with _removed_on_sigterm(partial):  # until it is renamed: the handler never meets the final file
            with stream:
                yield stream
            try:
                try:
                    os.replace(partial, final)
                except OSError as err:
                    if err.errno != errno.EBUSY:
                        raise
                    _overwrite(final, partial)  # a mount point: overwritten, now that the report is whole
                    partial.unlink()
            except OSError as err:
                fail(f"cannot write {path}: {err.strerror or err}", unwritten)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _planted_link(path: Path) -> bool:
    """Whether resolving ``path`` follows a symbolic link that the kernel would not follow for this user
    (Linux's ``protected_symlinks``): another user's, in a sticky world-writable directory (``/tmp``) whose
    owner is not the link's. Every link met counts, as for the kernel: ``path`` itself, a directory on the
    way (``/tmp/theirs/report.txt``), a link's target (this user's link to theirs). Resolved here
    (``realpath``, as the report is written beside its target), it was followed: the report went where
    that user chose, and was made theirs."""
    at = Path(path.absolute().anchor)
    pending = list(reversed(path.absolute().parts[1:]))
    followed = 0
    while pending:
        part = pending.pop()
        if part == "..":
            at = at.parent
            continue
        try:
            link = (at / part).lstat()
            if not stat.S_ISLNK(link.st_mode):
                at = at / part
                continue
            directory = at.stat()
            target = Path(os.readlink(at / part))
        except OSError:  # the rest is to be made (or cannot be): nothing more is followed
            return False
        shared = directory.st_mode & (stat.S_ISVTX | stat.S_IWOTH) == stat.S_ISVTX | stat.S_IWOTH
        if shared and link.st_uid not in (os.geteuid(), directory.st_uid):
            return True
        followed += 1
        if followed > 40:  # the kernel's limit: a loop, which the write itself refuses
            return False
        if target.is_absolute():
            at = Path(target.anchor)
        pending += reversed(target.parts[1:] if target.is_absolute() else target.parts)
    return False


def _overwrite(final: Path, whole: Path) -> None:
    """``final`` (a file that cannot be renamed over) overwritten with the bytes of ``whole``: its room
    taken first, so that a full disk fails before a byte of it changes, and SIGINT and SIGTERM held until
    it is whole (they act then), so that a stop never leaves it cut."""
    arrived: list[int] = []
    held: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():  # where signal handlers are set
        for signum in (signal.SIGINT, signal.SIGTERM):
            held[signum] = signal.signal(signum, lambda number, _frame: arrived.append(number))
    try:
        with whole.open("rb") as source, final.open("r+b") as target:
            size = os.fstat(source.fileno()).st_size
            before = os.fstat(target.fileno()).st_size
            try:
                if size:
                    os.posix_fallocate(target.fileno(), 0, size)
            except OSError as err:
                # Its length back: a failed allocation may have lengthened it with zeros (glibc writes them
                # where the file system has no fallocate: ext2, ext3).
                with suppress(OSError):
                    os.ftruncate(target.fileno(), before)
                if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENODEV):  # not where it cannot
                    raise
            shutil.copyfileobj(source, target)
            target.truncate()
    finally:
        for number, handler in held.items():
            signal.signal(number, handler)
        if arrived:
            signal.raise_signal(arrived[0])


def _partial_file(final: Path, binary: bool) -> tuple[Path | None, IO[Any]]:
    """A new file beside ``final`` that replaces it once whole: a name no one else has (``mkstemp``: never
    a link planted under a name guessed in a shared directory), with ``final``'s permissions (no setuid,
    setgid or sticky bit), owner and group when it exists (a group it cannot keep gets no access), else a
    new file's mode. Where this user cannot create a file but can write ``final`` (a directory of another
    user's), None and ``final`` itself."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{final.name[:200]}.", suffix=".partial", dir=final.parent)
    except PermissionError:
        if not (final.is_file() and os.access(final, os.W_OK)):
            raise
        return None, final.open("wb") if binary else final.open("w", encoding="utf-8")
    try:
        try:
            old = final.stat()
        except FileNotFoundError:
            umask = os.umask(0o022)
            os.umask(umask)
            mode = 0o666 & ~umask
        else:
            directory = final.parent.stat()
            if directory.st_mode & stat.S_ISVTX and os.geteuid() not in (old.st_uid, directory.st_uid):
                # Where the kernel would refuse the rename (and, with protected_regular, an opening): a
                # file planted there would get the report, and its owner with it.
                raise PermissionError(
                    errno.EPERM,
                    "it is another user's file, in a sticky directory: remove it or write elsewhere",
                )
            mode = stat.S_IMODE(old.st_mode) & 0o777  # a report is no program: never setuid or setgid
            new = os.fstat(fd)
            if (new.st_uid, new.st_gid) != (old.st_uid, old.st_gid):
                try:
                    os.fchown(fd, old.st_uid, old.st_gid)
                except PermissionError:
                    try:
                        os.fchown(fd, -1, old.st_gid)
                    except PermissionError:
                        mode &= ~0o070
        os.fchmod(fd, mode)
        return Path(name), os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8")
    except BaseException:
        os.close(fd)
        os.unlink(name)
        raise


@contextmanager
def _removed_on_sigterm(partial: Path) -> Iterator[None]:
    """SIGTERM while ``partial`` is written, where it would end the process at once (its default action:
    ``report --html``, ``rules compile``): remove it first, then end as SIGTERM does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        with suppress(OSError):  # raised here, it would stop whatever runs instead of the process
            partial.unlink(missing_ok=True)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
