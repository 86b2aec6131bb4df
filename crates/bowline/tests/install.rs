//! `bowline install` as a user runs it: the printed stream is the library's manifests, and
//! `--crds-only` prints only the CRDs.

use std::process::Command;

use serde_json::Value;

fn install(args: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_bowline"))
        .arg("install")
        .args(args)
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    serde_saphyr::from_multiple(&text).expect("a YAML stream")
}

#[test]
fn prints_the_library_manifests() {
    let docs = install(&["--namespace", "mesh", "--replicas", "3", "--image", "img:1"]);
    let expected = bowline_kube::install::manifests(&bowline_kube::install::InstallOptions {
        namespace: "mesh".into(),
        replicas: 3,
        image: "img:1".into(),
        ..Default::default()
    });
    assert_eq!(docs, expected);
    for doc in &docs {
        if doc["kind"] == "CustomResourceDefinition" {
            let crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition =
                serde_path_to_error::deserialize(doc.clone()).expect("a CRD");
            assert_eq!(&serde_json::to_value(crd).unwrap(), doc);
        }
    }
    let image = &docs.iter().find(|d| d["kind"] == "Deployment").unwrap()["spec"]["template"]["spec"]
        ["containers"][0]["image"];
    assert_eq!(image, "img:1");
}

#[test]
fn default_image_is_this_version() {
    let docs = install(&[]);
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("ghcr.io/bowline-mesh/bowline:{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(deployment["metadata"]["namespace"], "bowline-system");
    assert_eq!(deployment["spec"]["replicas"], 2);
}

#[test]
fn crds_only() {
    let docs = install(&["--crds-only"]);
    assert_eq!(docs.len(), 7);
    assert!(docs.iter().all(|d| d["kind"] == "CustomResourceDefinition"));
}

#[test]
fn refuses_zero_replicas() {
    let out = Command::new(env!("CARGO_BIN_EXE_bowline"))
        .args(["install", "--replicas", "0"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
}

/// `bowline install | head`: a reader that stops early ends the command quietly, with
/// success, as Unix tools do (not "Broken pipe" and exit 1).
#[test]
fn a_reader_that_stops_early_ends_it_quietly() {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_bowline"))
        .arg("install")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 64];
    stdout.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"apiVersion"));
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}
