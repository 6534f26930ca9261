"""Review pass 60 of ``scan -R`` with hashes (pip's ``filter_unallowed_hashes`` fallback, bytes checked
against the requirement's hashes only): what the error says when no candidate's bytes are allowed, and a
digest in a file's URL, which pip takes over a JSON page's ``hashes``.

Against the fake index on 127.0.0.1, through the CLI.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dragonfly_hybrid.cli import app
from typer.testing import CliRunner

from tests.fakes.pypi import FakeFile, FakeIndex, sdist, wheel
from tests.test_requirements_end_to_end_pip import _pip_and_scan


def test_a_stale_hash_error_names_the_downloaded_bytes_digest_not_only_the_listed_one(
    fake_index: FakeIndex, tmp_path: Path, rules_dir: Path
) -> None:
    # The index lists a digest the bytes do not have; the requirement's hash is stale. pip downloads the
    # candidate (no file lists an allowed digest) and reports the bytes' digest ("Got ..."): the digest to
    # put in the requirement is that one, not the index's.
    name, content = sdist("pkg", "1.0", {"setup.py": b"pass\n"})
    fake_index.add("pkg", FakeFile(name, content, listed_sha256="ab" * 32))
    req = tmp_path / "requirements.txt"
    req.write_text("pkg==1.0 --hash=sha256:" + "0" * 64 + "\n")
    result = CliRunner().invoke(
        app,
        ["scan", "-R", str(req), "-r", str(rules_dir), "--index-url", fake_index.url, "-f", "json", "-q"],
        catch_exceptions=False,
    )
    assert result.exit_code == 3, result.output
    (target,) = json.loads(result.stdout)["targets"]
    error = target["error"]
    assert "no file of pkg==1.0 has a hash allowed" in error
    assert f"sha256:{hashlib.sha256(content).hexdigest()}" in error  # what the bytes have
    assert "sha256:" + "ab" * 32 in error  # what the index lists, as before
    assert not target["distributions"]


def test_a_digest_in_the_url_wins_over_the_json_pages_hashes_as_in_pip(tmp_path: Path) -> None:
    # pip (23.2 and 26.3: Link.__init__ merges the URL's `#sha256=` over `hashes`) sees the wheel's allowed
    # digest in its URL and installs it; scan read `hashes` only (a wrong digest), dropped the wheel as not
    # allowed (the sdist's allowed digest kept pip's fallback off) and called the release clean.
    sdist_name, sdist_bytes = sdist("pkg", "1.0", {"setup.py": b"pass\n"})
    wheel_name, wheel_bytes = wheel("pkg", "1.0", {"pkg/__init__.py": b"pass\n"})
    wheel_digest = hashlib.sha256(wheel_bytes).hexdigest()
    listed = FakeFile(
        wheel_name,
        wheel_bytes,
        listed_sha256="ab" * 32,
        listed_url=f"../../files/pkg/{wheel_name}#sha256={wheel_digest}",
    )
    with FakeIndex() as index:
        index.add("pkg", FakeFile(sdist_name, sdist_bytes), listed)
        line = (
            f"pkg==1.0 --hash=sha256:{hashlib.sha256(sdist_bytes).hexdigest()} --hash=sha256:{wheel_digest}\n"
        )
        downloaded, code, scanned = _pip_and_scan(tmp_path, index, line)
    assert downloaded == [wheel_name]
    assert code == 0 and (wheel_name, wheel_digest) in scanned
