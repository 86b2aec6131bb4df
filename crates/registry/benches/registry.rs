//! Registry benchmarks: a full ClusterSet of 100k endpoints, and one endpoint changing in it.

use std::hint::black_box;

use bowline_model::Network;
use bowline_registry::{MemberConfig, Registry};
use bowline_test_support::{applied, member, scale_events, scale_slice};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

const MEMBERS: usize = 10;
const SERVICES: usize = 100;
const ENDPOINTS: usize = 100;

fn registry() -> Registry {
    Registry::new(
        "bench",
        (0..MEMBERS).map(|m| MemberConfig {
            name: member(&format!("m{m}")),
            id: None,
            network: Network::new("net"),
        }),
    )
}

fn apply_100k(c: &mut Criterion) {
    let events = scale_events(MEMBERS, SERVICES, ENDPOINTS);
    let mut group = c.benchmark_group("registry");
    group.sample_size(10);
    group.bench_function("apply_100k_endpoints_10_members", |b| {
        b.iter_batched(
            || (registry(), events.clone()),
            |(mut reg, events)| {
                black_box(reg.apply_all(events));
                reg
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn one_endpoint_change(c: &mut Criterion) {
    let mut reg = registry();
    reg.apply_all(scale_events(MEMBERS, SERVICES, ENDPOINTS));
    let flipped = applied("m3", vec![scale_slice(3, 42, 0, ENDPOINTS, true)]);
    let restored = applied("m3", vec![scale_slice(3, 42, 0, ENDPOINTS, false)]);
    let mut flip = false;
    c.bench_function("registry/one_endpoint_change_at_100k", |b| {
        b.iter_batched(
            || {
                flip = !flip;
                if flip {
                    flipped.clone()
                } else {
                    restored.clone()
                }
            },
            |event| {
                let changes = reg.apply(event);
                assert_eq!(changes.services.len(), 1);
                black_box(changes)
            },
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, apply_100k, one_endpoint_change);
criterion_main!(benches);
