#!/usr/bin/env bash
# Install everything the tests need, check contracts and generated code, lint, type-check and run pytest.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

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
