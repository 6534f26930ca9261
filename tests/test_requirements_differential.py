"""Differential test of ``scan -R``'s requirements-file reader against pip's own parser (pass 45).

Random requirements files, from a grammar of the tricky parts (continuations, comments, CRLF, BOMs, options
on their own line and after a requirement, ``-r``/``-c`` includes, markers, extras, URLs, odd spellings of
names and versions), are read by pip (``pip._internal.req.req_file.parse_requirements``, the pip this
Python has) and by :func:`read_pins`. For every file pip accepts, each release pip installs from a pinned
line (markers true here) must be a pin of the same canonical name and version, allowing at least pip's
hashes; each line pip installs from a URL, a path or an editable project must be skipped; each line pip
installs without one exact version must be refused. Refusing the whole file (:class:`RequirementsError`) is
always allowed; a pin pip has no line for is not.

``DFH_REQ_CASES`` (default 1000) sets the number of files, ``DFH_REQ_SEED`` the first seed; a failure prints
the seed and the files.
"""

from __future__ import annotations

import locale
import os
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from dragonfly_hybrid.pypi.index import normalize_name
from dragonfly_hybrid.pypi.pipconfig import PipSettings
from dragonfly_hybrid.pypi.requirements import Pins, RequirementsError, read_pins
from packaging.version import InvalidVersion, Version

req_file = pytest.importorskip("pip._internal.req.req_file")
constructors = pytest.importorskip("pip._internal.req.constructors")
session_module = pytest.importorskip("pip._internal.network.session")
LegacySpecifier = pytest.importorskip("pip._vendor.packaging.specifiers").LegacySpecifier

# pip's parser warns of what it will refuse one day (egg fragments, legacy versions): not this test's matter.
pytestmark = pytest.mark.filterwarnings("ignore")

CASES = int(os.environ.get("DFH_REQ_CASES", "1000"))
SEED = int(os.environ.get("DFH_REQ_SEED", "45000"))

HEX = "0123456789abcdef"


@dataclass
class PipView:
    """What pip installs from a set of requirements files."""

    pinned: list[tuple[str, str, frozenset[str], str]] = field(default_factory=list)
    """``(canonical name, version, hashes, where)`` of each pinned line whose markers hold here."""
    any_line: set[tuple[str, str]] = field(default_factory=set)
    """``(canonical name, version)`` of every pinned line, whatever its markers."""
    links: list[str] = field(default_factory=list)
    """``file:line`` of each line pip installs from a URL, a path or an editable project."""
    unpinned: list[str] = field(default_factory=list)
    """``file:line`` of each line pip installs without one exact version."""


_SESSION: Any = None


def pip_view(path: Path) -> PipView | None:
    """pip's reading of ``path``, or None when pip refuses it."""
    global _SESSION
    if _SESSION is None:
        _SESSION = session_module.PipSession()
    view = PipView()
    try:
        for parsed in req_file.parse_requirements(str(path), session=_SESSION):
            ireq = constructors.install_req_from_parsed_requirement(parsed)
            where = _pip_origin(parsed.comes_from)
            if ireq.constraint:
                if ireq.link is not None and ireq.name:
                    view.links.append(where)
                continue
            if ireq.editable or ireq.link is not None:
                if ireq.match_markers():
                    view.links.append(where)
                continue
            specifiers = list(ireq.req.specifier)
            exact = len(specifiers) == 1 and specifiers[0].operator in ("==", "===")
            legacy = any(isinstance(s, LegacySpecifier) for s in specifiers)
            if legacy or (exact and not _is_pep440(specifiers[0].version)):
                # pip 23's legacy versions (`==v1.0Â`, `===1.0#x`): only a release of such a version
                # matches, and no index has one (a pin of this reader fails to find it: exit 3)
                if exact:
                    view.any_line.add((normalize_name(ireq.name), specifiers[0].version))
                continue
            if exact and not (specifiers[0].operator == "==" and "*" in specifiers[0].version):
                name, version = normalize_name(ireq.name), specifiers[0].version
                view.any_line.add((name, version))
                if ireq.match_markers():
                    hashes = frozenset(
                        f"{alg}:{digest}" for alg, digests in ireq.hash_options.items() for digest in digests
                    )
                    view.pinned.append((name, version, hashes, where))
            elif ireq.match_markers():
                view.unpinned.append(where)
    except Exception:  # pip refuses the file: any answer of ours is right
        return None
    return view


def _is_pep440(version: str) -> bool:
    try:
        Version(version)
    except InvalidVersion:
        return False
    return True


def _pip_origin(comes_from: str) -> str:
    """``file:line`` of pip's ``-r FILE (line N)``."""
    head, _, line = comes_from.rpartition(" (line ")
    return f"{head[3:]}:{line.rstrip(')')}"


# ------------------------------------------------------------------------------------------- the grammar

NAMES = ["foo", "Foo_Bar", "foo.bar", "foo-bar", "FOO", "a1", "zope.interface", "x_y-z"]
VERSIONS = ["1.0", "1!2.0", "1.0+local", "1.0.post1", "v1.0", "01.0", "2.0rc1", "1.0.0", "1.*", "1.0-1"]
OPERATORS = ["==", "==", "==", "===", "!=", "~=", ">=", " == ", "\t==\t", "== ", " =="]
EXTRAS = ["", "", "[x]", " [x, y]", "[X_Y]"]
MARKERS = [
    "",
    "",
    "",
    '; python_version < "3"',
    ' ; sys_platform == "win32"',
    ';python_version>="3"',
    " ; python_version >= '3.8' and os_name == 'posix'",
    "; extra == 'x'",
]
ENDINGS = ["\n", "\n", "\n", "\r\n", "\r", "\x0c", "\x1c", "\u2028", "\x85", "\v"]


def _hash(rng: random.Random) -> str:
    if rng.random() < 0.5:
        return "--global-option=-q"  # fewer files in hash-checking mode, where most lines are refused
    return f"--hash=sha256:{''.join(rng.choice(HEX) for _ in range(64))}"


def _requirement(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.75:
        line = rng.choice(NAMES) + rng.choice(EXTRAS) + rng.choice(OPERATORS) + rng.choice(VERSIONS)
        return line + rng.choice(MARKERS)
    name = rng.choice(NAMES)
    return rng.choice(
        [
            f"{name} @ https://example.invalid/{name}-1.0.tar.gz",
            f"{name}@ https://example.invalid/{name}-1.0-py3-none-any.whl",
            f"https://example.invalid/{name}-1.0.tar.gz#egg={name}",
            f"./{name}-1.0.tar.gz",
            f"-e git+https://example.invalid/{name}.git#egg={name}",
            f"{name}-1.0-py3-none-any.whl",
            f"{name}",
            f"{name}>=1.0",
            f"{name}==1.0,!=1.1",
            f"{name}==1.0,==1.0",
            f"{name} (==1.0)",
        ]
    )


def _options(rng: random.Random) -> str:
    picks = [
        lambda: _hash(rng),
        lambda: _hash(rng).replace("=", " ", 1),
        lambda: "--global-option=--quiet",
        lambda: "--global-option --verbose",
    ]
    # Each makes pip or this reader refuse the file: rare, so that most files are judged.
    rare = [
        lambda: "--install-option=--x",
        lambda: "--pre",
        lambda: "-C key=value",
        lambda: "--config-settings=key=value",
    ]
    return " ".join(rng.choice(rare if rng.random() < 0.1 else picks)() for _ in range(rng.randint(1, 3)))


def _line(rng: random.Random, includes: list[str]) -> str:
    kind = rng.random()
    if kind < 0.6:
        line = _requirement(rng)
        if rng.random() < 0.3:
            sep = rng.choice([" ", " ", " \\\n    ", " \\\n\t", "\t" if rng.random() < 0.1 else "  "])
            line += sep + _options(rng)
        if rng.random() < 0.2:
            line += rng.choice([" # pinned", "  #comment", "\t# tab", "#no" if rng.random() < 0.1 else " #"])
        elif rng.random() < 0.05:  # pip under a Latin-1 locale ends the comment's line in `ą` (C4 85)
            line += rng.choice(
                [" # pakiety s\u0105 z PyPI", " # Zo\u0105", " # Zo\u0105" + _requirement(rng)]
            )
        return line
    if kind < 0.75:
        return rng.choice(
            [
                "--index-url https://example.invalid/simple/",
                "-i https://example.invalid/simple/",
                "--extra-index-url=https://example.invalid/extra/",
                "--pre",
                "--only-binary :all:",
                "--prefer-binary",
                "--trusted-host example.invalid",
                "--require-hashes" if rng.random() < 0.2 else "--no-binary foo",
                _hash(rng),
            ]
        )
    if kind < 0.85 and includes:
        return rng.choice(
            ["-r ", "-r", "--requirement ", "--requirement=", "-c ", "--constraint="]
        ) + rng.choice(includes)
    return rng.choice(["", "# a comment", "   ", "\t", "#", " \\", "# comment \\"])


def _text(rng: random.Random, includes: list[str]) -> str:
    lines = [_line(rng, includes) for _ in range(rng.randint(1, 8))]
    text = ""
    for line in lines:
        if rng.random() < 0.15 and " " in line.strip():
            head, _, tail = line.partition(" ")
            line = head + rng.choice([" \\\n", " \\\r\n ", "\\\n ", " \\\n# comment\n"]) + tail
        text += line + rng.choice(ENDINGS)
    if rng.random() < 0.2:
        text = text.rstrip("\n")  # a final line without its newline
    if rng.random() < 0.1:
        text = "\ufeff" + text
    return text


def generate(rng: random.Random, directory: Path) -> Path:
    """A requirements file in ``directory`` with, maybe, files it includes (one in a subdirectory that
    includes its sibling relative to itself)."""
    (directory / "sub").mkdir()
    (directory / "sub" / "leaf.txt").write_bytes(_text(rng, []).encode())
    (directory / "sub" / "inner.txt").write_bytes(_text(rng, ["leaf.txt"]).encode())
    (directory / "other.txt").write_bytes(_text(rng, ["sub/inner.txt"]).encode())
    main = directory / "requirements.txt"
    data = _text(rng, ["other.txt", "sub/inner.txt", "sub/leaf.txt"]).encode()
    if rng.random() < 0.03:
        data += b"# caf\xe9\n"  # not UTF-8: pip refuses it, and so must we
    elif rng.random() < 0.05:
        data = b"# -*- coding: latin-1 -*-\n" + data.decode().encode("latin-1", "replace")
    main.write_bytes(data)
    return main


# ------------------------------------------------------------------------------------------- the judge


def disagreements(path: Path, judged: list[int] | None = None) -> list[str]:
    """How our reading of ``path`` falls short of pip's (empty: none, or pip refuses the file). ``judged``
    gets the number of pinned lines compared when both read the file."""
    views = [pip_view(path)]
    if any(b"\x85" in file.read_bytes() for file in path.parent.rglob("*.txt")):
        # pip decodes with its locale's codec: under Latin-1, the byte 0x85 of `ą` ends a line.
        with mock.patch.object(locale, "getpreferredencoding", lambda *_: "latin-1"):
            views.append(pip_view(path))
    if all(pip is None for pip in views):
        return []
    try:
        ours = read_pins([path], settings=PipSettings())
    except RequirementsError:
        return []  # refused loudly: nothing is hidden
    if any("under a Latin-1 locale" in note for note in ours.notes):
        views = views[:1]  # what pip before 24.2 reads there is named in a note; pip 24.2+ reads UTF-8
    problems: list[str] = []
    read = {line for pip in views if pip is not None for line in pip.any_line}
    for pin in ours.pins:
        if (normalize_name(pin.name), pin.version) not in read:
            problems.append(f"{pin.origin}: pinned {pin.name}=={pin.version}, which pip reads nowhere")
    for pip, same_lines in zip(views, (True, False), strict=False):
        if pip is not None:
            problems += _shortfalls(pip, ours, same_lines)
            if judged is not None:
                judged.append(len(pip.pinned))
    return problems


def _shortfalls(pip: PipView, ours: Pins, same_lines: bool) -> list[str]:
    """What pip installs that ``ours`` neither pins nor skips nor refuses. ``same_lines``: pip decoded the
    files as this reader did (else its lines are numbered otherwise, and a hash may hold the Latin-1 reading
    of a UTF-8 line break, which no file matches: only names, versions and the number of skips compare)."""
    problems: list[str] = []
    for name, version, hashes, where in pip.pinned:
        allowed = hashes if same_lines else frozenset()
        covering = [
            p
            for p in ours.pins
            if normalize_name(p.name) == name
            and p.version == version
            and (not p.hashes or allowed <= p.hashes)
        ]
        if not covering:
            problems.append(f"{where}: pip installs {name}=={version} {sorted(hashes)}; not pinned so")
    for where in pip.links:
        found = any(entry.startswith(f"{where}:") for entry in ours.skipped)
        if not (found if same_lines else len(pip.links) <= len(ours.skipped)):
            problems.append(f"{where}: pip installs from a URL, path or editable project; not skipped")
    for where in pip.unpinned:
        problems.append(f"{where}: pip installs it unpinned; not refused")
    return problems


def test_the_reader_hides_nothing_pip_installs(tmp_path: Path) -> None:
    judged: list[int] = []
    for case in range(CASES):
        seed = SEED + case
        directory = tmp_path / str(seed)
        directory.mkdir()
        main = generate(random.Random(seed), directory)
        problems = disagreements(main, judged)
        if problems:
            files = {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*.txt"))}
            pytest.fail(f"DFH_REQ_SEED={seed} (DFH_REQ_CASES=1): {problems}\nfiles: {files}")
    # The grammar must give files both read, with pins to compare: else this test could not fail.
    assert len(judged) >= CASES // 20 and sum(judged) >= CASES // 20, (len(judged), sum(judged))


def test_the_judge_sees_a_line_dropped_a_version_changed_and_a_url_not_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The oracle's comparison itself: a reader that loses or rewrites what pip installs is caught."""
    req = tmp_path / "requirements.txt"
    req.write_text(
        "six==1.16.0\nidna==3.7 ; python_version >= '3'\npkg @ https://example.invalid/pkg-1.0.tar.gz\n"
    )
    assert disagreements(req) == []
    real = read_pins

    def lossy(paths: list[Path], settings: PipSettings | None = None) -> Any:
        pins = real(paths, settings)
        pins.pins = [replace(pins.pins[0], version="1.16.1")]
        pins.skipped = []
        return pins

    monkeypatch.setattr(__name__ + ".read_pins", lossy)
    found = disagreements(req)
    assert [problem.split(": ", 1)[1] for problem in found] == [
        "pinned six==1.16.1, which pip reads nowhere",
        "pip installs six==1.16.0 []; not pinned so",
        "pip installs idna==3.7 []; not pinned so",
        "pip installs from a URL, path or editable project; not skipped",
    ]


def test_a_line_pip_reads_under_a_latin1_locale_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip decodes a file without a BOM or a coding line with its locale's codec: under an ISO-8859 one
    (Latin-1), the byte 0x85 of a UTF-8 character (`ą` is C4 85) is NEL, a line break, and the text after
    it in a comment a line of its own. pip installed foo==1.0 from an included file where this reader read a
    comment (a UTF-8 scan said clean without it)."""
    sub = tmp_path / "sub.txt"
    sub.write_bytes(b"# Zo\xc4\x85foo==1.0\nsix==1.16.0\n")
    req = tmp_path / "requirements.txt"
    req.write_text("-r sub.txt\nbar==2.0\n")
    with monkeypatch.context() as latin1:
        latin1.setattr(locale, "getpreferredencoding", lambda *_: "latin-1")
        pip = pip_view(req)
    assert pip is not None
    assert [(name, version) for name, version, _, _ in pip.pinned] == [
        ("foo", "1.0"),
        ("six", "1.16.0"),
        ("bar", "2.0"),
    ]
    [note] = read_pins([req], settings=PipSettings()).notes
    assert note.startswith(f"{sub}: pip before 24.2 under a Latin-1 locale reads a line 'foo==1.0' in it ")

    # U+2028 ends a line in UTF-8 only: under Latin-1 the comment swallows the option line after it, whose
    # continuation becomes a requirement of its own.
    sub.write_bytes(b"# note\xe2\x80\xa8--trusted-host \\\nfoo==1.0\nsix==1.16.0\n")
    with monkeypatch.context() as latin1:
        latin1.setattr(locale, "getpreferredencoding", lambda *_: "latin-1")
        pip = pip_view(req)
    assert pip is not None and ("foo", "1.0") in {(name, version) for name, version, _, _ in pip.pinned}
    [note] = read_pins([req], settings=PipSettings()).notes
    assert "reads a line 'foo==1.0' in it that this reader (and pip 24.2 and later) does not" in note

    # A comment in Polish or Russian (the rest of a word or a sentence is no line pip takes), or a file
    # whose encoding is declared, reads as before.
    sub.write_text("# pakiety są z PyPI\n# тихо\nsix==1.16.0\n")
    assert [p.spec for p in read_pins([req], settings=PipSettings()).pins] == ["six==1.16.0", "bar==2.0"]
    sub.write_bytes(b"# -*- coding: utf-8 -*-\n# Zo\xc4\x85foo==1.0\nsix==1.16.0\n")
    assert [p.spec for p in read_pins([req], settings=PipSettings()).pins] == ["six==1.16.0", "bar==2.0"]
