#!/usr/bin/env bash
# Regenerate generated/web/ (TypeScript for the web player) from protos/ with buf and protoc-gen-es.
# Usage: bash scripts/generate_web.sh [--check]
# With --check, the code is generated into a temporary folder and compared with generated/web.
# The exit status is 1 when they differ.
# Needs .venv (buf comes from the buf-bin package) and web/node_modules (npm ci in web/).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x web/node_modules/.bin/protoc-gen-es ]; then
  echo "web/node_modules/.bin/protoc-gen-es is missing: run npm ci in web/ first" >&2
  exit 1
fi
BUF=.venv/bin/buf
if [ ! -x "$BUF" ]; then
  BUF=buf
fi
export PATH="$PWD/web/node_modules/.bin:$PATH"

if [ "${1:-}" = "--check" ]; then
  scratch=$(mktemp -d)
  trap 'rm -rf "$scratch"' EXIT
  "$BUF" generate --template web/buf.gen.yaml -o "$scratch"
  if ! diff -r generated/web "$scratch/generated/web"; then
    echo "generated/web is out of date; run bash scripts/generate_web.sh" >&2
    exit 1
  fi
  echo "generated/web is up to date"
  exit 0
fi

"$BUF" generate --template web/buf.gen.yaml
echo "TypeScript written to generated/web"
