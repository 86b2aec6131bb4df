//! `bowline agent`, the node agent beside an Envoy or a proxyless gRPC application (on a VM,
//! or as a sidecar container), in the role Istio's pilot-agent plays for certificates:
//!
//! - it makes the private key here (ECDSA P-256, a new one at every renewal); the key never
//!   leaves the node;
//! - it asks Bowline's CA (`CreateCertificate` on the TLS port) for a certificate, proving the
//!   identity with its credential (a VM token or a Kubernetes service-account token), and
//!   renews with the certificate itself while it is valid;
//! - it serves SDS over a Unix socket ([`sds`]) with the secrets `default` (the certificate
//!   and key) and `ROOTCA` (the root), pushing a new `default` to every stream at rotation,
//!   so Envoy swaps certificates without dropping a connection;
//! - it writes `cert-chain.pem`, `key.pem` and `root-cert.pem` for gRPC's `file_watcher`
//!   certificate provider, swapped together ([`files`]), and the gRPC xDS bootstrap;
//! - it renews at half of the certificate's remaining lifetime, give or take 5 % (so many
//!   agents started together do not ask at once), retrying with backoff while the current
//!   certificate still serves.

pub mod config;
pub mod files;
pub mod sds;

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::config::{AgentConfig, Credential};
use crate::ca_api::{CREATE_CERTIFICATE, IstioCertificateRequest, IstioCertificateResponse};

/// A certificate the CA issued for this node, with its key.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The leaf and the certificates above it up to (excluding) the root, PEM, concatenated:
    /// what the node presents.
    pub chain_pem: String,
    /// The root, PEM: what the node trusts (the CA's chain's last element).
    pub root_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
    /// The identity the certificate names (its URI SAN).
    pub identity: String,
    /// When it expires.
    pub not_after: jiff::Timestamp,
    /// When it was received.
    pub received: jiff::Timestamp,
    /// Counts certificates since the start: the SDS version.
    pub serial: u64,
}

/// Least wait between two failed attempts.
const RETRY_MIN: Duration = Duration::from_secs(1);
/// Most wait between two failed attempts.
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long a request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// A certificate closer to its end than this is not used to renew (the credential is).
const RENEW_WITH_CERT_MARGIN: Duration = Duration::from_secs(1);

/// Runs the agent until `shutdown`: serves SDS, writes the files, renews. Returns an error
/// only for what retrying cannot fix (an unusable configuration or socket path).
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let root = std::fs::read_to_string(&config.root_cert).with_context(|| {
        format!(
            "rootCert {}: cannot read the root Bowline's TLS port verifies to",
            config.root_cert.display()
        )
    })?;
    let (publish, current) = watch::channel(None::<Arc<Issued>>);
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(socket) = &config.sds_socket {
        let listener = sds::bind(socket)?;
        info!(socket = %socket.display(), "serving SDS (secrets default and ROOTCA)");
        tasks.spawn(sds::serve(listener, current.clone(), shutdown.clone()));
    }
    let client = CaClient {
        config: &config,
        root,
    };
    let mut retry = RETRY_MIN;
    let mut serial = 0;
    loop {
        let last = current.borrow().clone();
        let wait = match client.request(last.as_deref()).await {
            Ok(mut issued) => {
                serial += 1;
                issued.serial = serial;
                if let Some(dir) = &config.cert_dir {
                    files::write(dir, &issued)
                        .with_context(|| format!("certDir {}", dir.display()))?;
                }
                if let Some(bootstrap) = config.grpc_bootstrap.as_ref().filter(|_| serial == 1) {
                    let dir = config.cert_dir.as_deref().expect("validated with certDir");
                    files::write_bootstrap(&config, bootstrap, dir)
                        .with_context(|| format!("grpcBootstrap {}", bootstrap.path.display()))?;
                    info!(path = %bootstrap.path.display(), "wrote the gRPC xDS bootstrap");
                }
                let wait = renew_after(&issued, jitter());
                info!(
                    identity = %issued.identity,
                    expires = %issued.not_after,
                    renew_in = ?wait,
                    "certificate issued"
                );
                publish.send_replace(Some(Arc::new(issued)));
                retry = RETRY_MIN;
                wait
            }
            Err(e) => {
                let wait = retry;
                retry = (retry * 2).min(RETRY_MAX);
                match &last {
                    Some(cert) if cert.not_after <= jiff::Timestamp::now() => warn!(
                        identity = %cert.identity,
                        expired = %cert.not_after,
                        retry_in = ?wait,
                        "cannot renew the certificate, and it has expired: peers refuse it until renewal succeeds: {e:#}"
                    ),
                    Some(cert) => warn!(
                        identity = %cert.identity,
                        expires = %cert.not_after,
                        retry_in = ?wait,
                        "cannot renew the certificate (the current one still serves): {e:#}"
                    ),
                    None => warn!(retry_in = ?wait, "cannot get a certificate: {e:#}"),
                }
                wait
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    tasks.shutdown().await;
    if let Some(socket) = &config.sds_socket {
        let _ = std::fs::remove_file(socket);
    }
    Ok(())
}

/// A number in [-1, 1), different in every process and call.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(jiff::Timestamp::now().as_nanosecond() as u128);
    (hasher.finish() >> 11) as f64 / (1u64 << 52) as f64 - 1.0
}

/// When to renew `issued`: after half of the lifetime left when it was received, moved by
/// `jitter` × 5 % of that lifetime.
pub fn renew_after(issued: &Issued, jitter: f64) -> Duration {
    let left = issued
        .not_after
        .duration_since(issued.received)
        .as_secs_f64()
        .max(0.0);
    let ratio = 0.5 + 0.05 * jitter.clamp(-1.0, 1.0);
    Duration::from_secs_f64(left * ratio).max(RETRY_MIN)
}

/// Talks to Bowline's CA.
struct CaClient<'a> {
    config: &'a AgentConfig,
    root: String,
}

impl CaClient<'_> {
    /// A new key, a CSR for it and the certificate for it: renewed with `current` when it
    /// is still valid (falling back to the credential when Bowline does not take it), else
    /// with the credential.
    async fn request(&self, current: Option<&Issued>) -> anyhow::Result<Issued> {
        let key = rcgen::KeyPair::generate().context("cannot make a key")?;
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .and_then(|csr| csr.pem())
            .context("cannot make the CSR")?;
        let usable =
            current.filter(|c| jiff::Timestamp::now() + RENEW_WITH_CERT_MARGIN < c.not_after);
        if let Some(current) = usable {
            match self.create(&csr, Some(current), false).await {
                Ok(chain) => return self.issued(chain, key),
                Err(e) => warn!(
                    identity = %current.identity,
                    "renewing with the current certificate failed, using the credential: {e:#}"
                ),
            }
        }
        let chain = self.create(&csr, None, true).await?;
        self.issued(chain, key)
    }

    /// One `CreateCertificate`, over a TLS channel presenting `client` (renewal) and/or the
    /// credential.
    async fn create(
        &self,
        csr: &str,
        client: Option<&Issued>,
        with_credential: bool,
    ) -> anyhow::Result<Vec<String>> {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let config = self.config;
        let target = config.address.as_deref().unwrap_or(&config.discovery);
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.root))
            .domain_name(config.server_name());
        if let Some(client) = client {
            tls = tls.identity(Identity::from_pem(&client.chain_pem, &client.key_pem));
        }
        let channel = Endpoint::from_shared(format!("https://{target}"))
            .with_context(|| format!("{target:?} is not an address"))?
            .tls_config(tls)?
            .connect_timeout(REQUEST_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .connect()
            .await
            .with_context(|| format!("cannot reach Bowline's CA at {target}"))?;
        let mut request = tonic::Request::new(IstioCertificateRequest {
            csr: csr.to_string(),
            validity_duration: config.ttl.as_secs() as i64,
            metadata: None,
        });
        if with_credential {
            let path = config.credential.path();
            let token = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the credential {}", path.display()))?;
            let value = format!("Bearer {}", token.trim())
                .parse()
                .with_context(|| format!("{}: not a token", path.display()))?;
            request.metadata_mut().insert("authorization", value);
        }
        if let Some(cluster) = &config.cluster_id {
            let value = cluster
                .parse()
                .with_context(|| format!("clusterId {cluster:?}"))?;
            request.metadata_mut().insert("clusterid", value);
        }
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.context("Bowline's CA")?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(CREATE_CERTIFICATE);
        let response = grpc
            .unary::<_, IstioCertificateResponse, _>(
                request,
                path,
                tonic_prost::ProstCodec::default(),
            )
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "CreateCertificate refused: {:?}: {}",
                    status.code(),
                    status.message()
                )
            })?;
        Ok(response.into_inner().cert_chain)
    }

    /// Checks the chain the CA returned against the key it was asked for.
    fn issued(&self, chain: Vec<String>, key: rcgen::KeyPair) -> anyhow::Result<Issued> {
        use rcgen::PublicKeyData;
        let [leaf, .., root] = chain.as_slice() else {
            anyhow::bail!(
                "the CA returned {} certificates; want the leaf and the root at least",
                chain.len()
            );
        };
        let (_, pem) = x509_parser::pem::parse_x509_pem(leaf.as_bytes())
            .map_err(|e| anyhow::anyhow!("the CA returned a leaf that is not PEM: {e}"))?;
        let cert = pem
            .parse_x509()
            .map_err(|e| anyhow::anyhow!("the CA returned a leaf that is not X.509: {e}"))?;
        anyhow::ensure!(
            cert.public_key().raw == key.subject_public_key_info().as_slice(),
            "the CA returned a certificate for another key"
        );
        let identity = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .and_then(|sans| {
                sans.value.general_names.iter().find_map(|name| match name {
                    x509_parser::extensions::GeneralName::URI(uri) => Some(uri.to_string()),
                    _ => None,
                })
            })
            .unwrap_or_default();
        let not_after = jiff::Timestamp::from_second(cert.validity().not_after.timestamp())
            .context("the certificate's end is out of range")?;
        if root.trim() != self.root.trim() {
            warn!(
                "the CA's root differs from rootCert: peers trusting rootCert will not verify this certificate"
            );
        }
        Ok(Issued {
            chain_pem: chain[..chain.len() - 1].concat(),
            root_pem: root.clone(),
            key_pem: key.serialize_pem(),
            identity,
            not_after,
            received: jiff::Timestamp::now(),
            serial: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_at_half_the_lifetime_left_within_five_percent() {
        let received = jiff::Timestamp::from_second(1_000_000).unwrap();
        let issued = Issued {
            chain_pem: String::new(),
            root_pem: String::new(),
            key_pem: String::new(),
            identity: String::new(),
            not_after: received + jiff::SignedDuration::from_secs(60),
            received,
            serial: 1,
        };
        assert_eq!(renew_after(&issued, 0.0), Duration::from_secs(30));
        assert_eq!(renew_after(&issued, 1.0), Duration::from_secs(33));
        assert_eq!(renew_after(&issued, -1.0), Duration::from_secs(27));
        for _ in 0..100 {
            let j = jitter();
            assert!((-1.0..1.0).contains(&j), "{j}");
        }
        let expired = Issued {
            not_after: received,
            ..issued
        };
        assert_eq!(renew_after(&expired, 0.0), RETRY_MIN);
    }
}
