//! Flags shared by every binary, flattened into each service's own `Args`.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, ValueEnum};

/// Static facts about one deployable.
#[derive(Debug, Clone, Copy)]
pub struct ServiceInfo {
    /// Binary and crate name, e.g. `metrics-gateway`.
    pub name: &'static str,
    /// Prefix of the service's own metrics, e.g. `metrics_gateway`.
    pub metric_prefix: &'static str,
    /// Address the service listens on when `--web.listen-address` is not given.
    pub default_listen: &'static str,
}

impl ServiceInfo {
    /// The default listen address as a socket address.
    pub fn default_listen_addr(&self) -> SocketAddr {
        // The defaults are compile-time constants of the form "0.0.0.0:PORT".
        self.default_listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Human-readable lines (logfmt-like).
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Flags every binary of the suite accepts.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Address to listen on for the HTTP API, `/metrics` and the `/-/` lifecycle endpoints
    /// (HOST:PORT). Defaults to the service's own port on all interfaces.
    #[arg(long = "web.listen-address", value_name = "HOST:PORT")]
    pub listen_address: Option<SocketAddr>,

    /// YAML configuration file. Without it the embedded defaults apply. Re-read on SIGHUP and
    /// `POST /-/reload`; an invalid file is rejected and the running config kept.
    #[arg(long = "config.file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Log filter: a level (`error`, `warn`, `info`, `debug`, `trace`) or a `tracing`
    /// directive list such as `info,metrics_gateway=debug`.
    #[arg(long = "log.level", value_name = "FILTER", default_value = "info")]
    pub log_level: String,

    /// Log output format.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How long a graceful shutdown (SIGTERM/SIGINT) may take before the process quits
    /// anyway. A second signal quits at once.
    #[arg(long = "shutdown.grace-period", value_name = "DURATION", default_value = "30s",
          value_parser = parse_duration)]
    pub grace_period: Duration,
}

impl CommonArgs {
    /// The address to bind: the flag, or the service's default.
    pub fn listen_addr(&self, info: &ServiceInfo) -> SocketAddr {
        self.listen_address
            .unwrap_or_else(|| info.default_listen_addr())
    }
}

impl Default for CommonArgs {
    fn default() -> Self {
        Self {
            listen_address: None,
            config_file: None,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            grace_period: Duration::from_secs(30),
        }
    }
}

/// Parses a duration the way Prometheus flags do: `30s`, `5m`, `1h30m`, `250ms`, `2d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    // Prometheus allows `d`, `w`, `y`; humantime knows `d` and `w`. Rewrite `y` as days.
    let rewritten = s.replace('y', "*365d");
    if rewritten.contains('*') {
        let n: u64 = s
            .trim_end_matches('y')
            .parse()
            .map_err(|_| format!("invalid duration {s:?}: use e.g. 30s, 5m, 1h, 7d"))?;
        return n
            .checked_mul(365 * 86_400)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("invalid duration {s:?}: too long"));
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration {s:?}: {e} (use e.g. 30s, 5m, 1h, 7d)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_prometheus_flags() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("1y"), Ok(Duration::from_secs(365 * 86_400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("1000000000000y")
            .unwrap_err()
            .contains("too long"));
        let err = parse_duration("soon").unwrap_err();
        assert!(err.contains("\"soon\""), "{err}");
    }
}
