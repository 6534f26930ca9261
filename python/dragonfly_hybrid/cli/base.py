"""The command classes every ``dragonfly-hybrid`` command is built with, and the options they share that
typer would otherwise describe with Python types.

* Help names values in words: a flag shows no type, an argument shows its metavar only (never
  ``<list[str]>``), and the options built here (:func:`choice_option`, :func:`int_option`) carry a
  metavar and check their own range, so no ``<int range> [x>=1]`` appears.
* A closed stdout (the reader went away: ``... | head``) ends any command quietly with
  :data:`EXIT_CLOSED_PIPE`, never 1 (findings) and never with a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, get_args

import typer
from typer._click import Command as ClickCommand
from typer._click import Context as ClickContext  # typer's own click, which its commands are built on
from typer._click import HelpFormatter
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from dragonfly_hybrid.closed_pipe import EXIT_CLOSED_PIPE, exit_closed_pipe
from dragonfly_hybrid.report import EXIT_USAGE

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

    def get_help_option(self, ctx: ClickContext) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            _describe_in_words(option)
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
            number = int(value)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not a whole number") from None
        if number < low or (high is not None and number > high):
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
