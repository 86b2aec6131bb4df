//! `bowline member kubeconfig` as a user runs it against a (fake) cluster: the kubeconfig on
//! stdout, the token's expiry on stderr, the admin's kubeconfig found through `KUBECONFIG`.

use std::process::{Command, Output};

use bowline_fake_kube::FakeApiServer;
use kube::config::Kubeconfig;

async fn run(args: &[&str], kubeconfig_env: &std::path::Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bowline"));
    command
        .args(["member", "kubeconfig"])
        .args(args)
        .env("KUBECONFIG", kubeconfig_env)
        .env_remove("RUST_LOG");
    // The fake server answers on this runtime while the command runs.
    tokio::task::spawn_blocking(move || command.output().expect("runs"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prints_the_kubeconfig_on_stdout_and_the_expiry_on_stderr() {
    let server = FakeApiServer::start().await;
    server.set_token(Some("admin".into()));
    let dir = tempfile::tempdir().unwrap();
    let admin = dir.path().join("admin");
    std::fs::write(&admin, server.kubeconfig_yaml("admin")).unwrap();

    let out = run(&["--context", "fake", "--duration", "48h"], &admin).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let parsed = Kubeconfig::from_yaml(&stdout).expect("a kubeconfig");
    assert_eq!(parsed.current_context.as_deref(), Some("fake"));
    assert!(
        stdout.contains("token: sa-bowline-system-bowline-member-1"),
        "{stdout}"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    // The fake listens on 127.0.0.1: no other cluster could reach that.
    assert!(
        matches!(&lines[..], [warning, expiry]
            if warning.starts_with("warning: the server http://127.0.0.1:")
                && warning.contains("pass --server")
                && expiry.starts_with("token expires at ")
                && expiry.ends_with("rerun this command to rotate; Bowline picks up the new file without a restart")),
        "{stderr}"
    );
    assert!(
        server
            .get(
                "v1",
                "ServiceAccount",
                Some("bowline-system"),
                "bowline-member"
            )
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duration_under_ten_minutes_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        &["--context", "fake", "--duration", "5m"],
        &dir.path().join("none"),
    )
    .await;
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--duration"), "{stderr}");
}
