//! Which Bowline instances run: each renews a Lease of its own (`bowline-vm-<controller>`,
//! labelled [`HEARTBEAT_LABEL`]) in Bowline's namespace, and reads everyone's. An instance is
//! running while its Lease changed within its `leaseDurationSeconds`, as seen by this
//! instance's own clock (as leader election judges leases: clocks may be skewed). The VM
//! registration uses it to tell a crashed instance's WorkloadEntries from a running one's.

use std::{
    collections::{BTreeSet, HashMap},
    time::Duration,
};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api,
    api::{ListParams, Patch, PatchParams},
};
use tokio::time::Instant;

use crate::writer::FIELD_MANAGER;

/// Label of heartbeat Leases; its value is the controller name.
pub const HEARTBEAT_LABEL: &str = "bowline.io/vm-controller";

/// The Lease name of `controller`: `bowline-vm-` and the name made a DNS label-ish subdomain
/// (lowercase alphanumerics, `-` and `.`; anything else becomes `-`), at most 253 characters.
pub fn lease_name(controller: &str) -> String {
    let cleaned: String = controller
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '.') => c,
            _ => '-',
        })
        .collect();
    let mut name = format!("bowline-vm-{}", cleaned.trim_matches(['-', '.']));
    name.truncate(253);
    name.trim_end_matches(['-', '.']).to_string()
}

/// This instance's heartbeat and what it has seen of the others'.
pub struct Heartbeats {
    api: Api<Lease>,
    controller: String,
    lifetime: Duration,
    /// Each Lease's `resourceVersion` and when this instance first saw it.
    observed: HashMap<String, (String, Instant)>,
}

impl Heartbeats {
    /// Heartbeats in `namespace` for `controller`, which counts as gone once its Lease has not
    /// changed for `lifetime`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        controller: &str,
        lifetime: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            controller: controller.into(),
            lifetime,
            observed: HashMap::new(),
        }
    }

    /// Renews this instance's Lease.
    pub async fn beat(&self) -> kube::Result<()> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(lease_name(&self.controller)),
                labels: Some([(HEARTBEAT_LABEL.to_string(), "true".to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.controller.clone()),
                lease_duration_seconds: Some(
                    i32::try_from(self.lifetime.as_secs().max(1)).unwrap_or(i32::MAX),
                ),
                renew_time: Some(MicroTime(jiff::Timestamp::now())),
                ..LeaseSpec::default()
            }),
        };
        let mut value = serde_json::to_value(&lease).map_err(kube::Error::SerdeError)?;
        value["apiVersion"] = "coordination.k8s.io/v1".into();
        value["kind"] = "Lease".into();
        self.api
            .patch(
                &lease_name(&self.controller),
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&value),
            )
            .await?;
        Ok(())
    }

    /// The controllers whose Lease changed within its lifetime, this one included.
    pub async fn alive(&mut self) -> kube::Result<BTreeSet<String>> {
        Ok(self.read().await?.running)
    }

    /// Every controller with a heartbeat Lease: running (changed within its lifetime, this
    /// one included) or stopped.
    pub async fn read(&mut self) -> kube::Result<Liveness> {
        let leases = self
            .api
            .list(&ListParams::default().labels(HEARTBEAT_LABEL))
            .await?;
        let now = Instant::now();
        let mut alive = BTreeSet::from([self.controller.clone()]);
        let mut stopped = BTreeSet::new();
        let mut seen = HashMap::new();
        for lease in leases.items {
            let (Some(name), Some(version)) = (
                lease.metadata.name.clone(),
                lease.metadata.resource_version.clone(),
            ) else {
                continue;
            };
            let spec = lease.spec.unwrap_or_default();
            let Some(holder) = spec.holder_identity else {
                continue;
            };
            let lifetime = Duration::from_secs(
                u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
            );
            let since = match self.observed.get(&name) {
                Some((seen_version, at)) if *seen_version == version => *at,
                _ => now,
            };
            if now.duration_since(since) < lifetime {
                alive.insert(holder);
            } else {
                stopped.insert(holder);
            }
            seen.insert(name, (version, since));
        }
        self.observed = seen;
        stopped.retain(|c| !alive.contains(c));
        Ok(Liveness {
            running: alive,
            stopped,
        })
    }
}

/// What the heartbeat Leases say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Liveness {
    /// Controllers whose Lease changed within its lifetime (this one included).
    pub running: BTreeSet<String>,
    /// Controllers whose Lease stopped changing.
    pub stopped: BTreeSet<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_valid_object_names() {
        assert_eq!(lease_name("bowline-7d9f-x2"), "bowline-vm-bowline-7d9f-x2");
        assert_eq!(lease_name("Host_Name:1"), "bowline-vm-host-name-1");
        assert!(lease_name(&"a".repeat(400)).len() <= 253);
    }
}
