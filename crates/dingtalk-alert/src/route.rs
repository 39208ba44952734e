//! Label-based routing of single alerts to targets (`POST /dingtalk/send`).

use std::collections::BTreeMap;

use common::ConfigError;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::alert::KV;

/// One label-based route.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Labels that must equal these values.
    #[serde(rename = "match")]
    pub matches: BTreeMap<String, String>,
    /// Labels that must fully match these regular expressions.
    pub match_re: BTreeMap<String, String>,
    /// Where matching alerts go.
    pub targets: Vec<String>,
    /// Keep evaluating later routes after this one matched.
    #[serde(rename = "continue")]
    pub continue_matching: bool,
}

#[derive(Debug)]
struct Route {
    equals: Vec<(String, String)>,
    regexes: Vec<(String, Regex)>,
    targets: Vec<String>,
    continue_matching: bool,
}

impl Route {
    fn matches(&self, labels: &KV) -> bool {
        let get = |k: &str| labels.get(k).map(String::as_str).unwrap_or("");
        self.equals.iter().all(|(k, v)| get(k) == v)
            && self.regexes.iter().all(|(k, re)| re.is_match(get(k)))
    }
}

/// Compiled routes plus the fallback for alerts no route takes.
#[derive(Debug, Default)]
pub struct Routes {
    routes: Vec<Route>,
    fallback: Vec<String>,
}

impl Routes {
    /// Compiles routes; `known` says whether a target name exists.
    pub fn compile(
        routes: &[RouteConfig],
        fallback: Vec<String>,
        known: impl Fn(&str) -> bool,
    ) -> Result<Self, ConfigError> {
        let mut out = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            for (j, t) in r.targets.iter().enumerate() {
                if !known(t) {
                    return Err(ConfigError::invalid(
                        format!("routes[{i}].targets[{j}]"),
                        format!("names unknown target `{t}`"),
                    ));
                }
            }
            let mut regexes = Vec::new();
            for (label, pattern) in &r.match_re {
                // Anchored like Alertmanager's matchers.
                let re = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| {
                    ConfigError::invalid(format!("routes[{i}].match_re.{label}"), e.to_string())
                })?;
                regexes.push((label.clone(), re));
            }
            out.push(Route {
                equals: r
                    .matches
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                regexes,
                targets: r.targets.clone(),
                continue_matching: r.continue_matching,
            });
        }
        Ok(Self {
            routes: out,
            fallback,
        })
    }

    /// The targets an alert with these labels goes to (deduplicated, in route order).
    pub fn targets_for(&self, labels: &KV) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        let mut matched = false;
        for r in &self.routes {
            if r.matches(labels) {
                matched = true;
                for t in &r.targets {
                    if !out.contains(&t.as_str()) {
                        out.push(t);
                    }
                }
                if !r.continue_matching {
                    break;
                }
            }
        }
        if !matched {
            out.extend(self.fallback.iter().map(String::as_str));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> KV {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn first_match_wins_unless_continue_and_unmatched_go_to_fallback() {
        let cfg: Vec<RouteConfig> = serde_yaml::from_str(
            r#"
- {match: {team: db}, targets: [db], continue: true}
- {match_re: {severity: "critical|page"}, targets: [oncall]}
- {match: {team: web}, targets: [web]}
"#,
        )
        .unwrap();
        let r = Routes::compile(&cfg, vec!["catchall".into()], |_| true).unwrap();
        assert_eq!(
            r.targets_for(&labels(&[("team", "db"), ("severity", "critical")])),
            ["db", "oncall"]
        );
        assert_eq!(
            r.targets_for(&labels(&[("team", "web"), ("severity", "critical")])),
            ["oncall"]
        );
        assert_eq!(
            r.targets_for(&labels(&[("team", "web"), ("severity", "criticalx")])),
            ["web"]
        );
        assert_eq!(r.targets_for(&labels(&[("team", "x")])), ["catchall"]);
    }
}
