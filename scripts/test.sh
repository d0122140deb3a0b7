#!/usr/bin/env bash
# Install everything the tests need, check contracts and generated code, lint, type-check and run pytest.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# The tests start private redis-server processes.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis-server is missing: install it (Debian: apt-get install redis-server)" >&2
    exit 1
  fi
fi

bash scripts/install.sh
bash scripts/install_web.sh

# shellcheck source=/dev/null
source .venv/bin/activate

echo "== contracts: buf lint, buf breaking, generated code =="
buf lint
bash scripts/check_breaking.sh
python scripts/generate_protos.py --check
bash scripts/generate_web.sh --check

echo "== lint and types =="
ruff check .
mypy

echo "== tests =="
python -m pytest "$@"
