//! Who opened an xDS stream or called the CA, and what they may do. A caller proves an
//! identity with one of:
//!
//! - a client certificate Bowline's CA issued (the TLS handshake verified its chain): its
//!   SPIFFE URI in `ca.trustDomain` ([`certified`]);
//! - a Kubernetes service-account token, reviewed in the member the `ClusterID` metadata
//!   names (or the only Kubernetes member) for one of `ca.audiences` ([`Reviewer`]);
//! - a Bowline VM token, scoped to one WorkloadGroup ([`bowline_vm::tokens`]);
//! - nothing, from a loopback address to the plaintext port (trusted with anything, as the
//!   host's own processes are).
//!
//! [`authenticate`] classifies a stream once when it opens; [`stream_rule`] then decides
//! whether that caller may use the port it came on and claim what its node says, and
//! [`authorize_registration`] whether it may register a VM. Refusals are logged naming the
//! proxy and the rule, and become the gRPC status the stream ends with.

use std::net::{IpAddr, SocketAddr};

use bowline_kube::Credentials;
use bowline_model::MemberName;
use bowline_vm::{
    tokens::{Anonymous, Caller, Refusal, TokenStore, authorize, bearer, is_bowline_token},
    workload::Identity,
};
use bowline_xds::transport::{Origin, Transport};
use tonic::Status;
use tracing::warn;

use crate::config::PlaintextAccess;

/// Whether `ip` is a loopback address (an IPv4-mapped one included).
pub(crate) fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => {
            v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()) || v6.is_loopback()
        }
        IpAddr::V4(v4) => v4.is_loopback(),
    }
}

/// Whether the request came over the TLS port.
fn over_tls(extensions: &tonic::Extensions) -> bool {
    extensions
        .get::<Origin>()
        .is_some_and(|o| o.transport == Transport::Tls)
}

/// Who sent a request, from its bearer token or address alone (no certificate, no review):
/// checked in `tokens`.
pub fn caller_of(
    metadata: &tonic::metadata::MetadataMap,
    extensions: &tonic::Extensions,
    peer: Option<SocketAddr>,
    tokens: Option<&TokenStore>,
) -> Caller {
    let token = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    Caller::classify(
        over_tls(extensions),
        peer.map(|a| a.ip()),
        token,
        tokens,
        jiff::Timestamp::now(),
    )
}

/// The identity of a client certificate (DER) Bowline's CA issued: its SPIFFE URI in
/// `trust_domain`.
pub fn certified(der: &[u8], trust_domain: &str) -> Result<Identity, String> {
    use x509_parser::{extensions::GeneralName, prelude::FromDer};
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| format!("the client certificate does not parse: {e}"))?;
    let sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .ok_or("the client certificate names no identity")?;
    let uri = sans.value.general_names.iter().find_map(|n| match n {
        GeneralName::URI(uri) => Some(*uri),
        _ => None,
    });
    let prefix = format!("spiffe://{trust_domain}/ns/");
    let parsed = uri
        .and_then(|u| u.strip_prefix(&prefix))
        .and_then(|rest| rest.split_once("/sa/"))
        .filter(|(ns, sa)| !ns.is_empty() && !sa.is_empty() && !sa.contains('/'));
    let Some((namespace, account)) = parsed else {
        return Err(format!(
            "the client certificate names {}, not a workload of trust domain {trust_domain}",
            uri.unwrap_or("no URI"),
        ));
    };
    Ok(Identity {
        trust_domain: trust_domain.to_owned(),
        namespace: namespace.to_owned(),
        service_account: account.to_owned(),
    })
}

/// The leaf of the client certificate chain the TLS handshake verified, DER.
fn client_certificate(extensions: &tonic::Extensions) -> Option<Vec<u8>> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let info = extensions.get::<TlsConnectInfo<TcpConnectInfo>>()?;
    let certs = info.peer_certs()?;
    certs.first().map(|c| c.to_vec())
}

/// Reviews Kubernetes service-account tokens in the member that issued them.
pub struct Reviewer {
    /// To find a member by its cluster id.
    pub registry: bowline_registry::Shared,
    /// The Kubernetes members, by configured name.
    pub kubernetes: Vec<(MemberName, Credentials)>,
    /// `ca.audiences`.
    pub audiences: Vec<String>,
    /// `ca.trustDomain`.
    pub trust_domain: String,
}

impl Reviewer {
    /// The identity `token` proves by a TokenReview in the member `cluster` names (or the
    /// only Kubernetes member), and that member's cluster id. `UNAUTHENTICATED` when the
    /// member does not accept it, `PERMISSION_DENIED` for a user that is not a service
    /// account, `UNAVAILABLE` when the member cannot be asked.
    pub async fn review(
        &self,
        token: &str,
        cluster: Option<&str>,
    ) -> Result<(Identity, String), Status> {
        use bowline_kube::review::{Reviewed, review};
        let (member, id, credentials) = self.reviewer(cluster)?;
        let client = credentials.request_client().await.map_err(|e| {
            Status::unavailable(format!(
                "cannot reach member {member} to review the token: {e}"
            ))
        })?;
        let reviewed = review(client, token, &self.audiences).await.map_err(|e| {
            Status::unavailable(format!("member {member} could not review the token: {e}"))
        })?;
        match reviewed {
            Reviewed::ServiceAccount { namespace, name } => Ok((
                Identity {
                    trust_domain: self.trust_domain.clone(),
                    namespace,
                    service_account: name,
                },
                id,
            )),
            Reviewed::OtherUser(user) => Err(Status::permission_denied(format!(
                "the token is {user:?}'s, not a service account's"
            ))),
            Reviewed::Refused(reason) => Err(Status::unauthenticated(format!(
                "member {member} does not accept the token for audience {}: {reason}",
                self.audiences.join(", ")
            ))),
        }
    }

    /// The Kubernetes member to review a token in: the one whose cluster id is `cluster`, or
    /// the only one; with its cluster id.
    fn reviewer(&self, cluster: Option<&str>) -> Result<(MemberName, String, Credentials), Status> {
        let registry = self.registry.read();
        let members = registry.members();
        let id_of = |name: &MemberName| {
            members
                .iter()
                .find(|m| m.name == *name)
                .and_then(|m| m.admission.id())
                .map(|id| id.to_string())
        };
        let found = match cluster {
            Some(id) => {
                let name = members
                    .iter()
                    .find(|m| m.admission.id().is_some_and(|i| i.as_str() == id))
                    .map(|m| m.name.clone());
                name.and_then(|name| self.kubernetes.iter().find(|(n, _)| *n == name))
            }
            None if self.kubernetes.len() == 1 => self.kubernetes.first(),
            None => None,
        };
        let found = found.and_then(|(name, credentials)| {
            Some((name.clone(), id_of(name)?, credentials.clone()))
        });
        found.ok_or_else(|| {
            Status::unauthenticated(match cluster {
                Some(id) => format!("no Kubernetes member has cluster id {id:?} (ClusterID metadata) to review the token"),
                None => "a Kubernetes token needs the ClusterID metadata naming the member that issued it".to_string(),
            })
        })
    }
}

/// Who opened a stream or called the CA: a VM token, else a service-account token (reviewed;
/// only over TLS), else a client certificate, else the address alone. A credential refused is
/// an `Anonymous` caller, saying why; `Err` only for a reviewed token that is no service
/// account's (`PERMISSION_DENIED`) or a member that cannot be asked (`UNAVAILABLE`: the
/// caller retries).
pub(crate) async fn authenticate(
    peer: Option<SocketAddr>,
    metadata: &tonic::metadata::MetadataMap,
    extensions: &tonic::Extensions,
    tokens: &TokenStore,
    reviewer: &Reviewer,
) -> Result<Caller, Status> {
    let token = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    let tls = over_tls(extensions);
    match token {
        // Not Bowline's shape: a service-account token, when a member can review one (else
        // it is a malformed VM token).
        Some(token) if !is_bowline_token(token) && tls && !reviewer.kubernetes.is_empty() => {
            let cluster = metadata.get("clusterid").and_then(|v| v.to_str().ok());
            match reviewer.review(token, cluster).await {
                Ok((identity, cluster)) => Ok(Caller::Workload {
                    identity,
                    cluster: Some(cluster),
                }),
                Err(status) if status.code() == tonic::Code::Unauthenticated => Ok(
                    Caller::Anonymous(Anonymous::Refused(status.message().to_string())),
                ),
                Err(status) => Err(status),
            }
        }
        None if tls => match client_certificate(extensions) {
            Some(der) => Ok(match certified(&der, &reviewer.trust_domain) {
                Ok(identity) => Caller::Workload {
                    identity,
                    cluster: None,
                },
                Err(why) => Caller::Anonymous(Anonymous::Refused(why)),
            }),
            None => Ok(Caller::Anonymous(Anonymous::NoToken)),
        },
        _ => Ok(caller_of(metadata, extensions, peer, Some(tokens))),
    }
}

/// What a stream's node claims, for [`stream_rule`].
pub(crate) struct Claims<'a> {
    /// `node.id`.
    pub proxy: &'a str,
    /// `NAMESPACE`.
    pub namespace: Option<&'a str>,
    /// `CLUSTER_ID`.
    pub cluster: Option<&'a str>,
    /// `AUTO_REGISTER_GROUP`: a registration, refused (naming the group) by its own rule.
    pub group: Option<&'a str>,
}

/// Whether `caller` may use the port it came on and claim what its node says:
///
/// - over TLS a credential is required (`UNAUTHENTICATED` names what to present);
/// - the plaintext port serves loopback callers only unless `listen.xdsPlaintextFrom: any`
///   (`PERMISSION_DENIED`);
/// - a proved identity bounds the node: `NAMESPACE` must be its namespace (a workload's, or a
///   VM token's), and `CLUSTER_ID` the member that reviewed its token (`PERMISSION_DENIED`
///   naming both).
pub(crate) fn stream_rule(
    caller: &Caller,
    tls: bool,
    peer: Option<SocketAddr>,
    plaintext_from: PlaintextAccess,
    claims: &Claims<'_>,
) -> Result<(), Status> {
    let refuse = |status: Status, rule: &str| {
        warn!(node = claims.proxy, rule, caller = %caller, "xDS stream refused: {}", status.message());
        status
    };
    if tls
        && claims.group.is_none()
        && let Caller::Anonymous(why) = caller
    {
        return Err(refuse(
            Status::unauthenticated(format!(
                "xDS over TLS needs a credential: a client certificate from Bowline's CA (what `bowline agent` holds), a Kubernetes service-account token for one of ca.audiences, or a VM token from `bowline vm token`; {why}"
            )),
            "tls-needs-credential",
        ));
    }
    let local = peer.is_some_and(|p| is_loopback(p.ip()));
    if !tls && !local && plaintext_from == PlaintextAccess::Loopback {
        return Err(refuse(
            Status::permission_denied(format!(
                "the plaintext xDS port serves this host's proxies only (listen.xdsPlaintextFrom: loopback), and {} is not on it: connect to listen.xdsTls with a credential, or set listen.xdsPlaintextFrom: any",
                peer.map_or("the caller".to_string(), |p| p.ip().to_string())
            )),
            "plaintext-loopback-only",
        ));
    }
    let (namespace, cluster) = match caller {
        Caller::Workload { identity, cluster } => {
            (Some(identity.namespace.as_str()), cluster.as_deref())
        }
        Caller::Token(scope) => (Some(scope.namespace.as_str()), None),
        _ => (None, None),
    };
    if let (Some(proved), Some(claimed)) = (namespace, claims.namespace)
        && proved != claimed
    {
        return Err(refuse(
            Status::permission_denied(format!(
                "proxy {:?} claims namespace {claimed:?} (NAMESPACE), but its caller is {caller}: a proxy may claim only its own namespace",
                claims.proxy
            )),
            "identity-bounds-namespace",
        ));
    }
    if let (Some(proved), Some(claimed)) = (cluster, claims.cluster)
        && proved != claimed
    {
        return Err(refuse(
            Status::permission_denied(format!(
                "proxy {:?} claims cluster {claimed:?} (CLUSTER_ID), but its token was issued by member {proved:?}: a proxy may claim only the cluster that vouches for it",
                claims.proxy
            )),
            "identity-bounds-cluster",
        ));
    }
    Ok(())
}

/// Whether `caller` may register VMs of `group` in `namespace`, whose template's service
/// account is `account`; a refusal is logged naming the proxy and the rule, and becomes
/// `UNAUTHENTICATED` (no usable credential) or `PERMISSION_DENIED` (a token for another group
/// or namespace, another workload identity).
pub fn authorize_registration(
    caller: &Caller,
    proxy: &str,
    group: &str,
    namespace: &str,
    account: &str,
) -> Result<(), Status> {
    authorize(caller, group, namespace, account).map_err(|refusal| {
        warn!(proxy, group, namespace, rule = refusal.rule(), caller = %caller, "{refusal}");
        match refusal {
            Refusal::Anonymous { .. } => Status::unauthenticated(refusal.to_string()),
            Refusal::OutOfScope { .. } | Refusal::OtherIdentity { .. } => {
                Status::permission_denied(refusal.to_string())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(namespace: &str, cluster: Option<&str>) -> Caller {
        Caller::Workload {
            identity: Identity {
                trust_domain: "cluster.local".into(),
                namespace: namespace.into(),
                service_account: "echo".into(),
            },
            cluster: cluster.map(str::to_string),
        }
    }

    fn claims<'a>(namespace: Option<&'a str>, cluster: Option<&'a str>) -> Claims<'a> {
        Claims {
            proxy: "echo-0",
            namespace,
            cluster,
            group: None,
        }
    }

    #[test]
    fn the_stream_rule_wants_credentials_over_tls_loopback_in_the_clear_and_honest_claims() {
        let remote: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let anonymous = Caller::Anonymous(Anonymous::NoToken);
        let code = |r: Result<(), Status>| r.map_err(|s| (s.code(), s.message().to_string()));
        let loopback = PlaintextAccess::Loopback;

        let (c, m) = code(stream_rule(
            &anonymous,
            true,
            Some(remote),
            loopback,
            &claims(None, None),
        ))
        .unwrap_err();
        assert_eq!(c, tonic::Code::Unauthenticated);
        assert!(m.contains("client certificate from Bowline's CA"), "{m}");

        let (c, m) = code(stream_rule(
            &anonymous,
            false,
            Some(remote),
            loopback,
            &claims(None, None),
        ))
        .unwrap_err();
        assert_eq!(c, tonic::Code::PermissionDenied);
        assert!(
            m.contains("192.0.2.7") && m.contains("listen.xdsPlaintextFrom: any"),
            "{m}"
        );
        assert!(
            stream_rule(
                &anonymous,
                false,
                Some(remote),
                PlaintextAccess::Any,
                &claims(None, None)
            )
            .is_ok()
        );
        assert!(
            stream_rule(
                &Caller::Loopback,
                false,
                Some(local),
                loopback,
                &claims(Some("any"), None)
            )
            .is_ok()
        );

        let echo = workload("shop", Some("east"));
        assert!(
            stream_rule(
                &echo,
                true,
                Some(remote),
                loopback,
                &claims(Some("shop"), Some("east"))
            )
            .is_ok()
        );
        assert!(stream_rule(&echo, true, Some(remote), loopback, &claims(None, None)).is_ok());
        let (c, m) = code(stream_rule(
            &echo,
            true,
            Some(remote),
            loopback,
            &claims(Some("bank"), None),
        ))
        .unwrap_err();
        assert_eq!(c, tonic::Code::PermissionDenied);
        assert!(
            m.contains("namespace \"bank\"")
                && m.contains("spiffe://cluster.local/ns/shop/sa/echo"),
            "{m}"
        );
        let (c, m) = code(stream_rule(
            &echo,
            true,
            Some(remote),
            loopback,
            &claims(Some("shop"), Some("west")),
        ))
        .unwrap_err();
        assert_eq!(c, tonic::Code::PermissionDenied);
        assert!(
            m.contains("cluster \"west\"") && m.contains("\"east\""),
            "{m}"
        );
        // A certificate names no cluster: CLUSTER_ID is the node's to say.
        let certified = workload("shop", None);
        assert!(
            stream_rule(
                &certified,
                true,
                Some(remote),
                loopback,
                &claims(Some("shop"), Some("west"))
            )
            .is_ok()
        );
    }
}
