#!/usr/bin/env bash
# Tools the archive and report tests use, installed when missing (idempotent):
# - a Python venv with duckdb (reads the archive) and moto[server] (a local
#   S3-compatible server), from PyPI;
# - Debian's chromium (renders the HTML report to PNG and PDF) and a CJK font
#   (the example has a tenant named in Japanese), with apt as root.
# Prints `python=PATH` and `chromium=PATH` (empty when unavailable) on stdout.
# The venv lives outside the clone: AIWATCH_ARCHIVE_VENV, default
# /var/tmp/aiwatch-py-archive.
set -euo pipefail
venv="${AIWATCH_ARCHIVE_VENV:-/var/tmp/aiwatch-py-archive}"
exec 9>"${venv}.lock"
flock -w 900 9 || { echo "archive-deps.sh: another install holds ${venv}.lock" >&2; exit 1; }

py="$venv/bin/python"
if ! "$py" -c 'import duckdb, moto.server' >/dev/null 2>&1; then
  python3 -m venv "$venv" >&2
  "$py" -m pip install --quiet duckdb 'moto[server]' >&2
fi
"$py" -c 'import duckdb, moto.server' >/dev/null

chromium=""
for c in chromium chromium-browser; do
  if command -v "$c" >/dev/null; then chromium=$(command -v "$c"); break; fi
done
if [[ -z "$chromium" && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-wqy-microhei; } >&2 || true
  chromium=$(command -v chromium || true)
fi
if [[ -n "$chromium" && $(id -u) -eq 0 ]] && command -v apt-get >/dev/null && ! fc-list 2>/dev/null | grep -qi 'microhei\|cjk'; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends fonts-wqy-microhei >&2 || true
fi
echo "python=$py"
echo "chromium=$chromium"
