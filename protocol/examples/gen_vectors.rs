//! (Re)writes the golden test vectors in `protocol/tests/vectors/`.
//!
//! ```text
//! cargo run -p outpost-protocol --example gen_vectors
//! ```
//!
//! Keys come from fixed seeds and the clock is fixed, so a rerun produces identical
//! files. Before writing, every vector is checked against this build's verifier; a
//! vector whose stated verdict this build does not reproduce is not written. Stale
//! `*.json` files that no case produces are removed, so the directory always holds
//! exactly the current cases (`tests/golden.rs` checks this too).

use std::collections::BTreeSet;
use std::error::Error;
use std::fs;

use outpost_protocol::VerifyError;

#[path = "../tests/vectors_gen/mod.rs"]
mod vectors_gen;

fn verdict(result: &Result<outpost_protocol::VerifiedJob, VerifyError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = vectors_dir_created()?;
    let cases = vectors_gen::cases();

    for case in &cases {
        let v = &case.vector;
        let keys = v.trusted_keys().map_err(|e| format!("{}: trusted keys: {e}", case.name))?;
        let result = v.envelope.verify(&keys, &v.verify_options());
        let got = verdict(&result);
        if got != v.expect {
            return Err(format!("{}: expected {}, but this build says {got} ({result:?})", case.name, v.expect).into());
        }
        if let (Ok(job), Some(expected)) = (&result, &v.expected_job) {
            if &job.spec != expected {
                return Err(format!("{}: verified job differs from expected_job", case.name).into());
            }
        }
    }

    let mut written = BTreeSet::new();
    for case in &cases {
        let file = format!("{}.json", case.name);
        if !written.insert(file.clone()) {
            return Err(format!("two cases are named {}", case.name).into());
        }
        fs::write(dir.join(&file), vectors_gen::render(&case.vector))?;
    }

    for entry in fs::read_dir(&dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if name.ends_with(".json") && !written.contains(&name) {
            fs::remove_file(&path)?;
            println!("removed stale {}", path.display());
        }
    }

    println!("wrote {} vectors to {}", written.len(), dir.display());
    Ok(())
}

fn vectors_dir_created() -> std::io::Result<std::path::PathBuf> {
    let dir = vectors_gen::vectors_dir();
    fs::create_dir_all(&dir)?;
    Ok(dir)
}
