# ruff: noqa: RUF001 (the look-alike characters are what this file tests)
"""The engine's reading of `.pth` files (``PATH<as Python reads it>``) against CPython's ``site``.

At every interpreter start ``site.addpackage`` runs each line of a `.pth` file in site-packages that starts
with ``import `` or ``import\\t`` (``exec(line)``). Pythons before 3.13 read the file through a
``TextIOWrapper`` in the locale's codec (UTF-8 here) with universal newlines, and run the lines of the
chunks before a byte that is not UTF-8; 3.13 and later decode it whole with ``utf-8-sig`` and split it with
``str.splitlines`` (3.14's ``addpackage`` is the same). ``exec`` of a str folds identifiers to NFKC and
ignores a coding cookie.

Random `.pth` files (comments, blank and path lines, import lines each printing a unique token, spelled
with compatibility characters or not, some that ``site`` does not run, joined by every line break either
reading splits at, with BOMs, cookies, bytes that are not UTF-8 before or past the first 8 KiB chunk, NUL
bytes and long lines) are handed to ``site.addpackage`` in every Python 3.9+ on the machine
(``sys.executable`` always); every token one of them prints must be in what a rule matching an import line
at a line start matched in the file or its reading, and the file must get an ``ambiguous`` issue exactly
when it is not UTF-8 and holds ``import``. ``DFH_PTH_SEED`` (default 0) and ``DFH_PTH_CASES`` (default 300)
choose the cases.
"""

from __future__ import annotations

import functools
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import dragonfly_hybrid as dh
import pytest

from tests.archive_gen import zip_of

READING = "<as Python reads it>"
SEED = int(os.environ.get("DFH_PTH_SEED", "0"))
CASES = int(os.environ.get("DFH_PTH_CASES", "300"))

# A rule that reads an import line as `site` runs it: at a line start, to its end.
LINE_RULES = {
    "pth.yar": 'rule pth_import_line { meta: filetype = ".pth" '
    "strings: $a = /(^|\\n)import[ \\t][^\\n]{0,200}/ condition: $a }"
}
TOKEN = re.compile(rb"Q\d+Z")

# Every line break either reading of `site` splits at: \n, \r\n and \r (all), the rest (3.13 and later).
BREAKS = ("\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")
COOKIES = ("latin-1", "cp932", "euc_jp", "utf-8", "cp1252", "iso-8859-15")
MODULES = ("os", "sys", "io")
# Compatibility forms of the letters above and of `print`: exec folds them (fullwidth, mathematical, long s).
FORMS = {
    "o": ("ｏ", "𝐨", "ℴ", "º"),
    "s": ("ｓ", "ſ", "𝐬", "ˢ"),
    "y": ("ｙ", "𝐲", "ʸ"),
    "i": ("ｉ", "𝐢", "ⁱ"),
    "p": ("ｐ", "𝐩"),
    "r": ("ｒ", "𝐫", "ʳ"),
    "n": ("ｎ", "𝐧", "ⁿ"),
    "t": ("ｔ", "𝐭", "ᵗ"),
}

# Calls `site.addpackage` on each file named on stdin; prints {name: [tokens the file's lines printed]}.
ORACLE = r"""
import contextlib, io, json, os, re, site, sys
folder, names = json.load(sys.stdin)
seen = {}
for name in names:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            site.addpackage(folder, name, set())
        except Exception:
            pass  # a decoding error leaves addpackage; the lines before it ran
    seen[name] = re.findall(r"Q\d+Z", out.getvalue())
sys.__stdout__.write(json.dumps(seen))
"""


def _version(python: str) -> tuple[int, int] | None:
    run = subprocess.run(
        [python, "-I", "-S", "-c", "import sys; print(*sys.version_info[:2])"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    if run.returncode != 0:
        return None
    major, minor = run.stdout.split()
    return int(major), int(minor)


@functools.cache
def pythons() -> dict[str, tuple[int, int]]:
    """Each Python 3.9+ found next to pyenv's, ``sys.executable`` always, by its version."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    found = {sys.executable, *(str(p) for p in sorted(root.glob("3.*/bin/python")))}
    versions = {p: _version(p) for p in found}
    return {p: v for p, v in versions.items() if v is not None and v >= (3, 9)}


def oracle(folder: Path, names: list[str]) -> dict[str, set[str]]:
    """The tokens each file's lines printed in any Python (its `site.addpackage`)."""
    seen: dict[str, set[str]] = {name: set() for name in names}
    env = {"LC_ALL": "C.UTF-8", "PATH": os.environ.get("PATH", "")}
    for python in pythons():
        run = subprocess.run(
            [python, "-I", "-S", "-c", ORACLE],
            input=json.dumps([str(folder), names]).encode(),
            capture_output=True,
            check=True,
            env=env,
            timeout=600,
        )
        for name, tokens in json.loads(run.stdout).items():
            seen[name] |= set(tokens)
    return seen


def spelled(rng: random.Random, word: str) -> str:
    if rng.random() < 0.5:
        return word
    return "".join(rng.choice(FORMS[c]) if c in FORMS and rng.random() < 0.5 else c for c in word)


def line(rng: random.Random, token: str) -> str:
    kind = rng.random()
    if kind < 0.15:
        return "# " + rng.choice(("note", "import os;print('x')", "coding: cp932", "設定"))
    if kind < 0.25:
        return rng.choice(("", "   ", "\t"))
    if kind < 0.35:
        return rng.choice(("../lib", "sub/dir", "ｉmport os", "é"))
    head = rng.choice(("import ", "import ", "import\t", " import ", "ｉmport ", "#import "))
    code = f'{head}{spelled(rng, rng.choice(MODULES))};{spelled(rng, "print")}("{token}")'
    if rng.random() < 0.1:  # past TextIOWrapper's 8 KiB chunk
        code += f';x="{"a" * rng.randint(200, 20000)}"'
    return code


def generate(rng: random.Random, first: int) -> bytes:
    lines = [line(rng, f"Q{first + i}Z") for i in range(rng.randint(1, 12))]
    # Half the files break lines only where Pythons before 3.13 split too.
    breaks = BREAKS[:3] if rng.random() < 0.5 else BREAKS
    text = "".join(part + rng.choice(breaks) for part in lines)
    codec = "utf-8"
    if rng.random() < 0.2:
        cookie = rng.choice(COOKIES)
        text = f"# -*- coding: {cookie} -*-{rng.choice(BREAKS)}{text}"
        if rng.random() < 0.5:  # written in the cookie's codec: not UTF-8 unless ASCII
            codec = cookie
    if rng.random() < 0.2:
        text = "\ufeff" + text
    try:
        data = text.encode(codec)
    except UnicodeEncodeError:
        data = text.encode()
    for bad in (b"\xff", b"\xc3(", b"\x00"):
        if rng.random() < 0.1:
            at = rng.choice((rng.randint(0, min(len(data), 100)), rng.randint(0, len(data))))
            data = data[:at] + bad + data[at:]
    return data


def engine_tokens(result: dh.DistributionResult) -> dict[str, set[bytes]]:
    """The tokens the import-line rule matched in each file, its reading's counted as the file's."""
    seen: dict[str, set[bytes]] = {}
    for f in result.files:
        name = f.path.removesuffix(READING)
        for m in f.matches:
            for p in m.patterns:
                seen.setdefault(name, set()).update(TOKEN.findall(p.data))
    return seen


def wheel(files: dict[str, bytes]) -> bytes:
    return zip_of(list(files.items()))


def is_utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


@pytest.fixture(scope="module")
def scanner() -> dh.Scanner:
    return dh.Scanner(dh.Rules.compile(LINE_RULES), threads=1)


@pytest.fixture(scope="module")
def bundled() -> dh.Scanner:
    return dh.Scanner(dh.bundled_rules(), threads=1)


def test_random_pth_files_are_read_as_site_reads_them(scanner: dh.Scanner, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    files: dict[str, bytes] = {}
    first = 0
    for n in range(CASES):
        data = generate(rng, first)
        first += 20
        files[f"f{n:05d}.pth"] = data
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    ran = oracle(tmp_path, list(files))
    result = scanner.scan_bytes(wheel(files), "pkg-1.0-py3-none-any.whl")
    seen = engine_tokens(result)
    ambiguous = {i.path for i in result.issues if i.kind == "ambiguous"}
    assert not [i for i in result.issues if i.kind != "ambiguous"], result.issues
    missed = {n: sorted(t - {x.decode() for x in seen.get(n, set())}) for n, t in ran.items()}
    missed = {n: t for n, t in missed.items() if t}
    assert not missed, (
        f"seed {SEED}: {len(missed)} files, e.g. {[(files[n], t) for n, t in missed.items()][:3]}"
    )
    expected = {n for n, d in files.items() if not is_utf8(d) and b"import" in d}
    assert ambiguous == expected, (sorted(ambiguous - expected)[:5], sorted(expected - ambiguous)[:5])
    # Not a test that cannot fail: most files run lines, on some Python only when read as the engine does.
    executed = sum(bool(t) for t in ran.values())
    assert executed > CASES // 3, f"lines ran in {executed} of {CASES} files only"
    assert expected or CASES < 100, "no file that is not UTF-8 held import"


def runs(
    data: bytes, since: tuple[int, int], tmp_path: Path, before: tuple[int, int] = (4, 0)
) -> bool | None:
    """Whether the Pythons from ``since`` up to ``before`` run the token line of the `.pth` file ``data``;
    None when the machine has none of them."""
    if not any(since <= v < before for v in pythons().values()):
        return None
    (tmp_path / "x.pth").write_bytes(data)
    return bool(oracle(tmp_path, ["x.pth"])["x.pth"])


# A payload line that `site` runs, hidden from a rule reading the bytes; the Python it runs on since.
PAYLOADS = {
    "after a lone CR": (b"../lib\rimport os;os.system(':');print('Q1Z')\r", (3, 9)),
    "after a form feed": (b"../lib\x0cimport os;os.system(':');print('Q1Z')\n", (3, 13)),
    "after U+2028": ("../lib\u2028import os;os.system(':');print('Q1Z')\n".encode(), (3, 13)),
    "after a BOM": (b"\xef\xbb\xbfimport os;os.system(':');print('Q1Z')\n", (3, 13)),
    "compatibility characters": ("import ｏｓ;ｏｓ.ｓｙｓｔｅｍ(':');print('Q1Z')\n".encode(), (3, 9)),
    "under a latin-1 cookie": (
        "# -*- coding: latin-1 -*-\nimport ｏｓ;ｏｓ.ｓｙｓｔｅｍ(':');print('Q1Z')\n".encode(),
        (3, 9),
    ),
}


@pytest.mark.parametrize("case", sorted(PAYLOADS))
def test_the_bundled_rule_flags_a_payload_line_site_runs(
    bundled: dh.Scanner, case: str, tmp_path: Path
) -> None:
    data, since = PAYLOADS[case]
    assert runs(data, since, tmp_path) in (True, None), "CPython runs the line"
    assert "install_pth_code_exec" not in bundled.scan_bytes(data, "x.txt").rules_matched
    result = bundled.scan_bytes(wheel({"x.pth": data}), "pkg-1.0-py3-none-any.whl")
    assert "install_pth_code_exec" in result.rules_matched
    assert {f.path for f in result.files} == {"x.pth" + READING}, "only the reading shows the line"


# `x = exec` that only the reading shows: after a BOM, on lines ending in a lone CR.
ALIAS_TAIL = "x(base64.b64decode('cHJpbnQoImZpeHR1cmUiKQ=='))\n"
ALIASES = {
    "BOM": ("\ufeffx = exec\nimport base64\n" + ALIAS_TAIL).encode(),
    "lone CR": ("import base64\nx = exec\n" + ALIAS_TAIL).replace("\n", "\r").encode(),
}


def script_output(data: bytes, tmp_path: Path) -> str:
    (tmp_path / "m.py").write_bytes(data)
    run = subprocess.run(
        [sys.executable, "-I", str(tmp_path / "m.py")], capture_output=True, check=True, timeout=60
    )
    return run.stdout.decode()


@pytest.mark.parametrize("case", sorted(ALIASES))
def test_an_exec_alias_only_the_reading_shows_is_flagged(
    bundled: dh.Scanner, case: str, tmp_path: Path
) -> None:
    data = ALIASES[case]
    assert script_output(data, tmp_path) == "fixture\n"
    result = bundled.scan_bytes(data, "m.py")
    assert "obfuscation_exec_alias" in result.rules_matched
    assert {
        f.path for f in result.files if any(m.identifier == "obfuscation_exec_alias" for m in f.matches)
    } == {"m.py" + READING}


# CPython's tokenizer reads a form feed inside a line as a blank and joins a line ending in a backslash to
# the next: `x = exec` for CPython. The reading keeps both as they are (joining continuation lines would
# scan most large files twice); the rule reads them.
EXEC_ALIAS_LINE_STRUCTURE = {
    "form feeds around '='": b"import base64\nx\x0c=\x0cexec\n",
    "a form feed before the line end": b"import base64\nx = exec\x0c\n",
    "a continuation line": b"import base64\nx = \\\n    exec\n",
}


@pytest.mark.parametrize("case", sorted(EXEC_ALIAS_LINE_STRUCTURE))
def test_an_exec_alias_in_the_tokenizers_line_structure_is_flagged(
    bundled: dh.Scanner, case: str, tmp_path: Path
) -> None:
    data = EXEC_ALIAS_LINE_STRUCTURE[case] + ALIAS_TAIL.encode()
    assert script_output(data, tmp_path) == "fixture\n"
    assert "obfuscation_exec_alias" in bundled.scan_bytes(data, "m.py").rules_matched


# A form feed inside an import line: Pythons before 3.13 run the line whole, 3.13 and later split it there
# (the rest is a path line, not run), so the reading writes such a break as one only before an import line.
def test_a_form_feed_inside_a_line_that_python_3_12_runs_whole(scanner: dh.Scanner, tmp_path: Path) -> None:
    # A lone CR puts the import line at a line start only in the reading; the form feed must not cut it.
    data = b"../lib\rimport os\x0c;print('Q1Z')\r"
    assert runs(data, (3, 9), tmp_path, before=(3, 13)) in (True, None), "Pythons before 3.13 run it"
    found = engine_tokens(scanner.scan_bytes(wheel({"x.pth": data}), "pkg-1.0-py3-none-any.whl"))
    assert found.get("x.pth") == {b"Q1Z"}
