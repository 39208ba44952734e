//! A small interpreter for the subset of Go's `text/template` that Prometheus alert
//! templates use: `{{ .Labels.x }}`, `$labels`, `$value`, `$externalLabels`, pipelines,
//! `if`/`else if`/`else`, `range`, `with`, variables, comparison and logic functions,
//! `printf`, the `humanize*` family, `query`, `label`, `value`, `first`, string helpers.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Template errors (parse or execution).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[error("template: {name}: {msg}")]
pub struct TemplateError {
    /// Template name (e.g. `__alert_HighLoad`).
    pub name: String,
    /// What is wrong.
    pub msg: String,
}

/// A template value.
#[derive(Clone, Debug, PartialEq)]
pub enum TVal {
    /// Go's nil / missing map key.
    Nil,
    /// Boolean.
    Bool(bool),
    /// Integer literal.
    Int(i64),
    /// Float.
    Float(f64),
    /// String.
    Str(String),
    /// Map with string keys.
    Map(BTreeMap<String, TVal>),
    /// List.
    List(Vec<TVal>),
}

impl TVal {
    fn truthy(&self) -> bool {
        match self {
            TVal::Nil => false,
            TVal::Bool(b) => *b,
            TVal::Int(i) => *i != 0,
            TVal::Float(f) => *f != 0.0,
            TVal::Str(s) => !s.is_empty(),
            TVal::Map(m) => !m.is_empty(),
            TVal::List(l) => !l.is_empty(),
        }
    }

    fn as_f64(&self) -> Result<f64, String> {
        match self {
            TVal::Int(i) => Ok(*i as f64),
            TVal::Float(f) => Ok(*f),
            TVal::Str(s) => s
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("cannot convert {s:?} to float")),
            TVal::Bool(_) | TVal::Nil | TVal::Map(_) | TVal::List(_) => {
                Err(format!("cannot convert {} to float", self.display()))
            }
        }
    }

    /// Go's `%v` rendering.
    pub fn display(&self) -> String {
        match self {
            TVal::Nil => "<no value>".into(),
            TVal::Bool(b) => b.to_string(),
            TVal::Int(i) => i.to_string(),
            TVal::Float(f) => format_v(*f),
            TVal::Str(s) => s.clone(),
            TVal::Map(m) => {
                let inner: Vec<String> = m
                    .iter()
                    .map(|(k, v)| format!("{k}:{}", v.display()))
                    .collect();
                format!("map[{}]", inner.join(" "))
            }
            TVal::List(l) => {
                let inner: Vec<String> = l.iter().map(|v| v.display()).collect();
                format!("[{}]", inner.join(" "))
            }
        }
    }
}

/// Formats a float as Go's `%v` (shortest, exponent below 1e-4 or from 1e21).
pub fn format_v(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let exp = f.abs().log10().floor() as i32;
    if !(-4..21).contains(&exp) {
        go_exp(&format!("{f:e}"))
    } else {
        format!("{f}")
    }
}

fn go_exp(rust: &str) -> String {
    // Rust "1.5e-5" -> Go "1.5e-05"
    match rust.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', e),
            };
            format!("{m}e{sign}{digits:0>2}")
        }
        None => rust.to_string(),
    }
}

/// Go's `%.Ng`.
pub fn format_g(f: f64, prec: usize) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    let prec = prec.max(1);
    if f == 0.0 {
        return "0".into();
    }
    let s = format!("{:.*e}", prec - 1, f);
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let mant = trim_zeros(mant);
        go_exp(&format!("{mant}e{exp}"))
    } else {
        let decimals = (prec as i32 - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{:.*}", decimals, f))
    }
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// Rows returned by a template query: (labels, value).
pub type QueryRows = Vec<(BTreeMap<String, String>, f64)>;

/// Runs a PromQL query for the `query` template function.
pub type QueryFn<'a> = dyn Fn(&str) -> Result<QueryRows, String> + 'a;

#[derive(Debug, Clone)]
enum Node {
    Text(String),
    Action(Pipe),
    If(Vec<(Pipe, Vec<Node>)>, Vec<Node>),
    Range(Pipe, Vec<Node>, Vec<Node>),
    With(Pipe, Vec<Node>, Vec<Node>),
}

#[derive(Debug, Clone)]
struct Pipe {
    decl: Option<(String, bool)>,
    cmds: Vec<Vec<Arg>>,
}

#[derive(Debug, Clone)]
enum Arg {
    Field(Vec<String>),
    Var(String, Vec<String>),
    Str(String),
    Num(f64, bool),
    Bool(bool),
    Nil,
    Ident(String),
    Sub(Box<Pipe>, Vec<String>),
}

#[derive(Debug)]
enum Tok {
    Text(String),
    Action(String),
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find("{{") {
        let mut text = rest[..i].to_string();
        let mut after = &rest[i + 2..];
        if after.starts_with("- ") || after.starts_with("-\t") || after.starts_with("-\n") {
            text = text.trim_end().to_string();
            after = &after[1..];
        }
        // Find the closing braces outside string literals.
        let b = after.as_bytes();
        let mut j = 0;
        let mut end = None;
        while j < b.len() {
            match b[j] {
                b'"' => {
                    j += 1;
                    while j < b.len() && b[j] != b'"' {
                        if b[j] == b'\\' {
                            j += 1;
                        }
                        j += 1;
                    }
                }
                b'`' => {
                    j += 1;
                    while j < b.len() && b[j] != b'`' {
                        j += 1;
                    }
                }
                b'}' if j + 1 < b.len() && b[j + 1] == b'}' => {
                    end = Some(j);
                    break;
                }
                _ => {}
            }
            j += 1;
        }
        let Some(end) = end else {
            return Err("unclosed action".into());
        };
        let mut action = &after[..end];
        let mut next = &after[end + 2..];
        if action.ends_with(" -") || action.ends_with("\t-") || action.ends_with("\n-") {
            action = &action[..action.len() - 1];
            next = next.trim_start();
        }
        if !text.is_empty() {
            out.push(Tok::Text(text));
        }
        let action = action.trim();
        if !(action.starts_with("/*") && action.ends_with("*/")) {
            out.push(Tok::Action(action.to_string()));
        }
        rest = next;
    }
    if !rest.is_empty() {
        out.push(Tok::Text(rest.to_string()));
    }
    Ok(out)
}

/// Splits an action into words (strings, parens and pipes kept as single tokens).
fn words(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let cs: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '"' || c == '`' {
            let mut w = String::from(c);
            i += 1;
            while i < cs.len() && cs[i] != c {
                if cs[i] == '\\' && c == '"' && i + 1 < cs.len() {
                    w.push(cs[i]);
                    i += 1;
                }
                w.push(cs[i]);
                i += 1;
            }
            if i >= cs.len() {
                return Err("unterminated quoted string".into());
            }
            w.push(c);
            i += 1;
            out.push(w);
            continue;
        }
        if c == '(' || c == ')' || c == '|' {
            // A field chain may follow a closing paren: `(...).Field`.
            out.push(c.to_string());
            i += 1;
            continue;
        }
        if c == ':' && i + 1 < cs.len() && cs[i + 1] == '=' {
            out.push(":=".into());
            i += 2;
            continue;
        }
        let mut w = String::new();
        while i < cs.len()
            && !cs[i].is_whitespace()
            && !matches!(cs[i], '(' | ')' | '|' | '"' | '`')
        {
            if cs[i] == ':' && i + 1 < cs.len() && cs[i + 1] == '=' {
                break;
            }
            w.push(cs[i]);
            i += 1;
        }
        out.push(w);
    }
    Ok(out)
}

fn unquote_go(w: &str) -> Result<String, String> {
    if let Some(inner) = w.strip_prefix('`').and_then(|x| x.strip_suffix('`')) {
        return Ok(inner.to_string());
    }
    let inner = w
        .strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .ok_or_else(|| format!("bad string {w}"))?;
    let mut out = String::new();
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some(o) => return Err(format!("unknown escape sequence \\{o}")),
            None => return Err("bad escape".into()),
        }
    }
    Ok(out)
}

fn parse_pipe(ws: &[String]) -> Result<Pipe, String> {
    let mut ws = ws;
    let mut decl = None;
    if ws.len() >= 2 && ws[0].starts_with('$') && (ws[1] == ":=" || ws[1] == "=") {
        decl = Some((ws[0].clone(), ws[1] == ":="));
        ws = &ws[2..];
    }
    let mut cmds = Vec::new();
    let mut cur: Vec<Arg> = Vec::new();
    let mut i = 0;
    while i < ws.len() {
        let w = &ws[i];
        if w == "|" {
            if cur.is_empty() {
                return Err("missing command before |".into());
            }
            cmds.push(std::mem::take(&mut cur));
            i += 1;
            continue;
        }
        if w == "(" {
            let mut depth = 1;
            let mut j = i + 1;
            while j < ws.len() && depth > 0 {
                if ws[j] == "(" {
                    depth += 1;
                } else if ws[j] == ")" {
                    depth -= 1;
                }
                j += 1;
            }
            if depth != 0 {
                return Err("unclosed left paren".into());
            }
            let inner = parse_pipe(&ws[i + 1..j - 1])?;
            let mut fields = Vec::new();
            if j < ws.len() && ws[j].starts_with('.') {
                fields = ws[j][1..].split('.').map(String::from).collect();
                i = j + 1;
            } else {
                i = j;
            }
            cur.push(Arg::Sub(Box::new(inner), fields));
            continue;
        }
        if w == ")" {
            return Err("unexpected right paren".into());
        }
        cur.push(parse_arg(w)?);
        i += 1;
    }
    if !cur.is_empty() {
        cmds.push(cur);
    }
    if cmds.is_empty() {
        return Err("missing value for command".into());
    }
    Ok(Pipe { decl, cmds })
}

fn parse_arg(w: &str) -> Result<Arg, String> {
    if w.starts_with('"') || w.starts_with('`') {
        return Ok(Arg::Str(unquote_go(w)?));
    }
    if w == "." {
        return Ok(Arg::Field(Vec::new()));
    }
    if let Some(f) = w.strip_prefix('.') {
        return Ok(Arg::Field(f.split('.').map(String::from).collect()));
    }
    if let Some(v) = w.strip_prefix('$') {
        let mut parts = v.split('.');
        let name = parts.next().unwrap_or("").to_string();
        return Ok(Arg::Var(
            format!("${name}"),
            parts.map(String::from).collect(),
        ));
    }
    match w {
        "true" => return Ok(Arg::Bool(true)),
        "false" => return Ok(Arg::Bool(false)),
        "nil" => return Ok(Arg::Nil),
        _ => {}
    }
    if w.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') {
        let is_int = !w.contains(['.', 'e', 'E']);
        return w
            .parse::<f64>()
            .map(|f| Arg::Num(f, is_int))
            .map_err(|_| format!("bad number syntax: {w:?}"));
    }
    if w.chars().all(|c| c.is_alphanumeric() || c == '_') {
        if !is_known_func(w) {
            return Err(format!("function {w:?} not defined"));
        }
        return Ok(Arg::Ident(w.to_string()));
    }
    Err(format!("unexpected {w:?} in command"))
}

fn is_known_func(f: &str) -> bool {
    matches!(
        f,
        "and"
            | "or"
            | "not"
            | "eq"
            | "ne"
            | "lt"
            | "le"
            | "gt"
            | "ge"
            | "len"
            | "index"
            | "print"
            | "printf"
            | "println"
            | "html"
            | "js"
            | "urlquery"
            | "humanize"
            | "humanize1024"
            | "humanizeDuration"
            | "humanizePercentage"
            | "humanizeTimestamp"
            | "toUpper"
            | "toLower"
            | "title"
            | "match"
            | "reReplaceAll"
            | "safeHtml"
            | "stripPort"
            | "stripDomain"
            | "first"
            | "label"
            | "value"
            | "query"
            | "sortByLabel"
            | "strvalue"
            | "args"
            | "tmpl"
            | "pathPrefix"
            | "externalURL"
            | "graphLink"
            | "tableLink"
            | "toTime"
            | "parseDuration"
            | "toDuration"
            | "now"
            | "call"
            | "slice"
    )
}

fn parse_nodes(toks: &[Tok], i: &mut usize, stop: &[&str]) -> Result<(Vec<Node>, String), String> {
    let mut nodes = Vec::new();
    while *i < toks.len() {
        match &toks[*i] {
            Tok::Text(t) => {
                nodes.push(Node::Text(t.clone()));
                *i += 1;
            }
            Tok::Action(a) => {
                let ws = words(a)?;
                let kw = ws.first().map(|s| s.as_str()).unwrap_or("");
                if stop.contains(&kw) {
                    return Ok((nodes, a.clone()));
                }
                *i += 1;
                match kw {
                    "if" => {
                        let mut branches = vec![(parse_pipe(&ws[1..])?, Vec::new())];
                        let mut els = Vec::new();
                        loop {
                            let (body, term) = parse_nodes(toks, i, &["else", "end"])?;
                            if let Some(last) = branches.last_mut() {
                                last.1 = body;
                            }
                            *i += 1;
                            let tw = words(&term)?;
                            if tw[0] == "end" {
                                break;
                            }
                            if tw.len() > 1 && tw[1] == "if" {
                                branches.push((parse_pipe(&tw[2..])?, Vec::new()));
                                continue;
                            }
                            let (body, _) = parse_nodes(toks, i, &["end"])?;
                            *i += 1;
                            els = body;
                            break;
                        }
                        nodes.push(Node::If(branches, els));
                    }
                    "range" | "with" => {
                        let p = parse_pipe(&ws[1..])?;
                        let (body, term) = parse_nodes(toks, i, &["else", "end"])?;
                        *i += 1;
                        let mut els = Vec::new();
                        if words(&term)?[0] == "else" {
                            let (b, _) = parse_nodes(toks, i, &["end"])?;
                            *i += 1;
                            els = b;
                        }
                        nodes.push(if kw == "range" {
                            Node::Range(p, body, els)
                        } else {
                            Node::With(p, body, els)
                        });
                    }
                    "end" | "else" => return Err(format!("unexpected {{{{{kw}}}}}")),
                    "define" | "template" | "block" | "break" | "continue" => {
                        return Err(format!("{kw} is not supported"))
                    }
                    "" => return Err("missing value for command".into()),
                    _ => nodes.push(Node::Action(parse_pipe(&ws)?)),
                }
            }
        }
    }
    if !stop.is_empty() {
        return Err(format!(
            "unexpected EOF, expected {{{{{}}}}}",
            stop.last().unwrap_or(&"end")
        ));
    }
    Ok((nodes, String::new()))
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    name: String,
    nodes: Vec<Node>,
}

/// Data available to an alert template.
pub struct AlertData<'a> {
    /// The alert's labels.
    pub labels: BTreeMap<String, String>,
    /// External labels.
    pub external_labels: BTreeMap<String, String>,
    /// External URL.
    pub external_url: String,
    /// The alert's value.
    pub value: f64,
    /// Evaluation time in ms (for `now`).
    pub now_ms: i64,
    /// Query function for `query`.
    pub query: Option<&'a QueryFn<'a>>,
}

impl Template {
    /// Parses a template.
    pub fn parse(name: &str, src: &str) -> Result<Self, TemplateError> {
        let e = |msg: String| TemplateError {
            name: name.to_string(),
            msg,
        };
        let toks = lex(src).map_err(e)?;
        let mut i = 0;
        let (nodes, _) = parse_nodes(&toks, &mut i, &[]).map_err(e)?;
        Ok(Template {
            name: name.to_string(),
            nodes,
        })
    }

    /// Expands the template with Prometheus's alert data (`$labels`, `$value`, ...).
    pub fn expand_alert(&self, d: &AlertData) -> Result<String, TemplateError> {
        let to_map = |m: &BTreeMap<String, String>| {
            TVal::Map(
                m.iter()
                    .map(|(k, v)| (k.clone(), TVal::Str(v.clone())))
                    .collect(),
            )
        };
        let mut dot = BTreeMap::new();
        dot.insert("Labels".to_string(), to_map(&d.labels));
        dot.insert("ExternalLabels".to_string(), to_map(&d.external_labels));
        dot.insert("ExternalURL".to_string(), TVal::Str(d.external_url.clone()));
        dot.insert("Value".to_string(), TVal::Float(d.value));
        let dot = TVal::Map(dot);
        let mut ex = Exec {
            vars: vec![
                ("$".to_string(), dot.clone()),
                ("$labels".to_string(), to_map(&d.labels)),
                ("$externalLabels".to_string(), to_map(&d.external_labels)),
                (
                    "$externalURL".to_string(),
                    TVal::Str(d.external_url.clone()),
                ),
                ("$value".to_string(), TVal::Float(d.value)),
            ],
            query: d.query,
            now_ms: d.now_ms,
            out: String::new(),
        };
        ex.run(&self.nodes, &dot).map_err(|msg| TemplateError {
            name: self.name.clone(),
            msg,
        })?;
        Ok(ex.out)
    }
}

struct Exec<'a> {
    vars: Vec<(String, TVal)>,
    query: Option<&'a QueryFn<'a>>,
    now_ms: i64,
    out: String,
}

fn get_fields(mut v: TVal, fields: &[String]) -> Result<TVal, String> {
    for f in fields {
        v = match v {
            TVal::Map(m) => m.get(f).cloned().unwrap_or(TVal::Nil),
            TVal::Nil => TVal::Nil,
            other => {
                return Err(format!(
                    "can't evaluate field {f} in type {}",
                    type_name(&other)
                ))
            }
        };
    }
    Ok(v)
}

fn type_name(v: &TVal) -> &'static str {
    match v {
        TVal::Nil => "nil",
        TVal::Bool(_) => "bool",
        TVal::Int(_) => "int",
        TVal::Float(_) => "float64",
        TVal::Str(_) => "string",
        TVal::Map(_) => "map",
        TVal::List(_) => "slice",
    }
}

impl Exec<'_> {
    fn run(&mut self, nodes: &[Node], dot: &TVal) -> Result<(), String> {
        for n in nodes {
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_none() {
                        let s = v.display();
                        self.out.push_str(&s);
                    }
                }
                Node::If(branches, els) => {
                    let mark = self.vars.len();
                    let mut done = false;
                    for (p, body) in branches {
                        if self.pipe(p, dot)?.truthy() {
                            self.run(body, dot)?;
                            done = true;
                            break;
                        }
                    }
                    if !done {
                        self.run(els, dot)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::With(p, body, els) => {
                    let mark = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    if v.truthy() {
                        self.run(body, &v)?;
                    } else {
                        self.run(els, dot)?;
                    }
                    self.vars.truncate(mark);
                }
                Node::Range(p, body, els) => {
                    let mark = self.vars.len();
                    let v = self.pipe(p, dot)?;
                    let items: Vec<TVal> = match v {
                        TVal::List(l) => l,
                        TVal::Map(m) => m.into_values().collect(),
                        TVal::Nil => Vec::new(),
                        TVal::Int(n) => (0..n).map(TVal::Int).collect(),
                        other => {
                            return Err(format!("range can't iterate over {}", other.display()))
                        }
                    };
                    if items.is_empty() {
                        self.run(els, dot)?;
                    }
                    for it in items {
                        if let Some((name, _)) = &p.decl {
                            self.set_var(name, it.clone(), true);
                        }
                        self.run(body, &it)?;
                    }
                    self.vars.truncate(mark);
                }
            }
        }
        Ok(())
    }

    fn set_var(&mut self, name: &str, v: TVal, declare: bool) {
        if !declare {
            if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                slot.1 = v;
                return;
            }
        }
        self.vars.push((name.to_string(), v));
    }

    fn pipe(&mut self, p: &Pipe, dot: &TVal) -> Result<TVal, String> {
        let mut prev: Option<TVal> = None;
        for cmd in &p.cmds {
            prev = Some(self.command(cmd, dot, prev)?);
        }
        let v = prev.unwrap_or(TVal::Nil);
        if let Some((name, declare)) = &p.decl {
            self.set_var(name, v.clone(), *declare);
        }
        Ok(v)
    }

    fn arg(&mut self, a: &Arg, dot: &TVal) -> Result<TVal, String> {
        Ok(match a {
            Arg::Field(f) => get_fields(dot.clone(), f)?,
            Arg::Var(name, f) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| format!("undefined variable: {name}"))?;
                get_fields(v, f)?
            }
            Arg::Str(s) => TVal::Str(s.clone()),
            Arg::Num(f, is_int) => {
                if *is_int {
                    TVal::Int(*f as i64)
                } else {
                    TVal::Float(*f)
                }
            }
            Arg::Bool(b) => TVal::Bool(*b),
            Arg::Nil => TVal::Nil,
            Arg::Ident(f) => self.call(f, Vec::new())?,
            Arg::Sub(p, f) => {
                let v = self.pipe(p, dot)?;
                get_fields(v, f)?
            }
        })
    }

    fn command(&mut self, cmd: &[Arg], dot: &TVal, prev: Option<TVal>) -> Result<TVal, String> {
        if let Arg::Ident(f) = &cmd[0] {
            let mut args = Vec::new();
            for a in &cmd[1..] {
                args.push(self.arg(a, dot)?);
            }
            if let Some(p) = prev {
                args.push(p);
            }
            return self.call(f, args);
        }
        if cmd.len() > 1 || prev.is_some() {
            return Err("can't give argument to non-function".into());
        }
        self.arg(&cmd[0], dot)
    }

    fn call(&mut self, f: &str, a: Vec<TVal>) -> Result<TVal, String> {
        let need = |n: usize| -> Result<(), String> {
            if a.len() != n {
                Err(format!(
                    "wrong number of args for {f}: want {n} got {}",
                    a.len()
                ))
            } else {
                Ok(())
            }
        };
        let num = |v: &TVal| v.as_f64();
        Ok(match f {
            "and" => {
                let mut last = TVal::Nil;
                for v in a {
                    if !v.truthy() {
                        return Ok(v);
                    }
                    last = v;
                }
                last
            }
            "or" => {
                let mut last = TVal::Nil;
                for v in a {
                    if v.truthy() {
                        return Ok(v);
                    }
                    last = v;
                }
                last
            }
            "not" => {
                need(1)?;
                TVal::Bool(!a[0].truthy())
            }
            "eq" | "ne" | "lt" | "le" | "gt" | "ge" => {
                if a.len() < 2 {
                    return Err(format!("missing argument for comparison {f}"));
                }
                let ord = compare(&a[0], &a[1])?;
                use std::cmp::Ordering::*;
                TVal::Bool(match f {
                    "eq" => {
                        ord == Some(Equal)
                            || a[1..]
                                .iter()
                                .any(|b| compare(&a[0], b).ok().flatten() == Some(Equal))
                    }
                    "ne" => ord != Some(Equal),
                    "lt" => ord == Some(Less),
                    "le" => matches!(ord, Some(Less | Equal)),
                    "gt" => ord == Some(Greater),
                    _ => matches!(ord, Some(Greater | Equal)),
                })
            }
            "len" => {
                need(1)?;
                TVal::Int(match &a[0] {
                    TVal::Str(s) => s.len(),
                    TVal::List(l) => l.len(),
                    TVal::Map(m) => m.len(),
                    other => return Err(format!("len of {}", type_name(other))),
                } as i64)
            }
            "index" => {
                let mut v = a.first().cloned().unwrap_or(TVal::Nil);
                for k in &a[1..] {
                    v = match (v, k) {
                        (TVal::Map(m), k) => m.get(&k.display()).cloned().unwrap_or(TVal::Nil),
                        (TVal::List(l), TVal::Int(i)) => l
                            .get(*i as usize)
                            .cloned()
                            .ok_or_else(|| format!("index out of range: {i}"))?,
                        (other, _) => {
                            return Err(format!("can't index item of type {}", type_name(&other)))
                        }
                    };
                }
                v
            }
            "print" => TVal::Str(a.iter().map(|v| v.display()).collect::<Vec<_>>().join("")),
            "println" => TVal::Str(format!(
                "{}\n",
                a.iter().map(|v| v.display()).collect::<Vec<_>>().join(" ")
            )),
            "printf" => {
                let Some(TVal::Str(fmt)) = a.first() else {
                    return Err("printf: format must be a string".into());
                };
                TVal::Str(sprintf(fmt, &a[1..]))
            }
            "humanize" => {
                need(1)?;
                TVal::Str(humanize(num(&a[0])?))
            }
            "humanize1024" => {
                need(1)?;
                TVal::Str(humanize1024(num(&a[0])?))
            }
            "humanizeDuration" => {
                need(1)?;
                TVal::Str(humanize_duration(num(&a[0])?))
            }
            "humanizePercentage" => {
                need(1)?;
                TVal::Str(format!("{}%", format_g(num(&a[0])? * 100.0, 4)))
            }
            "humanizeTimestamp" => {
                need(1)?;
                let v = num(&a[0])?;
                if v.is_nan() || v.is_infinite() {
                    TVal::Str(format_g(v, 4))
                } else {
                    TVal::Str(go_time_string(v))
                }
            }
            "toTime" => {
                need(1)?;
                TVal::Str(go_time_string(num(&a[0])?))
            }
            "now" => TVal::Float(self.now_ms as f64 / 1000.0),
            "toUpper" => TVal::Str(
                a.first()
                    .map(|v| v.display())
                    .unwrap_or_default()
                    .to_uppercase(),
            ),
            "toLower" => TVal::Str(
                a.first()
                    .map(|v| v.display())
                    .unwrap_or_default()
                    .to_lowercase(),
            ),
            "title" => {
                let s = a.first().map(|v| v.display()).unwrap_or_default();
                let mut out = String::new();
                let mut start = true;
                for c in s.chars() {
                    if start && c.is_alphabetic() {
                        out.extend(c.to_uppercase());
                    } else {
                        out.push(c);
                    }
                    start = !c.is_alphanumeric() && c != '\'';
                }
                TVal::Str(out)
            }
            "match" => {
                need(2)?;
                let re = regex::Regex::new(&a[0].display()).map_err(|e| e.to_string())?;
                TVal::Bool(re.is_match(&a[1].display()))
            }
            "reReplaceAll" => {
                need(3)?;
                let re = regex::Regex::new(&a[0].display()).map_err(|e| e.to_string())?;
                TVal::Str(
                    re.replace_all(&a[2].display(), a[1].display().as_str())
                        .into_owned(),
                )
            }
            "safeHtml" | "html" | "js" | "urlquery" | "strvalue" => {
                let s = a.first().map(|v| v.display()).unwrap_or_default();
                TVal::Str(match f {
                    "html" => s
                        .replace('&', "&amp;")
                        .replace('<', "&lt;")
                        .replace('>', "&gt;")
                        .replace('"', "&#34;")
                        .replace('\'', "&#39;"),
                    "urlquery" => percent_encode(&s),
                    "strvalue" => match &a[0] {
                        TVal::Map(m) => m
                            .get("Labels")
                            .and_then(|l| get_fields(l.clone(), &["__value__".into()]).ok())
                            .map(|v| {
                                if v == TVal::Nil {
                                    String::new()
                                } else {
                                    v.display()
                                }
                            })
                            .unwrap_or_default(),
                        _ => String::new(),
                    },
                    _ => s,
                })
            }
            "stripPort" => {
                let s = a.first().map(|v| v.display()).unwrap_or_default();
                TVal::Str(strip_port(&s))
            }
            "stripDomain" => {
                let s = a.first().map(|v| v.display()).unwrap_or_default();
                let (host, port) = match s.rsplit_once(':') {
                    Some((h, p)) if !h.contains(':') && !h.is_empty() => {
                        (h.to_string(), format!(":{p}"))
                    }
                    _ => (s.clone(), String::new()),
                };
                if host.parse::<std::net::IpAddr>().is_ok() {
                    TVal::Str(s)
                } else {
                    TVal::Str(format!("{}{port}", host.split('.').next().unwrap_or("")))
                }
            }
            "first" => {
                need(1)?;
                match &a[0] {
                    TVal::List(l) => l
                        .first()
                        .cloned()
                        .ok_or("first() called on vector with no elements")?,
                    _ => return Err("first: expected a query result".into()),
                }
            }
            "label" => {
                need(2)?;
                get_fields(a[1].clone(), &["Labels".into(), a[0].display()]).map(|v| {
                    if v == TVal::Nil {
                        TVal::Str(String::new())
                    } else {
                        v
                    }
                })?
            }
            "value" => {
                need(1)?;
                get_fields(a[0].clone(), &["Value".into()])?
            }
            "sortByLabel" => {
                need(2)?;
                let key = a[0].display();
                let mut l = match &a[1] {
                    TVal::List(l) => l.clone(),
                    _ => return Err("sortByLabel: expected a query result".into()),
                };
                l.sort_by_key(|s| {
                    get_fields(s.clone(), &["Labels".into(), key.clone()])
                        .map(|v| v.display())
                        .unwrap_or_default()
                });
                TVal::List(l)
            }
            "query" => {
                need(1)?;
                let q = a[0].display();
                let Some(qf) = self.query else {
                    return Err("query is not available here".into());
                };
                let res = qf(&q).map_err(|e| format!("error executing query {q:?}: {e}"))?;
                TVal::List(
                    res.into_iter()
                        .map(|(labels, v)| {
                            let mut m = BTreeMap::new();
                            m.insert(
                                "Labels".into(),
                                TVal::Map(
                                    labels.into_iter().map(|(k, v)| (k, TVal::Str(v))).collect(),
                                ),
                            );
                            m.insert("Value".into(), TVal::Float(v));
                            TVal::Map(m)
                        })
                        .collect(),
                )
            }
            "args" => {
                let mut m = BTreeMap::new();
                for (i, v) in a.into_iter().enumerate() {
                    m.insert(format!("arg{i}"), v);
                }
                TVal::Map(m)
            }
            "parseDuration" | "toDuration" => {
                need(1)?;
                let s = a[0].display();
                match crate::notation::parse_duration_ms(&s) {
                    Some(ms) => TVal::Float(ms as f64 / 1000.0),
                    None => return Err(format!("invalid duration {s:?}")),
                }
            }
            "pathPrefix" | "externalURL" => {
                let v = self
                    .vars
                    .iter()
                    .find(|(n, _)| n == "$externalURL")
                    .map(|(_, v)| v.display())
                    .unwrap_or_default();
                TVal::Str(if f == "pathPrefix" { url_path(&v) } else { v })
            }
            "graphLink" | "tableLink" => {
                let q = a.first().map(|v| v.display()).unwrap_or_default();
                let tab = if f == "graphLink" { 0 } else { 1 };
                TVal::Str(format!(
                    "/graph?g0.expr={}&g0.tab={tab}",
                    percent_encode(&q)
                ))
            }
            other => return Err(format!("function {other:?} not defined")),
        })
    }
}

fn url_path(u: &str) -> String {
    match u.split_once("://") {
        Some((_, rest)) => rest
            .find('/')
            .map(|i| rest[i..].to_string())
            .unwrap_or_default(),
        None => String::new(),
    }
}

fn strip_port(s: &str) -> String {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((h, _)) = rest.split_once(']') {
            return h.to_string();
        }
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
        _ => s.to_string(),
    }
}

/// What Go's `url.QueryEscape` leaves as is: letters, digits and `-_.~` (a space becomes `+`).
const QUERY_ESCAPE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Go's `url.QueryEscape`, as the `urlquery` function and `graphLink` use it.
fn percent_encode(s: &str) -> String {
    // `%20` can only come from a space: a literal `%` is itself escaped to `%25`.
    percent_encoding::utf8_percent_encode(s, QUERY_ESCAPE)
        .to_string()
        .replace("%20", "+")
}

fn compare(a: &TVal, b: &TVal) -> Result<Option<std::cmp::Ordering>, String> {
    match (a, b) {
        (TVal::Str(x), TVal::Str(y)) => Ok(Some(x.cmp(y))),
        (TVal::Bool(x), TVal::Bool(y)) => Ok(Some(x.cmp(y))),
        (TVal::Nil, TVal::Nil) => Ok(Some(std::cmp::Ordering::Equal)),
        (TVal::Int(_) | TVal::Float(_), TVal::Int(_) | TVal::Float(_)) => {
            Ok(a.as_f64()?.partial_cmp(&b.as_f64()?))
        }
        _ => Err(format!(
            "incompatible types for comparison: {} and {}",
            type_name(a),
            type_name(b)
        )),
    }
}

/// A subset of Go's `fmt.Sprintf`: `%v %s %d %f %e %g %q %x %t %%` with flags, width and precision.
pub fn sprintf(fmt: &str, args: &[TVal]) -> String {
    let mut out = String::new();
    let cs: Vec<char> = fmt.chars().collect();
    let mut i = 0;
    let mut ai = 0;
    while i < cs.len() {
        if cs[i] != '%' {
            out.push(cs[i]);
            i += 1;
            continue;
        }
        i += 1;
        if i < cs.len() && cs[i] == '%' {
            out.push('%');
            i += 1;
            continue;
        }
        let mut flags = String::new();
        while i < cs.len() && matches!(cs[i], '-' | '+' | '0' | ' ' | '#') {
            flags.push(cs[i]);
            i += 1;
        }
        let mut width = String::new();
        while i < cs.len() && cs[i].is_ascii_digit() {
            width.push(cs[i]);
            i += 1;
        }
        let mut prec: Option<usize> = None;
        if i < cs.len() && cs[i] == '.' {
            i += 1;
            let mut p = String::new();
            while i < cs.len() && cs[i].is_ascii_digit() {
                p.push(cs[i]);
                i += 1;
            }
            prec = Some(p.parse().unwrap_or(0));
        }
        let Some(&verb) = cs.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i += 1;
        let Some(arg) = args.get(ai) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        ai += 1;
        let mut s = match verb {
            'v' | 's' => arg.display(),
            'd' => match arg {
                TVal::Int(n) => n.to_string(),
                TVal::Float(f) => format!("%!d(float64={})", format_v(*f)),
                other => format!("%!d({}={})", type_name(other), other.display()),
            },
            'f' | 'F' => match arg.as_f64() {
                Ok(f) if f.is_finite() => format!("{:.*}", prec.unwrap_or(6), f),
                Ok(f) => format_v(f),
                Err(_) => format!("%!f({}={})", type_name(arg), arg.display()),
            },
            'e' => match arg.as_f64() {
                Ok(f) => go_exp(&format!("{:.*e}", prec.unwrap_or(6), f)),
                Err(_) => format!("%!e({}={})", type_name(arg), arg.display()),
            },
            'g' => match arg.as_f64() {
                Ok(f) => match prec {
                    Some(p) => format_g(f, p),
                    None => format_v(f),
                },
                Err(_) => format!("%!g({}={})", type_name(arg), arg.display()),
            },
            'q' => format!("{:?}", arg.display()),
            't' => arg.display(),
            'x' => match arg {
                TVal::Int(n) => format!("{n:x}"),
                other => other
                    .display()
                    .bytes()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
            },
            other => format!("%!{other}({})", arg.display()),
        };
        if flags.contains('+') && matches!(verb, 'd' | 'f' | 'e' | 'g') && !s.starts_with('-') {
            s.insert(0, '+');
        }
        if let Ok(w) = width.parse::<usize>() {
            let len = s.chars().count();
            if len < w {
                let pad = w - len;
                if flags.contains('-') {
                    s.push_str(&" ".repeat(pad));
                } else if flags.contains('0') && matches!(verb, 'd' | 'f' | 'e' | 'g') {
                    let (sign, body) = if s.starts_with(['-', '+']) {
                        s.split_at(1)
                    } else {
                        ("", s.as_str())
                    };
                    s = format!("{sign}{}{body}", "0".repeat(pad));
                } else {
                    s = format!("{}{s}", " ".repeat(pad));
                }
            }
        }
        out.push_str(&s);
    }
    if ai < args.len() {
        let extra: Vec<String> = args[ai..]
            .iter()
            .map(|a| format!("{}={}", type_name(a), a.display()))
            .collect();
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
}

/// Prometheus's `humanize`.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || v.is_nan() || v.is_infinite() {
        return format_g(v, 4);
    }
    if v.abs() >= 1.0 {
        let mut prefix = "";
        for p in ["k", "M", "G", "T", "P", "E", "Z", "Y"] {
            if v.abs() < 1000.0 {
                break;
            }
            prefix = p;
            v /= 1000.0;
        }
        return format!("{}{prefix}", format_g(v, 4));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}", format_g(v, 4))
}

/// Prometheus's `humanize1024`.
pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || v.is_nan() || v.is_infinite() {
        return format_g(v, 4);
    }
    let mut prefix = "";
    for p in ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"] {
        if v.abs() < 1024.0 {
            break;
        }
        prefix = p;
        v /= 1024.0;
    }
    format!("{}{prefix}", format_g(v, 4))
}

/// Prometheus's `humanizeDuration`.
pub fn humanize_duration(mut v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return format_g(v, 4);
    }
    if v == 0.0 {
        return format!("{}s", format_g(v, 4));
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        v = v.abs();
        let d = v as i64;
        let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86400);
        if days != 0 {
            return format!("{sign}{days}d {h}h {m}m {s}s");
        }
        if h != 0 {
            return format!("{sign}{h}h {m}m {s}s");
        }
        if m != 0 {
            return format!("{sign}{m}m {s}s");
        }
        return format!("{sign}{}s", format_g(v, 4));
    }
    let mut prefix = "";
    for p in ["m", "u", "n", "p", "f", "a", "z", "y"] {
        if v.abs() >= 1.0 {
            break;
        }
        prefix = p;
        v *= 1000.0;
    }
    format!("{}{prefix}s", format_g(v, 4))
}

/// Go's `time.Time.String()` for a UTC Unix time in seconds.
fn go_time_string(v: f64) -> String {
    use chrono::TimeZone;
    let secs = v.floor() as i64;
    let nanos = ((v - v.floor()) * 1e9).round() as u32;
    match chrono::Utc
        .timestamp_opt(secs, nanos.min(999_999_999))
        .single()
    {
        Some(t) => {
            let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
            if nanos > 0 {
                let frac = format!("{:09}", nanos);
                s.push('.');
                s.push_str(frac.trim_end_matches('0'));
            }
            s.push_str(" +0000 UTC");
            s
        }
        None => format_g(v, 4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(src: &str, labels: &[(&str, &str)], value: f64) -> Result<String, TemplateError> {
        let q = |_: &str| -> Result<QueryRows, String> {
            Ok(vec![(
                BTreeMap::from([("instance".to_string(), "a:1".to_string())]),
                42.0,
            )])
        };
        let t = Template::parse("t", src)?;
        t.expand_alert(&AlertData {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            external_labels: BTreeMap::from([("cluster".to_string(), "prod".to_string())]),
            external_url: "http://gw:9091/x".into(),
            value,
            now_ms: 0,
            query: Some(&q),
        })
    }

    #[test]
    fn labels_value_and_pipelines() {
        assert_eq!(
            run(
                "{{ $labels.job }} is {{ $value }} in {{ $externalLabels.cluster }}",
                &[("job", "api")],
                0.5
            )
            .unwrap(),
            "api is 0.5 in prod"
        );
        assert_eq!(
            run("{{ .Labels.job | toUpper }}", &[("job", "api")], 0.0).unwrap(),
            "API"
        );
        assert_eq!(
            run(r#"{{ printf "%.2f" $value }}"#, &[], 1.23456).unwrap(),
            "1.23"
        );
        assert_eq!(
            run("{{ $value | humanize }}", &[], 1234567.0).unwrap(),
            "1.235M"
        );
        assert_eq!(run("{{ humanize1024 2048 }}", &[], 0.0).unwrap(), "2ki");
        assert_eq!(
            run("{{ humanizeDuration 3661 }}", &[], 0.0).unwrap(),
            "1h 1m 1s"
        );
        assert_eq!(
            run("{{ humanizeDuration 0.25 }}", &[], 0.0).unwrap(),
            "250ms"
        );
        assert_eq!(
            run("{{ humanizePercentage 0.1234 }}", &[], 0.0).unwrap(),
            "12.34%"
        );
        assert_eq!(
            run("{{ humanizeTimestamp 1 }}", &[], 0.0).unwrap(),
            "1970-01-01 00:00:01 +0000 UTC"
        );
        assert_eq!(run("{{ $value }}", &[], 1e-7).unwrap(), "1e-07");
    }

    #[test]
    fn control_flow_and_query() {
        let src = "{{ if gt $value 10.0 }}high{{ else if gt $value 5.0 }}mid{{ else }}low{{ end }}";
        assert_eq!(run(src, &[], 11.0).unwrap(), "high");
        assert_eq!(run(src, &[], 6.0).unwrap(), "mid");
        assert_eq!(run(src, &[], 1.0).unwrap(), "low");
        assert_eq!(
            run(
                r#"{{ range query "up" }}{{ .Labels.instance | stripPort }}={{ .Value }}{{ end }}"#,
                &[],
                0.0
            )
            .unwrap(),
            "a=42"
        );
        assert_eq!(
            run(
                r#"{{ with query "up" }}{{ . | first | value }}{{ end }}"#,
                &[],
                0.0
            )
            .unwrap(),
            "42"
        );
        assert_eq!(run("{{ $x := 3 }}{{- $x -}} !", &[], 0.0).unwrap(), "3!");
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(Template::parse("t", "{{ if $value }}x").is_err());
        assert!(Template::parse("t", "{{ nosuchfunc 1 }}").is_err());
        assert!(Template::parse("t", "{{ $labels.x ").is_err());
        assert!(run("{{ $undefined }}", &[], 0.0).is_err());
    }

    #[test]
    fn urlquery_escapes_like_gos_query_escape() {
        assert_eq!(
            run(r#"{{ urlquery "a b/é%~-_." }}"#, &[], 0.0).unwrap(),
            "a+b%2F%C3%A9%25~-_."
        );
    }
}
