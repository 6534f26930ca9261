"""``diff OLD NEW``: what is new in NEW. Releases come from the store when scanned with the same rules,
else they are downloaded from the fake index and scanned (and stored)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.cli.store import version_free
from dragonfly_hybrid.store.db import Store
from typer.testing import CliRunner, Result

from tests.fakes.pypi import LIGHT_MARKER, MARKER, FakeFile, FakeIndex, sdist, wheel

BAD = b"import os\n# " + MARKER + b"\n"
LIGHT = b"# " + LIGHT_MARKER + b"\n"


def run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture
def index(fake_index: FakeIndex) -> FakeIndex:
    # 1.0: a light finding (accepted); 1.1: same, plus a new heavy finding in a new file; 1.2: light only.
    for version, files in (
        ("1.0", {"lib/util.py": LIGHT}),
        ("1.1", {"lib/util.py": LIGHT, "lib/_boot.py": BAD}),
        ("1.2", {"lib/util.py": LIGHT}),
    ):
        fake_index.add("trusted", sdist("trusted", version, files), wheel("trusted", version, files))
    fake_index.add("gone", sdist("gone", "1.0", {}))
    return fake_index


def diff_json(*args: object) -> tuple[int, dict[str, Any]]:
    result = run("diff", *args, "-f", "json")
    return result.exit_code, json.loads(result.stdout)


def test_a_new_finding_in_a_new_version_exits_1_and_names_rule_and_files(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    store = tmp_path / "store.db"
    common = ("-r", rules_dir, "--index-url", index.url, "--store", store)
    code, data = diff_json("trusted==1.0", "trusted==1.1", *common)
    assert code == 1
    assert data["new_rules"] == ["test_marker"] and data["removed_rules"] == []
    assert sorted(f["file"] for f in data["new_findings"]) == [
        "trusted-1.1-py3-none-any.whl/lib/_boot.py",
        "trusted-1.1.tar.gz/trusted-1.1/lib/_boot.py",
    ]
    assert data["new_findings"][0]["patterns"][0]["offset"] == 12
    assert data["unchanged_findings"] == 2  # lib/util.py in the sdist and the wheel: not new
    assert (data["old"]["from"], data["new"]["from"]) == ("scan", "scan")
    # Both releases are in the store now: the second diff scans nothing (its files are downloaded again,
    # only to compare them).
    with Store(store, readonly=True) as db:
        scans = db.count("scans")
    code, data = diff_json("trusted==1.0", "trusted==1.1", *common)
    assert code == 1 and (data["old"]["from"], data["new"]["from"]) == ("store", "store")
    with Store(store, readonly=True) as db:
        assert db.count("scans") == scans == 2
    table = run("diff", "trusted==1.0", "trusted==1.1", *common)
    assert table.exit_code == 1
    assert "new rules in trusted==1.1: test_marker" in table.stdout and "lib/_boot.py" in table.stdout


def test_nothing_new_exits_0_and_a_removed_finding_is_shown(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    common = ("-r", rules_dir, "--index-url", index.url, "--store", tmp_path / "s.db")
    code, data = diff_json("trusted==1.1", "trusted==1.2", *common)
    assert code == 0 and data["new_findings"] == [] and data["removed_rules"] == ["test_marker"]
    assert len(data["removed_findings"]) == 2
    result = run("diff", "trusted==1.0", "trusted==1.2", *common)
    assert result.exit_code == 0 and "nothing new in trusted==1.2" in result.stdout


def test_without_a_store_both_releases_are_scanned_directly(
    index: FakeIndex, tmp_path: Path, rules_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRAGONFLY_STORE", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    code, data = diff_json("trusted==1.0", "trusted==1.1", "-r", rules_dir, "--index-url", index.url)
    assert code == 1 and data["new"]["from"] == "scan"
    assert not (tmp_path / "xdg").exists()  # no store was created


def test_stored_scans_with_other_rules_are_not_used(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    store = tmp_path / "s.db"
    assert run("scan", "trusted==1.0", "--index-url", index.url, "--store", store, "-q").exit_code in (0, 1)
    code, data = diff_json("trusted==1.0", "trusted==1.1", "-r", rules_dir, "--index-url", index.url,
                           "--store", store)  # fmt: skip
    assert code == 1 and data["old"]["from"] == "scan"  # stored with the bundled rules: scanned again
    with Store(store, readonly=True) as db:
        assert db.count("scans") == 3 and db.count("rulesets") == 2


def test_stored_scans_made_by_another_version_are_not_used(
    index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """Another version of the engine may have missed what this one finds (or the reverse): its scans are
    history, not answers. A scan stored by an earlier version (its version column rewritten here, as no
    other version can run in this process) is not taken; this version's scan of the same files is."""
    store = tmp_path / "s.db"
    common = ("-r", rules_dir, "--index-url", index.url, "--store", store)
    assert diff_json("trusted==1.0", "trusted==1.1", *common)[0] == 1
    raw = sqlite3.connect(store)
    raw.execute("UPDATE scans SET engine_version = '0.0.1'")
    raw.commit()
    raw.close()
    code, data = diff_json("trusted==1.0", "trusted==1.1", *common)
    assert code == 1 and (data["old"]["from"], data["new"]["from"]) == ("scan", "scan")
    code, data = diff_json("trusted==1.0", "trusted==1.1", *common)
    assert code == 1 and (data["old"]["from"], data["new"]["from"]) == ("store", "store")


def test_diff_usage_errors_and_incomplete(index: FakeIndex, tmp_path: Path, rules_dir: Path) -> None:
    common = ("-r", rules_dir, "--index-url", index.url, "--store", tmp_path / "s.db")
    assert run("diff", "missing-1.0.tar.gz", "trusted==1.1", *common).exit_code == 2
    assert run("diff", "trusted==1.0", "trusted==x y", *common).exit_code == 2
    assert run("diff", "nosuchproject", "trusted==1.1", *common).exit_code == 2
    assert run("diff", "trusted==1.0", "trusted==9.9", *common).exit_code == 2
    index.faults.missing.add("gone-1.0.tar.gz")
    code, data = diff_json("gone==1.0", "gone==1.0", *common)
    assert code == 3 and data["new"]["verdict"] == "incomplete"


def test_diff_caps_its_downloads_as_scan_does(fake_index: FakeIndex, tmp_path: Path, rules_dir: Path) -> None:
    """`diff` downloads every file of both sides; it had no --max-download-size (always 128 MB)."""
    fake_index.add("huge", FakeFile("huge-1.0.tar.gz", os.urandom(5000), listed_size=-1))
    code, data = diff_json("huge==1.0", "huge==1.0", "-r", rules_dir, "--index-url", fake_index.url,
                           "--max-download-size", "2K")  # fmt: skip
    assert code == 3 and data["new"]["verdict"] == "incomplete"
    assert "huge-1.0.tar.gz exceeds the download size cap of 2000 bytes" in data["new"]["error"]


def test_version_free_labels() -> None:
    assert version_free("pkg-1.0.tar.gz/pkg-1.0/setup.py", "1.0") == "pkg-*.tar.gz/pkg-*/setup.py"
    assert version_free("pkg-1.0-py3-none-any.whl/pkg-1.0.dist-info/RECORD", "1.0") == (
        "pkg-*-py3-none-any.whl/pkg-*.dist-info/RECORD"
    )
    assert version_free("pkg-1.0.tar.gz/pkg-1.0/v1.0.txt", "1.0") == "pkg-*.tar.gz/pkg-*/v1.0.txt"


# ------------------------------------------- a stored scan stands only for the very files it scanned


def test_a_file_added_to_a_stored_release_is_scanned_not_taken_from_the_store(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    store = tmp_path / "s.db"
    common = ("-r", rules_dir, "--index-url", fake_index.url, "--store", store)
    fake_index.add("pkg", sdist("pkg", "1.0", {"pkg/a.py": b"a = 1\n"}))
    fake_index.add("pkg", sdist("pkg", "1.1", {"pkg/a.py": b"a = 2\n"}))
    assert run("scan", "pkg==1.1", *common, "-q").exit_code == 0  # stored clean: the sdist alone
    # Indexes accept new files in an existing release: a flagged wheel arrives later.
    fake_index.add("pkg", wheel("pkg", "1.1", {"pkg/a.py": BAD}))
    code, data = diff_json("pkg==1.0", "pkg==1.1", *common)
    assert code == 1 and data["new"]["from"] == "scan"
    assert [f["file"] for f in data["new_findings"]] == ["pkg-1.1-py3-none-any.whl/pkg/a.py"]
    # That scan covers every file now: the next diff takes it from the store.
    code, data = diff_json("pkg==1.0", "pkg==1.1", *common)
    assert code == 1 and data["new"]["from"] == "store"


def test_a_name_the_index_lists_twice_needs_a_stored_scan_of_both_copies(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """The index lists `pkg-2.0.tar.gz` twice, the flagged copy first, from another path: the stored scan
    of the clean copy stood for both (the copies were keyed by name, the last one kept)."""
    store = tmp_path / "s.db"
    common = ("-r", rules_dir, "--index-url", fake_index.url, "--store", store)
    fake_index.add("pkg", sdist("pkg", "1.0", {"pkg/a.py": b"a = 1\n"}))
    name, clean = sdist("pkg", "2.0", {"pkg/a.py": b"a = 2\n"})
    fake_index.add("pkg", (name, clean))
    code, data = diff_json("pkg==1.0", "pkg==2.0", *common)
    assert code == 0 and data["new"]["verdict"] == "clean"  # stored: a scan of the clean copy
    flagged = sdist("pkg", "2.0", {"pkg/a.py": BAD})[1]
    fake_index.add("elsewhere", (name, flagged))
    # Listed on pkg's page under the same name, served from elsewhere (its own entry here names nothing).
    listed = FakeFile("held", flagged, listed_url=fake_index.file_url("elsewhere", name), listed_name=name)
    fake_index.projects["pkg"].insert(1, listed)
    code, data = diff_json("pkg==1.0", "pkg==2.0", *common)
    assert code == 1 and data["new"]["from"] == "scan"


def test_two_copies_of_a_name_without_a_digest_that_both_fail_to_download_stay_two_files(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """The index lists `pkg-2.0.tar.gz` without a digest; `diff` stores a scan of it (clean). The index then
    lists a second copy of that name, from elsewhere, also without a digest, and neither can be downloaded:
    the two unknown copies were merged into one (a set of digests, `{None}`), matched by name, and the
    stored scan of one copy stood for both: `clean`, from the store. Two copies are two files."""
    store = tmp_path / "s.db"
    common = ("-r", rules_dir, "--index-url", fake_index.url, "--store", store)
    fake_index.add("pkg", sdist("pkg", "1.0", {"pkg/a.py": b"a = 1\n"}))
    name, clean = sdist("pkg", "2.0", {"pkg/a.py": b"a = 2\n"})
    fake_index.add("pkg", FakeFile(name, clean, listed_sha256=""))
    code, data = diff_json("pkg==1.0", "pkg==2.0", *common)
    assert code == 0 and (data["new"]["verdict"], data["new"]["from"]) == ("clean", "scan")
    fake_index.add("elsewhere", (name, sdist("pkg", "2.0", {"pkg/a.py": BAD})[1]))
    listed = FakeFile(
        "held", b"", listed_sha256="", listed_url=fake_index.file_url("elsewhere", name), listed_name=name
    )
    fake_index.projects["pkg"].append(listed)
    fake_index.faults.missing.add(name)  # both copies: 404
    code, data = diff_json("pkg==1.0", "pkg==2.0", *common)
    assert code == 3 and (data["new"]["verdict"], data["new"]["from"]) == ("incomplete", "scan")
    assert data["new"]["error"].count(f"could not download {name}") == 2


def test_a_hash_mode_scan_of_some_files_does_not_stand_for_the_release(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    store = tmp_path / "s.db"
    common = ("-r", rules_dir, "--index-url", fake_index.url, "--store", store)
    fake_index.add("pkg", sdist("pkg", "1.0", {"pkg/a.py": b"a = 1\n"}))
    allowed = sdist("pkg", "2.0", {"pkg/a.py": b"a = 2\n"})
    fake_index.add("pkg", allowed, wheel("pkg", "2.0", {"pkg/a.py": BAD}))
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"pkg==2.0 --hash=sha256:{hashlib.sha256(allowed[1]).hexdigest()}\n")
    assert run("scan", "-R", requirements, *common, "-q").exit_code == 0  # the sdist alone: clean
    with Store(store, readonly=True) as db:
        assert db.count("scans") == 1  # stored, as what it is: a scan of the sdist alone
    code, data = diff_json("pkg==1.0", "pkg==2.0", *common)
    assert code == 1 and data["new"]["from"] == "scan"
    assert [f["file"] for f in data["new_findings"]] == ["pkg-2.0-py3-none-any.whl/pkg/a.py"]


def test_a_release_stored_from_another_index_with_other_bytes_is_scanned_again(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    store = tmp_path / "s.db"
    fake_index.add("pkg", sdist("pkg", "1.0", {"pkg/a.py": b"a = 1\n"}))
    fake_index.add("pkg", sdist("pkg", "1.1", {"pkg/a.py": b"a = 2\n"}))
    scanned = run("scan", "pkg==1.1", "-r", rules_dir, "--index-url", fake_index.url, "--store", store, "-q")
    assert scanned.exit_code == 0
    with FakeIndex() as mirror:  # same release, same file name, other bytes
        mirror.add("pkg", sdist("pkg", "1.0", {"pkg/a.py": b"a = 1\n"}))
        mirror.add("pkg", sdist("pkg", "1.1", {"pkg/a.py": BAD}))
        code, data = diff_json("pkg==1.0", "pkg==1.1", "-r", rules_dir, "--index-url", mirror.url,
                               "--store", store)  # fmt: skip
    assert code == 1 and data["new"]["from"] == "scan"
    assert [f["file"] for f in data["new_findings"]] == ["pkg-1.1.tar.gz/pkg-1.1/pkg/a.py"]
