"""Differential test of the engine against CPython's ``zipimport`` (pass 65a).

``zipimport`` is the zip reader Python runs code from when a zip is on ``sys.path``; pip 26.3 imports an
sdist's build backend through it when ``backend-path`` names a zip inside the sdist. It reads a zip its
own way (the classic end record only, the central directory until a signature that is not a central
record, the central name, sizes and offset, the local header's two lengths, any method but stored
inflated as raw deflate, no CRC-32, flags, external attributes or extra fields looked at).

Each case builds a zip (``archive_gen.zip_of`` or the raw writer below, then zero to three mutations of
the fields ``zipimport`` reads: end record size/offset/comment, central sizes/offsets/method/name
length/flags/attributes/extra, local header fields, data past the declared sizes, prepended bytes, gaps,
zip64 records and locators, duplicate names, names with ``/``, ``\\``, ``./``, NUL, non-UTF-8, and random
byte flips) holding modules whose source carries a unique marker (``ZMK`` + 12 hex digits). The oracle is
``zipimport.zipimporter(path)._files`` and ``get_data`` for each name ending in ``.py``. The zip is scanned
as ``b.zip`` in an sdist (as ``tests/test_review_pass64a.py`` does) and as a top-level ``.zip``, with a
rule matching the markers in ``.py`` files only (``filetype``) and one matching them anywhere. For each
marker in a ``.py`` content ``zipimport`` serves, the ``.py`` rule must have matched that marker (on a
path the engine decided fits ``.py``) or the result must not be complete.

``DFH_ZIPIMPORT_SEED`` (default 0) and ``DFH_ZIPIMPORT_CASES`` (default 2000) choose the random cases;
a failing case prints its seed, index and recipe, and ``python -c "from tests.test_zipimport_differential
import make_case; open('/tmp/z.zip', 'wb').write(make_case(SEED, INDEX)[1])"`` rebuilds it.
"""

from __future__ import annotations

import os
import random
import re
import struct
import zipimport
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from dragonfly_hybrid import DistributionResult, Rules, Scanner

from tests.archive_gen import mutate_bytes, zip_of
from tests.test_review_pass64a import sdist

SEED = int(os.environ.get("DFH_ZIPIMPORT_SEED", "0"))
CASES = int(os.environ.get("DFH_ZIPIMPORT_CASES", "2000"))

MARK = re.compile(rb"ZMK[0-9a-f]{12}")
RULES = {
    "zipimport.yar": (
        'rule zi_py { meta: filetype = ".py" strings: $a = /ZMK[0-9a-f]{12}/ condition: $a }\n'
        "rule zi_any { strings: $a = /ZMK[0-9a-f]{12}/ condition: $a }\n"
    )
}
BENIGN = b"def build_wheel(*args, **kwargs):\n    return 'benign'\n"
ZIP64_EXTRA_ID = 0x0001


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner(Rules.compile(RULES), threads=1)


# --- the raw zip writer ------------------------------------------------------------------------------


def deflate(data: bytes, level: int = 9) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


@dataclass
class Entry:
    """One member; ``None`` fields take the value a correct zip has."""

    name: bytes
    data: bytes
    method: int = 0  # how ``body`` encodes ``data`` (0 stored, 8 deflate)
    body: bytes | None = None  # the bytes after the local header
    cmethod: int | None = None
    lmethod: int | None = None
    flags: int = 0
    lflags: int | None = None
    crc: int | None = None
    csize: int | None = None
    usize: int | None = None
    lcrc: int | None = None
    lcsize: int | None = None
    lusize: int | None = None
    lname: bytes | None = None
    lextra: bytes = b""
    cextra: bytes = b""
    ccomment: bytes = b""
    made_by: int = 20
    attr: int = 0o644 << 16
    offset: int | None = None  # the central record's local header offset, absolute in ``Zip.parts``
    offset_of: int | None = None  # point at another entry's local header
    gap: bytes = b""  # before the local header
    listed: bool = True  # has a central record
    extra_records: int = 0  # the central record written this many more times

    def encoded(self) -> bytes:
        if self.body is not None:
            return self.body
        return self.data if self.method == 0 else deflate(self.data)


@dataclass
class Zip:
    entries: list[Entry]
    prefix: bytes = b""
    before_dir: bytes = b""
    comment: bytes = b""
    comment_len: int | None = None
    count: int | None = None
    dir_size_delta: int = 0
    dir_offset_delta: int = 0
    tail: bytes = b""  # after the end record (and its comment)
    zip64: str = ""  # "", "same", "other", "subset", "saturated", "badlocator", "classic-exact"
    after_dir: bytes = b""  # after the central records, inside the classic size
    embedded: int = 0  # "PK\x05\x06" written into the end record at this offset (4 or 8)
    decoy_end: bool = False  # a second end record, in the comment, naming an empty directory
    recipe: list[str] = field(default_factory=list)


def local_header(e: Entry, body: bytes) -> bytes:
    name = e.name if e.lname is None else e.lname
    crc = zlib.crc32(e.data)
    fields = (
        b"PK\x03\x04",
        20,
        e.flags if e.lflags is None else e.lflags,
        (e.method if e.cmethod is None else e.cmethod) if e.lmethod is None else e.lmethod,
        0,
        0x21,
        crc if e.lcrc is None else e.lcrc,
        len(body) if e.lcsize is None else e.lcsize,
        len(e.data) if e.lusize is None else e.lusize,
        len(name),
        len(e.lextra),
    )
    return struct.pack("<4sHHHHHIIIHH", *fields) + name + e.lextra


def central_record(e: Entry, body: bytes, offset: int) -> bytes:
    fields = (
        b"PK\x01\x02",
        e.made_by,
        20,
        e.flags,
        e.method if e.cmethod is None else e.cmethod,
        0,
        0x21,
        zlib.crc32(e.data) if e.crc is None else e.crc,
        len(body) if e.csize is None else e.csize,
        len(e.data) if e.usize is None else e.usize,
        len(e.name),
        len(e.cextra),
        len(e.ccomment),
        0,
        0,
        e.attr,
        offset & 0xFFFFFFFF,
    )
    return struct.pack("<4sHHHHHHIIIHHHHHII", *fields) + e.name + e.cextra + e.ccomment


def build(z: Zip) -> bytes:
    out = bytearray(z.prefix)
    base = len(z.prefix)
    offsets = []
    for e in z.entries:
        out += e.gap
        offsets.append(len(out) - base)
        body = e.encoded()
        out += local_header(e, body) + body
    out += z.before_dir
    dir_at = len(out) - base
    directory = bytearray()
    records = 0
    for e, at in zip(z.entries, offsets, strict=True):
        if not e.listed:
            continue
        at = offsets[e.offset_of % len(offsets)] if e.offset_of is not None else at
        at = at if e.offset is None else e.offset
        for _ in range(1 + e.extra_records):
            directory += central_record(e, e.encoded(), at)
            records += 1
    out += directory
    count = records if z.count is None else z.count
    size = len(directory) + z.dir_size_delta
    offset = dir_at + z.dir_offset_delta
    out += z.after_dir
    size += len(z.after_dir)
    if z.zip64:
        zip64_at = len(out) - base
        d64, o64 = len(directory), dir_at
        if z.zip64 == "other":  # the zip64 record names an empty directory at its own position
            d64, o64 = 0, zip64_at
        elif z.zip64 == "subset":  # the zip64 record names the first central record only
            d64 = len(central_record(z.entries[0], z.entries[0].encoded(), 0)) if z.entries[0].listed else 0
        if z.zip64 != "classic-exact":  # the classic size reaches the end record: zipimport reads it
            size += 76
        out += struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, count, count, d64, o64)
        locator_at = zip64_at + (7 if z.zip64 == "badlocator" else 0)
        out += struct.pack("<4sIQI", b"PK\x06\x07", 0, locator_at, 1)
        if z.zip64 == "saturated":
            count, size, offset = 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF
    comment = z.comment
    if z.decoy_end:
        comment = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0, 0, 0, 0, 0) + comment
    comment_len = len(comment) if z.comment_len is None else z.comment_len
    out += struct.pack(
        "<4sHHHHIIH",
        b"PK\x05\x06",
        0,
        0,
        count & 0xFFFF,
        count & 0xFFFF,
        size & 0xFFFFFFFF,
        offset & 0xFFFFFFFF,
        comment_len & 0xFFFF,
    )
    end = bytearray(out[-22:])
    if z.embedded:  # zipfile's search then finds a signature too near the end: "not a zip file"
        end[z.embedded : z.embedded + 4] = b"PK\x05\x06"
        out[-22:] = end
    return bytes(out + comment + z.tail)


# --- cases ---------------------------------------------------------------------------------------------


def marker(rng: random.Random) -> bytes:
    return b"ZMK" + rng.randbytes(6).hex().encode()


def source(rng: random.Random) -> bytes:
    return (
        b"import os\n" + rng.choice([b"", b"# pad\n" * rng.randint(1, 40)]) + b"X = '" + marker(rng) + b"'\n"
    )


NAMES: list[bytes] = [
    b"backend.py",
    b"pkg/__init__.py",
    b"pkg/mod.py",
    b"./backend.py",
    b"pkg\\mod.py",
    b"/abs.py",
    b"a/../evil.py",
    b"x\x00y.py",
    b"\x82t\x82.py",  # CP437, not UTF-8
    "\u00e9t\u00e9.py".encode(),
    b"pkg//double.py",
    b"pkg/./dot.py",
    b"sp ace.py",
    b"tr.py ",
    b"data.txt",
]


def base_zip(rng: random.Random) -> Zip:
    entries = []
    for _ in range(rng.randint(1, 4)):
        name = rng.choice(NAMES[:3]) if rng.random() < 0.5 else rng.choice(NAMES)
        data = source(rng)
        method = rng.choice([0, 8])
        flags = 0x800 if (rng.random() < 0.3 and _is_utf8(name)) else 0
        entries.append(Entry(name, data, method, flags=flags))
    return Zip(entries)


def _is_utf8(name: bytes) -> bool:
    try:
        name.decode()
    except UnicodeDecodeError:
        return False
    return True


def _pick(rng: random.Random, z: Zip) -> Entry:
    return rng.choice(z.entries)


def m_past_size(rng: random.Random, z: Zip) -> str:
    e = _pick(rng, z)
    head = BENIGN
    e.data = head + e.data
    e.usize = len(head) if rng.random() < 0.7 else rng.randint(0, len(e.data))
    e.crc = zlib.crc32(head) if rng.random() < 0.7 else rng.getrandbits(32)
    if rng.random() < 0.5:
        e.lusize, e.lcrc = e.usize, e.crc
    return "past-size"


def m_csize(rng: random.Random, z: Zip) -> str:
    e = _pick(rng, z)
    body = e.encoded()
    kind = rng.choice(["trailing", "shorter", "random"])
    if kind == "trailing":  # bytes after the (deflate) data that the sizes cover
        e.body = body + rng.choice([b"\n" + source(rng), rng.randbytes(rng.randint(1, 9))])
        e.csize = len(e.body) if rng.random() < 0.7 else len(body)
    elif kind == "shorter":
        e.csize = max(0, len(body) - rng.randint(1, 8))
    else:
        e.csize = rng.choice([0, 1, len(body) + 1, 0xFFFFFFFF])
    if rng.random() < 0.5:
        e.lcsize = e.csize
    return f"csize-{kind}"


def m_method(rng: random.Random, z: Zip) -> str:
    e = _pick(rng, z)
    e.method = 8
    value = rng.choice([1, 6, 8, 9, 12, 14, 93, 95, 98, 99, 0xFFFF])
    where = rng.choice(["central", "local", "both"])
    if where in ("central", "both"):
        e.cmethod = value
    if where in ("local", "both"):
        e.lmethod = rng.choice([0, value])
    return f"method-{where}-{value}"


def m_local(rng: random.Random, z: Zip) -> str:
    e = _pick(rng, z)
    kind = rng.choice(["name", "name-len", "extra", "flags", "sizes-zero"])
    if kind == "name":
        e.lname = rng.choice([b"other.txt", b"backend.py", e.name + b"x", b""])
    elif kind == "name-len":  # a longer local name: the data starts later, junk in between
        e.lname = e.name + b"\x00" * rng.randint(1, 5)
    elif kind == "extra":
        e.lextra = rng.choice([b"\x00" * 4, struct.pack("<HH", 0x5455, 5) + b"\x01" + b"\0" * 4, b"JUNK"])
    elif kind == "flags":
        e.lflags = rng.choice([0x1, 0x8, 0x41, 0x2000])
    else:
        e.lflags, e.lcrc, e.lcsize, e.lusize = 0x8, 0, 0, 0
    return f"local-{kind}"


def m_flags(rng: random.Random, z: Zip) -> str:
    e = _pick(rng, z)
    bit = rng.choice([0x1, 0x8, 0x20, 0x40, 0x800, 0x2000, 0x1 | 0x40])
    e.flags |= bit
    return f"flags-{bit:#x}"


def m_attr(rng: random.Random, z: Zip) -> str:
    e = _pick(rng, z)
    kind, attr, made_by = rng.choice(
        [
            ("symlink", (0o120777 << 16), 0x314),
            ("dir", (0o40755 << 16) | 0x10, 0x314),
            ("dos-dir", 0x10, 20),
            ("fifo", 0o10644 << 16, 0x314),
            ("chr", 0o20644 << 16, 0x314),
            ("exec", 0o100755 << 16, 0x314),
            ("hidden", 0x2, 20),
        ]
    )
    e.attr, e.made_by = attr, made_by
    return f"attr-{kind}"


def m_cextra(rng: random.Random, z: Zip) -> str:
    e = _pick(rng, z)
    kind = rng.choice(["bad-length", "zip64", "zip64-short", "unicode-path", "junk"])
    if kind == "bad-length":  # a length past the field's end
        e.cextra = struct.pack("<HH", 0x5455, 40) + b"\x01\0\0\0\0"
    elif kind == "zip64":  # sizes saturated, the real ones in the zip64 field
        body = e.encoded()
        e.csize = e.usize = 0xFFFFFFFF
        e.cextra = struct.pack("<HHQQ", ZIP64_EXTRA_ID, 16, len(e.data), len(body))
    elif kind == "zip64-short":
        e.cextra = struct.pack("<HHI", ZIP64_EXTRA_ID, 4, 7)
    elif kind == "unicode-path":
        uni = rng.choice(["backend.py", "readme.txt", "pkg/mod.py"]).encode()
        e.cextra = struct.pack("<HHBI", 0x7075, 5 + len(uni), 1, zlib.crc32(e.name)) + uni
    else:
        e.cextra = b"J"
    if rng.random() < 0.3:
        e.ccomment = rng.choice([b"comment", b"PK\x01\x02", b"\0"])
    return f"cextra-{kind}"


def m_name(rng: random.Random, z: Zip) -> str:
    e = _pick(rng, z)
    e.name = rng.choice(NAMES)
    if rng.random() < 0.3:
        e.flags |= 0x800  # maybe not UTF-8: zipimport then fails
    return "name"


def m_duplicate(rng: random.Random, z: Zip) -> str:
    e = _pick(rng, z)
    other = replace(e, data=source(rng), method=rng.choice([0, 8]), body=None)
    if rng.random() < 0.5:
        z.entries.append(other)
    else:
        z.entries.insert(0, other)
    if rng.random() < 0.3:  # a benign one last: zipimport keeps the last name
        z.entries.append(replace(e, data=BENIGN, body=None))
    return "duplicate"


def m_offset(rng: random.Random, z: Zip) -> str:
    e = _pick(rng, z)
    kind = rng.choice(["other-entry", "plus", "minus"])
    if kind == "other-entry":
        z.entries.append(Entry(b"decoy.txt", b"benign\n", 0))
        e.offset_of = rng.randrange(len(z.entries))
    else:
        start = sum(
            len(x.gap) + 30 + len(x.lname or x.name) + len(x.lextra) + len(x.encoded())
            for x in z.entries[: z.entries.index(e)]
        )
        e.offset = max(0, start + (rng.randint(1, 40) if kind == "plus" else -rng.randint(1, 40)))
    return f"offset-{kind}"


def m_unlisted(rng: random.Random, z: Zip) -> str:
    e = _pick(rng, z)
    kind = rng.choice(["unlisted", "twice"])
    if kind == "unlisted":
        e.listed = False
    else:
        e.extra_records = rng.randint(1, 2)
    return kind


def m_gap(rng: random.Random, z: Zip) -> str:
    e = _pick(rng, z)
    stuff = rng.choice([b"\0" * 8, b"#\n", b"PK\x03\x04", source(rng), rng.randbytes(rng.randint(1, 30))])
    if rng.random() < 0.5:
        e.gap = stuff
    else:
        z.before_dir = stuff
    return "gap"


def m_prefix(rng: random.Random, z: Zip) -> str:
    kind = rng.choice(["shell", "random", "zip", "py"])
    if kind == "shell":
        z.prefix = b'#!/bin/sh\nexec python3 "$0"\n'
    elif kind == "random":
        z.prefix = rng.randbytes(rng.randint(1, 200))
    elif kind == "zip":
        z.prefix = zip_of([("backend.py", BENIGN)])
    else:
        z.prefix = source(rng)
    return f"prefix-{kind}"


def m_end(rng: random.Random, z: Zip) -> str:
    kind = rng.choice(
        [
            "comment",
            "comment-len-long",
            "comment-len-short",
            "tail",
            "count",
            "size",
            "offset",
            "decoy",
            "comment-end",
            "embedded",
            "after-dir",
        ]
    )
    if kind == "comment":
        z.comment = rng.choice([b"hello", rng.randbytes(rng.randint(1, 60)), source(rng)])
    elif kind == "comment-len-long":
        z.comment = b"abc"
        z.comment_len = rng.randint(4, 100)
    elif kind == "comment-len-short":
        z.comment = b"abcdefgh" + source(rng)
        z.comment_len = rng.randint(0, 7)
    elif kind == "tail":
        z.tail = rng.choice([b"\0", b"\n" * 3, rng.randbytes(rng.randint(1, 40)), source(rng)])
    elif kind == "count":
        z.count = rng.choice([0, 1, 7, 0xFFFF])
    elif kind == "size":
        z.dir_size_delta = rng.choice([-46, -1, 1, 4, 46, 100])
    elif kind == "offset":
        z.dir_offset_delta = rng.choice([-30, -1, 1, 30])
    elif kind == "decoy":
        z.decoy_end = True
    elif kind == "embedded":  # the signature in the disk-number (4) or count (8) fields, zipimport's
        z.embedded = rng.choice([4, 8])  # only check being the signature at the last 22 bytes
        z.comment_len = rng.choice([None, 1, 5])
    elif kind == "after-dir":  # zipimport stops at the first signature that is not a central record
        z.after_dir = rng.choice([b"\0" * 4, b"PK\x03\x04", b"PK\x05\x05", rng.randbytes(rng.randint(1, 50))])
    else:  # an end record as the comment's last bytes, naming another (empty) directory
        z.comment = b"x" + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0, 0, 0, 0, 0)
    return f"end-{kind}"


def m_zip64(rng: random.Random, z: Zip) -> str:
    z.zip64 = rng.choice(["same", "other", "subset", "saturated", "badlocator", "classic-exact"])
    return f"zip64-{z.zip64}"


MUTATIONS: list[Callable[[random.Random, Zip], str]] = [
    m_past_size,
    m_csize,
    m_method,
    m_local,
    m_flags,
    m_attr,
    m_cextra,
    m_name,
    m_duplicate,
    m_offset,
    m_unlisted,
    m_gap,
    m_prefix,
    m_end,
    m_zip64,
]


def make_case(seed: int, index: int) -> tuple[str, bytes]:
    """Case ``index`` of ``seed``: (recipe, zip bytes)."""
    rng = random.Random(f"zipimport-{seed}-{index}")
    style = rng.random()
    if style < 0.15:  # archive_gen's zipfile-written zip, then byte mutations
        entries = [(rng.choice(["backend.py", "pkg/__init__.py", "m.py"]), source(rng)) for _ in range(3)]
        data = zip_of(entries, rng=rng, comment=rng.choice([b"", b"c"]))
        ops, data = mutate_bytes(rng, data) if rng.random() < 0.8 else ("none", data)
        return f"zip_of+{ops}", data
    z = base_zip(rng)
    recipe = [m(rng, z) for m in rng.sample(MUTATIONS, rng.randint(0, 3))]
    data = build(z)
    if rng.random() < 0.1:
        ops, data = mutate_bytes(rng, data)
        recipe.append(ops)
    return "+".join(recipe) or "plain", data


# --- the oracle and the check --------------------------------------------------------------------------


def served(data: bytes, tmp_path: Path, tag: str) -> dict[str, bytes]:
    """The ``.py`` names ``zipimport`` lists in this zip and the bytes it serves for each."""
    path = tmp_path / f"{tag}.zip"
    path.write_bytes(data)
    try:
        importer = zipimport.zipimporter(str(path))
    except Exception:  # ZipImportError, and e.g. UnicodeDecodeError for a 0x800 name not UTF-8
        return {}
    finally:
        zipimport._zip_directory_cache.pop(str(path), None)  # type: ignore[attr-defined]
    files = getattr(importer, "_files", None)
    if not isinstance(files, dict):
        pytest.skip("this Python's zipimporter has no _files directory")
    out = {}
    for name in files:
        if not name.endswith(".py") or "\x00" in name:  # see test_a_nul_named_module_cannot_be_imported
            continue
        try:
            out[name] = importer.get_data(name)
        except Exception:  # a bad local header, a short read, a zlib error: nothing served
            continue
    return out


def py_markers(dist: DistributionResult) -> dict[bytes, str]:
    """The markers the ``.py`` rule matched, with a path each."""
    found = {}
    for f in dist.files:
        for m in f.matches:
            if m.identifier == "zi_py":
                for p in m.patterns:
                    found.setdefault(bytes(p.data), f.path)
    return found


def describe(dist: DistributionResult) -> str:
    files = [(f.path, sorted({m.identifier for m in f.matches})) for f in dist.files]
    issues = [(i.kind, i.path, i.message[:120]) for i in dist.issues]
    return f"verdict {dist.verdict!r}, complete {dist.complete}, files {files}, issues {issues}"


def false_cleans(scanner: Scanner, data: bytes, tmp_path: Path, tag: str) -> list[str]:
    """Every way the engine misses a marker ``zipimport`` serves in a ``.py`` name, as messages."""
    wanted = {m: name for name, content in served(data, tmp_path, tag).items() for m in MARK.findall(content)}
    if not wanted:
        return []
    problems = []
    for how, dist in (
        ("in an sdist", scanner.scan_bytes(sdist("b.zip", data), "pkg-1.0.tar.gz")),
        ("top-level", scanner.scan_bytes(data, "b.zip")),
    ):
        if not dist.complete:
            continue
        seen = py_markers(dist)
        for m, name in wanted.items():
            if m not in seen:
                problems.append(f"{how}: zipimport serves {m!r} as {name!r}; {describe(dist)}")
    return problems


def test_oracle_serves_what_it_should(tmp_path: Path) -> None:
    """The oracle is not vacuous: a plain zip's module is served, marker and all, and a mutated one
    (the bytes past the declared size, pass 64) whole."""
    z = Zip([Entry(b"backend.py", b"X = 'ZMK0123456789ab'\n", 8)])
    assert served(build(z), tmp_path, "plain") == {"backend.py": b"X = 'ZMK0123456789ab'\n"}
    z.entries[0].usize, z.entries[0].crc = 3, zlib.crc32(b"X =")
    assert MARK.findall(served(build(z), tmp_path, "past")["backend.py"]) == [b"ZMK0123456789ab"]


def test_the_check_catches_an_unscanned_module(scanner: Scanner, tmp_path: Path) -> None:
    """The check can fail: a ``.py`` rule that cannot see the markers (another rule set) reports every
    served marker as missed."""
    blind = Scanner(
        Rules.compile({"n.yar": 'rule zi_py { meta: filetype = ".py" strings: $a = "NOPE" condition: $a }'}),
        threads=1,
    )
    data = build(Zip([Entry(b"backend.py", b"X = 'ZMK0123456789ab'\n", 0)]))
    assert len(false_cleans(blind, data, tmp_path, "blind")) == 2
    assert false_cleans(scanner, data, tmp_path, "seen") == []


def test_random_zips_against_zipimport(scanner: Scanner, tmp_path: Path) -> None:
    """``CASES`` random and mutated zips of seed ``SEED``: no marker ``zipimport`` serves from a ``.py``
    name is missed by the ``.py`` rule in a result that claims to be complete."""
    failures = []
    served_cases = 0
    for index in range(CASES):
        recipe, data = make_case(SEED, index)
        problems = false_cleans(scanner, data, tmp_path, f"c{index}")
        served_cases += bool(served(data, tmp_path, f"s{index}"))
        failures += [f"seed {SEED} case {index} ({recipe}): {p}" for p in problems]
    assert served_cases > CASES // 4, "too few cases where zipimport serves a module: the oracle is broken"
    assert not failures, f"{len(failures)} false cleans:\n" + "\n".join(failures[:20])


def test_a_nul_named_module_cannot_be_imported(tmp_path: Path) -> None:
    """Why the oracle leaves out names with a NUL: ``zipimport`` lists ``x\\0y.py`` and ``get_data`` serves
    it, but importing ``x\\0y`` fails (``compile`` refuses a path with a NUL), so no import runs it; the
    engine reports the member as ``x`` (cut at the NUL, as ``zipfile`` does) with an ``unsafe-path`` issue.
    If a Python ever imports it, this fails and the oracle must keep such names."""
    import importlib
    import sys

    path = tmp_path / "nul.zip"
    path.write_bytes(build(Zip([Entry(b"x\x00y.py", b"X = 'ZMK0123456789ab'\n", 0)])))
    assert MARK.search(zipimport.zipimporter(str(path)).get_data("x\x00y.py"))
    sys.path.insert(0, str(path))
    try:
        with pytest.raises(ValueError, match="null"):
            importlib.import_module("x\x00y")
    finally:
        sys.path.remove(str(path))
        sys.modules.pop("x\x00y", None)
        sys.path_importer_cache.pop(str(path), None)
        zipimport._zip_directory_cache.pop(str(path), None)  # type: ignore[attr-defined]


def test_zipfile_refuses_what_zipimport_serves_and_the_engine_says_incomplete(
    scanner: Scanner, tmp_path: Path
) -> None:
    """A disagreement that held: the end record's disk-number field holds ``PK\\x05\\x06`` and its comment
    length is 1. ``zipimport`` checks only the signature of the last 22 bytes and imports ``backend``;
    ``zipfile`` searches for the last signature, finds the embedded one with too few bytes after it and
    says "not a zip file". The engine reports the zip ``corrupt`` (not complete)."""
    z = Zip([Entry(b"backend.py", b"X = 'ZMK0123456789ab'\n", 0)], embedded=4, comment_len=1)
    data = build(z)
    assert MARK.search(served(data, tmp_path, "embedded")["backend.py"])
    assert not scanner.scan_bytes(data, "b.zip").complete
    assert false_cleans(scanner, data, tmp_path, "embedded") == []


@pytest.mark.parametrize("how", ["embedded-signature", "zip64-other"])
def test_a_prefixed_zip_only_zipimport_reads_is_not_scanned_as_a_plain_file(
    how: str, scanner: Scanner, tmp_path: Path
) -> None:
    """A false clean this pass found (fixed). Two bytes (``#\\n``) before a zip whose end record
    ``zipfile`` cannot use while ``zipimport`` can: the signature ``PK\\x05\\x06`` also in the end record's
    disk-number field with a comment length of 1 (``zipfile``: "not a zip file"), or a zip64 end record
    naming an empty directory (``zipimport`` before 3.13 reads the classic one). ``zipimport`` imports
    ``backend`` either way (the prefix is its ``arc_offset``). As a top-level ``.zip`` the engine says
    ``corrupt``; as ``b.zip`` (or any name) inside an sdist the member does not start with ``PK``, so
    ``format::detect`` asks ``zipdir::is_prefixed_zip``, which says no, and the member is scanned as one
    plain file: no issue, complete, the ``.py`` rule never saw ``backend.py``. Without the prefix the
    same zips are ``corrupt``/``ambiguous`` (incomplete). Found as seed 4 case 141, seed 5 case 2506,
    seed 6 case 1074 and others (``DFH_ZIPIMPORT_CASES=20000``). Now ``is_prefixed_zip`` also takes a zip
    ``zipimport`` reads a central directory of: the member is walked as a zip (``corrupt`` or
    ``ambiguous``)."""
    entries = [Entry(b"backend.py", b"X = 'ZMK0123456789ab'\n", 0)]
    if how == "embedded-signature":
        z = Zip(entries, prefix=b"#\n", embedded=4, comment_len=1)
    else:
        z = Zip(entries, prefix=b"#\n", zip64="other")
    data = build(z)
    assert MARK.search(served(data, tmp_path, how)["backend.py"])
    assert not scanner.scan_bytes(data, "b.zip").complete  # top level: corrupt
    assert false_cleans(scanner, data, tmp_path, how) == []
