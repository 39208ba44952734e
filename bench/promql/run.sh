#!/usr/bin/env bash
# Rule evaluation time per cycle: our metrics-gateway vs Debian's Prometheus evaluating the
# same rule group over the same data (Prometheus scrapes our gateway, honor_labels).
# Not a test; run by hand:
#   bench/promql/run.sh                    # 1,000 rules over 100k series
#   RULES=200 METRICS=20 SERIES=1000 bench/promql/run.sh
# Both evaluate every 15s; after WARMUP seconds of pushes every 15s the median of the last
# samples of prometheus_rule_group_last_duration_seconds is reported for each, with the ratio.
set -euo pipefail
cd "$(dirname "$0")/../.."
PROM=/usr/bin/prometheus
[ -x "$PROM" ] || { echo "SKIP: $PROM is absent (apt install prometheus)"; exit 0; }
RULES="${RULES:-1000}"
METRICS="${METRICS:-100}"     # metric names (half counters, half gauges)
SERIES="${SERIES:-1000}"      # series per metric name -> METRICS*SERIES series
WARMUP="${WARMUP:-120}"
SAMPLES="${SAMPLES:-6}"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p metrics-gateway --bin metrics-gateway
OURS="$CARGO_TARGET_DIR/release/metrics-gateway"
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 300); do curl -sf "http://$1/-/healthy" >/dev/null && return; sleep 0.1; done; echo "not up: $1"; exit 1; }

python3 - "$WORK" "$RULES" "$METRICS" "$SERIES" <<'PY'
import sys, os
work, rules, metrics, series = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
half = max(1, metrics // 2)
kinds = [
    lambda i, k: ("record", f"bench:counter_{k}:rate5m_by_job_{i}", f"sum by (job) (rate(bench_counter_{k}_total[5m]))"),
    lambda i, k: ("record", f"bench:gauge_{k}:avg_by_instance_{i}", f"avg by (instance) (bench_gauge_{k})"),
    lambda i, k: ("alert", f"BenchGaugeHigh{i}", f"bench_gauge_{k} > 0.999"),
    lambda i, k: ("record", f"bench:gauge_{k}:top5_{i}", f"topk(5, bench_gauge_{k})"),
    lambda i, k: ("record", f"bench:gauge_{k}:count_high_{i}", f"count by (job) (bench_gauge_{k} > 0.5)"),
    lambda i, k: ("record", f"bench:counter_{k}:increase1m_{i}", f"sum(increase(bench_counter_{k}_total{{job=~\"job[0-4]\"}}[1m]))"),
]
with open(os.path.join(work, "rules.yml"), "w") as f:
    f.write("groups:\n  - name: bench\n    rules:\n")
    for i in range(rules):
        kind, name, expr = kinds[i % len(kinds)](i, (i // len(kinds)) % half)
        f.write(f"      - {kind}: {name}\n        expr: '{expr}'\n")
PY

OP=$(port); PP=$(port)
"$OURS" --web.listen-address "127.0.0.1:$OP" --persistence.file= \
  --rule.file "$WORK/rules.yml" --rule.evaluation-interval 15s >"$WORK/ours.log" 2>&1 &
wait_up "127.0.0.1:$OP"
cat >"$WORK/prometheus.yml" <<YML
global:
  scrape_interval: 15s
  evaluation_interval: 15s
rule_files: ["$WORK/rules.yml"]
scrape_configs:
  - job_name: gateway
    honor_labels: true
    static_configs: [{targets: ["127.0.0.1:$OP"]}]
    metric_relabel_configs:
      - source_labels: [__name__]
        regex: 'bench:.*|ALERTS.*|prometheus_rule_.*|metrics_gateway_.*'
        action: drop
YML
"$PROM" --config.file "$WORK/prometheus.yml" --storage.tsdb.path "$WORK/tsdb" \
  --web.listen-address "127.0.0.1:$PP" >"$WORK/prom.log" 2>&1 &
wait_up "127.0.0.1:$PP"

push() { # round
  python3 - "$WORK" "$1" "$METRICS" "$SERIES" <<'PY'
import sys, os, random
work, rnd, metrics, series = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
half = max(1, metrics // 2)
random.seed(rnd)
jobs = 10
for j in range(jobs):
    lines = []
    for k in range(half):
        lines.append(f"# TYPE bench_counter_{k}_total counter")
        for s in range(j, series, jobs):
            lines.append(f'bench_counter_{k}_total{{instance="i{s}"}} {rnd * (s % 7 + 1) * 10}')
        lines.append(f"# TYPE bench_gauge_{k} gauge")
        for s in range(j, series, jobs):
            lines.append(f'bench_gauge_{k}{{instance="i{s}"}} {random.random()}')
    with open(os.path.join(work, f"job{j}.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
PY
  for j in $(seq 0 9); do
    curl -sf -X PUT --data-binary "@$WORK/job$j.txt" "http://127.0.0.1:$OP/metrics/job/job$j" >/dev/null
  done
}

ours_d() { curl -sf "http://127.0.0.1:$OP/metrics" | awk '/^prometheus_rule_group_last_duration_seconds/ {print $2}'; }
prom_d() { curl -sf "http://127.0.0.1:$PP/metrics" | awk '/^prometheus_rule_group_last_duration_seconds\{/ {print $2}'; }

echo "series: $((METRICS * SERIES)), rules: $RULES; warming up ${WARMUP}s"
round=1
end=$(( $(date +%s) + WARMUP ))
while [ "$(date +%s)" -lt "$end" ]; do push $round; round=$((round + 1)); sleep 15; done
O=(); P=()
for _ in $(seq "$SAMPLES"); do
  push $round; round=$((round + 1)); sleep 15
  O+=("$(ours_d)"); P+=("$(prom_d)")
done
rec_ours=$(curl -sf "http://127.0.0.1:$OP/metrics" | grep -c '^bench:' || true)
rec_prom=$(curl -sfG "http://127.0.0.1:$PP/api/v1/query" --data-urlencode 'query=count({__name__=~"bench:.*"})' | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else 0)')
python3 - "${O[*]}" "${P[*]}" "$rec_ours" "$rec_prom" <<'PY'
import sys, statistics
o = [float(x) for x in sys.argv[1].split()]
p = [float(x) for x in sys.argv[2].split()]
mo, mp = statistics.median(o), statistics.median(p)
print(f"rule group evaluation, median of {len(o)} cycles")
print(f"  metrics-gateway: {mo*1000:9.1f} ms   {[round(x*1000,1) for x in o]}")
print(f"  prometheus:      {mp*1000:9.1f} ms   {[round(x*1000,1) for x in p]}")
print(f"  ratio ours/prometheus: {mo/mp:.2f}")
print(f"recording-rule series: ours {sys.argv[3]}, prometheus {sys.argv[4]}")
PY
