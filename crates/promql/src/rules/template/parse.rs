//! Template text to a tree: the parser of Go's `text/template` grammar (pipelines,
//! commands, operands, `if`, `range`, `with`, `define`, `template`, `block`, `break`,
//! `continue`), which checks what Go checks at parse time: every function exists and every
//! variable is declared in scope.

use std::collections::HashMap;
use std::sync::Arc;

use super::error::ParseError;
use super::functions::{self, Func};
use super::lex::{is_ident, lex, number, tokens, Piece, Tok};

/// Where an action is, for execution errors.
#[derive(Debug, Clone)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// The action's text, without its delimiters.
    pub text: Arc<str>,
}

/// A node of the tree.
#[derive(Debug, Clone)]
pub enum Node {
    /// Text outside actions.
    Text(String),
    /// `{{ pipeline }}`: printed unless it declares variables.
    Action(Pipe),
    /// `if` / `else if` chains and `with` / `else with` chains: the first branch whose pipeline
    /// is true runs (for `with`, with dot set to its value).
    Branches {
        /// `true` for `with`.
        with: bool,
        /// Conditions and bodies.
        branches: Vec<(Pipe, Vec<Node>)>,
        /// The `else` body.
        otherwise: Vec<Node>,
    },
    /// `range`.
    Range {
        /// What is iterated; its declarations name the index/key and the element.
        pipe: Pipe,
        /// Run per element.
        body: Vec<Node>,
        /// Run when there is no element.
        otherwise: Vec<Node>,
    },
    /// `{{ template "name" pipeline }}`.
    Template {
        /// The template called.
        name: String,
        /// Its dot (nil without).
        pipe: Option<Pipe>,
        /// Where.
        pos: Pos,
    },
    /// `{{ break }}`.
    Break,
    /// `{{ continue }}`.
    Continue,
}

/// A pipeline: optional declarations, then commands joined by `|`.
#[derive(Debug, Clone)]
pub struct Pipe {
    /// Declared or assigned variables (`$x :=`, `$i, $v :=`, `$x =`).
    pub decl: Vec<String>,
    /// `=` rather than `:=`.
    pub assign: bool,
    /// The commands.
    pub cmds: Vec<Vec<Arg>>,
    /// Where.
    pub pos: Pos,
}

/// An operand of a command.
#[derive(Debug, Clone)]
pub enum Arg {
    /// `.Field.Field` (empty: `.` itself).
    Field(Vec<String>),
    /// `$name.Field`.
    Var(String, Vec<String>),
    /// A string constant.
    Str(String),
    /// An integer constant.
    Int(i64),
    /// A floating-point constant.
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// `nil`.
    Nil,
    /// A function of the table.
    Func(&'static Func),
    /// `( pipeline ).Field`.
    Sub(Box<Pipe>, Vec<String>),
}

/// A parsed template: its main body and the templates it defines.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    /// The main body.
    pub root: Vec<Node>,
    /// `{{ define }}` and `{{ block }}` bodies by name.
    pub defines: HashMap<String, Arc<Vec<Node>>>,
}

/// A parse error with its line.
pub type Located = (usize, ParseError);

/// The parser's state: the pieces, the variables in scope, the templates defined.
struct Parser {
    pieces: Vec<Piece>,
    at: usize,
    vars: Vec<String>,
    defines: HashMap<String, Arc<Vec<Node>>>,
    range_depth: usize,
}

/// What ended a list of nodes.
enum Stop {
    Eof,
    End,
    Else(usize, Vec<Tok>),
}

/// Parses `src`; `vars` are the variables declared before it (Prometheus's `$labels` ...).
pub fn parse(src: &str, vars: &[&str]) -> Result<Tree, Located> {
    let mut p = Parser {
        pieces: lex(src)?,
        at: 0,
        vars: vars.iter().map(|s| s.to_string()).collect(),
        defines: HashMap::new(),
        range_depth: 0,
    };
    let (root, end) = p.list()?;
    match end {
        Stop::Eof => Ok(Tree {
            root,
            defines: p.defines,
        }),
        Stop::End => Err((p.line(), ParseError::UnexpectedKeyword("end".into()))),
        Stop::Else(line, _) => Err((line, ParseError::UnexpectedKeyword("else".into()))),
    }
}

impl Parser {
    fn line(&self) -> usize {
        match self.pieces.get(self.at.saturating_sub(1)) {
            Some(Piece::Action(l, _)) => *l,
            _ => 1,
        }
    }

    /// Nodes up to `{{end}}`, `{{else ...}}` or the end of the text.
    fn list(&mut self) -> Result<(Vec<Node>, Stop), Located> {
        let mut nodes = Vec::new();
        while self.at < self.pieces.len() {
            let i = self.at;
            self.at += 1;
            let (line, text) = match &self.pieces[i] {
                Piece::Text(t) => {
                    nodes.push(Node::Text(t.clone()));
                    continue;
                }
                Piece::Action(line, text) => (*line, text.clone()),
            };
            let err = |e: ParseError| (line, e);
            let toks = tokens(&text).map_err(err)?;
            let pos = Pos {
                line,
                text: text.as_str().into(),
            };
            let kw = match toks.first() {
                Some(Tok::Word(w)) => w.as_str(),
                _ => "",
            };
            let rest = toks.get(1..).unwrap_or_default().to_vec();
            match kw {
                "end" => {
                    if !rest.is_empty() {
                        return Err(err(ParseError::Unexpected {
                            token: text.clone(),
                            context: "end",
                        }));
                    }
                    return Ok((nodes, Stop::End));
                }
                "else" => return Ok((nodes, Stop::Else(line, rest))),
                "if" | "with" => nodes.push(self.branches(kw == "with", rest, pos)?),
                "range" => nodes.push(self.range(rest, pos)?),
                "define" => self.define(rest, line)?,
                "block" => {
                    let (name, pipe) = self.template_call(rest, pos.clone(), "block")?;
                    let body = self.define_body(line)?;
                    self.add_define(&name, body, line)?;
                    nodes.push(Node::Template { name, pipe, pos });
                }
                "template" => {
                    let (name, pipe) = self.template_call(rest, pos.clone(), "template")?;
                    nodes.push(Node::Template { name, pipe, pos });
                }
                "break" | "continue" => {
                    if self.range_depth == 0 || !rest.is_empty() {
                        return Err(err(ParseError::UnexpectedKeyword(kw.to_string())));
                    }
                    nodes.push(if kw == "break" {
                        Node::Break
                    } else {
                        Node::Continue
                    });
                }
                _ => nodes.push(Node::Action(self.pipe(toks, pos, "command", 1)?)),
            }
        }
        Ok((nodes, Stop::Eof))
    }

    /// The body of a block up to its `{{end}}` (an `{{else}}` or the end of text is an error).
    fn body_to_end(&mut self, line: usize) -> Result<Vec<Node>, Located> {
        match self.list()? {
            (body, Stop::End) => Ok(body),
            (_, Stop::Eof) => Err((line, ParseError::UnexpectedEof)),
            (_, Stop::Else(l, _)) => Err((l, ParseError::UnexpectedKeyword("else".into()))),
        }
    }

    fn branches(&mut self, with: bool, toks: Vec<Tok>, pos: Pos) -> Result<Node, Located> {
        let mark = self.vars.len();
        let kw = if with { "with" } else { "if" };
        let mut branches = Vec::new();
        let mut cond = self.pipe(toks, pos.clone(), kw, 1)?;
        let otherwise = loop {
            let (body, end) = self.list()?;
            branches.push((cond, body));
            match end {
                Stop::End => break Vec::new(),
                Stop::Eof => return Err((pos.line, ParseError::UnexpectedEof)),
                Stop::Else(line, rest) => {
                    if rest.first() == Some(&Tok::Word(kw.into())) {
                        let p = Pos {
                            line,
                            text: pos.text.clone(),
                        };
                        cond = self.pipe(rest[1..].to_vec(), p, kw, 1)?;
                        continue;
                    }
                    if !rest.is_empty() {
                        return Err((
                            line,
                            ParseError::Unexpected {
                                token: format!("{rest:?}"),
                                context: "else",
                            },
                        ));
                    }
                    break self.body_to_end(line)?;
                }
            }
        };
        self.vars.truncate(mark);
        Ok(Node::Branches {
            with,
            branches,
            otherwise,
        })
    }

    fn range(&mut self, toks: Vec<Tok>, pos: Pos) -> Result<Node, Located> {
        let mark = self.vars.len();
        let line = pos.line;
        let pipe = self.pipe(toks, pos, "range", 2)?;
        self.range_depth += 1;
        let (body, end) = self.list()?;
        self.range_depth -= 1;
        let otherwise = match end {
            Stop::End => Vec::new(),
            Stop::Eof => return Err((line, ParseError::UnexpectedEof)),
            Stop::Else(l, rest) => {
                if !rest.is_empty() {
                    return Err((l, ParseError::UnexpectedKeyword("else".into())));
                }
                self.body_to_end(l)?
            }
        };
        self.vars.truncate(mark);
        Ok(Node::Range {
            pipe,
            body,
            otherwise,
        })
    }

    fn define(&mut self, toks: Vec<Tok>, line: usize) -> Result<(), Located> {
        let name = match toks.as_slice() {
            [Tok::Str(n)] => n.clone(),
            _ => return Err((line, ParseError::TemplateName("define clause"))),
        };
        let body = self.define_body(line)?;
        self.add_define(&name, body, line)
    }

    /// A `define`/`block` body: its own variable scope, where only `$` exists.
    fn define_body(&mut self, line: usize) -> Result<Vec<Node>, Located> {
        let saved = std::mem::replace(&mut self.vars, vec!["$".into()]);
        let depth = std::mem::take(&mut self.range_depth);
        let body = self.body_to_end(line);
        self.vars = saved;
        self.range_depth = depth;
        body
    }

    fn add_define(&mut self, name: &str, body: Vec<Node>, line: usize) -> Result<(), Located> {
        let empty = |b: &[Node]| {
            b.iter()
                .all(|n| matches!(n, Node::Text(t) if t.trim().is_empty()))
        };
        match self.defines.get(name) {
            Some(old) if !empty(old) && !empty(&body) => {
                Err((line, ParseError::Redefined(name.to_string())))
            }
            Some(old) if empty(&body) && !empty(old) => Ok(()),
            _ => {
                self.defines.insert(name.to_string(), Arc::new(body));
                Ok(())
            }
        }
    }

    fn template_call(
        &mut self,
        toks: Vec<Tok>,
        pos: Pos,
        context: &'static str,
    ) -> Result<(String, Option<Pipe>), Located> {
        let Some(Tok::Str(name)) = toks.first() else {
            return Err((pos.line, ParseError::TemplateName(context)));
        };
        let pipe = if toks.len() > 1 {
            Some(self.pipe(toks[1..].to_vec(), pos, context, 0)?)
        } else {
            None
        };
        Ok((name.clone(), pipe))
    }

    /// A pipeline; `max_decl` variables may be declared (0 where none may).
    fn pipe(
        &mut self,
        toks: Vec<Tok>,
        pos: Pos,
        context: &'static str,
        max_decl: usize,
    ) -> Result<Pipe, Located> {
        let line = pos.line;
        let err = |e| (line, e);
        let mut decl = Vec::new();
        let mut assign = false;
        let mut start = 0;
        // `$x :=`, `$x =`, `$i, $v :=`
        let mut j = 0;
        let mut names = Vec::new();
        while let Some(Tok::Word(w)) = toks.get(j) {
            if !w.starts_with('$') || w.contains('.') {
                break;
            }
            names.push(w.clone());
            match toks.get(j + 1) {
                Some(Tok::Comma) => j += 2,
                Some(Tok::Declare) | Some(Tok::Assign) => {
                    assign = toks.get(j + 1) == Some(&Tok::Assign);
                    if names.len() > max_decl.max(1) || (max_decl == 0) {
                        return Err(err(ParseError::TooManyDeclarations(context)));
                    }
                    decl = names.clone();
                    start = j + 2;
                    break;
                }
                _ => break,
            }
        }
        let cmds = self.commands(&toks[start..], line)?;
        if cmds.is_empty() {
            return Err(err(ParseError::MissingValue(context)));
        }
        for name in &decl {
            if assign {
                if !self.vars.contains(name) {
                    return Err(err(ParseError::UndefinedVariable(name.clone())));
                }
            } else {
                self.vars.push(name.clone());
            }
        }
        Ok(Pipe {
            decl,
            assign,
            cmds,
            pos,
        })
    }

    fn commands(&mut self, toks: &[Tok], line: usize) -> Result<Vec<Vec<Arg>>, Located> {
        let err = |e| (line, e);
        let mut cmds = Vec::new();
        let mut cur: Vec<Arg> = Vec::new();
        let mut i = 0;
        while i < toks.len() {
            match &toks[i] {
                Tok::Pipe => {
                    if cur.is_empty() {
                        return Err(err(ParseError::MissingValue("command")));
                    }
                    cmds.push(std::mem::take(&mut cur));
                    i += 1;
                }
                Tok::LParen => {
                    let mut depth = 1;
                    let mut j = i + 1;
                    while j < toks.len() {
                        match toks[j] {
                            Tok::LParen => depth += 1,
                            Tok::RParen(_) => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    let Some(Tok::RParen(fields)) = toks.get(j) else {
                        return Err(err(ParseError::UnclosedParen));
                    };
                    let inner = &toks[i + 1..j];
                    if inner
                        .iter()
                        .any(|t| matches!(t, Tok::Declare | Tok::Assign))
                    {
                        return Err(err(ParseError::DeclarationInParens));
                    }
                    let sub = self.commands(inner, line)?;
                    if sub.is_empty() {
                        return Err(err(ParseError::MissingValue("parenthesized pipeline")));
                    }
                    let pos = Pos {
                        line,
                        text: "".into(),
                    };
                    cur.push(Arg::Sub(
                        Box::new(Pipe {
                            decl: Vec::new(),
                            assign: false,
                            cmds: sub,
                            pos,
                        }),
                        fields.clone(),
                    ));
                    i = j + 1;
                }
                Tok::RParen(_) => {
                    return Err(err(ParseError::Unexpected {
                        token: ")".into(),
                        context: "operand",
                    }))
                }
                Tok::Str(s) => {
                    cur.push(Arg::Str(s.clone()));
                    i += 1;
                }
                Tok::Char(c) => {
                    cur.push(Arg::Int(*c));
                    i += 1;
                }
                Tok::Word(w) => {
                    cur.push(self.operand(w).map_err(err)?);
                    i += 1;
                }
                other @ (Tok::Declare | Tok::Assign | Tok::Comma) => {
                    return Err(err(ParseError::Unexpected {
                        token: match other {
                            Tok::Declare => ":=",
                            Tok::Assign => "=",
                            _ => ",",
                        }
                        .into(),
                        context: "command",
                    }))
                }
            }
        }
        if !cur.is_empty() {
            cmds.push(cur);
        } else if !cmds.is_empty() {
            return Err(err(ParseError::MissingValue("command")));
        }
        Ok(cmds)
    }

    fn operand(&self, w: &str) -> Result<Arg, ParseError> {
        if w == "." {
            return Ok(Arg::Field(Vec::new()));
        }
        if let Some(f) = w.strip_prefix('.') {
            if f.starts_with(|c: char| c.is_ascii_digit()) {
                return number(w);
            }
            return fields(f, w).map(Arg::Field);
        }
        if let Some(v) = w.strip_prefix('$') {
            let (name, rest) = match v.split_once('.') {
                Some((n, r)) => (n, Some(r)),
                None => (v, None),
            };
            let name = format!("${name}");
            if !self.vars.contains(&name) {
                return Err(ParseError::UndefinedVariable(name));
            }
            let f = match rest {
                Some(r) => fields(r, w)?,
                None => Vec::new(),
            };
            return Ok(Arg::Var(name, f));
        }
        match w {
            "true" => return Ok(Arg::Bool(true)),
            "false" => return Ok(Arg::Bool(false)),
            "nil" => return Ok(Arg::Nil),
            _ => {}
        }
        if w.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.') {
            return number(w);
        }
        if w.chars().all(is_ident) {
            return functions::lookup(w)
                .map(Arg::Func)
                .ok_or_else(|| ParseError::FunctionNotDefined(w.to_string()));
        }
        Err(ParseError::Unexpected {
            token: w.to_string(),
            context: "operand",
        })
    }
}

fn fields(chain: &str, whole: &str) -> Result<Vec<String>, ParseError> {
    let f: Vec<String> = chain.split('.').map(String::from).collect();
    if f.iter().any(|s| s.is_empty() || !s.chars().all(is_ident)) {
        return Err(ParseError::Unexpected {
            token: whole.to_string(),
            context: "operand",
        });
    }
    Ok(f)
}
