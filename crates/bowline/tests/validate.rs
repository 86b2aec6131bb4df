//! `bowline validate` as a user runs it: every problem of the configuration in one run, and
//! what the MCS controller would say about the manifests' exports.

use std::{fs, process::Command};

fn validate(dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bowline"))
        .args(["validate", "--config"])
        .arg(dir.join("bowline.yaml"))
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_demo_is_valid_and_its_conflicts_and_waiting_export_are_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    bowline_app::demo::write_to(dir.path()).unwrap();
    let (ok, out) = validate(dir.path());
    assert!(ok, "{out}");
    for needle in [
        "warning: members east, west: ServiceExport demo/reviews: conflict (Conflict PortConflict)",
        "warning: member east: ServiceExport demo/ghost: not exported (Valid NoService): no Service demo/ghost in member east",
        "ServiceExport demo/echo: conflict (Conflict IPFamilyConflict)",
        ": ok, 4 warning(s)",
    ] {
        assert!(out.contains(needle), "{needle:?} in\n{out}");
    }
}

#[test]
fn every_configuration_problem_is_printed_in_one_run() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("east")).unwrap();
    fs::write(
        dir.path().join("bowline.yaml"),
        "clusterSet: x\nmembers: [{manifests: east, netwrk: a}]\nwatch: {debounce: 50}\nmcs: {mode: producer}\n",
    )
    .unwrap();
    let (ok, out) = validate(dir.path());
    assert!(!ok);
    for needle in [
        "members[0].netwrk: unknown field `netwrk`",
        "watch.debounce: 50 is a bare number; a duration needs its unit, such as 50ms or 50s",
        "mcs.mode: unknown variant `producer`",
        "3 problem(s) in the configuration",
    ] {
        assert!(out.contains(needle), "{needle:?} in\n{out}");
    }
}
