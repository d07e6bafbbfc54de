#!/usr/bin/env bash
# The main job on a fresh machine, no Kafka needed: `aiwatch demo` (synthetic
# AI traffic through the built-in rules, alerts on stdout) for SECONDS
# (default 60). Debug build, in the same build directory as scripts/test.sh,
# so the first run also prepares the tests' build. More flags after the
# seconds go to `aiwatch demo` (see `aiwatch demo --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
seconds="${1:-60}"
shift || true
exec cargo run --locked -- demo --duration "$seconds" "$@"
