//! Printing on a terminal what came from outside: a tower's answers (flight status, reports'
//! `detail`, error messages), flight and person files, the pilot's journal. Anonymous
//! reports reach an approver's terminal through `flight status`, so a string received must
//! not be able to clear the screen, move the cursor or hide lines.
//!
//! Every print of the binary goes through here (`main` denies `clippy::print_stdout` and
//! `clippy::print_stderr` everywhere else):
//! - [`outln!`] and [`errln!`] print one line, with every control character in it made
//!   visible ([`Safe`]): a newline inside a field shows as `\n`, ESC as `\x1b`.
//! - [`print_json`] prints exact JSON for `--json`, with every control character escaped as
//!   JSON allows (serde escapes C0; DEL, C1 and bidirectional overrides are escaped here).
//! - [`print_error`] prints a command's error, line by line.

use serde::Serialize;
use serde_json::Value;
use std::fmt::{self, Write as _};
use std::io::{self, Write as _};

/// Prints one line on standard output, with control characters made visible.
macro_rules! outln {
    () => {
        $crate::term::out_line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::term::out_line(format_args!($($arg)*))
    };
}

/// Prints one line on standard error, with control characters made visible.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::term::err_line(format_args!($($arg)*))
    };
}

pub(crate) use {errln, outln};

/// Whether a terminal could act on `c` instead of showing it: C0 controls (newline, CR,
/// tab and ESC included), DEL, C1 controls (U+0080–U+009F: 8-bit CSI, OSC, …), and the
/// bidirectional embeddings, overrides and isolates that reorder what is shown.
fn is_unsafe(c: char) -> bool {
    matches!(c, '\0'..='\x1f' | '\x7f'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes through to `inner`, replacing every unsafe character with a visible escape.
struct Escaper<'a, W: fmt::Write + ?Sized>(&'a mut W);

impl<W: fmt::Write + ?Sized> fmt::Write for Escaper<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(i) = rest.find(is_unsafe) {
            self.0.write_str(&rest[..i])?;
            let c = rest[i..].chars().next().unwrap_or('\0');
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                c if (c as u32) < 0x80 => write!(self.0, "\\x{:02x}", c as u32)?,
                c => write!(self.0, "\\u{{{:x}}}", c as u32)?,
            }
            rest = &rest[i + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

/// Shows `T` with every control character made visible, so that it stays on its line and
/// cannot act on the terminal.
pub struct Safe<T>(pub T);

impl<T: fmt::Display> fmt::Display for Safe<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Escaper(f), "{}", self.0)
    }
}

/// `s` with every control character made visible.
pub fn safe(s: &str) -> String {
    Safe(s).to_string()
}

/// A copy of `v` whose strings (and keys) are [`safe`], for text renderers that lay out
/// JSON values in lines (`testpilot log`).
pub fn safe_json(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(safe(s)),
        Value::Array(a) => Value::Array(a.iter().map(safe_json).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (safe(k), safe_json(v))).collect()),
        other => other.clone(),
    }
}

pub fn out_line(args: fmt::Arguments<'_>) {
    print_raw_line(&Safe(args).to_string());
}

#[allow(clippy::print_stderr)]
pub fn err_line(args: fmt::Arguments<'_>) {
    eprintln!("{}", Safe(args));
}

/// Prints one row of tab-separated fields, each made safe (the tabs between them are the
/// only ones printed).
pub fn out_row(fields: &[&dyn fmt::Display]) {
    let row: Vec<String> = fields.iter().map(|f| Safe(f).to_string()).collect();
    print_raw_line(&row.join("\t"));
}

fn print_raw_line(line: &str) {
    if let Err(e) = writeln!(io::stdout().lock(), "{line}") {
        output_failed(&e);
    }
}

/// Standard output cannot be written. When its reader went away (`| head`), the command
/// stops quietly with the status of a program ended by SIGPIPE (141), as a shell tool does;
/// otherwise (a full disk) it says so and stops with 2.
pub fn output_failed(e: &io::Error) -> ! {
    if e.kind() == io::ErrorKind::BrokenPipe {
        std::process::exit(141);
    }
    errln!("error: writing standard output: {e}");
    std::process::exit(2);
}

/// Prints `text` line by line, each made safe (a rendered multi-line text).
pub fn out_lines(text: &str) {
    for line in text.lines() {
        outln!("{line}");
    }
}

/// Prints a command's error on standard error: `error: ` and its first line, further lines
/// indented; every line made safe.
pub fn print_error(e: &anyhow::Error) {
    let text = format!("{e:#}");
    let mut lines = text.lines();
    errln!("error: {}", lines.next().unwrap_or(""));
    for line in lines {
        errln!("  {line}");
    }
}

/// Prints `value` as pretty JSON on standard output, exactly (it parses back to the same
/// value) and with no character a terminal acts on.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match write_json(&mut out, value) {
        Err(e) if e.is_io() => output_failed(&io::Error::from(e)),
        Err(e) => return Err(e.into()),
        Ok(()) => {}
    }
    if let Err(e) = out.write_all(b"\n").and_then(|()| out.flush()) {
        output_failed(&e);
    }
    Ok(())
}

fn write_json<W: io::Write, T: Serialize + ?Sized>(w: W, value: &T) -> serde_json::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(
        w,
        SafeJson(serde_json::ser::PrettyFormatter::new()),
    );
    value.serialize(&mut ser)
}

/// serde's pretty formatter, plus `\uXXXX` escapes for DEL, C1 controls and bidirectional
/// overrides, which JSON allows raw and serde writes raw.
struct SafeJson<'a>(serde_json::ser::PrettyFormatter<'a>);

impl serde_json::ser::Formatter for SafeJson<'_> {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut rest = fragment;
        while let Some(i) = rest.find(is_unsafe) {
            w.write_all(&rest.as_bytes()[..i])?;
            let c = rest[i..].chars().next().unwrap_or('\0');
            write!(w, "\\u{:04x}", c as u32)?;
            rest = &rest[i + c.len_utf8()..];
        }
        w.write_all(rest.as_bytes())
    }

    // The layout is the pretty formatter's.
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn control_characters_become_visible() {
        let cases = [
            ("plain text, ünïcode ✓", "plain text, ünïcode ✓"),
            ("a\nb", "a\\nb"),
            ("\x1b[2J\rhidden\t", "\\x1b[2J\\rhidden\\t"),
            ("bell\x07 nul\0 del\x7f", "bell\\x07 nul\\x00 del\\x7f"),
            ("csi\u{9b}2J", "csi\\u{9b}2J"),
            ("rtl\u{202e}txt.exe", "rtl\\u{202e}txt.exe"),
        ];
        for (input, want) in cases {
            assert_eq!(safe(input), want, "{input:?}");
        }
        assert_eq!(
            Safe(format_args!("{}|{}", "x\x1b", 3)).to_string(),
            "x\\x1b|3"
        );
    }

    #[test]
    fn safe_json_reaches_every_string_and_key() {
        let v = json!({"k\x1b": ["a\nb", {"d": "\r"}], "n": 1});
        assert_eq!(
            safe_json(&v),
            json!({"k\\x1b": ["a\\nb", {"d": "\\r"}], "n": 1})
        );
    }

    /// `--json` stays exact: it parses back to the same value, and no byte of it is one a
    /// terminal acts on (C0 but the layout's newlines, DEL, C1 in UTF-8, bidi overrides).
    #[test]
    fn json_output_is_exact_and_inert() {
        let v = json!({"detail": "\x1b[2J\r\u{7f}\u{9b}\u{85}\u{202e}ok", "list": [1, "é"]});
        let mut out = Vec::new();
        write_json(&mut out, &v).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
        assert!(text.chars().all(|c| c == '\n' || !is_unsafe(c)), "{text:?}");
        let plain = serde_json::to_string_pretty(&json!({"a": [1, {"b": null}]})).unwrap();
        let mut out = Vec::new();
        write_json(&mut out, &json!({"a": [1, {"b": null}]})).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            plain,
            "the same layout as serde's"
        );
    }
}
