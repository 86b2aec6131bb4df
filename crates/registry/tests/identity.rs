//! Cluster identity through the registry: where ids come from, duplicates, changes, mismatches.

use bowline_model::{
    Network, ObjectKey, ObjectKind, RejectReason, Rejection, ServiceKey, cluster::IdSource,
};
use bowline_registry::{Admission, MemberConfig, Registry};
use bowline_test_support::*;

fn registry(members: &[(&str, Option<&str>)]) -> Registry {
    Registry::new(
        "demo",
        members.iter().map(|(name, id)| MemberConfig {
            name: member(name),
            id: id.map(String::from),
            network: Network::default(),
        }),
    )
}

fn admission(reg: &Registry, name: &str) -> Admission {
    reg.members()
        .into_iter()
        .find(|m| m.name.as_str() == name)
        .unwrap()
        .admission
}

fn admitted(reg: &Registry, name: &str) -> Option<(String, IdSource)> {
    match admission(reg, name) {
        Admission::Admitted { id, from } => Some((id.to_string(), from)),
        _ => None,
    }
}

fn refused(reg: &Registry, name: &str) -> (RejectReason, String) {
    match admission(reg, name) {
        Admission::Refused { reason, message } => (reason, message),
        other => panic!("{name} is {other:?}, not refused"),
    }
}

/// Open Cluster Management's ClusterClaim `id.k8s.io`.
fn claim(value: &str) -> bowline_model::Object {
    bowline_model::Object::ClusterClaim(bowline_model::objects::ClusterClaim {
        meta: bowline_model::objects::Meta::named("", "id.k8s.io"),
        value: value.into(),
    })
}

#[test]
fn identity_rules() {
    let uid = "721ab723-13bc-11e5-aec2-42010af0021e";
    struct Case {
        name: &'static str,
        configured: Option<&'static str>,
        objects: Vec<bowline_model::Object>,
        want: Result<(&'static str, IdSource), (RejectReason, &'static str)>,
    }
    let long = "a".repeat(64);
    let cases = vec![
        Case {
            name: "property",
            configured: Some("cfg"),
            objects: vec![cluster_id("east"), kube_system(uid)],
            want: Ok(("east", IdSource::ClusterProperty)),
        },
        Case {
            name: "KEP-2149's earlier id.k8s.io, before the configured id",
            configured: Some("cfg"),
            objects: vec![property("id.k8s.io", "legacy"), kube_system(uid)],
            want: Ok(("legacy", IdSource::LegacyClusterProperty)),
        },
        Case {
            name: "OCM's ClusterClaim id.k8s.io, after the ClusterProperties",
            configured: Some("cfg"),
            objects: vec![claim("ocm"), kube_system(uid)],
            want: Ok(("ocm", IdSource::ClusterClaim)),
        },
        Case {
            name: "the id.k8s.io ClusterProperty wins over the ClusterClaim",
            configured: None,
            objects: vec![claim("ocm"), property("id.k8s.io", "legacy")],
            want: Ok(("legacy", IdSource::LegacyClusterProperty)),
        },
        Case {
            name: "cluster.clusterset.k8s.io wins over id.k8s.io",
            configured: None,
            objects: vec![cluster_id("east"), property("id.k8s.io", "legacy")],
            want: Ok(("east", IdSource::ClusterProperty)),
        },
        Case {
            name: "id.k8s.io follows the id rules",
            configured: Some("cfg"),
            objects: vec![property("id.k8s.io", "East")],
            want: Err((RejectReason::InvalidClusterId, "contains 'E'")),
        },
        Case {
            name: "configured",
            configured: Some("cfg"),
            objects: vec![kube_system(uid)],
            want: Ok(("cfg", IdSource::Config)),
        },
        Case {
            name: "kube-system uid",
            configured: None,
            objects: vec![kube_system(uid)],
            want: Ok((uid, IdSource::KubeSystemUid)),
        },
        Case {
            name: "none",
            configured: None,
            objects: vec![],
            want: Err((RejectReason::InvalidClusterId, "no id")),
        },
        Case {
            name: "too long",
            configured: None,
            objects: vec![cluster_id(&long)],
            want: Err((RejectReason::InvalidClusterId, "64 characters long")),
        },
        Case {
            name: "uppercase",
            configured: None,
            objects: vec![cluster_id("East")],
            want: Err((RejectReason::InvalidClusterId, "contains 'E'")),
        },
        Case {
            name: "dotted",
            configured: None,
            objects: vec![cluster_id("east.example.com")],
            want: Err((RejectReason::InvalidClusterId, "contains '.'")),
        },
        Case {
            name: "clusterset matches",
            configured: None,
            objects: vec![cluster_id("east"), clusterset("demo")],
            want: Ok(("east", IdSource::ClusterProperty)),
        },
        Case {
            name: "clusterset mismatch",
            configured: None,
            objects: vec![cluster_id("east"), clusterset("prod")],
            want: Err((
                RejectReason::ClusterSetMismatch,
                "\"prod\" but this ClusterSet is \"demo\"",
            )),
        },
    ];
    for case in cases {
        let mut reg = registry(&[("m", case.configured)]);
        reg.apply(reset("m", case.objects));
        match case.want {
            Ok((id, from)) => assert_eq!(
                admitted(&reg, "m"),
                Some((id.to_string(), from)),
                "{}",
                case.name
            ),
            Err((reason, needle)) => {
                let (got, message) = refused(&reg, "m");
                assert_eq!(got, reason, "{}: {message}", case.name);
                assert!(
                    message.contains(needle),
                    "{}: {message:?} lacks {needle:?}",
                    case.name
                );
            }
        }
    }
}

#[test]
fn disagreeing_id_sources_are_named_in_the_member_status() {
    let mut reg = registry(&[("m", Some("cfg"))]);
    reg.apply(reset(
        "m",
        vec![cluster_id("east"), property("id.k8s.io", "legacy")],
    ));
    assert_eq!(
        admitted(&reg, "m"),
        Some(("east".into(), IdSource::ClusterProperty))
    );
    let status = reg.members().into_iter().next().unwrap();
    assert_eq!(
        status.id_disagreement.as_deref(),
        Some(
            "the id sources disagree: ClusterProperty cluster.clusterset.k8s.io says \"east\", ClusterProperty id.k8s.io says \"legacy\", the configured id says \"cfg\"; the first wins"
        )
    );
    // Agreeing sources are not reported.
    reg.apply(reset(
        "m",
        vec![cluster_id("cfg"), property("id.k8s.io", "cfg")],
    ));
    assert_eq!(reg.members()[0].id_disagreement, None);
}

#[test]
fn oversized_property_is_refused_not_replaced_by_configured_id() {
    let mut reg = registry(&[("m", Some("cfg"))]);
    let rejection = Rejection {
        member: member("m"),
        origin: "ids.yaml:1 (document 1)".into(),
        object: Some(ObjectKey::new(
            ObjectKind::ClusterProperty,
            "",
            "cluster.clusterset.k8s.io",
        )),
        reason: RejectReason::InvalidObject,
        message: "spec.value holds 128001 code points".into(),
    };
    reg.apply(reset_with("m", vec![], vec![rejection]));
    let (reason, message) = refused(&reg, "m");
    assert_eq!(reason, RejectReason::InvalidClusterId);
    assert!(message.contains("is invalid"), "{message}");
}

#[test]
fn duplicate_id_keeps_the_first_admitted_and_names_both() {
    let mut reg = registry(&[("a", None), ("b", None)]);
    // b syncs first, so b holds the id even though a comes first in the configuration.
    reg.apply(reset(
        "b",
        vec![cluster_id("same"), service("demo", "svc").build()],
    ));
    reg.apply(reset(
        "a",
        vec![cluster_id("same"), service("demo", "svc").build()],
    ));
    assert_eq!(
        admitted(&reg, "b"),
        Some(("same".into(), IdSource::ClusterProperty))
    );
    let (reason, message) = refused(&reg, "a");
    assert_eq!(reason, RejectReason::DuplicateClusterId);
    assert!(
        message.contains("member a") && message.contains("member b"),
        "{message}"
    );
    assert!(
        reg.rejections()
            .iter()
            .any(|r| r.member.as_str() == "a" && r.reason == RejectReason::DuplicateClusterId)
    );
    let view = reg.service(&ServiceKey::new("demo", "svc")).unwrap();
    assert_eq!(
        view.members.len(),
        1,
        "the refused member contributes nothing"
    );

    // When b leaves the id, a is admitted under it.
    reg.apply(applied("b", vec![cluster_id("other")]));
    assert_eq!(
        admitted(&reg, "a"),
        Some(("same".into(), IdSource::ClusterProperty))
    );
    assert_eq!(
        admitted(&reg, "b"),
        Some(("other".into(), IdSource::ClusterProperty))
    );
    assert_eq!(
        reg.service(&ServiceKey::new("demo", "svc"))
            .unwrap()
            .members
            .len(),
        2
    );
}

#[test]
fn simultaneous_claims_go_to_configuration_order() {
    let mut reg = registry(&[("a", None), ("b", None)]);
    reg.apply_all([
        reset("b", vec![cluster_id("same")]),
        reset("a", vec![cluster_id("same")]),
    ]);
    assert!(admitted(&reg, "a").is_some());
    assert_eq!(refused(&reg, "b").0, RejectReason::DuplicateClusterId);
}

#[test]
fn changed_id_is_leave_then_join() {
    let mut reg = registry(&[("m", None)]);
    reg.apply(reset(
        "m",
        vec![
            cluster_id("old"),
            slice("demo", "s", "svc").endpoint(ep("10.0.0.1")).build(),
        ],
    ));
    let changes = reg.apply(applied("m", vec![cluster_id("new")]));
    assert!(changes.members);
    assert_eq!(
        changes.services.len(),
        1,
        "the service's view moves to the new id"
    );
    let view = reg.service(&ServiceKey::new("demo", "svc")).unwrap();
    assert_eq!(
        view.members.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
        vec!["new"]
    );
    assert_eq!(
        view.endpoints().next().unwrap().cluster.as_str(),
        "new",
        "endpoints carry the new id"
    );

    // An invalid id makes the member leave; its objects are kept and come back with a valid id.
    reg.apply(applied("m", vec![cluster_id("Not_Valid")]));
    assert!(reg.service(&ServiceKey::new("demo", "svc")).is_none());
    reg.apply(deleted(
        "m",
        vec![key(
            ObjectKind::ClusterProperty,
            "",
            "cluster.clusterset.k8s.io",
        )],
    ));
    assert_eq!(
        refused(&reg, "m").0,
        RejectReason::InvalidClusterId,
        "no id left at all"
    );
    reg.apply(applied("m", vec![cluster_id("back")]));
    assert_eq!(
        reg.service(&ServiceKey::new("demo", "svc"))
            .unwrap()
            .endpoints()
            .count(),
        1
    );
}

#[test]
fn unsynced_member_is_pending() {
    let reg = registry(&[("m", Some("cfg"))]);
    assert_eq!(admission(&reg, "m"), Admission::Pending);
}
