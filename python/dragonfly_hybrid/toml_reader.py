"""Reading a TOML file (the node's configuration file, lock files) with one error message per problem."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


class TomlError(ValueError):
    """The file is missing, unreadable or not valid TOML; the message names the file."""


def read_toml(path: Path) -> dict[str, Any]:
    """The document in ``path``; :class:`TomlError` when it cannot be had."""
    # Imported here: a scan without lock files does not read TOML.
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise TomlError(f"{path} does not exist") from None
    except OSError as err:
        raise TomlError(f"cannot read {path}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise TomlError(f"{path} is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:  # TOML is UTF-8: tomllib decodes the bytes before parsing them
        raise TomlError(f"{path} is not UTF-8 text (byte {err.start}: {err.reason})") from None
    except (ValueError, RecursionError) as err:  # a number past Python's 4300 digits; arrays nested deep
        raise TomlError(f"{path} is not valid TOML: {type(err).__name__}: {err}") from None
