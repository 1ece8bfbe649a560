//! Randomness for secrets: API tokens and the signing key's seed.

use crate::error::{Error, Result};

/// 32 random bytes from the operating system.
pub fn random_bytes() -> Result<[u8; 32]> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b)
        .map_err(|e| Error::Internal(format!("no randomness from the OS: {e}")))?;
    Ok(b)
}

/// A new API token: `tp_` and 64 hex digits (256 random bits).
pub fn new_secret() -> Result<String> {
    Ok(format!("tp_{}", hex::encode(random_bytes()?)))
}
