"""Pin the newest release of each named PyPI project for the benign detection list.

Usage::

    python bench/detection/resolve_benign.py NAMES.txt DOWNLOAD_DIR >> bench/detection/benign.txt

For each project name (one a line, ``#`` comments) it reads PyPI's JSON API, takes the newest version's
sdist (the source, tests and install hooks included), or when there is none a pure-Python wheel, or a
CPython 3.11 x86-64 Linux / Windows wheel; downloads it into DOWNLOAD_DIR, checks the sha256 PyPI lists,
and prints the ``bench/corpus.txt``-format line (``name==version``, file, sha256, size). Nothing is built,
installed or run. Files over ``MAX_SIZE`` are skipped.
"""

from __future__ import annotations

import hashlib
import json
import sys
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

INDEX = "https://pypi.org/pypi"
MAX_SIZE = 60_000_000


def pick(files: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The preferred distribution of one version: sdist, then pure wheel, then CPython 3.11 wheels."""
    usable = [f for f in files if not f.get("yanked") and int(f.get("size", 0)) <= MAX_SIZE]
    ranks = (
        lambda f: f["packagetype"] == "sdist",
        lambda f: f["filename"].endswith("-none-any.whl"),
        lambda f: "cp311" in f["filename"] and "manylinux" in f["filename"] and "x86_64" in f["filename"],
        lambda f: "cp311" in f["filename"] and "win_amd64" in f["filename"],
        lambda f: f["filename"].endswith("-abi3-win_amd64.whl") or f["filename"].endswith("-win_amd64.whl"),
    )
    for rank in ranks:
        chosen = [f for f in usable if rank(f)]
        if chosen:
            return chosen[0]
    return None


def resolve(name: str, out: Path) -> str | None:
    url = f"{INDEX}/{name}/json"
    with urllib.request.urlopen(url, timeout=60) as response:
        data = json.load(response)
    version = data["info"]["version"]
    chosen = pick(data.get("urls", []))
    if chosen is None:
        print(f"{name}: no usable distribution of {version}", file=sys.stderr)
        return None
    target = out / chosen["filename"]
    if not target.exists():
        with urllib.request.urlopen(urllib.parse.urljoin(url, chosen["url"]), timeout=300) as response:
            target.write_bytes(response.read())
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != chosen["digests"]["sha256"]:
        target.unlink()
        raise SystemExit(f"{chosen['filename']}: sha256 {digest} is not the listed one")
    return (
        f"{data['info']['name'].lower()}=={version}\t{chosen['filename']}\t{digest}\t{target.stat().st_size}"
    )


def main(argv: list[str]) -> int:
    names = [line.strip() for line in Path(argv[0]).read_text().splitlines()]
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not name or name.startswith("#"):
            continue
        try:
            line = resolve(name, out)
        except OSError as err:
            print(f"{name}: {err}", file=sys.stderr)
            continue
        if line:
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
