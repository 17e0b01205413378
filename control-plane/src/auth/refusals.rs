//! Why an access check or an access name was refused: [`ScopeRefusal`] (a request
//! without the scope it needs), [`UnknownScope`] (a scope name nobody defined) and
//! [`InvalidName`] (a user or group name outside the allowed characters). Their texts
//! are what API clients and the CLI show.

use crate::auth::access::{Role, Scope};

/// A request lacks the scope it needs: its role never has it, or its API token was
/// created without it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScopeRefusal {
    /// The caller's role does not include the scope.
    #[error("your role ({role}) does not allow {scope}")]
    Role {
        /// The caller's role.
        role: Role,
        /// The scope needed.
        scope: Scope,
    },
    /// The role includes it but the API token was narrowed without it.
    #[error("this API token lacks the scope {scope}")]
    Token {
        /// The scope needed.
        scope: Scope,
    },
}

/// A scope name that is not one of [`Scope::ALL`] (or `*`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownScope {
    /// In a stored token row.
    #[error("unknown scope {name:?}")]
    Stored {
        /// The name found.
        name: String,
    },
    /// Given by a user; the text lists the known names.
    #[error("unknown scope {name:?}; known: *, {}", known_scopes())]
    Given {
        /// The name given.
        name: String,
    },
}

fn known_scopes() -> String {
    let known: Vec<_> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    known.join(", ")
}

/// A user or group name outside 1–64 characters of `a-z A-Z 0-9 . _ @ -` starting with
/// a letter or digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to 64 characters of letters, digits, '.', '_', '@' or '-', starting with a letter or digit")]
pub struct InvalidName;

#[cfg(test)]
mod tests {
    use super::InvalidName;

    /// The API (400) and `user add` show this rule as it was worded.
    #[test]
    fn an_invalid_name_states_the_rule() {
        assert_eq!(
            InvalidName.to_string(),
            "must be 1 to 64 characters of letters, digits, '.', '_', '@' or '-', starting with a letter or digit"
        );
    }
}
