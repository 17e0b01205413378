//! Unit tests of the vault: sealing, master key sources, rotation and locks.

use super::*;

fn no_prompt() -> PassphrasePrompt<'static> {
    &|_| Err(VaultError::NoKey("no terminal in tests".into()))
}

fn settings(dir: &Path, source: MasterKeySource, creds: Option<&Path>) -> KeySettings {
    KeySettings { source, key_file: dir.join(KEY_FILE), credentials_dir: creds.map(Path::to_owned) }
}

#[test]
fn secrets_round_trip_never_appear_in_the_file_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(dir.path(), MasterKeySource::Auto, None);
    let mut v = Vault::open_or_create(dir.path(), &s, no_prompt()).expect("create");
    v.set("warehouse", &SecretString::from("hunter2-canary".to_owned()), 100).expect("set");
    let text = std::fs::read_to_string(dir.path().join(VAULT_FILE)).expect("read");
    assert!(!text.contains("hunter2-canary"));
    use std::os::unix::fs::PermissionsExt;
    for f in [VAULT_FILE, KEY_FILE] {
        let mode = std::fs::metadata(dir.path().join(f)).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
    let v = Vault::open(dir.path(), &s, no_prompt()).expect("reopen");
    assert_eq!(v.get("warehouse").expect("get").expect("some").expose_secret(), "hunter2-canary");
    assert_eq!(v.list(), vec![("warehouse".to_owned(), 100)]);
    assert!(!format!("{v:?}").contains("hunter2"));
}

#[test]
fn a_wrong_key_is_a_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(dir.path(), MasterKeySource::Auto, None);
    let mut v = Vault::open_or_create(dir.path(), &s, no_prompt()).expect("create");
    v.set("db", &SecretString::from("x".to_owned()), 1).expect("set");
    let before = std::fs::read(dir.path().join(VAULT_FILE)).expect("read");
    fsutil::write_private(&dir.path().join(KEY_FILE), &[7u8; 32]).expect("swap key");
    let err = Vault::open(dir.path(), &s, no_prompt()).expect_err("wrong key");
    assert!(matches!(err, VaultError::WrongKey { .. }), "{err}");
    assert!(err.to_string().contains("key file"), "{err}");
    assert_eq!(std::fs::read(dir.path().join(VAULT_FILE)).expect("read"), before);
    // A missing key file is not silently replaced for an existing vault.
    std::fs::remove_file(dir.path().join(KEY_FILE)).expect("rm");
    let err = Vault::open(dir.path(), &s, no_prompt()).expect_err("no key");
    assert!(err.to_string().contains("restore the key file"), "{err}");
    assert!(!dir.path().join(KEY_FILE).exists());
}

#[test]
fn a_systemd_credential_is_preferred_and_hex_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = tempfile::tempdir().expect("creds");
    std::fs::write(creds.path().join(SYSTEMD_KEY), format!("{}\n", "ab".repeat(32))).expect("cred");
    let s = settings(dir.path(), MasterKeySource::Auto, Some(creds.path()));
    let mut v = Vault::open_or_create(dir.path(), &s, no_prompt()).expect("create");
    assert_eq!(v.sealed_with(), "systemd");
    assert!(!dir.path().join(KEY_FILE).exists(), "no key file when systemd provides the key");
    v.set("db", &SecretString::from("pw".to_owned()), 1).expect("set");
    // Without the credential, the vault does not open with a (new) key file.
    let without = settings(dir.path(), MasterKeySource::KeyFile, None);
    let err = Vault::open(dir.path(), &without, no_prompt()).expect_err("no credential");
    assert!(err.to_string().contains("restore the key file"), "{err}");
}

#[test]
fn a_passphrase_vault_opens_only_with_its_passphrase() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(dir.path(), MasterKeySource::Passphrase, None);
    let good: PassphrasePrompt<'_> = &|_| Ok(SecretString::from("correct horse".to_owned()));
    let bad: PassphrasePrompt<'_> = &|_| Ok(SecretString::from("wrong horse".to_owned()));
    let mut v = Vault::open_or_create(dir.path(), &s, good).expect("create");
    v.set("db", &SecretString::from("pw".to_owned()), 1).expect("set");
    assert!(matches!(Vault::open(dir.path(), &s, bad), Err(VaultError::WrongKey { .. })));
    assert_eq!(
        Vault::open(dir.path(), &s, good).expect("open").get("db").expect("get").expect("some").expose_secret(),
        "pw"
    );
}

#[test]
fn a_sealed_value_moved_to_another_name_does_not_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(dir.path(), MasterKeySource::Auto, None);
    let mut v = Vault::open_or_create(dir.path(), &s, no_prompt()).expect("create");
    v.set("a", &SecretString::from("secret-a".to_owned()), 1).expect("set");
    v.set("b", &SecretString::from("secret-b".to_owned()), 1).expect("set");
    let path = dir.path().join(VAULT_FILE);
    let mut file: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
    file["entries"]["b"] = file["entries"]["a"].clone();
    fsutil::write_private(&path, &serde_json::to_vec(&file).expect("json")).expect("write");
    let v = Vault::open(dir.path(), &s, no_prompt()).expect("open");
    assert!(matches!(v.get("b"), Err(VaultError::Tampered { .. })));
    assert_eq!(v.get("a").expect("a").expect("some").expose_secret(), "secret-a");
}

#[test]
fn rotating_the_data_key_keeps_every_secret_and_changes_the_cache_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = settings(dir.path(), MasterKeySource::Auto, None);
    let mut v = Vault::open_or_create(dir.path(), &s, no_prompt()).expect("create");
    v.set("a", &SecretString::from("secret-a".to_owned()), 7).expect("set");
    let before = std::fs::read(dir.path().join(VAULT_FILE)).expect("read");
    let (old_cache, old_id) = (v.cache_key().expect("key"), v.data_key_id().to_owned());
    let (from, to) = v.rotate_data_key().expect("rotate");
    assert_eq!((from.as_str(), to.as_str()), (old_id.as_str(), v.data_key_id()));
    assert_ne!(from, to);
    assert_ne!(*old_cache, *v.cache_key().expect("key"), "old cache entries become unreadable");
    let v = Vault::open(dir.path(), &s, no_prompt()).expect("reopen");
    assert_eq!(v.data_key_id(), to);
    assert_eq!(v.get("a").expect("a").expect("some").expose_secret(), "secret-a");
    assert_eq!(v.list(), vec![("a".to_owned(), 7)], "set-at times are kept");
    // The old file's sealed secret does not open under the new data key.
    let old: VaultFile = serde_json::from_slice(&before).expect("json");
    assert!(open(&v.data_key, &entry_aad("a", &to), &old.entries["a"].sealed).is_none());
}

#[test]
fn the_run_lock_is_exclusive_until_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let held = StateLock::try_acquire(dir.path(), RUN_LOCK).expect("lock").expect("free");
    assert!(StateLock::try_acquire(dir.path(), RUN_LOCK).expect("lock").is_none());
    drop(held);
    assert!(StateLock::try_acquire(dir.path(), RUN_LOCK).expect("lock").is_some());
}
