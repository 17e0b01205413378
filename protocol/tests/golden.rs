//! Golden test vectors for signed job envelopes.
//!
//! The files in `tests/vectors/` are the language-neutral contract of envelope
//! verification (see `protocol/README.md`). They are written by
//! `cargo run -p outpost-protocol --example gen_vectors` from `tests/vectors_gen/mod.rs`.

use std::collections::BTreeSet;
use std::fs;

use outpost_protocol::encoding::{b64_decode, b64_encode};
use outpost_protocol::{Envelope, VerifyError};

mod vectors_gen;

use vectors_gen::Vector;

/// Cases that must exist; deleting one of their files fails
/// `vector_directory_holds_every_required_case`.
const REQUIRED_CASES: &[&str] = &[
    "valid",
    "valid_with_params",
    "expired",
    "not_yet_valid",
    "lifetime_too_long",
    "wrong_audience",
    "unknown_key",
    "bad_signature",
    "altered_payload",
    "relabelled_key_id",
    "unsupported_version",
    "malformed_payload",
    "malformed_base64",
];

const REGENERATE: &str = "regenerate with `cargo run -p outpost-protocol --example gen_vectors`";

/// Every `*.json` file in the vector directory, by file stem, sorted.
fn vector_files() -> Vec<(String, String)> {
    let dir = vectors_gen::vectors_dir();
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.expect("a directory entry can be read").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).expect("vector file names are UTF-8").to_owned();
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        out.push((stem, text));
    }
    out.sort();
    out
}

fn parse(name: &str, text: &str) -> Vector {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}.json is not a valid vector: {e}"))
}

fn verify(vector: &Vector, envelope: &Envelope) -> Result<outpost_protocol::VerifiedJob, VerifyError> {
    let keys = vector.trusted_keys().expect("every trusted key in a vector matches its stated key id");
    envelope.verify(&keys, &vector.verify_options())
}

fn load(name: &str) -> Vector {
    let path = vectors_gen::vectors_dir().join(format!("{name}.json"));
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    parse(name, &text)
}

#[test]
fn every_golden_vector_yields_its_stated_verdict() {
    let files = vector_files();
    assert!(files.len() >= REQUIRED_CASES.len(), "only {} vectors found; {REGENERATE}", files.len());
    let mut failures = Vec::new();
    for (name, text) in &files {
        let vector = parse(name, text);
        let result = verify(&vector, &vector.envelope);
        match (&result, vector.expect.as_str()) {
            (Ok(job), "ok") => {
                match &vector.expected_job {
                    Some(expected) if &job.spec == expected => {}
                    Some(expected) => failures.push(format!("{name}: verified {:?}, expected {expected:?}", job.spec)),
                    None => failures.push(format!("{name}: expect is ok but expected_job is missing")),
                }
                if job.key_id != vector.envelope.key_id {
                    failures.push(format!("{name}: verified under key {}, not the envelope's", job.key_id));
                }
            }
            (Err(e), expect) if e.code() == expect => {
                if vector.expected_job.is_some() {
                    failures.push(format!("{name}: expected_job given for a rejected envelope"));
                }
            }
            (got, expect) => failures.push(format!("{name}: expected {expect}, got {got:?}")),
        }
    }
    assert!(failures.is_empty(), "vectors with the wrong verdict:\n{}", failures.join("\n"));
}

#[test]
fn vector_directory_holds_every_required_case() {
    let present: BTreeSet<String> = vector_files().into_iter().map(|(name, _)| name).collect();
    let missing: Vec<&str> = REQUIRED_CASES.iter().copied().filter(|c| !present.contains(*c)).collect();
    assert!(missing.is_empty(), "missing vectors {missing:?}; {REGENERATE}");
}

#[test]
fn flipping_any_bit_of_the_valid_payload_or_signature_is_a_bad_signature() {
    let vector = load("valid");
    assert!(verify(&vector, &vector.envelope).is_ok(), "the valid vector must verify unaltered");
    let payload = b64_decode(&vector.envelope.payload).expect("the valid payload is base64");
    let signature = b64_decode(&vector.envelope.signature).expect("the valid signature is base64");
    assert_eq!(signature.len(), 64, "an Ed25519 signature is 64 bytes");

    let mut failures = Vec::new();
    for (field, original) in [("payload", &payload), ("signature", &signature)] {
        for bit in 0..original.len() * 8 {
            let mut bytes = original.clone();
            bytes[bit / 8] ^= 1 << (bit % 8);
            let mut envelope = vector.envelope.clone();
            match field {
                "payload" => envelope.payload = b64_encode(&bytes),
                _ => envelope.signature = b64_encode(&bytes),
            }
            match verify(&vector, &envelope) {
                Err(e) if e.code() == "bad_signature" => {}
                other => failures.push(format!("{field} bit {bit}: {other:?}")),
            }
        }
    }
    assert!(failures.is_empty(), "bit flips not refused as bad_signature:\n{}", failures.join("\n"));
}

#[test]
fn checked_in_vectors_are_byte_identical_to_the_generator_output() {
    let on_disk: Vec<(String, String)> = vector_files();
    let mut generated: Vec<(String, String)> =
        vectors_gen::cases().iter().map(|c| (c.name.to_owned(), vectors_gen::render(&c.vector))).collect();
    generated.sort();

    let disk_names: Vec<&str> = on_disk.iter().map(|(n, _)| n.as_str()).collect();
    let gen_names: Vec<&str> = generated.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(disk_names, gen_names, "vector files differ from the generator's cases; {REGENERATE}");
    for ((name, disk), (_, fresh)) in on_disk.iter().zip(&generated) {
        assert!(disk == fresh, "{name}.json differs from the generator output; {REGENERATE}");
    }
}

#[test]
fn generator_cases_are_uniquely_named() {
    let cases = vectors_gen::cases();
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), cases.len(), "two generator cases share a name");
}
