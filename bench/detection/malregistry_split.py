"""Reproducible development split of the pypi_malregistry malware dataset, for `rules test`.

Usage (reads a bare clone, writes samples OUTSIDE the repository; never installs or runs them)::

    python bench/detection/malregistry_split.py /path/to/pypi_malregistry.git /work/scratch/malware

What it does, so that anyone gets the same sets:

* **Development set**: every file that ``git log --diff-filter=A`` shows as first added before
  ``CUTOFF`` (2025-01-01T00:00:00Z), in a package (top-level directory) whose first file was added
  before it. Later additions are held for evaluation and are not read at all.
* **Releases**: ``<package>/<version>/...`` is one release (all its files); a file directly under
  ``<package>/`` is a release of its own. Files at the top of the repository (README) are ignored.
* **Split by package name**: a package goes to ``heldback`` when ``sha256(name.lower()) % 5 == 0``
  (about 20 %), else to ``write`` (the part the rules were written against). No seed, no state: the
  assignment of a name never changes when the dataset grows.
* Output: ``OUT/write/<package>@<version>/<files>`` and ``OUT/heldback/...``, each release a folder,
  as `dragonfly-hybrid rules test --malicious OUT/write` expects. Blob content is written as bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

CUTOFF = datetime(2025, 1, 1, tzinfo=timezone.utc)
HELD_BACK_MODULUS = 5


@dataclass(frozen=True)
class Added:
    path: str
    blob: str
    when: datetime


def part_of(package: str) -> str:
    """``heldback`` for about one package name in five, ``write`` for the others; stable per name."""
    digest = int(hashlib.sha256(package.lower().encode()).hexdigest(), 16)
    return "heldback" if digest % HELD_BACK_MODULUS == 0 else "write"


def additions(repo: Path) -> list[Added]:
    """Every file addition in the history, with the blob it added and the commit's author date."""
    out = subprocess.run(
        [
            "git",
            f"--git-dir={repo}",
            "log",
            "--diff-filter=A",
            "--format=@@%H %ad",
            "--date=iso-strict",
            "--raw",
            "--no-abbrev",
            "--no-renames",
            "-z",
        ],
        check=True,
        capture_output=True,
    ).stdout.decode("utf-8", "surrogateescape")
    found: list[Added] = []
    when = CUTOFF
    fields = [field.strip("\n") for field in out.split("\0")]
    i = 0
    while i < len(fields):
        field = fields[i]
        if field.startswith("@@"):
            when = datetime.fromisoformat(field[2:].split()[1])
        elif field.startswith(":") and i + 1 < len(fields):
            found.append(Added(fields[i + 1], field.split()[3], when))
            i += 1
        i += 1
    return found


def development_set(added: list[Added]) -> dict[str, list[Added]]:
    """Release key (``package@version``) -> files, for packages and files added before the cutoff."""
    first: dict[str, datetime] = {}
    for item in added:
        package = item.path.split("/")[0]
        if package not in first or item.when < first[package]:
            first[package] = item.when
    releases: dict[str, list[Added]] = {}
    for item in added:
        parts = item.path.split("/")
        if len(parts) < 2 or item.when >= CUTOFF or first[parts[0]] >= CUTOFF:
            continue
        key = f"{parts[0]}@{parts[1]}"
        releases.setdefault(key, []).append(item)
    return releases


def extract(repo: Path, releases: dict[str, list[Added]], out: Path) -> dict[str, int]:
    """Write every release's blobs under ``out/<part>/<release>/``; the count of releases per part."""
    counts = {"write": 0, "heldback": 0}
    missing: list[Path] = []
    jobs: list[tuple[Path, str]] = []
    for key, items in sorted(releases.items()):
        package = key.split("@", 1)[0]
        part = part_of(package)
        counts[part] += 1
        for item in items:
            relative = PurePosixPath(*item.path.split("/")[2:]) if len(item.path.split("/")) > 2 else None
            name = relative.as_posix() if relative else PurePosixPath(item.path).name
            safe = "/".join(p for p in name.split("/") if p not in ("", ".", ".."))
            jobs.append((out / part / key.replace("/", "_") / safe, item.blob))
    with subprocess.Popen(
        ["git", f"--git-dir={repo}", "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        for target, blob in jobs:
            proc.stdin.write(f"{blob}\n".encode())
            proc.stdin.flush()
            header = proc.stdout.readline().split()
            if len(header) < 3:  # a blob the copy lacks (some mirrors omit files of 4 MiB and more)
                missing.append(target)
                continue
            size = int(header[2])
            data = proc.stdout.read(size)
            proc.stdout.read(1)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        proc.stdin.close()
    if missing:
        print(f"{len(missing)} file(s) missing from the git copy, left out:", file=sys.stderr)
        for target in missing:
            print(f"  {target}", file=sys.stderr)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path, help="bare git directory of lxyeternal/pypi_malregistry")
    parser.add_argument("out", type=Path, help="output folder, outside the repository")
    args = parser.parse_args(argv)
    releases = development_set(additions(args.repo))
    counts = extract(args.repo, releases, args.out)
    print(f"releases: write {counts['write']}, heldback {counts['heldback']} -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
