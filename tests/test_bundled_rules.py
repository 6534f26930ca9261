"""The bundled default rule set against its fixtures.

Every rule has defanged samples under ``tests/fixtures/rules/<rule>/positive/<path>`` that it must match
and near-miss samples under ``.../negative/<path>`` (legitimate code sharing some of its strings) that
it must not. ``<path>`` is the file's path inside a package, which matters for the rules' ``filetype``.
Each sample is scanned as the only file of a real in-memory sdist, ``pkg-0.1/<path>``.
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

import dragonfly_hybrid as dh
import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "rules"
TOP = "pkg-0.1"
ARCHIVE = f"{TOP}.tar.gz"
THEMES = ("credentials", "crypto", "dropper", "exfil", "install", "obfuscation", "persistence", "shells")
IDENTIFIER_RE = re.compile(rf"^({'|'.join(THEMES)})(_[a-z0-9]+)+$")
MIN_RULES = 18


def fixture_dirs() -> list[Path]:
    return sorted(p for p in FIXTURES.iterdir() if p.is_dir() and not p.name.startswith("."))


def samples(kind: str) -> list[tuple[str, str, Path]]:
    """``(rule, path inside the package, file)`` for every fixture of one kind."""
    found = []
    for rule_dir in fixture_dirs():
        base = rule_dir / kind
        for path in sorted(base.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                found.append((rule_dir.name, path.relative_to(base).as_posix(), path))
    return found


POSITIVES = samples("positive")
NEGATIVES = samples("negative")


def sample_ids(items: list[tuple[str, str, Path]]) -> list[str]:
    return [f"{rule}:{relpath}" for rule, relpath, _ in items]


def sdist(relpath: str, data: bytes) -> bytes:
    """A gzipped tar holding ``pkg-0.1/<relpath>``, built deterministically."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"{TOP}/{relpath}")
        info.size = len(data)
        info.mode = 0o644
        info.mtime = 0
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def rules() -> dh.Rules:
    return dh.bundled_rules()


@pytest.fixture(scope="module")
def scanner(rules: dh.Rules) -> dh.Scanner:
    return dh.Scanner(rules, threads=2)


def scan(scanner: dh.Scanner, relpath: str, data: bytes) -> dh.DistributionResult:
    result = scanner.scan_bytes(sdist(relpath, data), ARCHIVE)
    assert result.complete, [issue.message for issue in result.issues]
    assert result.files_scanned == 1
    return result


def rule_match(result: dh.DistributionResult, rule: str, member: str) -> dh.RuleMatch:
    files = {f.path: f for f in result.files}
    assert member in files, f"{rule} matched no file; files with matches: {sorted(files)}"
    matches = {m.identifier: m for m in files[member].matches}
    assert rule in matches, f"{member} matched {sorted(matches)}, not {rule}"
    return matches[rule]


@pytest.mark.parametrize(("rule", "relpath", "path"), POSITIVES, ids=sample_ids(POSITIVES))
def test_positive_fixture_matches(scanner: dh.Scanner, rule: str, relpath: str, path: Path) -> None:
    result = scan(scanner, relpath, path.read_bytes())
    assert rule in result.rules_matched
    assert f"{TOP}/{relpath}" in [f.path for f in result.files]
    rule_match(result, rule, f"{TOP}/{relpath}")


@pytest.mark.parametrize(("rule", "relpath", "path"), NEGATIVES, ids=sample_ids(NEGATIVES))
def test_negative_fixture_does_not_match(scanner: dh.Scanner, rule: str, relpath: str, path: Path) -> None:
    result = scan(scanner, relpath, path.read_bytes())
    assert rule not in result.rules_matched


@pytest.mark.parametrize(("rule", "relpath", "path"), POSITIVES, ids=sample_ids(POSITIVES))
def test_positive_fixture_under_other_suffix_does_not_count(
    scanner: dh.Scanner, rule: str, relpath: str, path: Path
) -> None:
    """The ``filetype`` of a rule limits it: the same bytes as ``<path>.txt`` must not count for it."""
    data = path.read_bytes()
    metadata = rule_match(scan(scanner, relpath, data), rule, f"{TOP}/{relpath}").metadata
    if "filetype" not in metadata:
        pytest.skip(f"{rule} has no filetype")
    assert rule not in scan(scanner, f"{relpath}.txt", data).rules_matched


@pytest.mark.parametrize("rule_dir", fixture_dirs(), ids=lambda p: p.name)
def test_rule_metadata(scanner: dh.Scanner, rule_dir: Path) -> None:
    """Metadata as seen through a match: description, integer weight, author, well-formed filetype."""
    rule = rule_dir.name
    _, relpath, path = next(s for s in POSITIVES if s[0] == rule)
    match = rule_match(scan(scanner, relpath, path.read_bytes()), rule, f"{TOP}/{relpath}")
    meta = match.metadata

    description = meta.get("description")
    assert isinstance(description, str)
    assert description.strip() and description.endswith(".")

    weight = meta.get("weight")
    assert isinstance(weight, int) and not isinstance(weight, bool)
    assert 1 <= weight <= 10
    assert match.weight == weight

    assert meta.get("author") == "dragonfly-hybrid"

    if "filetype" in meta:
        filetype = meta["filetype"]
        assert isinstance(filetype, str)
        suffixes = filetype.split()
        assert suffixes and filetype == " ".join(suffixes)
        for suffix in suffixes:
            assert suffix.startswith(".") or suffix.endswith(".py"), suffix


def test_rule_set_shape(rules: dh.Rules) -> None:
    identifiers = rules.identifiers
    assert len(identifiers) == rules.count >= MIN_RULES
    assert len(set(identifiers)) == len(identifiers)
    for identifier in identifiers:
        assert IDENTIFIER_RE.match(identifier), identifier


def test_each_rule_file_compiles_alone(rules: dh.Rules) -> None:
    """Every file stands on its own (no cross-file references), and together they are the bundled set."""
    seen: list[str] = []
    for path in sorted(dh.bundled_rules_dir().glob("*.yar")):
        alone = dh.Rules.compile({path.name: path.read_text(encoding="utf-8")})
        assert alone.count > 0, path.name
        seen.extend(alone.identifiers)
    assert sorted(seen) == sorted(rules.identifiers)


def test_every_rule_has_fixtures(rules: dh.Rules) -> None:
    missing = []
    for rule in rules.identifiers:
        for kind in ("positive", "negative"):
            directory = FIXTURES / rule / kind
            if not directory.is_dir() or not any(p.is_file() for p in directory.rglob("*")):
                missing.append(f"{rule}/{kind}")
    assert not missing, f"rules without fixtures: {missing}"


def test_fixture_dirs_name_real_rules(rules: dh.Rules) -> None:
    unknown = sorted({p.name for p in fixture_dirs()} - set(rules.identifiers))
    assert not unknown, f"fixture directories for unknown rules: {unknown}"
    for rule_dir in fixture_dirs():
        extra = sorted(p.name for p in rule_dir.iterdir() if p.name not in ("positive", "negative"))
        assert not extra, f"{rule_dir.name}: unexpected entries {extra}"


def test_negatives_are_clean_for_every_rule(scanner: dh.Scanner) -> None:
    """The negatives are legitimate code: no bundled rule fires on any of them, scanned as one sdist."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for rule, relpath, path in NEGATIVES:
            data = path.read_bytes()
            info = tarfile.TarInfo(f"{TOP}/{rule}/{relpath}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    result = scanner.scan_bytes(buf.getvalue(), ARCHIVE)
    assert result.files_scanned == len(NEGATIVES)
    assert result.rules_matched == [], {f.path: [m.identifier for m in f.matches] for f in result.files}
