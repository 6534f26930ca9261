"""Option values coerced by our command classes without pydantic (cli/base.py) give what typer's own
coercion gives: the same values and, for a bad value, the same usage error (exit 2) naming the option.

Each case runs one command twice, built once with typer's class and once with ours, and compares."""

from __future__ import annotations

import enum
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import pytest
import typer
from dragonfly_hybrid.cli.base import DragonflyCommand, choice_option, int_option
from typer.core import TyperCommand
from typer.testing import CliRunner

Shape = Literal["round", "square"]


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


def _parse_even(value: str | int) -> int:
    number = int(value)  # a ValueError here is the user's bad value
    if number % 2:
        raise typer.BadParameter(f"{number} is odd")
    return number


def show(
    names: Annotated[list[str] | None, typer.Argument(metavar="NAME...")] = None,
    count: Annotated[int | None, typer.Option("--count")] = None,
    size: Annotated[int, typer.Option("--size")] = 5,
    ratio: Annotated[float | None, typer.Option("--ratio")] = None,
    label: Annotated[str | None, typer.Option("--label")] = None,
    where: Annotated[Path | None, typer.Option("--where")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag")] = None,
    rules: Annotated[list[Path] | None, typer.Option("--rules")] = None,
    loud: Annotated[bool, typer.Option("--loud")] = False,
    quiet: Annotated[bool | None, typer.Option("--quiet/--no-quiet")] = None,
    jobs: Annotated[int, int_option("Jobs.", low=1, high=8)] = 1,
    shape: Annotated[Shape, choice_option(Shape, "--shape", help_text="Shape.")] = "round",
    even: Annotated[int | None, typer.Option("--even", parser=_parse_even)] = None,
    colour: Annotated[Colour | None, typer.Option("--colour")] = None,
    when: Annotated[datetime | None, typer.Option("--when")] = None,
) -> None:
    values = (
        names,
        count,
        size,
        ratio,
        label,
        where,
        tag,
        rules,
        loud,
        quiet,
        jobs,
        shape,
        even,
        colour,
        when,
    )
    print(repr(values))


def run(command_class: type[TyperCommand], args: list[str]) -> tuple[int, str]:
    app = typer.Typer(add_completion=False)
    app.command(cls=command_class)(show)
    done = CliRunner().invoke(app, args)
    assert not isinstance(done.exception, AssertionError | TypeError | AttributeError), done.exception
    return done.exit_code, done.output


CASES = [
    ([], True),
    (["a", "b"], True),
    (["--count", "7"], True),
    (["--count", " 7 "], True),
    (["--count", "1_000"], True),
    (["--count", "+3"], True),
    (["--count", "-0"], True),
    (["--count", "1.0"], True),
    (["--count", "1.5"], False),
    (["--count", "1e3"], False),
    (["--count", "abc"], False),
    (["--count", ""], False),
    (["--count", "0x10"], False),
    (["--count", "\u0661\u0662"], False),
    (["--size", "9"], True),
    (["--size", "nine"], False),
    (["--ratio", "1.5"], True),
    (["--ratio", " 2 "], True),
    (["--ratio", "1e3"], True),
    (["--ratio", "-inf"], True),
    (["--ratio", "1_0.5"], True),
    (["--ratio", "half"], False),
    (["--ratio", ""], False),
    (["--ratio", "\u0661"], False),
    (["--label", "x y"], True),
    (["--label", ""], True),
    (["--where", "some/dir/file.txt"], True),
    (["--where", "."], True),
    (["--tag", "one", "--tag", "two"], True),
    (["--rules", "r1", "--rules", "r2/sub"], True),
    (["--loud", "--no-quiet"], True),
    (["--quiet"], True),
    (["--jobs", "8"], True),
    (["--jobs", "9"], False),
    (["--jobs", "many"], False),
    (["--shape", "square"], True),
    (["--shape", "oval"], False),
    (["--even", "4"], True),
    (["--even", "3"], False),
    (["--even", "four"], False),
    (["--colour", "blue"], True),
    (["--colour", "green"], False),
    (["--when", "2026-12-04"], True),
    (["--when", "yesterday"], False),
]


@pytest.mark.parametrize(("args", "accepted"), CASES, ids=[" ".join(args) or "(none)" for args, _ in CASES])
def test_values_and_errors_are_typers(args: list[str], accepted: bool) -> None:
    expected = run(TyperCommand, args)
    assert expected[0] == (0 if accepted else 2), expected
    assert run(DragonflyCommand, args) == expected


def test_a_bad_value_is_a_usage_error_naming_the_option() -> None:
    code, output = run(DragonflyCommand, ["--count", "abc"])
    assert code == 2
    assert "Invalid value for '--count'" in output and "valid integer" in output, output


def test_the_options_values_are_the_coerced_types() -> None:
    code, output = run(
        DragonflyCommand,
        ["n", "--count", "3", "--ratio", "0.5", "--where", "w", "--rules", "r", "--colour", "red"],
    )
    assert code == 0, output
    assert output.strip() == repr(
        (
            ["n"],
            3,
            5,
            0.5,
            None,
            Path("w"),
            None,
            [Path("r")],
            False,
            None,
            1,
            "round",
            None,
            Colour.RED,
            None,
        )
    )


@pytest.mark.parametrize("args", [["--where", ""], ["--rules", "r", "--rules", ""]])
def test_an_empty_path_is_a_usage_error_not_the_current_directory(args: list[str]) -> None:
    """Where typer reads ``""`` as ``Path(".")``: ``--rules "$UNSET"`` read the current directory's rules,
    ``-o "$UNSET"`` said "cannot write .". Refused, naming the option."""
    code, output = run(DragonflyCommand, args)
    assert code == 2, output
    assert f"Invalid value for '{args[-2]}'" in output and "empty path" in output, output


def test_scan_with_an_empty_rules_path_does_not_read_the_current_directory(tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "cwd.yar").write_text("rule from_the_current_directory { condition: true }\n")
    (tmp_path / "x.py").write_text("print(1)\n")
    done = subprocess.run(
        [sys.executable, "-m", "dragonfly_hybrid.cli", "scan", "x.py", "--rules", "", "-f", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout
    assert "from_the_current_directory" not in done.stdout and "empty path" in done.stderr, done.stderr
