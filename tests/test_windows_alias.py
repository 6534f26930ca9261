"""Members named as Windows writes them to another name: its path normalisation drops the trailing dots
and spaces of a name (`evil.pth.` is written as `evil.pth`, which `site` runs at every start), reads
`NAME::$DATA` as `NAME`, and pip building an sdist on its case-blind names runs a `SETUP.PY` as
`setup.py`. Each such member is scanned again under the name Windows gives it, with the rules of that
name, and an informational `ambiguous` issue says so (the verdict stays complete). No Windows runs here:
the names follow Windows' documented path normalisation."""

from __future__ import annotations

from pathlib import Path

import dragonfly_hybrid as dh
import pytest

from tests.archive_gen import member, tar_of, zip_of

FIXTURES = Path(__file__).parent / "fixtures" / "rules"
PTH = (FIXTURES / "install_pth_code_exec" / "positive" / "zz_fixture.pth").read_bytes()
SETUP = (FIXTURES / "install_cmdclass_shell" / "positive" / "setup.py").read_bytes()


@pytest.fixture(scope="module")
def scanner() -> dh.Scanner:
    return dh.Scanner(dh.bundled_rules(), threads=1)


@pytest.mark.parametrize("name", ["zz.pth.", "zz.pth ", "zz.pth::$DATA"])
def test_a_pth_file_windows_writes_under_its_name_gets_its_rules(scanner: dh.Scanner, name: str) -> None:
    result = scanner.scan_bytes(zip_of([(name, PTH)]), "pkg-1.0-py3-none-any.whl")
    hits = {f.path: {m.identifier for m in f.matches} for f in result.files}
    assert "install_pth_code_exec" in hits.get("zz.pth", set()), hits
    assert "install_pth_code_exec" not in hits.get(name, set()), "the rule counts for .pth files only"
    (issue,) = [i for i in result.issues if i.kind == "ambiguous"]
    assert issue.path == name and "Windows" in issue.message and not issue.unscanned
    assert result.complete


@pytest.mark.parametrize("name", ["SETUP.PY", "Setup.py", "setup.py."])
def test_an_sdists_setup_script_windows_runs_gets_the_setup_rules(scanner: dh.Scanner, name: str) -> None:
    result = scanner.scan_bytes(tar_of(member(f"p-1.0/{name}", SETUP)), "p-1.0.tar")
    hits = {f.path: {m.identifier for m in f.matches} for f in result.files}
    assert "install_cmdclass_shell" in hits.get("p-1.0/setup.py", set()), hits
    assert result.complete


def test_names_windows_writes_as_they_are_get_no_alias(scanner: dh.Scanner) -> None:
    files = [("pkg/zz.pth", PTH), ("pkg../x.py", b"x = 1\n"), ("pkg/x.pth:stream", b"")]
    result = scanner.scan_bytes(zip_of(files), "pkg-1.0-py3-none-any.whl")
    assert not result.issues, result.issues
