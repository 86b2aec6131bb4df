//! One stream's state machine driven without a connection, for the fuzzer (feature `fuzz`):
//! requests decoded from arbitrary bytes and snapshot changes go through the very methods
//! the server's stream loops call, and what every stream must hold is checked after each.

use std::{collections::BTreeSet, sync::Arc};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use prost::Message;

use bowline_views::ClusterSet;

use crate::{
    cache::Cache,
    server::{Caller, Reply, Stream_, delta_response, sotw_response},
    status::Connections,
};

/// One step of a stream's life.
#[derive(Debug)]
pub enum Input<'a> {
    /// An encoded request (a `DiscoveryRequest`, or a `DeltaDiscoveryRequest` on a delta
    /// stream), as the transport hands it over.
    Request(&'a [u8]),
    /// The views stage publishes `snapshots[i % len]`.
    Snapshot(usize),
}

/// Runs `inputs` through one stream (delta when `delta`) from `snapshots[0]`, as the server's
/// loop does, until the inputs end or the stream would end. Panics when a response does not
/// decode, names another type or nonce than the stream recorded, or the stream holds a
/// resource it is not subscribed to. Returns how many responses were sent.
pub fn run(
    delta: bool,
    cache: Arc<Cache>,
    snapshots: &[Arc<ClusterSet>],
    inputs: &[Input<'_>],
) -> usize {
    let Some(first) = snapshots.first() else {
        return 0;
    };
    let mut sent = 0;
    let mut stream = Stream_::new(1, Connections::default(), cache);
    let mut caller = Caller::detached();
    let mut current = first.clone();
    for input in inputs {
        let replies: Vec<Reply> = match input {
            Input::Request(bytes) => {
                let step = if delta {
                    let Ok(request) = DeltaDiscoveryRequest::decode(*bytes) else {
                        return sent; // the transport ends the stream
                    };
                    stream.on_delta(&mut caller, &request, || current.clone())
                } else {
                    let Ok(request) = DiscoveryRequest::decode(*bytes) else {
                        return sent;
                    };
                    stream.on_sotw(&mut caller, &request, || current.clone())
                };
                match step {
                    Ok(reply) => reply.into_iter().collect(),
                    Err(_) => return sent,
                }
            }
            Input::Snapshot(i) => {
                let next = &snapshots[i % snapshots.len()];
                // The views stage only publishes newer snapshots.
                if next.version <= current.version {
                    continue;
                }
                current = next.clone();
                stream.push(&current, if delta { delta_response } else { sotw_response })
            }
        };
        for reply in replies {
            let Ok(message) = reply else { return sent };
            check_response(&stream, delta, &message.to_bytes());
            sent += 1;
        }
        check_held(&stream);
    }
    sent
}

/// A response decodes as the stream's kind and carries the nonce recorded for its type.
fn check_response(stream: &Stream_, delta: bool, framed: &[u8]) {
    assert!(framed.len() >= 5 && framed[0] == 0, "a gRPC message header");
    let length = u32::from_be_bytes(framed[1..5].try_into().expect("4 bytes")) as usize;
    assert_eq!(length, framed.len() - 5, "the header's length");
    let (type_url, nonce) = if delta {
        let r = DeltaDiscoveryResponse::decode(&framed[5..]).expect("a delta response decodes");
        (r.type_url, r.nonce)
    } else {
        let r = DiscoveryResponse::decode(&framed[5..]).expect("a response decodes");
        (r.type_url, r.nonce)
    };
    let recorded = stream.types.get(&type_url).and_then(|t| t.nonce.clone());
    assert_eq!(recorded.as_deref(), Some(nonce.as_str()), "{type_url}");
}

/// A stream holds (and so diffs against) only the resources it is subscribed to.
fn check_held(stream: &Stream_) {
    for (type_url, state) in &stream.types {
        let Some(names) = &state.names else { continue };
        let held: BTreeSet<String> = stream
            .held
            .resources(type_url)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert!(
            held.is_subset(names),
            "{type_url}: holds {held:?}, subscribed to {names:?}"
        );
    }
}
