"""Review pass 63b: the option syntax of ``scan -R`` files' lines, held against the installed pip (23.2) where
it agrees with pip 26.3 (checked by hand), else against pip 26.3 read by hand (``scan`` follows 26.3).
``PIP_*`` are cleared per test (``conftest``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.fakes.pypi import FakeFile, FakeIndex, wheel, write
from tests.test_find_links import BAD, CLEAN, scan
from tests.test_pip_install_settings import buildable_sdist
from tests.test_review_pass62 import index, pip_files  # noqa: F401  (index: a fixture)


def test_a_global_option_after_a_requirement_is_ignored_as_pip_ignores_it(
    index: FakeIndex,  # noqa: F811
    tmp_path: Path,
    rules_dir: Path,
) -> None:
    """pip takes ``foo==1.0 --index-url URL --pre`` and ignores both options (only per-requirement ones
    apply on a requirement line); scan refused the line (exit 2). Now taken, the options not applied (the
    other index, serving a malicious file of that name, is not read) and named in a note."""
    with FakeIndex() as other:
        other.add("foo-bar", wheel("foo_bar", "1.0", BAD))
        req = write(tmp_path / "req.txt", f"foo-bar==1.0 --index-url {other.url} --pre\n".encode())
        assert pip_files(index, tmp_path, {}, "-r", str(req)) == ["foo_bar-1.0-py3-none-any.whl"]
        assert other.requests == []
        result, report = scan("-R", req, "-r", rules_dir, "--index-url", index.url, env={})
        assert result.exit_code == 0, result.output
        assert [(t["name"], t["version"]) for t in report["targets"]] == [("foo-bar", "1.0")]
        assert other.requests == []
        assert f"{req}:1: pip ignores --index-url, --pre on a requirement line" in result.stderr


def test_a_binary_option_after_a_requirement_applies_as_pip_applies_it(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip's ``--only-binary`` callback changes its finder's setting in place, whatever the line: after a
    requirement too. The index lists the wheel's sha256 wrong: without ``only-binary`` pip would keep the
    sdist (its listed digest allowed); with it pip installs the wheel. scan dropped the option silently and
    scanned the sdist alone (exit 0) where pip installs the malicious wheel."""
    wheel_name, wheel_bytes = wheel("pkg", "1.0", BAD)
    sdist_name, sdist_bytes = buildable_sdist("pkg", "1.0")
    fake_index.add(
        "pkg", FakeFile(wheel_name, wheel_bytes, listed_sha256="0" * 64), (sdist_name, sdist_bytes)
    )
    hashes = " ".join(f"--hash=sha256:{hashlib.sha256(b).hexdigest()}" for b in (wheel_bytes, sdist_bytes))
    req = write(tmp_path / "req.txt", f"pkg==1.0 --only-binary :all: {hashes}\n".encode())
    assert pip_files(fake_index, tmp_path, {}, "-r", str(req)) == [wheel_name]
    result, report = scan("-R", req, "-r", rules_dir, "--index-url", fake_index.url, env={})
    assert result.exit_code == 1, result.output
    assert wheel_name in [d["name"] for t in report["targets"] for d in t["distributions"]]


def test_a_release_option_after_a_requirement_applies_as_pip_26_applies_it(
    index: FakeIndex,  # noqa: F811
    tmp_path: Path,
    rules_dir: Path,
) -> None:
    """pip 26.3 (by hand; 23.2 knows no ``--only-final``) applies ``pkg==1.0 --only-final :all:`` to every
    requirement, as its callback changes the finder's release control in place: it finds no final
    foo-bar==2.0rc1 and installs nothing. scan dropped the option and scanned 2.0rc1."""
    index.add("foo-bar", wheel("foo_bar", "2.0rc1", CLEAN))
    req = write(tmp_path / "req.txt", b"pkg==1.0 --only-final :all:\nfoo-bar==2.0rc1\n")
    result, _ = scan("-R", req, "-r", rules_dir, "--index-url", index.url, env={})
    assert result.exit_code == 2, result.output
    assert "only-final allows no pre-release" in result.stderr


@pytest.mark.parametrize(
    "text",
    [
        "-r other.txt\n--requirements other.txt\n",  # the parser's own alias: pip 23.2 and 26.3 refuse it
        "foo-bar==1.0 --install-option x\n",  # neither pip knows it
        "foo-bar==1.0 --global-option x\n",  # pip 26.3 knows it no more (by hand; 23.2 takes it)
    ],
)
def test_an_option_pip_does_not_know_is_refused(
    index: FakeIndex,  # noqa: F811
    tmp_path: Path,
    rules_dir: Path,
    text: str,
) -> None:
    """pip refuses the file (``no such option``): scan took the line and gave a verdict."""
    write(tmp_path / "other.txt", b"pkg==1.0\n")
    req = write(tmp_path / "req.txt", text.encode())
    if "--global-option" not in text:
        assert pip_files(index, tmp_path, {}, "-r", str(req)) is None
    result, _ = scan("-R", req, "-r", rules_dir, "--index-url", index.url, env={})
    assert result.exit_code == 2, result.output
    assert "no such option" in result.stderr


def test_an_abbreviated_option_is_read_as_pips_parser_reads_it(
    index: FakeIndex,  # noqa: F811
    tmp_path: Path,
    rules_dir: Path,
) -> None:
    """optparse takes an unambiguous prefix of a long option: pip reads ``--in URL`` as ``--index-url``
    and ``--requiremen FILE`` as ``--requirement``; the parser's extra options (``--install-option``,
    ``--requirements``) made both ambiguous, and scan refused them (exit 2). ``--all`` (pip 26.3, by hand:
    ``--all-releases``) was ambiguous too."""
    with FakeIndex() as other:
        other.add("foo-bar", wheel("foo_bar", "1.0", BAD))
        write(tmp_path / "other.txt", b"foo-bar==1.0\n")
        req = write(tmp_path / "req.txt", f"--in {other.url}\n--requiremen other.txt\n--all :all:\n".encode())
        pip_req = write(tmp_path / "pip.txt", f"--in {other.url}\n--requiremen other.txt\n".encode())
        assert pip_files(index, tmp_path, {}, "-r", str(pip_req)) == ["foo_bar-1.0-py3-none-any.whl"]
        assert any("/foo-bar" in path for path in other.requests)
        result, report = scan("-R", req, "-r", rules_dir, "--index-url", index.url, env={})
        assert result.exit_code == 1, result.output
        (target,) = report["targets"]
        assert all(d["url"].startswith(f"http://127.0.0.1:{other.port}/") for d in target["distributions"])
    # Ambiguous to pip 26.3 as to scan: --no- (--no-index, --no-binary, --no-require-hashes).
    ambiguous = write(tmp_path / "amb.txt", b"--no- :all:\nfoo-bar==1.0\n")
    result, _ = scan("-R", ambiguous, "-r", rules_dir, "--index-url", index.url, env={})
    assert result.exit_code == 2 and "ambiguous option" in result.stderr, result.output


def test_an_upper_case_hash_algorithm_is_refused_as_pip_refuses_it(
    index: FakeIndex,  # noqa: F811
    tmp_path: Path,
    rules_dir: Path,
) -> None:
    """pip (23.2 and 26.3) allows ``sha256``, ``sha384``, ``sha512`` as written: ``--hash=SHA256:...`` makes
    it refuse the file. scan lower-cased the name and scanned the release."""
    digest = hashlib.sha256(wheel("foo_bar", "1.0", CLEAN)[1]).hexdigest()
    req = write(tmp_path / "req.txt", f"foo-bar==1.0 --hash=SHA256:{digest}\n".encode())
    assert pip_files(index, tmp_path, {}, "-r", str(req)) is None
    result, _ = scan("-R", req, "-r", rules_dir, "--index-url", index.url, env={})
    assert result.exit_code == 2, result.output
    assert "--hash=SHA256:" in result.stderr


def test_a_variable_in_a_nested_file_name_is_refused_with_the_hint(tmp_path: Path, rules_dir: Path) -> None:
    """``-r ${F}``: pip opens the file the variable names; scan said only that ``${F}`` cannot be opened,
    without the hint other ``${VAR}`` lines get."""
    req = write(tmp_path / "req.txt", b"-r ${REQ_FILE}\n")
    result, _ = scan("-R", req, "-r", rules_dir, env={"REQ_FILE": str(tmp_path / "other.txt")})
    assert result.exit_code == 2, result.output
    assert "pip expands ${VAR} from the environment" in result.stderr


def test_a_requirements_file_with_config_settings_given_as_rules_gets_the_hint(tmp_path: Path) -> None:
    """``scan -r requirements.txt`` (``-r`` is ``--rules``) names ``-R``; a file with a ``-C KEY=VAL`` (or any
    option but ``--hash``) after a requirement was not recognised and got a YARA syntax error instead."""
    req = write(tmp_path / "requirements.txt", b"foo-bar==1.0 -C key=value\npkg==1.0 --hash=sha256:00\n")
    result, _ = scan("foo-bar==1.0", "-r", req, env={})
    assert result.exit_code == 2, result.output
    assert "did you mean -R/--requirements" in result.stderr
