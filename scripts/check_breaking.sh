#!/usr/bin/env bash
# Compare protos/ with a git reference using buf breaking, so no field number or type is reused.
# The reference is $BUF_BREAKING_AGAINST, else main when on another branch, else the parent commit.
set -euo pipefail
cd "$(dirname "$0")/.."

branch=$(git rev-parse --abbrev-ref HEAD 2>/dev/null || echo "")
against=${BUF_BREAKING_AGAINST:-}
if [ -z "$against" ]; then
  if [ "$branch" != "main" ] && git rev-parse --verify --quiet main >/dev/null; then
    against=main
  else
    against=HEAD~1
  fi
fi

if ! git rev-parse --verify --quiet "$against" >/dev/null || [ -z "$(git ls-tree -r --name-only "$against" -- protos)" ]; then
  echo "buf breaking: $against has no protos/ to compare with; nothing to check"
  exit 0
fi

echo "buf breaking: comparing protos/ with $against"
buf breaking --against ".git#ref=$against"
