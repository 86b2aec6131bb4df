//! DNS for the ClusterSet: `clusterset.local` answered as the MCS DNS specification (v1.0.0)
//! and CoreDNS's `multicluster` plugin (which the conformance suite runs against) do.
//!
//! ```text
//!  MCS imports + ClusterSet namespaces ──► View ──► answer(qname, qtype) ──► Answer
//!                                           │       (pure: rcode, answers, additionals)
//!                                           ▼
//!  UDP query ──► receive loop ──► Cache ──hit──► copy, patch id/flags/question ──► send
//!                (one per socket)   └──miss──► reference path: answer + hickory encoding
//!  TCP query ──► guarded connection ──► its own Cache (as above)
//! ```

pub mod answer;
pub mod cache;
pub mod server;
mod tcp;
mod udp;
pub mod zone;
