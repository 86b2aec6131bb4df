//! ClusterSet metrics, read from the latest snapshot at scrape time.

use std::sync::Arc;

use bowline_views::{Admission, ClusterSet, MemberStatus};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, gauge::ConstGauge},
};
use tokio::sync::watch;

/// Exposes members, objects, endpoints, rejections, services and gateways as gauges.
pub struct ClusterSetCollector(pub watch::Receiver<Arc<ClusterSet>>);

impl std::fmt::Debug for ClusterSetCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSetCollector")
    }
}

fn gauge<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Vec<(&'a str, String)>, i64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for ClusterSetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.0.borrow().clone();
        let (members, services, gateways, rejections) = (
            &snapshot.members,
            snapshot.services.len(),
            &snapshot.gateways,
            &snapshot.rejections,
        );
        let id_of = |name: &str| {
            members
                .iter()
                .find(|m| m.name.as_str() == name)
                .and_then(|m| m.admission.id())
                .map(|id| id.to_string())
                .unwrap_or_default()
        };
        let member_labels = |m: &MemberStatus| {
            vec![
                ("member", m.name.to_string()),
                (
                    "cluster",
                    m.admission.id().map(|i| i.to_string()).unwrap_or_default(),
                ),
            ]
        };
        let states = ["admitted", "pending", "refused"].map(|state| {
            let count = members
                .iter()
                .filter(|m| match m.admission {
                    Admission::Admitted { .. } => state == "admitted",
                    Admission::Pending => state == "pending",
                    Admission::Refused { .. } => state == "refused",
                })
                .count();
            (vec![("state", state.to_string())], count as i64)
        });
        gauge(
            &mut encoder,
            "bowline_members",
            "Configured members by admission state.",
            states,
        )?;
        gauge(
            &mut encoder,
            "bowline_member_synced",
            "1 once the member's first full listing arrived.",
            members
                .iter()
                .map(|m| (member_labels(m), i64::from(m.synced))),
        )?;
        gauge(
            &mut encoder,
            "bowline_member_stale",
            "1 while the member's source fails: its last known objects are served.",
            members
                .iter()
                .map(|m| (member_labels(m), i64::from(m.stale))),
        )?;
        gauge(
            &mut encoder,
            "bowline_member_withdrawn",
            "1 once the member was stale for longer than staleEndpointTTL: its endpoints are withdrawn.",
            members
                .iter()
                .map(|m| (member_labels(m), i64::from(m.withdrawn))),
        )?;
        gauge(
            &mut encoder,
            "bowline_member_missing_kinds",
            "Kinds the member cannot serve because their CRD is not installed.",
            members
                .iter()
                .map(|m| (member_labels(m), m.missing.len() as i64)),
        )?;
        gauge(
            &mut encoder,
            "bowline_member_objects",
            "Objects held per member and kind.",
            members.iter().flat_map(|m| {
                m.objects.iter().map(move |(kind, n)| {
                    let mut labels = member_labels(m);
                    labels.push(("kind", kind.to_string()));
                    (labels, *n as i64)
                })
            }),
        )?;
        gauge(
            &mut encoder,
            "bowline_member_endpoints",
            "Endpoints each member contributes to the ClusterSet view.",
            members
                .iter()
                .map(|m| (member_labels(m), m.endpoints as i64)),
        )?;
        let mut by_reason: std::collections::BTreeMap<(String, String), i64> = Default::default();
        for r in rejections.iter() {
            *by_reason
                .entry((r.member.to_string(), r.reason.to_string()))
                .or_default() += 1;
        }
        gauge(
            &mut encoder,
            "bowline_rejected_objects",
            "Objects and members currently refused, by member and reason.",
            by_reason.into_iter().map(|((member, reason), n)| {
                let cluster = id_of(&member);
                (
                    vec![("member", member), ("cluster", cluster), ("reason", reason)],
                    n,
                )
            }),
        )?;
        let family = encoder.encode_descriptor(
            "bowline_services",
            "Services in the ClusterSet view.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(services as i64).encode(family)?;
        gauge(
            &mut encoder,
            "bowline_gateways",
            "East-west gateway addresses per network.",
            gateways
                .iter()
                .map(|(network, list)| (vec![("network", network.to_string())], list.len() as i64)),
        )?;
        Ok(())
    }
}
