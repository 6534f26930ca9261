"""The big wheel: one wheel of 50,002 small ``.py`` files, like the largest uploads PyPI's scanner meets.

Issue 19 measures per-file cost on such a wheel (PyPI's upload scanner quotes one of ~50,000 files,
~73 MB compressed, ~200 MB inflated): 50,000 modules of plausible Python (``bench.synthetic``'s text
generator, 300 B - 6 KB each, every one distinct so that no content is scanned once for many), each under a
licence header as real packages carry, plus ``METADATA`` and ``WHEEL`` (``RECORD`` is left out: it would be
one more large file, not one more small one). Deflate level 6, fixed dates: same seed -> same bytes on the
same zlib.

Written once to ``~/.cache/dragonfly-hybrid/bench/bigwheel-<params-hash>/`` (or under ``$DFH_BENCH_CACHE``)
and reused; ``python -m bench.bigwheel`` generates (or finds) it and prints its size.

:data:`COMMON_CODE_RULES` is the rule set of the issue's measurement: 14 rules, most of them on strings
that occur in ordinary Python, so that many files match and every report format has a lot to write.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.synthetic import _LICENSE, _Text, default_cache_dir, write_zip

GENERATOR_VERSION = 1
SEED = 19_050_002
MODULES = 50_000
MODULE_SIZE = (300, 4_600)
"""Target size range of a module before its header (the generator overshoots by up to one block)."""
PROJECT = "bigwheel"
VERSION = "1.0"


@dataclass(frozen=True)
class BigWheel:
    path: Path
    files: int
    size: int
    inflated: int


def _header(rng: random.Random, index: int) -> str:
    year = 2015 + rng.randrange(10)
    return (
        f"# Copyright (c) {year} The {PROJECT} authors, module {index}.\n#\n# "
        + _LICENSE.replace("\n", "\n# ").rstrip("# ")
        + "\n"
    )


def _entries(seed: int, modules: int) -> list[tuple[str, bytes]]:
    rng = random.Random(seed)
    text = _Text(rng)
    entries = []
    for index in range(modules):
        package = f"{PROJECT}/pkg{index // 500:03d}/sub{index % 500 // 50:02d}"
        body = text.python_module(rng.randint(*MODULE_SIZE))
        entries.append((f"{package}/module_{index:05d}.py", _header(rng, index).encode() + body))
    metadata = f"Metadata-Version: 2.1\nName: {PROJECT}\nVersion: {VERSION}\nSummary: 50,002 files\n"
    wheel = "Wheel-Version: 1.0\nGenerator: bench.bigwheel\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    dist_info = f"{PROJECT}-{VERSION}.dist-info"
    entries.append((f"{dist_info}/METADATA", metadata.encode()))
    entries.append((f"{dist_info}/WHEEL", wheel.encode()))
    return entries


def ensure_bigwheel(seed: int = SEED, modules: int = MODULES, cache_dir: Path | None = None) -> BigWheel:
    """The big wheel for ``(seed, modules)``: generated on first use (~30 s), then read from the cache."""
    params = json.dumps(
        {"v": GENERATOR_VERSION, "seed": seed, "modules": modules, "sizes": MODULE_SIZE}, sort_keys=True
    )
    key = hashlib.sha256(params.encode()).hexdigest()[:12]
    root = (cache_dir or default_cache_dir()) / f"bigwheel-{key}"
    wheel = root / f"{PROJECT}-{VERSION}-py3-none-any.whl"
    manifest = root / "manifest.json"
    if not manifest.exists() or not wheel.exists():
        root.mkdir(parents=True, exist_ok=True)
        entries = _entries(seed, modules)
        # Written beside and renamed, so that an interrupted run never leaves a truncated wheel in place.
        fd, tmp = tempfile.mkstemp(dir=root, suffix=".part")
        os.close(fd)
        write_zip(Path(tmp), entries)
        os.replace(tmp, wheel)
        facts = {"files": len(entries), "inflated": sum(len(d) for _, d in entries)}
        manifest.write_text(json.dumps(facts), encoding="utf-8")
    facts = json.loads(manifest.read_text(encoding="utf-8"))
    return BigWheel(wheel, facts["files"], wheel.stat().st_size, facts["inflated"])


def _rule(name: str, weight: int, strings: list[str], condition: str) -> str:
    body = "\n        ".join(strings)
    return (
        f'rule {name} {{\n    meta:\n        weight = {weight}\n        filetype = ".py"\n'
        f"    strings:\n        {body}\n    condition:\n        {condition}\n}}\n"
    )


COMMON_CODE_RULES = "".join(
    _rule(name, weight, strings, condition)
    for name, weight, strings, condition in [
        ("common_import_os", 1, ['$a = "import os"'], "$a"),
        ("common_import_sys", 1, ['$a = "import sys"'], "$a"),
        ("common_import_json", 1, ['$a = "import json"'], "$a"),
        ("common_import_re", 1, ['$a = "import re"'], "$a"),
        ("common_return_none", 1, ['$a = "return None"'], "$a"),
        ("common_subprocess", 3, ['$a = "subprocess"'], "$a"),
        ("common_base64", 2, ['$a = "base64"'], "$a"),
        ("common_threading", 1, ['$a = "import threading"'], "$a"),
        ("common_tempfile", 1, ['$a = "tempfile"'], "$a"),
        ("common_subprocess_socket", 4, ['$a = "subprocess"', '$b = "socket"'], "all of them"),
        ("common_os_open", 2, ['$a = "import os"', '$b = "open("'], "all of them"),
        ("rare_exec_b64", 5, ['$a = "exec(base64.b64decode("'], "$a"),
        ("rare_webhook", 3, ['$a = "discord.com/api/webhooks/"'], "$a"),
        (
            "rare_curl_sh",
            4,
            ["$a = /curl -s https?:\\/\\/[a-z0-9.\\-]{3,64}\\/[a-z0-9_.\\/]{1,64} \\| (ba)?sh/"],
            "$a",
        ),
    ]
)
"""14 rules, 11 of which match common code (imports, ``return None``): about 30% of the modules match one or
more; the other 3 look for malware snippets that the wheel does not hold."""


def common_code_sources() -> dict[str, str]:
    return {"bench/common-code.yar": COMMON_CODE_RULES}


if __name__ == "__main__":
    found = ensure_bigwheel()
    print(
        f"{found.path}: {found.files} files, {found.size / 1e6:.1f} MB compressed, "
        f"{found.inflated / 1e6:.1f} MB inflated"
    )
