//! The ClusterSet the DNS and xDS targets answer from: the embedded demo (three members, two
//! networks, IPv4, IPv6 and dual stack, gateways, a VM), built once per process as `bowline
//! demo` builds it, and a second snapshot in which one member lost an EndpointSlice.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use bowline_dns::{
    answer::{LocalZone, View},
    server::Handler,
};
use bowline_model::{Change, EventBody, MemberName, ObjectKind, SourceEvent};
use bowline_registry::Registry;
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
    let (config, mut registry) = bowline_app::offline::demo(&dir).expect("the demo reads");
    let _ = std::fs::remove_dir_all(&dir);
    let mut controller = bowline_app::offline::controller(&config);
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
