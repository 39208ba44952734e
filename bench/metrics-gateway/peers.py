#!/usr/bin/env python3
"""metrics-gateway vs Debian Prometheus on the same data, one run (driven by peers.sh).

Load: the captured Flink TaskManager body pushed to GROUPS groups every second for ROUNDS
rounds, each value moved on every round (counters grow), to two gateways:
  g1  remote-writes everything it records to the sink (path /gw);
  g2  is scraped by Prometheus every second (honor_labels), which remote-writes what it
      scrapes to the same sink (path /prom).
Both gateways keep only what is pushed (--storage.record-interval 1h), so the gateways'
histories and Prometheus's head hold one sample per series per second of the same series.
The sink answers 503 during the load, so both senders build up a backlog (g1 in its
queue, Prometheus in its WAL). At the end of the load g2 is stopped, so Prometheus
ingests nothing more (but its own `up`/`scrape_*` series of the failed scrapes).

1. Bytes per sample: g2's own accounting (metrics_gateway_history_bytes / _samples), and
   for both g2 and Prometheus the RSS growth from the end of round 1 to the end of the load
   divided by the samples added in between (Prometheus: prometheus_tsdb_head_samples_
   appended_total; also its Go heap-in-use growth, go_memstats_heap_inuse_bytes).
2. Query latency: the same dashboard queries, instant (at the end of the load) and range
   (the load's window, 5 s step), against g1 and Prometheus, alternating, REPS times each
   after one warm-up; the median per query and the sum of medians. (g1 holds the same
   pushes as g2; both senders retry their refused batches meanwhile.)
3. Remote write: the sink accepts /gw and we time g1 sending its backlog; then the sink
   accepts /prom and we time Prometheus. Both with 4 fixed shards, 2,000 samples per
   request, a 100 ms batch deadline and max backoff; Prometheus drops its own `up` and
   `scrape_*` series by relabelling, so both send the same series. Samples/s = samples
   accepted / time from the switch to the last accepted batch (each sender's own counter).
"""

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 60
GROUPS = int(os.environ.get("MG_GROUPS", "20"))
REPS = int(os.environ.get("REPS", "10"))
OURS = os.environ["OURS"]
BODY = os.environ["BODY"]
PROM = os.environ.get("PROM", "/usr/bin/prometheus")

QUERIES = [
    'sum by (job_name) (rate(flink_taskmanager_job_task_numRecordsIn[30s]))',
    'sum by (job_name) (rate(flink_taskmanager_job_task_numRecordsOut[30s]))',
    'max by (job_name, task_name) (flink_taskmanager_job_task_backPressuredTimeMsPerSecond)',
    'flink_taskmanager_Status_JVM_Memory_Heap_Used',
    'count(count by (job, instance) (push_time_seconds))',
    'count({__name__=~"flink_taskmanager_.*"})',
    'sum by (job_name) (increase(flink_taskmanager_job_task_numRecordsIn[1m]))',
    'avg_over_time(flink_taskmanager_Status_JVM_Memory_Heap_Used[1m])',
    'topk(5, flink_taskmanager_Status_JVM_CPU_Load)',
]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Client:
    """One keep-alive connection."""

    def __init__(self, addr):
        self.addr = addr
        self.c = None

    def req(self, method, path, body=None, headers=None):
        for _ in range(2):
            try:
                if self.c is None:
                    host, port = self.addr.split(":")
                    self.c = http.client.HTTPConnection(host, int(port), timeout=120)
                self.c.request(method, path, body=body, headers=headers or {})
                r = self.c.getresponse()
                return r.status, r.read()
            except (ConnectionError, http.client.HTTPException, OSError):
                self.c = None
        raise RuntimeError(f"{method} {self.addr}{path} failed")


def wait_up(addr, path, what):
    for _ in range(300):
        try:
            if Client(addr).req("GET", path)[0] == 200:
                return
        except RuntimeError:
            pass
        time.sleep(0.1)
    sys.exit(f"{what} did not come up on {addr}")


def metrics(addr):
    """name -> sum over all its series, from /metrics."""
    out = {}
    _, body = Client(addr).req("GET", "/metrics")
    for line in body.decode().splitlines():
        if not line or line[0] == "#":
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        try:
            v = float(line.rsplit(" ", 1)[1])
        except ValueError:
            continue
        out[name] = out.get(name, 0.0) + v
    return out


def metric_where(addr, name, contains):
    _, body = Client(addr).req("GET", "/metrics")
    total = 0.0
    for line in body.decode().splitlines():
        if line.startswith(name) and contains in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Sink(BaseHTTPRequestHandler):
    """Reads each body and answers 204 for the paths in `accept`, else 503; notes when a
    path's last accepted request arrived (the senders' own /metrics is not polled while
    they send: the gateway's holds every pushed series, rendering it would steal CPU)."""

    protocol_version = "HTTP/1.1"
    accept = {}
    requests = {}
    last_ok = {}

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        path = self.path.strip("/")
        Sink.requests[path] = Sink.requests.get(path, 0) + 1
        status = 204 if Sink.accept.get(path) else 503
        if status == 204:
            Sink.last_ok[path] = time.time()
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def body_rounds():
    """The body split into (prefix, value, step) per sample line and the comment lines."""
    lines = []
    with open(BODY) as f:
        for i, line in enumerate(f.read().splitlines()):
            if not line or line[0] == "#":
                lines.append((line, None, 0))
                continue
            prefix, text = line.rsplit(" ", 1)
            v = float(text)
            if v != v or abs(v) > 1e15:  # NaN, Flink's Long.MIN_VALUE: kept as written
                lines.append((line, None, 0))
            else:
                lines.append((prefix, v, (i % 7) + 1))
    return lines


def render(lines, r):
    out = []
    for prefix, v, step in lines:
        if v is None:
            out.append(prefix)
        else:
            out.append(f"{prefix} {v + r * step!r}")
    return ("\n".join(out) + "\n").encode()


def main():
    tmp = tempfile.mkdtemp(prefix="mg-peers-")
    procs = []

    def start(args, log):
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        procs.append(p)
        return p

    try:
        sink_port = free_port()
        sink = ThreadingHTTPServer(("127.0.0.1", sink_port), Sink)
        sink.daemon_threads = True
        threading.Thread(target=sink.serve_forever, daemon=True).start()
        queue = "{capacity: %d, min_shards: 4, max_shards: 4, max_samples_per_send: 2000, batch_send_deadline: 100ms, min_backoff: 30ms, max_backoff: 100ms}"

        g1_addr, g2_addr, prom_addr = (f"127.0.0.1:{free_port()}" for _ in range(3))
        with open(f"{tmp}/g1.yml", "w") as f:
            f.write(
                f"remote_write:\n  - url: http://127.0.0.1:{sink_port}/gw\n    name: sink\n"
                f"    queue_config: {queue % 2_000_000}\n"
            )
        common = ["--storage.record-interval", "1h", "--storage.max-bytes", "0",
                  "--query.max-samples", "500000000", "--persistence.file="]
        g1 = start([OURS, "--web.listen-address", g1_addr, "--config.file", f"{tmp}/g1.yml"] + common, f"{tmp}/g1.log")
        g2 = start([OURS, "--web.listen-address", g2_addr] + common, f"{tmp}/g2.log")
        with open(f"{tmp}/prometheus.yml", "w") as f:
            f.write(
                "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
                "scrape_configs:\n"
                f"  - {{job_name: gw, honor_labels: true, static_configs: [{{targets: ['{g2_addr}']}}]}}\n"
                "remote_write:\n"
                f"  - url: http://127.0.0.1:{sink_port}/prom\n    name: sink\n"
                f"    queue_config: {queue % 10_000}\n"
                "    write_relabel_configs: [{source_labels: [__name__], regex: 'up|scrape_.*', action: drop}]\n"
            )
        prom = start([PROM, f"--config.file={tmp}/prometheus.yml", f"--storage.tsdb.path={tmp}/prom",
                      f"--web.listen-address={prom_addr}", "--storage.tsdb.retention.time=1d",
                      "--query.max-samples=500000000"], f"{tmp}/prom.log")
        wait_up(g1_addr, "/-/ready", "g1")
        wait_up(g2_addr, "/-/ready", "g2")
        wait_up(prom_addr, "/-/ready", "prometheus")

        lines = body_rounds()
        c1, c2 = Client(g1_addr), Client(g2_addr)
        start_t = time.time()
        base = None
        for r in range(ROUNDS):
            due = start_t + r
            while time.time() < due:
                time.sleep(min(0.05, due - time.time()))
            body = render(lines, r)
            for g in range(GROUPS):
                path = f"/metrics/job/flink/instance/tm-{g}"
                for c in (c1, c2):
                    st, b = c.req("PUT", path, body)
                    if st != 200:
                        sys.exit(f"push {path}: {st} {b[:200]}")
            if r == 1:
                time.sleep(1.5)  # one scrape and one history tick past round 1
                mg, mp = metrics(g2_addr), metrics(prom_addr)
                base = dict(
                    g_rss=rss(g2.pid), g_samples=mg.get("metrics_gateway_history_samples", 0),
                    p_rss=rss(prom.pid), p_heap=mp.get("go_memstats_heap_inuse_bytes", 0),
                    p_samples=mp.get("prometheus_tsdb_head_samples_appended_total", 0),
                )
        end_t = time.time()
        time.sleep(2.5)
        mg, mp = metrics(g2_addr), metrics(prom_addr)
        g_samples = mg.get("metrics_gateway_history_samples", 0)
        g_bytes = mg.get("metrics_gateway_history_bytes", 0)
        p_samples = mp.get("prometheus_tsdb_head_samples_appended_total", 0)
        mem = dict(
            g_series=mg.get("metrics_gateway_history_series", 0), g_samples=g_samples,
            g_own=g_bytes / max(g_samples, 1),
            g_rss=(rss(g2.pid) - base["g_rss"]) / max(g_samples - base["g_samples"], 1),
            p_series=mp.get("prometheus_tsdb_head_series", 0), p_samples=p_samples,
            p_chunks=mp.get("prometheus_tsdb_head_chunks", 0),
            p_rss=(rss(prom.pid) - base["p_rss"]) / max(p_samples - base["p_samples"], 1),
            p_heap=(mp.get("go_memstats_heap_inuse_bytes", 0) - base["p_heap"]) / max(p_samples - base["p_samples"], 1),
        )

        # Prometheus's ingest stops here.
        g2.terminate()
        g2.wait()

        # 2. Queries on the load's window.
        t_end = f"{end_t:.3f}"
        t_start = f"{start_t + 2:.3f}"
        cg, cp = Client(g1_addr), Client(prom_addr)
        lat = {}
        mismatch = []
        for kind in ("instant", "range"):
            for q in QUERIES:
                if kind == "instant":
                    path = "/api/v1/query?" + urllib.parse.urlencode({"query": q, "time": t_end})
                else:
                    path = "/api/v1/query_range?" + urllib.parse.urlencode(
                        {"query": q, "start": t_start, "end": t_end, "step": "5"})
                times = {"g": [], "p": []}
                counts = {}
                for i in range(REPS + 1):
                    for who, c in (("g", cg), ("p", cp)):
                        t0 = time.perf_counter()
                        st, b = c.req("GET", path)
                        dt = time.perf_counter() - t0
                        if st != 200:
                            sys.exit(f"{who} {kind} {q}: {st} {b[:300]}")
                        if i == 0:  # warm-up; also the answer's shape
                            counts[who] = len(json.loads(b)["data"]["result"])
                        else:
                            times[who].append(dt)
                if counts["g"] != counts["p"]:
                    mismatch.append(f"{kind} {q}: {counts['g']} vs {counts['p']} series")
                lat[(kind, q)] = (statistics.median(times["g"]), statistics.median(times["p"]), counts["g"])

        # 3. Remote write: one sender at a time.

        def drain(path, addr, sent_name, pending_name, where):
            before = metric_where(addr, sent_name, where)
            Sink.accept[path] = True
            t0 = time.time()
            while True:
                time.sleep(0.2)
                now = time.time()
                last = Sink.last_ok.get(path)
                if last and now - last > 2.0 and metric_where(addr, pending_name, where) == 0:
                    break
                if now - t0 > 900:
                    sys.exit(f"{path}: not drained after 900 s")
            return metric_where(addr, sent_name, where) - before, Sink.last_ok[path] - t0

        g_sent, g_secs = drain("gw", g1_addr, "metrics_gateway_remote_write_samples_sent_total",
                               "metrics_gateway_remote_write_samples_pending", 'remote="sink"')
        p_sent, p_secs = drain("prom", prom_addr, "prometheus_remote_storage_samples_total",
                               "prometheus_remote_storage_samples_pending", 'remote_name="sink"')
        g_dropped = metric_where(g1_addr, "metrics_gateway_remote_write_samples_dropped_total", 'remote="sink"')

        # Report.
        load = os.getloadavg()
        print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPUs, "
              f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {GROUPS} groups x {ROUNDS} rounds, "
              f"{REPS} reps per query")
        print(f"load: {ROUNDS} rounds took {end_t - start_t:.1f} s")
        print(f"history: gateway {mem['g_series']:.0f} series, {mem['g_samples']:.0f} samples; "
              f"Prometheus head {mem['p_series']:.0f} series, {mem['p_samples']:.0f} samples, "
              f"{mem['p_chunks']:.0f} chunks")
        print(f"{'':58} {'Prometheus':>12} {'gateway':>12} {'ratio':>8}")
        print(f"{'bytes/sample, RSS growth over the load':58} {mem['p_rss']:12.2f} {mem['g_rss']:12.2f} "
              f"{mem['p_rss'] / mem['g_rss'] if mem['g_rss'] > 0 else float('inf'):7.1f}x")
        print(f"{'bytes/sample, Prometheus Go heap growth; gateway own count':58} {mem['p_heap']:12.2f} "
              f"{mem['g_own']:12.2f} {mem['p_heap'] / mem['g_own'] if mem['g_own'] > 0 else float('inf'):7.1f}x")
        tot = {"instant": [0.0, 0.0], "range": [0.0, 0.0]}
        for (kind, q), (g, p, n) in lat.items():
            tot[kind][0] += g
            tot[kind][1] += p
            label = f"{kind[:5]} {q}"
            if len(label) > 57:
                label = label[:54] + "..."
            print(f"{label:58} {p * 1000:10.2f}ms {g * 1000:10.2f}ms {p / g:7.1f}x")
        for kind in ("instant", "range"):
            g, p = tot[kind]
            print(f"{'sum of medians, ' + kind + ' queries':58} {p * 1000:10.2f}ms {g * 1000:10.2f}ms {p / g:7.1f}x")
        gr, pr = g_sent / g_secs if g_secs else 0, p_sent / p_secs if p_secs else 0
        print(f"{'remote write samples/s (backlog drain, 4 shards)':58} {pr:12.0f} {gr:12.0f} "
              f"{gr / pr if pr else float('inf'):7.1f}x")
        print(f"remote write: gateway {g_sent:.0f} samples in {g_secs:.2f} s ({g_dropped:.0f} dropped); "
              f"Prometheus {p_sent:.0f} samples in {p_secs:.2f} s")
        for m in mismatch:
            print(f"WARN answers differ in size: {m}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
