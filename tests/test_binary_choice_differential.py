"""Which release ``scan NAME`` picks under pip's ``no-binary``, ``only-binary``, ``prefer-binary`` and
``ignore-requires-python``, against pip itself (red-team pass 49; pass 48's differential with the settings).

Random projects are published on the fake index, each built around a case where these settings change
pip's choice (a newest release of sdists only over an older one with a wheel; a newest of wheels only over
an older sdist; a newest whose Requires-Python excludes the running Python), with pre-releases, yanked
files and random files mixed in. Every job sets random ``PIP_ONLY_BINARY``/``PIP_NO_BINARY`` (the project's
name spelled in other ways, ``:all:``, ``:none:``, other projects' names, comma lists of them) and
``PIP_PREFER_BINARY``/``PIP_IGNORE_REQUIRES_PYTHON`` (pip booleans, on or off) for ``pip download
--no-deps``; our side reads the same variables with :func:`pip_settings`. The judging rule is pass 48's:
wherever pip downloads a file, we must list it among the files ``scan`` scans and, for a bare name, report
pip's version; where pip downloads and we refuse, that is a failure too (scan would refuse what pip
installs); where pip finds nothing, what we pick is not judged.

* ``DFH_BINARY_CASES``: projects per run (default 60: about 30 s on 2 cores, pip being the cost);
* ``DFH_BINARY_SEED``: the run's seed (default 0), printed with every failure; odd seeds serve PEP 503
  HTML project pages, even ones PEP 691 JSON;
* ``DFH_BINARY_PIP``: the path of another pip to ask (a wheel or a source tree put first on ``sys.path``,
  such as pip 26.3's wheel), the installed pip 23.2 by default.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from pathlib import Path

from dragonfly_hybrid.pypi.index import PyPIClient, PyPIError, target_python
from dragonfly_hybrid.pypi.pipconfig import pip_settings
from packaging.version import Version

from tests.fakes.pypi import FakeFile, FakeIndex, tar_gz_bytes, wheel
from tests.test_version_choice_differential import (
    BACKEND,
    OTHER_TAGS,
    PIP_DOWNLOAD,
    PIP_ENV,
    PYPROJECT,
    Project,
    _describe,
    _project,
    _spellings,
    _version,
    resolved,
    run_pip,
)

CASES = int(os.environ.get("DFH_BINARY_CASES", "60"))
SEED = int(os.environ.get("DFH_BINARY_SEED", "0"))
PIP = os.environ.get("DFH_BINARY_PIP", "")

BASES = ["0.9", "1.0", "1.1", "2.0", "2.0.1", "3.0", "10.0"]
PRE = ["a1", "b2", "rc1", ".dev0"]
# Files of one release: "sdist", "wheel" (pure Python), "other" (a wheel for another platform or Python 2).
KINDS = [("sdist",), ("wheel",), ("sdist", "wheel"), ("other",), ("sdist", "other"), ("wheel", "other")]
EXCLUDING = [">=3.13", "<3", "==2.7.*", ">=3.12,<4"]  # Requires-Python leaving out 3.11 (3.8 too, but >=3.12)
SCENARIOS = ["sdist-newest", "wheel-newest", "requires-python-newest", "random"]
FLAGS = ["1", "0", "true", "false", "yes", "no", "on", "off"]


def _make(rng: random.Random, name: str, version: str, kind: str) -> FakeFile:
    spelled = rng.choice(_spellings(name))
    if kind == "sdist":
        stem = f"{spelled}-{version}"
        members = {"backend.py": BACKEND, "pyproject.toml": PYPROJECT, "NV": f"{name} {version}".encode()}
        content = tar_gz_bytes({f"{stem}/{path}": data for path, data in members.items()})
        return FakeFile(f"{stem}.tar.gz", content)
    filename, content = wheel(spelled.replace("-", "_"), version, {"m.py": b"pass\n"})
    if kind == "other":
        filename = filename.replace("py3-none-any", rng.choice(OTHER_TAGS))
    return FakeFile(filename, content)


def _binary_project(rng: random.Random, number: int, scenario: str) -> Project:
    """A project whose newest final release is the ``scenario``'s case, with older releases that pip would
    take instead under some setting; sometimes a newer pre-release, yanked files, random Requires-Python."""
    if scenario == "random":
        return _project(rng, number)
    project = Project(f"proj-{number}-x")
    bases = sorted(rng.sample(BASES, rng.randint(2, 4)), key=Version)
    releases: list[tuple[str, tuple[str, ...], str | None]] = []
    for base in bases[:-1]:
        kinds = rng.choice(KINDS)
        if scenario == "sdist-newest" and rng.random() < 0.7:
            kinds = ("wheel",)
        elif scenario == "wheel-newest" and rng.random() < 0.7:
            kinds = ("sdist",)
        version = base + (rng.choice(PRE) if rng.random() < 0.2 else "")
        releases.append((version, kinds, rng.choice([None, None, ">=3.8", rng.choice(EXCLUDING)])))
    newest = {"sdist-newest": ("sdist",), "wheel-newest": rng.choice([("wheel",), ("wheel", "other")])}
    excluding = rng.choice(EXCLUDING) if scenario == "requires-python-newest" else None
    releases.append((bases[-1], newest.get(scenario) or rng.choice(KINDS), excluding))
    if rng.random() < 0.3:  # a pre-release newer than everything
        releases.append((f"{bases[-1]}.1{rng.choice(PRE)}", rng.choice(KINDS), None))
    for version, kinds, requires_python in releases:
        project.versions.append(version)
        for kind in kinds:
            file = _make(rng, project.name, version, kind)
            file.yanked = rng.random() < 0.15
            file.requires_python = requires_python if rng.random() < 0.9 else None
            project.files.append(file)
            project.version_of[file.filename] = version
    return project


def _names(rng: random.Random, name: str, others: list[str]) -> str:
    """A ``no-binary``/``only-binary`` value naming ``name`` (or not) as pip users write them."""
    spelled = rng.choice([*_spellings(name), name.replace("-", "."), name.upper()])
    other = rng.choice(others)
    return rng.choice(
        [
            spelled,
            spelled,
            ":all:",
            ":none:",
            other,
            f"{other},{spelled}",
            f"{spelled},:none:",
            f":none:,{spelled}",
            f":all:,{other}",
            f":all:,:none:,{spelled}",
            f"{spelled},:all:",
            f"{other}, {spelled}",  # pip strips no name: " proj-1-x" names no project
            f"{other},:ALL:",  # a name to pip (canonical ":all:"), so every project, but the other list stays
            f":None:,{spelled}",  # a name, not :none:
        ]
    )


def _binary_env(rng: random.Random, name: str, others: list[str]) -> dict[str, str]:
    """Random ``PIP_*`` binary settings for one job (an order of keys pip and we both read them in)."""
    env: dict[str, str] = {}
    keys = ["PIP_ONLY_BINARY", "PIP_NO_BINARY"]
    rng.shuffle(keys)
    for key in keys:
        if rng.random() < 0.5:
            env[key] = _names(rng, name, others)
    for key in ("PIP_PREFER_BINARY", "PIP_IGNORE_REQUIRES_PYTHON"):
        if rng.random() < 0.45:
            env[key] = rng.choice(FLAGS)
    return env


def test_scan_picks_the_release_pip_installs_under_its_binary_settings(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    scenarios = [SCENARIOS[n % len(SCENARIOS)] for n in range(CASES)]
    projects = [_binary_project(rng, n, scenario) for n, scenario in enumerate(scenarios)]
    names = [p.name for p in projects]
    scenario_of = dict(zip(names, scenarios, strict=True))
    with FakeIndex() as index:
        index.faults.html_only = SEED % 2 == 1
        for project in projects:
            index.add(project.name, *project.files)
        cases: list[tuple[Project, str | None, str | None, dict[str, str], Path]] = []
        jobs: list[tuple[list[str], dict[str, str]]] = []
        for project in projects:
            pinned = rng.choice(project.versions)
            for version, python in [(None, None), (None, None), (None, "3.8"), (pinned, None)]:
                env = _binary_env(rng, project.name, names)
                dest = tmp_path / f"d{len(cases)}"
                spec = project.name if version is None else f"{project.name}=={version}"
                args = [*PIP_DOWNLOAD, "-d", str(dest), "--index-url", index.url]
                args += [*(["--python-version", python] if python else []), spec]
                cases.append((project, version, python, env, dest))
                jobs.append((args, {**PIP_ENV, **env}))
        results = run_pip(tmp_path, jobs, pip_path=PIP)
        problems: list[str] = []
        counts: Counter[str] = Counter()
        for (project, version, python, env, dest), (code, _) in zip(cases, results, strict=True):
            spec = project.name if version is None else f"{project.name}=={version}"
            settings = pip_settings(env={**env, "PIP_CONFIG_FILE": "/dev/null"}, home=tmp_path)
            client = PyPIClient(
                index.url,
                python_version=target_python(python),
                retries=1,
                candidate_files=settings.candidate_files,
            )
            release, ours = resolved(client, project.name, version)
            downloaded = sorted(p.name for p in dest.iterdir()) if dest.exists() else []
            if code != 0 or len(downloaded) != 1:
                counts["pip finds nothing"] += 1
                continue  # pip installs nothing: what we pick is not judged
            (picked,) = downloaded
            pip_version = project.version_of[picked]
            same = release is not None and (
                version is not None or _version(pip_version) == _version(release.version)
            )
            if release is None or picked not in {f.filename for f in release.files} or not same:
                counts["refused" if release is None else "differs"] += 1
                problems.append(
                    f"{spec} (python {python or 'running'}) {env}: pip installs {picked} ({pip_version}); "
                    f"we scan {ours}\n{_describe(project)}"
                )
            else:
                counts["judged"] += 1
                counts[f"picked {'an sdist' if picked.endswith('.tar.gz') else 'a wheel'}"] += 1
                if _version(pip_version) != max(filter(None, map(_version, project.versions))):
                    counts["pip picks an older version"] += 1
                try:  # the cases where the settings matter: pip's pick is not the one without them
                    default = PyPIClient(index.url, python_version=target_python(python), retries=1)
                    unset = picked not in {f.filename for f in default.resolve(project.name, version).files}
                except PyPIError:
                    unset = True
                counts[f"settings change the pick: {scenario_of[project.name]}"] += unset
    report = f"DFH_BINARY_SEED={SEED} DFH_BINARY_CASES={CASES} DFH_BINARY_PIP={PIP!r} {dict(counts)}"
    print(report)
    assert not problems, report + "\n" + "\n".join(problems)
    # The generator's cases must be there: judged picks of both formats, older releases picked over newer.
    assert counts["judged"] >= CASES * 2, f"too few specs where pip and we both picked: {report}"
    assert counts["picked an sdist"] and counts["picked a wheel"], report
    assert counts["pip picks an older version"] >= CASES // 4, report
    assert all(counts[f"settings change the pick: {s}"] for s in SCENARIOS[:3]), report
