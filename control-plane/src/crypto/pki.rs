//! The control plane's certificate authority.
//!
//! Owns: creating the CA and the server certificate at `init`, loading them for `serve`,
//! issuing agent client certificates from CSRs, and the CA pin that goes into
//! enrolment tokens. It refuses to copy anything but the public key from a CSR: the
//! subject, lifetime, key usages and "not a CA" are decided here, so a hostile CSR
//! cannot ask for a CA certificate or another agent's name.

use std::path::Path;
use std::sync::Arc;

use outpost_common::fsutil::{self, FileError};
use outpost_protocol::encoding::sha256_hex;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// File names inside the data dir.
pub const CA_CERT: &str = "ca.crt";
/// CA private key (0600).
pub const CA_KEY: &str = "ca.key";
/// Server certificate (chain: server, CA).
pub const SERVER_CERT: &str = "server.crt";
/// Server private key (0600).
pub const SERVER_KEY: &str = "server.key";

/// Agent certificates start this long before they are issued, for clock skew; the issue
/// time is therefore `not_before + AGENT_CERT_BACKDATE_SECS`.
pub const AGENT_CERT_BACKDATE_SECS: i64 = 300;
/// Lifetime of the CA certificate.
const CA_LIFETIME_DAYS: i64 = 3650;
/// Lifetime of the server certificate.
const SERVER_LIFETIME_DAYS: i64 = 397;
/// Largest PEM file read.
const MAX_PEM: u64 = 64 * 1024;

/// PKI failures.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file.
    #[error(transparent)]
    File(#[from] FileError),
    /// rcgen refused something.
    #[error("certificate operation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A PEM file did not contain what was expected.
    #[error("{what}: {reason}")]
    BadPem {
        /// Which file or input.
        what: String,
        /// Why.
        reason: String,
    },
}

/// The CA, loaded for signing.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").field("pin", &self.pin()).finish_non_exhaustive()
    }
}

fn now_offset(days: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(days)
}

fn random_serial() -> SerialNumber {
    let mut b = outpost_protocol::ids::random_bytes::<16>();
    b[0] &= 0x7f;
    SerialNumber::from_slice(&b)
}

/// Creates a CA and a server certificate for `hostname` in `dir` (which must exist, 0700).
/// Creates the CA and a server certificate naming `hostname` and `extra_names` (DNS names
/// or IP addresses that clients also use, such as `127.0.0.1` on the host itself).
pub fn init(dir: &Path, hostname: &str, extra_names: &[String]) -> Result<(), PkiError> {
    let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Outpost control plane CA");
    dn.push(DnType::OrganizationName, "Outpost");
    ca_params.distinguished_name = dn;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca_params.not_before = now_offset(-1);
    ca_params.not_after = now_offset(CA_LIFETIME_DAYS);
    ca_params.serial_number = Some(random_serial());
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, &ca_key);

    fsutil::write_private(&dir.join(CA_KEY), ca_key.serialize_pem().as_bytes())?;
    fsutil::write_atomic(&dir.join(CA_CERT), ca_cert.pem().as_bytes(), 0o644)?;
    write_server_identity(dir, hostname, extra_names, &issuer, &ca_cert.pem())
}

/// Issues a server certificate for `hostname` from `issuer` with a new key and writes
/// `server.key` (0600) and `server.crt` (chain: server, CA), each atomically.
fn write_server_identity(
    dir: &Path,
    hostname: &str,
    extra_names: &[String],
    issuer: &Issuer<'_, impl rcgen::SigningKey>,
    ca_pem: &str,
) -> Result<(), PkiError> {
    let server_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut sp = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, hostname);
    sp.distinguished_name = dn;
    sp.subject_alt_names = server_sans(hostname, extra_names)?;
    sp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    sp.not_before = now_offset(-1);
    sp.not_after = now_offset(SERVER_LIFETIME_DAYS);
    sp.serial_number = Some(random_serial());
    let server_cert = sp.signed_by(&server_key, issuer)?;
    fsutil::write_private(&dir.join(SERVER_KEY), server_key.serialize_pem().as_bytes())?;
    let chain = format!("{}{}", server_cert.pem(), ca_pem);
    fsutil::write_atomic(&dir.join(SERVER_CERT), chain.as_bytes(), 0o644)?;
    Ok(())
}

fn server_sans(hostname: &str, extra_names: &[String]) -> Result<Vec<SanType>, PkiError> {
    let mut sans = Vec::new();
    for name in std::iter::once(hostname).chain(extra_names.iter().map(String::as_str)) {
        let san = match name.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(name.try_into()?),
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

impl Ca {
    /// Loads the CA from the data dir.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let key_pem = zeroize::Zeroizing::new(fsutil::read_private(&dir.join(CA_KEY), MAX_PEM)?);
        let key_text = std::str::from_utf8(&key_pem).map_err(|_| bad("ca.key", "not UTF-8"))?;
        let key = KeyPair::from_pem(key_text)?;
        let cert_bytes = fsutil::read_capped_file(&dir.join(CA_CERT), MAX_PEM)?;
        let cert_pem = String::from_utf8(cert_bytes).map_err(|_| bad("ca.crt", "not UTF-8"))?;
        let cert_der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| bad("ca.crt", &e.to_string()))?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key)?;
        Ok(Self { issuer, cert_der, cert_pem })
    }

    /// Replaces the server certificate and key with new ones from this CA. Agents pin the
    /// CA, not the server certificate, so they accept it without enrolling again; a
    /// running `serve` uses it after a restart.
    pub fn rotate_server_cert(&self, dir: &Path, hostname: &str, extra_names: &[String]) -> Result<(), PkiError> {
        write_server_identity(dir, hostname, extra_names, &self.issuer, &self.cert_pem)
    }

    /// SHA-256 of the CA certificate (DER), hex: the pin carried by enrolment tokens.
    pub fn pin(&self) -> String {
        sha256_hex(&self.cert_der)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Issues a client certificate for `agent` from a PEM CSR, taking only its public key,
    /// issued at `issued_at` (unix seconds: what [`agent_cert_facts`] reads back, compared
    /// with the name's enrolment time) and valid until `not_after`. Returns its PEM.
    pub fn issue_agent_cert(
        &self,
        agent: &str,
        csr_pem: &str,
        issued_at: i64,
        not_after: i64,
    ) -> Result<String, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        let mut p = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, agent);
        dn.push(DnType::OrganizationalUnitName, "outpost-agent");
        p.distinguished_name = dn;
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let at = |t: i64| {
            time::OffsetDateTime::from_unix_timestamp(t).map_err(|e| bad("certificate validity", &e.to_string()))
        };
        p.not_before = at(issued_at.saturating_sub(AGENT_CERT_BACKDATE_SECS))?;
        p.not_after = at(not_after)?;
        p.serial_number = Some(random_serial());
        let cert = p.signed_by(&csr.public_key, &self.issuer)?;
        Ok(cert.pem())
    }
}

fn bad(what: &str, reason: &str) -> PkiError {
    PkiError::BadPem { what: what.to_owned(), reason: reason.to_owned() }
}

/// Loads the server's certificate chain and key for rustls.
pub fn load_server_identity(dir: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
    let chain_pem = fsutil::read_capped_file(&dir.join(SERVER_CERT), MAX_PEM)?;
    let chain: Vec<_> = CertificateDer::pem_slice_iter(&chain_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| bad("server.crt", &e.to_string()))?;
    if chain.is_empty() {
        return Err(bad("server.crt", "no certificate found"));
    }
    let key_pem = zeroize::Zeroizing::new(fsutil::read_private(&dir.join(SERVER_KEY), MAX_PEM)?);
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| bad("server.key", &e.to_string()))?;
    Ok((chain, key))
}

/// What the control plane needs from a verified agent client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentCertFacts {
    /// Agent name (CN).
    pub name: String,
    /// Issue time, unix seconds: `not_before` plus [`AGENT_CERT_BACKDATE_SECS`].
    pub issued_at: i64,
    /// Expiry, unix seconds.
    pub not_after: i64,
    /// The certificate's public key (for an agent, an uncompressed P-256 point): what
    /// its signed audit heads must verify under.
    pub public_key: Vec<u8>,
}

/// Parses a verified agent certificate once; `None` if it names no valid agent.
pub fn agent_cert_facts(cert: &CertificateDer<'_>) -> Option<AgentCertFacts> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
    let name = parsed.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
    outpost_protocol::job::validate_name(&name).ok()?;
    let validity = parsed.validity();
    Some(AgentCertFacts {
        name,
        issued_at: validity.not_before.timestamp() + AGENT_CERT_BACKDATE_SECS,
        not_after: validity.not_after.timestamp(),
        public_key: parsed.public_key().subject_public_key.data.to_vec(),
    })
}

/// Shared handle.
pub type SharedCa = Arc<Ca>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_agent_cert_takes_only_the_public_key_from_the_csr() {
        let dir = tempfile::tempdir().expect("tempdir");
        init(dir.path(), "localhost", &[]).expect("init");
        let ca = Ca::load(dir.path()).expect("load");
        // A hostile CSR asks to be a CA named "admin".
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut req = CertificateParams::new(vec!["admin".to_string()]).expect("params");
        req.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        req.distinguished_name.push(DnType::CommonName, "admin");
        let csr = req.serialize_request(&key).expect("csr").pem().expect("pem");
        let issued_at = outpost_protocol::unix_now() + 1;
        let pem = ca.issue_agent_cert("edge-1", &csr, issued_at, issued_at + 3600).expect("issue");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("der");
        let facts = agent_cert_facts(&der).expect("facts");
        assert_eq!(facts.name, "edge-1");
        // The issue time read back is the one asked for (admission compares it with the
        // name's enrolment time), to the second.
        assert_eq!((facts.issued_at, facts.not_after), (issued_at, issued_at + 3600));
        assert_eq!(facts.public_key, key.public_key_raw(), "the CSR's key, as audit heads are verified");
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).expect("parse");
        assert!(!parsed.is_ca());
        assert_eq!(ca.pin().len(), 64);
    }
}
