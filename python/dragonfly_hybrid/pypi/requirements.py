"""Pinned dependencies from requirements files and lock files, for ``scan --requirements FILE``.

Formats, chosen by file name:

* ``pylock.toml`` / ``pylock.*.toml`` (PEP 751): every ``[[packages]]`` entry with a ``version``;
* ``uv.lock``: every ``[[package]]`` whose ``source`` is a registry (the workspace's own ``virtual``
  project installs nothing and is passed over);
* ``poetry.lock``: every ``[[package]]`` without a ``source``, or with a ``legacy`` (index) source;

A lock names the files its installer takes, and where from; those are what is scanned (:class:`LockedFile`),
never a same-named release on another index: the URLs of uv's and pylock's files are downloaded as
they are and checked against the lock's hashes; poetry's files (names and hashes only) are looked up on
the package's source index (:attr:`Pin.index_url`), and only the files whose hashes the lock lists are
scanned. A pylock file given by ``path`` is skipped (scan it by its path).
* anything else is a pip requirements file, read by pip's own parser (``pip-requirements-parser``):
  ``name==version`` or ``name===version`` lines (extras, environment markers, ``--hash`` options and ``\\``
  continuations allowed), ``-r``/``--requirement`` files followed (relative to the including file);
  ``-c``/``--constraint`` files are read but not scanned (pip installs nothing from them, except from the URL
  or path of a named constraint, ``foo @ https://...``: skipped, as a URL requirement is). Option lines that
  change where releases come from are kept in :attr:`Pins.settings` (``--index-url``, ``--extra-index-url``,
  ``--trusted-host``; ``--no-index`` and ``--find-links`` are recorded as refused), as are pip 26's
  ``--all-releases``/``--only-final`` and ``--pre`` lines, applied in order over pip's settings, as pip 26.3
  applies them (:attr:`PipSettings.release_control`; its ``--no-require-hashes`` lines: below), and
  ``--no-binary``/``--only-binary``/``--prefer-binary`` lines, the same way
  (:attr:`PipSettings.candidate_files`); the others do not change what is fetched and are ignored, as is pip
  23.1+'s per-requirement ``-C``/``--config-settings KEY=VAL`` (how pip builds an sdist; without ``=``
  refused, as pip refuses it). Environment markers are not evaluated: a release pinned for another platform or
  Python is scanned too. A file without a BOM or a coding line in which pip before 24.2 (which decoded it with
  its locale's codec) under a Latin-1 locale would take a line this reader does not (lines break elsewhere
  there) gets a note in :attr:`Pins.notes` (:func:`_line_of_a_latin1_pip`); pip 24.2 and later decode it as
  UTF-8, as this reader does.

Hashes follow pip's hash-checking mode: once a requirement or a constraint has ``--hash``, a
``--require-hashes`` line is present or pip's ``require-hashes`` is set (``PIP_REQUIRE_HASHES``, pip.conf),
every requirement must be pinned with ``==`` (or ``===``) and have ``--hash`` options (``sha256``,
``sha384`` or ``sha512``; a line without takes those its name's constraints all allow, as pip 26.3 does),
else a :class:`RequirementsError` naming the line and what turned the mode on. pip 26's
``--no-require-hashes`` line or ``no-require-hashes`` setting (``PIP_NO_REQUIRE_HASHES``, pip.conf) keeps
a ``--hash`` from turning the mode on (a line without hashes is then taken), and is a
:class:`RequirementsError` with ``--require-hashes``/``require-hashes``, as pip 26.3 refuses both. Each pin
keeps its allowed hashes (:attr:`Pin.hashes`), the mode on or off (pip 26.3 checks them either way): only
the files of the release they allow are scanned.

Entries that are not releases on an index (a local directory, a VCS checkout, a URL, an editable
project) are listed in :attr:`Pins.skipped` with the reason; they cannot be resolved by name and version.
A requirement that is not pinned to one version (``requests>=2``, ``flask``, ``==1.*``) is a
:class:`RequirementsError`, naming the file and line: what would be scanned would not be what is
installed.
"""

from __future__ import annotations

import contextlib
import optparse
import re
import tempfile
import threading
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import takewhile, zip_longest
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from packaging.version import Version

from dragonfly_hybrid.pypi.index import RUNNING_PYTHON, normalize_name
from dragonfly_hybrid.pypi.pipconfig import (
    Constraint,
    PipConfigError,
    PipSettings,
    check_hash_mode,
    hash_checking_mode,
    pip_settings,
)
from dragonfly_hybrid.redaction import REDACTED, redact_text
from dragonfly_hybrid.report import printable
from dragonfly_hybrid.toml_reader import TomlError, read_toml


class RequirementsError(ValueError):
    """A file that cannot be read or parsed, or a requirement that is not pinned. The message is redacted
    (:func:`~dragonfly_hybrid.redaction.redact_text`): it may quote a line whose URL holds a password or a
    token."""

    def __init__(self, message: str) -> None:
        super().__init__(redact_text(message))


@dataclass(frozen=True)
class LockedFile:
    """A file a lock file names for a release: its installer downloads it from ``url`` and checks it
    against ``hashes`` (``algorithm:hex``)."""

    url: str
    hashes: frozenset[str]
    size: int | None = None


@dataclass(frozen=True)
class Pin:
    """One pinned dependency and where it was found (``origin``: ``file:line`` or ``file``)."""

    name: str
    version: str
    origin: str
    hashes: frozenset[str] = frozenset()
    """``algorithm:hex`` of every ``--hash`` of the line (empty: no hash checking)."""
    path: str = ""
    """The file it was found in."""
    line: int | None = None
    """Its line in that file (None for lock files)."""
    files: tuple[LockedFile, ...] = ()
    """The files a lock file names with their URLs: scanned from there, not looked up on an index."""
    index_url: str | None = None
    """The index a lock file resolves it on (poetry's source), instead of the configured ones."""

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass
class Pins:
    pins: list[Pin] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """``origin: name: reason`` of each entry that is not an index release (redacted: see :meth:`skip`)."""
    settings: PipSettings = field(default_factory=PipSettings)
    """Index options found in the requirements files (only the ones they set; see :mod:`pipconfig`)."""
    require_hashes: str | None = None
    """What turned on hash-checking mode for every requirements file, if anything: a ``--require-hashes``
    line (``--require-hashes (file:line)``) or pip's ``require-hashes`` setting (``require-hashes
    (where)``)."""
    no_require_hashes: str | None = None
    """What keeps a ``--hash`` from turning that mode on (pip 26): a ``--no-require-hashes`` line
    (``--no-require-hashes (file:line)``) or pip's ``no-require-hashes`` setting."""
    hash_mode: str | None = None
    """What turned pip's hash-checking mode on, once the files are read (None: off): pip applies it to
    the command line's requirements too."""
    pip: PipSettings | None = None
    """pip's settings (configuration files, environment) as read for these files: the index client takes
    them too (read once per command)."""
    notes: list[str] = field(default_factory=list)
    """Remarks on the files that change no pin (what an older pip would read otherwise)."""
    _keys: set[tuple[object, ...]] = field(default_factory=set, repr=False)

    def skip(self, entry: str) -> None:
        """Record an entry that is not an index release, redacted: the line it quotes may hold a URL with a
        password or a token (``pkg @ https://user:pass@host/pkg.whl``, ``git+https://token@...``)."""
        self.skipped.append(redact_text(entry))

    def add(self, pin: Pin) -> None:
        """Keep ``pin`` unless one for the same files is kept already: the same release from the same
        place, allowing the same hashes. Two lock entries of one name and version with other files (a
        version split over two indexes by markers), a lock entry and a requirements line, or lines of two
        files hashing the release differently (or one not at all: any of its files installs) are each
        scanned."""
        # A lock's entry and a requirements line apart: only the line takes pip's find-links.
        key = (normalize_name(pin.name), pin.version, pin.files, pin.index_url, pin.hashes, pin.line is None)
        if key not in self._keys:
            self._keys.add(key)
            self.pins.append(pin)

    def keep_only(self, pins: list[Pin]) -> None:
        """Keep ``pins`` in place of those kept, each as :meth:`add` keeps it."""
        self.pins, self._keys = [], set()
        for pin in pins:
            self.add(pin)


def lock_format(path: Path) -> str:
    """``pylock``, ``uv``, ``poetry`` or ``requirements``, from the file name."""
    name = path.name.lower()
    if name == "pylock.toml" or (name.startswith("pylock.") and name.endswith(".toml")):
        return "pylock"
    if name == "uv.lock":
        return "uv"
    if name == "poetry.lock":
        return "poetry"
    return "requirements"


def read_pins(
    paths: list[Path], settings: PipSettings | None = None, python_version: Version | None = None
) -> Pins:
    """Every pinned release in ``paths`` (in order, duplicates removed). ``settings``: pip's (default: its
    configuration files and environment), whose ``require-hashes`` pip applies to requirements files;
    ``python_version`` (default: the running one's): where constraints' markers are evaluated."""
    pip = pip_settings() if settings is None else settings
    pins = _pins_of(pip)
    entries: list[Any] = []
    if any(lock_format(path) == "requirements" for path in paths):  # a lock's entries take none of it
        entries += _read_constraint_files(pins)
    for path in paths:
        kind = lock_format(path)
        if kind == "requirements":
            entries += _read_requirements(path, pins)
        else:
            _read_lock(path, kind, pins)
    # Checked once all are read, as pip does: a --hash or --require-hashes in any file turns the mode on
    # for the requirements of every file, whichever -R comes first (a --no-require-hashes, the --hash not).
    try:
        check_hash_mode(pins.require_hashes, pins.no_require_hashes)
    except PipConfigError as err:
        raise RequirementsError(str(err)) from None
    python = RUNNING_PYTHON if python_version is None else python_version
    _check_hashes(entries, pins, _take_constraint_hashes(entries, pins, python))
    return pins


def read_constraints(pip: PipSettings) -> PipSettings:
    """What pip's ``constraint`` files set, read as :func:`read_pins` reads them: their option lines over
    pip's, their named constraints (:attr:`PipSettings.constraints`). Raises :class:`RequirementsError`
    for a file that cannot be read or that pip refuses."""
    pins = _pins_of(pip)
    for entry in _read_constraint_files(pins):
        # A -r line in a constraints file reads a requirements file: pip installs its requirements too.
        raise RequirementsError(
            f"pip's constraint setting: {_origin(entry)}: pip installs this requirement too (a '-r FILE' "
            "line in a constraints file reads requirements), which scan does not scan: give that file with -R"
        )
    return pins.settings


def _pins_of(pip: PipSettings) -> Pins:
    """No pins yet, under pip's settings ``pip``."""
    # pip applies the files' release- and format-control lines over its settings' (the finder's, changed in
    # place).
    return Pins(
        settings=PipSettings(release_control=pip.release_control, format_control=pip.format_control),
        require_hashes=pip.require_hashes,
        no_require_hashes=pip.no_require_hashes,
        pip=pip,
    )


def _read_constraint_files(pins: Pins) -> list[Any]:
    """pip's ``constraint`` files, read as a ``-c FILE`` line at the top of the first requirements file
    (pip parses them before any requirements file), the names relative to the working directory. Returns
    the requirements of their ``-r`` files (pip installs them), for :func:`_check_hashes`."""
    assert pins.pip is not None
    entries: list[Any] = []
    for name in pins.pip.constraint_files:
        if urlsplit(name).scheme in ("http", "https", "file"):  # pip fetches these: the parser reads paths
            raise RequirementsError(
                f"pip's constraint setting: {printable(redact_text(name))}: pip fetches this constraints "
                "file from its URL, scan reads them by path only: download it and name its path"
            )
        try:
            entries += _read_requirements(Path(name), pins, constraint=True)
        except RequirementsError as err:
            raise RequirementsError(f"pip's constraint setting: {err}") from None
    pins.settings = replace(pins.settings, constraint_files=pins.pip.constraint_files)
    return entries


# ---------------------------------------------------------------------------------------- lock files


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        return read_toml(path)
    except TomlError as err:
        raise RequirementsError(str(err)) from None


def _read_lock(path: Path, kind: str, pins: Pins) -> None:
    data = _load_toml(path)
    entries = data.get("packages" if kind == "pylock" else "package", [])
    if not isinstance(entries, list):
        raise RequirementsError(f"{path}: no package list")
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise RequirementsError(f"{path}: package #{i} has no name")
        name = entry["name"]
        origin = f"{path}"
        source = entry.get("source")
        if kind == "uv" and isinstance(source, dict) and set(source) == {"virtual"}:
            continue  # the workspace's own project, which a virtual source does not install
        reason = _not_a_release(entry, kind)
        version = entry.get("version")
        if reason is None and not isinstance(version, str):
            reason = "no version"
        if reason is None:
            locked, index_url, reason = _locked_files(entry, kind, f"{origin}: {name}")
        if reason is not None:
            pins.skip(f"{origin}: {name}: {reason}")
            continue
        assert isinstance(version, str)
        with_urls = tuple(file for file in locked if file.url)
        # Files with URLs are each checked against their own hashes (a file the lock lists without one is
        # installed unchecked, so it is scanned unchecked); files looked up on an index are picked by them.
        hashes = frozenset() if with_urls else frozenset(h for file in locked for h in file.hashes)
        pins.add(Pin(name, version, origin, hashes, path=origin, files=with_urls, index_url=index_url))


def _lock_hashes(value: object, where: str) -> frozenset[str]:
    """A lock's hashes of one file: ``"sha256:hex"`` (uv, poetry) or ``{sha256 = "hex"}`` (pylock)."""
    if value is None:
        return frozenset()
    pairs = (
        [(alg, digest) for alg, digest in value.items()]
        if isinstance(value, dict)
        else [str(value).partition(":")[::2]]
    )
    hashes = set()
    for algorithm, digest in pairs:
        algorithm, digest = str(algorithm).lower(), str(digest).lower()
        if algorithm not in _HASH_ALGORITHMS or not re.fullmatch(r"[0-9a-f]+", digest):
            raise RequirementsError(
                f"{where}: hash {printable(f'{algorithm}:{digest}')!r} is not ALGORITHM:HEX"
            )
        hashes.add(f"{algorithm}:{digest}")
    return frozenset(hashes)


def _locked_files(
    entry: dict[str, Any], kind: str, where: str
) -> tuple[list[LockedFile], str | None, str | None]:
    """The files a lock entry names (``url`` empty when it gives none), the index to resolve it on, and
    why it cannot be scanned (None when it can)."""
    if kind == "poetry":
        source = entry.get("source")
        index_url = source.get("url") if isinstance(source, dict) else None
        files = entry.get("files", [])
        listed = files if isinstance(files, list) else []
        locked = [LockedFile("", _lock_hashes(f.get("hash"), where)) for f in listed if isinstance(f, dict)]
        return locked, index_url if isinstance(index_url, str) else None, None
    if kind == "uv":
        source = entry.get("source")
        registry = source.get("registry") if isinstance(source, dict) else None
        hash_key, index_url = "hash", registry if isinstance(registry, str) else None
    else:
        hash_key, index = "hashes", entry.get("index")
        index_url = index if isinstance(index, str) else None
    sdist = entry.get("sdist")
    wheels = entry.get("wheels", [])
    described = [sdist] if isinstance(sdist, dict) else []
    described += [w for w in wheels if isinstance(w, dict)] if isinstance(wheels, list) else []
    locked = []
    for file in described:
        url, local = file.get("url"), file.get("path")
        if not isinstance(url, str) and isinstance(local, str):
            return [], None, f"a local file ({printable(local)}), not an index release: scan it by its path"
        if isinstance(url, str):
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018  (parsing the port is what raises on a malformed host)
            except ValueError as err:
                # The parser's reason quotes the part it could not read: a password's, it may be.
                reason = re.sub(r"'[^']*'", REDACTED, str(err))
                raise RequirementsError(f"{where}: {printable(url)!r} is not a URL ({reason})") from None
            scheme = parts.scheme.lower()
            if scheme == "file":
                return [], None, f"a local file ({printable(url)}), not an index release: scan it by its path"
            if scheme not in ("http", "https") or not parts.hostname:
                # Retried as a download, it failed three times as if the network had (exit 3).
                raise RequirementsError(f"{where}: {printable(url)!r} is not an http(s) URL")
        size = file.get("size")
        locked.append(
            LockedFile(
                url if isinstance(url, str) else "",
                _lock_hashes(file.get(hash_key), where),
                size if isinstance(size, int) else None,
            )
        )
    if locked and all(file.url for file in locked):
        return locked, index_url, None
    # Files named without their URLs: looked up on the entry's index, the lock's hashes picking them.
    return [LockedFile("", file.hashes) for file in locked], index_url, None


def _not_a_release(entry: dict[str, Any], kind: str) -> str | None:
    """Why a lock entry is not a release on an index, or None when it is one."""
    if kind == "pylock":
        for key in ("vcs", "directory", "archive"):
            if key in entry:
                return f"a {key} entry, not an index release"
        return None
    source = entry.get("source")
    if kind == "uv":
        if not isinstance(source, dict):
            return None
        if "registry" in source:
            return None
        return f"source {', '.join(sorted(source))}, not an index release"
    # poetry
    if not isinstance(source, dict) or source.get("type") in (None, "", "legacy"):
        return None
    return f"source type {source.get('type')}, not an index release"


# ---------------------------------------------------------------------------------- requirements.txt

_HASH_ALGORITHMS = ("sha256", "sha384", "sha512")


def _requirements_error(err: Exception) -> RequirementsError:
    # The parser joins lines of its messages with a literal "|n". A file that cannot be opened may be named
    # by a -r/-c line whose ${VAR} pip would have expanded.
    return RequirementsError(str(err).replace("|n", ": ") + _unexpanded(str(err)))


_CARET_LINE = re.compile(r" *~*\^")
# pip's form of a variable it expands in requirement files.
_ENVIRONMENT_VARIABLE = re.compile(r"\$\{[A-Z0-9_]+\}")


def _unexpanded(text: str) -> str:
    """A note for a line holding ``${VAR}``: pip would have expanded it; this reader does not (so a pin
    or an index never depends on the environment a scan happens to run in)."""
    if not _ENVIRONMENT_VARIABLE.search(text):
        return ""
    return " (pip expands ${VAR} from the environment; dragonfly-hybrid does not: write the value itself)"


def _option_values(options: dict[str, Any]) -> list[str]:
    """The text values of a line's options (index URLs, hosts, files)."""
    values: list[str] = []
    for value in options.values():
        values.extend(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str))
    return values


def _printable_parser_message(message: str) -> str:
    """The parser's message (its reason, an excerpt of the line, a ``~~^`` line under the part it could not
    read) with each line printable, so that no escape sequence or bell of the file reaches a terminal; a
    caret line is widened where the excerpt above it grew, to stay under the same part."""
    lines = message.split("\n")
    shown = [printable(line) for line in lines]
    for index in range(1, len(lines)):
        excerpt, marks = lines[index - 1], lines[index]
        if _CARET_LINE.fullmatch(marks) and shown[index - 1] != excerpt:
            shown[index] = "".join(
                mark if mark == "^" else mark * len(printable(char))
                # A caret may point past the excerpt's end (a missing part): it is then the longer.
                for mark, char in zip_longest(marks, excerpt[: len(marks)], fillvalue=" ")
            )
    return "\n".join(shown)


def _read_requirements(path: Path, pins: Pins, *, constraint: bool = False) -> list[Any]:
    """pip's reading of a requirements file (a constraints file: ``constraint``; pip's own parser,
    ``pip-requirements-parser``): includes followed relative to the including file, options, ``--hash``,
    markers, continuations. Returns its requirements, for :func:`_check_hashes`."""
    # Imported here: it takes ~130 ms, which commands that read no requirements file should not pay.
    import pip_requirements_parser as parser_module  # type: ignore[import-untyped,import-not-found,unused-ignore]
    from pip_requirements_parser import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        InstallationError,
        RequirementsFile,
        auto_decode,
    )

    _add_pip26_options(parser_module)
    try:
        parsed = (
            _constraints_file(RequirementsFile, path)
            if constraint
            else RequirementsFile.from_file(str(path), include_nested=True)
        )
    except InstallationError as err:
        raise _requirements_error(err) from None
    except (ValueError, LookupError) as err:
        # Bytes not in the file's encoding, a coding line naming no text encoding, a -r/-c name with a
        # NUL byte: the parser does not say which file it was reading (this one, unless this one reads).
        try:
            auto_decode(path.read_bytes())
            where = f"a file {path} includes (-r/-c)"
        except (ValueError, LookupError, OSError):
            where = str(path)
        if isinstance(err, UnicodeDecodeError):
            raise RequirementsError(
                f"{where} is not {err.encoding} text (byte {err.start}: {err.reason})"
            ) from None
        if isinstance(err, LookupError):
            raise RequirementsError(f"{where}: its coding line names no text encoding ({err})") from None
        raise RequirementsError(f"{where}: cannot read it ({err})") from None
    if parsed.invalid_lines:
        bad = parsed.invalid_lines[0]
        if "maximum recursion depth" in bad.error_message:  # pip's parser follows -r/-c without a check
            raise RequirementsError(
                f"{path}: its -r/-c files include each other in a loop ({bad.filename} is one)"
            )
        raise RequirementsError(
            f"{bad.filename}:{bad.line_number}: cannot parse {bad.line!r}"
            + _unexpanded(bad.line)
            + ": "
            + _printable_parser_message(bad.error_message)
        )
    read = {str(path)} | {line.filename for line in (*parsed.requirements, *parsed.options, *parsed.comments)}
    for name in sorted(read):
        hidden = _line_of_a_latin1_pip(Path(name))
        if hidden is not None:
            # A piece of a URL cut at a password's `ą` is no URL redaction recognises: not quoted then.
            shown = "(not quoted: a URL in the file holds a secret)"
            with contextlib.suppress(OSError):
                text = Path(name).read_bytes().decode("utf-8", "replace")
                shown = repr(printable(hidden)) if redact_text(text) == text else shown
            # A note, not a refusal: pip 24.2 and later decode the file as UTF-8, as this reader does.
            pins.notes.append(
                f"{name}: pip before 24.2 under a Latin-1 locale reads a line {shown} in it that this reader "
                "(and pip 24.2 and later) does not: lines break elsewhere there, at the byte 0x85 of a "
                "character such as 'ą', not at U+2028 or U+2029; a first line '# -*- coding: utf-8 -*-' "
                "settles it"
            )
    for option in parsed.options:
        origin = f"{option.filename}:{option.line_number}"
        for value in _option_values(option.options):
            if _ENVIRONMENT_VARIABLE.search(value):
                raise RequirementsError(f"{origin}: {printable(value)!r}{_unexpanded(value)}")
        for value in option.options.get(_OWN_LINE_HASHES, ()):
            # pip checks a --hash value of any line as it parses it (its option's callback), then ignores
            # the line's hashes: no requirement takes them.
            algorithm, colon, _ = value.partition(":")
            if not colon or algorithm not in _HASH_ALGORITHMS:
                raise RequirementsError(
                    f"{origin}: --hash={printable(value)}: not ALGORITHM:VALUE with ALGORITHM one of "
                    f"{', '.join(_HASH_ALGORITHMS)} (pip refuses the file)"
                )
        # A --hash beside -r/-c is named in that line's note instead.
        beside_include = option.options.get(_IGNORED_BESIDE_INCLUDE, ())
        if option.options.get(_OWN_LINE_HASHES) and "--hash" not in beside_include:
            pins.notes.append(f"{origin}: pip ignores --hash on a line of its own (no requirement before it)")
        if option.options.get(_TRAILING):
            words = printable(redact_text(" ".join(option.options[_TRAILING])))
            pins.notes.append(
                f"{origin}: pip ignores {words!r} after an option (a requirement comes first on its line): "
                "not installed, not scanned"
            )
        if option.options.get(_IGNORED):
            pins.notes.append(
                f"{origin}: pip ignores {', '.join(option.options[_IGNORED])} on a requirement line (only "
                "--hash and -C/--config-settings apply to it there): not applied"
            )
        if option.options.get(_IGNORED_BESIDE_INCLUDE):
            pins.notes.append(
                f"{origin}: pip ignores {', '.join(option.options[_IGNORED_BESIDE_INCLUDE])} on a -r/-c line "
                "(only --no-binary, --only-binary, --all-releases, --only-final apply there, before the "
                "file's lines): not applied"
            )
        _read_option(option.options, origin, pins)
    entries = [r for r in parsed.requirements if not r.is_constraint]  # pip installs no constraint...
    for entry in parsed.requirements:
        refused = _refused_constraint(entry) if entry.is_constraint else None
        if refused is not None:  # pip refuses the whole file, as its resolver does (pip 23+)
            raise RequirementsError(f"{_origin(entry)}: {printable(entry.line.strip())!r}: {refused}")
        if entry.is_constraint:
            url = redact_text(entry.link.url) if entry.link is not None else None
            marker = str(entry.marker) if entry.marker is not None else None
            specifier = str(entry.specifier or "")  # None: a bare name, which admits every version
            hashes = frozenset(_pip_hash(h) for h in entry.hash_options or ())
            found = Constraint(normalize_name(entry.name), specifier, marker, url, _origin(entry), hashes)
            pins.settings = replace(pins.settings, constraints=(*pins.settings.constraints, found))
        if entry.is_constraint and entry.link is not None:
            # ...but a named one's URL or path is where pip takes that name from (a requirement's or a
            # dependency's), instead of the index.
            pins.skip(
                f"{_origin(entry)}: {entry.line.strip()}: a constraint to {_link_kind(entry)}, "
                "which pip installs that name from, not an index release"
            )
    for entry in entries:
        _read_entry(entry, pins)
    return entries


def _constraints_file(files: Any, path: Path) -> Any:
    """``path`` parsed as a constraints file (``RequirementsFile.from_file`` reads a requirements file)."""
    from pip_requirements_parser import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        CommentRequirementLine,
        InvalidRequirementLine,
        OptionLine,
    )

    read: dict[str, list[Any]] = {"requirements": [], "options": [], "invalid_lines": [], "comments": []}
    for line in files.parse(str(path), include_nested=True, is_constraint=True):
        kinds = [(InvalidRequirementLine, "invalid_lines"), (CommentRequirementLine, "comments")]
        kinds.append((OptionLine, "options"))
        read[next((key for kind, key in kinds if isinstance(line, kind)), "requirements")].append(line)
    return files(filename=str(path), **read)


def _line_of_a_latin1_pip(path: Path) -> str | None:
    """A line pip before 24.2 takes (a requirement, an option) in ``path`` when it decodes it as its locale
    asks (a file without a BOM or a coding line) and that locale's codec is Latin-1 (ISO-8859), that this
    reader (UTF-8, as pip 24.2 and later) does not take: lines break elsewhere there. The byte 0x85 of a
    UTF-8 character is NEL, a line break (``# Zo\u0105`` then ``foo==1.0``, as bytes ``#
    Zo\\xc4\\x85foo==1.0``); U+2028 and U+2029 are none (a comment swallows the line after one, and the
    continuation of that line becomes a line of its own). Lines are compared as bytes; a piece of a
    comment in Polish or Russian is no line pip takes. None too when pip refuses that reading: a piece
    that is no requirement (``хорошо`` but its first letter) stops it."""
    from pip_requirements_parser import (  # type: ignore[import-untyped,import-not-found,unused-ignore]
        BOMS,
        ENCODING_RE,
        InvalidRequirementLine,
        RequirementsFile,
    )

    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None  # read a moment ago in this locale's codec: the parser's answer stands
    declared = any(data.startswith(bom) for bom, _ in BOMS) or any(
        line[:1] == b"#" and ENCODING_RE.search(line) for line in data.split(b"\n")[:2]
    )
    latin1 = data.replace(b"\xc2\x85", b"\n")  # NEL itself (C2 85) ends a line in both readings
    if declared or not (b"\x85" in latin1 or b"\xe2\x80\xa8" in data or b"\xe2\x80\xa9" in data):
        return None

    def taken(text: str, codec: str) -> dict[bytes, str] | None:
        with tempfile.TemporaryDirectory() as directory:
            copy = Path(directory, "requirements.txt")
            copy.write_text("# -*- coding: utf-8 -*-\n" + text, encoding="utf-8")  # whatever this locale is
            parsed = RequirementsFile.from_file(str(copy), include_nested=False)
        if any(
            # pip stops at such a line and installs nothing. Not so sure: a line with a version operator (pip
            # 23 takes a legacy version, `foo==1.0Ä`), other errors (options pip ignores, `foo --pre`).
            type(bad) is InvalidRequirementLine
            and bad.error_message.startswith("Invalid requirement")
            and not re.search(r"[<>=!~]", str(bad.line))
            for bad in parsed.invalid_lines
        ):
            return None
        return {
            str(line.line).encode(codec): str(line.line) for line in (*parsed.requirements, *parsed.options)
        }

    ours = taken(text, "utf-8") or {}  # read without error a moment ago
    theirs = taken(latin1.decode("latin-1"), "latin-1") or {}
    return next((line for raw, line in theirs.items() if raw not in ours), None)


def _record_in_order(option: Any, opt_str: str, value: str, parser: Any) -> None:
    """An ``--all-releases``/``--only-final`` (or ``--no-binary``/``--only-binary``) of a line, kept in order
    with its value (flag, value, ...): pip applies each in turn."""
    recorded = getattr(parser.values, option.dest, None) or ()
    setattr(parser.values, option.dest, [*recorded, option.get_opt_string(), value])


def _check_config_setting(option: Any, opt_str: str, value: str, parser: Any) -> None:
    """A ``-C``/``--config-settings`` value: ``KEY=VAL``, else the line is refused, as pip refuses it."""
    if "=" not in value:
        parser.error(f"Arguments to {opt_str} must be of the form KEY=VAL")


# pip's option lines that pip 22's parser refuses as unknown options, as optparse keeps each: an
# --all-releases/--only-final line carries ``release_control`` (its flags and values in order), a
# --no-require-hashes line ``no_require_hashes`` (pip 26).
_PIP26_OPTIONS: dict[tuple[str, ...], dict[str, Any]] = {
    **{
        (flag,): {
            "dest": "release_control",
            "action": "callback",
            "type": "str",
            "callback": _record_in_order,
        }
        for flag in ("--all-releases", "--only-final")
    },
    ("--no-require-hashes",): {"dest": "no_require_hashes", "action": "store_true"},
}
# pip's per-requirement options that pip 22's parser refuses: -C/--config-settings (pip 23.1+) changes how
# pip builds an sdist, not which release or files it fetches: checked as pip checks it, then ignored.
_PIP26_REQUIREMENT_OPTIONS: dict[tuple[str, ...], dict[str, Any]] = {
    ("-C", "--config-settings"): {
        "dest": "config_settings",
        "action": "callback",
        "type": "str",
        "callback": _check_config_setting,
    },
}
# pip's --no-binary/--only-binary, which pip 22's parser keeps in two lists: one list in order, as pip applies
# them to one FormatControl (``--no-binary foo --only-binary foo`` leaves foo's sdists out).
_FORMAT_OPTION: dict[str, Any] = {
    "dest": "format_control",
    "action": "callback",
    "type": "str",
    "callback": _record_in_order,
}
# The parser's option lists are module globals, shared by every thread (the node's jobs, watch's rounds).
_PARSER_LOCK = threading.Lock()


def _requirement_option() -> optparse.Option:
    """pip's ``-r``/``--requirement``, without the parser's own ``--requirements`` (pip refuses that one)."""
    return optparse.Option("-r", "--requirement", dest="requirements", action="append", default=[])


def _add_pip26_options(parser_module: Any) -> None:
    """Teach the parser (pip 22's) :data:`_PIP26_OPTIONS` and :data:`_PIP26_REQUIREMENT_OPTIONS`, each
    option it does not know yet, and take away the options pip 26.3 does not know (``--requirements``,
    ``--install-option``, ``--global-option``, the legacy ``--allow-*``, ``-Z``, ``--no-use-wheel``): pip
    refuses a line with one, and optparse takes an abbreviation (``--all``, ``--in``) only when no other
    option begins so. Requirement lines' options are read as pip 26.3 reads them
    (:func:`_pip26_handle_line`). Once per process, whoever imported the parser first."""
    with _PARSER_LOCK:
        parser_module.LEGACY_OPTIONS.clear()
        parser_module.SUPPORTED_OPTIONS_REQ[:] = [
            factory
            for factory in parser_module.SUPPORTED_OPTIONS_REQ
            if factory().dest not in ("install_options", "global_options")
        ]
        parser_module.SUPPORTED_OPTIONS[:] = [
            _requirement_option if factory().dest == "requirements" else factory
            for factory in parser_module.SUPPORTED_OPTIONS
        ]
        if not isinstance(parser_module.handle_line, partial):
            parser_module.handle_line = partial(_pip26_handle_line, parser_module, parser_module.handle_line)
        files = parser_module.RequirementsFileParser
        if not getattr(files._parse_file, "pip26", False):
            files._parse_file = _pip26_parse_file(parser_module, files._parse_file)
        known = parser_module.build_parser()
        for factories, dests, table in (
            (parser_module.SUPPORTED_OPTIONS, parser_module.SUPPORTED_OPTIONS_DEST, _PIP26_OPTIONS),
            (
                parser_module.SUPPORTED_OPTIONS_REQ,
                parser_module.SUPPORTED_OPTIONS_REQ_DEST,
                _PIP26_REQUIREMENT_OPTIONS,
            ),
        ):
            for flags, how in table.items():
                if not any(known.has_option(flag) for flag in flags):
                    factories.append(partial(optparse.Option, *flags, **how))
                if how["dest"] not in dests:
                    dests.append(how["dest"])
        options = parser_module.SUPPORTED_OPTIONS
        for index, factory in enumerate(options):
            flag = factory().get_opt_string()
            if flag in ("--no-binary", "--only-binary") and factory().dest != _FORMAT_OPTION["dest"]:
                options[index] = partial(optparse.Option, flag, **_FORMAT_OPTION)
        if _FORMAT_OPTION["dest"] not in parser_module.SUPPORTED_OPTIONS_DEST:
            parser_module.SUPPORTED_OPTIONS_DEST.append(_FORMAT_OPTION["dest"])


# The key of the options pip ignores on a requirement line, in the option line made of its others.
_IGNORED = "ignored_on_a_requirement_line"
# The key of the options pip ignores on a -r/-c line, in that line's options.
_IGNORED_BESIDE_INCLUDE = "ignored_on_an_include_line"
# The key of the --hash values of an option line (pip checks them, then ignores them; the parser drops them).
_OWN_LINE_HASHES = "hashes_on_a_line_of_their_own"
# The key of the words after an option line's first option that no option takes (pip drops them unread).
_TRAILING = "trailing_words_of_an_option_line"
# The options whose callbacks change pip's finder as a line is parsed, whatever the line.
_CALLBACK_DESTS = ("release_control", "format_control")


def _pip26_parse_file(parser_module: Any, parse_file: Any) -> Any:
    """The parser's ``RequirementsFileParser._parse_file``, with a ``-r``/``-c`` line's ``--no-binary``,
    ``--only-binary``, ``--all-releases``, ``--only-final`` made an option line of their own before it:
    pip's callbacks apply them as it parses the line, before the lines of the file it includes (the parser
    yields the include line after those)."""

    def pip26_parse_file(self: Any, filename: str, is_constraint: bool) -> Any:
        for line in parse_file(self, filename=filename, is_constraint=is_constraint):
            option_line = isinstance(line, parser_module.ParsedLine) and not line.is_requirement
            values = line.options if option_line else None
            if values is not None and (values.requirements or values.constraints):
                carried = [dest for dest in _CALLBACK_DESTS if getattr(values, dest, None)]
                if carried:
                    own = optparse.Values({k: v if k in carried else None for k, v in vars(values).items()})
                    yield parser_module.ParsedLine(line.requirement_line, "", own, is_constraint)
                    for dest in carried:
                        setattr(values, dest, None)
            yield line

    pip26_parse_file.pip26 = True  # type: ignore[attr-defined]
    return pip26_parse_file


def _pip26_handle_line(parser_module: Any, handle_line: Any, parsed_line: Any) -> Any:
    """The parser's ``handle_line`` (its reading of a line), with a requirement line's options read as pip
    26.3 reads them, where the parser refused the line for any global option: ``--no-binary``,
    ``--only-binary``, ``--all-releases``, ``--only-final`` apply as on a line of their own (pip's callbacks
    change its finder's settings in place, whatever the line: an option line made of them comes first),
    ``-e`` makes pip refuse the line; the others pip ignores (named in that option line, for a note). A
    ``-r``/``-c`` line keeps its file alone: pip ignores its other options too, and its ``--hash`` (named,
    for a note). An option line's words that no option takes (``--pre foo==1.0``), which the parser refuses,
    pip drops (its optparse's leftover arguments): kept for a note."""
    trailing = [] if parsed_line.is_requirement else list(parsed_line.arguments)
    for parsed in handle_line(parsed_line=parsed_line):
        if trailing and isinstance(parsed, parser_module.IncorrectRequirementLine):
            continue  # the parser's "Incorrect and ignored trailing argument(s)": pip reads the rest
        if isinstance(parsed, parser_module.ParsedRequirement):
            values, invalid = parsed_line.options, parsed.invalid_options or {}
            carried = {
                dest: getattr(values, dest)
                for dest in ("release_control", "format_control")
                if getattr(values, dest, None)
            }
            ignored = [dest for dest in invalid if dest in parser_module.SUPPORTED_OPTIONS_DEST]
            ignored = [dest for dest in ignored if dest != "editables"]
            if ignored:
                carried[_IGNORED] = [parser_module.OPT_BY_OPTIONS_DEST[dest] for dest in ignored]
            if carried:
                yield parser_module.OptionLine(requirement_line=parsed_line.requirement_line, options=carried)
            parsed.invalid_options = {dest: value for dest, value in invalid.items() if dest not in ignored}
        elif isinstance(parsed, parser_module.OptionLine):
            if trailing:
                parsed.options[_TRAILING] = trailing
            if getattr(parsed_line.options, "hashes", None):
                parsed.options[_OWN_LINE_HASHES] = list(parsed_line.options.hashes)
            if parsed.options.get("requirements") or parsed.options.get("constraints"):
                # pip follows a -r/-c line and applies none of its other options (its index, --pre, ...);
                # it checks a --hash value (its callback), then drops it, without its own line's warning.
                ignored = [dest for dest in parsed.options if dest in parser_module.SUPPORTED_OPTIONS_DEST]
                ignored = [dest for dest in ignored if dest not in ("requirements", "constraints")]
                hashed = ["--hash"] if parsed.options.get(_OWN_LINE_HASHES) else []
                if ignored or hashed:
                    parsed.options[_IGNORED_BESIDE_INCLUDE] = [
                        *(parser_module.OPT_BY_OPTIONS_DEST[dest] for dest in ignored),
                        *hashed,
                    ]
                    for dest in ignored:
                        del parsed.options[dest]
        yield parsed


def _read_option(options: dict[str, Any], origin: str, pins: Pins) -> None:
    """Option lines that decide where releases come from, or which of them (``--pre``, ``--all-releases``,
    ``--only-final``: over pip's settings, as pip 26.3 applies them, in order; a ``--pre`` line adds
    ``:all:`` to ``all-releases`` without pip's refusal of ``pre`` with them), or which of their files pip
    takes (``--no-binary``, ``--only-binary``, in order over pip's settings; ``--prefer-binary``); the
    others do not change what is fetched."""
    control, formats = pins.settings.release_control, pins.settings.format_control
    releases, binaries = options.get("release_control", []), options.get("format_control", [])
    try:
        for flag, value in zip(releases[::2], releases[1::2], strict=True):
            control = control.apply(flag.removeprefix("--"), value, origin)
        for flag, value in zip(binaries[::2], binaries[1::2], strict=True):
            formats = formats.apply(flag.removeprefix("--"), value, origin)
    except PipConfigError as err:
        raise RequirementsError(str(err).replace("pip's ", "--", 1)) from None
    if options.get("pre"):  # after the line's other release options, as pip applies it
        control = control.with_pre()
    pins.settings = pins.settings.overlay(
        index_url=options.get("index_url"),
        extra_index_urls=tuple(options.get("extra_index_urls", ())),
        trusted_hosts=tuple(options.get("trusted_hosts", ())),
        refused=(
            *((f"--no-index ({origin})",) if options.get("no_index") else ()),
            *((f"--find-links ({origin})",) if options.get("find_links") else ()),
        ),
        release_control=control,
        format_control=formats,
        prefer_binary=f"--prefer-binary ({origin})" if options.get("prefer_binary") else None,
    )
    if options.get("require_hashes"):
        pins.require_hashes = f"--require-hashes ({origin})"
    if options.get("no_require_hashes"):
        pins.no_require_hashes = f"--no-require-hashes ({origin})"


def _refused_constraint(entry: Any) -> str | None:
    """Why pip refuses a constraint line, as its resolver words it, if it does."""
    if not entry.name:
        return "Unnamed requirements are not allowed as constraints (pip)"
    if entry.is_editable:
        return "Editable requirements are not allowed as constraints (pip)"
    if entry.extras:
        return "Constraints cannot have extras (pip)"
    return None


def _origin(entry: Any) -> str:
    return f"{entry.filename}:{entry.line_number}"


def _link_kind(entry: Any) -> str:
    """What the URL or path of a line with one names."""
    remote = entry.link.scheme in ("http", "https", "ftp")
    return "a VCS checkout" if entry.is_vcs_url else "a URL" if remote else "a local path"


def _pip_hash(option: str) -> str:
    """A ``--hash`` value as pip compares it: the algorithm's name as written (``SHA256`` is refused), the
    digest lower-cased."""
    algorithm, _, digest = option.partition(":")
    return f"{algorithm}:{digest.lower()}"


def _read_entry(entry: Any, pins: Pins) -> None:
    origin = _origin(entry)
    line = entry.line.strip()
    if entry.is_editable:
        pins.skip(f"{origin}: {line}: an editable project, not an index release")
        return
    if entry.link is not None:
        pins.skip(f"{origin}: {line}: {_link_kind(entry)}, not an index release")
        return
    specifiers = list(entry.specifier or ())
    exact = [s for s in specifiers if s.operator in ("==", "===") and "*" not in s.version]
    if len(specifiers) != 1 or not exact:
        raise RequirementsError(
            f"{origin}: {entry.req!s} is not pinned to one version (name==version); pin it "
            "(pip-compile, uv pip compile) or give the release to scan as a target"
        )
    hashes = frozenset(map(_pip_hash, entry.hash_options))
    for value in hashes:
        algorithm, _, digest = value.partition(":")
        if algorithm not in _HASH_ALGORITHMS or not re.fullmatch(r"[0-9a-f]+", digest):
            raise RequirementsError(
                f"{origin}: --hash={value}: not ALGORITHM:HEX with ALGORITHM one of "
                + ", ".join(_HASH_ALGORITHMS)
            )
    pins.add(Pin(entry.name, exact[0].version, origin, hashes, str(entry.filename), entry.line_number))


def _take_constraint_hashes(entries: list[Any], pins: Pins, python: Version) -> set[str]:
    """pip 26.3 checks a requirement without ``--hash`` of its own against the hashes of its name's
    constraints whose markers hold on ``python`` (those all of them allow): each such pin of a line takes
    them (a lock's entry takes no constraint), unless another line of its name has hashes (scanned as
    before). Returns the names that took some, for :func:`_check_hashes`."""
    hashed = [c for c in pins.settings.constraints if c.hashes]
    own = {normalize_name(e.name) for e in entries if e.hash_options and e.name}
    taken: set[str] = set()
    kept: list[Pin] = []
    for pin in pins.pins:
        project = normalize_name(pin.name)
        constraints = [c for c in hashed if c.name == project and c.applies(python)]
        if pin.hashes or pin.line is None or project in own or not constraints:
            kept.append(pin)
            continue
        allowed = frozenset.intersection(*(c.hashes for c in constraints))
        if allowed:  # none: pip takes none, as a line without hashes (refused in hash-checking mode)
            taken.add(project)
        kept.append(replace(pin, hashes=allowed))
    pins.keep_only(kept)
    return taken


def _check_hashes(entries: list[Any], pins: Pins, constrained: set[str]) -> None:
    """pip's hash-checking mode: once ``--require-hashes`` is given or any requirement or constraint has a
    ``--hash`` (but with pip 26's ``--no-require-hashes``), every requirement must be pinned with ``==``
    and carry hashes (or take its ``constrained`` name's, pip 26.3)."""
    hashed = next((e for e in entries if e.hash_options), None)
    why = hash_checking_mode(
        pins.require_hashes,
        pins.no_require_hashes,
        pins.settings.constraints,
        None if hashed is None else f"{hashed.filename}:{hashed.line_number}",
    )
    if why is None:
        return
    pins.hash_mode = why
    hashed_names = {normalize_name(e.name) for e in entries if e.hash_options and e.name} | constrained
    for entry in entries:
        origin = _origin(entry)
        if entry.link is not None and entry.hash_options and not entry.is_editable and not entry.is_vcs_url:
            continue  # a URL or file pip checks by its hashes: taken (skipped: not an index release)
        if entry.link is not None or entry.is_editable:
            raise RequirementsError(
                f"{origin}: {entry.line.strip()}: in hash-checking mode (turned on by {why}) pip refuses "
                "requirements that are not name==version releases or URLs with --hash"
            )
        exact = [s for s in entry.specifier or () if s.operator in ("==", "===")]
        # pip takes a name's line without --hash when another line of that name has them (the hashes of
        # all its lines combine): not refused, and scanned for any file, as before.
        unhashed = not entry.hash_options and normalize_name(entry.name) not in hashed_names
        if unhashed or len(list(entry.specifier or ())) != 1 or not exact:
            raise RequirementsError(
                f"{origin}: {entry.req!s}: in hash-checking mode (turned on by {why}) every requirement "
                "must be pinned with == and have --hash options, as pip requires"
            )


def looks_like_requirements(path: Path) -> bool:
    """True when ``path`` is a small text file that pip reads as a requirements file with at least one
    requirement (YARA sources never parse as one: their ``{`` lines are not requirements)."""
    try:
        if not path.is_file() or path.stat().st_size > 1_000_000:
            return False
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    lines = [line.split(" #")[0].strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    from packaging.requirements import InvalidRequirement, Requirement  # its parser: ~20 ms to import

    requirements = 0
    for line in lines:
        if line.startswith("-"):
            continue
        try:  # up to the line's first option, as pip splits it (`--hash`, `-C KEY=VAL`, ...)
            Requirement(
                " ".join(takewhile(lambda token: not token.startswith("-"), line.split(" "))).rstrip("\\ ")
            )
        except InvalidRequirement:
            return False
        requirements += 1
    return requirements > 0
