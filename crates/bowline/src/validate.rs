//! `bowline validate`: the configuration, every manifest, and what the registry would refuse.
#![allow(clippy::print_stdout)]

use std::{path::Path, process::ExitCode};

use bowline_app::config::{Config, MemberSource};
use bowline_model::{EventBody, MemberName, SourceEvent};
use bowline_registry::{Admission, MemberConfig, Registry};

/// Prints every problem; the exit code says whether there was any.
pub fn validate(file: &Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(file) {
        Ok(config) => config,
        Err(e) => {
            println!("{e}");
            println!("{} problem(s) in the configuration", e.problems.len());
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut registry = Registry::new(
        config.cluster_set.clone(),
        config.members.iter().map(|m| MemberConfig {
            name: MemberName::new(m.name.as_str()),
            id: m.id.clone(),
            network: m.network.clone(),
        }),
    );
    let mut problems = 0;
    for member in &config.members {
        let name = MemberName::new(member.name.as_str());
        match &member.source {
            MemberSource::Manifests(dir) => match bowline_source::scan_directory(name.clone(), dir)
            {
                Ok((objects, rejections)) => {
                    registry.apply(SourceEvent {
                        member: name,
                        body: EventBody::Reset {
                            objects,
                            rejections,
                        },
                    });
                }
                Err(e) => {
                    println!(
                        "{}: member {name}: cannot read {}: {e}",
                        config.file.display(),
                        dir.display()
                    );
                    problems += 1;
                }
            },
            MemberSource::Kubeconfig { .. } | MemberSource::InCluster => {
                println!(
                    "member {name}: a Kubernetes API member; its objects are read (and refused objects reported in /debug/rejected) when Bowline runs"
                );
            }
        }
    }
    for rejection in registry.rejections() {
        println!("{rejection}");
        problems += 1;
    }
    for member in registry.members() {
        let objects: usize = member.objects.values().sum();
        match &member.admission {
            Admission::Admitted { id, from } => {
                println!(
                    "member {}: id {id} (from {from:?}), {objects} objects, {} endpoints",
                    member.name, member.endpoints
                )
            }
            Admission::Pending => {}
            Admission::Refused { .. } => {
                println!("member {}: not admitted", member.name)
            }
        }
    }
    if problems > 0 {
        println!("{problems} problem(s)");
        return Ok(ExitCode::FAILURE);
    }
    println!("{}: ok", config.file.display());
    Ok(ExitCode::SUCCESS)
}
