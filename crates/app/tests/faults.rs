//! Faults a member's source recovers from without a restart: what was lost while
//! it failed must all come back, and Bowline must not make the failure worse by writing.

use std::{fs, path::Path, time::Duration};

use bowline_app::config::Config;
use bowline_test_support::{eventually, http_get};
use serde_json::Value;

fn json(addr: &str, path: &str) -> Value {
    let (code, body) = http_get(addr, path).unwrap();
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The member's entry in `/debug/members`; none until the first scan has listed it (just
/// after a start), so the `eventually` loops wait rather than fail.
fn find_member(addr: &str, name: &str) -> Option<Value> {
    json(addr, "/debug/members")
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .cloned()
}

fn member(addr: &str, name: &str) -> Value {
    find_member(addr, name).unwrap_or_else(|| panic!("no member {name}"))
}

/// East's endpoints in the ClusterSet view of `demo/echo` (none before it is known).
fn east_endpoints(addr: &str) -> usize {
    let (code, body) = http_get(addr, "/debug/services/demo/echo").unwrap();
    if code == 404 {
        return 0;
    }
    let view: Value = serde_json::from_str(&body).unwrap();
    view["members"]["east"]["endpoints"]
        .as_array()
        .map_or(0, Vec::len)
}

/// Whether the member directory holds EndpointSlices Bowline imported from `source`.
fn holds_imports_from(member_dir: &Path, source: &str) -> bool {
    let dir = member_dir.join(".bowline/endpointslices/demo");
    fs::read_dir(dir).is_ok_and(|files| {
        files.flatten().any(|f| {
            fs::read_to_string(f.path())
                .is_ok_and(|t| t.contains(&format!("source-cluster: {source}")))
        })
    })
}

/// The demo ClusterSet in a fresh directory, its `bowline.yaml` passed through `edit`,
/// started on loopback listeners.
async fn start_demo(
    edit: impl FnOnce(String) -> String,
) -> (tempfile::TempDir, bowline_app::Running) {
    let dir = tempfile::tempdir().unwrap();
    bowline_app::demo::write_to(dir.path()).unwrap();
    let config_path = dir.path().join("bowline.yaml");
    let text = edit(fs::read_to_string(&config_path).unwrap());
    fs::write(&config_path, text).unwrap();
    let running = start_in(dir.path()).await;
    (dir, running)
}

/// Bowline started on the ClusterSet already in `dir` (a restart).
async fn start_in(dir: &Path) -> bowline_app::Running {
    let config = Config::load(&dir.join("bowline.yaml")).unwrap();
    bowline_app::start(&config, bowline_app::Listeners::loopback().await.unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_directory_moved_away_and_back_is_fully_restored_without_a_restart() {
    let (dir, running) = start_demo(|text| text + "staleEndpointTTL: 1s\n").await;
    let addr = running.admin_addr.to_string();
    let east = dir.path().join("members/east");
    let away = dir.path().join("east-moved-away");

    let check = {
        let (addr, east, away) = (addr.clone(), east.clone(), away.clone());
        move || {
            eventually("east's endpoints served and west imported", || {
                (east_endpoints(&addr) == 2 && holds_imports_from(&east, "west")).then_some(())
            });
            fs::rename(&east, &away).unwrap();
            let stale = eventually("east stale", || {
                find_member(&addr, "east").filter(|m| m["stale"] == true)
            });
            assert!(
                stale["sourceError"]
                    .as_str()
                    .is_some_and(|e| e.contains("cannot read manifest directory")),
                "{stale}"
            );
            eventually("east withdrawn after staleEndpointTTL", || {
                (find_member(&addr, "east")?["withdrawn"] == true && east_endpoints(&addr) == 0)
                    .then_some(())
            });
            // Writes into east kept failing all along: they must not have created it again.
            assert!(
                !east.exists(),
                "Bowline recreated the moved member directory"
            );

            // Back, unchanged: nothing in it differs from before, yet it must be all back.
            fs::rename(&away, &east).unwrap();
            let back = eventually("east back", || {
                Some(member(&addr, "east"))
                    .filter(|m| m["stale"] == false && m["withdrawn"] == false)
            });
            assert!(back["sourceError"].is_null(), "{back}");
            eventually(
                "east's endpoints served again and its imports written",
                || (east_endpoints(&addr) == 2 && holds_imports_from(&east, "west")).then_some(()),
            );
        }
    };
    tokio::task::spawn_blocking(check).await.unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    running.stop().await;
}

/// The status line of `GET /debug/members` sent to `addr` with `Host: host`.
fn status_with_host(addr: &str, host: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /debug/members HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.lines().next().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_server_refuses_host_names_it_was_not_told_of() {
    let (_dir, running) = start_demo(|text| {
        text.replace(
            "  admin: 127.0.0.1:15014\n",
            "  admin: 127.0.0.1:15014\n  adminHosts: [bowline.internal.example]\n",
        )
    })
    .await;
    let addr = running.admin_addr.to_string();
    let statuses = tokio::task::spawn_blocking(move || {
        [
            "evil.example",
            "bowline.internal.example:15014",
            &addr,
            "localhost",
        ]
        .map(|host| status_with_host(&addr, host))
    })
    .await
    .unwrap();
    assert!(statuses[0].contains("403"), "a rebound name: {statuses:?}");
    for ok in &statuses[1..] {
        assert!(ok.contains("200"), "{statuses:?}");
    }
    running.stop().await;
}

/// East's rejections for conflicting copies of its id ClusterProperty, by file.
fn identity_conflicts(addr: &str) -> Vec<String> {
    json(addr, "/debug/rejected")
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["member"] == "east" && r["reason"] == "ConflictingClusterProperty")
        .map(|r| r["origin"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A stray file holding a second, invalid id ClusterProperty sorts before the real one. It
/// must decide nothing: the member keeps its id and what was written into it, both copies are
/// reported, and after a restart with the stray still there the written state survives too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stray_conflicting_cluster_property_neither_changes_the_id_nor_deletes_written_state() {
    let (dir, running) = start_demo(|text| text).await;
    let addr = running.admin_addr.to_string();
    let east = dir.path().join("members/east");
    let stray = east.join("aaa.yaml");
    {
        let (addr, east, stray) = (addr.clone(), east.clone(), stray.clone());
        tokio::task::spawn_blocking(move || {
            eventually("east admitted, serving and holding west's imports", || {
                let m = find_member(&addr, "east")?;
                (m["admission"]["id"] == "east"
                    && east_endpoints(&addr) == 2
                    && holds_imports_from(&east, "west"))
                .then_some(())
            });
            fs::write(
                &stray,
                "apiVersion: about.k8s.io/v1beta1\nkind: ClusterProperty\nmetadata:\n  name: cluster.clusterset.k8s.io\nspec:\n  value: Not_A_Valid_Id!\n",
            )
            .unwrap();
            let origins = eventually("both copies reported", || {
                Some(identity_conflicts(&addr)).filter(|o| o.len() == 2)
            });
            assert!(origins[0].starts_with("aaa.yaml"), "{origins:?}");
            assert!(origins[1].starts_with("cluster.yaml"), "{origins:?}");
            let m = member(&addr, "east");
            assert_eq!(m["admission"]["state"], "admitted", "{m}");
            assert_eq!(m["admission"]["id"], "east", "{m}");
            assert_eq!(east_endpoints(&addr), 2);
            assert!(holds_imports_from(&east, "west"));
        })
        .await
        .unwrap();
    }
    running.stop().await;

    // A restart with the stray still there: no id is known, so east waits, refused, and
    // nothing Bowline wrote into it is deleted.
    let running = start_in(dir.path()).await;
    let addr = running.admin_addr.to_string();
    tokio::task::spawn_blocking(move || {
        let m = eventually("east refused for the conflict", || {
            find_member(&addr, "east").filter(|m| m["admission"]["state"] == "refused")
        });
        assert_eq!(
            m["admission"]["reason"], "ConflictingClusterProperty",
            "{m}"
        );
        let message = m["admission"]["message"].as_str().unwrap();
        assert!(
            message.contains("aaa.yaml") && message.contains("cluster.yaml"),
            "{message}"
        );
        // West's writes into east wait for the conflict to clear, then resume.
        std::thread::sleep(Duration::from_secs(1));
        assert!(
            holds_imports_from(&east, "west"),
            "the conflict deleted what Bowline wrote into east"
        );
        fs::remove_file(&stray).unwrap();
        eventually("east admitted again once the stray is gone", || {
            let m = find_member(&addr, "east")?;
            (m["admission"]["id"] == "east" && east_endpoints(&addr) == 2).then_some(())
        });
        assert!(identity_conflicts(&addr).is_empty());
        assert!(holds_imports_from(&east, "west"));
    })
    .await
    .unwrap();
    running.stop().await;
}
