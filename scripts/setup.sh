#!/usr/bin/env bash
# Shared by scripts/demo.sh and scripts/test.sh (sourced): one build directory
# for the demo and the tests, and the system packages the build needs.
# AIWATCH_NEEDS: more commands the caller needs.
AIWATCH_NEEDS="${AIWATCH_NEEDS:-}"
# Reuse a build directory outside the clone when there is one (CI and later
# sessions), so a clean clone does not rebuild DataFusion from nothing.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/aiwatch-target}"
mkdir -p "$CARGO_TARGET_DIR"

# librdkafka is built with TLS against the system OpenSSL.
if ! pkg-config --exists openssl 2>/dev/null; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    apt-get update -qq && apt-get install -y -qq libssl-dev pkg-config >/dev/null
  else
    echo "$(basename "$0"): install libssl-dev and pkg-config (OpenSSL headers for librdkafka)" >&2; exit 1
  fi
fi

for tool in cargo cc make $AIWATCH_NEEDS; do
  command -v "$tool" >/dev/null || { echo "$(basename "$0"): '$tool' is required but not installed" >&2; exit 1; }
done

