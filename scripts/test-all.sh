#!/usr/bin/env bash
# Runs every test of the project, installing what the tests need first.
# Usage: bash scripts/test-all.sh   (this is the command README.md names and .ci/run calls)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies (PyPI: msgpack, pytest)"
python3 -m pip install --quiet --disable-pip-version-check msgpack pytest 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages msgpack pytest

echo "== formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== Rust unit, property and integration tests"
cargo build --workspace --quiet
cargo test --workspace

echo "== Python client against a live node"
TROUPE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/troupe" python3 -m pytest -q clients/python
