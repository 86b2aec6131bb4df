//! Who may register a VM over xDS: the caller of a stream (its transport, peer and bearer
//! token, checked against the token store) and the registration rule, which logs a refusal
//! and returns the gRPC status to end the stream with. The xDS server only records the
//! transport; the rule is here, beside the token store it reads.

use std::net::SocketAddr;

use bowline_vm::tokens::{Caller, Refusal, TokenStore, authorize, bearer};
use bowline_xds::transport::{Origin, Transport};
use tonic::Status;
use tracing::warn;

/// Who sent a stream: its transport (from the [`Origin`] the listener recorded; none:
/// plaintext), its peer and its `authorization: Bearer …` metadata, checked in `tokens`.
pub fn caller_of(
    metadata: &tonic::metadata::MetadataMap,
    extensions: &tonic::Extensions,
    peer: Option<SocketAddr>,
    tokens: Option<&TokenStore>,
) -> Caller {
    let tls = extensions
        .get::<Origin>()
        .is_some_and(|o| o.transport == Transport::Tls);
    let token = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    Caller::classify(
        tls,
        peer.map(|a| a.ip()),
        token,
        tokens,
        jiff::Timestamp::now(),
    )
}

/// Whether `caller` may register VMs of `group` in `namespace`; a refusal is logged naming
/// the proxy and the rule, and becomes `UNAUTHENTICATED` (no usable token) or
/// `PERMISSION_DENIED` (a token for another group or namespace).
pub fn authorize_registration(
    caller: &Caller,
    proxy: &str,
    group: &str,
    namespace: &str,
) -> Result<(), Status> {
    authorize(caller, group, namespace).map_err(|refusal| {
        warn!(proxy, group, namespace, rule = refusal.rule(), caller = %caller, "{refusal}");
        match refusal {
            Refusal::Anonymous { .. } => Status::unauthenticated(refusal.to_string()),
            Refusal::OutOfScope { .. } => Status::permission_denied(refusal.to_string()),
        }
    })
}
