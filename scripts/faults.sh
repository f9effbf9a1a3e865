#!/usr/bin/env bash
# The fault tests at full length (tests/integration/faults/), printing their figures:
#
#   scripts/faults.sh                 # every fault test, full length (about 15 minutes)
#   scripts/faults.sh -k soak         # arguments go to pytest
#   FAULTS_SHORT=1 scripts/faults.sh  # the short versions the suite runs (about 2 minutes)
#
# Full length: Postgres stopped for 30 s under 100 req/s, the backend down for 30 s, the
# webhook receiver down for 5 minutes, a soak of 100,000 requests. Everything runs on
# loopback: a private Postgres cluster made with initdb (found through `pg_config --bindir`;
# as root it runs as the `postgres` user), the backend and the monitor as processes of their
# own. The shared Postgres and Redis are not needed, and not touched.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/_venv.sh"
setup_venv postgres,test
cd "$ROOT"
if [[ -z "${FAULTS_SHORT:-}" ]]; then
    export MONITOR_FAULTS_FULL=1
fi
exec "$ROOT/.venv/bin/python" -m pytest -q -s tests/integration/faults "$@"
