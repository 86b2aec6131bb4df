//! Admission of members under their ids: unique in the set, the first admitted keeps its id.

use std::collections::HashMap;

use bowline_model::{
    ClusterId, ObjectKey, ObjectKind, RejectReason,
    cluster::{
        self, CLUSTER_ID_PROPERTY, CLUSTERSET_PROPERTY, IdSource, IdentityError, IdentityInputs,
        LEGACY_ID_PROPERTY,
    },
    labels::KUBE_SYSTEM,
};
use tracing::{info, warn};

use crate::{Member, view::Admission};

/// The key of the ClusterProperty holding a member's id.
pub(crate) fn id_property_key() -> ObjectKey {
    ObjectKey::new(ObjectKind::ClusterProperty, "", CLUSTER_ID_PROPERTY)
}

/// A member's id candidate, and the disagreement of its id sources if any.
type Candidate = Option<Result<(ClusterId, IdSource), IdentityError>>;

fn candidate(member: &Member, cluster_set: &str) -> (Candidate, Option<String>) {
    if !member.synced {
        return (None, None);
    }
    if let Some(conflict) = conflict(member) {
        // Neither copy decides: an admitted member keeps the id it has (ids are immutable
        // while a member), any other waits, refused, until one copy remains.
        let candidate = match &member.admission {
            Admission::Admitted { id, from } => Ok((id.clone(), *from)),
            _ => Err(IdentityError::ConflictingProperty(conflict)),
        };
        return (Some(candidate), None);
    }
    let store = &member.store;
    let property = |name: &str| store.properties.get(name).map(|p| p.value.as_str());
    let id_key = id_property_key();
    let inputs = IdentityInputs {
        id_property: property(CLUSTER_ID_PROPERTY),
        id_property_rejected: member
            .source_rejections
            .iter()
            .any(|r| r.object.as_ref() == Some(&id_key)),
        legacy_property: property(LEGACY_ID_PROPERTY),
        claim: store
            .claims
            .get(LEGACY_ID_PROPERTY)
            .map(|c| c.value.as_str()),
        clusterset_property: property(CLUSTERSET_PROPERTY),
        configured_id: member.config.id.as_deref(),
        kube_system_uid: store
            .namespaces
            .get(KUBE_SYSTEM)
            .and_then(|ns| ns.meta.uid.as_deref()),
    };
    (
        Some(cluster::derive_identity(&inputs, cluster_set)),
        cluster::id_disagreement(&inputs),
    )
}

/// The source's report of conflicting copies of an identity ClusterProperty, if any.
fn conflict(member: &Member) -> Option<String> {
    member
        .source_rejections
        .iter()
        .find(|r| r.reason == RejectReason::ConflictingClusterProperty)
        .map(|r| r.message.clone())
}

fn refused(error: &IdentityError) -> Admission {
    let reason = match error {
        IdentityError::ClusterSetMismatch { .. } => RejectReason::ClusterSetMismatch,
        IdentityError::ConflictingProperty(_) => RejectReason::ConflictingClusterProperty,
        _ => RejectReason::InvalidClusterId,
    };
    Admission::Refused {
        reason,
        message: error.to_string(),
    }
}

/// Recomputes every member's admission. Members already admitted under an id they still
/// claim keep it; the others are admitted in configuration order, refused when their id is
/// taken. Returns the indices of members whose id (or admitted-ness) changed.
pub(crate) fn reconcile(members: &mut [Member], cluster_set: &str) -> Vec<usize> {
    let (candidates, disagreements): (Vec<_>, Vec<_>) =
        members.iter().map(|m| candidate(m, cluster_set)).unzip();
    for (member, disagreement) in members.iter_mut().zip(disagreements) {
        if member.id_disagreement != disagreement {
            if let Some(message) = &disagreement {
                warn!(member = %member.config.name, "{message}");
            }
            member.id_disagreement = disagreement;
        }
    }
    let mut next: Vec<Option<Admission>> = vec![None; members.len()];
    let mut taken: HashMap<ClusterId, usize> = HashMap::new();
    for (i, member) in members.iter().enumerate() {
        if let (Admission::Admitted { id, .. }, Some(Ok((claimed, from)))) =
            (&member.admission, &candidates[i])
            && id == claimed
        {
            taken.insert(id.clone(), i);
            next[i] = Some(Admission::Admitted {
                id: id.clone(),
                from: *from,
            });
        }
    }
    for (i, candidate) in candidates.into_iter().enumerate() {
        if next[i].is_some() {
            continue;
        }
        next[i] = Some(match candidate {
            None => Admission::Pending,
            Some(Err(error)) => refused(&error),
            Some(Ok((id, from))) => match taken.get(&id) {
                Some(&holder) => Admission::Refused {
                    reason: RejectReason::DuplicateClusterId,
                    message: format!(
                        "cluster id {id} of member {} is already used by member {}; ids must be unique in the ClusterSet and the member admitted first keeps it",
                        members[i].config.name, members[holder].config.name
                    ),
                },
                None => {
                    taken.insert(id.clone(), i);
                    Admission::Admitted { id, from }
                }
            },
        });
    }
    let mut changed = Vec::new();
    for (i, admission) in next.into_iter().enumerate() {
        let admission = admission.unwrap_or(Admission::Pending);
        let member = &mut members[i];
        if member.admission == admission {
            continue;
        }
        log_transition(member, &admission);
        if member.admission.id() != admission.id() {
            changed.push(i);
        }
        member.admission = admission;
    }
    changed
}

fn log_transition(member: &Member, next: &Admission) {
    let name = &member.config.name;
    match (&member.admission, next) {
        (Admission::Admitted { id: old, .. }, Admission::Admitted { id: new, from })
            if old != new =>
        {
            warn!(member = %name, cluster = %new, previous = %old, ?from,
                "cluster id changed while a member: treated as the member leaving as {old} and joining as {new}");
        }
        (_, Admission::Admitted { id, from }) => {
            info!(member = %name, cluster = %id, ?from, "member joined the ClusterSet");
        }
        (Admission::Admitted { id, .. }, Admission::Refused { reason, message }) => {
            warn!(member = %name, cluster = %id, %reason, "member left the ClusterSet: {message}");
        }
        (_, Admission::Refused { reason, message }) => {
            warn!(member = %name, %reason, "member not admitted: {message}");
        }
        (_, Admission::Pending) => {}
    }
}
