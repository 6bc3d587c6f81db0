//! BFD control packets (RFC 5880 section 4) and the packet-level reception
//! checks of section 6.8.6.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       My Discriminator                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                      Your Discriminator                       |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                    Desired Min TX Interval                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                   Required Min RX Interval                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Required Min Echo RX Interval                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |   Auth Type   |   Auth Len    |    Authentication Data...     |  (if A)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Intervals are in microseconds. Checks that need session state (looking a
//! session up by Your Discriminator, whether authentication is configured,
//! verifying a digest) belong to the session layer; [`ControlPacket::decode`]
//! performs every check that depends on the packet alone.

use crate::error::{Error, Truncated};
use crate::reader::Reader;
use bytes::BufMut;

/// UDP destination port of single-hop BFD control packets (RFC 5881).
pub const SINGLE_HOP_PORT: u16 = 3784;
/// UDP destination port of multihop BFD control packets (RFC 5883).
pub const MULTI_HOP_PORT: u16 = 4784;
/// Length of a control packet without authentication.
pub const MANDATORY_LEN: usize = 24;

/// Session state (the Sta field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// 0
    AdminDown,
    /// 1
    Down,
    /// 2
    Init,
    /// 3
    Up,
}

impl State {
    fn from_bits(bits: u8) -> State {
        match bits & 3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    /// Wire value.
    pub fn bits(self) -> u8 {
        self as u8
    }
}

/// Diagnostic code: why the session last left Up (section 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Diagnostic {
    /// 0
    NoDiagnostic,
    /// 1
    ControlDetectionTimeExpired,
    /// 2
    EchoFunctionFailed,
    /// 3
    NeighborSignaledSessionDown,
    /// 4
    ForwardingPlaneReset,
    /// 5
    PathDown,
    /// 6
    ConcatenatedPathDown,
    /// 7
    AdministrativelyDown,
    /// 8
    ReverseConcatenatedPathDown,
    /// 9–31, reserved.
    Reserved(u8),
}

impl Diagnostic {
    fn from_bits(bits: u8) -> Diagnostic {
        use Diagnostic::*;
        match bits & 0x1f {
            0 => NoDiagnostic,
            1 => ControlDetectionTimeExpired,
            2 => EchoFunctionFailed,
            3 => NeighborSignaledSessionDown,
            4 => ForwardingPlaneReset,
            5 => PathDown,
            6 => ConcatenatedPathDown,
            7 => AdministrativelyDown,
            8 => ReverseConcatenatedPathDown,
            other => Reserved(other),
        }
    }

    /// Wire value (5 bits).
    pub fn bits(self) -> u8 {
        use Diagnostic::*;
        match self {
            NoDiagnostic => 0,
            ControlDetectionTimeExpired => 1,
            EchoFunctionFailed => 2,
            NeighborSignaledSessionDown => 3,
            ForwardingPlaneReset => 4,
            PathDown => 5,
            ConcatenatedPathDown => 6,
            AdministrativelyDown => 7,
            ReverseConcatenatedPathDown => 8,
            Reserved(v) => v & 0x1f,
        }
    }
}

/// The single-bit flags of a control packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags {
    /// P: Poll, a parameter change awaits a Final.
    pub poll: bool,
    /// F: Final, answers a Poll.
    pub final_: bool,
    /// C: Control Plane Independent.
    pub control_plane_independent: bool,
    /// D: Demand mode.
    pub demand: bool,
    /// M: Multipoint, must be zero.
    pub multipoint: bool,
}

/// The optional authentication section (section 4.2 to 4.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Authentication {
    /// Type 1: Simple Password, 1 to 16 octets.
    SimplePassword {
        /// Auth Key ID.
        key_id: u8,
        /// The password.
        password: Vec<u8>,
    },
    /// Type 2 (Keyed MD5) or 3 (Meticulous Keyed MD5): 16-octet digest.
    Md5 {
        /// True for Meticulous Keyed MD5 (type 3).
        meticulous: bool,
        /// Auth Key ID.
        key_id: u8,
        /// Sequence number.
        sequence: u32,
        /// The digest.
        digest: [u8; 16],
    },
    /// Type 4 (Keyed SHA1) or 5 (Meticulous Keyed SHA1): 20-octet hash.
    Sha1 {
        /// True for Meticulous Keyed SHA1 (type 5).
        meticulous: bool,
        /// Auth Key ID.
        key_id: u8,
        /// Sequence number.
        sequence: u32,
        /// The hash.
        hash: [u8; 20],
    },
}

impl Authentication {
    /// The Auth Type code.
    pub fn auth_type(&self) -> u8 {
        match self {
            Authentication::SimplePassword { .. } => 1,
            Authentication::Md5 { meticulous, .. } => 2 + u8::from(*meticulous),
            Authentication::Sha1 { meticulous, .. } => 4 + u8::from(*meticulous),
        }
    }

    /// The Auth Len field: the section's length including type and length.
    pub fn len(&self) -> usize {
        match self {
            Authentication::SimplePassword { password, .. } => 3 + password.len(),
            Authentication::Md5 { .. } => 24,
            Authentication::Sha1 { .. } => 28,
        }
    }

    /// Never true: every section has at least type, length and key ID.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.auth_type());
        buf.put_u8(self.len() as u8);
        match self {
            Authentication::SimplePassword { key_id, password } => {
                buf.put_u8(*key_id);
                buf.put_slice(password);
            }
            Authentication::Md5 {
                key_id,
                sequence,
                digest,
                ..
            } => {
                buf.put_u8(*key_id);
                buf.put_u8(0);
                buf.put_u32(*sequence);
                buf.put_slice(digest);
            }
            Authentication::Sha1 {
                key_id, sequence, hash, ..
            } => {
                buf.put_u8(*key_id);
                buf.put_u8(0);
                buf.put_u32(*sequence);
                buf.put_slice(hash);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Authentication, BfdError> {
        let auth_type = r.u8()?;
        let len = usize::from(r.u8()?);
        let mut body = r.sub(len.saturating_sub(2), "BFD authentication section")?;
        let bad_len = |expected: &'static str| BfdError::BadAuthLength {
            auth_type,
            len,
            expected,
        };
        match auth_type {
            1 => {
                if !(4..=19).contains(&len) {
                    return Err(bad_len("4 to 19 for Simple Password"));
                }
                let key_id = body.u8()?;
                let password = body.take(body.remaining())?.to_vec();
                Ok(Authentication::SimplePassword { key_id, password })
            }
            2 | 3 => {
                if len != 24 {
                    return Err(bad_len("24 for Keyed MD5"));
                }
                let key_id = body.u8()?;
                body.u8()?;
                let sequence = body.u32()?;
                Ok(Authentication::Md5 {
                    meticulous: auth_type == 3,
                    key_id,
                    sequence,
                    digest: body.array()?,
                })
            }
            4 | 5 => {
                if len != 28 {
                    return Err(bad_len("28 for Keyed SHA1"));
                }
                let key_id = body.u8()?;
                body.u8()?;
                let sequence = body.u32()?;
                Ok(Authentication::Sha1 {
                    meticulous: auth_type == 5,
                    key_id,
                    sequence,
                    hash: body.array()?,
                })
            }
            other => Err(BfdError::UnknownAuthType(other)),
        }
    }
}

/// A BFD control packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ControlPacket {
    /// Why the session last went down.
    pub diagnostic: Diagnostic,
    /// The sender's view of the session state.
    pub state: State,
    /// P, F, C, D and M.
    pub flags: Flags,
    /// Detection time multiplier.
    pub detect_multiplier: u8,
    /// The sender's discriminator (non-zero).
    pub my_discriminator: u32,
    /// The discriminator received from the peer, or zero if unknown.
    pub your_discriminator: u32,
    /// Microseconds.
    pub desired_min_tx_interval: u32,
    /// Microseconds.
    pub required_min_rx_interval: u32,
    /// Microseconds; zero: the sender does not support echo.
    pub required_min_echo_rx_interval: u32,
    /// Present when the A bit is set.
    pub authentication: Option<Authentication>,
}

/// Why a received control packet must be discarded (RFC 5880 section 6.8.6).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BfdError {
    /// Fewer bytes than a field needs.
    #[error(transparent)]
    Truncated(#[from] Truncated),
    /// Version is not 1.
    #[error("BFD version {0} (only version 1 exists)")]
    BadVersion(u8),
    /// Length field below the minimum (24, or 26 with A set).
    #[error("BFD Length field {length} is below the minimum of {minimum}")]
    LengthTooShort {
        /// The Length field.
        length: usize,
        /// 24, or 26 when the A bit is set.
        minimum: usize,
    },
    /// Length field larger than the UDP payload.
    #[error("BFD Length field {length} exceeds the {payload} bytes received")]
    LengthBeyondPayload {
        /// The Length field.
        length: usize,
        /// Bytes in the UDP payload.
        payload: usize,
    },
    /// Detect Mult is zero.
    #[error("BFD Detect Mult is zero")]
    ZeroDetectMultiplier,
    /// The M bit is set.
    #[error("BFD Multipoint bit is set")]
    MultipointSet,
    /// My Discriminator is zero.
    #[error("BFD My Discriminator is zero")]
    ZeroMyDiscriminator,
    /// Your Discriminator is zero although the state is Init or Up.
    #[error("BFD Your Discriminator is zero in state {0:?}")]
    ZeroYourDiscriminator(State),
    /// The authentication section has a type this codec does not know.
    #[error("BFD Auth Type {0} is unknown")]
    UnknownAuthType(u8),
    /// The authentication section has the wrong length for its type.
    #[error("BFD Auth Len {len} for Auth Type {auth_type}; expected {expected}")]
    BadAuthLength {
        /// Auth Type.
        auth_type: u8,
        /// Auth Len.
        len: usize,
        /// What the type requires.
        expected: &'static str,
    },
    /// The authentication section does not end where the Length field says.
    #[error("BFD Length field {length} does not match the authentication section's end at {auth_end}")]
    AuthLengthMismatch {
        /// The Length field.
        length: usize,
        /// Where the authentication section ends.
        auth_end: usize,
    },
}

impl ControlPacket {
    /// The encoded length (the Length field).
    pub fn len(&self) -> usize {
        MANDATORY_LEN + self.authentication.as_ref().map_or(0, Authentication::len)
    }

    /// Never true.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Appends the packet to `buf`.
    pub fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u8((1 << 5) | self.diagnostic.bits());
        let f = &self.flags;
        buf.put_u8(
            (self.state.bits() << 6)
                | (u8::from(f.poll) << 5)
                | (u8::from(f.final_) << 4)
                | (u8::from(f.control_plane_independent) << 3)
                | (u8::from(self.authentication.is_some()) << 2)
                | (u8::from(f.demand) << 1)
                | u8::from(f.multipoint),
        );
        buf.put_u8(self.detect_multiplier);
        buf.put_u8(self.len() as u8);
        buf.put_u32(self.my_discriminator);
        buf.put_u32(self.your_discriminator);
        buf.put_u32(self.desired_min_tx_interval);
        buf.put_u32(self.required_min_rx_interval);
        buf.put_u32(self.required_min_echo_rx_interval);
        if let Some(auth) = &self.authentication {
            auth.encode(buf);
        }
    }

    /// Encodes into a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(self.len());
        self.encode(&mut buf);
        buf
    }

    /// Decodes a UDP payload and applies every packet-level check of
    /// section 6.8.6, in the order the RFC lists them.
    pub fn decode(payload: &[u8]) -> Result<ControlPacket, Error> {
        Ok(Self::decode_checked(payload)?)
    }

    fn decode_checked(payload: &[u8]) -> Result<ControlPacket, BfdError> {
        let mut r = Reader::new(payload, "BFD control packet");
        let vers_diag = r.u8()?;
        let version = vers_diag >> 5;
        if version != 1 {
            return Err(BfdError::BadVersion(version));
        }
        let bits = r.u8()?;
        let auth_present = bits & 0x04 != 0;
        let detect_multiplier = r.u8()?;
        let length = usize::from(r.u8()?);
        let minimum = if auth_present { MANDATORY_LEN + 2 } else { MANDATORY_LEN };
        if length < minimum {
            return Err(BfdError::LengthTooShort { length, minimum });
        }
        if length > payload.len() {
            return Err(BfdError::LengthBeyondPayload {
                length,
                payload: payload.len(),
            });
        }
        if detect_multiplier == 0 {
            return Err(BfdError::ZeroDetectMultiplier);
        }
        let flags = Flags {
            poll: bits & 0x20 != 0,
            final_: bits & 0x10 != 0,
            control_plane_independent: bits & 0x08 != 0,
            demand: bits & 0x02 != 0,
            multipoint: bits & 0x01 != 0,
        };
        if flags.multipoint {
            return Err(BfdError::MultipointSet);
        }
        let state = State::from_bits(bits >> 6);
        let my_discriminator = r.u32()?;
        if my_discriminator == 0 {
            return Err(BfdError::ZeroMyDiscriminator);
        }
        let your_discriminator = r.u32()?;
        if your_discriminator == 0 && !matches!(state, State::Down | State::AdminDown) {
            return Err(BfdError::ZeroYourDiscriminator(state));
        }
        let desired_min_tx_interval = r.u32()?;
        let required_min_rx_interval = r.u32()?;
        let required_min_echo_rx_interval = r.u32()?;
        let authentication = if auth_present {
            let mut section = Reader::new(&payload[MANDATORY_LEN..length], "BFD authentication section");
            let auth = Authentication::decode(&mut section)?;
            let auth_end = MANDATORY_LEN + auth.len();
            if auth_end != length {
                return Err(BfdError::AuthLengthMismatch { length, auth_end });
            }
            Some(auth)
        } else {
            None
        };
        Ok(ControlPacket {
            diagnostic: Diagnostic::from_bits(vers_diag),
            state,
            flags,
            detect_multiplier,
            my_discriminator,
            your_discriminator,
            desired_min_tx_interval,
            required_min_rx_interval,
            required_min_echo_rx_interval,
            authentication,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Up packet with MetalLB's default BFD profile (300 ms × 3, echo
    /// 50 ms), laid out byte by byte after section 4.1.
    const FRR_UP: [u8; 24] = [
        0x20, 0xc0, 0x03, 0x18, // v1 diag 0, Up, mult 3, len 24
        0x00, 0x00, 0x00, 0x01, // my discr
        0x00, 0x00, 0x00, 0x02, // your discr
        0x00, 0x04, 0x93, 0xe0, // 300000 us
        0x00, 0x04, 0x93, 0xe0, // 300000 us
        0x00, 0x00, 0xc3, 0x50, // 50000 us
    ];

    #[test]
    fn decodes_every_field() {
        let p = ControlPacket::decode(&FRR_UP).expect("valid");
        assert_eq!(p.state, State::Up);
        assert_eq!(p.diagnostic, Diagnostic::NoDiagnostic);
        assert_eq!(p.detect_multiplier, 3);
        assert_eq!((p.my_discriminator, p.your_discriminator), (1, 2));
        assert_eq!(p.desired_min_tx_interval, 300_000);
        assert_eq!(p.required_min_rx_interval, 300_000);
        assert_eq!(p.required_min_echo_rx_interval, 50_000);
        assert_eq!(p.flags, Flags::default());
        assert_eq!(p.to_bytes(), FRR_UP);
    }

    #[test]
    fn applies_the_section_6_8_6_checks() {
        let with = |i: usize, v: u8| {
            let mut b = FRR_UP;
            b[i] = v;
            ControlPacket::decode(&b)
        };
        let bfd = |r: Result<ControlPacket, Error>| match r {
            Err(Error::Bfd(e)) => e,
            other => panic!("expected a BFD error, got {other:?}"),
        };
        assert_eq!(bfd(with(0, 0x40)), BfdError::BadVersion(2));
        assert!(matches!(bfd(with(3, 23)), BfdError::LengthTooShort { .. }));
        assert!(matches!(bfd(with(3, 25)), BfdError::LengthBeyondPayload { .. }));
        assert_eq!(bfd(with(2, 0)), BfdError::ZeroDetectMultiplier);
        assert_eq!(bfd(with(1, 0xc1)), BfdError::MultipointSet);
        assert_eq!(bfd(with(7, 0)), BfdError::ZeroMyDiscriminator);
        assert_eq!(bfd(with(11, 0)), BfdError::ZeroYourDiscriminator(State::Up));
        // Your Discriminator may be zero while Down.
        let mut down = FRR_UP;
        down[1] = 0x40;
        down[11] = 0;
        assert_eq!(ControlPacket::decode(&down).expect("valid").state, State::Down);
        // A bit set needs at least 26 bytes.
        assert!(matches!(
            bfd(with(1, 0xc4)),
            BfdError::LengthTooShort { minimum: 26, .. }
        ));
    }

    #[test]
    fn authentication_sections() {
        let mut p = ControlPacket::decode(&FRR_UP).expect("valid");
        for auth in [
            Authentication::SimplePassword {
                key_id: 1,
                password: b"secret".to_vec(),
            },
            Authentication::Md5 {
                meticulous: true,
                key_id: 2,
                sequence: 7,
                digest: [0xab; 16],
            },
            Authentication::Sha1 {
                meticulous: false,
                key_id: 3,
                sequence: 9,
                hash: [0xcd; 20],
            },
        ] {
            p.authentication = Some(auth);
            let bytes = p.to_bytes();
            assert_eq!(usize::from(bytes[3]), bytes.len());
            assert_eq!(ControlPacket::decode(&bytes).expect("round trip"), p);
        }
        let mut bytes = p.to_bytes();
        bytes[25] = 24; // SHA1 with MD5's length
        assert!(matches!(
            ControlPacket::decode(&bytes),
            Err(Error::Bfd(BfdError::BadAuthLength { .. }))
        ));
        bytes[24] = 9;
        assert!(matches!(
            ControlPacket::decode(&bytes),
            Err(Error::Bfd(BfdError::UnknownAuthType(9)))
        ));
    }
}
