"""``scan --requirements``: pinned dependencies from requirements files and lock files, each scanned as
``name==version`` against the fake index, with ``scan``'s exit codes; and ``scan --store``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.pypi.requirements import Pin, Pins, RequirementsError, lock_format, read_pins
from dragonfly_hybrid.store.db import Store
from typer.testing import CliRunner, Result

from tests.fakes.pypi import MARKER, FakeIndex, sdist, wheel

BAD = b"import os\n# " + MARKER + b"\n"


PYLOCK_FOO = 'lock-version = "1.0"\ncreated-by = "test"\n[[packages]]\nname = "foo"\nversion = "1.0"\n'


def foo_pylock(directory: Path, entry: str) -> Path:
    """``directory/pylock.toml`` locking ``foo==1.0`` with ``entry`` (its ``sdist`` or ``wheels`` line)."""
    lock = directory / "pylock.toml"
    lock.write_text(PYLOCK_FOO + entry)
    return lock


def run(*args: object, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, env=env)


def pins_of(path: Path) -> list[tuple[str, str]]:
    return [(p.name, p.version) for p in read_pins([path]).pins]


def test_requirements_file_with_options_markers_includes_and_continuations(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("six==1.16.0\n")
    req = tmp_path / "requirements.txt"
    req.write_text(
        "# a comment\n"
        "--index-url https://example.invalid/simple/\n"
        "-r base.txt\n"
        "requests[socks]==2.31.0 ; python_version >= '3.8'  # pinned\n"
        "idna==3.6 \\\n"
        "    ; python_version >= '3'\n"
        "Six==1.16.0\n"
        "-e ./local-project\n"
        "pkg @ https://example.invalid/pkg-1.0.tar.gz\n"
        "weird===1.0-custom\n"
    )
    pins = read_pins([req])
    assert [(p.name, p.version) for p in pins.pins] == [
        ("six", "1.16.0"),
        ("requests", "2.31.0"),
        ("idna", "3.6"),
        ("weird", "1.0-custom"),
    ]
    assert pins.pins[1].origin == f"{req}:4"
    assert len(pins.skipped) == 2 and "editable" in pins.skipped[0] and "URL" in pins.skipped[1]


@pytest.mark.parametrize("line", ["requests>=2", "flask", "django==4.*", "a==1,<2"])
def test_an_unpinned_requirement_is_an_error_naming_the_line(tmp_path: Path, line: str) -> None:
    req = tmp_path / "requirements.txt"
    req.write_text(f"six==1.0\n{line}\n")
    with pytest.raises(RequirementsError, match=r"requirements.txt:2: .*not pinned"):
        read_pins([req])


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("--index-url ${PRIVATE_INDEX}", "'${PRIVATE_INDEX}'"),
        (
            "--extra-index-url https://${TOKEN}@example.invalid/simple/",
            "'https://${TOKEN}@example.invalid/simple/'",
        ),
        ("foo==${FOO_VERSION}", "cannot parse 'foo==${FOO_VERSION}'"),
    ],
)
def test_an_environment_variable_pip_would_expand_is_an_error_saying_so(
    tmp_path: Path, line: str, shown: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pip expands `${VAR}`; this reader does not (a pin does not depend on the scan's environment), and
    says so instead of fetching a URL named `${PRIVATE_INDEX}` or reporting a parse error alone."""
    for name in ("PRIVATE_INDEX", "TOKEN", "FOO_VERSION"):
        monkeypatch.setenv(name, "set")
    req = tmp_path / "requirements.txt"
    req.write_text(f"six==1.0\n{line}\n")
    with pytest.raises(RequirementsError) as caught:
        read_pins([req])
    message = str(caught.value)
    assert message.startswith(f"{req}:2: {shown}")
    assert (
        "pip expands ${VAR} from the environment; dragonfly-hybrid does not: write the value itself"
        in message
    )


def test_pylock_uv_and_poetry_locks(tmp_path: Path) -> None:
    pylock = tmp_path / "pylock.toml"
    pylock.write_text(
        'lock-version = "1.0"\ncreated-by = "x"\n'
        '[[packages]]\nname = "attrs"\nversion = "23.2.0"\n'
        '[[packages]]\nname = "mine"\n[packages.directory]\npath = "."\n'
    )
    uv = tmp_path / "uv.lock"
    uv.write_text(
        'version = 1\n[[package]]\nname = "attrs"\nversion = "23.2.0"\n'
        'source = { registry = "https://pypi.org/simple" }\n'
        '[[package]]\nname = "app"\nversion = "0.1.0"\nsource = { editable = "." }\n'
    )
    poetry = tmp_path / "poetry.lock"
    poetry.write_text(
        '[[package]]\nname = "click"\nversion = "8.1.7"\n'
        '[[package]]\nname = "lib"\nversion = "1.0"\n[package.source]\ntype = "git"\nurl = "https://x"\n'
        '[[package]]\nname = "mirrored"\nversion = "2.0"\n[package.source]\ntype = "legacy"\nurl = "https://m"\n'
    )
    assert [lock_format(p) for p in (pylock, uv, poetry, tmp_path / "pylock.dev.toml")] == [
        "pylock", "uv", "poetry", "pylock",
    ]  # fmt: skip
    assert pins_of(pylock) == [("attrs", "23.2.0")]
    assert pins_of(uv) == [("attrs", "23.2.0")]
    assert pins_of(poetry) == [("click", "8.1.7"), ("mirrored", "2.0")]
    assert "directory" in read_pins([pylock]).skipped[0]
    (tmp_path / "uv2").mkdir()
    broken = tmp_path / "uv2" / "uv.lock"
    broken.write_text("[[package]\n")
    with pytest.raises(RequirementsError, match="not valid TOML"):
        read_pins([broken])


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    fake_index.add(
        "good", sdist("good", "1.0", {"a.py": b"pass\n"}), wheel("good", "1.0", {"good/a.py": b""})
    )
    fake_index.add("evil", sdist("evil", "2.0", {"setup.py": BAD}))
    return fake_index


def test_scan_requirements_reports_each_dependency_with_scan_exit_codes(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    clean = tmp_path / "clean.txt"
    clean.write_text("good==1.0\n")
    result = run(
        "scan", "--requirements", clean, "--rules", rules_dir, "--index-url", index.url, "-f", "json"
    )
    assert result.exit_code == 0, result.output
    assert [t["target"] for t in json.loads(result.stdout)["targets"]] == ["good==1.0"]

    both = tmp_path / "requirements.txt"
    both.write_text("good==1.0\nevil==2.0\n")
    result = run("scan", "-R", both, "-r", rules_dir, "--index-url", index.url, "-f", "json")
    assert result.exit_code == 1
    targets = {t["target"]: t["verdict"] for t in json.loads(result.stdout)["targets"]}
    assert targets == {"good==1.0": "clean", "evil==2.0": "findings"}

    missing = tmp_path / "missing.txt"
    missing.write_text("good==9.9\n")
    result = run("scan", "-R", missing, "-r", rules_dir, "--index-url", index.url)
    assert result.exit_code == 2 and "9.9" in result.stderr
    unpinned = tmp_path / "unpinned.txt"
    unpinned.write_text("good>=1\n")
    result = run("scan", "-R", unpinned, "-r", rules_dir, "--index-url", index.url)
    assert result.exit_code == 2 and "not pinned" in result.stderr
    assert run("scan", "-r", rules_dir).exit_code == 2  # nothing to scan


def test_scan_requirements_mixed_with_targets_and_stored(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    lock = tmp_path / "uv.lock"
    lock.write_text(f'[[package]]\nname = "evil"\nversion = "2.0"\nsource = {{ registry = "{index.url}" }}\n')
    store = tmp_path / "store.db"
    args = ("scan", "good==1.0", "-R", lock, "-r", rules_dir, "--index-url", index.url, "-q")
    result = run(*args, "--store", store)
    assert result.exit_code == 1, result.output
    with Store(store, readonly=True) as db:
        assert db.count("scans") == 2
        evil = db.latest_scan("evil", "2.0")
        assert evil is not None and evil.verdict == "findings" and evil.source == "scan"
    result = run(*args, env={"DRAGONFLY_STORE": str(store)})  # the variable works like --store
    assert result.exit_code == 1
    with Store(store, readonly=True) as db:
        assert db.count("scans") == 4
    local = tmp_path / "x.py"
    local.write_text("print(1)\n")
    assert run("scan", local, "-r", rules_dir, "--store", store).exit_code == 0  # paths are not stored
    with Store(store, readonly=True) as db:
        assert db.count("scans") == 4
    (tmp_path / "junk.db").write_text("not sqlite" * 100)
    result = run("scan", local, "-r", rules_dir, "--store", tmp_path / "junk.db")
    assert result.exit_code == 2 and "cannot open the store" in result.stderr


@pytest.fixture
def lock_source() -> Iterator[FakeIndex]:
    """Another index, where a lock file says its release comes from: its `foo==1.0` is flagged, while the
    configured index (`index`) has a clean `foo==1.0` of the same name and version."""
    with FakeIndex() as other:
        other.add("foo", wheel("foo", "1.0", {"foo/__init__.py": BAD}))
        yield other


def locked_wheel(source: FakeIndex) -> tuple[str, str]:
    """The URL and sha256 of the flagged wheel on ``source``."""
    [file] = source.projects["foo"]
    return source.file_url("foo", file.filename), file.sha256


@pytest.mark.parametrize("kind", ["uv", "uv-registry-only", "pylock", "poetry"])
def test_a_lock_file_is_scanned_as_its_installer_installs_not_as_the_configured_index_serves(
    index: FakeIndex, lock_source: FakeIndex, tmp_path: Path, rules_dir: Path, kind: str
) -> None:
    """A lock names its files and where they come from: uv's and pylock's URLs, uv's registry, poetry's
    source index with the files' hashes. The same name and version on the index of `--index-url` (clean)
    is not what gets installed, and was what we scanned."""
    index.add("foo", wheel("foo", "1.0", {"foo/__init__.py": b"pass\n"}))
    url, sha256 = locked_wheel(lock_source)
    source = lock_source.url
    virtual = '[[package]]\nname = "app"\nversion = "0.1.0"\nsource = { virtual = "." }\n'
    locks = {
        "uv": f'[[package]]\nname = "foo"\nversion = "1.0"\nsource = {{ registry = "{index.url}" }}\n'
        f'wheels = [{{ url = "{url}", hash = "sha256:{sha256}", size = 1 }}]\n' + virtual,
        "uv-registry-only": '[[package]]\nname = "foo"\nversion = "1.0"\n'
        f'source = {{ registry = "{source}" }}\n',
        "pylock": PYLOCK_FOO + f'wheels = [{{ url = "{url}", hashes = {{ sha256 = "{sha256}" }} }}]\n',
        "poetry": '[[package]]\nname = "foo"\nversion = "1.0"\n'
        f'files = [{{ file = "foo-1.0-py3-none-any.whl", hash = "sha256:{sha256}" }}]\n'
        f'[package.source]\ntype = "legacy"\nurl = "{source}"\nreference = "private"\n',
    }
    name = {"uv": "uv.lock", "uv-registry-only": "uv.lock", "pylock": "pylock.toml", "poetry": "poetry.lock"}
    lock = tmp_path / name[kind]
    lock.write_text(locks[kind])
    result = run("scan", "-R", lock, "-r", rules_dir, "--index-url", index.url, "-f", "json")
    assert result.exit_code == 1, result.output
    [target] = json.loads(result.stdout)["targets"]
    assert (target["target"], target["verdict"]) == ("foo==1.0", "findings")
    assert [d["url"] for d in target["distributions"]] == [url]


def test_a_locked_file_whose_bytes_are_not_the_locked_ones_is_not_scanned(
    lock_source: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    url, sha256 = locked_wheel(lock_source)
    lock = foo_pylock(tmp_path, f'wheels = [{{ url = "{url}", hashes = {{ sha256 = "{"0" * 64}" }} }}]\n')
    result = run("scan", "-R", lock, "-r", rules_dir, "-f", "json")
    assert result.exit_code == 3, result.output
    [target] = json.loads(result.stdout)["targets"]
    assert target["verdict"] == "incomplete" and target["distributions"] == []
    assert "0" * 64 in target["error"] and sha256 in target["error"]


def test_a_locked_file_without_a_hash_is_scanned_beside_hashed_ones(
    index: FakeIndex, lock_source: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """uv installs a locked wheel that has no hash unchecked: it was dropped, unscanned, because the
    entry's other file had one (the allowed hashes were the entry's, not each file's)."""
    index.add("foo", sdist("foo", "1.0", {"setup.py": b"pass\n"}))
    [sdist_file] = index.projects["foo"]
    sdist_url = index.file_url("foo", sdist_file.filename)
    wheel_url, _ = locked_wheel(lock_source)
    lock = tmp_path / "uv.lock"
    lock.write_text(
        f'[[package]]\nname = "foo"\nversion = "1.0"\nsource = {{ registry = "{index.url}" }}\n'
        f'sdist = {{ url = "{sdist_url}", hash = "sha256:{sdist_file.sha256}" }}\n'
        f'wheels = [{{ url = "{wheel_url}" }}]\n'
    )
    result = run("scan", "-R", lock, "-r", rules_dir, "-f", "json")
    assert result.exit_code == 1, result.output
    [target] = json.loads(result.stdout)["targets"]
    assert sorted(d["url"] for d in target["distributions"]) == sorted([sdist_url, wheel_url])


def test_every_lock_entry_of_one_name_and_version_is_scanned(
    index: FakeIndex, lock_source: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """A version split over two indexes by markers has two entries: the second (flagged, the one the
    installer takes on this platform) was dropped as a duplicate, as was a lock entry behind a
    requirements line of the same name and version."""
    index.add("foo", wheel("foo", "1.0", {"foo/__init__.py": b"pass\n"}))
    [clean] = index.projects["foo"]
    clean_url = index.file_url("foo", clean.filename)
    flagged_url, flagged_sha256 = locked_wheel(lock_source)
    entry = '[[packages]]\nname = "foo"\nversion = "1.0"\nmarker = "{marker}"\n'
    entry += 'wheels = [{{ url = "{url}", hashes = {{ sha256 = "{sha256}" }} }}]\n'
    lock = tmp_path / "pylock.toml"
    lock.write_text(
        'lock-version = "1.0"\ncreated-by = "test"\n'
        + entry.format(marker="sys_platform == 'win32'", url=clean_url, sha256=clean.sha256)
        + entry.format(marker="sys_platform != 'win32'", url=flagged_url, sha256=flagged_sha256)
    )
    result = run("scan", "-R", lock, "-r", rules_dir, "-f", "json")
    assert result.exit_code == 1, result.output
    urls = [[d["url"] for d in t["distributions"]] for t in json.loads(result.stdout)["targets"]]
    assert urls == [[clean_url], [flagged_url]]
    req = tmp_path / "requirements.txt"
    req.write_text("foo==1.0\n")
    uv = tmp_path / "uv.lock"
    uv.write_text(
        f'[[package]]\nname = "foo"\nversion = "1.0"\nsource = {{ registry = "{lock_source.url}" }}\n'
        f'wheels = [{{ url = "{flagged_url}", hash = "sha256:{flagged_sha256}" }}]\n'
    )
    assert [p.files != () for p in read_pins([req, uv]).pins] == [False, True]


def test_a_large_lock_keeps_every_entry() -> None:
    pins = Pins()
    for i in range(5000):
        pins.add(Pin(f"pkg{i}", "1.0", "uv.lock"))
    pins.add(Pin("PKG1", "1.0", "requirements.txt"))  # the same release, from the same place
    assert len(pins.pins) == 5000


def test_a_locked_file_whose_other_hash_does_not_match_is_not_scanned(
    lock_source: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """SHA-256 is checked as the bytes arrive; a lock's other algorithms after."""
    url, _ = locked_wheel(lock_source)
    lock = foo_pylock(tmp_path, f'wheels = [{{ url = "{url}", hashes = {{ sha512 = "{"ab" * 64}" }} }}]\n')
    result = run("scan", "-R", lock, "-r", rules_dir, "-f", "json")
    assert result.exit_code == 3, result.output
    [target] = json.loads(result.stdout)["targets"]
    assert target["distributions"] == [] and f"expected sha512:{'ab' * 64}" in target["error"]


def test_a_lock_url_that_does_not_parse_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    lock = foo_pylock(
        tmp_path, 'wheels = [{ url = "http://[::1/foo-1.0-py3-none-any.whl", hashes = { sha256 = "00" } }]\n'
    )
    with pytest.raises(RequirementsError, match=r"foo: 'http://\[::1/foo-1.0-py3-none-any.whl' is not a URL"):
        read_pins([lock])


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/foo-1.0.tar.gz", "foo-1.0.tar.gz", "https:///foo-1.0.tar.gz"]
)
def test_a_lock_url_of_another_scheme_or_no_host_is_a_usage_error(
    tmp_path: Path, rules_dir: Path, url: str
) -> None:
    """It was downloaded, failed three times as a network fault would, and exited 3."""
    lock = foo_pylock(tmp_path, f'sdist = {{ url = "{url}", hashes = {{ sha256 = "{"00" * 32}" }} }}\n')
    result = run("scan", "-R", lock, "-r", rules_dir)
    assert result.exit_code == 2, result.output
    assert f"foo: {url!r} is not an http(s) URL" in result.output


def test_a_lock_file_url_is_a_local_file_skipped_saying_how_to_scan_it(tmp_path: Path) -> None:
    lock = foo_pylock(
        tmp_path,
        f'sdist = {{ url = "file://{tmp_path}/foo-1.0.tar.gz", hashes = {{ sha256 = "{"00" * 32}" }} }}\n',
    )
    [skipped] = read_pins([lock]).skipped
    assert skipped.endswith(
        f"foo: a local file (file://{tmp_path}/foo-1.0.tar.gz), not an index release: scan it by its path"
    )


def test_a_lock_file_that_is_not_utf8_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    lock = tmp_path / "pylock.toml"
    lock.write_bytes(b'lock-version = "1.0"\ncreated-by = "\xff"\n')
    result = run("scan", "-R", lock)
    assert result.exit_code == 2, result.output
    assert f"{lock} is not UTF-8 text (byte 35: invalid start byte)" in result.output


def test_a_lock_file_naming_a_local_file_skips_it_saying_how_to_scan_it(tmp_path: Path) -> None:
    lock = foo_pylock(
        tmp_path, 'wheels = [{ path = "dist/foo-1.0-py3-none-any.whl", hashes = { sha256 = "00" } }]\n'
    )
    pins = read_pins([lock])
    assert pins.pins == []
    reason = "a local file (dist/foo-1.0-py3-none-any.whl), not an index release: scan it by its path"
    assert pins.skipped == [f"{lock}: foo: {reason}"]


def test_a_requirements_files_index_url_wins_over_the_command_line_as_in_pip(
    index: FakeIndex, lock_source: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip applies a requirements file's options after the command line's: `pip download -r req.txt -i A`
    with `--index-url B` in req.txt fetches from B."""
    index.add("foo", wheel("foo", "1.0", {"foo/__init__.py": b"pass\n"}))
    req = tmp_path / "requirements.txt"
    req.write_text(f"--index-url {lock_source.url}\nfoo==1.0\n")
    result = run("scan", "-R", req, "-r", rules_dir, "--index-url", index.url, "-f", "json")
    assert result.exit_code == 1, result.output
    [target] = json.loads(result.stdout)["targets"]
    assert [d["url"] for d in target["distributions"]] == [locked_wheel(lock_source)[0]]


TERMINAL_SEQUENCES = "\x1b]0;PWNED-TITLE\x07\x1b[2J\x1b[H\x1b]8;;https://evil.example\x07click\x1b]8;;\x07"
"""A window title, a screen clear, a cursor move and a hyperlink (ended by bells): a hostile file's."""


def shown(text: str) -> str:
    """``text`` as the CLI shows it: the escape and the bell as ``\\x1b`` and ``\\x07``."""
    return text.replace("\x1b", "\\x1b").replace("\x07", "\\x07")


def test_a_requirements_file_sends_no_control_character_to_the_terminal(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """Messages quoting a requirements file's lines show its control characters as escapes: the parser's
    excerpt, with its caret still under the part it stopped at, a hash-checking error, a skipped entry."""
    unparsable = tmp_path / "requirements.txt"
    unparsable.write_text(f'good==1.0 ; python_version\t<\t"3"\t{TERMINAL_SEQUENCES}\n')
    result = run("scan", "-R", unparsable, "-r", rules_dir, "--index-url", index.url)
    assert result.exit_code == 2
    assert "\x1b" not in result.stderr and "\x07" not in result.stderr
    assert result.stderr.startswith(f"error: {unparsable}:1: cannot parse ")
    excerpt, caret = result.stderr.splitlines()[1:3]
    assert excerpt == f'    python_version\\t<\\t"3"\\t{shown(TERMINAL_SEQUENCES)}'
    assert caret.endswith("^") and excerpt[len(caret) - 1 :].startswith("\\x1b]0;PWNED-TITLE")

    hashed = tmp_path / "hashed.txt"
    hashed.write_text(f"good==1.0 --hash=sha256:ab\n-e ./local{TERMINAL_SEQUENCES}\n")
    result = run("scan", "-R", hashed, "-r", rules_dir, "--index-url", index.url)
    assert result.exit_code == 2
    assert f"error: {hashed}:2: -e ./local{shown(TERMINAL_SEQUENCES)}: in hash-checking mode" in result.stderr

    skipped = tmp_path / "skipped.txt"
    skipped.write_text(f"good==1.0\n-e ./local{TERMINAL_SEQUENCES}\n")
    result = run("scan", "-R", skipped, "-r", rules_dir, "--index-url", index.url, "-q", "--allow-skipped")
    assert result.exit_code == 0, result.output
    assert f"note: skipped {skipped}:2: -e ./local{shown(TERMINAL_SEQUENCES)}: an editable" in result.stderr
