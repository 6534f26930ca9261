# ruff: noqa: RUF001, RUF002 (the look-alike characters are what this file tests)
"""The engine's reading of Python files as CPython reads them, against CPython (PEP 3131, PEP 263).

CPython reads identifiers in NFKC form: ``ｅｘｅｃ('x')``, ``𝐞𝐯𝐚𝐥(x)`` and ``oſ.ſyſtem(x)`` call ``exec``,
``eval`` and ``os.system``, where a rule reading the bytes sees no such name; and it decodes a file in the
codec its coding cookie names, where the same letters are other bytes. A `.py`, `.pyw` or `.pth` file that
reads otherwise than its bytes (decoded from its cookie's codec, each character whose NFKC form is ASCII
letters, digits or '_' written in that form) is also scanned as ``PATH<as Python reads it>`` with the
rules of ``PATH``.

Spellings of names malware calls, random letters replaced by compatibility forms taken from
``unicodedata`` (fullwidth, mathematical, superscript, long s, ...; every form of every letter reached),
are put in code shapes; CPython's ``compile()`` is the oracle: when the code object names the ASCII name,
a rule for that name must match in the reading. ``DFH_COMPAT_SEED`` and ``DFH_COMPAT_CASES`` pick the seed
(default 0) and the number of random cases (default 300); the same spellings are also encoded in the
legacy codecs a cookie may name (Shift_JIS, EUC-JP, GBK, GB18030, Big5, EUC-KR, ISO-2022-JP, Latin-1, Mac
Roman), where each holds the forms it can encode.
"""

from __future__ import annotations

import functools
import io
import os
import random
import sys
import tarfile
import types
import unicodedata
import zipfile

import dragonfly_hybrid as dh
import pytest

READING = "<as Python reads it>"
NAMES = (
    "exec",
    "eval",
    "compile",
    "__import__",
    "getattr",
    "globals",
    "system",
    "popen",
    "subprocess",
    "b64decode",
    "decompress",
    "marshal",
    "loads",
    "builtins",
    "open",
)
SEED = int(os.environ.get("DFH_COMPAT_SEED", "0"))
CASES = int(os.environ.get("DFH_COMPAT_CASES", "300"))

# Where the name is code. `{n}` is the spelling.
CODE_SHAPES = (
    "{n}('x')\n",
    "x = mod.{n}(1)\n",
    "from m import {n}\n",
    "y = {n} .attr\n",
    "import {n}\n",
    "if ok:\n    z = q.{n}\n",
    "v = [{n} ('a')]\n",
    "getattr(o, 'k')({n}, 1)\n",
)


def rule_of(name: str) -> str:
    return f"n_{name.strip('_')}"


def name_rules(names: tuple[str, ...]) -> dict[str, str]:
    """One fullword rule per name (``rule_of``), for Python files only: a reading is scanned with its file's
    rules."""
    return {
        "names.yar": "\n".join(
            f'rule {rule_of(name)} {{ meta: filetype = ".py .pyw .pth" strings: $a = "{name}" fullword '
            "condition: $a }"
            for name in names
        )
    }


RULES = name_rules(NAMES)


def compat_forms() -> dict[str, list[str]]:
    """Every non-ASCII character that NFKC maps to one ASCII letter, digit or '_' and that may appear in
    an identifier, by that ASCII character."""
    forms: dict[str, list[str]] = {}
    for code in range(0x80, sys.maxunicode + 1):
        char = chr(code)
        norm = unicodedata.normalize("NFKC", char)
        if (
            len(norm) == 1
            and norm.isascii()
            and (norm.isalnum() or norm == "_")
            and ("a" + char).isidentifier()
        ):
            forms.setdefault(norm, []).append(char)
    return forms


FORMS = compat_forms()


def code_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= code_names(const)
    return names


def compiled_names(source: str) -> set[str] | None:
    try:
        return code_names(compile(source, "m.py", "exec"))
    except SyntaxError:
        return None  # e.g. a compatibility '_' first: not a start character, CPython refuses it


def spell(rng: random.Random, name: str) -> str:
    """``name`` with a random non-empty set of its letters replaced by random compatibility forms."""
    positions = [i for i, c in enumerate(name) if c in FORMS]
    chosen = set(rng.sample(positions, rng.randint(1, len(positions))))
    return "".join(rng.choice(FORMS[c]) if i in chosen else c for i, c in enumerate(name))


@pytest.fixture(scope="module")
def scanner() -> dh.Scanner:
    return dh.Scanner(dh.Rules.compile(RULES), threads=1)


def reading_matches(result: dh.DistributionResult, path: str) -> set[str]:
    """The rules that matched in the reading of ``path``."""
    return {m.identifier for f in result.files if f.path == path + READING for m in f.matches}


def test_forms_cover_the_names() -> None:
    assert all(FORMS.get(c) for name in NAMES for c in name), sorted(set("".join(NAMES)) - set(FORMS))
    assert "\u017f" in FORMS["s"] and "\uff45" in FORMS["e"] and "\U0001d41e" in FORMS["e"]


def test_every_form_of_every_letter_is_read_as_cpython_reads_it(scanner: dh.Scanner) -> None:
    """Each compatibility form alone, in the first listed name holding its letter, as a call."""
    missed = []
    for letter in sorted({c for name in NAMES for c in name}):
        name = next(n for n in NAMES if letter in n[1:] or (letter != "_" and letter in n))
        at = name.index(letter, 1) if letter == "_" else name.index(letter)
        for form in FORMS[letter]:
            source = f"{name[:at]}{form}{name[at + 1 :]}('x')\n"
            names = compiled_names(source)
            assert names is not None and name in names, source
            result = scanner.scan_bytes(source.encode(), "m.py")
            if rule_of(name) not in reading_matches(result, "m.py"):
                missed.append(f"{letter} U+{ord(form):04X}")
    assert not missed, missed


def test_random_spellings_in_code_are_read_as_cpython_reads_them(scanner: dh.Scanner) -> None:
    rng = random.Random(SEED)
    checked, missed = 0, []
    while checked < CASES:
        name = rng.choice(NAMES)
        source = "import m\n" + rng.choice(CODE_SHAPES).format(n=spell(rng, name))
        names = compiled_names(source)
        if names is None:
            continue
        assert name in names, source
        checked += 1
        result = scanner.scan_bytes(source.encode(), "m.py")
        if rule_of(name) not in reading_matches(result, "m.py"):
            missed.append(source)
    assert not missed, f"seed {SEED}: {len(missed)} of {CASES} missed, e.g. {missed[:5]}"


def test_forms_of_several_letters_are_read_whole(scanner: dh.Scanner) -> None:
    """A ligature or a squared abbreviation is several ASCII letters in NFKC (``ﬁ`` is ``fi``)."""
    source = "import m\nm.ﬁle = m.compile\nopen = m.ﬁ\n"
    assert {"file", "compile"} <= (compiled_names(source) or set())
    result = scanner.scan_bytes(source.encode(), "m.py")
    assert [f.path for f in result.files] == ["m.py", "m.py" + READING]


@pytest.mark.parametrize("member", ["pkg/tool.pyw", "pkg/hook.pth", "pkg/__init__.py"])
def test_read_so_in_archives_for_the_files_python_runs(scanner: dh.Scanner, member: str) -> None:
    source = "import os;ｅｘｅｃ('x')\n".encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(member, source)
        zf.writestr("pkg/notes.txt", source)  # not Python code: CPython folds nothing there
    result = scanner.scan_bytes(buf.getvalue(), "pkg-1.0-py3-none-any.whl")
    assert result.complete
    assert reading_matches(result, member) == {"n_exec"}
    assert result.files_scanned == 3, "the member, its reading, the text file"

    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"pkg-1.0/{member}")
        info.size = len(source)
        tar.addfile(info, io.BytesIO(source))
    result = scanner.scan_bytes(tar_buf.getvalue(), "pkg-1.0.tar.gz")
    assert reading_matches(result, f"pkg-1.0/{member}") == {"n_exec"}


@pytest.mark.parametrize(
    "source",
    [
        "exec('x')\nimport os\n",  # ASCII
        "# 設定ファイル: µ, é, ŉ\nx = '設定'\n",  # no character whose NFKC form is ASCII
    ],
)
def test_no_reading_when_no_character_folds(scanner: dh.Scanner, source: str) -> None:
    assert scanner.scan_bytes(source.encode(), "m.py").files_scanned == 1


def test_no_reading_for_files_python_does_not_run(scanner: dh.Scanner) -> None:
    result = scanner.scan_bytes("ｅｘｅｃ('x')\n".encode(), "m.txt")
    assert result.files_scanned == 1 and not result.files


def test_the_bundled_rules_see_through_the_spelling() -> None:
    """A decoded payload handed to ``ｅｘｅｃ`` (defanged: prints a word) is flagged as with ``exec``."""
    source = "import base64\nｅｘｅｃ(base64.b64decode('cHJpbnQoImZpeHR1cmUiKQ=='))\n"
    assert "exec" in (compiled_names(source) or set())
    result = dh.Scanner(dh.bundled_rules(), threads=1).scan_bytes(source.encode(), "setup.py")
    assert "obfuscation_exec_decoded_payload" in result.rules_matched
    assert {f.path for f in result.files} == {"setup.py" + READING}


# Codecs whose cookie the engine follows, as Python spells them (any case and separators).
LEGACY_CODECS = (
    "shift_jis",
    "cp932",
    "euc_jp",
    "gbk",
    "gb2312",
    "gb18030",
    "big5",
    "euc_kr",
    "cp949",
    "iso2022_jp",
    "latin-1",
    "cp1252",
    "mac_roman",
)


def encodable_spelling(rng: random.Random, name: str, codec: str) -> str | None:
    """``name`` with random letters replaced by compatibility forms ``codec`` can encode; None if none."""
    forms = {c: [f for f in FORMS.get(c, []) if encodes(f, codec)] for c in set(name)}
    positions = [i for i, c in enumerate(name) if forms[c]]
    if not positions:
        return None
    chosen = set(rng.sample(positions, rng.randint(1, len(positions))))
    return "".join(rng.choice(forms[c]) if i in chosen else c for i, c in enumerate(name))


@functools.cache
def encodes(chars: str, codec: str) -> bool:
    try:
        chars.encode(codec)
    except UnicodeError:
        return False
    return True


@pytest.mark.parametrize("codec", LEGACY_CODECS)
def test_spellings_in_a_cookies_codec_are_read_as_cpython_reads_them(scanner: dh.Scanner, codec: str) -> None:
    rng = random.Random(f"{SEED}:{codec}")
    checked, missed = 0, []
    for _ in range(400):
        name = rng.choice(NAMES)
        spelling = encodable_spelling(rng, name, codec)
        if spelling is None:
            continue
        cookie = rng.choice(("# -*- coding: {} -*-\n", "#!/usr/bin/env python\n# coding={}\n"))
        spelled_codec = codec.upper() if rng.random() < 0.3 else codec
        text = cookie.format(spelled_codec) + "import m\n" + rng.choice(CODE_SHAPES).format(n=spelling)
        data = text.encode(codec)
        names = compiled_names_of(data)
        if names is None:
            continue
        assert name in names, text
        checked += 1
        result = scanner.scan_bytes(data, "m.py")
        if rule_of(name) not in reading_matches(result, "m.py"):
            missed.append(text)
    assert checked >= 20, f"{codec}: only {checked} spellings it can encode"
    assert not missed, f"{codec}: {len(missed)} of {checked} missed, e.g. {missed[:3]}"


def compiled_names_of(data: bytes) -> set[str] | None:
    try:
        return code_names(compile(data, "m.py", "exec"))
    except SyntaxError:
        return None


def test_the_inspector_url_of_a_reading_links_to_its_file() -> None:
    source = "import base64\nｅｘｅｃ(base64.b64decode('cHJpbnQoImZpeHR1cmUiKQ=='))\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("pkg-1.0/setup.py")
        info.size = len(source)
        tar.addfile(info, io.BytesIO(source))
    url = "https://files.example/packages/ab/pkg-1.0.tar.gz"
    release = dh.Scanner(dh.bundled_rules(), threads=1).scan_release(
        "pkg", "1.0", [("pkg-1.0.tar.gz", buf.getvalue(), url)]
    )
    (dist,) = release.distributions
    assert dist.top_file is not None and dist.top_file.endswith(READING)
    assert (
        release.inspector_url
        == "https://inspector.pypi.io/project/pkg/1.0/packages/ab/pkg-1.0.tar.gz/pkg-1.0/setup.py"
    )
