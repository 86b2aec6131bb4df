//! The Kubernetes objects Bowline writes into members, as JSON: ServiceImports, imported
//! EndpointSlices, auto-export ServiceExports and the status of users' ServiceExports.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use bowline_model::{
    ClusterId, Endpoint, IpFamily, ServiceKey,
    export::{AUTO_EXPORT, MANAGED_BY_LABEL},
    labels::{ENDPOINTSLICE_MANAGED_BY, MCS_SERVICE_NAME, MCS_SOURCE_CLUSTER},
};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::merge::{ImportPort, Merged};

/// API version of the MCS objects written.
pub const MCS_API_VERSION: &str = "multicluster.x-k8s.io/v1beta1";
/// `endpointslice.kubernetes.io/managed-by` of imported EndpointSlices.
pub const SLICE_MANAGER: &str = "bowline.io";
/// `bowline.io/managed-by` of ServiceImports and imported EndpointSlices.
pub const MCS_CONTROLLER: &str = "mcs-controller";

/// A `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Valid`, `Ready` or `Conflict`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: String,
}

impl Condition {
    /// A condition, its transition time taken from `previous` when its status is unchanged.
    pub fn new(
        type_: &str,
        ok: bool,
        reason: &str,
        message: String,
        previous: Option<&Value>,
        now: &str,
    ) -> Self {
        let status = if ok { "True" } else { "False" };
        let last_transition_time = previous
            .and_then(|p| {
                p.pointer("/status/conditions")?
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == type_)
                    .cloned()
            })
            .filter(|c| c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str().map(String::from))
            .unwrap_or_else(|| now.to_string());
        Self {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message,
            last_transition_time,
        }
    }
}

fn ports_json(ports: &[ImportPort]) -> Value {
    Value::Array(
        ports
            .iter()
            .map(|p| {
                let mut port =
                    json!({"name": p.name, "protocol": p.protocol.as_str(), "port": p.port});
                if let Some(app) = &p.app_protocol {
                    port["appProtocol"] = json!(app);
                }
                port
            })
            .collect(),
    )
}

fn family_name(f: IpFamily) -> &'static str {
    match f {
        IpFamily::IPv4 => "IPv4",
        IpFamily::IPv6 => "IPv6",
    }
}

/// A ServiceImport for one member.
pub fn service_import(
    key: &ServiceKey,
    merged: &Merged,
    ips: &[IpAddr],
    ip_families: &[IpFamily],
    clusters: &[ClusterId],
    ready: &Condition,
) -> Value {
    let mut labels: Map<String, Value> = merged
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    labels.insert(MANAGED_BY_LABEL.into(), json!(MCS_CONTROLLER));
    let mut spec = json!({
        "type": format!("{:?}", merged.import_type),
        "ports": ports_json(&merged.ports),
        "ipFamilies": ip_families.iter().map(|f| family_name(*f)).collect::<Vec<_>>(),
        "sessionAffinity": merged.session_affinity,
    });
    if !ips.is_empty() {
        spec["ips"] = json!(ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>());
    }
    if let Some(timeout) = merged.session_affinity_timeout {
        spec["sessionAffinityConfig"] = json!({"clientIP": {"timeoutSeconds": timeout}});
    }
    if let Some(policy) = &merged.internal_traffic_policy {
        spec["internalTrafficPolicy"] = json!(policy);
    }
    if let Some(distribution) = &merged.traffic_distribution {
        spec["trafficDistribution"] = json!(distribution);
    }
    let mut metadata = json!({"name": &*key.name, "namespace": &*key.namespace, "labels": labels});
    if !merged.annotations.is_empty() {
        metadata["annotations"] = json!(merged.annotations);
    }
    json!({
        "apiVersion": MCS_API_VERSION,
        "kind": "ServiceImport",
        "metadata": metadata,
        "spec": spec,
        "status": {
            "clusters": clusters.iter().map(|c| json!({"cluster": c.as_str()})).collect::<Vec<_>>(),
            "conditions": [ready],
        },
    })
}

/// The name of the imported EndpointSlice of `key` from `source` for `family` (`group` > 0
/// when a source's endpoints serve different port sets).
pub fn slice_name(key: &ServiceKey, source: &ClusterId, family: IpFamily, group: usize) -> String {
    let family = match family {
        IpFamily::IPv4 => "ipv4",
        IpFamily::IPv6 => "ipv6",
    };
    let suffix = if group == 0 {
        String::new()
    } else {
        format!("-{group}")
    };
    format!("imported-{}-{source}-{family}{suffix}", key.name)
}

/// Ports of an imported slice: `(name, port on the endpoints, protocol, appProtocol)`.
pub type SlicePort = (String, u16, bowline_model::Protocol, Option<String>);

/// An imported EndpointSlice: one source member, one family, the ports it serves.
///
/// At scale these are nearly every object written, so the outcome does not hold their text:
/// it holds what they are made of, the source's endpoints shared with the registry's view,
/// and renders the text when a writer needs it. Two slices are equal exactly when their
/// texts would be: their names and ports are, and so is every field rendered of every
/// endpoint with an address of the family.
#[derive(Clone)]
pub struct ImportedSlice {
    key: ServiceKey,
    name: Box<str>,
    source: ClusterId,
    family: IpFamily,
    ports: Box<[SlicePort]>,
    endpoints: Arc<[Endpoint]>,
}

/// An endpoint of an imported slice, as rendered: `None` when it has no address of the
/// slice's family.
fn slice_endpoint(ep: &Endpoint, family: IpFamily) -> Option<SliceEndpointJson<'_>> {
    let address = ep.addresses.iter().find(|a| IpFamily::of(a) == family)?;
    Some(SliceEndpointJson {
        addresses: [*address],
        conditions: ConditionsJson {
            ready: ep.ready,
            serving: ep.serving,
            terminating: ep.terminating,
        },
        hostname: ep.hostname.as_deref(),
        zone: Some(&*ep.locality.zone).filter(|z| !z.is_empty()),
    })
}

impl ImportedSlice {
    /// The slice `name` of `key` holding the endpoints of `source` with an address of
    /// `family`, serving `ports`.
    pub fn new(
        key: &ServiceKey,
        name: &str,
        source: &ClusterId,
        family: IpFamily,
        ports: Vec<SlicePort>,
        endpoints: Arc<[Endpoint]>,
    ) -> Self {
        Self {
            key: key.clone(),
            name: name.into(),
            source: source.clone(),
            family,
            ports: ports.into(),
            endpoints,
        }
    }

    /// True when no endpoint of the source has an address of the slice's family.
    pub fn is_empty(&self) -> bool {
        self.endpoints().next().is_none()
    }

    fn endpoints(&self) -> impl Iterator<Item = SliceEndpointJson<'_>> {
        self.endpoints
            .iter()
            .filter_map(|ep| slice_endpoint(ep, self.family))
    }

    fn json(&self) -> SliceJson<'_> {
        let ports = self
            .ports
            .iter()
            .map(|(name, port, protocol, app)| SlicePortJson {
                app_protocol: app.as_deref(),
                name,
                port: *port,
                protocol: protocol.as_str(),
            })
            .collect();
        SliceJson {
            address_type: family_name(self.family),
            api_version: "discovery.k8s.io/v1",
            endpoints: self.endpoints().collect(),
            kind: "EndpointSlice",
            metadata: SliceMetaJson {
                labels: BTreeMap::from([
                    (ENDPOINTSLICE_MANAGED_BY, SLICE_MANAGER),
                    (MANAGED_BY_LABEL, MCS_CONTROLLER),
                    (MCS_SERVICE_NAME, &*self.key.name),
                    (MCS_SOURCE_CLUSTER, self.source.as_str()),
                ]),
                name: &self.name,
                namespace: &self.key.namespace,
            },
            ports,
        }
    }

    /// The slice's compact JSON text.
    pub fn text(&self) -> String {
        serde_json::to_string(&self.json()).expect("an imported slice always serializes")
    }

    /// The slice as a JSON value.
    pub fn value(&self) -> Value {
        serde_json::to_value(self.json()).expect("an imported slice always serializes")
    }
}

impl PartialEq for ImportedSlice {
    fn eq(&self, other: &Self) -> bool {
        let head = self.key == other.key
            && self.name == other.name
            && self.source == other.source
            && self.family == other.family
            && self.ports == other.ports;
        head && (Arc::ptr_eq(&self.endpoints, &other.endpoints)
            || self.endpoints().eq(other.endpoints()))
    }
}

impl Eq for ImportedSlice {}

// The shapes of an imported slice's JSON, fields in the order a `Value` would print them
// (sorted), so that the text is the same as the object's parsed-and-printed form.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SliceJson<'a> {
    address_type: &'static str,
    api_version: &'static str,
    endpoints: Vec<SliceEndpointJson<'a>>,
    kind: &'static str,
    metadata: SliceMetaJson<'a>,
    ports: Vec<SlicePortJson<'a>>,
}

#[derive(Serialize)]
struct SliceMetaJson<'a> {
    labels: BTreeMap<&'static str, &'a str>,
    name: &'a str,
    namespace: &'a str,
}

#[derive(PartialEq, Serialize)]
struct SliceEndpointJson<'a> {
    addresses: [IpAddr; 1],
    conditions: ConditionsJson,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    zone: Option<&'a str>,
}

#[derive(PartialEq, Serialize)]
struct ConditionsJson {
    ready: bool,
    serving: bool,
    terminating: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SlicePortJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    app_protocol: Option<&'a str>,
    name: &'a str,
    port: u16,
    protocol: &'static str,
}

/// A ServiceExport: Bowline's own (auto-export, with labels and spec) or the status of a
/// user's (metadata identifies it; only `status` is Bowline's).
pub fn service_export(
    key: &ServiceKey,
    auto: bool,
    created: &str,
    conditions: &[Condition],
    clusters: &[ClusterId],
) -> Value {
    let mut object = json!({
        "apiVersion": MCS_API_VERSION,
        "kind": "ServiceExport",
        "metadata": {"name": &*key.name, "namespace": &*key.namespace, "creationTimestamp": created},
        "status": {"conditions": conditions},
    });
    if !clusters.is_empty() {
        let clusters: Vec<Value> = clusters
            .iter()
            .map(|c| json!({"cluster": c.as_str()}))
            .collect();
        object["status"]["clusters"] = Value::Array(clusters);
    }
    if auto {
        object["metadata"]["labels"] = json!({MANAGED_BY_LABEL: AUTO_EXPORT});
        object["spec"] = json!({});
    }
    object
}

#[cfg(test)]
mod tests {
    use bowline_model::{Locality, Network, Protocol};

    use super::*;
    use crate::Rendered;

    fn endpoint(address: &str, ready: bool) -> Endpoint {
        Endpoint {
            cluster: ClusterId::new("east").unwrap(),
            network: Network::default(),
            locality: Arc::new(Locality {
                zone: "zone-a".into(),
                ..Locality::default()
            }),
            addresses: Arc::from([address.parse::<IpAddr>().unwrap()]),
            ports: Arc::from([]),
            hostname: None,
            node_name: None,
            workload: None,
            ready,
            serving: ready,
            terminating: false,
            weight: 1,
            service_account: None,
            mtls: false,
        }
    }

    fn slice(endpoints: Vec<Endpoint>) -> Rendered {
        let key = ServiceKey::new("shop", "cart");
        let source = ClusterId::new("east").unwrap();
        let name = slice_name(&key, &source, IpFamily::IPv4, 0);
        let ports = vec![("http".to_owned(), 8080, Protocol::Tcp, None)];
        ImportedSlice::new(
            &key,
            &name,
            &source,
            IpFamily::IPv4,
            ports,
            endpoints.into(),
        )
        .into()
    }

    #[test]
    fn an_imported_slice_renders_what_it_holds_and_compares_by_that() {
        let one = slice(vec![endpoint("10.0.0.1", true), endpoint("fd00::1", true)]);
        let value = one.to_value();
        assert_eq!(value["metadata"]["name"], "imported-cart-east-ipv4");
        assert_eq!(value["addressType"], "IPv4");
        assert_eq!(
            value["endpoints"],
            json!([{"addresses": ["10.0.0.1"], "zone": "zone-a",
                    "conditions": {"ready": true, "serving": true, "terminating": false}}]),
            "only the endpoints of the slice's family"
        );
        assert_eq!(one.json(), serde_json::to_string(&value).unwrap());
        assert_eq!(one, Rendered::new(&value), "equal to its own text");

        let mut moved = endpoint("10.0.0.1", true);
        moved.node_name = Some("node-2".into());
        assert_eq!(
            one,
            slice(vec![moved, endpoint("fd00::2", false)]),
            "fields not rendered make no difference"
        );
        let flipped = slice(vec![endpoint("10.0.0.1", false)]);
        assert_ne!(one, flipped, "a readiness flip is a change");
        assert_ne!(flipped, Rendered::new(&value));
    }
}
