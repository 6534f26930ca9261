"""Render the benchmark tables as markdown from a pytest-benchmark JSON file.

    pytest bench/ --benchmark-json=out.json
    python -m bench.report out.json                        # print the markdown
    python -m bench.report out.json --update BENCHMARKS.md # replace the generated section of a file
    python -m bench.report out.json --update BENCHMARKS.md --section speed   # ... a named section

The numbers come only from the file: each scan benchmark's ``extra_info["row"]``, each node benchmark's
``extra_info["node_row"]`` and each end-to-end benchmark's ``extra_info["e2e_row"]`` (written by
``bench/conftest.py``, ``bench/test_bench_node.py`` and ``bench/test_bench_e2e.py``), the
machine (``machine_info["dfh"]``, from ``bench/machine.py``) and the run's date and commit. With
``--update``, the text between ``<!-- bench-report:begin -->`` and ``<!-- bench-report:end -->`` is
replaced and the rest of the file is left alone; with ``--section NAME``, the text between
``<!-- bench-report:NAME:begin -->`` and ``<!-- bench-report:NAME:end -->`` (a partial run kept apart from
the full one).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.summary import E2EMeasurement, Measurement, NodeMeasurement, markdown, summarize

BEGIN = "<!-- bench-report:begin -->"
END = "<!-- bench-report:end -->"


def load(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or "benchmarks" not in data:
        raise ValueError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks')")
    return data


def rows(data: dict[str, Any]) -> tuple[list[Measurement], list[NodeMeasurement], list[E2EMeasurement]]:
    scan: list[Measurement] = []
    node: list[NodeMeasurement] = []
    e2e: list[E2EMeasurement] = []
    for bench in data["benchmarks"]:
        extra = bench.get("extra_info") or {}
        if "row" in extra:
            scan.append(Measurement.from_dict(extra["row"]))
        if "node_row" in extra:
            node.append(NodeMeasurement.from_dict(extra["node_row"]))
        if "e2e_row" in extra:
            e2e.append(E2EMeasurement.from_dict(extra["e2e_row"]))
    return scan, node, e2e


def machine_lines(data: dict[str, Any]) -> list[str]:
    info = (data.get("machine_info") or {}).get("dfh") or {}
    commit = data.get("commit_info") or {}
    lines = []
    if data.get("datetime"):
        lines.append(f"- run: {data['datetime']}")
    if info:
        lines.append(
            f"- machine: {info.get('cpu')}, {info.get('cpus')} CPUs ({info.get('usable_cpus')} usable), "
            f"{info.get('ram_gb')} GB RAM; {info.get('os')}, kernel {info.get('kernel')}"
        )
        lines.append(
            f"- software: Python {info.get('python')}, {info.get('rustc') or 'rustc: not found'}, "
            f"yara-x (Python) {info.get('yara_x_python')}, dragonfly-hybrid {info.get('dragonfly_hybrid')} "
            f"at commit {info.get('commit')}"
        )
    elif commit.get("id"):
        lines.append(f"- commit: {commit['id'][:12]}{' (dirty)' if commit.get('dirty') else ''}")
    return lines


def render(data: dict[str, Any], source: str | None = None) -> str:
    scan, node, e2e = rows(data)
    if not scan and not node and not e2e:
        raise ValueError("no dragonfly-hybrid benchmark rows in this file (run pytest bench/ with it)")
    head = machine_lines(data)
    if source:
        head.append(f"- data: `{source}` (rendered by `python -m bench.report`)")
    body = markdown(summarize(scan), node, e2e)
    return ("\n".join(head) + "\n\n" if head else "") + body


def update(target: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replace the text between the ``begin`` and ``end`` marker lines of ``target``."""
    content = target.read_text()
    start, stop = content.find(begin), content.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"{target}: no {begin} ... {end} section to replace")
    target.write_text(content[: start + len(begin)] + "\n" + text + content[stop:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n")[0])
    parser.add_argument("json", type=Path, help="a --benchmark-json file")
    parser.add_argument("--update", type=Path, metavar="FILE", help="replace the generated section of FILE")
    parser.add_argument("--section", metavar="NAME", help="with --update: the section named NAME")
    args = parser.parse_args(argv)
    try:
        text = render(load(args.json), args.json.as_posix())
        if args.update and args.section:
            update(
                args.update,
                text,
                f"<!-- bench-report:{args.section}:begin -->",
                f"<!-- bench-report:{args.section}:end -->",
            )
        elif args.update:
            update(args.update, text)
        else:
            sys.stdout.write(text)
    except (OSError, ValueError) as err:
        print(f"bench.report: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
