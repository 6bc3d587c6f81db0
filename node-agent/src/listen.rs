//! Where the agent's own servers listen (the introspection API, the
//! metrics): a TCP address, a Unix socket, or nowhere, as the command line
//! spells them (`host:port`, `unix:/path`, `off`).

use std::net::SocketAddr;
use std::path::PathBuf;

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A Unix socket at this path.
    Unix(PathBuf),
    /// Nowhere.
    Off,
}

/// Why a listen address does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    /// `unix:` without a path.
    #[error("unix: needs a path, as in unix:/run/meshlb/api.sock")]
    NoPath,
    /// None of the forms.
    #[error("{0:?} is not host:port, unix:/path or off")]
    Unknown(String),
}

impl std::str::FromStr for Listen {
    type Err = ListenError;

    fn from_str(s: &str) -> Result<Listen, ListenError> {
        if s == "off" {
            return Ok(Listen::Off);
        }
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(ListenError::NoPath);
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        s.parse()
            .map(Listen::Tcp)
            .map_err(|_| ListenError::Unknown(s.to_owned()))
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(address) => write!(f, "{address}"),
            Listen::Unix(path) => write!(f, "unix:{}", path.display()),
            Listen::Off => f.write_str("off"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(
            "127.0.0.1:7473".parse::<Listen>().unwrap(),
            Listen::Tcp(([127, 0, 0, 1], 7473).into())
        );
        assert_eq!("off".parse::<Listen>().unwrap(), Listen::Off);
        assert_eq!(
            "unix:/run/meshlb.sock".parse::<Listen>().unwrap(),
            Listen::Unix("/run/meshlb.sock".into())
        );
        assert!("unix:".parse::<Listen>().is_err());
        assert!("localhost".parse::<Listen>().is_err());
        assert!("7472".parse::<Listen>().is_err());
        for text in ["0.0.0.0:7472", "unix:/run/m.sock", "off"] {
            assert_eq!(text.parse::<Listen>().unwrap().to_string(), text);
        }
    }
}
