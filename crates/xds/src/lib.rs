//! Bowline's xDS server.
//!
//! ```text
//!  ClusterSet snapshot (views stage: services, MCS imports, gateways, hosts)
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
pub mod explain;
#[cfg(feature = "fuzz")]
pub mod fuzz;
pub mod node;
pub mod resources;
pub mod security;
pub mod server;
pub mod status;
pub mod transport;
pub mod wire;

use std::future::Future;

use tokio::net::TcpListener;

/// Serves ADS in plaintext on `listener` until `shutdown` completes (see
/// [`transport::serve_with`] for TLS), with [`transport::lenient`] limits.
pub async fn serve(
    listener: TcpListener,
    ads: server::Ads,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let origin = transport::Origin {
        transport: transport::Transport::Plaintext,
    };
    transport::serve_with(transport::lenient(listener), ads, origin, None, shutdown).await
}
