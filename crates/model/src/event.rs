//! What sources tell the registry: a member's objects, whole (a relist) or as changes.

use std::collections::BTreeMap;

use crate::{MemberName, Object, ObjectKey, ObjectKind, Rejection};

/// One change to one object of a member.
// Changes are moved from a source into the registry once; boxing would only add allocations.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The object was created or updated.
    Apply(Object),
    /// The object was deleted.
    Delete(ObjectKey),
}

/// What happened in a member.
#[derive(Clone, Debug, PartialEq)]
pub enum EventBody {
    /// A full listing: replaces all of the member's objects and source rejections at once,
    /// so that objects missed while disconnected are deleted. Marks the member synced.
    Reset {
        /// Every object of the member.
        objects: Vec<Object>,
        /// Every document the source refused.
        rejections: Vec<Rejection>,
    },
    /// Changes since the last event, applied together.
    Changes {
        /// The changes, in order.
        changes: Vec<Change>,
        /// When `Some`, replaces the member's source rejections.
        rejections: Option<Vec<Rejection>>,
    },
    /// The source cannot currently read the member; its last known objects stay, marked
    /// stale, until the next listing.
    SourceError(String),
    /// Kinds the member cannot be asked for (their CRD is not installed), with what to do
    /// about it; replaces the previous set. Everything else keeps working.
    Missing(BTreeMap<ObjectKind, String>),
    /// The member has been unreachable for longer than `staleEndpointTTL`: its endpoints are
    /// withdrawn from the ClusterSet view until its next full listing (`Reset`).
    Withdraw,
}

/// An event from one member's source.
#[derive(Clone, Debug, PartialEq)]
pub struct SourceEvent {
    /// The member it comes from.
    pub member: MemberName,
    /// What happened.
    pub body: EventBody,
}
