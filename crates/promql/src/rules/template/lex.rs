//! The lexer: template text to text pieces and actions (with their lines), applying
//! `{{- ` / ` -}}` trimming and dropping comments; actions to tokens; Go's string, character
//! and number literals.

use super::error::ParseError;
use super::parse::{Arg, Located};

/// One piece of the source: text, or an action's text with its line.
pub(super) enum Piece {
    Text(String),
    Action(usize, String),
}

/// Splits `src` into text and actions, applying `{{- ` / ` -}}` trimming and dropping
/// comments.
pub(super) fn lex(src: &str) -> Result<Vec<Piece>, Located> {
    let mut out = Vec::new();
    let mut rest = src;
    let mut line = 1;
    let mut trim_next = false;
    while let Some(i) = rest.find("{{") {
        let mut text = &rest[..i];
        if trim_next {
            text = text.trim_start();
        }
        let mut after = &rest[i + 2..];
        let trim_before = after.starts_with('-') && after[1..].starts_with([' ', '\t', '\r', '\n']);
        if trim_before {
            text = text.trim_end();
            after = &after[1..];
        }
        line += rest[..i + 2].matches('\n').count();
        if !text.is_empty() {
            out.push(Piece::Text(text.to_string()));
        }
        let start_line = line;
        let inner = after.trim_start();
        if inner.starts_with("/*") {
            let Some(end) = inner.find("*/") else {
                return Err((start_line, ParseError::UnclosedComment));
            };
            let tail = inner[end + 2..].trim_start();
            let (close, trim) = if let Some(t) = tail.strip_prefix("-}}") {
                (t, true)
            } else if let Some(t) = tail.strip_prefix("}}") {
                (t, false)
            } else {
                return Err((start_line, ParseError::UnclosedComment));
            };
            line += after[..after.len() - close.len()].matches('\n').count();
            trim_next = trim;
            rest = close;
            continue;
        }
        let end = find_close(after).ok_or((start_line, ParseError::UnclosedAction))?;
        let mut action = &after[..end];
        let next = &after[end + 2..];
        trim_next = false;
        if action.ends_with('-') && action[..action.len() - 1].ends_with([' ', '\t', '\r', '\n']) {
            action = &action[..action.len() - 1];
            trim_next = true;
        }
        line += after[..end + 2].matches('\n').count();
        out.push(Piece::Action(start_line, action.trim().to_string()));
        rest = next;
    }
    let text = if trim_next { rest.trim_start() } else { rest };
    if !text.is_empty() {
        out.push(Piece::Text(text.to_string()));
    }
    Ok(out)
}

/// The offset of the `}}` closing an action, skipping string and character literals.
fn find_close(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut j = 0;
    while j < b.len() {
        match b[j] {
            q @ (b'"' | b'\'') => {
                j += 1;
                while j < b.len() && b[j] != q && b[j] != b'\n' {
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
            b'}' if b.get(j + 1) == Some(&b'}') => return Some(j),
            _ => {}
        }
        j += 1;
    }
    None
}

/// A token of an action.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Word(String),
    Str(String),
    Char(i64),
    LParen,
    /// `)`, with the field chain written right after it.
    RParen(Vec<String>),
    Pipe,
    Declare,
    Assign,
    Comma,
}

pub(super) fn tokens(s: &str) -> Result<Vec<Tok>, ParseError> {
    let cs: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < cs.len() {
        let c = cs[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        match c {
            '"' => {
                let mut raw = String::from('"');
                i += 1;
                loop {
                    match cs.get(i) {
                        None | Some('\n') => return Err(ParseError::UnterminatedString),
                        Some('"') => break,
                        Some('\\') => {
                            raw.push('\\');
                            if let Some(&n) = cs.get(i + 1) {
                                raw.push(n);
                            }
                            i += 2;
                        }
                        Some(&o) => {
                            raw.push(o);
                            i += 1;
                        }
                    }
                }
                raw.push('"');
                i += 1;
                out.push(Tok::Str(unquote(&raw)?));
            }
            '`' => {
                let start = i + 1;
                let end = cs[start..]
                    .iter()
                    .position(|&c| c == '`')
                    .ok_or(ParseError::UnterminatedString)?;
                out.push(Tok::Str(cs[start..start + end].iter().collect()));
                i = start + end + 1;
            }
            '\'' => {
                let end = cs[i + 1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .ok_or(ParseError::UnterminatedString)?;
                let body: String = cs[i + 1..i + 1 + end].iter().collect();
                let ch = unquote(&format!("\"{body}\""))?;
                let mut it = ch.chars();
                match (it.next(), it.next()) {
                    (Some(c), None) => out.push(Tok::Char(c as i64)),
                    _ => return Err(ParseError::BadNumber(format!("'{body}'"))),
                }
                i += end + 2;
            }
            '(' => {
                out.push(Tok::LParen);
                i += 1;
            }
            ')' => {
                i += 1;
                let mut fields = Vec::new();
                while cs.get(i) == Some(&'.') && cs.get(i + 1).is_some_and(|c| is_ident(*c)) {
                    i += 1;
                    let start = i;
                    while cs.get(i).is_some_and(|c| is_ident(*c)) {
                        i += 1;
                    }
                    fields.push(cs[start..i].iter().collect());
                }
                out.push(Tok::RParen(fields));
            }
            '|' => {
                out.push(Tok::Pipe);
                i += 1;
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1;
            }
            ':' if cs.get(i + 1) == Some(&'=') => {
                out.push(Tok::Declare);
                i += 2;
            }
            '=' => {
                out.push(Tok::Assign);
                i += 1;
            }
            _ => {
                let start = i;
                let ends_word = |i: usize| {
                    cs[i].is_whitespace()
                        || matches!(cs[i], '(' | ')' | '|' | '"' | '`' | ',' | '=')
                        || (cs[i] == ':' && cs.get(i + 1) == Some(&'='))
                };
                while i < cs.len() && !ends_word(i) {
                    i += 1;
                }
                out.push(Tok::Word(cs[start..i].iter().collect()));
            }
        }
    }
    Ok(out)
}

pub(super) fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Go's interpreted string literal.
fn unquote(w: &str) -> Result<String, ParseError> {
    let bad = || ParseError::BadEscape(w.to_string());
    let inner = &w[1..w.len() - 1];
    let mut out = String::new();
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let esc = it.next().ok_or_else(bad)?;
        match esc {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            '\\' => out.push('\\'),
            '"' => out.push('"'),
            '\'' => out.push('\''),
            'x' | 'u' | 'U' => {
                let n = match esc {
                    'x' => 2,
                    'u' => 4,
                    _ => 8,
                };
                let hex: String = it.by_ref().take(n).collect();
                let v = u32::from_str_radix(&hex, 16).map_err(|_| bad())?;
                if hex.len() != n {
                    return Err(bad());
                }
                out.push(char::from_u32(v).ok_or_else(bad)?);
            }
            d @ '0'..='7' => {
                let rest: String = it.by_ref().take(2).collect();
                let v = u32::from_str_radix(&format!("{d}{rest}"), 8).map_err(|_| bad())?;
                out.push(char::from_u32(v).ok_or_else(bad)?);
            }
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// Go's number constants: integers (decimal, `0x`, `0o`, `0b`, `_` separators) and floats.
pub(super) fn number(w: &str) -> Result<Arg, ParseError> {
    let bad = || ParseError::BadNumber(w.to_string());
    let (neg, body) = match w.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, w.strip_prefix('+').unwrap_or(w)),
    };
    let clean = body.replace('_', "");
    let lower = clean.to_ascii_lowercase();
    let radix = [("0x", 16), ("0o", 8), ("0b", 2)]
        .into_iter()
        .find(|(p, _)| lower.starts_with(p));
    if let Some((p, r)) = radix {
        let v = i64::from_str_radix(&lower[p.len()..], r).map_err(|_| bad())?;
        return Ok(Arg::Int(if neg { -v } else { v }));
    }
    if !lower.contains(['.', 'e']) {
        if let Ok(v) = lower.parse::<i64>() {
            return Ok(Arg::Int(if neg { -v } else { v }));
        }
    }
    if !lower.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        return Err(bad());
    }
    let v: f64 = lower.parse().map_err(|_| bad())?;
    Ok(Arg::Float(if neg { -v } else { v }))
}
