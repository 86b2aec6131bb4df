//! Starting the release binary on a configuration and learning its addresses, shared by the
//! tests that run it as a process.

#![allow(dead_code, reason = "each test uses some of these")]

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, UdpSocket},
    process::{Child, Command, Stdio},
    time::Duration,
};

/// A running `bowline run`, killed when dropped.
pub struct Bowline {
    pub child: Child,
    pub admin: String,
    pub xds: SocketAddr,
    pub xds_tls: SocketAddr,
    pub dns: SocketAddr,
}

impl Drop for Bowline {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The address after `label` in the startup line
/// `bowline: ClusterSet "demo", admin on http://A/, xDS on X (TLS on T), DNS on D`.
fn address_after(line: &str, label: &str) -> SocketAddr {
    let rest = &line[line
        .find(label)
        .unwrap_or_else(|| panic!("{label} in {line}"))
        + label.len()..];
    let end = rest.find([' ', ')', ',', '/']).unwrap_or(rest.len());
    rest[..end]
        .parse()
        .unwrap_or_else(|e| panic!("{label} in {line}: {e}"))
}

/// `bowline run --config <config>` under `ulimit -n <open_files>` when given.
pub fn start(config: &std::path::Path, open_files: Option<u32>) -> Bowline {
    start_with(config, open_files, "")
}

/// `bowline run` as a process that file permissions bind: run by root (as CI may be), it
/// loses the capabilities that override them (util-linux `setpriv`), so that a read-only
/// directory is read-only to it.
pub fn start_bound_by_permissions(config: &std::path::Path) -> Bowline {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let wrapper = if root {
        "setpriv --bounding-set -dac_override,-dac_read_search,-fowner "
    } else {
        ""
    };
    start_with(config, None, wrapper)
}

fn start_with(config: &std::path::Path, open_files: Option<u32>, wrapper: &str) -> Bowline {
    let limit = open_files.map_or(String::new(), |n| format!("ulimit -n {n} && "));
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(r#"{limit}exec {wrapper}"$0" run --config "$1""#))
        .arg(env!("CARGO_BIN_EXE_bowline"))
        .arg(config);
    let (child, line) = spawn_until(command, |line| {
        line.starts_with("bowline: ClusterSet")
            .then(|| line.to_string())
    });
    Bowline {
        admin: address_after(&line, "admin on http://").to_string(),
        xds: address_after(&line, "xDS on "),
        xds_tls: address_after(&line, "TLS on "),
        dns: address_after(&line, "DNS on "),
        child,
    }
}

/// Spawns `command` and waits (at most a minute) for the first line of its stdout that
/// `pick` takes; stdout is read to its end meanwhile, as a terminal would.
pub fn spawn_until(
    mut command: Command,
    pick: impl Fn(&str) -> Option<String> + Send + 'static,
) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("bowline starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(picked) = pick(&line) {
                let _ = tx.send(picked);
            }
        }
    });
    let picked = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("bowline prints its addresses");
    (child, picked)
}

/// The demo's `bowline.yaml` text with every listener on an ephemeral loopback port, and
/// `extra` appended.
pub fn demo_config(dir: &std::path::Path, extra: &str) -> std::path::PathBuf {
    let config = dir.join("bowline.yaml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace("listen:\n  admin: 127.0.0.1:15014\n", "");
    text.push_str(
        "listen: {admin: 127.0.0.1:0, xds: 127.0.0.1:0, xdsTls: 127.0.0.1:0, dns: 127.0.0.1:0}\n",
    );
    text.push_str(extra);
    std::fs::write(&config, text).unwrap();
    config
}

/// The response to a UDP query for `name` of `qtype` (within 2 s), its id zeroed; `None`
/// without an answer.
pub fn dns_answer(dns: SocketAddr, name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut query = vec![0, 9, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        query.push(u8::try_from(label.len()).unwrap());
        query.extend_from_slice(label.as_bytes());
    }
    query.push(0);
    query.extend(qtype.to_be_bytes());
    query.extend([0, 1]);
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    socket.send_to(&query, dns).ok()?;
    let mut buf = [0u8; 4096];
    let (len, _) = socket.recv_from(&mut buf).ok()?;
    let mut answer = buf[..len].to_vec();
    (len >= 12 && answer[..2] == [0, 9]).then_some(())?;
    answer[..2].fill(0);
    Some(answer)
}

/// The response code of a UDP query for `name` (type A); `None` without an answer.
pub fn dns_rcode(dns: SocketAddr, name: &str) -> Option<u8> {
    dns_answer(dns, name, 1).map(|a| a[3] & 0x0f)
}
