#!/usr/bin/env bash
# Install what the web player and its tests need on a Debian machine. This installs Chromium
# from Debian's packages (as root) and the npm packages pinned in web/package-lock.json.
# It checks that generated/web matches protos/, then builds web/dist (the player) and
# web/test-build (the Node grpc-web client test). Run it after scripts/install.sh, which makes .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: install it (Debian: apt-get install chromium)" >&2
    exit 1
  fi
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "node and npm are missing: install Node.js 20 or newer" >&2
  exit 1
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  echo "Node.js $(node --version) is too old: the web player needs Node.js 20 or newer" >&2
  exit 1
fi

(cd web && npm ci --no-audit --no-fund)
bash scripts/generate_web.sh --check
(cd web && npm run build)
