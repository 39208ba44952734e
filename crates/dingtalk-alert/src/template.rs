//! Message templates (minijinja, i.e. Jinja syntax) and the context they see.
//!
//! Variables: `title` (text template only), `status` (`firing` when any alert fires),
//! `alerts`, `firing`, `resolved` (lists of alerts), `receiver`, `groupLabels`,
//! `commonLabels`, `commonAnnotations`, `externalURL`, `groupKey`, `truncatedAlerts`,
//! `notifications` (how many Alertmanager notifications were merged into this message),
//! `target`. Each alert has `status`, `labels`, `annotations`, `startsAt`, `endsAt` (as
//! sent), `starts_at` / `ends_at` (formatted in the configured time zone), `duration`,
//! `generatorURL`, `silenceURL`, `fingerprint`.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use minijinja::{context, Environment, Value};
use serde::Serialize;

pub use crate::message::Rendered;
use crate::{
    alert::{Alert, KV},
    message::MessageType,
};

/// Default title for every message type.
pub const DEFAULT_TITLE: &str = r#"{% if firing %}[FIRING:{{ firing|length }}{% if resolved %}, RESOLVED:{{ resolved|length }}{% endif %}]{% else %}[RESOLVED:{{ resolved|length }}]{% endif %} {{ commonLabels.alertname or groupLabels.alertname or "alerts" }}"#;

/// Default markdown text (markdown and actionCard messages).
pub const DEFAULT_MARKDOWN: &str = r#"#### {{ title }}
{% if firing %}
**🔥 Firing ({{ firing|length }})**
{% for a in firing %}
---
**{{ a.labels.alertname }}**{% if a.labels.severity %} · `{{ a.labels.severity }}`{% endif %}

{% if a.annotations.summary %}> {{ a.annotations.summary }}

{% endif %}{% if a.annotations.description %}{{ a.annotations.description }}

{% endif %}- **Labels**: {% for k, v in a.labels|items %}{% if k != "alertname" and k != "severity" %}`{{ k }}={{ v }}` {% endif %}{% endfor %}

- **Started**: {{ a.starts_at }}
{% if a.generatorURL %}
- [Graph]({{ a.generatorURL }}){% if a.silenceURL %} · [Silence]({{ a.silenceURL }}){% endif %}
{% endif %}
{% endfor %}{% endif %}{% if resolved %}
**✅ Resolved ({{ resolved|length }})**
{% for a in resolved %}
---
**{{ a.labels.alertname }}**{% if a.labels.severity %} · `{{ a.labels.severity }}`{% endif %}

{% if a.annotations.summary %}> {{ a.annotations.summary }}

{% endif %}- **Labels**: {% for k, v in a.labels|items %}{% if k != "alertname" and k != "severity" %}`{{ k }}={{ v }}` {% endif %}{% endfor %}

- **Started**: {{ a.starts_at }}

- **Resolved**: {{ a.ends_at }} (after {{ a.duration }})
{% endfor %}{% endif %}"#;

/// Default plain text (text messages).
pub const DEFAULT_TEXT: &str = r#"{{ title }}
{% for a in firing %}
[FIRING] {{ a.labels.alertname }}{% if a.labels.severity %} ({{ a.labels.severity }}){% endif %}
{% if a.annotations.summary %}Summary: {{ a.annotations.summary }}
{% endif %}{% if a.annotations.description %}Description: {{ a.annotations.description }}
{% endif %}Labels: {% for k, v in a.labels|items %}{% if k != "alertname" %}{{ k }}={{ v }} {% endif %}{% endfor %}
Started: {{ a.starts_at }}
{% if a.generatorURL %}Graph: {{ a.generatorURL }}
{% endif %}{% endfor %}{% for a in resolved %}
[RESOLVED] {{ a.labels.alertname }}{% if a.labels.severity %} ({{ a.labels.severity }}){% endif %}
{% if a.annotations.summary %}Summary: {{ a.annotations.summary }}
{% endif %}Labels: {% for k, v in a.labels|items %}{% if k != "alertname" %}{{ k }}={{ v }} {% endif %}{% endfor %}
Started: {{ a.starts_at }}, resolved: {{ a.ends_at }} (after {{ a.duration }})
{% endfor %}"#;

/// Why a template did not compile or render.
pub type Error = minijinja::Error;

/// One alert as templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertCtx {
    status: String,
    labels: KV,
    annotations: KV,
    #[serde(rename = "startsAt")]
    starts_at_raw: String,
    #[serde(rename = "endsAt")]
    ends_at_raw: String,
    starts_at: String,
    ends_at: String,
    duration: String,
    #[serde(rename = "generatorURL")]
    generator_url: String,
    #[serde(rename = "silenceURL")]
    silence_url: String,
    fingerprint: String,
}

/// Everything a message template sees.
#[derive(Debug, Clone, Serialize)]
pub struct MessageCtx {
    /// Target name.
    pub target: String,
    /// `firing` if any alert fires.
    pub status: String,
    /// Alertmanager receiver.
    pub receiver: String,
    /// All alerts, firing first.
    pub alerts: Vec<AlertCtx>,
    /// Firing alerts.
    pub firing: Vec<AlertCtx>,
    /// Resolved alerts.
    pub resolved: Vec<AlertCtx>,
    /// Group labels shared by every merged notification.
    #[serde(rename = "groupLabels")]
    pub group_labels: KV,
    /// Labels every alert shares.
    #[serde(rename = "commonLabels")]
    pub common_labels: KV,
    /// Annotations every alert shares.
    #[serde(rename = "commonAnnotations")]
    pub common_annotations: KV,
    /// Alertmanager's URL.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// Group key (of the first notification).
    #[serde(rename = "groupKey")]
    pub group_key: String,
    /// Alerts Alertmanager itself left out.
    #[serde(rename = "truncatedAlerts")]
    pub truncated_alerts: u64,
    /// How many notifications were merged into this message.
    pub notifications: usize,
}

/// Where an alert came from: the notification fields templates show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Origin {
    /// Alertmanager receiver.
    pub receiver: String,
    /// Group labels.
    pub group_labels: KV,
    /// Alertmanager external URL.
    pub external_url: String,
    /// Group key.
    pub group_key: String,
    /// Alerts Alertmanager left out.
    pub truncated_alerts: u64,
}

fn intersect<'a>(mut maps: impl Iterator<Item = &'a KV>) -> KV {
    let Some(first) = maps.next() else {
        return KV::new();
    };
    let mut common = first.clone();
    for m in maps {
        common.retain(|k, v| m.get(k) == Some(v));
    }
    common
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(s).ok()?.with_timezone(&Utc);
    // Alertmanager's "no end" is the zero time.
    (t.timestamp() > 0).then_some(t)
}

fn human_duration(secs: i64) -> String {
    let secs = secs.max(0);
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3_600,
        secs % 3_600 / 60,
        secs % 60,
    );
    let mut out = String::new();
    for (n, unit) in [(d, "d"), (h, "h"), (m, "m"), (s, "s")] {
        if n > 0 {
            out.push_str(&format!("{n}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("0s");
    }
    out
}

fn silence_url(external: &str, labels: &KV) -> String {
    if external.is_empty() {
        return String::new();
    }
    let matchers: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    let filter = format!("{{{}}}", matchers.join(","));
    format!(
        "{}/#/silences/new?filter={}",
        external.trim_end_matches('/'),
        crate::sign::url_encode(&filter)
    )
}

impl AlertCtx {
    /// The template view of `alert`, times shown in `tz`.
    pub fn new(alert: &Alert, origin: &Origin, tz: Tz) -> Self {
        let fmt = |t: DateTime<Utc>| {
            t.with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string()
        };
        let starts = parse_time(&alert.starts_at);
        let ends = parse_time(&alert.ends_at).filter(|_| alert.is_resolved());
        let duration = match (starts, ends) {
            (Some(s), Some(e)) => human_duration((e - s).num_seconds()),
            (Some(s), None) => human_duration((Utc::now() - s).num_seconds()),
            _ => String::new(),
        };
        Self {
            status: alert.status.clone(),
            labels: alert.labels.clone(),
            annotations: alert.annotations.clone(),
            starts_at_raw: alert.starts_at.clone(),
            ends_at_raw: alert.ends_at.clone(),
            starts_at: starts.map(fmt).unwrap_or_else(|| alert.starts_at.clone()),
            ends_at: ends.map(fmt).unwrap_or_default(),
            duration,
            generator_url: alert.generator_url.clone(),
            silence_url: silence_url(&origin.external_url, &alert.labels),
            fingerprint: alert.fingerprint.clone(),
        }
    }
}

impl MessageCtx {
    /// The context for one message carrying `alerts` (each with where it came from).
    pub fn new<'a>(
        target: &str,
        alerts: impl IntoIterator<Item = (&'a Alert, &'a Origin)>,
        tz: Tz,
    ) -> Self {
        let alerts: Vec<(&Alert, &Origin)> = alerts.into_iter().collect();
        let mut origins: Vec<&Origin> = Vec::new();
        for (_, o) in &alerts {
            if !origins.iter().any(|x| x == o) {
                origins.push(o);
            }
        }
        let first = origins.first().copied().cloned().unwrap_or_default();
        let views: Vec<AlertCtx> = alerts
            .iter()
            .map(|(a, o)| AlertCtx::new(a, o, tz))
            .collect();
        let (firing, resolved): (Vec<_>, Vec<_>) =
            views.into_iter().partition(|a| a.status != "resolved");
        let mut all = firing.clone();
        all.extend(resolved.iter().cloned());
        Self {
            target: target.to_string(),
            status: if firing.is_empty() {
                "resolved"
            } else {
                "firing"
            }
            .to_string(),
            receiver: first.receiver.clone(),
            group_labels: intersect(origins.iter().map(|o| &o.group_labels)),
            common_labels: intersect(alerts.iter().map(|(a, _)| &a.labels)),
            common_annotations: intersect(alerts.iter().map(|(a, _)| &a.annotations)),
            external_url: first.external_url.clone(),
            group_key: first.group_key.clone(),
            truncated_alerts: origins.iter().map(|o| o.truncated_alerts).sum(),
            notifications: origins.len(),
            alerts: all,
            firing,
            resolved,
        }
    }

    /// Whether any alert fires.
    pub fn is_firing(&self) -> bool {
        !self.firing.is_empty()
    }
}

/// A target's compiled title and text templates (custom ones plus the defaults to fall back
/// on).
pub struct Templates {
    env: Environment<'static>,
    custom: bool,
    tz: Tz,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("custom", &self.custom)
            .field("tz", &self.tz)
            .finish()
    }
}

impl Templates {
    /// Compiles the templates for a message type; `None` means the default.
    pub fn new(
        message_type: MessageType,
        title: Option<String>,
        text: Option<String>,
        tz: Tz,
    ) -> Result<Self, Error> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        let default_text = match message_type {
            MessageType::Text => DEFAULT_TEXT,
            MessageType::Markdown | MessageType::ActionCard => DEFAULT_MARKDOWN,
        };
        env.add_template_owned("default_title", DEFAULT_TITLE)?;
        env.add_template_owned("default_text", default_text)?;
        let custom = title.is_some() || text.is_some();
        env.add_template_owned("title", title.unwrap_or_else(|| DEFAULT_TITLE.into()))
            .map_err(|e| annotate(e, "title template"))?;
        env.add_template_owned("text", text.unwrap_or_else(|| default_text.into()))
            .map_err(|e| annotate(e, "text template"))?;
        Ok(Self { env, custom, tz })
    }

    /// The time zone times are shown in.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// Renders with the target's templates.
    pub fn render(&self, ctx: &MessageCtx) -> Result<Rendered, Error> {
        self.render_with(ctx, "title", "text")
    }

    /// Renders with the built-in templates (used when a custom template fails at run time,
    /// so the alert still goes out).
    pub fn render_default(&self, ctx: &MessageCtx) -> Result<Rendered, Error> {
        self.render_with(ctx, "default_title", "default_text")
    }

    /// Whether custom templates are configured.
    pub fn is_custom(&self) -> bool {
        self.custom
    }

    fn render_with(&self, ctx: &MessageCtx, title: &str, text: &str) -> Result<Rendered, Error> {
        let base = Value::from_serialize(ctx);
        let title = self.env.get_template(title)?.render(&base)?;
        let title = title.trim().to_string();
        let full = context! { title => title.clone(), ..base };
        let text = self.env.get_template(text)?.render(full)?;
        Ok(Rendered {
            title,
            text: tidy(&text),
        })
    }
}

fn annotate(e: Error, what: &str) -> Error {
    let line = e
        .line()
        .map(|l| format!(" at line {l}"))
        .unwrap_or_default();
    Error::new(e.kind(), format!("{what}{line}: {e}"))
}

/// Collapses runs of more than two blank lines that template control blocks leave behind.
fn tidy(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.trim().lines() {
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(name: &str, status: &str, severity: &str) -> Alert {
        Alert {
            status: status.into(),
            labels: KV::from([
                ("alertname".into(), name.into()),
                ("severity".into(), severity.into()),
                ("instance".into(), "node1:9100".into()),
            ]),
            annotations: KV::from([
                ("summary".into(), format!("{name} summary")),
                ("description".into(), format!("{name} description")),
            ]),
            starts_at: "2026-11-24T14:12:29Z".into(),
            ends_at: if status == "resolved" {
                "2026-11-24T14:20:00Z".into()
            } else {
                "0001-01-01T00:00:00Z".into()
            },
            generator_url: "http://prom:9090/graph?g0.expr=up".into(),
            fingerprint: format!("fp-{name}"),
        }
    }

    fn origin() -> Origin {
        Origin {
            receiver: "dingtalk".into(),
            external_url: "http://am:9093".into(),
            ..Origin::default()
        }
    }

    #[test]
    fn default_markdown_shows_everything_an_on_call_needs() {
        let t =
            Templates::new(MessageType::Markdown, None, None, chrono_tz::Asia::Shanghai).unwrap();
        let (a, b, c) = (
            alert("HighCPU", "firing", "critical"),
            alert("DiskFull", "firing", "warning"),
            alert("NodeDown", "resolved", "critical"),
        );
        let o = origin();
        let ctx = MessageCtx::new("ops", [(&a, &o), (&b, &o), (&c, &o)], t.tz());
        let r = t.render(&ctx).unwrap();
        assert_eq!(r.title, "[FIRING:2, RESOLVED:1] alerts");
        for needle in [
            "HighCPU summary",
            "HighCPU description",
            "`critical`",
            "`instance=node1:9100`",
            // 14:12:29 UTC shown in Shanghai time.
            "2026-11-24 22:12:29 CST",
            "[Graph](http://prom:9090/graph?g0.expr=up)",
            "http://am:9093/#/silences/new?filter=%7Balertname%3D%22HighCPU%22",
            "Firing (2)",
            "Resolved (1)",
            "NodeDown summary",
            "2026-11-24 22:20:00 CST (after 7m31s)",
        ] {
            assert!(r.text.contains(needle), "{needle} missing in\n{}", r.text);
        }
        assert!(!r.text.contains("\n\n\n"), "{}", r.text);
        let single = MessageCtx::new("ops", [(&c, &o)], t.tz());
        assert_eq!(t.render(&single).unwrap().title, "[RESOLVED:1] NodeDown");
    }

    #[test]
    fn default_text_is_plain() {
        let t = Templates::new(MessageType::Text, None, None, chrono_tz::UTC).unwrap();
        let a = alert("HighCPU", "firing", "critical");
        let o = origin();
        let r = t
            .render(&MessageCtx::new("ops", [(&a, &o)], t.tz()))
            .unwrap();
        assert!(r.text.starts_with("[FIRING:1] HighCPU\n"), "{}", r.text);
        assert!(
            r.text.contains("Started: 2026-11-24 14:12:29 UTC"),
            "{}",
            r.text
        );
        assert!(!r.text.contains("**"), "{}", r.text);
    }

    #[test]
    fn custom_templates_render_and_errors_name_the_line() {
        let t = Templates::new(
            MessageType::Markdown,
            Some("{{ status }} {{ alerts|length }}".into()),
            Some("{% for a in alerts %}{{ a.labels.instance }};{% endfor %}{{ title }}".into()),
            chrono_tz::UTC,
        )
        .unwrap();
        let a = alert("X", "firing", "page");
        let o = origin();
        let r = t.render(&MessageCtx::new("t", [(&a, &o)], t.tz())).unwrap();
        assert_eq!(r.title, "firing 1");
        assert_eq!(r.text, "node1:9100;firing 1");
        let err = Templates::new(
            MessageType::Markdown,
            None,
            Some("line one\n{% for x in %}".into()),
            chrono_tz::UTC,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("text template at line 2"), "{err}");
    }
}
