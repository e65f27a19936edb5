#!/usr/bin/env bash
# Run the Sluice CLI of another checkout (e.g. a `git worktree add /tmp/base HEAD~3`) with this
# checkout's virtual environment: bench/ab.py compares two builds this way.
#   BENCH_SLUICE_CMD="bench/sluice_at.sh /tmp/base" …
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(cd "$1" && pwd)"; shift
export PYTHONPATH="$dir"
exec "$here/.venv/bin/python" -c 'import sys; from sluice.cli import app; sys.argv[0] = "sluice"; sys.exit(app())' "$@"
