"""Detection benchmark: `rules test` on the malware development split and the pinned benign list.

``python -m bench.detection.run`` measures the bundled rules (or ``--rules PATH``) and prints a markdown
summary; ``--update BENCHMARKS.md`` writes it between ``<!-- detection:begin -->`` and
``<!-- detection:end -->``; ``--json FILE`` keeps the full ``rules test`` documents.

Inputs (nothing here is downloaded from anywhere but PyPI, and no sample is ever run):

* malware: ``$DFH_DETECTION_MALWARE`` (default ``~/.cache/dragonfly-hybrid/detection/malware``), the output
  folder of ``bench/detection/malregistry_split.py``: ``write/`` (the part the rules were written against)
  and ``heldback/`` (the part held back from rule writing), one sub-folder per release;
* benign: ``bench/detection/benign.txt`` (``bench/corpus.txt`` format: ``name==version``, file, sha256,
  size), downloaded once into ``$DFH_DETECTION_BENIGN_CACHE`` (default
  ``~/.cache/dragonfly-hybrid/detection/benign``) with the project's PyPI client and checked against the
  pinned sha256 and size (``bench.realcorpus``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dragonfly_hybrid import __version__, load_rules, rules_eval

BENIGN_LIST = Path(__file__).with_name("benign.txt")
MARKDOWN_BEGIN = "<!-- detection:begin -->"
MARKDOWN_END = "<!-- detection:end -->"
GOAL_RECALL = 0.90
GOAL_FLAGGED = 0.01


class DataMissing(Exception):
    """The malware split or the benign files are not available (offline, or never prepared)."""


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dragonfly-hybrid" / "detection"


def malware_dirs() -> tuple[Path, Path]:
    """``(write, heldback)``, or :class:`DataMissing` saying how to prepare them."""
    root = Path(os.environ.get("DFH_DETECTION_MALWARE") or cache_root() / "malware")
    write, held = root / "write", root / "heldback"
    if not (write.is_dir() and held.is_dir()):
        raise DataMissing(
            f"no malware split at {root} (set DFH_DETECTION_MALWARE): fetch github:lxyeternal/"
            f"pypi_malregistry and run `python bench/detection/malregistry_split.py <its git dir> {root}`"
        )
    return write, held


def ensure_benign(list_path: Path = BENIGN_LIST, cache: Path | None = None) -> Path:
    """Every pinned benign file in ``cache`` (downloaded when missing, always verified); the folder."""
    from bench.realcorpus import CorpusError, fetch_verified, parse_corpus_list

    root = cache or Path(os.environ.get("DFH_DETECTION_BENIGN_CACHE") or cache_root() / "benign")
    root.mkdir(parents=True, exist_ok=True)
    entries = parse_corpus_list(list_path.read_text(encoding="utf-8"), str(list_path))
    try:
        fetch_verified(entries, root)
    except CorpusError as err:
        raise DataMissing(f"benign list: {err}") from err
    wanted = {e.filename for e in entries}
    stray = sorted(p.name for p in root.iterdir() if not p.name.startswith(".") and p.name not in wanted)
    if stray:
        raise DataMissing(f"{root} holds files that are not in {list_path.name}: {stray[:5]}; remove them")
    return root


@dataclass
class Measurement:
    """One ``rules test`` run per set, with its JSON document and wall time."""

    label: str
    document: dict[str, Any]
    seconds: float


def _package(release: str) -> str:
    return release.split("@", 1)[0].lower()


def per_package(write_dir: Path, document: dict[str, Any]) -> tuple[int, float]:
    """Packages, and recall with each package weighing one (mean share of its releases flagged)."""
    releases = [name for name, _ in rules_eval.release_entries(write_dir)]
    missed = {r["release"] for r in document["malicious"]["missed"]}
    by_package: dict[str, list[bool]] = defaultdict(list)
    for release in releases:
        by_package[_package(release)].append(release not in missed)
    if not by_package:
        return 0, 0.0
    return len(by_package), sum(sum(v) / len(v) for v in by_package.values()) / len(by_package)


def measure(rule_paths: list[Path], threads: int | None = None) -> dict[str, Any]:
    """Run the three sets and summarise them (raises :class:`DataMissing` when data is unavailable)."""
    write, held = malware_dirs()
    benign = ensure_benign()
    rules = load_rules(rule_paths)
    runs = []
    for label, mal, ben in (("write", write, None), ("heldback", held, None), ("benign", None, benign)):
        start = time.perf_counter()
        evaluation = rules_eval.evaluate(rules, mal, ben, threads=threads)
        runs.append(Measurement(label, rules_eval.to_json(evaluation), time.perf_counter() - start))
    docs = {m.label: m.document for m in runs}
    summary: dict[str, Any] = {
        "rules": docs["write"]["rules"],
        "version": __version__,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "threads": threads,
        "seconds": {m.label: round(m.seconds, 2) for m in runs},
        "goal": {"recall": GOAL_RECALL, "benign_flagged": GOAL_FLAGGED},
    }
    for label, directory in (("write", write), ("heldback", held)):
        side = docs[label]["malicious"]
        packages, package_recall = per_package(directory, docs[label])
        summary[label] = {
            "releases": side["releases"],
            "flagged": side["flagged"],
            "recall": side["recall"],
            "packages": packages,
            "package_recall": package_recall,
        }
    ben = docs["benign"]["benign"]
    summary["benign"] = {
        "releases": ben["releases"],
        "flagged": ben["flagged"],
        "flagged_rate": ben["flagged_rate"],
        "with_findings": ben["with_findings"],
        "flagged_releases": [
            {"release": r["release"], "rules": sorted({f["rule"] for f in r["findings"]})}
            for r in ben["flagged_releases"]
        ],
    }
    hits = {r["rule"]: r for r in docs["write"]["per_rule"]}
    held_hits = {r["rule"]: r for r in docs["heldback"]["per_rule"]}
    ben_hits = {r["rule"]: r for r in docs["benign"]["per_rule"]}
    summary["per_rule"] = [
        {
            "rule": rule,
            "weight": hits[rule]["weight"] or held_hits[rule]["weight"],
            "write": hits[rule]["malicious"],
            "heldback": held_hits[rule]["malicious"],
            "benign": ben_hits[rule]["benign"],
            "write_only": hits[rule]["malicious_only"],
        }
        for rule in sorted(hits)
    ]
    summary["documents"] = docs
    return summary


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def markdown(summary: dict[str, Any]) -> str:
    """The BENCHMARKS.md section: totals per set, then per-rule hits."""
    w, h, b = summary["write"], summary["heldback"], summary["benign"]
    lines = [
        f"Rules: {summary['rules']['count']} (hash `{summary['rules']['hash'][:12]}`), dragonfly-hybrid "
        f"{summary['version']}; {summary['machine']}. A release is flagged when a rule of weight >= 5 "
        f"matches in it. Goal: recall >= {_pct(summary['goal']['recall'])}, benign flagged <= "
        f"{_pct(summary['goal']['benign_flagged'])}.",
        "",
        "| set | releases | flagged | rate | packages | per-package recall | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| malicious, rule-writing part | {w['releases']} | {w['flagged']} | {_pct(w['recall'])} | "
        f"{w['packages']} | {_pct(w['package_recall'])} | {summary['seconds']['write']} |",
        f"| malicious, held back | {h['releases']} | {h['flagged']} | {_pct(h['recall'])} | "
        f"{h['packages']} | {_pct(h['package_recall'])} | {summary['seconds']['heldback']} |",
        f"| benign (`bench/detection/benign.txt`) | {b['releases']} | {b['flagged']} | "
        f"{_pct(b['flagged_rate'])} | | | {summary['seconds']['benign']} |",
        "",
    ]
    if b["flagged_releases"]:
        flagged = "; ".join(f"{r['release']} ({', '.join(r['rules'])})" for r in b["flagged_releases"])
        lines += [f"Benign releases flagged: {flagged}.", ""]
    else:
        lines += [f"No benign release flagged ({b['with_findings']} with a hint below weight 5).", ""]
    lines += [
        "| rule | weight | write | held back | benign | only flag (write) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in summary["per_rule"]:
        weight = "-" if r["weight"] is None else r["weight"]
        counts = f"{r['write']} | {r['heldback']} | {r['benign']} | {r['write_only']}"
        lines.append(f"| `{r['rule']}` | {weight} | {counts} |")
    return "\n".join(lines) + "\n"


def update(path: Path, text: str) -> None:
    content = path.read_text(encoding="utf-8")
    start, end = content.index(MARKDOWN_BEGIN), content.index(MARKDOWN_END)
    path.write_text(content[: start + len(MARKDOWN_BEGIN)] + "\n" + text + content[end:], encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Detection benchmark (rules test on malware and benign sets)."
    )
    parser.add_argument("--rules", type=Path, action="append", default=[], help="rules (default: bundled)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, help="write the summary and the full documents here")
    parser.add_argument("--update", type=Path, help="write the markdown section into this file")
    args = parser.parse_args(argv)
    try:
        summary = measure(args.rules, args.threads)
    except DataMissing as err:
        print(f"skipped: {err}", file=sys.stderr)
        return 2
    text = markdown(summary)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    if args.update:
        update(args.update, text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
