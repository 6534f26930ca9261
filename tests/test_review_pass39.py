"""Review pass 39 of commit 347e81a: the rules folder walk that follows links to folders, ``load_rules``
of one path, and the store's content-cache entries of the key layout before keys mixed in ``Rules.hash``."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from dragonfly_hybrid import Rules, Scanner, __version__
from dragonfly_hybrid.rules_loader import bundled_rules, load_rules, rule_source_files
from dragonfly_hybrid.store.content_cache import cached_scanner, entries_key
from dragonfly_hybrid.store.db import Store

from tests.fakes.pypi import MARKER, MARKER_RULE, tar_gz_bytes


def rule(path: Path, name: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'rule {name} {{ strings: $a = "{name}" condition: $a }}\n')


def test_a_link_to_a_folder_of_the_tree_does_not_rename_its_rules(tmp_path: Path) -> None:
    """A link sorting before the folder it leads to (`alias -> zeta`) walked it first: zeta's rules were
    named `alias/z.yar`, so adding an alias changed the set's hash and compile errors named the link."""
    rules = tmp_path / "rules"
    rule(rules / "a.yar", "a")
    rule(rules / "zeta" / "z.yar", "z")
    before = load_rules(rules).hash
    (rules / "alias").symlink_to("zeta")
    assert sorted(rule_source_files([rules])) == ["a.yar", "zeta/z.yar"]
    assert load_rules(rules).hash == before
    # Two links to one folder outside the tree: the first in sorted order names it, whatever the order
    # the directory lists them in.
    rule(tmp_path / "shared" / "s.yar", "s")
    for link in ("m_link", "b_link", "y_link"):
        (rules / link).symlink_to(tmp_path / "shared")
    assert sorted(rule_source_files([rules])) == ["a.yar", "b_link/s.yar", "zeta/z.yar"]


def test_a_link_to_a_folder_holding_the_rules_folder_is_an_error(tmp_path: Path) -> None:
    """`rules/up -> ..` walked the rules folder's parent: every .yar beside the rules folder (another
    project's test fixtures, here a rule that would flag everything) joined the set; a link to `/` walked
    the whole file system."""
    rules = tmp_path / "rules"
    rule(rules / "a.yar", "a")
    rule(tmp_path / "elsewhere" / "noise.yar", "noise")
    (rules / "up").symlink_to("..")
    message = f"{rules / 'up'} is a link to a folder holding {rules}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        load_rules(rules)
    (rules / "up").unlink()
    (rules / "deeper").mkdir()
    (rules / "deeper" / "root").symlink_to("/")
    with pytest.raises(ValueError, match="deeper/root is a link to a folder holding"):
        load_rules(rules)
    # A link back into the tree is walked once, silently: nothing outside it is read.
    (rules / "deeper" / "root").unlink()
    (rules / "deeper" / "back").symlink_to("..")
    assert sorted(rule_source_files([rules])) == ["a.yar"]


def test_load_rules_of_bytes_or_an_empty_path_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`load_rules(b"")` was the bundled set and `load_rules(blob_bytes)` a TypeError saying bytes were
    accepted (`not int`); `load_rules("")` walked the working directory (Path("") is "."), where it had
    been the bundled set before one path was accepted."""
    rule(tmp_path / "stray.yar", "stray")
    monkeypatch.chdir(tmp_path)
    blob = bundled_rules().serialize()
    for given in (b"", blob, bytearray(b"rules")):
        with pytest.raises(
            TypeError, match=f"^paths must be a path or a list of paths, not {type(given).__name__}"
        ):
            load_rules(given)  # type: ignore[arg-type]
    for empty in ("", [""], [tmp_path / "stray.yar", ""]):
        with pytest.raises(FileNotFoundError, match=r"^an empty path names no rule file or folder$"):
            load_rules(empty)
    # One path, a list, an iterator: as documented; no path at all is the bundled set.
    assert (
        load_rules("stray.yar").hash
        == load_rules(Path("stray.yar")).hash
        == load_rules(iter(["stray.yar"])).hash
    )
    for nothing in ([], (), iter([])):
        assert load_rules(nothing).hash == bundled_rules().hash
    assert os.getcwd() == str(tmp_path)


def test_entries_of_the_earlier_key_layout_are_not_loaded(tmp_path: Path) -> None:
    """Entries saved before keys mixed in ``Rules.hash`` (under ``hash:version``) never answer, but they were
    loaded still: dead weight in the cache's room (500,000 entries) until evicted."""
    rules = Rules.compile({"m.yar": MARKER_RULE})
    data = tar_gz_bytes({"p/a.py": MARKER, "p/b.py": b"x = 1\n"})
    recording = Scanner(rules, threads=1, record_cache=True)
    recording.scan_bytes(data, "p-1.0.tar.gz")
    entries = recording.cache_export()
    with Store(tmp_path / "s.db") as db:
        db.save_content_cache(f"{rules.hash}:{__version__}", entries)  # the layout before
        assert entries_key(rules) != f"{rules.hash}:{__version__}"
        scanner, cache = cached_scanner(rules, None, 1, db)
        assert cache is not None and cache.loaded == 0
        assert scanner.scan_bytes(data, "p-1.0.tar.gz").rules_matched == ["test_marker"]


def test_a_directorys_unread_entries_are_listed_in_one_order(tmp_path: Path) -> None:
    """They came in scandir's order (the file system's: "p9; p11; p7..."), so one tree's issue line read
    differently from run to run and machine to machine."""
    from dragonfly_hybrid.targets import directory_files

    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.py").write_bytes(b"x = 1\n")
    names = [f"p{i}" for i in range(40)]
    for name in names:
        os.mkfifo(tree / name)
    files, problems = directory_files(tree)
    assert [p.name for p in files] == ["a.py"]
    assert problems == sorted(problems) and len(problems) == len(names)


@pytest.mark.parametrize(
    ("constraint", "why"),
    [
        ("https://h.example/p-1.0.tar.gz", "Unnamed requirements are not allowed as constraints"),
        ("./local/dir", "Unnamed requirements are not allowed as constraints"),
        ("-e git+https://h.example/x.git#egg=x", "Editable requirements are not allowed as constraints"),
        ("foo[bar]==1.0", "Constraints cannot have extras"),
    ],
)
def test_a_constraint_pip_refuses_is_a_usage_error(tmp_path: Path, constraint: str, why: str) -> None:
    """pip's resolver refuses the whole file for such a constraint (checked with pip download); they were
    noted as skipped (exit 3 with an install pip never makes) or, with extras, read as a plain pin."""
    from dragonfly_hybrid.pypi.requirements import RequirementsError, read_pins

    (tmp_path / "c.txt").write_text(constraint + "\n")
    (tmp_path / "r.txt").write_text("-c c.txt\nfoo==1.0\n")
    with pytest.raises(RequirementsError, match=re.escape(why)):
        read_pins([tmp_path / "r.txt"])
    # A named link (a wheel's URL names its project) is a constraint pip follows: skipped, as before.
    (tmp_path / "c.txt").write_text("https://h.example/p-1.0-py3-none-any.whl\n")
    assert [s for s in read_pins([tmp_path / "r.txt"]).skipped if "a constraint to a URL" in s]
