#!/usr/bin/env bash
# Query latency, bytes per sample of history and remote-write samples/s: our
# metrics-gateway vs Debian's Prometheus on the same data, one run. Not a test; run by hand:
#   bench/metrics-gateway/peers.sh [ROUNDS]
# Load: the captured Flink TaskManager body pushed to MG_GROUPS groups (default 20: 7,440
# series; 50 could not be pushed to two gateways every second on the 2-core machine) every
# second for ROUNDS seconds (default 60), values moving every round; what is measured and
# how: see peers.py. Env: MG_GROUPS (GROUPS is taken by bash), REPS (query repetitions,
# default 10), OURS (a metrics-gateway binary to use instead of building one).
set -euo pipefail
cd "$(dirname "$0")/../.."
BODY="${BODY:-../shared/samples/flink/taskmanager-push.txt}"
PROM=/usr/bin/prometheus
[ -f "$BODY" ] || { echo "SKIP: $BODY is absent"; exit 0; }
[ -x "$PROM" ] || { echo "SKIP: $PROM is absent (apt install prometheus)"; exit 0; }

if [ -z "${OURS:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
  cargo build --release -q -p metrics-gateway --bin metrics-gateway
  OURS="$CARGO_TARGET_DIR/release/metrics-gateway"
fi
OURS="$OURS" BODY="$BODY" PROM="$PROM" exec python3 bench/metrics-gateway/peers.py "${1:-60}"
