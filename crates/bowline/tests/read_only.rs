//! A member's `.bowline/` made read-only while the release binary runs: the
//! failed writes are reported, nothing crashes, the other members are written as usual, and
//! once it is writable again the writes catch up.

mod common;

use std::{fs, os::unix::fs::PermissionsExt, path::Path};

use bowline_test_support::{eventually, http_get};

/// Sets every directory under `dir` (itself included) to `mode`.
fn chmod_dirs(dir: &Path, mode: u32) {
    fs::set_permissions(dir, fs::Permissions::from_mode(mode)).unwrap();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        if entry.file_type().unwrap().is_dir() {
            chmod_dirs(&entry.path(), mode);
        }
    }
}

/// Whether `member` holds the EndpointSlice Bowline imports for west's `demo/readonly`.
fn holds_import(dir: &Path, member: &str) -> bool {
    fs::read_dir(dir.join(format!("members/{member}/.bowline/endpointslices/demo"))).is_ok_and(
        |files| {
            files.flatten().any(|f| {
                f.file_name()
                    .to_string_lossy()
                    .starts_with("imported-readonly-")
            })
        },
    )
}

/// `bowline_mcs_write_errors_total` of `member`.
fn write_errors(admin: &str, member: &str) -> f64 {
    let (_, metrics) = http_get(admin, "/metrics").unwrap();
    let series = format!("bowline_mcs_write_errors_total{{member=\"{member}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[test]
fn a_read_only_bowline_directory_is_reported_and_caught_up_once_writable() {
    let dir = tempfile::tempdir().unwrap();
    bowline_app::demo::write_to(dir.path()).unwrap();
    let config = common::demo_config(dir.path(), "");
    let bowline = common::start_bound_by_permissions(&config);
    let east = dir.path().join("members/east/.bowline");
    eventually("east holds the demo's imports", || {
        east.join("serviceimports/demo").is_dir().then_some(())
    });

    chmod_dirs(&east, 0o555);
    fs::write(
        dir.path().join("members/west/readonly.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: readonly, namespace: demo}\n\
         spec:\n  ports: [{name: http, port: 80, targetPort: 8080}]\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
         metadata:\n  name: readonly-1\n  namespace: demo\n  labels: {kubernetes.io/service-name: readonly}\n\
         addressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\n\
         endpoints:\n- addresses: [\"10.2.8.1\"]\n",
    )
    .unwrap();
    eventually("central written as usual, east's failures counted", || {
        (holds_import(dir.path(), "central") && write_errors(&bowline.admin, "east") > 0.0)
            .then_some(())
    });
    assert!(!holds_import(dir.path(), "east"));
    let (code, _) = http_get(&bowline.admin, "/healthz").unwrap();
    assert_eq!(code, 200);

    chmod_dirs(&east, 0o755);
    eventually("east caught up once writable", || {
        holds_import(dir.path(), "east").then_some(())
    });
    let failures = write_errors(&bowline.admin, "east");
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        write_errors(&bowline.admin, "east"),
        failures,
        "writes into east work again"
    );
}
