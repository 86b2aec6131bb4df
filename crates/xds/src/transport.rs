//! How a stream reached the server: plaintext or TLS. [`serve_with`] puts an [`Origin`]
//! into every request's extensions, where the [`Workloads`](crate::server::Workloads) hook
//! finds it (with the peer and the request's metadata) to decide who the caller is: the rule
//! is the composition root's, not this crate's.

use std::{
    convert::Infallible,
    future::{Future, Ready, ready},
    task::{Context, Poll},
};

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{
    Request, Status, Streaming,
    body::Body,
    server::NamedService,
    transport::{Identity, ServerTlsConfig},
};
use tonic_prost::ProstDecoder;
use tower::{Service, util::MapRequestLayer};

use crate::server::Ads;

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

/// Serves `service` (an [`Ads`], or any gRPC service) on `listener` until `shutdown`
/// completes: over TLS with `tls`, else plaintext; every request carries `origin` in its
/// extensions. A failed TLS handshake ends only that connection.
pub async fn serve_with<S>(
    listener: TcpListener,
    service: S,
    origin: Origin,
    tls: Option<TlsIdentity>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(
            ServerTlsConfig::new().identity(Identity::from_pem(tls.cert_pem, tls.key_pem)),
        )?;
    }
    builder
        .layer(MapRequestLayer::new(
            move |mut request: http::Request<Body>| {
                request.extensions_mut().insert(origin);
                request
            },
        ))
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}

const SOTW: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

impl NamedService for Ads {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

/// ADS as a gRPC service: requests are decoded by tonic, responses sent by
/// [`crate::wire::Responses`] (the cache's encoded resources, not copied per stream).
impl Service<http::Request<Body>> for Ads {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let responses = match request.uri().path() {
            SOTW => streaming::<DiscoveryRequest>(request).map(|r| self.sotw(r)),
            DELTA => streaming::<DeltaDiscoveryRequest>(request).map(|r| self.delta(r)),
            path => Err(Status::unimplemented(format!("{path} is not served here"))),
        };
        ready(Ok(match responses {
            Ok(body) => {
                let mut response = http::Response::new(Body::new(body));
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/grpc"),
                );
                response
            }
            Err(status) => status.into_http(),
        }))
    }
}

/// The request's messages, decoded as they arrive. Requests must not be compressed (no xDS
/// client compresses them unless told to; tonic's own server refuses them the same way).
fn streaming<M: prost::Message + Default + Send + 'static>(
    request: http::Request<Body>,
) -> Result<Request<Streaming<M>>, Status> {
    if let Some(encoding) = request.headers().get("grpc-encoding")
        && encoding != "identity"
    {
        return Err(Status::unimplemented(format!(
            "requests compressed with {encoding:?} are not supported"
        )));
    }
    let (parts, body) = request.into_parts();
    let messages = Streaming::new_request(ProstDecoder::<M>::default(), body, None, None);
    Ok(Request::from_http(http::Request::from_parts(
        parts, messages,
    )))
}

/// The transport a request came over: what [`serve_with`] recorded, else plaintext.
pub fn transport<T>(request: &Request<T>) -> Transport {
    request
        .extensions()
        .get::<Origin>()
        .map_or(Transport::Plaintext, |o| o.transport)
}
