//! The roles and project grants a user record holds, as stored: their names and how they
//! are parsed. What a role may do (its scopes) is for `auth::access` to say.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manage users, agents, tokens, keys; every connection and project.
    Admin,
    /// Write and run queries on connections shared with them; manage their projects.
    Editor,
    /// View the rendered results of projects shared with them.
    Viewer,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Role::Admin),
            "editor" => Some(Role::Editor),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a collaborator may do with a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Grant {
    /// The rendered results only.
    #[serde(rename = "view-app")]
    ViewApp,
    /// Also the SQL and render specs.
    #[serde(rename = "view-logic")]
    ViewLogic,
    /// Change the queries (and see everything).
    #[serde(rename = "edit")]
    Edit,
}

impl Grant {
    /// The grant's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Grant::ViewApp => "view-app",
            Grant::ViewLogic => "view-logic",
            Grant::Edit => "edit",
        }
    }

    /// Parses a grant name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "view-app" => Some(Grant::ViewApp),
            "view-logic" => Some(Grant::ViewLogic),
            "edit" => Some(Grant::Edit),
            _ => None,
        }
    }
}
