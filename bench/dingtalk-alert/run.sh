#!/usr/bin/env bash
# Gateway overhead per message (p50/p99, loopback) and alerts accepted per second, with a
# real Alertmanager's ingest rate in the same run as the peer ratio; then the open-loop p99
# at 1,000 alerts/s across the process boundary. See crates/dingtalk-alert/benches/overhead.rs
# and open_loop.rs for what is measured.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo bench -p dingtalk-alert --bench overhead "$@"
cargo bench -p dingtalk-alert --bench open_loop "$@"
