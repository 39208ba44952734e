#!/usr/bin/env bash
# Push throughput, /metrics latency and RSS: Debian's Pushgateway vs our metrics-gateway,
# same flags, same load, one run. Not a test; run by hand:
#   bench/metrics-gateway/run.sh [SECONDS]
# Load: the captured Flink TaskManager body (605 series, 160 KB) PUT to 50 rotating groups
# by 4 keep-alive clients for SECONDS (default 20); then /metrics with those 50 groups
# (~30k series) and after growing to 166 groups (~100k series); RSS at both points.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_RUN="${1:-20}"
BODY="${BODY:-../shared/samples/flink/taskmanager-push.txt}"
PG=/usr/bin/prometheus-pushgateway
[ -f "$BODY" ] || { echo "SKIP: $BODY is absent"; exit 0; }
[ -x "$PG" ] || { echo "SKIP: $PG is absent (apt install prometheus-pushgateway)"; exit 0; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p metrics-gateway --bin metrics-gateway --example pushbench
OURS="$CARGO_TARGET_DIR/release/metrics-gateway"
LOAD="$CARGO_TARGET_DIR/release/examples/pushbench"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 100); do curl -sf "http://$1/-/healthy" >/dev/null && return; sleep 0.1; done; echo "not up: $1"; exit 1; }

run_one() { # name binary
  local p; p=$(port)
  "$2" --web.listen-address "127.0.0.1:$p" --persistence.file= >/dev/null 2>&1 &
  local pid=$!
  wait_up "127.0.0.1:$p"
  local out; out=$("$LOAD" "127.0.0.1:$p" "$pid" "$BODY" 50 4 "$SECONDS_RUN" 166)
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$1 $out"
}

A=$(run_one pushgateway "$PG")
B=$(run_one metrics-gateway "$OURS")
echo "$A"
echo "$B"
python3 - "$A" "$B" <<'PY'
import sys
def parse(line):
    name, *kv = line.split()
    return name, {k: float(v) for k, v in (x.split('=') for x in kv)}
(na, a), (nb, b) = parse(sys.argv[1]), parse(sys.argv[2])
rows = [
    ("pushes/s (50 groups, 4 clients)", "pushes_per_s", True),
    ("GET /metrics s (50 groups, ~30k series)", "scrape_50g_s", False),
    ("GET /metrics s (166 groups, ~100k series)", "scrape_166g_s", False),
    ("RSS MB (50 groups)", "rss_50g_mb", False),
    ("RSS MB (166 groups)", "rss_166g_mb", False),
    ("/metrics bytes (50 groups)", "bytes_50g", None),
]
print(f"{'':44} {na:>14} {nb:>16} {'ratio':>8}")
for label, key, higher_better in rows:
    x, y = a[key], b[key]
    if higher_better is None:
        r = ""
    elif higher_better:
        r = f"{y / x:7.1f}x" if x else "inf"
    else:
        r = f"{x / y:7.1f}x" if y else "inf"
    print(f"{label:44} {x:14.4g} {y:16.4g} {r:>8}")
print("ratio: how many times better metrics-gateway is (higher pushes/s; lower latency and RSS)")
PY
