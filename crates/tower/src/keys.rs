//! The index signing keys (`docs/keys.md`): where their secrets come from, and rotation.
//!
//! A key's secret (its 32-byte Ed25519 seed) lives either in the database (the default, so
//! that `testpilot up` and SQLite setups need nothing else) or outside it, in a key file or
//! an environment variable given to every tower process ([`KeyRing`]); the database then
//! holds only the public key. The database says which key is current and which successor is
//! announced.
//!
//! Rotation is a two-person action: one person proposes a successor (the index starts
//! announcing it as `nextKey`, signed by the current key, and pilots pin it), and a
//! different person completes it (the tower signs with the successor from then on; the
//! retired key's secret is erased from the database). Both steps bump the index serial and
//! are in the audit log. The API and the CLI both go through [`propose`] and [`complete`].

use crate::api::AppState;
use crate::error::{Error, Result};
use crate::lifecycle::{permit, same_person, Action, Actor};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::Serialize;
use std::path::Path;
use testpilot_flight::index::{key_id, public_key_to_base64};

/// The environment variable that names a key file (like `--signing-key-file`).
pub const KEY_FILE_ENV: &str = "TESTPILOT_SIGNING_KEY_FILE";
/// The environment variable that holds a seed itself, in the key file's format.
pub const KEY_ENV: &str = "TESTPILOT_SIGNING_KEY";

/// Signing keys whose secrets are kept outside the database, by key id.
#[derive(Clone, Default)]
pub struct KeyRing {
    keys: Vec<SigningKey>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self
            .keys
            .iter()
            .map(|k| key_id(&k.verifying_key()))
            .collect();
        f.debug_struct("KeyRing").field("key_ids", &ids).finish()
    }
}

impl KeyRing {
    pub fn new(keys: Vec<SigningKey>) -> KeyRing {
        let mut ring = KeyRing::default();
        for k in keys {
            ring.add(k);
        }
        ring
    }

    pub fn add(&mut self, key: SigningKey) {
        if self.get(&key_id(&key.verifying_key())).is_none() {
            self.keys.push(key);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The first key given: the one a new database starts signing with.
    pub fn first(&self) -> Option<&SigningKey> {
        self.keys.first()
    }

    /// The key with this key id.
    pub fn get(&self, id: &str) -> Option<&SigningKey> {
        self.keys
            .iter()
            .find(|k| key_id(&k.verifying_key()).eq_ignore_ascii_case(id))
    }

    /// The keys given to a tower process: a key file (`--signing-key-file` or
    /// `TESTPILOT_SIGNING_KEY_FILE`) and a seed in `TESTPILOT_SIGNING_KEY` (`env_seed`), in
    /// that order. Empty when neither is given: the database keeps the key.
    pub fn from_sources(file: Option<&Path>, env_seed: Option<&str>) -> Result<KeyRing> {
        let mut ring = match file {
            Some(f) => KeyRing::from_file(f)?,
            None => KeyRing::default(),
        };
        if let Some(text) = env_seed.filter(|t| !t.trim().is_empty()) {
            for k in parse_keys(text).map_err(|e| Error::Config(format!("{KEY_ENV}: {e}")))? {
                ring.add(k);
            }
        }
        Ok(ring)
    }

    /// Reads a key file, refusing one that other users can read or write.
    pub fn from_file(path: &Path) -> Result<KeyRing> {
        if let Some(loose) = crate::private::looseness(path) {
            return Err(Error::Config(format!(
                "the signing key file {loose}; a key others can read lets them sign indexes every pilot trusts"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "cannot read the signing key file {}: {e}",
                path.display()
            ))
        })?;
        parse_keys(&text)
            .map(KeyRing::new)
            .map_err(|e| Error::Config(format!("the signing key file {}: {e}", path.display())))
    }
}

/// Reads the key file format (`docs/keys.md`): one seed per line, as standard base64 of its
/// 32 bytes (44 characters) or as 64 hex digits; blank lines and lines starting with `#` are
/// ignored. At least one seed.
pub fn parse_keys(text: &str) -> std::result::Result<Vec<SigningKey>, String> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        keys.push(parse_seed(line).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    if keys.is_empty() {
        return Err("it holds no key (one seed per line: base64 of 32 bytes)".into());
    }
    Ok(keys)
}

fn parse_seed(text: &str) -> std::result::Result<SigningKey, String> {
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text).map_err(|e| e.to_string())?
    } else {
        B64.decode(text).map_err(|_| {
            "not a seed: expected standard base64 of 32 bytes (44 characters) or 64 hex digits"
                .to_string()
        })?
    };
    let seed: [u8; 32] = bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("an Ed25519 seed is 32 bytes, this is {}", b.len()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Writes a new key file at `path` (which must not exist) holding a fresh seed, mode `0600`
/// from the start. Returns the key.
pub fn generate_file(path: &Path) -> Result<SigningKey> {
    let key = SigningKey::from_bytes(&crate::auth::random_bytes()?);
    let text = format!(
        "# Test Pilot index signing key {} (Ed25519 seed, base64). Keep it private.\n{}\n",
        key_id(&key.verifying_key()),
        B64.encode(key.to_bytes())
    );
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o.open(path).map_err(|e| {
        Error::Config(format!(
            "cannot create the key file {}: {e}",
            path.display()
        ))
    })?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(key)
}

/// A key as the API shows it (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    #[serde(rename = "keyId")]
    pub key_id: String,
    /// Standard base64 of the 32-byte public key.
    #[serde(rename = "publicKey")]
    pub public_key: String,
    /// Where the secret is: `database` or `outside` (a key file or environment variable).
    pub secret: String,
    /// Who proposed it (a successor, or a key that was one).
    #[serde(rename = "proposedBy", skip_serializing_if = "Option::is_none")]
    pub proposed_by: Option<String>,
}

/// The keys of a tower: what `GET /api/v1/keys` and the rotation routes answer.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct KeyStatus {
    /// The key that signs the index.
    pub current: KeyInfo,
    /// The announced successor, during a rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<KeyInfo>,
    /// The index serial after the action (rotation routes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    /// Said when single-user mode lifted the two-person rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

pub(crate) fn info(public: &VerifyingKey, in_db: bool, proposed_by: Option<String>) -> KeyInfo {
    KeyInfo {
        key_id: key_id(public),
        public_key: public_key_to_base64(public),
        secret: if in_db { "database" } else { "outside" }.to_string(),
        proposed_by,
    }
}

fn may_rotate(actor: &Actor) -> Result<()> {
    permit(actor, Action::RotateKey).map_err(Error::from)
}

/// The tower's keys.
pub async fn status(state: &AppState) -> Result<KeyStatus> {
    state.store.key_status().await
}

/// Proposes a rotation: `successor` is the public key of a seed kept outside the database
/// (it must be in the key file of the towers before the rotation is completed); without
/// one, the tower makes a seed and keeps it in the database. The index announces the
/// successor from now on. Replaces a successor proposed earlier and not completed.
pub async fn propose(
    state: &AppState,
    actor: &Actor,
    successor: Option<VerifyingKey>,
) -> Result<KeyStatus> {
    may_rotate(actor)?;
    let (public, secret) = match successor {
        Some(k) => (k, None),
        None => {
            let k = SigningKey::from_bytes(&crate::auth::random_bytes()?);
            (k.verifying_key(), Some(k))
        }
    };
    let now = state.clock.now();
    let out = state
        .store
        .propose_key(actor, &public, secret.as_ref(), now)
        .await?;
    state.refresh_index().await?;
    Ok(out)
}

/// Completes the pending rotation: the successor becomes the signing key. Needs a person
/// other than the one who proposed it (unless the tower runs in single-user mode, which the
/// answer and the audit log then say), and the successor's seed (in the database, or in
/// this tower's key file).
pub async fn complete(state: &AppState, actor: &Actor) -> Result<KeyStatus> {
    may_rotate(actor)?;
    let pending = state.store.key_status().await?;
    let Some(next) = pending.next else {
        return Err(Error::Conflict(
            "no rotation is pending: propose one first (`testpilot tower key rotate`)".into(),
        ));
    };
    let proposer = next.proposed_by.clone().unwrap_or_default();
    let own = same_person(&proposer, &actor.name);
    if own && !state.config.single_user {
        return Err(Error::Forbidden(format!(
            "`{proposer}` proposed this rotation, so `{}` cannot complete it: a rotation needs a second person",
            actor.name
        )));
    }
    if next.secret == "outside" && state.index.ring().get(&next.key_id).is_none() {
        return Err(Error::Conflict(format!(
            "the successor key {} is kept outside the database and this tower does not hold its seed: add it to the key file (--signing-key-file) of every tower, restart them, then complete the rotation",
            next.key_id
        )));
    }
    let warning = own.then(|| {
        "single-user mode: the rotation was completed by the person who proposed it, without a second person".to_string()
    });
    let now = state.clock.now();
    let mut out = state
        .store
        .complete_rotation(actor, &next.key_id, warning.as_deref(), now)
        .await?;
    state.refresh_index().await?;
    out.warning = warning;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_format() {
        let seed = [5u8; 32];
        let b64 = B64.encode(seed);
        let hexed = hex::encode(seed);
        let want = SigningKey::from_bytes(&seed).verifying_key();
        for text in [
            format!("{b64}\n"),
            format!("# comment\n\n  {hexed}  \n"),
            format!("{b64}\n{}\n", B64.encode([6u8; 32])),
        ] {
            let keys = parse_keys(&text).unwrap();
            assert_eq!(keys[0].verifying_key(), want, "{text}");
        }
        assert!(parse_keys("# nothing\n").unwrap_err().contains("no key"));
        let e = parse_keys(&format!("{b64}\nAAAA\n")).unwrap_err();
        assert!(e.starts_with("line 2:") && e.contains("32 bytes"), "{e}");
        assert!(parse_keys("not a key!").unwrap_err().contains("base64"));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = crate::testing::temp_dir("testpilot-keyfile");
        let path = dir.join("signing.key");
        let key = generate_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(generate_file(&path).is_err(), "never overwrites a key");
        let ring = KeyRing::from_file(&path).unwrap();
        assert!(ring.get(&key_id(&key.verifying_key())).is_some());

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = KeyRing::from_file(&path).unwrap_err().to_string();
        assert!(
            e.contains("mode 644") && e.contains(&format!("chmod 600 {}", path.display())),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
