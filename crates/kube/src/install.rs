//! The manifests `bowline install` prints: CRDs, RBAC rendered from [`crate::rbac`], the
//! configuration and the Deployment and Service of an in-cluster Bowline.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    HTTPGetAction, Namespace, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource,
    SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
    WeightedPodAffinityTerm,
};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde_json::{Value, json};

use crate::rbac::{self, Scope};

/// Name of every namespaced object, the ServiceAccount, the ClusterRole and the Lease.
pub const NAME: &str = "bowline";
/// Where the ConfigMap is mounted; the configuration file is `bowline.yaml` in it.
pub const CONFIG_DIR: &str = "/etc/bowline";
/// The Secret holding the kubeconfigs of members joined with `bowline member join`, one key
/// `<name>.kubeconfig` each; mounted (optional) at [`MEMBERS_DIR`].
pub const MEMBERS_SECRET: &str = "bowline-members";
/// Where [`MEMBERS_SECRET`] is mounted.
pub const MEMBERS_DIR: &str = "/etc/bowline-members";
/// The member name the in-cluster configuration gives the cluster Bowline runs in.
pub const MEMBER: &str = "local";
/// xDS port (gRPC, TCP).
pub const XDS_PORT: i32 = 15010;
/// xDS over TLS (gRPC, TCP): where VMs register with a token.
pub const XDS_TLS_PORT: i32 = 15012;
/// DNS port in the pod (UDP and TCP); the Service answers on 53.
pub const DNS_PORT: i32 = 15053;
/// Admin port (`/healthz`, `/readyz`, `/metrics`).
pub const ADMIN_PORT: i32 = 15014;

/// What `bowline install` generates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallOptions {
    /// Namespace of Bowline's objects (created).
    pub namespace: String,
    /// Deployment replicas.
    pub replicas: i32,
    /// Container image.
    pub image: String,
    /// Only the CustomResourceDefinitions.
    pub crds_only: bool,
    /// `clusterSet` of the generated configuration.
    pub cluster_set: String,
}

impl Default for InstallOptions {
    fn default() -> Self {
        InstallOptions {
            namespace: "bowline-system".into(),
            replicas: 2,
            image: default_image(),
            crds_only: false,
            cluster_set: "clusterset".into(),
        }
    }
}

/// `ghcr.io/bowline-mesh/bowline:<version of this crate>`.
pub fn default_image() -> String {
    format!("ghcr.io/bowline-mesh/bowline:{}", env!("CARGO_PKG_VERSION"))
}

/// A manifest that could not be rendered.
#[derive(Debug, thiserror::Error)]
#[error("cannot render the manifests as YAML: {0}")]
pub struct RenderError(#[from] serde_saphyr::SerializeError);

/// Every object to apply, in apply order: Namespace, CRDs, RBAC, ConfigMap, Deployment,
/// Service. With `crds_only`, only the CRDs.
pub fn manifests(opts: &InstallOptions) -> Vec<Value> {
    let crds = bowline_k8s_api::crds::definitions().into_iter().map(doc);
    if opts.crds_only {
        return crds.collect();
    }
    let mut docs = vec![doc(namespace(&opts.namespace))];
    docs.extend(crds);
    docs.extend([
        doc(service_account(&opts.namespace, NAME)),
        doc(cluster_role(NAME)),
        doc(cluster_role_binding(&opts.namespace, NAME)),
        doc(Role {
            metadata: meta(Some(&opts.namespace), NAME),
            rules: Some(rbac::rules(Scope::OwnNamespace)),
        }),
        doc(RoleBinding {
            metadata: meta(Some(&opts.namespace), NAME),
            role_ref: role_ref("Role", NAME),
            subjects: Some(vec![subject(&opts.namespace, NAME)]),
        }),
        doc(config_map(opts)),
        doc(deployment(opts)),
        doc(service(opts)),
    ]);
    docs
}

/// Renders documents as one YAML stream (`---` between documents), as `kubectl apply -f -`
/// reads it. Strings YAML 1.1 would read as something else (`"True"`, `"on"`...) are quoted.
pub fn render_yaml(docs: &[Value]) -> Result<String, RenderError> {
    Ok(serde_saphyr::to_string_multiple(docs)?)
}

/// The configuration file of an in-cluster Bowline: the cluster it runs in as its only member,
/// leader election for the writer, admin reachable by the kubelet's probes (its debug views
/// by loopback callers only). As YAML text.
pub fn config_file(opts: &InstallOptions) -> String {
    /// Field order as docs/configuration.md shows it.
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ConfigFile {
        cluster_set: String,
        members: Value,
        leader_election: Value,
        listen: Value,
    }
    let file = ConfigFile {
        cluster_set: opts.cluster_set.clone(),
        members: json!([{"name": MEMBER, "inCluster": true}]),
        leader_election: json!({"member": MEMBER, "namespace": opts.namespace, "name": NAME}),
        listen: json!({
            "xds": format!("[::]:{XDS_PORT}"),
            "xdsTls": format!("[::]:{XDS_TLS_PORT}"),
            "xdsPlaintextFrom": "loopback",
            "dns": format!("[::]:{DNS_PORT}"),
            // Reachable by the kubelet's probes and by Prometheus; the debug views only
            // through `kubectl port-forward`.
            "admin": format!("0.0.0.0:{ADMIN_PORT}"),
            "adminDebug": "loopback",
        }),
    };
    // Strings, and maps with string keys: rendering cannot fail.
    serde_saphyr::to_string(&file).expect("the configuration renders as YAML")
}

fn doc<T: Serialize>(object: T) -> Value {
    // k8s-openapi objects have string keys only: serializing to JSON cannot fail.
    serde_json::to_value(object).expect("a Kubernetes object serializes to JSON")
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), NAME.into()),
        ("app.kubernetes.io/part-of".into(), NAME.into()),
    ])
}

fn selector() -> BTreeMap<String, String> {
    BTreeMap::from([("app.kubernetes.io/name".into(), NAME.into())])
}

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        labels: Some(labels()),
        ..ObjectMeta::default()
    }
}

/// The Namespace `name`.
pub(crate) fn namespace(name: &str) -> Namespace {
    Namespace {
        metadata: meta(None, name),
        ..Namespace::default()
    }
}

/// The ServiceAccount `namespace/name`.
pub(crate) fn service_account(namespace: &str, name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(Some(namespace), name),
        ..ServiceAccount::default()
    }
}

/// The ClusterRole `name`: the cluster-scoped rows of [`rbac::PERMISSIONS`].
pub(crate) fn cluster_role(name: &str) -> ClusterRole {
    ClusterRole {
        metadata: meta(None, name),
        rules: Some(rbac::rules(Scope::Cluster)),
        ..ClusterRole::default()
    }
}

/// The ClusterRoleBinding `name` granting the ClusterRole `name` to the ServiceAccount
/// `namespace/name`.
pub(crate) fn cluster_role_binding(namespace: &str, name: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(None, name),
        role_ref: role_ref("ClusterRole", name),
        subjects: Some(vec![subject(namespace, name)]),
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: kind.into(),
        name: name.into(),
    }
}

fn subject(namespace: &str, name: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: Some(namespace.into()),
        ..Subject::default()
    }
}

fn config_map(opts: &InstallOptions) -> ConfigMap {
    let text = config_file(opts);
    ConfigMap {
        metadata: meta(Some(&opts.namespace), NAME),
        data: Some(BTreeMap::from([("bowline.yaml".into(), text)])),
        ..ConfigMap::default()
    }
}

fn port(name: &str, number: i32, protocol: &str) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some(protocol.into()),
        ..ContainerPort::default()
    }
}

fn http_probe(path: &str, initial_delay: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial_delay),
        period_seconds: Some(10),
        ..Probe::default()
    }
}

fn container(opts: &InstallOptions) -> Container {
    Container {
        name: NAME.into(),
        image: Some(opts.image.clone()),
        args: Some(vec![
            "run".into(),
            "--config".into(),
            format!("{CONFIG_DIR}/bowline.yaml"),
        ]),
        ports: Some(vec![
            port("xds", XDS_PORT, "TCP"),
            port("xds-tls", XDS_TLS_PORT, "TCP"),
            port("dns-udp", DNS_PORT, "UDP"),
            port("dns-tcp", DNS_PORT, "TCP"),
            port("admin", ADMIN_PORT, "TCP"),
        ]),
        readiness_probe: Some(http_probe("/readyz", 0)),
        liveness_probe: Some(http_probe("/healthz", 10)),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity("100m".into())),
                ("memory".into(), Quantity("128Mi".into())),
            ])),
            ..ResourceRequirements::default()
        }),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "members".into(),
                mount_path: MEMBERS_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

fn deployment(opts: &InstallOptions) -> Deployment {
    let pod = PodSpec {
        service_account_name: Some(NAME.into()),
        containers: vec![container(opts)],
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        affinity: Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        weight: 100,
                        pod_affinity_term: PodAffinityTerm {
                            label_selector: Some(LabelSelector {
                                match_labels: Some(selector()),
                                ..LabelSelector::default()
                            }),
                            topology_key: "kubernetes.io/hostname".into(),
                            ..PodAffinityTerm::default()
                        },
                    },
                ]),
                ..PodAntiAffinity::default()
            }),
            ..Affinity::default()
        }),
        volumes: Some(vec![
            Volume {
                name: "config".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: NAME.into(),
                    ..ConfigMapVolumeSource::default()
                }),
                ..Volume::default()
            },
            // Members joined by `bowline member join`; absent until the first one.
            Volume {
                name: "members".into(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(MEMBERS_SECRET.into()),
                    optional: Some(true),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    };
    Deployment {
        metadata: meta(Some(&opts.namespace), NAME),
        spec: Some(DeploymentSpec {
            replicas: Some(opts.replicas),
            selector: LabelSelector {
                match_labels: Some(selector()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels()),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

fn service_port(name: &str, port: i32, target: &str, protocol: &str) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port,
        target_port: Some(IntOrString::String(target.into())),
        protocol: Some(protocol.into()),
        ..ServicePort::default()
    }
}

fn service(opts: &InstallOptions) -> Service {
    Service {
        metadata: meta(Some(&opts.namespace), NAME),
        spec: Some(ServiceSpec {
            selector: Some(selector()),
            // Not the plaintext xDS port: it serves the pod's own loopback callers only
            // (listen.xdsPlaintextFrom); sidecars and VMs use xds-tls with a credential.
            ports: Some(vec![
                service_port("xds-tls", XDS_TLS_PORT, "xds-tls", "TCP"),
                service_port("dns-udp", 53, "dns-udp", "UDP"),
                service_port("dns-tcp", 53, "dns-tcp", "TCP"),
                service_port("admin", ADMIN_PORT, "admin", "TCP"),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}
