//! Placeholders (`{{ namespace }}`, `{{ deploymentId }}`, `{{ deploymentName }}`,
//! `{{ jobId }}`) in Flink configuration values and the log4j2 template, rendered with
//! minijinja; `mainArgs` splitting.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::model::Logging;

/// The values placeholders resolve to.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    pub namespace: String,
    pub deployment_id: String,
    pub deployment_name: String,
    pub job_id: String,
}

fn env() -> Environment<'static> {
    let mut e = Environment::new();
    // A misspelt placeholder is an error, not an empty string.
    e.set_undefined_behavior(UndefinedBehavior::Strict);
    e
}

/// Checks that `text` is a valid template (at validation time, before any job exists).
pub fn check(text: &str) -> Result<(), String> {
    let e = env();
    e.template_from_str(text)
        .map(|_| ())
        .map_err(|err| err.to_string())?;
    // Render with sample values to catch unknown placeholders early.
    let ctx = Context {
        namespace: "ns".into(),
        deployment_id: "id".into(),
        deployment_name: "name".into(),
        job_id: "job".into(),
    };
    render_with(&e, text, &ctx, &BTreeMap::new()).map(|_| ())
}

fn render_with(
    e: &Environment<'_>,
    text: &str,
    ctx: &Context,
    extra: &BTreeMap<&str, minijinja::Value>,
) -> Result<String, String> {
    if !text.contains("{{") && !text.contains("{%") {
        return Ok(text.to_string());
    }
    let t = e.template_from_str(text).map_err(|err| err.to_string())?;
    let mut values: BTreeMap<&str, minijinja::Value> = BTreeMap::new();
    values.insert("namespace", ctx.namespace.clone().into());
    values.insert("deploymentId", ctx.deployment_id.clone().into());
    values.insert("deploymentName", ctx.deployment_name.clone().into());
    values.insert("jobId", ctx.job_id.clone().into());
    for (k, v) in extra {
        values.insert(k, v.clone());
    }
    t.render(values).map_err(|err| {
        let mut s = err.to_string();
        if let Some(d) = err.detail() {
            s = format!("{s} ({d})");
        }
        s
    })
}

/// Renders one text (e.g. `mainArgs`).
pub fn render(text: &str, ctx: &Context) -> Result<String, String> {
    render_with(&env(), text, ctx, &BTreeMap::new())
}

/// Renders every value of a Flink configuration.
pub fn render_config(
    config: &BTreeMap<String, String>,
    ctx: &Context,
) -> Result<BTreeMap<String, String>, String> {
    let e = env();
    config
        .iter()
        .map(|(k, v)| {
            render_with(&e, v, ctx, &BTreeMap::new())
                .map(|r| (k.clone(), r))
                .map_err(|err| format!("flinkConfiguration[\"{k}\"]: {err}"))
        })
        .collect()
}

/// The log4j2 properties for a job: the custom template if given (with `rootLoggerLogLevel`
/// and `userConfiguredLoggers` available), else the default profile with `log4jLoggers`.
pub fn render_log4j(logging: Option<&Logging>, ctx: &Context) -> Result<String, String> {
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
    let template = logging
        .and_then(|l| l.log4j2_configuration_template.clone())
        .unwrap_or_else(|| DEFAULT_LOG4J.to_string());
    let mut extra = BTreeMap::new();
    extra.insert("rootLoggerLogLevel", minijinja::Value::from(root));
    extra.insert(
        "userConfiguredLoggers",
        minijinja::Value::from_serialize(&user),
    );
    render_with(&env(), &template, ctx, &extra)
        .map_err(|err| format!("logging.log4j2ConfigurationTemplate: {err}"))
}

/// The default logging profile: a size-rolled file under Flink's `log.file`.
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
appender.main.policies.size.size = 100MB
appender.main.strategy.type = DefaultRolloverStrategy
appender.main.strategy.max = 5
{% for l in userConfiguredLoggers %}
logger.user{{ loop.index }}.name = {{ l.name }}
logger.user{{ loop.index }}.level = {{ l.level }}
{% endfor %}
"#;

/// Splits `mainArgs` like a shell would (whitespace, single and double quotes).
pub fn split_args(s: &str) -> Result<Vec<String>, String> {
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
        return Err("unterminated quote".into());
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
        let err = render_config(&bad, &ctx()).unwrap_err();
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
    fn main_args_split_like_a_shell() {
        assert_eq!(
            split_args(r#"--rate 100 --name "my job" --x 'a b'"#).unwrap(),
            vec!["--rate", "100", "--name", "my job", "--x", "a b"]
        );
        assert!(split_args("--name \"open").is_err());
        assert!(split_args("   ").unwrap().is_empty());
    }
}
