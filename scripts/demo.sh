#!/usr/bin/env bash
# The main job on a fresh machine: install, ingest the data, start the mesh, play a track, stop the mesh.
# Usage: bash scripts/demo.sh [track id or search text]
set -euo pipefail
cd "$(dirname "$0")/.."
query=${1:-"Dance Monkey"}

bash scripts/install.sh
# shellcheck source=/dev/null
source .venv/bin/activate

backbeat setup

mkdir -p var/run
backbeat up --run-dir var/run > var/run/up.log 2>&1 &
mesh_pid=$!
trap 'kill -INT "$mesh_pid" 2>/dev/null; wait "$mesh_pid" 2>/dev/null || true' EXIT

for _ in $(seq 1 600); do
  if grep -q "press Ctrl-C" var/run/up.log; then break; fi
  if ! kill -0 "$mesh_pid" 2>/dev/null; then cat var/run/up.log; exit 1; fi
  sleep 0.1
done
cat var/run/up.log

backbeat play "$query" --out var/play.mp3
backbeat play "$query" --out var/play-free.mp3 --email free-us@backbeat.test --password listen-free-us
