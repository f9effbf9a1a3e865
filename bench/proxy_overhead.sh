#!/usr/bin/env bash
# What Gemma Monitor adds over a direct connection, side by side with nginx (and LiteLLM when
# installed), using the shared proxy-overhead harness (../shared/bench; see its README).
#
#   bench/proxy_overhead.sh                  # every target below
#   bench/proxy_overhead.sh --quick          # extra arguments go to run_bench.py
#   WITH_LITELLM=1 bench/proxy_overhead.sh   # add LiteLLM (its setup takes a while)
#
# The project's targets; recording is on in all of them (every request stored: SQLite file, or
# Postgres database gm_bench, recreated each run, on MONITOR_BENCH_POSTGRES or the local server):
#   project          every feature on: SQLite, default policy, rate limiting on (in memory)
#   project-pg       the same on Postgres
#   project-pg-w2    Postgres, two worker processes, rate limiting on through Redis
#                    (MONITOR_BENCH_REDIS, default database 14 of the local server, flushed)
#   project-norl     SQLite, default policy, rate limiting off
#   project-noguard  SQLite, rate limiting and the guard off
# "Rate limiting on" is a limit of 10^9 requests an hour, so that it never refuses: the harness
# sends everything from one address, the principal without configured keys.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=${GEMMA_MONITOR_BENCH_DIR:-$ROOT/../shared/bench}
PG_ADMIN=${MONITOR_BENCH_POSTGRES:-postgresql://postgres@127.0.0.1:5432}
REDIS=${MONITOR_BENCH_REDIS:-redis://127.0.0.1:6379/14}
NEVER=1000000000/hour
WORK=$(mktemp -d -t gemma-monitor-bench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

[ -x "$ROOT/.venv/bin/gemma-monitor" ] || { echo "run scripts/test.sh once first (it sets up .venv)" >&2; exit 2; }
[ -x /tmp/venv-bench/bin/python ] || SKIP_LITELLM=$([ "${WITH_LITELLM:-0}" = 1 ] && echo 0 || echo 1) bash "$HARNESS/setup.sh"

"$ROOT/.venv/bin/python" - "$PG_ADMIN" "$REDIS" <<'PY'
import sys
import redis
from sqlalchemy import create_engine, text
engine = create_engine(sys.argv[1].replace("postgresql://", "postgresql+psycopg://") + "/postgres", isolation_level="AUTOCOMMIT")
with engine.connect() as conn:
    for name in ("gm_bench", "gm_bench_w2"):
        conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        conn.execute(text(f"CREATE DATABASE {name}"))
redis.Redis.from_url(sys.argv[2]).flushdb()
PY

serve() {  # spool-dir database-url policy rate-limit [more]: the start command of one target
  echo "cd $WORK && MONITOR_RATE_LIMIT=$4 MONITOR_POLICIES=$3 MONITOR_SPOOL_DIR=$1 ${5:-} exec $ROOT/.venv/bin/gemma-monitor serve --host 127.0.0.1 --port {port} --backend {backend_url} --migrate --database-url $2"
}
targets=(--target direct --target nginx)
[ "${WITH_LITELLM:-0}" = 1 ] && targets+=(--target litellm)
/tmp/venv-bench/bin/python "$HARNESS/run_bench.py" --label gemma-monitor "${targets[@]}" \
  --target project=http://127.0.0.1:18090 \
  --start "project=$(serve "$WORK/spool" "sqlite:///$WORK/monitor.db" default $NEVER)" \
  --target project-pg=http://127.0.0.1:18091 \
  --start "project-pg=$(serve "$WORK/spool-pg" "$PG_ADMIN/gm_bench" default $NEVER)" \
  --target project-pg-w2=http://127.0.0.1:18093 \
  --start "project-pg-w2=$(serve "$WORK/spool-w2" "$PG_ADMIN/gm_bench_w2" default $NEVER "MONITOR_WORKERS=2 MONITOR_REDIS_URL=$REDIS")" \
  --target project-norl=http://127.0.0.1:18094 \
  --start "project-norl=$(serve "$WORK/spool-norl" "sqlite:///$WORK/monitor-norl.db" default off)" \
  --target project-noguard=http://127.0.0.1:18092 \
  --start "project-noguard=$(serve "$WORK/spool-ng" "sqlite:///$WORK/monitor-ng.db" off off)" \
  "$@"
