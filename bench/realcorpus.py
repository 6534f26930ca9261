"""The real corpus: popular PyPI releases pinned by sha256 (``bench/corpus.txt``), downloaded once.

``bench/corpus.txt`` has one distribution per line, tab-separated: ``name==version``, file name, sha256,
size in bytes (``#`` starts a comment). Each line is one release with one distribution.

:func:`ensure_real_corpus` makes every file available in a cache directory (``$DFH_BENCH_CORPUS_CACHE``,
default ``~/.cache/dragonfly-hybrid/corpus/``):

* a file already in the cache is hashed and reused only if its sha256 and size are the pinned ones (it is
  never trusted without that check); a cached file that differs is an error naming it (delete it to let
  the next run download it again);
* a missing file is resolved and downloaded with the project's own client
  (:class:`dragonfly_hybrid.pypi.index.PyPIClient`, which checks the digest the index publishes), into a
  temporary file that is checked against the pin and then renamed into place.

Inflated size and file count of each distribution (its regular members, walked with
``bench.baseline.members``, as the baseline counts them) are computed once and kept in ``manifest.json``
next to the files, keyed by sha256, so later runs do not walk the archives again.

``python -m bench.realcorpus`` downloads (or verifies) the corpus and prints it; with ``--markdown`` as a
markdown table, with ``--update FILE`` into the ``<!-- real-corpus:begin -->`` ... ``end`` section of FILE
(``BENCHMARKS.md``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dragonfly_hybrid.pypi.index import PyPIClient, PyPIError

from bench.synthetic import CorpusTotals, Distribution

CORPUS_LIST = Path(__file__).with_name("corpus.txt")
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_HASH_CHUNK = 1 << 20
_SHA256 = re.compile(r"[0-9a-f]{64}")


class CorpusError(Exception):
    """A corpus file is unavailable, or does not have its pinned sha256 or size."""


@dataclass(frozen=True)
class Entry:
    """One line of the corpus list."""

    name: str
    version: str
    filename: str
    sha256: str
    size: int


@dataclass
class RealCorpus(CorpusTotals):
    """The downloaded, verified real corpus (same interface as ``bench.synthetic.Corpus``)."""

    root: Path
    source: Path
    distributions: list[Distribution]


def default_cache_dir() -> Path:
    if env := os.environ.get("DFH_BENCH_CORPUS_CACHE"):
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dragonfly-hybrid" / "corpus"


def parse_corpus_list(text: str, source: str = "corpus list") -> list[Entry]:
    """The entries of a corpus list; a malformed line is an error naming its line number."""
    entries: list[Entry] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split("\t")
        where = f"{source}, line {number}"
        if len(fields) != 4:
            raise CorpusError(f"{where}: expected 4 tab-separated fields, found {len(fields)}: {line!r}")
        spec, filename, sha256, size = (f.strip() for f in fields)
        name, sep, version = spec.partition("==")
        if not sep or not name or not version:
            raise CorpusError(f"{where}: expected name==version, found {spec!r}")
        if not filename or "/" in filename or filename in (".", ".."):
            raise CorpusError(f"{where}: invalid file name {filename!r}")
        if not _SHA256.fullmatch(sha256.lower()):
            raise CorpusError(f"{where}: {filename}: invalid sha256 {sha256!r}")
        if not size.isdigit():
            raise CorpusError(f"{where}: {filename}: invalid size {size!r}")
        if filename in seen:
            raise CorpusError(f"{where}: {filename} is listed twice")
        seen.add(filename)
        entries.append(Entry(name, version, filename, sha256.lower(), int(size)))
    if not entries:
        raise CorpusError(f"{source}: no entries")
    return entries


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in chunks (never the whole file in memory)."""
    hasher = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def verify(path: Path, entry: Entry) -> None:
    """Raise :class:`CorpusError` naming the file unless it has the pinned size and sha256."""
    size = path.stat().st_size
    if size != entry.size:
        raise CorpusError(
            f"{entry.filename} ({entry.name}=={entry.version}) at {path} has {size} bytes, "
            f"the corpus list pins {entry.size}; delete it to download it again"
        )
    digest = file_sha256(path)
    if digest != entry.sha256:
        raise CorpusError(
            f"{entry.filename} ({entry.name}=={entry.version}) at {path} has sha256 {digest}, "
            f"the corpus list pins {entry.sha256}; delete it to download it again"
        )


def download(entry: Entry, dest: Path, client: PyPIClient) -> None:
    """Resolve ``entry`` with the project's PyPI client and download it to ``dest`` (verified, then
    renamed into place)."""
    what = f"{entry.filename} ({entry.name}=={entry.version})"
    try:
        release = client.resolve(entry.name, entry.version)
    except PyPIError as err:
        raise CorpusError(f"{what} is unavailable: {err}") from err
    file = next((f for f in release.files if f.filename == entry.filename), None)
    if file is None:
        listed = ", ".join(f.filename for f in release.files) or "none"
        raise CorpusError(f"{what} is not among the release's files on the index ({listed})")
    if file.sha256 is not None and file.sha256 != entry.sha256:
        raise CorpusError(
            f"{what}: the index lists sha256 {file.sha256}, the corpus list pins {entry.sha256}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.filename}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as sink:
            try:
                client.download(file, sink)
            except PyPIError as err:
                raise CorpusError(f"{what} could not be downloaded: {err}") from err
        verify(tmp, entry)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _read_manifest(root: Path) -> dict[str, dict[str, int | str]]:
    try:
        data = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        return {}
    files = data.get("files")
    return files if isinstance(files, dict) else {}


def _write_manifest(root: Path, files: dict[str, dict[str, int | str]]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".json", dir=root)
    with os.fdopen(fd, "w") as f:
        json.dump({"format": MANIFEST_FORMAT, "files": files}, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, root / MANIFEST)


def walk_counts(path: Path) -> tuple[int, int]:
    """(inflated bytes, regular files) of a distribution, as ``bench.baseline.members`` walks it."""
    from bench.baseline import members  # imports yara_x: not needed by the rest of this module

    inflated = files = 0
    for _, content in members(path.read_bytes(), path.name):
        inflated += len(content)
        files += 1
    return inflated, files


def ensure_real_corpus(
    list_path: Path | None = None,
    cache_dir: Path | None = None,
    *,
    index_url: str | None = None,
    client: PyPIClient | None = None,
) -> RealCorpus:
    """Every file of the corpus list, in the cache and verified (downloading only what is missing)."""
    source = list_path or CORPUS_LIST
    root = cache_dir or default_cache_dir()
    entries = parse_corpus_list(source.read_text(encoding="utf-8"), str(source))
    fetch_verified(entries, root, index_url=index_url, client=client)
    return RealCorpus(root, source, _distributions(root, entries))


def fetch_verified(
    entries: Sequence[Entry], root: Path, *, index_url: str | None = None, client: PyPIClient | None = None
) -> None:
    """Every entry's file in ``root``: verified when there, downloaded (then verified) when missing."""
    owned = None
    try:
        for entry in entries:
            path = root / entry.filename
            if path.exists():
                verify(path, entry)
                continue
            if client is None:
                client = owned = PyPIClient(index_url)
            download(entry, path, client)
    finally:
        if owned is not None:
            owned.close()


def _distributions(root: Path, entries: Sequence[Entry]) -> list[Distribution]:
    manifest = _read_manifest(root)
    changed = False
    distributions = []
    for entry in entries:
        path = root / entry.filename
        known = manifest.get(entry.filename)
        if not (known and known.get("sha256") == entry.sha256 and known.get("size") == entry.size):
            inflated, files = walk_counts(path)
            known = {"sha256": entry.sha256, "size": entry.size, "inflated": inflated, "files": files}
            manifest[entry.filename] = known
            changed = True
        distributions.append(
            Distribution(
                release=entry.name,
                version=entry.version,
                filename=entry.filename,
                path=path,
                size=entry.size,
                inflated=int(known["inflated"]),
                files=int(known["files"]),
                sha256=entry.sha256,
            )
        )
    if changed:
        _write_manifest(root, manifest)
    return distributions


MARKDOWN_BEGIN = "<!-- real-corpus:begin -->"
MARKDOWN_END = "<!-- real-corpus:end -->"


def markdown(corpus: RealCorpus) -> str:
    """The corpus as a markdown table (sizes from the list, inflated sizes and counts from the walk)."""
    lines = [
        "| release | file | MB compressed | MB inflated | files | sha256 (first 12) |",
        "|---|---|---:|---:|---:|---|",
    ]
    for d in corpus.distributions:
        lines.append(
            f"| {d.release}=={d.version} | `{d.filename}` | {d.size / 1e6:.2f} | {d.inflated / 1e6:.2f} "
            f"| {d.files:,} | `{d.sha256[:12]}` |"
        )
    lines.append(
        f"| **{len(corpus.distributions)} releases** | | **{corpus.compressed_bytes / 1e6:.1f}** "
        f"| **{corpus.inflated_bytes / 1e6:.1f}** | **{corpus.file_count:,}** | |"
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys
    import time

    parser = argparse.ArgumentParser(prog="python -m bench.realcorpus", description=__doc__.split("\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print the corpus as a markdown table")
    parser.add_argument("--update", type=Path, metavar="FILE", help="write the table into FILE's section")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        corpus = ensure_real_corpus()
    except CorpusError as err:
        print(f"bench.realcorpus: {err}", file=sys.stderr)
        return 1
    if args.update:
        from bench.report import update

        update(args.update, markdown(corpus), MARKDOWN_BEGIN, MARKDOWN_END)
    elif args.markdown:
        sys.stdout.write(markdown(corpus))
    else:
        for d in corpus.distributions:
            print(f"{d.release}=={d.version}\t{d.filename}\t{d.size}\t{d.inflated}\t{d.files}")
        print(f"{corpus.root}: {corpus.describe()} ({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
