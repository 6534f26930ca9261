"""Red-team pass 53: pass 44's yardstick (every file pip installs from a wheel is content the engine scanned,
under the name routing gives it) for pip 26.3, the pip users run, beside the installed pip 23.2.

pip 26.3's installer (``operations/install/wheel.py``, ``utils/wheel.py``, ``models/wheel.py``) differs
from 23.2's where it writes in two ways besides the wrappers' text (pip's own): a member declared 0 bytes
long is created empty without being read (23.2 reads it, and fails on its CRC-32 if it holds data), and
an entry-point name leaving the scripts directory (``../x``, ``/x``, ``.``) stops the install (23.2 wrote
``bin/x`` for the first two) while ``sub/tool`` is written as ``bin/sub/tool`` (23.2: ``bin/tool``).
Outside it, 26.3 takes the project's name from METADATA where 23.2 took the dist-info directory's: a
``demox-1.0.dist-info`` in ``demo-1.0-py3-none-any.whl`` is installed (23.2 discards the file).
Run by hand through pip 26.3 (its wheel run as ``python pip-26.3-py3-none-any.whl/pip install --no-deps
--no-index --target``), every case below wrote what pip 23.2 writes, except where a ``PIP26`` expectation
says otherwise; CI has pip 23.2 only, so the agreeing cases run it and the others are fixed expectations.
Pass 44's wheel itself: 26.3 refuses its ``../escaped.pth`` entry point (nothing installed); without it,
26.3 writes the same names and bytes.

Held (both pips): a trailing ``/..`` (``pkg/x.py/sub/..`` is written as ``pkg/x.py``: scanned as that),
stored, deflated, bzip2 and LZMA members, data descriptors, ZIP64 records, names without the UTF-8 flag
(cp437, as ``zipfile`` reads them), names differing only in case, members whose mode says directory, FIFO,
device or socket (pip writes their data as a file; scanned), a dist-info directory spelled otherwise than
the file name (``Demo-1.0.dist-info``, ``DEMO-1.0.data``) and a declared size 0 with the CRC-32 of nothing
(an empty file). No finding: nothing pip 26.3 writes went unscanned or under a name routed otherwise.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from tests.test_wheel_install_view import INFO, payload, pip_install, scanned, sha256

WHEEL = b"Wheel-Version: 1.0\nGenerator: dfh\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
STORED, DEFLATED = zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED
PTH = b"import os  # DFH-PAYLOAD pth\n"
PIP_MADE = {"INSTALLER", "REQUESTED", "RECORD", "direct_url.json"}


class _Unseekable(io.RawIOBase):
    """An output ``zipfile`` cannot seek back in: it writes data descriptors."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


Member = tuple[str, bytes, int, int]  # name, data, compression, external_attr


def zip_wheel(
    members: list[Member],
    *,
    info: str = INFO,
    name: str = "demo",
    seekable: bool = True,
    zip64: bool = False,
    entry_points: bytes = b"",
) -> bytes:
    """A wheel of ``members`` then its dist-info ``info`` (METADATA naming ``name``, WHEEL, RECORD)."""
    files = [*metadata(info, name).items(), (f"{info}/RECORD", b"")]
    if entry_points:
        files.append((f"{info}/entry_points.txt", entry_points))
    out: io.BytesIO | _Unseekable = io.BytesIO() if seekable else _Unseekable()
    with zipfile.ZipFile(out, "w") as archive:
        for member, data, method, attr in [*members, *[(n, d, STORED, 0o644 << 16) for n, d in files]]:
            zinfo = zipfile.ZipInfo(member)
            zinfo.compress_type, zinfo.create_system, zinfo.external_attr = method, 3, attr
            with archive.open(zinfo, "w", force_zip64=zip64) as dest:
                dest.write(data)
    return out.getvalue() if isinstance(out, io.BytesIO) else bytes(out.data)


def declare_size_zero(data: bytes, member: bytes, crc: int | None = None) -> bytes:
    """The central directory (what ``zipfile`` reads) declares ``member`` 0 bytes long (and ``crc``)."""
    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    while at >= 0:
        length = struct.unpack_from("<H", out, at + 28)[0]
        if out[at + 46 : at + 46 + length] == member:
            struct.pack_into("<I", out, at + 24, 0)
            if crc is not None:
                struct.pack_into("<I", out, at + 16, crc)
        at = out.find(b"PK\x01\x02", at + 4)
    return bytes(out)


def file(name: str, data: bytes, method: int = STORED, mode: int = stat.S_IFREG | 0o644) -> Member:
    return (name, data, method, mode << 16)


def metadata(info: str = INFO, name: str = "demo") -> dict[str, bytes]:
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode()
    return {f"{info}/METADATA": meta, f"{info}/WHEEL": WHEEL}


def assert_scanned(
    data: bytes, installed: Mapping[str, bytes], generated: frozenset[str] = frozenset()
) -> None:
    """Every file pip wrote (but its own) is empty or scanned content, seen by the rule its suffix routes."""
    result, matched = scanned(data)
    assert not [i for i in result.issues if i.unscanned], result.issues
    routed = {".py": "py_payload", ".pth": "pth_payload"}
    for name, content in installed.items():
        if name in generated or (
            os.path.dirname(name).endswith(".dist-info") and os.path.basename(name) in PIP_MADE
        ):
            continue
        assert not content or sha256(content) in matched, f"pip installs {name} unscanned"
        rule = routed.get(os.path.splitext(name)[1])
        assert not content or rule is None or rule in matched[sha256(content)], f"{rule} missed {name}"


# Cases pip 23.2 and 26.3 (by hand) install alike: the wheel, and what both write (pip's own files apart).
SAME: dict[str, tuple[bytes, dict[str, bytes]]] = {
    "trailing-dotdot": (
        zip_wheel(
            [
                file("pkg/x.py/sub/..", payload("dotdot")),
                file("demo-1.0.data/purelib/y.pth/z/..", PTH),
                file("pkg/r.py/s/./..", payload("dot-dotdot")),
            ]
        ),
        {"pkg/x.py": payload("dotdot"), "y.pth": PTH, "pkg/r.py": payload("dot-dotdot"), **metadata()},
    ),
    "compression-methods": (
        zip_wheel(
            [
                file("stored.py", payload("stored")),
                file("deflated.py", payload("deflated"), DEFLATED),
                file("bzip2.py", payload("bzip2"), zipfile.ZIP_BZIP2),
                file("lzma.pth", PTH, zipfile.ZIP_LZMA),
            ]
        ),
        {
            "stored.py": payload("stored"),
            "deflated.py": payload("deflated"),
            "bzip2.py": payload("bzip2"),
            "lzma.pth": PTH,
            **metadata(),
        },
    ),
    "data-descriptors": (
        zip_wheel([file("dd.py", payload("dd")), file("dd.pth", PTH, DEFLATED)], seekable=False),
        {"dd.py": payload("dd"), "dd.pth": PTH, **metadata()},
    ),
    "zip64": (
        zip_wheel([file("z64.py", payload("z64")), file("z64.pth", PTH, DEFLATED)], zip64=True),
        {"z64.py": payload("z64"), "z64.pth": PTH, **metadata()},
    ),
    # Placeholders swapped for raw bytes after writing: the UTF-8 flag stays unset, zipfile reads cp437.
    "names-without-utf8-flag": (
        zip_wheel(
            [file("pkg/AA.py", payload("cp437")), file("pkg/BBB.py", payload("utf8")), file("CC.pth", PTH)]
        )
        .replace(b"pkg/AA.py", b"pkg/\x81\x82.py")
        .replace(b"pkg/BBB.py", b"pkg/\xe4\xb8\xad.py")
        .replace(b"CC.pth", b"\xff\xfe.pth"),
        {
            "pkg/\u00fc\u00e9.py": payload("cp437"),
            "pkg/\u03a3\u2555\u00a1.py": payload("utf8"),
            "\u00a0\u25a0.pth": PTH,
            **metadata(),
        },
    ),
    "case-and-modes": (
        zip_wheel(
            [
                file("Pkg/case.py", payload("case-upper")),
                file("pkg/CASE.py", payload("case-lower")),
                file("pkg/dirmode.py", payload("dirmode"), mode=stat.S_IFDIR | 0o755),
                file("pkg/fifo.py", payload("fifo"), mode=stat.S_IFIFO | 0o644),
                file("pkg/chr.py", payload("chr"), mode=stat.S_IFCHR | 0o644),
                file("sock.pth", PTH, mode=stat.S_IFSOCK | 0o644),
            ]
        ),
        {
            "Pkg/case.py": payload("case-upper"),
            "pkg/CASE.py": payload("case-lower"),
            "pkg/dirmode.py": payload("dirmode"),
            "pkg/fifo.py": payload("fifo"),
            "pkg/chr.py": payload("chr"),
            "sock.pth": PTH,
            **metadata(),
        },
    ),
    "dist-info-spelled-otherwise": (
        zip_wheel(
            [file("pkg/__init__.py", payload("root")), file("DEMO-1.0.data/purelib/m.pth", PTH)],
            info="Demo-1.0.dist-info",
        ),
        {"pkg/__init__.py": payload("root"), "m.pth": PTH, **metadata("Demo-1.0.dist-info")},
    ),
    "declared-size-zero-crc-of-nothing": (
        declare_size_zero(
            zip_wheel([file("empty.pth", PTH), file("empty.py", payload("e"), DEFLATED)]), b"empty.pth", 0
        ),
        {"empty.pth": b"", "empty.py": payload("e"), **metadata()},
    ),
}


@pytest.mark.parametrize("case", list(SAME))
def test_pip_installs_as_pip26_does_and_every_byte_was_scanned(case: str, tmp_path: Path) -> None:
    data, expected = SAME[case]
    installed = pip_install(data, tmp_path)
    own = {n for n in installed if os.path.basename(n) in PIP_MADE}
    assert {n: c for n, c in installed.items() if n not in own} == expected
    assert_scanned(data, installed)


SIZE_ZERO = declare_size_zero(
    zip_wheel([file("a.py", payload("stored")), file("b.pth", PTH, DEFLATED)]), b"a.py"
)
PREFIX_INFO = zip_wheel([file("pkg/__init__.py", payload("root"))], info="demox-1.0.dist-info")
ENTRY_POINTS = b"[console_scripts]\nsub/tool = pkg:main\ndemo-cli = pkg:main\n"
SCRIPTS = zip_wheel([file("pkg/__init__.py", payload("root"))], entry_points=ENTRY_POINTS)
# What pip 26.3 wrote for each (checked by hand; pip's own dist-info files apart), where 23.2 differs.
PIP26: dict[str, tuple[bytes, dict[str, bytes], frozenset[str]]] = {
    # 26.3 creates a file declared 0 bytes long without reading it: empty, where 23.2 fails on its CRC-32.
    "declared-size-zero": (SIZE_ZERO, {"a.py": b"", "b.pth": PTH, **metadata()}, frozenset()),
    # 23.2 takes the project's name from the dist-info directory's ("demox": inconsistent with the file's,
    # discarded); 26.3 reads METADATA's and installs it. The engine scanned every member either way.
    "dist-info-prefix": (
        PREFIX_INFO,
        {"pkg/__init__.py": payload("root"), **metadata("demox-1.0.dist-info")},
        frozenset(),
    ),
    # A script name with a directory: 26.3 writes bin/sub/tool (23.2: bin/tool); pip's wrappers, not scanned.
    "entry-point-subdirectory": (
        SCRIPTS,
        {
            "pkg/__init__.py": payload("root"),
            f"{INFO}/entry_points.txt": ENTRY_POINTS,
            **metadata(),
            "bin/sub/tool": b"",
            "bin/demo-cli": b"",
        },
        frozenset({"bin/sub/tool", "bin/demo-cli"}),
    ),
}


def test_pip23_differs_where_pip26_is_pinned(tmp_path: Path) -> None:
    """The fixed expectations are pinned because pip 23.2 does otherwise: it shows here."""
    for sub in ("size", "prefix", "scripts"):
        (tmp_path / sub).mkdir()
    with pytest.raises(AssertionError, match=r"Bad CRC-32 for file 'a\.py'"):
        pip_install(SIZE_ZERO, tmp_path / "size")
    with pytest.raises(AssertionError, match="unavailable"):
        pip_install(PREFIX_INFO, tmp_path / "prefix")
    installed = pip_install(SCRIPTS, tmp_path / "scripts")
    assert {"bin/tool", "bin/demo-cli"} <= set(installed) and "bin/sub/tool" not in installed


@pytest.mark.parametrize("case", list(PIP26))
def test_every_byte_pip26_installs_was_scanned(case: str) -> None:
    data, installed, generated = PIP26[case]
    assert_scanned(data, installed, generated)
