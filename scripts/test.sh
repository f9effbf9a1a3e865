#!/usr/bin/env bash
# Check the layering contract (pyproject.toml, [tool.importlinter]), then run the whole test
# suite (unit, integration, e2e) in .venv, setting it up if needed.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh tests/unit -x   # arguments go to pytest
#
# Integration tests need Postgres and Redis (.ci/run starts them); e2e tests start a local
# Gemma 3 270M through llama.cpp (the first run builds llama-cpp-python: ~10 minutes); the
# dashboard's browser test needs Chromium (scripts/ensure_chromium.sh installs it).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/_venv.sh"
setup_venv postgres,local-backend,quality,shieldgemma,dashboard,test,dev
cd "$ROOT"
bash "$ROOT/scripts/ensure_chromium.sh"  # the dashboard's browser test
"$ROOT/.venv/bin/lint-imports" --no-cache
exec "$ROOT/.venv/bin/python" -m pytest -q "$@"
