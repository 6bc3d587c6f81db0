//! Communities (RFC 1997) and large communities (RFC 8092), with the
//! well-known ones and their text forms.

use crate::error::Error;
use std::fmt;
use std::hash::Hash;
use std::str::FromStr;

/// A standard community (RFC 1997): AS:value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

impl Community {
    /// GRACEFUL_SHUTDOWN (RFC 8326).
    pub const GRACEFUL_SHUTDOWN: Community = Community(0xffff_0000);
    /// ACCEPT_OWN (RFC 7611).
    pub const ACCEPT_OWN: Community = Community(0xffff_0001);
    /// LLGR_STALE (RFC 9494).
    pub const LLGR_STALE: Community = Community(0xffff_0006);
    /// NO_LLGR (RFC 9494).
    pub const NO_LLGR: Community = Community(0xffff_0007);
    /// BLACKHOLE (RFC 7999).
    pub const BLACKHOLE: Community = Community(0xffff_029a);
    /// NO_EXPORT (RFC 1997).
    pub const NO_EXPORT: Community = Community(0xffff_ff01);
    /// NO_ADVERTISE (RFC 1997).
    pub const NO_ADVERTISE: Community = Community(0xffff_ff02);
    /// NO_EXPORT_SUBCONFED (RFC 1997).
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xffff_ff03);
    /// NOPEER (RFC 3765).
    pub const NO_PEER: Community = Community(0xffff_ff04);

    const WELL_KNOWN: [(Community, &'static str); 9] = [
        (Community::GRACEFUL_SHUTDOWN, "graceful-shutdown"),
        (Community::ACCEPT_OWN, "accept-own"),
        (Community::LLGR_STALE, "llgr-stale"),
        (Community::NO_LLGR, "no-llgr"),
        (Community::BLACKHOLE, "blackhole"),
        (Community::NO_EXPORT, "no-export"),
        (Community::NO_ADVERTISE, "no-advertise"),
        (Community::NO_EXPORT_SUBCONFED, "no-export-subconfed"),
        (Community::NO_PEER, "no-peer"),
    ];

    /// The community `asn:value`.
    pub fn new(asn: u16, value: u16) -> Community {
        Community((u32::from(asn) << 16) | u32::from(value))
    }

    /// The high 16 bits.
    pub fn asn(&self) -> u16 {
        (self.0 >> 16) as u16
    }

    /// The low 16 bits.
    pub fn value(&self) -> u16 {
        self.0 as u16
    }

    /// The well-known communities and their names.
    pub fn well_known() -> impl Iterator<Item = (Community, &'static str)> {
        Self::WELL_KNOWN.into_iter()
    }

    /// The well-known name, if this is a well-known community.
    pub fn name(&self) -> Option<&'static str> {
        Self::WELL_KNOWN.iter().find(|(c, _)| c == self).map(|(_, n)| *n)
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "{}:{}", self.asn(), self.value()),
        }
    }
}

impl FromStr for Community {
    type Err = Error;

    /// `AS:VALUE` with both parts 0 to 65535, or a well-known name
    /// (`no-export`, `NO_EXPORT`, `no-advertise`, ...).
    fn from_str(s: &str) -> Result<Self, Error> {
        let normalised = s.trim().to_ascii_lowercase().replace('_', "-");
        if let Some((c, _)) = Self::WELL_KNOWN.iter().find(|(_, n)| *n == normalised) {
            return Ok(*c);
        }
        let bad = || {
            Error::malformed(
                "community",
                format!("{s:?} is neither AS:VALUE (each 0 to 65535) nor a well-known name such as no-export"),
            )
        };
        let (asn, value) = s.trim().split_once(':').ok_or_else(bad)?;
        Ok(Community::new(
            asn.parse().map_err(|_| bad())?,
            value.parse().map_err(|_| bad())?,
        ))
    }
}

/// A large community (RFC 8092): Global Administrator, Local Data 1, Local Data 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    /// Global Administrator (an AS number).
    pub global_admin: u32,
    /// Local Data Part 1.
    pub local_data_1: u32,
    /// Local Data Part 2.
    pub local_data_2: u32,
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.global_admin, self.local_data_1, self.local_data_2)
    }
}

impl FromStr for LargeCommunity {
    type Err = Error;

    /// `A:B:C`, each 0 to 4294967295.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::malformed(
                "large community",
                format!("{s:?} is not GLOBAL:LOCAL1:LOCAL2 with each part 0 to 4294967295"),
            )
        };
        let parts: Vec<&str> = s.trim().split(':').collect();
        let [a, b, c] = parts.as_slice() else {
            return Err(bad());
        };
        Ok(LargeCommunity {
            global_admin: a.parse().map_err(|_| bad())?,
            local_data_1: b.parse().map_err(|_| bad())?,
            local_data_2: c.parse().map_err(|_| bad())?,
        })
    }
}
