"""Loading rule sets from disk: directories of sources, single files, compiled blobs, the bundled set."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from dragonfly_hybrid._core import COMPILED_RULES_MAGIC, Rules

RULE_SUFFIXES = (".yar", ".yara")

StrPath = str | os.PathLike[str]


def bundled_rules_dir() -> Path:
    """The directory of the rule set that ships with the package."""
    return Path(__file__).with_name("rules")


def bundled_rules() -> Rules:
    """Compile the bundled default rule set."""
    return load_rules([bundled_rules_dir()])


def _sources_in_directory(directory: Path) -> dict[str, str]:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in RULE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no .yar or .yara files under {directory}")
    # Origins are relative to the directory so the rule-set hash does not depend on where it lives.
    return {p.relative_to(directory).as_posix(): p.read_text(encoding="utf-8") for p in files}


def load_rules(paths: Iterable[StrPath] = ()) -> Rules:
    """Load rules from directories (read recursively for .yar/.yara), source files or one compiled blob.

    With no paths, the bundled rules. Raises ``RuleCompileError`` naming file and line when a source does
    not compile, ``RulesFormatError`` for a damaged blob, ``OSError`` when a path cannot be read.
    """
    given = [Path(p) for p in paths] or [bundled_rules_dir()]
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
    return Rules.compile(sources)
