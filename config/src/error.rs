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
            "{}: {} {} {} (allowed: {})",
            self.object,
            self.field,
            excerpt(&format!("{:?}", self.value)),
            self.problem,
            self.allowed
        )
    }
}

/// Most characters of a value or parser message an error line quotes.
pub const EXCERPT_CHARS: usize = 120;

/// `text` if it is short, else its first [`EXCERPT_CHARS`] characters and
/// how long it was: a bad value of megabytes must not become a log line of
/// megabytes.
pub fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT_CHARS) {
        None => text.to_owned(),
        Some((cut, _)) => format!("{}… ({} bytes in all)", &text[..cut], text.len()),
    }
}

impl std::error::Error for Invalid {}

/// Where a document came from: file and first line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceLocation {
    /// The file (or other source) name, shared by every document of the
    /// file.
    pub file: std::sync::Arc<str>,
    /// 1-based line where the YAML document starts (0: none).
    pub line: usize,
}

impl fmt::Display for SourceLocation {
    /// `file:line`, or just the name when there is no line (line 0: a
    /// whole file, or an object read from the API server).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            0 => f.write_str(&self.file),
            line => write!(f, "{}:{line}", self.file),
        }
    }
}

/// Errors of this crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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

impl Error {
    /// The object the error is about, when known.
    pub fn object(&self) -> Option<&ObjectRef> {
        match self {
            Error::Parse { object, .. } => object.as_ref(),
            Error::Invalid { invalid, .. } => Some(&invalid.object),
        }
    }
}

/// A whole configuration update was rejected; the previous one keeps running.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("configuration rejected ({} error{}): {}", errors.len(), if errors.len() == 1 { "" } else { "s" },
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct Rejected {
    /// Every problem found, in source order.
    pub errors: Vec<Error>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Kind;

    #[test]
    fn long_values_are_quoted_as_an_excerpt() {
        let object = ObjectRef {
            kind: Kind::IpAddressPool,
            namespace: Some("metallb-system".into()),
            name: "big".into(),
        };
        let huge = "1".repeat(5_000_000);
        let line = Invalid::new(&object, "spec.addresses[0]", huge, "is not a CIDR", "a CIDR").to_string();
        assert!(line.len() < 400, "{} characters", line.len());
        assert!(line.contains("(5000002 bytes in all)"), "{line}");
        assert!(
            line.starts_with("IPAddressPool metallb-system/big: spec.addresses[0] \"111"),
            "{line}"
        );
        assert_eq!(excerpt("short"), "short");
    }
}
