//! Rendered results at rest: AES-256-GCM with a key kept in a file beside the database
//! (`results.key`, 0600), never in it. Each body is sealed under a fresh random nonce with
//! the job id as associated data, so a body moved to another job's row does not open.
//!
//! Job envelopes (SQL, parameters, render spec) are sealed the same way before they reach
//! the database ([`ResultCipher::seal_envelope`]), with `envelope:` and the job id as
//! associated data, so a sealed result cannot stand in for an envelope or the reverse.
//!
//! The same file also keys [`ResultCipher::keyed_name`]: an HMAC-SHA256 (under a key
//! derived from `results.key` for that one purpose) that stands in the audit log for a
//! typed sign-in name that matches no account, which may be a password typed in the wrong
//! field.

use std::path::{Path, PathBuf};

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hmac;
use outpost_common::fsutil;
use outpost_protocol::ids::random_bytes;
use zeroize::Zeroizing;

/// File name of the results key in the data dir.
pub const RESULTS_KEY_FILE: &str = "results.key";

/// Failures of the results key.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The key file.
    #[error(transparent)]
    File(#[from] fsutil::FileError),
    /// Not 32 bytes.
    #[error("{0}: not a 32-byte AES-256 key")]
    BadKey(PathBuf),
}

/// Seals and opens rendered results. `Debug` shows nothing of the key.
pub struct ResultCipher {
    key: LessSafeKey,
    /// HMAC key for [`keyed_name`](Self::keyed_name), derived from the results key.
    names: hmac::Key,
}

/// How a sealed envelope starts in the `jobs.envelope` column (base64 follows). A value
/// without it is an envelope stored in clear by a version before sealing, read as is.
pub const SEALED_ENVELOPE_PREFIX: &str = "sealed1:";

/// What the results key is mixed with to derive the audit-name key (a key per purpose).
const NAME_KEY_LABEL: &[u8] = b"outpost control plane: audit log names v1";

impl std::fmt::Debug for ResultCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResultCipher([REDACTED])")
    }
}

impl ResultCipher {
    /// Loads `results.key` from `data_dir`, creating it (32 random bytes, 0600) if absent.
    /// Returns the cipher and whether the key was created now.
    pub fn load_or_create(data_dir: &Path) -> Result<(Self, bool), SealError> {
        let path = data_dir.join(RESULTS_KEY_FILE);
        let created = if path.exists() {
            false
        } else {
            let key = Zeroizing::new(random_bytes::<32>());
            fsutil::write_private(&path, key.as_ref())?;
            true
        };
        let bytes = Zeroizing::new(fsutil::read_private(&path, 64)?);
        let key = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::BadKey(path.clone()))?;
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &bytes), NAME_KEY_LABEL);
        let names = hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref());
        Ok((Self { key: LessSafeKey::new(key), names }, created))
    }

    /// A job's envelope JSON as stored: [`SEALED_ENVELOPE_PREFIX`] and base64 of its
    /// sealed bytes, bound to the job.
    pub fn seal_envelope(&self, job_id: &str, envelope_json: &str) -> String {
        let sealed = self.seal(&format!("envelope:{job_id}"), envelope_json.as_bytes());
        format!("{SEALED_ENVELOPE_PREFIX}{}", outpost_protocol::encoding::b64_encode(&sealed))
    }

    /// The envelope JSON of a stored value from [`seal_envelope`](Self::seal_envelope)
    /// (or a clear one from before sealing); `None` when it does not open for this job
    /// under this key.
    pub fn open_envelope(&self, job_id: &str, stored: &str) -> Option<String> {
        let Some(b64) = stored.strip_prefix(SEALED_ENVELOPE_PREFIX) else {
            return Some(stored.to_owned());
        };
        let sealed = outpost_protocol::encoding::b64_decode(b64).ok()?;
        String::from_utf8(self.open(&format!("envelope:{job_id}"), &sealed)?).ok()
    }

    /// `unknown:` and the first 16 bytes (hex) of HMAC-SHA256 of `typed` under this control
    /// plane's name key: the same typed name gives the same value (so repeated guesses can
    /// be told apart and counted), and nobody without `results.key` can test a guess
    /// against it.
    pub fn keyed_name(&self, typed: &str) -> String {
        let tag = hmac::sign(&self.names, typed.as_bytes());
        format!("unknown:{}", outpost_protocol::encoding::hex(&tag.as_ref()[..16]))
    }

    /// `nonce || ciphertext || tag` of `plain`, bound to `job_id`.
    pub fn seal(&self, job_id: &str, plain: &[u8]) -> Vec<u8> {
        let nonce = random_bytes::<NONCE_LEN>();
        let mut out = Vec::with_capacity(NONCE_LEN + plain.len() + 16);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        // Sealing with a valid key and a 12-byte nonce fails only past 64 GiB of input,
        // far above the request body cap.
        if self
            .key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(job_id.as_bytes()), &mut body)
            .is_err()
        {
            return Vec::new();
        }
        out.extend_from_slice(&body);
        out
    }

    /// Opens what [`seal`](Self::seal) produced for `job_id`; `None` when it was altered,
    /// moved to another job, or sealed under another key.
    pub fn open(&self, job_id: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN + 16 {
            return None;
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = rest.to_vec();
        let plain = self.key.open_in_place(nonce, Aad::from(job_id.as_bytes()), &mut buf).ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_results_open_only_for_their_job_and_key() {
        let dir = tempfile::tempdir().expect("dir");
        let (c, created) = ResultCipher::load_or_create(dir.path()).expect("key");
        assert!(created);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join(RESULTS_KEY_FILE)).expect("meta").permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        let sealed = c.seal("job-a", b"<svg>secret chart</svg>");
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        assert_eq!(c.open("job-a", &sealed).as_deref(), Some(&b"<svg>secret chart</svg>"[..]));
        assert_eq!(c.open("job-b", &sealed), None, "bound to the job id");
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert_eq!(c.open("job-a", &flipped), None, "tampered");
        let (again, created) = ResultCipher::load_or_create(dir.path()).expect("reload");
        assert!(!created);
        assert!(again.open("job-a", &sealed).is_some(), "the same key after a restart");
        let other = tempfile::tempdir().expect("dir");
        let (stranger, _) = ResultCipher::load_or_create(other.path()).expect("key");
        assert_eq!(stranger.open("job-a", &sealed), None, "another key");
        // Envelopes: sealed, bound to their job, never a result in their place.
        let stored = c.seal_envelope("job-a", "{\"sql\":\"SELECT secret\"}");
        assert!(stored.starts_with(SEALED_ENVELOPE_PREFIX) && !stored.contains("secret"));
        assert_eq!(c.open_envelope("job-a", &stored).as_deref(), Some("{\"sql\":\"SELECT secret\"}"));
        assert_eq!(c.open_envelope("job-b", &stored), None);
        let as_envelope = format!("{SEALED_ENVELOPE_PREFIX}{}", outpost_protocol::encoding::b64_encode(&sealed));
        assert_eq!(c.open_envelope("job-a", &as_envelope), None, "a sealed result is no envelope");
        assert_eq!(c.open_envelope("job-a", "{\"old\":1}").as_deref(), Some("{\"old\":1}"), "clear rows from before");
        // The audit log's stand-in for a typed name: stable per key, never the name.
        let k = c.keyed_name("hunter2-password");
        assert!(k.starts_with("unknown:") && !k.contains("hunter2"), "{k}");
        assert_eq!(k, again.keyed_name("hunter2-password"));
        assert_ne!(k, stranger.keyed_name("hunter2-password"));
    }
}
