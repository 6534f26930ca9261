#!/usr/bin/env bash
# Build the release wheel into dist/ with maturin, then install it into a throwaway virtual environment and
# smoke-test it: `dragonfly-hybrid --version` must work and scanning the bundled demo package must exit 1
# with findings. Any failure stops the script with a message and a non-zero exit.
#
# The Dockerfile's builder stage runs this script, and so does CI (scripts/test.sh), so CI exercises the
# image's build steps. Needs maturin (`python -m pip install 'maturin>=1.8,<2'`) and a Rust toolchain; the
# smoke test installs the wheel's dependencies from the package index.
#
# Environment: PYTHON (default python, as in scripts/test.sh); CARGO_TARGET_DIR (default
# ~/.cache/dragonfly-hybrid/target, the cache scripts/test.sh uses: another directory means a full YARA-X
# rebuild, ~12 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/dragonfly-hybrid/target}"
PYTHON="${PYTHON:-python}"

die() {
    echo "build-wheel: FAILED: $*" >&2
    exit 1
}

"$PYTHON" -m maturin --version >/dev/null 2>&1 ||
    die "maturin is not installed for $PYTHON (python -m pip install 'maturin>=1.8,<2')"

# Only the wheel built now may be in dist/, so that exactly that one is installed below.
rm -f dist/dragonfly_hybrid-*.whl
echo "build-wheel: maturin build --release --locked --out dist (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
"$PYTHON" -m maturin build --release --locked --out dist --interpreter "$PYTHON"

shopt -s nullglob
wheels=(dist/dragonfly_hybrid-*.whl)
shopt -u nullglob
[ "${#wheels[@]}" -eq 1 ] || die "expected one wheel in dist/, found ${#wheels[@]}"
wheel="$repo/${wheels[0]}"
echo "build-wheel: built ${wheels[0]}"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/dragonfly-wheel-check.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$wheel" ||
    die "installing $wheel into a fresh virtual environment"

# Run from outside the checkout so that nothing can be imported from the source tree.
cd "$tmp"
installed="$("$tmp/venv/bin/python" -c 'import dragonfly_hybrid._core, os; print(os.path.dirname(dragonfly_hybrid._core.__file__))')" ||
    die "the installed package does not import"
case "$installed" in
"$tmp/venv/"*) ;;
*) die "dragonfly_hybrid was imported from $installed, not from the wheel" ;;
esac

version="$("$tmp/venv/bin/dragonfly-hybrid" --version)" || die "dragonfly-hybrid --version exited $?"
case "$version" in
"dragonfly-hybrid "*) echo "build-wheel: $version" ;;
*) die "unexpected --version output: $version" ;;
esac

set +e
report="$("$tmp/venv/bin/dragonfly-hybrid" scan --format json "$repo/examples/evil-demo-0.1.tar.gz")"
status=$?
set -e
[ "$status" -eq 1 ] || die "scanning examples/evil-demo-0.1.tar.gz exited $status, expected 1 (findings)"
"$tmp/venv/bin/python" -c '
import json, sys
report = json.load(sys.stdin)
targets = report["targets"]
assert len(targets) == 1 and targets[0]["verdict"] == "findings", targets
target = targets[0]
assert target["score"] > 0 and target["rules_matched"], target
print("build-wheel: demo scan: findings, score %d, rules %s" % (target["score"], ", ".join(target["rules_matched"])))
' <<<"$report" || die "the demo scan did not report findings"

# The HTML page inlines its style sheet and script, package data files: the wheel must carry them.
set +e
"$tmp/venv/bin/dragonfly-hybrid" scan --format html -o "$tmp/demo.html" "$repo/examples/evil-demo-0.1.tar.gz"
status=$?
set -e
[ "$status" -eq 1 ] && grep -q 'id="report-data"' "$tmp/demo.html" && grep -q 'drawRuleChart' "$tmp/demo.html" ||
    die "the demo scan's HTML report (exit $status) lacks its data or its script: page.js/page.css not in the wheel?"
echo "build-wheel: demo scan as HTML: page with its data, style sheet and script"

# The image's command: without credentials the node must get as far as checking its configuration and
# stop with exit 2 naming the missing variables (clean environment, no .env in this directory).
set +e
refusal="$(env -i PATH="$tmp/venv/bin:/usr/bin:/bin" HOME="$tmp" "$tmp/venv/bin/dragonfly-hybrid" node 2>&1)"
status=$?
set -e
[ "$status" -eq 2 ] && grep -q DRAGONFLY_CLIENT_ID <<<"$refusal" ||
    die "dragonfly-hybrid node without credentials exited $status, expected 2 naming DRAGONFLY_CLIENT_ID: $refusal"
echo "build-wheel: node without credentials refuses to start (exit 2), as it should"

echo "build-wheel: OK: $wheel"
