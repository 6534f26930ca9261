"""README walk, pass 57: the pip passages of "The `scan` command" and "Scanning dependencies: `scan
--requirements`", run as written (a fake index on 127.0.0.1, real CLI runs, real pip 23.2 where the README
says what pip does).

Fixes pinned here (each test named so fails on the code before it):

* ``scan --help`` said a bare ``name`` scans "its latest release" (it is the release pip would install:
  the latest final one, by pip's settings), and that the dependency notes are for requirements files
  "without --hash" (with pip 26's ``no-require-hashes`` a file with hashes gets them too: the rule is pip's
  hash-checking mode, as the README says); ``--index-url``'s list of pip's settings left out client-cert,
  trusted-host and the hash settings;
* the README listed pip's booleans as ``1``/``0``, ``true``/``false``, ``yes``/``no``, ``on``/``off`` only
  and the refused ones as ``no-index`` and the hash settings: pip (and ``scan``) also take ``y``/``n`` and
  ``t``/``f``, and refuse any other ``pre`` too;
* "a later ``key =`` with no value unsets the key" did not say that it only unsets the key of its own
  section (an empty ``[install]`` key leaves a ``[global]`` one, as pip reads it);
* the README said a pin is reported as the version pip installs among those ``==`` matches (``1.0+cu1``
  for ``==1.0``): stale since c0cce91, which reports (and stores) the version asked for again; pip's choice
  is among the files scanned;
* the lock files' exemption from pip's settings was said three times in three wordings; the settings
  paragraph (one of 48 lines) is now a list by topic.

The rest pins what those passages promise: the messages they quote, the exit codes, which release a name or
a pin picks, and the ``console`` example as written.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from dragonfly_hybrid.cli import app
from packaging.version import Version
from typer.testing import CliRunner, Result

from tests.fakes.pypi import MARKER_RULE, FakeFile, FakeIndex, sdist, wheel, write, zip_bytes
from tests.test_readme_walk44 import flat, section

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
SECTIONS = ("## The `scan` command", "### Scanning dependencies: `scan --requirements`")


def run(*args: object, env: dict[str, str] | None = None) -> Result:
    """A CLI run in process (pip's settings from ``env`` over the test's clean environment)."""
    return CliRunner().invoke(
        app, [str(a) for a in args], env={"COLUMNS": "200", **(env or {})}, catch_exceptions=False
    )


def says(sentence: str) -> None:
    """The README's passages walked here say ``sentence`` (line breaks and list indents aside)."""
    text = flat("\n".join(line for heading in SECTIONS for line in section(heading)))
    assert sentence in text


def metadata_wheel(
    name: str, version: str, requires: list[str], tag: str = "py3-none-any"
) -> tuple[str, bytes]:
    """A wheel whose METADATA declares ``requires`` (``wheel()`` writes a METADATA of its own)."""
    info = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    members = {
        f"{info}/METADATA": (meta + "".join(f"Requires-Dist: {r}\n" for r in requires)).encode(),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
        f"{name}/__init__.py": b"x = 1\n",
    }
    return f"{name}-{version}-{tag}.whl", zip_bytes(members)


def report(result: Result) -> dict:
    return json.loads(result.stdout)


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    return write(tmp_path / "marker.yar", MARKER_RULE.encode())


# ------------------------------------------------------------------------------ fixes


def test_scan_help_says_what_a_bare_name_and_the_dependency_notes_follow() -> None:
    """A bare name is pip's choice, not the latest release; the notes follow pip's hash-checking mode."""
    text = flat(run("scan", "--help").stdout)
    assert "or name (the release pip would install: its latest final one, by pip's settings)." in text
    assert "For requirements files not in pip's hash-checking mode, the dependencies" in text
    assert "cert, client-cert, trusted-host, proxy, pre" in text
    says("For requirements files not in hash-checking mode, the dependencies each scanned release declares")


def test_dependency_notes_with_hashes_under_no_require_hashes(tmp_path: Path, rules: Path) -> None:
    """What the help now says: a ``--hash`` line under ``--no-require-hashes`` is not hash-checking mode,
    so the dependencies no file pins are named (and, with the mode on, they are not)."""
    with FakeIndex() as index:
        [foo] = index.add("foo", FakeFile(*metadata_wheel("foo", "1.0", ["bar"])))
        line = f"foo==1.0 --hash=sha256:{foo.sha256}\n"
        off = write(tmp_path / "off.txt", f"--no-require-hashes\n{line}".encode())
        result = run("scan", "-R", off, "--index-url", index.url, "-r", rules, "-q")
        assert result.exit_code == 0, result.stderr
        assert "note: not pinned, so not scanned: bar (required by foo==1.0)" in result.stderr
        on = write(tmp_path / "on.txt", line.encode())
        result = run("scan", "-R", on, "--index-url", index.url, "-r", rules, "-q")
        assert result.exit_code == 0, result.stderr
        assert "not pinned" not in result.stderr


def test_pips_booleans_as_the_readme_lists_them(tmp_path: Path, rules: Path) -> None:
    """``t``/``f``, ``y``/``n`` are pip's booleans too; any other ``pre`` is refused, naming where."""
    says(
        "a boolean (`no-index`, `pre`, `require-hashes`, `no-require-hashes`, `prefer-binary`, "
        "`ignore-requires-python`) that is not one of pip's "
        "(`1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`, `y`/`n`, `t`/`f`, in any case), with the value "
        "and where it was set"
    )
    with FakeIndex() as index:
        index.add(
            "foo", sdist("foo", "1.0", {"foo/a.py": b"x\n"}), sdist("foo", "2.0rc1", {"foo/a.py": b"x\n"})
        )
        args = ("scan", "foo", "--index-url", index.url, "-r", rules, "-q", "-f", "json")
        assert (
            report(run(*args, env={"PIP_PRE": "T", "PIP_NO_INDEX": "n"}))["targets"][0]["version"] == "2.0rc1"
        )
        assert report(run(*args, env={"PIP_PRE": "f"}))["targets"][0]["version"] == "1.0"
        refused = run(*args, env={"PIP_PRE": "maybe"})
        assert refused.exit_code == 2
        assert "pip's pre is 'maybe' (environment): not a boolean" in refused.stderr


def test_an_empty_install_key_leaves_the_global_one(tmp_path: Path, rules: Path) -> None:
    """pip merges files per section: ``[install] no-index =`` unsets nothing of ``[global]``."""
    says("a later `key =` with no value unsets the key of its section: an empty `[install]` key leaves a "
         "`[global]` one")  # fmt: skip
    conf = write(tmp_path / "pip.conf", b"[global]\nno-index = true\n[install]\nno-index =\n")
    later = write(tmp_path / "later.conf", b"[global]\nno-index =\n")
    with FakeIndex() as index:
        index.add("foo", sdist("foo", "1.0", {"foo/a.py": b"x\n"}))
        args = ("scan", "foo==1.0", "--index-url", index.url, "-r", rules, "-q")
        refused = run(*args, env={"PIP_CONFIG_FILE": str(conf)})
        assert refused.exit_code == 2
        assert f"no-index is set ({conf})" in refused.stderr
        # A later file's empty [global] key does unset it; here via $XDG_CONFIG_DIRS then PIP_CONFIG_FILE.
        write(tmp_path / "xdg" / "pip" / "pip.conf", b"[global]\nno-index = true\n")
        env = {"XDG_CONFIG_DIRS": str(tmp_path / "xdg"), "PIP_CONFIG_FILE": str(later)}
        assert run(*args, env=env).exit_code == 0


def test_lock_file_entries_take_none_of_pips_choices_of_candidates(tmp_path: Path, rules: Path) -> None:
    """The one place the README now says it: only-final, uploaded-prior-to and find-links leave a
    poetry.lock entry as locked (a pinned pre-release, an index file, no find-links copy)."""
    says("A lock file's entries take none of pip's choices of candidates (`pre`, `all-releases`, "
         "`only-final`, find-links, `uploaded-prior-to`, `no-binary`, `only-binary`, `prefer-binary`, "
         "`ignore-requires-python`): their installers do not read them.")  # fmt: skip
    links = write(tmp_path / "links" / "foo-2.0rc1.tar.gz", sdist("foo", "2.0rc1", {"foo/b.py": b"y\n"})[1])
    with FakeIndex() as index:
        [locked] = index.add("foo", sdist("foo", "2.0rc1", {"foo/a.py": b"x\n"}))
        lock = write(
            tmp_path / "poetry.lock",
            f'[[package]]\nname = "foo"\nversion = "2.0rc1"\n'
            f'files = [{{file = "{locked.filename}", hash = "sha256:{locked.sha256}"}}]\n'.encode(),
        )
        env = {
            "PIP_ONLY_FINAL": "foo",
            "PIP_UPLOADED_PRIOR_TO": "2000-01-01",
            "PIP_FIND_LINKS": str(links.parent),
            "PIP_ONLY_BINARY": ":all:",  # the locked file is an sdist
        }
        result = run("scan", "-R", lock, "--index-url", index.url, "-r", rules, "-q", "-f", "json", env=env)
        assert result.exit_code == 0, result.stderr
        [target] = report(result)["targets"]
        assert target["verdict"] == "clean" and len(target["distributions"]) == 1
        # The same pin on a requirements line is not found: only-final and the cutoff apply there.
        pinned = write(tmp_path / "requirements.txt", b"foo==2.0rc1\n")
        assert run("scan", "-R", pinned, "--index-url", index.url, "-r", rules, "-q", env=env).exit_code == 2


@pytest.mark.parametrize("heading", SECTIONS)
def test_readme_lines_fit_108_columns(heading: str) -> None:
    """Prose of the sections fits 108 columns; table rows and output samples are exempt."""
    lines, fenced, long = section(heading), False, []
    for line in lines:
        fenced ^= line.startswith("```")
        if len(line) > 108 and not line.startswith("|") and not fenced:
            long.append(line)
    assert long == []


# ------------------------------------------------------------------------------ pins


def test_a_local_directory_wins_over_a_name_and_pypi_prefix_means_the_index(
    tmp_path: Path, rules: Path
) -> None:
    says("`scan six` with a `./six/` directory scans the directory and says so on stderr (`note: scanning "
         "the local directory six; for the project on the index, write pypi:six`)")  # fmt: skip
    write(tmp_path / "six" / "a.txt", b"hello\n")
    with FakeIndex() as index:
        index.add("six", sdist("six", "1.0", {"six/a.py": b"x\n"}))
        result = subprocess.run(
            [sys.executable, "-m", "dragonfly_hybrid.cli", "scan", "six", "pypi:six",
             "--index-url", index.url, "-r", str(rules), "-q", "-f", "json"],
            capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (
        "note: scanning the local directory six; for the project on the index, write pypi:six"
        in result.stderr
    )
    assert [t["target"] for t in json.loads(result.stdout)["targets"]] == ["six", "pypi:six"]


def test_which_release_a_pin_and_a_name_pick(rules: Path) -> None:
    """``==1.0`` scans 1.0, 1.0.0 and 1.0+cu1 (pip's choice among them), reported as the version asked for;
    a bare name picks 1.0+cu1, or 1.0 when 1.0+cu1 has Windows wheels only; a Requires-Python that is not
    PEP 440 is ignored; a pinned pre-release under only-final is not found, naming only-final; pre with
    all-releases is refused, naming both and where."""
    says("so all of them are scanned, the one pip (23.2 as 26.3) installs among them included")
    says("The release is reported (and stored) as the version asked for, spelled as the index spells it;")
    says("A Requires-Python that is not PEP 440 (`<=3.10.*`) is ignored, as pip 24.1 and later ignore it")
    with FakeIndex() as index:
        index.add("foo", sdist("foo", "1.0", {"f/a.py": b"a\n"}), sdist("foo", "1.0.0", {"f/a.py": b"b\n"}),
                  wheel("foo", "1.0+cu1", {"f/a.py": b"c\n"}),
                  sdist("foo", "2.0rc1", {"f/a.py": b"d\n"}))  # fmt: skip
        index.add("cu", sdist("cu", "1.0", {"c/a.py": b"a\n"}), wheel("cu", "1.0+cu1", {"c/a.py": b"c\n"}))
        index.add("win", sdist("win", "1.0", {"w/a.py": b"a\n"}),
                  metadata_wheel("win", "1.0+cu1", [], tag="cp311-cp311-win_amd64"))  # fmt: skip
        index.add("old", sdist("old", "1.0", {"o/a.py": b"a\n"}),
                  FakeFile(*sdist("old", "2.0", {"o/a.py": b"b\n"}), requires_python="<=3.10.*"))  # fmt: skip
        args = ("--index-url", index.url, "-r", rules, "-q", "-f", "json")
        [pin] = report(run("scan", "foo==1.0", *args))["targets"]
        assert Version(pin["version"]) == Version("1.0") and len(pin["distributions"]) == 3
        [pin] = report(run("scan", "cu==1.0", *args))["targets"]
        assert pin["version"] == "1.0" and len(pin["distributions"]) == 2
        assert report(run("scan", "foo", *args))["targets"][0]["version"] == "1.0+cu1"
        assert report(run("scan", "win", *args))["targets"][0]["version"] == "1.0"
        assert report(run("scan", "old", *args))["targets"][0]["version"] == "2.0"

        final = run("scan", "foo==2.0rc1", *args, env={"PIP_ONLY_FINAL": "foo"})
        assert final.exit_code == 2 and "pip's only-final allows no pre-release of it" in final.stderr
        both = run("scan", "foo", *args, env={"PIP_PRE": "1", "PIP_ALL_RELEASES": "foo"})
        assert both.exit_code == 2
        assert "pip's pre (environment) cannot be used with all-releases (environment)" in both.stderr


def test_pip_settings_are_read_only_once_a_release_is_looked_up(tmp_path: Path, rules: Path) -> None:
    says("they are read once a release is looked up (local files and directories, `rules`, `report` and "
         "`watch` never read them)")  # fmt: skip
    target = write(tmp_path / "a.py", b"x = 1\n")
    assert run("scan", target, "-r", rules, "-q", env={"PIP_PRE": "maybe"}).exit_code == 0


def test_uploaded_prior_to_as_the_readme_says(rules: Path) -> None:
    """A pin with no file before the cutoff: exit 2 naming it; a bad value: exit 2; the cutoff's note."""
    says("a pin to a release with none is not found (exit 2, the message naming the setting)")
    says("(a `note:` on stderr gives the cutoff)")
    with FakeIndex() as index:
        index.add("foo", sdist("foo", "1.0", {"f/a.py": b"a\n"}))
        args = ("scan", "foo==1.0", "--index-url", index.url, "-r", rules, "-q")
        old = run(*args, env={"PIP_UPLOADED_PRIOR_TO": "2000-01-01T00:00:00Z"})
        assert old.exit_code == 2
        assert "note: pip's uploaded-prior-to: only index files uploaded before 2000-01-01" in old.stderr
        assert "(pip's uploaded-prior-to: only files uploaded before 2000-01-01" in old.stderr
        bad = run(*args, env={"PIP_UPLOADED_PRIOR_TO": "yesterday"})
        assert bad.exit_code == 2 and "pip's uploaded-prior-to is 'yesterday' (environment)" in bad.stderr


def test_requirements_files_refused_and_skipped_as_the_readme_says(tmp_path: Path, rules: Path) -> None:
    says("a `${VAR}` in a pin or an option is a usage error saying so")
    says("`no-index` (on where it is set last) and `--find-links` in a `-R` file are usage errors too")
    says("A requirement not pinned to one version (`requests>=2`, `flask`, `django==4.*`) is a usage error "
         "naming `file:line`")  # fmt: skip
    says("`--allow-skipped` accepts them (exit 0)")
    with FakeIndex() as index:
        index.add("foo", sdist("foo", "1.0", {"f/a.py": b"a\n"}))

        def scan(text: str, *extra: str) -> Result:
            path = write(tmp_path / "requirements.txt", text.encode())
            return run("scan", "-R", path, "--index-url", index.url, "-r", rules, "-q", *extra)

        var = scan("foo==${VERSION}\n")
        assert (
            var.exit_code == 2
            and "pip expands ${VAR} from the environment; dragonfly-hybrid does not" in var.stderr
        )
        for option in ("--no-index", "--find-links /tmp"):
            local = scan(f"{option}\nfoo==1.0\n")
            assert local.exit_code == 2 and "scan looks releases up on package indexes only" in local.stderr
        loose = scan("foo==1.0\nbar>=2\n")
        assert (
            loose.exit_code == 2 and "requirements.txt:2: bar>=2 is not pinned to one version" in loose.stderr
        )
        skipped = scan("foo==1.0\n./local\n")
        assert skipped.exit_code == 3 and "note: skipped " in skipped.stderr
        assert scan("foo==1.0\n./local\n", "--allow-skipped").exit_code == 0


def test_dependency_notes_quoted_in_the_readme(tmp_path: Path, rules: Path) -> None:
    """The three notes, as quoted, for a release's dependencies no file pins, a -c pin and a URL one."""
    says("`note: not pinned, so not scanned: bar, baz>=2 (required by foo==1.0)`")
    says("`note: pinned only by a -c constraint, so not scanned: bar (required by foo==1.0)`")
    says("`note: from a URL, not the pinned release, so not scanned: bar (required by foo==1.0)`")
    with FakeIndex() as index:
        index.add(
            "foo", metadata_wheel("foo", "1.0", ["bar", "baz>=2", "qux", "zed @ https://example.org/z.whl"])
        )
        index.add("zed", metadata_wheel("zed", "1.0", []))
        write(tmp_path / "c.txt", b"qux==1.0\n")
        path = write(tmp_path / "requirements.txt", b"foo==1.0\nzed==1.0\n-c c.txt\n")
        result = run("scan", "-R", path, "--index-url", index.url, "-r", rules, "-q", "-f", "json")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines() == [
        "note: not pinned, so not scanned: bar, baz>=2 (required by foo==1.0)",
        "note: pinned only by a -c constraint, so not scanned: qux (required by foo==1.0)",
        "note: from a URL, not the pinned release, so not scanned: zed (required by foo==1.0)",
    ]
    assert [t["origin"]["line"] for t in report(result)["targets"]] == [1, 2]


def test_rules_option_given_a_requirements_file_quotes_the_readme(tmp_path: Path) -> None:
    says("a rules file that reads as a requirements file exits 2 with `did you mean -R/--requirements "
         "requirements.txt?`")  # fmt: skip
    write(tmp_path / "requirements.txt", b"six==1.16.0\n")
    result = subprocess.run(
        [sys.executable, "-m", "dragonfly_hybrid.cli", "scan", "x", "-r", "requirements.txt"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.rstrip().endswith("did you mean -R/--requirements requirements.txt?")


def test_the_requirements_console_example_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The block's commands, the index being a fake one (PIP_INDEX_URL, as a user's pip.conf would say)."""
    block = "\n".join(section(SECTIONS[1]))
    command = "dragonfly-hybrid scan -R requirements.txt -q -o report.txt; echo $?"
    assert f"$ {command}\n0\n" in block
    assert "six==1.16.0\nidna==3.7\n$" in block
    write(tmp_path / "requirements.txt", b"six==1.16.0\nidna==3.7\n")
    monkeypatch.chdir(tmp_path)
    with FakeIndex() as index:
        index.add("six", metadata_wheel("six", "1.16.0", []))
        index.add("idna", metadata_wheel("idna", "3.7", []))
        result = run(*command.split(";")[0].split()[1:], env={"PIP_INDEX_URL": index.url})
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""
    table = (tmp_path / "report.txt").read_text()
    assert table.startswith("Scan results\n")
    assert re.search(r"six==1\.16\.0 +clean +0 +0 +\S+ \S+ +0", table)
    assert re.search(r"idna==3\.7 +clean +0 +0 +\S+ \S+ +0", table)


def test_pip_23_2_refuses_release_control_lines_and_ignores_the_variables(tmp_path: Path) -> None:
    """Real pip 23.2 (this interpreter's): an ``--only-final`` line is an error, PIP_ONLY_FINAL is not."""
    says("pip 23.2 does not know these settings: it ignores the variables and the configuration keys, and "
         "refuses the `-R` lines.")  # fmt: skip
    version = subprocess.run(
        [sys.executable, "-m", "pip", "--version"], capture_output=True, text=True, check=False
    )
    if not version.stdout.startswith("pip 23.2"):
        pytest.skip(f"not pip 23.2: {version.stdout.strip()}")
    env = {"PATH": "/usr/bin:/bin", "PIP_CONFIG_FILE": "/dev/null", "PIP_ONLY_FINAL": "foo",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}  # fmt: skip
    lines = write(tmp_path / "requirements.txt", b"--only-final foo\n")
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(tmp_path / "d"), "--retries", "0",
           "--index-url", "http://127.0.0.1:9/simple/"]  # fmt: skip
    refused = subprocess.run(
        [*pip, "-r", str(lines)], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert refused.returncode != 0 and "no such option: --only-final" in refused.stderr
    ignored = subprocess.run(
        [*pip, "foo==1.0"], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert "No matching distribution found for foo==1.0" in ignored.stderr  # it looked, the variable unread


def test_a_find_links_location_that_cannot_be_read_makes_the_release_incomplete(
    tmp_path: Path, rules: Path
) -> None:
    says("A location that cannot be read (a missing directory, an unreachable page, a `file://otherhost/...` "
         "URL, which pip refuses) makes the release incomplete (exit 3), naming it")  # fmt: skip
    missing = tmp_path / "wheels"
    with FakeIndex() as index:
        index.add("foo", sdist("foo", "1.0", {"f/a.py": b"a\n"}))
        env = {"PIP_FIND_LINKS": str(missing)}
        result = run("scan", "foo==1.0", "--index-url", index.url, "-r", rules, "-q", "-f", "json", env=env)
    assert result.exit_code == 3
    [target] = report(result)["targets"]
    assert target["verdict"] == "incomplete"
    assert f"find-links {missing} could not be read" in json.dumps(target)
