//! Random ClusterSet histories for property tests: changes over a small space of names, so
//! that events collide (services, slices, pods, namespaces, nodes, exports, deletions).

use bowline_model::{Change, Object, ObjectKind, labels};
use proptest::prelude::*;

use crate::*;

/// One random change in one member, over a small space of names so that events collide.
pub fn change_strategy() -> impl Strategy<Value = Change> {
    let svc = 0..3u8;
    let pod = 0..4u8;
    prop_oneof![
        (svc.clone(), any::<bool>()).prop_map(|(s, dual)| {
            let ips: &[&str] = if dual {
                &["10.0.0.1", "fd00::1"]
            } else {
                &["10.0.0.1"]
            };
            Change::Apply(
                service("demo", &format!("svc{s}"))
                    .cluster_ips(ips)
                    .port("http", 80)
                    .build(),
            )
        }),
        (svc.clone(), pod.clone(), pod.clone(), any::<bool>()).prop_map(|(s, p1, p2, v6)| {
            let addr = |p: u8| {
                if v6 {
                    format!("fd00::{}", p + 1)
                } else {
                    format!("10.1.0.{}", p + 1)
                }
            };
            let name = format!("svc{s}-{}", if v6 { "v6" } else { "v4" });
            Change::Apply(
                slice("demo", &name, &format!("svc{s}"))
                    .port("http", 8080)
                    .endpoint(ep(&addr(p1)).pod(&format!("pod{p1}")).node("n1"))
                    .endpoint(ep(&addr(p2)).pod(&format!("pod{p2}")).zone("z2"))
                    .build(),
            )
        }),
        (pod.clone(), 0..3u8).prop_map(|(p, n)| Change::Apply(pod_with_network(p, n))),
        (0..3u8).prop_map(|n| Change::Apply(namespace(
            "demo",
            &[(labels::NETWORK, &format!("ns-net{n}"))]
        ))),
        (0..3u8).prop_map(|z| Change::Apply(node("n1", &[(labels::ZONE, &format!("zone{z}"))]))),
        svc.clone()
            .prop_map(|s| Change::Apply(export("demo", &format!("svc{s}")))),
        svc.clone().prop_map(|s| Change::Delete(key(
            ObjectKind::Service,
            "demo",
            &format!("svc{s}")
        ))),
        (svc, any::<bool>()).prop_map(|(s, v6)| {
            let name = format!("svc{s}-{}", if v6 { "v6" } else { "v4" });
            Change::Delete(key(ObjectKind::EndpointSlice, "demo", &name))
        }),
        pod.prop_map(|p| Change::Delete(key(ObjectKind::Pod, "demo", &format!("pod{p}")))),
        Just(Change::Delete(key(ObjectKind::Namespace, "", "demo"))),
    ]
}

fn pod_with_network(p: u8, n: u8) -> Object {
    pod(
        "demo",
        &format!("pod{p}"),
        &[(labels::NETWORK, &format!("pod-net{n}"))],
    )
}

/// Per member: a full listing followed by batches of changes.
pub fn member_history() -> impl Strategy<Value = Vec<Vec<Change>>> {
    prop::collection::vec(prop::collection::vec(change_strategy(), 1..4), 1..6)
}

/// A member's events: a full listing with its ClusterProperty id (`<member>-id`), then each
/// batch of a [`member_history`] as one `Changes` event.
pub fn events(member_name: &str, history: &[Vec<Change>]) -> Vec<bowline_model::SourceEvent> {
    let id = cluster_id(&format!("{member_name}-id"));
    let mut out = vec![reset(member_name, vec![id])];
    out.extend(
        history
            .iter()
            .map(|batch| changes(member_name, batch.clone())),
    );
    out
}
