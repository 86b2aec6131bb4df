//! How a stream reached the server: plaintext or TLS. [`serve_with`] puts an [`Origin`]
//! into every request's extensions, where the [`Workloads`](crate::server::Workloads) hook
//! finds it (with the peer and the request's metadata) to decide who the caller is: the rule
//! is the composition root's, not this crate's.

use std::{
    convert::Infallible,
    future::{Future, Ready, ready},
    task::{Context, Poll},
};

use bowline_net::{Guard, Guarded};
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::{
    Request, Status, Streaming,
    body::Body,
    server::NamedService,
    service::Routes,
    transport::{
        Identity, ServerTlsConfig,
        server::{Connected, TcpConnectInfo},
    },
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
    /// The root a client certificate must chain to, PEM; `None`: clients present none.
    /// Clients may always connect without one (optional client authentication).
    pub client_ca_pem: Option<String>,
}

/// How often the server pings each connection (HTTP/2 PING), and how long it waits for the
/// answer before closing it: a peer gone silent is noticed, and a live one is never idle.
const KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(30);
const KEEPALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Streams open at once on one HTTP/2 connection (a proxy opens one ADS stream; a client
/// multiplexing many is held to this, the next ones wait).
const MAX_STREAMS_PER_CONNECTION: u32 = 1024;

/// Serves `service` (an [`Ads`], or any gRPC service) on the connections `guard` accepts
/// until `shutdown` completes: over TLS with `tls`, else plaintext; every request carries
/// `origin` in its extensions. A failed TLS handshake ends only that connection.
pub async fn serve_with<S>(
    guard: Guard,
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
    serve_routes(guard, Routes::new(service), origin, tls, shutdown).await
}

/// [`serve_with`] for several gRPC services on one listener (ADS and the CA on the TLS port).
pub async fn serve_routes(
    guard: Guard,
    routes: Routes,
    origin: Origin,
    tls: Option<TlsIdentity>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(KEEPALIVE))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION));
    if let Some(tls) = tls {
        let mut config =
            ServerTlsConfig::new().identity(Identity::from_pem(tls.cert_pem, tls.key_pem));
        if let Some(root) = tls.client_ca_pem {
            config = config
                .client_ca_root(tonic::transport::Certificate::from_pem(root))
                .client_auth_optional(true);
        }
        builder = builder.tls_config(config)?;
    }
    let incoming = futures::stream::unfold(guard, |mut guard| async move {
        let (stream, _) = guard.accept().await;
        Some((Ok::<_, std::io::Error>(Connection(stream)), guard))
    });
    builder
        .layer(MapRequestLayer::new(
            move |mut request: http::Request<Body>| {
                request.extensions_mut().insert(origin);
                request
            },
        ))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

/// The bytes every HTTP/2 connection starts with (its preface): what a new plaintext
/// connection must send within its handshake timeout.
pub const HTTP2_PREFACE_LEN: usize = 24;

/// Guards `listener` with limits no well-behaved client meets (tests, benchmarks): 65,536
/// connections, 10 s for the HTTP/2 preface, 300 s idle.
pub fn lenient(listener: tokio::net::TcpListener) -> Guard {
    let limits = bowline_net::Limits {
        max_connections: 65_536,
        handshake_timeout: std::time::Duration::from_secs(10),
        first_bytes: HTTP2_PREFACE_LEN,
        idle_timeout: std::time::Duration::from_secs(300),
    };
    Guard::new(listener, "xds", limits, std::sync::Arc::default())
}

/// A guarded connection as tonic takes it: its peer is found as a plain TCP stream's is.
struct Connection(Guarded);

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.0.get_ref().connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
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
