//! The keys a pilot trusts for the index (`docs/keys.md`), kept in the journal.
//!
//! - The first key comes from the command line (`--public-key`).
//! - After each accepted index the pinned set becomes the key that signed it plus the
//!   successor it announces (`nextKey`): so a pilot follows a rotation, and a retired key
//!   stops being trusted once its successor has signed.
//! - A key given on the command line that differs from the one given last time and is not
//!   pinned replaces the whole set and resets the rollback floor: the recovery from a leaked
//!   key, after which a forged index with a huge serial no longer blocks every real one.
//!   Given again unchanged (every restart), it changes nothing.

use crate::journal::Journal;
use crate::Error;
use testpilot_flight::index::{
    key_id, parse_public_key, public_key_to_base64, Accepted, Trust, VerifyingKey,
};
use testpilot_flight::Timestamp;

fn ids(keys: &[VerifyingKey]) -> String {
    keys.iter().map(key_id).collect::<Vec<_>>().join(", ")
}

fn stored(journal: &Journal) -> Result<Vec<VerifyingKey>, Error> {
    journal
        .pinned_keys()?
        .iter()
        .map(|k| {
            parse_public_key(k).map_err(|e| Error::Journal {
                path: journal.path().to_path_buf(),
                msg: format!("a pinned key does not parse: {e}"),
            })
        })
        .collect()
}

fn encode(keys: &[VerifyingKey]) -> Vec<String> {
    keys.iter().map(public_key_to_base64).collect()
}

/// Pins the key given on the command line, as the module says. Returns the pinned set.
pub fn pin_given(
    journal: &mut Journal,
    given: &VerifyingKey,
    now: Timestamp,
) -> Result<Vec<VerifyingKey>, Error> {
    let pinned = stored(journal)?;
    let text = public_key_to_base64(given);
    let last_given = journal.meta("pinned_by_flag")?;
    let id = key_id(given);
    if pinned.is_empty() {
        journal.replace_pinned_keys(
            std::slice::from_ref(&text),
            Some(&text),
            false,
            now,
            &[format!(
                "pinned the tower's key {id} (given with --public-key)"
            )],
        )?;
        return Ok(vec![*given]);
    }
    if last_given.as_deref() == Some(text.as_str()) {
        return Ok(pinned);
    }
    if pinned.contains(given) {
        // Already trusted (e.g. the successor the index announced): keep the set and the floor.
        journal.replace_pinned_keys(&encode(&pinned), Some(&text), false, now, &[])?;
        return Ok(pinned);
    }
    let floor = journal
        .meta("last_serial")?
        .map(|s| format!("serial {s}"))
        .unwrap_or_else(|| "none".into());
    journal.replace_pinned_keys(
        std::slice::from_ref(&text),
        Some(&text),
        true,
        now,
        &[format!(
            "re-pinned: the key given with --public-key ({id}) replaces the pinned keys ({}); the rollback floor ({floor}) is reset, so the next index signed by {id} is accepted whatever its serial",
            ids(&pinned)
        )],
    )?;
    Ok(vec![*given])
}

/// The keys an index may be signed with: the journal's pinned set, or on a journal that has
/// none yet the keys `trust` names. `None` when unsigned indexes are trusted.
pub fn effective(journal: &Journal, trust: &Trust) -> Result<Option<Vec<VerifyingKey>>, Error> {
    let given: Vec<VerifyingKey> = match trust {
        Trust::InsecureUnsigned => return Ok(None),
        Trust::Pinned(k) => vec![**k],
        Trust::PinnedSet(ks) => ks.to_vec(),
    };
    let pinned = stored(journal)?;
    Ok(Some(if pinned.is_empty() { given } else { pinned }))
}

/// After an index was accepted with the keys `before`: pins what it says to pin, and says so
/// in the flight log when the set changes.
pub fn follow(
    journal: &mut Journal,
    before: &[VerifyingKey],
    accepted: &Accepted,
    now: Timestamp,
) -> Result<(), Error> {
    let after = accepted.pins();
    if after.is_empty() || after == before {
        return Ok(());
    }
    let serial = accepted.payload.serial;
    let signer = accepted.signed_by.as_ref().map(key_id).unwrap_or_default();
    let mut notes = Vec::new();
    for k in after.iter().filter(|k| !before.contains(k)) {
        if accepted.signed_by.as_ref() == Some(k) {
            notes.push(format!(
                "pinned key {} (it signed index serial {serial})",
                key_id(k)
            ));
        } else {
            notes.push(format!(
                "pinned key {}: index serial {serial}, signed by {signer}, announces it as the next signing key",
                key_id(k)
            ));
        }
    }
    for k in before.iter().filter(|k| !after.contains(k)) {
        notes.push(format!(
            "key {} is no longer pinned: index serial {serial} is signed by {signer} and does not announce it",
            key_id(k)
        ));
    }
    journal.replace_pinned_keys(&encode(&after), None, false, now, &notes)
}
