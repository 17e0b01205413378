//! Random identifiers: job ids (UUID v4 text form) and nonces, from the system CSPRNG.

use crate::encoding::hex;

/// Fills `N` bytes from the operating system's CSPRNG.
///
/// # Panics
/// Only if the operating system cannot provide randomness, in which case no key,
/// nonce or token could be made safely and continuing would be worse.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut out).expect("the OS CSPRNG is unavailable");
    out
}

/// A new random UUID v4 in its text form, used as a job id.
pub fn new_job_id() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

/// A new 128-bit nonce as hex.
pub fn new_nonce() -> String {
    hex(&random_bytes::<16>())
}

/// Whether `s` is a job id as [`new_job_id`] makes them (36 chars of hex and dashes).
pub fn is_job_id(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_uuid_v4_and_unique() {
        let a = new_job_id();
        let b = new_job_id();
        assert!(is_job_id(&a), "{a}");
        assert_eq!(&a[14..15], "4");
        assert_ne!(a, b);
        assert!(!is_job_id("../../etc/passwd"));
    }
}
