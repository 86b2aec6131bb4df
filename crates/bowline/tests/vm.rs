//! `bowline vm group create`: the WorkloadGroup printed for given flags, read back as Bowline
//! reads members' objects, and refusals that name the flag or field and the rule.

use std::process::Command;

use bowline_model::{Object, objects::ProbeCheck};

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bowline"))
        .args(["vm", "group", "create"])
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn prints_a_workload_group_that_reads_back_as_written() {
    let (ok, yaml, err) = run(&[
        "--name",
        "legacy",
        "-n",
        "demo",
        "-l",
        "app=legacy",
        "-l",
        "version=v1",
        "-p",
        "http=8080",
        "--network",
        "net-east",
        "--service-account",
        "legacy",
        "--probe-http",
        "8080/healthz",
        "--probe-period",
        "5",
    ]);
    assert!(ok, "{err}");
    assert_eq!(
        yaml,
        "apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: legacy
  namespace: demo
spec:
  metadata:
    labels:
      app: legacy
      version: v1
  probe:
    httpGet:
      path: /healthz
      port: 8080
    initialDelaySeconds: 0
    periodSeconds: 5
  template:
    network: net-east
    ports:
      http: 8080
    serviceAccount: legacy
"
    );
    let value: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    let Some(Object::WorkloadGroup(group)) = bowline_k8s_api::decode(value).unwrap() else {
        panic!("a WorkloadGroup");
    };
    assert_eq!(group.entry_labels["app"], "legacy");
    assert_eq!(group.template.ports["http"], 8080);
    assert_eq!(group.template.service_account, "legacy");
    let probe = group.probe.expect("a probe");
    assert_eq!(probe.period_seconds, 5);
    assert!(
        matches!(probe.check, ProbeCheck::HttpGet { ref path, port: 8080, .. } if path == "/healthz")
    );
}

#[test]
fn refusals_name_the_flag_or_field_and_the_rule() {
    for (args, want) in [
        (
            &["--name", "x", "-l", "app legacy"][..],
            "--label \"app legacy\": expected KEY=VALUE",
        ),
        (
            &["--name", "x", "-p", "http=web"][..],
            "--port \"http=web\": expected KEY=VALUE",
        ),
        (
            &["--name", "x", "--probe-tcp", "0"][..],
            "--probe-tcp \"0\": a port number (1-65535) is required",
        ),
        (&["--name", "Legacy_X"][..], "metadata.name \"Legacy_X\""),
        (
            &["--name", "x", "--probe-tcp", "80", "--probe-grpc", "81"][..],
            "cannot be used with",
        ),
    ] {
        let (ok, out, err) = run(args);
        assert!(!ok && out.is_empty(), "{args:?} printed {out}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
