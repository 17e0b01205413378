//! The CPU floor of a job's path: signing one envelope on the control plane and
//! verifying it on the agent (Ed25519, aws-lc-rs), next to the JSON work around them.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, Criterion};
use outpost_protocol::{
    sign_job, JobSpec, Param, RenderSpec, SigningKey, TableFormat, TableSpec, TrustedKeys, VerifyOptions,
    PROTOCOL_VERSION,
};

fn job() -> JobSpec {
    JobSpec {
        version: PROTOCOL_VERSION,
        job_id: "7f1c2b9e-0a4d-4c1e-9b7a-3d2f1e0c9b8a".into(),
        audience: "edge-1".into(),
        issued_at: 1_700_000_000,
        expires_at: 1_700_000_300,
        nonce: "00112233445566778899aabbccddeeff".into(),
        connection: "sample".into(),
        sql: "SELECT region, SUM(amount) AS revenue FROM orders WHERE month >= $1 GROUP BY region".into(),
        params: vec![Param::Text("2025-01".into())],
        render: RenderSpec::Table(TableSpec { format: TableFormat::Json, max_rows: Some(100) }),
        cache: Default::default(),
        timeout_secs: None,
        requester: None,
    }
}

fn bench(c: &mut Criterion) {
    let key = SigningKey::from_seed(&[7u8; 32]).expect("fixed seed");
    let mut keys = TrustedKeys::new();
    keys.insert(key.public_key());
    let spec = job();
    let env = sign_job(&spec, &key);
    let opts = VerifyOptions {
        audience: "edge-1".into(),
        pool: None,
        now: 1_700_000_010,
        max_lifetime_secs: 600,
        clock_skew_secs: 60,
    };
    c.bench_function("sign_job (serialise + Ed25519 sign)", |b| b.iter(|| sign_job(std::hint::black_box(&spec), &key)));
    c.bench_function("Envelope::verify (Ed25519 verify + parse + checks)", |b| {
        b.iter(|| std::hint::black_box(&env).verify(&keys, &opts).expect("valid"))
    });
    let json = serde_json::to_vec(&env).expect("json");
    c.bench_function("peer: serde_json parse of the same envelope", |b| {
        b.iter(|| serde_json::from_slice::<outpost_protocol::Envelope>(std::hint::black_box(&json)).expect("json"))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
