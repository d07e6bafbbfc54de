#!/usr/bin/env bash
# The whole test suite, from a fresh machine: starts a real single-node Kafka
# broker on 127.0.0.1 (fetched from Maven Central on first use), runs every
# test against it, and stops it again. This is what `.ci/run` calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# The broker runs on Java and is fetched with Maven; benches and fixtures use Python.
AIWATCH_NEEDS="java mvn python3" source scripts/setup.sh

# --- Archive and report tests (tests/cli/archive.rs, tests/cli/report.rs) ---
# DuckDB and moto[server] in a venv outside the clone, Debian's chromium with
# apt as root; idempotent. The tests call the same script, so they also run
# alone with `cargo test`.
scripts/archive-deps.sh >/dev/null
# --- end of archive and report tests ---

# Build first so a compile error is reported before the broker starts.
cargo build --locked --tests

started_kafka=""
if [[ -z "${AIWATCH_KAFKA_BOOTSTRAP:-}" ]]; then
  if ! scripts/kafka.sh status >/dev/null 2>&1; then
    scripts/kafka.sh start >/dev/null
    started_kafka=1
  fi
  export AIWATCH_KAFKA_BOOTSTRAP="127.0.0.1:${AIWATCH_KAFKA_PORT:-19092}"
fi
cleanup() { [[ -n "$started_kafka" ]] && scripts/kafka.sh stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

cargo test --locked "$@"
