#!/usr/bin/env bash
# Every test of the project: installs the package in editable mode with its test extras, then
# runs the Rust core's tests and the Python suite. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The yara-x crate is heavy to build: keep one target directory outside the checkout so that
# later runs (and fresh clones) reuse it. cargo test and the wheel build share its release deps.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dragonfly-hybrid/target}"

python -m pip install --quiet --upgrade maturin

# The HTML report's tests run in headless Chromium (tests/test_html_report.py). Install Debian's when it
# is missing and apt-get can run (as root); elsewhere those tests skip and say why. With its recommended
# packages (fonts-liberation): the reference screenshot was taken with them.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium for the HTML report's browser tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
python -m pip install --quiet --no-build-isolation -e '.[test]'

# Lint first: cheap, and a failure names the file.
cargo fmt --all -- --check
cargo clippy --release -p dragonfly-core -p dragonfly-hybrid-python --all-targets -- -D warnings
python -m ruff check python tests bench scripts
python -m ruff format --check python tests bench scripts
python -m mypy python/dragonfly_hybrid

cargo test --release -p dragonfly-core

# The differential tests (tests/test_differential.py) compare the engine with what CPython's tarfile
# and zipfile unpack. pip supports CPython 3.9 to 3.14 and their readers differ: every other such
# interpreter found on this machine is an oracle too (none is installed for this).
if [ -z "${DFH_ORACLE_PYTHONS+set}" ]; then
    DFH_ORACLE_PYTHONS=""
    for version in 3.9 3.10 3.12 3.13 3.14; do
        for candidate in "/usr/bin/python$version" "$HOME"/.pyenv/versions/"$version".*/bin/python3; do
            if [ -x "$candidate" ]; then
                DFH_ORACLE_PYTHONS="$DFH_ORACLE_PYTHONS $candidate"
                break
            fi
        done
    done
    export DFH_ORACLE_PYTHONS
    echo "differential oracles besides $(python --version):${DFH_ORACLE_PYTHONS:- none}"
fi
python -m pytest

# Last, so that the test results come first: the release wheel, built and smoke-tested by the same script
# as the Dockerfile's builder stage. It reuses the target directory above (about a minute).
bash scripts/build-wheel.sh
