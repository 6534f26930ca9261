"""pip's ``constraint`` setting (``PIP_CONSTRAINT``, pip.conf): pip reads those files into every install as
``-c`` files: their option lines apply, their named constraints restrict each name's release. ``scan`` read
them as a usage error; it reads them now as pip does, held against the installed pip (23.2, which reads
them as pip 26.3 does): a bare name's release, a ``-R`` pin's index. ``PIP_*`` are cleared per test
(``conftest``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.fakes.pypi import FakeIndex, wheel, write
from tests.test_find_links import BAD, CLEAN, scan
from tests.test_pip_install_settings import buildable_sdist, pip_version

# foo-bar: 1.0 and 1.5 clean, 2.0 and 2.1rc1 malicious (wheels only: pip downloads without building).
BAD_VERSIONS = ("2.0", "2.1rc1")


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    fake_index.add(
        "foo-bar",
        *(wheel("foo_bar", v, BAD if v in BAD_VERSIONS else CLEAN) for v in ("1.0", "1.5", "2.0", "2.1rc1")),
    )
    # pkg: 1.0 a wheel and an sdist, 2.0 an sdist only (clean: the version tells).
    fake_index.add(
        "pkg", wheel("pkg", "1.0", CLEAN), buildable_sdist("pkg", "1.0"), buildable_sdist("pkg", "2.0")
    )
    return fake_index


def scanned_version(index: FakeIndex, env: dict[str, str], target: str, *args: str) -> str | None:
    """The version ``scan TARGET`` scans under ``env`` (None: exit 2), its exit code checked."""
    result, report = scan(target, "-r", Path(env["RULES"]), "--index-url", index.url, *args, env={**env})
    if result.exit_code == 2:
        return None
    [version] = [t["version"] for t in report["targets"]]
    assert result.exit_code == (1 if version in BAD_VERSIONS else 0), result.output
    return version


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["foo-bar<2\n"], "1.5"),
        (["foo-bar!=2.0\n"], "1.5"),  # no explicit pre-release: 2.1rc1 is no candidate
        (["foo-bar>=2.0rc1\n"], "2.1rc1"),  # an explicit pre-release admits them
        (["foo-bar<2 ; python_version >= '3'\n"], "1.5"),
        (["foo-bar<2 ; python_version < '3'\n"], "2.0"),  # a false marker: no constraint
        (["Foo_Bar<2\n"], "1.5"),
        (["foo.bar<1.2\n"], "1.0"),
        (["foo-bar<2\n", "foo-bar<1.5\n"], "1.0"),  # two files: both apply
        (["--pre\n"], "2.1rc1"),
        (["--pre\nfoo-bar<2.1\n"], "2.0"),
        (["-c inner.txt\n"], "1.0"),  # nested, relative to the including file
    ],
)
def test_a_bare_name_scans_the_release_pip_installs_under_its_constraint_files(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, files: list[str], expected: str
) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "inner.txt", b"foo-bar<1.5\n")
    paths = [write(tmp_path / "sub" / f"c{i}.txt", text.encode()) for i, text in enumerate(files)]
    env = {
        "PIP_CONFIG_FILE": "/dev/null",
        "PIP_CONSTRAINT": " ".join(map(str, paths)),
        "RULES": str(rules_dir),
    }
    assert pip_version(index, tmp_path, env, "foo-bar") == expected
    assert scanned_version(index, env, "foo-bar") == expected
    # A pin: the release pinned, every file; none when the constraints do not admit it (pip refuses it).
    assert scanned_version(index, env, "foo-bar==2.0") == pip_version(index, tmp_path, env, "foo-bar==2.0")


def test_constraint_files_are_relative_to_the_working_directory_and_pip_conf_takes_them(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "c.txt", b"foo-bar<2\n")
    conf = write(tmp_path / "pip.conf", b"[global]\nconstraint = c.txt\n")
    env = {"PIP_CONFIG_FILE": str(conf), "RULES": str(rules_dir)}
    monkeypatch.chdir(tmp_path)
    assert pip_version(index, tmp_path, env, "foo-bar") == "1.5"
    assert scanned_version(index, env, "foo-bar") == "1.5"


@pytest.mark.parametrize(("line", "expected"), [("--only-binary :all:", "1.0"), ("--prefer-binary", "1.0")])
def test_a_constraint_files_option_lines_apply_to_a_bare_name(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, line: str, expected: str
) -> None:
    constraints = write(tmp_path / "c.txt", f"{line}\n".encode())
    env = {"PIP_CONFIG_FILE": "/dev/null", "PIP_CONSTRAINT": str(constraints), "RULES": str(rules_dir)}
    assert pip_version(index, tmp_path, env, "pkg") == expected
    assert scanned_version(index, env, "pkg") == expected


def test_a_constraint_files_index_url_is_where_pip_takes_a_bare_name_and_a_pin_from(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """The constraint file's ``--index-url`` wins over ``--index-url`` on the command line, as a -R file's
    line does: pip downloads the other index's (malicious) file."""
    with FakeIndex() as other:
        other.add("foo-bar", wheel("foo_bar", "1.0", BAD))
        [theirs] = other.projects["foo-bar"]
        constraints = write(tmp_path / "c.txt", f"--index-url {other.url}\nfoo-bar<2\n".encode())
        env = {"PIP_CONFIG_FILE": "/dev/null", "PIP_CONSTRAINT": str(constraints)}
        into = tmp_path / "pip"
        assert pip_version(index, tmp_path, env, "foo-bar") == "1.0"
        pins = write(tmp_path / "req.txt", b"foo-bar==1.0\n")
        for args in (["foo-bar"], ["-R", pins]):
            result, report = scan(*args, "-r", rules_dir, "--index-url", index.url, env={**env})
            assert result.exit_code == 1, result.output  # the other index's malicious file
            [target] = report["targets"]
            assert [
                d["url"].startswith(f"http://127.0.0.1:{other.port}/") for d in target["distributions"]
            ] == [True], (args, target)
        from tests.test_review_pass42 import pip_download

        done = pip_download(into, env, "--index-url", index.url, "-r", str(pins))
        assert done.returncode == 0, done.stderr
        [file] = into.iterdir()
        assert hashlib.sha256(file.read_bytes()).hexdigest() == theirs.sha256


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo-bar[x]<2\n", "Constraints cannot have extras"),
        ("-e ./proj\n", "are not allowed as constraints"),
        ("--find-links ./here\n", "--find-links"),
        ("foo-bar\x1b[2J<2\n", "cannot parse"),  # quoted printable: no escape sequence reaches a terminal
    ],
)
def test_a_constraint_file_pip_refuses_is_a_usage_error(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, text: str, message: str
) -> None:
    constraints = write(tmp_path / "c.txt", text.encode())
    env = {"PIP_CONFIG_FILE": "/dev/null", "PIP_CONSTRAINT": str(constraints)}
    for args in (["foo-bar"], ["-R", write(tmp_path / "req.txt", b"foo-bar==1.0\n")]):
        result, _ = scan(*args, "-r", rules_dir, "--index-url", index.url, env={**env})
        assert result.exit_code == 2, result.output
        assert message in result.stderr
        assert "Traceback" not in result.output and "\x1b" not in result.stderr


def test_a_url_constraint_on_a_bare_name_is_a_usage_error_naming_where_pip_takes_it(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    url = "https://user:s3cret@127.0.0.1:9/foo_bar-1.0-py3-none-any.whl"
    constraints = write(tmp_path / "c.txt", f"foo-bar @ {url}\n".encode())
    env = {"PIP_CONFIG_FILE": "/dev/null", "PIP_CONSTRAINT": str(constraints)}
    result, _ = scan("foo-bar", "-r", rules_dir, "--index-url", index.url, env={**env})
    assert result.exit_code == 2, result.output
    assert "makes pip install foo-bar from https://" in result.stderr and "s3cret" not in result.stderr
    result, report = scan("pkg", "-r", rules_dir, "--index-url", index.url, env={**env})
    assert result.exit_code == 0 and [t["version"] for t in report["targets"]] == ["2.0"], result.output


def test_markers_are_evaluated_for_the_target_python(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip running on Python 3.8 evaluates the marker for 3.8 (``pip download --python-version`` would not:
    it evaluates markers for the Python it runs on)."""
    constraints = write(tmp_path / "c.txt", b"foo-bar<2 ; python_version < '3.9'\n")
    env = {"PIP_CONFIG_FILE": "/dev/null", "PIP_CONSTRAINT": str(constraints), "RULES": str(rules_dir)}
    assert scanned_version(index, env, "foo-bar", "--python-version", "3.8") == "1.5"
    assert scanned_version(index, env, "foo-bar", "--python-version", "3.12") == "2.0"


def test_a_lock_files_entries_take_none_of_it(index: FakeIndex, tmp_path: Path, rules_dir: Path) -> None:
    """A constraint file pip would refuse does not stop a lock file's scan (its installer reads none)."""
    constraints = write(tmp_path / "c.txt", b"foo-bar[x]<2\n--index-url http://127.0.0.1:9/\n")
    [locked] = [f for f in index.projects["foo-bar"] if "-2.0-" in f.filename]
    lock = write(
        tmp_path / "poetry.lock",
        f'[[package]]\nname = "foo-bar"\nversion = "2.0"\n'
        f'files = [{{file = "{locked.filename}", hash = "sha256:{locked.sha256}"}}]\n'.encode(),
    )
    env = {"PIP_CONFIG_FILE": "/dev/null", "PIP_CONSTRAINT": str(constraints)}
    result, _ = scan("-R", lock, "-r", rules_dir, "--index-url", index.url, env={**env})
    assert result.exit_code == 1, result.output
