//! The WorkloadEntry of an auto-registering VM (Istio's `pilot/pkg/autoregistration`): named after its group, first address and network, built from
//! the group's template, labelled template < group metadata < proxy labels, annotated with the
//! group, the controlling Bowline and the connection time, and owned by the group.

use std::net::IpAddr;

use bowline_model::{
    Labels,
    objects::{HEALTH_CHECKS_ENABLED, WorkloadGroup},
};
use serde_json::{Value, json};

/// `istio.io/autoRegistrationGroup`: the group an entry was registered from.
pub const GROUP_ANNOTATION: &str = "istio.io/autoRegistrationGroup";
/// `istio.io/workloadController`: the control plane instance that owns the entry.
pub const CONTROLLER_ANNOTATION: &str = "istio.io/workloadController";
/// `istio.io/connectedAt`: when the proxy last connected (RFC 3339).
pub const CONNECTED_AT: &str = "istio.io/connectedAt";
/// `istio.io/disconnectedAt`: when it disconnected (RFC 3339).
pub const DISCONNECTED_AT: &str = "istio.io/disconnectedAt";
/// The proxy label that carries the locality; not copied into the entry's labels.
const LOCALITY_LABEL: &str = "istio-locality";
/// Longest Kubernetes object name.
const MAX_NAME: usize = 253;

/// What a registering proxy says about itself (its node metadata).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proxy {
    /// `AUTO_REGISTER_GROUP`.
    pub group: String,
    /// `NAMESPACE`.
    pub namespace: String,
    /// `INSTANCE_IPS`, in order.
    pub instance_ips: Vec<IpAddr>,
    /// `NETWORK`, when set.
    pub network: Option<String>,
    /// `LABELS`.
    pub labels: Labels,
    /// The xDS node's locality (`region/zone/subzone`), when set.
    pub locality: Option<String>,
}

/// Why a proxy cannot be registered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `INSTANCE_IPS`.
    #[error("proxy of group {group:?} has no INSTANCE_IPS: its address is unknown")]
    NoAddress {
        /// The group.
        group: String,
    },
    /// A label of the proxy's would make the entry an endpoint of a Service (or
    /// ServiceEntry) its group's template does not make it one of: a proxy must not claim
    /// another service's traffic by saying so (gRPC `PERMISSION_DENIED`).
    #[error(
        "proxy label {label}={value} would make this WorkloadGroup {namespace}/{group} VM an endpoint of {selected_by}, which the group's template does not select; set the label in the group's template instead"
    )]
    SelectingLabel {
        /// The label's key.
        label: String,
        /// Its value.
        value: String,
        /// The group.
        group: String,
        /// Its namespace.
        namespace: String,
        /// What it would select the entry (`Service demo/echo`).
        selected_by: String,
    },
    /// The group is not the one the proxy names, in the proxy's namespace.
    #[error("WorkloadGroup {namespace}/{group} is not the proxy's group {want_namespace}/{want}")]
    WrongGroup {
        /// The group given.
        group: String,
        /// Its namespace.
        namespace: String,
        /// The proxy's `AUTO_REGISTER_GROUP`.
        want: String,
        /// The proxy's `NAMESPACE`.
        want_namespace: String,
    },
}

/// A selector of workloads in a namespace: a Service's `selector` or a ServiceEntry's
/// `workloadSelector`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector {
    /// What selects (`Service demo/echo`).
    pub owner: String,
    /// Its namespace.
    pub namespace: String,
    /// The labels it selects by.
    pub labels: Labels,
}

fn selects(selector: &Labels, labels: &Labels) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The labels of an entry `group` registers, from its template and metadata alone.
fn group_labels(group: &WorkloadGroup) -> Labels {
    let mut labels = group.template.labels.clone();
    labels.extend(group.entry_labels.clone());
    labels
}

/// The entry's labels: the group's, then the proxy's (`LABELS`). A proxy label may refine
/// them (a `version`), but never make the entry selected by a Service or ServiceEntry of the
/// namespace (in `selectors`) that the group's labels alone do not select.
fn entry_labels(
    group: &WorkloadGroup,
    proxy: &Proxy,
    selectors: &[Selector],
) -> Result<Labels, Refusal> {
    let base = group_labels(group);
    let mut labels = base.clone();
    labels.extend(
        proxy
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != LOCALITY_LABEL)
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let namespace = &*group.meta.namespace;
    for selector in selectors.iter().filter(|s| s.namespace == namespace) {
        if selects(&selector.labels, &labels) && !selects(&selector.labels, &base) {
            let (label, value) = selector
                .labels
                .iter()
                .find(|(k, v)| base.get(k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .unwrap_or_default();
            return Err(Refusal::SelectingLabel {
                label,
                value,
                group: group.meta.name.to_string(),
                namespace: namespace.to_string(),
                selected_by: selector.owner.clone(),
            });
        }
    }
    Ok(labels)
}

/// Whether `proxy`'s labels may join `group`'s (see [`Refusal::SelectingLabel`]).
pub fn check_labels(
    group: &WorkloadGroup,
    proxy: &Proxy,
    selectors: &[Selector],
) -> Result<(), Refusal> {
    entry_labels(group, proxy, selectors).map(drop)
}

/// The entry's name: `<group>-<first address, ':' → '-'>[-<network>]`, its last 253
/// characters when longer.
pub fn entry_name(group: &str, address: IpAddr, network: Option<&str>) -> String {
    let mut name = format!("{group}-{}", address.to_string().replace(':', "-"));
    if let Some(network) = network.filter(|n| !n.is_empty()) {
        name.push('-');
        name.push_str(network);
    }
    match name.char_indices().rev().nth(MAX_NAME - 1) {
        Some((start, _)) => name[start..].to_string(),
        None => name,
    }
}

/// The owner reference of an entry registered from `group`: deleting the group deletes it.
pub fn owner(group: &WorkloadGroup) -> Value {
    let mut owner = json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadGroup",
        "name": &*group.meta.name,
        "controller": true,
    });
    if let Some(uid) = &group.meta.uid {
        owner["uid"] = json!(uid);
    }
    owner
}

/// The WorkloadEntry (`networking.istio.io/v1`) of `proxy` in `group`, registered by
/// `controller` at `connected_at`; `selectors` are the member's, for the rule on labels
/// (see [`Refusal::SelectingLabel`]).
pub fn entry(
    group: &WorkloadGroup,
    proxy: &Proxy,
    selectors: &[Selector],
    controller: &str,
    connected_at: &str,
) -> Result<Value, Refusal> {
    if *group.meta.name != proxy.group || *group.meta.namespace != proxy.namespace {
        return Err(Refusal::WrongGroup {
            group: group.meta.name.to_string(),
            namespace: group.meta.namespace.to_string(),
            want: proxy.group.clone(),
            want_namespace: proxy.namespace.clone(),
        });
    }
    let Some(&address) = proxy.instance_ips.first() else {
        return Err(Refusal::NoAddress {
            group: proxy.group.clone(),
        });
    };
    let template = &group.template;
    let labels = entry_labels(group, proxy, selectors)?;
    let mut annotations = group.entry_annotations.clone();
    annotations.insert(GROUP_ANNOTATION.into(), proxy.group.clone());
    annotations.insert(CONTROLLER_ANNOTATION.into(), controller.into());
    annotations.insert(CONNECTED_AT.into(), connected_at.into());
    if group.probe.is_some() {
        annotations.insert(HEALTH_CHECKS_ENABLED.into(), "true".into());
    }
    let network = proxy
        .network
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| template.network.clone());
    let mut spec = json!({"address": address.to_string(), "labels": labels});
    let optional = [
        ("network", network),
        (
            "locality",
            proxy
                .locality
                .clone()
                .unwrap_or_else(|| template.locality.clone()),
        ),
        ("serviceAccount", template.service_account.clone()),
    ];
    for (field, value) in optional {
        if !value.is_empty() {
            spec[field] = json!(value);
        }
    }
    if !template.ports.is_empty() {
        spec["ports"] = json!(template.ports);
    }
    if template.weight > 0 {
        spec["weight"] = json!(template.weight);
    }
    Ok(json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": {
            "name": entry_name(&proxy.group, address, proxy.network.as_deref()),
            "namespace": &*group.meta.namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner(group)],
        },
        "spec": spec,
    }))
}

#[cfg(test)]
mod tests {
    use bowline_model::objects::{Meta, ReadinessProbe, WorkloadSpec};

    use bowline_test_support::labels;

    use super::*;

    fn group() -> WorkloadGroup {
        let mut meta = Meta::named("demo", "legacy");
        meta.uid = Some("uid-1".into());
        WorkloadGroup {
            meta,
            entry_labels: labels(&[("app", "legacy"), ("tier", "group")]),
            entry_annotations: labels(&[("team", "a")]),
            template: WorkloadSpec {
                labels: labels(&[("tier", "template"), ("os", "linux")]),
                network: "net-east".into(),
                service_account: "legacy".into(),
                ports: [("http".to_string(), 8080)].into(),
                ..WorkloadSpec::default()
            },
            probe: Some(ReadinessProbe::default()),
        }
    }

    fn proxy(ips: &[&str]) -> Proxy {
        Proxy {
            group: "legacy".into(),
            namespace: "demo".into(),
            instance_ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            network: None,
            labels: labels(&[("version", "v2"), ("istio-locality", "r.z"), ("os", "bsd")]),
            locality: Some("us-east/us-east-1a".into()),
        }
    }

    #[test]
    fn names_follow_istio() {
        let v4: IpAddr = "192.0.2.50".parse().unwrap();
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(entry_name("legacy", v4, None), "legacy-192.0.2.50");
        assert_eq!(
            entry_name("legacy", v6, Some("net-b")),
            "legacy-2001-db8--7-net-b"
        );
        let long = "g".repeat(300);
        let name = entry_name(&long, v4, None);
        assert_eq!(name.len(), 253);
        assert!(
            name.ends_with("-192.0.2.50"),
            "the last 253 characters are kept"
        );
    }

    #[test]
    fn the_entry_is_built_from_the_group_and_the_proxy() {
        let entry = entry(
            &group(),
            &proxy(&["192.0.2.50", "2001:db8::7"]),
            &[],
            "bowline-0",
            "2026-11-30T10:00:00Z",
        )
        .unwrap();
        assert_eq!(
            entry,
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "WorkloadEntry",
                "metadata": {
                    "name": "legacy-192.0.2.50",
                    "namespace": "demo",
                    "labels": {"app": "legacy", "os": "bsd", "tier": "group", "version": "v2"},
                    "annotations": {
                        "istio.io/autoRegistrationGroup": "legacy",
                        "istio.io/connectedAt": "2026-11-30T10:00:00Z",
                        "istio.io/workloadController": "bowline-0",
                        "proxy.istio.io/health-checks-enabled": "true",
                        "team": "a",
                    },
                    "ownerReferences": [{
                        "apiVersion": "networking.istio.io/v1", "kind": "WorkloadGroup",
                        "name": "legacy", "uid": "uid-1", "controller": true,
                    }],
                },
                "spec": {
                    "address": "192.0.2.50",
                    "labels": {"app": "legacy", "os": "bsd", "tier": "group", "version": "v2"},
                    "network": "net-east",
                    "locality": "us-east/us-east-1a",
                    "serviceAccount": "legacy",
                    "ports": {"http": 8080},
                },
            })
        );
    }

    #[test]
    fn the_entry_reads_back_as_a_health_checked_workload_entry() {
        let value = entry(
            &group(),
            &proxy(&["2001:db8::7"]),
            &[],
            "b",
            "2026-11-30T10:00:00Z",
        )
        .unwrap();
        let Ok(Some(bowline_model::Object::WorkloadEntry(read))) = bowline_k8s_api::decode(value)
        else {
            panic!("decodes as a WorkloadEntry");
        };
        assert_eq!(&*read.meta.name, "legacy-2001-db8--7");
        assert_eq!(read.spec.address, "2001:db8::7");
        assert!(
            !read.serves(),
            "a group with a probe: unhealthy until reported healthy"
        );
    }

    #[test]
    fn the_proxy_network_wins_and_names_the_entry() {
        let mut p = proxy(&["192.0.2.50"]);
        p.network = Some("net-vm".into());
        let entry = entry(&group(), &p, &[], "b", "t").unwrap();
        assert_eq!(entry["spec"]["network"], "net-vm");
        assert_eq!(entry["metadata"]["name"], "legacy-192.0.2.50-net-vm");
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            entry(&group(), &proxy(&[]), &[], "b", "t"),
            Err(Refusal::NoAddress {
                group: "legacy".into()
            })
        );
        let mut p = proxy(&["192.0.2.50"]);
        p.namespace = "prod".into();
        let refusal = entry(&group(), &p, &[], "b", "t").unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "WorkloadGroup demo/legacy is not the proxy's group prod/legacy"
        );
    }

    /// The hole found in #15: a token for `demo/legacy` registered a VM whose `LABELS` said
    /// `app: echo`, and it became an endpoint of Service `demo/echo`.
    #[test]
    fn a_proxy_label_may_not_make_the_entry_an_endpoint_of_another_service() {
        let selector = |owner: &str, ns: &str, pairs: &[(&str, &str)]| Selector {
            owner: owner.into(),
            namespace: ns.into(),
            labels: labels(pairs),
        };
        let selectors = [
            selector("Service demo/echo", "demo", &[("app", "echo")]),
            selector("Service demo/legacy", "demo", &[("app", "legacy")]),
            selector(
                "ServiceEntry demo/v2",
                "demo",
                &[("app", "legacy"), ("version", "v2")],
            ),
            selector("Service prod/echo", "prod", &[("os", "bsd")]),
        ];
        let mut p = proxy(&["192.0.2.50"]);
        p.labels = labels(&[("app", "echo")]);
        let refusal = entry(&group(), &p, &selectors, "b", "t").unwrap_err();
        assert_eq!(
            refusal,
            Refusal::SelectingLabel {
                label: "app".into(),
                value: "echo".into(),
                group: "legacy".into(),
                namespace: "demo".into(),
                selected_by: "Service demo/echo".into(),
            }
        );
        assert!(refusal.to_string().contains("app=echo"), "{refusal}");
        // A version selected by a ServiceEntry the template does not select either.
        p.labels = labels(&[("version", "v2")]);
        assert!(matches!(
            entry(&group(), &p, &selectors, "b", "t"),
            Err(Refusal::SelectingLabel { label, .. }) if label == "version"
        ));
        // Labels that select nothing new are kept; other namespaces' selectors do not count.
        p.labels = labels(&[("version", "v3"), ("os", "bsd")]);
        let entry = entry(&group(), &p, &selectors, "b", "t").unwrap();
        assert_eq!(entry["spec"]["labels"]["version"], "v3");
        assert_eq!(entry["spec"]["labels"]["os"], "bsd");
    }
}
