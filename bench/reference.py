"""A reference-node-style scan loop: extract each archive to a temporary directory, then scan it file by file.

For each distribution, single-threaded:

1. detect the format from the magic bytes (as ``bench.baseline.members`` does);
2. extract it into a fresh ``tempfile.TemporaryDirectory``: ``tarfile`` ``extractall(filter="data")`` (the
   safe filter of PEP 706) or ``zipfile`` ``extractall`` (which sanitises member names itself); a plain file
   is scanned where it is;
3. walk the directory and scan every regular file with one reused ``yara_x.Scanner`` (``scan_file``);
   symbolic links are not followed (the baseline does not scan link members either);
4. score as the baseline does (``filetype`` against the archive-relative path, weights of distinct rules);
5. delete the directory.

Where its results can legitimately differ from the in-memory baseline's, it is because of what extraction
does to an archive, never because of scanning: the ``data`` filter *refuses* members with absolute or
escaping paths or links (the whole archive then fails with the tarfile error, as a reference node's job
would; it does not happen on the benchmark corpora); ``zipfile`` rewrites such names (drops ``..``, drive
letters and leading slashes) so a ``filetype`` suffix still ends the path; a tar hard link is extracted as
a file and scanned (the baseline skips link members), and of two members with the same path only the last
is on disk. ``tests/test_bench_helpers.py`` checks that it agrees with the baseline.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Mapping

import yara_x

from bench.baseline import BaselineScanner, Outcome


def archive_kind(head: bytes) -> str:
    """``tar``, ``zip`` or ``file`` from the first 512 bytes, with the baseline's magic-byte tests."""
    if (
        head[:2] == b"\x1f\x8b"
        or head[:3] == b"BZh"
        or head[:6] == b"\xfd7zXZ\x00"
        or head[257:262] == b"ustar"
    ):
        return "tar"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    return "file"


class ExtractingScanner(BaselineScanner):
    """The baseline's rules and scoring, fed from an extracted directory instead of memory."""

    def __init__(
        self,
        sources: Mapping[str, str] | None = None,
        rules: yara_x.Rules | None = None,
        temp_dir: str | None = None,
    ) -> None:
        super().__init__(sources, rules)
        self.temp_dir = temp_dir if temp_dir is not None else os.environ.get("DFH_BENCH_EXTRACT_DIR")

    def _score_file(self, full: str, rel: str, matched: dict[str, int]) -> int:
        for rule in self.scanner.scan_file(full).matching_rules:
            weight, suffixes = self._rule_info(rule)
            if suffixes is not None and not rel.endswith(suffixes):
                continue
            matched[rule.identifier] = weight
        return os.path.getsize(full)

    def scan_path(self, path: str | os.PathLike[str]) -> Outcome:
        path = os.fspath(path)
        with open(path, "rb") as f:
            kind = archive_kind(f.read(512))
        matched: dict[str, int] = {}
        if kind == "file":
            size = self._score_file(path, os.path.basename(path), matched)
            return Outcome(sum(matched.values()), frozenset(matched), 1, size)
        files = total = 0
        with tempfile.TemporaryDirectory(prefix="dfh-bench-extract-", dir=self.temp_dir) as root:
            if kind == "tar":
                with tarfile.open(path, mode="r:*") as tar:
                    tar.extractall(root, filter="data")
            else:
                with zipfile.ZipFile(path) as zf:
                    zf.extractall(root)
            for directory, _, names in os.walk(root):
                for name in names:
                    full = os.path.join(directory, name)
                    if os.path.islink(full):
                        continue
                    rel = os.path.relpath(full, root)
                    if os.sep != "/":
                        rel = rel.replace(os.sep, "/")
                    total += self._score_file(full, rel, matched)
                    files += 1
        return Outcome(sum(matched.values()), frozenset(matched), files, total)

    def scan_many(self, paths: Iterable[str | os.PathLike[str]]) -> list[Outcome]:
        return [self.scan_path(p) for p in paths]
