//! Istio mutual TLS between proxies, as Istio's sidecars and east-west gateways expect it
//! (Istio's multi-network mesh: mTLS end to end, SNI passthrough at the east-west gateway):
//!
//! - a client sidecar's cluster selects, by the endpoint metadata
//!   `envoy.transport_socket_match: {tlsMode: istio}`, an upstream TLS context with the
//!   workload certificate and root from SDS (`default`, `ROOTCA`, served by the node agent on
//!   the bootstrap cluster [`SDS_CLUSTER`]), SNI `outbound_.<port>_._.<host>` (what east-west
//!   gateways route by), ALPN `istio-peer-exchange, istio` (and `h2` for HTTP/2) and a check
//!   that the server is a workload of the service's namespace in the trust domain; endpoints
//!   without a proxy get plaintext;
//! - a server sidecar's inbound filter chains terminate that TLS, requiring a client
//!   certificate of the trust domain.

use envoy_types::pb::{
    envoy::{
        config::{
            cluster::v3::cluster::TransportSocketMatch,
            core::v3::{
                ApiConfigSource, ConfigSource, GrpcService, TransportSocket, api_config_source,
                config_source::ConfigSourceSpecifier, grpc_service::EnvoyGrpc,
                grpc_service::TargetSpecifier, transport_socket,
            },
        },
        extensions::transport_sockets::{
            raw_buffer::v3::RawBuffer,
            tls::v3::{
                CertificateValidationContext, CommonTlsContext, DownstreamTlsContext,
                SdsSecretConfig, SubjectAltNameMatcher, UpstreamTlsContext,
                common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
                subject_alt_name_matcher::SanType,
            },
        },
        r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern},
    },
    google::protobuf::{BoolValue, Struct, Value, value::Kind},
};
use std::sync::Arc;

use envoy_types::util::pack_any;

/// The mesh-wide settings proxies' security depends on.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Mesh {
    /// The trust domain of every identity (`ca.trustDomain`).
    pub trust_domain: Arc<str>,
    /// Where mesh-wide PeerAuthentications live (`mtls.rootNamespace`, Istio's
    /// `istio-system`).
    pub root_namespace: Arc<str>,
}

impl Default for Mesh {
    fn default() -> Self {
        Self {
            trust_domain: crate::node::DEFAULT_TRUST_DOMAIN.into(),
            root_namespace: DEFAULT_ROOT_NAMESPACE.into(),
        }
    }
}

/// Istio's root namespace.
pub const DEFAULT_ROOT_NAMESPACE: &str = "istio-system";

/// The Envoy bootstrap cluster that reaches the node agent's SDS socket (Istio's name).
pub const SDS_CLUSTER: &str = "sds-grpc";
/// The SDS secret of the workload's certificate and key.
pub const CERTIFICATE: &str = "default";
/// The SDS secret of the root peers are validated with.
pub const ROOT: &str = "ROOTCA";
/// The endpoint metadata key transport socket matches read (Envoy's).
pub const MATCH_KEY: &str = "envoy.transport_socket_match";
/// ALPN of Istio mTLS between proxies.
const ISTIO_ALPN: [&str; 2] = ["istio-peer-exchange", "istio"];

/// The SNI a client sidecar sends to `host:port`, and the name of the SNI-DNAT cluster an
/// east-west gateway routes it to (Istio's `outbound_.<port>_.<subset>_.<host>`, no subset).
pub fn sni(port: u16, host: &str) -> String {
    format!("outbound_.{port}_._.{host}")
}

/// The host and port an [`sni`] name stands for.
pub fn parse_sni(name: &str) -> Option<(u16, &str)> {
    let (port, host) = name.strip_prefix("outbound_.")?.split_once("_._.")?;
    Some((port.parse().ok()?, host))
}

/// `{tlsMode: istio}`: the endpoint metadata under [`MATCH_KEY`] of an mTLS endpoint, and the
/// match that selects the TLS socket.
pub fn tls_mode_istio() -> Struct {
    Struct {
        fields: [(
            "tlsMode".to_string(),
            Value {
                kind: Some(Kind::StringValue(
                    bowline_model::labels::TLS_MODE_ISTIO.into(),
                )),
            },
        )]
        .into_iter()
        .collect(),
    }
}

fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_string(),
        sds_config: Some(ConfigSource {
            resource_api_version: envoy_types::pb::envoy::config::core::v3::ApiVersion::V3 as i32,
            config_source_specifier: Some(ConfigSourceSpecifier::ApiConfigSource(
                ApiConfigSource {
                    api_type: api_config_source::ApiType::Grpc as i32,
                    transport_api_version: envoy_types::pb::envoy::config::core::v3::ApiVersion::V3
                        as i32,
                    grpc_services: vec![GrpcService {
                        target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
                            cluster_name: SDS_CLUSTER.into(),
                            ..EnvoyGrpc::default()
                        })),
                        ..GrpcService::default()
                    }],
                    set_node_on_first_message_only: true,
                    ..ApiConfigSource::default()
                },
            )),
            ..ConfigSource::default()
        }),
    }
}

fn uri_matcher(pattern: MatchPattern) -> SubjectAltNameMatcher {
    SubjectAltNameMatcher {
        san_type: SanType::Uri as i32,
        matcher: Some(StringMatcher {
            match_pattern: Some(pattern),
            ..StringMatcher::default()
        }),
        ..SubjectAltNameMatcher::default()
    }
}

/// The certificate from SDS, and peers validated by the SDS root plus `sans`.
fn common(alpn: &[&str], sans: Vec<SubjectAltNameMatcher>) -> CommonTlsContext {
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds(CERTIFICATE)],
        alpn_protocols: alpn.iter().map(|p| p.to_string()).collect(),
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(CertificateValidationContext {
                    match_typed_subject_alt_names: sans,
                    ..CertificateValidationContext::default()
                }),
                validation_context_sds_secret_config: Some(sds(ROOT)),
                ..CombinedCertificateValidationContext::default()
            },
        )),
        ..CommonTlsContext::default()
    }
}

/// A client sidecar's transport sockets for the cluster of `host:port` in `namespace`:
/// Istio mTLS to endpoints marked `tlsMode: istio`, plaintext to the others.
pub fn upstream_matches(
    trust_domain: &str,
    namespace: &str,
    host: &str,
    port: u16,
    http2: bool,
) -> Vec<TransportSocketMatch> {
    let mut alpn = ISTIO_ALPN.to_vec();
    if http2 {
        alpn.push("h2");
    }
    // The server must be a workload of the service's namespace (pods' service accounts are
    // not read; a WorkloadEntry's would narrow it, but would make the cluster depend on
    // endpoints).
    let san = uri_matcher(MatchPattern::Prefix(format!(
        "spiffe://{trust_domain}/ns/{namespace}/sa/"
    )));
    let tls = UpstreamTlsContext {
        common_tls_context: Some(common(&alpn, vec![san])),
        sni: sni(port, host),
        ..UpstreamTlsContext::default()
    };
    vec![
        TransportSocketMatch {
            name: "tlsMode-istio".into(),
            r#match: Some(tls_mode_istio()),
            transport_socket: Some(TransportSocket {
                name: "envoy.transport_sockets.tls".into(),
                config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(tls))),
            }),
        },
        TransportSocketMatch {
            name: "tlsMode-disabled".into(),
            r#match: Some(Struct::default()),
            transport_socket: Some(TransportSocket {
                name: "envoy.transport_sockets.raw_buffer".into(),
                config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(
                    RawBuffer::default(),
                ))),
            }),
        },
    ]
}

/// A proxyless gRPC client's or server's certificates (gRFC A29): the certificate provider
/// `default` of its bootstrap (the node agent's `file_watcher` files), for its own certificate
/// and for the root.
fn grpc_common(sans: Vec<StringMatcher>) -> CommonTlsContext {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::CertificateProviderPluginInstance;
    let provider = |certificate_name: &str| CertificateProviderPluginInstance {
        instance_name: GRPC_PROVIDER.into(),
        certificate_name: certificate_name.into(),
    };
    #[allow(deprecated)] // gRPC reads `match_subject_alt_names`, not the typed matchers
    let validation = CertificateValidationContext {
        ca_certificate_provider_instance: Some(provider(ROOT)),
        match_subject_alt_names: sans,
        ..CertificateValidationContext::default()
    };
    CommonTlsContext {
        tls_certificate_provider_instance: Some(provider(CERTIFICATE)),
        validation_context_type: Some(ValidationContextType::ValidationContext(validation)),
        ..CommonTlsContext::default()
    }
}

/// The certificate provider instance a proxyless gRPC bootstrap names (what `bowline agent`
/// writes).
pub const GRPC_PROVIDER: &str = "default";

/// A proxyless gRPC client's transport socket to a service of `namespace`: mTLS with its
/// bootstrap's certificates, the server a workload of that namespace (gRPC has no transport
/// socket matches: every endpoint of the cluster is reached with mTLS).
pub fn grpc_upstream(trust_domain: &str, namespace: &str) -> TransportSocket {
    let san = StringMatcher {
        match_pattern: Some(MatchPattern::Prefix(format!(
            "spiffe://{trust_domain}/ns/{namespace}/sa/"
        ))),
        ..StringMatcher::default()
    };
    let tls = UpstreamTlsContext {
        common_tls_context: Some(grpc_common(vec![san])),
        ..UpstreamTlsContext::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(tls))),
    }
}

/// A proxyless gRPC server's TLS: its bootstrap's certificates, a client certificate that
/// verifies to the root required (gRPC refuses SAN matchers on servers, so the trust domain is
/// not checked there: the root is the bound).
pub fn grpc_downstream() -> TransportSocket {
    let tls = DownstreamTlsContext {
        common_tls_context: Some(grpc_common(Vec::new())),
        require_client_certificate: Some(BoolValue { value: true }),
        ..DownstreamTlsContext::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(tls))),
    }
}

/// A server sidecar's inbound TLS: the workload certificate, a client certificate of the
/// trust domain required.
pub fn downstream(trust_domain: &str, http: bool) -> TransportSocket {
    let mut alpn = ISTIO_ALPN.to_vec();
    if http {
        alpn.extend(["h2", "http/1.1"]);
    }
    let san = uri_matcher(MatchPattern::Prefix(format!("spiffe://{trust_domain}/")));
    let tls = DownstreamTlsContext {
        common_tls_context: Some(common(&alpn, vec![san])),
        require_client_certificate: Some(BoolValue { value: true }),
        ..DownstreamTlsContext::default()
    };
    TransportSocket {
        name: "envoy.transport_sockets.tls".into(),
        config_type: Some(transport_socket::ConfigType::TypedConfig(pack_any(tls))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sni_names_round_trip() {
        let name = sni(8080, "echo.shop.svc.clusterset.local");
        assert_eq!(name, "outbound_.8080_._.echo.shop.svc.clusterset.local");
        assert_eq!(
            parse_sni(&name),
            Some((8080, "echo.shop.svc.clusterset.local"))
        );
        assert_eq!(parse_sni("outbound|8080||echo"), None);
    }
}
