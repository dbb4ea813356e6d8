#!/usr/bin/env bash
# Runs every check and test of the project on a fresh machine: formatting, clippy, the chart
# lint, unit and property tests, and the integration tests against a real local control plane
# (built from Go modules on first use and cached outside the checkout) and a real PostgreSQL
# server (installed from Debian's packages on first use).
#
#   hack/test.sh            everything
#   hack/test.sh -- ARGS    everything, passing ARGS to `cargo test` (e.g. a test name filter)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

step() { printf '\n==> %s\n' "$*" >&2; }

command -v cargo >/dev/null || { echo "test: cargo is missing: install Rust with rustup (https://rustup.rs)" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy

step "control plane binaries (cached after the first build)"
BIN_DIR=$(hack/build-controlplane.sh)
export PATH="$BIN_DIR:$PATH"

step "PostgreSQL for the user-service tests"
TEST_DATABASE_URL=$(hack/postgres.sh start)
export TEST_DATABASE_URL
trap 'hack/postgres.sh stop >/dev/null 2>&1 || true' EXIT

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings

step "helm lint charts/authkeyring"
helm lint charts/authkeyring

step "cargo test"
cargo test --all-targets --locked --no-fail-fast "${@:2}"
