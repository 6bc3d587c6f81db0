//! The lab's error type.

use std::time::Duration;

/// Everything that can go wrong building, running or observing a lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// An external command exited with an error.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// How it exited.
        status: String,
        /// What it printed on standard error.
        stderr: String,
    },
    /// An external program could not be started.
    #[error("cannot run `{program}`: {source} (scripts/install-deps installs what the lab uses)")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Entering a network namespace or signalling a process failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: String,
        /// The errno.
        source: nix::Error,
    },
    /// Labs need root for network namespaces.
    #[error("the lab needs root (it creates network namespaces); run it as root")]
    NotRoot,
    /// A request names something the lab does not have or cannot do.
    #[error("{0}")]
    Invalid(String),
    /// Something did not happen in time.
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
    },
}

impl LabError {
    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        LabError::Io {
            what: what.into(),
            source,
        }
    }
}
