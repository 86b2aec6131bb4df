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

pub mod eds;
