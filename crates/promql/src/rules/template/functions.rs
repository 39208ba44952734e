//! The one table of template functions: Go's built-ins (`and or not eq ne lt le gt ge len
//! index slice print printf println html js urlquery call`) and Prometheus's (`query first
//! label value strvalue sortByLabel args humanize* toTime title toUpper toLower match
//! reReplaceAll safeHtml stripPort stripDomain pathPrefix externalURL graphLink tableLink
//! parseDuration`). The parser looks names up here (an unknown name is a parse error, as in
//! Go) and the executor calls what it found, so a function exists in one place only.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::rc::Rc;

use super::error::ExecError;
use super::value::Value;
use super::QueryFn;
use crate::gofmt::{format_e, format_f, format_g, format_v};

/// What a function sees besides its arguments.
pub struct Ctx<'a> {
    /// Runs `query`.
    pub query: Option<&'a QueryFn<'a>>,
    /// `--web.external-url`.
    pub external_url: &'a str,
}

/// How many arguments a function takes.
#[derive(Debug, Clone, Copy)]
pub enum Arity {
    /// Exactly this many.
    Exact(usize),
    /// At least this many.
    AtLeast(usize),
}

type Call = fn(&Ctx, Vec<Value>) -> Result<Value, ExecError>;

/// A template function.
pub struct Func {
    /// Its name in templates.
    pub name: &'static str,
    /// How many arguments it takes.
    pub arity: Arity,
    /// The implementation (arguments already counted).
    pub call: Call,
}

impl std::fmt::Debug for Func {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl Func {
    /// Checks the argument count, then calls; a failure inside the function is reported as
    /// `error calling NAME: ...`, as Go does.
    pub fn invoke(&self, ctx: &Ctx, args: Vec<Value>) -> Result<Value, ExecError> {
        let (ok, want) = match self.arity {
            Arity::Exact(n) => (args.len() == n, ["0", "1", "2", "3"].get(n).copied()),
            Arity::AtLeast(n) => (args.len() >= n, Some("at least 1")),
        };
        if !ok {
            return Err(ExecError::WrongArgCount {
                func: self.name,
                want: want.unwrap_or("more"),
                got: args.len(),
            });
        }
        (self.call)(ctx, args).map_err(|e| ExecError::Call {
            func: self.name,
            source: Box::new(e),
        })
    }
}

/// The function called `name`, if there is one.
pub fn lookup(name: &str) -> Option<&'static Func> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

macro_rules! funcs {
    ($($name:literal $arity:expr => $call:expr),* $(,)?) => {
        /// Every function a template can call.
        pub static FUNCTIONS: &[Func] = &[$(Func { name: $name, arity: $arity, call: $call }),*];
    };
}

use Arity::{AtLeast, Exact};

funcs! {
    // Go's built-ins.
    "and" AtLeast(1) => |_, a| Ok(a.iter().find(|v| !v.truthy()).or(a.last()).cloned().unwrap_or(Value::Nil)),
    "or" AtLeast(1) => |_, a| Ok(a.iter().find(|v| v.truthy()).or(a.last()).cloned().unwrap_or(Value::Nil)),
    "not" Exact(1) => |_, a| Ok(Value::Bool(!a[0].truthy())),
    "eq" AtLeast(1) => |_, a| eq(&a),
    "ne" AtLeast(1) => |_, a| cmp(&a, false).map(|o| Value::Bool(o != Some(Ordering::Equal))),
    "lt" AtLeast(1) => |_, a| cmp(&a, true).map(|o| Value::Bool(o == Some(Ordering::Less))),
    "le" AtLeast(1) => |_, a| cmp(&a, true).map(|o| Value::Bool(matches!(o, Some(Ordering::Less | Ordering::Equal)))),
    "gt" AtLeast(1) => |_, a| cmp(&a, true).map(|o| Value::Bool(o == Some(Ordering::Greater))),
    "ge" AtLeast(1) => |_, a| cmp(&a, true).map(|o| Value::Bool(matches!(o, Some(Ordering::Greater | Ordering::Equal)))),
    "len" Exact(1) => |_, a| len(&a[0]),
    "index" AtLeast(1) => |_, a| index(a),
    "slice" AtLeast(1) => |_, a| slice(a),
    "print" AtLeast(0) => |_, a| Ok(Value::Str(sprint(&a))),
    "println" AtLeast(0) => |_, a| Ok(Value::Str(sprintln(&a))),
    "printf" AtLeast(1) => |_, a| Ok(Value::Str(sprintf(a[0].as_str()?, &a[1..]))),
    "html" AtLeast(0) => |_, a| Ok(Value::Str(html_escape(&sprint(&a)))),
    "js" AtLeast(0) => |_, a| Ok(Value::Str(js_escape(&sprint(&a)))),
    "urlquery" AtLeast(0) => |_, a| Ok(Value::Str(query_escape(&sprint(&a)))),
    "call" AtLeast(1) => |_, a| Err(ExecError::WrongType { want: "func", got: a[0].type_name() }),
    // Prometheus: query results.
    "query" Exact(1) => query,
    "first" Exact(1) => |_, a| match &a[0] {
        Value::List(l) => l.first().cloned().ok_or(ExecError::FirstOfEmpty),
        other => Err(ExecError::WrongType { want: "template.queryResult", got: other.type_name() }),
    },
    "label" Exact(2) => |_, a| {
        let name = a[0].as_str()?.to_string();
        sample(&a[1])?.field("Labels")?.field(&name)
    },
    "value" Exact(1) => |_, a| sample(&a[0])?.field("Value"),
    "strvalue" Exact(1) => |_, a| sample(&a[0])?.field("Labels")?.field("__value__"),
    "sortByLabel" Exact(2) => |_, a| {
        let name = a[0].as_str()?.to_string();
        let Value::List(l) = &a[1] else {
            return Err(ExecError::WrongType { want: "template.queryResult", got: a[1].type_name() });
        };
        let mut keyed = Vec::with_capacity(l.len());
        for s in l.iter() {
            keyed.push((sample(s)?.field("Labels")?.field(&name)?.display(), s.clone()));
        }
        keyed.sort_by(|x, y| x.0.cmp(&y.0));
        Ok(Value::List(Rc::new(keyed.into_iter().map(|(_, s)| s).collect())))
    },
    "args" AtLeast(0) => |_, a| Ok(Value::Map(Rc::new(
        a.into_iter().enumerate().map(|(i, v)| (format!("arg{i}"), v)).collect(),
    ))),
    // Prometheus: numbers.
    "humanize" Exact(1) => |_, a| Ok(Value::Str(humanize(a[0].to_f64()?))),
    "humanize1024" Exact(1) => |_, a| Ok(Value::Str(humanize1024(a[0].to_f64()?))),
    "humanizeDuration" Exact(1) => |_, a| Ok(Value::Str(humanize_duration(a[0].to_f64()?))),
    "humanizePercentage" Exact(1) => |_, a| Ok(Value::Str(format!("{}%", format_g(a[0].to_f64()? * 100.0, 4)))),
    "humanizeTimestamp" Exact(1) => |_, a| {
        let v = a[0].to_f64()?;
        if !v.is_finite() {
            return Ok(Value::Str(format_g(v, 4)));
        }
        go_time(v).map(Value::Str)
    },
    "toTime" Exact(1) => |_, a| go_time(a[0].to_f64()?).map(Value::Str),
    "parseDuration" Exact(1) => |_, a| parse_duration(a[0].as_str()?).map(Value::Float),
    // Prometheus: strings.
    "title" Exact(1) => |_, a| Ok(Value::Str(title(a[0].as_str()?))),
    "toUpper" Exact(1) => |_, a| Ok(Value::Str(a[0].as_str()?.to_uppercase())),
    "toLower" Exact(1) => |_, a| Ok(Value::Str(a[0].as_str()?.to_lowercase())),
    "match" Exact(2) => |_, a| Ok(Value::Bool(regex(a[0].as_str()?)?.is_match(a[1].as_str()?))),
    "reReplaceAll" Exact(3) => |_, a| {
        let re = regex(a[0].as_str()?)?;
        Ok(Value::Str(re.replace_all(a[2].as_str()?, a[1].as_str()?).into_owned()))
    },
    "safeHtml" Exact(1) => |_, a| Ok(Value::Str(a[0].as_str()?.to_string())),
    "stripPort" Exact(1) => |_, a| {
        let s = a[0].as_str()?;
        Ok(Value::Str(split_host_port(s).map(|(h, _)| h).unwrap_or(s).to_string()))
    },
    "stripDomain" Exact(1) => |_, a| Ok(Value::Str(strip_domain(a[0].as_str()?))),
    "graphLink" Exact(1) => |_, a| Ok(Value::Str(format!("/graph?g0.expr={}&g0.tab=0", query_escape(a[0].as_str()?)))),
    "tableLink" Exact(1) => |_, a| Ok(Value::Str(format!("/graph?g0.expr={}&g0.tab=1", query_escape(a[0].as_str()?)))),
    "pathPrefix" Exact(0) => |ctx, _| Ok(Value::Str(url_path(ctx.external_url))),
    "externalURL" Exact(0) => |ctx, _| Ok(Value::Str(ctx.external_url.to_string())),
}

fn query(ctx: &Ctx, a: Vec<Value>) -> Result<Value, ExecError> {
    let q = a[0].as_str()?;
    let run = ctx.query.ok_or(ExecError::NoQuerier)?;
    let rows = run(q).map_err(|source| ExecError::Query {
        query: q.to_string(),
        source,
    })?;
    Ok(Value::List(Rc::new(
        rows.into_iter().map(|(l, v)| Value::sample(l, v)).collect(),
    )))
}

fn sample(v: &Value) -> Result<&Value, ExecError> {
    match v {
        Value::Struct(s) if s.fields.iter().any(|(n, _)| *n == "Labels") => Ok(v),
        other => Err(ExecError::WrongType {
            want: "*template.sample",
            got: other.type_name(),
        }),
    }
}

fn regex(p: &str) -> Result<regex::Regex, ExecError> {
    regex::Regex::new(p).map_err(|e| ExecError::Regex(e.to_string()))
}

/// Go's comparison of two basic values: numbers of one kind, strings, bools.
fn basic_cmp(a: &Value, b: &Value) -> Result<Option<Ordering>, ExecError> {
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Nil, Value::Nil) => Some(Ordering::Equal),
        (
            Value::Int(_) | Value::Float(_) | Value::Str(_) | Value::Bool(_),
            Value::Int(_) | Value::Float(_) | Value::Str(_) | Value::Bool(_),
        ) => return Err(ExecError::IncompatibleComparison),
        (Value::Nil, _) | (_, Value::Nil) => return Err(ExecError::IncompatibleComparison),
        _ => return Err(ExecError::InvalidComparison),
    })
}

/// `eq a b c...`: whether `a` equals any of the others.
fn eq(a: &[Value]) -> Result<Value, ExecError> {
    if a.len() < 2 {
        return Err(ExecError::MissingComparisonArg);
    }
    for b in &a[1..] {
        if basic_cmp(&a[0], b)? == Some(Ordering::Equal) {
            return Ok(Value::Bool(true));
        }
    }
    Ok(Value::Bool(false))
}

/// `ne`/`lt`/`le`/`gt`/`ge` of two values: `None` when unordered (NaN).
fn cmp(a: &[Value], ordered: bool) -> Result<Option<Ordering>, ExecError> {
    if a.len() != 2 {
        return Err(ExecError::MissingComparisonArg);
    }
    if ordered && matches!(a[0], Value::Bool(_) | Value::Nil) {
        return Err(ExecError::InvalidComparison);
    }
    basic_cmp(&a[0], &a[1])
}

fn len(v: &Value) -> Result<Value, ExecError> {
    let n = match v {
        Value::Str(s) => s.len(),
        Value::List(l) => l.len(),
        Value::Labels(m) => m.len(),
        Value::Map(m) => m.len(),
        other => return Err(ExecError::NoLength(other.type_name())),
    };
    Ok(Value::Int(n as i64))
}

fn index(mut a: Vec<Value>) -> Result<Value, ExecError> {
    let keys = a.split_off(1);
    let mut v = a.remove(0);
    for k in keys {
        v = match (&v, &k) {
            (Value::Labels(_) | Value::Map(_), Value::Str(key)) => v.field(key)?,
            (Value::List(l), Value::Int(i)) => usize::try_from(*i)
                .ok()
                .and_then(|i| l.get(i))
                .cloned()
                .ok_or(ExecError::IndexOutOfRange(*i))?,
            (Value::Str(s), Value::Int(i)) => usize::try_from(*i)
                .ok()
                .and_then(|i| s.as_bytes().get(i))
                .map(|b| Value::Int(i64::from(*b)))
                .ok_or(ExecError::IndexOutOfRange(*i))?,
            (Value::Nil, _) => return Err(ExecError::CannotIndex("nil")),
            (other, _) => return Err(ExecError::CannotIndex(other.type_name())),
        };
    }
    Ok(v)
}

fn slice(mut a: Vec<Value>) -> Result<Value, ExecError> {
    let bounds = a.split_off(1);
    let v = a.remove(0);
    let len = match &v {
        Value::Str(s) => s.len(),
        Value::List(l) => l.len(),
        other => return Err(ExecError::CannotIndex(other.type_name())),
    };
    let mut idx = Vec::new();
    for b in &bounds {
        match b {
            Value::Int(i) if *i >= 0 && (*i as usize) <= len => idx.push(*i as usize),
            Value::Int(i) => return Err(ExecError::IndexOutOfRange(*i)),
            other => return Err(ExecError::CannotIndex(other.type_name())),
        }
    }
    let (lo, hi) = match idx.as_slice() {
        [] => (0, len),
        [lo] => (*lo, len),
        [lo, hi] if lo <= hi => (*lo, *hi),
        [_, hi] => return Err(ExecError::IndexOutOfRange(*hi as i64)),
        _ => return Err(ExecError::CannotIndex("string with 3 indexes")),
    };
    match v {
        Value::Str(s) => s
            .get(lo..hi)
            .map(|s| Value::Str(s.to_string()))
            .ok_or(ExecError::IndexOutOfRange(lo as i64)),
        Value::List(l) => Ok(Value::List(Rc::new(l[lo..hi].to_vec()))),
        _ => Err(ExecError::CannotIndex("value")),
    }
}

/// Go's `fmt.Sprint`: operands joined, with a space between two operands when neither is
/// a string.
pub fn sprint(a: &[Value]) -> String {
    let mut out = String::new();
    for (i, v) in a.iter().enumerate() {
        if i > 0 && !matches!(v, Value::Str(_)) && !matches!(a[i - 1], Value::Str(_)) {
            out.push(' ');
        }
        out.push_str(&v.display());
    }
    out
}

/// Go's `fmt.Sprintln`: operands joined by spaces, and a newline.
fn sprintln(a: &[Value]) -> String {
    let parts: Vec<String> = a.iter().map(Value::display).collect();
    format!("{}\n", parts.join(" "))
}

fn bad_verb(verb: char, v: &Value) -> String {
    format!("%!{verb}({}={})", v.type_name(), v.display())
}

/// Go's `fmt.Sprintf` for the verbs templates use: `%v %s %d %f %F %e %g %q %x %X %t %%`,
/// with the flags `-+0 #`, width and precision; mismatches print as Go prints them
/// (`%!d(float64=3)`, `%!s(MISSING)`, `%!(EXTRA int=1)`).
pub fn sprintf(fmt: &str, args: &[Value]) -> String {
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
        if cs.get(i) == Some(&'%') {
            out.push('%');
            i += 1;
            continue;
        }
        let mut flags = String::new();
        while let Some(&c @ ('-' | '+' | '0' | ' ' | '#')) = cs.get(i) {
            flags.push(c);
            i += 1;
        }
        let mut width = 0usize;
        while let Some(d) = cs.get(i).and_then(|c| c.to_digit(10)) {
            width = width
                .saturating_mul(10)
                .saturating_add(d as usize)
                .min(1 << 16);
            i += 1;
        }
        let mut prec: Option<usize> = None;
        if cs.get(i) == Some(&'.') {
            i += 1;
            let mut p = 0usize;
            while let Some(d) = cs.get(i).and_then(|c| c.to_digit(10)) {
                p = p.saturating_mul(10).saturating_add(d as usize).min(1 << 10);
                i += 1;
            }
            prec = Some(p);
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
        let numeric = matches!(verb, 'd' | 'f' | 'F' | 'e' | 'g' | 'x' | 'X');
        let mut s = match (verb, arg) {
            ('v', _) => arg.display(),
            ('s', Value::Str(s)) => s.clone(),
            ('s', Value::Labels(_) | Value::Map(_) | Value::List(_) | Value::Struct(_)) => {
                arg.display()
            }
            ('d', Value::Int(n)) => n.to_string(),
            ('f' | 'F', Value::Float(f)) => format_f(*f, prec.unwrap_or(6)),
            ('e', Value::Float(f)) => format_e(*f, prec.unwrap_or(6)),
            ('g', Value::Float(f)) => match prec {
                Some(p) => format_g(*f, p),
                None => format_v(*f),
            },
            ('q', Value::Str(s)) => go_quote(s),
            ('x', Value::Int(n)) => format!("{n:x}"),
            ('X', Value::Int(n)) => format!("{n:X}"),
            ('x', Value::Str(s)) => s.bytes().map(|b| format!("{b:02x}")).collect(),
            ('X', Value::Str(s)) => s.bytes().map(|b| format!("{b:02X}")).collect(),
            ('t', Value::Bool(b)) => b.to_string(),
            _ => bad_verb(verb, arg),
        };
        if let Some(p) = prec {
            if verb == 's' || verb == 'v' && matches!(arg, Value::Str(_)) {
                s = s.chars().take(p).collect();
            }
        }
        if flags.contains('+') && numeric && !s.starts_with(['-', '%']) {
            s.insert(0, '+');
        } else if flags.contains(' ') && numeric && !s.starts_with(['-', '%']) {
            s.insert(0, ' ');
        }
        let len = s.chars().count();
        if len < width {
            let pad = width - len;
            if flags.contains('-') {
                s.push_str(&" ".repeat(pad));
            } else if flags.contains('0') && numeric && !s.starts_with('%') {
                let sign = usize::from(s.starts_with(['-', '+', ' ']));
                s.insert_str(sign, &"0".repeat(pad));
            } else {
                s.insert_str(0, &" ".repeat(pad));
            }
        }
        out.push_str(&s);
    }
    if ai < args.len() {
        let extra: Vec<String> = args[ai..]
            .iter()
            .map(|a| format!("{}={}", a.type_name(), a.display()))
            .collect();
        let _ = write!(out, "%!(EXTRA {})", extra.join(", "));
    }
    out
}

/// `s` with every character of `table` replaced by its escape, and the others `other`
/// escapes (control characters) written as it says.
fn escape(s: &str, table: &[(char, &str)], other: impl Fn(char) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match table.iter().find(|(k, _)| *k == c) {
            Some((_, r)) => out.push_str(r),
            None => match other(c) {
                Some(r) => out.push_str(&r),
                None => out.push(c),
            },
        }
    }
    out
}

/// Go's `strconv.Quote`.
fn go_quote(s: &str) -> String {
    let table = [
        ('"', "\\\""),
        ('\\', "\\\\"),
        ('\n', "\\n"),
        ('\t', "\\t"),
        ('\r', "\\r"),
    ];
    let control =
        |c: char| ((c as u32) < 0x20 || c as u32 == 0x7f).then(|| format!("\\x{:02x}", c as u32));
    format!("\"{}\"", escape(s, &table, control))
}

/// Go's `template.HTMLEscapeString`.
fn html_escape(s: &str) -> String {
    let table = [
        ('&', "&amp;"),
        ('<', "&lt;"),
        ('>', "&gt;"),
        ('"', "&#34;"),
        ('\'', "&#39;"),
        ('\0', "\u{FFFD}"),
    ];
    escape(s, &table, |_| None)
}

/// Go's `template.JSEscapeString`.
fn js_escape(s: &str) -> String {
    let table = [
        ('\\', "\\\\"),
        ('\'', "\\'"),
        ('"', "\\\""),
        ('<', "\\u003C"),
        ('>', "\\u003E"),
        ('&', "\\u0026"),
        ('=', "\\u003D"),
    ];
    escape(s, &table, |c| {
        ((c as u32) < 0x20).then(|| format!("\\u{:04X}", c as u32))
    })
}

/// What Go's `url.QueryEscape` leaves as is: letters, digits and `-_.~` (a space becomes `+`).
const QUERY_ESCAPE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Go's `url.QueryEscape`, as `urlquery`, `graphLink` and `tableLink` use it.
fn query_escape(s: &str) -> String {
    // `%20` can only come from a space: a literal `%` is itself escaped to `%25`.
    percent_encoding::utf8_percent_encode(s, QUERY_ESCAPE)
        .to_string()
        .replace("%20", "+")
}

/// The (decoded) path of a URL, as Go's `url.URL.Path`.
fn url_path(u: &str) -> String {
    let rest = u.split_once("://").map(|(_, r)| r).unwrap_or("");
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
    let path = path.split(['?', '#']).next().unwrap_or("");
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

/// Go's `net.SplitHostPort`: `host:port` or `[host]:port`; `None` when there is no port or
/// the host holds colons without brackets.
fn split_host_port(s: &str) -> Option<(&str, &str)> {
    let colon = s.rfind(':')?;
    let port = &s[colon + 1..];
    let host = if let Some(rest) = s.strip_prefix('[') {
        let end = rest.find(']')?;
        // `[host]` must end right before the last colon.
        if end + 2 != colon {
            return None;
        }
        &rest[..end]
    } else {
        let host = &s[..colon];
        if host.contains([':', '[', ']']) {
            return None;
        }
        host
    };
    if port.contains(['[', ']']) {
        return None;
    }
    Some((host, port))
}

fn strip_domain(s: &str) -> String {
    let (host, port) = split_host_port(s).unwrap_or((s, ""));
    if host.parse::<std::net::IpAddr>().is_ok() {
        return s.to_string();
    }
    let host = host.split('.').next().unwrap_or("");
    match (port.is_empty(), host.contains(':')) {
        (true, _) => host.to_string(),
        (false, true) => format!("[{host}]:{port}"),
        (false, false) => format!("{host}:{port}"),
    }
}

/// Go's `strings.Title` (what Debian's Prometheus 2.42 uses): the first letter after a
/// separator is upper-cased; letters, digits and `_` are not separators, ASCII
/// punctuation and white space are.
fn title(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut prev_sep = true;
    for c in s.chars() {
        if prev_sep {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev_sep = if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            !c.is_alphanumeric() && c.is_whitespace()
        };
    }
    out
}

fn parse_duration(s: &str) -> Result<f64, ExecError> {
    let invalid = || ExecError::InvalidDuration(s.to_string());
    if s == "0" {
        return Ok(0.0);
    }
    // Prometheus's notation only: units required, no sign, no fractions.
    if s.is_empty()
        || !s.chars().all(|c| c.is_ascii_alphanumeric())
        || !s.ends_with(char::is_alphabetic)
    {
        return Err(invalid());
    }
    crate::notation::parse_duration_ms(s)
        .map(|ms| ms as f64 / 1000.0)
        .ok_or_else(invalid)
}

/// Prometheus's `humanize`: metric prefixes, 4 significant digits.
pub fn humanize(mut v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
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

/// Prometheus's `humanize1024`: binary prefixes, 4 significant digits.
pub fn humanize1024(mut v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
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

/// Prometheus's `humanizeDuration`: `1d 1h 1m 1s` down to whole seconds, else `1.5s`,
/// `250ms`.
pub fn humanize_duration(mut v: f64) -> String {
    if !v.is_finite() {
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

/// Go's `time.Time.String()` of a Unix time in seconds, at Prometheus's millisecond
/// precision: `2015-06-23 13:19:44.128 +0000 UTC`.
fn go_time(v: f64) -> Result<String, ExecError> {
    let ns = v * 1e9;
    if !ns.is_finite() || ns >= i64::MAX as f64 || ns <= i64::MIN as f64 {
        return Err(ExecError::NotATime(format_v(v)));
    }
    // Truncated to nanoseconds, then to milliseconds (toward zero), as Prometheus does.
    let ms = (ns as i64) / 1_000_000;
    let t = chrono::DateTime::from_timestamp_millis(ms).ok_or(ExecError::NotATime(format_v(v)))?;
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let frac = ms.rem_euclid(1000);
    if frac != 0 {
        let f = format!("{frac:03}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    Ok(s)
}

/// The names of every function, for documentation and tests.
pub fn names() -> impl Iterator<Item = &'static str> {
    FUNCTIONS.iter().map(|f| f.name)
}
