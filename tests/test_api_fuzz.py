"""Property-based tests: the Python API raises nothing but its documented exceptions, whatever
bytes it is given, and its results stay consistent (verdicts, issue kinds, never a false clean).

Documented (README "Python API"): hostile or corrupt archives never raise, they produce issues;
``RuleCompileError`` (a ``ValueError``) for bad rule sources, ``RulesFormatError`` for a damaged
blob, ``FileNotFoundError``/``OSError`` for paths, ``TypeError``/``ValueError`` for bad arguments
(a ``ValueError`` naming the argument for integers of any size out of its range).
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import dragonfly_hybrid as dh
import pytest
from dragonfly_hybrid.errors import RuleCompileError, RulesFormatError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

RULES = {
    "m.yar": 'rule evil_marker { meta: weight = 5 strings: $a = "EVIL_MARKER" condition: $a }\n'
    'rule py_only { meta: weight = 1 filetype = ".py" strings: $a = "def " condition: $a }',
}
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
MAGICS = [b"", b"\x1f\x8b\x08", b"BZh9", b"\xfd7zXZ\x00", b"PK\x03\x04", b"PK\x05\x06"]


@pytest.fixture(scope="module")
def scanner() -> dh.Scanner:
    limits = dh.Limits(max_member_size=1 << 20, max_total_size=8 << 20, max_members=500, timeout=5.0)
    return dh.Scanner(dh.Rules.compile(RULES), limits=limits, threads=2)


def seeds() -> list[bytes]:
    """Small valid archives of every format, to be mutated."""
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w") as archive:
        for name, content in [("p/setup.py", b"EVIL_MARKER def x(): pass"), ("p/a.txt", b"hello")]:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    tar = tar_buffer.getvalue()
    zip_buffer = io.BytesIO()
    with zipfile.ZipFile(zip_buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("p/__init__.py", "EVIL_MARKER = 1\ndef f(): pass\n")
        archive.writestr("p/data.bin", bytes(range(256)) * 8)
    out = [tar, zip_buffer.getvalue()]
    for mode in ["w:gz", "w:bz2", "w:xz"]:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode=mode) as archive:  # type: ignore[call-overload]
            info = tarfile.TarInfo("p/setup.py")
            info.size = 11
            archive.addfile(info, io.BytesIO(b"EVIL_MARKER"))
        out.append(buffer.getvalue())
    return out


SEEDS = seeds()


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed archive with bytes flipped, cut or inserted."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 8))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "zero"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(max_size=16))
        elif op == "zero":
            data[at : at + draw(st.integers(1, 64))] = b"\0" * 8
    return bytes(data)


def check(result: dh.DistributionResult) -> None:
    """Invariants of every result."""
    assert result.verdict in ("clean", "findings", "incomplete")
    assert all(issue.kind in dh._core.ISSUE_KINDS for issue in result.issues)
    assert "internal-error" not in [issue.kind for issue in result.issues]
    assert result.complete == (not any(issue.unscanned for issue in result.issues))
    if result.verdict == "clean":
        assert result.complete and not result.files
    assert (result.verdict == "findings") == bool(result.files)
    assert result.score == sum({m.identifier: m.weight for f in result.files for m in f.matches}.values())


@SETTINGS
@given(magic=st.sampled_from(MAGICS), data=st.binary(max_size=4096))
def test_random_bytes_never_raise(scanner: dh.Scanner, magic: bytes, data: bytes) -> None:
    check(scanner.scan_bytes(magic + data, "random.tar.gz"))


@SETTINGS
@given(data=mutated())
def test_mutated_archives_never_raise(scanner: dh.Scanner, data: bytes) -> None:
    check(scanner.scan_bytes(data, "mutated"))


@settings(max_examples=30, deadline=None)
@given(
    items=st.lists(
        st.tuples(
            st.text(max_size=40),
            st.one_of(st.binary(max_size=512), mutated()),
            st.none() | st.text(max_size=80),
        ),
        max_size=4,
    ),
    name=st.text(max_size=20),
    version=st.text(max_size=20),
)
def test_scan_many_and_release_never_raise(
    scanner: dh.Scanner, items: list[tuple[str, bytes, str | None]], name: str, version: str
) -> None:
    for result in scanner.scan_many(items):
        check(result)
    release = scanner.scan_release(name, version, items)
    assert release.verdict in ("clean", "findings", "incomplete")
    assert (release.failure_reason is not None) == (release.verdict == "incomplete")
    if release.inspector_url is not None:
        assert release.inspector_url.startswith("https://inspector.pypi.io/project/")


@settings(max_examples=20, deadline=None)
@given(data=st.one_of(st.binary(max_size=2048), mutated()))
def test_scan_path_never_raises_on_content(
    scanner: dh.Scanner, tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path: Path = tmp_path_factory.mktemp("fuzz") / "dist.tar.gz"
    path.write_bytes(data)
    check(scanner.scan_path(path))


@settings(max_examples=150, deadline=None)
@given(source=st.text(max_size=300))
def test_rule_sources_raise_only_compile_errors(source: str) -> None:
    try:
        rules = dh.Rules.compile({"fuzz.yar": source})
    except RuleCompileError as err:
        assert isinstance(err, ValueError) and str(err)
    else:
        assert rules.count >= 0


@settings(max_examples=150, deadline=None)
@given(
    blob=st.one_of(
        st.binary(max_size=256), st.binary(max_size=64).map(lambda b: dh._core.COMPILED_RULES_MAGIC + b)
    )
)
def test_rule_blobs_raise_only_format_errors(blob: bytes) -> None:
    with pytest.raises(RulesFormatError):
        dh.Rules.deserialize(blob)


@settings(max_examples=100, deadline=None)
@given(
    values=st.fixed_dictionaries(
        {},
        optional={
            "max_member_size": st.integers(-(2**200), 2**200),
            "max_total_size": st.integers(-(2**200), 2**200),
            "max_members": st.integers(-(2**65), 2**65),
            "max_ratio": st.integers(-(2**65), 2**65),
            "max_depth": st.integers(-(2**200), 2**200),
            "timeout": st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**400), 10**400),
        },
    )
)
def test_limits_raise_only_argument_errors(values: dict[str, float]) -> None:
    try:
        limits = dh.Limits(**values)  # type: ignore[arg-type]
    except ValueError as err:
        assert any(name in str(err) for name in values), err  # names the argument it refuses
        return
    assert limits.max_member_size > 0 and limits.max_ratio > 0
    # A tiny positive timeout reads back as 0.0 (it rounds down to whole nanoseconds); the engine
    # applies at least 1 ms (dragonfly_core::engine::MIN_TIMEOUT), so files are still scanned.
    assert 0 <= limits.timeout <= 86_400
