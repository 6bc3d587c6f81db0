//! BGP-4 (RFC 4271) messages and a framer for the TCP byte stream.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                           Marker (16 octets of 0xff)          +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Extensions covered: multiprotocol IPv4/IPv6 unicast (RFC 4760, RFC 2545),
//! 4-octet AS numbers (RFC 6793), route refresh (RFC 2918, RFC 7313
//! subtypes), graceful restart (RFC 4724) and End-of-RIB, communities
//! (RFC 1997), large communities (RFC 8092), extended optional parameters
//! (RFC 9072), and revised UPDATE error handling (RFC 7606).
//!
//! Use: feed bytes read from the TCP socket to a [`Framer`], pass each frame
//! to [`Message::decode`] with the [`SessionParams`] negotiated in OPEN, and
//! on [`BgpError`] send its NOTIFICATION and close.

mod framer;
pub mod notification;
mod open;
mod update;

pub use framer::Framer;
pub use notification::{BgpError, Notification};
pub use open::{AS_TRANS, Capability, ExtendedNextHop, GracefulRestart, GracefulRestartFamily, Open};
pub use update::{
    Aggregator, AsPath, AsSegment, AsSegmentKind, AttributeIssue, Community, ErrorAction, LargeCommunity, MpReach,
    MpUnreach, Origin, PathAttribute, Prefix, Prefix4, Prefix6, PrefixAddr, UnknownAttribute, Update, attr_type,
};

use crate::error::Error;
use notification::{code, header_subcode};
use std::fmt;

/// The 16-octet marker that starts every message.
pub const MARKER: [u8; 16] = [0xff; 16];
/// Length of the message header.
pub const HEADER_LEN: usize = 19;
/// Largest message without the RFC 8654 extended-message capability.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The well-known BGP TCP port.
pub const PORT: u16 = 179;

/// Message type codes.
pub mod message_type {
    /// OPEN
    pub const OPEN: u8 = 1;
    /// UPDATE
    pub const UPDATE: u8 = 2;
    /// NOTIFICATION
    pub const NOTIFICATION: u8 = 3;
    /// KEEPALIVE
    pub const KEEPALIVE: u8 = 4;
    /// ROUTE-REFRESH (RFC 2918)
    pub const ROUTE_REFRESH: u8 = 5;
}

/// An address family: AFI and SAFI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    /// Address Family Identifier (1 = IPv4, 2 = IPv6).
    pub afi: u16,
    /// Subsequent Address Family Identifier (1 = unicast).
    pub safi: u8,
}

impl Family {
    /// IPv4 unicast.
    pub const IPV4_UNICAST: Family = Family { afi: 1, safi: 1 };
    /// IPv6 unicast.
    pub const IPV6_UNICAST: Family = Family { afi: 2, safi: 1 };
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Family::IPV4_UNICAST => write!(f, "ipv4-unicast"),
            Family::IPV6_UNICAST => write!(f, "ipv6-unicast"),
            Family { afi, safi } => write!(f, "afi {afi} safi {safi}"),
        }
    }
}

/// What the two OPENs negotiated that changes how UPDATEs are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionParams {
    /// Both sides sent the 4-octet AS capability: AS_PATH and AGGREGATOR
    /// carry 4-octet AS numbers.
    pub four_octet_as: bool,
}

impl SessionParams {
    /// Parameters of a session where both sides support 4-octet AS numbers.
    pub const FOUR_OCTET_AS: SessionParams = SessionParams { four_octet_as: true };

    /// What a session negotiates from the OPEN it sent and the one it got.
    pub fn negotiate(sent: &Open, received: &Open) -> SessionParams {
        SessionParams {
            four_octet_as: sent.four_octet_asn().is_some() && received.four_octet_asn().is_some(),
        }
    }
}

/// ROUTE-REFRESH (RFC 2918; subtype from RFC 7313).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteRefresh {
    /// The family to re-advertise.
    pub family: Family,
    /// 0: normal request, 1: Beginning of Route Refresh, 2: End of Route Refresh.
    pub subtype: u8,
}

/// ROUTE-REFRESH subtypes (RFC 7313 section 3.2).
pub mod route_refresh_subtype {
    /// A request to re-advertise the family's Adj-RIB-Out.
    pub const REQUEST: u8 = 0;
    /// Beginning of Route Refresh: a re-advertisement follows.
    pub const BEGIN: u8 = 1;
    /// End of Route Refresh: the re-advertisement is complete.
    pub const END: u8 = 2;
}

impl RouteRefresh {
    /// `subtype` (see [`route_refresh_subtype`]) for `family`.
    pub fn new(family: Family, subtype: u8) -> RouteRefresh {
        RouteRefresh { family, subtype }
    }
}

/// A BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN
    Open(Open),
    /// UPDATE
    Update(Update),
    /// NOTIFICATION
    Notification(Notification),
    /// KEEPALIVE
    Keepalive,
    /// ROUTE-REFRESH
    RouteRefresh(RouteRefresh),
}

impl Message {
    /// The type code.
    pub fn message_type(&self) -> u8 {
        match self {
            Message::Open(_) => message_type::OPEN,
            Message::Update(_) => message_type::UPDATE,
            Message::Notification(_) => message_type::NOTIFICATION,
            Message::Keepalive => message_type::KEEPALIVE,
            Message::RouteRefresh(_) => message_type::ROUTE_REFRESH,
        }
    }

    /// Encodes the whole message, header included.
    pub fn encode(&self, params: &SessionParams) -> Result<Vec<u8>, Error> {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&MARKER);
        buf.extend_from_slice(&[0, 0, self.message_type()]);
        match self {
            Message::Open(open) => open.encode_body(&mut buf)?,
            Message::Update(update) => update.encode_body(&mut buf, params),
            Message::Notification(n) => {
                buf.push(n.code);
                buf.push(n.subcode);
                buf.extend_from_slice(&n.data);
            }
            Message::Keepalive => {}
            Message::RouteRefresh(rr) => {
                buf.extend_from_slice(&rr.family.afi.to_be_bytes());
                buf.push(rr.subtype);
                buf.push(rr.family.safi);
            }
        }
        if buf.len() > MAX_MESSAGE_LEN {
            return Err(Error::TooLong {
                what: "BGP message",
                len: buf.len(),
                max: MAX_MESSAGE_LEN,
            });
        }
        let len = buf.len() as u16;
        buf[16..18].copy_from_slice(&len.to_be_bytes());
        Ok(buf)
    }

    /// Decodes one whole message (as a [`Framer`] yields it).
    pub fn decode(frame: &[u8], params: &SessionParams) -> Result<Message, BgpError> {
        let (kind, body) = check_header(frame)?;
        let bad_length = |reason: &str| {
            BgpError::new(
                code::MESSAGE_HEADER,
                header_subcode::BAD_MESSAGE_LENGTH,
                (frame.len() as u16).to_be_bytes(),
                format!("{reason}: message length {}", frame.len()),
            )
        };
        match kind {
            message_type::OPEN => {
                if body.len() < 10 {
                    return Err(bad_length("OPEN shorter than 29 octets"));
                }
                Ok(Message::Open(Open::decode_body(body)?))
            }
            message_type::UPDATE => {
                if body.len() < 4 {
                    return Err(bad_length("UPDATE shorter than 23 octets"));
                }
                Ok(Message::Update(Update::decode_body(body, params)?))
            }
            message_type::NOTIFICATION => match body {
                [code, subcode, data @ ..] => Ok(Message::Notification(Notification::new(*code, *subcode, data))),
                _ => Err(bad_length("NOTIFICATION shorter than 21 octets")),
            },
            message_type::KEEPALIVE => {
                if !body.is_empty() {
                    return Err(bad_length("KEEPALIVE must be exactly 19 octets"));
                }
                Ok(Message::Keepalive)
            }
            message_type::ROUTE_REFRESH => match body {
                [a0, a1, subtype, safi] => Ok(Message::RouteRefresh(RouteRefresh {
                    family: Family {
                        afi: u16::from_be_bytes([*a0, *a1]),
                        safi: *safi,
                    },
                    subtype: *subtype,
                })),
                _ => Err(bad_length("ROUTE-REFRESH must be exactly 23 octets")),
            },
            other => Err(BgpError::new(
                code::MESSAGE_HEADER,
                header_subcode::BAD_MESSAGE_TYPE,
                [other],
                format!("unknown message type {other}"),
            )),
        }
    }
}

/// Checks marker and length of a whole message; returns its type and body.
fn check_header(frame: &[u8]) -> Result<(u8, &[u8]), BgpError> {
    if frame.len() < HEADER_LEN {
        return Err(BgpError::new(
            code::MESSAGE_HEADER,
            header_subcode::BAD_MESSAGE_LENGTH,
            (frame.len() as u16).to_be_bytes(),
            format!("{} octets cannot hold a 19-octet header", frame.len()),
        ));
    }
    check_marker(&frame[..16])?;
    let length = u16::from_be_bytes([frame[16], frame[17]]);
    if usize::from(length) != frame.len() || !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&usize::from(length)) {
        return Err(BgpError::new(
            code::MESSAGE_HEADER,
            header_subcode::BAD_MESSAGE_LENGTH,
            length.to_be_bytes(),
            format!("header length {length} for a frame of {} octets", frame.len()),
        ));
    }
    Ok((frame[18], &frame[HEADER_LEN..]))
}

fn check_marker(marker: &[u8]) -> Result<(), BgpError> {
    if marker.iter().any(|b| *b != 0xff) {
        return Err(BgpError::new(
            code::MESSAGE_HEADER,
            header_subcode::CONNECTION_NOT_SYNCHRONIZED,
            [],
            "marker is not all ones",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u16, kind: u8) -> Vec<u8> {
        let mut v = MARKER.to_vec();
        v.extend_from_slice(&len.to_be_bytes());
        v.push(kind);
        v
    }

    #[test]
    fn keepalive_is_exactly_the_header() {
        let bytes = Message::Keepalive.encode(&SessionParams::default()).expect("encodes");
        assert_eq!(bytes, header(19, 4));
        assert_eq!(
            Message::decode(&bytes, &SessionParams::default()),
            Ok(Message::Keepalive)
        );
        let mut long = header(20, 4);
        long.push(0);
        let err = Message::decode(&long, &SessionParams::default()).expect_err("too long");
        assert_eq!((err.notification.code, err.notification.subcode), (1, 2));
        assert_eq!(err.notification.data, vec![0, 20]);
    }

    #[test]
    fn header_errors_carry_rfc4271_notifications() {
        let mut bad_marker = header(19, 4);
        bad_marker[3] = 0;
        let err = Message::decode(&bad_marker, &SessionParams::default()).expect_err("bad marker");
        assert_eq!((err.notification.code, err.notification.subcode), (1, 1));

        let err = Message::decode(&header(19, 9), &SessionParams::default()).expect_err("bad type");
        assert_eq!((err.notification.code, err.notification.subcode), (1, 3));
        assert_eq!(err.notification.data, vec![9]);

        let err = Message::decode(&header(19, 1), &SessionParams::default()).expect_err("short open");
        assert_eq!((err.notification.code, err.notification.subcode), (1, 2));

        let mut rr = header(23, 5);
        rr.extend_from_slice(&[0, 2, 0, 1]);
        let msg = Message::decode(&rr, &SessionParams::default()).expect("route refresh");
        assert_eq!(
            msg,
            Message::RouteRefresh(RouteRefresh {
                family: Family::IPV6_UNICAST,
                subtype: 0
            })
        );
    }

    #[test]
    fn notification_round_trips() {
        let n = Message::Notification(Notification::new(6, 2, b"maintenance".to_vec()));
        let bytes = n.encode(&SessionParams::default()).expect("encodes");
        assert_eq!(Message::decode(&bytes, &SessionParams::default()), Ok(n));
    }
}
