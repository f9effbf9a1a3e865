#!/usr/bin/env bash
# What Gemma Monitor adds over a direct connection, side by side with nginx (and LiteLLM when
# installed), using the shared proxy-overhead harness (../shared/bench; see its README).
#
#   bench/proxy_overhead.sh                  # direct, nginx, the project on SQLite and on Postgres
#                                            # with the default guard policy, and on SQLite without
#   bench/proxy_overhead.sh --quick          # extra arguments go to run_bench.py
#   WITH_LITELLM=1 bench/proxy_overhead.sh   # add LiteLLM (its setup takes a while)
#
# Recording is on in both project targets: every request is stored (SQLite file; Postgres
# database gm_bench, recreated each run, on MONITOR_BENCH_POSTGRES or the local server).
# Rate limiting is off: the harness sends everything with one key, far past 100/hour.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=${GEMMA_MONITOR_BENCH_DIR:-$ROOT/../shared/bench}
PG_ADMIN=${MONITOR_BENCH_POSTGRES:-postgresql://postgres@127.0.0.1:5432}
WORK=$(mktemp -d -t gemma-monitor-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

[ -x "$ROOT/.venv/bin/gemma-monitor" ] || { echo "run scripts/test.sh once first (it sets up .venv)" >&2; exit 2; }
[ -x /tmp/venv-bench/bin/python ] || SKIP_LITELLM=$([ "${WITH_LITELLM:-0}" = 1 ] && echo 0 || echo 1) bash "$HARNESS/setup.sh"

"$ROOT/.venv/bin/python" - "$PG_ADMIN" <<'PY'
import sys
from sqlalchemy import create_engine, text
engine = create_engine(sys.argv[1].replace("postgresql://", "postgresql+psycopg://") + "/postgres", isolation_level="AUTOCOMMIT")
with engine.connect() as conn:
    conn.execute(text("DROP DATABASE IF EXISTS gm_bench"))
    conn.execute(text("CREATE DATABASE gm_bench"))
PY

serve() {  # spool-dir database-url policy: the start command the harness runs for one target
  echo "cd $WORK && MONITOR_RATE_LIMIT=off MONITOR_POLICIES=$3 MONITOR_SPOOL_DIR=$1 exec $ROOT/.venv/bin/gemma-monitor serve --host 127.0.0.1 --port {port} --backend {backend_url} --migrate --database-url $2"
}
targets=(--target direct --target nginx)
[ "${WITH_LITELLM:-0}" = 1 ] && targets+=(--target litellm)
/tmp/venv-bench/bin/python "$HARNESS/run_bench.py" --label gemma-monitor "${targets[@]}" \
  --target project=http://127.0.0.1:18090 \
  --start "project=$(serve "$WORK/spool" "sqlite:///$WORK/monitor.db" default)" \
  --target project-pg=http://127.0.0.1:18091 \
  --start "project-pg=$(serve "$WORK/spool-pg" "$PG_ADMIN/gm_bench" default)" \
  --target project-noguard=http://127.0.0.1:18092 \
  --start "project-noguard=$(serve "$WORK/spool-ng" "sqlite:///$WORK/monitor-ng.db" off)" \
  "$@"
