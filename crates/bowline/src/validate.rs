//! `bowline validate`: the configuration, every manifest, and what the registry would refuse.
#![allow(clippy::print_stdout)]

use std::{path::Path, process::ExitCode};

use bowline_app::config::Config;
use bowline_registry::Admission;

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
    let mut registry = bowline_app::offline::registry(&config);
    let unread = bowline_app::offline::scan_manifests(&config, &mut registry);
    let mut problems = 0;
    for (name, dir, e) in &unread.failed {
        println!(
            "{}: member {name}: cannot read {}: {e}",
            config.file.display(),
            dir.display()
        );
        problems += 1;
    }
    for name in &unread.kubernetes {
        println!(
            "member {name}: a Kubernetes API member; its objects are read (and refused objects reported in /debug/rejected) when Bowline runs"
        );
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
    let warnings = bowline_app::offline::export_findings(&config, &registry);
    for warning in &warnings {
        println!("warning: {warning}");
    }
    let warned = match warnings.len() {
        0 => String::new(),
        n => format!(", {n} warning(s)"),
    };
    if problems > 0 {
        println!("{problems} problem(s){warned}");
        return Ok(ExitCode::FAILURE);
    }
    println!("{}: ok{warned}", config.file.display());
    Ok(ExitCode::SUCCESS)
}
