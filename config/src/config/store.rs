//! The configuration store: keeps the running configuration and the last
//! rejection, so an invalid update never replaces a valid one.

use crate::error::Rejected;

/// Result of offering a new configuration to a [`ConfigStore`].
#[derive(Debug, Clone, PartialEq)]
pub enum Offer {
    /// Accepted; this is the new generation number.
    Accepted(u64),
    /// Identical to the running configuration; nothing changed.
    Unchanged(u64),
    /// Rejected; the previous configuration (if any) keeps running.
    Rejected(Rejected),
}

/// Holds the running configuration and the last rejection. An invalid
/// update never replaces a valid one.
#[derive(Debug, Clone)]
pub struct ConfigStore<T> {
    active: Option<T>,
    generation: u64,
    last_rejection: Option<Rejected>,
    rejections: u64,
}

impl<T> Default for ConfigStore<T> {
    fn default() -> Self {
        ConfigStore {
            active: None,
            generation: 0,
            last_rejection: None,
            rejections: 0,
        }
    }
}

impl<T: PartialEq> ConfigStore<T> {
    /// Offers the outcome of reading a configuration.
    pub fn offer(&mut self, candidate: Result<T, Rejected>) -> Offer {
        match candidate {
            Ok(config) => {
                self.last_rejection = None;
                if self.active.as_ref() == Some(&config) {
                    return Offer::Unchanged(self.generation);
                }
                self.active = Some(config);
                self.generation += 1;
                Offer::Accepted(self.generation)
            }
            Err(rejected) => {
                self.rejections += 1;
                self.last_rejection = Some(rejected.clone());
                Offer::Rejected(rejected)
            }
        }
    }

    /// The running configuration.
    pub fn active(&self) -> Option<&T> {
        self.active.as_ref()
    }

    /// Generation of the running configuration (0: none yet).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Why the latest offer was refused, if it was.
    pub fn last_rejection(&self) -> Option<&Rejected> {
        self.last_rejection.as_ref()
    }

    /// How many offers were refused so far.
    pub fn rejections(&self) -> u64 {
        self.rejections
    }
}
