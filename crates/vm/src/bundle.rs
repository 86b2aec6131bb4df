//! What a VM needs to join: the files `bowline vm bundle` writes, rendered from a
//! WorkloadGroup as `istioctl x workload entry configure` renders them
//! (Istio's "Virtual Machine Installation" guide), with Bowline's discovery address, root certificate and a
//! registration token.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{IpAddr, SocketAddr},
    path::Path,
};

use bowline_model::objects::{ProbeCheck, ReadinessProbe, WorkloadGroup};
use serde::Serialize;

use crate::ca::DISCOVERY_HOST;

/// What the bundle is made from.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// The WorkloadGroup the VM registers into.
    pub group: &'a WorkloadGroup,
    /// The cluster id of the member holding it.
    pub cluster_id: &'a str,
    /// Port of Bowline's xDS TLS listener.
    pub discovery_port: u16,
    /// Bowline's address, for the `hosts` file; `None` leaves it empty.
    pub bowline_address: Option<IpAddr>,
    /// The VM's own address (`ISTIO_SVC_IP`), when known.
    pub vm_address: Option<IpAddr>,
    /// Bowline's root certificate, PEM.
    pub root_cert_pem: &'a str,
    /// The registration token.
    pub token: &'a str,
    /// When the token expires (for the README).
    pub token_expires: jiff::Timestamp,
}

/// One file of a bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// File name.
    pub name: &'static str,
    /// Contents.
    pub contents: String,
    /// Unix permissions.
    pub mode: u32,
}

/// Ports Istio's `istio-start.sh` keeps out of inbound capture (ssh, Envoy's stats, health
/// and agent status ports).
const LOCAL_EXCLUDE_PORTS: &str = "22,15090,15021,15020";

/// Where the bundle's `agent.yaml` puts Envoy's SDS socket (Istio's path).
pub const AGENT_SDS_SOCKET: &str = "/var/run/secrets/workload-spiffe-uds/socket";
/// Where the bundle's `agent.yaml` writes the PEM files (Istio's file-mounted credentials).
pub const AGENT_CERT_DIR: &str = "/var/run/secrets/workload-spiffe-credentials";

/// The bundle's files: `agent.yaml`, `cluster.env`, `mesh.yaml`, `root-cert.pem`, `token`,
/// `hosts` and `README`.
pub fn files(input: &Input<'_>) -> Vec<File> {
    let group = input.group;
    let name = group.meta.name.to_string();
    let namespace = group.meta.namespace.to_string();
    let discovery = format!("{DISCOVERY_HOST}:{}", input.discovery_port);
    let metadata = proxy_metadata(input);
    let mut env = metadata.clone();
    let ports: Vec<u32> = {
        let mut p: Vec<u32> = group.template.ports.values().copied().collect();
        p.sort_unstable();
        p.dedup();
        p
    };
    let inbound = if ports.is_empty() {
        "*".to_string()
    } else {
        ports
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    env.insert("ISTIO_INBOUND_PORTS".into(), inbound);
    env.insert("ISTIO_NAMESPACE".into(), namespace.clone());
    env.insert("ISTIO_SERVICE".into(), format!("{name}.{namespace}"));
    env.insert("ISTIO_SERVICE_CIDR".into(), "*".into());
    env.insert(
        "ISTIO_LOCAL_EXCLUDE_PORTS".into(),
        LOCAL_EXCLUDE_PORTS.into(),
    );
    env.insert("CA_ADDR".into(), discovery.clone());
    env.insert("PILOT_ADDRESS".into(), discovery.clone());
    if let Some(ip) = input.vm_address {
        env.insert("ISTIO_SVC_IP".into(), ip.to_string());
    }
    let cluster_env: String = env
        .iter()
        .map(|(k, v)| format!("{k}={}\n", shell_quote(v)))
        .collect();
    let mesh = Mesh {
        default_config: ProxyConfig {
            discovery_address: discovery.clone(),
            proxy_metadata: metadata,
            readiness_probe: group.probe.as_ref().map(probe),
        },
    };
    let mesh_yaml = serde_saphyr::to_string(&mesh).expect("mesh.yaml renders as YAML");
    let hosts = match input.bowline_address {
        Some(ip) => format!("{ip} {DISCOVERY_HOST}\n"),
        None => String::new(),
    };
    let agent_yaml = format!(
        "\
# bowline agent --config agent.yaml: gets this VM's workload certificate from Bowline's CA
# with the token, serves it to Envoy over SDS and writes it for gRPC. Relative paths are
# relative to this file.
discovery: {discovery}
rootCert: root-cert.pem
token: token
clusterId: {cluster}
sdsSocket: {sds}
certDir: {certs}
",
        cluster = input.cluster_id,
        sds = AGENT_SDS_SOCKET,
        certs = AGENT_CERT_DIR,
    );
    vec![
        file("agent.yaml", agent_yaml, 0o644),
        file("cluster.env", cluster_env, 0o644),
        file("mesh.yaml", mesh_yaml, 0o644),
        file("root-cert.pem", input.root_cert_pem.to_string(), 0o644),
        file("token", input.token.to_string(), 0o600),
        file("hosts", hosts, 0o644),
        file("README", readme(input, &discovery), 0o644),
    ]
}

fn file(name: &'static str, contents: String, mode: u32) -> File {
    File {
        name,
        contents,
        mode,
    }
}

/// Writes the files into `dir` (created if missing), each atomically with its mode.
pub fn write(dir: &Path, files: &[File]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for f in files {
        crate::ca::write_file_atomic(&dir.join(f.name), f.contents.as_bytes(), f.mode)?;
    }
    Ok(())
}

/// `KEY='value'` quoting: single quotes, with `'` written as `'\''`.
fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The first of these labels that is set.
fn first_label(labels: &BTreeMap<String, String>, keys: &[&str]) -> Option<String> {
    keys.iter().find_map(|k| labels.get(*k).cloned())
}

/// The proxy metadata of `mesh.yaml` (and `cluster.env`), as istioctl builds it for an
/// auto-registering VM.
fn proxy_metadata(input: &Input<'_>) -> BTreeMap<String, String> {
    let group = input.group;
    let name = group.meta.name.to_string();
    let namespace = group.meta.namespace.to_string();
    let mut labels: BTreeMap<String, String> = group
        .template
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.extend(
        group
            .entry_labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let canonical_service = first_label(
        &labels,
        &[
            "service.istio.io/canonical-name",
            "app.kubernetes.io/name",
            "app",
        ],
    )
    .unwrap_or_else(|| name.clone());
    let canonical_revision = first_label(
        &labels,
        &[
            "service.istio.io/canonical-revision",
            "app.kubernetes.io/version",
            "version",
        ],
    )
    .unwrap_or_else(|| "latest".into());
    labels.insert(
        "service.istio.io/canonical-name".into(),
        canonical_service.clone(),
    );
    labels.insert(
        "service.istio.io/canonical-revision".into(),
        canonical_revision.clone(),
    );
    let service_account = match group.template.service_account.as_str() {
        "" => "default".to_string(),
        sa => sa.to_string(),
    };
    let mut m = BTreeMap::new();
    m.insert("CANONICAL_SERVICE".into(), canonical_service);
    m.insert("CANONICAL_REVISION".into(), canonical_revision);
    m.insert("POD_NAMESPACE".into(), namespace);
    m.insert("SERVICE_ACCOUNT".into(), service_account);
    m.insert("ISTIO_META_CLUSTER_ID".into(), input.cluster_id.to_string());
    if !group.template.network.is_empty() {
        m.insert("ISTIO_META_NETWORK".into(), group.template.network.clone());
    }
    m.insert("ISTIO_META_AUTO_REGISTER_GROUP".into(), name.clone());
    m.insert("ISTIO_META_WORKLOAD_NAME".into(), name);
    m.insert(
        "ISTIO_METAJSON_LABELS".into(),
        serde_json::to_string(&labels).expect("labels render as JSON"),
    );
    if !group.template.ports.is_empty() {
        let ports: Vec<serde_json::Value> = group
            .template
            .ports
            .iter()
            .map(|(name, port)| serde_json::json!({"name": name, "containerPort": port}))
            .collect();
        m.insert(
            "ISTIO_META_POD_PORTS".into(),
            serde_json::Value::Array(ports).to_string(),
        );
    }
    m
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Mesh {
    default_config: ProxyConfig,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProxyConfig {
    discovery_address: String,
    proxy_metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    readiness_probe: Option<BTreeMap<&'static str, serde_json::Value>>,
}

/// The probe in Istio's `ReadinessProbe` shape; unset (zero) fields are left out.
fn probe(p: &ReadinessProbe) -> BTreeMap<&'static str, serde_json::Value> {
    use serde_json::{Value, json};
    let mut out = BTreeMap::new();
    for (key, value) in [
        ("initialDelaySeconds", p.initial_delay_seconds),
        ("timeoutSeconds", p.timeout_seconds),
        ("periodSeconds", p.period_seconds),
        ("successThreshold", p.success_threshold),
        ("failureThreshold", p.failure_threshold),
    ] {
        if value != 0 {
            out.insert(key, json!(value));
        }
    }
    let non_empty = |pairs: &[(&str, Value)]| -> Value {
        Value::Object(
            pairs
                .iter()
                .filter(|(_, v)| !(v == &json!("") || v == &json!(0)))
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    };
    match &p.check {
        ProbeCheck::None => {}
        ProbeCheck::HttpGet {
            path,
            port,
            host,
            scheme,
        } => {
            out.insert(
                "httpGet",
                non_empty(&[
                    ("path", json!(path)),
                    ("port", json!(port)),
                    ("host", json!(host)),
                    ("scheme", json!(scheme)),
                ]),
            );
        }
        ProbeCheck::TcpSocket { host, port } => {
            out.insert(
                "tcpSocket",
                non_empty(&[("host", json!(host)), ("port", json!(port))]),
            );
        }
        ProbeCheck::Exec { command } => {
            out.insert("exec", json!({ "command": command }));
        }
        ProbeCheck::Grpc { port, service } => {
            out.insert(
                "grpc",
                non_empty(&[("port", json!(port)), ("service", json!(service))]),
            );
        }
    }
    out
}

fn readme(input: &Input<'_>, discovery: &str) -> String {
    let group = &input.group.meta.name;
    let namespace = &input.group.meta.namespace;
    let mut s = String::new();
    let _ = write!(
        s,
        "\
Bowline VM bundle for WorkloadGroup {group} in namespace {namespace} (cluster {cluster})

Copy these files to the VM:

  agent.yaml     -> keep beside root-cert.pem and token (e.g. /etc/bowline/)
                    configuration of `bowline agent --config agent.yaml`, the node agent:
                    it makes the workload key on the VM, gets the certificate for the
                    group's service account from Bowline's CA with the token, serves it
                    to Envoy over SDS at {sds} (secrets default and
                    ROOTCA) and writes cert-chain.pem, key.pem and root-cert.pem to
                    {certs} for gRPC; it renews at half of the lifetime
  cluster.env    -> /var/lib/istio/envoy/cluster.env
                    environment of the proxy (istio-start.sh sources it); sorted KEY='value' lines
  mesh.yaml      -> /etc/istio/config/mesh
                    proxy configuration: discoveryAddress {discovery}, the proxy metadata
                    and the group's readiness probe
  root-cert.pem  -> /var/run/secrets/istio/root-cert.pem (and /etc/certs/root-cert.pem)
                    Bowline's root CA: the proxy verifies the discovery server with it
  token          -> /var/run/secrets/tokens/istio-token (mode 0600, owned by the proxy's user)
                    registration token; the proxy presents it on every xDS stream as the
                    gRPC metadata `authorization: Bearer <token>`
  hosts          -> append to /etc/hosts
                    resolves {host} to Bowline's address

Registration: the proxy connects to {discovery} over TLS with
ISTIO_META_AUTO_REGISTER_GROUP={group}; Bowline creates the WorkloadEntry
{group}-<ip>[-<network>] in {namespace} from the group's template. With a readiness probe
the entry is an endpoint only while the proxy reports it healthy. When the proxy
disconnects the entry is marked disconnected and deleted after Bowline's vm.gracePeriod
(default 10 s) unless the proxy reconnects.

Notes on Bowline:
- The token allows registering into WorkloadGroup {group} in namespace {namespace} only;
  any other group or namespace is refused (gRPC PERMISSION_DENIED). It expires at
  {expires}; issue a new one with `bowline vm token --group {group} --namespace {namespace}`
  and replace the token file. Tokens are stored hashed in Bowline's data directory.
- Bowline's plaintext xDS port accepts registration only from its own host (loopback).
- Bowline's CA answers Istio's CreateCertificate at CA_ADDR ({discovery}): with the
  token, the certificate names spiffe://<trust domain>/ns/{namespace}/sa/<the template's
  serviceAccount>; `bowline agent` or Istio's pilot-agent can ask for it.
- Bowline's DNS server (listen.dns) answers clusterset.local and, with
  dns.clusterLocalMember, cluster.local; point the VM's resolver at it for those zones.
",
        cluster = input.cluster_id,
        host = DISCOVERY_HOST,
        expires = input.token_expires,
        sds = AGENT_SDS_SOCKET,
        certs = AGENT_CERT_DIR,
    );
    if input.bowline_address.is_none() {
        s.push_str("- hosts is empty: no address for Bowline was known; add \"<address> ");
        s.push_str(DISCOVERY_HOST);
        s.push_str("\" to /etc/hosts yourself.\n");
    }
    s
}

/// Bowline's address for the `hosts` file: the one given, else the TLS listener's address
/// unless it is unspecified (`[::]`, `0.0.0.0`).
pub fn bowline_address(given: Option<IpAddr>, listen: SocketAddr) -> Option<IpAddr> {
    given.or_else(|| Some(listen.ip()).filter(|ip| !ip.is_unspecified()))
}
