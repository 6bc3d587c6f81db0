//! foca's messages on the wire, and the mesh's suspicion notice: a
//! compact, bounds-checked binary codec.
//!
//! ```text
//! NodeId  = name-len:u8 name:bytes family:u8(4|6) address:4|16 port:u16 boot:u64 rejoin:u32
//! Header  = src:NodeId incarnation:u16 dst:NodeId kind:u8 [probe:u8] [other:NodeId]
//! Member  = id:NodeId incarnation:u16 state:u8(0 alive, 1 suspect, 2 down)
//! SuspicionNotice = boot:u64 rejoin:u32 incarnation:u16
//! ```
//!
//! Integers are big-endian. Every read checks what is left first, so a
//! truncated or hostile packet yields a [`CodecError`], never a panic. (All
//! datagrams are authenticated before they reach the codec; this is
//! defence in depth against a member with a bug.)

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::{Buf, BufMut};
use foca::{Header, Member, Message, State};

use crate::identity::{MAX_NAME_LEN, NodeId};

/// Why a foca message could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The packet ended inside a field.
    #[error("truncated {0}")]
    Truncated(&'static str),
    /// A node name longer than [`MAX_NAME_LEN`] or not UTF-8.
    #[error("bad node name")]
    BadName,
    /// An address family other than 4 or 6.
    #[error("bad address family {0}")]
    BadFamily(u8),
    /// An unknown message kind.
    #[error("unknown message kind {0}")]
    BadMessage(u8),
    /// An unknown member state.
    #[error("unknown member state {0}")]
    BadState(u8),
    /// The output buffer is too small.
    #[error("no room for the {0}")]
    NoRoom(&'static str),
    /// Bytes left over after the message.
    #[error("trailing bytes after the {0}")]
    Trailing(&'static str),
}

/// A suspecter's word to the member it suspects (see
/// [`crate::mesh`], datagram kind 6): "I hold you, in this boot and
/// rejoin, for suspect at this incarnation". The member it reaches refutes
/// at once; SWIM alone leaves it to learn of the suspicion from gossip,
/// which a burst of loss can keep from it until the suspicion runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SuspicionNotice {
    /// The suspect's boot ([`NodeId::boot`]).
    pub boot: u64,
    /// The suspect's rejoin count ([`NodeId::rejoin`]).
    pub rejoin: u32,
    /// The incarnation it is suspected at.
    pub incarnation: foca::Incarnation,
}

impl SuspicionNotice {
    /// Encoded length.
    pub const LEN: usize = 14;

    /// The notice about `id` at `incarnation`.
    pub fn about(id: &NodeId, incarnation: foca::Incarnation) -> SuspicionNotice {
        SuspicionNotice {
            boot: id.boot,
            rejoin: id.rejoin,
            incarnation,
        }
    }

    /// Whether it is about `id` (and not about an earlier identity of the
    /// same node).
    pub fn is_about(&self, id: &NodeId) -> bool {
        (self.boot, self.rejoin) == (id.boot, id.rejoin)
    }

    /// The notice on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(Self::LEN);
        buf.put_u64(self.boot);
        buf.put_u32(self.rejoin);
        buf.put_u16(self.incarnation);
        buf
    }

    /// A notice from the wire: exactly [`SuspicionNotice::LEN`] bytes.
    pub fn decode(mut body: &[u8]) -> Result<SuspicionNotice, CodecError> {
        need(&body, Self::LEN, "suspicion notice")?;
        let notice = SuspicionNotice {
            boot: body.get_u64(),
            rejoin: body.get_u32(),
            incarnation: body.get_u16(),
        };
        if body.has_remaining() {
            return Err(CodecError::Trailing("suspicion notice"));
        }
        Ok(notice)
    }
}

/// The codec foca runs with.
#[derive(Debug, Default, Clone, Copy)]
pub struct MeshCodec;

/// Encoded length of a node identity.
pub fn node_id_len(id: &NodeId) -> usize {
    let address = if id.addr.is_ipv4() { 4 } else { 16 };
    1 + id.name.len() + 1 + address + 2 + 8 + 4
}

/// Writes a node identity.
pub fn put_node_id(id: &NodeId, buf: &mut impl BufMut) -> Result<(), CodecError> {
    if id.name.len() > MAX_NAME_LEN {
        return Err(CodecError::BadName);
    }
    if buf.remaining_mut() < node_id_len(id) {
        return Err(CodecError::NoRoom("node identity"));
    }
    buf.put_u8(id.name.len() as u8);
    buf.put_slice(id.name.as_bytes());
    put_address(id.addr.ip(), buf);
    buf.put_u16(id.addr.port());
    buf.put_u64(id.boot);
    buf.put_u32(id.rejoin);
    Ok(())
}

fn need(buf: &impl Buf, n: usize, what: &'static str) -> Result<(), CodecError> {
    if buf.remaining() < n {
        Err(CodecError::Truncated(what))
    } else {
        Ok(())
    }
}

/// Reads a node identity.
pub fn get_node_id(buf: &mut impl Buf) -> Result<NodeId, CodecError> {
    need(buf, 1, "node name length")?;
    let len = buf.get_u8() as usize;
    need(buf, len + 1, "node name")?;
    let mut name = vec![0; len];
    buf.copy_to_slice(&mut name);
    let name = String::from_utf8(name).map_err(|_| CodecError::BadName)?;
    let ip = get_address(buf)?;
    need(buf, 14, "port, boot and rejoin")?;
    let port = buf.get_u16();
    let boot = buf.get_u64();
    let rejoin = buf.get_u32();
    Ok(NodeId {
        name,
        addr: SocketAddr::new(ip, port),
        boot,
        rejoin,
    })
}

/// Reads `family:u8(4|6) address:4|16` (the form identities and record
/// claims share).
pub fn get_address(buf: &mut impl Buf) -> Result<IpAddr, CodecError> {
    need(buf, 1, "address family")?;
    match buf.get_u8() {
        4 => {
            need(buf, 4, "IPv4 address")?;
            let mut o = [0; 4];
            buf.copy_to_slice(&mut o);
            Ok(IpAddr::V4(Ipv4Addr::from(o)))
        }
        6 => {
            need(buf, 16, "IPv6 address")?;
            let mut o = [0; 16];
            buf.copy_to_slice(&mut o);
            Ok(IpAddr::V6(Ipv6Addr::from(o)))
        }
        other => Err(CodecError::BadFamily(other)),
    }
}

/// Writes `family:u8(4|6) address:4|16`.
pub fn put_address(address: IpAddr, buf: &mut impl BufMut) {
    match address {
        IpAddr::V4(a) => {
            buf.put_u8(4);
            buf.put_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            buf.put_u8(6);
            buf.put_slice(&a.octets());
        }
    }
}

fn message_kind(message: &Message<NodeId>) -> u8 {
    match message {
        Message::Ping(_) => 1,
        Message::Ack(_) => 2,
        Message::PingReq { .. } => 3,
        Message::IndirectPing { .. } => 4,
        Message::IndirectAck { .. } => 5,
        Message::ForwardedAck { .. } => 6,
        Message::Announce => 7,
        Message::Feed => 8,
        Message::Gossip => 9,
        Message::Broadcast => 10,
        Message::TurnUndead => 11,
    }
}

impl foca::Codec<NodeId> for MeshCodec {
    type Error = CodecError;

    fn encode_header(&mut self, header: &Header<NodeId>, mut buf: impl BufMut) -> Result<(), CodecError> {
        let (probe, other) = match &header.message {
            Message::Ping(p) | Message::Ack(p) => (Some(*p), None),
            Message::PingReq { target, probe_number } | Message::IndirectAck { target, probe_number } => {
                (Some(*probe_number), Some(target))
            }
            Message::IndirectPing { origin, probe_number } | Message::ForwardedAck { origin, probe_number } => {
                (Some(*probe_number), Some(origin))
            }
            _ => (None, None),
        };
        let len = node_id_len(&header.src)
            + 2
            + node_id_len(&header.dst)
            + 1
            + probe.map_or(0, |_| 1)
            + other.map_or(0, node_id_len);
        if buf.remaining_mut() < len {
            return Err(CodecError::NoRoom("header"));
        }
        put_node_id(&header.src, &mut buf)?;
        buf.put_u16(header.src_incarnation);
        put_node_id(&header.dst, &mut buf)?;
        buf.put_u8(message_kind(&header.message));
        if let Some(p) = probe {
            buf.put_u8(p);
        }
        if let Some(o) = other {
            put_node_id(o, &mut buf)?;
        }
        Ok(())
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<NodeId>, CodecError> {
        let src = get_node_id(&mut buf)?;
        need(&buf, 2, "incarnation")?;
        let src_incarnation = buf.get_u16();
        let dst = get_node_id(&mut buf)?;
        need(&buf, 1, "message kind")?;
        let kind = buf.get_u8();
        let mut probe = || -> Result<u8, CodecError> {
            need(&buf, 1, "probe number")?;
            Ok(buf.get_u8())
        };
        let message = match kind {
            1 => Message::Ping(probe()?),
            2 => Message::Ack(probe()?),
            3..=6 => {
                let probe_number = probe()?;
                let other = get_node_id(&mut buf)?;
                match kind {
                    3 => Message::PingReq {
                        target: other,
                        probe_number,
                    },
                    4 => Message::IndirectPing {
                        origin: other,
                        probe_number,
                    },
                    5 => Message::IndirectAck {
                        target: other,
                        probe_number,
                    },
                    _ => Message::ForwardedAck {
                        origin: other,
                        probe_number,
                    },
                }
            }
            7 => Message::Announce,
            8 => Message::Feed,
            9 => Message::Gossip,
            10 => Message::Broadcast,
            11 => Message::TurnUndead,
            other => return Err(CodecError::BadMessage(other)),
        };
        Ok(Header {
            src,
            src_incarnation,
            dst,
            message,
        })
    }

    fn encode_member(&mut self, member: &Member<NodeId>, mut buf: impl BufMut) -> Result<(), CodecError> {
        // foca requires the buffer untouched when the member does not fit.
        if buf.remaining_mut() < node_id_len(member.id()) + 3 {
            return Err(CodecError::NoRoom("member"));
        }
        put_node_id(member.id(), &mut buf)?;
        buf.put_u16(member.incarnation());
        buf.put_u8(match member.state() {
            State::Alive => 0,
            State::Suspect => 1,
            State::Down => 2,
        });
        Ok(())
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<NodeId>, CodecError> {
        let id = get_node_id(&mut buf)?;
        need(&buf, 3, "member incarnation and state")?;
        let incarnation = buf.get_u16();
        let state = match buf.get_u8() {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Down,
            other => return Err(CodecError::BadState(other)),
        };
        Ok(Member::new(id, incarnation, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Codec;
    use proptest::prelude::*;

    fn id(name: &str, v6: bool, generation: u64) -> NodeId {
        let addr: SocketAddr = if v6 { "[2001:db8::5]:7947" } else { "192.0.2.5:7947" }
            .parse()
            .unwrap();
        NodeId::new(name, addr, generation)
    }

    fn roundtrip(message: Message<NodeId>) {
        let header = Header {
            src: id("node-a", false, 17),
            src_incarnation: 3,
            dst: id("node-b", true, u64::MAX),
            message,
        };
        let mut buf = Vec::new();
        MeshCodec.encode_header(&header, &mut buf).unwrap();
        let mut slice = buf.as_slice();
        assert_eq!(MeshCodec.decode_header(&mut slice), Ok(header));
        assert!(slice.is_empty(), "decode reads exactly one header");
        for cut in 0..buf.len() {
            assert!(MeshCodec.decode_header(&buf[..cut]).is_err(), "truncated at {cut}");
        }
    }

    #[test]
    fn suspicion_notices_round_trip_and_refuse_wrong_lengths() {
        let suspect = id("node-a", true, 17);
        let notice = SuspicionNotice::about(&suspect, 9);
        let wire = notice.encode();
        assert_eq!(wire.len(), SuspicionNotice::LEN);
        assert_eq!(SuspicionNotice::decode(&wire), Ok(notice));
        assert!(notice.is_about(&suspect));
        let renewed = NodeId {
            rejoin: suspect.rejoin + 1,
            ..suspect
        };
        assert!(!notice.is_about(&renewed));
        for cut in 0..wire.len() {
            assert!(SuspicionNotice::decode(&wire[..cut]).is_err(), "truncated at {cut}");
        }
        let mut long = wire.clone();
        long.push(0);
        assert_eq!(
            SuspicionNotice::decode(&long),
            Err(CodecError::Trailing("suspicion notice"))
        );
    }

    #[test]
    fn every_message_kind_round_trips_and_truncations_fail() {
        let other = id("node-c", true, 9);
        roundtrip(Message::Ping(1));
        roundtrip(Message::Ack(2));
        roundtrip(Message::PingReq {
            target: other.clone(),
            probe_number: 3,
        });
        roundtrip(Message::IndirectPing {
            origin: other.clone(),
            probe_number: 4,
        });
        roundtrip(Message::IndirectAck {
            target: other.clone(),
            probe_number: 5,
        });
        roundtrip(Message::ForwardedAck {
            origin: other,
            probe_number: 6,
        });
        for m in [
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ] {
            roundtrip(m);
        }
    }

    #[test]
    fn member_encoding_leaves_a_small_buffer_clean() {
        let member = Member::new(id("n", false, 1), 7, State::Suspect);
        let mut small = [0u8; 10];
        let mut out = &mut small[..];
        assert!(MeshCodec.encode_member(&member, &mut out).is_err());
        assert_eq!(out.len(), 10, "nothing written");
        let mut buf = Vec::new();
        MeshCodec.encode_member(&member, &mut buf).unwrap();
        assert_eq!(MeshCodec.decode_member(buf.as_slice()), Ok(member));
    }

    proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = MeshCodec.decode_header(bytes.as_slice());
            let _ = MeshCodec.decode_member(bytes.as_slice());
        }
    }
}
