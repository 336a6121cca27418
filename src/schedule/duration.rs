//! Go-style durations as written in Lifeboat specs (`90s`, `1h30m`, `7d`) and their
//! compact rendering for status fields.

use std::time::Duration;

/// A duration string that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: expected a sequence like 90s, 15m, 1h30m or 7d")]
pub struct DurationError {
    pub input: String,
}

/// Parses `[0-9]+(.[0-9]+)?(ms|s|m|h|d)` repeated, e.g. `1h30m` or `1.5h`. `d` is 24 hours.
/// Negative and empty durations are rejected.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: input.to_string(),
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if num_len == 0 {
            return Err(err());
        }
        let (num, tail) = rest.split_at(num_len);
        if num.starts_with('.') || num.ends_with('.') || num.matches('.').count() > 1 {
            return Err(err());
        }
        let value: f64 = num.parse().map_err(|_| err())?;
        let (unit_secs, unit_len) = if tail.starts_with("ms") {
            (0.001, 2)
        } else {
            match tail.as_bytes().first() {
                Some(b's') => (1.0, 1),
                Some(b'm') => (60.0, 1),
                Some(b'h') => (3600.0, 1),
                Some(b'd') => (86400.0, 1),
                _ => return Err(err()),
            }
        };
        total += value * unit_secs;
        rest = &tail[unit_len..];
    }
    // Ten years is far beyond any sensible objective or TTL; it also keeps the float
    // arithmetic exact to the millisecond.
    if !(total.is_finite() && total <= 10.0 * 365.0 * 86400.0) {
        return Err(err());
    }
    Ok(Duration::from_millis((total * 1000.0).round() as u64))
}

/// Renders a duration compactly with at most two units, rounding down: `45s`, `12m5s`,
/// `3h2m`, `2d4h`. Sub-second durations render as `0s`.
pub fn format(d: Duration) -> String {
    let secs = d.as_secs();
    let (days, hours, minutes, seconds) = (
        secs / 86400,
        secs % 86400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) if seconds == 0 => format!("{minutes}m"),
        (0, 0, _) => format!("{minutes}m{seconds}s"),
        (0, _, 0) => format!("{hours}h"),
        (0, _, _) => format!("{hours}h{minutes}m"),
        (_, 0, _) => format!("{days}d"),
        _ => format!("{days}d{hours}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        let cases = [
            ("90s", 90_000),
            ("15m", 900_000),
            ("1h30m", 5_400_000),
            ("1.5h", 5_400_000),
            ("7d", 604_800_000),
            ("250ms", 250),
            ("1m30s500ms", 90_500),
            (" 2h ", 7_200_000),
        ];
        for (input, millis) in cases {
            assert_eq!(parse(input), Ok(Duration::from_millis(millis)), "{input}");
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for input in [
            "", "h", "5", "5x", "-5m", "1.h", ".5h", "1..5h", "5m ", "5 m", "99999d",
        ] {
            let trimmed_ok = input == "5m ";
            assert_eq!(parse(input).is_ok(), trimmed_ok, "{input:?}");
        }
    }

    #[test]
    fn formats_with_two_units() {
        let cases = [
            (0, "0s"),
            (45, "45s"),
            (60, "1m"),
            (725, "12m5s"),
            (3600, "1h"),
            (10_920, "3h2m"),
            (86_400, "1d"),
            (187_200, "2d4h"),
        ];
        for (secs, want) in cases {
            assert_eq!(format(Duration::from_secs(secs)), want);
        }
    }
}
