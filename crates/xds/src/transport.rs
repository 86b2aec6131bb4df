//! How a stream reached the server: plaintext or TLS. [`serve_with`] puts an [`Origin`]
//! into every request's extensions, where the [`Workloads`](crate::server::Workloads) hook
//! finds it (with the peer and the request's metadata) to decide who the caller is: the rule
//! is the composition root's, not this crate's.

use std::future::Future;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{
    Request,
    transport::{Identity, ServerTlsConfig},
};

/// The listener a stream arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The plaintext port (`listen.xds`): registration only from loopback.
    Plaintext,
    /// The TLS port (`listen.xdsTls`): registration with a bearer token.
    Tls,
}

/// What [`serve_with`] records in each request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct Origin {
    /// The listener.
    pub transport: Transport,
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
            request.extensions_mut().insert(origin);
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
