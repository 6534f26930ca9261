"""``scan -R`` end to end against ``pip download --no-deps -r`` (red-team pass 59).

A clean verdict means every byte pip would install was scanned: random projects are published on the fake
index (pass 48's generator: finals, pre-releases, local and legacy versions, yanked files, wheels for this and
other platforms, sdists, Requires-Python; upload times on JSON pages; now and then a digest listed wrong or
not at all), random requirements files are written (pins ``==``/``===``, ``--hash`` on some lines, extras,
markers, ``--pre``, ``--require-hashes``, ``-C k=v``, a nested ``-r`` and a ``-c`` file, hashes there too)
with random pip settings in the environment, and each case is given to ``dragonfly-hybrid scan -R FILE`` (a
real subprocess) and to ``pip download --no-deps -r FILE`` with the same environment. Wherever pip downloads
a file, ``scan`` must have scanned that file (by name and by SHA-256) or
refused (exit 2) or reported itself incomplete (exit 3); where pip downloads nothing, nothing is judged.

CI's pip is 23.2: it is the oracle unless ``DFH_E2E_PIP`` names another pip (the path put first on
``sys.path``, such as pip 26.3's wheel); with it, pip 26's options are generated too (``--all-releases``,
``--only-final``, ``--no-require-hashes`` lines, ``PIP_ALL_RELEASES``, ``PIP_ONLY_FINAL``,
``PIP_NO_REQUIRE_HASHES``, ``PIP_UPLOADED_PRIOR_TO``), which pip 23.2 refuses or ignores.

* ``DFH_E2E_CASES``: requirements files per run (default 30: about 25 s on 2 cores, pip being the cost);
* ``DFH_E2E_SEED``: the run's seed (default 59000), printed with every failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fakes.pypi import MARKER_RULE, FakeFile, FakeIndex, sdist, wheel
from tests.test_version_choice_differential import (
    LEGACY,
    PIP_DOWNLOAD,
    PIP_ENV,
    Project,
    _project,
    _spellings,
    run_pip,
)

CASES = int(os.environ.get("DFH_E2E_CASES", "30"))
SEED = int(os.environ.get("DFH_E2E_SEED", "59000"))
PIP_PATH = os.environ.get("DFH_E2E_PIP", "")
PIP26 = bool(PIP_PATH)
PACKAGE = Path(__file__).resolve().parents[1]


EXTRAS = ["", "", "", "[x]", "[x,y]"]
MARKERS = [
    "",
    "",
    "",
    "",
    "",
    '; python_version >= "3"',
    '; python_version < "3"',
    '; sys_platform == "win32"',
]
OPERATORS = ["==", "==", "==", "==", "==="]
TIMES = [
    "2024-01-01T00:00:00Z",
    "2024-06-01T12:00:00+00:00",
    "2024-06-01T12:00:00.5Z",
    "2025-01-01T00:00:00Z",
]
CUTOFFS = ["2024-06-01T12:00:00Z", "2024-06-01T12:00:00", "2024-06-01", "2024-06-01T14:00:00+02:00", "P1D"]


@dataclass
class Case:
    files: dict[str, str] = field(default_factory=dict)
    """File name (in the case's directory) -> text; ``req.txt`` is the one given to both."""
    env: dict[str, str] = field(default_factory=dict)


def _hashes(rng: random.Random, project: Project, version: str) -> list[str]:
    """``--hash`` options: mostly files of the pinned release, sometimes another's, sometimes sha512."""
    of_release = [f for f in project.files if project.version_of[f.filename] == version]
    pool = of_release if of_release and rng.random() < 0.9 else project.files
    chosen = rng.sample(pool, k=rng.randint(1, len(pool)))
    algorithm = "sha512" if rng.random() < 0.1 else "sha256"
    digests = [hashlib.new(algorithm, f.content).hexdigest() for f in chosen]
    return [f"--hash={algorithm}:{d.upper() if rng.random() < 0.1 else d}" for d in digests]


def _favoured(project: Project) -> str:
    """The release most lines pin: its first version not legacy, which most often has a wheel pip takes."""
    return next((v for v in project.versions if v not in LEGACY), project.versions[0])


def _pin(rng: random.Random, project: Project) -> str:
    version = _favoured(project) if rng.random() < 0.5 else rng.choice(project.versions)
    if rng.random() < 0.3:
        version = version.split("+")[0]
    if rng.random() < 0.1:
        version = {"1.0": "1.0.0", "1.0.0": "1", "2.0": "2.0.0"}.get(version, version)
    return version


def _requirement(rng: random.Random, project: Project, hashed: bool) -> str:
    version = _pin(rng, project)
    op = "===" if version in LEGACY else rng.choice(OPERATORS)  # pip 26 takes no legacy version after ==
    line = f"{rng.choice(_spellings(project.name))}{rng.choice(EXTRAS)}{op}{version}{rng.choice(MARKERS)}"
    if hashed:
        line += " " + " ".join(_hashes(rng, project, version))
    return line


def _names(rng: random.Random, projects: list[Project]) -> str:
    picked = [p.name for p in rng.sample(projects, k=rng.randint(1, 2))]
    return ",".join(rng.choice([*picked, ":all:", ":none:"]) for _ in range(rng.randint(1, 2)))


def _option(rng: random.Random, projects: list[Project]) -> str:
    options = ["--pre", "-C k=v", "--config-settings=a=b"]
    if PIP26:
        options += [f"--all-releases {_names(rng, projects)}", f"--only-final {_names(rng, projects)}"]
        options += ["--no-require-hashes"]
    return rng.choice(options)


def _case(rng: random.Random, projects: list[Project]) -> Case:
    case = Case()
    hashed = rng.random() < 0.35
    chosen = rng.sample(projects, k=rng.randint(1, 3))
    chosen += chosen[:1] if rng.random() < 0.15 else []  # two lines of one project: pip takes both
    main: list[str] = []
    nested: list[str] = []
    for project in chosen:
        # In hash mode, a line without hashes now and then (pip refuses the file: not judged).
        line = _requirement(rng, project, hashed and rng.random() < 0.9)
        (nested if rng.random() < 0.25 else main).append(line)
    for _ in range(rng.choice([0, 0, 1, 2])):
        (nested if rng.random() < 0.2 else main).insert(rng.randint(0, len(main)), _option(rng, projects))
    if hashed and rng.random() < 0.2:
        main.insert(0, "--require-hashes")
    if nested:
        case.files["sub.txt"] = "\n".join(nested) + "\n"
        main.append("-r sub.txt")
    if rng.random() < 0.2:
        project = rng.choice(projects)
        version = _pin(rng, project)
        hashes = " ".join(_hashes(rng, project, version)) if rng.random() < 0.3 else ""
        case.files["cons.txt"] = f"{project.name}=={version} {hashes}\n"
        main.append("-c cons.txt")
    case.files["req.txt"] = "\n".join(main) + "\n"
    settings = {"PIP_PRE": ["1", "0"], "PIP_REQUIRE_HASHES": ["1"]}
    if PIP26:
        settings |= {
            "PIP_ALL_RELEASES": [_names(rng, projects)],
            "PIP_ONLY_FINAL": [_names(rng, projects)],
            "PIP_NO_REQUIRE_HASHES": ["1"],
            "PIP_UPLOADED_PRIOR_TO": CUTOFFS,
        }
    for name, values in settings.items():
        if rng.random() < 0.12:
            case.env[name] = rng.choice(values)
    return case


def _publish(rng: random.Random, index: FakeIndex, projects: list[Project]) -> None:
    for project in projects:
        for file in index.add(project.name, *project.files):
            file.upload_time = rng.choice(TIMES)
            if rng.random() < 0.1:  # an index listing no digest, or another file's, for this file
                file.listed_sha256 = rng.choice(["", hashlib.sha256(rng.randbytes(8)).hexdigest()])


def _run_pip(work: Path, jobs: list[tuple[list[str], dict[str, str]]]) -> list[tuple[int, str]]:
    return run_pip(work, jobs, PIP_PATH)


def _scan(
    directory: Path, url: str, rules: Path, env: dict[str, str]
) -> tuple[int, set[tuple[str, str]], str]:
    """``scan -R req.txt``'s exit code, the ``(name, sha256)`` of the distributions it scanned, its stderr."""
    return scan_subprocess(["-R", str(directory / "req.txt")], directory, url, rules, env)


def scan_subprocess(
    args: list[str], directory: Path, url: str, rules: Path, env: dict[str, str]
) -> tuple[int, set[tuple[str, str]], str]:
    """``scan ARGS`` in a fresh process (this repository's package; pip's settings: ``env`` over
    :data:`PIP_ENV`): its exit code, the ``(name, sha256)`` of the distributions it scanned, its stderr."""
    out = directory / "report.json"
    full = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    full |= {**PIP_ENV, **env, "PYTHONPATH": f"{PACKAGE / 'python'}:{PACKAGE}"}
    args = ["scan", *args, "--index-url", url, "-f", "json", "-o", str(out), "-q"]
    done = subprocess.run(
        [sys.executable, "-m", "dragonfly_hybrid.cli", *args, "-r", str(rules)],
        capture_output=True,
        text=True,
        env=full,
        timeout=600,
    )
    scanned: set[tuple[str, str]] = set()
    if done.returncode in (0, 1):
        for target in json.loads(out.read_text())["targets"]:
            scanned |= {(d["name"], d["sha256"]) for d in target["distributions"]}
    return done.returncode, scanned, done.stderr


def _describe(projects: list[Project]) -> str:
    return "\n".join(
        f"    {f.filename} yanked={f.yanked} requires_python={f.requires_python!r} uploaded={f.upload_time}"
        for project in projects
        for f in project.files
    )


def differential(work: Path, seed: int, cases: int) -> tuple[list[str], int, int]:
    """Disagreements, cases where pip downloaded something, and those ``scan`` refused (exit 2 or 3)."""
    rng = random.Random(seed)
    projects = [_project(rng, n) for n in range(6)]
    for project in projects:  # a release pip can take on most projects: more cases where pip downloads
        version = _favoured(project)
        if rng.random() < 0.8 and version not in LEGACY:
            name, content = wheel(project.name.replace("-", "_"), version, {"m.py": b"pass\n"})
            if name not in project.version_of:
                project.files.append(FakeFile(name, content))
                project.version_of[name] = version
    rules = work / "rules"
    rules.mkdir()
    (rules / "marker.yar").write_text(MARKER_RULE)
    problems: list[str] = []
    judged = refused = 0
    with FakeIndex() as index:
        # Upload times are on JSON pages only (PEP 700): HTML pages where pip's uploaded-prior-to is unused.
        index.faults.html_only = not PIP26 and seed % 2 == 1
        _publish(rng, index, projects)
        generated = [_case(rng, projects) for _ in range(cases)]
        jobs: list[tuple[list[str], dict[str, str]]] = []
        for number, case in enumerate(generated):
            directory = work / f"c{number}"
            directory.mkdir()
            for name, text in case.files.items():
                (directory / name).write_text(text)
            args = [*PIP_DOWNLOAD, "-d", str(directory / "pip"), "--index-url", index.url]
            jobs.append(([*args, "-r", str(directory / "req.txt")], {**PIP_ENV, **case.env}))
        results = _run_pip(work, jobs)
        for number, (case, (pip_code, _)) in enumerate(zip(generated, results, strict=True)):
            directory = work / f"c{number}"
            code, scanned, stderr = _scan(directory, index.url, rules, case.env)
            if "Traceback" in stderr or code not in (0, 1, 2, 3):
                problems.append(f"case {number}: scan exits {code}: {stderr[-800:]}")
            downloads = directory / "pip"
            pip_files = {
                (p.name, hashlib.sha256(p.read_bytes()).hexdigest())
                for p in (downloads.iterdir() if downloads.exists() else [])
            }
            if pip_code != 0 or not pip_files:
                continue
            judged += 1
            if code in (2, 3):
                refused += 1
                continue
            missing = pip_files - scanned
            if missing:
                texts = "\n".join(
                    f"  {name}:\n" + textwrap.indent(text, "    ") for name, text in case.files.items()
                )
                problems.append(
                    f"case {number}: pip downloads {sorted(n for n, _ in missing)}, scan (exit {code}) "
                    f"scanned {sorted(n for n, _ in scanned)}\n  env {case.env}\n{texts}"
                )
    if problems:
        problems.append("projects:\n" + _describe(projects))
    return problems, judged, refused


def test_scan_r_scans_every_file_pip_downloads(tmp_path: Path) -> None:
    problems, judged, refused = differential(tmp_path, SEED, CASES)
    # The generator must give pip something to download in most cases, and scan must take most of those.
    assert judged >= CASES // 3, f"only {judged} cases where pip downloaded something: the generator broke"
    assert refused <= judged // 2, f"scan refused {refused} of {judged} cases pip takes"
    assert not problems, f"DFH_E2E_SEED={SEED} DFH_E2E_CASES={CASES}\n" + "\n".join(problems)


def test_the_judge_sees_a_file_scan_left_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The yardstick itself: were ``scan`` to leave the wheels out (pip mostly takes one), the run fails."""

    scan = _scan

    def dropping(
        directory: Path, url: str, rules: Path, env: dict[str, str]
    ) -> tuple[int, set[tuple[str, str]], str]:
        code, scanned, stderr = scan(directory, url, rules, env)
        return code, {file for file in scanned if not file[0].endswith(".whl")}, stderr

    monkeypatch.setattr(sys.modules[__name__], "_scan", dropping)
    problems, judged, _ = differential(tmp_path, SEED, 6)
    assert judged and problems, "a file left out went unseen"


def _pip_and_scan(
    work: Path, index: FakeIndex, requirements: str
) -> tuple[list[str], int, set[tuple[str, str]]]:
    """What pip downloads for ``requirements``, and ``scan -R``'s exit code and the files it scanned."""
    rules = work / "rules"
    rules.mkdir()
    (rules / "marker.yar").write_text(MARKER_RULE)
    (work / "req.txt").write_text(requirements)
    args = [*PIP_DOWNLOAD, "-d", str(work / "pip"), "--index-url", index.url, "-r", str(work / "req.txt")]
    assert _run_pip(work, [(args, PIP_ENV)])[0][0] == 0
    code, scanned, _ = _scan(work, index.url, rules, {})
    return sorted(p.name for p in (work / "pip").iterdir()), code, scanned


# pip's filter_unallowed_hashes keeps only the candidates whose listed digest is allowed, but when none's is,
# keeps every candidate and checks the bytes it downloads (against the line's hashes, not the index's digest);
# scan dropped a file whose listed digest was not allowed without downloading it (found at random: seeds
# 59002 with pip 23.2, 50 with pip 26.3).


def test_a_wheel_the_index_lists_a_wrong_digest_for_beside_an_sdist_listing_none(tmp_path: Path) -> None:
    """pip 23.2 and 26.3 install the wheel (its bytes match a hash of the line); scan scanned the sdist only
    and exited 0 (clean without the wheel), noting that the wheel's hash "matches no file"."""
    sdist_file = FakeFile(*sdist("pkg", "1.0", {"m.py": b"pass\n"}), listed_sha256="")
    wheel_file = FakeFile(*wheel("pkg", "1.0", {"m.py": b"pass\n"}), listed_sha256="0" * 64)
    with FakeIndex() as index:
        index.add("pkg", sdist_file, wheel_file)
        line = f"pkg==1.0 --hash=sha256:{sdist_file.sha256} --hash=sha256:{wheel_file.sha256}\n"
        downloaded, code, scanned = _pip_and_scan(tmp_path, index, line)
    assert downloaded == [wheel_file.filename]
    assert code in (2, 3) or (wheel_file.filename, wheel_file.sha256) in scanned


def test_a_hash_matching_the_bytes_of_a_file_the_index_lists_another_digest_for(tmp_path: Path) -> None:
    """pip installs it; scan refused it (exit 3, "pip would refuse to install it")."""
    file = FakeFile(*wheel("pkg", "1.0", {"m.py": b"pass\n"}), listed_sha256="0" * 64)
    with FakeIndex() as index:
        index.add("pkg", file)
        downloaded, code, scanned = _pip_and_scan(tmp_path, index, f"pkg==1.0 --hash=sha256:{file.sha256}\n")
    assert downloaded == [file.filename]
    assert (code, scanned) == (0, {(file.filename, file.sha256)})
