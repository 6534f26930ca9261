"""Pieces shared by the CLI's commands: the `error:` line, loading rules with exit code 2, sizes, and the
options that ``scan`` and ``watch`` both take (scanning threads, download cap, per-archive limits).

Every numeric option has the range of the setting it mirrors (``config.MAX_*``): a value outside it, NaN
or infinity is a usage error (exit 2) naming the flag, before anything runs."""

from __future__ import annotations

import functools
import inspect
import math
import os
import re
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer

from dragonfly_hybrid._core import MAX_NESTING_DEPTH, Limits, Rules
from dragonfly_hybrid.bounds import (
    DEFAULT_LIMITS,
    MAX_BYTES,
    MAX_MEMBERS,
    MAX_RATIO,
    MAX_SCAN_TIMEOUT,
    MIN_SCAN_TIMEOUT,
    threads_problem,
)
from dragonfly_hybrid.cli.base import int_option
from dragonfly_hybrid.errors import NoRulesError, RuleCompileError, RulesFormatError
from dragonfly_hybrid.redaction import redact_text
from dragonfly_hybrid.report import EXIT_USAGE
from dragonfly_hybrid.rules_loader import load_rules, rule_source_files, rules_cache_dir, shown_path

if TYPE_CHECKING:
    # The store (sqlite3, the index client's helpers: ~6 ms) is imported where one is opened: a scan of
    # local files without a store never needs it.
    from dragonfly_hybrid.store.db import Store

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_UNITS = {
    "": 1, "b": 1,
    "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}  # fmt: skip
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


EXIT_INTERRUPTED = 130
"""Ctrl-C: the shell's convention (128 + SIGINT)."""


def finish(code: int) -> NoReturn:
    """End a command that has written everything with exit ``code``: ``typer.Exit``, or, when the process is
    the program (``dragonfly_hybrid.cli.run``), at once: stdout and stderr flushed, then ``os._exit``.
    Unwinding and finalising the interpreter freed a big report one object at a time (25 ms of a 0.5 s scan
    of 50,000 files); the operating system frees the whole process in one go. A flush that fails (a
    closed pipe) raises as it would at exit."""
    import dragonfly_hybrid.cli as cli

    if not cli.exit_at_once:
        raise typer.Exit(code)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_service(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` for a command that is a service (``node``, ``watch``). Once it has ended, a
    SIGTERM or SIGINT has nothing left to stop and is ignored while the process exits: closing its loop,
    asyncio put their default actions back, so a second signal as a drained service ended (a
    supervisor's, a user's) killed it (143) or raised ``KeyboardInterrupt`` in its last lines, where it
    exits 0. Only when the process is the program: in process (tests, embedding) the caller's stay."""
    import asyncio

    import dragonfly_hybrid.cli as cli

    try:
        return asyncio.run(main)
    finally:
        if cli.exit_at_once:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_IGN)


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print ``error: message`` on stderr and exit. The message is redacted first (:func:`redact_text`: no
    remembered secret, no URL's credentials or query values), whatever it quotes (a line of a requirements
    file, a server's answer)."""
    print(f"error: {redact_text(message)}", file=sys.stderr)
    raise typer.Exit(code)


def open_store(path: Path, *, readonly: bool = False) -> Store:
    """The results store at ``path``; exits 2 when it cannot be opened (or when its directory does not
    exist, unless it is the default location)."""
    from dragonfly_hybrid.store.db import Store, StoreError, is_default_location

    try:
        return Store(path, readonly=readonly, create_parents=is_default_location(path))
    except (StoreError, OSError) as err:
        fail(f"cannot open the store: {err}")


def _compile_diagnostics(err: RuleCompileError, paths: Sequence[Path]) -> str:
    try:
        files = {origin: shown_path(path) for origin, path in rule_source_files(paths).items()}
    except (OSError, ValueError):  # the paths changed since they were read: name the origins
        files = {}
    lines = [
        f"{files.get(origin, origin)}:{line}:{column}: {_shown_places(message, files)}"
        for origin, line, column, message in err.diagnostics
    ]
    return "\n".join(lines) if lines else str(err)


def _shown_places(message: str, files: dict[str, str]) -> str:
    """``message`` with the other places it points at (``(...: origin:line:column)``, a duplicate rule's
    first declaration) named by their paths, as the diagnostic's own place is."""
    if not files:
        return message
    origins = "|".join(re.escape(origin) for origin in sorted(files, key=len, reverse=True))
    return re.sub(rf"(?<=: )({origins})(?=:\d+:\d+\))", lambda found: files[found.group(1)], message)


def load_rules_or_exit(paths: Sequence[Path]) -> Rules:
    """Load rules or exit 2 with a precise reason (compile diagnostics as ``file:line:column: message``; a
    set without rules is refused, naming its sources); sources compiled before are loaded from the rules
    cache (``rules_loader.rules_cache_dir``)."""
    shown = ", ".join(shown_path(p) for p in paths) or "the bundled rule set"
    try:
        return load_rules(paths, cache_dir=rules_cache_dir())
    except RuleCompileError as err:
        count = len(err.diagnostics) or 1
        fail(f"rules do not compile ({count} error(s)):\n{_compile_diagnostics(err, paths)}")
    except RulesFormatError as err:
        fail(f"cannot load compiled rules from {shown}: {err}")
    except NoRulesError as err:
        fail(str(err))
    except OSError as err:
        where = f" {shown_path(err.filename)}" if err.filename else ""
        fail(f"cannot read rules{where}: {err.strerror or err}")
    except ValueError as err:
        fail(f"cannot load rules from {shown}: {err}")


# ------------------------------------------------------------------------------------------------ sizes


def parse_size(value: str | int) -> int:
    """A byte count: a plain integer or one with a K/M/G (x1000) or KiB/MiB/GiB (x1024) suffix."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    unit = _UNITS.get(match.group(2).lower()) if match else None
    if match is None or unit is None:
        raise ValueError(f"{value!r} is not a size (examples: 5000000, 500K, 128M, 2G, 64MiB)")
    size = float(match.group(1)) * unit
    if not math.isfinite(size):  # past a float's range (309 digits): infinity, no integer
        raise ValueError(f"{value!r} is too large a size")
    return int(size)


def _size_parser(low: int, high: int) -> Callable[[str | int], int]:
    def parse(value: str | int) -> int:
        try:
            size = parse_size(value)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
        if not low <= size <= high:
            raise typer.BadParameter(f"must be from {low} to {high} bytes")
        return size

    return parse


def size_option(help_text: str, *, low: int = 1, high: int = MAX_BYTES) -> typer.models.OptionInfo:
    """An option whose value is a size (``parse_size``) from ``low`` to ``high`` bytes; a bad one is a
    usage error (exit 2) naming the flag."""
    option: typer.models.OptionInfo = typer.Option(
        help=help_text, parser=_size_parser(low, high), metavar="SIZE"
    )
    return option


def _seconds_parser(low: float, high: float) -> Callable[[str | float], float]:
    def parse(value: str | float) -> float:
        try:
            seconds = float(value)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not a number of seconds") from None
        if not (math.isfinite(seconds) and low <= seconds <= high):  # NaN fails every comparison
            raise typer.BadParameter(f"must be a finite number of seconds from {low:g} to {high:g}")
        return seconds

    return parse


def seconds_option(help_text: str, *, low: float, high: float) -> typer.models.OptionInfo:
    """An option whose value is a duration from ``low`` to ``high`` seconds; NaN, infinity or a value out
    of range is a usage error (exit 2) naming the flag, with the range in the message."""
    option: typer.models.OptionInfo = typer.Option(
        help=help_text, parser=_seconds_parser(low, high), metavar="SECONDS"
    )
    return option


def _check_threads(value: int | None) -> int | None:
    problem = None if value is None else threads_problem(value)
    if problem is not None:
        raise typer.BadParameter(problem)
    return value


# ------------------------------------------------------------------------------------- shared options

ThreadsOption = Annotated[
    int | None,
    typer.Option(
        help="Scanning threads, at most 4 per available core. Default: one per available core.",
        callback=_check_threads,
        show_default=False,
        metavar="N",
    ),
]
MaxDownloadSizeOption = Annotated[
    int,
    size_option("Largest file downloaded from the index; a larger one makes the release incomplete."),
]
PythonVersionOption = Annotated[
    str | None,
    typer.Option(
        help="For a bare `name`: pick the latest release whose Requires-Python admits this Python "
        "(X.Y or X.Y.Z). Default: the running Python.",
        metavar="X.Y",
        show_default=False,
    ),
]


def extra_index_url_option(also_from: str = "") -> typer.models.OptionInfo:
    """``--extra-index-url``, whose indexes are added to ``also_from`` (e.g. "those of the -R files, ") and
    pip's."""
    return typer.Option(
        help="Another index to look projects up on (their files are merged, as pip does), added to "
        f"{also_from}PIP_EXTRA_INDEX_URL and pip's configuration. Repeatable.",
        metavar="URL",
        show_default=False,
    )


_LIMIT_OPTIONS: dict[str, tuple[object, object]] = {
    "max_member_size": (
        Annotated[int, size_option("Largest archive member scanned, inflated; a larger one is an issue.")],
        DEFAULT_LIMITS.max_member_size,
    ),
    "max_total_size": (
        Annotated[int, size_option("Most bytes inflated per distribution; the rest is an issue.")],
        DEFAULT_LIMITS.max_total_size,
    ),
    "max_members": (
        Annotated[int, int_option("Most members scanned per distribution.", low=1, high=MAX_MEMBERS)],
        DEFAULT_LIMITS.max_members,
    ),
    "max_ratio": (
        Annotated[
            int,
            int_option("Highest compression ratio accepted per member (N:1).", low=1, high=MAX_RATIO),
        ],
        DEFAULT_LIMITS.max_ratio,
    ),
    "max_depth": (
        Annotated[
            int,
            int_option("How deep nested archives are opened (0: not at all).", low=0, high=MAX_NESTING_DEPTH),
        ],
        DEFAULT_LIMITS.max_depth,
    ),
    "timeout": (
        Annotated[
            float,
            seconds_option(
                "YARA-X timeout per file, in seconds.", low=MIN_SCAN_TIMEOUT, high=MAX_SCAN_TIMEOUT
            ),
        ],
        DEFAULT_LIMITS.timeout,
    ),
}


def limit_options(command: Callable[P, R]) -> Callable[P, R]:
    """Give a command the per-archive limit options (``--max-member-size``, ``--max-total-size``,
    ``--max-members``, ``--max-ratio``, ``--max-depth``, ``--timeout``) in place of its ``limits``
    parameter, which then receives them as one :class:`Limits` (out-of-range values exit 2)."""
    signature = inspect.signature(command, eval_str=True)
    parameters: list[inspect.Parameter] = []
    for parameter in signature.parameters.values():
        if parameter.name != "limits":
            parameters.append(parameter)
            continue
        parameters.extend(
            inspect.Parameter(name, parameter.kind, default=default, annotation=annotation)
            for name, (annotation, default) in _LIMIT_OPTIONS.items()
        )
    if len(parameters) == len(signature.parameters):
        raise TypeError(f"{command.__name__} has no 'limits' parameter")

    @functools.wraps(command)
    def with_limits(*args: P.args, **kwargs: P.kwargs) -> R:
        values = {name: kwargs.pop(name) for name in _LIMIT_OPTIONS}
        try:
            kwargs["limits"] = Limits(**values)  # type: ignore[arg-type]
        except (ValueError, OverflowError) as err:
            fail(f"invalid limits: {err}")
        return command(*args, **kwargs)

    with_limits.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    return with_limits
