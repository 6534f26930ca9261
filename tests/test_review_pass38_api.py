"""Review pass 38: the public Python API (README "Python API") as a careless or hostile caller uses it.

Fixed here: ``fetch_and_scan`` arguments of the wrong type (an AttributeError, or a str of
``extra_index_urls`` taken as one index per character), its ``python_version`` taken looser than
``--python-version`` and its docstring, and stubs that refused a ``pathlib.Path`` item the extension takes.
After it: another rule set's cache entries answered for a set compiled whole (its "no match" a false
clean), ``scan_path`` of a name with NUL was an ``OSError`` showing the NUL, ``top_findings(-1)`` an
``OverflowError``, and ``load_rules("dir")`` read the name's characters as paths (``/`` first).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import dragonfly_hybrid as dh
import pytest
from dragonfly_hybrid.pypi.index import ProjectNotFound

from tests.fakes.pypi import (
    MARKER,
    MARKER_RULE,
    SLOW_RULE,
    FakeFile,
    FakeIndex,
    sdist,
    slow_tarball,
    tar_gz_bytes,
    zip_bytes,
)

WAIT = 60
"""Seconds any thread of these tests may take before it counts as deadlocked."""
RULES = {
    "m.yar": 'rule evil { meta: weight = 5 strings: $a = "EVIL" condition: $a }\n'
    'rule py_def { meta: weight = 2 filetype = ".py" strings: $a = "def " condition: $a }'
}


@pytest.fixture(scope="module")
def rules() -> dh.Rules:
    return dh.Rules.compile(RULES)


# --- fetch_and_scan's arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({"requirement": None}, "requirement"),
        ({"requirement": b"pkg==1.0"}, "requirement"),
        ({"index_url": 8080}, "index_url"),
        ({"index_url": b"http://127.0.0.1/simple/"}, "index_url"),
        ({"extra_index_urls": "https://example.invalid/simple/"}, "extra_index_urls"),
        ({"extra_index_urls": None}, "extra_index_urls"),
        ({"extra_index_urls": [None]}, "extra_index_urls"),
        ({"python_version": 3.11}, "python_version"),
        ({"scanner": "not a scanner"}, "scanner"),
        ({"rules": {"m.yar": MARKER_RULE}}, "rules"),
    ],
)
def test_fetch_and_scan_names_an_argument_of_the_wrong_type(
    fake_index: FakeIndex, given: dict[str, object], named: str
) -> None:
    """None as the requirement or an int as ``index_url`` raised an AttributeError (``removeprefix``,
    ``endswith``) that named nothing; ``extra_index_urls="https://..."`` (a str is a sequence of str)
    was looked up as one index per character and gave an incomplete result ("could not fetch h/pkg/")
    instead of an error. Each is now a TypeError naming the argument, raised before any request."""
    fake_index.add("pkg", sdist("pkg", "1.0", {"setup.py": MARKER}))
    arguments: dict[str, object] = {"requirement": "pkg==1.0", "index_url": fake_index.url, **given}
    requirement = arguments.pop("requirement")
    with pytest.raises(TypeError, match=named):
        dh.fetch_and_scan(requirement, **arguments)  # type: ignore[arg-type]
    assert fake_index.requests == []


def test_fetch_and_scan_reads_extra_index_urls_from_a_generator_once(fake_index: FakeIndex) -> None:
    """The type check must not use up an iterator the indexes are then read from."""
    with FakeIndex() as extra:
        extra.add("private", sdist("private", "1.0", {"setup.py": MARKER}))
        urls = (url for url in [extra.url])
        result = dh.fetch_and_scan(
            "private==1.0",
            rules=dh.Rules.compile({"marker.yar": MARKER_RULE}),
            index_url=fake_index.url,
            extra_index_urls=urls,  # type: ignore[arg-type]
        )
    assert result.verdict == "findings"


@pytest.mark.parametrize("version", ["3", "3.11rc1", "v3.11", "3.11.0.1", "3.x", ""])
def test_fetch_and_scan_takes_python_version_as_the_scan_command_does(
    fake_index: FakeIndex, version: str
) -> None:
    """The docstring promises a ValueError for "a version that is not X.Y[.Z]" and ``--python-version``
    exits 2 on these; ``fetch_and_scan`` took any PEP 440 version ("3", "3.11rc1", "v3.11") and
    scanned."""
    fake_index.add("pkg", sdist("pkg", "1.0", {"setup.py": b"clean"}))
    with pytest.raises(ValueError, match="python_version"):
        dh.fetch_and_scan("pkg", index_url=fake_index.url, python_version=version)
    assert fake_index.requests == []
    assert dh.fetch_and_scan("pkg", index_url=fake_index.url, python_version=" 3.12.1").version == "1.0"


def test_a_failed_download_is_an_incomplete_result_without_the_index_password(
    fake_index: FakeIndex, rules: dh.Rules
) -> None:
    """As documented: a download answered 404 or whose bytes do not match the listed sha256 gives an
    incomplete result naming the file, not an exception; the index URL's password shows nowhere."""
    fake_index.add("gone", FakeFile(*sdist("gone", "1.0", {"a.py": b"EVIL"})))
    fake_index.faults.missing.add("gone-1.0.tar.gz")
    fake_index.add("forged", FakeFile(*sdist("forged", "1.0", {"a.py": b"ok"}), listed_sha256="0" * 64))
    index_url = fake_index.url.replace("http://", "http://user:S3CRET-PW@")
    for name in ("gone", "forged"):
        result = dh.fetch_and_scan(f"{name}==1.0", rules=rules, index_url=index_url)
        assert result.verdict == "incomplete"
        assert result.error is not None and f"{name}-1.0.tar.gz" in result.error
        assert "S3CRET" not in result.error
    with pytest.raises(ProjectNotFound) as missing:
        dh.fetch_and_scan("absent", rules=rules, index_url=index_url)
    assert "S3CRET" not in str(missing.value)


# --- the stubs --------------------------------------------------------------------------------------------


def test_the_stubs_take_the_path_like_items_the_extension_scans(tmp_path: Path, rules: dh.Rules) -> None:
    """``scan_many``/``scan_release`` extract an item's path with ``os.fspath`` (a ``pathlib.Path``
    scans), but the stubs listed only ``str``: mypy refused working code (stubtest cannot see it)."""
    wheel = tmp_path / "p-1.0-py3-none-any.whl"
    wheel.write_bytes(zip_bytes({"p/__init__.py": b"EVIL"}))
    scanner = dh.Scanner(rules, threads=1)
    [many] = scanner.scan_many([(wheel.name, wheel, None)])
    release = scanner.scan_release("p", "1.0", [(wheel.name, wheel, None)])
    assert many.verdict == release.verdict == "findings"
    pytest.importorskip("mypy")
    source = tmp_path / "uses_paths.py"
    source.write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            import dragonfly_hybrid as dh

            def scan(scanner: dh.Scanner, wheel: Path) -> None:
                scanner.scan_many([(wheel.name, wheel, None)])
                scanner.scan_release("p", "1.0", [(wheel.name, wheel, None)])
            """
        )
    )
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental", "--config-file", "/dev/null", str(source)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# --- concurrency ------------------------------------------------------------------------------------------


def _outcome(result: dh.DistributionResult) -> tuple[object, ...]:
    return (
        result.name,
        result.verdict,
        result.score,
        result.files_scanned,
        [
            (f.path, f.sha256, [(m.identifier, [(p.offset, p.line) for p in m.patterns]) for m in f.matches])
            for f in result.files
        ],
    )


def _run_threads(work: list[threading.Thread]) -> None:
    for thread in work:
        thread.start()
    for thread in work:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in work), "a scanning thread deadlocked"


def test_eight_threads_on_one_scanner_get_the_results_of_a_sequential_run(
    tmp_path: Path, rules: dh.Rules
) -> None:
    """scan_bytes and scan_path of the same 16 distributions from 8 Python threads at once, all counting
    into one ScanProgress: each result equals the sequential one, and the counters add up."""
    scanner = dh.Scanner(rules, threads=2)
    dists = []
    for i in range(16):
        files = {
            f"p{i}/m{j}.py": b"EVIL %d" % j if (i + j) % 5 == 0 else b"def f(): %d" % j for j in range(40)
        }
        data = tar_gz_bytes(files) if i % 2 else zip_bytes(files)
        path = tmp_path / f"d{i}.bin"
        path.write_bytes(data)
        dists.append((f"d{i}", data, path))
    expected = [_outcome(scanner.scan_bytes(data, name)) for name, data, _ in dists]
    progress = dh.ScanProgress()
    got: dict[int, list[tuple[object, ...]]] = {}

    def work(k: int) -> None:
        got[k] = [
            _outcome(scan)
            for name, data, path in dists[k::8]
            for scan in (
                scanner.scan_bytes(data, name, progress=progress),
                scanner.scan_path(path, name=name, progress=progress),
            )
        ]

    _run_threads([threading.Thread(target=work, args=(k,)) for k in range(8)])
    for k in range(8):
        assert got[k] == [e for e in expected[k::8] for _ in (0, 1)], k
    assert progress.distributions == 32
    assert progress.files == 2 * sum(e[3] for e in expected)  # type: ignore[misc]


def test_a_progress_shared_by_eight_threads_cancels_every_scan() -> None:
    """One ScanProgress passed to eight slow scans (scan_bytes, scan_many, scan_release) cancelled once
    they started: every one raises ScanCancelled and none hangs or returns a result."""
    scanner = dh.Scanner(dh.Rules.compile({"slow.yar": SLOW_RULE}), threads=2, content_cache=False)
    datas = [slow_tarball(40, seed=k) for k in range(8)]
    progress = dh.ScanProgress()
    outcomes: dict[int, str] = {}
    started = threading.Event()

    def work(k: int) -> None:
        started.set()
        try:
            if k % 3 == 0:
                scanner.scan_bytes(datas[k], f"{k}.tar", progress=progress)
            elif k % 3 == 1:
                scanner.scan_many([(f"{k}.tar", datas[k], None)], progress=progress)
            else:
                scanner.scan_release("p", "1", [(f"{k}.tar", bytearray(datas[k]), None)], progress=progress)
            outcomes[k] = "finished"
        except dh.ScanCancelled:
            outcomes[k] = "cancelled"

    work_threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for thread in work_threads:
        thread.start()
    assert started.wait(WAIT)
    for _ in range(WAIT * 100):
        if progress.files >= 4:
            break
        threading.Event().wait(0.01)
    progress.cancel()
    for thread in work_threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in work_threads), "a cancelled scan hung"
    assert outcomes == dict.fromkeys(range(8), "cancelled")
    assert progress.distributions == 0 and progress.files < 8 * 40


# --- cache_import -----------------------------------------------------------------------------------------


def _exported(rules: dh.Rules, data: bytes) -> list[tuple[bytes, bytes]]:
    recording = dh.Scanner(rules, record_cache=True, threads=1)
    recording.scan_bytes(data, "p-1.0.tar.gz")
    return recording.cache_export()


def test_cache_import_refuses_malformed_entries_naming_what_is_wrong(rules: dh.Rules) -> None:
    scanner = dh.Scanner(rules, threads=1)
    with pytest.raises(ValueError, match="32 bytes, not 31"):
        scanner.cache_import([(b"k" * 31, b"")])
    with pytest.raises(TypeError, match="cache entry"):
        scanner.cache_import([(b"k" * 32, b"", b"")])  # type: ignore[list-item]
    other = dh.Rules.compile({"o.yar": 'rule other { strings: $a = "ok" condition: $a }'})
    entries = _exported(other, tar_gz_bytes({"p/a.py": b"ok"}))
    loaded, refused = scanner.cache_import(entries)
    assert loaded == 0 and refused is not None and '"default.other"' in refused
    assert scanner.cache_import([(bytes(32), b"\x09")])[1] == "unknown cache entry format version 9"


def test_entries_of_another_rule_set_never_change_a_result() -> None:
    """Entries exported by another rule set (another ``Rules.hash``), one whose rules have other names
    and one with a rule of the same name: importing them must not change what a scan finds."""
    rules = dh.Rules.compile({"e.yar": 'rule evil { meta: weight = 5 strings: $a = "EVIL" condition: $a }'})
    assert rules.filetype_classes is None
    data = tar_gz_bytes({"p/a.py": b"EVIL here", "p/b.txt": b"GOOD here"})
    fresh = _outcome(dh.Scanner(rules, threads=1).scan_bytes(data, "p-1.0.tar.gz"))
    assert fresh[1] == "findings"
    for source in (
        'rule other { strings: $a = "GOOD" condition: $a }',
        'rule evil { strings: $a = "GOOD" condition: $a }',
    ):
        entries = _exported(dh.Rules.compile({"o.yar": source}), data)
        importing = dh.Scanner(rules, threads=1)
        importing.cache_import(entries)
        assert _outcome(importing.scan_bytes(data, "p-1.0.tar.gz")) == fresh


def test_scan_path_with_a_nul_byte_is_a_value_error(rules: dh.Rules, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"NUL|null"):
        dh.Scanner(rules, threads=1).scan_path(f"{tmp_path}/a\0b.whl")


def test_top_findings_of_a_negative_count_is_a_value_error(rules: dh.Rules) -> None:
    result = dh.Scanner(rules, threads=1).scan_bytes(b"EVIL", "a.py")
    with pytest.raises(ValueError, match="n must be 0 or more, not -1"):
        result.top_findings(-1)
    assert len(result.top_findings(2**70)) == result.match_count  # past any size: every finding


def test_load_rules_of_one_str_path_loads_that_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "a.yar").write_text("rule a { condition: true }")
    monkeypatch.chdir(tmp_path)  # a relative path: the old code must not walk from '/'
    try:
        loaded = dh.load_rules("rules")
    except TypeError:
        return  # refusing a single path is as good as loading it
    assert loaded.identifiers == ["a"]
