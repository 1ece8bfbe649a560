//! JEXL text to `jexl_parser`'s tree, within fixed bounds and in linear time.
//!
//! We keep `jexl-parser`'s grammar and tree (the one `jexl-eval` and Mozilla use), but not
//! its parser: its lexer finds every character by counting from the start of the text
//! (quadratic time: 1.9 s for a 40 KB expression), slices the text with character counts as
//! byte offsets (a panic on non-ASCII text before a string) and builds trees of any depth,
//! which every recursive walk (checking, evaluating, dropping) then overflows the stack on.
//!
//! Here, before anything is parsed, the text must be at most [`MAX_LENGTH`] bytes, and one
//! linear pass turns it into tokens while refusing brackets nested more than
//! [`MAX_NESTING`] deep. The parser then recurses only per bracket (a fixed number of frames
//! each) and refuses any tree deeper than [`MAX_DEPTH`] nodes as it builds it, so no walk of
//! an accepted tree can go deeper than that. A differential test holds this parser to
//! `jexl-parser` (`tests/it/expression.rs`).

use jexl_parser::ast::{Expression, OpCode};

/// The longest expression, in bytes. Normandy's longest filter expressions are a few KB.
pub const MAX_LENGTH: usize = 8 * 1024;
/// The deepest nesting of `(`, `[` and `{`.
pub const MAX_NESTING: usize = 16;
/// The deepest parsed tree: a chain of N operators or transforms is N + 1 deep.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Tok<'a> {
    Num(f64),
    /// A quoted string's text, with its quote character.
    Str(&'a str, char),
    Bool(bool),
    Null,
    Ident(&'a str),
    Op(OpCode),
    /// Punctuation: one of `( ) [ ] { } , . : ? |`.
    P(u8),
}

impl Tok<'_> {
    fn describe(&self) -> String {
        match self {
            Tok::Num(n) => format!("the number {n}"),
            Tok::Str(..) => "a string".into(),
            Tok::Bool(b) => format!("`{b}`"),
            Tok::Null => "`null`".into(),
            Tok::Ident(s) => format!("the name `{s}`"),
            Tok::Op(op) => format!("`{op}`"),
            Tok::P(c) => format!("`{}`", *c as char),
        }
    }
}

/// Why parsing stopped: a bound was passed, or the text is not JEXL.
enum Stop {
    Limit(String),
    Syntax(String),
}

impl From<String> for Stop {
    fn from(message: String) -> Self {
        Stop::Syntax(message)
    }
}

fn fail<T>(message: String) -> Result<T, Stop> {
    Err(Stop::Syntax(message))
}

/// Parses `text`, or says in one line what is wrong and where (byte offsets).
pub fn parse(text: &str) -> Result<Box<Expression>, String> {
    if text.len() > MAX_LENGTH {
        return Err(format!(
            "the expression is {} bytes long; the limit is {MAX_LENGTH} bytes",
            text.len()
        ));
    }
    parse_bounded(text).map_err(|stop| match stop {
        Stop::Limit(message) => message,
        Stop::Syntax(message) => format!("the expression is not valid JEXL: {message}"),
    })
}

fn parse_bounded(text: &str) -> Result<Box<Expression>, Stop> {
    let toks = lex(text)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: text.len(),
    };
    let (e, _) = p.binary(1)?;
    match p.toks.get(p.pos) {
        None => Ok(e),
        Some((at, t)) => fail(format!("unexpected {} at byte {at}", t.describe())),
    }
}

fn lex(text: &str) -> Result<Vec<(usize, Tok<'_>)>, Stop> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut nesting = 0usize;
    let mut i = 0;
    while let Some(c) = text.get(i..).and_then(|s| s.chars().next()) {
        let at = i;
        let next = b.get(i + 1).copied();
        let digit_follows = next.is_some_and(|n| n.is_ascii_digit());
        // A two-character operator, or `single` when the second character is not there.
        let two = |tok: Tok<'static>, second: u8, single: Option<Tok<'static>>| {
            if next == Some(second) {
                Ok((tok, 2))
            } else if let Some(s) = single {
                Ok((s, 1))
            } else {
                fail(format!(
                    "unexpected `{c}` at byte {at}; did you mean `{c}{}`?",
                    second as char
                ))
            }
        };
        let tok = match c {
            c if c.is_whitespace() => {
                i += c.len_utf8();
                continue;
            }
            '+' | '-' | '*' | '%' | '^' => {
                i += 1;
                Tok::Op(match c {
                    '+' => OpCode::Add,
                    '-' => OpCode::Subtract,
                    '*' => OpCode::Multiply,
                    '%' => OpCode::Modulus,
                    _ => OpCode::Exponent,
                })
            }
            '(' | '[' | '{' => {
                nesting += 1;
                if nesting > MAX_NESTING {
                    return Err(Stop::Limit(format!(
                        "the expression nests brackets more than {MAX_NESTING} deep (at byte {at}); \
                         the limit is {MAX_NESTING}"
                    )));
                }
                i += 1;
                Tok::P(c as u8)
            }
            ')' | ']' | '}' | ',' | ':' | '?' => {
                if matches!(c, ')' | ']' | '}') {
                    nesting = nesting.saturating_sub(1);
                }
                i += 1;
                Tok::P(c as u8)
            }
            '|' => step(&mut i, two(Tok::Op(OpCode::Or), b'|', Some(Tok::P(b'|')))?),
            '/' => step(
                &mut i,
                two(
                    Tok::Op(OpCode::FloorDivide),
                    b'/',
                    Some(Tok::Op(OpCode::Divide)),
                )?,
            ),
            '=' => step(&mut i, two(Tok::Op(OpCode::Equal), b'=', None)?),
            '!' => step(&mut i, two(Tok::Op(OpCode::NotEqual), b'=', None)?),
            '&' => step(&mut i, two(Tok::Op(OpCode::And), b'&', None)?),
            '>' => step(
                &mut i,
                two(
                    Tok::Op(OpCode::GreaterEqual),
                    b'=',
                    Some(Tok::Op(OpCode::Greater)),
                )?,
            ),
            '<' => step(
                &mut i,
                two(
                    Tok::Op(OpCode::LessEqual),
                    b'=',
                    Some(Tok::Op(OpCode::Less)),
                )?,
            ),
            '"' | '\'' => {
                let q = c as u8;
                let mut j = i + 1;
                loop {
                    match b.get(j) {
                        None => {
                            return fail(format!("the string that starts at byte {at} never ends"))
                        }
                        Some(&x) if x == q => break,
                        Some(b'\\') if b.get(j + 1) == Some(&q) => j += 2,
                        Some(b'\\') => {
                            return fail(format!(
                                "unknown escape at byte {j}: only \\{c} may follow a backslash in a {c}-quoted string"
                            ))
                        }
                        Some(_) => j += 1,
                    }
                }
                i = j + 1;
                Tok::Str(text.get(at + 1..j).unwrap_or(""), c)
            }
            '.' if !digit_follows => {
                i += 1;
                Tok::P(b'.')
            }
            '.' | '0'..='9' => {
                let start = i;
                if c == '.' {
                    i += 1;
                }
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
                if c != '.'
                    && b.get(i) == Some(&b'.')
                    && b.get(i + 1).is_some_and(u8::is_ascii_digit)
                {
                    i += 1;
                    while b.get(i).is_some_and(u8::is_ascii_digit) {
                        i += 1;
                    }
                }
                let s = text.get(start..i).unwrap_or("");
                Tok::Num(
                    s.parse()
                        .map_err(|_| format!("`{s}` at byte {start} is not a number"))?,
                )
            }
            c if c.is_alphabetic() || c == '_' => {
                let rest = text.get(i..).unwrap_or("");
                let len = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                i += len;
                match &rest[..len] {
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    "null" => Tok::Null,
                    "in" => Tok::Op(OpCode::In),
                    word => Tok::Ident(word),
                }
            }
            c => {
                let c = crate::diagnostic::quote(c.encode_utf8(&mut [0; 4]));
                return fail(format!("unexpected character {c} at byte {at}"));
            }
        };
        out.push((at, tok));
    }
    Ok(out)
}

fn step<'a>(i: &mut usize, (tok, len): (Tok<'a>, usize)) -> Tok<'a> {
    *i += len;
    tok
}

struct Parser<'a> {
    toks: Vec<(usize, Tok<'a>)>,
    pos: usize,
    end: usize,
}

/// A subtree and its depth.
type P = Result<(Box<Expression>, usize), Stop>;

fn node(e: Expression, depth: usize) -> P {
    if depth > MAX_DEPTH {
        return Err(Stop::Limit(format!(
            "the expression nests operations more than {MAX_DEPTH} deep (each operator or \
             transform in a chain counts); the limit is {MAX_DEPTH}: split it into fewer operations"
        )));
    }
    Ok((Box::new(e), depth))
}

/// Binding strength of a binary operator, loosest first, as in `jexl-parser`'s grammar.
fn precedence(op: OpCode) -> u8 {
    match op {
        OpCode::And | OpCode::Or => 1,
        OpCode::Equal
        | OpCode::NotEqual
        | OpCode::GreaterEqual
        | OpCode::LessEqual
        | OpCode::Greater
        | OpCode::Less
        | OpCode::In => 2,
        OpCode::Add | OpCode::Subtract => 3,
        OpCode::Multiply | OpCode::FloorDivide | OpCode::Divide => 4,
        OpCode::Modulus | OpCode::Exponent => 5,
    }
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Tok<'a>> {
        self.toks.get(self.pos).map(|(_, t)| *t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(at, _)| *at)
    }

    fn unexpected(&self, wanted: &str) -> String {
        match self.peek() {
            None => format!("the expression ends where {wanted} should be"),
            Some(t) => format!(
                "unexpected {} at byte {}; expected {wanted}",
                t.describe(),
                self.at()
            ),
        }
    }

    fn eat(&mut self, p: u8) -> bool {
        let hit = self.peek() == Some(Tok::P(p));
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect(&mut self, p: u8) -> Result<(), Stop> {
        if self.eat(p) {
            Ok(())
        } else {
            fail(self.unexpected(&format!("`{}`", p as char)))
        }
    }

    fn ident(&mut self) -> Result<&'a str, Stop> {
        match self.peek() {
            Some(Tok::Ident(s)) => {
                self.pos += 1;
                Ok(s)
            }
            _ => fail(self.unexpected("a name")),
        }
    }

    /// Left-associative binary operators binding at least as tightly as `min`. Recursion
    /// here is at most five levels (one per strength), whatever the input.
    fn binary(&mut self, min: u8) -> P {
        let (mut left, mut depth) = self.conditional()?;
        while let Some(Tok::Op(op)) = self.peek() {
            let prec = precedence(op);
            if prec < min {
                break;
            }
            self.pos += 1;
            let (right, rd) = self.binary(prec + 1)?;
            depth = depth.max(rd) + 1;
            (left, depth) = node(
                Expression::BinaryOperation {
                    operation: op,
                    left,
                    right,
                },
                depth,
            )?;
        }
        Ok((left, depth))
    }

    /// `a ? b : c`, whose parts are transform chains (so `a ? b : c ? d : e` is
    /// `(a ? b : c) ? d : e`, as in `jexl-parser`).
    fn conditional(&mut self) -> P {
        let (mut left, mut depth) = self.transform()?;
        while self.eat(b'?') {
            let (truthy, td) = self.transform()?;
            self.expect(b':')?;
            let (falsy, fd) = self.transform()?;
            depth = depth.max(td).max(fd) + 1;
            (left, depth) = node(
                Expression::Conditional {
                    left,
                    truthy,
                    falsy,
                },
                depth,
            )?;
        }
        Ok((left, depth))
    }

    /// `subject|name` and `subject|name(args, ...)`.
    fn transform(&mut self) -> P {
        let (mut subject, mut depth) = self.postfix()?;
        while self.eat(b'|') {
            let name = self.ident()?.to_string();
            let args = if self.eat(b'(') {
                let (args, ad) = self.list(b')')?;
                depth = depth.max(ad);
                Some(args)
            } else {
                None
            };
            (subject, depth) = node(
                Expression::Transform {
                    name,
                    subject,
                    args,
                },
                depth + 1,
            )?;
        }
        Ok((subject, depth))
    }

    /// `subject.name`, `subject[index]` and `subject[.name OP value]`.
    fn postfix(&mut self) -> P {
        let (mut subject, mut depth) = self.primary()?;
        loop {
            if self.eat(b'.') {
                let ident = self.ident()?.to_string();
                (subject, depth) = node(Expression::DotOperation { subject, ident }, depth + 1)?;
            } else if self.eat(b'[') {
                let (index, id) = if self.eat(b'.') {
                    let ident = self.ident()?.to_string();
                    let op = match self.peek() {
                        Some(Tok::Op(op)) if precedence(op) == 2 => op,
                        _ => return fail(self.unexpected("a comparison")),
                    };
                    self.pos += 1;
                    let (right, rd) = self.primary()?;
                    node(Expression::Filter { ident, op, right }, rd + 1)?
                } else {
                    self.binary(1)?
                };
                self.expect(b']')?;
                depth = depth.max(id) + 1;
                (subject, depth) = node(Expression::IndexOperation { subject, index }, depth)?;
            } else {
                return Ok((subject, depth));
            }
        }
    }

    fn primary(&mut self) -> P {
        let Some(t) = self.peek() else {
            return fail(self.unexpected("a value"));
        };
        self.pos += 1;
        match t {
            Tok::Num(n) => node(Expression::Number(n), 1),
            Tok::Bool(b) => node(Expression::Boolean(b), 1),
            Tok::Null => node(Expression::Null, 1),
            Tok::Str(s, q) => node(Expression::String(unquote(s, q)), 1),
            Tok::Ident(s) => node(Expression::Identifier(s.to_string()), 1),
            Tok::P(b'(') => {
                let e = self.binary(1)?;
                self.expect(b')')?;
                Ok(e)
            }
            Tok::P(b'[') => {
                let (xs, d) = self.list(b']')?;
                node(Expression::Array(xs), d + 1)
            }
            Tok::P(b'{') => self.object(),
            _ => {
                self.pos -= 1;
                fail(self.unexpected("a value"))
            }
        }
    }

    /// An object literal's members up to `}`, the `{` read.
    #[inline(never)]
    fn object(&mut self) -> P {
        let mut items = Vec::new();
        let mut depth = 0;
        while !self.eat(b'}') {
            let key = match self.peek() {
                Some(Tok::Str(s, q)) => unquote(s, q),
                Some(Tok::Ident(s)) => s.to_string(),
                _ => return fail(self.unexpected("a key (a name or a string) or `}`")),
            };
            self.pos += 1;
            self.expect(b':')?;
            let (v, d) = self.binary(1)?;
            depth = depth.max(d);
            items.push((key, v));
            if !self.eat(b',') {
                self.expect(b'}')?;
                break;
            }
        }
        node(Expression::Object(items), depth + 1)
    }

    /// Expressions separated by commas (a trailing comma allowed) up to `close`, and the
    /// depth of the deepest. Boxed, as `jexl-parser`'s tree holds them.
    #[allow(clippy::vec_box)]
    fn list(&mut self, close: u8) -> Result<(Vec<Box<Expression>>, usize), Stop> {
        let mut xs = Vec::new();
        let mut depth = 0;
        while !self.eat(close) {
            let (x, d) = self.binary(1)?;
            depth = depth.max(d);
            xs.push(x);
            if !self.eat(b',') {
                self.expect(close)?;
                break;
            }
        }
        Ok((xs, depth))
    }
}

/// A string token's value: `jexl-parser` only unescapes the quote itself.
fn unquote(s: &str, q: char) -> String {
    match q {
        '"' => s.replace("\\\"", "\""),
        _ => s.replace("\\'", "'"),
    }
}
