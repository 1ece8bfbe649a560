//! How the report writer reaches the database. Storing a group of report batches is one
//! piece of logic (`store/reports.rs`, `store/progress.rs`) written once against
//! [`Statements`], which two ways of reaching the database implement:
//!
//! - [`Sqlx`], for PostgreSQL (and an in-memory SQLite database): each statement takes all
//!   its rows as one JSON text, unpacked inside the database (one round trip a statement,
//!   not one a row).
//! - [`Lite`], for a SQLite file: a rusqlite connection of the writer's own
//!   ([`super::sqlite_writer::SqliteWriter`]), on which a whole group's transaction runs in
//!   one go on the writer's thread, each statement prepared once and run row by row with
//!   bound values. Through sqlx every statement of the group (eight of them) crossed to
//!   sqlx's connection thread and back, and SQLite spent much of the rest unpacking JSON;
//!   the writer's cycle is what limits how many small batches a second the tower takes
//!   (BENCHMARKS.md, report ingest).

use super::events::{encode, unpack, Col};
use super::Engine;
use crate::error::{Error, Result};
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::{Any, Row, Transaction};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

/// An insert of many rows: `{into}` the rows, what a row whose key is taken does, and
/// `{returning}` (empty, or `RETURNING ...`). `cols` are the columns' types, in order.
#[derive(Clone, Copy)]
pub(super) struct Insert<'s> {
    /// `INSERT INTO table (a, b, ...)`
    pub into: &'s str,
    pub cols: &'s [Col],
    pub conflict: Conflict<'s>,
    pub returning: &'s str,
}

/// What an insert does with a row whose key (the columns `key`, e.g. `client, seq`) is
/// taken.
#[derive(Clone, Copy)]
pub(super) enum Conflict<'s> {
    /// The row is skipped; the stored one stays as it is. With `lock` (`col = table.col`),
    /// on PostgreSQL the stored row is also locked until the transaction ends (an update
    /// that changes nothing and returns nothing); SQLite's writer holds the whole database.
    Skip { key: &'s str, lock: Option<&'s str> },
    /// The stored row is updated: `SET {set}` (`excluded.col` is the row's value).
    Update { key: &'s str, set: &'s str },
}

impl Insert<'_> {
    /// The statement with one JSON text of rows as `$1` (`store/events.rs`, `unpack`).
    fn json(&self, engine: Engine) -> String {
        let conflict = match self.conflict {
            Conflict::Skip { key, lock: None } => format!("ON CONFLICT ({key}) DO NOTHING"),
            Conflict::Skip {
                key,
                lock: Some(lock),
            } => format!("ON CONFLICT ({key}) DO UPDATE SET {lock} WHERE 1 = 0"),
            Conflict::Update { key, set } => format!("ON CONFLICT ({key}) DO UPDATE SET {set}"),
        };
        format!(
            "{} {} {conflict} {}",
            self.into,
            unpack(engine, self.cols),
            self.returning
        )
    }

    /// The statement for one row, its values bound as `?1`, `?2`, ... (SQLite). A skipped
    /// row is `INSERT OR IGNORE`, with no `RETURNING` (whether it was stored is what SQLite
    /// says it changed: [`Statements::insert_new`]): unlike `ON CONFLICT DO NOTHING` it
    /// cannot fail midway, so SQLite keeps no statement journal for it, and without
    /// `RETURNING` it buffers no rows. (It would also skip a row breaking another constraint;
    /// the rows written here are typed so that none can: no NULL in a NOT NULL column, no
    /// CHECK on these tables.)
    fn one_row(&self) -> String {
        let marks: Vec<String> = (1..=self.cols.len()).map(|i| format!("?{i}")).collect();
        let marks = marks.join(", ");
        match self.conflict {
            Conflict::Skip { .. } => format!(
                "{} VALUES ({marks})",
                self.into
                    .replacen("INSERT INTO", "INSERT OR IGNORE INTO", 1),
            ),
            Conflict::Update { key, set } => format!(
                "{} VALUES ({marks}) ON CONFLICT ({key}) DO UPDATE SET {set} {}",
                self.into, self.returning
            ),
        }
    }
}

/// A part of a row's key, as its column is typed.
#[derive(Debug, PartialEq, Eq, Hash)]
enum KeyPart {
    Text(String),
    Int(i64),
}

/// [`Statements::insert_new`] says which rows were stored: only an insert that skips a
/// row whose key is taken can say so.
fn skip_only(stmt: &Insert<'_>) -> Result<()> {
    match stmt.conflict {
        Conflict::Skip { .. } => Ok(()),
        Conflict::Update { .. } => Err(Error::Internal(format!(
            "`{}` updates a row whose key is taken: which rows were new cannot be told",
            stmt.into
        ))),
    }
}

/// A row to insert: a tuple of the statement's columns, in order.
pub(super) trait Values: Serialize + rusqlite::Params + Clone + Sync {}
impl<T: Serialize + rusqlite::Params + Clone + Sync> Values for T {}

/// The statements of a writer's transaction. The futures are `Send`, so that the logic over
/// them runs in any tokio task.
pub(super) trait Statements {
    type Row: Cells + Send;
    /// Inserts `rows` (no two with the same key) and returns what `RETURNING` says of each
    /// row it inserted or updated.
    fn insert<'a, R: Values>(
        &'a mut self,
        stmt: Insert<'a>,
        rows: &'a [R],
    ) -> BoxFuture<'a, Result<Vec<Self::Row>>>;
    /// Inserts `rows` (no two with the same key) with [`Conflict::Skip`] and says, row by
    /// row, whether it was stored (its key was free). `key` are the positions of the key's
    /// columns in a row, which `stmt.returning` returns in that order.
    fn insert_new<'a, R: Values>(
        &'a mut self,
        stmt: Insert<'a>,
        rows: &'a [R],
        key: &'a [usize],
    ) -> BoxFuture<'a, Result<Vec<bool>>>;
    /// The rows of `from` (a table and its alias, e.g. `client_state c`) whose two key
    /// columns `on` equal one of `keys`: `SELECT {select} FROM {from}` for each key.
    fn by_keys<'a>(
        &'a mut self,
        select: &'a str,
        from: &'a str,
        on: [&'a str; 2],
        keys: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<Vec<Self::Row>>>;
}

/// The columns of a row a statement returned.
pub(super) trait Cells {
    fn text(&self, i: usize) -> Result<String>;
    fn int(&self, i: usize) -> Result<i64>;
    fn opt_text(&self, i: usize) -> Result<Option<String>>;
}

/// A sqlx transaction as [`Statements`]: every statement's rows go as one JSON text.
pub(super) struct Sqlx<'t>(pub &'t mut Transaction<'static, Any>, pub Engine);

impl Statements for Sqlx<'_> {
    type Row = sqlx::any::AnyRow;

    fn insert<'a, R: Values>(
        &'a mut self,
        stmt: Insert<'a>,
        rows: &'a [R],
    ) -> BoxFuture<'a, Result<Vec<Self::Row>>> {
        Box::pin(async move {
            Ok(sqlx::query(&stmt.json(self.1))
                .bind(encode(&rows)?)
                .fetch_all(&mut **self.0)
                .await?)
        })
    }

    fn insert_new<'a, R: Values>(
        &'a mut self,
        stmt: Insert<'a>,
        rows: &'a [R],
        key: &'a [usize],
    ) -> BoxFuture<'a, Result<Vec<bool>>> {
        Box::pin(async move {
            skip_only(&stmt)?;
            let returned = self.insert(stmt, rows).await?;
            // Each row's key, typed as its columns are, from what was sent and from what
            // came back: every returned key must be exactly one row's, or the statement's
            // `returning` does not match `key` — an error, never a row taken for a duplicate.
            let mut at_row = std::collections::HashMap::with_capacity(rows.len());
            for (i, row) in rows.iter().enumerate() {
                let values = serde_json::to_value(row)
                    .map_err(|e| Error::Internal(format!("encoding a row: {e}")))?;
                let mut k = Vec::with_capacity(key.len());
                for &at in key {
                    k.push(match (stmt.cols.get(at), values.get(at)) {
                        (Some(Col::Text), Some(serde_json::Value::String(s))) => {
                            KeyPart::Text(s.clone())
                        }
                        (Some(Col::Int), Some(v)) if v.is_i64() => {
                            KeyPart::Int(v.as_i64().unwrap_or_default())
                        }
                        (c, v) => {
                            return Err(Error::Internal(format!(
                                "column {at} of a row is not a key of its type: {v:?} for {:?}",
                                c.map(|c| matches!(c, Col::Text))
                            )))
                        }
                    });
                }
                at_row.insert(k, i);
            }
            let mut stored = vec![false; rows.len()];
            for r in &returned {
                let mut k = Vec::with_capacity(key.len());
                for (i, &at) in key.iter().enumerate() {
                    k.push(match stmt.cols.get(at) {
                        Some(Col::Text) => KeyPart::Text(r.text(i)?),
                        _ => KeyPart::Int(r.int(i)?),
                    });
                }
                match at_row.get(&k) {
                    Some(&i) if !stored[i] => stored[i] = true,
                    _ => {
                        return Err(Error::Internal(format!(
                            "`{}` returned a key it was not given, or twice: {k:?}",
                            stmt.into
                        )))
                    }
                }
            }
            Ok(stored)
        })
    }

    fn by_keys<'a>(
        &'a mut self,
        select: &'a str,
        from: &'a str,
        on: [&'a str; 2],
        keys: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<Vec<Self::Row>>> {
        Box::pin(async move {
            let (each, k0, k1) = match self.1 {
                Engine::Sqlite => ("json_each($1) k", "k.value ->> 0", "k.value ->> 1"),
                Engine::Postgres => ("json_array_elements($1::json) k", "k ->> 0", "k ->> 1"),
            };
            let sql = format!(
                "SELECT {select} FROM {each} JOIN {from} ON {} = {k0} AND {} = {k1}",
                on[0], on[1]
            );
            Ok(sqlx::query(&sql)
                .bind(encode(&keys)?)
                .fetch_all(&mut **self.0)
                .await?)
        })
    }
}

impl Cells for sqlx::any::AnyRow {
    fn text(&self, i: usize) -> Result<String> {
        Ok(self.try_get(i)?)
    }
    fn int(&self, i: usize) -> Result<i64> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.try_get(i)?)
    }
}

/// A rusqlite transaction as [`Statements`]: each statement runs when it is called, from
/// rusqlite's statement cache, once a row with the row's values bound; its future is ready
/// at once.
pub(super) struct Lite<'a>(pub &'a rusqlite::Transaction<'a>);

type LiteRow = Vec<rusqlite::types::Value>;

impl Statements for Lite<'_> {
    type Row = LiteRow;

    fn insert<'a, R: Values>(
        &'a mut self,
        stmt: Insert<'a>,
        rows: &'a [R],
    ) -> BoxFuture<'a, Result<Vec<Self::Row>>> {
        let run = || {
            if matches!(stmt.conflict, Conflict::Skip { .. }) && !stmt.returning.is_empty() {
                // One row at a time, a skipped row's statement returns nothing here: what
                // was stored is `insert_new`'s to say.
                return Err(Error::Internal(format!(
                    "`{}` skips taken keys and returns rows: use insert_new",
                    stmt.into
                )));
            }
            self.each(&stmt.one_row(), rows.iter().cloned())
        };
        Box::pin(std::future::ready(run()))
    }

    fn insert_new<'a, R: Values>(
        &'a mut self,
        stmt: Insert<'a>,
        rows: &'a [R],
        _key: &'a [usize],
    ) -> BoxFuture<'a, Result<Vec<bool>>> {
        Box::pin(std::future::ready(
            skip_only(&stmt).and_then(|()| self.changed(&stmt.one_row(), rows)),
        ))
    }

    fn by_keys<'a>(
        &'a mut self,
        select: &'a str,
        from: &'a str,
        on: [&'a str; 2],
        keys: &'a [(&'a str, &'a str)],
    ) -> BoxFuture<'a, Result<Vec<Self::Row>>> {
        let sql = format!(
            "SELECT {select} FROM {from} WHERE {} = ?1 AND {} = ?2",
            on[0], on[1]
        );
        Box::pin(std::future::ready(self.each(&sql, keys.iter().copied())))
    }
}

impl Lite<'_> {
    /// Runs `sql` once for each of `rows`; says for each whether it changed a row.
    fn changed<R: Values>(&self, sql: &str, rows: &[R]) -> Result<Vec<bool>> {
        let mut st = self.0.prepare_cached(sql)?;
        rows.iter()
            .map(|r| Ok(st.execute(r.clone())? == 1))
            .collect()
    }

    /// Runs `sql` once for each of `params`; returns all the rows.
    fn each<P: rusqlite::Params>(
        &self,
        sql: &str,
        params: impl Iterator<Item = P>,
    ) -> Result<Vec<LiteRow>> {
        let mut st = self.0.prepare_cached(sql)?;
        let n = st.column_count();
        let mut out = Vec::new();
        for p in params {
            let mut rows = st.query(p)?;
            while let Some(r) = rows.next()? {
                out.push((0..n).map(|i| r.get(i)).collect::<rusqlite::Result<_>>()?);
            }
        }
        Ok(out)
    }
}

impl Cells for LiteRow {
    fn text(&self, i: usize) -> Result<String> {
        match self.get(i) {
            Some(rusqlite::types::Value::Text(s)) => Ok(s.clone()),
            other => Err(unexpected(i, "text", other)),
        }
    }
    fn int(&self, i: usize) -> Result<i64> {
        match self.get(i) {
            Some(rusqlite::types::Value::Integer(n)) => Ok(*n),
            other => Err(unexpected(i, "an integer", other)),
        }
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        match self.get(i) {
            Some(rusqlite::types::Value::Null) => Ok(None),
            _ => self.text(i).map(Some),
        }
    }
}

fn unexpected(i: usize, wanted: &str, got: Option<&rusqlite::types::Value>) -> Error {
    Error::Internal(format!(
        "column {i} of a stored row is not {wanted}: {got:?}"
    ))
}

/// Runs a future that never waits (one over [`Lite`]) to its end, on this thread.
pub(super) fn run_now<T>(f: impl Future<Output = Result<T>>) -> Result<T> {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(Error::Internal(
            "a SQLite write waited for something; it must run at once".into(),
        )),
    }
}
