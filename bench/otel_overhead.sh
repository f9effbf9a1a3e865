#!/usr/bin/env bash
# What OpenTelemetry export costs a request: the project with export off and on, side by side
# with a direct connection, on the shared proxy-overhead harness (../shared/bench; its README).
#
#   bench/otel_overhead.sh             # 1 repeat of the harness's short phases (--quick)
#   bench/otel_overhead.sh --repeat 3  # extra arguments go to run_bench.py (drop --quick there)
#
# "on" exports every span and the metrics (every 5 s) over OTLP/HTTP to a real receiver this
# script starts on 127.0.0.1:18096 (tests/support/otlp_receivers.py: it decodes every
# request, as a collector would, on the same two cores). Both targets: SQLite, recording on,
# the default guard policy, rate limiting off.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HARNESS=${GEMMA_MONITOR_BENCH_DIR:-$ROOT/../shared/bench}
WORK=$(mktemp -d -t gemma-monitor-otel-bench.XXXXXX)
RECEIVER_PORT=18096

[ -x "$ROOT/.venv/bin/gemma-monitor" ] || { echo "run scripts/test.sh once first (it sets up .venv)" >&2; exit 2; }
[ -x /tmp/venv-bench/bin/python ] || SKIP_LITELLM=1 bash "$HARNESS/setup.sh"

(cd "$ROOT" && exec .venv/bin/python -c "
import uvicorn
from tests.support.otlp_receivers import OtlpHttpReceiver
uvicorn.run(OtlpHttpReceiver(), host='127.0.0.1', port=$RECEIVER_PORT, log_level='warning')
") &
RECEIVER=$!
trap 'kill "$RECEIVER" 2>/dev/null; wait "$RECEIVER" 2>/dev/null || true; rm -rf "$WORK"' EXIT

serve() {  # name, extra environment: the start command the harness runs for one target
  echo "cd $WORK && $2 MONITOR_RATE_LIMIT=off MONITOR_SPOOL_DIR=$WORK/spool-$1 exec $ROOT/.venv/bin/gemma-monitor serve --host 127.0.0.1 --port {port} --backend {backend_url} --migrate --database-url sqlite:///$WORK/$1.db"
}
ON="OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$RECEIVER_PORT OTEL_METRIC_EXPORT_INTERVAL=5000"
quick=(--quick)
for arg in "$@"; do [ "$arg" = --repeat ] && quick=(); done
/tmp/venv-bench/bin/python "$HARNESS/run_bench.py" --label gemma-monitor-otel "${quick[@]}" \
  --target otel-off=http://127.0.0.1:18093 --start "otel-off=$(serve off '')" \
  --target otel-on=http://127.0.0.1:18094 --start "otel-on=$(serve on "$ON")" \
  --out-dir "${OUT_DIR:-$WORK/results}" "$@"  # OUT_DIR= to keep the JSON
