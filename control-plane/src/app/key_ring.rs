//! The job-signing key ring as the store keeps it: the first key of a new installation,
//! the import of a data dir's single legacy key, rotation, retirement, and the public keys
//! an enrolling agent is given. Every change publishes a new key-set statement signed by
//! every key of the new set (see [`crate::crypto::signing`] for the keys' lifecycle and
//! files).

use std::path::Path;
use std::sync::Arc;

use outpost_common::fsutil::{self, FileError};
use outpost_protocol::encoding::b64_encode;
use outpost_protocol::enrol::PublishedKey;
use outpost_protocol::keyset::{KeySet, KeySetEntry, KeyStatus, MAX_KEYS};
use outpost_protocol::SigningKey;

use crate::crypto::signing::{self, SigningError, KEY_DIR, LEGACY_KEY_FILE};
use crate::store::backend::Backend;
use crate::store::{KeySetChange, SigningKeyRecord, Store, StoreError};

/// Key-ring failures.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// A key file.
    #[error(transparent)]
    Key(#[from] SigningError),
    /// Store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The operator asked for something the key ring does not allow.
    #[error("{0}")]
    Refused(String),
}

fn record(key: &SigningKey, status: &str, now: i64) -> SigningKeyRecord {
    SigningKeyRecord {
        key_id: key.key_id().0.clone(),
        public_key: b64_encode(&key.public_key()),
        status: status.to_owned(),
        created_at: now,
        activated_at: (status == "active").then_some(now),
        retired_at: None,
    }
}

fn status_of(s: &str) -> Option<KeyStatus> {
    match s {
        "active" => Some(KeyStatus::Active),
        "next" => Some(KeyStatus::Next),
        "previous" => Some(KeyStatus::Previous),
        _ => None,
    }
}

/// Builds the statement for the ring `keys` (retired ones are left out), signed by every
/// key in it, and commits it with the key rows that changed.
async fn publish(
    store: &Backend,
    data_dir: &Path,
    keys: &[SigningKeyRecord],
    changed: Vec<SigningKeyRecord>,
    version: u64,
    resign: Option<(String, Arc<SigningKey>)>,
    now: i64,
) -> Result<usize, KeyRingError> {
    let mut entries = Vec::new();
    let mut signers = Vec::new();
    for k in keys {
        if let Some(status) = status_of(&k.status) {
            entries.push(KeySetEntry { key_id: k.key_id.clone(), public_key: k.public_key.clone(), status });
            signers.push(signing::load(data_dir, &k.key_id)?);
        }
    }
    let set = KeySet { version, issued_at: now, keys: entries };
    set.check().map_err(|e| KeyRingError::Refused(e.to_string()))?;
    let statement = set.sign(&signers.iter().collect::<Vec<_>>());
    let statement_json = serde_json::to_string(&statement).map_err(|e| KeyRingError::Refused(e.to_string()))?;
    // Re-signing opens and re-seals the jobs' envelopes with the results key beside the
    // signing keys.
    let envelopes = match &resign {
        Some(_) => {
            // Never a new key here: one made now would not open the sealed envelopes.
            let path = data_dir.join(crate::crypto::sealing::RESULTS_KEY_FILE);
            if !path.is_file() {
                return Err(KeyRingError::Refused(format!(
                    "{} is missing: it seals the jobs' envelopes; restore it from the data dir's backup",
                    path.display()
                )));
            }
            Some(Arc::new(
                crate::crypto::sealing::ResultCipher::load_or_create(data_dir)
                    .map(|(c, _)| c)
                    .map_err(|e| KeyRingError::Refused(format!("the results key that seals job envelopes: {e}")))?,
            ))
        }
        None => None,
    };
    Ok(store.commit_key_set(KeySetChange { version, statement_json, keys: changed, resign, envelopes, now }).await?)
}

/// Creates the first key of a new installation (version 1 of the key set).
pub async fn init(store: &Backend, data_dir: &Path, now: i64) -> Result<String, KeyRingError> {
    let key = signing::generate(data_dir)?;
    let rec = record(&key, "active", now);
    publish(store, data_dir, std::slice::from_ref(&rec), vec![rec.clone()], 1, None, now).await?;
    Ok(rec.key_id)
}

/// Makes sure the ring exists: a data dir from before key rotation has one
/// `signing.key`, which becomes the ring's active key.
pub async fn ensure_ring(store: &Backend, data_dir: &Path, now: i64) -> Result<(), KeyRingError> {
    let (keys, _) = store.signing_keys().await?;
    if !keys.is_empty() {
        return Ok(());
    }
    let legacy = data_dir.join(LEGACY_KEY_FILE);
    if !legacy.exists() {
        return Err(KeyRingError::Refused(format!(
            "{}: no job-signing key in the database and no {LEGACY_KEY_FILE}; is this a data dir made by `init`?",
            data_dir.display()
        )));
    }
    let pkcs8 = zeroize::Zeroizing::new(fsutil::read_private(&legacy, 4096).map_err(SigningError::from)?);
    let key = SigningKey::from_pkcs8(&pkcs8)
        .map_err(|e| SigningError::BadKey { path: legacy.display().to_string(), reason: e.to_string() })?;
    fsutil::create_private_dir(&data_dir.join(KEY_DIR)).map_err(SigningError::from)?;
    fsutil::write_private(&signing::key_path(data_dir, &key.key_id().0), &pkcs8).map_err(SigningError::from)?;
    let rec = record(&key, "active", now);
    publish(store, data_dir, std::slice::from_ref(&rec), vec![rec.clone()], 1, None, now).await?;
    std::fs::remove_file(&legacy).map_err(|e| SigningError::from(FileError::Io { path: legacy.clone(), source: e }))?;
    tracing::info!(key_id = %rec.key_id, "Imported {LEGACY_KEY_FILE} as the active job-signing key.");
    Ok(())
}

/// What [`rotate`] did.
#[derive(Debug, Clone)]
pub struct Rotated {
    /// The key that now signs jobs, or the staged one.
    pub key: SigningKeyRecord,
    /// The key that signed jobs before (now `previous`), unless only staged.
    pub demoted: Option<String>,
    /// The new key-set version.
    pub version: u64,
}

/// Rotates the key ring. With `stage`, adds a `next` key that agents learn now and that
/// signs nothing until the next rotation. Without, makes the staged `next` key (or a new
/// one) active and the old active key `previous`; agents still accept jobs signed by it,
/// so nothing in flight is lost.
pub async fn rotate(store: &Backend, data_dir: &Path, stage: bool, now: i64) -> Result<Rotated, KeyRingError> {
    let (mut keys, version) = store.signing_keys().await?;
    let live = keys.iter().filter(|k| k.status != "retired").count();
    let staged = keys.iter().position(|k| k.status == "next");
    if let (true, Some(i)) = (stage, staged) {
        return Err(KeyRingError::Refused(format!(
            "key {} is already staged as next; run `signing-key rotate` to make it active",
            keys[i].key_id
        )));
    }
    if staged.is_none() && live >= MAX_KEYS {
        return Err(KeyRingError::Refused(format!(
            "the key set already holds {live} keys; retire a previous key first (`signing-key retire KEY_ID`)"
        )));
    }
    let mut changed = Vec::new();
    let new_index = match staged {
        Some(i) => i,
        None => {
            let key = signing::generate(data_dir)?;
            keys.push(record(&key, if stage { "next" } else { "active" }, now));
            keys.len() - 1
        }
    };
    let mut demoted = None;
    if !stage {
        for (i, k) in keys.iter_mut().enumerate() {
            if k.status == "active" && i != new_index {
                k.status = "previous".into();
                demoted = Some(k.key_id.clone());
                changed.push(k.clone());
            }
        }
        let new = &mut keys[new_index];
        new.status = "active".into();
        new.activated_at = Some(now);
    }
    changed.push(keys[new_index].clone());
    publish(store, data_dir, &keys, changed, version + 1, None, now).await?;
    Ok(Rotated { key: keys[new_index].clone(), demoted, version: version + 1 })
}

/// What [`retire`] did.
#[derive(Debug, Clone)]
pub struct Retired {
    /// Undelivered jobs re-signed with the active key.
    pub resigned: usize,
    /// The new key-set version.
    pub version: u64,
}

/// Retires a `previous` or `next` key: it leaves the key set, agents stop accepting it,
/// its undelivered jobs are re-signed by the active key, and its private key file is deleted.
pub async fn retire(store: &Backend, data_dir: &Path, key_id: &str, now: i64) -> Result<Retired, KeyRingError> {
    let (mut keys, version) = store.signing_keys().await?;
    let Some(i) = keys.iter().position(|k| k.key_id == key_id) else {
        return Err(KeyRingError::Refused(format!("no signing key {key_id:?}; `signing-key list` shows them")));
    };
    match keys[i].status.as_str() {
        "active" => {
            return Err(KeyRingError::Refused(format!(
                "{key_id} is the active key; run `signing-key rotate` first, then retire it"
            )))
        }
        "retired" => return Err(KeyRingError::Refused(format!("{key_id} is already retired"))),
        _ => {}
    }
    keys[i].status = "retired".into();
    keys[i].retired_at = Some(now);
    let active_id = keys.iter().find(|k| k.status == "active").map(|k| k.key_id.clone()).unwrap_or_default();
    let active = Arc::new(signing::load(data_dir, &active_id)?);
    let resigned =
        publish(store, data_dir, &keys, vec![keys[i].clone()], version + 1, Some((key_id.to_owned(), active)), now)
            .await?;
    let path = signing::key_path(data_dir, key_id);
    if let Err(e) = std::fs::remove_file(&path) {
        tracing::warn!(path = %path.display(), error = %e, "Could not delete the retired key's file; delete it by hand.");
    }
    Ok(Retired { resigned, version: version + 1 })
}

/// The public keys of the current set, for an enrolment response.
pub async fn published(store: &Backend) -> Result<(Vec<PublishedKey>, u64), StoreError> {
    let (keys, version) = store.signing_keys().await?;
    let published = keys
        .into_iter()
        .filter(|k| status_of(&k.status).is_some())
        .map(|k| PublishedKey { key_id: k.key_id, public_key: k.public_key })
        .collect();
    Ok((published, version))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::signing::{key_path, load};
    use crate::store::{NewJob, SqliteStore};
    use outpost_protocol::keyset::SignedKeySet;
    use outpost_protocol::{Envelope, TrustedKeys};

    async fn ring() -> (tempfile::TempDir, Backend, String) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Backend::Sqlite(SqliteStore::open(&dir.path().join("cp.db")).expect("open"));
        let first = init(&store, dir.path(), 100).await.expect("init");
        crate::crypto::sealing::ResultCipher::load_or_create(dir.path()).expect("results key");
        (dir, store, first)
    }

    fn job(id: &str, key: &SigningKey) -> NewJob {
        NewJob {
            id: id.into(),
            agent: "edge-1".into(),
            pool: None,
            connection: "sample".into(),
            envelope_json: serde_json::to_string(&key.sign_payload(b"{\"job\":1}")).expect("json"),
            key_id: key.key_id().0.clone(),
            created_at: 100,
            expires_at: 10_000,
            origin: Default::default(),
        }
    }

    async fn statements(store: &Backend) -> Vec<SignedKeySet> {
        let all = store.key_sets_after(0, 100).await.expect("sets");
        all.iter().map(|s| serde_json::from_str(s).expect("statement")).collect()
    }

    #[tokio::test]
    async fn rotate_then_retire_re_signs_undelivered_jobs_and_publishes_a_verifiable_chain() {
        let (dir, store, a_id) = ring().await;
        let a = load(dir.path(), &a_id).expect("a");
        store.insert_job(job("j1", &a)).await.expect("queue j1");
        store.insert_job(job("j2", &a)).await.expect("queue j2");

        let r = rotate(&store, dir.path(), false, 200).await.expect("rotate");
        assert_eq!(r.demoted.as_deref(), Some(a_id.as_str()));
        let b = load(dir.path(), &r.key.key_id).expect("b");
        assert_eq!(store.active_signing_key().await.expect("active"), Some(b.key_id().0.clone()));
        // A new job is signed by the active key: one under the previous key is refused
        // (the dispatcher learns of the rotation so and signs again); queued ones stay.
        assert!(matches!(store.insert_job(job("j-late", &a)).await, Err(StoreError::KeyRetired { .. })));
        store.insert_job(job("j-b", &b)).await.expect("the active key queues");

        // Without the results key the envelopes cannot be re-sealed: refused, nothing made.
        let results_key = dir.path().join(crate::crypto::sealing::RESULTS_KEY_FILE);
        let aside = dir.path().join("results.key.aside");
        std::fs::rename(&results_key, &aside).expect("move the key away");
        let err = retire(&store, dir.path(), &a_id, 300).await.expect_err("no results key");
        assert!(err.to_string().contains("results.key is missing"), "{err}");
        assert!(!results_key.exists(), "no new results key was made");
        std::fs::rename(&aside, &results_key).expect("restore");
        let retired = retire(&store, dir.path(), &a_id, 300).await.expect("retire");
        assert_eq!(retired.resigned, 2);
        assert!(!key_path(dir.path(), &a_id).exists(), "the retired private key file is deleted");
        assert!(matches!(store.insert_job(job("j3", &a)).await, Err(StoreError::KeyRetired { .. })));
        let mut only_b = TrustedKeys::new();
        only_b.insert(b.public_key());
        for id in ["j1", "j2"] {
            let env: String = {
                let c = rusqlite::Connection::open(dir.path().join("cp.db")).expect("db");
                c.query_row("SELECT envelope FROM jobs WHERE id = ?1", [id], |r| r.get(0)).expect("row")
            };
            // Re-sealed with the results key beside the signing keys.
            let (cipher, _) = crate::crypto::sealing::ResultCipher::load_or_create(dir.path()).expect("results key");
            let env = cipher.open_envelope(id, &env).expect("opens");
            let env: Envelope = serde_json::from_str(&env).expect("envelope");
            assert_eq!(env.key_id, b.key_id().0, "{id} re-signed by the active key");
        }

        // The published chain: v1 {a}, v2 {b, a} signed by both, v3 {b}. An agent that
        // trusted only a at enrolment follows it to b.
        let sets = statements(&store).await;
        assert_eq!(sets.len(), 3);
        let mut trusted = TrustedKeys::new();
        trusted.insert(a.public_key());
        let mut held = 1;
        for s in &sets[1..] {
            let v = s.verify(&trusted, held).expect("chain");
            trusted = v.keys;
            held = v.set.version;
        }
        assert_eq!(trusted, only_b);
    }

    #[tokio::test]
    async fn the_active_key_cannot_be_retired_and_a_staged_key_signs_nothing_until_rotation() {
        let (dir, store, a_id) = ring().await;
        assert!(matches!(retire(&store, dir.path(), &a_id, 150).await, Err(KeyRingError::Refused(_))));
        let staged = rotate(&store, dir.path(), true, 200).await.expect("stage");
        assert_eq!(staged.key.status, "next");
        assert_eq!(store.active_signing_key().await.expect("active"), Some(a_id.clone()));
        assert!(matches!(rotate(&store, dir.path(), true, 210).await, Err(KeyRingError::Refused(_))));
        let promoted = rotate(&store, dir.path(), false, 300).await.expect("promote");
        assert_eq!(promoted.key.key_id, staged.key.key_id, "rotate promotes the staged key");
        let (keys, version) = store.signing_keys().await.expect("keys");
        assert_eq!(version, 3);
        let status: Vec<_> = keys.iter().map(|k| (k.key_id.as_str(), k.status.as_str())).collect();
        assert!(status.contains(&(a_id.as_str(), "previous")), "{status:?}");
        assert!(status.contains(&(staged.key.key_id.as_str(), "active")), "{status:?}");
    }

    #[tokio::test]
    async fn a_legacy_signing_key_file_becomes_the_active_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Backend::Sqlite(SqliteStore::open(&dir.path().join("cp.db")).expect("open"));
        let (key, pkcs8) = SigningKey::generate().expect("key");
        fsutil::write_private(&dir.path().join(LEGACY_KEY_FILE), &pkcs8).expect("write");
        ensure_ring(&store, dir.path(), 100).await.expect("import");
        assert_eq!(store.active_signing_key().await.expect("active"), Some(key.key_id().0.clone()));
        assert!(!dir.path().join(LEGACY_KEY_FILE).exists());
        assert!(load(dir.path(), &key.key_id().0).is_ok());
    }
}
