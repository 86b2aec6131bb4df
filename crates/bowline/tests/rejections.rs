//! 100,000 refused objects in one file of each of two members: a later edit makes
//! both members rescan and diff their refusals. That work stays off the async workers and
//! linear in the refusals, so while it runs the admin server and DNS keep answering, and
//! the edit is served.

mod common;

use std::{fmt::Write, fs, time::Duration};

use bowline_test_support::{eventually_within, http_get};

const REFUSED: usize = 100_000;

/// `count` Services whose names break RFC 1123 (uppercase): each one refused.
fn refused_services(prefix: &str, count: usize) -> String {
    let mut text = String::with_capacity(count * 100);
    for i in 0..count {
        writeln!(
            text,
            "apiVersion: v1\nkind: Service\nmetadata: {{name: {prefix}-{i}, namespace: demo}}\nspec: {{ports: [{{port: 80}}]}}\n---"
        )
        .unwrap();
    }
    text
}

/// The admin server and DNS answer (DNS within 2 s, the admin server within 10 s).
fn answering(bowline: &common::Bowline) {
    let (code, _) = http_get(&bowline.admin, "/healthz").expect("/healthz answers");
    assert_eq!(code, 200);
    assert_eq!(
        common::dns_rcode(bowline.dns, "echo.demo.svc.clusterset.local"),
        Some(0),
        "DNS answers"
    );
}

#[test]
fn an_edit_beside_a_hundred_thousand_refusals_keeps_dns_and_admin_answering() {
    let dir = tempfile::tempdir().unwrap();
    bowline_app::demo::write_to(dir.path()).unwrap();
    for member in ["east", "west"] {
        fs::write(
            dir.path().join(format!("members/{member}/refused.yaml")),
            refused_services("Refused", REFUSED),
        )
        .unwrap();
    }
    let config = common::demo_config(dir.path(), "");
    let bowline = common::start(&config, None);
    // Large by design: a guard against a hang, not a timing assertion.
    eventually_within(
        Duration::from_secs(300),
        "both members' refusals listed",
        || {
            let (_, body) = http_get(&bowline.admin, "/metrics").ok()?;
            let refused = body
                .lines()
                .filter(|l| l.starts_with("bowline_rejected_objects{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
            (refused >= (2 * REFUSED) as f64).then_some(())
        },
    );
    answering(&bowline);

    // One edit in each member: both rescan beside their 100,000 refusals.
    for (member, ip) in [("east", "10.1.9.1"), ("west", "10.2.9.1")] {
        fs::write(
            dir.path().join(format!("members/{member}/late.yaml")),
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: late, namespace: demo}}\n\
                 spec:\n  ports: [{{name: http, port: 80, targetPort: 8080}}]\n---\n\
                 apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                 metadata:\n  name: late-{member}\n  namespace: demo\n  labels: {{kubernetes.io/service-name: late}}\n\
                 addressType: IPv4\nports: [{{name: http, port: 8080, protocol: TCP}}]\n\
                 endpoints:\n- addresses: [\"{ip}\"]\n"
            ),
        )
        .unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        answering(&bowline);
        let (code, body) = http_get(&bowline.admin, "/debug/services/demo/late").unwrap();
        if code == 200 && body.contains("10.1.9.1") && body.contains("10.2.9.1") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the edit was not served: {code} {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
