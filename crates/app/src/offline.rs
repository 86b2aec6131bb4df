//! A configuration's ClusterSet read once, without running anything: what `bowline validate`
//! checks, and what tests and the fuzzer answer from.

use std::{collections::BTreeMap, path::PathBuf};

use bowline_mcs::{Controller, McsConfig};
use bowline_model::{EventBody, MemberName, SourceEvent};
use bowline_registry::{MemberConfig, Registry};

use crate::config::{Config, MemberSource};

/// An empty registry of the configuration's members.
pub fn registry(config: &Config) -> Registry {
    Registry::new(
        config.cluster_set.clone(),
        config.members.iter().map(|m| MemberConfig {
            name: MemberName::new(m.name.as_str()),
            id: m.id.clone(),
            network: m.network.clone(),
        }),
    )
}

/// What [`scan_manifests`] could not read.
#[derive(Debug, Default)]
pub struct Unread {
    /// Manifest members whose directory could not be read, with the error.
    pub failed: Vec<(MemberName, PathBuf, std::io::Error)>,
    /// Kubernetes members, whose objects are read only by a running Bowline.
    pub kubernetes: Vec<MemberName>,
}

/// Reads every manifest member's directory once into `registry`.
pub fn scan_manifests(config: &Config, registry: &mut Registry) -> Unread {
    let mut unread = Unread::default();
    for member in &config.members {
        let name = MemberName::new(member.name.as_str());
        let MemberSource::Manifests(dir) = &member.source else {
            unread.kubernetes.push(name);
            continue;
        };
        match bowline_source::scan_directory(name.clone(), dir) {
            Ok((objects, rejections)) => {
                registry.apply(SourceEvent {
                    member: name,
                    body: EventBody::Reset {
                        objects,
                        rejections,
                    },
                });
            }
            Err(e) => unread.failed.push((name, dir.clone(), e)),
        }
    }
    unread
}

/// An MCS controller with the configuration's export policy and ClusterSetIP pools,
/// resuming from nothing written.
pub fn controller(config: &Config) -> Controller {
    Controller::new(
        McsConfig {
            policy: config.export.clone(),
            pools: config.cluster_set_ips.clone(),
        },
        BTreeMap::new(),
    )
}

/// What the MCS controller would report on the members' ServiceExports, as `bowline
/// validate` prints it: every export that is not valid (no Service, an ExternalName,
/// cluster-local, a scope naming no member) and every conflict (ports, type, IP families...),
/// one line each, naming the member, the ServiceExport, the condition and its message. These
/// are states the MCS API allows (the export waits, the oldest definition wins), so they are
/// warnings; the registry's refusals are the errors. Nothing in consumer mode.
pub fn export_findings(config: &Config, registry: &Registry) -> Vec<String> {
    if config.mcs.mode == crate::config::McsMode::Consumer {
        return Vec::new();
    }
    let snapshot = bowline_mcs::Snapshot::from_registry(registry);
    let outcome = controller(config).reconcile(&snapshot, jiff::Timestamp::now());
    let mut out = Vec::new();
    for (key, exports) in &outcome.exports {
        // A conflict is reported on every constituent: once, naming them all.
        let mut found: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (id, info) in exports.iter() {
            for c in &info.conditions {
                let finding = match (c.type_.as_str(), c.status.as_str()) {
                    ("Valid", "False") => "not exported",
                    ("Conflict", "True") => "conflict",
                    _ => continue,
                };
                let line = format!("{finding} ({} {}): {}", c.type_, c.reason, c.message);
                found.entry(line).or_default().push(id.as_str());
            }
        }
        for (line, members) in found {
            let whose = match members.as_slice() {
                [one] => format!("member {one}"),
                many => format!("members {}", many.join(", ")),
            };
            out.push(format!("{whose}: ServiceExport {key}: {line}"));
        }
    }
    out
}

/// The demo ClusterSet written into `dir`, its configuration and every member read.
pub fn demo(dir: &std::path::Path) -> std::io::Result<(Config, Registry)> {
    crate::demo::write_to(dir)?;
    let config = Config::load(&dir.join("bowline.yaml")).map_err(std::io::Error::other)?;
    let mut registry = registry(&config);
    let unread = scan_manifests(&config, &mut registry);
    if let Some((name, dir, e)) = unread.failed.into_iter().next() {
        return Err(std::io::Error::other(format!(
            "member {name}: cannot read {}: {e}",
            dir.display()
        )));
    }
    Ok((config, registry))
}
