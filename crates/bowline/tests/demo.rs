//! End to end: `bowline demo` on a fresh directory reaches readiness, shows every member's
//! endpoints, and follows live edits of its manifests.

use std::{
    path::Path,
    process::{Child, Command},
};

use bowline_test_support::{eventually, http_get};
use serde_json::Value;

mod common;

struct Demo {
    child: Child,
    admin: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Demo {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bowline"));
    command
        .args([
            "demo",
            "--admin",
            "127.0.0.1:0",
            "--xds",
            "127.0.0.1:0",
            "--dns",
            "127.0.0.1:0",
            "--xds-tls",
            "127.0.0.1:0",
            "--dir",
        ])
        .arg(dir);
    let (child, admin) = common::spawn_until(command, |line| {
        let url = line.trim().strip_prefix("admin: http://")?;
        Some(url.trim_end_matches('/').to_string())
    });
    Demo { child, admin }
}

fn json(demo: &Demo, path: &str) -> Option<Value> {
    match http_get(&demo.admin, path).ok()? {
        (200, body) => serde_json::from_str(&body).ok(),
        _ => None,
    }
}

/// (member, network, zone, addresses) of every endpoint of a service.
fn endpoints(view: &Value) -> Vec<(String, String, String, Vec<String>)> {
    let mut out = Vec::new();
    for (member, contribution) in view["members"].as_object().unwrap() {
        for ep in contribution["endpoints"].as_array().unwrap() {
            assert_eq!(ep["cluster"], member.as_str());
            out.push((
                member.clone(),
                ep["network"].as_str().unwrap().to_string(),
                ep["locality"]["zone"].as_str().unwrap().to_string(),
                ep["addresses"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap().to_string())
                    .collect(),
            ));
        }
    }
    out
}

#[test]
fn demo_comes_up_and_follows_edits() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start(dir.path());
    eventually("/readyz", || {
        (http_get(&demo.admin, "/readyz").ok()?.0 == 200).then_some(())
    });

    let echo = json(&demo, "/debug/services/demo/echo").unwrap();
    let eps = endpoints(&echo);
    let members: std::collections::BTreeSet<_> = eps.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        members.into_iter().collect::<Vec<_>>(),
        vec!["central", "east", "west"]
    );
    assert!(eps.contains(&(
        "east".into(),
        "net-east".into(),
        "us-east-1a".into(),
        vec!["10.1.1.10".into()]
    )));
    assert!(eps.contains(&(
        "west".into(),
        "net-west".into(),
        "us-west-2a".into(),
        vec!["10.2.1.10".into(), "fd00:2:1::10".into()]
    )));
    assert!(eps.contains(&(
        "central".into(),
        "net-east".into(),
        "eu-central-1a".into(),
        vec!["fd00:3:1::10".into()]
    )));
    assert!(
        eps.iter().any(|e| e.1 == "net-central-edge"),
        "a pod label overrides the member's network"
    );
    let all = json(&demo, "/debug/services").unwrap();
    assert!(all.as_array().unwrap().len() >= 6);

    // Add an endpoint.
    let east = dir.path().join("members/east");
    std::fs::write(
        east.join("extra.yaml"),
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: echo-extra\n  namespace: demo\n  labels: {kubernetes.io/service-name: echo}\naddressType: IPv4\nendpoints:\n- addresses: [10.1.1.99]\n  zone: us-east-1a\nports:\n- {name: http, port: 8080, protocol: TCP}\n",
    )
    .unwrap();
    eventually("the new endpoint", || {
        let view = json(&demo, "/debug/services/demo/echo")?;
        endpoints(&view)
            .iter()
            .any(|e| e.3 == vec!["10.1.1.99".to_string()])
            .then_some(())
    });

    // Delete a Service: east's reviews goes, west's stays.
    std::fs::remove_file(east.join("reviews.yaml")).unwrap();
    eventually("east's reviews gone", || {
        let view = json(&demo, "/debug/services/demo/reviews")?;
        let members: Vec<&String> = view["members"].as_object()?.keys().collect();
        (members == vec!["west"]).then_some(())
    });

    // Break a document: it is listed, nothing else is lost.
    std::fs::write(
        dir.path().join("members/west/broken.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: [oops\n",
    )
    .unwrap();
    let rejected = eventually("the broken document in /debug/rejected", || {
        let list = json(&demo, "/debug/rejected")?;
        list.as_array()?
            .iter()
            .find(|r| {
                r["origin"]
                    .as_str()
                    .is_some_and(|o| o.starts_with("broken.yaml:1"))
            })
            .cloned()
    });
    assert_eq!(rejected["member"], "west");
    assert_eq!(rejected["reason"], "ParseError");
    let echo = json(&demo, "/debug/services/demo/echo").unwrap();
    assert_eq!(endpoints(&echo).len(), eps.len() + 1, "nothing else lost");
    let (code, metrics) = http_get(&demo.admin, "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains(
            "bowline_rejected_objects{member=\"west\",cluster=\"west\",reason=\"ParseError\"} 1"
        ),
        "{metrics}"
    );
}

fn read_ips(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let start = text.find("ips:")?;
    Some(text[start..].lines().take(3).collect::<Vec<_>>().join("\n"))
}

#[test]
fn mcs_objects_are_written_restored_and_stable_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let import = dir
        .path()
        .join("members/east/.bowline/serviceimports/demo/echo.yaml");
    let ips = {
        let demo = start(dir.path());
        let ips = eventually("the echo ServiceImport in east", || read_ips(&import));
        assert!(
            ips.contains("241.0.0.") && ips.contains("fd00:241::"),
            "{ips}"
        );

        // The written objects are listed per member.
        let written = eventually("/debug/members/west/written", || {
            json(&demo, "/debug/members/west/written")
                .filter(|w| w.as_array().is_some_and(|a| !a.is_empty()))
        });
        let kinds: Vec<String> = written
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                format!(
                    "{} {}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        assert!(
            kinds.contains(&"ServiceImport reviews".to_string()),
            "{kinds:?}"
        );
        assert!(
            kinds.contains(&"EndpointSlice imported-echo-west-ipv6".to_string()),
            "{kinds:?}"
        );
        let reviews = json(&demo, "/debug/imports/demo/reviews").unwrap();
        assert_eq!(
            reviews["import"]["merged"]["conflicts"][0][0],
            "PortConflict"
        );
        assert_eq!(reviews["exports"]["west"]["exported"], true);
        let cache = json(&demo, "/debug/services/local-only/cache").unwrap();
        assert_eq!(
            cache["clusterSet"]["west"]["why"],
            "not exported: Namespace label bowline.io/export=false"
        );

        // A deleted or hand-edited generated file is restored.
        std::fs::remove_file(&import).unwrap();
        eventually("the deleted import restored", || {
            read_ips(&import).filter(|i| *i == ips)
        });
        std::fs::write(&import, "spec: {ips: [10.9.9.9]}\n").unwrap();
        eventually("the edited import restored", || {
            read_ips(&import).filter(|i| *i == ips)
        });
        ips
    };

    // While Bowline is down, a service that sorts first is exported. After the restart the
    // addresses read back from the written files are kept; the newcomer gets new ones.
    std::fs::write(
        dir.path().join("members/east/aaa.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: aaa, namespace: demo}\nspec:\n  clusterIP: 10.96.0.99\n  ports: [{name: http, port: 80}]\n",
    )
    .unwrap();
    let demo = start(dir.path());
    eventually("/readyz after restart", || {
        (http_get(&demo.admin, "/readyz").ok()?.0 == 200).then_some(())
    });
    let aaa = dir
        .path()
        .join("members/east/.bowline/serviceimports/demo/aaa.yaml");
    let aaa_ips = eventually("the new service's import", || read_ips(&aaa));
    assert_eq!(
        read_ips(&import).unwrap(),
        ips,
        "echo keeps its ClusterSetIPs across the restart"
    );
    assert_ne!(aaa_ips, ips);
}
