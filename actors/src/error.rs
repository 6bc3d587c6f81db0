//! Errors of the actors.

/// What went wrong in an actor's I/O.
#[derive(Debug, thiserror::Error)]
pub enum ActorError {
    /// An interface could not be read, opened or used.
    #[error("interface {interface}: {what}: {source}")]
    Interface {
        /// Interface name.
        interface: String,
        /// What was being done.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
}
