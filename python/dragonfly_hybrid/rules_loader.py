"""Loading rule sets from disk: directories of sources, single files, compiled blobs, the bundled set.

Compiling is the slow part of a command's start (~0.2 s for the bundled set; loading the compiled form
takes a fraction of that), so the commands keep what they compile in a cache directory
(:func:`rules_cache_dir`): one file per rule set, named by a digest of every source (origin and text), the
engine version and the blob format, written atomically. A file that does not load (damaged, another
format) is ignored and written again; a cache that cannot be written costs only the time.

:func:`prefetch_rules` starts loading a rule set (the bundled one, or the paths ``--rules`` names) from the
cache on a background thread (the engine lets go of the GIL while it deserializes), so ``scan`` overlaps it
with the rest of its start-up; the next :func:`load_rules` of the same paths with the same cache directory
takes that result. It only reads: a miss or an unusable entry leaves everything (compiling, the warning,
writing the entry) to that call.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

from dragonfly_hybrid._core import COMPILED_RULES_MAGIC, Rules, __version__
from dragonfly_hybrid.errors import RulesFormatError

RULE_SUFFIXES = (".yar", ".yara")
RULES_CACHE_ENV = "DRAGONFLY_RULES_CACHE_DIR"
"""Where compiled rule sets are cached; ``off`` (or ``0``, ``none``, empty) turns the commands' cache off."""
_OFF = ("", "0", "off", "none", "false", "no")

StrPath = str | os.PathLike[str]


def rules_cache_dir() -> Path | None:
    """``$DRAGONFLY_RULES_CACHE_DIR``, else ``$XDG_CACHE_HOME/dragonfly-hybrid/rules`` (by default
    ``~/.cache/dragonfly-hybrid/rules``); None when the variable turns the cache off."""
    configured = os.environ.get(RULES_CACHE_ENV)
    if configured is not None:
        return None if configured.strip().lower() in _OFF else Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dragonfly-hybrid" / "rules"


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


def _cache_entry(cache_dir: Path, sources: dict[str, str]) -> Path:
    return cache_dir / f"sources-{_sources_key(sources)}.rules"


def compile_cached(sources: dict[str, str], cache_dir: Path | None) -> Rules:
    """``Rules.compile(sources)``, loaded from ``cache_dir`` when an earlier call compiled the same sources
    with this engine (and kept there otherwise)."""
    if cache_dir is None:
        return Rules.compile(sources)
    path = _cache_entry(cache_dir, sources)
    try:
        return Rules.deserialize(path.read_bytes())
    except FileNotFoundError:
        pass
    except (RulesFormatError, OSError) as err:
        import logging  # ~3 ms of every start, for a message that is rare

        logging.getLogger("dragonfly_hybrid.rules").warning(
            "ignoring an unusable cached rule set", extra={"path": str(path), "error": str(err)}
        )
    rules = Rules.compile(sources)
    with contextlib.suppress(OSError):  # a read-only or full disk costs the next start its compile, no more
        cache_dir.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=cache_dir, prefix=".partial-", suffix=".rules")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(rules.serialize())
            os.replace(partial, path)  # atomic: a concurrent reader sees the old file or the whole new one
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
    return rules


def bundled_rules_dir() -> Path:
    """The directory of the rule set that ships with the package."""
    return Path(__file__).with_name("rules")


class _Prefetch:
    """The rule set of ``paths`` (none: the bundled set) read from ``cache_dir`` on a daemon thread (None:
    not there, or not usable)."""

    def __init__(self, cache_dir: Path, paths: Sequence[StrPath]) -> None:
        self.cache_dir = cache_dir
        self.key = _paths_key(paths)
        self.rules: Rules | None = None
        # A daemon: a command that stops early (a usage error) does not wait for a load it will not use.
        self.thread = threading.Thread(target=self._load, args=(paths,), name="rules-prefetch", daemon=True)
        self.thread.start()

    def _load(self, paths: Sequence[StrPath]) -> None:
        # Any failure is the caller's to meet again and report, as it would without the prefetch.
        with contextlib.suppress(Exception):
            found = _gather([Path(p) for p in paths] or [bundled_rules_dir()])
            if isinstance(found, dict):
                found = Rules.deserialize(_cache_entry(self.cache_dir, found).read_bytes())
            self.rules = found

    def result(self) -> Rules | None:
        self.thread.join()
        return self.rules


def _paths_key(paths: Iterable[StrPath]) -> tuple[str, ...]:
    return tuple(os.path.abspath(p) for p in paths)


_prefetch: _Prefetch | None = None
_prefetch_lock = threading.Lock()


def prefetch_rules(paths: Sequence[StrPath] = ()) -> None:
    """Start loading the rule set of ``paths`` (none: the bundled set) from the rules cache
    (:func:`rules_cache_dir`) in the background, for the next ``load_rules(paths)`` with that cache
    directory; nothing when the cache is off."""
    global _prefetch
    cache_dir = rules_cache_dir()
    if cache_dir is not None:
        with _prefetch_lock:
            _prefetch = _Prefetch(cache_dir, paths)


def _take_prefetched(cache_dir: Path, paths: Sequence[Path]) -> Rules | None:
    global _prefetch
    with _prefetch_lock:
        started, _prefetch = _prefetch, None
    if started is None or started.cache_dir != cache_dir or started.key != _paths_key(paths):
        return None
    return started.result()


def bundled_rules() -> Rules:
    """Compile the bundled default rule set."""
    return load_rules([bundled_rules_dir()])


def _sources_in_directory(directory: Path) -> dict[str, str]:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in RULE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no .yar or .yara files under {directory}")
    # Origins are relative to the directory so the rule-set hash does not depend on where it lives.
    return {p.relative_to(directory).as_posix(): p.read_text(encoding="utf-8") for p in files}


def load_rules(paths: Iterable[StrPath] = (), *, cache_dir: Path | None = None) -> Rules:
    """Load rules from directories (read recursively for .yar/.yara), source files or one compiled blob.

    With no paths, the bundled rules. With ``cache_dir``, sources compiled once are loaded from there
    afterwards (:func:`compile_cached`). Raises ``RuleCompileError`` naming file and line when a source does
    not compile, ``RulesFormatError`` for a damaged blob, ``OSError`` when a path cannot be read.
    """
    given = [Path(p) for p in paths]
    if cache_dir is not None:
        prefetched = _take_prefetched(cache_dir, given)
        if prefetched is not None:
            return prefetched
    found = _gather(given or [bundled_rules_dir()])
    return compile_cached(found, cache_dir) if isinstance(found, dict) else found


def _gather(given: list[Path]) -> Rules | dict[str, str]:
    """The sources of ``given`` by origin, or the rule set when it is one compiled blob."""
    sources: dict[str, str] = {}
    for path in given:
        if path.is_dir():
            found = _sources_in_directory(path)
            prefix = "" if len(given) == 1 else f"{path.name}/"
            sources.update({prefix + origin: text for origin, text in found.items()})
            continue
        data = path.read_bytes()
        if data.startswith(COMPILED_RULES_MAGIC):
            if len(given) != 1:
                raise ValueError(f"{path} is a compiled rule set; it cannot be combined with other rules")
            return Rules.deserialize(data)
        try:
            sources[path.name] = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{path} is neither UTF-8 YARA source nor a compiled rule set") from err
    return sources
