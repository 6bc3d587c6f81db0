//! OPEN (RFC 4271 section 4.2) with capabilities (RFC 5492) and extended
//! optional parameters (RFC 9072).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+
//! |    Version    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     My Autonomous System      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Hold Time           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         BGP Identifier                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Opt Parm Len  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |             Optional Parameters (type 2: capabilities)        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//!
//! Capability: | Code (1) | Length (1) | Value ... |
//! ```

use super::notification::{code, open_subcode};
use super::{BgpError, Family};
use crate::error::Error;
use crate::reader::Reader;
use std::net::Ipv4Addr;

/// The AS number a 4-octet speaker puts in 2-octet fields (RFC 6793).
pub const AS_TRANS: u16 = 23456;
/// Optional parameter type carrying capabilities.
const PARAM_CAPABILITIES: u8 = 2;
/// RFC 9072: the marker that announces extended optional parameters.
const PARAM_EXTENDED: u8 = 255;

mod capability_code {
    pub(super) const MULTIPROTOCOL: u8 = 1;
    pub(super) const ROUTE_REFRESH: u8 = 2;
    pub(super) const EXTENDED_NEXT_HOP: u8 = 5;
    pub(super) const GRACEFUL_RESTART: u8 = 64;
    pub(super) const FOUR_OCTET_AS: u8 = 65;
    pub(super) const ENHANCED_ROUTE_REFRESH: u8 = 70;
}

/// Per-family state in the graceful restart capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GracefulRestartFamily {
    /// The family.
    pub family: Family,
    /// F bit: forwarding state was preserved across the restart.
    pub forwarding_preserved: bool,
}

/// The graceful restart capability (RFC 4724, N bit from RFC 8538).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GracefulRestart {
    /// R bit: the sender has restarted.
    pub restart_state: bool,
    /// N bit: the sender supports graceful NOTIFICATION (RFC 8538).
    pub notification: bool,
    /// Seconds the peer should keep our routes (12 bits).
    pub restart_time: u16,
    /// Families whose forwarding state the sender preserves.
    pub families: Vec<GracefulRestartFamily>,
}

/// One tuple of the extended next hop capability (RFC 8950 section 3):
/// routes of `family` may carry a next hop of address family
/// `next_hop_afi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExtendedNextHop {
    /// The NLRI's family (its SAFI carried in two octets on the wire).
    pub family: Family,
    /// The next hop's AFI.
    pub next_hop_afi: u16,
}

impl ExtendedNextHop {
    /// IPv4 unicast routes with IPv6 next hops: what an unnumbered
    /// session over IPv6 link-local addresses needs.
    pub const IPV4_OVER_IPV6: ExtendedNextHop = ExtendedNextHop {
        family: Family::IPV4_UNICAST,
        next_hop_afi: Family::IPV6_UNICAST.afi,
    };
}

/// A capability advertised in OPEN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Code 1: multiprotocol extensions for a family (RFC 4760).
    Multiprotocol(Family),
    /// Code 2: route refresh (RFC 2918).
    RouteRefresh,
    /// Code 70: enhanced route refresh (RFC 7313): a refresh is framed by
    /// Beginning- and End-of-Route-Refresh markers.
    EnhancedRouteRefresh,
    /// Code 5: extended next hop encoding (RFC 8950).
    ExtendedNextHop(Vec<ExtendedNextHop>),
    /// Code 64: graceful restart (RFC 4724).
    GracefulRestart(GracefulRestart),
    /// Code 65: 4-octet AS number support, with the sender's AS (RFC 6793).
    FourOctetAs(u32),
    /// Any other capability, kept as it came.
    Unknown {
        /// Capability code.
        code: u8,
        /// Capability value.
        value: Vec<u8>,
    },
}

impl Capability {
    /// The capability code.
    pub fn code(&self) -> u8 {
        match self {
            Capability::Multiprotocol(_) => capability_code::MULTIPROTOCOL,
            Capability::RouteRefresh => capability_code::ROUTE_REFRESH,
            Capability::EnhancedRouteRefresh => capability_code::ENHANCED_ROUTE_REFRESH,
            Capability::ExtendedNextHop(_) => capability_code::EXTENDED_NEXT_HOP,
            Capability::GracefulRestart(_) => capability_code::GRACEFUL_RESTART,
            Capability::FourOctetAs(_) => capability_code::FOUR_OCTET_AS,
            Capability::Unknown { code, .. } => *code,
        }
    }

    fn value(&self) -> Vec<u8> {
        match self {
            Capability::Multiprotocol(f) => {
                let a = f.afi.to_be_bytes();
                vec![a[0], a[1], 0, f.safi]
            }
            Capability::RouteRefresh | Capability::EnhancedRouteRefresh => vec![],
            Capability::ExtendedNextHop(tuples) => tuples
                .iter()
                .flat_map(|t| {
                    let [a0, a1] = t.family.afi.to_be_bytes();
                    let [n0, n1] = t.next_hop_afi.to_be_bytes();
                    [a0, a1, 0, t.family.safi, n0, n1]
                })
                .collect(),
            Capability::GracefulRestart(gr) => {
                let flags = (u16::from(gr.restart_state) << 15) | (u16::from(gr.notification) << 14);
                let mut v = (flags | (gr.restart_time & 0x0fff)).to_be_bytes().to_vec();
                for f in &gr.families {
                    v.extend_from_slice(&f.family.afi.to_be_bytes());
                    v.push(f.family.safi);
                    v.push(u8::from(f.forwarding_preserved) << 7);
                }
                v
            }
            Capability::FourOctetAs(asn) => asn.to_be_bytes().to_vec(),
            Capability::Unknown { value, .. } => value.clone(),
        }
    }

    fn decode(code: u8, value: &[u8]) -> Result<Capability, BgpError> {
        let malformed = |what: &str| {
            BgpError::new(
                super::notification::code::OPEN,
                open_subcode::UNSPECIFIC,
                [],
                format!("capability {code} is malformed: {what}"),
            )
        };
        Ok(match code {
            capability_code::MULTIPROTOCOL => match value {
                [a0, a1, _reserved, safi] => Capability::Multiprotocol(Family {
                    afi: u16::from_be_bytes([*a0, *a1]),
                    safi: *safi,
                }),
                _ => return Err(malformed("multiprotocol needs 4 octets")),
            },
            capability_code::ROUTE_REFRESH => {
                if !value.is_empty() {
                    return Err(malformed("route refresh carries no value"));
                }
                Capability::RouteRefresh
            }
            capability_code::ENHANCED_ROUTE_REFRESH => {
                if !value.is_empty() {
                    return Err(malformed("enhanced route refresh carries no value"));
                }
                Capability::EnhancedRouteRefresh
            }
            capability_code::EXTENDED_NEXT_HOP => {
                if value.is_empty() || !value.len().is_multiple_of(6) {
                    return Err(malformed("extended next hop needs 6n octets, n at least 1"));
                }
                let tuples = value
                    .chunks_exact(6)
                    .map(|c| {
                        let safi = u16::from_be_bytes([c[2], c[3]]);
                        Ok(ExtendedNextHop {
                            family: Family {
                                afi: u16::from_be_bytes([c[0], c[1]]),
                                safi: u8::try_from(safi).map_err(|_| malformed("a SAFI above 255"))?,
                            },
                            next_hop_afi: u16::from_be_bytes([c[4], c[5]]),
                        })
                    })
                    .collect::<Result<Vec<_>, BgpError>>()?;
                Capability::ExtendedNextHop(tuples)
            }
            capability_code::GRACEFUL_RESTART => {
                if value.len() < 2 || !(value.len() - 2).is_multiple_of(4) {
                    return Err(malformed("graceful restart needs 2 + 4n octets"));
                }
                let head = u16::from_be_bytes([value[0], value[1]]);
                let families = value[2..]
                    .chunks_exact(4)
                    .map(|c| GracefulRestartFamily {
                        family: Family {
                            afi: u16::from_be_bytes([c[0], c[1]]),
                            safi: c[2],
                        },
                        forwarding_preserved: c[3] & 0x80 != 0,
                    })
                    .collect();
                Capability::GracefulRestart(GracefulRestart {
                    restart_state: head & 0x8000 != 0,
                    notification: head & 0x4000 != 0,
                    restart_time: head & 0x0fff,
                    families,
                })
            }
            capability_code::FOUR_OCTET_AS => match value {
                [a, b, c, d] => {
                    let asn = u32::from_be_bytes([*a, *b, *c, *d]);
                    if asn == 0 {
                        return Err(BgpError::new(
                            super::notification::code::OPEN,
                            open_subcode::BAD_PEER_AS,
                            [],
                            "4-octet AS capability carries AS 0 (RFC 7607)",
                        ));
                    }
                    Capability::FourOctetAs(asn)
                }
                _ => return Err(malformed("4-octet AS needs 4 octets")),
            },
            _ => Capability::Unknown {
                code,
                value: value.to_vec(),
            },
        })
    }
}

/// An OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The 2-octet My Autonomous System field ([`AS_TRANS`] when the real AS
    /// needs 4 octets; see [`Open::asn`]).
    pub my_as: u16,
    /// Proposed hold time in seconds: 0 or at least 3.
    pub hold_time: u16,
    /// BGP Identifier (router ID), non-zero.
    pub bgp_identifier: Ipv4Addr,
    /// Capabilities, in the order they are sent.
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// An OPEN for `asn` that always advertises 4-octet AS support (putting
    /// [`AS_TRANS`] in the 2-octet field when `asn` does not fit), followed
    /// by `capabilities`.
    pub fn new(asn: u32, hold_time: u16, bgp_identifier: Ipv4Addr, capabilities: Vec<Capability>) -> Open {
        let my_as = u16::try_from(asn).unwrap_or(AS_TRANS);
        let mut all = vec![Capability::FourOctetAs(asn)];
        all.extend(
            capabilities
                .into_iter()
                .filter(|c| !matches!(c, Capability::FourOctetAs(_))),
        );
        Open {
            my_as,
            hold_time,
            bgp_identifier,
            capabilities: all,
        }
    }

    /// The AS from the 4-octet AS capability, if the sender sent one.
    pub fn four_octet_asn(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        })
    }

    /// The sender's AS: the 4-octet capability's value if present, else My
    /// Autonomous System.
    pub fn asn(&self) -> u32 {
        self.four_octet_asn().unwrap_or(u32::from(self.my_as))
    }

    /// The families the sender supports (IPv4 unicast if it lists none,
    /// RFC 4760 section 8).
    pub fn families(&self) -> Vec<Family> {
        let listed: Vec<Family> = self
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        if listed.is_empty() {
            vec![Family::IPV4_UNICAST]
        } else {
            listed
        }
    }

    pub(super) fn encode_body(&self, buf: &mut Vec<u8>) -> Result<(), Error> {
        buf.push(4);
        buf.extend_from_slice(&self.my_as.to_be_bytes());
        buf.extend_from_slice(&self.hold_time.to_be_bytes());
        buf.extend_from_slice(&self.bgp_identifier.octets());
        // One capability per optional parameter, as most speakers send them.
        let mut params = Vec::new();
        let mut extended = false;
        let mut encoded = Vec::with_capacity(self.capabilities.len());
        for cap in &self.capabilities {
            let value = cap.value();
            if value.len() > 255 {
                return Err(Error::TooLong {
                    what: "BGP capability value",
                    len: value.len(),
                    max: 255,
                });
            }
            let mut c = vec![cap.code(), value.len() as u8];
            c.extend_from_slice(&value);
            extended |= c.len() > 255;
            encoded.push(c);
        }
        extended |= encoded.iter().map(|c| c.len() + 2).sum::<usize>() > 255;
        for c in encoded {
            params.push(PARAM_CAPABILITIES);
            if extended {
                params.extend_from_slice(&(c.len() as u16).to_be_bytes());
            } else {
                params.push(c.len() as u8);
            }
            params.extend_from_slice(&c);
        }
        if extended {
            buf.extend_from_slice(&[255, PARAM_EXTENDED]);
            buf.extend_from_slice(&(params.len() as u16).to_be_bytes());
        } else {
            buf.push(params.len() as u8);
        }
        buf.extend_from_slice(&params);
        Ok(())
    }

    pub(super) fn decode_body(body: &[u8]) -> Result<Open, BgpError> {
        let truncated =
            |e: crate::error::Truncated| BgpError::new(code::OPEN, open_subcode::UNSPECIFIC, [], e.to_string());
        let mut r = Reader::new(body, "OPEN");
        let version = r.u8().map_err(truncated)?;
        if version != 4 {
            return Err(BgpError::new(
                code::OPEN,
                open_subcode::UNSUPPORTED_VERSION,
                4u16.to_be_bytes(),
                format!("BGP version {version}, only 4 is supported"),
            ));
        }
        let my_as = r.u16().map_err(truncated)?;
        if my_as == 0 {
            return Err(BgpError::new(
                code::OPEN,
                open_subcode::BAD_PEER_AS,
                [],
                "My AS is 0 (RFC 7607)",
            ));
        }
        let hold_time = r.u16().map_err(truncated)?;
        if hold_time == 1 || hold_time == 2 {
            return Err(BgpError::new(
                code::OPEN,
                open_subcode::UNACCEPTABLE_HOLD_TIME,
                [],
                format!("hold time {hold_time} s: must be 0 or at least 3"),
            ));
        }
        let bgp_identifier = r.ipv4().map_err(truncated)?;
        if bgp_identifier.is_unspecified() {
            return Err(BgpError::new(
                code::OPEN,
                open_subcode::BAD_BGP_IDENTIFIER,
                [],
                "BGP Identifier is 0.0.0.0",
            ));
        }
        let mut opt_len = usize::from(r.u8().map_err(truncated)?);
        let mut extended = false;
        if opt_len == 255 && r.rest().first() == Some(&PARAM_EXTENDED) {
            r.u8().map_err(truncated)?;
            opt_len = usize::from(r.u16().map_err(truncated)?);
            extended = true;
        }
        if opt_len != r.remaining() {
            return Err(BgpError::new(
                code::OPEN,
                open_subcode::UNSPECIFIC,
                [],
                format!(
                    "optional parameters length {opt_len}, but {} octets follow",
                    r.remaining()
                ),
            ));
        }
        let mut capabilities = Vec::new();
        while !r.is_empty() {
            let param_type = r.u8().map_err(truncated)?;
            let param_len = if extended {
                usize::from(r.u16().map_err(truncated)?)
            } else {
                usize::from(r.u8().map_err(truncated)?)
            };
            let mut value = r.sub(param_len, "OPEN optional parameter").map_err(truncated)?;
            if param_type != PARAM_CAPABILITIES {
                return Err(BgpError::new(
                    code::OPEN,
                    open_subcode::UNSUPPORTED_OPTIONAL_PARAMETER,
                    [],
                    format!("optional parameter type {param_type} (only 2, capabilities, is defined)"),
                ));
            }
            while !value.is_empty() {
                let cap_code = value.u8().map_err(truncated)?;
                let cap_len = usize::from(value.u8().map_err(truncated)?);
                let cap_value = value.take(cap_len).map_err(truncated)?;
                capabilities.push(Capability::decode(cap_code, cap_value)?);
            }
        }
        Ok(Open {
            my_as,
            hold_time,
            bgp_identifier,
            capabilities,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::{Message, SessionParams};

    /// An OPEN as BIRD 2 sends it for `local as 64512; ipv4; ipv6;` with
    /// graceful restart, laid out after RFC 4271 / 5492 / 4724 / 6793.
    fn bird_like_open() -> Vec<u8> {
        let mut v = vec![0xff; 16];
        v.extend_from_slice(&[0, 0, 1]); // length patched below, type OPEN
        v.extend_from_slice(&[4, 0xfc, 0x00, 0, 240, 198, 51, 100, 254]);
        let caps: &[&[u8]] = &[
            &[1, 4, 0, 1, 0, 1],                // MP ipv4 unicast
            &[1, 4, 0, 2, 0, 1],                // MP ipv6 unicast
            &[2, 0],                            // route refresh
            &[64, 6, 0x80, 120, 0, 1, 1, 0x80], // GR: R bit, 120 s, ipv4 F
            &[65, 4, 0, 0, 0xfc, 0x00],         // 4-octet AS 64512
            &[70, 0],                           // enhanced route refresh
            &[73, 4, 2, b'r', b'1', 0],         // FQDN "r1" (unknown to us)
        ];
        let params: Vec<u8> = caps
            .iter()
            .flat_map(|c| [&[2, c.len() as u8][..], c].concat())
            .collect();
        v.push(params.len() as u8);
        v.extend_from_slice(&params);
        let len = v.len() as u16;
        v[16..18].copy_from_slice(&len.to_be_bytes());
        v
    }

    #[test]
    fn decodes_capabilities_and_keeps_unknown_ones() {
        let bytes = bird_like_open();
        let Message::Open(open) = Message::decode(&bytes, &SessionParams::default()).expect("valid") else {
            panic!("not an OPEN");
        };
        assert_eq!(open.asn(), 64512);
        assert_eq!(open.hold_time, 240);
        assert_eq!(open.bgp_identifier, Ipv4Addr::new(198, 51, 100, 254));
        assert_eq!(open.families(), vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
        assert!(open.capabilities.contains(&Capability::RouteRefresh));
        assert!(open.capabilities.contains(&Capability::EnhancedRouteRefresh));
        assert!(open.capabilities.contains(&Capability::Unknown {
            code: 73,
            value: vec![2, b'r', b'1', 0]
        }));
        let for_70 = Capability::decode(70, &[]).expect("valid");
        assert_eq!((for_70.code(), for_70.value()), (70, vec![]));
        assert!(Capability::decode(70, &[0]).is_err(), "no value allowed");
        let gr = open
            .capabilities
            .iter()
            .find_map(|c| match c {
                Capability::GracefulRestart(gr) => Some(gr.clone()),
                _ => None,
            })
            .expect("GR");
        assert!(gr.restart_state && !gr.notification);
        assert_eq!(gr.restart_time, 120);
        assert_eq!(gr.families.len(), 1);
        assert!(gr.families[0].forwarding_preserved);
        assert_eq!(
            Message::Open(open).encode(&SessionParams::default()).expect("encodes"),
            bytes
        );
    }

    #[test]
    fn extended_next_hop_capability_as_frr_sends_it_for_an_interface_peer() {
        // FRR's `neighbor swp1 interface`: IPv4 unicast over IPv6 next hops.
        let value = [0, 1, 0, 1, 0, 2];
        let capability = Capability::decode(5, &value).expect("valid");
        assert_eq!(
            capability,
            Capability::ExtendedNextHop(vec![ExtendedNextHop::IPV4_OVER_IPV6])
        );
        assert_eq!((capability.code(), capability.value()), (5, value.to_vec()));
        for bad in [&[][..], &[0, 1, 0, 1, 0][..], &[0, 1, 1, 0, 0, 2][..]] {
            let err = Capability::decode(5, bad).expect_err("malformed");
            assert_eq!(err.notification.code, 2, "{err}");
        }
    }

    #[test]
    fn four_octet_asn_uses_as_trans() {
        let open = Open::new(
            4_200_000_001,
            90,
            Ipv4Addr::new(192, 0, 2, 1),
            vec![Capability::RouteRefresh],
        );
        assert_eq!(open.my_as, AS_TRANS);
        assert_eq!(open.asn(), 4_200_000_001);
        let small = Open::new(65001, 90, Ipv4Addr::new(192, 0, 2, 1), vec![]);
        assert_eq!((small.my_as, small.asn()), (65001, 65001));
        let legacy = Open {
            capabilities: vec![],
            ..small
        };
        assert_eq!(legacy.four_octet_asn(), None);
        assert_eq!(legacy.families(), vec![Family::IPV4_UNICAST]);
        assert!(!SessionParams::negotiate(&open, &legacy).four_octet_as);
        assert!(SessionParams::negotiate(&open, &open).four_octet_as);
    }

    #[test]
    fn open_errors_name_the_right_subcode() {
        let check = |patch: &dyn Fn(&mut Vec<u8>), subcode: u8| {
            let mut bytes = bird_like_open();
            patch(&mut bytes);
            let err = Message::decode(&bytes, &SessionParams::default()).expect_err("invalid");
            assert_eq!((err.notification.code, err.notification.subcode), (2, subcode), "{err}");
            err
        };
        let err = check(&|b| b[19] = 3, open_subcode::UNSUPPORTED_VERSION);
        assert_eq!(err.notification.data, vec![0, 4]);
        check(&|b| b[23] = 2, open_subcode::UNACCEPTABLE_HOLD_TIME);
        check(
            &|b| b[24..28].copy_from_slice(&[0, 0, 0, 0]),
            open_subcode::BAD_BGP_IDENTIFIER,
        );
        check(&|b| b[20..22].copy_from_slice(&[0, 0]), open_subcode::BAD_PEER_AS);
        check(&|b| b[29] = 3, open_subcode::UNSUPPORTED_OPTIONAL_PARAMETER);
        check(&|b| b[28] += 1, open_subcode::UNSPECIFIC);
        check(&|b| b[32] = 3, open_subcode::UNSPECIFIC); // MP capability with length 3
    }

    #[test]
    fn extended_optional_parameters_round_trip() {
        let caps = (0..70)
            .map(|i| Capability::Unknown {
                code: 128 + (i % 100) as u8,
                value: vec![i as u8; 3],
            })
            .collect();
        let open = Open::new(65000, 180, Ipv4Addr::new(192, 0, 2, 9), caps);
        let bytes = Message::Open(open.clone())
            .encode(&SessionParams::default())
            .expect("encodes");
        assert_eq!(&bytes[28..30], &[255, 255], "RFC 9072 marker");
        assert_eq!(
            Message::decode(&bytes, &SessionParams::default()),
            Ok(Message::Open(open))
        );
    }
}
