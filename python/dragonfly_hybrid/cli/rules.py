"""``dragonfly-hybrid rules ...``: the ``rules`` sub-app (``check``, ``compile``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from dragonfly_hybrid.cli.common import fail, load_rules_or_exit

rules_app = typer.Typer(
    help="Check rule sets and compile them to a blob that loads without compiling.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


RulePaths = Annotated[
    list[Path],
    typer.Argument(
        help="Directories (read recursively for .yar/.yara), YARA source files, or one compiled blob.",
        metavar="PATH",
        show_default=False,
    ),
]


@rules_app.command("check")
def rules_check(paths: RulePaths) -> None:
    """Compile rules and print their count and hash; exit 2 with `file:line:column: message` if they fail."""
    ruleset = load_rules_or_exit(paths)
    print(f"ok: {ruleset.count} rule(s), hash {ruleset.hash}")


@rules_app.command("compile")
def rules_compile(
    paths: RulePaths,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the compiled blob.", metavar="FILE")
    ],
) -> None:
    """Compile rules to a blob that `scan --rules FILE` loads without compiling again (same hash)."""
    ruleset = load_rules_or_exit(paths)
    try:
        output.write_bytes(ruleset.serialize())
    except OSError as err:
        fail(f"cannot write {output}: {err.strerror or err}")
    print(f"wrote {ruleset.count} rule(s), hash {ruleset.hash}, to {output}", file=sys.stderr)
