//! `write_relabel_configs`: Prometheus's relabelling (`replace`, `keep`, `drop`,
//! `labeldrop`, `labelkeep`, `labelmap`, `hashmod`), regexes anchored at both ends.

use promql_engine::labels::Labels;
use regex::Regex;
use serde::{Deserialize, Serialize};

/// One relabelling step as written in the config file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_labels: Vec<String>,
    #[serde(default = "default_separator")]
    pub separator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_label: Option<String>,
    #[serde(default = "default_regex")]
    pub regex: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modulus: Option<u64>,
    #[serde(default = "default_replacement")]
    pub replacement: String,
    #[serde(default)]
    pub action: Action,
}

fn default_separator() -> String {
    ";".into()
}
fn default_regex() -> String {
    "(.*)".into()
}
fn default_replacement() -> String {
    "$1".into()
}

/// The relabel actions (lower case in the file).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    Labeldrop,
    Labelkeep,
    Labelmap,
    Hashmod,
}

/// A checked step, its regex compiled.
#[derive(Debug, Clone)]
pub struct Relabel {
    cfg: RelabelConfig,
    regex: Regex,
}

fn valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch == '_' || ch.is_ascii_alphabetic())
        && c.all(|ch| ch == '_' || ch.is_ascii_alphanumeric())
}

impl RelabelConfig {
    /// Compiles the step; the error names what is wrong.
    pub fn compile(&self) -> Result<Relabel, String> {
        let regex = Regex::new(&format!("^(?s:{})$", self.regex))
            .map_err(|e| format!("`regex` {:?} does not compile: {e}", self.regex))?;
        let target = self.target_label.as_deref().unwrap_or("");
        match self.action {
            Action::Replace | Action::Hashmod if target.is_empty() => {
                return Err("`target_label` is required for this action".into());
            }
            Action::Hashmod if self.modulus.unwrap_or(0) == 0 => {
                return Err("`modulus` must be greater than zero for `hashmod`".into());
            }
            Action::Hashmod if !valid_label_name(target) => {
                return Err(format!("`target_label` {target:?} is not a label name"));
            }
            Action::Labeldrop | Action::Labelkeep
                if !self.source_labels.is_empty() || !target.is_empty() =>
            {
                return Err(
                    "`source_labels` and `target_label` are not allowed with labeldrop/labelkeep"
                        .into(),
                );
            }
            _ => {}
        }
        for (i, s) in self.source_labels.iter().enumerate() {
            if !valid_label_name(s) {
                return Err(format!("`source_labels[{i}]` {s:?} is not a label name"));
            }
        }
        Ok(Relabel {
            cfg: self.clone(),
            regex,
        })
    }
}

/// Applies `steps` in order; `None` when a step drops the series or no label is left.
pub fn apply(steps: &[Relabel], labels: &Labels) -> Option<Labels> {
    let mut l = labels.clone();
    for s in steps {
        l = s.apply(l)?;
    }
    (!l.is_empty()).then_some(l)
}

impl Relabel {
    fn source(&self, l: &Labels) -> String {
        let vals: Vec<&str> = self
            .cfg
            .source_labels
            .iter()
            .map(|n| l.get_or_empty(n))
            .collect();
        vals.join(&self.cfg.separator)
    }

    fn apply(&self, mut l: Labels) -> Option<Labels> {
        let c = &self.cfg;
        match c.action {
            Action::Keep => self.regex.is_match(&self.source(&l)).then_some(l),
            Action::Drop => (!self.regex.is_match(&self.source(&l))).then_some(l),
            Action::Replace => {
                let src = self.source(&l);
                let Some(caps) = self.regex.captures(&src) else {
                    return Some(l);
                };
                let mut target = String::new();
                caps.expand(c.target_label.as_deref().unwrap_or(""), &mut target);
                if !valid_label_name(&target) {
                    return Some(l);
                }
                let mut value = String::new();
                caps.expand(&c.replacement, &mut value);
                if value.is_empty() {
                    l.remove(&target);
                } else {
                    l.set(&target, &value);
                }
                Some(l)
            }
            Action::Labeldrop | Action::Labelkeep => {
                let drop = c.action == Action::Labeldrop;
                let names: Vec<String> = l
                    .iter()
                    .filter(|(n, _)| self.regex.is_match(n) == drop)
                    .map(|(n, _)| n.to_string())
                    .collect();
                for n in names {
                    l.remove(&n);
                }
                Some(l)
            }
            Action::Labelmap => {
                let mut out = l.clone();
                for (n, v) in l.iter() {
                    if let Some(caps) = self.regex.captures(n) {
                        let mut target = String::new();
                        caps.expand(&c.replacement, &mut target);
                        if valid_label_name(&target) {
                            out.set(&target, v);
                        }
                    }
                }
                Some(out)
            }
            Action::Hashmod => {
                let src = self.source(&l);
                let m = c.modulus.unwrap_or(1).max(1);
                l.set(
                    c.target_label.as_deref().unwrap_or(""),
                    &(fnv1a(src.as_bytes()) % m).to_string(),
                );
                Some(l)
            }
        }
    }
}

/// A stable hash for `hashmod` (FNV-1a; Prometheus uses MD5, so shard numbers differ).
fn fnv1a(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(yaml: &str) -> Vec<Relabel> {
        let cfgs: Vec<RelabelConfig> = serde_yaml::from_str(yaml).unwrap();
        cfgs.iter().map(|c| c.compile().unwrap()).collect()
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().copied())
    }

    #[test]
    fn regexes_are_anchored_and_actions_behave_as_prometheus() {
        let keep = steps("- {source_labels: [__name__], regex: 'flink_.*', action: keep}");
        assert!(apply(&keep, &l(&[("__name__", "flink_up")])).is_some());
        // Anchored: `flink_.*` does not match `x_flink_up`.
        assert!(apply(&keep, &l(&[("__name__", "x_flink_up")])).is_none());
        let drop = steps("- {source_labels: [job, env], regex: 'a;prod', action: drop}");
        assert!(apply(&drop, &l(&[("job", "a"), ("env", "prod")])).is_none());
        assert!(apply(&drop, &l(&[("job", "a"), ("env", "prod2")])).is_some());
        let rep = steps(
            "- {source_labels: [instance], regex: '([^:]+):\\d+', target_label: host, replacement: 'h-$1'}",
        );
        let out = apply(&rep, &l(&[("instance", "tm-1:9249")])).unwrap();
        assert_eq!(out.get("host"), Some("h-tm-1"));
        let out = apply(&rep, &l(&[("instance", "tm-1")])).unwrap();
        assert_eq!(out.get("host"), None, "no match leaves the labels alone");
        let ld = steps("- {regex: 'pod|tmp_.*', action: labeldrop}");
        let out = apply(&ld, &l(&[("pod", "p"), ("tmp_x", "1"), ("podx", "k")])).unwrap();
        assert_eq!(out, l(&[("podx", "k")]));
        let lk = steps("- {regex: '__name__|job', action: labelkeep}");
        let out = apply(&lk, &l(&[("__name__", "m"), ("job", "j"), ("x", "1")])).unwrap();
        assert_eq!(out, l(&[("__name__", "m"), ("job", "j")]));
    }

    #[test]
    fn bad_steps_are_refused_naming_the_problem() {
        let c: RelabelConfig = serde_yaml::from_str("{regex: '(', action: keep}").unwrap();
        assert!(c.compile().unwrap_err().contains("`regex`"));
        let c: RelabelConfig = serde_yaml::from_str("{action: replace}").unwrap();
        assert!(c.compile().unwrap_err().contains("target_label"));
        assert!(serde_yaml::from_str::<RelabelConfig>("{action: explode}").is_err());
    }
}
