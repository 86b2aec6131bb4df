//! `agent.yaml`, what `bowline agent` reads: where Bowline's CA is, the credential to prove
//! the workload's identity with, and where to hand the certificate out. `bowline vm bundle`
//! writes one; relative paths are relative to the file's directory.
//!
//! ```yaml
//! discovery: bowline.bowline-system.svc:15012   # Bowline's TLS port; the host is the TLS name
//! address: 192.0.2.10:15012                     # optional: dial here instead of resolving it
//! rootCert: root-cert.pem                       # the root Bowline's TLS port verifies to
//! token: token                                  # a VM token file, or
//! # jwt: /var/run/secrets/tokens/istio-token    # a Kubernetes service-account token file
//! clusterId: east                               # sent as ClusterID (which member reviews a JWT)
//! ttl: 24h
//! sdsSocket: /var/run/secrets/workload-spiffe-uds/socket
//! certDir: /var/run/secrets/workload-spiffe-credentials
//! grpcBootstrap: {path: grpc-bootstrap.json, nodeId: "sidecar~10.0.0.5~vm-1.demo~demo.svc.cluster.local"}
//! ```

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context;
use serde::Deserialize;

/// Where Envoy's SDS socket is by default: Istio's.
pub const DEFAULT_SDS_SOCKET: &str = "/var/run/secrets/workload-spiffe-uds/socket";
/// Where the PEM files go by default: Istio's file-mounted credentials.
pub const DEFAULT_CERT_DIR: &str = "/var/run/secrets/workload-spiffe-credentials";

/// What proves the workload's identity to the CA.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A file holding a Bowline VM token.
    Token(PathBuf),
    /// A file holding a Kubernetes service-account token (re-read at every request: the
    /// kubelet rotates it).
    Jwt(PathBuf),
}

impl Credential {
    /// The file.
    pub fn path(&self) -> &Path {
        match self {
            Self::Token(p) | Self::Jwt(p) => p,
        }
    }
}

/// `grpcBootstrap`: a gRPC xDS bootstrap for a proxyless application on this node.
#[derive(Clone, Debug, PartialEq)]
pub struct GrpcBootstrap {
    /// Where to write it (`GRPC_XDS_BOOTSTRAP` points there).
    pub path: PathBuf,
    /// The node id the application presents.
    pub node_id: String,
    /// The node metadata (`CLUSTER_ID`, `NETWORK`, `NAMESPACE`, `LABELS` as a map...);
    /// `BOWLINE_SDS: "true"` is added (the bootstrap has the certificate provider).
    pub metadata: BTreeMap<String, serde_json::Value>,
}

/// `agent.yaml`, validated.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    /// The file it was read from.
    pub file: PathBuf,
    /// `host:port` of Bowline's TLS port; the host is the name its certificate must carry.
    pub discovery: String,
    /// Where to dial instead of resolving the discovery host.
    pub address: Option<String>,
    /// The root certificate Bowline's TLS port verifies to.
    pub root_cert: PathBuf,
    /// The credential.
    pub credential: Credential,
    /// The `ClusterID` to send.
    pub cluster_id: Option<String>,
    /// The lifetime to ask for.
    pub ttl: Duration,
    /// Envoy's SDS Unix socket; `None`: no SDS server.
    pub sds_socket: Option<PathBuf>,
    /// The directory for `cert-chain.pem`, `key.pem` and `root-cert.pem`; `None`: no files.
    pub cert_dir: Option<PathBuf>,
    /// The gRPC bootstrap to write.
    pub grpc_bootstrap: Option<GrpcBootstrap>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    discovery: String,
    address: Option<String>,
    root_cert: PathBuf,
    token: Option<PathBuf>,
    jwt: Option<PathBuf>,
    cluster_id: Option<String>,
    ttl: Option<String>,
    /// `""` turns the SDS server off.
    sds_socket: Option<PathBuf>,
    /// `""` turns the files off.
    cert_dir: Option<PathBuf>,
    grpc_bootstrap: Option<RawBootstrap>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBootstrap {
    path: PathBuf,
    node_id: String,
    #[serde(default)]
    metadata: BTreeMap<String, serde_json::Value>,
}

impl AgentConfig {
    /// Reads and checks `file`; errors name the file and the field.
    pub fn load(file: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        Self::parse(file, &text)
    }

    /// [`AgentConfig::load`] from `text`, as read from `file`.
    pub fn parse(file: &Path, text: &str) -> anyhow::Result<Self> {
        let at = |field: &str| format!("{}: {field}", file.display());
        let raw: Raw =
            serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let base = file.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| base.join(p);
        if raw
            .discovery
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            anyhow::bail!(
                "{}: {:?} is not host:port of Bowline's TLS port, such as bowline.bowline-system.svc:15012",
                at("discovery"),
                raw.discovery
            );
        }
        let credential = match (raw.token, raw.jwt) {
            (Some(token), None) => Credential::Token(resolve(&token)),
            (None, Some(jwt)) => Credential::Jwt(resolve(&jwt)),
            (Some(_), Some(_)) => anyhow::bail!("{}: give token or jwt, not both", at("token")),
            (None, None) => anyhow::bail!(
                "{}: required: token (a VM token file from `bowline vm bundle`) or jwt (a Kubernetes service-account token file)",
                at("token")
            ),
        };
        let ttl = match raw.ttl {
            None => bowline_vm::workload::DEFAULT_TTL,
            Some(text) => humantime::parse_duration(&text)
                .ok()
                .filter(|ttl| *ttl >= Duration::from_secs(10))
                .with_context(|| {
                    format!(
                        "{}: {text:?} is not a duration of at least 10s, such as 24h",
                        at("ttl")
                    )
                })?,
        };
        let optional = |raw: Option<PathBuf>, default: &str| match raw {
            Some(p) if p.as_os_str().is_empty() => None,
            Some(p) => Some(resolve(&p)),
            None => Some(PathBuf::from(default)),
        };
        let grpc_bootstrap = match raw.grpc_bootstrap {
            None => None,
            Some(b) if b.node_id.is_empty() => {
                anyhow::bail!("{}: must not be empty", at("grpcBootstrap.nodeId"))
            }
            Some(b) => Some(GrpcBootstrap {
                path: resolve(&b.path),
                node_id: b.node_id,
                metadata: b.metadata,
            }),
        };
        let cert_dir = optional(raw.cert_dir, DEFAULT_CERT_DIR);
        if grpc_bootstrap.is_some() && cert_dir.is_none() {
            anyhow::bail!(
                "{}: a gRPC bootstrap points at the certificate files; certDir must not be empty",
                at("grpcBootstrap")
            );
        }
        Ok(Self {
            file: file.to_path_buf(),
            discovery: raw.discovery,
            address: raw.address,
            root_cert: resolve(&raw.root_cert),
            credential,
            cluster_id: raw.cluster_id.filter(|c| !c.is_empty()),
            ttl,
            sds_socket: optional(raw.sds_socket, DEFAULT_SDS_SOCKET),
            cert_dir,
            grpc_bootstrap,
        })
    }

    /// The TLS name of Bowline's port: the discovery host.
    pub fn server_name(&self) -> &str {
        self.discovery
            .rsplit_once(':')
            .map_or(self.discovery.as_str(), |(host, _)| {
                host.trim_matches(['[', ']'])
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relative_to_the_file_and_empty_turns_a_part_off() {
        let config = AgentConfig::parse(
            Path::new("/vm/agent.yaml"),
            "discovery: bowline.bowline-system.svc:15012\nrootCert: root-cert.pem\ntoken: token\nsdsSocket: ''\ncertDir: certs\nttl: 1m\n",
        )
        .unwrap();
        assert_eq!(config.root_cert, Path::new("/vm/root-cert.pem"));
        assert_eq!(config.credential, Credential::Token("/vm/token".into()));
        assert_eq!(config.sds_socket, None);
        assert_eq!(config.cert_dir.as_deref(), Some(Path::new("/vm/certs")));
        assert_eq!(config.ttl, Duration::from_secs(60));
        assert_eq!(config.server_name(), "bowline.bowline-system.svc");
    }

    #[test]
    fn mistakes_name_the_field() {
        for (text, needle) in [
            (
                "discovery: bowline\nrootCert: r\ntoken: t\n",
                "discovery: \"bowline\" is not host:port",
            ),
            ("discovery: b:1\nrootCert: r\n", "token: required"),
            (
                "discovery: b:1\nrootCert: r\ntoken: t\njwt: j\n",
                "give token or jwt, not both",
            ),
            (
                "discovery: b:1\nrootCert: r\ntoken: t\nttl: 1s\n",
                "ttl: \"1s\" is not a duration of at least 10s",
            ),
            (
                "discovery: b:1\nrootCert: r\ntoken: t\nroot: x\n",
                "unknown field",
            ),
        ] {
            let err = AgentConfig::parse(Path::new("agent.yaml"), text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
