//! Where Bowline writes inside a manifest member's directory.

/// Directory Bowline writes into inside a manifest member. The member's manifest reader skips
/// it, except [`WORKLOAD_ENTRIES`].
pub const DIR: &str = ".bowline";

/// Directory under [`DIR`] of auto-registered WorkloadEntries. Unlike the rest of [`DIR`], the
/// member's manifest reader reads it: the entries are the member's objects, written by Bowline
/// on behalf of the VMs that connected.
pub const WORKLOAD_ENTRIES: &str = "workloadentries";
