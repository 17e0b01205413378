//! The Outpost control plane: enrols agents, signs jobs the API asks for, hands them to
//! agents over mutual TLS and keeps their rendered results.
//!
//! The folders are the layers, lowest first:
//! - [`clock`]: the one time source (system, or manual in tests); beside it [`crypto`]: the CA and certificates ([`crypto::pki`]), the job-signing key files
//!   ([`crypto::signing`]), results and job envelopes sealed at rest ([`crypto::sealing`]).
//! - [`store`]: persistence behind narrow traits — jobs, agents, keys ([`store`]), users,
//!   tokens, grants, projects, and the roles and grants they hold ([`store::access`]), on
//!   SQLite (`store::sqlite`, `store::access::sqlite`) or PostgreSQL
//!   ([`store::postgres`], `store::access::postgres`), one topic per file, chosen by
//!   [`store::backend`]; numbered migrations (`store::migrations`); leases that skip
//!   damaged rows ([`store::queue`]).
//! - [`auth`]: scopes, callers and passwords ([`auth::access`]), bounded password hashing
//!   ([`auth::password_work`]), the sign-in throttle ([`auth::throttle`]), the single
//!   sign-on client ([`auth::oidc`]), embed tokens ([`auth::embed`]); beside it
//!   [`config`] (control-plane.yaml) and [`http`] (bodies, JSON answers and the error
//!   shape every handler answers with).
//! - The operations: [`app`] (the running control plane: `init`, the signing-key ring,
//!   dispatch, revocation, retention, wake-ups between replicas, the schema cache),
//!   [`hub`] (wake-ups), [`enrolment`] (its audit records, token list, throttle),
//!   [`audit_heads`] (the agents' signed audit-log heads), [`redact`] (failure text kept
//!   from callers who may not read the SQL).
//! - [`api`]: the API — route table, authentication and audit ([`api`]), handlers for jobs
//!   and agents ([`api::jobs`]), enrolment tokens ([`api::enrolment`]), users, tokens and
//!   shares ([`api::access`]), projects ([`api::projects`]), and its description
//!   ([`api::openapi`]); [`console`]: the web console's pages, its single sign-on pages
//!   ([`console::sso`]) and its SVG sanitiser ([`console::sanitize_svg`]).
//! - [`net`]: TLS listeners and connections ([`net::server`]) and the agent listener's
//!   handlers ([`net::agent_api`]).
//!
//! A module may use the layers below it and its own, never one above:
//! `layers::tests` checks every `crate::` path in the source (outside tests).
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod audit_heads;
pub mod auth;
pub mod clock;
pub mod config;
pub mod console;
pub mod crypto;
pub mod enrolment;
pub mod http;
pub mod hub;
pub mod net;
pub mod redact;
pub mod store;

#[cfg(test)]
mod layers {
    //! The layering above, checked over the source: every `crate::X` a module names
    //! (outside its tests) must be at its own layer or below, except the listed ones.

    #[cfg(test)]
    mod tests {
        use std::collections::BTreeSet;

        /// Layer of each top-level module (and `main.rs`), lowest first.
        fn layer(module: &str) -> Option<u8> {
            Some(match module {
                "crypto" | "clock" => 0,
                "store" => 1,
                // control-plane.yaml's types name roles (auth) and store options; the
                // HTTP answers and errors turn store errors into responses.
                "auth" | "config" | "http" => 2,
                "hub" | "app" | "enrolment" | "audit_heads" | "redact" => 3,
                "api" | "console" => 4,
                "net" => 5,
                "main" => 6,
                _ => return None,
            })
        }

        /// The upward imports of today, from -> to. Only ever shrinks; issue 22 emptied it.
        const UPWARD: &[(&str, &str)] = &[];

        fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).expect("source dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    sources(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }

        #[test]
        fn no_module_imports_a_layer_above_it_beyond_the_listed_ones() {
            let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
            let mut files = Vec::new();
            sources(&root, &mut files);
            let mut upward = BTreeSet::new();
            for file in files {
                let rel = file.strip_prefix(&root).expect("under src").to_string_lossy().into_owned();
                let from = rel.split('/').next().unwrap_or_default().trim_end_matches(".rs").to_owned();
                if from == "lib" {
                    continue;
                }
                let text = std::fs::read_to_string(&file).expect("readable");
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for (i, _) in code.match_indices("crate::") {
                    let to: String =
                        code[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    if let (Some(a), Some(b)) = (layer(&from), layer(&to)) {
                        if b > a {
                            upward.insert((from.clone(), to));
                        }
                    }
                }
            }
            let listed: BTreeSet<(String, String)> =
                UPWARD.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect();
            let new: Vec<_> = upward.difference(&listed).collect();
            let gone: Vec<_> = listed.difference(&upward).collect();
            assert!(new.is_empty(), "imports that point up a layer (move the code, do not list them): {new:?}");
            assert!(gone.is_empty(), "no longer upward: take them out of UPWARD: {gone:?}");
        }
    }
}
