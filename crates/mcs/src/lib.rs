//! The Multi-Cluster Services controller (KEP-1645, mcs-api v0.5.0).
//!
//! ```text
//!  Snapshot (admitted members, service views)
//!        │  export policy: cluster-local > ServiceExport > labels > namespace > default
//!        ▼
//!  constituents per name ─► merge (oldest export wins, port union, families) ─► conflicts
//!        │                                     │
//!        ▼                                     ▼
//!  ServiceExport conditions          ServiceImport + ClusterSetIPs (allocator)
//!  (Valid, Ready, Conflict)          imported EndpointSlices per source and family
//!        └──────────► MemberWrites per member ◄─────────┘  (patched per name)
//! ```
//!
//! [`Controller::reconcile`] is pure and deterministic: the same snapshot gives the same
//! objects. Writers ([`writer`]) make each member hold exactly its write set.

mod alloc;
pub mod consumer;
mod controller;
pub mod merge;
pub mod render;
mod rendered;
pub mod writer;
pub mod writes;

pub use crate::{
    alloc::Allocator,
    controller::{
        Controller, ExportInfo, FIRST_SYNC_GRACE, Import, McsConfig, MemberInput, Outcome,
        Snapshot, WriteKey, WriteKind, WriteSet,
    },
    rendered::Rendered,
    writes::{MemberWrites, WriteChange},
};
