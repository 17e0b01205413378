//! The vault's cryptography: AES-256-GCM sealing with associated data, and the
//! Argon2id stretching of a passphrase into a master key.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use outpost_protocol::encoding::{b64_decode, b64_encode};
use secrecy::{ExposeSecret as _, SecretString};
use zeroize::Zeroizing;

use super::{Argon2Params, Sealed, VaultError, AAD_ENTRY};

pub(super) fn random<const N: usize>() -> Result<[u8; N], VaultError> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| VaultError::Invalid("the system random generator failed".into()))?;
    Ok(b)
}

pub(super) fn seal(key: &[u8; 32], aad: &str, plaintext: &[u8]) -> Result<Sealed, VaultError> {
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| VaultError::Invalid("bad key".into()))?);
    let nonce = random::<NONCE_LEN>()?;
    let mut buf = plaintext.to_vec();
    k.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut buf)
        .map_err(|_| VaultError::Invalid("encryption failed".into()))?;
    Ok(Sealed { nonce: b64_encode(&nonce), ciphertext: b64_encode(&buf) })
}

/// `None` when the tag does not verify.
pub(super) fn open(key: &[u8; 32], aad: &str, sealed: &Sealed) -> Option<Zeroizing<Vec<u8>>> {
    let k = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let nonce: [u8; NONCE_LEN] = b64_decode(&sealed.nonce).ok()?.try_into().ok()?;
    let mut buf = Zeroizing::new(b64_decode(&sealed.ciphertext).ok()?);
    let len = k.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut buf).ok()?.len();
    buf.truncate(len);
    Some(buf)
}

pub(super) fn entry_aad(name: &str, data_key_id: &str) -> String {
    format!("{AAD_ENTRY}\0{name}\0{data_key_id}")
}

pub(super) fn stretch(passphrase: &SecretString, p: &Argon2Params) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    let salt = b64_decode(&p.salt).map_err(|e| VaultError::Invalid(format!("vault salt: {e}")))?;
    let params = argon2::Params::new(p.m_kib, p.t, p.p, Some(32))
        .map_err(|e| VaultError::Invalid(format!("Argon2 parameters: {e}")))?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    a.hash_password_into(passphrase.expose_secret().as_bytes(), &salt, key.as_mut())
        .map_err(|e| VaultError::Invalid(format!("Argon2: {e}")))?;
    Ok(key)
}
