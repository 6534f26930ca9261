"""Loading rule sets from disk: directories of sources, single files, compiled blobs, the bundled set.

Compiling is the slow part of a command's start (~0.2 s for the bundled set; loading the compiled form
takes a fraction of that), so the commands keep what they compile in a cache directory
(:func:`rules_cache_dir`): one file per rule set, named by a digest of every source (origin and text), the
engine version and the blob format, written atomically. A file that does not load (damaged, another
format) is ignored and written again; a cache that cannot be written costs only the time.

:func:`prefetch_rules` starts loading a rule set (the bundled one, or the paths ``--rules`` names) from the
cache on a background thread (the engine lets go of the GIL while it deserializes), so ``scan`` overlaps it
with the rest of its start-up; the next :func:`load_rules` of the same paths takes what it read (every
source is read once: a pipe, ``--rules <(...)``, cannot be read twice) and, with the same cache directory,
what it loaded. It only reads: a miss or an unusable entry leaves everything (compiling, the warning,
writing the entry) to that call.

Sources are named by *origin* (what compile errors name; part of the rule-set hash): see :func:`_origins`.
A set that defines no rule is refused (``NoRulesError``): it would call everything clean.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dragonfly_hybrid._core import COMPILED_RULES_MAGIC, Rules, __version__
from dragonfly_hybrid.errors import NoRulesError, RulesFormatError

RULE_SUFFIXES = (".yar", ".yara")
RULES_CACHE_ENV = "DRAGONFLY_RULES_CACHE_DIR"
"""Where compiled rule sets are cached; ``off`` (or ``0``, ``none``, empty) turns the commands' cache off."""
_OFF = ("", "0", "off", "none", "false", "no")

StrPath = str | os.PathLike[str]


def rules_cache_dir() -> Path | None:
    """``$DRAGONFLY_RULES_CACHE_DIR``, else ``$XDG_CACHE_HOME/dragonfly-hybrid/rules`` (by default
    ``~/.cache/dragonfly-hybrid/rules``); None when the variable turns the cache off."""
    configured = os.environ.get(RULES_CACHE_ENV)
    return default_rules_cache_dir() if configured is None else configured_cache_dir(configured)


def default_rules_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dragonfly-hybrid/rules``, by default ``~/.cache/dragonfly-hybrid/rules``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dragonfly-hybrid" / "rules"


def configured_cache_dir(value: str) -> Path | None:
    """A configured rules cache directory; None for a word that turns the cache off (``off``, ``0``, ...)."""
    return None if value.strip().lower() in _OFF else Path(value).expanduser()


COMPILED_LAYOUT = "v3"
"""The shape of the compiled blobs this version writes (v2: filetype-routed parts; v3: CRC-32 checksums,
blob formats 5 and 6), part of every rules-cache key: the CLI's here and the node's file names. Entries
written in an earlier shape, which no longer load, are keyed apart, so an upgrade compiles quietly instead
of warning about an unusable entry. Change it whenever the blob format changes."""


def _sources_key(sources: dict[str, str]) -> str:
    """What a compiled set depends on: every (origin, source) pair, the engine version, the blob format."""
    digest = hashlib.sha256()
    for part in (__version__.encode(), COMPILED_RULES_MAGIC, COMPILED_LAYOUT.encode()):
        digest.update(len(part).to_bytes(8, "little") + part)
    for origin, text in sorted(sources.items()):
        for part in (origin.encode(), text.encode()):
            digest.update(len(part).to_bytes(8, "little") + part)
    return digest.hexdigest()


def cache_entry(cache_dir: Path, sources: dict[str, str]) -> Path:
    """Where ``sources`` compiled are kept in the rules cache ``cache_dir`` (named by :func:`_sources_key`:
    whatever the set is called, its file holds these very sources compiled by this engine)."""
    return cache_dir / f"sources-{_sources_key(sources)}.rules"


def compile_cached(sources: dict[str, str], cache_dir: Path | None) -> Rules:
    """``Rules.compile(sources)``, loaded from ``cache_dir`` when an earlier call compiled the same sources
    with this engine (and kept there otherwise)."""
    if cache_dir is None:
        return Rules.compile(sources)
    path = cache_entry(cache_dir, sources)
    try:
        return Rules.deserialize(path.read_bytes())
    except FileNotFoundError:
        pass
    except (RulesFormatError, OSError) as err:
        import logging  # ~3 ms of every start, for a message that is rare

        logging.getLogger("dragonfly_hybrid.rules").warning(
            f"ignoring an unusable cached rule set ({shown_path(path)}: {err}); compiling the rules",
            extra={"path": str(path), "error": str(err)},
        )
    rules = Rules.compile(sources)
    if rules.count == 0:
        return rules  # never kept: load_rules refuses a set without rules
    keep_compiled(rules, path)
    return rules


def keep_compiled(rules: Rules, path: Path) -> None:
    """Write ``rules``'s blob to ``path`` in a rules cache, readable by its owner only (a blob is code), and
    atomically: a concurrent reader sees the old file or the whole new one. A read-only or full disk costs
    the next start its compile, no more."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=path.parent, prefix=".partial-", suffix=".rules")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(rules.serialize())
            os.replace(partial, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)


def bundled_rules_dir() -> Path:
    """The directory of the rule set that ships with the package."""
    return Path(__file__).with_name("rules")


class _Prefetch:
    """The rule sources of ``paths`` (none: the bundled set), read on a daemon thread, and their compiled set
    from ``cache_dir`` when it is there and usable.

    What it read is what the next ``load_rules`` of the same paths compiles: a source is read once, as a
    pipe (``--rules <(...)``) can be read only once."""

    def __init__(self, cache_dir: Path, paths: Sequence[StrPath]) -> None:
        self.cache_dir = cache_dir
        self.key = _paths_key(paths)
        self.found: Rules | dict[str, str] | None = None
        self.error: Exception | None = None
        self.cached: Rules | None = None
        # A daemon: a command that stops early (a usage error) does not wait for a load it will not use.
        self.thread = threading.Thread(target=self._load, args=(paths,), name="rules-prefetch", daemon=True)
        self.thread.start()

    def _load(self, paths: Sequence[StrPath]) -> None:
        try:
            found = _gather([Path(p) for p in paths] or [bundled_rules_dir()])
        except Exception as err:  # the caller's to report, as it would without the prefetch
            self.error = err
            return
        self.found = found
        if isinstance(found, dict):
            # A miss or an unusable entry: the caller compiles (and warns, and writes the entry).
            with contextlib.suppress(Exception):
                self.cached = Rules.deserialize(cache_entry(self.cache_dir, found).read_bytes())

    def outcome(self, cache_dir: Path | None) -> tuple[Rules | dict[str, str], Rules | None]:
        """What the thread read (raising what reading raised), and the compiled set it found in the cache
        when that is ``cache_dir``."""
        self.thread.join()
        if self.error is not None:
            raise self.error
        assert self.found is not None
        return self.found, self.cached if cache_dir == self.cache_dir else None


def _paths_key(paths: Iterable[StrPath]) -> tuple[str, ...]:
    return tuple(os.path.abspath(p) for p in paths)


_prefetch: _Prefetch | None = None
_prefetch_lock = threading.Lock()


def prefetch_rules(paths: Sequence[StrPath] = ()) -> None:
    """Start loading the rule set of ``paths`` (none: the bundled set) from the rules cache
    (:func:`rules_cache_dir`) in the background, for the next ``load_rules(paths)`` (which takes the sources
    it read, and the set it loaded when its cache directory is the same); nothing when the cache is off."""
    global _prefetch
    cache_dir = rules_cache_dir()
    if cache_dir is not None:
        with _prefetch_lock:
            _prefetch = _Prefetch(cache_dir, paths)


def _take_prefetched(paths: Sequence[Path]) -> _Prefetch | None:
    global _prefetch
    with _prefetch_lock:
        started, _prefetch = _prefetch, None
    return started if started is not None and started.key == _paths_key(paths) else None


def bundled_rules() -> Rules:
    """Compile the bundled default rule set."""
    return load_rules([bundled_rules_dir()])


def shown_path(path: StrPath) -> str:
    """``path`` for a message: bytes that are not UTF-8 as ``\\xNN``, control and format characters (a
    newline, a bidi override in a file name) as escapes."""
    from dragonfly_hybrid.report import printable  # only on the way to a message

    return printable(os.fsencode(path).decode("utf-8", "backslashreplace"))


def _origin_text(name: str) -> str:
    # A name that is not UTF-8 (surrogate escapes) cannot be hashed or handed to the engine as it is.
    return os.fsencode(name).decode("utf-8", "backslashreplace")


_NOT_REGULAR = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_a_rule_file(entry: Path) -> str | None:
    """What ``entry`` (named like a rule file) is when it cannot be one, else None (a regular file, or a
    directory, which the walk enters). Symbolic links are followed."""
    try:
        mode = entry.stat().st_mode
    except FileNotFoundError:
        return "a symbolic link to nothing" if entry.is_symlink() else None  # gone since: reading says so
    except OSError as err:
        return "a symbolic link loop" if err.errno == errno.ELOOP else None  # reading it reports the rest
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((what for test, what in _NOT_REGULAR if test(mode)), "not a regular file")


def _rule_files_in_directory(directory: Path) -> tuple[Path, ...]:
    """The .yar/.yara files under ``directory``, relative to it, sorted. Links to directories are followed
    (each directory walked once: a link loop ends); ``rglob`` did not follow them and dropped their rules
    unseen. A directory is named by its own path when it has one in the tree, else by the first link to it
    (in sorted order); a link to a directory that holds ``directory`` is an error (a loop that would walk
    everything beside it, the whole file system for a link to ``/``). An entry named so that is no regular
    file (a broken link, a FIFO, a device) is an error: skipping it would drop its rules unseen, and
    reading it could block or never end. A directory that cannot be listed raises ``OSError``, for the same
    reason."""
    found: list[Path] = []
    unusable: list[str] = []
    walked: set[tuple[int, int]] = set()
    around = {_identity(folder) for folder in directory.resolve().parents}
    pending = [directory]
    linked: list[Path] = []
    while pending or linked:
        if not pending:
            # Links last: a link to a folder of the tree (an alias) must not rename its rules.
            pending, linked = sorted(linked, reverse=True), []
        folder = pending.pop()
        identity = _identity(folder)
        if identity in around:
            unusable.append(f"{shown_path(folder)} is a link to a folder holding {shown_path(directory)}")
            continue
        if identity in walked:
            continue
        walked.add(identity)
        for entry in sorted(folder.iterdir(), reverse=True):  # sorted: the same link wins every time
            if entry.is_dir():
                (linked if entry.is_symlink() else pending).append(entry)
                continue
            if entry.suffix.lower() not in RULE_SUFFIXES:
                continue
            problem = _not_a_rule_file(entry)
            if problem is not None:
                unusable.append(f"{shown_path(entry)} is {problem}, not a rule file")
            else:
                found.append(entry.relative_to(directory))
    if unusable:
        raise ValueError("; ".join(sorted(unusable)))
    if not found:
        raise FileNotFoundError(f"no .yar or .yara files under {shown_path(directory)}")
    return tuple(sorted(found))


def _identity(folder: Path) -> tuple[int, int]:
    info = folder.stat()
    return info.st_dev, info.st_ino


@dataclass(frozen=True)
class _Source:
    """One path given to :func:`load_rules`."""

    path: Path
    parts: tuple[str, ...]
    """The components of its absolute path, without the root: the stock of its names."""
    members: tuple[Path, ...] | None
    """A directory's rule files, relative to it; None for a file."""

    def origins(self, depth: int) -> list[str]:
        """Its files' origins when it is named by the last ``depth`` components of its path."""
        label = _origin_text("/".join(self.parts[-depth:]))
        if self.members is None:
            return [label]
        return [f"{label}/{_origin_text(member.as_posix())}" for member in self.members]


def _listed(given: Sequence[Path]) -> list[_Source]:
    """The sources of ``given``; a path given twice is one source, read once. Lists directories, reads no
    file."""
    by_location: dict[str, Path] = {}
    for path in given:
        by_location.setdefault(os.path.abspath(path), path)
    return [
        _Source(path, Path(location).parts[1:], _rule_files_in_directory(path) if path.is_dir() else None)
        for location, path in by_location.items()
    ]


def _origins(sources: Sequence[_Source]) -> list[list[str]]:
    """The origin of every rule file of ``sources`` (what compile errors name; part of the rule-set hash).

    One directory: paths relative to it, so the hash does not depend on where it lives. Otherwise a file is
    its name and a directory's files ``<its name>/<relative path>``; sources whose origins would clash
    (``team-a/custom.yar`` and ``team-b/custom.yar``) are named by more of their paths until they do not
    (``team-a/custom.yar``), so every source's rules are kept and errors point at the right file."""
    if len(sources) == 1 and sources[0].members is not None:
        return [[_origin_text(member.as_posix()) for member in sources[0].members]]
    depths = [1] * len(sources)
    while True:
        origins = [source.origins(depth) for source, depth in zip(sources, depths, strict=True)]
        owners: dict[str, set[int]] = {}
        for index, names in enumerate(origins):
            for name in names:
                owners.setdefault(name, set()).add(index)
        clashing = sorted({index for found in owners.values() if len(found) > 1 for index in found})
        if not clashing:
            return origins
        deeper = [index for index in clashing if depths[index] < len(sources[index].parts)]
        if not deeper:  # whole paths, still the same: one file reached twice (given, and inside a directory)
            named = ", ".join(shown_path(sources[index].path) for index in clashing)
            raise ValueError(f"{named} hold the same rule file twice")
        for index in deeper:
            depths[index] += 1


def rule_source_files(paths: Sequence[StrPath] = ()) -> dict[str, Path]:
    """The file behind each origin of ``load_rules(paths)`` (what a compile error names): lists
    directories, reads no file."""
    sources = _listed([Path(p) for p in paths] or [bundled_rules_dir()])
    files: dict[str, Path] = {}
    for source, names in zip(sources, _origins(sources), strict=True):
        members = [source.path] if source.members is None else [source.path / m for m in source.members]
        files.update(zip(names, members, strict=True))
    return files


def load_rules(paths: Iterable[StrPath] | StrPath = (), *, cache_dir: Path | None = None) -> Rules:
    """Load rules from directories (read recursively for .yar/.yara), source files or one compiled blob.

    ``paths`` is a list of them, or one (``str`` or path-like; not ``bytes``: ``TypeError``). With no paths
    (an empty list), the bundled rules; an empty string is no path (``FileNotFoundError``). With
    ``cache_dir``, sources compiled once are loaded from there afterwards (:func:`compile_cached`). Every
    source is read once (what a prefetch read, when it read these paths). Raises ``RuleCompileError``
    naming file and line when a source does not compile, ``RulesFormatError`` for a damaged blob,
    ``NoRulesError`` when the set defines no rule, ``OSError`` when a path cannot be read, ``ValueError``
    for a file that is not a rule source.
    """
    # One path is one path: a str iterated gave its characters ('/' first: the whole file system walked).
    if isinstance(paths, bytes | bytearray):  # iterated: ints (a misleading TypeError), or none: bundled
        raise TypeError(
            f"paths must be a path or a list of paths, not {type(paths).__name__} "
            "(a compiled rule set's bytes load with Rules.deserialize)"
        )
    listed = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    if any(os.fspath(p) == "" for p in listed):  # Path("") is "."; open("") fails, as this must
        raise FileNotFoundError("an empty path names no rule file or folder")
    given = [Path(p) for p in listed]
    prefetched = _take_prefetched(given)
    rules: Rules | None = None
    if prefetched is not None:
        found, rules = prefetched.outcome(cache_dir)
    else:
        found = _gather(given or [bundled_rules_dir()])
    if rules is None:
        rules = compile_cached(found, cache_dir) if isinstance(found, dict) else found
    if rules.count == 0:
        named = ", ".join(shown_path(p) for p in given) or "the bundled rule set"
        raise NoRulesError(
            f"no rule defined in {named} (empty or comment-only sources): it would match nothing"
        )
    return rules


def _gather(given: list[Path]) -> Rules | dict[str, str]:
    """The sources of ``given`` by origin (:func:`_origins`), or the rule set when it is one compiled blob.
    Reads every file once."""
    sources = _listed(given)
    texts: dict[str, str] = {}
    for source, names in zip(sources, _origins(sources), strict=True):
        if source.members is not None:
            for name, member in zip(names, source.members, strict=True):
                file = source.path / member
                if name in texts:  # "caf\xe9.yar" spelt out beside a name holding the byte 0xE9
                    raise ValueError(f"{shown_path(file)} has the name of another rule file ({name})")
                texts[name] = _decoded(file.read_bytes(), file, "is not UTF-8 YARA source")
            continue
        data = source.path.read_bytes()
        if data.startswith(COMPILED_RULES_MAGIC):
            if len(sources) != 1:
                shown = shown_path(source.path)
                raise ValueError(f"{shown} is a compiled rule set; it cannot be combined with other rules")
            return Rules.deserialize(data)
        texts[names[0]] = _decoded(data, source.path, "is neither UTF-8 YARA source nor a compiled rule set")
    return texts


def _decoded(data: bytes, path: Path, what_else: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{shown_path(path)} {what_else} (byte {err.start}: {err.reason})") from err
