//! The service's configuration file: robots (targets), label-based routes and delivery
//! settings, plus the single `default` target the `--dingtalk.*` flags define.
//!
//! Loading goes file → parse → [`ServiceConfig::validate`] → merge the flags → read secret
//! and template files → compile templates and routes ([`Compiled`]). Only a config that
//! passed every step is swapped in on reload.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use common::{ConfigError, Secret, ServiceConfig};
use serde::{Deserialize, Serialize};

use crate::{route::Routes, template::Templates};
// The config aggregates the settings each concept owns: message types and mentions belong
// to `message`, routes to `route`. Re-exported so `config::MessageType` keeps working.
pub use crate::{
    message::{Mentions, MessageType},
    route::RouteConfig,
};

/// Where DingTalk's open API lives; `/robot/send` is appended.
pub const DEFAULT_BASE_URL: &str = "https://oapi.dingtalk.com";
/// The name of the target the `--dingtalk.access-token` flag defines.
pub const DEFAULT_TARGET: &str = "default";
/// DingTalk accepts at most this many messages per robot per minute.
pub const DINGTALK_MAX_PER_MINUTE: u32 = 20;
/// DingTalk rejects message bodies above this many bytes.
pub const DINGTALK_MAX_BODY_BYTES: usize = 20_000;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_ATTEMPTS: u32 = 6;
const DEFAULT_BACKOFF_BASE: Duration = Duration::from_secs(1);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);
const DEFAULT_TOO_FAST_PAUSE: Duration = Duration::from_secs(60);
const DEFAULT_TOO_FAST_ATTEMPTS: u32 = 12;
const DEFAULT_MAX_QUEUED_ALERTS: usize = 10_000;
const DEFAULT_MAX_QUEUED_BYTES: usize = 16 << 20;
const DEFAULT_MAX_ALERTS_PER_REQUEST: usize = 10_000;

/// The YAML configuration of dingtalk-alert. Every field has a default, so an empty file (or
/// none) is valid.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// IANA time zone that start and end times are shown in (`Asia/Shanghai`).
    pub timezone: Option<String>,
    /// The DingTalk robots alerts can be delivered to, by name (`POST /dingtalk/<name>/send`).
    pub targets: BTreeMap<String, TargetConfig>,
    /// Label-based routing for `POST /dingtalk/send`: the first matching route (and every
    /// later one after a route with `continue: true`) receives the alert.
    pub routes: Vec<RouteConfig>,
    /// Targets of alerts that `POST /dingtalk/send` cannot route; empty means `[default]`
    /// when that target exists.
    pub fallback_targets: Vec<String>,
    /// Delivery: timeouts, retries, rate limit, size cap.
    pub delivery: DeliveryConfig,
    /// Compiled templates and routes; filled in by the loader, never (de)serialised.
    #[serde(skip)]
    pub compiled: Option<Arc<Compiled>>,
}

/// One DingTalk robot and how messages to it look.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TargetConfig {
    /// The robot's full webhook URL including `access_token` (alternative to `access_token`).
    pub webhook_url: Option<Secret>,
    /// Base URL of the DingTalk API; `/robot/send` is appended. Defaults to `--dingtalk.url`.
    pub url: Option<String>,
    /// The robot's `access_token`.
    pub access_token: Option<Secret>,
    /// File holding the robot's `access_token` (re-read on reload).
    pub access_token_file: Option<PathBuf>,
    /// The robot's signing secret (`SEC…`), when the robot uses "加签" security.
    pub secret: Option<Secret>,
    /// File holding the signing secret (re-read on reload).
    pub secret_file: Option<PathBuf>,
    /// The robot's custom keyword, when it uses keyword security: every message is made to
    /// contain it.
    pub keyword: Option<String>,
    /// `markdown` (default), `text` or `actionCard`.
    pub message_type: MessageType,
    /// Who is @-mentioned in firing messages.
    pub mentions: Mentions,
    /// Inline minijinja template for the title (markdown and actionCard).
    pub title_template: Option<String>,
    /// File holding the title template.
    pub title_template_file: Option<PathBuf>,
    /// Inline minijinja template for the message text.
    pub text_template: Option<String>,
    /// File holding the text template.
    pub text_template_file: Option<PathBuf>,
}

/// How messages are delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Upper bound of one outbound request, connection included.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Attempts per message for retryable failures (network, timeout, 408/429/5xx, busy).
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Largest retry delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Pause after DingTalk says "too fast" (130101/410100).
    #[serde(with = "humantime_serde")]
    pub too_fast_pause: Duration,
    /// Attempts after "too fast" answers before giving up (DingTalk bans for 10 minutes).
    pub too_fast_attempts: u32,
    /// Messages per robot per minute (at most 20, DingTalk's limit).
    pub messages_per_minute: u32,
    /// Largest request body sent; longer messages are split or truncated (at most 20000).
    pub max_body_bytes: usize,
    /// Alerts a target may hold waiting for delivery; beyond it Alertmanager gets 503.
    pub max_queued_alerts: usize,
    /// Bytes of alerts (labels, annotations, URLs) a target may hold waiting for delivery;
    /// beyond it Alertmanager gets 503 and retries.
    pub max_queued_bytes: usize,
    /// Alerts one webhook request (or preview) may carry; more is refused with 413.
    pub max_alerts_per_request: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_base: DEFAULT_BACKOFF_BASE,
            backoff_max: DEFAULT_BACKOFF_MAX,
            too_fast_pause: DEFAULT_TOO_FAST_PAUSE,
            too_fast_attempts: DEFAULT_TOO_FAST_ATTEMPTS,
            messages_per_minute: DINGTALK_MAX_PER_MINUTE,
            max_body_bytes: DINGTALK_MAX_BODY_BYTES,
            max_queued_alerts: DEFAULT_MAX_QUEUED_ALERTS,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_alerts_per_request: DEFAULT_MAX_ALERTS_PER_REQUEST,
        }
    }
}

impl ServiceConfig for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        let d = &self.delivery;
        if d.timeout.is_zero() {
            return Err(ConfigError::invalid(
                "delivery.timeout",
                "must be greater than zero",
            ));
        }
        if d.max_attempts == 0 {
            return Err(ConfigError::invalid(
                "delivery.max_attempts",
                "must be at least 1",
            ));
        }
        if d.messages_per_minute == 0 || d.messages_per_minute > DINGTALK_MAX_PER_MINUTE {
            return Err(ConfigError::invalid(
                "delivery.messages_per_minute",
                format!("must be between 1 and {DINGTALK_MAX_PER_MINUTE} (DingTalk's limit)"),
            ));
        }
        if d.max_body_bytes < 1_000 || d.max_body_bytes > DINGTALK_MAX_BODY_BYTES {
            return Err(ConfigError::invalid(
                "delivery.max_body_bytes",
                format!("must be between 1000 and {DINGTALK_MAX_BODY_BYTES} (DingTalk's limit)"),
            ));
        }
        if d.max_queued_alerts == 0 {
            return Err(ConfigError::invalid(
                "delivery.max_queued_alerts",
                "must be greater than zero",
            ));
        }
        if d.max_queued_bytes == 0 {
            return Err(ConfigError::invalid(
                "delivery.max_queued_bytes",
                "must be greater than zero",
            ));
        }
        if d.max_alerts_per_request == 0 {
            return Err(ConfigError::invalid(
                "delivery.max_alerts_per_request",
                "must be greater than zero",
            ));
        }
        if d.backoff_max < d.backoff_base {
            return Err(ConfigError::invalid(
                "delivery.backoff_max",
                "must not be smaller than `delivery.backoff_base`",
            ));
        }
        for (name, t) in &self.targets {
            validate_target(name, t)?;
        }
        for (i, r) in self.routes.iter().enumerate() {
            if r.targets.is_empty() {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].targets"),
                    "must name at least one target",
                ));
            }
        }
        Ok(())
    }
}

fn validate_target(name: &str, t: &TargetConfig) -> Result<(), ConfigError> {
    let field = |f: &str| format!("targets.{name}.{f}");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        return Err(ConfigError::invalid(
            format!("targets.{name:?}"),
            "target names may only hold letters, digits, `-`, `_` and `.`",
        ));
    }
    let sources = [
        t.webhook_url.is_some(),
        t.access_token.is_some(),
        t.access_token_file.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if sources != 1 {
        return Err(ConfigError::invalid(
            field("access_token"),
            "set exactly one of `webhook_url`, `access_token` and `access_token_file`",
        ));
    }
    if t.webhook_url.is_some() && t.url.is_some() {
        return Err(ConfigError::invalid(
            field("url"),
            "cannot be combined with `webhook_url` (which holds the whole URL)",
        ));
    }
    if t.secret.is_some() && t.secret_file.is_some() {
        return Err(ConfigError::invalid(
            field("secret"),
            "set at most one of `secret` and `secret_file`",
        ));
    }
    if t.title_template.is_some() && t.title_template_file.is_some() {
        return Err(ConfigError::invalid(
            field("title_template"),
            "set at most one of `title_template` and `title_template_file`",
        ));
    }
    if t.text_template.is_some() && t.text_template_file.is_some() {
        return Err(ConfigError::invalid(
            field("text_template"),
            "set at most one of `text_template` and `text_template_file`",
        ));
    }
    if let Some(k) = &t.keyword {
        if k.trim().is_empty() {
            return Err(ConfigError::invalid(field("keyword"), "must not be empty"));
        }
    }
    Ok(())
}

/// The robot the `--dingtalk.*` flags describe.
#[derive(Debug, Clone, Default)]
pub struct FlagTarget {
    /// `--dingtalk.access-token` / `DINGTALK_ACCESS_TOKEN`.
    pub access_token: Option<Secret>,
    /// `--dingtalk.access-token-file`.
    pub access_token_file: Option<PathBuf>,
    /// `--dingtalk.secret` / `DINGTALK_SECRET`.
    pub secret: Option<Secret>,
    /// `--dingtalk.secret-file`.
    pub secret_file: Option<PathBuf>,
    /// `--dingtalk.url`.
    pub base_url: String,
}

/// A resolved robot: where to post and how to sign.
#[derive(Clone, PartialEq, Eq)]
pub struct Robot {
    /// `<base>/robot/send?access_token=<token>` — holds the token, so it is a secret.
    pub send_url: Secret,
    /// The token alone, for redacting error text.
    pub token: Secret,
    /// Signing secret, if any.
    pub secret: Option<Secret>,
}

impl Target {
    /// What the message builder needs to know about the target.
    pub fn style(&self) -> crate::message::Style<'_> {
        crate::message::Style {
            message_type: self.message_type,
            keyword: self.keyword.as_deref(),
            mentions: &self.mentions,
        }
    }
}

impl std::fmt::Debug for Robot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Robot")
            .field("send_url", &self.send_url)
            .field("signed", &self.secret.is_some())
            .finish()
    }
}

impl Robot {
    /// A key identifying the robot itself (two targets may share one robot and then share
    /// its rate limit). Never printed.
    pub fn limiter_key(&self) -> String {
        self.send_url.expose().to_string()
    }
}

/// A target ready for use: its robot, templates and mention settings.
#[derive(Debug)]
pub struct Target {
    /// Name as used in `/dingtalk/<name>/send` and in metrics.
    pub name: String,
    /// Where to post.
    pub robot: Robot,
    /// Keyword the robot requires, if any.
    pub keyword: Option<String>,
    /// Message type.
    pub message_type: MessageType,
    /// Mentions.
    pub mentions: Mentions,
    /// Compiled templates.
    pub templates: Templates,
}

/// Everything compiled from a config: targets, routes, time zone.
#[derive(Debug)]
pub struct Compiled {
    /// Targets by name.
    pub targets: BTreeMap<String, Arc<Target>>,
    /// Label routes for `POST /dingtalk/send`.
    pub routes: Routes,
    /// Delivery settings.
    pub delivery: DeliveryConfig,
}

/// Loads the config file (or defaults), merges the flag-defined target and compiles it.
pub fn load(path: Option<&Path>, flags: &FlagTarget) -> Result<Config, ConfigError> {
    finish(common::config::load(path)?, flags)
}

/// Parses YAML text (named `origin` in errors), merges the flag target and compiles it.
pub fn load_str(text: &str, origin: &Path, flags: &FlagTarget) -> Result<Config, ConfigError> {
    finish(common::config::from_yaml_str(text, origin)?, flags)
}

fn finish(mut config: Config, flags: &FlagTarget) -> Result<Config, ConfigError> {
    if flags.access_token.is_some() || flags.access_token_file.is_some() {
        if config.targets.contains_key(DEFAULT_TARGET) {
            return Err(ConfigError::invalid(
                format!("targets.{DEFAULT_TARGET}"),
                "is defined both in the config file and by --dingtalk.access-token; remove one",
            ));
        }
        config.targets.insert(
            DEFAULT_TARGET.to_string(),
            TargetConfig {
                url: Some(flags.base_url.clone()),
                access_token: flags.access_token.clone(),
                access_token_file: flags.access_token_file.clone(),
                secret: flags.secret.clone(),
                secret_file: flags.secret_file.clone(),
                ..TargetConfig::default()
            },
        );
        validate_target(DEFAULT_TARGET, &config.targets[DEFAULT_TARGET])?;
    } else if flags.secret.is_some() || flags.secret_file.is_some() {
        return Err(ConfigError::invalid(
            "--dingtalk.secret",
            "needs --dingtalk.access-token (the secret signs requests to that robot)",
        ));
    }
    let compiled = compile(&config, &flags.base_url)?;
    config.compiled = Some(Arc::new(compiled));
    Ok(config)
}

fn read_secret_file(field: String, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::invalid(
            field.clone(),
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let value = text.trim();
    if value.is_empty() {
        return Err(ConfigError::invalid(
            field,
            format!("{} is empty", path.display()),
        ));
    }
    Ok(Secret::new(value))
}

fn read_template_file(field: String, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid(field, format!("cannot read {}: {e}", path.display())))
}

/// Builds the robot URL: `<base>/robot/send?access_token=<token>`.
pub fn send_url(base: &str, token: &str) -> String {
    let token = percent_encoding::utf8_percent_encode(token, percent_encoding::NON_ALPHANUMERIC);
    format!(
        "{}/robot/send?access_token={token}",
        base.trim_end_matches('/')
    )
}

fn compile(config: &Config, default_base: &str) -> Result<Compiled, ConfigError> {
    let tz = match &config.timezone {
        None => chrono_tz::UTC,
        Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| {
            ConfigError::invalid(
                "timezone",
                format!("{name:?} is not an IANA time zone name (e.g. Asia/Shanghai, UTC)"),
            )
        })?,
    };
    let mut targets = BTreeMap::new();
    for (name, t) in &config.targets {
        let field = |f: &str| format!("targets.{name}.{f}");
        let robot = if let Some(url) = &t.webhook_url {
            let parsed = url::Url::parse(url.expose()).map_err(|e| {
                ConfigError::invalid(field("webhook_url"), format!("is not a URL: {e}"))
            })?;
            let token = parsed
                .query_pairs()
                .find(|(k, _)| k == "access_token")
                .map(|(_, v)| v.into_owned())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    ConfigError::invalid(field("webhook_url"), "has no `access_token` parameter")
                })?;
            Robot {
                send_url: url.clone(),
                token: Secret::new(token),
                secret: None,
            }
        } else {
            let token = match (&t.access_token, &t.access_token_file) {
                (Some(tok), _) => tok.clone(),
                (None, Some(path)) => read_secret_file(field("access_token_file"), path)?,
                (None, None) => {
                    return Err(ConfigError::invalid(field("access_token"), "is required"))
                }
            };
            if token.expose().trim().is_empty() {
                return Err(ConfigError::invalid(field("access_token"), "is empty"));
            }
            let base = t.url.as_deref().unwrap_or(default_base);
            let parsed = url::Url::parse(base)
                .map_err(|e| ConfigError::invalid(field("url"), format!("{base:?}: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(ConfigError::invalid(
                    field("url"),
                    format!("{base:?} must be an http:// or https:// URL"),
                ));
            }
            Robot {
                send_url: Secret::new(send_url(base, token.expose())),
                token,
                secret: None,
            }
        };
        let secret = match (&t.secret, &t.secret_file) {
            (Some(s), _) if !s.is_empty() => Some(s.clone()),
            (_, Some(path)) => Some(read_secret_file(field("secret_file"), path)?),
            _ => None,
        };
        let robot = Robot { secret, ..robot };
        let title = match (&t.title_template, &t.title_template_file) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(p)) => Some(read_template_file(field("title_template_file"), p)?),
            _ => None,
        };
        let text = match (&t.text_template, &t.text_template_file) {
            (Some(s), _) => Some(s.clone()),
            (None, Some(p)) => Some(read_template_file(field("text_template_file"), p)?),
            _ => None,
        };
        let templates = Templates::new(t.message_type, title, text, tz)
            .map_err(|e| ConfigError::invalid(field("text_template"), e.to_string()))?;
        targets.insert(
            name.clone(),
            Arc::new(Target {
                name: name.clone(),
                robot,
                keyword: t.keyword.clone(),
                message_type: t.message_type,
                mentions: t.mentions.clone(),
                templates,
            }),
        );
    }
    let fallback = if config.fallback_targets.is_empty() {
        if targets.contains_key(DEFAULT_TARGET) {
            vec![DEFAULT_TARGET.to_string()]
        } else {
            vec![]
        }
    } else {
        config.fallback_targets.clone()
    };
    for (i, name) in fallback.iter().enumerate() {
        if !targets.contains_key(name) {
            return Err(ConfigError::invalid(
                format!("fallback_targets[{i}]"),
                format!("names unknown target `{name}`"),
            ));
        }
    }
    let routes = Routes::compile(&config.routes, fallback, |n| targets.contains_key(n))?;
    Ok(Compiled {
        targets,
        routes,
        delivery: config.delivery.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let c: Config = common::config::from_yaml_str(text, Path::new("dingtalk.yml"))?;
        let compiled = compile(&c, DEFAULT_BASE_URL)?;
        Ok(Config {
            compiled: Some(Arc::new(compiled)),
            ..c
        })
    }

    #[test]
    fn full_example_parses_and_compiles() {
        let c = parse(
            r#"
timezone: Asia/Shanghai
targets:
  ops:
    access_token: tok-ops
    secret: SECabc
    message_type: actionCard
    mentions: {mobiles: ["13800000000"], all: false}
  db:
    webhook_url: "http://127.0.0.1:9/robot/send?access_token=tok-db"
    keyword: alert
routes:
  - match: {team: db}
    targets: [db]
    continue: true
  - match_re: {severity: "critical|page"}
    targets: [ops]
fallback_targets: [ops]
delivery: {timeout: 3s, max_attempts: 2}
"#,
        )
        .unwrap();
        let compiled = c.compiled.unwrap();
        let ops = &compiled.targets["ops"];
        assert_eq!(
            ops.robot.send_url.expose(),
            "https://oapi.dingtalk.com/robot/send?access_token=tok%2Dops"
        );
        assert_eq!(ops.message_type, MessageType::ActionCard);
        assert_eq!(compiled.delivery.timeout, Duration::from_secs(3));
        assert_eq!(compiled.targets["db"].robot.token.expose(), "tok-db");
    }

    #[test]
    fn readme_example_is_a_valid_config() {
        let readme = include_str!("../README.md");
        let section = readme.split("## Configuration").nth(1).unwrap();
        let yaml = section
            .split("```yaml\n")
            .nth(1)
            .and_then(|s| s.split("```").next())
            .unwrap();
        let dir = std::env::temp_dir().join(format!("dt-readme-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tpl = dir.join("oncall.md.j2");
        std::fs::write(&tpl, "{{ title }}").unwrap();
        let yaml = yaml.replace("/etc/dingtalk/oncall.md.j2", tpl.to_str().unwrap());
        let c = parse(&yaml).unwrap();
        let compiled = c.compiled.unwrap();
        assert_eq!(
            compiled.targets.keys().collect::<Vec<_>>(),
            ["db", "oncall"]
        );
        assert_eq!(compiled.targets["oncall"].keyword.as_deref(), Some("告警"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            ("targets: {a: {}}", "targets.a.access_token"),
            (
                "targets: {a: {access_token: x, webhook_url: y}}",
                "targets.a.access_token",
            ),
            (
                "delivery: {messages_per_minute: 30}",
                "delivery.messages_per_minute",
            ),
            (
                "delivery: {max_body_bytes: 50000}",
                "delivery.max_body_bytes",
            ),
            ("timezone: Mars/Base", "timezone"),
            (
                "targets: {a: {access_token: x}}\nroutes: [{targets: [b]}]",
                "routes[0].targets",
            ),
            (
                "targets: {a: {access_token: x}}\nroutes: [{match_re: {x: '('}, targets: [a]}]",
                "routes[0].match_re.x",
            ),
            (
                "targets: {a: {access_token: x, text_template: '{{ oops'}}",
                "targets.a.text_template",
            ),
            (
                "targets: {a: {webhook_url: 'http://x/robot/send'}}",
                "targets.a.webhook_url",
            ),
            ("fallback_targets: [nope]", "fallback_targets[0]"),
        ];
        for (yaml, field) in cases {
            let err = parse(yaml).unwrap_err().to_string();
            assert!(err.contains(field), "{yaml}: {err}");
        }
        let err = parse("targets: {a: {acces_token: x}}")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("acces_token") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn flags_define_the_default_target_and_secrets_stay_hidden() {
        let flags = FlagTarget {
            access_token: Some(Secret::new("tok-flag")),
            secret: Some(Secret::new("SECflag")),
            base_url: "http://127.0.0.1:1".into(),
            ..FlagTarget::default()
        };
        let c = load(None, &flags).unwrap();
        let t = &c.compiled.as_ref().unwrap().targets[DEFAULT_TARGET];
        assert_eq!(
            t.robot.send_url.expose(),
            "http://127.0.0.1:1/robot/send?access_token=tok%2Dflag"
        );
        let dump = serde_yaml::to_string(&c).unwrap();
        assert!(
            !dump.contains("tok-flag") && !dump.contains("SECflag"),
            "{dump}"
        );
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("tok-flag") && !debug.contains("SECflag"),
            "{debug}"
        );

        let only_secret = FlagTarget {
            secret: Some(Secret::new("SEC")),
            ..FlagTarget::default()
        };
        assert!(load(None, &only_secret)
            .unwrap_err()
            .to_string()
            .contains("--dingtalk.secret"));
    }

    #[test]
    fn template_files_are_read_and_their_errors_name_the_field() {
        let dir = std::env::temp_dir().join(format!("dt-tpl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("text.j2");
        std::fs::write(
            &text,
            "{% for a in alerts %}<{{ a.labels.alertname }}>{% endfor %}",
        )
        .unwrap();
        let yaml = format!(
            "targets: {{a: {{access_token: x, text_template_file: {}}}}}",
            text.display()
        );
        let c = parse(&yaml).unwrap();
        let t = &c.compiled.unwrap().targets["a"];
        let alert = crate::alert::Alert {
            status: "firing".into(),
            labels: [("alertname".to_string(), "Boom".to_string())].into(),
            ..Default::default()
        };
        let origin = crate::template::Origin::default();
        let ctx = crate::template::MessageCtx::new("a", [(&alert, &origin)], t.templates.tz());
        assert_eq!(t.templates.render(&ctx).unwrap().text, "<Boom>");
        std::fs::remove_file(&text).unwrap();
        let err = parse(&yaml).unwrap_err().to_string();
        assert!(
            err.contains("targets.a.text_template_file") && err.contains("text.j2"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn secret_files_are_read_and_trimmed() {
        let dir = std::env::temp_dir().join(format!("dt-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tok = dir.join("token");
        std::fs::write(&tok, "tok-file\n").unwrap();
        let flags = FlagTarget {
            access_token_file: Some(tok.clone()),
            base_url: DEFAULT_BASE_URL.into(),
            ..FlagTarget::default()
        };
        let c = load(None, &flags).unwrap();
        assert_eq!(
            c.compiled.unwrap().targets[DEFAULT_TARGET]
                .robot
                .token
                .expose(),
            "tok-file"
        );
        std::fs::write(&tok, "  \n").unwrap();
        let err = load(None, &flags).unwrap_err().to_string();
        assert!(
            err.contains("access_token_file") && err.contains("empty"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
