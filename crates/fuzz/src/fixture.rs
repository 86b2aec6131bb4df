//! The ClusterSet the DNS and xDS targets answer from: the embedded demo (three members, two
//! networks, IPv4, IPv6 and dual stack, gateways, a VM), built once per process as `bowline
//! demo` builds it, and a second snapshot in which one member lost an EndpointSlice.

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
    time::Duration,
};

use bowline_app::config::{Config, MemberSource};
use bowline_dns::{
    answer::{LocalZone, View},
    server::Handler,
};
use bowline_mcs::{Controller, McsConfig};
use bowline_model::{Change, EventBody, MemberName, ObjectKind, SourceEvent};
use bowline_registry::{MemberConfig, Registry};
use bowline_views::{ClusterSet, Input, Views};
use tokio::sync::watch;

pub(crate) struct Fixture {
    /// Snapshots in the order the views stage published them.
    pub snapshots: Vec<Arc<ClusterSet>>,
    pub dns_view: Arc<View>,
    pub dns: Handler,
}

pub(crate) fn get() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build)
}

fn build() -> Fixture {
    let dir = std::env::temp_dir().join(format!("bowline-fuzz-demo-{}", std::process::id()));
    bowline_app::demo::write_to(&dir).expect("the demo is written");
    let config = Config::load(&dir.join("bowline.yaml")).expect("the demo's configuration");
    let mut registry = Registry::new(
        config.cluster_set.clone(),
        config.members.iter().map(|m| MemberConfig {
            name: MemberName::new(m.name.as_str()),
            id: m.id.clone(),
            network: m.network.clone(),
        }),
    );
    for member in &config.members {
        let MemberSource::Manifests(path) = &member.source else {
            unreachable!("the demo's members are manifest directories");
        };
        let name = MemberName::new(member.name.as_str());
        let (objects, rejections) =
            bowline_source::scan_directory(name.clone(), path).expect("the demo reads");
        registry.apply(SourceEvent {
            member: name,
            body: EventBody::Reset {
                objects,
                rejections,
            },
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    let mut controller = Controller::new(
        McsConfig {
            policy: config.export.clone(),
            pools: config.cluster_set_ips.clone(),
        },
        BTreeMap::new(),
    );
    let now = "2026-11-22T00:00:00Z".parse().expect("a timestamp");
    let mut views = Views::default();
    let mut snapshot = |registry: &Registry| {
        let input = Input::read(registry);
        let outcome = controller.reconcile(&input.mcs, now);
        views.next(input, outcome)
    };
    let first = snapshot(&registry);

    // West loses its first EndpointSlice: assignments, DNS and imports change.
    let west = MemberName::new("west");
    let slice = registry
        .objects(&west, ObjectKind::EndpointSlice)
        .into_iter()
        .next()
        .expect("west has EndpointSlices");
    registry.apply(SourceEvent {
        member: west,
        body: EventBody::Changes {
            changes: vec![Change::Delete(slice.key())],
            rejections: None,
        },
    });
    let second = snapshot(&registry);

    let local = config
        .dns
        .cluster_local_member
        .as_ref()
        .map(|id| LocalZone::from_cluster_set(&first, id));
    let dns_view = Arc::new(View {
        imports: Arc::new(first.imports().clone()),
        namespaces: first.namespaces().into_iter().map(String::from).collect(),
        synced: true,
        local,
    });
    let (_, views) = watch::channel(dns_view.clone());
    let dns = Handler::new(views, Duration::from_secs(5), Arc::new(|_, _, _| {}));
    Fixture {
        snapshots: vec![first, second],
        dns_view,
        dns,
    }
}
