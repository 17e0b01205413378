//! Builder of the golden test vectors for signed job envelopes.
//!
//! Shared, via `#[path]`, by the generator (`examples/gen_vectors.rs`, which writes the
//! files) and by `tests/golden.rs` (which checks that the files on disk are exactly what
//! this module produces). Everything here is fixed: the keys come from constant seeds,
//! the clock is [`NOW`], and Ed25519 signatures are deterministic, so the output is
//! byte-for-byte reproducible.
//!
//! The seeds below are public test material. Never trust their keys anywhere else.

use std::path::PathBuf;

use outpost_protocol::encoding::{b64_decode, b64_encode};
use outpost_protocol::{
    sign_job, BarSpec, CacheSpec, CatalogSpec, Envelope, JobSpec, Param, RenderSpec, SigningKey, TableFormat,
    TableSpec, TrustedKeys, VerifyOptions, PROTOCOL_VERSION,
};
use serde::{Deserialize, Serialize};

/// The verifier's fixed clock in every vector, unix seconds (2023-11-14T22:13:20Z).
pub const NOW: i64 = 1_700_000_000;
/// The verifier's enrolled name in every vector.
const AUDIENCE: &str = "edge-1";
/// Lifetime policy in every vector.
const MAX_LIFETIME_SECS: i64 = 600;
/// Clock-skew allowance in every vector.
const CLOCK_SKEW_SECS: i64 = 60;

/// Seed of key A, the usual signer and always trusted.
const SEED_A: [u8; 32] = *b"outpost-golden-vector-key-a-0001";
/// Seed of key B, a second trusted key (target of the re-labelling case).
const SEED_B: [u8; 32] = *b"outpost-golden-vector-key-b-0002";
/// Seed of key C, never trusted.
const SEED_C: [u8; 32] = *b"outpost-golden-vector-key-c-0003";

/// One golden vector file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vector {
    /// What the case exercises.
    pub description: String,
    /// `"ok"` or the expected `VerifyError::code()`.
    pub expect: String,
    /// The verifier's trusted keys.
    pub trusted_keys: Vec<TrustedKeyEntry>,
    /// The verifier's audience, clock and policy.
    pub verify_options: VerifyOptionsEntry,
    /// The envelope exactly as received.
    pub envelope: Envelope,
    /// The job the envelope must verify to; present exactly when `expect` is `"ok"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_job: Option<JobSpec>,
}

/// A trusted public key as written in a vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyEntry {
    /// `ed25519:` + hex of the first 8 bytes of SHA-256 of the public key.
    pub key_id: String,
    /// The 32-byte Ed25519 public key, standard base64.
    pub public_key: String,
}

/// [`VerifyOptions`] as written in a vector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyOptionsEntry {
    /// The verifier's enrolled name.
    pub audience: String,
    /// The verifier's clock, unix seconds.
    pub now: i64,
    /// Longest accepted `expires_at - issued_at`.
    pub max_lifetime_secs: i64,
    /// Skew allowance applied to both ends of the validity window.
    pub clock_skew_secs: i64,
}

impl Vector {
    /// Rebuilds the trusted key set, checking each stated key id against its key.
    pub fn trusted_keys(&self) -> Result<TrustedKeys, String> {
        let mut keys = TrustedKeys::new();
        for entry in &self.trusted_keys {
            keys.insert_b64(&entry.public_key, Some(&entry.key_id)).map_err(|e| e.to_string())?;
        }
        Ok(keys)
    }

    /// Rebuilds the verifier options.
    pub fn verify_options(&self) -> VerifyOptions {
        VerifyOptions {
            audience: self.verify_options.audience.clone(),
            pool: None,
            now: self.verify_options.now,
            max_lifetime_secs: self.verify_options.max_lifetime_secs,
            clock_skew_secs: self.verify_options.clock_skew_secs,
        }
    }
}

/// A named case; its file is `<name>.json`.
#[derive(Debug, Clone)]
pub struct Case {
    /// File stem.
    pub name: &'static str,
    /// Contents.
    pub vector: Vector,
}

/// The directory holding the vector files.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("vectors")
}

/// The exact text of a vector file: pretty JSON with a trailing newline.
pub fn render(vector: &Vector) -> String {
    // A struct of strings, integers and a finite float always serialises.
    let mut text = serde_json::to_string_pretty(vector).expect("a vector of plain data serialises to JSON");
    text.push('\n');
    text
}

fn key(seed: &[u8; 32]) -> SigningKey {
    SigningKey::from_seed(seed).expect("every 32-byte seed is a valid Ed25519 seed")
}

fn trusted(keys: &[&SigningKey]) -> Vec<TrustedKeyEntry> {
    keys.iter()
        .map(|k| TrustedKeyEntry { key_id: k.key_id().0.clone(), public_key: b64_encode(&k.public_key()) })
        .collect()
}

fn options() -> VerifyOptionsEntry {
    VerifyOptionsEntry {
        audience: AUDIENCE.into(),
        now: NOW,
        max_lifetime_secs: MAX_LIFETIME_SECS,
        clock_skew_secs: CLOCK_SKEW_SECS,
    }
}

/// A plain job with a distinct, fixed id and nonce per `n`, valid at [`NOW`] for 300 s.
fn spec(n: u64) -> JobSpec {
    JobSpec {
        version: PROTOCOL_VERSION,
        job_id: format!("00000000-0000-4000-8000-{n:012x}"),
        audience: AUDIENCE.into(),
        issued_at: NOW - 30,
        expires_at: NOW + 270,
        nonce: format!("{:032x}", (0x0f1e_2d3c_4b5a_6978_u128 << 64) | u128::from(n)),
        connection: "sample".into(),
        sql: "SELECT 1 AS one".into(),
        params: vec![],
        render: RenderSpec::Table(TableSpec { format: TableFormat::Json, max_rows: None }),
        cache: CacheSpec::default(),
        timeout_secs: None,
        requester: None,
    }
}

fn case(
    name: &'static str,
    description: &str,
    expect: &str,
    trusted_keys: Vec<TrustedKeyEntry>,
    envelope: Envelope,
) -> Case {
    let vector = Vector {
        description: description.into(),
        expect: expect.into(),
        trusted_keys,
        verify_options: options(),
        envelope,
        expected_job: None,
    };
    Case { name, vector }
}

fn ok_case(
    name: &'static str,
    description: &str,
    trusted_keys: Vec<TrustedKeyEntry>,
    job: JobSpec,
    signer: &SigningKey,
) -> Case {
    let mut c = case(name, description, "ok", trusted_keys, sign_job(&job, signer));
    c.vector.expected_job = Some(job);
    c
}

/// Flips bit 0 of byte `index` of a base64 field's decoded bytes.
fn flip_b64(text: &str, index: usize) -> String {
    let mut raw = b64_decode(text).expect("the generator only flips bits of base64 it produced");
    raw[index] ^= 0x01;
    b64_encode(&raw)
}

/// Every case, in a fixed order.
pub fn cases() -> Vec<Case> {
    let a = key(&SEED_A);
    let b = key(&SEED_B);
    let c = key(&SEED_C);
    let only_a = || trusted(&[&a]);
    let a_and_b = || trusted(&[&a, &b]);
    let mut out = Vec::new();

    out.push(ok_case(
        "valid",
        "A plain table job signed by a trusted key, inside its validity window.",
        a_and_b(),
        spec(1),
        &a,
    ));

    let mut job = spec(2);
    job.sql = "SELECT region, revenue, cost FROM sales WHERE year = $1 AND total > $2 AND label = $3 \
               AND deleted_at IS $4 AND active = $5 AND ratio < $6"
        .into();
    job.params = vec![
        Param::Int(2024),
        Param::Int(-9_007_199_254_740_993),
        Param::Text("Zürich \"HQ\"\n\t\\ <tag> \u{1f4ca}".into()),
        Param::Null,
        Param::Bool(true),
        Param::Float(2.5),
    ];
    job.render = RenderSpec::Bar(BarSpec {
        x: "region".into(),
        y: vec!["revenue".into(), "cost".into()],
        title: Some("Revenue & cost by region".into()),
        stacked: false,
        series: None,
        format: outpost_protocol::NumberFormat::Plain,
        unit: None,
        decimals: None,
    });
    job.cache = CacheSpec { max_age_secs: 300 };
    out.push(ok_case(
        "valid_with_params",
        "Int (including one beyond 2^53), Text (non-ASCII and escapes), Null, Bool and Float parameters, \
         a bar render spec with a title and a cache age.",
        only_a(),
        job,
        &a,
    ));

    let mut job = spec(3);
    job.issued_at = NOW - 200;
    job.expires_at = NOW + 400;
    out.push(ok_case(
        "valid_lifetime_at_maximum",
        "expires_at - issued_at equals max_lifetime_secs exactly, which is allowed.",
        only_a(),
        job,
        &a,
    ));

    let mut job = spec(4);
    job.issued_at = NOW - 300;
    job.expires_at = NOW - CLOCK_SKEW_SECS;
    out.push(ok_case(
        "valid_at_expiry_skew_boundary",
        "now == expires_at + clock_skew_secs: still valid (expired only when expires_at + skew < now).",
        only_a(),
        job,
        &a,
    ));

    let mut job = spec(5);
    job.issued_at = NOW + CLOCK_SKEW_SECS;
    job.expires_at = NOW + 300;
    out.push(ok_case(
        "valid_at_issue_skew_boundary",
        "now == issued_at - clock_skew_secs: already valid (not yet valid only when issued_at - skew > now).",
        only_a(),
        job,
        &a,
    ));

    let mut job = spec(6);
    job.issued_at = NOW - 400;
    job.expires_at = NOW - CLOCK_SKEW_SECS - 1;
    out.push(case(
        "expired",
        "expires_at + clock_skew_secs is one second before now.",
        "expired",
        only_a(),
        sign_job(&job, &a),
    ));

    let mut job = spec(7);
    job.issued_at = NOW + CLOCK_SKEW_SECS + 1;
    job.expires_at = NOW + 300;
    out.push(case(
        "not_yet_valid",
        "issued_at - clock_skew_secs is one second after now.",
        "not_yet_valid",
        only_a(),
        sign_job(&job, &a),
    ));

    let mut job = spec(8);
    job.issued_at = NOW - 30;
    job.expires_at = job.issued_at + MAX_LIFETIME_SECS + 1;
    out.push(case(
        "lifetime_too_long",
        "expires_at - issued_at is one second longer than max_lifetime_secs (now is inside the window).",
        "lifetime_too_long",
        only_a(),
        sign_job(&job, &a),
    ));

    let mut job = spec(9);
    job.audience = "edge-2".into();
    out.push(case(
        "wrong_audience",
        "A correctly signed job addressed to another agent.",
        "wrong_audience",
        only_a(),
        sign_job(&job, &a),
    ));

    out.push(case(
        "unknown_key",
        "Signed by a key that is not trusted (key C); the key id names no trusted key.",
        "unknown_key",
        a_and_b(),
        sign_job(&spec(10), &c),
    ));

    let mut env = sign_job(&spec(11), &a);
    env.signature = flip_b64(&env.signature, 0);
    out.push(case(
        "bad_signature",
        "The first byte of the decoded signature has its lowest bit flipped.",
        "bad_signature",
        only_a(),
        env,
    ));

    let mut env = sign_job(&spec(12), &a);
    env.signature = {
        let raw = b64_decode(&env.signature).expect("the signature was just produced as base64");
        b64_encode(&raw[..raw.len() - 1])
    };
    out.push(case(
        "truncated_signature",
        "The signature is 63 bytes (its last byte removed): a signature of the wrong length is a bad signature, \
         not a malformed envelope.",
        "bad_signature",
        only_a(),
        env,
    ));

    let job = spec(13);
    let mut env = sign_job(&job, &a);
    let mut altered = job;
    altered.sql = "SELECT secret FROM credentials".into();
    env.payload = b64_encode(&serde_json::to_vec(&altered).expect("a job spec serialises to JSON"));
    out.push(case(
        "altered_payload",
        "The payload was replaced by another well-formed job after signing (different sql); the signature \
         no longer matches.",
        "bad_signature",
        only_a(),
        env,
    ));

    let mut env = sign_job(&spec(14), &a);
    env.key_id = b.key_id().0.clone();
    out.push(case(
        "relabelled_key_id",
        "Signed by key A, then re-labelled with the id of key B, which is also trusted. The key id is part \
         of the signed message, so the signature does not verify under either key.",
        "bad_signature",
        a_and_b(),
        env,
    ));

    let payload = format!(
        "{{\"version\":2,\"job_id\":\"{}\",\"audience\":\"{AUDIENCE}\",\"issued_at\":{},\"expires_at\":{},\
         \"nonce\":\"{}\",\"connection\":\"sample\",\"sql\":\"SELECT 1\",\"render\":{{\"kind\":\"table\"}},\
         \"priority\":\"high\"}}",
        spec(15).job_id,
        NOW - 30,
        NOW + 270,
        spec(15).nonce,
    );
    out.push(case(
        "unsupported_version",
        "A correctly signed payload with version 2 (and a field version 1 does not know): the version is \
         checked before the payload is parsed as a version-1 job.",
        "unsupported_version",
        only_a(),
        a.sign_payload(payload.as_bytes()),
    ));

    out.push(case(
        "malformed_payload",
        "Correctly signed bytes that are JSON with version 1 but not a job spec.",
        "malformed",
        only_a(),
        a.sign_payload(br#"{"version":1,"hello":"this is not a job spec"}"#),
    ));

    out.push(case(
        "malformed_payload_not_json",
        "Correctly signed bytes that are not JSON at all.",
        "malformed",
        only_a(),
        a.sign_payload(b"SELECT 1; -- not JSON"),
    ));

    // Splice the extra field into the serialised object text, so the bytes do not depend
    // on how a JSON map orders its keys.
    let json = serde_json::to_string(&spec(16)).expect("a job spec serialises to JSON");
    let body = json.strip_suffix('}').expect("a serialised struct is a JSON object");
    let payload = format!(r#"{body},"run_as":"root"}}"#);
    out.push(case(
        "payload_unknown_field",
        "A correctly signed version-1 job with a field version 1 does not define: refused, never ignored.",
        "malformed",
        only_a(),
        a.sign_payload(payload.as_bytes()),
    ));

    let mut job = spec(17);
    job.sql = "   ".into();
    out.push(case(
        "invalid_shape",
        "A correctly signed job whose sql is blank fails the shape check.",
        "malformed",
        only_a(),
        sign_job(&job, &a),
    ));

    let mut env = sign_job(&spec(18), &a);
    env.payload = "%%% this is not base64 %%%".into();
    out.push(case(
        "malformed_base64",
        "The payload field is not standard base64 (the key id is trusted and the signature is well-formed).",
        "malformed",
        only_a(),
        env,
    ));

    // The schema browser's job: the connection's catalog instead of SQL.
    let mut job = spec(19);
    job.sql = String::new();
    job.render = RenderSpec::Catalog(CatalogSpec { max_tables: 2000, max_columns: 50_000 });
    out.push(ok_case(
        "valid_catalog",
        "A catalog job (render kind catalog, no SQL, no parameters): the agent answers with the connection's \
         tables and columns. An agent older than this kind refuses it as malformed (unknown variant).",
        only_a(),
        job,
        &a,
    ));

    let mut job = spec(20);
    job.render = RenderSpec::Catalog(CatalogSpec { max_tables: 2000, max_columns: 50_000 });
    out.push(case(
        "catalog_with_sql",
        "A correctly signed catalog job that also carries SQL fails the shape check: a catalog job runs none.",
        "malformed",
        only_a(),
        sign_job(&job, &a),
    ));

    out
}
