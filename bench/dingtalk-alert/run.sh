#!/usr/bin/env bash
# Gateway overhead per message (p50/p99, loopback) and alerts accepted per second, with a
# real Alertmanager's ingest rate in the same run as the peer ratio. See
# crates/dingtalk-alert/benches/overhead.rs for what is measured.
set -euo pipefail
cd "$(dirname "$0")/../.."
exec cargo bench -p dingtalk-alert --bench overhead "$@"
