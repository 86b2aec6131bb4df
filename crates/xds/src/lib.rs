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
pub mod transport;

use std::future::Future;

use tokio::net::TcpListener;

/// Serves ADS in plaintext on `listener` until `shutdown` completes, without a token store
/// (see [`transport::serve_with`] for TLS and tokens).
pub async fn serve(
    listener: TcpListener,
    ads: server::Ads,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let origin = transport::Origin {
        transport: transport::Transport::Plaintext,
        tokens: None,
    };
    transport::serve_with(listener, ads, origin, None, shutdown).await
}
