//! Onboarding VMs, behind `bowline vm`: `group create`, a WorkloadGroup (Istio's shape) from
//! flags, checked by the same rules Bowline reads it with; `token`, a registration token
//! recorded where the configuration keeps the token store; `bundle`, the files a VM needs to
//! join, from the group found in a member. The flags are `clap` arguments so that the CLI
//! stays a thin layer over them.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, time::Duration};

use crate::config::{Config, MemberSource};
use crate::state::StateStore;
use anyhow::{Context, bail};
use bowline_k8s_api::crds::istio::{
    Exec, GroupMetadata, Grpc, HostPort, HttpGet, Probe, WorkloadEntrySpec, WorkloadGroupSpec,
    v1::{WorkloadGroup, WorkloadGroupVersionSpec},
};
use bowline_model::{Object, objects::WorkloadGroup as Group};
use bowline_vm::bundle;
use clap::Args;
use jiff::Timestamp;

/// Flags of `bowline vm group create`.
#[derive(Args, Debug)]
pub struct GroupFlags {
    /// Name of the WorkloadGroup (auto-registered VMs are named `<name>-<ip>`).
    #[arg(long)]
    pub name: String,
    /// Namespace of the group and of its VMs.
    #[arg(long, short, default_value = "default")]
    pub namespace: String,
    /// A label of the VMs, `key=value` (repeatable): what Services select them by.
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Service account of the VMs.
    #[arg(long, default_value = "default")]
    pub service_account: String,
    /// Network of the VMs (empty: the member's network).
    #[arg(long)]
    pub network: Option<String>,
    /// A named port of the VMs, `name=number` (repeatable): resolves Services' named
    /// targetPorts.
    #[arg(long = "port", short = 'p', value_name = "NAME=NUMBER")]
    pub ports: Vec<String>,
    /// Readiness probe: HTTP GET on `PORT[/PATH]`.
    #[arg(long, value_name = "PORT[/PATH]", group = "probe")]
    pub probe_http: Option<String>,
    /// Readiness probe: TCP connect to `PORT`.
    #[arg(long, value_name = "PORT", group = "probe")]
    pub probe_tcp: Option<u32>,
    /// Readiness probe: gRPC health check on `PORT`.
    #[arg(long, value_name = "PORT", group = "probe")]
    pub probe_grpc: Option<u32>,
    /// Readiness probe: run a command (split on spaces).
    #[arg(long, value_name = "COMMAND", group = "probe")]
    pub probe_exec: Option<String>,
    /// Seconds between probes.
    #[arg(long, default_value_t = 10)]
    pub probe_period: i32,
    /// Seconds before the first probe.
    #[arg(long, default_value_t = 0)]
    pub probe_initial_delay: i32,
}

fn pairs<T>(
    flag: &str,
    values: &[String],
    value: impl Fn(&str) -> Option<T>,
) -> anyhow::Result<Option<BTreeMap<String, T>>> {
    let mut out = BTreeMap::new();
    for text in values {
        let parsed = text
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .and_then(|(k, v)| Some((k.to_string(), value(v)?)));
        let Some((key, v)) = parsed else {
            bail!("--{flag} {text:?}: expected KEY=VALUE");
        };
        out.insert(key, v);
    }
    Ok((!out.is_empty()).then_some(out))
}

fn port(flag: &str, text: &str) -> anyhow::Result<u32> {
    text.parse::<u32>()
        .ok()
        .filter(|p| (1..=65535).contains(p))
        .with_context(|| format!("--{flag} {text:?}: a port number (1-65535) is required"))
}

/// The WorkloadGroup the flags describe, as YAML; refused with the rule broken when Bowline
/// would refuse to read it.
pub fn group_yaml(flags: &GroupFlags) -> anyhow::Result<String> {
    let labels = pairs("label", &flags.labels, |v| Some(v.to_string()))?;
    let ports = pairs("port", &flags.ports, |v| v.parse::<u32>().ok())?;
    let check = |port| HostPort {
        host: None,
        port: Some(port),
    };
    let probe = match (
        &flags.probe_http,
        flags.probe_tcp,
        flags.probe_grpc,
        &flags.probe_exec,
    ) {
        (None, None, None, None) => None,
        (http, tcp, grpc, exec) => Some(Probe {
            initial_delay_seconds: Some(flags.probe_initial_delay),
            period_seconds: Some(flags.probe_period),
            http_get: match http {
                Some(text) => {
                    let (p, path) = text.split_once('/').unwrap_or((text, ""));
                    Some(HttpGet {
                        path: Some(format!("/{path}")),
                        port: Some(port("probe-http", p)?),
                        ..HttpGet::default()
                    })
                }
                None => None,
            },
            tcp_socket: tcp
                .map(|p| port("probe-tcp", &p.to_string()).map(check))
                .transpose()?,
            grpc: grpc
                .map(|p| {
                    port("probe-grpc", &p.to_string()).map(|port| Grpc {
                        port: Some(port),
                        service: None,
                    })
                })
                .transpose()?,
            exec: exec.as_ref().map(|c| Exec {
                command: Some(c.split_whitespace().map(String::from).collect()),
            }),
            ..Probe::default()
        }),
    };
    let mut group = WorkloadGroup::new(
        &flags.name,
        WorkloadGroupVersionSpec(WorkloadGroupSpec {
            metadata: labels.map(|labels| GroupMetadata {
                labels: Some(labels),
                annotations: None,
            }),
            template: Some(WorkloadEntrySpec {
                ports,
                network: flags.network.clone(),
                service_account: Some(flags.service_account.clone()),
                ..WorkloadEntrySpec::default()
            }),
            probe,
        }),
    );
    group.metadata.namespace = Some(flags.namespace.clone());
    let value = serde_json::to_value(&group)?;
    if let Err(e) = bowline_k8s_api::decode(value.clone()) {
        bail!("{e}");
    }
    Ok(serde_saphyr::to_string(&value)?)
}

/// Flags of `bowline vm token`.
#[derive(Args, Debug)]
pub struct TokenFlags {
    /// The WorkloadGroup the token may register VMs into.
    #[arg(long)]
    pub group: String,
    /// Its namespace.
    #[arg(long, short)]
    pub namespace: String,
    /// How long the token is accepted.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// The configuration: its data directory keeps the token store, or with
    /// `leaderElection` the Secret `bowline-vm-tokens` of the leader-election member.
    #[arg(long, short, default_value = "bowline.yaml")]
    pub config: PathBuf,
}

/// Issues a registration token and records its hash where the configuration keeps the token
/// store (its data directory, or with `leaderElection` the Secret `bowline-vm-tokens`);
/// returns the token and warnings. A group that no member holds is refused, naming the
/// members searched; when some member could not be asked, the token is issued with a warning.
pub async fn token(flags: &TokenFlags) -> anyhow::Result<(String, Vec<String>)> {
    let config = Config::load(&flags.config)?;
    let warnings = group_somewhere(&config, &flags.group, &flags.namespace).await?;
    let (token, _) = StateStore::of(&config)
        .issue_token(&flags.group, &flags.namespace, flags.ttl, Timestamp::now())
        .await?;
    Ok((token, warnings))
}

/// Whether some member holds WorkloadGroup `namespace/name`: `Ok` with warnings for members
/// that could not be asked, an error naming every member searched when none has it.
async fn group_somewhere(
    config: &Config,
    name: &str,
    namespace: &str,
) -> anyhow::Result<Vec<String>> {
    let (mut searched, mut unasked) = (Vec::new(), Vec::new());
    for member in &config.members {
        let found = match &member.source {
            MemberSource::Manifests(_) => !find_group(config, name, namespace, Some(&member.name))
                .await?
                .is_empty(),
            _ => match kube_group(member, name, namespace).await {
                Ok(found) => found.is_some(),
                Err(e) => {
                    unasked.push(format!("{} ({e:#})", member.name));
                    continue;
                }
            },
        };
        if found {
            return Ok(Vec::new());
        }
        searched.push(member.name.as_str());
    }
    if unasked.is_empty() {
        bail!(
            "no WorkloadGroup {namespace}/{name} in any member (searched {}): a token for it could register no VM; create the group first (bowline vm group create --name {name} -n {namespace} ...), or check --group and -n",
            searched.join(", ")
        );
    }
    Ok(vec![format!(
        "warning: WorkloadGroup {namespace}/{name} is in none of the members searched ({}), and {} could not be asked; the token is issued anyway",
        if searched.is_empty() {
            "none".to_string()
        } else {
            searched.join(", ")
        },
        unasked.join(", ")
    )])
}

/// Flags of `bowline vm bundle`.
#[derive(Args, Debug)]
pub struct BundleFlags {
    /// The WorkloadGroup the VM registers into.
    #[arg(long)]
    pub group: String,
    /// Its namespace.
    #[arg(long, short)]
    pub namespace: String,
    /// Directory to write the files into (created if missing).
    #[arg(long, short = 'o')]
    pub output: PathBuf,
    /// The member holding the group (default: the only manifest member that has it); a
    /// Kubernetes member is asked for it with the member's credentials.
    #[arg(long)]
    pub member: Option<String>,
    /// Bowline's address as the VM reaches it, for the `hosts` file (default: the address of
    /// `listen.xdsTls` unless it is unspecified).
    #[arg(long)]
    pub address: Option<IpAddr>,
    /// The VM's own address (`ISTIO_SVC_IP`; default: the VM's first address, at start).
    #[arg(long)]
    pub vm_address: Option<IpAddr>,
    /// How long the bundle's token is accepted.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// The configuration.
    #[arg(long, short, default_value = "bowline.yaml")]
    pub config: PathBuf,
}

/// A group found in a member, with that member's cluster id.
struct Found {
    member: String,
    cluster_id: Option<String>,
    group: Group,
}

/// The WorkloadGroups named `name` in `namespace` of the configuration's manifest members
/// (or of `only`, which may be a Kubernetes member), with each member's cluster id.
async fn find_group(
    config: &Config,
    name: &str,
    namespace: &str,
    only: Option<&str>,
) -> anyhow::Result<Vec<Found>> {
    if let Some(only) = only
        && !config.members.iter().any(|m| m.name == only)
    {
        let names: Vec<&str> = config.members.iter().map(|m| m.name.as_str()).collect();
        bail!(
            "--member {only}: no such member in {} (members: {})",
            config.file.display(),
            names.join(", ")
        );
    }
    let mut found = Vec::new();
    for member in &config.members {
        if only.is_some_and(|o| o != member.name) {
            continue;
        }
        let MemberSource::Manifests(dir) = &member.source else {
            if only.is_some() {
                found.extend(kube_group(member, name, namespace).await?);
            }
            continue;
        };
        let (objects, _) = bowline_source::manifests::scan_directory(
            bowline_model::MemberName::new(member.name.as_str()),
            dir,
        )
        .with_context(|| format!("cannot read member {} ({})", member.name, dir.display()))?;
        let property = objects.iter().find_map(|o| match o {
            Object::ClusterProperty(p) if &*p.meta.name == "cluster.clusterset.k8s.io" => {
                Some(p.value.clone())
            }
            _ => None,
        });
        for object in objects {
            if let Object::WorkloadGroup(group) = object
                && &*group.meta.name == name
                && &*group.meta.namespace == namespace
            {
                found.push(Found {
                    member: member.name.clone(),
                    cluster_id: property.clone().or_else(|| member.id.clone()),
                    group: *group,
                });
            }
        }
    }
    Ok(found)
}

/// The WorkloadGroup `namespace/name` of a Kubernetes member, read with a GET (with the
/// member's credentials), and the member's cluster id as Bowline derives it: its
/// `cluster.clusterset.k8s.io` ClusterProperty, else the configured `id`, else the
/// `kube-system` Namespace UID.
async fn kube_group(
    member: &crate::config::Member,
    name: &str,
    namespace: &str,
) -> anyhow::Result<Option<Found>> {
    use bowline_model::ObjectKind;
    let credentials =
        crate::state::member_credentials(&member.source).context("not a Kubernetes member")?;
    let what = format!("member {} ({})", member.name, credentials.describe());
    let client = credentials
        .request_client()
        .await
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    let get = async |kind: ObjectKind, ns: Option<&str>, object: &str| {
        let shown = match ns {
            Some(ns) => format!("{kind} {ns}/{object}"),
            None => format!("{kind} {object}"),
        };
        let value = bowline_kube::kinds::get(&client, kind, ns, object)
            .await
            .with_context(|| format!("{what}: cannot read {shown}"))?;
        value
            .map(bowline_k8s_api::decode)
            .transpose()
            .map(Option::flatten)
            .map_err(|e| anyhow::anyhow!("{what}: {shown}: {e}"))
    };
    let Some(Object::WorkloadGroup(group)) =
        get(ObjectKind::WorkloadGroup, Some(namespace), name).await?
    else {
        return Ok(None);
    };
    let property = match get(
        ObjectKind::ClusterProperty,
        None,
        "cluster.clusterset.k8s.io",
    )
    .await?
    {
        Some(Object::ClusterProperty(p)) => Some(p.value),
        _ => None,
    };
    let cluster_id = match (property, &member.id) {
        (Some(id), _) => Some(id),
        (None, Some(id)) => Some(id.clone()),
        (None, None) => match get(ObjectKind::Namespace, None, "kube-system").await? {
            Some(Object::Namespace(ns)) => ns.meta.uid.clone(),
            _ => None,
        },
    };
    Ok(Some(Found {
        member: member.name.clone(),
        cluster_id,
        group: *group,
    }))
}

/// Writes a VM bundle; returns the files written and warnings for stderr.
pub async fn bundle(flags: &BundleFlags) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let config = Config::load(&flags.config)?;
    let (group, ns) = (&flags.group, &flags.namespace);
    let mut found = find_group(&config, group, ns, flags.member.as_deref()).await?;
    let found = match found.len() {
        0 => bail!(
            "no WorkloadGroup {ns}/{group} in {} (looked in {}; create one with `bowline vm group create`)",
            match &flags.member {
                Some(m) => format!("member {m}"),
                None => "the manifest members".into(),
            },
            config.file.display()
        ),
        1 => found.remove(0),
        _ => bail!(
            "WorkloadGroup {ns}/{group} is in several members ({}); choose one with --member",
            found
                .iter()
                .map(|f| f.member.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let cluster_id = found.cluster_id.with_context(|| {
        format!(
            "member {} has no cluster id: no cluster.clusterset.k8s.io ClusterProperty and no `id` in {}",
            found.member,
            config.file.display()
        )
    })?;
    let state = StateStore::of(&config);
    let ca = state.signing_ca(&config).await?;
    let mut warnings = Vec::new();
    let bowline_address = bundle::bowline_address(flags.address, config.listen.xds_tls);
    if bowline_address.is_none() {
        warnings.push(format!(
            "warning: listen.xdsTls is {} and no --address was given: the hosts file is empty; add Bowline's address for {} on the VM",
            config.listen.xds_tls,
            bowline_vm::ca::DISCOVERY_HOST
        ));
    }
    let now = Timestamp::now();
    let (token, record) = state.issue_token(group, ns, flags.ttl, now).await?;
    let files = bundle::files(&bundle::Input {
        group: &found.group,
        cluster_id: &cluster_id,
        discovery_port: config.listen.xds_tls.port(),
        bowline_address,
        vm_address: flags.vm_address,
        root_cert_pem: ca.root_pem(),
        token: &token,
        token_expires: record.expires,
    });
    bundle::write(&flags.output, &files)
        .with_context(|| format!("cannot write the bundle to {}", flags.output.display()))?;
    Ok((files.iter().map(|f| f.name.to_string()).collect(), warnings))
}
