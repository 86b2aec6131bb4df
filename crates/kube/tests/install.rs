//! `bowline install` manifests: every document is a valid object of its kind with no field
//! lost or added, the CRDs serve the upstream versions and accept upstream sample objects, and
//! the RBAC rules are exactly the permissions table.

use std::collections::BTreeSet;

use bowline_kube::install::{InstallOptions, manifests, render_yaml};
use bowline_kube::rbac::{PERMISSIONS, Scope};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

/// Deserializes `doc` into `T` (naming the failing field), serializes it back and checks the
/// result is the document: k8s-openapi ignores unknown fields, so a misspelt or misplaced
/// field would be lost here and the comparison fails.
fn exact<T: DeserializeOwned + Serialize>(doc: &Value) -> T {
    let typed: T = serde_path_to_error::deserialize(doc.clone()).unwrap_or_else(|e| {
        panic!("{}: {} in {doc:#}", e.path(), e.inner());
    });
    let back = serde_json::to_value(&typed).expect("serializes");
    assert_eq!(&back, doc, "a field was lost or added");
    typed
}

fn check_document(doc: &Value) {
    match doc["kind"].as_str().unwrap_or_default() {
        "Namespace" => drop(exact::<Namespace>(doc)),
        "CustomResourceDefinition" => drop(exact::<CustomResourceDefinition>(doc)),
        "ServiceAccount" => drop(exact::<ServiceAccount>(doc)),
        "ClusterRole" => drop(exact::<ClusterRole>(doc)),
        "ClusterRoleBinding" => drop(exact::<ClusterRoleBinding>(doc)),
        "Role" => drop(exact::<Role>(doc)),
        "RoleBinding" => drop(exact::<RoleBinding>(doc)),
        "ConfigMap" => drop(exact::<ConfigMap>(doc)),
        "Deployment" => drop(exact::<Deployment>(doc)),
        "Service" => drop(exact::<Service>(doc)),
        other => panic!("unexpected kind {other:?}"),
    }
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn every_document_is_exactly_its_kind() {
    let docs = manifests(&InstallOptions::default());
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Namespace",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Deployment",
            "Service",
        ]
    );
    docs.iter().for_each(check_document);
    // The YAML stream reads back as the same documents.
    let yaml = render_yaml(&docs).expect("renders");
    let read: Vec<Value> = serde_saphyr::from_multiple(&yaml).expect("reads back");
    assert_eq!(read, docs);
}

#[test]
fn crds_only_prints_only_the_crds() {
    let opts = InstallOptions {
        crds_only: true,
        ..InstallOptions::default()
    };
    let docs = manifests(&opts);
    assert_eq!(docs.len(), 7);
    assert!(docs.iter().all(|d| d["kind"] == "CustomResourceDefinition"));
}

#[test]
fn crds_serve_the_upstream_versions_with_one_storage_version() {
    let expected = [
        (
            "serviceexports.multicluster.x-k8s.io",
            &["v1alpha1", "v1beta1"][..],
            "v1beta1",
        ),
        (
            "serviceimports.multicluster.x-k8s.io",
            &["v1alpha1", "v1beta1"],
            "v1beta1",
        ),
        (
            "clusterproperties.about.k8s.io",
            &["v1alpha1", "v1beta1"],
            "v1beta1",
        ),
        (
            "workloadentries.networking.istio.io",
            &["v1", "v1alpha3", "v1beta1"],
            "v1",
        ),
        (
            "workloadgroups.networking.istio.io",
            &["v1", "v1alpha3", "v1beta1"],
            "v1",
        ),
        (
            "serviceentries.networking.istio.io",
            &["v1", "v1alpha3", "v1beta1"],
            "v1",
        ),
        (
            "peerauthentications.security.istio.io",
            &["v1", "v1beta1"],
            "v1",
        ),
    ];
    let crds: Vec<CustomResourceDefinition> = bowline_k8s_api::crds::definitions();
    assert_eq!(crds.len(), expected.len());
    for (name, versions, storage) in expected {
        let crd = crds
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no CRD {name}"));
        let served: BTreeSet<&str> = crd
            .spec
            .versions
            .iter()
            .filter(|v| v.served)
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(served, versions.iter().copied().collect(), "{name}");
        let stored: Vec<&str> = crd
            .spec
            .versions
            .iter()
            .filter(|v| v.storage)
            .map(|v| v.name.as_str())
            .collect();
        assert_eq!(stored, [storage], "{name}");
    }
    let scope = |name: &str| {
        crds.iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .map(|c| c.spec.scope.clone())
    };
    assert_eq!(
        scope("clusterproperties.about.k8s.io").as_deref(),
        Some("Cluster")
    );
    assert_eq!(
        scope("serviceimports.multicluster.x-k8s.io").as_deref(),
        Some("Namespaced")
    );
}

/// Checks `value` against an OpenAPI v3 schema as the API server's structural validation and
/// pruning would, for the subset the CRDs use: types, required fields, unknown fields (which
/// would be pruned), enums, lengths, item counts and bounds. Patterns and CEL are not checked.
fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if schema["x-kubernetes-int-or-string"] == true {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            errors.push(format!("{path}: not an int or string"));
        }
        return;
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {allowed:?}"));
    }
    let bound = |key: &str| schema[key].as_f64();
    match schema["type"].as_str() {
        Some("object") => {
            let Some(object) = value.as_object() else {
                errors.push(format!("{path}: not an object"));
                return;
            };
            for required in schema["required"].as_array().into_iter().flatten() {
                let key = required.as_str().unwrap_or_default();
                if !object.contains_key(key) {
                    errors.push(format!("{path}.{key}: required"));
                }
            }
            if let Some(max) = bound("maxProperties")
                && object.len() as f64 > max
            {
                errors.push(format!("{path}: more than {max} properties"));
            }
            for (key, field) in object {
                let field_path = format!("{path}.{key}");
                if let Some(sub) = schema["properties"].get(key) {
                    validate(sub, field, &field_path, errors);
                } else if schema["additionalProperties"].is_object() {
                    validate(&schema["additionalProperties"], field, &field_path, errors);
                } else if schema["x-kubernetes-preserve-unknown-fields"] != true {
                    errors.push(format!("{field_path}: unknown field (would be pruned)"));
                }
            }
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                errors.push(format!("{path}: not an array"));
                return;
            };
            if bound("maxItems").is_some_and(|max| items.len() as f64 > max)
                || bound("minItems").is_some_and(|min| (items.len() as f64) < min)
            {
                errors.push(format!("{path}: {} items out of bounds", items.len()));
            }
            for (i, item) in items.iter().enumerate() {
                validate(&schema["items"], item, &format!("{path}[{i}]"), errors);
            }
        }
        Some("string") => match value.as_str() {
            None => errors.push(format!("{path}: not a string")),
            Some(s) => {
                let len = s.chars().count() as f64;
                if bound("maxLength").is_some_and(|max| len > max)
                    || bound("minLength").is_some_and(|min| len < min)
                {
                    errors.push(format!("{path}: length {len} out of bounds"));
                }
            }
        },
        Some("integer") => match value.as_f64().filter(|_| value.is_i64() || value.is_u64()) {
            None => errors.push(format!("{path}: not an integer")),
            Some(n) => {
                if bound("maximum").is_some_and(|max| n > max)
                    || bound("minimum").is_some_and(|min| n < min)
                {
                    errors.push(format!("{path}: {n} out of bounds"));
                }
            }
        },
        Some("boolean") if !value.is_boolean() => errors.push(format!("{path}: not a boolean")),
        Some("number") if !value.is_number() => errors.push(format!("{path}: not a number")),
        _ => {}
    }
}

/// Validates a sample object against the schema of its apiVersion in the installed CRDs.
fn validate_sample(sample: &Value) -> Vec<String> {
    let crds = bowline_k8s_api::crds::definitions();
    let (group, version) = sample["apiVersion"]
        .as_str()
        .and_then(|v| v.split_once('/'))
        .expect("group/version");
    let crd = crds
        .iter()
        .find(|c| c.spec.group == group && c.spec.names.kind == sample["kind"])
        .unwrap_or_else(|| panic!("no CRD for {}", sample["kind"]));
    let served = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == version && v.served)
        .unwrap_or_else(|| panic!("{group}/{version} not served"));
    let schema =
        serde_json::to_value(&served.schema.as_ref().unwrap().open_api_v3_schema).expect("schema");
    let mut object = sample.clone();
    // The API server validates these itself; they are not in the schema.
    for implicit in ["apiVersion", "kind", "metadata"] {
        object.as_object_mut().unwrap().remove(implicit);
    }
    let mut errors = Vec::new();
    validate(&schema, &object, "", &mut errors);
    errors
}

/// Sample objects from upstream documentation: mcs-api's README and KEP-1645, about-api's
/// samples, istio.io's WorkloadEntry, WorkloadGroup and ServiceEntry references.
fn upstream_samples() -> Vec<Value> {
    let yaml = r#"
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceExport
metadata: {name: my-svc, namespace: my-ns}
---
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceExport
metadata: {name: my-svc, namespace: my-ns}
spec:
  exportedLabels: {team: payments}
status:
  conditions:
  - type: Ready
    status: "True"
    reason: Exported
    message: Service export is ready
    lastTransitionTime: "2020-03-30T01:33:51Z"
  - type: Conflict
    status: "True"
    reason: PortConflict,TypeConflict
    message: Conflicting type. Using "ClusterSetIP" from oldest service export in "cluster-1". 2/5 clusters disagree.
    lastTransitionTime: "2020-03-30T01:33:55Z"
---
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceImport
metadata: {name: my-svc, namespace: my-ns}
spec:
  ips: [42.42.42.42]
  type: ClusterSetIP
  ports:
  - name: http
    protocol: TCP
    port: 80
  sessionAffinity: None
status:
  clusters:
  - cluster: us-west2-a-my-cluster
---
apiVersion: multicluster.x-k8s.io/v1alpha1
kind: ServiceImport
metadata: {name: db, namespace: shop}
spec:
  type: Headless
  ports: []
  ipFamilies: [IPv4, IPv6]
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 10800}}
---
apiVersion: about.k8s.io/v1alpha1
kind: ClusterProperty
metadata: {name: cluster.clusterset.k8s.io}
spec: {value: cluster-1}
---
apiVersion: about.k8s.io/v1beta1
kind: ClusterProperty
metadata: {name: clusterset.k8s.io}
spec: {value: mycoolclusterset}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: details-svc}
spec:
  serviceAccount: details-legacy
  address: 2.2.2.2
  labels: {app: details-legacy, instance-id: vm1}
status:
  conditions:
  - type: Healthy
    status: "True"
    lastProbeTime: "2021-03-01T10:00:00Z"
    lastTransitionTime: "2021-03-01T10:00:00Z"
---
apiVersion: networking.istio.io/v1alpha3
kind: WorkloadGroup
metadata: {name: reviews, namespace: bookinfo}
spec:
  metadata:
    labels: {app.kubernetes.io/name: reviews, app.kubernetes.io/version: "1.3.4"}
  template:
    ports: {grpc: 3550, http: 8080}
    serviceAccount: default
  probe:
    initialDelaySeconds: 5
    timeoutSeconds: 3
    periodSeconds: 4
    successThreshold: 3
    failureThreshold: 3
    httpGet:
      path: /foo/bar
      host: 127.0.0.1
      port: 3100
      scheme: HTTPS
      httpHeaders:
      - name: Lit-Header
        value: Im-The-Best
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: external-svc-https}
spec:
  hosts: [api.dropboxapi.com, www.googleapis.com, api.facebook.com]
  location: MESH_EXTERNAL
  ports:
  - number: 443
    name: https
    protocol: TLS
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external-svc-mongocluster}
spec:
  hosts: [mymongodb.somedomain]
  addresses: [192.192.192.192/24]
  ports:
  - number: 27018
    name: mongodb
    protocol: MONGO
  location: MESH_INTERNAL
  resolution: STATIC
  exportTo: ["."]
  endpoints:
  - address: 2.2.2.2
  - address: 3.3.3.3
    ports: {mongodb: 27019}
    network: net-2
    locality: us-east1/us-east1-b
    weight: 2
"#;
    serde_saphyr::from_multiple(yaml).expect("samples parse")
}

#[test]
fn upstream_samples_validate_against_the_crds() {
    let samples = upstream_samples();
    assert_eq!(samples.len(), 10);
    for sample in &samples {
        let errors = validate_sample(sample);
        assert!(
            errors.is_empty(),
            "{} {}: {errors:?}",
            sample["kind"],
            sample["metadata"]["name"]
        );
        // Bowline reads them too.
        let decoded = bowline_k8s_api::decode(sample.clone());
        assert!(matches!(decoded, Ok(Some(_))), "{sample}: {decoded:?}");
    }
}

#[test]
fn the_checker_catches_what_the_api_server_would_refuse() {
    let cases = [
        (
            json!({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
                   "spec": {"type": "LoadBalancer", "ports": []}}),
            ".spec.type: \"LoadBalancer\" is not one of",
        ),
        (
            json!({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceImport",
                   "spec": {"type": "Headless"}}),
            ".spec.ports: required",
        ),
        (
            json!({"apiVersion": "multicluster.x-k8s.io/v1alpha1", "kind": "ServiceExport",
                   "spec": {"exportedLabelz": {}}}),
            ".spec.exportedLabelz: unknown field",
        ),
        (
            json!({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport",
                   "status": {"conditions": [{"type": "Ready", "status": "Yes"}]}}),
            ".status.conditions[0].status: \"Yes\" is not one of",
        ),
        (
            json!({"apiVersion": "about.k8s.io/v1alpha1", "kind": "ClusterProperty"}),
            ".spec: required",
        ),
        (
            json!({"apiVersion": "about.k8s.io/v1beta1", "kind": "ClusterProperty", "spec": {"value": ""}}),
            ".spec.value: length 0 out of bounds",
        ),
        (
            json!({"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
                   "spec": {"ports": {"http": -1}}}),
            ".spec.ports.http: -1 out of bounds",
        ),
        (
            json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                   "spec": {"hosts": [], "ports": [{"number": 80}]}}),
            ".spec.ports[0].name: required",
        ),
        (
            json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "spec": {"hosts": ["a"], "resolution": "MAGIC"}}),
            ".spec.resolution: \"MAGIC\" is not one of",
        ),
    ];
    for (sample, needle) in cases {
        let errors = validate_sample(&sample);
        assert!(
            errors.iter().any(|e| e.starts_with(needle)),
            "{sample}: {errors:?} should have {needle:?}"
        );
    }
    // Specs are optional where upstream's are: a bare ServiceExport is valid.
    let bare = json!({"apiVersion": "multicluster.x-k8s.io/v1beta1", "kind": "ServiceExport"});
    assert_eq!(validate_sample(&bare), Vec::<String>::new());
    // Istio keeps unknown status fields.
    let status = json!({"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
                        "spec": {"address": "10.0.0.1"}, "status": {"somethingNew": 1}});
    assert_eq!(validate_sample(&status), Vec::<String>::new());
}

/// `(group, resource, sorted verbs)` of rules or table rows.
type Grants = BTreeSet<(String, String, Vec<String>)>;

fn grants_of_rules(rules: &Value) -> Grants {
    let mut grants = Grants::new();
    for rule in rules.as_array().expect("rules") {
        let mut verbs: Vec<String> = serde_json::from_value(rule["verbs"].clone()).unwrap();
        verbs.sort();
        for group in rule["apiGroups"].as_array().unwrap() {
            for resource in rule["resources"].as_array().unwrap() {
                grants.insert((
                    group.as_str().unwrap().into(),
                    resource.as_str().unwrap().into(),
                    verbs.clone(),
                ));
            }
        }
    }
    grants
}

fn grants_of_table(scope: Scope) -> Grants {
    PERMISSIONS
        .iter()
        .filter(|p| p.scope == scope)
        .map(|p| {
            let mut verbs: Vec<String> = p.verbs.iter().map(|v| (*v).into()).collect();
            verbs.sort();
            (p.group.into(), p.resource.into(), verbs)
        })
        .collect()
}

#[test]
fn rbac_is_the_permissions_table() {
    let opts = InstallOptions {
        namespace: "mesh".into(),
        ..InstallOptions::default()
    };
    let docs = manifests(&opts);
    let cluster_role = find(&docs, "ClusterRole");
    let role = find(&docs, "Role");
    assert_eq!(
        grants_of_rules(&cluster_role["rules"]),
        grants_of_table(Scope::Cluster)
    );
    assert_eq!(
        grants_of_rules(&role["rules"]),
        grants_of_table(Scope::OwnNamespace)
    );
    assert_eq!(role["metadata"]["namespace"], "mesh");
    // The table itself, as the brief for the Kubernetes members states it.
    let read = ["list", "watch"];
    let write = ["delete", "list", "patch", "watch"];
    let mut expected = Grants::new();
    for (group, resource, verbs) in [
        ("", "namespaces", &read[..]),
        ("", "nodes", &read),
        ("", "services", &read),
        ("", "pods", &read),
        ("discovery.k8s.io", "endpointslices", &write),
        ("multicluster.x-k8s.io", "serviceexports", &write),
        ("multicluster.x-k8s.io", "serviceimports", &write),
        ("multicluster.x-k8s.io", "serviceexports/status", &["patch"]),
        ("multicluster.x-k8s.io", "serviceimports/status", &["patch"]),
        ("about.k8s.io", "clusterproperties", &read),
        (
            "networking.istio.io",
            "workloadentries",
            &["delete", "get", "list", "patch", "watch"],
        ),
        ("networking.istio.io", "workloadentries/status", &["patch"]),
        ("networking.istio.io", "workloadgroups", &read),
        ("networking.istio.io", "serviceentries", &read),
        ("security.istio.io", "peerauthentications", &read),
        ("cluster.open-cluster-management.io", "clusterclaims", &read),
        ("authentication.k8s.io", "tokenreviews", &["create"]),
    ] {
        expected.insert((
            group.into(),
            resource.into(),
            verbs.iter().map(|v| (*v).into()).collect(),
        ));
    }
    assert_eq!(grants_of_table(Scope::Cluster), expected);
    // Bowline's own namespace: Leases (election, VM heartbeats) and the CA and token
    // Secrets.
    let own: Grants = [
        (
            "coordination.k8s.io",
            "leases",
            &["create", "get", "list", "patch", "update"][..],
        ),
        ("", "secrets", &["create", "get", "update"]),
    ]
    .into_iter()
    .map(|(group, resource, verbs)| {
        (
            group.into(),
            resource.into(),
            verbs.iter().map(|v| (*v).into()).collect(),
        )
    })
    .collect();
    assert_eq!(grants_of_table(Scope::OwnNamespace), own);
    for binding in ["ClusterRoleBinding", "RoleBinding"] {
        let subjects = &find(&docs, binding)["subjects"];
        assert_eq!(
            subjects,
            &json!([{"kind": "ServiceAccount", "name": "bowline", "namespace": "mesh"}])
        );
    }
}

#[test]
fn deployment_and_service_wire_the_ports_and_probes() {
    let opts = InstallOptions {
        replicas: 3,
        image: "example.com/bowline:dev".into(),
        ..InstallOptions::default()
    };
    let docs = manifests(&opts);
    let deployment: Deployment = exact(find(&docs, "Deployment"));
    let spec = deployment.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    let pod = spec.template.spec.unwrap();
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("example.com/bowline:dev"));
    assert_eq!(
        container.args.as_deref().unwrap(),
        ["run", "--config", "/etc/bowline/bowline.yaml"]
    );
    let ports: Vec<(String, i32, String)> = container
        .ports
        .iter()
        .flatten()
        .map(|p| {
            (
                p.name.clone().unwrap(),
                p.container_port,
                p.protocol.clone().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("xds".into(), 15010, "TCP".into()),
            ("xds-tls".into(), 15012, "TCP".into()),
            ("dns-udp".into(), 15053, "UDP".into()),
            ("dns-tcp".into(), 15053, "TCP".into()),
            ("admin".into(), 15014, "TCP".into()),
        ]
    );
    let probe_path = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        let get = p.as_ref().unwrap().http_get.as_ref().unwrap();
        (get.path.clone().unwrap(), get.port.clone())
    };
    let admin = k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("admin".into());
    assert_eq!(
        probe_path(&container.readiness_probe),
        ("/readyz".into(), admin.clone())
    );
    assert_eq!(
        probe_path(&container.liveness_probe),
        ("/healthz".into(), admin)
    );
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(
        security.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    assert!(
        pod.affinity
            .unwrap()
            .pod_anti_affinity
            .unwrap()
            .preferred_during_scheduling_ignored_during_execution
            .is_some()
    );

    let service: Service = exact(find(&docs, "Service"));
    let ports: Vec<(i32, String, String)> = service
        .spec
        .unwrap()
        .ports
        .unwrap()
        .into_iter()
        .map(|p| {
            let target = match p.target_port.unwrap() {
                k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(s) => s,
                other => panic!("{other:?}"),
            };
            (p.port, target, p.protocol.unwrap())
        })
        .collect();
    assert_eq!(
        ports,
        [
            (15012, "xds-tls".into(), "TCP".into()),
            (53, "dns-udp".into(), "UDP".into()),
            (53, "dns-tcp".into(), "TCP".into()),
            (15014, "admin".into(), "TCP".into()),
        ]
    );

    // The configuration: admin reachable by the kubelet, leader election on the Lease the
    // Role allows.
    let config_map: ConfigMap = exact(find(&docs, "ConfigMap"));
    let text = &config_map.data.unwrap()["bowline.yaml"];
    let config: Value = serde_saphyr::from_str(text).unwrap();
    assert_eq!(config["listen"]["admin"], "0.0.0.0:15014");
    assert_eq!(
        config["listen"]["adminDebug"], "loopback",
        "the debug views are not open to the pod network"
    );
    assert_eq!(
        config["listen"]["xdsTls"], "[::]:15012",
        "VMs register on the TLS port"
    );
    assert_eq!(
        config["members"],
        json!([{"name": "local", "inCluster": true}])
    );
    assert_eq!(
        config["leaderElection"],
        json!({"member": "local", "namespace": "bowline-system", "name": "bowline"})
    );
}
