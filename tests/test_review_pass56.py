"""Red-team pass 56: review of pip 26's release control, ``--no-require-hashes`` and the version a pin reports
(this session's b884cef, eb7fb87, eb8d1e7), and pip's per-requirement ``-C``/``--config-settings``.

What pip does with ``-C`` was checked by hand with pip 23.2 (CI's) and 26.3 (``pip download`` of a
requirements file): both take ``foo==1.0 --config-settings key=value``, ``-C key=value``,
``-Ckey=value``, the option repeated, on a ``--hash`` line (hash-checking mode on, the file its hash allows
downloaded), and an option line ``--config-settings key=value`` (ignored); both refuse ``-C keyvalue``
("Arguments to -C must be of the form KEY=VAL") and a ``-C`` without a value."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from pathlib import Path

import dragonfly_hybrid
import pytest

from tests.fakes.pypi import FakeIndex, sdist, wheel
from tests.test_find_links import BAD, CLEAN, scan


@pytest.fixture
def index(fake_index: FakeIndex) -> tuple[FakeIndex, str]:
    """``pkg`` 1.0: a clean wheel and a malicious sdist; and the sha256 of the wheel."""
    pkg_wheel = wheel("pkg", "1.0", CLEAN)
    fake_index.add("pkg", pkg_wheel, sdist("pkg", "1.0", BAD))
    return fake_index, hashlib.sha256(pkg_wheel[1]).hexdigest()


def _scan_file(index: FakeIndex, rules_dir: Path, path: Path) -> tuple[int, list[str], str]:
    result, report = scan("-R", path, "-r", rules_dir, "--index-url", index.url, env={})
    names = sorted(d["name"] for t in report.get("targets", []) for d in t["distributions"])
    return result.exit_code, names, result.stderr


@pytest.mark.parametrize(
    "line",
    [
        "pkg==1.0 --config-settings key=value",
        "pkg==1.0 -C key=value",
        "pkg==1.0 -Ckey=value --config-settings=other=x --config-settings key=y",
        "--config-settings key=value\npkg==1.0",
    ],
)
def test_a_config_settings_option_is_read_as_pip_reads_it(
    index: tuple[FakeIndex, str], tmp_path: Path, rules_dir: Path, line: str
) -> None:
    """pip 23.1+ takes -C/--config-settings (how it builds an sdist, not what it fetches): the file was
    refused whole (exit 2, an unknown option to pip 22's parser); now the release is scanned, every file."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(line + "\n")
    code, names, stderr = _scan_file(index[0], rules_dir, requirements)
    assert code == 1, stderr  # the sdist's marker found
    assert names == ["pkg-1.0-py3-none-any.whl", "pkg-1.0.tar.gz"]


def test_a_config_settings_option_on_a_hashed_line_keeps_hash_checking(
    index: tuple[FakeIndex, str], tmp_path: Path, rules_dir: Path
) -> None:
    """On a --hash line (hash-checking mode on), as pip 23.2 and 26.3: only the file the hash allows."""
    fake, digest = index
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"pkg==1.0 -C key=value --hash=sha256:{digest}\n")
    code, names, stderr = _scan_file(fake, rules_dir, requirements)
    assert code == 0, stderr
    assert names == ["pkg-1.0-py3-none-any.whl"]


@pytest.mark.parametrize("option", ["-C keyvalue", "--config-settings=keyvalue", "-C"])
def test_a_config_settings_option_pip_refuses_is_a_usage_error(
    index: tuple[FakeIndex, str], tmp_path: Path, rules_dir: Path, option: str
) -> None:
    """pip refuses a value without ``=`` ("must be of the form KEY=VAL") and a missing one: exit 2, naming
    the line, no traceback."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"pkg==1.0 {option}\n")
    code, _, stderr = _scan_file(index[0], rules_dir, requirements)
    assert code == 2
    assert f"requirements.txt:1: cannot parse 'pkg==1.0 {option}'" in stderr
    assert "KEY=VAL" in stderr or "requires 1 argument" in stderr
    assert "Traceback" not in stderr


# Run in a child: the parser's option lists are process-wide, and these tests need them as first imported.
_CHILD = """
import sys, threading, time
from pathlib import Path
import pip_requirements_parser as parser
from dragonfly_hybrid.pypi.pipconfig import PipSettings
from dragonfly_hybrid.pypi.requirements import RequirementsError, read_pins

class SlowList(list):
    # A thread switch inside the first teaching of the parser, as the GIL may make one.
    def append(self, item):
        super().append(item)
        time.sleep(0.05)

{setup}
results = []

def read():
    try:
        results.append(read_pins([Path(sys.argv[1])], PipSettings()).settings.release_control.only_final)
    except RequirementsError as err:
        results.append(str(err))

threads = [threading.Thread(target=read) for _ in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(sorted(map(str, results)))
"""


def _read_in_child(tmp_path: Path, setup: str) -> str:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("--only-final pkg\n--no-require-hashes\npkg==1.0\n")
    script = _CHILD.replace("{setup}", textwrap.dedent(setup))
    # The package this test imports (the one under test), then the repository (for ``tests``).
    env = {"PYTHONPATH": f"{Path(dragonfly_hybrid.__file__).parents[1]}:{Path(__file__).parents[1]}"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(requirements)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_threads_reading_requirements_at_once_teach_the_parser_once(tmp_path: Path) -> None:
    """Two threads (the node's jobs, watch) both saw the parser untaught and both added pip 26's options:
    every line then failed (optparse's conflicting option strings)."""
    out = _read_in_child(tmp_path, "parser.SUPPORTED_OPTIONS = SlowList(parser.SUPPORTED_OPTIONS)")
    assert out == str(["frozenset({'pkg'})"] * 4)


def test_a_parser_that_knows_some_of_pip_26s_options_is_taught_the_others(tmp_path: Path) -> None:
    """A parser that knows --no-require-hashes already (a newer pip-requirements-parser, or one taught by
    another module first) was taken to know them all: --only-final and -C stayed unknown (refused)."""
    setup = """
        import optparse
        parser.SUPPORTED_OPTIONS.append(
            lambda: optparse.Option("--no-require-hashes", dest="no_require_hashes", action="store_true")
        )
        parser.SUPPORTED_OPTIONS_DEST.append("no_require_hashes")
    """
    out = _read_in_child(tmp_path, setup)
    assert out == str(["frozenset({'pkg'})"] * 4)
