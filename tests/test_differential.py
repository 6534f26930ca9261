"""Differential tests: the engine against pip's view (CPython's ``tarfile``, data filter; ``zipfile``).

The promise under test: a clean verdict means every file pip would write when unpacking or installing
the archive, with the bytes pip would write, under the name pip would write, was scanned. For each
generated case (``tests/archive_gen.py``), ``tests/pip_oracle.py`` unpacks it as pip does, and the
engine scans it with a catch-all rule (every scanned file is in ``dist.files``). A case fails when:

* pip writes a ``(name, sha256)`` that the engine did not report under that name (a nested
  ``...!/name`` counts) while ``dist.complete`` is True; likewise for the case's own ``expected``
  interpretations (those the test Python does not give: the 0x7075 name of 3.12+, hidden archives);
* the bytes are not an archive at all (class ``not-archive``) and the engine says complete;
* the engine raises, or reports an ``internal-error`` issue.

An empty file in the view of a pip run that failed is not required (it is the file pip had just opened
when it raised, e.g. a zip member whose CRC check failed before any byte was written).

Settings (environment):

* ``DFH_DIFF_CASES``: cases per run, spread over the classes (default 5000, about 10 s on 2 cores);
* ``DFH_DIFF_SEED``: the run's seed (default 0); a case id ``SEED:INDEX`` rebuilds one case:
  ``python -c "import archive_gen as g; c = g.make_case(INDEX, SEED)"`` (in ``tests/``);
* before Python 3.14, the newest ``tarfile``/``zipfile`` count too (``pip_oracle.readers``: the
  ``backports.zstd`` port of 3.14's, with the filter changes of CPython's security releases that older
  patch releases of the interpreters here lack);
* so does what current pip writes with those readers: it strips an sdist's leading directory
  (``pip_view(..., strip_leading=True)``);
* ``DFH_ORACLE_PYTHONS``: more interpreters (paths or names, space-separated) whose view of every case
  counts too (pip supports 3.9 to 3.14; their ``tarfile``/``zipfile`` differ), e.g.
  ``DFH_ORACLE_PYTHONS="python3.9 python3.12 python3.13"``;
* ``DFH_DIFF_ARTIFACTS``: where failing archives are written (default: a new temporary directory).
"""

from __future__ import annotations

import collections
import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from dragonfly_hybrid import Rules, Scanner

from tests.archive_gen import CLASSES, CYCLE, PAYLOAD, Case, make_case
from tests.pip_oracle import PipView, missing, pip_view

CASES = int(os.environ.get("DFH_DIFF_CASES", "5000"))
SEED = int(os.environ.get("DFH_DIFF_SEED", "0"))
ORACLE_PYTHONS = os.environ.get("DFH_ORACLE_PYTHONS", "").split()
ORACLE_SCRIPT = Path(__file__).with_name("pip_oracle.py")
MAX_REPORTED = 25
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner(Rules.compile({"all.yar": "rule any_file { condition: true }"}), threads=2)


def _artifacts_dir() -> Path:
    """Where failing archives go (created only when a case fails)."""
    directory = os.environ.get("DFH_DIFF_ARTIFACTS")
    if directory:
        Path(directory).mkdir(parents=True, exist_ok=True)
        return Path(directory)
    return Path(tempfile.mkdtemp(prefix="dfh-diff-"))


def _cases_of(cls: str) -> list[Case]:
    return [make_case(i, SEED) for i in range(CASES) if CYCLE[i % len(CYCLE)] == cls]


def _other_pythons(cases: list[Case], pythons: list[str] = ORACLE_PYTHONS) -> list[dict[str, PipView]]:
    """The view of each case under each of ``pythons`` (one batch process per interpreter)."""
    views: list[dict[str, PipView]] = [{} for _ in cases]
    if not pythons:
        return views
    with tempfile.TemporaryDirectory(prefix="dfh-oracle-batch-") as tmp:
        manifest = []
        for i, case in enumerate(cases):
            (Path(tmp) / f"{i}.bin").write_bytes(case.data)
            manifest.append([f"{i}.bin", case.filename])
        (Path(tmp) / "manifest.json").write_text(json.dumps(manifest))
        for python in pythons:
            exe = shutil.which(python) or python
            out = subprocess.run(
                [exe, str(ORACLE_SCRIPT), "--batch", tmp], capture_output=True, check=True, timeout=600
            )
            for i, obj in enumerate(json.loads(out.stdout)):
                views[i][python] = PipView.from_json(obj)
    return views


def _check(case: Case, scanner: Scanner, others: dict[str, PipView]) -> str | None:
    """``None`` when the case holds, else a description of the failure."""
    views = {".".join(map(str, sys.version_info[:2])): pip_view(case.data, case.filename), **others}
    if sys.version_info < (3, 14):
        views["3.14-readers"] = pip_view(case.data, case.filename, zstd=True)
    # Current pip on current readers: it strips an sdist's leading directory as it unpacks it.
    views["3.14-readers, stripped"] = pip_view(case.data, case.filename, zstd=True, strip_leading=True)
    try:
        dist = scanner.scan_bytes(case.data, case.filename)
    except Exception as exc:
        return f"engine raised {type(exc).__name__}: {exc}"
    internal = [i for i in dist.issues if i.kind == "internal-error"]
    issues = ", ".join(f"{i.kind}:{i.path or '-'}{'*' if i.unscanned else ''}" for i in dist.issues[:8])
    if internal:
        return f"internal-error: {internal[0].message} [issues: {issues}]"
    if case.not_clean and dist.complete:
        return f"not an archive, yet complete ({dist.format}, {len(dist.files)} files) [issues: {issues}]"
    if not dist.complete:
        return None
    engine = {(f.path, f.sha256) for f in dist.files}
    wanted: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for python, view in views.items():
        if view.capped:
            continue
        for item in view.files:
            if view.failed and item[1] == EMPTY_SHA256:
                continue  # the file pip had opened when it failed (e.g. a zip member with a bad CRC)
            wanted[item].append(python)
    for item in case.expected:
        wanted[item].append("expected")
    lost = missing(list(wanted), engine)
    if not lost:
        return None
    names = ", ".join(f"{n} ({h[:12]}; {'/'.join(wanted[(n, h)])})" for n, h in lost[:6])
    seen = ", ".join(f"{p} ({h[:12]})" for p, h in sorted(engine)[:8])
    issues = issues or "none"
    return f"complete, but not scanned under pip's name: {names} | engine saw: {seen} [issues: {issues}]"


@pytest.mark.parametrize("cls", list(CLASSES))
def test_engine_scans_what_pip_writes(cls: str, scanner: Scanner) -> None:
    cases = _cases_of(cls)
    assert cases or CASES < len(CYCLE)
    started = time.monotonic()
    others = _other_pythons(cases)
    failures: list[tuple[Case, str]] = []
    for case, other in zip(cases, others, strict=True):
        problem = _check(case, scanner, other)
        if problem is not None:
            failures.append((case, problem))
    elapsed = time.monotonic() - started
    print(f"{cls}: {len(cases)} cases in {elapsed:.1f} s, {len(failures)} failing")
    if not failures:
        return
    by_variant = collections.Counter(
        case.variant.split(":")[1 if cls == "mutation" else 0] for case, _ in failures
    )
    lines = [
        f"{len(failures)} of {len(cases)} '{cls}' cases fail (seed {SEED}); by variant: {dict(by_variant)}"
    ]
    artifacts = _artifacts_dir()
    lines.append(f"archives written to {artifacts}")
    for case, _ in failures:
        path = artifacts / f"{case.case_id.replace(':', '_')}_{case.filename}"
        path.write_bytes(case.data)
    for case, problem in failures[:MAX_REPORTED]:
        lines.append(f"- case {case.case_id} [{case.cls} / {case.variant}] {case.filename}: {problem}")
    if len(failures) > MAX_REPORTED:
        lines.append(f"... and {len(failures) - MAX_REPORTED} more")
    pytest.fail("\n".join(lines), pytrace=False)


def test_generator_puts_the_payload_where_pip_writes_it() -> None:
    """The generator stays meaningful: in every class, most cases have pip write a file holding the payload
    (or, for hidden archives and the 0x7075 name, name it in ``expected``); ``not-archive`` never opens."""
    per_class = 60
    for cls in CLASSES:
        indexes = [i for i in range(per_class * len(CYCLE)) if CYCLE[i % len(CYCLE)] == cls][:per_class]
        reached = 0
        for i in indexes:
            case = make_case(i, SEED)
            view = pip_view(case.data, case.filename, marker=PAYLOAD)
            if cls == "not-archive":
                assert case.not_clean and view.failed and not view.files, (case.case_id, view)
                reached += 1
            elif view.marked or case.expected:
                reached += 1
        share = 0.2 if cls == "mutation" else 0.6
        assert reached >= share * len(indexes), (
            f"{cls}: the payload reaches pip in {reached} of {len(indexes)} cases"
        )


def _newer_python() -> str | None:
    """An interpreter of CPython 3.12+ (whose ``zipfile`` reads the 0x7075 name), if one is at hand."""
    candidates = [*ORACLE_PYTHONS, "python3.14", "python3.13", "python3.12"]
    candidates += sorted(
        glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python")), reverse=True
    )
    for candidate in candidates:
        exe = shutil.which(candidate) or candidate
        try:
            out = subprocess.run(
                [exe, "-c", "import sys; print(sys.version_info >= (3, 12))"], capture_output=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip() == b"True":
            return exe
    return None


def test_expected_names_are_what_a_newer_python_writes() -> None:
    """The generator's ``expected`` 0x7075 names are not made up: CPython 3.12+ writes exactly them."""
    python = _newer_python()
    if python is None:
        pytest.skip("no CPython 3.12+ interpreter found (set DFH_ORACLE_PYTHONS)")
    cases = [case for case in _cases_of("zip-names")[:150] if case.expected]
    assert cases
    views = _other_pythons(cases, [python])
    for case, view in zip(cases, views, strict=True):
        files = set(view[python].files)
        assert all(item in files for item in case.expected), (case.case_id, case.variant, view[python])
