//! The registration lifecycle with controlled time: connect, disconnect, reconnect inside and
//! after the grace period, two replicas, crash cleanup, late group, health.

use std::time::Duration;

use bowline_model::{
    Object,
    objects::{Meta, ReadinessProbe, WorkloadEntry, WorkloadGroup, WorkloadSpec},
};
use bowline_vm::{
    lifecycle::{Action, EntryKey, MemberObjects, Peers, Registrar, Report, World},
    registration::{CONNECTED_AT, CONTROLLER_ANNOTATION, DISCONNECTED_AT, Proxy, Refusal},
};
use jiff::Timestamp;

const GRACE: Duration = Duration::from_secs(10);

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn group(probe: bool) -> WorkloadGroup {
    let mut meta = Meta::named("demo", "legacy");
    meta.uid = Some("wg-uid".into());
    WorkloadGroup {
        meta,
        entry_labels: [("app".to_string(), "legacy".to_string())].into(),
        entry_annotations: Default::default(),
        template: WorkloadSpec {
            ports: [("http".to_string(), 8080)].into(),
            service_account: "legacy".into(),
            ..WorkloadSpec::default()
        },
        probe: probe.then(ReadinessProbe::default),
    }
}

fn proxy(ip: &str) -> Proxy {
    Proxy {
        group: "legacy".into(),
        namespace: "demo".into(),
        instance_ips: vec![ip.parse().unwrap()],
        ..Proxy::default()
    }
}

/// Members `east` and `west`; the group in `east`.
fn world(probe: bool) -> World {
    World {
        members: vec![
            MemberObjects {
                member: "east".into(),
                cluster: Some("east-1".into()),
                groups: vec![group(probe)],
                entries: vec![],
                selectors: vec![],
            },
            MemberObjects {
                member: "west".into(),
                cluster: Some("west-1".into()),
                ..MemberObjects::default()
            },
        ],
        // Replicas: every other controller runs unless its heartbeat stopped.
        peers: Peers::Stopped(["bowline-gone".to_string()].into()),
    }
}

/// Performs `actions` as a member would: the entry is stored as decoded.
fn perform(world: &mut World, actions: &[Action]) {
    for action in actions {
        match action {
            Action::Apply { key, entry, .. } => {
                let Ok(Some(Object::WorkloadEntry(entry))) = bowline_k8s_api::decode(entry.clone())
                else {
                    panic!("{key}: not a WorkloadEntry: {entry}");
                };
                let member = member(world, key);
                member.entries.retain(|e| *e.meta.name != *key.name);
                member.entries.push(*entry);
            }
            Action::Delete { key, .. } => {
                member(world, key)
                    .entries
                    .retain(|e| *e.meta.name != *key.name);
            }
        }
    }
}

fn member<'a>(world: &'a mut World, key: &EntryKey) -> &'a mut MemberObjects {
    world
        .members
        .iter_mut()
        .find(|m| m.member == key.member)
        .unwrap()
}

/// Reconciles and performs; the reasons, in order.
fn step(registrar: &Registrar, world: &mut World, now: Timestamp) -> Vec<String> {
    let actions = registrar.reconcile(world, now);
    perform(world, &actions);
    actions
        .iter()
        .map(|a| match a {
            Action::Apply { reason, .. } | Action::Delete { reason, .. } => reason.to_string(),
        })
        .collect()
}

fn entry<'a>(world: &'a World, name: &str) -> Option<&'a WorkloadEntry> {
    world
        .members
        .iter()
        .flat_map(|m| &m.entries)
        .find(|e| *e.meta.name == *name)
}

fn annotation<'a>(world: &'a World, name: &str, key: &str) -> Option<&'a str> {
    entry(world, name)?
        .meta
        .annotations
        .get(key)
        .map(String::as_str)
}

const NAME: &str = "legacy-192.0.2.50";

#[test]
fn a_connection_registers_once_and_a_disconnect_deletes_after_the_grace_period() {
    let mut world = world(false);
    let mut a = Registrar::new("bowline-a", GRACE, t(0));
    a.connect(1, proxy("192.0.2.50"), Some("east-1".into()), t(1))
        .unwrap();
    assert_eq!(step(&a, &mut world, t(1)), ["registered"]);
    let registered = entry(&world, NAME).unwrap();
    assert_eq!(
        annotation(&world, NAME, CONTROLLER_ANNOTATION),
        Some("bowline-a")
    );
    assert_eq!(
        annotation(&world, NAME, CONNECTED_AT),
        Some(t(1).to_string().as_str())
    );
    assert_eq!(registered.spec.address, "192.0.2.50");
    assert!(
        registered.serves(),
        "a group without a probe: serves at once"
    );
    assert!(
        step(&a, &mut world, t(2)).is_empty(),
        "nothing to do while connected"
    );

    a.disconnect(1);
    assert_eq!(step(&a, &mut world, t(20)), ["disconnected"]);
    assert_eq!(annotation(&world, NAME, CONNECTED_AT), None);
    assert_eq!(
        annotation(&world, NAME, DISCONNECTED_AT),
        Some(t(20).to_string().as_str())
    );
    assert!(
        step(&a, &mut world, t(29)).is_empty(),
        "inside the grace period"
    );
    assert_eq!(
        step(&a, &mut world, t(30)),
        ["disconnected for longer than the grace period"]
    );
    assert!(entry(&world, NAME).is_none());
}

#[test]
fn a_reconnect_inside_the_grace_period_keeps_the_entry() {
    let mut world = world(false);
    let mut a = Registrar::new("bowline-a", GRACE, t(0));
    a.connect(1, proxy("192.0.2.50"), None, t(1)).unwrap();
    step(&a, &mut world, t(1));
    a.disconnect(1);
    assert_eq!(step(&a, &mut world, t(12)), ["disconnected"]);
    a.connect(2, proxy("192.0.2.50"), None, t(15)).unwrap();
    assert_eq!(step(&a, &mut world, t(15)), ["connected"]);
    assert_eq!(annotation(&world, NAME, DISCONNECTED_AT), None);
    assert!(step(&a, &mut world, t(60)).is_empty(), "never deleted");
    assert!(entry(&world, NAME).is_some());
}

#[test]
fn a_reconnect_after_the_grace_period_registers_again() {
    let mut world = world(false);
    let mut a = Registrar::new("bowline-a", GRACE, t(0));
    a.connect(1, proxy("192.0.2.50"), None, t(1)).unwrap();
    step(&a, &mut world, t(1));
    a.disconnect(1);
    step(&a, &mut world, t(12));
    step(&a, &mut world, t(22));
    assert!(entry(&world, NAME).is_none());
    a.connect(2, proxy("192.0.2.50"), None, t(40)).unwrap();
    assert_eq!(step(&a, &mut world, t(40)), ["registered"]);
    assert_eq!(
        annotation(&world, NAME, CONNECTED_AT),
        Some(t(40).to_string().as_str())
    );
}

#[test]
fn a_reconnect_to_another_replica_moves_the_entry_to_it() {
    let mut world = world(false);
    let mut a = Registrar::new("bowline-a", GRACE, t(0));
    let mut b = Registrar::new("bowline-b", GRACE, t(0));
    a.connect(1, proxy("192.0.2.50"), None, t(1)).unwrap();
    step(&a, &mut world, t(1));

    // The proxy reconnects to b before a has seen its old stream end.
    b.connect(7, proxy("192.0.2.50"), None, t(5)).unwrap();
    assert_eq!(step(&b, &mut world, t(5)), ["connected"]);
    assert_eq!(
        annotation(&world, NAME, CONTROLLER_ANNOTATION),
        Some("bowline-b")
    );
    assert!(
        step(&a, &mut world, t(6)).is_empty(),
        "a's older connection does not take it back"
    );
    a.disconnect(1);
    assert!(
        step(&a, &mut world, t(30)).is_empty(),
        "a does not mark b's entry disconnected"
    );
    assert!(step(&b, &mut world, t(30)).is_empty());

    b.disconnect(7);
    assert_eq!(step(&b, &mut world, t(31)), ["disconnected"]);
    assert!(step(&a, &mut world, t(50)).is_empty(), "b's to delete");
    assert_eq!(
        step(&b, &mut world, t(41)),
        ["disconnected for longer than the grace period"]
    );
}

#[test]
fn entries_of_a_crashed_instance_are_cleaned_up_unless_their_proxy_returns() {
    let mut world = world(false);
    let mut gone = Registrar::new("bowline-gone", GRACE, t(0));
    gone.connect(1, proxy("192.0.2.50"), None, t(1)).unwrap();
    gone.connect(2, proxy("192.0.2.51"), None, t(1)).unwrap();
    step(&gone, &mut world, t(1));
    assert_eq!(world.members[0].entries.len(), 2);

    // bowline-gone crashed (its heartbeat stopped); b starts, and one proxy reconnects to it.
    let mut b = Registrar::new("bowline-b", GRACE, t(100));
    assert!(
        step(&b, &mut world, t(101)).is_empty(),
        "b leaves unconnected entries alone while proxies reconnect after its start"
    );
    b.connect(3, proxy("192.0.2.51"), None, t(102)).unwrap();
    assert_eq!(step(&b, &mut world, t(102)), ["connected"]);
    assert_eq!(step(&b, &mut world, t(110)), ["its controller is gone"]);
    assert_eq!(
        annotation(&world, NAME, CONTROLLER_ANNOTATION),
        Some("bowline-b")
    );
    assert_eq!(
        step(&b, &mut world, t(120)),
        ["disconnected for longer than the grace period"]
    );
    assert!(entry(&world, NAME).is_none());
    assert!(
        entry(&world, "legacy-192.0.2.51").is_some(),
        "the proxy that came back keeps its entry"
    );
}

#[test]
fn entries_of_a_running_instance_are_left_to_it() {
    let mut world = world(false);
    let mut a = Registrar::new("bowline-a", GRACE, t(0));
    a.connect(1, proxy("192.0.2.50"), None, t(1)).unwrap();
    step(&a, &mut world, t(1));
    let b = Registrar::new("bowline-b", GRACE, t(0));
    assert!(step(&b, &mut world, t(100)).is_empty());
    world.peers = Peers::Stopped(["bowline-a".to_string()].into());
    assert_eq!(step(&b, &mut world, t(101)), ["its controller is gone"]);
}

#[test]
fn a_restart_of_the_same_instance_keeps_entries_whose_proxies_reconnect() {
    let mut world = world(false);
    let mut before = Registrar::new("bowline-a", GRACE, t(0));
    before.connect(1, proxy("192.0.2.50"), None, t(1)).unwrap();
    step(&before, &mut world, t(1));

    let mut after = Registrar::new("bowline-a", GRACE, t(50));
    assert!(step(&after, &mut world, t(51)).is_empty());
    after.connect(1, proxy("192.0.2.50"), None, t(53)).unwrap();
    assert_eq!(step(&after, &mut world, t(53)), ["connected"]);
    assert!(step(&after, &mut world, t(200)).is_empty());
    assert_eq!(
        annotation(&world, NAME, CONNECTED_AT),
        Some(t(53).to_string().as_str())
    );
}

#[test]
fn a_group_that_appears_later_registers_waiting_proxies() {
    let mut world = world(false);
    world.members[0].groups.clear();
    let mut a = Registrar::new("bowline-a", GRACE, t(0));
    a.connect(1, proxy("192.0.2.50"), None, t(1)).unwrap();
    assert!(step(&a, &mut world, t(2)).is_empty(), "no group yet");
    world.members[1].groups.push(group(false));
    assert_eq!(step(&a, &mut world, t(3)), ["registered"]);
    assert_eq!(
        world.members[1].entries.len(),
        1,
        "in the member holding the group"
    );

    // Deleting the group deletes its entries (the owner reference's garbage collection).
    world.members[1].groups.clear();
    a.disconnect(1);
    assert_eq!(step(&a, &mut world, t(4)), ["its WorkloadGroup is gone"]);
    assert!(world.members[1].entries.is_empty());
}

#[test]
fn the_proxy_cluster_picks_the_member_when_several_hold_the_group() {
    let mut world = world(false);
    world.members[1].groups.push(group(false));
    let mut a = Registrar::new("bowline-a", GRACE, t(0));
    a.connect(1, proxy("192.0.2.50"), Some("west-1".into()), t(1))
        .unwrap();
    a.connect(2, proxy("192.0.2.60"), None, t(1)).unwrap();
    step(&a, &mut world, t(1));
    assert_eq!(&*world.members[1].entries[0].meta.name, NAME);
    assert_eq!(
        &*world.members[0].entries[0].meta.name, "legacy-192.0.2.60",
        "without CLUSTER_ID: the first member holding the group"
    );
}

#[test]
fn health_reports_decide_whether_a_probed_entry_serves() {
    let mut world = world(true);
    let mut a = Registrar::new("bowline-a", GRACE, t(0));
    a.connect(1, proxy("192.0.2.50"), None, t(1)).unwrap();
    step(&a, &mut world, t(1));
    assert!(
        !entry(&world, NAME).unwrap().serves(),
        "starts unhealthy until it reports"
    );

    let report = |healthy: bool, at| Report {
        healthy,
        message: (!healthy).then(|| "connection refused".to_string()),
        at,
    };
    assert!(a.report(1, report(true, t(2))));
    assert_eq!(step(&a, &mut world, t(2)), ["connected"]);
    assert!(entry(&world, NAME).unwrap().serves());
    assert!(step(&a, &mut world, t(3)).is_empty());

    assert!(a.report(1, report(false, t(4))));
    let actions = a.reconcile(&world, t(4));
    let [Action::Apply { entry: written, .. }] = actions.as_slice() else {
        panic!("one write: {actions:?}");
    };
    assert_eq!(
        written["status"]["conditions"][0],
        serde_json::json!({
            "type": "Healthy", "status": "False", "message": "connection refused",
            "lastProbeTime": t(4).to_string(), "lastTransitionTime": t(4).to_string(),
        })
    );
    perform(&mut world, &actions);
    assert!(!entry(&world, NAME).unwrap().serves());

    // A reconnect keeps the last report until the proxy reports again.
    a.disconnect(1);
    a.connect(2, proxy("192.0.2.50"), None, t(5)).unwrap();
    step(&a, &mut world, t(5));
    assert_eq!(entry(&world, NAME).unwrap().healthy, Some(false));
    assert!(
        !a.report(9, report(true, t(6))),
        "no such registering stream"
    );
}

#[test]
fn a_proxy_without_an_address_is_refused() {
    let mut a = Registrar::new("bowline-a", GRACE, t(0));
    let mut p = proxy("192.0.2.50");
    p.instance_ips.clear();
    assert_eq!(
        a.connect(1, p, None, t(1)),
        Err(Refusal::NoAddress {
            group: "legacy".into()
        })
    );
    assert_eq!(a.connected(), 0);
}

#[test]
fn alone_every_other_controller_is_an_earlier_instance() {
    let mut world = world(false);
    world.peers = Peers::Alone;
    let mut earlier = Registrar::new("bowline-old-host", GRACE, t(0));
    earlier.connect(1, proxy("192.0.2.50"), None, t(1)).unwrap();
    step(&earlier, &mut world, t(1));
    let now = Registrar::new("bowline-a", GRACE, t(100));
    assert!(step(&now, &mut world, t(105)).is_empty(), "settling");
    assert_eq!(step(&now, &mut world, t(110)), ["its controller is gone"]);
}

#[test]
fn a_disconnect_right_after_the_start_is_marked_at_once() {
    let mut world = world(false);
    let mut a = Registrar::new("bowline-a", GRACE, t(0));
    a.connect(1, proxy("192.0.2.50"), None, t(1)).unwrap();
    step(&a, &mut world, t(1));
    a.disconnect(1);
    assert_eq!(
        step(&a, &mut world, t(2)),
        ["disconnected"],
        "not held back by the settling period: this run saw it leave"
    );
    assert_eq!(
        step(&a, &mut world, t(12)),
        ["disconnected for longer than the grace period"]
    );
}

#[test]
fn a_late_groups_label_refusal_is_named_not_written() {
    let mut registrar = Registrar::new("bowline-a", Duration::from_secs(10), t(0));
    let mut labelled = proxy("10.0.0.7");
    labelled.labels = [("app".to_string(), "echo".to_string())].into();
    registrar.connect(1, labelled, None, t(1)).unwrap();
    let mut world = world(false);
    world.members[0].selectors = vec![bowline_vm::registration::Selector {
        owner: "Service demo/echo".into(),
        namespace: "demo".into(),
        labels: [("app".to_string(), "echo".to_string())].into(),
    }];
    let refusals = registrar.refusals(&world);
    let why = refusals.get(&1).expect("the connection is refused");
    assert!(
        why.contains("WorkloadGroup demo/legacy") && why.contains("Service demo/echo"),
        "{why}"
    );
    assert!(
        step(&registrar, &mut world, t(2)).is_empty(),
        "nothing is written for it"
    );
}
