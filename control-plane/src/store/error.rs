//! The store's errors: [`StoreError`], the same for both backends (the database's own
//! error kept as the source, with its causes), [`RedeemError`], why an enrolment
//! token was not accepted, and [`AccessRefusal`], why an access-control change was not
//! made.

/// Store failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database (or the way to it) said no; its own error, with the causes below
    /// it, is the source. The text repeats the source's own words on purpose: logs print
    /// this error alone (`error = %e`), and said it this way before the source was kept;
    /// the CLI prints each cause once (`main.rs`'s `error_text` skips a repeated one).
    #[error("{}: {source}", .backend.prefix())]
    Database {
        /// Which database.
        backend: DatabaseKind,
        /// What it said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The blocking task failed.
    #[error("database task failed: {0}")]
    Task(String),
    /// The agent is unknown or revoked; its requests are refused.
    #[error("agent {agent:?} is {}", if revoked_at.is_some() { "revoked" } else { "not enrolled" })]
    AgentRefused {
        /// Agent name.
        agent: String,
        /// When it was revoked, if it was.
        revoked_at: Option<i64>,
    },
    /// The certificate was issued before the agent's latest enrolment.
    #[error("agent {agent:?} was enrolled again at {enrolled_at}; this certificate is older")]
    CertificateSuperseded {
        /// Agent name.
        agent: String,
        /// Latest enrolment, unix seconds.
        enrolled_at: i64,
    },
    /// Another key-set change landed first.
    #[error("the key set changed meanwhile (now version {found}, expected {expected}); run the command again")]
    KeySetConflict {
        /// Version the change was built on.
        expected: u64,
        /// Version found.
        found: u64,
    },
    /// The job was signed with a key that no longer signs new jobs: retired, or no longer
    /// the active key (a rotation meanwhile), or unknown.
    #[error("signing key {key_id} no longer signs new jobs (rotated or retired meanwhile)")]
    KeyRetired {
        /// The key id.
        key_id: String,
    },
    /// The change would break an invariant (e.g. leave no enabled admin).
    #[error("{0}")]
    Conflict(String),
    /// A stored value could not be read back.
    #[error("corrupt row in {table}: {reason}")]
    Corrupt {
        /// Table.
        table: &'static str,
        /// Why.
        reason: String,
    },
}

impl StoreError {
    /// A failure of `backend`, caused by `source` (its error, or what went wrong in words).
    pub(crate) fn database(backend: DatabaseKind, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        StoreError::Database { backend, source: source.into() }
    }
}

/// The database behind a [`StoreError::Database`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    /// The embedded SQLite database.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl DatabaseKind {
    /// How its errors begin in the logs and in the CLI's messages.
    fn prefix(self) -> &'static str {
        match self {
            DatabaseKind::Sqlite => "database error",
            DatabaseKind::Postgres => "PostgreSQL",
        }
    }
}

/// Why an enrolment token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedeemError {
    /// No token with that id.
    #[error("unknown enrolment token")]
    Unknown,
    /// The id exists but the secret does not match: the token was altered.
    #[error("the enrolment token's secret does not match; it was altered or mistyped")]
    SecretMismatch,
    /// Bound to another agent.
    #[error("the enrolment token is bound to agent {bound:?}")]
    WrongAgent {
        /// The name it is bound to.
        bound: String,
    },
    /// Already used.
    #[error("the enrolment token was already used (at {used_at}); create a new one")]
    Used {
        /// Unix seconds.
        used_at: i64,
    },
    /// Past its TTL.
    #[error("the enrolment token expired at {expires_at}; create a new one")]
    Expired {
        /// Unix seconds.
        expires_at: i64,
    },
}

/// Why an access-control change (a group member, a share, a project grant) was not made:
/// the caller's mistake, not the database's. The texts are what API clients read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessRefusal {
    /// No user has that name.
    #[error("no user {name:?}")]
    NoUser {
        /// The name asked for.
        name: String,
    },
    /// No group has that name.
    #[error("no group {name:?}")]
    NoGroup {
        /// The name asked for.
        name: String,
    },
    /// The same connection is already shared with the same user or group.
    #[error("this connection is already shared with them")]
    AlreadyShared,
}

#[cfg(test)]
mod tests {
    use super::AccessRefusal;

    /// API clients read these texts (404 and 400 bodies, the 409 of a duplicate share);
    /// they are the words the store returned before the refusal was typed.
    #[test]
    fn access_refusals_keep_the_texts_api_clients_read() {
        assert_eq!(AccessRefusal::NoUser { name: "ed".into() }.to_string(), "no user \"ed\"");
        assert_eq!(AccessRefusal::NoGroup { name: "a\"b".into() }.to_string(), "no group \"a\\\"b\"");
        assert_eq!(AccessRefusal::AlreadyShared.to_string(), "this connection is already shared with them");
    }
}
