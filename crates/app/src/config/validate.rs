//! Whole-file validation: every rule checked, every problem reported.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use bowline_model::{
    ClusterId, Network,
    cluster::validate_property_value,
    scope::{ExportTo, Selector},
};

use super::{
    Config, ConfigError, ExportDefault, ExportPolicy, HostPattern, Listen, Member, MemberSource,
    Problem, Raw, Watch, defaults,
};

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem::new(field, message));
    }
}

pub(super) fn validate(file: &Path, base: &Path, raw: Raw) -> Result<Config, ConfigError> {
    let mut problems = Problems(Vec::new());
    let cluster_set = raw.cluster_set.unwrap_or_default();
    if cluster_set.is_empty() {
        problems.add("clusterSet", "required: the ClusterSet's name, which members' clusterset.k8s.io ClusterProperty must equal");
    } else if let Err(e) = validate_property_value(&cluster_set) {
        problems.add("clusterSet", e.replace("spec.value", "the name"));
    }
    let members = members(base, raw.members, &mut problems);
    let mut export = export(raw.export, &mut problems);
    export.scope.member_labels = members
        .iter()
        .map(|m| (m.name.clone(), m.labels.clone()))
        .collect();
    let pools = raw.cluster_set_ips.unwrap_or_else(|| {
        defaults::CLUSTER_SET_IPS
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    let cluster_set_ips = cidrs(&pools, &mut problems);
    let listen = listen(raw.listen, &mut problems);
    let mut dns_listeners: HashMap<SocketAddr, String> = HashMap::new();
    if listen.dns.port() != 0 {
        dns_listeners.insert(listen.dns, "listen.dns".to_string());
    }
    for (i, m) in members.iter().enumerate() {
        // Port 0 picks a free port for each.
        if let Some(addr) = m.dns_listen.filter(|a| a.port() != 0)
            && let Some(first) = dns_listeners.insert(addr, format!("members[{i}].dnsListen"))
        {
            problems.add(
                format!("members[{i}].dnsListen"),
                format!("{addr} is already {first}; each DNS listener needs its own address"),
            );
        }
    }
    let data_dir = expand_home(
        base,
        raw.data_dir
            .as_deref()
            .unwrap_or(Path::new(defaults::DATA_DIR)),
    );
    if data_dir.exists() && !data_dir.is_dir() {
        problems.add(
            "dataDir",
            format!("{} exists and is not a directory", data_dir.display()),
        );
    }
    let (watch, mcs, xds) = timings(raw.watch, raw.mcs, raw.xds, &mut problems);
    let dns = super::Dns {
        ttl: raw.dns.ttl.unwrap_or(defaults::DNS_TTL),
        cluster_local_member: cluster_local_member(raw.dns.cluster_local_member, &mut problems),
    };
    let election_member = raw
        .leader_election
        .as_ref()
        .and_then(|raw| raw.member.clone());
    let leader_election = raw
        .leader_election
        .map(|raw| leader_election(raw, &members, &mut problems));
    let vm = super::Vm {
        grace_period: raw.vm.grace_period.unwrap_or(defaults::VM_GRACE_PERIOD),
        controller: controller(raw.vm.controller, &mut problems),
    };
    let ca = ca(
        raw.ca,
        base,
        &members,
        election_member.as_deref(),
        &mut problems,
    );
    let limits = limits(raw.limits, &mut problems);
    let root_namespace = raw
        .mtls
        .root_namespace
        .unwrap_or_else(|| "istio-system".to_string());
    if bowline_model::names::validate_label(&root_namespace).is_err() {
        problems.add(
            "mtls.rootNamespace",
            format!("{root_namespace:?} is not a namespace name (RFC 1123 label)"),
        );
    }
    let mtls = super::Mtls { root_namespace };
    if !problems.0.is_empty() {
        return Err(ConfigError {
            file: file.to_path_buf(),
            problems: problems.0,
        });
    }
    Ok(Config {
        file: file.to_path_buf(),
        cluster_set,
        members,
        export,
        cluster_set_ips,
        listen,
        member_sync_timeout: raw
            .member_sync_timeout
            .unwrap_or(defaults::MEMBER_SYNC_TIMEOUT),
        stale_endpoint_ttl: Some(
            raw.stale_endpoint_ttl
                .unwrap_or(defaults::STALE_ENDPOINT_TTL),
        )
        .filter(|ttl| !ttl.is_zero()),
        watch,
        mcs,
        xds,
        dns,
        leader_election,
        vm,
        ca,
        mtls,
        data_dir,
        limits,
    })
}

/// `ca`: the trust domain, a DNS name as SPIFFE requires (lowercase letters, digits, `-`,
/// `.`), and a lifetime bound above 0.
fn ca(
    raw: super::RawCa,
    base: &Path,
    members: &[Member],
    election_member: Option<&str>,
    problems: &mut Problems,
) -> super::Ca {
    let trust_domain = raw
        .trust_domain
        .unwrap_or_else(|| bowline_vm::workload::DEFAULT_TRUST_DOMAIN.to_string());
    let valid = !trust_domain.is_empty()
        && trust_domain.len() <= 255
        && trust_domain
            .split('.')
            .all(|label| bowline_model::names::validate_label(label).is_ok());
    if !valid {
        problems.add(
            "ca.trustDomain",
            format!("{trust_domain:?} is not a trust domain: lowercase DNS labels joined by dots, such as cluster.local"),
        );
    }
    let max_ttl = raw.max_ttl.unwrap_or(defaults::CA_MAX_TTL);
    if max_ttl.is_zero() {
        problems.add("ca.maxTtl", "must be more than 0");
    }
    let audiences = raw
        .audiences
        .unwrap_or_else(|| vec!["istio-ca".to_string()]);
    if audiences.is_empty() || audiences.iter().any(String::is_empty) {
        problems.add(
            "ca.audiences",
            "needs at least one audience, none empty (Istio's agents ask for istio-ca)",
        );
    }
    let plugin = raw
        .plugin
        .and_then(|raw| plugin_ca(raw, base, members, election_member, problems));
    super::Ca {
        trust_domain,
        max_ttl,
        audiences,
        plugin,
    }
}

/// `ca.plugin`: a directory, or a Secret `<namespace>/<name>` in a Kubernetes member (by
/// default the leader-election member, else the only Kubernetes member).
fn plugin_ca(
    raw: super::RawPluginCa,
    base: &Path,
    members: &[Member],
    election_member: Option<&str>,
    problems: &mut Problems,
) -> Option<super::PluginCa> {
    match (raw.dir, raw.secret) {
        (Some(dir), None) => {
            if raw.member.is_some() {
                problems.add(
                    "ca.plugin.member",
                    "only with ca.plugin.secret; a directory is read where Bowline runs",
                );
            }
            Some(super::PluginCa::Dir(expand_home(base, &dir)))
        }
        (None, Some(secret)) => {
            let Some((namespace, name)) = secret.split_once('/').filter(|(ns, name)| {
                ClusterId::new(ns).is_ok() && bowline_model::names::validate_subdomain(name).is_ok()
            }) else {
                problems.add("ca.plugin.secret", format!("{secret:?} is not <namespace>/<name> of a Secret, such as istio-system/cacerts"));
                return None;
            };
            let kubernetes: Vec<&Member> = members
                .iter()
                .filter(|m| !matches!(m.source, MemberSource::Manifests(_)))
                .collect();
            let member = match raw.member.as_deref().or(election_member) {
                Some(member) => match members.iter().find(|m| m.name == member) {
                    None => {
                        problems.add("ca.plugin.member", format!("{member:?} is not a member"));
                        return None;
                    }
                    Some(m) if matches!(m.source, MemberSource::Manifests(_)) => {
                        problems.add("ca.plugin.member", format!("{member:?} is a manifest directory; a Secret is read from a Kubernetes member (or give ca.plugin.dir)"));
                        return None;
                    }
                    Some(m) => m.name.clone(),
                },
                None => {
                    match kubernetes.as_slice() {
                        [only] => only.name.clone(),
                        [] => {
                            problems.add("ca.plugin.secret", "no member is a Kubernetes cluster to read the Secret from; give ca.plugin.dir instead");
                            return None;
                        }
                        _ => {
                            problems.add("ca.plugin.member", "required with several Kubernetes members: the one holding the Secret");
                            return None;
                        }
                    }
                }
            };
            Some(super::PluginCa::Secret {
                member,
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
        }
        (Some(_), Some(_)) => {
            problems.add("ca.plugin", "give dir or secret, not both");
            None
        }
        (None, None) => {
            problems.add(
                "ca.plugin",
                "needs dir (a directory of Istio's cacerts files) or secret (<namespace>/<name>)",
            );
            None
        }
    }
}

/// `limits`: each listener's, defaulted and checked.
fn limits(raw: super::RawLimits, problems: &mut Problems) -> super::Limits {
    let mut one = |field: &str, raw: super::RawListenerLimits, idle: std::time::Duration| {
        let limits = super::ListenerLimits {
            max_connections: raw.max_connections,
            handshake_timeout: raw.handshake_timeout.unwrap_or(defaults::HANDSHAKE_TIMEOUT),
            idle_timeout: raw.idle_timeout.unwrap_or(idle),
        };
        if limits.max_connections == Some(0) {
            problems.add(
                format!("limits.{field}.maxConnections"),
                "must be at least 1",
            );
        }
        if limits.handshake_timeout.is_zero() {
            problems.add(
                format!("limits.{field}.handshakeTimeout"),
                "must be more than 0",
            );
        }
        if limits.idle_timeout.is_zero() {
            problems.add(format!("limits.{field}.idleTimeout"), "must be more than 0");
        }
        limits
    };
    super::Limits {
        xds: one("xds", raw.xds, defaults::XDS_IDLE_TIMEOUT),
        xds_tls: one("xdsTls", raw.xds_tls, defaults::XDS_IDLE_TIMEOUT),
        dns: one("dns", raw.dns, defaults::DNS_IDLE_TIMEOUT),
        admin: one("admin", raw.admin, defaults::ADMIN_IDLE_TIMEOUT),
        streams_per_identity: match raw.streams_per_identity {
            Some(0) => {
                problems.add("limits.streamsPerIdentity", "must be at least 1");
                defaults::STREAMS_PER_IDENTITY
            }
            other => other.unwrap_or(defaults::STREAMS_PER_IDENTITY),
        },
    }
}

/// `export`: the default and the cluster-local host patterns.
fn export(raw: super::RawExport, problems: &mut Problems) -> ExportPolicy {
    let patterns = raw.cluster_local.unwrap_or_else(|| {
        defaults::CLUSTER_LOCAL
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    for (i, pattern) in patterns.iter().enumerate() {
        if let Err(e) = host_pattern(pattern) {
            problems.add(format!("export.clusterLocal[{i}]"), e);
        }
    }
    let mut scope = bowline_model::scope::ScopeConfig::default();
    for (namespace, ns) in raw.namespaces.unwrap_or_default() {
        let at = |field: &str| format!("export.namespaces.{namespace}.{field}");
        if bowline_model::names::validate_label(&namespace).is_err() {
            problems.add(
                format!("export.namespaces.{namespace}"),
                format!("{namespace:?} is not a namespace name (RFC 1123 label)"),
            );
        }
        let to = match (ns.export_to, ns.export_to_selector) {
            (Some(ids), None) => ExportTo::members(&ids.join(",")).map_err(|e| (at("exportTo"), e)),
            (None, Some(selector)) => Selector::parse(&selector)
                .map(ExportTo::Selector)
                .map_err(|e| (at("exportToSelector"), format!("{selector:?}: {e}"))),
            (Some(_), Some(_)) => Err((
                format!("export.namespaces.{namespace}"),
                "set exportTo or exportToSelector, not both".into(),
            )),
            (None, None) => Err((
                format!("export.namespaces.{namespace}"),
                "set exportTo (member ids) or exportToSelector (a label selector over members' labels)".into(),
            )),
        };
        match to {
            Ok(to) => {
                scope.namespaces.insert(namespace, to);
            }
            Err((field, message)) => problems.add(field, message),
        }
    }
    ExportPolicy {
        default: raw.default.unwrap_or(ExportDefault::All),
        cluster_local: patterns.into_iter().map(HostPattern::new).collect(),
        scope,
    }
}

/// `listen`: every address parses, and the TLS port is not the plaintext one.
fn listen(raw: super::RawListen, problems: &mut Problems) -> Listen {
    let mut address = |field: &str, value: Option<String>, default: &str| -> SocketAddr {
        let text = value.unwrap_or_else(|| default.to_string());
        text.parse().unwrap_or_else(|_| {
            problems.add(
                format!("listen.{field}"),
                format!("{text:?} is not an address:port such as {default}"),
            );
            default.parse().expect("defaults parse")
        })
    };
    let listen = Listen {
        xds: address("xds", raw.xds, defaults::XDS),
        xds_tls: address("xdsTls", raw.xds_tls, defaults::XDS_TLS),
        dns: address("dns", raw.dns, defaults::DNS),
        admin: address("admin", raw.admin, defaults::ADMIN),
        admin_hosts: raw
            .admin_hosts
            .unwrap_or_default()
            .into_iter()
            .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
            .collect(),
        admin_debug: raw.admin_debug.unwrap_or_default(),
        xds_plaintext_from: raw.xds_plaintext_from.unwrap_or_default(),
    };
    // Port 0 picks a free port for each: never the same one.
    if listen.xds_tls == listen.xds && listen.xds.port() != 0 {
        problems.add(
            "listen.xdsTls",
            format!(
                "{} is also listen.xds; the TLS port needs its own",
                listen.xds_tls
            ),
        );
    }
    listen
}

/// `watch`, `mcs` and `xds`: periods and debounces.
fn timings(
    watch: super::RawWatch,
    mcs: super::RawMcs,
    xds: super::RawXds,
    problems: &mut Problems,
) -> (Watch, super::Mcs, super::Xds) {
    let watch = Watch {
        debounce: watch.debounce.unwrap_or(defaults::DEBOUNCE),
        resync: watch.resync.unwrap_or(defaults::RESYNC),
    };
    if watch.resync.is_zero() {
        problems.add("watch.resync", "must be more than 0");
    }
    let mcs = super::Mcs {
        mode: mcs.mode.unwrap_or(super::McsMode::Controller),
        resync: mcs.resync.unwrap_or(defaults::MCS_RESYNC),
    };
    if mcs.resync.is_zero() {
        problems.add("mcs.resync", "must be more than 0");
    }
    let xds = super::Xds {
        debounce: xds.debounce.unwrap_or(defaults::XDS_DEBOUNCE),
        max_debounce: xds.max_debounce.unwrap_or(defaults::XDS_MAX_DEBOUNCE),
    };
    if xds.max_debounce < xds.debounce {
        problems.add(
            "xds.maxDebounce",
            format!("must be at least xds.debounce ({:?})", xds.debounce),
        );
    }
    (watch, mcs, xds)
}

/// `vm.controller`: given, else the pod name (`POD_NAME`), else the host name. A Kubernetes
/// annotation value, so any non-empty string of up to 253 characters.
fn controller(given: Option<String>, problems: &mut Problems) -> String {
    match given {
        Some(name) if name.is_empty() || name.len() > 253 => {
            problems.add("vm.controller", "must be 1 to 253 characters");
            name
        }
        Some(name) => name,
        None => host_name(),
    }
}

/// This host's name as a replica names itself: the pod name (`POD_NAME`), else the host name,
/// else `bowline`.
pub(crate) fn host_name() -> String {
    std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .or_else(|_| std::fs::read_to_string("/proc/sys/kernel/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "bowline".into())
}

fn leader_election(
    raw: super::RawLeaderElection,
    members: &[Member],
    problems: &mut Problems,
) -> super::LeaderElection {
    let member = raw.member.unwrap_or_default();
    match members.iter().find(|m| m.name == member) {
        None => problems.add(
            "leaderElection.member",
            format!("{member:?} is not a member; name the Kubernetes member that holds the Lease"),
        ),
        Some(m) if matches!(m.source, MemberSource::Manifests(_)) => problems.add(
            "leaderElection.member",
            format!("{member:?} is a manifest directory; the Lease needs a Kubernetes member"),
        ),
        Some(_) => {}
    }
    let namespace = raw
        .namespace
        .unwrap_or_else(|| defaults::LEASE_NAMESPACE.into());
    let name = raw.name.unwrap_or_else(|| defaults::LEASE_NAME.into());
    for (field, value) in [("namespace", &namespace), ("name", &name)] {
        if ClusterId::new(value).is_err() {
            problems.add(
                format!("leaderElection.{field}"),
                format!("{value:?} is not a valid Kubernetes name (RFC 1123 label)"),
            );
        }
    }
    let lease_duration = raw.lease_duration.unwrap_or(defaults::LEASE_DURATION);
    if lease_duration < std::time::Duration::from_secs(1) {
        problems.add(
            "leaderElection.leaseDuration",
            "must be at least 1s (Leases count whole seconds)",
        );
    }
    if raw.identity.as_deref() == Some("") {
        problems.add("leaderElection.identity", "must not be empty");
    }
    let follower_refresh = raw.follower_refresh.unwrap_or(defaults::FOLLOWER_REFRESH);
    if follower_refresh.is_zero() {
        problems.add("leaderElection.followerRefresh", "must be more than 0");
    }
    super::LeaderElection {
        member,
        namespace,
        name,
        lease_duration,
        identity: raw.identity,
        follower_refresh,
    }
}

fn members(base: &Path, raw: Vec<super::RawMember>, problems: &mut Problems) -> Vec<Member> {
    if raw.is_empty() {
        problems.add("members", "at least one member is required");
    }
    let mut out = Vec::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut dirs: HashMap<PathBuf, usize> = HashMap::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    for (i, m) in raw.into_iter().enumerate() {
        let at = |field: &str| format!("members[{i}].{field}");
        let source = member_source(base, &m, i, &mut dirs, problems);
        if m.context.is_some() && m.kubeconfig.is_none() {
            problems.add(at("context"), "only meaningful with `kubeconfig`");
        }
        let name = m.name.clone().unwrap_or_else(|| default_name(&m));
        if name.is_empty() {
            problems.add(at("name"), "must not be empty");
        } else if let Some(first) = names.insert(name.clone(), i) {
            let hint = if m.name.is_none() {
                " (named after its directory; set `name:` to tell them apart)"
            } else {
                ""
            };
            problems.add(
                at("name"),
                format!("{name:?} is already the name of members[{first}]{hint}"),
            );
        }
        if let Some(id) = &m.id {
            if let Err(e) = ClusterId::new(id) {
                problems.add(at("id"), e.to_string());
            } else if let Some(first) = ids.insert(id.clone(), i) {
                problems.add(at("id"), format!("{id:?} is already the id of members[{first}]; ids must be unique in the ClusterSet"));
            }
        }
        let network = m.network.clone().unwrap_or_default();
        if let Err(e) = label_value(&network) {
            problems.add(at("network"), e);
        }
        let labels = m.labels.clone().unwrap_or_default();
        for (key, value) in &labels {
            if let Err(e) = bowline_model::scope::validate_label(key, value) {
                problems.add(at(&format!("labels.{key}")), e);
            }
        }
        let dns_listen = m.dns_listen.as_ref().and_then(|text| {
            let parsed = text.parse::<SocketAddr>().ok();
            if parsed.is_none() {
                problems.add(
                    at("dnsListen"),
                    format!("{text:?} is not an address:port such as 127.0.0.2:53"),
                );
            }
            parsed
        });
        if let Some(source) = source {
            out.push(Member {
                name,
                source,
                network: Network::new(network),
                id: m.id,
                labels,
                dns_listen,
            });
        }
    }
    out
}

/// Where member `i` is read from: a manifest directory (not another member's), a kubeconfig
/// (with its context), or the cluster Bowline runs in; exactly one.
fn member_source(
    base: &Path,
    m: &super::RawMember,
    i: usize,
    dirs: &mut HashMap<PathBuf, usize>,
    problems: &mut Problems,
) -> Option<MemberSource> {
    let at = |field: &str| format!("members[{i}].{field}");
    match (&m.manifests, &m.kubeconfig, m.in_cluster.unwrap_or(false)) {
        (Some(dir), None, false) => {
            let path = base.join(dir);
            match path.canonicalize() {
                Ok(canonical) if canonical.is_dir() => {
                    if let Some(first) = dirs.insert(canonical.clone(), i) {
                        problems.add(
                            at("manifests"),
                            format!(
                                "{} is already the directory of members[{first}]",
                                dir.display()
                            ),
                        );
                    }
                    Some(MemberSource::Manifests(canonical))
                }
                Ok(_) => {
                    problems.add(
                        at("manifests"),
                        format!("{} is not a directory", path.display()),
                    );
                    None
                }
                Err(e) => {
                    problems.add(
                        at("manifests"),
                        format!("directory {} cannot be used: {e}", path.display()),
                    );
                    None
                }
            }
        }
        (None, Some(path), false) => {
            let path = expand_home(base, path);
            match kubeconfig_context(&path, m.context.as_deref()) {
                Ok(()) => Some(MemberSource::Kubeconfig {
                    path,
                    context: m.context.clone(),
                }),
                Err(e) => {
                    problems.add(at(if e.0 { "context" } else { "kubeconfig" }), e.1);
                    None
                }
            }
        }
        (None, None, true) => Some(MemberSource::InCluster),
        (None, None, false) => {
            problems.add(
                format!("members[{i}]"),
                "one of `manifests`, `kubeconfig` or `inCluster` is required",
            );
            None
        }
        _ => {
            problems.add(
                format!("members[{i}]"),
                "only one of `manifests`, `kubeconfig` and `inCluster` may be set",
            );
            None
        }
    }
}

/// `dns.clusterLocalMember`: a cluster id (an RFC 1123 label).
fn cluster_local_member(raw: Option<String>, problems: &mut Problems) -> Option<ClusterId> {
    let id = raw?;
    ClusterId::new(&id)
        .map_err(|e| problems.add("dns.clusterLocalMember", e.to_string()))
        .ok()
}

/// `~/x` is relative to `$HOME`; other relative paths to the configuration file's directory.
fn expand_home(base: &Path, path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => base.join(path),
    }
}

/// Checks that a kubeconfig can be read and has the context (or a current context); the
/// error says whether the context (true) or the file (false) is at fault.
fn kubeconfig_context(path: &Path, context: Option<&str>) -> Result<(), (bool, String)> {
    let file = kube::config::Kubeconfig::read_from(path).map_err(|e| {
        (
            false,
            format!("cannot read kubeconfig {}: {e}", path.display()),
        )
    })?;
    let names = || {
        file.contexts
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>()
    };
    match context.or(file.current_context.as_deref()) {
        Some(name) if names().contains(&name) => Ok(()),
        Some(name) => Err((
            context.is_some(),
            format!(
                "{} has no context {name:?} (it has {:?})",
                path.display(),
                names()
            ),
        )),
        None => Err((
            false,
            format!(
                "{} has no current-context; set `context:` to one of {:?}",
                path.display(),
                names()
            ),
        )),
    }
}

fn default_name(m: &super::RawMember) -> String {
    if let Some(dir) = &m.manifests {
        let dir = dir
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect::<PathBuf>();
        return dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    if let Some(context) = &m.context {
        return context.clone();
    }
    if let Some(file) = &m.kubeconfig {
        return file
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    if m.in_cluster == Some(true) {
        return "local".into();
    }
    String::new()
}

/// A Kubernetes label value: at most 63 characters, alphanumeric at both ends, `-_.` inside.
fn label_value(value: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let edges = |c: Option<char>| c.is_none_or(|c| c.is_ascii_alphanumeric());
    if value.len() > 63
        || !value.chars().all(ok_char)
        || !edges(value.chars().next())
        || !edges(value.chars().last())
    {
        return Err(format!(
            "{value:?} is not a valid label value (at most 63 of [A-Za-z0-9-_.], starting and ending alphanumeric), as topology.istio.io/network requires"
        ));
    }
    Ok(())
}

/// `svc.ns.svc.cluster.local` or `*.ns.svc.cluster.local` style patterns.
fn host_pattern(pattern: &str) -> Result<(), String> {
    let unnegated = pattern.strip_prefix('!').unwrap_or(pattern);
    let host = unnegated.strip_prefix("*.").unwrap_or(unnegated);
    if host.is_empty() || unnegated == "*" {
        return Ok(());
    }
    bowline_model::names::validate_subdomain(host)
        .map_err(|e| format!("{pattern:?} is not a host name or `*.`-prefixed pattern (`!` in front makes an exception): {e}"))
}

fn cidrs(pools: &[String], problems: &mut Problems) -> Vec<ipnet::IpNet> {
    let mut out: Vec<(usize, ipnet::IpNet)> = Vec::new();
    for (i, text) in pools.iter().enumerate() {
        let field = format!("clusterSetIPs[{i}]");
        let net: ipnet::IpNet = match text.parse() {
            Ok(net) => net,
            Err(_) => {
                problems.add(
                    field,
                    format!("{text:?} is not a CIDR such as 241.0.0.0/16 or fd00:241::/112"),
                );
                continue;
            }
        };
        if net.trunc() != net {
            problems.add(
                field,
                format!("{text} has host bits set; did you mean {}?", net.trunc()),
            );
            continue;
        }
        let host_bits = net.max_prefix_len() - net.prefix_len();
        if host_bits < 2 {
            problems.add(
                field,
                format!(
                    "{text} is too small to allocate from: use a prefix of at most /{}",
                    net.max_prefix_len() - 2
                ),
            );
            continue;
        }
        if let Some((j, other)) = out
            .iter()
            .find(|(_, o)| o.contains(&net.network()) || net.contains(&o.network()))
        {
            problems.add(field, format!("{text} overlaps clusterSetIPs[{j}] {other}"));
            continue;
        }
        out.push((i, net));
    }
    out.into_iter().map(|(_, net)| net).collect()
}
