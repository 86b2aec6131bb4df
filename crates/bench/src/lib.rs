//! End-to-end benchmark of the release binary: generated members served as
//! manifest directories or by in-process fake API servers, `bowline run` spawned on them, N
//! ADS streams subscribed to one clusterset cluster, and the time from a change in one member
//! to the new ClusterLoadAssignment on every stream.
//!
//! ```text
//!  scenario (M×S×E objects) ──► members (files | FakeApiServer) ──► bowline run (child)
//!                                    ▲ change (rename | write)            │ ADS
//!                                    │                                    ▼
//!                                 run (timing, /proc) ◄── Report ── ads (N streams)
//! ```
//!
//! Run it with `scripts/bench-e2e`; the figures are in `docs/BENCHMARKS.md`.

pub mod ads;
pub mod members;
pub mod run;
pub mod scenario;
pub mod stats;
pub mod wire;
