"""The bundled rule ``obfuscation_escaping_source_codec`` against CPython's tokenizer, side by side.

CPython decodes a ``.py`` file with the codec its coding cookie names. Under ``unicode_escape``,
``raw_unicode_escape``, UTF-7, ISO-2022 or HZ, every character of the code can be written escaped
(``\\u0078 = 1``, ``+AHg- = 1``, ``\\x1b(Bx = 1``, ``~{~}x = 1`` all run as ``x = 1``), so no rule that reads
the bytes sees the code; the rule flags such cookies where CPython reads them (a comment on line 1, or on
line 2 after a blank or comment line; lines end at ``\\n``).

Each case is a small file: zero to two lines before the cookie line (blank, comments, a shebang, code,
form feeds, long indentation, a stray ``\\r``), a cookie in one of the shapes people write (Emacs, vim,
bare), a codec name spelled as the codec lookup allows (any case, ``-``/``_`` separators doubled, leading
or trailing, aliases) or a near miss (benign codecs, names CPython refuses), then a payload line that
only compiles to ``x = 1`` when the named codec is applied. The oracle is CPython: ``compile()`` of the
bytes (how ``importlib`` compiles a module) and, for a sample, the file run as a script (the tokenizer
reading a file). Whenever either applied the codec, the rule must match; where neither did, it must not,
except for the over-approximations the rule documents (a name CPython refuses that the rule reads
loosely; 256 or more blanks opening a line; an escaping cookie after a benign one on lines 1-2, where
CPython reads the first).

``DFH_COOKIE_SEED`` (default 0) and ``DFH_COOKIE_CASES`` (default 800) choose the cases; a failing case
prints its seed, index and bytes.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import dragonfly_hybrid as dh
import pytest

SEED = int(os.environ.get("DFH_COOKIE_SEED", "0"))
CASES = int(os.environ.get("DFH_COOKIE_CASES", "800"))
SCRIPT_SAMPLE = 40
RULE = "obfuscation_escaping_source_codec"

# codec spellings (encodings.aliases and module names) -> a payload that is `x = 1` under that codec only
ESCAPING: dict[tuple[str, ...], bytes] = {
    ("unicode_escape", "raw_unicode_escape"): b"\\u0078 = 1",
    ("utf_7", "utf7", "u7", "unicode_1_1_utf_7"): b"+AHg- = 1",
    (
        "iso2022_jp",
        "iso2022jp",
        "iso_2022_jp",
        "csiso2022jp",
        "iso2022_jp_1",
        "iso2022_jp_2",
        "iso_2022_jp_2004",
        "iso2022jp_3",
        "iso2022_jp_ext",
    ): b"\x1b(Bx = 1",
    ("iso2022_kr", "csiso2022kr", "iso_2022_kr"): b"\x0e\x0fx = 1",
    ("hz", "hzgb", "hz_gb", "hz_gb_2312"): b"~{~}x = 1",
}
# codecs under which the payloads stay what they are (a SyntaxError), and names CPython refuses
BENIGN_NAMES = (
    "utf-8",
    "utf_8",
    "latin-1",
    "ascii",
    "cp1252",
    "gbk",
    "euc_jp",
    "shift_jis",
    "koi8_r",
    "utf-8-sig",
)
REFUSED_NAMES = ("unicode_escapes", "utf_77", "hzz", "iso2022_jp_9", "unicodeescape", "xunicode_escape")
SEPARATORS = ("_", "-", "__", "-_", "_-")


@dataclass(frozen=True)
class Case:
    data: bytes
    loose: bool  # a shape the rule over-approximates: it may match where CPython applies no codec


def spelled(rng: random.Random, name: str) -> tuple[str, bool]:
    """``name`` as the codec lookup still finds it: any case, separators varied; sometimes with a '.'
    (which CPython refuses and the rule reads loosely)."""
    parts = name.split("_")
    out = parts[0]
    loose = False
    for part in parts[1:]:
        sep = rng.choice(SEPARATORS)
        if rng.random() < 0.05:
            sep, loose = ".", True
        out += sep + part
    if rng.random() < 0.2:
        out = rng.choice(("_", "-", "--")) + out
    if rng.random() < 0.2:
        out += rng.choice(("_", "-", "__"))
    return "".join(c.upper() if rng.random() < 0.3 else c for c in out), loose


def make_case(seed: int, index: int) -> Case:
    rng = random.Random(f"{seed}:{index}")
    nl = rng.choice((b"\n", b"\n", b"\r\n", b"\r"))
    kind = rng.random()
    loose = False
    if kind < 0.7:
        names, payload = rng.choice(list(ESCAPING.items()))
        name, loose = spelled(rng, rng.choice(names))
    elif kind < 0.85:
        name, payload = rng.choice(BENIGN_NAMES), rng.choice(list(ESCAPING.values()))
    else:
        name, payload = rng.choice(REFUSED_NAMES), rng.choice(list(ESCAPING.values()))
    blanks = rng.choice(("", "", " ", "\t", "\f", "  \t", "\v", " " * 300))
    if len(blanks) >= 256:
        loose = True
    space = rng.choice(("", " ", "\t", "  ", " " * 40))
    tail = rng.choice(("", " -*-", ", and more", " :", "\t"))
    cookie = rng.choice(
        (
            f"{blanks}# coding:{space}{name}{tail}",
            f"{blanks}# -*- coding:{space}{name}{tail} -*-",
            f"{blanks}# vim: set fileencoding={name} :",
            f"{blanks}#coding={space}{name}",
            f"{blanks}#!python coding:{name}",
            f"{blanks}# coding coding:{space}{name}",
            f"{blanks}# coding: utf-8, coding: {name}",
            f"x = 2  # coding: {name}",
            f"'coding: {name}'",
        )
    ).encode()
    before_choices = (
        b"",
        b"#!/usr/bin/env python",
        b"# comment",
        b"  \t",
        b"\f",
        b"x = 2",
        b"  y = 2  # c",
        b"\\",
    )
    before = [rng.choice(before_choices) for _ in range(rng.choice((0, 0, 1, 1, 2)))]
    if rng.random() < 0.05:
        before = [b"# -*- coding: latin-1 -*-"]
    # CPython reads the first cookie of the two lines; the rule flags an escaping one after a benign one
    loose = loose or b"utf-8, coding" in cookie or b"latin-1" in b"".join(before)
    lines = [*before, cookie, payload, b"print(x)"]
    data = nl.join(lines) + nl
    if rng.random() < 0.05:
        data = b"\xef\xbb\xbf" + data  # a BOM: CPython then accepts utf-8 cookies only
    return Case(data, loose)


def applied_by_compile(data: bytes) -> bool:
    """CPython compiled the bytes with the codec applied: the payload became the name ``x``."""
    try:
        code = compile(data, "m.py", "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return "x" in code.co_names


def applied_by_script(path: Path) -> bool:
    """Run as a script (the tokenizer reading a file): the payload printed 1."""
    done = subprocess.run([sys.executable, "-I", str(path)], capture_output=True, timeout=60, check=False)
    return done.stdout.strip() == b"1"


def rule_matches(scanner: dh.Scanner, data: bytes) -> bool:
    result = scanner.scan_bytes(data, "m.py")
    assert result.complete, [issue.message for issue in result.issues]
    return any(m.identifier == RULE for f in result.files for m in f.matches)


@pytest.fixture(scope="module")
def scanner() -> dh.Scanner:
    return dh.Scanner(dh.bundled_rules(), threads=1)


def test_rule_follows_cpython_tokenizer(scanner: dh.Scanner, tmp_path: Path) -> None:
    failures = []
    applied_count = 0
    for index in range(CASES):
        case = make_case(SEED, index)
        applied = applied_by_compile(case.data)
        if not applied and index < SCRIPT_SAMPLE * 4 and index % 4 == 0:
            path = tmp_path / f"case{index}.py"
            path.write_bytes(case.data)
            applied = applied_by_script(path)
        applied_count += applied
        matched = rule_matches(scanner, case.data)
        if applied and not matched:
            failures.append(
                f"seed {SEED} case {index}: CPython applied the codec, the rule missed it: {case.data!r}"
            )
        elif matched and not applied and not case.loose:
            failures.append(
                f"seed {SEED} case {index}: the rule matched, CPython applied no codec: {case.data!r}"
            )
    assert not failures, "\n".join(failures[:20])
    # the generator must keep producing both sides, or the test proves nothing
    assert CASES < 50 or 0.1 * CASES < applied_count < 0.9 * CASES


@pytest.mark.parametrize(
    "data",
    [
        # the first cookie on line 1 is the one CPython reads; a later one on line 3 is not a cookie
        b"# coding: utf-8\nx = 1\n# coding: unicode_escape\n",
        # line 1 is code: CPython reads no cookie on line 2
        b"import os\n# coding: unicode_escape\n",
        # the name CPython reads stops at the first character that is not a letter, digit, '-', '_' or '.'
        b"# coding: unicode_escapes\n",
        b"# coding: utf7x\n",
        # a BOM: the cookie must name UTF-8, anything else is an error
        b"\xef\xbb\xbfx = 1\n# coding: unicode_escape\n",
    ],
)
def test_near_misses_do_not_match(scanner: dh.Scanner, data: bytes) -> None:
    assert not applied_by_compile(data + b"\\u0078 = 1\n")
    assert not rule_matches(scanner, data + b"\\u0078 = 1\n")


def test_ebcdic_cookie_matches(scanner: dh.Scanner, tmp_path: Path) -> None:
    """A script whose cookie names an EBCDIC code page runs the EBCDIC bytes after its first two lines
    (the first line decoded is dropped): none of it is ASCII a rule could read."""
    data = b"# coding: cp500\n" + "\n\nx = 1\nprint(x)\n".encode("cp500")
    path = tmp_path / "ebcdic.py"
    path.write_bytes(data)
    assert applied_by_script(path)
    assert rule_matches(scanner, data)
