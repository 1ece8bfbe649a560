//! JEXL filter expressions: parsed once, evaluated many times.
//!
//! The grammar and tree are `jexl-parser`'s and the meaning is `jexl-eval`'s (the crates
//! Mozilla uses), operator for operator; the parser is ours (`expression/parse.rs` says
//! why). We evaluate the parsed tree ourselves because `jexl-eval` parses the text again on
//! every call, which costs about 12 µs — most of the budget for deciding 1,000 flights in
//! under a millisecond. A differential test (`tests/it/expression.rs`) holds this
//! evaluator to `jexl-eval`'s results.
//!
//! One deliberate difference: a whole number stays a whole number (`1`, not `1.0`), as in
//! JavaScript. Normandy hashes `JSON.stringify` of transform inputs, so
//! `[person.personid, 1]|stableSample(0.5)` must hash `[...,1]` to bucket as Normandy does.

use crate::memo::Memo;
use crate::person::Person;
use crate::sampling;
use crate::time::{parse_dateish, Timestamp};
use crate::version;
use jexl_parser::ast::{Expression, OpCode};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::sync::Arc;

pub mod parse;
pub use parse::{MAX_DEPTH, MAX_LENGTH, MAX_NESTING};

/// Transforms that expressions may use, with Normandy's meaning.
pub const TRANSFORMS: &[&str] = &[
    "stableSample",
    "bucketSample",
    "versionCompare",
    "date",
    "regExpMatch",
    "keys",
    "length",
];

/// Names an expression can read.
pub const NAMES: &[&str] = &["person", "flight", "now"];

const EPSILON: f64 = 0.000001;

/// What an expression sees as `flight`.
pub struct FlightContext<'a> {
    pub studyname: &'a str,
    pub version: Option<u64>,
}

/// Everything an expression can read.
pub struct Context<'a> {
    pub person: &'a Person,
    pub flight: &'a FlightContext<'a>,
    pub now: Timestamp,
}

/// A parsed expression.
#[derive(Clone)]
pub struct Compiled(Arc<Expression>);

static CACHE: Memo<Compiled> = Memo::new();

/// `regExpMatch` patterns, compiled once per pattern and flags (a fleet evaluates the same
/// filter for every person).
static REGEXES: Memo<regex::Regex> = Memo::new();

/// Parses `text` (from the cache when it was parsed before), within the bounds of [`parse`]:
/// at most [`MAX_LENGTH`] bytes, brackets [`MAX_NESTING`] deep and a tree [`MAX_DEPTH`]
/// deep, so that checking, evaluating and dropping it cannot overflow the stack.
pub fn compile(text: &str) -> Result<Compiled, String> {
    CACHE.get_or(text, || Ok(Compiled(Arc::new(*parse::parse(text)?))))
}

/// Checks an expression without running it: syntax, known transforms, known names.
pub fn check(text: &str) -> Vec<String> {
    match compile(text) {
        Err(e) => vec![e],
        Ok(c) => {
            let mut problems = Vec::new();
            walk(&c.0, &mut problems);
            problems
        }
    }
}

/// Evaluates an expression.
pub fn eval(text: &str, ctx: &Context) -> Result<Value, String> {
    let c = compile(text)?;
    c.eval(ctx)
}

impl Compiled {
    pub fn eval(&self, ctx: &Context) -> Result<Value, String> {
        Eval { ctx }.eval(&self.0).map(Cow::into_owned)
    }
}

fn num(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        json!(f as i64)
    } else {
        // Non-finite numbers have no JSON form: they become null, as in jexl-eval.
        json!(f)
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Null => false,
        Value::Number(n) => n.as_f64().unwrap_or(0.0) != 0.0,
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

struct Eval<'c> {
    ctx: &'c Context<'c>,
}

type R<'v> = Result<Cow<'v, Value>, String>;

// Evaluation recurses once per level of the tree (at most `MAX_DEPTH`), so each level's stack
// frame must stay small even unoptimized: `eval` only dispatches, and each kind of node has
// its own function, so a level costs the frames of `eval` and of one small function rather
// than one frame big enough for every kind's temporaries.
impl<'c> Eval<'c> {
    fn eval(&self, e: &Expression) -> R<'c> {
        match e {
            Expression::Number(_)
            | Expression::Boolean(_)
            | Expression::String(_)
            | Expression::Null
            | Expression::Filter { .. } => leaf(e),
            Expression::Array(xs) => self.array(xs),
            Expression::Object(items) => self.object(items),
            Expression::Identifier(name) => self.identifier(name),
            Expression::DotOperation { subject, ident } => self.dot(subject, ident),
            Expression::IndexOperation { subject, index } => self.index(subject, index),
            Expression::BinaryOperation {
                operation,
                left,
                right,
            } => self.binary(*operation, left, right),
            Expression::Transform {
                name,
                subject,
                args,
            } => self.transform(name, subject, args.as_deref()),
            Expression::Conditional {
                left,
                truthy,
                falsy,
            } => self.conditional(left, truthy, falsy),
        }
    }

    #[inline(never)]
    fn array(&self, xs: &[Box<Expression>]) -> R<'c> {
        let mut out = Vec::with_capacity(xs.len());
        for x in xs {
            out.push(self.eval(x)?.into_owned());
        }
        Ok(Cow::Owned(Value::Array(out)))
    }

    #[inline(never)]
    fn object(&self, items: &[(String, Box<Expression>)]) -> R<'c> {
        let mut map = Map::new();
        for (k, x) in items {
            if map.contains_key(k) {
                return Err(format!("duplicate object key: {k}"));
            }
            let v = self.eval(x)?.into_owned();
            map.insert(k.clone(), v);
        }
        Ok(Cow::Owned(Value::Object(map)))
    }

    #[inline(never)]
    fn identifier(&self, name: &str) -> R<'c> {
        Ok(Cow::Owned(match name {
            "person" => Value::Object(self.ctx.person.as_map().clone()),
            "flight" => {
                json!({"studyname": self.ctx.flight.studyname, "version": self.ctx.flight.version})
            }
            "now" => json!(self.ctx.now.0),
            other => return Err(format!("identifier '{other}' is undefined")),
        }))
    }

    #[inline(never)]
    fn dot(&self, subject: &Expression, ident: &str) -> R<'c> {
        // `person.KEY` reads straight from the person, without copying it.
        if let Expression::Identifier(n) = subject {
            match (n.as_str(), ident) {
                ("person", _) => {
                    return Ok(match self.ctx.person.as_map().get(ident) {
                        Some(v) => Cow::Borrowed(v),
                        None => Cow::Owned(Value::Null),
                    })
                }
                ("flight", "studyname" | "version") => {
                    return self
                        .identifier("flight")
                        .map(|f| Cow::Owned(f[ident].clone()))
                }
                _ => {}
            }
        }
        let s = self.eval(subject)?;
        Ok(Cow::Owned(s.get(ident).cloned().unwrap_or(Value::Null)))
    }

    #[inline(never)]
    fn index(&self, subject: &Expression, index: &Expression) -> R<'c> {
        let s = self.eval(subject)?;
        if let Expression::Filter { ident, op, right } = index {
            let right = self.eval(right)?;
            return filter_list(&s, ident, *op, &right);
        }
        let i = self.eval(index)?;
        lookup(&s, &i)
    }

    #[inline(never)]
    fn binary(&self, op: OpCode, left: &Expression, right: &Expression) -> R<'c> {
        let l = self.eval(left);
        match op {
            OpCode::Or if l.as_ref().is_ok_and(|v| truthy(v)) => l,
            OpCode::Or => self.eval(right),
            OpCode::And if l.as_ref().is_ok_and(|v| truthy(v)) => self.eval(right),
            OpCode::And => l,
            op => {
                let l = l?;
                let r = self.eval(right)?;
                apply(op, l.as_ref(), r.as_ref()).map(Cow::Owned)
            }
        }
    }

    #[inline(never)]
    fn transform(
        &self,
        name: &str,
        subject: &Expression,
        args: Option<&[Box<Expression>]>,
    ) -> R<'c> {
        let mut a = Vec::with_capacity(1 + args.map_or(0, <[_]>::len));
        a.push(self.eval(subject)?.into_owned());
        for x in args.unwrap_or_default() {
            a.push(self.eval(x)?.into_owned());
        }
        transform(name, &a).map(Cow::Owned)
    }

    #[inline(never)]
    fn conditional(&self, left: &Expression, truthy_: &Expression, falsy: &Expression) -> R<'c> {
        if self.eval(left).as_ref().is_ok_and(|v| truthy(v)) {
            self.eval(truthy_)
        } else {
            self.eval(falsy)
        }
    }
}

/// A node without children.
#[inline(never)]
fn leaf<'c>(e: &Expression) -> R<'c> {
    Ok(Cow::Owned(match e {
        Expression::Number(n) => num(*n),
        Expression::Boolean(b) => Value::Bool(*b),
        Expression::String(s) => Value::String(s.clone()),
        Expression::Null => Value::Null,
        _ => return Err("invalid filter".into()),
    }))
}

/// `list[.ident OP right]`: the elements whose `ident` compares true with `right`.
#[inline(never)]
fn filter_list<'c>(list: &Value, ident: &str, op: OpCode, right: &Value) -> R<'c> {
    let arr = list
        .as_array()
        .ok_or("invalid filter: the subject is not a list")?;
    let kept = arr
        .iter()
        .filter(|el| {
            let left = el.get(ident).unwrap_or(&Value::Null);
            apply(op, left, right).map(|v| truthy(&v)).unwrap_or(false)
        })
        .cloned()
        .collect();
    Ok(Cow::Owned(Value::Array(kept)))
}

/// `subject[index]`.
#[inline(never)]
fn lookup<'c>(subject: &Value, index: &Value) -> R<'c> {
    Ok(Cow::Owned(match index {
        Value::String(k) => subject.get(k).cloned().unwrap_or(Value::Null),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0).floor();
            if f < 0.0 {
                Value::Null
            } else {
                subject.get(f as usize).cloned().unwrap_or(Value::Null)
            }
        }
        _ => return Err("invalid index type".into()),
    }))
}

fn apply(op: OpCode, left: &Value, right: &Value) -> Result<Value, String> {
    let bad = || format!("cannot apply {op} to {left} and {right}");
    if op == OpCode::NotEqual {
        return apply(OpCode::Equal, left, right).map(|v| Value::Bool(!truthy(&v)));
    }
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            Ok(match op {
                OpCode::Add => num(a + b),
                OpCode::Subtract => num(a - b),
                OpCode::Multiply => num(a * b),
                OpCode::Divide => num(a / b),
                OpCode::FloorDivide => num((a / b).floor()),
                OpCode::Modulus => num(a % b),
                OpCode::Exponent => num(a.powf(b)),
                OpCode::Less => json!(a < b),
                OpCode::Greater => json!(a > b),
                OpCode::LessEqual => json!(a <= b),
                OpCode::GreaterEqual => json!(a >= b),
                OpCode::Equal => json!((a - b).abs() < EPSILON),
                OpCode::In => json!(false),
                OpCode::NotEqual | OpCode::And | OpCode::Or => return Err(bad()),
            })
        }
        (Value::String(a), Value::String(b)) => Ok(match op {
            OpCode::Equal => json!(a == b),
            OpCode::Add => json!(format!("{a}{b}")),
            OpCode::In => json!(b.contains(a.as_str())),
            OpCode::Less => json!(a < b),
            OpCode::Greater => json!(a > b),
            OpCode::LessEqual => json!(a <= b),
            OpCode::GreaterEqual => json!(a >= b),
            _ => return Err(bad()),
        }),
        (l, Value::Array(v)) if op == OpCode::In => Ok(json!(v.contains(l))),
        (Value::String(l), Value::Object(o)) if op == OpCode::In => Ok(json!(o.contains_key(l))),
        (a, b) if op == OpCode::Equal => Ok(json!(match (a, b) {
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::Null, Value::Null) => true,
            (Value::Array(x), Value::Array(y)) => x == y,
            (Value::Object(x), Value::Object(y)) => x == y,
            _ => false,
        })),
        _ => Err(bad()),
    }
}

fn arg<'v>(a: &'v [Value], i: usize, name: &str) -> Result<&'v Value, String> {
    a.get(i)
        .ok_or_else(|| format!("{name} is missing an argument"))
}

fn number(a: &[Value], i: usize, name: &str) -> Result<f64, String> {
    arg(a, i, name)?
        .as_f64()
        .ok_or_else(|| format!("{name}: argument {i} must be a number"))
}

fn whole(a: &[Value], i: usize, name: &str) -> Result<u64, String> {
    let f = number(a, i, name)?;
    if f < 0.0 || f.fract() != 0.0 || f > 9.0e15 {
        return Err(format!(
            "{name}: argument {i} must be a whole number, 0 or more"
        ));
    }
    Ok(f as u64)
}

/// The transforms, with Normandy's meaning. `a[0]` is the subject (left of `|`).
pub fn transform(name: &str, a: &[Value]) -> Result<Value, String> {
    match name {
        "stableSample" => {
            let rate = number(a, 1, name)?;
            Ok(json!(sampling::stable_sample(arg(a, 0, name)?, rate)))
        }
        "bucketSample" => {
            let total = whole(a, 3, name)?;
            if total == 0 {
                return Err("bucketSample: total must be above 0".into());
            }
            Ok(json!(sampling::bucket_sample(
                arg(a, 0, name)?,
                whole(a, 1, name)?,
                whole(a, 2, name)?,
                total
            )))
        }
        "versionCompare" => {
            let s = |i| {
                arg(a, i, name).map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
            };
            Ok(json!(version::mozilla_compare(&s(0)?, &s(1)?) as i32))
        }
        "date" => parse_dateish(arg(a, 0, name)?)
            .map(|d| json!(d.at.0))
            .map_err(|e| format!("date: {e}")),
        "regExpMatch" => {
            let Some(s) = arg(a, 0, name)?.as_str() else {
                return Ok(Value::Null);
            };
            let pat = arg(a, 1, name)?
                .as_str()
                .ok_or("regExpMatch: the pattern must be a string")?;
            let flags = a.get(2).and_then(Value::as_str).unwrap_or("");
            let (i, m, dot) = (
                flags.contains('i'),
                flags.contains('m'),
                flags.contains('s'),
            );
            let key = format!("{}{}{}/{pat}", i as u8, m as u8, dot as u8);
            let re = REGEXES.get_or(&key, || {
                regex::RegexBuilder::new(pat)
                    .case_insensitive(i)
                    .multi_line(m)
                    .dot_matches_new_line(dot)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("regExpMatch: bad pattern: {e}"))
            })?;
            // Like JavaScript's String.prototype.match without the g flag: the match and its
            // groups, or null.
            Ok(match re.captures(s) {
                Some(c) => Value::Array(
                    c.iter()
                        .map(|m| m.map(|m| json!(m.as_str())).unwrap_or(Value::Null))
                        .collect(),
                ),
                None => Value::Null,
            })
        }
        "keys" => Ok(match arg(a, 0, name)? {
            Value::Object(o) => Value::Array(o.keys().map(|k| json!(k)).collect()),
            _ => Value::Null,
        }),
        "length" => Ok(match arg(a, 0, name)? {
            Value::Array(x) => json!(x.len()),
            Value::String(s) => json!(s.encode_utf16().count()),
            Value::Object(o) => json!(o.len()),
            _ => Value::Null,
        }),
        other => Err(format!("unknown transform: {other}")),
    }
}

fn walk(e: &Expression, out: &mut Vec<String>) {
    match e {
        Expression::Identifier(name) => {
            if !NAMES.contains(&name.as_str()) {
                out.push(format!(
                    "unknown name `{name}` in the expression: use `person`, `flight` or `now`"
                ));
            }
        }
        Expression::Transform {
            name,
            subject,
            args,
        } => {
            if !TRANSFORMS.contains(&name.as_str()) {
                let hint = match crate::diagnostic::did_you_mean(name, TRANSFORMS) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("known transforms are {}", TRANSFORMS.join(", ")),
                };
                out.push(format!("unknown transform `{name}`; {hint}"));
            }
            walk(subject, out);
            args.iter().flatten().for_each(|a| walk(a, out));
        }
        Expression::Array(xs) => xs.iter().for_each(|x| walk(x, out)),
        Expression::Object(items) => items.iter().for_each(|(_, x)| walk(x, out)),
        Expression::BinaryOperation { left, right, .. } => {
            walk(left, out);
            walk(right, out);
        }
        Expression::DotOperation { subject, .. } => walk(subject, out),
        Expression::IndexOperation { subject, index } => {
            walk(subject, out);
            // A filter's identifier names a member of each element, not a top-level name.
            if let Expression::Filter { right, .. } = index.as_ref() {
                walk(right, out);
            } else {
                walk(index, out);
            }
        }
        Expression::Conditional {
            left,
            truthy,
            falsy,
        } => {
            walk(left, out);
            walk(truthy, out);
            walk(falsy, out);
        }
        Expression::Filter { right, .. } => walk(right, out),
        Expression::Number(_)
        | Expression::String(_)
        | Expression::Boolean(_)
        | Expression::Null => {}
    }
}
