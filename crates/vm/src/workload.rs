//! Workload certificates: a proxy's CSR signed for the identity its caller proved, as
//! Istio's CA does for `CreateCertificate` (`security/pkg/server/ca`). The certificate names that
//! identity only, as the URI SAN `spiffe://<trust domain>/ns/<namespace>/sa/<account>`; a CSR
//! asking for anything else is refused, naming the identity. The key stays with the proxy.

use std::{fmt, time::Duration};

use rcgen::{
    CertificateSigningRequestParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use crate::ca::RootCa;

/// The trust domain when none is configured (Istio's default).
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// A workload certificate's lifetime when the request names none (Istio's 24 h).
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// How far back a certificate is valid from, for clocks a little behind.
const BACKDATE: Duration = Duration::from_secs(60);

/// A workload identity: a Kubernetes service account in a trust domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The trust domain (`cluster.local`).
    pub trust_domain: String,
    /// The namespace.
    pub namespace: String,
    /// The service account.
    pub service_account: String,
}

impl Identity {
    /// `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`.
    pub fn spiffe(&self) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.trust_domain, self.namespace, self.service_account
        )
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spiffe())
    }
}

/// Why a CSR is not signed.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// Not a PEM CSR, or its signature does not verify (gRPC `INVALID_ARGUMENT`).
    #[error("not a valid PEM certificate signing request: {0}")]
    BadCsr(String),
    /// It asks for names other than the caller's identity (gRPC `PERMISSION_DENIED`).
    #[error("the CSR asks for {asked}, but the caller is {identity} and may ask for that only")]
    OtherIdentity {
        /// What it asked for, comma-separated.
        asked: String,
        /// The caller's identity.
        identity: String,
    },
    /// The CA failed to sign (gRPC `INTERNAL`).
    #[error("cannot sign the workload certificate: {0}")]
    Sign(rcgen::Error),
}

/// One requested subject alternative name, as a CSR carries it.
fn describe(san: &SanType) -> String {
    match san {
        SanType::URI(uri) => uri.as_str().to_string(),
        SanType::DnsName(name) => format!("DNS name {}", name.as_str()),
        SanType::Rfc822Name(mail) => format!("e-mail {}", mail.as_str()),
        SanType::IpAddress(ip) => format!("IP {ip}"),
        other => format!("{other:?}"),
    }
}

impl RootCa {
    /// Signs `csr_pem` for `identity`, valid from now for `ttl` (never past the root's own
    /// end); returns the chain, leaf first and root last, one PEM each. The CSR may ask for
    /// no name (the identity is used) or for the identity's URI alone.
    pub fn issue_workload(
        &self,
        csr_pem: &str,
        identity: &Identity,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, IssueError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| IssueError::BadCsr(e.to_string()))?;
        let uri = identity.spiffe();
        let others: Vec<String> = csr
            .params
            .subject_alt_names
            .iter()
            .filter(|san| !matches!(san, SanType::URI(u) if u.as_str() == uri))
            .map(describe)
            .collect();
        if !others.is_empty() {
            return Err(IssueError::OtherIdentity {
                asked: others.join(", "),
                identity: uri,
            });
        }
        let spiffe = uri
            .clone()
            .try_into()
            .map_err(|e: rcgen::Error| IssueError::BadCsr(format!("{uri}: {e}")))?;
        // Everything but the key comes from Bowline, not from the CSR.
        let params = &mut csr.params;
        params.subject_alt_names = vec![SanType::URI(spiffe)];
        params.distinguished_name = DistinguishedName::new();
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.custom_extensions.clear();
        params.not_before = now - BACKDATE;
        params.not_after = (now + ttl).min(self.not_after());
        let cert = csr.signed_by(self.issuer()).map_err(IssueError::Sign)?;
        let mut chain = vec![cert.pem()];
        chain.extend(self.chain_above_leaf().map(str::to_string));
        chain.push(self.root_pem().to_string());
        Ok(chain)
    }

    /// The end of the root's validity.
    fn not_after(&self) -> OffsetDateTime {
        x509_parser::pem::parse_x509_pem(self.cert_pem().as_bytes())
            .ok()
            .and_then(|(_, pem)| {
                let cert = pem.parse_x509().ok()?;
                OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp()).ok()
            })
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair};
    use x509_parser::extensions::GeneralName;

    use super::*;
    use crate::ca::now;

    fn identity() -> Identity {
        Identity {
            trust_domain: DEFAULT_TRUST_DOMAIN.into(),
            namespace: "demo".into(),
            service_account: "legacy".into(),
        }
    }

    fn csr(sans: Vec<SanType>) -> String {
        let mut params = CertificateParams::default();
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.serialize_request(&key).unwrap().pem().unwrap()
    }

    fn uri(text: &str) -> SanType {
        SanType::URI(text.to_string().try_into().unwrap())
    }

    #[test]
    fn a_csr_for_the_callers_identity_is_signed_for_it_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = RootCa::load_or_create(dir.path()).unwrap();
        let id = identity();
        for asked in [vec![uri(&id.spiffe())], vec![]] {
            let now = now();
            let chain = ca
                .issue_workload(&csr(asked), &id, Duration::from_secs(600), now)
                .unwrap();
            assert_eq!(chain.len(), 2);
            assert_eq!(chain[1], ca.cert_pem(), "the root last");
            let (_, leaf_pem) = x509_parser::pem::parse_x509_pem(chain[0].as_bytes()).unwrap();
            let leaf = leaf_pem.parse_x509().unwrap();
            let (_, root_pem) = x509_parser::pem::parse_x509_pem(chain[1].as_bytes()).unwrap();
            let root = root_pem.parse_x509().unwrap();
            leaf.verify_signature(Some(root.public_key())).unwrap();
            assert!(!leaf.is_ca());
            let sans = leaf.subject_alternative_name().unwrap().unwrap();
            assert_eq!(
                sans.value.general_names,
                [GeneralName::URI("spiffe://cluster.local/ns/demo/sa/legacy")]
            );
            let eku = leaf.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.server_auth && eku.client_auth);
            let lifetime = leaf.validity().not_after.timestamp() - now.unix_timestamp();
            assert!((599..=601).contains(&lifetime), "{lifetime}");
        }
    }

    #[test]
    fn a_csr_for_anything_else_is_refused_naming_the_identity() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = RootCa::load_or_create(dir.path()).unwrap();
        let id = identity();
        for (asked, named) in [
            (
                vec![uri("spiffe://cluster.local/ns/demo/sa/admin")],
                "sa/admin",
            ),
            (
                vec![
                    uri(&id.spiffe()),
                    SanType::DnsName("echo.demo.svc".try_into().unwrap()),
                ],
                "DNS name echo.demo.svc",
            ),
        ] {
            let err = ca
                .issue_workload(&csr(asked), &id, DEFAULT_TTL, now())
                .unwrap_err();
            assert!(matches!(err, IssueError::OtherIdentity { .. }), "{err}");
            let message = err.to_string();
            assert!(message.contains(named), "{message}");
            assert!(message.contains(&id.spiffe()), "{message}");
        }
        let err = ca
            .issue_workload("not a CSR", &id, DEFAULT_TTL, now())
            .unwrap_err();
        assert!(matches!(err, IssueError::BadCsr(_)), "{err}");
    }
}
