"""``dragonfly-hybrid rules ...``: the ``rules`` sub-app (``check``, ``compile``, ``test``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from dragonfly_hybrid.cli.base import DragonflyCommand, DragonflyGroup, choice_option, int_option
from dragonfly_hybrid.cli.common import ThreadsOption, fail, load_rules_or_exit
from dragonfly_hybrid.cli.output import output_file
from dragonfly_hybrid.rules_loader import rule_source_files

rules_app = typer.Typer(
    help="Check rule sets, compile them to a blob that loads without compiling, or measure them on releases.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    cls=DragonflyGroup,
)


TestFormat = Literal["table", "json"]

RulePaths = Annotated[
    list[Path],
    typer.Argument(
        help="Directories (read recursively for .yar/.yara, links to folders followed), YARA source files, "
        "or one compiled blob.",
        metavar="PATH",
        show_default=False,
    ),
]


@rules_app.command("check", cls=DragonflyCommand)
def rules_check(paths: RulePaths) -> None:
    """Compile rules and print their count and hash; exit 2 with `file:line:column: message` if they fail."""
    ruleset = load_rules_or_exit(paths)
    print(f"ok: {ruleset.count} rule(s), hash {ruleset.hash}")


@rules_app.command("compile", cls=DragonflyCommand)
def rules_compile(
    paths: RulePaths,
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            help="Where to write the compiled blob (never over a rule source; `-`: stdout).",
            metavar="FILE",
        ),
    ],
) -> None:
    """Compile rules to a blob that `scan --rules FILE` loads without compiling again (same hash).

    The blob holds the rules' machine code: share rule sources, not blobs, with anyone who should not run
    code on your machine."""
    ruleset = load_rules_or_exit(paths)
    try:
        # A blob cut short never replaces a whole one; a mistyped FILE never replaces a rule source.
        sources = [(source, f"the rule source {source}") for source in rule_source_files(paths).values()]
        with output_file(output, binary=True, inputs=sources) as blob:
            blob.write(ruleset.serialize())
    except OSError as err:
        fail(f"cannot write {output}: {err.strerror or err}")
    where = "stdout" if str(output) == "-" else output
    print(f"wrote {ruleset.count} rule(s), hash {ruleset.hash}, to {where}", file=sys.stderr)


RULES_TEST_EXIT_CODES_HELP = """\
**Exit codes**: **0** measured (and every given threshold met); **1** `--min-recall` or `--max-flagged`
not met (incomplete releases count against them: a malicious one not flagged as missed, a benign one not
flagged as flagged; a side with no release meets no threshold); **2** usage error (no folder given, a
folder that does not exist or cannot be listed, a threshold outside 0-1 or without its folder, rules that
do not compile or define no rule).
"""


@rules_app.command("test", epilog=RULES_TEST_EXIT_CODES_HELP, cls=DragonflyCommand)
def rules_test(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Rules to test (as for `rules check`). Default: the bundled rule set.",
            metavar="PATH",
            show_default=False,
        ),
    ] = None,
    malicious: Annotated[
        Path | None,
        typer.Option(
            "--malicious", help="Folder of malicious releases (a file or a sub-folder each).", metavar="DIR"
        ),
    ] = None,
    benign: Annotated[
        Path | None,
        typer.Option(
            "--benign", help="Folder of benign releases (a file or a sub-folder each).", metavar="DIR"
        ),
    ] = None,
    fmt: Annotated[TestFormat, choice_option(TestFormat, "--format", help_text="Output format.")] = "table",
    min_recall: Annotated[
        str | None,
        typer.Option("--min-recall", help="Exit 1 if recall is below this (0.9 or 90%).", metavar="RATE"),
    ] = None,
    max_flagged: Annotated[
        str | None,
        typer.Option(
            "--max-flagged", help="Exit 1 if more benign releases are flagged (0.01 or 1%).", metavar="RATE"
        ),
    ] = None,
    flag_weight: Annotated[
        int, int_option("A finding of this weight or more flags a release.", low=1, metavar="WEIGHT")
    ] = 5,
    limit: Annotated[int, int_option("Releases listed per section in the table.", low=0)] = 20,
    threads: ThreadsOption = None,
) -> None:
    """Measure rules on malicious and benign releases: per-rule hits, recall, benign flagged, misses."""
    from dragonfly_hybrid import rules_eval

    if malicious is None and benign is None:
        fail("give --malicious DIR, --benign DIR or both")
    for folder in (malicious, benign):
        if folder is not None and not folder.is_dir():
            fail(f"{folder} is not a directory")
    try:
        recall_min = rules_eval.parse_fraction(min_recall) if min_recall is not None else None
        flagged_max = rules_eval.parse_fraction(max_flagged) if max_flagged is not None else None
    except ValueError as err:
        fail(f"bad threshold: {err}")
    if recall_min is not None and malicious is None:
        fail("--min-recall needs --malicious")
    if flagged_max is not None and benign is None:
        fail("--max-flagged needs --benign")
    ruleset = load_rules_or_exit(paths or [])
    try:
        evaluation = rules_eval.evaluate(
            ruleset,
            malicious,
            benign,
            flag_weight=flag_weight,
            threads=threads,
            min_recall=recall_min,
            max_flagged=flagged_max,
        )
    except OSError as err:  # a folder that cannot be listed
        fail(f"cannot list {err.filename}: {err.strerror or err}")
    if fmt == "json":
        rules_eval.render_json(evaluation, sys.stdout)
    else:
        rules_eval.render_table(evaluation, sys.stdout, limit=limit)
    raise typer.Exit(evaluation.exit_code)
