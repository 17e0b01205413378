//! The Outpost agent: runs signed jobs against the customer's databases and sends back
//! only rendered results.
//!
//! Modules, one concern each: [`config`] (agent.yaml), [`identity`] (key, certificates,
//! enrolment record), [`enrol`] (token for certificate), [`transport`] (mutual TLS to the
//! control plane), [`daemon`] (start-up, the loops drained at shutdown, and the job
//! pipeline: verify, run, render, audit, report; also reachable as `runner`),
//! [`connectors`] (read-only database access), [`resultset`] (rows in memory only),
//! [`render`] (the only bytes that leave), [`scrub`] (what of a failure's error text leaves),
//! [`replay`] (jobs already accepted), [`audit`] (the local audit log),
//! [`backoff`] (jittered retries).
#![forbid(unsafe_code)]

pub mod audit;
pub use outpost_common::backoff;
pub mod cache;
pub mod config;
pub mod config_audit;
pub mod connectors;
pub mod control;
pub mod daemon;
pub mod enrol;
pub mod health;
pub mod identity;
pub mod keys;
pub mod metrics;
pub mod policy;
pub mod provenance;
pub mod proxy;
pub mod render;
pub mod replay;
pub mod resultset;
/// The daemon under its former name, so that `outpost_agent::runner::…` paths keep working.
pub use daemon as runner;
pub mod scrub;
pub mod service;
pub mod transport;
pub mod vault;

#[cfg(test)]
mod module_graph {
    //! No two top-level modules import each other, directly or through others: the
    //! `crate::X` paths of each module's code (not its comments or tests) form a graph
    //! without cycles, so each concern can be read and changed from the bottom up.

    use std::collections::{BTreeMap, BTreeSet};

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

    /// Top-level module -> the top-level modules its code names.
    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&root, &mut files);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in files {
            let rel = file.strip_prefix(&root).expect("under src").to_string_lossy().into_owned();
            let stem = file.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            if stem == "tests" || stem.ends_with("_tests") || stem == "testing" {
                continue;
            }
            let from = rel.split('/').next().unwrap_or_default().trim_end_matches(".rs").to_owned();
            if from == "lib" || from == "main" {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("readable");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (i, _) in line.match_indices("crate::") {
                    let to: String =
                        line[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    if !to.is_empty() && to != from {
                        graph.entry(from.clone()).or_default().insert(to);
                    }
                }
            }
        }
        graph
    }

    /// A cycle through `node`, if there is one (depth-first, with the path so far).
    fn cycle(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = cycle(graph, next, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }

    #[test]
    fn the_agents_modules_import_each_other_without_cycles() {
        let graph = graph();
        assert!(graph.len() > 10, "the source was read: {graph:?}");
        let mut done = BTreeSet::new();
        for node in graph.keys() {
            let found = cycle(&graph, node, &mut Vec::new(), &mut done);
            assert!(found.is_none(), "modules that import each other: {}", found.unwrap_or_default().join(" -> "));
        }
    }

    #[test]
    fn a_cycle_is_found() {
        let graph: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
            .into_iter()
            .map(|(x, y)| (x.to_owned(), BTreeSet::from([y.to_owned()])))
            .collect();
        let found = cycle(&graph, "a", &mut Vec::new(), &mut BTreeSet::new());
        assert_eq!(found, Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
    }
}
