//! Reading responses without decoding them: the driver shares the machine's two cores with
//! Bowline, and decoding every 1,000-endpoint ClusterLoadAssignment into structs on 1,000
//! streams cost it ten times Bowline's CPU per change, which then showed as Bowline's latency.
//! The few fields a stream needs are found by walking the protobuf encoding in place.
//!
//! ```text
//!  DiscoveryResponse      version_info 1, resources 2 (Any), nonce 5
//!  DeltaDiscoveryResponse resources 2 (Resource: resource 2 (Any)), nonce 5
//!  Any                    value 2
//!  ClusterLoadAssignment  cluster_name 1, endpoints 2
//!    LocalityLbEndpoints  lb_endpoints 2
//!      LbEndpoint         endpoint 1 → Endpoint address 1 → Address socket_address 1
//!                         → SocketAddress address 2
//! ```

use bytes::{Buf, Bytes};
use prost::encoding::{WireType, decode_key, decode_varint};
use tonic::{
    Status,
    codec::{Codec, DecodeBuf, Decoder},
};
use tonic_prost::ProstEncoder;

use crate::{ads::Target, scenario::Seen};

/// A length-delimited field's payload, or `None` for other wire types.
type Field<'a> = (u32, Option<&'a [u8]>);

/// The fields of one encoded message, in order.
fn fields(mut rest: &[u8]) -> impl Iterator<Item = anyhow::Result<Field<'_>>> {
    std::iter::from_fn(move || (!rest.is_empty()).then(|| next(&mut rest)))
}

fn next<'a>(rest: &mut &'a [u8]) -> anyhow::Result<Field<'a>> {
    let (tag, wire_type) = decode_key(rest)?;
    let payload = match wire_type {
        WireType::Varint => {
            decode_varint(rest)?;
            None
        }
        WireType::SixtyFourBit => {
            take(rest, 8)?;
            None
        }
        WireType::ThirtyTwoBit => {
            take(rest, 4)?;
            None
        }
        WireType::LengthDelimited => {
            let len = usize::try_from(decode_varint(rest)?)?;
            Some(take(rest, len)?)
        }
        WireType::StartGroup | WireType::EndGroup => anyhow::bail!("groups are not used in xDS"),
    };
    Ok((tag, payload))
}

/// Consumes and returns the next `len` bytes.
fn take<'a>(rest: &mut &'a [u8], len: usize) -> anyhow::Result<&'a [u8]> {
    anyhow::ensure!(
        rest.len() >= len,
        "a field runs past the end of its message"
    );
    let (payload, after) = rest.split_at(len);
    *rest = after;
    Ok(payload)
}

/// The payloads of every length-delimited field `tag` of `message`.
fn each(message: &[u8], tag: u32) -> impl Iterator<Item = anyhow::Result<&[u8]>> {
    fields(message).filter_map(move |f| match f {
        Ok((t, Some(payload))) if t == tag => Some(Ok(payload)),
        Ok(_) => None,
        Err(e) => Some(Err(e)),
    })
}

/// The last length-delimited field `tag` of `message` (protobuf's rule for a singular field).
fn one(message: &[u8], tag: u32) -> anyhow::Result<Option<&[u8]>> {
    let mut last = None;
    for payload in each(message, tag) {
        last = Some(payload?);
    }
    Ok(last)
}

fn string(message: &[u8], tag: u32) -> anyhow::Result<String> {
    let bytes = one(message, tag)?.unwrap_or_default();
    Ok(String::from_utf8(bytes.to_vec())?)
}

/// What a stream needs of a response: the version and nonce to ACK, and the assignments of the
/// target cluster it carries.
#[derive(Debug, PartialEq)]
pub struct Received {
    /// `version_info` (SotW) or `system_version_info` (delta).
    pub version: String,
    /// The nonce.
    pub nonce: String,
    /// Every assignment of the target cluster in the response.
    pub seen: Vec<Seen>,
}

impl Received {
    /// Reads a response; `delta` when it is a `DeltaDiscoveryResponse`.
    pub fn read(response: &[u8], delta: bool, target: &Target) -> anyhow::Result<Self> {
        let mut seen = Vec::new();
        for resource in each(response, 2) {
            let any = match delta {
                false => Some(resource?),
                true => one(resource?, 2)?,
            };
            let Some(cla) = any.map(|any| one(any, 2)).transpose()?.flatten() else {
                continue;
            };
            if one(cla, 1)?.unwrap_or_default() == target.cluster.as_bytes() {
                seen.push(assignment(cla, target)?);
            }
        }
        Ok(Self {
            version: string(response, 1)?,
            nonce: string(response, 5)?,
            seen,
        })
    }
}

/// What an encoded ClusterLoadAssignment holds, as [`Target::seen`] reduces it.
fn assignment(cla: &[u8], target: &Target) -> anyhow::Result<Seen> {
    let mut seen = Seen {
        endpoints: 0,
        added: false,
        flipped: false,
    };
    for locality in each(cla, 2) {
        for lb in each(locality?, 2) {
            seen.endpoints += 1;
            let address = match one(lb?, 1)? {
                Some(endpoint) => one(endpoint, 1)?
                    .map(|address| one(address, 1))
                    .transpose()?
                    .flatten()
                    .map(|socket| one(socket, 2))
                    .transpose()?
                    .flatten(),
                None => None,
            };
            if let Some(address) = address {
                seen.added |= address == target.added.as_bytes();
                seen.flipped |= address == target.flipped.as_bytes();
            }
        }
    }
    Ok(seen)
}

/// A codec that encodes requests with prost and hands responses over as their bytes.
#[derive(Debug)]
pub struct RawResponses<T>(std::marker::PhantomData<T>);

impl<T> Default for RawResponses<T> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T: prost::Message + Send + 'static> Codec for RawResponses<T> {
    type Encode = T;
    type Decode = Bytes;
    type Encoder = ProstEncoder<T>;
    type Decoder = Raw;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        Raw
    }
}

/// The [`Decoder`] of [`RawResponses`].
#[derive(Debug)]
pub struct Raw;

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(buf.copy_to_bytes(buf.remaining())))
    }
}
