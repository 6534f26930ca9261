"""Review pass 47: scan -R's note on a requirements file that pip before 24.2 under a Latin-1 locale reads
otherwise (521ee1a, a refusal then). pip's own reading is taken from the installed pip, in a subprocess
whose preferred encoding is Latin-1 (this machine has no ISO-8859 locale)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dragonfly_hybrid.pypi.pipconfig import PipSettings
from dragonfly_hybrid.pypi.requirements import read_pins

from tests.fakes.pypi import FakeIndex, wheel
from tests.test_find_links import CLEAN, scan

pytest.importorskip("pip._internal.req.req_file")

_PIP_UNDER_LATIN1 = """
import json, locale, sys
locale.getpreferredencoding = lambda *_: "latin-1"
from pip._internal.network.session import PipSession
from pip._internal.req.constructors import install_req_from_parsed_requirement
from pip._internal.req.req_file import parse_requirements
try:
    lines = [
        str(install_req_from_parsed_requirement(parsed).req)
        for parsed in parse_requirements(sys.argv[1], session=PipSession())
    ]
except Exception as err:
    print(json.dumps({"refused": type(err).__name__}))
else:
    print(json.dumps({"installs": lines}))
"""


def pip_under_latin1(path: Path) -> dict[str, object]:
    """What the installed pip makes of ``path`` when its locale's codec is Latin-1."""
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _PIP_UNDER_LATIN1, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_a_file_pip_refuses_under_latin1_is_read(tmp_path: Path) -> None:
    """A Polish comment whose `ą` (C4 85) leaves, under Latin-1, a word pip would install (`wiązka`: `zka`)
    was refused, even where another comment leaves a piece no pip reads as a requirement (the rest of
    `gęślą jaźń`): pip under Latin-1 refuses the whole file then and installs nothing."""
    req = tmp_path / "requirements.txt"
    req.write_text(
        "# Zależności: wiązka\n# gęślą jaźń (zażółć)\nrequests==2.31.0  # klient HTTP\n", encoding="utf-8"
    )
    assert pip_under_latin1(req) == {"refused": "InstallationError"}
    read = read_pins([req], settings=PipSettings())
    assert ([p.spec for p in read.pins], read.notes) == (["requests==2.31.0"], [])

    # An emoji's last byte may be 0x85 (😅 is F0 9F 98 85): the same holds.
    req.write_text("# 🅰 deps\nrequests==2.31.0  # 😅 fast\n", encoding="utf-8")
    assert pip_under_latin1(req) == {"refused": "InstallationError"}
    read = read_pins([req], settings=PipSettings())
    assert ([p.spec for p in read.pins], read.notes) == (["requests==2.31.0"], [])


def test_a_line_pip_still_takes_under_latin1_is_named(tmp_path: Path) -> None:
    """The note stands where pip under Latin-1 installs the piece: alone (`wiązka`, `Åtkomst`), or next
    to a broken pin pip 23 still takes as a legacy version (`foo==1.0Ä`)."""
    req = tmp_path / "requirements.txt"
    for text, hidden in [
        ("# wiązka\nrequests==2.31.0\n", "zka"),
        ("requests==2.31.0  # Åtkomst\n", "tkomst"),
        ("# wiązka\n# Zoąfoo==1.0ą\nrequests==2.31.0\n", "zka"),
    ]:
        req.write_text(text, encoding="utf-8")
        installs = pip_under_latin1(req).get("installs")
        assert isinstance(installs, list) and hidden in installs, installs
        [note] = read_pins([req], settings=PipSettings()).notes
        assert f"pip before 24.2 under a Latin-1 locale reads a line {hidden!r} in it" in note


def test_the_note_quotes_no_piece_of_a_password(tmp_path: Path) -> None:
    """A password's `ą` cuts its URL under Latin-1: the piece after it (`pass@pypi.example/simple`) is no
    URL that redaction recognises, and the message quoted it, a part of the password with it. (The file still
    gets the note: the parser takes that piece for a requirement, pip does not.)"""
    req = tmp_path / "requirements.txt"
    req.write_text(
        "--index-url https://alice:s3cretąpass@pypi.example/simple\nsix==1.16.0\n", encoding="utf-8"
    )
    [message] = read_pins([req], settings=PipSettings()).notes
    assert message.startswith(
        f"{req}: pip before 24.2 under a Latin-1 locale reads a line (not quoted: a URL in the file"
    )
    assert "s3cret" not in message and "pass" not in message and "alice" not in message


@pytest.mark.parametrize("python", ["3.9", "3.12", "3.13"])
def test_the_tags_of_another_python_are_pips(python: str) -> None:
    """``--python-version 3.12``: a ``cp312-none-any`` wheel is one pip takes (its tags name the interpreter
    too), so its release's dependencies are known from it; ``runs_on`` said no."""
    from dragonfly_hybrid.pypi.pip_names import _supported_tags, runs_on
    from packaging.version import Version

    major, minor = (int(part) for part in python.split("."))
    code = (
        "import json; from pip._internal.utils.compatibility_tags import get_supported; "
        f"print(json.dumps(sorted(str(t) for t in get_supported(version='{major}{minor}'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert sorted(str(tag) for tag in _supported_tags(major, minor)) == json.loads(done.stdout)
    assert runs_on(f"foo-1.0-cp{major}{minor}-none-any.whl", Version(python))


def test_scan_names_what_an_older_pip_reads_in_a_note_and_exits_as_before(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip 24.2 and later read the file as UTF-8, as ``scan`` does: the pins are scanned as usual (exit 0 for
    a clean release) and stderr names the line pip before 24.2 under Latin-1 would take (`wiązka`: `zka`)."""
    fake_index.add("pkg", wheel("pkg", "1.0", CLEAN))
    req = tmp_path / "requirements.txt"
    req.write_text("# wiązka\npkg==1.0\n", encoding="utf-8")
    result, report = scan("-R", req, "-r", rules_dir, "--index-url", fake_index.url, env={})
    assert result.exit_code == 0, result.output
    assert [t["verdict"] for t in report["targets"]] == ["clean"]
    assert f"note: {req}: pip before 24.2 under a Latin-1 locale reads a line 'zka' in it" in result.stderr
