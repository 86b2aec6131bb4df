//! A plug-in CA in Istio's `cacerts` layout: Bowline signs with an intermediate certificate
//! and key the user brings, and hands out the user's root, so that several Bowline installs,
//! or Bowline and an Istio mesh, trust one root (Istio's "Plug in CA Certificates" task).
//! Four files (or keys of one Secret):
//!
//! - [`CA_CERT`]: the signing certificate, a CA certificate;
//! - [`CA_KEY`]: its private key;
//! - [`ROOT_CERT`]: the root, self-signed: what every workload trusts;
//! - [`CERT_CHAIN`]: the chain from the signing certificate up to the root (either may be
//!   included or left out); optional when the root signed `ca-cert.pem` itself.
//!
//! Everything is checked before Bowline signs anything: each certificate is signed by the
//! next one up to the root, the key is the signing certificate's, and none has expired.

use time::OffsetDateTime;
use x509_parser::{certificate::X509Certificate, pem::Pem};

use crate::ca::{CaError, PemOrigin, RootCa};

/// The signing certificate.
pub const CA_CERT: &str = "ca-cert.pem";
/// The signing key.
pub const CA_KEY: &str = "ca-key.pem";
/// The root certificate.
pub const ROOT_CERT: &str = "root-cert.pem";
/// The chain from the signing certificate to the root.
pub const CERT_CHAIN: &str = "cert-chain.pem";

/// The four texts of a plug-in CA, as read.
#[derive(Clone, Debug)]
pub struct PluginPems {
    /// `ca-cert.pem`.
    pub ca_cert: String,
    /// `ca-key.pem`.
    pub ca_key: String,
    /// `root-cert.pem`.
    pub root_cert: String,
    /// `cert-chain.pem`, when present.
    pub cert_chain: Option<String>,
}

/// One certificate of the chain: where it came from, its DER and PEM.
struct Link {
    place: String,
    pem: Pem,
}

impl Link {
    fn x509(&self) -> Result<X509Certificate<'_>, String> {
        self.pem
            .parse_x509()
            .map_err(|e| format!("{}: not an X.509 certificate: {e}", self.place))
    }
}

/// Every PEM block of `text`, each a certificate, named `place` (and its position when
/// there are several).
fn links(text: &str, place: &str) -> Result<Vec<Link>, String> {
    let mut out = Vec::new();
    for (i, pem) in Pem::iter_from_buffer(text.as_bytes()).enumerate() {
        let pem = pem.map_err(|e| format!("{place}: not PEM: {e}"))?;
        if pem.label != "CERTIFICATE" {
            return Err(format!(
                "{place}: block {} is a {}, not a CERTIFICATE",
                i + 1,
                pem.label
            ));
        }
        out.push(Link {
            place: format!("{place} (certificate {})", i + 1),
            pem,
        });
    }
    if out.is_empty() {
        return Err(format!("{place}: holds no PEM certificate"));
    }
    Ok(out)
}

/// A certificate as PEM text.
fn pem_text(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str("-----END CERTIFICATE-----\n");
    text
}

fn check_time(cert: &X509Certificate<'_>, place: &str, now: OffsetDateTime) -> Result<(), String> {
    let validity = cert.validity();
    let now = now.unix_timestamp();
    if validity.not_after.timestamp() <= now {
        return Err(format!("{place}: expired at {}", validity.not_after));
    }
    if validity.not_before.timestamp() > now {
        return Err(format!("{place}: not valid before {}", validity.not_before));
    }
    Ok(())
}

impl RootCa {
    /// A plug-in CA from its four texts, read from `origin` (`origin.cert` names the place
    /// of `ca-cert.pem`, `origin.key` of `ca-key.pem`; `places` names the root and the
    /// chain), checked as the module says.
    pub fn plugin(
        pems: PluginPems,
        origin: &PemOrigin,
        places: (&str, &str),
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        let (root_place, chain_place) = places;
        let corrupt = |what: &str, reason: String| CaError::Corrupt {
            what: what.to_string(),
            reason,
            remedy: origin.remedy.clone(),
        };
        // The key is the signing certificate's, and that certificate is a CA's.
        let mut ca = Self::from_pem(pems.ca_cert.clone(), pems.ca_key, origin)?;
        let failed = |reason: String| CaError::Corrupt {
            what: "the plug-in CA".into(),
            reason,
            remedy: origin.remedy.clone(),
        };
        let signing = links(&pems.ca_cert, &origin.cert).map_err(failed)?;
        let root = links(&pems.root_cert, root_place).map_err(failed)?;
        if root.len() != 1 {
            return Err(corrupt(
                root_place,
                format!(
                    "holds {} certificates; it must hold the root alone",
                    root.len()
                ),
            ));
        }
        let root = &root[0];
        let root_x509 = root.x509().map_err(failed)?;
        if !root_x509.is_ca() {
            return Err(corrupt(root_place, "not a CA certificate".into()));
        }
        root_x509
            .verify_signature(None)
            .map_err(|e| corrupt(root_place, format!("not a self-signed root: {e}")))?;
        check_time(&root_x509, root_place, now).map_err(failed)?;
        // The chain between them: cert-chain.pem without the signing certificate and the
        // root, whichever of them it repeats.
        if signing.len() != 1 {
            return Err(corrupt(
                &origin.cert,
                format!(
                    "holds {} certificates; it must hold the signing certificate alone (the rest belongs in {chain_place})",
                    signing.len()
                ),
            ));
        }
        let signing = &signing[0];
        let between: Vec<Link> = match &pems.cert_chain {
            Some(text) => links(text, chain_place)
                .map_err(failed)?
                .into_iter()
                .filter(|l| {
                    l.pem.contents != signing.pem.contents && l.pem.contents != root.pem.contents
                })
                .collect(),
            None => Vec::new(),
        };
        // Each certificate is signed by the next, the last by the root.
        let mut path: Vec<&Link> = vec![signing];
        path.extend(between.iter());
        if signing.pem.contents != root.pem.contents {
            path.push(root);
        }
        for pair in path.windows(2) {
            let (child, parent) = (pair[0], pair[1]);
            let child_x509 = child.x509().map_err(failed)?;
            let parent_x509 = parent.x509().map_err(failed)?;
            check_time(&child_x509, &child.place, now).map_err(failed)?;
            if !child_x509.is_ca() {
                return Err(failed(format!("{}: not a CA certificate", child.place)));
            }
            child_x509
                .verify_signature(Some(parent_x509.public_key()))
                .map_err(|e| {
                    failed(format!(
                        "{} is not signed by {}: {e}; {chain_place} must hold the chain from {} up to {root_place}",
                        child.place, parent.place, origin.cert
                    ))
                })?;
        }
        ca.intermediates = between.iter().map(|l| pem_text(&l.pem.contents)).collect();
        ca.cert_pem = pem_text(&signing.pem.contents);
        ca.root_pem = pem_text(&root.pem.contents);
        Ok(ca)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};

    use super::*;
    use crate::{
        ca::now,
        workload::{DEFAULT_TRUST_DOMAIN, Identity},
    };

    /// A CA certificate named `name`, signed by `issuer` (self-signed when `None`).
    fn ca_cert(
        name: &str,
        issuer: Option<&Issuer<'static, KeyPair>>,
        not_after: OffsetDateTime,
    ) -> (String, Issuer<'static, KeyPair>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now() - Duration::from_secs(3600);
        params.not_after = not_after;
        let cert = match issuer {
            Some(issuer) => params.signed_by(&key, issuer).unwrap(),
            None => params.self_signed(&key).unwrap(),
        };
        (cert.pem(), Issuer::new(params, key))
    }

    fn origin() -> PemOrigin {
        PemOrigin {
            cert: "/etc/cacerts/ca-cert.pem".into(),
            key: "/etc/cacerts/ca-key.pem".into(),
            remedy: "fix the plug-in CA files".into(),
        }
    }

    const PLACES: (&str, &str) = ("/etc/cacerts/root-cert.pem", "/etc/cacerts/cert-chain.pem");

    struct Hierarchy {
        root: String,
        middle: String,
        signing: String,
        signing_key: String,
    }

    /// root → middle → signing, as a user's offline root and per-cluster intermediates.
    fn hierarchy() -> Hierarchy {
        let later = now() + Duration::from_secs(30 * 24 * 3600);
        let (root, root_issuer) = ca_cert("user root", None, later);
        let (middle, middle_issuer) = ca_cert("region", Some(&root_issuer), later);
        let (signing, signing_issuer) = ca_cert("bowline east", Some(&middle_issuer), later);
        Hierarchy {
            root,
            middle,
            signing,
            signing_key: signing_issuer.key().serialize_pem(),
        }
    }

    fn x509(pem: &str) -> Pem {
        Pem::iter_from_buffer(pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
    }

    #[test]
    fn workload_chains_from_a_plugin_ca_verify_to_the_users_root() {
        let h = hierarchy();
        // Istio's cert-chain.pem: the signing certificate, the intermediates, the root.
        let chain = format!("{}{}{}", h.signing, h.middle, h.root);
        let ca = RootCa::plugin(
            PluginPems {
                ca_cert: h.signing.clone(),
                ca_key: h.signing_key.clone(),
                root_cert: h.root.clone(),
                cert_chain: Some(chain),
            },
            &origin(),
            PLACES,
            now(),
        )
        .unwrap();
        assert!(ca.is_intermediate());
        assert_eq!(x509(ca.root_pem()).contents, x509(&h.root).contents);

        let key = KeyPair::generate().unwrap();
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap();
        let identity = Identity {
            trust_domain: DEFAULT_TRUST_DOMAIN.into(),
            namespace: "demo".into(),
            service_account: "echo".into(),
        };
        let issued = ca
            .issue_workload(&csr, &identity, Duration::from_secs(600), now())
            .unwrap();
        assert_eq!(issued.len(), 4, "leaf, signing, middle, root");
        let pems: Vec<Pem> = issued.iter().map(|p| x509(p)).collect();
        assert_eq!(pems[1].contents, x509(&h.signing).contents);
        assert_eq!(pems[2].contents, x509(&h.middle).contents);
        assert_eq!(pems[3].contents, x509(&h.root).contents);
        for pair in pems.windows(2) {
            let child = pair[0].parse_x509().unwrap();
            let parent = pair[1].parse_x509().unwrap();
            child.verify_signature(Some(parent.public_key())).unwrap();
        }

        // The serving certificate carries the chain below the root.
        let serving = ca.issue_serving(&["bowline".into()], &[], now()).unwrap();
        assert_eq!(
            Pem::iter_from_buffer(serving.cert_pem.as_bytes()).count(),
            3
        );
    }

    #[test]
    fn a_chain_without_the_signing_certificate_and_root_or_without_a_file_at_all_is_accepted() {
        let h = hierarchy();
        for chain in [
            Some(h.middle.clone()),
            Some(format!("{}{}", h.middle, h.root)),
        ] {
            let ca = RootCa::plugin(
                PluginPems {
                    ca_cert: h.signing.clone(),
                    ca_key: h.signing_key.clone(),
                    root_cert: h.root.clone(),
                    cert_chain: chain,
                },
                &origin(),
                PLACES,
                now(),
            )
            .unwrap();
            assert_eq!(ca.chain_above_leaf().count(), 2);
        }
        // Directly below the root, no chain file is needed.
        let later = now() + Duration::from_secs(3600 * 24);
        let (root, root_issuer) = ca_cert("root", None, later);
        let (signing, signing_issuer) = ca_cert("signing", Some(&root_issuer), later);
        let ca = RootCa::plugin(
            PluginPems {
                ca_cert: signing,
                ca_key: signing_issuer.key().serialize_pem(),
                root_cert: root,
                cert_chain: None,
            },
            &origin(),
            PLACES,
            now(),
        )
        .unwrap();
        assert_eq!(ca.chain_above_leaf().count(), 1);
    }

    #[test]
    fn a_broken_plugin_ca_is_refused_naming_the_file_and_the_rule() {
        let h = hierarchy();
        let good = PluginPems {
            ca_cert: h.signing.clone(),
            ca_key: h.signing_key.clone(),
            root_cert: h.root.clone(),
            cert_chain: Some(h.middle.clone()),
        };
        let refused = |pems: PluginPems| {
            RootCa::plugin(pems, &origin(), PLACES, now())
                .unwrap_err()
                .to_string()
        };
        // The intermediate is missing: the signing certificate is not the root's.
        let err = refused(PluginPems {
            cert_chain: None,
            ..good.clone()
        });
        assert!(
            err.contains("ca-cert.pem (certificate 1) is not signed by /etc/cacerts/root-cert.pem"),
            "{err}"
        );
        // Another root.
        let (other_root, _) = ca_cert("other", None, now() + Duration::from_secs(3600));
        let err = refused(PluginPems {
            root_cert: other_root,
            ..good.clone()
        });
        assert!(
            err.contains("is not signed by /etc/cacerts/root-cert.pem"),
            "{err}"
        );
        // A key of another certificate.
        let err = refused(PluginPems {
            ca_key: KeyPair::generate().unwrap().serialize_pem(),
            ..good.clone()
        });
        assert!(
            err.contains("ca-key.pem") && err.contains("is not the key of"),
            "{err}"
        );
        // An expired signing certificate.
        let later = now() + Duration::from_secs(3600);
        let (root, root_issuer) = ca_cert("root", None, later);
        let (signing, signing_issuer) = ca_cert(
            "signing",
            Some(&root_issuer),
            now() - Duration::from_secs(60),
        );
        let err = refused(PluginPems {
            ca_cert: signing,
            ca_key: signing_issuer.key().serialize_pem(),
            root_cert: root,
            cert_chain: None,
        });
        assert!(
            err.contains("ca-cert.pem (certificate 1): expired at"),
            "{err}"
        );
        // The root file holding the chain.
        let err = refused(PluginPems {
            root_cert: format!("{}{}", h.middle, h.root),
            ..good
        });
        assert!(err.contains("root-cert.pem: holds 2 certificates"), "{err}");
    }
}
