//! `bowline.yaml`: the one configuration file, parsed strictly and validated as a whole, so
//! that every problem is reported at once with the file, the field and the rule.

pub(crate) mod validate;

use std::{
    fmt,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use bowline_model::{ClusterId, Network};
use serde::{Deserialize, Deserializer};

/// The whole configuration, after validation.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from.
    pub file: PathBuf,
    /// The ClusterSet's name; members' `clusterset.k8s.io` must equal it.
    pub cluster_set: String,
    /// Members, in order.
    pub members: Vec<Member>,
    /// Auto-export policy.
    pub export: ExportPolicy,
    /// ClusterSetIP allocation pools.
    pub cluster_set_ips: Vec<ipnet::IpNet>,
    /// Listen addresses.
    pub listen: Listen,
    /// How long `/readyz` waits for a member's first sync before reporting it instead.
    pub member_sync_timeout: Duration,
    /// How long an unreachable member's endpoints keep being served (marked stale) before
    /// they are withdrawn; `None` never withdraws them.
    pub stale_endpoint_ttl: Option<Duration>,
    /// How manifest directories are watched.
    pub watch: Watch,
    /// Multi-Cluster Services.
    pub mcs: Mcs,
    /// The xDS server.
    pub xds: Xds,
    /// The DNS server.
    pub dns: Dns,
    /// Leader election among replicas; `None`: this is the only replica and always writes.
    pub leader_election: Option<LeaderElection>,
    /// Where Bowline keeps its own state: the root CA (`ca/`) and the VM token store.
    pub data_dir: PathBuf,
    /// Virtual machines: auto-registration.
    pub vm: Vm,
    /// The workload CA (`CreateCertificate` on the TLS xDS port).
    pub ca: Ca,
    /// Mutual TLS between proxies.
    pub mtls: Mtls,
    /// What each TCP listener allows.
    pub limits: Limits,
}

/// The `ca` section: the identities of workload certificates and their lifetimes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ca {
    /// The trust domain of every SPIFFE identity issued.
    pub trust_domain: String,
    /// The longest lifetime a certificate request may ask for (longer is cut to it).
    pub max_ttl: Duration,
    /// The audiences a Kubernetes service-account token must be for (one of them).
    pub audiences: Vec<String>,
    /// A plug-in CA to sign with instead of Bowline's own root.
    pub plugin: Option<PluginCa>,
}

/// The `mtls` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mtls {
    /// The namespace whose selector-less PeerAuthentication is the mesh-wide policy.
    pub root_namespace: String,
}

/// `ca.plugin`: where the plug-in CA's four files of Istio's `cacerts` layout are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginCa {
    /// A directory holding `ca-cert.pem`, `ca-key.pem`, `root-cert.pem` and
    /// `cert-chain.pem` (a mounted `cacerts` Secret, for example).
    Dir(PathBuf),
    /// A Secret with those keys in a Kubernetes member.
    Secret {
        /// The member the Secret is read from.
        member: String,
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// The `limits` section: one entry per TCP listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `listen.xds`.
    pub xds: ListenerLimits,
    /// `listen.xdsTls`.
    pub xds_tls: ListenerLimits,
    /// `listen.dns`, over TCP.
    pub dns: ListenerLimits,
    /// `listen.admin`.
    pub admin: ListenerLimits,
    /// xDS streams open at once with one registration token (on either xDS port).
    pub streams_per_identity: usize,
}

/// What one TCP listener allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections open at once; `None`: a share of the open-files limit, taken at start.
    pub max_connections: Option<usize>,
    /// How long a new connection has to start its protocol (TLS handshake bytes, HTTP/2
    /// preface, request line, a DNS query's length).
    pub handshake_timeout: Duration,
    /// How long a connection may go without sending a byte.
    pub idle_timeout: Duration,
}

/// The `vm` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vm {
    /// How long an auto-registered WorkloadEntry outlives its proxy's disconnection.
    pub grace_period: Duration,
    /// This instance's name in `istio.io/workloadController`; stable across restarts, so
    /// that a restarted Bowline recognises the entries it registered.
    pub controller: String,
}

/// The `leaderElection` section: the Lease that decides which replica writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderElection {
    /// The member (a Kubernetes one) holding the Lease.
    pub member: String,
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// How long a lease not renewed stays held (whole seconds, at least 1).
    pub lease_duration: Duration,
    /// This replica's `holderIdentity`; `None`: `POD_NAME` (else the host name) and the
    /// process id.
    pub identity: Option<String>,
    /// How often a follower reads the members back to follow the ClusterSetIPs the leader
    /// wrote.
    pub follower_refresh: Duration,
}

/// The `dns` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dns {
    /// TTL of answers (the SOA's minimum too; `dns-version` has 28800).
    pub ttl: Duration,
    /// The member whose own Services are answered under `cluster.local` (for VMs joined to
    /// it); without one, that zone is refused.
    pub cluster_local_member: Option<ClusterId>,
}

/// The `xds` section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Xds {
    /// Quiet period after a change before the ClusterSet view is recomputed and pushed.
    pub debounce: Duration,
    /// Longest a steady stream of changes can delay a push.
    pub max_debounce: Duration,
}

/// A member of the ClusterSet.
#[derive(Clone, Debug)]
pub struct Member {
    /// Unique name (logs, metrics, debug views).
    pub name: String,
    /// Where its objects come from.
    pub source: MemberSource,
    /// Default network of its endpoints.
    pub network: Network,
    /// Configured id, used when it has no `cluster.clusterset.k8s.io` ClusterProperty.
    pub id: Option<String>,
    /// Labels that `multicluster.bowline.io/export-to-selector` selects on.
    pub labels: bowline_model::Labels,
    /// A DNS listener that answers as this member sees the ClusterSet: scoped exports that do
    /// not reach it are NXDOMAIN, and `cluster.local` is its own Services.
    pub dns_listen: Option<SocketAddr>,
}

/// Where a member's objects come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberSource {
    /// A directory of manifests (absolute, canonical).
    Manifests(PathBuf),
    /// A Kubernetes API server reached through a kubeconfig file.
    Kubeconfig {
        /// The file (absolute, `~` expanded).
        path: PathBuf,
        /// The context; the file's current context when `None`.
        context: Option<String>,
    },
    /// The Kubernetes cluster Bowline runs in, through its ServiceAccount.
    InCluster,
}

pub use bowline_model::export::{ExportDefault, ExportPolicy, HostPattern};

/// `mcs.mode`: what Bowline does about Multi-Cluster Services.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum McsMode {
    /// Bowline is the MCS controller: it writes ServiceImports, imported EndpointSlices,
    /// auto-export ServiceExports and ServiceExport status into members.
    Controller,
    /// Another MCS provider writes them; Bowline writes nothing and reads its ServiceImports
    /// and EndpointSlices as the ClusterSet view.
    Consumer,
}

/// The `mcs` section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mcs {
    /// Controller or consumer.
    pub mode: McsMode,
    /// How often written objects are checked and restored if changed behind Bowline's back.
    pub resync: Duration,
}

/// Listen addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// xDS (gRPC), plaintext.
    pub xds: SocketAddr,
    /// xDS (gRPC) over TLS, with a certificate from Bowline's root CA.
    pub xds_tls: SocketAddr,
    /// DNS (UDP and TCP).
    pub dns: SocketAddr,
    /// Admin HTTP.
    pub admin: SocketAddr,
    /// Host names, beyond IP addresses, `localhost` and in-cluster service names, that
    /// requests to the admin server may name in `Host`.
    pub admin_hosts: Vec<String>,
    /// Who may read the admin server's debug views.
    pub admin_debug: bowline_admin::DebugAccess,
    /// Who may use the plaintext xDS port.
    pub xds_plaintext_from: PlaintextAccess,
}

/// `listen.xdsPlaintextFrom`: who may open xDS streams on the plaintext port, which proves
/// nobody's identity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PlaintextAccess {
    /// Proxies on this host only (loopback addresses).
    #[default]
    Loopback,
    /// Anyone who can connect (a network you trust, or a test bed).
    Any,
}

/// Manifest-directory watching.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Watch {
    /// Quiet period after a file event before rescanning.
    pub debounce: Duration,
    /// Rescan at least this often.
    pub resync: Duration,
}

/// Defaults, shared by the parser and the docs.
pub mod defaults {
    use std::time::Duration;

    /// `export.clusterLocal`.
    pub const CLUSTER_LOCAL: &[&str] = &["*.kube-system.svc.cluster.local"];
    /// `clusterSetIPs`.
    pub const CLUSTER_SET_IPS: &[&str] = &["241.0.0.0/16", "fd00:241::/112"];
    /// `listen.xds`.
    pub const XDS: &str = "[::]:15010";
    /// `listen.xdsTls`.
    pub const XDS_TLS: &str = "[::]:15012";
    /// `dataDir`, relative to the configuration file's directory.
    pub const DATA_DIR: &str = ".bowline-data";
    /// `listen.dns`.
    pub const DNS: &str = "[::]:15053";
    /// `listen.admin`.
    pub const ADMIN: &str = "127.0.0.1:15014";
    /// `memberSyncTimeout`.
    pub const MEMBER_SYNC_TIMEOUT: Duration = Duration::from_secs(60);
    /// `leaderElection.namespace`.
    pub const LEASE_NAMESPACE: &str = "bowline-system";
    /// `leaderElection.name`.
    pub const LEASE_NAME: &str = "bowline";
    /// `leaderElection.leaseDuration`.
    pub const LEASE_DURATION: Duration = Duration::from_secs(15);
    /// `leaderElection.followerRefresh`.
    pub const FOLLOWER_REFRESH: Duration = Duration::from_secs(60);
    /// `staleEndpointTTL`.
    pub const STALE_ENDPOINT_TTL: Duration = Duration::from_secs(300);
    /// `watch.debounce`.
    pub const DEBOUNCE: Duration = Duration::from_millis(50);
    /// `watch.resync`.
    pub const RESYNC: Duration = Duration::from_secs(30);
    /// `mcs.resync`.
    pub const MCS_RESYNC: Duration = Duration::from_millis(500);
    /// `xds.debounce`.
    pub const XDS_DEBOUNCE: Duration = Duration::from_millis(10);
    /// `dns.ttl`.
    pub const DNS_TTL: Duration = Duration::from_secs(5);
    /// `xds.maxDebounce`.
    pub const XDS_MAX_DEBOUNCE: Duration = Duration::from_millis(100);
    /// `limits.*.handshakeTimeout`.
    pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// `limits.xds.idleTimeout` and `limits.xdsTls.idleTimeout` (the server pings every
    /// connection every 30 s, so only a peer that stopped answering goes idle).
    pub const XDS_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
    /// `limits.dns.idleTimeout` (RFC 7766 asks for seconds).
    pub const DNS_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
    /// `limits.admin.idleTimeout`.
    pub const ADMIN_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
    /// `limits.streamsPerIdentity`: a VM group's token serves every VM of the group.
    pub const STREAMS_PER_IDENTITY: usize = 1_000;
    /// `ca.maxTtl` (Istio's `MAX_WORKLOAD_CERT_TTL`).
    pub const CA_MAX_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
    /// `vm.gracePeriod` (Istio's `PILOT_WORKLOAD_ENTRY_GRACE_PERIOD`).
    pub const VM_GRACE_PERIOD: Duration = Duration::from_secs(10);
}

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The field, as a path (`members[1].manifests`), or empty for the whole file.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// Longest field path or message kept; a message quoting a huge value (a 16 KiB string
    /// where a mapping belongs) is cut there, so errors stay readable and logs bounded.
    pub const MAX_LEN: usize = 512;

    /// A problem, its field and message each cut to [`Problem::MAX_LEN`] bytes.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: clip(field.into()),
            message: clip(message.into()),
        }
    }
}

fn clip(text: String) -> String {
    match bowline_model::echo::capped(&text, Problem::MAX_LEN) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(cut) => cut,
    }
}

/// A configuration that cannot be used, with every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file.
    pub file: PathBuf,
    /// The problems, in file order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match p.field.as_str() {
                "" => write!(f, "{}: {}", self.file.display(), p.message)?,
                field => write!(f, "{}: {field}: {}", self.file.display(), p.message)?,
            }
        }
        Ok(())
    }
}

/// The file as written (before validation): every field optional, unknown fields refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Raw {
    cluster_set: Option<String>,
    #[serde(default)]
    members: Vec<RawMember>,
    #[serde(default)]
    export: RawExport,
    #[serde(rename = "clusterSetIPs")]
    cluster_set_ips: Option<Vec<String>>,
    #[serde(default)]
    listen: RawListen,
    #[serde(default, deserialize_with = "duration")]
    member_sync_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration", rename = "staleEndpointTTL")]
    stale_endpoint_ttl: Option<Duration>,
    #[serde(default)]
    watch: RawWatch,
    #[serde(default)]
    mcs: RawMcs,
    #[serde(default)]
    xds: RawXds,
    #[serde(default)]
    dns: RawDns,
    leader_election: Option<RawLeaderElection>,
    data_dir: Option<PathBuf>,
    #[serde(default)]
    vm: RawVm,
    #[serde(default)]
    ca: RawCa,
    #[serde(default)]
    mtls: RawMtls,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawCa {
    trust_domain: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    max_ttl: Option<Duration>,
    audiences: Option<Vec<String>>,
    plugin: Option<RawPluginCa>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMtls {
    root_namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPluginCa {
    dir: Option<PathBuf>,
    secret: Option<String>,
    member: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawLimits {
    #[serde(default)]
    xds: RawListenerLimits,
    #[serde(default)]
    xds_tls: RawListenerLimits,
    #[serde(default)]
    dns: RawListenerLimits,
    #[serde(default)]
    admin: RawListenerLimits,
    streams_per_identity: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawListenerLimits {
    max_connections: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    handshake_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    idle_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawVm {
    #[serde(default, deserialize_with = "duration")]
    grace_period: Option<Duration>,
    controller: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawLeaderElection {
    member: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    lease_duration: Option<Duration>,
    identity: Option<String>,
    #[serde(default, deserialize_with = "duration")]
    follower_refresh: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[serde(rename_all = "camelCase")]
struct RawDns {
    #[serde(default, deserialize_with = "duration")]
    ttl: Option<Duration>,
    cluster_local_member: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawXds {
    #[serde(default, deserialize_with = "duration")]
    debounce: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    max_debounce: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMcs {
    mode: Option<McsMode>,
    #[serde(default, deserialize_with = "duration")]
    resync: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawMember {
    name: Option<String>,
    manifests: Option<PathBuf>,
    kubeconfig: Option<PathBuf>,
    context: Option<String>,
    in_cluster: Option<bool>,
    network: Option<String>,
    id: Option<String>,
    labels: Option<bowline_model::Labels>,
    dns_listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawExport {
    default: Option<ExportDefault>,
    cluster_local: Option<Vec<String>>,
    namespaces: Option<std::collections::BTreeMap<String, RawNamespaceExport>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNamespaceExport {
    export_to: Option<Vec<String>>,
    export_to_selector: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    xds: Option<String>,
    #[serde(rename = "xdsTls")]
    xds_tls: Option<String>,
    dns: Option<String>,
    admin: Option<String>,
    #[serde(rename = "adminHosts")]
    admin_hosts: Option<Vec<String>>,
    #[serde(rename = "adminDebug")]
    admin_debug: Option<bowline_admin::DebugAccess>,
    #[serde(rename = "xdsPlaintextFrom")]
    xds_plaintext_from: Option<PlaintextAccess>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWatch {
    #[serde(default, deserialize_with = "duration")]
    debounce: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    resync: Option<Duration>,
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    /// A duration as written: text with a unit, or a bare number (refused with a hint).
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Text(String),
        Number(serde_json::Number),
    }
    let text = match Option::<Written>::deserialize(d)? {
        None => return Ok(None),
        Some(Written::Text(text)) => text,
        Some(Written::Number(n)) => {
            return Err(serde::de::Error::custom(format!(
                "{n} is a bare number; a duration needs its unit, such as {n}ms or {n}s"
            )));
        }
    };
    humantime::parse_duration(&text).map(Some).map_err(|e| {
        serde::de::Error::custom(format!(
            "{text:?} is not a duration such as 500ms, 30s or 5m: {e}"
        ))
    })
}

impl Config {
    /// Reads and validates a configuration file. Relative paths in it are relative to the
    /// file's directory.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError {
            file: file.to_path_buf(),
            problems: vec![Problem::new("", format!("cannot read: {e}"))],
        })?;
        Self::parse(file, &text)
    }

    /// Parses and validates configuration text read from `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let error = |field: String, message: String| ConfigError {
            file: file.to_path_buf(),
            problems: vec![Problem::new(field, message)],
        };
        let value: serde_json::Value = serde_saphyr::from_str(text).map_err(|e| {
            let first = e
                .to_string()
                .lines()
                .next()
                .unwrap_or("invalid YAML")
                .to_string();
            error(String::new(), format!("invalid YAML: {first}"))
        })?;
        let value = if value.is_null() {
            serde_json::json!({})
        } else {
            value
        };
        // Every field that does not parse is reported, not only the first: each one found is
        // taken out and the rest parsed again.
        let mut value = value;
        let (mut problems, mut dropped) = (Vec::new(), Vec::new());
        let raw: Raw = loop {
            match serde_path_to_error::deserialize::<_, Raw>(value.clone()) {
                Ok(raw) => break raw,
                Err(e) => {
                    let field = e.path().to_string();
                    let field = if field == "." { String::new() } else { field };
                    let message = e.inner().to_string();
                    let segments: Vec<_> = e.path().iter().cloned().collect();
                    problems.push(Problem::new(field.clone(), message.clone()));
                    match take_out(&mut value, &segments, &message) {
                        Some(true) => dropped.push(field),
                        Some(false) => {}
                        None => {
                            return Err(ConfigError {
                                file: file.to_path_buf(),
                                problems,
                            });
                        }
                    }
                    if problems.len() >= 100 {
                        return Err(ConfigError {
                            file: file.to_path_buf(),
                            problems,
                        });
                    }
                }
            }
        };
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        match validate::validate(file, &base, raw) {
            Ok(config) if problems.is_empty() => Ok(config),
            Ok(_) => Err(ConfigError {
                file: file.to_path_buf(),
                problems,
            }),
            Err(e) => {
                // A value taken out is reported once, not again as missing.
                let follows = |p: &Problem| {
                    dropped.iter().any(|d| {
                        p.field.strip_prefix(d.as_str()).is_some_and(|rest| {
                            rest.is_empty() || rest.starts_with('.') || rest.starts_with('[')
                        })
                    })
                };
                problems.extend(e.problems.into_iter().filter(|p| !follows(p)));
                Err(ConfigError {
                    file: file.to_path_buf(),
                    problems,
                })
            }
        }
    }
}

/// Takes out of `value` what a parse error at `path` is about, so that the rest can be parsed
/// and checked: an unknown field (`Some(false)`: the object stays), or the value itself, or
/// the whole list holding it (`Some(true)`). `None` when it cannot be found.
fn take_out(
    value: &mut serde_json::Value,
    path: &[serde_path_to_error::Segment],
    message: &str,
) -> Option<bool> {
    use serde_path_to_error::Segment;
    fn descend<'a>(
        mut at: &'a mut serde_json::Value,
        path: &[Segment],
    ) -> Option<&'a mut serde_json::Value> {
        for segment in path {
            at = match segment {
                Segment::Map { key } => at.get_mut(key.as_str())?,
                Segment::Seq { index } => at.get_mut(*index)?,
                _ => return None,
            };
        }
        Some(at)
    }
    let unknown = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(field, _)| field.to_string());
    if let Some(field) = unknown {
        // The path names the unknown field itself, or (inside a list) its object.
        let path = match path.split_last() {
            Some((Segment::Map { key }, parent)) if *key == field => parent,
            _ => path,
        };
        let object = descend(value, path)?.as_object_mut()?;
        return object.remove(&field).map(|_| false);
    }
    // A list element's problem takes out the whole list (numbering the rest would shift).
    let path = match path.iter().position(|s| matches!(s, Segment::Seq { .. })) {
        Some(i) => &path[..i],
        None => path,
    };
    let (Segment::Map { key }, parent) = path.split_last()? else {
        return None;
    };
    let object = descend(value, parent)?.as_object_mut()?;
    object.remove(key).map(|_| true)
}
