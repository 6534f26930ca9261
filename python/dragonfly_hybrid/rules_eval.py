"""``dragonfly-hybrid rules test``: measure rules on a folder of malicious and a folder of benign releases.

A *release* is one entry of a folder: a file is a release of one distribution (an sdist, a wheel, a loose
file), a sub-folder is a release whose distributions are every regular file under it (recursively).
Entries whose name starts with ``.`` are ignored. Every distribution is scanned with the project's own
engine (:class:`dragonfly_hybrid.Scanner`: archives inflated in memory, ``filetype`` applied per member),
exactly as ``scan`` would.

A release is **flagged** when some rule of weight >= ``flag_weight`` (default 5, "likely malicious")
matched in it; lighter rules are hints and never flag a release on their own. Recall is the share of
malicious releases flagged; benign flagged is the share of benign releases flagged.

Every entry is a release, whether it could be read or not. A release is **incomplete** when something in
it was not read: an entry that is a FIFO, socket, device or dangling link (a release of no files), such a
file (or a link to a directory) inside a sub-folder, a file that cannot be read, an archive member left
unscanned (over a limit, corrupt, encrypted). The thresholds never pass on what was not read: recall
counts an incomplete malicious release that was not flagged as missed, ``--max-flagged`` is checked
against ``flagged_rate_worst`` (an incomplete benign release not flagged counted as flagged), and a
threshold on a side with no release is not met (``thresholds.failures`` says why).

JSON document (``--format json``), keys always present (``null`` when a side was not given)::

    {
      "rules": {"hash": str, "count": int},
      "flag_weight": int,
      "malicious": {
        "path": str, "releases": int, "flagged": int, "recall": float, "with_findings": int,
        "incomplete": int,
        "missed": [{"release": str, "incomplete": bool, "issues": [str],
                    "findings": [{"rule": str, "weight": int, "file": str, "snippet": str}]}],
        "incomplete_releases": [<as in missed, with every finding>]
      } | null,
      "benign": {
        "path": str, "releases": int, "flagged": int, "flagged_rate": float, "with_findings": int,
        "incomplete": int,
        "flagged_releases": [{"release": str, "incomplete": bool, "issues": [str],
                              "findings": [{"rule": str, "weight": int, "file": str, "snippet": str}]}],
        "incomplete_releases": [<as in flagged_releases, with every finding>],
        "flagged_rate_worst": float
      } | null,
      "per_rule": [{"rule": str, "weight": int | null, "malicious": int, "benign": int,
                    "malicious_only": int}],
      "thresholds": {"min_recall": float | null, "max_flagged": float | null, "met": bool,
                     "failures": [str]},
      "exit_code": 0 | 1
    }

``per_rule``: for every rule of the set, the number of malicious and benign releases it matched (at any
weight), and ``malicious_only`` the malicious releases it alone flagged. ``findings`` in ``missed`` are the
hints (weight below ``flag_weight``) seen in a missed release; in ``flagged_releases`` the flagging
findings. ``snippet`` is the start of the first matched pattern (at most 64 bytes; non-printable bytes as
``\\xNN``).
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from dragonfly_hybrid._core import DistributionResult, Limits, Rules, Scanner
from dragonfly_hybrid.report import printable

DEFAULT_FLAG_WEIGHT = 5
BATCH = 64
EXIT_OK = 0
EXIT_THRESHOLDS = 1


@dataclass(frozen=True)
class Finding:
    """One rule matched in one file of a release."""

    rule: str
    weight: int
    file: str
    snippet: str


@dataclass
class ReleaseOutcome:
    """What the rules found in one release."""

    name: str
    findings: list[Finding] = field(default_factory=list)
    issues: list[str] = field(default_factory=list)
    incomplete: bool = False

    def flagged(self, flag_weight: int) -> bool:
        return any(f.weight >= flag_weight for f in self.findings)

    def flagging_rules(self, flag_weight: int) -> set[str]:
        return {f.rule for f in self.findings if f.weight >= flag_weight}

    def rules(self) -> set[str]:
        return {f.rule for f in self.findings}


@dataclass
class SideResult:
    """All releases of one folder (the malicious or the benign side)."""

    path: Path
    releases: list[ReleaseOutcome]

    def flagged(self, flag_weight: int) -> list[ReleaseOutcome]:
        return [r for r in self.releases if r.flagged(flag_weight)]

    def rate(self, flag_weight: int) -> float:
        return len(self.flagged(flag_weight)) / len(self.releases) if self.releases else 0.0

    def incomplete(self) -> list[ReleaseOutcome]:
        return [r for r in self.releases if r.incomplete]

    def worst_rate(self, flag_weight: int) -> float:
        """The flagged share if every incomplete release not flagged were flagged: what was not read
        could have been."""
        if not self.releases:
            return 0.0
        unknown = sum(1 for r in self.incomplete() if not r.flagged(flag_weight))
        return (len(self.flagged(flag_weight)) + unknown) / len(self.releases)


@dataclass
class Evaluation:
    """The outcome of ``rules test``."""

    rules: Rules
    flag_weight: int
    malicious: SideResult | None
    benign: SideResult | None
    weights: dict[str, int]
    min_recall: float | None = None
    max_flagged: float | None = None

    @property
    def recall(self) -> float | None:
        return self.malicious.rate(self.flag_weight) if self.malicious else None

    @property
    def benign_flagged(self) -> float | None:
        return self.benign.rate(self.flag_weight) if self.benign else None

    @property
    def benign_flagged_worst(self) -> float | None:
        return self.benign.worst_rate(self.flag_weight) if self.benign else None

    def threshold_failures(self) -> list[str]:
        """Why a given threshold is not met (empty: every one is).

        A CI gate must not pass on content that was not read. Recall counts an incomplete malicious
        release that was not flagged as missed (what was read did not flag it), so it can only be lower
        than the truth; ``--max-flagged`` is checked against :meth:`SideResult.worst_rate`, which counts
        an incomplete benign release that was not flagged as flagged. A side with no release measures
        nothing, and its threshold is not met.
        """
        failures = []
        if self.min_recall is not None:
            if self.malicious is None or not self.malicious.releases:
                failures.append(f"no malicious release in {self.malicious.path if self.malicious else '-'}")
            elif (recall := self.malicious.rate(self.flag_weight)) < self.min_recall:
                unread = sum(1 for r in self.malicious.incomplete() if not r.flagged(self.flag_weight))
                failures.append(
                    f"recall {recall:.1%} < {self.min_recall:.1%}"
                    + (f" ({unread} incomplete release(s) not flagged count as missed)" if unread else "")
                )
        if self.max_flagged is not None:
            if self.benign is None or not self.benign.releases:
                failures.append(f"no benign release in {self.benign.path if self.benign else '-'}")
            elif (worst := self.benign.worst_rate(self.flag_weight)) > self.max_flagged:
                flagged = self.benign.rate(self.flag_weight)
                failures.append(
                    f"benign flagged {flagged:.1%} > {self.max_flagged:.1%}"
                    if flagged > self.max_flagged
                    else f"benign flagged {flagged:.1%}, but {worst:.1%} > {self.max_flagged:.1%} with the "
                    "incomplete releases not flagged counted as flagged"
                )
        return failures

    @property
    def thresholds_met(self) -> bool:
        return not self.threshold_failures()

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.thresholds_met else EXIT_THRESHOLDS

    def per_rule(self) -> list[dict[str, Any]]:
        rows = []
        for rule in sorted(self.rules.identifiers):
            malicious = self.malicious.releases if self.malicious else []
            benign = self.benign.releases if self.benign else []
            rows.append(
                {
                    "rule": rule,
                    "weight": self.weights.get(rule),
                    "malicious": sum(1 for r in malicious if rule in r.rules()),
                    "benign": sum(1 for r in benign if rule in r.rules()),
                    "malicious_only": sum(
                        1 for r in malicious if r.flagging_rules(self.flag_weight) == {rule}
                    ),
                }
            )
        return rows


@dataclass(frozen=True)
class ReleaseEntry:
    """One entry of a folder: its distributions, and what in it could not be read (``problems``)."""

    name: str
    files: list[tuple[str, Path]]
    """``(distribution name, file)``."""
    problems: list[str]


def read_releases(directory: Path) -> list[ReleaseEntry]:
    """Every entry of ``directory`` (names starting with ``.`` skipped), sorted by name; raises OSError when
    ``directory`` cannot be listed.

    A file is a release of itself (its name is the distribution name); a sub-folder is a release of every
    file under it, named by the path relative to the sub-folder. Symbolic links to files count as files
    (benchmark caches link them), wherever the files are. Anything else is not read and is a problem of
    its release, never dropped: an entry that is a FIFO, socket, device or dangling link is a release of
    no files (so an incomplete one, counted like any other), and so is each such file, a link to a
    directory or an unlistable directory inside a sub-folder. As with ``scan`` of a directory, what was
    not read makes the release incomplete, never clean.
    """
    entries: list[ReleaseEntry] = []
    for entry in sorted(directory.iterdir(), key=lambda p: p.name):
        shown = _shown(entry.name)
        if entry.name.startswith("."):
            continue
        kind = _kind(entry)
        if kind == "file":
            entries.append(ReleaseEntry(shown, [(shown, entry)], []))
        elif kind == "directory":  # a link to a directory too: benchmark caches link releases
            entries.append(ReleaseEntry(shown, *_release_files(entry)))
        else:
            entries.append(ReleaseEntry(shown, [], [f"{shown}: {kind}"]))
    return entries


def release_entries(directory: Path) -> list[tuple[str, list[tuple[str, Path]]]]:
    """``(release name, [(distribution name, file)])`` for every entry of ``directory`` (:func:`read_releases`
    without the problems)."""
    return [(entry.name, entry.files) for entry in read_releases(directory)]


def _kind(path: Path) -> str:
    """``file`` or ``directory`` (following symbolic links), else why ``path`` is not read."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        if path.is_symlink():
            return f"a symbolic link to {os.readlink(path)!r} that does not resolve, not read"
        return f"cannot read: {err.strerror or err}"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "directory"
    return "a FIFO, socket or device, not read"


def _shown(name: str) -> str:
    """A file name as reports show it: bytes that are not UTF-8 as ``\\xNN`` (the engine takes names as
    UTF-8 text; the file is still read by its real name)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _release_files(folder: Path) -> tuple[list[tuple[str, Path]], list[str]]:
    """The files of a sub-folder release and a problem per entry under it that is not read. Directories
    are walked, links to them are not followed (a link loop cannot recurse)."""
    files: list[tuple[str, Path]] = []
    problems: list[str] = []
    pending = [folder]
    while pending:
        directory = pending.pop()
        try:
            with os.scandir(directory) as listing:
                children = [Path(child.path) for child in listing if not child.name.startswith(".")]
        except OSError as err:
            where = _shown(directory.relative_to(folder).as_posix())
            problems.append(f"{_shown(folder.name)}/{where}: cannot list: {err.strerror or err}")
            continue
        for path in children:
            name = _shown(path.relative_to(folder).as_posix())
            if path.is_dir() and not path.is_symlink():
                pending.append(path)
                continue
            kind = _kind(path)
            if kind == "file":
                files.append((name, path))
            elif kind == "directory":
                problems.append(f"{_shown(folder.name)}/{name}: a symbolic link to a directory, not followed")
            else:
                problems.append(f"{_shown(folder.name)}/{name}: {kind}")
    files.sort(key=lambda item: Path(item[0]).parts)
    return files, sorted(problems)


def snippet(data: bytes) -> str:
    """Printable ASCII as is, anything else as ``\\xNN`` (newlines and tabs too)."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in data)


def _findings(dist_name: str, single: bool, result: DistributionResult) -> Iterator[Finding]:
    for file in result.files:
        where = file.path if single and file.path == dist_name else f"{dist_name}!{file.path}"
        for match in file.matches:
            data = match.patterns[0].data if match.patterns else b""
            yield Finding(match.identifier, match.weight, where, snippet(data))


def scan_side(scanner: Scanner, directory: Path, weights: dict[str, int]) -> SideResult:
    """Scan every release of ``directory`` (distributions in batches, in parallel inside the engine)."""
    releases = read_releases(directory)
    # By position, not name: two entries can show the same name (a byte that is not UTF-8 as \xNN beside
    # a name spelling it out), and one's findings must not count for the other.
    outcomes = [ReleaseOutcome(entry.name) for entry in releases]
    jobs = [(index, dist, path) for index, entry in enumerate(releases) for dist, path in entry.files]
    for entry, outcome in zip(releases, outcomes, strict=True):
        outcome.issues.extend(entry.problems)
        if entry.problems or not entry.files:
            outcome.incomplete = True
        if not entry.files and not entry.problems:
            outcome.issues.append("no files")
    for start in range(0, len(jobs), BATCH):
        batch = jobs[start : start + BATCH]
        # A file that cannot be read (gone, no permission) is an ``unreadable`` issue of its result.
        results = scanner.scan_many((dist, str(path), None) for _, dist, path in batch)
        for (index, dist, _), result in zip(batch, results, strict=True):
            outcome = outcomes[index]
            for finding in _findings(dist, True, result):
                outcome.findings.append(finding)
                weights.setdefault(finding.rule, finding.weight)
            for issue in result.issues:
                outcome.issues.append(
                    f"{dist}: {issue.path}: {issue.message}" if issue.path else f"{dist}: {issue.message}"
                )
                outcome.incomplete = outcome.incomplete or issue.unscanned
    return SideResult(directory, outcomes)


def evaluate(
    rules: Rules,
    malicious: Path | None,
    benign: Path | None,
    *,
    flag_weight: int = DEFAULT_FLAG_WEIGHT,
    threads: int | None = None,
    limits: Limits | None = None,
    min_recall: float | None = None,
    max_flagged: float | None = None,
) -> Evaluation:
    """Scan both folders with ``rules`` and collect the outcome of every release."""
    scanner = Scanner(rules, limits, threads)
    weights: dict[str, int] = {}
    mal = scan_side(scanner, malicious, weights) if malicious is not None else None
    ben = scan_side(scanner, benign, weights) if benign is not None else None
    return Evaluation(rules, flag_weight, mal, ben, weights, min_recall, max_flagged)


# --------------------------------------------------------------------------------------------- rendering


def _finding_json(f: Finding) -> dict[str, Any]:
    return {"rule": f.rule, "weight": f.weight, "file": f.file, "snippet": f.snippet}


def _release_json(r: ReleaseOutcome, findings: Iterable[Finding]) -> dict[str, Any]:
    return {
        "release": r.name,
        "incomplete": r.incomplete,
        "issues": list(r.issues),
        "findings": [_finding_json(f) for f in findings],
    }


def _side_json(side: SideResult, w: int, rate_key: str, list_key: str, listed: list[Any]) -> dict[str, Any]:
    """One side of the evaluation in the JSON document: what both sides report, then its own list."""
    return {
        "path": str(side.path),
        "releases": len(side.releases),
        "flagged": len(side.flagged(w)),
        rate_key: side.rate(w),
        "with_findings": sum(1 for r in side.releases if r.findings),
        "incomplete": len(side.incomplete()),
        list_key: listed,
        "incomplete_releases": [_release_json(r, r.findings) for r in side.incomplete()],
    }


def to_json(ev: Evaluation) -> dict[str, Any]:
    w = ev.flag_weight
    malicious = None
    if ev.malicious is not None:
        side = ev.malicious
        missed = [_release_json(r, r.findings) for r in side.releases if not r.flagged(w)]
        malicious = _side_json(side, w, "recall", "missed", missed)
    benign = None
    if ev.benign is not None:
        side = ev.benign
        flagged = [_release_json(r, [f for f in r.findings if f.weight >= w]) for r in side.flagged(w)]
        benign = _side_json(side, w, "flagged_rate", "flagged_releases", flagged)
        benign["flagged_rate_worst"] = side.worst_rate(w)
    return {
        "rules": {"hash": ev.rules.hash, "count": ev.rules.count},
        "flag_weight": w,
        "malicious": malicious,
        "benign": benign,
        "per_rule": ev.per_rule(),
        "thresholds": {
            "min_recall": ev.min_recall,
            "max_flagged": ev.max_flagged,
            "met": ev.thresholds_met,
            "failures": ev.threshold_failures(),
        },
        "exit_code": ev.exit_code,
    }


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ).rstrip()

    return [line(header), line(["-" * x for x in widths]), *(line(r) for r in rows)]


def render_table(ev: Evaluation, out: IO[str], *, limit: int = 20) -> None:
    """Summary, per-rule hits, then the missed malicious and the flagged benign releases (``limit`` each)."""
    w = ev.flag_weight
    lines = [f"rules: {ev.rules.count}, hash {ev.rules.hash[:12]}; flagged = a finding of weight >= {w}", ""]
    summary = []
    for label, side, meaning in (("malicious", ev.malicious, "recall"), ("benign", ev.benign, "flagged")):
        if side is None:
            continue
        n, hits, unread = len(side.releases), len(side.flagged(w)), len(side.incomplete())
        summary.append([label, str(n), str(hits), _percent(hits, n), str(unread), meaning, str(side.path)])
    lines += _table(
        ["Set", "Releases", "Flagged", "Rate", "Incomplete", "Meaning", "Path"], summary, {1, 2, 3, 4}
    )
    lines.append("")
    rows = [
        [
            r["rule"],
            "-" if r["weight"] is None else str(r["weight"]),
            str(r["malicious"]),
            str(r["benign"]),
            str(r["malicious_only"]),
        ]
        for r in ev.per_rule()
    ]
    lines += _table(["Rule", "Weight", "Malicious", "Benign", "Only flag"], rows, {1, 2, 3, 4})
    if ev.malicious is not None:
        missed = [r for r in ev.malicious.releases if not r.flagged(w)]
        lines += [
            "",
            f"missed malicious releases: {len(missed)}"
            + (f" (first {limit})" if len(missed) > limit else ""),
        ]
        for r in missed[:limit]:
            hints = ", ".join(sorted(r.rules())) or "no finding"
            lines.append(f"  {r.name}: {hints}" + (" [incomplete]" if r.incomplete else ""))
    if ev.benign is not None:
        flagged = ev.benign.flagged(w)
        lines += [
            "",
            f"flagged benign releases: {len(flagged)}"
            + (f" (first {limit})" if len(flagged) > limit else ""),
        ]
        for r in flagged[:limit]:
            lines.append(f"  {r.name}:")
            for f in r.findings:
                if f.weight >= w:
                    lines.append(f"    {f.rule} (weight {f.weight}) in {f.file}: {f.snippet}")
    for label, side, counted in (
        ("malicious", ev.malicious, "recall counts those not flagged as missed"),
        ("benign", ev.benign, "--max-flagged counts those not flagged as flagged"),
    ):
        incomplete = side.incomplete() if side is not None else []
        if not incomplete:
            continue
        lines += [
            "",
            f"incomplete {label} releases (not read completely; {counted}): {len(incomplete)}"
            + (f" (first {limit})" if len(incomplete) > limit else ""),
        ]
        for r in incomplete[:limit]:
            lines.append(f"  {r.name}:" + (" flagged" if r.flagged(w) else ""))
            lines += [f"    {issue}" for issue in r.issues]
    if ev.min_recall is not None or ev.max_flagged is not None:
        failures = ev.threshold_failures()
        lines += ["", "thresholds: " + ("NOT met" if failures else "met")]
        lines += [f"  {failure}" for failure in failures]
    # Release and member names come from the samples (malware names its files): a newline, an escape
    # sequence or a bidi override would forge rows or drive the terminal.
    out.write("\n".join(printable(line) for line in lines) + "\n")


def render_json(ev: Evaluation, out: IO[str]) -> None:
    json.dump(to_json(ev), out, indent=2)
    out.write("\n")


def parse_fraction(value: str) -> float:
    """``0.9`` or ``90%`` -> 0.9; raises ``ValueError`` outside [0, 1]."""
    text = value.strip()
    # Through Decimal: float("7.2") / 100 is 0.07200000000000001, so "7.2%" was not met by 9 of 125.
    try:
        number = float(Decimal(text[:-1]) / 100) if text.endswith("%") else float(text)
    except (ArithmeticError, ValueError):  # ArithmeticError: Decimal's Overflow ("1e9999999%") and others
        raise ValueError(f"{value!r} is not a number") from None
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{value!r} is not between 0 and 1 (or 0% and 100%)")
    return number + 0.0  # "-0" is 0, not -0.0 in the JSON and "-0.0%" in messages
