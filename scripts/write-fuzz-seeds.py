#!/usr/bin/env python3
"""Write the differential generator's cases (tests/archive_gen.py) as cargo-fuzz seeds.

    python scripts/write-fuzz-seeds.py [CORPUS_DIR] [--cases N] [--seed S]

CORPUS_DIR defaults to rust/core/fuzz/corpus. Each case goes to CORPUS_DIR/scan_any/ as it is;
gzip streams also to walk_gzip/ (and their decompressed tarball to walk_tar/), .tar to walk_tar/,
.tar.bz2 to walk_bzip2/, .tar.xz to walk_xz/, .tar.lzma and .tlz to walk_lzma/, and anything
with a zip end record to walk_zip/.
File names are gen-<sha256 prefix>, so rerunning is idempotent and never clobbers other seeds.
Only the standard library; deterministic for a given --cases/--seed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # a script: the repository root, for `tests.archive_gen`

from tests.archive_gen import write_seeds  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("corpus", nargs="?", default=str(ROOT / "rust" / "core" / "fuzz" / "corpus"))
    parser.add_argument("--cases", type=int, default=600, help="generated cases to write (default 600)")
    parser.add_argument("--seed", type=int, default=0, help="the generator's seed (default 0)")
    args = parser.parse_args(argv)
    counts = write_seeds(args.corpus, n=args.cases, seed=args.seed)
    summary = ", ".join(f"{target}: {n}" for target, n in sorted(counts.items()))
    print(f"wrote {args.cases} generated cases to {args.corpus} ({summary})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
