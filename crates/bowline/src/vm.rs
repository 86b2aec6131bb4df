//! `bowline vm group create`: a WorkloadGroup (Istio's shape) from flags, checked by the same
//! rules Bowline reads it with.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use bowline_k8s_api::crds::istio::{
    Exec, GroupMetadata, Grpc, HostPort, HttpGet, Probe, WorkloadEntrySpec, WorkloadGroupSpec,
    v1::{WorkloadGroup, WorkloadGroupVersionSpec},
};
use clap::Args;

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
