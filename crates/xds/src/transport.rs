//! How a stream reached the server: plaintext or TLS, with the token store to check bearer
//! tokens against. [`serve_with`] puts an [`Origin`] into every request's extensions; a
//! handler turns the request into a [`Caller`] with [`caller`] and checks a registration
//! with [`authorize_registration`], which logs a refusal and returns the gRPC status to
//! end the stream with.

use std::{future::Future, sync::Arc};

use bowline_vm::tokens::{Caller, Refusal, TokenStore, authorize, bearer};
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{
    Request, Status,
    transport::{Identity, ServerTlsConfig},
};
use tracing::warn;

/// The listener a stream arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The plaintext port (`listen.xds`): registration only from loopback.
    Plaintext,
    /// The TLS port (`listen.xdsTls`): registration with a bearer token.
    Tls,
}

/// What [`serve_with`] records in each request's extensions.
#[derive(Clone, Debug)]
pub struct Origin {
    /// The listener.
    pub transport: Transport,
    /// Where bearer tokens are checked; `None`: every presented token is refused.
    pub tokens: Option<Arc<TokenStore>>,
}

/// The serving certificate of a TLS listener, PEM.
#[derive(Clone, Debug)]
pub struct TlsIdentity {
    /// The certificate (chain), PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
}

/// Serves `ads` on `listener` until `shutdown` completes: over TLS with `tls`, else
/// plaintext; every request carries `origin` in its extensions. A failed TLS handshake
/// ends only that connection.
pub async fn serve_with<S: AggregatedDiscoveryService>(
    listener: TcpListener,
    ads: S,
    origin: Origin,
    tls: Option<TlsIdentity>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(
            ServerTlsConfig::new().identity(Identity::from_pem(tls.cert_pem, tls.key_pem)),
        )?;
    }
    let service =
        AggregatedDiscoveryServiceServer::with_interceptor(ads, move |mut request: Request<()>| {
            request.extensions_mut().insert(origin.clone());
            Ok(request)
        });
    builder
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

/// The transport a request came over: what [`serve_with`] recorded, else plaintext.
pub fn transport<T>(request: &Request<T>) -> Transport {
    request
        .extensions()
        .get::<Origin>()
        .map_or(Transport::Plaintext, |o| o.transport)
}

/// Who sent `request`: its transport and token store from the [`Origin`] extension (none:
/// plaintext without tokens), its peer address and its `authorization: Bearer …` metadata.
pub fn caller<T>(request: &Request<T>) -> Caller {
    caller_of(
        request.metadata(),
        request.extensions(),
        request.remote_addr(),
    )
}

/// [`caller`] from a request's parts (a stream keeps them after taking its message stream).
pub fn caller_of(
    metadata: &tonic::metadata::MetadataMap,
    extensions: &tonic::Extensions,
    peer: Option<std::net::SocketAddr>,
) -> Caller {
    let origin = extensions.get::<Origin>();
    let token = metadata
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    Caller::classify(
        origin.is_some_and(|o| o.transport == Transport::Tls),
        peer.map(|a| a.ip()),
        token,
        origin.and_then(|o| o.tokens.as_deref()),
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
