//! Member sources: where each member's Kubernetes objects come from.
//!
//! A manifest-directory member ([`manifests`]) is a directory of YAML files holding one
//! cluster's objects; it is watched, only the files that changed are read again, and each
//! batch of changes is turned into one atomic registry event. Whatever Bowline writes into a
//! member lives under `<dir>/.bowline/`, which is never read back as user manifests, except the
//! auto-registered WorkloadEntries of `.bowline/workloadentries/`.

pub mod documents;
mod index;
pub mod manifests;
pub mod scan;

pub use manifests::{ManifestMember, SourceStats, scan_directory};
