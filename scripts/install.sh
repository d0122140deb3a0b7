#!/usr/bin/env bash
# Install Backbeat and its Python dependencies into .venv (needs python3 with venv and pip).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -x .venv/bin/python ]; then
  if ! python3 -m venv .venv; then
    echo "python3 -m venv failed: install Python 3.11 or newer with venv (Debian: apt-get install python3-venv)" >&2
    exit 1
  fi
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
