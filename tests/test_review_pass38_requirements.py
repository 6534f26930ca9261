"""Review pass 38 of ``scan --requirements``: a clean verdict must cover every file the installer takes
from the files given (anything else named, and not exit 0)."""

from __future__ import annotations

import json
from pathlib import Path

from dragonfly_hybrid.cli import app
from typer.testing import CliRunner, Result

from tests.fakes.pypi import MARKER, FakeIndex, sdist, wheel

BAD = b"import os\n# " + MARKER + b"\n"


def run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_a_release_hashed_in_one_file_and_not_in_another_is_scanned_for_both(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """`pip install -r b.txt` (no hashes) takes any file of foo 1.0, the flagged wheel included; the same
    release pinned with the clean sdist's hash in a.txt, given first, hid b.txt's pin (one pin per name and
    version): only the sdist was scanned, exit 0."""
    [clean, _] = fake_index.add(
        "foo", sdist("foo", "1.0", {"setup.py": b"pass\n"}), wheel("foo", "1.0", {"foo/__init__.py": BAD})
    )
    hashed = tmp_path / "a.txt"
    hashed.write_text(f"foo==1.0 --hash=sha256:{clean.sha256}\n")
    plain = tmp_path / "b.txt"
    plain.write_text("foo==1.0\n")
    result = run(
        "scan", "-R", hashed, "-R", plain, "-r", rules_dir, "--index-url", fake_index.url, "-f", "json"
    )
    assert result.exit_code == 1, result.output
    targets = json.loads(result.stdout)["targets"]
    assert [(t["target"], t["verdict"]) for t in targets] == [("foo==1.0", "clean"), ("foo==1.0", "findings")]
    assert [t["origin"] for t in targets] == [
        {"path": str(hashed), "line": 1},
        {"path": str(plain), "line": 1},
    ]


def test_a_constraint_to_a_url_is_named_as_skipped_and_does_not_exit_0(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip installs a name from the URL a named constraint gives (`pip download -r req.txt` fetched the
    flagged wheel of another host for `foo==1.0`, the index's clean one never); constraints were read and
    left aside, so the index's clean foo 1.0 was scanned and the scan said clean, exit 0."""
    fake_index.add("foo", wheel("foo", "1.0", {"foo/__init__.py": b"pass\n"}))
    with FakeIndex() as other:
        [flagged] = other.add("foo", wheel("foo", "1.0", {"foo/__init__.py": BAD}))
        url = other.file_url("foo", flagged.filename)
    (tmp_path / "constraints.txt").write_text(f"foo @ {url}\nbar==2.0\n")
    req = tmp_path / "requirements.txt"
    req.write_text("-c constraints.txt\nfoo==1.0\n")
    result = run("scan", "-R", req, "-r", rules_dir, "--index-url", fake_index.url, "-q")
    assert result.exit_code == 3, result.output
    assert (
        f"note: skipped {tmp_path / 'constraints.txt'}:1: foo @ {url}: a constraint to a URL, which pip "
        "installs that name from, not an index release" in result.stderr
    )
    assert "bar==2.0" not in result.stderr  # a constraint without a URL installs nothing
    result = run("scan", "-R", req, "-r", rules_dir, "--index-url", fake_index.url, "-q", "--allow-skipped")
    assert result.exit_code == 0, result.output


def test_a_file_the_parser_cannot_decode_or_open_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    """A coding line naming no text codec and a -r name holding a NUL byte ended in a traceback (internal
    error, exit 3); bytes not in an included file's encoding were blamed on the file given."""
    bogus = tmp_path / "bogus.txt"
    bogus.write_text("# -*- coding: bogus -*-\nfoo==1.0\n")
    result = run("scan", "-R", bogus)
    assert result.exit_code == 2, result.output
    assert (
        f"error: {bogus}: its coding line names no text encoding (unknown encoding: bogus)" in result.output
    )
    assert "Traceback" not in result.output

    nul = tmp_path / "nul.txt"
    nul.write_bytes(b"-r a\x00b.txt\nfoo==1.0\n")
    result = run("scan", "-R", nul)
    assert result.exit_code == 2, result.output
    assert f"error: a file {nul} includes (-r/-c): cannot read it (embedded null byte)" in result.output

    (tmp_path / "latin.txt").write_bytes(b"foo==1.0  # caf\xe9\n")
    including = tmp_path / "requirements.txt"
    including.write_text("# -*- coding: latin-1 -*-\n-r latin.txt\n")
    result = run("scan", "-R", including)
    assert result.exit_code == 2, result.output
    assert f"a file {including} includes (-r/-c) is not utf-8 text (byte 15: invalid" in result.output
    result = run("scan", "-R", tmp_path / "latin.txt")
    assert result.exit_code == 2, result.output
    assert f"{tmp_path / 'latin.txt'} is not utf-8 text (byte 15: invalid" in result.output


def test_requirements_files_that_include_each_other_are_a_usage_error_saying_so(tmp_path: Path) -> None:
    """pip's parser follows -r without a check, to Python's recursion limit: the error quoted the line it
    stopped at, `cannot parse 'foo==1.0': maximum recursion depth exceeded`."""
    first = tmp_path / "a.txt"
    first.write_text("foo==1.0\n-r b.txt\n")
    (tmp_path / "b.txt").write_text("-c a.txt\n")
    result = run("scan", "-R", first)
    assert result.exit_code == 2, result.output
    assert f"error: {first}: its -r/-c files include each other in a loop (" in result.output
