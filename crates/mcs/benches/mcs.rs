//! MCS controller benchmark: a full reconcile of 1,000 services exported from 10 members.

use std::{collections::BTreeMap, hint::black_box};

use bowline_mcs::{Controller, McsConfig, Snapshot};
use bowline_model::{
    Network,
    export::{ExportDefault, ExportPolicy},
};
use bowline_registry::{MemberConfig, Registry};
use bowline_test_support::{applied, member, scale_events, scale_slice};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const MEMBERS: usize = 10;
const SERVICES: usize = 1_000;
const ENDPOINTS: usize = 10;

fn full_reconcile(c: &mut Criterion) {
    let mut registry = Registry::new(
        "bench",
        (0..MEMBERS).map(|m| MemberConfig {
            name: member(&format!("m{m}")),
            id: None,
            network: Network::new("net"),
        }),
    );
    registry.apply_all(scale_events(MEMBERS, SERVICES, ENDPOINTS));
    let snapshot = Snapshot::from_registry(&registry);
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
    let now = "2026-11-22T00:00:00Z".parse().unwrap();
    let mut group = c.benchmark_group("mcs");
    group.sample_size(10);
    group.bench_function("full_reconcile_1000_services_10_members", |b| {
        b.iter_batched(
            || Controller::new(config.clone(), BTreeMap::new()),
            |mut controller| {
                let outcome = controller.reconcile(&snapshot, now);
                assert_eq!(outcome.imports.len(), SERVICES);
                (controller, outcome)
            },
            BatchSize::LargeInput,
        )
    });
    // One endpoint of one service changes in one member: only that name is recomputed.
    registry.apply(applied("m3", vec![scale_slice(3, 42, 0, ENDPOINTS, true)]));
    let changed = Snapshot::from_registry(&registry);
    let mut controller = Controller::new(config, BTreeMap::new());
    controller.reconcile(&snapshot, now);
    let mut flip = false;
    group.bench_function("one_service_changed_1000_services_10_members", |b| {
        b.iter(|| {
            flip = !flip;
            black_box(controller.reconcile(if flip { &changed } else { &snapshot }, now))
        })
    });
    group.bench_function("snapshot_from_registry_1000_services_10_members", |b| {
        b.iter(|| black_box(Snapshot::from_registry(&registry)))
    });
    group.finish();
}

criterion_group!(benches, full_reconcile);
criterion_main!(benches);
