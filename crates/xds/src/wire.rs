//! ADS on the wire. A response is assembled from the cache's encoded resources, which every
//! stream shares (`Bytes`, never copied per stream), and sent by a response body of our own:
//! a stream holds no encode buffer between responses. tonic's generated server would encode
//! each response again into a per-stream buffer that keeps the size of the largest response
//! for as long as the stream lives (about 146 KB per stream for a 1,000-endpoint assignment).
//!
//! ```text
//!  gRPC message = [0][length: u32 BE][protobuf message]
//!  DiscoveryResponse      = version_info(1) type_url(4) nonce(5)  ++ resource entries
//!  DeltaDiscoveryResponse = system_version_info(1) type_url(4) nonce(5) removed(6)
//!                           ++ for each resource: field 2 { version(1) name(3) ++ entry }
//!  entry = field 2 (tag, length, encoded Any): both DiscoveryResponse.resources and
//!          Resource.resource are field 2, so the cache encodes it once for both.
//! ```
//!
//! Protobuf parsers accept fields in any order, so the small per-response fields go first and
//! the shared entries follow as they are.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{BufMut, Bytes, BytesMut};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryResponse, DiscoveryResponse, Resource,
};
use http::HeaderMap;
use prost::{
    Message,
    encoding::{WireType, encode_key, encode_varint, encoded_len_varint},
};
use tokio::sync::mpsc;
use tonic::Status;

use crate::cache::Encoded;

/// Entries smaller than this are copied into the response's own chunk (one HTTP/2 DATA frame
/// for many small resources); larger ones are sent as the cache's shared bytes.
const SHARE_FROM: usize = 1024;

/// The field number of `DiscoveryResponse.resources`, `DeltaDiscoveryResponse.resources` and
/// `Resource.resource`.
const RESOURCES: u32 = 2;

/// One gRPC message (header and protobuf message) in chunks: the response's own small fields
/// and the shared bytes of its larger resources.
#[derive(Debug)]
pub struct GrpcMessage {
    chunks: Vec<Bytes>,
}

impl GrpcMessage {
    /// The whole message as one buffer (for tests and debugging; the server sends chunks).
    pub fn to_bytes(&self) -> Bytes {
        let mut all = BytesMut::with_capacity(self.chunks.iter().map(Bytes::len).sum());
        for chunk in &self.chunks {
            all.put_slice(chunk);
        }
        all.freeze()
    }
}

/// Builds a [`GrpcMessage`] of a known length.
struct Assembler {
    chunks: Vec<Bytes>,
    small: BytesMut,
}

impl Assembler {
    /// A message whose protobuf encoding is `len` bytes (the gRPC header is written here).
    fn new(len: usize) -> Result<Self, Status> {
        let len = u32::try_from(len).map_err(|_| {
            Status::resource_exhausted(format!("a response of {len} bytes is too large"))
        })?;
        let mut small = BytesMut::with_capacity(SHARE_FROM);
        small.put_u8(0);
        small.put_u32(len);
        Ok(Self {
            chunks: Vec::new(),
            small,
        })
    }

    fn share(&mut self, bytes: &Bytes) {
        if bytes.len() < SHARE_FROM {
            self.small.put_slice(bytes);
        } else {
            self.flush();
            self.chunks.push(bytes.clone());
        }
    }

    fn flush(&mut self) {
        if !self.small.is_empty() {
            self.chunks.push(self.small.split().freeze());
        }
    }

    fn finish(mut self) -> GrpcMessage {
        self.flush();
        GrpcMessage {
            chunks: self.chunks,
        }
    }
}

/// A state-of-the-world response carrying `resources`.
pub fn sotw(
    version_info: String,
    type_url: &str,
    nonce: String,
    resources: &[&Encoded],
) -> Result<GrpcMessage, Status> {
    let head = DiscoveryResponse {
        version_info,
        type_url: type_url.to_string(),
        nonce,
        ..Default::default()
    }
    .encode_to_vec();
    let len = head.len() + resources.iter().map(|r| r.entry().len()).sum::<usize>();
    let mut message = Assembler::new(len)?;
    message.small.put_slice(&head);
    for resource in resources {
        message.share(resource.entry());
    }
    Ok(message.finish())
}

/// A delta response carrying `resources` (by name) and naming `removed`.
pub fn delta(
    system_version_info: String,
    type_url: &str,
    nonce: String,
    resources: &[(String, std::sync::Arc<Encoded>)],
    removed_resources: Vec<String>,
) -> Result<GrpcMessage, Status> {
    let head = DeltaDiscoveryResponse {
        system_version_info,
        type_url: type_url.to_string(),
        nonce,
        removed_resources,
        ..Default::default()
    }
    .encode_to_vec();
    // Each resource's own fields (its version and name); its `resource` is the shared entry.
    let heads: Vec<Vec<u8>> = resources
        .iter()
        .map(|(name, encoded)| {
            Resource {
                version: format!("{:x}", encoded.digest),
                name: name.clone(),
                ..Default::default()
            }
            .encode_to_vec()
        })
        .collect();
    let inner = |head: &Vec<u8>, encoded: &Encoded| head.len() + encoded.entry().len();
    let len = head.len()
        + heads
            .iter()
            .zip(resources)
            .map(|(h, (_, e))| {
                let inner = inner(h, e);
                1 + encoded_len_varint(inner as u64) + inner
            })
            .sum::<usize>();
    let mut message = Assembler::new(len)?;
    message.small.put_slice(&head);
    for (own, (_, encoded)) in heads.iter().zip(resources) {
        encode_key(RESOURCES, WireType::LengthDelimited, &mut message.small);
        encode_varint(inner(own, encoded) as u64, &mut message.small);
        message.small.put_slice(own);
        message.share(encoded.entry());
    }
    Ok(message.finish())
}

/// The field-2 entry of `any`: what [`Encoded`] holds.
pub(crate) fn entry(any: &envoy_types::pb::google::protobuf::Any) -> Bytes {
    let len = any.encoded_len();
    let mut buf = BytesMut::with_capacity(1 + encoded_len_varint(len as u64) + len);
    prost::encoding::message::encode(RESOURCES, any, &mut buf);
    buf.freeze()
}

/// A stream's responses as an HTTP response body: each message's chunks as DATA frames, then
/// the trailers with the stream's status (OK when the stream's task ends without one).
pub struct Responses {
    messages: mpsc::Receiver<Result<GrpcMessage, Status>>,
    chunks: std::vec::IntoIter<Bytes>,
    ended: bool,
}

impl Responses {
    /// A body sending what arrives on `messages`.
    pub fn new(messages: mpsc::Receiver<Result<GrpcMessage, Status>>) -> Self {
        Self {
            messages,
            chunks: Vec::new().into_iter(),
            ended: false,
        }
    }
}

fn trailers(status: &Status) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        // Only a message that cannot be a header value fails: send the code alone.
        let _ = Status::new(status.code(), "").add_header(&mut headers);
    }
    headers
}

impl http_body::Body for Responses {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        loop {
            if let Some(chunk) = self.chunks.next() {
                return Poll::Ready(Some(Ok(http_body::Frame::data(chunk))));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            match ready!(self.messages.poll_recv(cx)) {
                Some(Ok(message)) => self.chunks = message.chunks.into_iter(),
                Some(Err(status)) => {
                    self.ended = true;
                    return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers(&status)))));
                }
                None => {
                    self.ended = true;
                    let ok = trailers(&Status::ok(""));
                    return Poll::Ready(Some(Ok(http_body::Frame::trailers(ok))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.chunks.len() == 0
    }
}
