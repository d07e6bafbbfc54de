#!/usr/bin/env bash
# The whole test suite, from a fresh machine: starts a real single-node Kafka
# broker on 127.0.0.1 (fetched from Maven Central on first use), runs every
# test against it, and stops it again. This is what `.ci/run` calls.
set -euo pipefail
cd "$(dirname "$0")/.."

# Reuse a build directory outside the clone when there is one (CI and later
# sessions), so a clean clone does not rebuild DataFusion from nothing.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/aiwatch-target}"
mkdir -p "$CARGO_TARGET_DIR"

# librdkafka is built with TLS against the system OpenSSL.
if ! pkg-config --exists openssl 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq libssl-dev pkg-config >/dev/null
  else
    echo "test.sh: install libssl-dev and pkg-config (OpenSSL headers for librdkafka)" >&2; exit 1
  fi
fi

for tool in cargo java mvn python3 cc make; do
  command -v "$tool" >/dev/null || { echo "test.sh: '$tool' is required but not installed" >&2; exit 1; }
done

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
