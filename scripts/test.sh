#!/usr/bin/env bash
# Sets up everything the tests need and runs them all:
#   services (PostgreSQL, Redis, anvil) and npm packages via services.sh,
#   the node binary the integration tests start, then rustfmt, clippy and
#   every test of the workspace.
#
#   scripts/test.sh            # the whole suite
#   scripts/test.sh end_to_end # extra arguments filter the tests
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

scripts/services.sh up
eval "$(scripts/services.sh env)"
export ANVIL_BIN

echo "==> contract artifact check"
node contracts/build.mjs --check

echo "==> build"
cargo build --locked -p analytics-node

echo "==> rustfmt and clippy"
cargo fmt --all -- --check
cargo clippy --locked --workspace --all-targets -- -D warnings

echo "==> tests"
cargo test --locked --workspace -- "$@"
