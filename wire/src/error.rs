//! The crate's error type.

use crate::bfd::BfdError;
use crate::bgp::BgpError;

/// Input ended before a field that must be there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is truncated: it needs {needed} bytes, {available} are left")]
pub struct Truncated {
    /// Which structure or field was being read.
    pub what: &'static str,
    /// How many bytes the field needs.
    pub needed: usize,
    /// How many bytes were left.
    pub available: usize,
}

/// Every way decoding or encoding can fail in this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Input ended early.
    #[error(transparent)]
    Truncated(#[from] Truncated),
    /// A field holds a value this codec does not handle.
    #[error("{what}: unsupported value {value:#x} ({allowed})")]
    Unsupported {
        /// The field.
        what: &'static str,
        /// The value found.
        value: u32,
        /// What is accepted instead.
        allowed: &'static str,
    },
    /// A field is present but breaks the protocol's rules.
    #[error("{what}: {reason}")]
    Malformed {
        /// The structure or field.
        what: &'static str,
        /// What rule it breaks.
        reason: String,
    },
    /// A checksum does not match the data.
    #[error("{what}: checksum {found:#06x} is wrong, expected {expected:#06x}")]
    BadChecksum {
        /// The structure carrying the checksum.
        what: &'static str,
        /// The checksum computed over the data.
        expected: u16,
        /// The checksum the packet carries.
        found: u16,
    },
    /// An encoded message would exceed its protocol's size limit.
    #[error("{what} would be {len} bytes, more than the maximum of {max}")]
    TooLong {
        /// The message.
        what: &'static str,
        /// Its encoded length.
        len: usize,
        /// The protocol's limit.
        max: usize,
    },
    /// A BGP message breaks RFC 4271 or its extensions; carries the NOTIFICATION to send.
    #[error(transparent)]
    Bgp(#[from] BgpError),
    /// A BFD control packet fails a reception check of RFC 5880 section 6.8.6.
    #[error(transparent)]
    Bfd(#[from] BfdError),
}

impl Error {
    pub(crate) fn malformed(what: &'static str, reason: impl Into<String>) -> Self {
        Error::Malformed {
            what,
            reason: reason.into(),
        }
    }
}
