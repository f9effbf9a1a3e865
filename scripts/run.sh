#!/usr/bin/env bash
# Run the embedded demo: a local Gemma backend (llama.cpp) and the proxy on SQLite.
#
#   scripts/run.sh [demo options]
#
# The first run sets up .venv (and builds llama-cpp-python once: ~10 minutes on 2 cores).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/_venv.sh"
setup_venv postgres,local-backend
cd "$ROOT"
exec "$ROOT/.venv/bin/gemma-monitor" demo "$@"
