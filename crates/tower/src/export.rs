//! A flight's events as CSV or JSON Lines (docs/api.md#export), streamed from the database
//! page by page (keyset pagination on `(at, client, seq)`): never built in memory, however
//! many events a flight has.

use crate::store::{ExportCursor, Store, StoredEvent};
use axum::body::{Body, Bytes};
use serde_json::json;

/// Rows per database page.
pub const PAGE: u32 = 2_000;

/// The two formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    JsonLines,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::JsonLines => "application/x-ndjson",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::JsonLines => "jsonl",
        }
    }
}

/// The CSV header line.
pub const CSV_HEADER: &str = "client,seq,version,arm,topic,subject,value,at,received\r\n";

/// Characters that make a spreadsheet take a cell for a formula when they start it.
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];
/// Characters after which a spreadsheet may start a new cell: the separators of every locale
/// (`,` or `;`), tab, and line breaks.
const CELL_BREAK: [char; 5] = [',', ';', '\t', '\n', '\r'];

/// A text as one CSV field: a `'` is put before every formula character (`=`, `+`, `-`, `@`,
/// tab, CR) that starts the text or follows a separator of any locale (`,` `;` tab, line
/// break), so that no cell a spreadsheet makes of it is a formula; and quoted (quotes
/// doubled) when it holds a comma, a semicolon, a quote, a tab or a line break.
pub fn csv_text(s: &str) -> String {
    let mut guarded = String::with_capacity(s.len() + 2);
    let mut at_start = true;
    for c in s.chars() {
        if at_start && FORMULA_START.contains(&c) {
            guarded.push('\'');
        }
        guarded.push(c);
        at_start = CELL_BREAK.contains(&c);
    }
    if guarded.contains([',', ';', '"', '\t', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

fn number(v: f64) -> String {
    serde_json::Number::from_f64(v)
        .map(|n| n.to_string())
        .unwrap_or_default()
}

/// One event as a CSV line (with its line break).
pub fn csv_line(e: &StoredEvent) -> String {
    let opt = |s: &Option<String>| s.as_deref().map(csv_text).unwrap_or_default();
    format!(
        "{},{},{},{},{},{},{},{},{}\r\n",
        csv_text(&e.client),
        e.seq,
        e.version,
        opt(&e.arm),
        csv_text(&e.topic),
        opt(&e.subject),
        e.value.map(number).unwrap_or_default(),
        e.at.to_rfc3339(),
        e.received.to_rfc3339(),
    )
}

/// One event as a JSON Lines line (with its line break).
pub fn json_line(e: &StoredEvent) -> String {
    let mut s = json!({
        "client": e.client, "seq": e.seq, "version": e.version, "arm": e.arm, "topic": e.topic,
        "subject": e.subject, "value": e.value, "at": e.at.to_rfc3339(),
        "received": e.received.to_rfc3339(),
    })
    .to_string();
    s.push('\n');
    s
}

struct State {
    store: Store,
    flight: String,
    format: Format,
    cursor: Option<ExportCursor>,
    started: bool,
    done: bool,
}

/// The body that streams every event of `flight`, oldest first. A database error midway
/// ends the stream with an error (the client sees a cut-off answer, never a silently short
/// file); it is logged.
pub fn body(store: Store, flight: String, format: Format) -> Body {
    let state = State {
        store,
        flight,
        format,
        cursor: None,
        started: false,
        done: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        let mut out = String::new();
        if !st.started {
            st.started = true;
            if st.format == Format::Csv {
                out.push_str(CSV_HEADER);
            }
        }
        match st
            .store
            .events_page(&st.flight, st.cursor.as_ref(), PAGE)
            .await
        {
            Ok(page) => {
                if (page.len() as u32) < PAGE {
                    st.done = true;
                }
                if let Some(last) = page.last() {
                    st.cursor = Some((last.at.0, last.client.clone(), last.seq as i64));
                }
                for e in &page {
                    out.push_str(&match st.format {
                        Format::Csv => csv_line(e),
                        Format::JsonLines => json_line(e),
                    });
                }
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(out)), st))
            }
            Err(e) => {
                tracing::error!(error = %e, flight = %st.flight, "exporting events failed");
                st.done = true;
                Some((Err(std::io::Error::other("reading events failed")), st))
            }
        }
    });
    Body::from_stream(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_texts_are_quoted_and_guarded() {
        assert_eq!(csv_text("plain"), "plain");
        assert_eq!(csv_text("a,b"), "\"a,b\"");
        assert_eq!(csv_text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_text("two\nlines"), "\"two\nlines\"");
        assert_eq!(csv_text("=1+2"), "'=1+2");
        assert_eq!(csv_text("+1"), "'+1");
        assert_eq!(csv_text("-1"), "'-1");
        assert_eq!(csv_text("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(
            csv_text("=HYPERLINK(\"x\",\"y\")"),
            "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\""
        );
        // Tab and CR start formulas too; so does a cell a `;` locale splits off.
        assert_eq!(csv_text("\tx"), "\"'\tx\"");
        assert_eq!(csv_text("\t=1"), "\"'\t'=1\"", "a tab also splits cells");
        assert_eq!(csv_text("\rx"), "\"'\rx\"");
        assert_eq!(csv_text("a;=1+2"), "\"a;'=1+2\"");
        assert_eq!(csv_text("a;b"), "\"a;b\"");
        assert_eq!(csv_text("x,@y"), "\"x,'@y\"");
        assert_eq!(csv_text("x\n-1"), "\"x\n'-1\"");
        assert_eq!(csv_text("a-b=c"), "a-b=c", "only at a cell's start");
        assert_eq!(number(1e300), "1e+300");
        assert_eq!(number(-2.5), "-2.5");
    }
}
