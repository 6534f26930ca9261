"""Pinned dependencies from requirements files and lock files, for ``scan --requirements FILE``.

Formats, chosen by file name:

* ``pylock.toml`` / ``pylock.*.toml`` (PEP 751): every ``[[packages]]`` entry with a ``version``;
* ``uv.lock``: every ``[[package]]`` whose ``source`` is a registry;
* ``poetry.lock``: every ``[[package]]`` without a ``source``, or with a ``legacy`` (index) source;
* anything else is a pip requirements file: ``name==version`` or ``name===version`` lines (extras,
  environment markers, ``--hash`` options and ``\\`` continuations allowed), ``-r``/``--requirement`` and
  ``-c``/``--constraint`` files followed (relative to the including file), other options ignored.

Entries that are not releases on an index (a local directory, a VCS checkout, a URL, an editable
project) are listed in :attr:`Pins.skipped` with the reason; they cannot be resolved by name and version.
A requirement that is not pinned to one version (``requests>=2``, ``flask``, ``==1.*``) is a
:class:`RequirementsError`, naming the file and line: what would be scanned would not be what is
installed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement

from dragonfly_hybrid.pypi.index import normalize_name
from dragonfly_hybrid.toml_reader import TomlError, read_toml


class RequirementsError(ValueError):
    """A file that cannot be read or parsed, or a requirement that is not pinned."""


@dataclass(frozen=True)
class Pin:
    """One pinned dependency and where it was found (``file:line`` or ``file``)."""

    name: str
    version: str
    origin: str

    @property
    def spec(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass
class Pins:
    pins: list[Pin] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """``origin: name: reason`` of each entry that is not an index release."""

    def add(self, pin: Pin) -> None:
        key = (normalize_name(pin.name), pin.version)
        if all((normalize_name(p.name), p.version) != key for p in self.pins):
            self.pins.append(pin)


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


def read_pins(paths: list[Path]) -> Pins:
    """Every pinned release in ``paths`` (in order, duplicates removed)."""
    pins = Pins()
    for path in paths:
        kind = lock_format(path)
        if kind == "requirements":
            _read_requirements(path, pins, set())
        else:
            _read_lock(path, kind, pins)
    return pins


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
        reason = _not_a_release(entry, kind)
        version = entry.get("version")
        if reason is None and not isinstance(version, str):
            reason = "no version"
        if reason is not None:
            pins.skipped.append(f"{origin}: {name}: {reason}")
            continue
        assert isinstance(version, str)
        pins.add(Pin(name, version, origin))


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

_OPTION_WITH_FILE = re.compile(r"^(-r|--requirement|-c|--constraint)(?:\s+|=)(\S+)$")
_HASH = re.compile(r"\s--hash(?:=|\s+)\S+")


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Lines with comments removed and ``\\`` continuations joined, with their first line number."""
    out: list[tuple[int, str]] = []
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        if pending.strip():
            out.append((start, pending.strip()))
        pending = ""
    if pending.strip():
        out.append((start, pending.strip()))
    return out


def _read_requirements(path: Path, pins: Pins, seen: set[Path]) -> None:
    resolved = path.resolve()
    if resolved in seen:
        return
    seen.add(resolved)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise RequirementsError(f"cannot read {path}: {err.strerror or err}") from err
    except UnicodeDecodeError as err:
        raise RequirementsError(f"{path}: not UTF-8 text") from err
    for number, line in _logical_lines(text):
        origin = f"{path}:{number}"
        included = _OPTION_WITH_FILE.match(line)
        if included:
            _read_requirements(path.parent / included.group(2), pins, seen)
            continue
        if line.startswith(("-e", "--editable")):
            pins.skipped.append(f"{origin}: {line}: an editable project, not an index release")
            continue
        if line.startswith("-"):
            continue  # --index-url, --extra-index-url, --no-binary, ...: not requirements
        _read_requirement_line(_HASH.sub("", " " + line).strip(), origin, pins)


def _read_requirement_line(line: str, origin: str, pins: Pins) -> None:
    try:
        requirement = Requirement(line)
    except InvalidRequirement as err:
        if "/" in line or line.startswith("."):
            pins.skipped.append(f"{origin}: {line}: a local path, not an index release")
            return
        raise RequirementsError(f"{origin}: cannot parse {line!r}: {err}") from err
    if requirement.url:
        pins.skipped.append(f"{origin}: {requirement.name}: a URL requirement, not an index release")
        return
    specifiers = list(requirement.specifier)
    exact = [s for s in specifiers if s.operator in ("==", "===") and "*" not in s.version]
    if len(specifiers) != 1 or not exact:
        raise RequirementsError(
            f"{origin}: {line!r} is not pinned to one version (name==version); pin it "
            "(pip-compile, uv pip compile) or give the release to scan as a target"
        )
    pins.add(Pin(requirement.name, exact[0].version, origin))
