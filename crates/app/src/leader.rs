//! Which replica writes: the holder of the configured Lease, or this one when there is no
//! `leaderElection` (a single replica).

use std::sync::Arc;

use bowline_kube::lease::{Leadership, LeaseConfig, campaign};
use prometheus_client::metrics::gauge::Gauge;
use tokio::{sync::watch, task::JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// This replica's identity: the pod name (`POD_NAME`), else the host name, with the process id.
fn identity() -> String {
    format!(
        "{}-{}",
        crate::config::validate::host_name(),
        std::process::id()
    )
}

/// This replica's name: `leaderElection.identity`, else [`identity`]'s.
pub(crate) fn replica_identity(config: &Config) -> String {
    config
        .leader_election
        .as_ref()
        .and_then(|e| e.identity.clone())
        .unwrap_or_else(identity)
}

/// Starts campaigning (or declares this replica the leader) and keeps `gauge` at 1 while
/// leading.
pub(crate) fn spawn_leader(
    tasks: &mut JoinSet<()>,
    config: &Config,
    gauge: Gauge,
    shutdown: CancellationToken,
) -> watch::Receiver<Leadership> {
    let Some(election) = &config.leader_election else {
        let identity = identity();
        gauge.set(1);
        let (tx, rx) = watch::channel(Leadership {
            leading: true,
            identity,
            holder: None,
            lease: String::new(),
            error: None,
        });
        tasks.spawn(async move {
            shutdown.cancelled().await;
            drop(tx);
        });
        return rx;
    };
    let identity = election.identity.clone().unwrap_or_else(identity);
    let member = config
        .members
        .iter()
        .find(|m| m.name == election.member)
        .expect("leaderElection.member was validated");
    let lease = LeaseConfig {
        duration: election.lease_duration,
        renew_deadline: election.lease_duration * 2 / 3,
        retry: (election.lease_duration / 7).max(std::time::Duration::from_millis(100)),
        ..LeaseConfig::new(&election.namespace, &election.name, &identity)
    };
    let (tx, rx) = watch::channel(Leadership {
        identity,
        lease: format!("{}/{}", election.namespace, election.name),
        ..Leadership::default()
    });
    tasks.spawn(campaign(
        crate::members::credentials(&member.source)
            .expect("leaderElection.member was validated as a Kubernetes member"),
        lease,
        tx,
        shutdown,
    ));
    let mut watched = rx.clone();
    tasks.spawn(async move {
        loop {
            gauge.set(i64::from(watched.borrow_and_update().leading));
            if watched.changed().await.is_err() {
                gauge.set(0);
                return;
            }
        }
    });
    rx
}

/// `/debug/leader`.
pub(crate) fn view(leadership: watch::Receiver<Leadership>) -> bowline_admin::DebugView {
    Arc::new(move |_| serde_json::to_value(&*leadership.borrow()).map_err(|e| e.to_string()))
}
