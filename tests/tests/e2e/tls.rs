//! The TLS policy checked with a real third-party client, `openssl s_client`: only
//! TLS 1.2/1.3 with ECDHE and AEAD suites, and on the agent listener only clients with a
//! current certificate from our CA whose agent is not revoked.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, Result};
use outpost_e2e::{start_pair, ControlPlane};

const REQUEST: &str = "GET /v1/agent/jobs/next?wait=0 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

/// Runs `openssl s_client` against `addr` with `args`, sending one HTTP request.
/// Returns (handshake and HTTP succeeded, combined output).
fn s_client(addr: &str, ca: &Path, args: &[&str]) -> Result<(bool, String)> {
    use std::io::Write as _;
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", addr, "-servername", "localhost", "-verify_return_error", "-ign_eof"])
        .arg("-CAfile")
        .arg(ca)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("openssl is required (.ci/run installs it)")?;
    child.stdin.take().context("stdin")?.write_all(REQUEST.as_bytes())?;
    let out = child.wait_with_output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((text.contains("HTTP/1.1 200"), text))
}

/// Whether the TLS layer said no: no cipher was agreed, or the server sent an alert.
fn handshake_refused(out: &str) -> bool {
    !out.contains("HTTP/1.1") && (out.contains("Cipher is (NONE)") || out.to_lowercase().contains("alert"))
}

fn agent_cert_args(state: &Path) -> Vec<String> {
    vec![
        "-cert".into(),
        state.join("agent.crt").display().to_string(),
        "-key".into(),
        state.join("agent.key").display().to_string(),
    ]
}

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openssl_sees_only_modern_tls_and_only_current_unrevoked_agent_certificates() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, agent) = start_pair(root.path(), "edge-1", "", &[]).await?;
    let ca = cp.data_dir.join("ca.crt");
    let good = agent_cert_args(&agent.state_dir);

    // Positive control: the enrolled agent's own certificate works over TLS 1.3 and 1.2.
    for v in ["-tls1_3", "-tls1_2"] {
        let (ok, out) = s_client(&cp.agent_addr, &ca, &[&args(&good)[..], &[v]].concat())?;
        assert!(ok, "{v} with the agent's certificate must work:\n{out}");
    }

    // TLS 1.1 is refused (the client is allowed to offer it; the server must say no).
    let (ok, out) =
        s_client(&cp.agent_addr, &ca, &[&args(&good)[..], &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]].concat())?;
    assert!(!ok && handshake_refused(&out), "TLS 1.1 accepted:\n{out}");
    let (ok, out) = s_client(&cp.api_addr, &ca, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])?;
    assert!(!ok && handshake_refused(&out), "API listener accepted TLS 1.1:\n{out}");

    // Non-AEAD (CBC) and non-ECDHE suites are refused on TLS 1.2.
    for cipher in ["ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA", "AES128-GCM-SHA256"] {
        let (ok, out) = s_client(&cp.agent_addr, &ca, &[&args(&good)[..], &["-tls1_2", "-cipher", cipher]].concat())?;
        assert!(!ok && handshake_refused(&out), "{cipher} accepted:\n{out}");
    }

    // No client certificate.
    let (ok, out) = s_client(&cp.agent_addr, &ca, &["-tls1_3"])?;
    assert!(!ok && handshake_refused(&out), "no client certificate accepted:\n{out}");

    // A certificate from another CA, naming the same agent.
    let other = root.path().join("other");
    std::fs::create_dir_all(&other)?;
    write_cert(&other, "edge-1", &rcgen::KeyPair::generate()?, None, -3600, 3600)?;
    let (ok, out) = s_client(&cp.agent_addr, &ca, &args(&agent_cert_args(&other)))?;
    assert!(!ok && handshake_refused(&out), "certificate from another CA accepted:\n{out}");

    // An expired certificate from our own CA.
    let expired = root.path().join("expired");
    std::fs::create_dir_all(&expired)?;
    write_cert(&expired, "edge-1", &rcgen::KeyPair::generate()?, Some(&cp), -7200, -3600)?;
    let (ok, out) = s_client(&cp.agent_addr, &ca, &args(&agent_cert_args(&expired)))?;
    assert!(!ok && handshake_refused(&out), "expired certificate accepted:\n{out}");

    // A revoked agent: the handshake completes (the certificate is still valid) but
    // every request is refused.
    let res = cp.api()?.post_json("/v1/agents/edge-1/revoke", &serde_json::json!({})).await?;
    assert_eq!(res.status, 200);
    let (ok, out) = s_client(&cp.agent_addr, &ca, &args(&good))?;
    assert!(!ok && out.contains("HTTP/1.1 403") && out.contains("agent_revoked"), "revoked agent not refused:\n{out}");
    Ok(())
}

/// Writes `cert.pem`/`key.pem`-style files (`agent.crt`, `agent.key`) into `dir`: a
/// client certificate for `cn`, signed by the control plane's CA when `cp` is given,
/// else by a fresh CA of its own; valid from `from` to `until` seconds relative to now.
fn write_cert(
    dir: &Path,
    cn: &str,
    key: &rcgen::KeyPair,
    cp: Option<&ControlPlane>,
    from: i64,
    until: i64,
) -> Result<()> {
    let now = time::OffsetDateTime::now_utc();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = now + time::Duration::seconds(from);
    params.not_after = now + time::Duration::seconds(until);
    let cert = match cp {
        Some(cp) => {
            let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(cp.data_dir.join("ca.key"))?)?;
            let issuer =
                rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(cp.data_dir.join("ca.crt"))?, ca_key)?;
            params.signed_by(key, &issuer)?
        }
        None => {
            let ca_key = rcgen::KeyPair::generate()?;
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new())?;
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let issuer = rcgen::Issuer::new(ca, ca_key);
            params.signed_by(key, &issuer)?
        }
    };
    std::fs::write(dir.join("agent.crt"), cert.pem())?;
    std::fs::write(dir.join("agent.key"), key.serialize_pem())?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_certificate_stays_refused_after_its_agent_is_revoked_and_enrolled_again() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (cp, mut agent) = start_pair(root.path(), "edge-1", "", &[]).await?;
    let ca = cp.data_dir.join("ca.crt");
    // Someone copies the agent's key and certificate.
    let stolen = root.path().join("stolen");
    std::fs::create_dir_all(&stolen)?;
    for f in ["agent.crt", "agent.key"] {
        std::fs::copy(agent.state_dir.join(f), stolen.join(f))?;
    }
    let (ok, out) = s_client(&cp.agent_addr, &ca, &args(&agent_cert_args(&stolen)))?;
    assert!(ok, "the copy works before anything is done about it:\n{out}");

    // The operator revokes the agent and enrols the host again under the same name.
    let res = cp.api()?.post_json("/v1/agents/edge-1/revoke", &serde_json::json!({})).await?;
    assert_eq!(res.status, 200);
    agent.stop()?;
    // At once: certificate times are whole seconds, and a re-enrolment takes effect a
    // second after the stolen certificate's, even within the same second.
    agent.enroll_with(&cp).await?;
    agent.start_connected()?;

    // The re-enrolled agent works; the stolen, still unexpired certificate does not.
    let (ok, out) = s_client(&cp.agent_addr, &ca, &args(&agent_cert_args(&agent.state_dir)))?;
    assert!(ok, "the re-enrolled agent must work:\n{out}");
    let (ok, out) = s_client(&cp.agent_addr, &ca, &args(&agent_cert_args(&stolen)))?;
    // Refused: every request is answered 403 with the reason, and nothing else.
    assert!(
        !ok && out.contains("HTTP/1.1 403") && out.contains("certificate_superseded"),
        "stolen certificate accepted after re-enrolment:\n{out}"
    );
    cp.process()?.wait_for_log("issued before the agent's latest enrolment", std::time::Duration::from_secs(10))?;
    Ok(())
}
