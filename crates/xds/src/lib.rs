//! Bowline's xDS server.
//!
//! ```text
//!  registry views + MCS imports + gateways
//!        │
//!        ▼
//!  eds::assign (network-aware, even weights)     resources: CDS, EDS, LDS, RDS per proxy kind
//!        │                                                  │
//!        └───────────────► per-connection state ◄───────────┘
//!                          (versions, nonces, ACK/NACK, subscriptions)
//!                                   │
//!                 ADS: StreamAggregatedResources / DeltaAggregatedResources
//! ```

pub mod cache;
pub mod dump;
pub mod eds;
pub mod node;
pub mod resources;
pub mod server;
pub mod status;

use std::future::Future;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// Serves ADS on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    ads: server::Ads,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(AggregatedDiscoveryServiceServer::new(ads))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
}
