//! Event timestamps.
//!
//! Every timestamp is kept as whole milliseconds since the Unix epoch (UTC).
//! Incoming values are read by these rules, in this order:
//!
//! 1. a JSON string must be an RFC 3339 date-time (`2024-01-02T03:04:05Z`,
//!    offsets allowed); anything else is rejected;
//! 2. a JSON number below [`SECONDS_LIMIT`] is epoch **seconds** (a fraction
//!    is kept to the millisecond, truncated);
//! 3. a JSON number from [`SECONDS_LIMIT`] up to [`MILLIS_LIMIT`] is epoch
//!    **milliseconds** (a fraction is truncated);
//! 4. negative numbers, numbers at or beyond [`MILLIS_LIMIT`], and any other
//!    JSON type are rejected.
//!
//! `SECONDS_LIMIT` is 10^11: as seconds that is the year 5138, as
//! milliseconds 1973-03-03, so no plausible value is ambiguous.

use serde_json::Value;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// Numbers below this are epoch seconds.
pub const SECONDS_LIMIT: f64 = 1e11;
/// Numbers from [`SECONDS_LIMIT`] up to this are epoch milliseconds.
pub const MILLIS_LIMIT: f64 = 1e14;

/// Why a timestamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// A string that is not RFC 3339.
    #[error("timestamp {0:?} is not an RFC 3339 date-time")]
    NotRfc3339(String),
    /// A number outside the accepted ranges.
    #[error("timestamp {0} is out of range (epoch seconds below 1e11 or milliseconds below 1e14)")]
    OutOfRange(String),
    /// A JSON value that is neither a string nor a number.
    #[error("timestamp must be an RFC 3339 string or an epoch number, found {0}")]
    WrongType(&'static str),
}

/// Reads a timestamp from a JSON value, returning epoch milliseconds.
pub fn parse_timestamp(value: &Value) -> Result<i64, TimestampError> {
    match value {
        Value::String(text) => parse_rfc3339(text),
        Value::Number(number) => {
            let raw = number.as_f64().filter(|n| n.is_finite());
            let Some(raw) = raw else {
                return Err(TimestampError::OutOfRange(number.to_string()));
            };
            from_epoch_number(raw)
                .ok_or_else(|| TimestampError::OutOfRange(number.to_string()))
        }
        other => Err(TimestampError::WrongType(json_type(other))),
    }
}

/// Reads an RFC 3339 string, returning epoch milliseconds.
pub fn parse_rfc3339(text: &str) -> Result<i64, TimestampError> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| TimestampError::NotRfc3339(text.to_owned()))?;
    let millis = parsed.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(millis).map_err(|_| TimestampError::OutOfRange(text.to_owned()))
}

/// Formats epoch milliseconds as RFC 3339 in UTC with millisecond precision.
pub fn format_millis(millis: i64) -> String {
    let nanos = i128::from(millis) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| millis.to_string())
}

fn from_epoch_number(raw: f64) -> Option<i64> {
    if raw < 0.0 {
        return None;
    }
    let millis = if raw < SECONDS_LIMIT {
        (raw * 1000.0).trunc()
    } else if raw < MILLIS_LIMIT {
        raw.trunc()
    } else {
        return None;
    };
    // Both branches are below 1e14, far inside i64.
    Some(millis as i64)
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_each_documented_form() {
        let cases = [
            (json!("2024-01-02T03:04:05Z"), Ok(1_704_164_645_000)),
            (json!("2024-01-02T04:04:05.250+01:00"), Ok(1_704_164_645_250)),
            (json!(1_704_164_645), Ok(1_704_164_645_000)),
            (json!(1_704_164_645.5), Ok(1_704_164_645_500)),
            (json!(1_704_164_645_123_i64), Ok(1_704_164_645_123)),
            (json!(0), Ok(0)),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_timestamp(&input), expected, "input {input}");
        }
    }

    #[test]
    fn rejects_what_cannot_be_read() {
        let cases = [
            json!("yesterday"),
            json!("1704164645"),
            json!("2024-01-02 03:04:05"),
            json!(-1),
            json!(1e14),
            json!(true),
            json!(null),
            json!([1]),
        ];
        for input in cases {
            assert!(parse_timestamp(&input).is_err(), "accepted {input}");
        }
    }

    #[test]
    fn formats_millis_as_utc() {
        assert_eq!(format_millis(1_704_164_645_250), "2024-01-02T03:04:05.25Z");
    }
}
