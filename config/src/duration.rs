//! Kubernetes `metav1.Duration` values: Go duration strings such as `90s`,
//! `1m30s` or `1.5h` (units ns, us, µs, ms, s, m, h).

use std::time::Duration;

/// Writes a duration as Go does, to whole seconds (`1h0m0s`, `5m0s`,
/// `30s`); below a second, in milliseconds (`250ms`). [`parse_duration`]
/// reads it back.
pub fn format(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds == 0 {
        return format!("{}ms", duration.subsec_millis());
    }
    let (hours, minutes, seconds) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, _) => format!("{minutes}m{seconds}s"),
        _ => format!("{hours}h{minutes}m{seconds}s"),
    }
}

/// Why a text is not a duration (phrased to follow the field's value in a
/// message: `spec.holdTime "1x" has unknown unit "x"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Below zero.
    #[error("is negative")]
    Negative,
    /// Nothing.
    #[error("is empty")]
    Empty,
    /// Not numbers and units.
    #[error("is not a duration")]
    NotADuration,
    /// A number without its unit.
    #[error("lacks a unit")]
    NoUnit,
    /// A unit Go does not know.
    #[error("has unknown unit {0:?}")]
    UnknownUnit(String),
    /// Beyond what a duration holds.
    #[error("is too large")]
    TooLarge,
}

/// Parses a Go duration string. Negative durations are refused: no meshlb
/// timer can be negative.
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let s = text.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(DurationError::Negative);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total_nanos: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(number_len);
        if number.is_empty() || number == "." {
            return Err(DurationError::NotADuration);
        }
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(DurationError::NoUnit),
            _ => return Err(DurationError::UnknownUnit(unit.to_owned())),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if fraction.contains('.') {
            return Err(DurationError::NotADuration);
        }
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| DurationError::TooLarge)?
        };
        let mut nanos = whole.checked_mul(unit_nanos).ok_or(DurationError::TooLarge)?;
        let mut scale = unit_nanos;
        for digit in fraction.chars().take(18) {
            scale /= 10;
            nanos += u128::from(digit.to_digit(10).unwrap_or(0)) * scale;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or(DurationError::TooLarge)?;
        rest = after;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| DurationError::TooLarge)?;
    // The remainder is below 10^9 and therefore fits.
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_as_go_writes_them_and_read_back() {
        for (seconds, text) in [(3600, "1h0m0s"), (300, "5m0s"), (90, "1m30s"), (30, "30s")] {
            let duration = Duration::from_secs(seconds);
            assert_eq!(format(duration), text);
            assert_eq!(parse_duration(text), Ok(duration));
        }
        assert_eq!(format(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_duration("2us"), Ok(Duration::from_micros(2)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        for bad in [
            "",
            "90",
            "-1s",
            "1d",
            "s",
            "1..5s",
            "1.2.3s",
            "99999999999999999999999h",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }
}
