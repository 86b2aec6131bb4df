//! Bowline's fuzz targets, for `scripts/fuzz` (AFL++ through cargo-afl, `fuzz/afl`) and for
//! the test suite, which replays every seed and every committed regression input
//! (`crates/fuzz/regressions/<target>/`).
//!
//! Each target takes arbitrary bytes and panics only when Bowline is wrong:
//!
//! | target     | input                                  | checks                                              |
//! |------------|----------------------------------------|-----------------------------------------------------|
//! | `manifest` | a manifest file                        | every document decoded or refused; refusals' messages bounded |
//! | `dns`      | a DNS message, over UDP and TCP        | the cached answer is the reference path's bytes      |
//! | `xds`      | a sequence of requests and snapshots   | responses decode with the recorded nonce; a stream holds only what it subscribed to |
//! | `config`   | a `bowline.yaml`                       | accepted or refused with problems that name a field  |

mod fixture;
mod seeds;

use std::{net::SocketAddr, path::Path, sync::Arc};

use bowline_dns::{
    cache::{Cache, Reply},
    server::Protocol,
};
use bowline_xds::fuzz::Input;

pub use seeds::seeds;

/// A fuzz target: panics when Bowline is wrong about `data`.
pub type Target = fn(&[u8]);

/// The targets by name, in the order `scripts/fuzz` runs them.
pub const TARGETS: [(&str, Target); 4] = [
    ("manifest", manifest),
    ("dns", dns),
    ("xds", xds),
    ("config", config),
];

/// Builds what the targets answer from (the demo ClusterSet), which the first input would
/// otherwise pay for: a harness calls it once before its fork server starts.
pub fn prepare() {
    fixture::get();
}

/// The target named `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

/// The longest message a refusal may carry: echoed values are capped, so a refusal says what
/// is wrong without repeating a huge input.
const MAX_MESSAGE: usize = 16 * 1024;

/// A manifest file, as the manifest source reads it: non-UTF-8 files are refused before
/// parsing, every document is decoded or refused with a bounded message.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for document in bowline_source::documents::parse(text) {
        match document.result {
            Ok(Some(object)) => {
                let key = object.key();
                assert!(!key.name.is_empty(), "an object without a name: {key}");
            }
            Ok(None) => {}
            Err(e) => assert!(
                e.message.len() <= MAX_MESSAGE,
                "a refusal of {} bytes: {}...",
                e.message.len(),
                &e.message[..e.message.floor_char_boundary(200)]
            ),
        }
    }
}

/// A DNS message from a client, over UDP and TCP: what the cache sends, computed or copied,
/// is exactly what the reference path computes.
pub fn dns(data: &[u8]) {
    let fixture = fixture::get();
    let src: SocketAddr = "127.0.0.1:5300".parse().expect("an address");
    for protocol in [Protocol::Udp, Protocol::Tcp] {
        let reference = fixture
            .dns
            .reference(&fixture.dns_view, data, src, protocol);
        let mut cache = Cache::new(fixture.dns_view.clone());
        for round in ["computed", "copied"] {
            let mut out = Vec::new();
            let reply = cache.respond(&fixture.dns, data, src, protocol, &mut out);
            match &reference {
                None => assert!(
                    matches!(reply, Reply::Nothing),
                    "{round}: an answer to nothing"
                ),
                Some(bytes) => assert_eq!(&out, bytes, "{round} answer over {protocol:?}"),
            }
        }
    }
}

/// A sequence of xDS requests and snapshot changes on one stream. The first byte picks the
/// protocol (odd: delta); then frames of `[tag][length: u16 LE][bytes]`: an even tag is a
/// request of that length, an odd tag publishes snapshot `tag / 2` (no bytes follow).
pub fn xds(data: &[u8]) {
    xds_responses(data);
}

/// [`xds`], returning how many responses the stream sent (and were checked).
pub fn xds_responses(data: &[u8]) -> usize {
    let Some((&kind, mut rest)) = data.split_first() else {
        return 0;
    };
    let mut inputs = Vec::new();
    while let Some((&tag, after)) = rest.split_first() {
        if tag % 2 == 1 {
            inputs.push(Input::Snapshot(usize::from(tag / 2)));
            rest = after;
            continue;
        }
        let Some((len, body)) = after.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_le_bytes(*len)).min(body.len());
        inputs.push(Input::Request(&body[..len]));
        rest = &body[len..];
    }
    let fixture = fixture::get();
    let cache = Arc::new(bowline_xds::cache::Cache::default());
    bowline_xds::fuzz::run(kind % 2 == 1, cache, &fixture.snapshots, &inputs)
}

/// A `bowline.yaml`: accepted, or refused with at least one problem, each naming what is
/// wrong in a bounded message.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/bowline-fuzz/bowline.yaml");
    if let Err(e) = bowline_app::config::Config::parse(path, text) {
        assert!(!e.problems.is_empty(), "refused without a problem");
        for problem in &e.problems {
            assert!(!problem.message.is_empty(), "a problem without a message");
            assert!(
                problem.message.len() + problem.field.len() <= MAX_MESSAGE,
                "a problem of {} bytes",
                problem.message.len()
            );
        }
    }
}

/// Frames an xDS request for [`xds`].
pub fn frame_request(out: &mut Vec<u8>, request: &[u8]) {
    let len = u16::try_from(request.len()).expect("a seed request under 64 KiB");
    out.push(0);
    out.extend(len.to_le_bytes());
    out.extend(request);
}
