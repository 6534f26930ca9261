#!/usr/bin/env bash
# Every test of the project: installs the package in editable mode with its test extras, then
# runs the Rust core's tests and the Python suite. CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

# The yara-x crate is heavy to build: keep one target directory outside the checkout so that
# later runs (and fresh clones) reuse it. cargo test and the wheel build share its release deps.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dragonfly-hybrid/target}"

python -m pip install --quiet --upgrade maturin
python -m pip install --quiet --no-build-isolation -e '.[test]'
cargo test --release -p dragonfly-core
python -m pytest

# Last, so that the test results come first: the release wheel, built and smoke-tested by the same script
# as the Dockerfile's builder stage. It reuses the target directory above (about a minute).
bash scripts/build-wheel.sh
