#!/usr/bin/env bash
# Run the Sluice CLI of another checkout (e.g. a `git worktree add /tmp/base HEAD~3`) with this
# checkout's virtual environment: bench/ab.py compares two builds this way.
#   BENCH_SLUICE_CMD="bench/sluice_at.sh /tmp/base" …
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="$(cd "$1" && pwd)"; shift
export PYTHONPATH="$dir"
# -P: no current directory at the head of sys.path. The servers start in this checkout, whose
# sluice would otherwise shadow the other checkout's (so would this venv's editable install,
# which PYTHONPATH does outrank).
exec "$here/.venv/bin/python" -P -c 'import sys; from sluice.cli import app; sys.argv[0] = "sluice"; sys.exit(app())' "$@"
