//! Rule files in Prometheus's format, validated the way `promtool check rules` does.

use std::collections::BTreeMap;
use std::path::Path;

use promql_parser::parser::Expr;
use serde::Deserialize;

use super::template::Template;

/// A rule-file error: file, and where known line, group, rule number and rule name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: {detail}")]
pub struct RuleFileError {
    /// The file.
    pub file: String,
    /// `line:col: group "g", rule N, "name": what is wrong` (as much as is known).
    pub detail: String,
}

/// Whether a rule records or alerts.
#[derive(Debug, Clone)]
pub enum RuleKind {
    /// `record:`
    Recording {
        /// Name of the recorded series.
        record: String,
    },
    /// `alert:`
    Alerting {
        /// Alert name.
        alert: String,
        /// `for:` in ms.
        for_ms: i64,
        /// `keep_firing_for:` in ms.
        keep_firing_for_ms: i64,
        /// Annotation templates in name order.
        annotations: Vec<(String, Template, String)>,
    },
}

/// One rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Kind and kind-specific fields.
    pub kind: RuleKind,
    /// The expression as written.
    pub expr_text: String,
    /// The parsed expression.
    pub expr: Expr,
    /// Labels as (name, value as written, template for alerting rules).
    pub labels: Vec<(String, String, Option<Template>)>,
    /// Line of the rule in its file (1-based; 0 when unknown).
    pub line: usize,
}

impl Rule {
    /// The rule's name (`record` or `alert`).
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Recording { record } => record,
            RuleKind::Alerting { alert, .. } => alert,
        }
    }
}

/// One rule group.
#[derive(Debug, Clone)]
pub struct RuleGroup {
    /// File it came from.
    pub file: String,
    /// Group name.
    pub name: String,
    /// Evaluation interval in ms (None: the global default).
    pub interval_ms: Option<i64>,
    /// Maximum alerts/series per rule (0 = unlimited).
    pub limit: usize,
    /// Evaluate at `t - query_offset`.
    pub query_offset_ms: i64,
    /// Labels added to every rule's output (rule labels win).
    pub labels: BTreeMap<String, String>,
    /// Rules in order.
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    name: Option<serde_yaml::Value>,
    #[serde(default)]
    interval: Option<serde_yaml::Value>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    query_offset: Option<serde_yaml::Value>,
    #[serde(default)]
    labels: Option<BTreeMap<String, serde_yaml::Value>>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(default)]
    record: Option<serde_yaml::Value>,
    #[serde(default)]
    alert: Option<serde_yaml::Value>,
    #[serde(default)]
    expr: Option<serde_yaml::Value>,
    #[serde(default, rename = "for")]
    for_: Option<serde_yaml::Value>,
    #[serde(default)]
    keep_firing_for: Option<serde_yaml::Value>,
    #[serde(default)]
    labels: Option<BTreeMap<String, serde_yaml::Value>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, serde_yaml::Value>>,
}

fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Null => Some(String::new()),
        _ => None,
    }
}

/// Parses a Prometheus duration (`1h30m`, `5m`, `0`): units y w d h m s ms in that order,
/// integers only. Returns ms.
pub fn parse_prom_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let units = [
        ("y", 31_536_000_000i64),
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    let mut rest = s;
    let mut total: i64 = 0;
    let mut last = 0;
    let mut any = false;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let num: i64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..u];
        rest = &rest[u..];
        let idx = units.iter().position(|(name, _)| *name == unit)?;
        if any && idx <= last {
            return None;
        }
        last = idx;
        any = true;
        total = total.checked_add(num.checked_mul(units[idx].1)?)?;
    }
    if any {
        Some(total)
    } else {
        None
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`
pub fn is_valid_metric_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_' || x == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`
pub fn is_valid_label_name(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(x) if x.is_ascii_alphabetic() || x == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

/// Finds (line, col) of each rule item (`- ...` under a `rules:` key), in file order.
fn rule_positions(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut rules_indent: Option<usize> = None;
    let mut item_indent: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if let Some(ri) = rules_indent {
            if indent < ri || (indent == ri && !trimmed.starts_with('-')) {
                rules_indent = None;
            } else if let Some(rest) = trimmed.strip_prefix('-') {
                let ii = *item_indent.get_or_insert(indent);
                if ii == indent {
                    let after = rest.len() - rest.trim_start().len();
                    out.push((i + 1, indent + 2 + after));
                    continue;
                }
            }
        }
        let key = trimmed.trim_start_matches('-').trim_start();
        if key.starts_with("rules:") {
            rules_indent = Some(indent);
            item_indent = None;
        }
    }
    out
}

fn group_positions(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    let mut groups_indent: Option<usize> = None;
    let mut item_indent: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with("groups:") {
            groups_indent = Some(indent);
            item_indent = None;
            continue;
        }
        if groups_indent.is_some() && trimmed.starts_with('-') {
            match item_indent {
                None => {
                    item_indent = Some(indent);
                    out.push(i + 1);
                }
                Some(ii) if ii == indent => out.push(i + 1),
                _ => {}
            }
        }
    }
    out
}

/// Parses and validates one rule file's text; returns all errors found.
pub fn parse_rules(file: &str, text: &str) -> Result<Vec<RuleGroup>, Vec<RuleFileError>> {
    let fe = |detail: String| RuleFileError {
        file: file.to_string(),
        detail,
    };
    let raw: RawFile = if text.trim().is_empty() {
        RawFile { groups: Vec::new() }
    } else {
        match serde_yaml::from_str::<Option<RawFile>>(text) {
            Ok(Some(r)) => r,
            Ok(None) => RawFile { groups: Vec::new() },
            Err(e) => {
                let loc = e
                    .location()
                    .map(|l| format!("{}:{}: ", l.line(), l.column()))
                    .unwrap_or_default();
                return Err(vec![fe(format!("{loc}yaml: {e}"))]);
            }
        }
    };
    let rpos = rule_positions(text);
    let gpos = group_positions(text);
    let mut errs = Vec::new();
    let mut groups = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut flat = 0usize;
    for (gi, g) in raw.groups.into_iter().enumerate() {
        let gline = gpos.get(gi).copied().unwrap_or(0);
        let name = g.name.as_ref().and_then(scalar).unwrap_or_default();
        if name.is_empty() {
            errs.push(fe(format!("{gline}:3: Groupname must not be empty")));
        }
        if !seen.insert(name.clone()) {
            errs.push(fe(format!(
                "{gline}:3: groupname: \"{name}\" is repeated in the same file"
            )));
        }
        let dur = |v: &Option<serde_yaml::Value>,
                   field: &str,
                   errs: &mut Vec<RuleFileError>|
         -> Option<i64> {
            let v = v.as_ref()?;
            let s = scalar(v).unwrap_or_default();
            match parse_prom_duration(&s) {
                Some(d) => Some(d),
                None => {
                    errs.push(fe(format!("{gline}:3: group {name:?}: invalid {field} {s:?}: not a valid duration string")));
                    None
                }
            }
        };
        let interval_ms = dur(&g.interval, "interval", &mut errs);
        let query_offset_ms = dur(&g.query_offset, "query_offset", &mut errs).unwrap_or(0);
        let mut glabels = BTreeMap::new();
        for (k, v) in g.labels.unwrap_or_default() {
            if !is_valid_label_name(&k) || k == "__name__" {
                errs.push(fe(format!(
                    "{gline}:3: group {name:?}: invalid label name: {k}"
                )));
            }
            glabels.insert(k, scalar(&v).unwrap_or_default());
        }
        let mut rules = Vec::new();
        for (ri, r) in g.rules.into_iter().enumerate() {
            let (line, col) = rpos.get(flat).copied().unwrap_or((0, 0));
            flat += 1;
            let record = r.record.as_ref().and_then(scalar).unwrap_or_default();
            let alert = r.alert.as_ref().and_then(scalar).unwrap_or_default();
            let rname = if !alert.is_empty() {
                alert.clone()
            } else {
                record.clone()
            };
            let mut rule_errs: Vec<String> = Vec::new();
            if !record.is_empty() && !alert.is_empty() {
                rule_errs.push("only one of 'record' and 'alert' must be set".into());
            }
            if record.is_empty() && alert.is_empty() {
                rule_errs.push("one of 'record' or 'alert' must be set".into());
            }
            let expr_text = r.expr.as_ref().and_then(scalar).unwrap_or_default();
            let mut expr = None;
            if expr_text.is_empty() {
                rule_errs.push("field 'expr' must be set in rule".into());
            } else {
                match crate::eval::parse(&expr_text) {
                    Ok(e) => expr = Some(e),
                    Err(e) => rule_errs.push(format!(
                        "could not parse expression: {}",
                        e.to_string().trim_start_matches("parse error: ")
                    )),
                }
            }
            let mut for_ms = 0;
            let mut kff_ms = 0;
            for (field, v, slot) in [
                ("for", &r.for_, &mut for_ms),
                ("keep_firing_for", &r.keep_firing_for, &mut kff_ms),
            ] {
                if let Some(v) = v {
                    let s = scalar(v).unwrap_or_default();
                    match parse_prom_duration(&s) {
                        Some(d) => *slot = d,
                        None => rule_errs.push(format!(
                            "invalid {field} {s:?}: not a valid duration string"
                        )),
                    }
                }
            }
            let annotations_raw = r.annotations.unwrap_or_default();
            if !record.is_empty() {
                if !annotations_raw.is_empty() {
                    rule_errs.push("invalid field 'annotations' in recording rule".into());
                }
                if for_ms != 0 {
                    rule_errs.push("invalid field 'for' in recording rule".into());
                }
                if kff_ms != 0 {
                    rule_errs.push("invalid field 'keep_firing_for' in recording rule".into());
                }
                if !is_valid_metric_name(&record) {
                    rule_errs.push(format!("invalid recording rule name: {record}"));
                }
            }
            let mut labels = Vec::new();
            for (k, v) in r.labels.unwrap_or_default() {
                if !is_valid_label_name(&k) || k == "__name__" {
                    rule_errs.push(format!("invalid label name: {k}"));
                }
                let vs = scalar(&v).unwrap_or_default();
                if alert.is_empty() {
                    labels.push((k, vs, None));
                } else {
                    match template_for(&alert, &k, &vs) {
                        Ok(t) => labels.push((k, vs, Some(t))),
                        Err(e) => rule_errs.push(e.to_string()),
                    }
                }
            }
            let mut annotations = Vec::new();
            for (k, v) in annotations_raw {
                if !is_valid_label_name(&k) {
                    rule_errs.push(format!("invalid annotation name: {k}"));
                }
                let vs = scalar(&v).unwrap_or_default();
                match template_for(&alert, &k, &vs) {
                    Ok(t) => annotations.push((k, t, vs)),
                    Err(e) => rule_errs.push(e.to_string()),
                }
            }
            for e in &rule_errs {
                errs.push(fe(format!(
                    "{line}:{col}: group {name:?}, rule {}, {rname:?}: {e}",
                    ri + 1
                )));
            }
            if rule_errs.is_empty() {
                if let Some(expr) = expr {
                    let kind = if alert.is_empty() {
                        RuleKind::Recording { record }
                    } else {
                        RuleKind::Alerting {
                            alert,
                            for_ms,
                            keep_firing_for_ms: kff_ms,
                            annotations,
                        }
                    };
                    rules.push(Rule {
                        kind,
                        expr_text,
                        expr,
                        labels,
                        line,
                    });
                }
            }
        }
        groups.push(RuleGroup {
            file: file.to_string(),
            name,
            interval_ms,
            limit: g.limit.unwrap_or(0).max(0) as usize,
            query_offset_ms,
            labels: glabels,
            rules,
        });
    }
    if errs.is_empty() {
        Ok(groups)
    } else {
        Err(errs)
    }
}

/// A label or annotation of an alerting rule whose template does not parse.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("error parsing template {key}: {source}")]
pub struct TemplateFieldError {
    /// The label or annotation name.
    pub key: String,
    /// Why the template does not parse.
    pub source: Box<super::template::Error>,
}

fn template_for(alert: &str, key: &str, src: &str) -> Result<Template, TemplateFieldError> {
    Template::parse(&format!("__alert_{alert}"), src).map_err(|source| TemplateFieldError {
        key: key.to_string(),
        source: Box::new(source),
    })
}

/// Reads and validates rule files.
pub fn load_files<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<RuleGroup>, Vec<RuleFileError>> {
    let mut all = Vec::new();
    let mut errs = Vec::new();
    for p in paths {
        let name = p.as_ref().display().to_string();
        match std::fs::read_to_string(p) {
            Ok(text) => match parse_rules(&name, &text) {
                Ok(g) => all.extend(g),
                Err(e) => errs.extend(e),
            },
            Err(e) => errs.push(RuleFileError {
                file: name,
                detail: format!("error reading file: {e}"),
            }),
        }
    }
    if errs.is_empty() {
        Ok(all)
    } else {
        Err(errs)
    }
}

/// Translates a pattern of Go's `filepath.Match` (what Prometheus expands `rule_files`
/// with) into the `glob` crate's syntax: `[^...]` negates (`[!...]` here), `\x` is a
/// literal `x` (`[x]` here), and a run of `*` is one `*` (Go has no recursive `**`).
pub fn go_glob_pattern(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let mut chars = p.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if !cfg!(windows) => match chars.next() {
                Some(x) if in_class => out.push(x),
                Some(x) => {
                    out.push('[');
                    out.push(x);
                    out.push(']');
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('!');
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '*' if !in_class => {
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                out.push('*');
            }
            c => out.push(c),
        }
    }
    out
}

/// Expands glob patterns as Prometheus expands `rule_files` (Go's `filepath.Glob`: `*`
/// and `?` never match `/`, dotfiles match, `[^a-z]` negates); a pattern without magic
/// characters that names no file is an error (Prometheus would skip it silently).
pub fn expand_globs(patterns: &[String]) -> Result<Vec<std::path::PathBuf>, String> {
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let mut out = Vec::new();
    for p in patterns {
        let mut any = false;
        let paths = glob::glob_with(&go_glob_pattern(p), opts)
            .map_err(|e| format!("invalid rule file pattern {p:?}: {e}"))?;
        for e in paths {
            let e = e.map_err(|e| e.to_string())?;
            any = true;
            out.push(e);
        }
        if !any && !p.contains(['*', '?', '[']) {
            out.push(p.into());
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// `promtool check rules`: prints per file and returns the exit code (0 ok, 1 failure).
pub fn check_rules<P: AsRef<Path>>(
    paths: &[P],
    out: &mut dyn std::io::Write,
    err: &mut dyn std::io::Write,
) -> i32 {
    let mut failed = false;
    for p in paths {
        let name = p.as_ref().display().to_string();
        let _ = writeln!(out, "Checking {name}");
        match load_files(&[p]) {
            Ok(groups) => {
                let n: usize = groups.iter().map(|g| g.rules.len()).sum();
                let mut dups = std::collections::BTreeSet::new();
                let mut seen = std::collections::HashSet::new();
                for g in &groups {
                    for r in &g.rules {
                        let key = (
                            r.name().to_string(),
                            r.expr_text.clone(),
                            r.labels
                                .iter()
                                .map(|(k, v, _)| format!("{k}={v}"))
                                .collect::<Vec<_>>(),
                        );
                        if !seen.insert(key) {
                            dups.insert(r.name().to_string());
                        }
                    }
                }
                let _ = writeln!(out, "  SUCCESS: {n} rules found");
                for d in dups {
                    let _ = writeln!(err, "{name}: duplicate rule: {d}");
                }
            }
            Err(errs) => {
                failed = true;
                let _ = writeln!(err, "  FAILED:");
                for e in errs {
                    let _ = writeln!(err, "{e}");
                }
            }
        }
        let _ = writeln!(out);
    }
    if failed {
        1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rule_file_globs_expand_as_go_filepath_glob() {
        let dir = std::env::temp_dir().join(format!(
            "promql-glob-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for f in [
            "alerting_rules-flink.yaml",
            "recording_rules-flink.yaml",
            "b.yml",
            ".hidden.yml",
            "sub/x.yaml",
        ] {
            std::fs::write(dir.join(f), "groups: []\n").unwrap();
        }
        let names = |p: &str| -> Vec<String> {
            expand_globs(&[format!("{}/{p}", dir.display())])
                .unwrap()
                .iter()
                .map(|f| f.strip_prefix(&dir).unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(
            names("alerting_rules-*.yaml"),
            ["alerting_rules-flink.yaml"]
        );
        assert_eq!(
            names("recording_rule*.yaml"),
            ["recording_rules-flink.yaml"]
        );
        // `*` stays within one directory; `**` is just `*`; dotfiles match; `[^...]` negates.
        assert_eq!(
            names("*.yaml"),
            ["alerting_rules-flink.yaml", "recording_rules-flink.yaml"]
        );
        assert_eq!(names("**/x.yaml"), ["sub/x.yaml"]);
        assert_eq!(
            names("**.yaml"),
            ["alerting_rules-flink.yaml", "recording_rules-flink.yaml"]
        );
        assert_eq!(names("[^ab]*.yml"), [".hidden.yml"]);
        assert_eq!(names("\\b.yml"), ["b.yml"]);
        assert!(names("nothing-*.yaml").is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    use super::*;

    #[test]
    fn durations_follow_prometheus_rules() {
        assert_eq!(parse_prom_duration("1h30m"), Some(5_400_000));
        assert_eq!(parse_prom_duration("0"), Some(0));
        assert_eq!(parse_prom_duration("30m1h"), None);
        assert_eq!(parse_prom_duration("1.5m"), None);
        assert_eq!(parse_prom_duration(""), None);
    }

    #[test]
    fn errors_name_file_group_rule_and_line() {
        let text = "groups:\n  - name: g\n    rules:\n      - record: job:up\n        expr: up\n      - alert: Broken\n        expr: rate(up[5m]\n";
        let errs = parse_rules("r.yml", text).unwrap_err();
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(
            msg.starts_with(
                "r.yml: 6:9: group \"g\", rule 2, \"Broken\": could not parse expression"
            ),
            "{msg}"
        );
    }

    #[test]
    fn a_template_that_does_not_parse_is_named_with_its_field() {
        let text = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    annotations:\n      summary: '{{ nope }}'\n";
        let errs = parse_rules("r.yml", text).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].to_string(),
            "r.yml: 4:5: group \"g\", rule 1, \"A\": error parsing template summary: template: __alert_A:1: function \"nope\" not defined"
        );
        let e = template_for("A", "summary", "{{ nope }}").unwrap_err();
        assert_eq!(e.key, "summary");
        assert!(matches!(
            *e.source,
            crate::rules::template::Error::Parse { .. }
        ));
    }

    #[test]
    fn valid_file_parses() {
        let text = "groups:\n- name: g\n  interval: 30s\n  rules:\n  - alert: A\n    expr: up == 0\n    for: 5m\n    labels: {severity: page}\n    annotations:\n      summary: '{{ $labels.job }} down'\n";
        let g = parse_rules("r.yml", text).unwrap();
        assert_eq!(g[0].interval_ms, Some(30_000));
        assert_eq!(g[0].rules[0].line, 5);
    }
}
