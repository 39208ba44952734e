//! Executing a parsed template: Go's `text/template` semantics for dot, variables (declared
//! per block, assignable from inner blocks), pipelines (the previous command's value is the
//! last argument of the next), `if`/`with`/`range` with `else`, `break`/`continue`, and
//! `template` calls (own variable scope, `$` = the dot passed). Bounded: template calls nest
//! at most [`MAX_DEPTH`] deep, the output is at most [`MAX_OUTPUT`] bytes and execution at
//! most [`MAX_STEPS`] steps, so no template can hang or exhaust the evaluator.

use std::sync::Arc;

use super::error::ExecError;
use super::functions::Ctx;
use super::parse::{Arg, Node, Pipe, Pos, Tree};
use super::value::Value;

/// How deep `{{ template }}` calls may nest.
pub const MAX_DEPTH: usize = 100;
/// The longest output, in bytes.
pub const MAX_OUTPUT: usize = 1 << 20;
/// The most nodes and range iterations one execution may run.
pub const MAX_STEPS: usize = 1_000_000;

/// An execution error and the action it happened in.
pub struct Failure {
    /// Where.
    pub pos: Pos,
    /// What.
    pub kind: ExecError,
}

type Result<T> = std::result::Result<T, Failure>;

/// What a list of nodes ended with.
enum Flow {
    Next,
    Break,
    Continue,
}

/// One execution.
pub struct Exec<'a> {
    tree: &'a Tree,
    ctx: &'a Ctx<'a>,
    vars: Vec<(String, Value)>,
    depth: usize,
    steps: usize,
    /// The output so far.
    pub out: String,
}

impl<'a> Exec<'a> {
    /// An execution of `tree` with the variables `vars` declared.
    pub fn new(tree: &'a Tree, ctx: &'a Ctx<'a>, vars: Vec<(String, Value)>) -> Self {
        Self {
            tree,
            ctx,
            vars,
            depth: 0,
            steps: 0,
            out: String::new(),
        }
    }

    /// Runs the main body with `dot`.
    pub fn run(&mut self, dot: &Value) -> Result<()> {
        let root = &self.tree.root;
        self.list(root, dot).map(|_| ())
    }

    fn step(&mut self, pos: Option<&Pos>) -> Result<()> {
        self.steps += 1;
        let kind = if self.steps > MAX_STEPS {
            ExecError::TooManySteps(MAX_STEPS)
        } else if self.out.len() > MAX_OUTPUT {
            ExecError::TooLong(MAX_OUTPUT)
        } else {
            return Ok(());
        };
        Err(Failure {
            pos: pos.cloned().unwrap_or(Pos {
                line: 0,
                text: "".into(),
            }),
            kind,
        })
    }

    fn list(&mut self, nodes: &[Node], dot: &Value) -> Result<Flow> {
        for n in nodes {
            self.step(None)?;
            match n {
                Node::Text(t) => self.out.push_str(t),
                Node::Action(p) => {
                    let v = self.pipe(p, dot)?;
                    if p.decl.is_empty() {
                        self.out.push_str(&v.display());
                    }
                }
                Node::Branches {
                    with,
                    branches,
                    otherwise,
                } => {
                    let mark = self.vars.len();
                    let mut flow = None;
                    for (p, body) in branches {
                        let v = self.pipe(p, dot)?;
                        if v.truthy() {
                            let d = if *with { v } else { dot.clone() };
                            flow = Some(self.list(body, &d)?);
                            break;
                        }
                    }
                    let flow = match flow {
                        Some(f) => f,
                        None => self.list(otherwise, dot)?,
                    };
                    self.vars.truncate(mark);
                    if !matches!(flow, Flow::Next) {
                        return Ok(flow);
                    }
                }
                Node::Range {
                    pipe,
                    body,
                    otherwise,
                } => {
                    let flow = self.range(pipe, body, otherwise, dot)?;
                    if !matches!(flow, Flow::Next) {
                        return Ok(flow);
                    }
                }
                Node::Template { name, pipe, pos } => {
                    let d = match pipe {
                        Some(p) => self.pipe(p, dot)?,
                        None => Value::Nil,
                    };
                    self.call_template(name, d, pos)?;
                }
                Node::Break => return Ok(Flow::Break),
                Node::Continue => return Ok(Flow::Continue),
            }
        }
        Ok(Flow::Next)
    }

    fn range(
        &mut self,
        pipe: &Pipe,
        body: &[Node],
        otherwise: &[Node],
        dot: &Value,
    ) -> Result<Flow> {
        let mark = self.vars.len();
        // The declarations name the index and element, not the whole value.
        let bare = Pipe {
            decl: Vec::new(),
            assign: false,
            cmds: pipe.cmds.clone(),
            pos: pipe.pos.clone(),
        };
        let v = self.pipe(&bare, dot)?;
        // Lazily: `range 1000000000` stops at the step limit without building a list.
        let (len, items): (i64, Box<dyn Iterator<Item = (Value, Value)>>) = match &v {
            Value::List(l) => (
                l.len() as i64,
                Box::new(
                    l.iter()
                        .enumerate()
                        .map(|(i, v)| (Value::Int(i as i64), v.clone()))
                        .collect::<Vec<_>>()
                        .into_iter(),
                ),
            ),
            Value::Labels(m) => (
                m.len() as i64,
                Box::new(
                    m.iter()
                        .map(|(k, v)| (Value::Str(k.clone()), Value::Str(v.clone())))
                        .collect::<Vec<_>>()
                        .into_iter(),
                ),
            ),
            Value::Map(m) => (
                m.len() as i64,
                Box::new(
                    m.iter()
                        .map(|(k, v)| (Value::Str(k.clone()), v.clone()))
                        .collect::<Vec<_>>()
                        .into_iter(),
                ),
            ),
            Value::Int(n) => (
                *n,
                Box::new((0..*n).map(|i| (Value::Int(i), Value::Int(i)))),
            ),
            Value::Nil => (0, Box::new(std::iter::empty())),
            other => {
                return Err(Failure {
                    pos: pipe.pos.clone(),
                    kind: ExecError::CannotIterate(other.display()),
                })
            }
        };
        if len <= 0 {
            let flow = self.list(otherwise, dot)?;
            self.vars.truncate(mark);
            return Ok(flow);
        }
        for (key, elem) in items {
            self.step(Some(&pipe.pos))?;
            let inner = self.vars.len();
            match pipe.decl.as_slice() {
                [v] => self.declare(v, elem.clone(), pipe.assign),
                [k, v] => {
                    self.declare(k, key, pipe.assign);
                    self.declare(v, elem.clone(), pipe.assign);
                }
                _ => {}
            }
            let flow = self.list(body, &elem)?;
            self.vars.truncate(inner.max(mark));
            if matches!(flow, Flow::Break) {
                break;
            }
        }
        self.vars.truncate(mark);
        Ok(Flow::Next)
    }

    fn call_template(&mut self, name: &str, dot: Value, pos: &Pos) -> Result<()> {
        let fail = |kind| Failure {
            pos: pos.clone(),
            kind,
        };
        let body = self
            .tree
            .defines
            .get(name)
            .cloned()
            .ok_or_else(|| fail(ExecError::NoTemplate(name.to_string())))?;
        if self.depth >= MAX_DEPTH {
            return Err(fail(ExecError::TooDeep(MAX_DEPTH)));
        }
        let saved = std::mem::replace(&mut self.vars, vec![("$".to_string(), dot.clone())]);
        self.depth += 1;
        let res = self.list(&Arc::clone(&body), &dot);
        self.depth -= 1;
        self.vars = saved;
        res.map(|_| ())
    }

    fn declare(&mut self, name: &str, v: Value, assign: bool) {
        if assign {
            if let Some(slot) = self.vars.iter_mut().rev().find(|(n, _)| n == name) {
                slot.1 = v;
                return;
            }
        }
        self.vars.push((name.to_string(), v));
    }

    fn pipe(&mut self, p: &Pipe, dot: &Value) -> Result<Value> {
        let mut prev: Option<Value> = None;
        for cmd in &p.cmds {
            prev = Some(self.command(cmd, dot, prev, &p.pos)?);
        }
        let v = prev.unwrap_or(Value::Nil);
        for name in &p.decl {
            self.declare(name, v.clone(), p.assign);
        }
        Ok(v)
    }

    fn command(
        &mut self,
        cmd: &[Arg],
        dot: &Value,
        prev: Option<Value>,
        pos: &Pos,
    ) -> Result<Value> {
        let fail = |kind| Failure {
            pos: pos.clone(),
            kind,
        };
        if let Some(Arg::Func(f)) = cmd.first() {
            let mut args = Vec::with_capacity(cmd.len());
            for a in &cmd[1..] {
                args.push(self.arg(a, dot, pos)?);
            }
            args.extend(prev);
            return f.invoke(self.ctx, args).map_err(fail);
        }
        let Some(first) = cmd.first() else {
            return Ok(Value::Nil);
        };
        if cmd.len() > 1 || prev.is_some() {
            return Err(fail(ExecError::NotAFunction(describe(first))));
        }
        self.arg(first, dot, pos)
    }

    fn arg(&mut self, a: &Arg, dot: &Value, pos: &Pos) -> Result<Value> {
        let fail = |kind| Failure {
            pos: pos.clone(),
            kind,
        };
        Ok(match a {
            Arg::Field(f) => fields(dot.clone(), f).map_err(fail)?,
            Arg::Var(name, f) => {
                let v = self
                    .vars
                    .iter()
                    .rev()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
                    .unwrap_or(Value::Nil);
                fields(v, f).map_err(fail)?
            }
            Arg::Str(s) => Value::Str(s.clone()),
            Arg::Int(i) => Value::Int(*i),
            Arg::Float(f) => Value::Float(*f),
            Arg::Bool(b) => Value::Bool(*b),
            Arg::Nil => Value::Nil,
            Arg::Func(f) => f.invoke(self.ctx, Vec::new()).map_err(fail)?,
            Arg::Sub(p, f) => {
                let v = self.pipe(p, dot)?;
                fields(v, f).map_err(fail)?
            }
        })
    }
}

fn fields(mut v: Value, chain: &[String]) -> std::result::Result<Value, ExecError> {
    for f in chain {
        v = v.field(f)?;
    }
    Ok(v)
}

fn describe(a: &Arg) -> String {
    match a {
        Arg::Field(f) => format!(".{}", f.join(".")),
        Arg::Var(n, f) if f.is_empty() => n.clone(),
        Arg::Var(n, f) => format!("{n}.{}", f.join(".")),
        Arg::Str(s) => format!("{s:?}"),
        Arg::Int(i) => i.to_string(),
        Arg::Float(f) => f.to_string(),
        Arg::Bool(b) => b.to_string(),
        Arg::Nil => "nil".into(),
        Arg::Func(f) => f.name.to_string(),
        Arg::Sub(..) => "(...)".into(),
    }
}
