//! The same events applied in any interleaving across members give the same view.

use bowline_model::{Change, Network, Object, ObjectKind, SourceEvent, labels};
use bowline_registry::{MemberConfig, Registry};
use bowline_test_support::*;
use proptest::prelude::*;

const MEMBERS: [&str; 3] = ["east", "west", "central"];

/// One random change in one member, over a small space of names so that events collide.
fn change_strategy() -> impl Strategy<Value = Change> {
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
fn member_history() -> impl Strategy<Value = Vec<Vec<Change>>> {
    prop::collection::vec(prop::collection::vec(change_strategy(), 1..4), 1..6)
}

fn events(member_name: &str, history: &[Vec<Change>]) -> Vec<SourceEvent> {
    let id = cluster_id(&format!("{member_name}-id"));
    let mut out = vec![reset(member_name, vec![id])];
    out.extend(
        history
            .iter()
            .map(|batch| changes(member_name, batch.clone())),
    );
    out
}

fn new_registry() -> Registry {
    Registry::new(
        "demo",
        MEMBERS.iter().map(|m| MemberConfig {
            name: member(m),
            id: None,
            network: Network::new(format!("{m}-net")),
        }),
    )
}

fn snapshot(reg: &Registry) -> String {
    serde_json::to_string(&(reg.services(), reg.gateways(), reg.members())).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn any_interleaving_gives_the_same_view(
        histories in prop::collection::vec(member_history(), 3),
        order in prop::collection::vec(0..3usize, 0..64),
        batch_sizes in prop::collection::vec(1..4usize, 1..16),
    ) {
        let per_member: Vec<Vec<SourceEvent>> =
            MEMBERS.iter().zip(&histories).map(|(m, h)| events(m, h)).collect();

        // Reference: each member's events in turn, one at a time.
        let mut reference = new_registry();
        for evs in &per_member {
            for e in evs {
                reference.apply(e.clone());
            }
        }

        // Interleaved: members' events merged in a random order (each member's own order kept),
        // and applied in batches of random sizes.
        let mut queues: Vec<std::collections::VecDeque<SourceEvent>> =
            per_member.iter().map(|e| e.iter().cloned().collect()).collect();
        let mut merged = Vec::new();
        for pick in order.iter().copied().chain((0..3).cycle().take(64 * 3)) {
            if let Some(e) = queues[pick].pop_front() {
                merged.push(e);
            }
        }
        for q in &mut queues {
            merged.extend(q.drain(..));
        }
        let mut interleaved = new_registry();
        let mut rest = merged.as_slice();
        for size in batch_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (batch, tail) = rest.split_at((*size).min(rest.len()));
            interleaved.apply_all(batch.iter().cloned());
            rest = tail;
        }
        prop_assert_eq!(snapshot(&reference), snapshot(&interleaved));
    }
}
