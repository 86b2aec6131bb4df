//! The snapshot published after any interleaving of events equals one built from scratch,
//! its `Changed` names every service whose view, import or export decisions differ from the
//! previous snapshot, and the controller's patched outcome equals a fresh controller's.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bowline_mcs::{Controller, McsConfig, Outcome, WriteKind, WriteSet};
use bowline_model::{
    MemberName, Network, ServiceKey, SourceEvent,
    export::{ExportDefault, ExportPolicy},
};
use bowline_registry::{MemberConfig, Registry};
use bowline_test_support::{
    arbitrary::{events, member_history},
    *,
};
use bowline_views::{ClusterSet, Input, Views, from_scratch};
use proptest::prelude::*;

const MEMBERS: [&str; 3] = ["east", "west", "central"];
const NOW: &str = "2026-12-01T00:00:00Z";

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

fn controller(existing: BTreeMap<MemberName, WriteSet>) -> Controller {
    let config = McsConfig {
        policy: ExportPolicy {
            default: ExportDefault::All,
            cluster_local: vec![],
            ..Default::default()
        },
        pools: vec![
            "241.0.0.0/16".parse().unwrap(),
            "fd00:241::/112".parse().unwrap(),
        ],
    };
    Controller::new(config, existing)
}

/// Everything a server reads of a snapshot, version and timing aside.
fn render(s: &ClusterSet) -> String {
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{:?}\n{}",
        s.services,
        s.outcome.imports,
        s.outcome.exports,
        flat(&s.outcome),
        s.gateways,
        s.hosts,
        s.members,
        s.admitted,
        s.synced,
    )
}

fn flat(outcome: &Outcome) -> BTreeMap<MemberName, WriteSet> {
    outcome
        .writes
        .iter()
        .map(|(member, writes)| (member.clone(), writes.to_set()))
        .collect()
}

/// Services whose view, import or exports differ by value between two snapshots.
fn differing(old: &ClusterSet, new: &ClusterSet) -> BTreeSet<ServiceKey> {
    let keys: BTreeSet<&ServiceKey> = [old, new]
        .iter()
        .flat_map(|s| {
            s.services
                .keys()
                .chain(s.outcome.imports.keys())
                .chain(s.outcome.exports.keys())
        })
        .collect();
    keys.into_iter()
        .filter(|k| {
            old.services.get(*k) != new.services.get(*k)
                || old.outcome.imports.get(*k) != new.outcome.imports.get(*k)
                || old.outcome.exports.get(*k) != new.outcome.exports.get(*k)
        })
        .cloned()
        .collect()
}

/// Every import has a ServiceImport in some member (so a restarted controller can read its
/// ClusterSetIPs back).
fn imports_written(outcome: &Outcome) -> bool {
    outcome.imports.keys().all(|key| {
        outcome.writes.values().any(|w| {
            w.names().get(key).is_some_and(|objects| {
                objects
                    .iter()
                    .any(|(k, _)| k.kind == WriteKind::ServiceImport)
            })
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]
    #[test]
    fn incremental_snapshots_equal_snapshots_built_from_scratch(
        histories in prop::collection::vec(member_history(), 3),
        order in prop::collection::vec(0..3usize, 0..64),
        batch_sizes in prop::collection::vec(1..4usize, 1..16),
    ) {
        let mut queues: Vec<VecDeque<SourceEvent>> = MEMBERS
            .iter()
            .zip(&histories)
            .map(|(m, h)| events(m, h).into())
            .collect();
        let mut merged = Vec::new();
        for pick in order.iter().copied().chain((0..3).cycle().take(64 * 3)) {
            if let Some(e) = queues[pick].pop_front() {
                merged.push(e);
            }
        }
        for q in &mut queues {
            merged.extend(q.drain(..));
        }

        let now: jiff::Timestamp = NOW.parse().unwrap();
        let mut registry = new_registry();
        let mut mcs = controller(BTreeMap::new());
        let mut views = Views::default();
        let mut rest = merged.as_slice();
        for size in batch_sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (batch, tail) = rest.split_at((*size).min(rest.len()));
            rest = tail;
            registry.apply_all(batch.iter().cloned());

            let previous = views.last().clone();
            let input = Input::read(&registry);
            let outcome = mcs.reconcile(&input.mcs, now);
            let snapshot = views.next(input, outcome.clone());

            let scratch = from_scratch(&registry, outcome.clone());
            prop_assert_eq!(render(&snapshot), render(&scratch));
            let missed = differing(&previous, &snapshot);
            prop_assert!(
                missed.is_subset(&snapshot.changed.services),
                "changed {:?} does not name {:?}", snapshot.changed.services, missed
            );

            if !snapshot.outcome.writes.is_empty() && imports_written(&outcome) && snapshot.synced {
                let mut resumed = controller(flat(&outcome));
                let again = resumed.reconcile(&Input::read(&registry).mcs, now);
                prop_assert_eq!(format!("{:?}", flat(&again)), format!("{:?}", flat(&outcome)));
                prop_assert_eq!(format!("{:?}", again.imports), format!("{:?}", outcome.imports));
                prop_assert_eq!(format!("{:?}", again.exports), format!("{:?}", outcome.exports));
            }
        }
    }
}
