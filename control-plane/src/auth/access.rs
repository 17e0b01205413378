//! Who may do what on the control plane: roles, scopes, project grants, the caller of a
//! request, and the secrets that identify callers (password hashes, API tokens, sessions).
//!
//! A request's rights are its user's **role** narrowed by the **scopes** of the credential
//! it came with: a session carries the whole role, an API token only the scopes it was
//! created with (checked against the user's role at every use, so demoting a user narrows
//! their tokens at once). Data access (connections shared with the user) and project grants
//! narrow further; the agent's own policy has the last word.

use std::fmt;

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use outpost_protocol::encoding::{hex, sha256_hex};
use outpost_protocol::ids::random_bytes;
use serde::Deserialize;
use zeroize::Zeroizing;

pub use crate::auth::refusals::{InvalidName, ScopeRefusal, UnknownScope};
pub use crate::store::access::{Grant, Role};

/// Prefix of API tokens, so that a leaked one is recognisable by secret scanners.
pub const API_TOKEN_PREFIX: &str = "opat_";
/// Prefix of session ids (the cookie's value).
pub const SESSION_PREFIX: &str = "opss_";
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "__Host-outpost_session";
/// Header that must repeat the session's CSRF token on every state-changing request
/// authenticated by the cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;
/// Longest password accepted (Argon2 input is bounded).
pub const MAX_PASSWORD_LEN: usize = 1024;

// A role is a stored value (`crate::store::access::Role`, re-exported here); what it
// may do is decided here.
impl Role {
    /// Everything the role may do.
    pub fn scopes(self) -> Scopes {
        use Scope::*;
        match self {
            Role::Admin => Scopes::ALL,
            Role::Editor => Scopes::of(&[
                AgentsRead,
                JobsDispatch,
                ResultsRead,
                ProjectsRead,
                ProjectsWrite,
                ProjectsRun,
                EmbedCreate,
                TokensWrite,
            ]),
            Role::Viewer => Scopes::of(&[ResultsRead, ProjectsRead, ProjectsRun, TokensWrite]),
        }
    }
}

/// One right, as named in API token scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// List agents (editors see only agents with a connection shared with them).
    AgentsRead,
    /// Revoke agents, create enrolment tokens.
    AgentsAdmin,
    /// Dispatch and cancel ad-hoc jobs on shared connections.
    JobsDispatch,
    /// Read the status and rendered result of jobs one may see.
    ResultsRead,
    /// List and read projects one has a grant on.
    ProjectsRead,
    /// Create, change, delete and share projects.
    ProjectsWrite,
    /// Run (refresh) projects one may view.
    ProjectsRun,
    /// Create embed tokens for projects one may edit.
    EmbedCreate,
    /// Create and revoke one's own API tokens.
    TokensWrite,
    /// Manage users, groups and connection shares.
    UsersAdmin,
    /// Read the control plane's audit log.
    AuditRead,
    /// Delete rendered results before their retention ends.
    ResultsPurge,
}

impl Scope {
    /// Every scope, in a stable order.
    pub const ALL: [Scope; 12] = [
        Scope::AgentsRead,
        Scope::AgentsAdmin,
        Scope::JobsDispatch,
        Scope::ResultsRead,
        Scope::ProjectsRead,
        Scope::ProjectsWrite,
        Scope::ProjectsRun,
        Scope::EmbedCreate,
        Scope::TokensWrite,
        Scope::UsersAdmin,
        Scope::AuditRead,
        Scope::ResultsPurge,
    ];

    /// The scope's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::AgentsRead => "agents:read",
            Scope::AgentsAdmin => "agents:admin",
            Scope::JobsDispatch => "jobs:dispatch",
            Scope::ResultsRead => "results:read",
            Scope::ProjectsRead => "projects:read",
            Scope::ProjectsWrite => "projects:write",
            Scope::ProjectsRun => "projects:run",
            Scope::EmbedCreate => "embed:create",
            Scope::TokensWrite => "tokens:write",
            Scope::UsersAdmin => "users:admin",
            Scope::AuditRead => "audit:read",
            Scope::ResultsPurge => "results:purge",
        }
    }

    /// Parses a scope name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u16);

impl Scopes {
    /// Every scope.
    pub const ALL: Scopes = Scopes((1 << Scope::ALL.len()) - 1);

    /// The set of `list`.
    pub fn of(list: &[Scope]) -> Self {
        Scopes(list.iter().fold(0, |acc, s| acc | s.bit()))
    }

    /// Whether `s` is in the set.
    pub fn has(self, s: Scope) -> bool {
        self.0 & s.bit() != 0
    }

    /// The scopes in both sets.
    pub fn intersect(self, other: Scopes) -> Scopes {
        Scopes(self.0 & other.0)
    }

    /// Whether every scope of `self` is in `other`.
    pub fn is_subset_of(self, other: Scopes) -> bool {
        self.0 & !other.0 == 0
    }

    /// The names, in a stable order.
    pub fn names(self) -> Vec<&'static str> {
        Scope::ALL.into_iter().filter(|s| self.has(*s)).map(Scope::as_str).collect()
    }

    /// Stored form: space-separated names, or `*` for "the whole role".
    pub fn to_stored(self) -> String {
        self.names().join(" ")
    }

    /// Parses the stored form; `*` means every scope (narrowed by the role at use).
    pub fn from_stored(s: &str) -> Result<Self, UnknownScope> {
        if s.trim() == "*" {
            return Ok(Scopes::ALL);
        }
        let mut out = Scopes::default();
        for name in s.split_whitespace() {
            out.0 |= Scope::parse(name).ok_or_else(|| UnknownScope::Stored { name: name.to_owned() })?.bit();
        }
        Ok(out)
    }

    /// Parses names given by a user; `*` means all of `ceiling`.
    pub fn parse_list(names: &[String], ceiling: Scopes) -> Result<Self, UnknownScope> {
        let mut out = Scopes::default();
        for name in names {
            if name == "*" {
                out.0 |= ceiling.0;
                continue;
            }
            let s = Scope::parse(name).ok_or_else(|| UnknownScope::Given { name: name.clone() })?;
            out.0 |= s.bit();
        }
        Ok(out)
    }
}

/// How a caller relates to a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectAccess {
    /// No access: the project is not shown.
    None,
    /// A grant from the owner.
    Granted(Grant),
    /// The owner.
    Owner,
    /// An admin, who sees every project.
    Admin,
}

impl ProjectAccess {
    /// May see the project and its rendered results.
    pub fn can_view(self) -> bool {
        !matches!(self, ProjectAccess::None)
    }
    /// May see SQL, parameters and render specs.
    pub fn can_see_logic(self) -> bool {
        matches!(
            self,
            ProjectAccess::Owner | ProjectAccess::Admin | ProjectAccess::Granted(Grant::ViewLogic | Grant::Edit)
        )
    }
    /// May change the queries.
    pub fn can_edit(self) -> bool {
        matches!(self, ProjectAccess::Owner | ProjectAccess::Admin | ProjectAccess::Granted(Grant::Edit))
    }
    /// May share, revoke embed tokens and delete.
    pub fn can_manage(self) -> bool {
        matches!(self, ProjectAccess::Owner | ProjectAccess::Admin)
    }
    /// Name shown in API answers.
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectAccess::None => "none",
            ProjectAccess::Granted(g) => g.as_str(),
            ProjectAccess::Owner => "owner",
            ProjectAccess::Admin => "admin",
        }
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A session cookie; holds the session's short id (first hex digits of its hash).
    Session {
        /// Short id, safe to log.
        id: String,
        /// SHA-256 of the cookie value (the stored key).
        hash: String,
        /// The session's CSRF token.
        csrf: String,
    },
    /// An API token; holds its id.
    Token {
        /// Token id.
        id: String,
    },
}

impl Credential {
    /// How the credential appears in the audit log.
    pub fn audit_name(&self) -> String {
        match self {
            Credential::Session { id, .. } => format!("session:{id}"),
            Credential::Token { id } => format!("token:{id}"),
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User id.
    pub user_id: String,
    /// User name.
    pub user: String,
    /// Role.
    pub role: Role,
    /// What this request may do: role ∩ credential scopes.
    pub scopes: Scopes,
    /// How it authenticated.
    pub credential: Credential,
}

impl Caller {
    /// Who a job signed for this caller names as its requester (signed into the job, so
    /// that the agent's audit log says who ran what).
    pub fn requester(&self, origin: &crate::store::JobOrigin) -> outpost_protocol::Requester {
        outpost_protocol::Requester {
            user_id: self.user_id.clone(),
            user: self.user.clone(),
            via: self.via(),
            project: origin.project_id.clone(),
            query: origin.query_index.and_then(|i| u32::try_from(i).ok()),
            customer: origin.customer.clone(),
        }
    }

    /// How the caller authenticated, as a job's requester names it: `session` or `token:ID`.
    pub fn via(&self) -> String {
        match &self.credential {
            Credential::Session { .. } => "session".into(),
            Credential::Token { id } => format!("token:{id}"),
        }
    }

    /// Whether the caller is an admin acting with admin rights.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Refuses unless the request carries `scope`; the message says whether the role
    /// or the token is what lacks it.
    pub fn require(&self, scope: Scope) -> Result<(), ScopeRefusal> {
        if self.scopes.has(scope) {
            return Ok(());
        }
        if !self.role.scopes().has(scope) {
            Err(ScopeRefusal::Role { role: self.role, scope })
        } else {
            Err(ScopeRefusal::Token { scope })
        }
    }
}

/// A password from a request or the terminal: a [`secrecy::SecretString`] (zeroed when
/// dropped), redacted in `Debug`.
#[derive(Clone)]
pub struct Password(secrecy::SecretString);

impl Password {
    /// Wraps a password.
    pub fn new(p: String) -> Self {
        Password(p.into())
    }
    /// The text, for hashing or verifying only.
    pub fn expose(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.0)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([REDACTED])")
    }
}

impl<'de> Deserialize<'de> for Password {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Password::new(String::deserialize(d)?))
    }
}

/// A new random secret with `prefix`, and the SHA-256 (hex) that is stored in its place.
pub fn new_secret(prefix: &str) -> (Zeroizing<String>, String) {
    let secret = Zeroizing::new(format!("{prefix}{}", hex(&random_bytes::<32>())));
    let hash = sha256_hex(secret.as_bytes());
    (secret, hash)
}

/// A new short random id (hex).
pub fn new_id() -> String {
    hex(&random_bytes::<8>())
}

/// A first console password for `init` to show once: 20 characters from an alphabet
/// without look-alikes (about 99 bits), in groups of five for reading it off a screen.
pub fn first_password() -> Zeroizing<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let bytes = Zeroizing::new(random_bytes::<20>());
    let mut out = Zeroizing::new(String::with_capacity(23));
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 && i % 5 == 0 {
            out.push('-');
        }
        // 256 % 31 = 8: a slight bias toward the first 8 letters, still > 98 bits in all.
        out.push(char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]));
    }
    out
}

/// Argon2id with the OWASP parameters (19 MiB, 2 passes, 1 lane).
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Why a password was refused.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// Too short or too long.
    #[error("password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters long")]
    Length,
    /// Hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// Hashes a password into a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let n = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&n) {
        return Err(PasswordError::Length);
    }
    let salt = SaltString::encode_b64(&random_bytes::<16>()).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let a = argon2();
    let mut raw = [0u8; 32];
    let mut salt_bytes = [0u8; 64];
    let salt_raw = salt.decode_b64(&mut salt_bytes).map_err(|e| PasswordError::Hash(e.to_string()))?;
    hash_with_reused_memory(&a, password.as_bytes(), salt_raw, &mut raw)
        .map_err(|e| PasswordError::Hash(e.to_string()))?;
    let output = argon2::password_hash::Output::new(&raw).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let p = a.params();
    Ok(format!("$argon2id$v=19$m={},t={},p={}${}${output}", p.m_cost(), p.t_cost(), p.p_cost(), salt.as_str()))
}

/// Largest memory cost a stored hash may ask for (KiB): a damaged or planted row must
/// not make a sign-in allocate without bound.
const MAX_STORED_M_COST: u32 = 256 * 1024;

thread_local! {
    /// Argon2's working memory, kept by each hashing thread and reused: allocated and
    /// freed per hash, glibc left every freed 19 MiB buffer resident (RSS grew by 19 MiB
    /// a sign-in).
    static BLOCKS: std::cell::RefCell<Vec<argon2::Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn hash_with_reused_memory(a: &Argon2<'_>, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), argon2::Error> {
    BLOCKS.with_borrow_mut(|blocks| {
        blocks.resize(a.params().block_count(), argon2::Block::default());
        a.hash_password_into_with_memory(password, salt, out, &mut blocks[..])
    })
}

/// A hash of a random password: verified against when the user does not exist or has no
/// password, so that a wrong user name costs as long as a wrong password.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&hex(&random_bytes::<16>())).unwrap_or_default())
}

/// Checks `password` against a stored PHC string (its own algorithm, version and
/// parameters); false for a malformed hash or one that asks for too much memory.
pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN * 4 {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let (Ok(algorithm), Ok(params)) = (Algorithm::try_from(parsed.algorithm), Params::try_from(&parsed)) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    if params.m_cost() > MAX_STORED_M_COST || expected.len() > 64 {
        return false;
    }
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else { return false };
    let mut out = [0u8; 64];
    let out = &mut out[..expected.len()];
    let a = Argon2::new(algorithm, version, params);
    hash_with_reused_memory(&a, password.as_bytes(), salt, out).is_ok()
        && outpost_protocol::encoding::constant_time_eq(out, expected.as_bytes())
}

/// Checks a user or group name: 1–64 characters of `a-z A-Z 0-9 . _ @ -`, starting with
/// a letter or digit (e-mail addresses fit).
pub fn validate_principal_name(name: &str) -> Result<(), InvalidName> {
    let ok_len = (1..=64).contains(&name.len());
    let ok_first = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_chars = name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if ok_len && ok_first && ok_chars {
        Ok(())
    } else {
        Err(InvalidName)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes made before (argon2's own hasher) still verify, and ours verify with
    /// argon2's own verifier: the stored format is unchanged.
    #[test]
    fn hashes_stay_compatible_with_argon2s_own_format() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let salt = SaltString::encode_b64(b"0123456789abcdef").expect("salt");
        let theirs = argon2().hash_password(b"correct horse battery", &salt).expect("hash").to_string();
        assert!(verify_password("correct horse battery", &theirs));
        assert!(!verify_password("correct horse batterx", &theirs));
        let ours = hash_password("correct horse battery").expect("hash");
        assert!(ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{ours}");
        let parsed = PasswordHash::new(&ours).expect("PHC");
        assert!(argon2().verify_password(b"correct horse battery", &parsed).is_ok());
        assert!(argon2().verify_password(b"wrong horse battery", &parsed).is_err());
        // Other parameters in a stored hash are honoured; absurd ones refused.
        let light = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(1024, 1, 1, None).expect("params"));
        let light = light.hash_password(b"correct horse battery", &salt).expect("hash").to_string();
        assert!(verify_password("correct horse battery", &light));
        let greedy = light.replace("m=1024", "m=4194304");
        assert!(!verify_password("correct horse battery", &greedy), "a 4 GiB hash is refused, not computed");
    }

    /// Verifying many times in one thread reuses Argon2's memory: resident size does not
    /// grow by 19 MiB a verification (it did with a fresh buffer each time).
    #[test]
    fn verifying_again_and_again_does_not_grow_memory() {
        let h = hash_password("correct horse battery").expect("hash");
        let rss = || {
            let s = std::fs::read_to_string("/proc/self/status").expect("status");
            let l = s.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS").to_owned();
            l.split_whitespace().nth(1).expect("kB").parse::<u64>().expect("number")
        };
        std::thread::spawn(move || {
            assert!(verify_password("correct horse battery", &h));
            let before = rss();
            for _ in 0..16 {
                assert!(!verify_password("not the password", &h));
            }
            // A fresh buffer each time kept ~300 MiB here; other tests running beside
            // this one in the process may hold a buffer or two of their own.
            let grown_mib = rss().saturating_sub(before) / 1024;
            assert!(grown_mib < 60, "resident size grew by {grown_mib} MiB over 16 verifications");
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn roles_nest_and_scopes_round_trip() {
        assert!(Role::Viewer.scopes().is_subset_of(Role::Editor.scopes()));
        assert!(Role::Editor.scopes().is_subset_of(Role::Admin.scopes()));
        assert!(!Role::Viewer.scopes().has(Scope::JobsDispatch));
        assert!(!Role::Editor.scopes().has(Scope::UsersAdmin));
        let s = Scopes::of(&[Scope::JobsDispatch, Scope::ResultsRead]);
        assert_eq!(s.to_stored(), "jobs:dispatch results:read");
        assert_eq!(Scopes::from_stored(&s.to_stored()).expect("parse"), s);
        assert_eq!(Scopes::from_stored("*").expect("star"), Scopes::ALL);
        assert_eq!(
            Scopes::from_stored("jobs:dispatch root"),
            Err(UnknownScope::Stored { name: "root".into() }),
            "a stored row names the scope it does not know"
        );
        let e = Scopes::parse_list(&["nope".into()], Scopes::ALL).expect_err("unknown");
        assert!(e.to_string().contains("known: *, agents:read"), "{e}");
    }

    #[test]
    fn a_token_narrower_than_the_role_is_told_apart_from_the_role() {
        let caller = Caller {
            user_id: "u".into(),
            user: "ed".into(),
            role: Role::Editor,
            scopes: Role::Editor.scopes().intersect(Scopes::of(&[Scope::ResultsRead])),
            credential: Credential::Token { id: "t".into() },
        };
        assert!(caller.require(Scope::ResultsRead).is_ok());
        assert_eq!(
            caller.require(Scope::JobsDispatch).expect_err("token").to_string(),
            "this API token lacks the scope jobs:dispatch"
        );
        assert_eq!(
            caller.require(Scope::UsersAdmin).expect_err("role").to_string(),
            "your role (editor) does not allow users:admin"
        );
    }

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse battery").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(matches!(hash_password("short"), Err(PasswordError::Length)));
        assert!(!verify_password("anything at all", decoy_hash()));
    }

    #[test]
    fn grants_order_what_they_show() {
        assert!(!ProjectAccess::Granted(Grant::ViewApp).can_see_logic());
        assert!(ProjectAccess::Granted(Grant::ViewLogic).can_see_logic());
        assert!(!ProjectAccess::Granted(Grant::ViewLogic).can_edit());
        assert!(ProjectAccess::Granted(Grant::Edit).can_edit());
        assert!(!ProjectAccess::Granted(Grant::Edit).can_manage());
        assert!(!ProjectAccess::None.can_view());
        assert!(validate_principal_name("ana.lyst@example.com").is_ok());
        assert_eq!(validate_principal_name("-x"), Err(InvalidName));
        assert!(validate_principal_name("a b").is_err());
    }
}
