//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it: the lease is
//! taken or renewed by a write conditioned on the `resourceVersion` last read, so that of
//! two replicas racing for it exactly one wins; a lease is expired when its record did not
//! change for `leaseDurationSeconds` as seen by this replica's own clock (no clock skew).

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
};
use kube::{
    Api,
    api::{PostParams, ResourceExt},
};
use serde::Serialize;
use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::credentials::Credentials;

/// Where the lease is and how it is held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (`holderIdentity`).
    pub identity: String,
    /// How long a lease not renewed stays held (`leaseDurationSeconds`).
    pub duration: Duration,
    /// How often the lease is renewed, or looked at by a follower.
    pub retry: Duration,
    /// A leader that could not renew for this long steps down (less than `duration`, so
    /// that it stops writing before anyone else may start).
    pub renew_deadline: Duration,
}

impl LeaseConfig {
    /// The defaults of client-go's leader election: 15 s lease, 10 s renew deadline, 2 s retry.
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            retry: Duration::from_secs(2),
            renew_deadline: Duration::from_secs(10),
        }
    }
}

/// Who leads, as this replica sees it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Leadership {
    /// This replica holds the lease and may write.
    pub leading: bool,
    /// This replica's identity.
    pub identity: String,
    /// The current holder, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// The Lease, as `namespace/name`.
    pub lease: String,
    /// The last error talking to the API server, if the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Campaigns for the lease until `shutdown`, publishing leadership on `out`; releases the
/// lease on shutdown so that another replica takes over at once.
pub async fn campaign(
    credentials: Credentials,
    config: LeaseConfig,
    out: watch::Sender<Leadership>,
    shutdown: CancellationToken,
) {
    let mut state = Elector {
        config,
        observed: None,
        renewed: None,
    };
    let mut client: Option<(crate::credentials::Fingerprint, kube::Client)> = None;
    loop {
        let fingerprint = credentials.fingerprint();
        if client.as_ref().is_none_or(|(seen, _)| *seen != fingerprint) {
            client = match credentials.request_client().await {
                Ok(c) => Some((fingerprint, c)),
                Err(e) => {
                    state.publish(&out, None, Some(e));
                    if !sleep(state.config.retry, &shutdown).await {
                        return;
                    }
                    continue;
                }
            };
        }
        let api: Api<Lease> = Api::namespaced(
            client.as_ref().expect("set above").1.clone(),
            &state.config.namespace,
        );
        // Bounded, so that a leader whose renewals hang learns in time that it no longer
        // leads (before the lease can expire for the others).
        let limit = state.config.renew_deadline / 2;
        let (holder, error) = match tokio::time::timeout(limit, state.attempt(&api)).await {
            Ok(Ok(holder)) => (holder, None),
            Ok(Err(e)) => (None, Some(e.to_string())),
            Err(_) => (None, Some(format!("no answer within {limit:?}"))),
        };
        state.publish(&out, holder, error);
        if !sleep(state.config.retry, &shutdown).await {
            if out.borrow().leading {
                state.release(&api).await;
                out.send_modify(|l| l.leading = false);
            }
            return;
        }
    }
}

struct Elector {
    config: LeaseConfig,
    /// The lease record last seen (its resourceVersion) and when it was first seen so.
    observed: Option<(String, Instant)>,
    /// When this replica last renewed its own lease.
    renewed: Option<Instant>,
}

impl Elector {
    fn leading(&self) -> bool {
        self.renewed
            .is_some_and(|at| at.elapsed() < self.config.renew_deadline)
    }

    fn publish(
        &self,
        out: &watch::Sender<Leadership>,
        holder: Option<String>,
        error: Option<String>,
    ) {
        let next = Leadership {
            leading: self.leading(),
            identity: self.config.identity.clone(),
            holder: holder.or_else(|| out.borrow().holder.clone()),
            lease: format!("{}/{}", self.config.namespace, self.config.name),
            error,
        };
        out.send_if_modified(|current| {
            if *current == next {
                return false;
            }
            if current.leading != next.leading {
                if next.leading {
                    info!(lease = %next.lease, identity = %next.identity, "leading: this replica writes");
                } else {
                    warn!(lease = %next.lease, identity = %next.identity, holder = next.holder.as_deref().unwrap_or("-"), "not leading: this replica stops writing");
                }
            }
            *current = next;
            true
        });
    }

    /// One round: take, renew or watch the lease; the holder seen.
    async fn attempt(&mut self, api: &Api<Lease>) -> kube::Result<Option<String>> {
        let now = Instant::now();
        let Some(lease) = api.get_opt(&self.config.name).await? else {
            let created = api
                .create(&PostParams::default(), &self.record(None, 0))
                .await;
            return self.won(created, now);
        };
        let rv = lease.resource_version().unwrap_or_default();
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        if self.observed.as_ref().is_none_or(|(seen, _)| *seen != rv) {
            self.observed = Some((rv.clone(), now));
        }
        let mine = holder.as_deref() == Some(self.config.identity.as_str());
        let duration = spec
            .lease_duration_seconds
            .map_or(self.config.duration, |s| {
                Duration::from_secs(u64::try_from(s).unwrap_or(0))
            });
        let expired = holder.is_none()
            || self
                .observed
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() >= duration);
        if !mine && !expired {
            self.renewed = None;
            return Ok(holder);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        let mut next = self.record(Some(&lease), transitions);
        next.metadata.resource_version = Some(rv);
        if mine {
            next.spec.as_mut().expect("record has a spec").acquire_time = spec.acquire_time;
        }
        let replaced = api
            .replace(&self.config.name, &PostParams::default(), &next)
            .await;
        self.won(replaced, now)
    }

    fn won(
        &mut self,
        result: kube::Result<Lease>,
        attempted: Instant,
    ) -> kube::Result<Option<String>> {
        match result {
            Ok(lease) => {
                self.renewed = Some(attempted);
                self.observed = Some((lease.resource_version().unwrap_or_default(), attempted));
                Ok(Some(self.config.identity.clone()))
            }
            // Another replica wrote first: it holds the lease.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                debug!("lost the race for the lease: {}", s.message);
                self.renewed = None;
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn record(&self, existing: Option<&Lease>, transitions: i32) -> Lease {
        let now = MicroTime(jiff::Timestamp::now());
        Lease {
            metadata: ObjectMeta {
                name: Some(self.config.name.clone()),
                namespace: Some(self.config.namespace.clone()),
                labels: existing.and_then(|l| l.metadata.labels.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.config.identity.clone()),
                // Whole seconds on the wire: rounded up, at least 1.
                lease_duration_seconds: Some(
                    i32::try_from(self.config.duration.as_secs_f64().ceil() as u64)
                        .unwrap_or(i32::MAX)
                        .max(1),
                ),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(transitions),
                ..LeaseSpec::default()
            }),
        }
    }

    /// Gives the lease up: empty holder, so that the next replica need not wait it out.
    async fn release(&mut self, api: &Api<Lease>) {
        let Ok(Some(lease)) = api.get_opt(&self.config.name).await else {
            return;
        };
        let spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        let mut next = lease.clone();
        next.spec = Some(LeaseSpec {
            holder_identity: None,
            lease_duration_seconds: Some(1),
            ..spec
        });
        match api
            .replace(&self.config.name, &PostParams::default(), &next)
            .await
        {
            Ok(_) => info!(identity = %self.config.identity, "lease released"),
            Err(e) => warn!("cannot release the lease: {e}"),
        }
        self.renewed = None;
    }
}

async fn sleep(duration: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(duration) => true,
    }
}
