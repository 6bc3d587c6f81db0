//! Errors of the configuration crate.
//!
//! Every rejection names the object, the field (as a path such as
//! `spec.addresses[1]`), the value as written and what would be accepted, so
//! an operator can fix a manifest without reading our source.

use std::fmt;

use crate::meta::ObjectRef;

/// One rejected value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The object holding the bad value.
    pub object: ObjectRef,
    /// Path of the field inside the object, e.g. `spec.holdTime`.
    pub field: String,
    /// The value as written (empty when the field is missing).
    pub value: String,
    /// What is wrong with it.
    pub problem: String,
    /// What would be accepted.
    pub allowed: String,
}

impl Invalid {
    /// Builds a rejection.
    pub fn new(
        object: &ObjectRef,
        field: impl Into<String>,
        value: impl Into<String>,
        problem: impl Into<String>,
        allowed: impl Into<String>,
    ) -> Invalid {
        Invalid {
            object: object.clone(),
            field: field.into(),
            value: value.into(),
            problem: problem.into(),
            allowed: allowed.into(),
        }
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} {:?} {} (allowed: {})",
            self.object, self.field, self.value, self.problem, self.allowed
        )
    }
}

impl std::error::Error for Invalid {}

/// Where a document came from: file and first line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceLocation {
    /// The file (or other source) name.
    pub file: String,
    /// 1-based line where the YAML document starts.
    pub line: usize,
}

impl fmt::Display for SourceLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// A YAML document could not be read as a known object.
    #[error("{location}: {message}")]
    Parse {
        /// Where the document is.
        location: SourceLocation,
        /// The object, when its kind and name could be read.
        object: Option<ObjectRef>,
        /// What went wrong.
        message: String,
    },
    /// A value is not allowed.
    #[error("{}{invalid}", location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default())]
    Invalid {
        /// Where the object was read from, when known.
        location: Option<SourceLocation>,
        /// The rejection.
        invalid: Box<Invalid>,
    },
}

/// A whole configuration update was rejected; the previous one keeps running.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("configuration rejected ({} error{}): {}", errors.len(), if errors.len() == 1 { "" } else { "s" },
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Rejected {
    /// Every problem found, in source order.
    pub errors: Vec<Error>,
}
