//! Polling with a deadline: how the lab waits for daemons, sessions, routes
//! and probe answers.

use crate::error::LabError;
use std::time::{Duration, Instant};

/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(10);

/// Polls `check` until it yields a value or `timeout` passes.
pub(crate) fn wait_until<T>(
    timeout: Duration,
    what: impl FnOnce() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T, LabError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(LabError::Timeout {
                what: what(),
                waited: timeout,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `done` until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) -> Result<(), LabError> {
    wait_until(timeout, || what.to_owned(), || done().then_some(()))
}
