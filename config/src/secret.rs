//! Secrets: the `kubernetes.io/basic-auth` Secrets a BGPPeer's
//! `passwordSecret` names, read as MetalLB reads them (the `password` key),
//! and the TCP MD5 key they hold, which no `Debug` or log line prints.
//!
//! A Secret is part of the configuration: [`Config`](crate::Config) resolves
//! each peer's password from the Secrets of the same reading, so a changed
//! Secret is a changed configuration, and a refused configuration keeps
//! the last good key.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::meta::ObjectMeta;

/// The Secret type a password Secret must have (MetalLB's rule).
pub const BASIC_AUTH: &str = "kubernetes.io/basic-auth";

/// The key holding the password.
pub const PASSWORD_KEY: &str = "password";

/// A core/v1 Secret, the parts meshlb reads. Its values never appear in
/// `Debug` output.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `kubernetes.io/basic-auth`, `Opaque`, ...
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Values by key, base64-encoded (as the API server serves them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Values by key in plain text (a manifest's convenience; they win
    /// over `data`, as the API server merges them).
    #[serde(default, rename = "stringData", skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&String> = self.data.keys().chain(self.string_data.keys()).collect();
        f.debug_struct("Secret")
            .field("metadata", &self.metadata)
            .field("type_", &self.type_)
            .field("keys", &keys)
            .finish_non_exhaustive()
    }
}

impl Secret {
    /// The value of `key`, if the Secret has it; why not, if it cannot be
    /// read (not base64, not UTF-8).
    pub fn value(&self, key: &str) -> Result<Option<String>, SecretValueError> {
        if let Some(plain) = self.string_data.get(key) {
            return Ok(Some(plain.clone()));
        }
        let Some(encoded) = self.data.get(key) else {
            return Ok(None);
        };
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|source| SecretValueError::NotBase64 {
                key: key.to_owned(),
                source,
            })?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| SecretValueError::NotText(key.to_owned()))
    }
}

/// Why a Secret's value cannot be read (phrased to follow "whose" in a
/// message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretValueError {
    /// `data.KEY` is not base64.
    #[error("data.{key} is not base64: {source}")]
    NotBase64 {
        /// The key.
        key: String,
        /// Why.
        source: base64::DecodeError,
    },
    /// `data.KEY` is not UTF-8 text.
    #[error("data.{0} is not UTF-8 text")]
    NotText(String),
}

/// A key's length outside 1 to [`Md5Key::MAX_LEN`] bytes (phrased to
/// follow the key's field in a message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("is {0} bytes long")]
pub struct Md5KeyLength(pub usize);

/// A TCP MD5 key (RFC 2385): 1 to 80 bytes. `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Md5Key(String);

impl Md5Key {
    /// The longest key the kernel takes (`TCP_MD5SIG_MAXKEYLEN`).
    pub const MAX_LEN: usize = 80;

    /// `key` if its length is 1 to [`Md5Key::MAX_LEN`] bytes; otherwise
    /// why not.
    pub fn new(key: impl Into<String>) -> Result<Md5Key, Md5KeyLength> {
        let key = key.into();
        if key.is_empty() || key.len() > Self::MAX_LEN {
            return Err(Md5KeyLength(key.len()));
        }
        Ok(Md5Key(key))
    }

    /// The key's bytes, for the socket option.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Md5Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Md5Key({} bytes, hidden)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_decode_and_never_print() {
        let secret: Secret = serde_yaml_ng::from_str(
            "metadata: {name: s}\ntype: kubernetes.io/basic-auth\ndata: {password: c2VjcmV0, bad: '!!'}\n",
        )
        .unwrap();
        assert_eq!(secret.value(PASSWORD_KEY).unwrap().as_deref(), Some("secret"));
        assert_eq!(secret.value("missing").unwrap(), None);
        assert!(matches!(secret.value("bad"), Err(SecretValueError::NotBase64 { .. })));
        assert!(secret.value("bad").unwrap_err().to_string().contains("not base64"));
        let shown = format!("{secret:?}");
        assert!(!shown.contains("c2VjcmV0") && !shown.contains("secret\""), "{shown}");
        let plain: Secret =
            serde_yaml_ng::from_str("metadata: {name: s}\nstringData: {password: x}\ndata: {password: c2VjcmV0}\n")
                .unwrap();
        assert_eq!(
            plain.value(PASSWORD_KEY).unwrap().as_deref(),
            Some("x"),
            "stringData wins"
        );
        let key = Md5Key::new("secret").unwrap();
        assert_eq!(format!("{key:?}"), "Md5Key(6 bytes, hidden)");
        assert!(Md5Key::new("").is_err() && Md5Key::new("x".repeat(81)).is_err());
    }
}
