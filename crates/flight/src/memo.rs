//! A small shared cache of things parsed from text (expressions, version requirements).
//!
//! Flights are few and long-lived, so the cache stays small; it is emptied if it ever grows
//! past its limit (hostile or generated input), so memory stays bounded.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

pub(crate) struct Memo<T: Clone + Send + 'static> {
    map: LazyLock<Mutex<HashMap<String, T>>>,
}

const LIMIT: usize = 10_000;

impl<T: Clone + Send + 'static> Memo<T> {
    pub const fn new() -> Self {
        Memo {
            map: LazyLock::new(Default::default),
        }
    }

    /// The value for `key`, computing and keeping it on first use. Errors are not kept.
    pub fn get_or<E>(&self, key: &str, make: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        if let Some(v) = self.map.lock().ok().and_then(|m| m.get(key).cloned()) {
            return Ok(v);
        }
        let v = make()?;
        if let Ok(mut m) = self.map.lock() {
            if m.len() >= LIMIT {
                m.clear();
            }
            m.insert(key.to_string(), v.clone());
        }
        Ok(v)
    }
}
