//! Placeholders (`{{ namespace }}`, `{{ deploymentId }}`, `{{ deploymentName }}`,
//! `{{ jobId }}`) in Flink configuration values and the log4j2 template, rendered with
//! minijinja; `mainArgs` splitting.
//!
//! Rendering is bounded: at most [`FUEL`] template instructions (minijinja's fuel) and
//! [`MAX_RENDERED_BYTES`] of output per text, so a nested `range()` in a configuration value
//! is refused in milliseconds instead of stalling the caller.

use std::{cell::Cell, collections::BTreeMap};

use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;

use crate::model::Logging;

/// Template instructions one text may execute (a log4j2 template with a hundred loggers
/// needs a few thousand).
pub const FUEL: u64 = 100_000;
/// Largest rendered text.
pub const MAX_RENDERED_BYTES: usize = 1024 * 1024;

/// Why a text could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A syntax error or an unknown placeholder (minijinja's message, with the line).
    #[error("{0}")]
    Template(String),
    #[error(
        "rendering needs more than {FUEL} template steps (a loop too long?); simplify the template"
    )]
    OutOfFuel,
    #[error("renders to more than {MAX_RENDERED_BYTES} bytes")]
    TooLarge,
    #[error("unterminated quote")]
    UnterminatedQuote,
    /// The same, in a named field (`flinkConfiguration["k"]`).
    #[error("{field}: {source}")]
    In {
        field: String,
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    fn within(self, field: impl Into<String>) -> Self {
        Error::In {
            field: field.into(),
            source: Box::new(self),
        }
    }
}

/// The values placeholders resolve to.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub namespace: String,
    pub deployment_id: String,
    pub deployment_name: String,
    pub job_id: String,
}

fn env(fuel: u64) -> Environment<'static> {
    let mut e = Environment::new();
    // A misspelt placeholder is an error, not an empty string.
    e.set_undefined_behavior(UndefinedBehavior::Strict);
    e.set_fuel(Some(fuel));
    e
}

/// Checks that `text` is a valid template (at validation time, before any job exists):
/// it parses, names only known placeholders and renders within the bounds.
pub fn check(text: &str) -> Result<(), Error> {
    env(FUEL)
        .template_from_str(text)
        .map(|_| ())
        .map_err(|err| Error::Template(describe(&err)))?;
    // Render with sample values to catch unknown placeholders early.
    let ctx = Context {
        namespace: "ns".into(),
        deployment_id: "id".into(),
        deployment_name: "name".into(),
        job_id: "job".into(),
    };
    render_with(&Cell::new(FUEL), text, &ctx, &BTreeMap::new()).map(|_| ())
}

fn describe(err: &minijinja::Error) -> String {
    let mut s = err.to_string();
    if let Some(d) = err.detail() {
        s = format!("{s} ({d})");
    }
    s
}

/// An output that refuses to grow past [`MAX_RENDERED_BYTES`].
struct Bounded {
    out: Vec<u8>,
    overflow: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() + buf.len() > MAX_RENDERED_BYTES {
            self.overflow = true;
            return Err(std::io::Error::other("rendered text too large"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Renders `text`, spending from `fuel` (shared by the texts of one configuration).
fn render_with(
    fuel: &Cell<u64>,
    text: &str,
    ctx: &Context,
    extra: &BTreeMap<&str, minijinja::Value>,
) -> Result<String, Error> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(text.to_string());
    }
    if fuel.get() == 0 {
        return Err(Error::OutOfFuel);
    }
    let e = env(fuel.get());
    let t = e
        .template_from_str(text)
        .map_err(|err| Error::Template(describe(&err)))?;
    let mut values: BTreeMap<&str, minijinja::Value> = BTreeMap::new();
    values.insert("namespace", ctx.namespace.clone().into());
    values.insert("deploymentId", ctx.deployment_id.clone().into());
    values.insert("deploymentName", ctx.deployment_name.clone().into());
    values.insert("jobId", ctx.job_id.clone().into());
    for (k, v) in extra {
        values.insert(k, v.clone());
    }
    let mut out = Bounded {
        out: Vec::new(),
        overflow: false,
    };
    let rendered = t
        .render_captured_to(values, &mut out)
        .map(|c| c.state().fuel_levels().map_or(0, |(used, _)| used));
    match rendered {
        Ok(consumed) => {
            fuel.set(fuel.get().saturating_sub(consumed));
            String::from_utf8(out.out)
                .map_err(|_| Error::Template("rendered text is not UTF-8".into()))
        }
        Err(_) if out.overflow => Err(Error::TooLarge),
        Err(err) if err.kind() == ErrorKind::OutOfFuel => Err(Error::OutOfFuel),
        Err(err) => Err(Error::Template(describe(&err))),
    }
}

/// Renders one text (e.g. `mainArgs`).
pub fn render(text: &str, ctx: &Context) -> Result<String, Error> {
    render_with(&Cell::new(FUEL), text, ctx, &BTreeMap::new())
}

/// Renders every value of a Flink configuration (all values share one [`FUEL`] budget);
/// errors name the key (`flinkConfiguration["k"]: …`).
pub fn render_config(
    config: &BTreeMap<String, String>,
    ctx: &Context,
) -> Result<BTreeMap<String, String>, Error> {
    let fuel = Cell::new(FUEL);
    config
        .iter()
        .map(|(k, v)| {
            render_with(&fuel, v, ctx, &BTreeMap::new())
                .map(|r| (k.clone(), r))
                .map_err(|err| err.within(format!("flinkConfiguration[\"{k}\"]")))
        })
        .collect()
}

/// The logging profiles a deployment may name in `logging.loggingProfile`, as Alibaba
/// Cloud's Realtime Compute names them. All three write the same rolling file (the newest
/// 5 MB); `oss` and `sls` name in the file's header the log-shipper sink that delivers it.
pub const LOGGING_PROFILES: &[&str] = &["default", "oss", "sls"];

/// Whether a rendered log4j2 configuration is XML (a custom template in VVP's format) rather
/// than properties: log4j2 must then be told to read it as XML.
pub fn is_xml(log4j: &str) -> bool {
    log4j.trim_start().starts_with('<')
}

/// The log4j2 configuration for a job: the custom template if given (with
/// `rootLoggerLogLevel` and `userConfiguredLoggers` available; XML stays XML), else the
/// logging profile's (`default`, `oss`, `sls`) with `log4jLoggers`. Errors name
/// `logging.log4j2ConfigurationTemplate` or `logging.loggingProfile`.
pub fn render_log4j(logging: Option<&Logging>, ctx: &Context) -> Result<String, Error> {
    let loggers = logging.map(|l| l.log4j_loggers.clone()).unwrap_or_default();
    let root = loggers
        .get("")
        .cloned()
        .unwrap_or_else(|| "INFO".to_string());
    let user: Vec<BTreeMap<&str, String>> = loggers
        .iter()
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| BTreeMap::from([("name", k.clone()), ("level", v.clone())]))
        .collect();
    let profile = logging
        .and_then(|l| l.logging_profile.as_deref())
        .unwrap_or("default");
    let template = match logging.and_then(|l| l.log4j2_configuration_template.clone()) {
        Some(custom) => custom,
        None => match profile {
            "default" => DEFAULT_LOG4J.to_string(),
            "oss" | "sls" => format!(
                "# loggingProfile {profile}: this rolling file; log-shipper's {profile} sink delivers it to {} when configured.\n{DEFAULT_LOG4J}",
                profile.to_ascii_uppercase()
            ),
            other => {
                return Err(Error::Template(format!(
                    "loggingProfile {other:?} is unknown: use {}",
                    LOGGING_PROFILES.join(", ")
                ))
                .within("logging.loggingProfile"))
            }
        },
    };
    let mut extra = BTreeMap::new();
    extra.insert("rootLoggerLogLevel", minijinja::Value::from(root));
    extra.insert(
        "userConfiguredLoggers",
        minijinja::Value::from_serialize(&user),
    );
    render_with(&Cell::new(FUEL), &template, ctx, &extra)
        .map_err(|err| err.within("logging.log4j2ConfigurationTemplate"))
}

/// The default logging profile: a file under Flink's `log.file` rolled at 5 MB, keeping one
/// rolled file (`size=5MB`, `max=1`).
pub const DEFAULT_LOG4J: &str = r#"# Rendered by job-manager for deployment {{ deploymentName }} ({{ deploymentId }}), job {{ jobId }}.
monitorInterval = 30
rootLogger.level = {{ rootLoggerLogLevel }}
rootLogger.appenderRef.file.ref = MainAppender
appender.main.name = MainAppender
appender.main.type = RollingFile
appender.main.append = true
appender.main.fileName = ${sys:log.file}
appender.main.filePattern = ${sys:log.file}.%i
appender.main.layout.type = PatternLayout
appender.main.layout.pattern = %d{yyyy-MM-dd HH:mm:ss,SSS} %-5level %-60c %x - %m%n
appender.main.policies.type = Policies
appender.main.policies.size.type = SizeBasedTriggeringPolicy
appender.main.policies.size.size = 5MB
appender.main.strategy.type = DefaultRolloverStrategy
appender.main.strategy.max = 1
{% for l in userConfiguredLoggers %}
logger.user{{ loop.index }}.name = {{ l.name }}
logger.user{{ loop.index }}.level = {{ l.level }}
{% endfor %}
"#;

/// Splits `mainArgs` like a shell would (whitespace, single and double quotes).
pub fn split_args(s: &str) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    in_word = true;
                }
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(Error::UnterminatedQuote);
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            namespace: "default".into(),
            deployment_id: "d-1".into(),
            deployment_name: "orders".into(),
            job_id: "j-9".into(),
        }
    }

    #[test]
    fn placeholders_render_in_configuration_values() {
        let cfg = BTreeMap::from([
            (
                "execution.checkpointing.dir".to_string(),
                "file:///ck/{{ namespace }}/{{ deploymentId }}/{{ jobId }}".to_string(),
            ),
            ("plain".to_string(), "x".to_string()),
        ]);
        let out = render_config(&cfg, &ctx()).unwrap();
        assert_eq!(
            out["execution.checkpointing.dir"],
            "file:///ck/default/d-1/j-9"
        );
        let bad = BTreeMap::from([("k".to_string(), "{{ deploymentIdd }}".to_string())]);
        let err = render_config(&bad, &ctx()).unwrap_err().to_string();
        assert!(err.contains("flinkConfiguration[\"k\"]"), "{err}");
        assert!(check("{{ deploymentId").is_err());
    }

    #[test]
    fn log4j_template_gets_loggers_and_placeholders() {
        let logging = Logging {
            logging_profile: None,
            log4j_loggers: BTreeMap::from([
                (String::new(), "WARN".into()),
                ("org.apache.flink".into(), "DEBUG".into()),
            ]),
            log4j2_configuration_template: None,
        };
        let out = render_log4j(Some(&logging), &ctx()).unwrap();
        assert!(out.contains("rootLogger.level = WARN"), "{out}");
        assert!(
            out.contains("logger.user1.name = org.apache.flink"),
            "{out}"
        );
        assert!(out.contains("deployment orders (d-1), job j-9"), "{out}");
        let custom = Logging {
            log4j2_configuration_template: Some(
                "root={{ rootLoggerLogLevel }} ns={{ namespace }}".into(),
            ),
            ..logging
        };
        assert_eq!(
            render_log4j(Some(&custom), &ctx()).unwrap(),
            "root=WARN ns=default"
        );
    }

    #[test]
    fn logging_profiles_keep_the_newest_5_mb_and_unknown_ones_are_named() {
        for p in LOGGING_PROFILES {
            let l = Logging {
                logging_profile: Some(p.to_string()),
                log4j_loggers: BTreeMap::from([("org.apache.kafka".into(), "WARN".into())]),
                log4j2_configuration_template: None,
            };
            let out = render_log4j(Some(&l), &ctx()).unwrap();
            assert!(
                out.contains("appender.main.policies.size.size = 5MB"),
                "{p}: {out}"
            );
            assert!(out.contains("appender.main.strategy.max = 1"), "{p}: {out}");
            assert!(
                out.contains("logger.user1.name = org.apache.kafka"),
                "{p}: {out}"
            );
            assert!(!is_xml(&out));
        }
        let sls = Logging {
            logging_profile: Some("sls".into()),
            ..Default::default()
        };
        assert!(render_log4j(Some(&sls), &ctx())
            .unwrap()
            .starts_with("# loggingProfile sls"));
        let bad = Logging {
            logging_profile: Some("kafka".into()),
            ..Default::default()
        };
        let err = render_log4j(Some(&bad), &ctx()).unwrap_err().to_string();
        assert!(
            err.contains("logging.loggingProfile") && err.contains("\"kafka\""),
            "{err}"
        );
    }

    #[test]
    fn rendering_is_bounded_by_fuel_and_output_size() {
        let started = std::time::Instant::now();
        let nested =
            "{% for i in range(12000) %}{% for j in range(12000) %}x{% endfor %}{% endfor %}";
        let err = render_config(
            &BTreeMap::from([("k".to_string(), nested.to_string())]),
            &ctx(),
        )
        .unwrap_err();
        assert!(matches!(&err, Error::In { source, .. } if matches!(**source, Error::OutOfFuel)));
        assert!(
            err.to_string()
                .starts_with("flinkConfiguration[\"k\"]: rendering needs more than"),
            "{err}"
        );
        assert!(matches!(check(nested), Err(Error::OutOfFuel)));
        // One instruction that writes more than the limit.
        assert!(matches!(check("{{ 'x' * 2000000 }}"), Err(Error::TooLarge)));
        // The values of one configuration share the budget: many values that each stay under
        // it still run out together.
        let loop_ = "{% for i in range(30000) %}{% endfor %}";
        let many: BTreeMap<String, String> = (0..10)
            .map(|i| (format!("k{i}"), loop_.to_string()))
            .collect();
        assert!(check(loop_).is_ok());
        assert!(render_config(&many, &ctx()).is_err());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        // The default log4j profile with many loggers stays well within the budget.
        let logging = Logging {
            logging_profile: None,
            log4j_loggers: (0..200)
                .map(|i| (format!("org.x{i}"), "INFO".to_string()))
                .collect(),
            log4j2_configuration_template: None,
        };
        assert!(render_log4j(Some(&logging), &ctx()).is_ok());
    }

    #[test]
    fn main_args_split_like_a_shell() {
        assert_eq!(
            split_args(r#"--rate 100 --name "my job" --x 'a b'"#).unwrap(),
            vec!["--rate", "100", "--name", "my job", "--x", "a b"]
        );
        assert!(split_args("--name \"open").is_err());
        assert!(split_args("   ").unwrap().is_empty());
    }
}
