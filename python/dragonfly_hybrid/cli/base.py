"""The command classes every ``dragonfly-hybrid`` command is built with, and the options they share that
typer would otherwise describe with Python types.

* Help names values in words: a flag shows no type, an argument shows its metavar only (never
  ``<list[str]>``), and the options built here (:func:`choice_option`, :func:`int_option`) carry a
  metavar and check their own range, so no ``<int range> [x>=1]`` appears.
* A closed stdout (the reader went away: ``... | head``) ends any command quietly with
  :data:`EXIT_CLOSED_PIPE`, never 1 (findings) and never with a traceback.
* Option values are coerced here, not by typer: typer 0.29 builds a pydantic ``TypeAdapter`` for every
  parameter it parses (importing pydantic and building the adapters costs ~85 ms of a ~250 ms start-up).
  Parameters annotated ``str``, ``int``, ``float``, ``bool``, ``Path``, ``list[...]`` of these, or carrying a
  ``parser=``, get a plain coercer with the same results and the same messages (a bad value is a usage
  error, exit 2, naming the option); any other annotation keeps typer's own coercion.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast, get_args, get_origin

import typer
from typer._click import Command as ClickCommand
from typer._click import Context as ClickContext  # typer's own click, which its commands are built on
from typer._click import HelpFormatter
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from dragonfly_hybrid.closed_pipe import EXIT_CLOSED_PIPE, exit_closed_pipe
from dragonfly_hybrid.report import EXIT_USAGE

if TYPE_CHECKING:
    from typer._coercion import RuntimeParam

__all__ = [
    "EXIT_CLOSED_PIPE",
    "DragonflyCommand",
    "DragonflyGroup",
    "choice_option",
    "exit_closed_pipe",
    "int_option",
]


class _ArgumentNamedByMetavar(TyperArgument):
    """An argument whose help shows its metavar (``TARGET``), not its Python type."""

    def display_type_rich(self, ctx: ClickContext) -> str | None:
        return None


def _describe_in_words(param: object) -> None:
    if isinstance(param, TyperOption) and param.is_flag:
        param.metavar = ""  # a flag takes no value
    elif isinstance(param, TyperArgument):
        # Same fields, one method overridden: typer offers no hook to choose an argument's class.
        param.__class__ = _ArgumentNamedByMetavar


_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*(?:\.0*)?")
_TRUE_WORDS = frozenset({"1", "on", "t", "true", "y", "yes"})
_FALSE_WORDS = frozenset({"", "0", "off", "f", "false", "n", "no"})


def _to_str(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _to_int(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = value.strip() if isinstance(value, str) else ""
    # ASCII digits only: int() would also take other scripts' digits, which typer's coercion refuses
    if not text.isascii() or _WHOLE_NUMBER.fullmatch(text) is None:
        raise typer.BadParameter("Input should be a valid integer, unable to parse string as an integer")
    try:
        return int(text.partition(".")[0])
    except ValueError:  # past Python's 4300 digits: no option's range comes near
        raise typer.BadParameter("Input is too large a number") from None


def _to_float(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = value.strip() if isinstance(value, str) else ""
    if text.isascii():  # as for a whole number
        try:
            return float(text)
        except ValueError:
            pass
    raise typer.BadParameter("Input should be a valid number, unable to parse string as a number")


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    word = value.strip().lower() if isinstance(value, str) else None
    if word in _TRUE_WORDS:
        return True
    if word in _FALSE_WORDS:
        return False
    raise typer.BadParameter("Input should be a valid boolean, unable to interpret input")


_PLAIN_CONVERTERS: dict[Any, Callable[[Any], Any]] = {
    str: _to_str,
    int: _to_int,
    float: _to_float,
    bool: _to_bool,
}


class _PlainCoercion:
    """Coerces one parameter's value as typer's ``RuntimeParam.coerce`` would, without pydantic."""

    def __init__(self, convert: Callable[[Any, ClickContext, Any], Any]) -> None:
        self._convert = convert

    def coerce(self, value: Any, param: Any, ctx: ClickContext) -> Any:
        many = param.multiple or param.nargs == -1
        if value is None:
            return () if many else None
        if not many:
            return self._convert(value, ctx, param)
        if isinstance(value, str):
            raise typer.BadParameter("Value must be an iterable.", ctx=ctx, param=param)
        return [self._convert(item, ctx, param) for item in value]


def _path_converter(parameter_info: Any) -> Callable[[Any, ClickContext, Any], Any] | None:
    try:
        # typer's own check (readable, exists...) once the value is a Path, which needs no pydantic
        from typer._param_types import coerce_cli_path
    except ImportError:
        return None

    def convert(value: Any, ctx: ClickContext, param: Any) -> Any:
        if isinstance(value, str) and not value:
            # Path("") is ".": `--rules "$UNSET"` would read the current directory's rules.
            raise typer.BadParameter("an empty path names no file (an unset variable?)", ctx=ctx, param=param)
        path = value if isinstance(value, Path) else Path(value)
        return coerce_cli_path(path, parameter_info, path_type=Path, param=param, ctx=ctx)

    return convert


def _parsed_by(parser: Callable[[Any], Any]) -> Callable[[Any, ClickContext, Any], Any]:
    def convert(value: Any, ctx: ClickContext, param: Any) -> Any:
        try:
            return parser(value)
        except ValueError as error:  # a parser's refusal is the user's bad value, as with typer's coercion
            raise typer.BadParameter(f"Value error, {error}") from error

    return convert


def _plain_converter(annotation: Any, parameter_info: Any) -> Callable[[Any, ClickContext, Any], Any] | None:
    """How to convert one value of a parameter annotated ``annotation``; None: leave it to typer."""
    parser = parameter_info.parser
    if parser is not None:
        return _parsed_by(parser)
    converter = _PLAIN_CONVERTERS.get(annotation)
    if converter is not None:
        return lambda value, ctx, param: converter(value)
    if annotation is Path and parameter_info.path_type is None:
        return _path_converter(parameter_info)
    return None


def _coerce_without_pydantic(param: object) -> None:
    """Give ``param`` a plain coercer when its annotation is a simple one (see module doc)."""
    if not isinstance(param, (TyperOption, TyperArgument)):
        return
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None or getattr(param, "_runtime_param", ...) is not None:
        return  # not the typer this was written for, or its coercion is already built
    annotation = descriptor.annotation
    many = param.multiple or param.nargs == -1
    if many != (get_origin(annotation) is list):
        return
    if many:
        (annotation,) = get_args(annotation)
    convert = _plain_converter(annotation, descriptor.parameter_info)
    if convert is not None:
        param._runtime_param = cast("RuntimeParam", _PlainCoercion(convert))


def _print_help(
    format_help: Callable[[ClickContext, HelpFormatter], None], ctx: ClickContext, formatter: HelpFormatter
) -> None:
    try:
        format_help(ctx, formatter)
    except SystemExit as stop:
        # rich prints the help and, when stdout is closed, exits 1; printing help exits for no other reason
        if stop.code == 1:
            exit_closed_pipe()
        raise


class _HelpInWords(ClickCommand):
    """Help that names values in words (see module doc); shared by commands and groups."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            _describe_in_words(param)
            _coerce_without_pydantic(param)

    def get_help_option(self, ctx: ClickContext) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            _describe_in_words(option)
            _coerce_without_pydantic(option)
        return option

    def format_help(self, ctx: ClickContext, formatter: HelpFormatter) -> None:
        _print_help(super().format_help, ctx, formatter)


class DragonflyCommand(_HelpInWords, TyperCommand):
    """A command whose help names values in words (see module doc)."""


class DragonflyGroup(_HelpInWords, TyperGroup):
    """The root command and ``rules``: help in words, and a closed stdout ends any subcommand with
    :data:`EXIT_CLOSED_PIPE` (typer would exit 1, the code for findings)."""

    def invoke(self, ctx: ClickContext) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            exit_closed_pipe()


def choice_option(choices: Any, flag: str, *aliases: str, help_text: str) -> typer.models.OptionInfo:
    """An option taking one of the values of the ``Literal`` type ``choices``, shown as ``{a,b}``; any other
    value is a usage error (exit 2): ``invalid value for --format: 'xml' (choose from table, json)``."""
    allowed: tuple[str, ...] = get_args(choices)

    def parse(value: str) -> str:
        if value not in allowed:
            print(
                f"error: invalid value for {flag}: {value!r} (choose from {', '.join(allowed)})",
                file=sys.stderr,
            )
            raise typer.Exit(EXIT_USAGE)
        return value

    option: typer.models.OptionInfo = typer.Option(
        flag, *aliases, help=help_text, parser=parse, metavar="{" + ",".join(allowed) + "}"
    )
    return option


def _int_parser(low: int, high: int | None) -> Callable[[str | int], int]:
    def parse(value: str | int) -> int:
        try:
            number: int | None = int(value)
        except ValueError:
            if re.fullmatch(r"\s*[+-]?\d+\s*", str(value)) is None:
                raise typer.BadParameter(f"{value!r} is not a whole number") from None
            number = None  # a whole number past Python's 4300 digits: past every range
        if number is None or number < low or (high is not None and number > high):
            span = f"from {low} to {high}" if high is not None else f"{low} or more"
            raise typer.BadParameter(f"must be a whole number {span}")
        return number

    return parse


def int_option(
    help_text: str, *, low: int, high: int | None = None, metavar: str = "N"
) -> typer.models.OptionInfo:
    """An option whose value is a whole number from ``low`` to ``high`` (None: no upper bound); the help
    shows ``N``, and a value out of range is a usage error (exit 2) naming the flag and the range."""
    shown = help_text if high is None else f"{help_text} From {low} to {high}."
    option: typer.models.OptionInfo = typer.Option(help=shown, parser=_int_parser(low, high), metavar=metavar)
    return option
