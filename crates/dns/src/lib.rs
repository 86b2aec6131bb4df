//! DNS for the ClusterSet: `clusterset.local` answered as the MCS DNS specification (v1.0.0)
//! and CoreDNS's `multicluster` plugin (which the conformance suite runs against) do.
//!
//! ```text
//!  MCS imports + ClusterSet namespaces ──► View ──► answer(qname, qtype) ──► Answer
//!                                                   (pure: rcode, answers, additionals)
//! ```

pub mod answer;
pub mod server;
pub mod zone;
