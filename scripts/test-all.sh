#!/usr/bin/env bash
# Runs every test of the project, installing what the tests need first.
# Usage: bash scripts/test-all.sh   (this is the command README.md names and .ci/run calls)
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== installing test dependencies (PyPI: msgpack, pytest, prometheus-client)"
python3 -m pip install --quiet --disable-pip-version-check msgpack pytest prometheus-client 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages msgpack pytest prometheus-client

# tests/integration/deploy.rs verifies and scores the systemd units with systemd-analyze
# (Debian package `systemd`; it is only installed, not booted). Without it that test skips.
if ! command -v systemd-analyze >/dev/null 2>&1; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null 2>&1 && { [ -z "$sudo" ] || command -v sudo >/dev/null 2>&1; }; then
    echo "== installing systemd (for systemd-analyze)"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq systemd >/dev/null \
      || echo "== could not install systemd: the systemd unit test will report SKIPPED"
  else
    echo "== no apt-get (or no root): systemd-analyze missing, the systemd unit test will report SKIPPED"
  fi
fi

echo "== formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "== Rust unit, property and integration tests"
cargo build --workspace --quiet
cargo test --workspace

echo "== Python client against a live node"
TROUPE_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/troupe" python3 -m pytest -q clients/python
