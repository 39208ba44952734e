//! The dry-run sink: what the gateway does when no robot is configured and `--dry-run.dir`
//! is given (the one-process suite gives it). A target `default` is defined whose robot is
//! this sink: every message is built exactly as for DingTalk (templates, merging, size cap,
//! rate limit), then logged, appended to `{dir}/dry-run/messages.jsonl` (one JSON object
//! per message: `time`, `target`, `body` = the DingTalk request body) and counted in
//! `dingtalk_alert_dry_run_messages_total{target}`, instead of being posted.

use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{ConfigError, Secret};
use prometheus::{IntCounterVec, Opts, Registry};

use crate::{
    config::{Compiled, Config, Robot, Target, DEFAULT_TARGET},
    transport::{BoxFuture, Reply, Transport, TransportError},
};

/// URL scheme of dry-run robots; never a real DingTalk address.
pub const SCHEME: &str = "dry-run:";
/// Where dry-run messages go below the dry-run directory.
pub const FILE: &str = "dry-run/messages.jsonl";

/// The dry-run messages file under `dir`.
pub fn messages_file(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// If `config` defines no target at all, adds the dry-run target `default` (and makes it
/// the fallback of `POST /dingtalk/send`) to its compiled form. The config as shown on
/// `/-/config` stays what the user wrote.
pub fn with_dry_run_target(mut config: Config) -> Result<Config, ConfigError> {
    let Some(compiled) = config.compiled.clone() else {
        return Ok(config);
    };
    if !compiled.targets.is_empty() {
        return Ok(config);
    }
    let templates =
        crate::template::Templates::new(Default::default(), None, None, timezone(&config)?)
            .map_err(|e| ConfigError::Other(format!("dry-run target templates: {e}")))?;
    let target = Target {
        name: DEFAULT_TARGET.to_string(),
        robot: Robot {
            send_url: Secret::new(format!("{SCHEME}{DEFAULT_TARGET}")),
            token: Secret::new("dry-run-without-robot-token"),
            secret: None,
        },
        keyword: None,
        message_type: Default::default(),
        mentions: Default::default(),
        templates,
    };
    let mut targets = compiled.targets.clone();
    targets.insert(DEFAULT_TARGET.to_string(), Arc::new(target));
    let routes = crate::route::Routes::compile(&[], vec![DEFAULT_TARGET.to_string()], |n| {
        n == DEFAULT_TARGET
    })?;
    config.compiled = Some(Arc::new(Compiled {
        targets,
        routes,
        delivery: compiled.delivery.clone(),
    }));
    Ok(config)
}

fn timezone(config: &Config) -> Result<chrono_tz::Tz, ConfigError> {
    match &config.timezone {
        None => Ok(chrono_tz::UTC),
        Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| {
            ConfigError::invalid(
                "timezone",
                format!("{name:?} is not an IANA time zone name"),
            )
        }),
    }
}

/// A transport that answers dry-run robots itself and passes every other URL on.
pub struct DryRunTransport<T> {
    inner: T,
    file: PathBuf,
    lock: Mutex<()>,
    messages: IntCounterVec,
}

impl<T: Transport> DryRunTransport<T> {
    /// Dry-run messages go to `{dir}/dry-run/messages.jsonl`; the counter is registered in
    /// `registry` with the service's `prefix`.
    pub fn new(inner: T, dir: &Path, prefix: &str, registry: &Registry) -> Self {
        let messages = IntCounterVec::new(
            Opts::new(
                format!("{prefix}_dry_run_messages_total"),
                "Messages the dry-run sink logged and wrote instead of sending (no robot token configured).",
            ),
            &["target"],
        )
        .expect("static metric definition");
        let _ = registry.register(Box::new(messages.clone()));
        Self {
            inner,
            file: messages_file(dir),
            lock: Mutex::new(()),
            messages,
        }
    }

    fn record(&self, target: &str, body: &[u8]) -> Result<(), TransportError> {
        let parsed: serde_json::Value = serde_json::from_slice(body)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into()));
        let (title, text) = summary(&parsed);
        tracing::info!(
            dingtalk_target = target,
            file = %self.file.display(),
            title,
            text,
            "Dry run: no DingTalk robot token is configured, so this message was not sent."
        );
        let line = serde_json::json!({
            "time": chrono::Utc::now().to_rfc3339(),
            "target": target,
            "body": parsed,
        });
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.file.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.file)?;
            let mut bytes = serde_json::to_vec(&line).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
            f.write_all(&bytes)?;
            f.sync_data()
        };
        write().map_err(|e| {
            TransportError::Network(format!(
                "dry run: cannot write {}: {e}",
                self.file.display()
            ))
        })?;
        self.messages.with_label_values(&[target]).inc();
        Ok(())
    }
}

/// Title and text of a DingTalk body, whatever its message type.
fn summary(body: &serde_json::Value) -> (&str, &str) {
    let s = |p: &str| body.pointer(p).and_then(serde_json::Value::as_str);
    let title = s("/markdown/title")
        .or_else(|| s("/actionCard/title"))
        .unwrap_or("");
    let text = s("/markdown/text")
        .or_else(|| s("/actionCard/text"))
        .or_else(|| s("/text/content"))
        .unwrap_or("");
    (title, text)
}

impl<T: Transport> Transport for DryRunTransport<T> {
    fn post(
        &self,
        url: String,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Reply, TransportError>> {
        let Some(rest) = url.strip_prefix(SCHEME) else {
            return self.inner.post(url, body, timeout);
        };
        let target = rest.split(['?', '&']).next().unwrap_or("").to_string();
        Box::pin(async move {
            self.record(&target, &body)?;
            Ok(Reply {
                status: 200,
                body: br#"{"errcode":0,"errmsg":"ok"}"#.to_vec(),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Never;
    impl Transport for Never {
        fn post(
            &self,
            _url: String,
            _body: Vec<u8>,
            _timeout: Duration,
        ) -> BoxFuture<'_, Result<Reply, TransportError>> {
            Box::pin(async { Err(TransportError::Network("not for the network".into())) })
        }
    }

    #[test]
    fn without_targets_the_default_target_is_the_dry_run_and_with_one_nothing_changes() {
        let flags = crate::config::FlagTarget {
            base_url: crate::config::DEFAULT_BASE_URL.into(),
            ..Default::default()
        };
        let c = with_dry_run_target(crate::config::load(None, &flags).unwrap()).unwrap();
        let compiled = c.compiled.as_ref().unwrap();
        let t = &compiled.targets[DEFAULT_TARGET];
        assert!(t.robot.send_url.expose().starts_with(SCHEME));
        assert!(
            !serde_yaml::to_string(&c).unwrap().contains("dry-run"),
            "the shown config is the user's"
        );
        let with_token = crate::config::FlagTarget {
            access_token: Some(Secret::new("tok")),
            ..flags
        };
        let c = with_dry_run_target(crate::config::load(None, &with_token).unwrap()).unwrap();
        let t = &c.compiled.as_ref().unwrap().targets[DEFAULT_TARGET];
        assert!(t.robot.send_url.expose().starts_with("https://"));
    }

    #[tokio::test]
    async fn a_dry_run_message_is_written_counted_and_answered_ok() {
        let dir = std::env::temp_dir().join(format!("dt-dry-{}", std::process::id()));
        let registry = Registry::new();
        let t = DryRunTransport::new(Never, &dir, "dingtalk_alert", &registry);
        let body =
            br#"{"msgtype":"markdown","markdown":{"title":"FIRING","text":"d-42 restarted"}}"#;
        let r = t
            .post(
                format!("{SCHEME}default"),
                body.to_vec(),
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        let text = std::fs::read_to_string(messages_file(&dir)).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["target"], "default");
        assert_eq!(line["body"]["markdown"]["text"], "d-42 restarted");
        assert_eq!(t.messages.with_label_values(&["default"]).get(), 1);
        assert!(t
            .post("http://x/robot/send".into(), vec![], Duration::from_secs(1))
            .await
            .is_err());
        let _ = std::fs::remove_dir_all(dir);
    }
}
