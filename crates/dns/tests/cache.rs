//! The cache of encoded answers sends exactly the bytes of the reference path (the answer
//! computed and encoded for each query) for every name of a zone and a table of odd queries:
//! mixed case, unknown types and classes, EDNS or not with several payload sizes, UDP and TCP,
//! truncated answers; and a new view recomputes only the names whose data changed.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use bowline_dns::{
    answer::{LOCAL_ZONE, LocalZone, RData, View, ZONE},
    cache::{Cache, Reply},
    server::{Handler, Protocol},
    zone,
};
use bowline_mcs::{Controller, McsConfig, Snapshot};
use bowline_model::{
    ClusterId, IpFamily, Network, Protocol as L4, ServiceKey,
    export::{ExportDefault, ExportPolicy},
};
use bowline_registry::{MemberConfig, Registry};
use bowline_test_support::*;
use tokio::sync::watch;

const T: &str = "2026-11-01T10:00:00Z";

/// A ClusterSet with ClusterSetIP, headless, dual-stack and ExternalName services, and two
/// headless services large enough to be truncated over UDP (`big`: its SRV additionals do
/// not fit; `huge`: not even its addresses do without EDNS).
fn view(synced: bool) -> View {
    let mut reg = Registry::new(
        "set",
        ["c1", "c2"].map(|m| MemberConfig {
            name: member(m),
            id: None,
            network: Network::default(),
        }),
    );
    let mut big = slice("shop", "big-1", "big").port("http", 8080);
    for i in 0..40 {
        big = big.endpoint(
            ep(&format!("10.3.0.{i}"))
                .pod(&format!("big-{i}"))
                .hostname(&format!("big-{i}")),
        );
    }
    let mut huge = slice("shop", "huge-1", "huge").port("http", 8080);
    for i in 0..40 {
        huge = huge.endpoint(ep(&format!("fd00:3::{i:x}")).pod(&format!("h-{i}")));
    }
    reg.apply(reset(
        "c1",
        vec![
            cluster_id("c1"),
            namespace("shop", &[]),
            service("shop", "web")
                .cluster_ips(&["10.0.0.1", "fd00::1"])
                .port_proto("http", 80, L4::Tcp)
                .port_proto("dns", 53, L4::Udp)
                .build(),
            export_at("shop", "web", T, &[], &[]),
            service("shop", "db")
                .headless(&[IpFamily::IPv4])
                .port("pg", 5432)
                .build(),
            slice("shop", "db-1", "db")
                .port("pg", 15432)
                .endpoint(ep("10.1.0.5").pod("db-0").hostname("db-0"))
                .endpoint(ep("10.1.0.9").pod("db-2").hostname("db-2").not_ready())
                .build(),
            export_at("shop", "db", T, &[], &[]),
            service("shop", "anon")
                .headless(&[IpFamily::IPv4, IpFamily::IPv6])
                .port("http", 80)
                .build(),
            slice("shop", "anon-4", "anon")
                .port("http", 8080)
                .endpoint(ep("10.1.0.7").pod("a0"))
                .build(),
            export_at("shop", "anon", T, &[], &[]),
            service("shop", "big")
                .headless(&[IpFamily::IPv4])
                .port("http", 80)
                .build(),
            big.build(),
            export_at("shop", "big", T, &[], &[]),
            service("shop", "huge")
                .headless(&[IpFamily::IPv6])
                .port("http", 80)
                .build(),
            huge.build(),
            export_at("shop", "huge", T, &[], &[]),
            service("shop", "private")
                .cluster_ips(&["10.0.0.9"])
                .port("grpc", 9000)
                .build(),
            service("shop", "ext")
                .external_name("db.example.com")
                .build(),
        ],
    ));
    reg.apply(reset(
        "c2",
        vec![
            cluster_id("c2"),
            namespace("shop", &[]),
            namespace("empty", &[]),
            service("shop", "db")
                .headless(&[IpFamily::IPv4])
                .port("pg", 5432)
                .build(),
            slice("shop", "db-2", "db")
                .port("pg", 15432)
                .endpoint(ep("10.2.0.5").pod("db-1").hostname("db-1"))
                .build(),
            export_at("shop", "db", "2026-11-01T10:00:05Z", &[], &[]),
        ],
    ));
    let mut controller = Controller::new(
        McsConfig {
            policy: ExportPolicy {
                default: ExportDefault::None,
                cluster_local: vec![],
                ..Default::default()
            },
            pools: vec![
                "241.0.0.0/16".parse().unwrap(),
                "fd00:241::/112".parse().unwrap(),
            ],
        },
        BTreeMap::new(),
    );
    let outcome = controller.reconcile(
        &Snapshot::from_registry(&reg),
        "2026-11-22T00:00:00Z".parse().unwrap(),
    );
    let set = bowline_views::from_scratch(&reg, outcome.clone());
    View {
        imports: Arc::new(outcome.imports),
        namespaces: ["shop".to_string(), "empty".to_string()].into(),
        synced,
        local: Some(LocalZone::from_cluster_set(
            &set,
            &ClusterId::new("c1").unwrap(),
        )),
    }
}

/// A query: `name` in its given case, type, class, EDNS payload (with a cookie option when
/// `cookie`), id and the RD and CD flags.
struct Query<'a> {
    name: &'a str,
    qtype: u16,
    qclass: u16,
    edns: Option<u16>,
    cookie: bool,
    id: u16,
    rd: bool,
    cd: bool,
}

impl Query<'_> {
    fn bytes(&self) -> Vec<u8> {
        let mut out = self.id.to_be_bytes().to_vec();
        out.push(u8::from(self.rd));
        out.push(if self.cd { 0x10 } else { 0 });
        out.extend([0, 1, 0, 0, 0, 0, 0, u8::from(self.edns.is_some())]);
        for label in self.name.split('.').filter(|l| !l.is_empty()) {
            out.push(label.len() as u8);
            out.extend(label.as_bytes());
        }
        out.push(0);
        out.extend(self.qtype.to_be_bytes());
        out.extend(self.qclass.to_be_bytes());
        if let Some(payload) = self.edns {
            out.extend([0, 0, 41]);
            out.extend(payload.to_be_bytes());
            out.extend([0, 0, 0x80, 0]); // DO set
            if self.cookie {
                out.extend([0, 12, 0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]);
            } else {
                out.extend([0, 0]);
            }
        }
        out
    }
}

fn handler(view: &View) -> Handler {
    let (_, views) = watch::channel(Arc::new(view.clone()));
    Handler::new(views, Duration::from_secs(5), Arc::new(|_, _, _| {}))
}

fn src() -> SocketAddr {
    "127.0.0.1:5300".parse().unwrap()
}

/// Every owner and SRV target of both zones, and names that do not exist or are malformed.
fn names(view: &View) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for apex in [ZONE, LOCAL_ZONE] {
        for record in zone::records(view, apex) {
            names.push(record.name.clone());
            if let RData::Srv { target, .. } = &record.data {
                names.push(target.clone());
            }
        }
    }
    names.extend(
        [
            "clusterset.local.",
            "svc.clusterset.local.",
            "pod.clusterset.local.",
            "shop.svc.clusterset.local.",
            "empty.svc.clusterset.local.",
            "nowhere.svc.clusterset.local.",
            "ghost.shop.svc.clusterset.local.",
            "c1.web.shop.svc.clusterset.local.",
            "db-0.c2.db.shop.svc.clusterset.local.",
            "_http._udp.web.shop.svc.clusterset.local.",
            "_x._tcp.ext.shop.svc.cluster.local.",
            "a.b.c.d.shop.svc.clusterset.local.",
            "web.shop.clusterset.local.",
            "private.shop.svc.cluster.local.",
            "ext.shop.svc.cluster.local.",
            "ghost.shop.svc.cluster.local.",
            "example.com.",
            ".",
        ]
        .map(String::from),
    );
    names.sort();
    names.dedup();
    names
}

fn cases(name: &str) -> [String; 3] {
    let mixed = name
        .char_indices()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    [name.to_string(), name.to_ascii_uppercase(), mixed]
}

/// The keys of one name in [`check_all`]: 6 classes of question type (A, AAAA, SRV, TXT, SOA,
/// any other) × 3 EDNS payloads offered (none, 512, 1232: 0 and 4096 are clamped) × UDP, TCP.
const KEYS_PER_NAME: u64 = 6 * 3 * 2;

/// Asks every query of the table of `view`'s names once through `cache`, and checks each
/// response against the reference path; returns how many were truncated (TC set).
fn check_all(handler: &Handler, cache: &mut Cache, view: &View, round: u16) -> usize {
    let mut out = Vec::new();
    let mut truncated = 0;
    let mut n: u16 = round.wrapping_mul(7919);
    for name in names(view) {
        for spelled in cases(&name) {
            for qtype in [1, 28, 33, 16, 6, 15, 255, 65_000] {
                for edns in [None, Some(0), Some(512), Some(1232), Some(4096)] {
                    for protocol in [Protocol::Udp, Protocol::Tcp] {
                        n = n.wrapping_add(1);
                        let query = Query {
                            name: &spelled,
                            qtype,
                            qclass: if n.is_multiple_of(11) { 3 } else { 1 },
                            edns,
                            cookie: n.is_multiple_of(3),
                            id: n.wrapping_mul(31),
                            rd: n.is_multiple_of(2),
                            cd: n.is_multiple_of(5),
                        }
                        .bytes();
                        let reply = cache.respond(handler, &query, src(), protocol, &mut out);
                        let want = handler
                            .reference(view, &query, src(), protocol)
                            .expect("a query gets an answer");
                        assert!(matches!(reply, Reply::Counted(..)), "{spelled} {qtype}");
                        assert_eq!(
                            out, want,
                            "{spelled} type {qtype} EDNS {edns:?} {protocol:?}"
                        );
                        truncated += usize::from(out[2] & 0x02 != 0);
                    }
                }
            }
        }
    }
    truncated
}

#[test]
fn cached_answers_are_the_reference_bytes() {
    for synced in [true, false] {
        let view = view(synced);
        let handler = handler(&view);
        let mut cache = Cache::new(Arc::new(view.clone()));
        let truncated = check_all(&handler, &mut cache, &view, 0);
        let computed = cache.computed();
        assert_eq!(check_all(&handler, &mut cache, &view, 1), truncated);
        assert_eq!(cache.computed(), computed, "the second round is all copies");
        if synced {
            assert!(truncated > 0, "the table covers truncation");
        }
    }
}

#[test]
fn odd_messages_take_the_reference_path() {
    let view = view(true);
    let handler = handler(&view);
    let mut cache = Cache::new(Arc::new(view.clone()));
    let mut out = Vec::new();
    let plain = Query {
        name: "web.shop.svc.clusterset.local",
        qtype: 1,
        qclass: 1,
        edns: None,
        cookie: false,
        id: 7,
        rd: true,
        cd: false,
    }
    .bytes();
    let mut response = plain.clone();
    response[2] |= 0x80;
    let mut no_question = plain[..12].to_vec();
    no_question[5] = 0;
    let mut two_questions = plain.clone();
    two_questions[5] = 2;
    two_questions.extend_from_slice(&plain[12..]);
    let mut notify = plain.clone();
    notify[2] |= 4 << 3;
    let mut pointer = plain[..12].to_vec();
    pointer.extend([0xC0, 12, 0, 1, 0, 1]);
    let mut subnet = plain.clone();
    subnet[11] = 1;
    subnet.extend([0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 8, 0, 8, 0, 4, 0, 1, 0, 0]);
    let mut bad_subnet = plain.clone();
    bad_subnet[11] = 1;
    bad_subnet.extend([0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 6, 0, 8, 0, 2, 0, 9]);
    let mut trailing = plain.clone();
    trailing.extend([1, 2, 3]);
    let table: Vec<(&str, Vec<u8>, Option<Reply>)> = vec![
        ("short", plain[..11].to_vec(), Some(Reply::Nothing)),
        ("a response", response, Some(Reply::Nothing)),
        ("garbage", plain[..14].to_vec(), Some(Reply::Uncounted)),
        (
            "no question",
            no_question,
            Some(Reply::Counted("", "FORMERR")),
        ),
        ("two questions", two_questions, None),
        ("NOTIFY", notify, None),
        ("a pointer", pointer, None),
        ("client subnet", subnet, None),
        ("bad client subnet", bad_subnet, Some(Reply::Uncounted)),
        ("trailing bytes", trailing, None),
    ];
    for (what, query, want) in table {
        for protocol in [Protocol::Udp, Protocol::Tcp] {
            for _ in 0..2 {
                let reply = cache.respond(&handler, &query, src(), protocol, &mut out);
                if let Some(want) = &want {
                    assert_eq!(&reply, want, "{what}");
                }
                match handler.reference(&view, &query, src(), protocol) {
                    None => assert_eq!(reply, Reply::Nothing, "{what}"),
                    Some(bytes) => assert_eq!(out, bytes, "{what} {protocol:?}"),
                }
            }
        }
    }
}

/// Counts the answers a change recomputes: only the changed service's names, and everything
/// when the first sync completes.
#[test]
fn a_new_view_recomputes_only_what_changed() {
    let old = view(true);
    let handler = handler(&old);
    let mut cache = Cache::new(Arc::new(old.clone()));
    check_all(&handler, &mut cache, &old, 0);
    let full = cache.computed();

    // web gets another ClusterSetIP: a new Arc for its import, every other import kept.
    let mut new = old.clone();
    let key = ServiceKey::new("shop", "web");
    let mut imports = (*new.imports).clone();
    let mut web = (*imports[&key]).clone();
    web.ips.push("241.0.9.9".parse().unwrap());
    imports.insert(key, Arc::new(web));
    new.imports = Arc::new(imports);
    cache.refresh(Arc::new(new.clone()));
    check_all(&handler, &mut cache, &new, 1);
    let count = |f: &dyn Fn(&str) -> bool| names(&new).iter().filter(|n| f(n)).count() as u64;
    let web = count(&|n| n.ends_with("web.shop.svc.clusterset.local."));
    assert_eq!(cache.computed() - full, web * KEYS_PER_NAME);

    // The first sync completes: everything but the refused names is recomputed.
    let before = cache.computed();
    let mut unsynced = new.clone();
    unsynced.synced = false;
    cache.refresh(Arc::new(unsynced.clone()));
    check_all(&handler, &mut cache, &unsynced, 2);
    assert_eq!(full, count(&|_| true) * KEYS_PER_NAME, "one answer per key");
    // (Unsynced, cluster.local has no records: fewer names are asked.)
    let asked = names(&unsynced);
    let refused = ["example.com.", "."].len();
    assert_eq!(
        cache.computed() - before,
        (asked.len() - refused) as u64 * KEYS_PER_NAME
    );
}

#[test]
fn a_hit_carries_the_id_flags_and_case_of_its_own_query() {
    let view = view(true);
    let handler = handler(&view);
    let mut cache = Cache::new(Arc::new(view.clone()));
    let mut out = Vec::new();
    let first = Query {
        name: "WEB.shop.svc.clusterset.local",
        qtype: 1,
        qclass: 1,
        edns: None,
        cookie: false,
        id: 1,
        rd: true,
        cd: true,
    }
    .bytes();
    let second = Query {
        name: "web.SHOP.svc.clusterset.local",
        qtype: 1,
        qclass: 1,
        edns: None,
        cookie: false,
        id: 2,
        rd: false,
        cd: false,
    }
    .bytes();
    cache.respond(&handler, &first, src(), Protocol::Udp, &mut out);
    let computed = cache.computed();
    cache.respond(&handler, &second, src(), Protocol::Udp, &mut out);
    assert_eq!(cache.computed(), computed, "a hit");
    assert_eq!(&out[..4], &[0, 2, 0x84, 0]);
    assert_eq!(&out[12..second.len()], &second[12..]);
}

/// The UDP loop answers queries in batches (what is queued is taken without waiting, and the
/// responses go out in one `sendmmsg`): a burst sent without reading gets every answer, each
/// the reference bytes of its own query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_udp_queries_gets_every_answer() {
    let view = view(true);
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let server = udp.local_addr().unwrap();
    let (tcp, _) = guard().await;
    let stop = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(bowline_dns::server::serve(
        vec![udp],
        tcp,
        handler(&view),
        stop.clone(),
    ));
    let names = names(&view);
    let burst = tokio::task::spawn_blocking(move || {
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let queries: BTreeMap<u16, Vec<u8>> = (0..200u16)
            .map(|id| {
                let name = &names[usize::from(id) % names.len()];
                let query = Query {
                    name,
                    qtype: [1, 28, 33][usize::from(id) % 3],
                    qclass: 1,
                    edns: Some(1232),
                    cookie: false,
                    id,
                    rd: true,
                    cd: false,
                };
                (id, query.bytes())
            })
            .collect();
        for query in queries.values() {
            client.send_to(query, server).unwrap();
        }
        let mut answers = BTreeMap::new();
        let mut buf = vec![0u8; 4096];
        while answers.len() < queries.len() {
            let (len, _) = client.recv_from(&mut buf).expect("every query is answered");
            let id = u16::from_be_bytes([buf[0], buf[1]]);
            answers.insert(id, buf[..len].to_vec());
        }
        (client.local_addr().unwrap(), queries, answers)
    });
    let (client, queries, answers) = burst.await.unwrap();
    let handler = handler(&view);
    for (id, query) in &queries {
        let want = handler
            .reference(&view, query, client, Protocol::Udp)
            .unwrap();
        assert_eq!(answers[id], want, "query {id}");
    }
    stop.cancel();
    serving.await.unwrap().unwrap();
}

/// A TCP listener on loopback, guarded with small limits: 2 connections, 2 s to send a
/// query's length and header, 2 s of idleness.
async fn guard() -> (bowline_net::Guard, SocketAddr) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = bowline_net::Limits {
        max_connections: 2,
        handshake_timeout: Duration::from_secs(2),
        first_bytes: 14,
        idle_timeout: Duration::from_secs(2),
    };
    let metrics = std::sync::Arc::new(bowline_net::Metrics::default());
    (
        bowline_net::Guard::new(listener, "dns-tcp", limits, metrics),
        addr,
    )
}

/// Over TCP, queries sent back to back on one connection are answered in order with the
/// reference bytes; connections over the listener's limit are closed, idle ones ended, and
/// then the listener serves new ones again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_answers_queries_in_order_within_the_listeners_limits() {
    use std::io::{Read, Write};
    let view = view(true);
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (tcp, server) = guard().await;
    let stop = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(bowline_dns::server::serve(
        vec![udp],
        tcp,
        handler(&view),
        stop.clone(),
    ));
    let names = names(&view);
    let queries: Vec<Vec<u8>> = (0..3u16)
        .map(|id| {
            Query {
                name: &names[usize::from(id) % names.len()],
                qtype: 1,
                qclass: 1,
                edns: None,
                cookie: false,
                id,
                rd: true,
                cd: false,
            }
            .bytes()
        })
        .collect();
    let reference = handler(&view);
    let want: Vec<Vec<u8>> = queries
        .iter()
        .map(|q| reference.reference(&view, q, src(), Protocol::Tcp).unwrap())
        .collect();
    let exchange = move || {
        let read_response = |c: &mut std::net::TcpStream| {
            let mut len = [0u8; 2];
            c.read_exact(&mut len).unwrap();
            let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
            c.read_exact(&mut body).unwrap();
            body
        };
        let connect = || {
            let c = std::net::TcpStream::connect(server).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c
        };
        let mut first = connect();
        let mut framed = Vec::new();
        for q in &queries {
            framed.extend_from_slice(&u16::try_from(q.len()).unwrap().to_be_bytes());
            framed.extend_from_slice(q);
        }
        first.write_all(&framed).unwrap();
        for want in &want {
            assert_eq!(&read_response(&mut first), want);
        }
        // A second connection fills the limit; a third is closed at once.
        let _second = connect();
        let mut third = connect();
        let mut byte = [0u8; 1];
        assert_eq!(third.read(&mut byte).unwrap(), 0, "over the limit: closed");
        // The first two go idle and are ended; then a new connection is served.
        assert_eq!(first.read(&mut byte).unwrap(), 0, "idle: ended");
        std::thread::sleep(Duration::from_millis(2500));
        let mut fourth = connect();
        fourth.write_all(&framed[..2 + queries[0].len()]).unwrap();
        assert_eq!(&read_response(&mut fourth), &want[0]);
    };
    tokio::task::spawn_blocking(exchange).await.unwrap();
    stop.cancel();
    serving.await.unwrap().unwrap();
}

/// A raw message: id 9, `flags` (opcode in bits 3–6 of the first byte), the questions
/// (`name`, type A), and an OPT record of EDNS `version` when given.
fn raw(flags: u8, names: &[&str], edns_version: Option<u8>) -> Vec<u8> {
    let mut m = vec![
        0,
        9,
        flags,
        0,
        0,
        u8::try_from(names.len()).unwrap(),
        0,
        0,
        0,
        0,
        0,
    ];
    m.push(u8::from(edns_version.is_some()));
    for name in names {
        for label in name.trim_end_matches('.').split('.') {
            m.push(u8::try_from(label.len()).unwrap());
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
    }
    if let Some(version) = edns_version {
        m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, version, 0, 0, 0, 0]);
    }
    m
}

/// What a server that answers only QUERY, only EDNS version 0 and one question per message
/// says to the rest: UPDATE and NOTIFY are not implemented (not a NOERROR that `nsupdate`
/// would take for success), EDNS version 1 is BADVERS, two questions are FORMERR. The cache
/// gives the same bytes as the reference path.
#[test]
fn other_opcodes_edns_versions_and_question_counts_are_refused_by_rule() {
    let view = view(true);
    let handler = handler(&view);
    let name = ZONE;
    let cases = [
        ("UPDATE", raw(5 << 3, &[ZONE], None), 4, None),
        ("NOTIFY", raw(4 << 3, &[ZONE], None), 4, None),
        ("EDNS version 1", raw(1, &[name], Some(1)), 0, Some(1)),
        ("two questions", raw(1, &[name, name], None), 1, None),
    ];
    let mut cache = Cache::new(Arc::new(view.clone()));
    for (what, query, rcode, rcode_high) in cases {
        let reference = handler
            .reference(&view, &query, src(), Protocol::Udp)
            .unwrap_or_else(|| panic!("{what}: no response"));
        let response = hickory_proto::op::Message::from_vec(&reference).unwrap();
        assert_eq!(reference[3] & 0x0f, rcode, "{what}: {response:?}");
        assert_eq!(
            response.edns.as_ref().map(|e| e.rcode_high()),
            rcode_high,
            "{what}: {response:?}"
        );
        let mut out = Vec::new();
        cache.respond(&handler, &query, src(), Protocol::Udp, &mut out);
        assert_eq!(out, reference, "{what}: the cache agrees");
    }
    // EDNS version 0 is still answered.
    let fine = handler
        .reference(&view, &raw(1, &[name], Some(0)), src(), Protocol::Udp)
        .unwrap();
    assert_eq!(fine[3] & 0x0f, 0);
}
