//! Configuration parsing: defaults, and every refusal naming the file, the field and the rule.

use std::{fs, path::Path, time::Duration};

use bowline_app::config::{Config, ConfigError, ExportDefault, MemberSource};

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for m in ["east", "west"] {
        fs::create_dir_all(dir.path().join("clusters").join(m)).unwrap();
    }
    fs::write(dir.path().join("clusters/not-a-dir.yaml"), "").unwrap();
    fs::create_dir_all(dir.path().join("kube")).unwrap();
    fs::write(dir.path().join("kube/west.yaml"), KUBECONFIG).unwrap();
    dir
}

const KUBECONFIG: &str = r#"apiVersion: v1
kind: Config
clusters:
- name: west
  cluster: {server: "https://127.0.0.1:6443"}
users:
- name: bowline
  user: {token: abc}
contexts:
- name: west
  context: {cluster: west, user: bowline}
current-context: west
"#;

#[test]
fn kubernetes_members_are_named_after_their_context_and_stale_endpoints_expire_after_five_minutes()
{
    let dir = setup();
    let config = parse(
        dir.path(),
        "clusterSet: prod\nmembers:\n- kubeconfig: kube/west.yaml\n- {inCluster: true, network: n1}\n",
    )
    .unwrap();
    assert_eq!(config.members[0].name, "west", "named after the file");
    assert_eq!(
        config.members[0].source,
        MemberSource::Kubeconfig {
            path: dir.path().join("kube/west.yaml"),
            context: None
        }
    );
    assert_eq!(config.members[1].name, "local");
    assert_eq!(config.members[1].source, MemberSource::InCluster);
    assert_eq!(config.stale_endpoint_ttl, Some(Duration::from_secs(300)));
    let config = parse(
        dir.path(),
        "clusterSet: prod\nmembers:\n- {kubeconfig: kube/west.yaml, context: west, name: w}\nstaleEndpointTTL: 0s\n",
    )
    .unwrap();
    assert_eq!(config.members[0].name, "w");
    assert_eq!(config.stale_endpoint_ttl, None, "0 never withdraws");
}

fn parse(dir: &Path, text: &str) -> Result<Config, ConfigError> {
    Config::parse(&dir.join("bowline.yaml"), text)
}

#[test]
fn minimal_config_gets_sane_defaults() {
    let dir = setup();
    let config = parse(
        dir.path(),
        "clusterSet: prod\nmembers:\n- manifests: clusters/east\n  network: net-east\n",
    )
    .unwrap();
    assert_eq!(config.cluster_set, "prod");
    assert_eq!(config.members.len(), 1);
    let member = &config.members[0];
    assert_eq!(member.name, "east", "named after its directory");
    assert_eq!(member.network.as_str(), "net-east");
    assert_eq!(
        member.source,
        MemberSource::Manifests(dir.path().join("clusters/east").canonicalize().unwrap())
    );
    assert_eq!(config.export.default, ExportDefault::All);
    assert_eq!(
        config.export.cluster_local,
        vec![bowline_app::config::HostPattern::new(
            "*.kube-system.svc.cluster.local"
        )]
    );
    assert_eq!(config.mcs.mode, bowline_app::config::McsMode::Controller);
    assert_eq!(
        config
            .cluster_set_ips
            .iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>(),
        vec!["241.0.0.0/16", "fd00:241::/112"]
    );
    assert_eq!(config.listen.admin.to_string(), "127.0.0.1:15014");
    assert_eq!(config.listen.xds.to_string(), "[::]:15010");
    assert_eq!(config.listen.dns.to_string(), "[::]:15053");
    assert_eq!(config.listen.xds_tls.to_string(), "[::]:15012");
    assert_eq!(config.data_dir, dir.path().join(".bowline-data"));
    assert_eq!(config.member_sync_timeout, Duration::from_secs(60));
}

#[test]
fn data_dir_and_tls_listener() {
    let dir = setup();
    let config = parse(
        dir.path(),
        "clusterSet: prod\nmembers:\n- manifests: clusters/east\ndataDir: state\nlisten: {xdsTls: 127.0.0.1:16012}\n",
    )
    .unwrap();
    assert_eq!(config.data_dir, dir.path().join("state"));
    assert_eq!(config.listen.xds_tls.to_string(), "127.0.0.1:16012");
    let err = parse(
        dir.path(),
        "clusterSet: prod\nmembers:\n- manifests: clusters/east\ndataDir: clusters/not-a-dir.yaml\nlisten: {xds: 0.0.0.0:15010, xdsTls: 0.0.0.0:15010}\n",
    )
    .unwrap_err()
    .to_string();
    let file = dir.path().join("bowline.yaml");
    assert_eq!(
        err,
        format!(
            "{f}: listen.xdsTls: 0.0.0.0:15010 is also listen.xds; the TLS port needs its own\n\
             {f}: dataDir: {d} exists and is not a directory",
            f = file.display(),
            d = dir.path().join("clusters/not-a-dir.yaml").display()
        )
    );
}

#[test]
fn full_config() {
    let dir = setup();
    let text = r#"
clusterSet: prod
members:
  - name: e
    manifests: ./clusters/east
    id: east-1
    labels: {team: billing}
  - manifests: clusters/west
    dnsListen: 127.0.0.2:53
export:
  default: none
  namespaces:
    shop: {exportTo: [east-1, west]}
  clusterLocal: ["*.kube-system.svc.cluster.local", "db.prod.svc.cluster.local"]
clusterSetIPs: [10.200.0.0/16]
listen: {xds: "127.0.0.1:1", dns: "[::1]:2", admin: "127.0.0.1:3"}
mcs: {mode: consumer, resync: 2s}
memberSyncTimeout: 5m
watch: {debounce: 10ms, resync: 1h}
dns: {ttl: 30s, clusterLocalMember: east-1}
"#;
    let config = parse(dir.path(), text).unwrap();
    assert_eq!(config.members[0].name, "e");
    assert_eq!(config.members[0].labels["team"], "billing");
    assert_eq!(
        config.export.scope.member_labels["e"]["team"], "billing",
        "the selector reads members' labels"
    );
    assert_eq!(
        config.export.scope.namespaces["shop"].to_string(),
        "multicluster.bowline.io/export-to=\"east-1,west\""
    );
    assert_eq!(
        config.members[1].dns_listen,
        Some("127.0.0.2:53".parse().unwrap())
    );
    assert_eq!(config.members[0].id.as_deref(), Some("east-1"));
    assert_eq!(config.export.default, ExportDefault::None);
    assert_eq!(config.member_sync_timeout, Duration::from_secs(300));
    assert_eq!(config.watch.debounce, Duration::from_millis(10));
    assert_eq!(config.mcs.mode, bowline_app::config::McsMode::Consumer);
    assert_eq!(
        config.export.cluster_local[1].to_string(),
        "db.prod.svc.cluster.local"
    );
    assert_eq!(config.dns.ttl, Duration::from_secs(30));
    assert_eq!(
        config
            .dns
            .cluster_local_member
            .as_ref()
            .map(|id| id.as_str()),
        Some("east-1")
    );
}

#[test]
fn every_problem_is_named_with_file_and_field() {
    let dir = setup();
    let cases: &[(&str, &[&str])] = &[
        (
            "members: []",
            &[
                "bowline.yaml: clusterSet: required",
                "bowline.yaml: members: at least one member is required",
            ],
        ),
        (
            "clusterSet: x\nmembers:\n- manifests: clusters/east\n  netwrk: a\n",
            &["members[0]", "unknown field `netwrk`"],
        ),
        (
            "clusterSet: x\nmembers:\n- manifests: clusters/nope\n",
            &[
                "members[0].manifests: directory",
                "clusters/nope cannot be used",
            ],
        ),
        (
            "clusterSet: x\nmembers:\n- manifests: clusters/not-a-dir.yaml\n",
            &["members[0].manifests: ", "is not a directory"],
        ),
        (
            "clusterSet: x\nmembers:\n- manifests: clusters/east\n- manifests: ./clusters/east/\n",
            &["members[1].manifests: ./clusters/east/ is already the directory of members[0]"],
        ),
        (
            "clusterSet: x\nmembers:\n- {manifests: clusters/east, name: a}\n- {manifests: clusters/west, name: a}\n",
            &["members[1].name: \"a\" is already the name of members[0]"],
        ),
        (
            "clusterSet: x\nmembers:\n- {manifests: clusters/east, id: East}\n",
            &["members[0].id: cluster id \"East\" contains 'E'"],
        ),
        (
            "clusterSet: x\nmembers:\n- {manifests: clusters/east, id: a}\n- {manifests: clusters/west, id: a}\n",
            &["members[1].id: \"a\" is already the id of members[0]"],
        ),
        (
            "clusterSet: x\nmembers:\n- {manifests: clusters/east, network: 'net east'}\n",
            &["members[0].network: \"net east\" is not a valid label value"],
        ),
        (
            "clusterSet: x\nmembers:\n- {kubeconfig: kube/none.yaml}\n",
            &["members[0].kubeconfig: cannot read kubeconfig", "none.yaml"],
        ),
        (
            "clusterSet: x\nmembers:\n- {kubeconfig: kube/west.yaml, context: east}\n",
            &[
                "members[0].context: ",
                "west.yaml has no context \"east\" (it has [\"west\"])",
            ],
        ),
        (
            "clusterSet: x\nmembers:\n- {inCluster: true, context: west}\n",
            &["members[0].context: only meaningful with `kubeconfig`"],
        ),
        (
            "clusterSet: x\nmembers:\n- {manifests: clusters/east, labels: {'team x': a}}\n",
            &["members[0].labels.team x: \"team x\" is not a label key"],
        ),
        (
            "clusterSet: x\nmembers:\n- {manifests: clusters/east, dnsListen: here}\n",
            &["members[0].dnsListen: \"here\" is not an address:port"],
        ),
        (
            "clusterSet: x\nmembers:\n- {manifests: clusters/east, dnsListen: '127.0.0.1:53'}\nlisten: {dns: '127.0.0.1:53'}\n",
            &["members[0].dnsListen: 127.0.0.1:53 is already listen.dns"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nexport: {namespaces: {shop: {exportTo: [East]}}}\n",
            &[
                "export.namespaces.shop.exportTo: ",
                "\"East\" cannot be a member id",
            ],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nexport: {namespaces: {shop: {exportToSelector: 'team in x'}}}\n",
            &[
                "export.namespaces.shop.exportToSelector: \"team in x\": ",
                "parentheses",
            ],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nexport: {namespaces: {shop: {}}}\n",
            &["export.namespaces.shop: set exportTo (member ids) or exportToSelector"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nstaleEndpointTTL: soon\n",
            &["staleEndpointTTL", "is not a duration"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nwatch: {debounce: 50}\n",
            &[
                "watch",
                "50 is a bare number; a duration needs its unit, such as 50ms or 50s",
            ],
        ),
        (
            "clusterSet: x\nmembers:\n- {manifests: clusters/east, kubeconfig: k}\n",
            &["members[0]: only one of `manifests`, `kubeconfig` and `inCluster` may be set"],
        ),
        (
            "clusterSet: x\nmembers:\n- {}\n",
            &["members[0]: one of `manifests`, `kubeconfig` or `inCluster` is required"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nclusterSetIPs: [241.0.0.1/16]\n",
            &["clusterSetIPs[0]: 241.0.0.1/16 has host bits set; did you mean 241.0.0.0/16?"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nclusterSetIPs: [10.0.0.0/8, 10.1.0.0/16]\n",
            &["clusterSetIPs[1]: 10.1.0.0/16 overlaps clusterSetIPs[0] 10.0.0.0/8"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nclusterSetIPs: [banana]\n",
            &["clusterSetIPs[0]: \"banana\" is not a CIDR"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nclusterSetIPs: [10.0.0.0/31]\n",
            &["clusterSetIPs[0]: 10.0.0.0/31 is too small"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nlisten: {admin: localhost}\n",
            &["listen.admin: \"localhost\" is not an address:port"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nexport: {default: some}\n",
            &["export.default", "unknown variant `some`"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nexport: {clusterLocal: ['*.Bad_ns.svc']}\n",
            &["export.clusterLocal[0]: \"*.Bad_ns.svc\" is not a host name"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nmemberSyncTimeout: soon\n",
            &["memberSyncTimeout", "\"soon\" is not a duration"],
        ),
        ("clusterSet: [unclosed\n", &["bowline.yaml: invalid YAML"]),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nmcs: {mode: producer}\n",
            &["mcs.mode", "unknown variant `producer`"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\ndns: {clusterLocalMember: East_1}\n",
            &["dns.clusterLocalMember: cluster id \"East_1\" contains 'E'"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\ndns: {zone: example.org}\n",
            &["dns", "unknown field `zone`"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nlisten: {adminDebug: open}\n",
            &["listen.adminDebug", "unknown variant `open`", "`loopback`"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nca: {trustDomain: Example.COM, maxTtl: 0s}\n",
            &[
                "ca.trustDomain",
                "not a trust domain",
                "ca.maxTtl: must be more than 0",
            ],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nca: {plugin: {secret: istio-system/cacerts}}\n",
            &[
                "ca.plugin.secret: no member is a Kubernetes cluster",
                "give ca.plugin.dir",
            ],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nca: {plugin: {secret: cacerts}}\n",
            &["ca.plugin.secret: \"cacerts\" is not <namespace>/<name>"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nca: {plugin: {dir: certs, secret: a/b}}\n",
            &["ca.plugin: give dir or secret, not both"],
        ),
        (
            "clusterSet: x\nmembers: [{manifests: clusters/east}]\nca: {plugin: {secret: a/b, member: east}}\n",
            &["ca.plugin.member: \"east\" is a manifest directory"],
        ),
    ];
    for (text, needles) in cases {
        let err = parse(dir.path(), text).expect_err(text).to_string();
        for needle in *needles {
            assert!(
                err.contains(needle),
                "config {text:?}\nerror {err:?}\nshould contain {needle:?}"
            );
        }
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let dir = setup();
    let err = parse(dir.path(), "members:\n- {manifests: clusters/nope}\n- {manifests: clusters/east, id: X}\nclusterSetIPs: [1.2.3.4/8]\n").unwrap_err();
    assert_eq!(err.problems.len(), 4, "{err}");
}

/// Fields that do not parse (an unknown field, a wrong type, a bad enum) are all reported in
/// one run, beside the rules the rest breaks; a value that did not parse is not reported again
/// as missing.
#[test]
fn every_parse_problem_is_reported_in_one_run() {
    let dir = setup();
    let text = "clusterSet: 5\nmembers:\n- {manifests: clusters/east, netwrk: a}\n- {manifests: clusters/west, id: X}\nwatch: {debounce: 50}\nmcs: {mode: producer}\nlisten: {dns: 7, nope: 1}\nclusterSetIPs: [1.2.3.4/8]\n";
    let err = parse(dir.path(), text).unwrap_err();
    let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
    for (field, needle) in [
        ("clusterSet", "invalid type"),
        ("members[0].netwrk", "unknown field `netwrk`"),
        ("watch.debounce", "a duration needs its unit"),
        ("mcs.mode", "unknown variant `producer`"),
        ("listen.nope", "unknown field `nope`"),
        ("listen.dns", "invalid type"),
        ("members[1].id", "cluster id \"X\""),
        ("clusterSetIPs[0]", "host bits"),
    ] {
        assert!(
            err.problems
                .iter()
                .any(|p| p.field == field && p.message.contains(needle)),
            "{field}: {needle} in {err}"
        );
    }
    assert_eq!(
        fields.iter().filter(|f| **f == "clusterSet").count(),
        1,
        "a clusterSet that did not parse is not also missing: {err}"
    );
}

#[test]
fn the_demo_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    bowline_app::demo::write_to(dir.path()).unwrap();
    let config = Config::load(&dir.path().join("bowline.yaml")).unwrap();
    assert_eq!(config.members.len(), 3);
}

/// A huge value in the wrong place (found by fuzzing: a 16 KiB string where the file's
/// mapping belongs) is named, not echoed whole: each message stays short enough to read.
#[test]
fn a_huge_misplaced_value_is_reported_in_a_bounded_message() {
    let dir = setup();
    let text = format!("\nn{}", "\"".repeat(16_606));
    let err = parse(dir.path(), &text).unwrap_err();
    let message = &err.problems[0].message;
    assert!(
        message.len() < 1024 && message.contains("bytes)"),
        "{message}"
    );
    let long_id = "X".repeat(5000);
    let err = parse(
        dir.path(),
        &format!("clusterSet: x\nmembers: [{{manifests: clusters/east, id: {long_id}}}]\n"),
    )
    .unwrap_err();
    assert!(err.problems[0].message.len() < 1024, "{err}");
    assert_eq!(err.problems[0].field, "members[0].id");
}
