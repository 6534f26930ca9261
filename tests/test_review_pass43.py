"""Review pass 43: pip's hash-checking mode and ``require-hashes`` as pip takes them. A ``--hash`` or a
``--require-hashes`` line in one ``-R`` file turns the mode on for every file (whichever comes first); an
``[install]`` key of any pip configuration file wins over a ``[global]`` one of any other.

Real files, the fake index on 127.0.0.1, the CLI; real ``pip download`` says what pip does. Each test sets
its PIP_* variables itself (``conftest`` clears the machine's).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.pypi import FakeIndex, wheel, write
from tests.test_find_links import CLEAN, scan

PIP_INSTALL = [
    sys.executable,
    "-m",
    "pip",
    "install",
    "--dry-run",
    "--ignore-installed",
    "--no-deps",
    "--no-cache-dir",
]


def pip_install(
    requirements: list[Path], index: FakeIndex, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Real ``pip install --dry-run`` of every ``-r`` file from ``index`` (pip's settings: ``env`` only;
    ``install``, not ``download``: pip reads its ``[install]`` section for that command only)."""
    files = [arg for path in requirements for arg in ("-r", str(path))]
    return subprocess.run(
        [*PIP_INSTALL, "--index-url", index.url, *files],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PIP_DISABLE_PIP_VERSION_CHECK": "1", **env},
    )


@pytest.mark.parametrize("option", ["--hash", "--require-hashes"])
@pytest.mark.parametrize("hashed_first", [False, True])
def test_hash_checking_mode_of_one_requirements_file_covers_every_file(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path, option: str, hashed_first: bool
) -> None:
    """pip turns hash-checking mode on for all its requirements once any has ``--hash`` (or a file has
    ``--require-hashes``): ``-r plain.txt -r hashed.txt`` is refused either way round. ``scan`` checked each
    file alone, or only the files after a ``--require-hashes`` line: ``pkg==1.0`` without a hash was
    scanned (exit 0)."""
    fake_index.add("pkg", wheel("pkg", "1.0", CLEAN))
    name, content = wheel("other", "1.0", CLEAN)
    fake_index.add("other", (name, content))
    sha256 = hashlib.sha256(content).hexdigest()
    plain = write(tmp_path / "plain.txt", b"pkg==1.0\n")
    head = b"--require-hashes\n" if option == "--require-hashes" else b""
    hashed = write(tmp_path / "hashed.txt", head + f"other==1.0 --hash=sha256:{sha256}\n".encode())
    files = [hashed, plain] if hashed_first else [plain, hashed]
    pip = pip_install(files, fake_index, {"PIP_CONFIG_FILE": "/dev/null"})
    assert pip.returncode != 0 and "Hashes are required in --require-hashes mode" in pip.stderr, pip.stderr
    options = [a for path in files for a in ("-R", path)]
    result, _ = scan(*options, "-r", rules_dir, "--index-url", fake_index.url, env={})
    assert result.exit_code == 2, result.output
    assert f"{plain}:1" in result.stderr and "hash-checking mode" in result.stderr
    assert f"{option} " in result.stderr and str(hashed) in result.stderr  # what turned it on, and where


def test_an_install_section_of_any_pip_conf_wins_over_a_global_one(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    """pip merges its configuration files, then applies every ``[global]`` key and then every ``[install]``
    one: ``require-hashes = true`` under ``[install]`` in ``~/.pip/pip.conf`` holds though the later
    ``~/.config/pip/pip.conf`` says ``false`` under ``[global]``. ``scan`` took each file's sections alone,
    so the later file turned the mode off and an unhashed pin was scanned (exit 0)."""
    fake_index.add("pkg", wheel("pkg", "1.0", CLEAN))
    home = tmp_path / "home"
    legacy = write(home / ".pip" / "pip.conf", b"[install]\nrequire-hashes = true\n")
    write(home / ".config" / "pip" / "pip.conf", b"[global]\nrequire-hashes = false\n")
    requirements = write(tmp_path / "requirements.txt", b"pkg==1.0\n")
    pip = pip_install([requirements], fake_index, {"HOME": str(home)})
    assert pip.returncode != 0 and "Hashes are required in --require-hashes mode" in pip.stderr, pip.stderr
    env: dict[str, str | None] = {"HOME": str(home), "PIP_CONFIG_FILE": None, "XDG_CONFIG_HOME": None}
    result, _ = scan("-R", requirements, "-r", rules_dir, "--index-url", fake_index.url, env=env)
    assert result.exit_code == 2, result.output
    assert f"require-hashes ({legacy})" in result.stderr and f"{requirements}:1" in result.stderr
    # The other way round (false under [install], true under [global]) both take the file.
    write(legacy, b"[install]\nrequire-hashes = false\n")
    write(home / ".config" / "pip" / "pip.conf", b"[global]\nrequire-hashes = true\n")
    assert pip_install([requirements], fake_index, {"HOME": str(home)}).returncode == 0
    result, _ = scan("-R", requirements, "-r", rules_dir, "--index-url", fake_index.url, env=env)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("line", "taken"),
    [
        ("pkg @ https://files.example/pkg-1.0-py3-none-any.whl --hash=sha256:{h}", True),
        ("https://files.example/pkg-1.0-py3-none-any.whl --hash=sha256:{h}", True),
        ("pkg @ https://files.example/pkg-1.0-py3-none-any.whl", False),
        ("git+https://git.example/pkg.git#egg=pkg --hash=sha256:{h}", False),
        ("-e ./local", False),
    ],
)
def test_a_url_with_hashes_is_taken_in_hash_checking_mode(tmp_path: Path, line: str, taken: bool) -> None:
    """pip takes a URL or file requirement with --hash in hash-checking mode (checked with pip download);
    the whole file was refused (exit 2), so a hash-pinned file with one direct URL could not be scanned.
    Taken, it is skipped as any URL requirement (exit 3 unless --allow-skipped); without hashes, a VCS
    checkout or an editable, pip refuses it still."""
    from dragonfly_hybrid.pypi.requirements import RequirementsError, read_pins

    digest = hashlib.sha256(b"x").hexdigest()
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(line.format(h=digest) + f"\nfoo==1.0 --hash=sha256:{digest}\n")
    if taken:
        pins = read_pins([requirements])
        assert [p.name for p in pins.pins] == ["foo"] and len(pins.skipped) == 1
    else:
        with pytest.raises(RequirementsError, match="hash-checking mode"):
            read_pins([requirements])
