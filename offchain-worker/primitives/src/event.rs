//! The typed events the worker ingests, and their parsing from raw bytes.
//!
//! Each stream carries one kind of event ([`StreamKind`]). Parsing is strict:
//! a message that is not a JSON object, lacks a required field, has a field
//! of the wrong type, a non-finite number or an unreadable timestamp is
//! rejected with a [`ParseError`] naming the problem, and the caller turns it
//! into a dead letter. Fields beyond the required ones are kept.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::timestamp::{parse_timestamp, TimestampError};

/// Longest accepted metric name, in bytes.
pub const MAX_NAME_LEN: usize = 200;
/// Deepest accepted JSON nesting of a message.
pub const MAX_DEPTH: usize = 32;

/// What kind of event a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamKind {
    /// User activity: clicks, page views, sign-ins.
    UserEvents,
    /// Numeric system metrics.
    SystemMetrics,
    /// Business events: purchases, sign-ups, support tickets.
    BusinessEvents,
}

impl StreamKind {
    /// The name stored with each event.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserEvents => "user_event",
            Self::SystemMetrics => "system_metric",
            Self::BusinessEvents => "business_event",
        }
    }
}

/// A user activity event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserEvent {
    /// What the user did (`page_view`, `click`, ...).
    #[serde(rename = "type")]
    pub event_type: String,
    /// Who did it.
    pub user_id: String,
    /// The session it belongs to, when the client sends one.
    pub session_id: Option<String>,
    /// When it happened, epoch milliseconds.
    pub timestamp_ms: i64,
    /// Every other field of the message, unchanged.
    pub fields: Map<String, Value>,
}

/// A numeric system metric sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemMetric {
    /// Metric name, 1 to [`MAX_NAME_LEN`] bytes.
    pub name: String,
    /// The sample; always finite.
    pub value: f64,
    /// Free-form tags (host, region, ...).
    pub tags: Map<String, Value>,
    /// When it was measured, epoch milliseconds.
    pub timestamp_ms: i64,
}

/// A business event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusinessEvent {
    /// What happened (`purchase`, `signup`, `support_ticket`, ...).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The user concerned, when known.
    pub user_id: Option<String>,
    /// The amount; always finite.
    pub value: f64,
    /// Where it came from (`web`, `mobile`, ...), when known.
    pub source: Option<String>,
    /// When it happened, epoch milliseconds.
    pub timestamp_ms: i64,
}

/// One typed event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// From a user-events stream.
    User(UserEvent),
    /// From a system-metrics stream.
    Metric(SystemMetric),
    /// From a business-events stream.
    Business(BusinessEvent),
}

impl Event {
    /// The event's own timestamp, epoch milliseconds.
    pub fn timestamp_ms(&self) -> i64 {
        match self {
            Self::User(e) => e.timestamp_ms,
            Self::Metric(e) => e.timestamp_ms,
            Self::Business(e) => e.timestamp_ms,
        }
    }

    /// The user the event concerns, if any.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Self::User(e) => Some(&e.user_id),
            Self::Business(e) => e.user_id.as_deref(),
            Self::Metric(_) => None,
        }
    }

    /// The stream kind this event belongs to.
    pub fn kind(&self) -> StreamKind {
        match self {
            Self::User(_) => StreamKind::UserEvents,
            Self::Metric(_) => StreamKind::SystemMetrics,
            Self::Business(_) => StreamKind::BusinessEvents,
        }
    }
}

/// Why a message was rejected. The text is stored with the dead letter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// Larger than the configured limit.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size of the message.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Not UTF-8 or not JSON.
    #[error("not valid JSON: {0}")]
    NotJson(String),
    /// JSON nested deeper than [`MAX_DEPTH`].
    #[error("JSON nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// Valid JSON but not an object.
    #[error("expected a JSON object")]
    NotObject,
    /// A string holds U+0000, which storage (PostgreSQL text) cannot hold.
    #[error("a string contains the NUL character (U+0000)")]
    ContainsNul,
    /// A required field is absent or null.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field has the wrong JSON type.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// A field has an unacceptable value.
    #[error("field `{field}` is invalid: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The timestamp could not be read.
    #[error("field `timestamp`: {0}")]
    Timestamp(#[from] TimestampError),
}

/// Parses one message of the given stream kind.
///
/// `max_bytes` bounds the message size; the check happens before any
/// parsing so an oversized message costs nothing.
pub fn parse_event(
    kind: StreamKind,
    bytes: &[u8],
    max_bytes: usize,
) -> Result<Event, ParseError> {
    let object = parse_object(bytes, max_bytes)?;
    match kind {
        StreamKind::UserEvents => parse_user(object).map(Event::User),
        StreamKind::SystemMetrics => parse_metric(object).map(Event::Metric),
        StreamKind::BusinessEvents => parse_business(object).map(Event::Business),
    }
}

fn parse_object(
    bytes: &[u8],
    max_bytes: usize,
) -> Result<Map<String, Value>, ParseError> {
    if bytes.len() > max_bytes {
        return Err(ParseError::TooLarge { size: bytes.len(), limit: max_bytes });
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ParseError::NotJson(e.to_string()))?;
    if depth(&value) > MAX_DEPTH {
        return Err(ParseError::TooDeep);
    }
    if contains_nul(&value) {
        return Err(ParseError::ContainsNul);
    }
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(ParseError::NotObject),
    }
}

fn parse_user(mut object: Map<String, Value>) -> Result<UserEvent, ParseError> {
    let event_type = take_string(&mut object, "type")?;
    let user_id = take_id(&mut object, "user_id")?;
    let session_id = take_optional_id(&mut object, "session_id")?;
    let timestamp_ms = take_timestamp(&mut object)?;
    Ok(UserEvent { event_type, user_id, session_id, timestamp_ms, fields: object })
}

fn parse_metric(mut object: Map<String, Value>) -> Result<SystemMetric, ParseError> {
    let name = take_string(&mut object, "name")?;
    if name.len() > MAX_NAME_LEN {
        let reason = format!("longer than {MAX_NAME_LEN} bytes");
        return Err(ParseError::Invalid { field: "name", reason });
    }
    let value = take_finite(&mut object, "value")?;
    let tags = match object.remove("tags") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(tags)) => tags,
        Some(_) => return Err(wrong("tags", "an object")),
    };
    let timestamp_ms = take_timestamp(&mut object)?;
    Ok(SystemMetric { name, value, tags, timestamp_ms })
}

fn parse_business(mut object: Map<String, Value>) -> Result<BusinessEvent, ParseError> {
    let event_type = take_string(&mut object, "type")?;
    let user_id = take_optional_id(&mut object, "user_id")?;
    let value = take_finite(&mut object, "value")?;
    let source = take_optional_id(&mut object, "source")?;
    let timestamp_ms = take_timestamp(&mut object)?;
    Ok(BusinessEvent { event_type, user_id, value, source, timestamp_ms })
}

fn take_string(
    object: &mut Map<String, Value>,
    field: &'static str,
) -> Result<String, ParseError> {
    match object.remove(field) {
        None | Some(Value::Null) => Err(ParseError::Missing(field)),
        Some(Value::String(s)) if s.trim().is_empty() => {
            Err(ParseError::Invalid { field, reason: "empty".into() })
        }
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(wrong(field, "a string")),
    }
}

/// Identifiers may arrive as strings or integers; both are kept as text.
fn take_id(
    object: &mut Map<String, Value>,
    field: &'static str,
) -> Result<String, ParseError> {
    take_optional_id(object, field)?.ok_or(ParseError::Missing(field))
}

fn take_optional_id(
    object: &mut Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, ParseError> {
    match object.remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
        Some(_) => Err(wrong(field, "a string or an integer")),
    }
}

fn take_finite(
    object: &mut Map<String, Value>,
    field: &'static str,
) -> Result<f64, ParseError> {
    match object.remove(field) {
        None | Some(Value::Null) => Err(ParseError::Missing(field)),
        Some(Value::Number(n)) => n.as_f64().filter(|v| v.is_finite()).ok_or_else(|| {
            ParseError::Invalid { field, reason: "not a finite number".into() }
        }),
        Some(_) => Err(wrong(field, "a number")),
    }
}

fn take_timestamp(object: &mut Map<String, Value>) -> Result<i64, ParseError> {
    match object.remove("timestamp") {
        None | Some(Value::Null) => Err(ParseError::Missing("timestamp")),
        Some(value) => Ok(parse_timestamp(&value)?),
    }
}

fn wrong(field: &'static str, expected: &'static str) -> ParseError {
    ParseError::WrongType { field, expected }
}

fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => {
            map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v))
        }
        _ => false,
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 1 << 20;

    fn metric(text: &str) -> Result<Event, ParseError> {
        parse_event(StreamKind::SystemMetrics, text.as_bytes(), LIMIT)
    }

    #[test]
    fn parses_a_system_metric() {
        let text =
            r#"{"name":"cpu","value":42.5,"tags":{"host":"a"},"timestamp":1700000000}"#;
        let Ok(Event::Metric(m)) = metric(text) else { panic!("rejected {text}") };
        assert_eq!(m.name, "cpu");
        assert_eq!(m.value, 42.5);
        assert_eq!(m.tags["host"], "a");
        assert_eq!(m.timestamp_ms, 1_700_000_000_000);
    }

    #[test]
    fn rejects_bad_metrics_with_a_reason() {
        let cases = [
            ("not json", "not valid JSON"),
            ("[1,2]", "expected a JSON object"),
            (
                r#"{"name":"cpu","value":"high","timestamp":1}"#,
                "`value` must be a number",
            ),
            (r#"{"value":1,"timestamp":1}"#, "missing field `name`"),
            (r#"{"name":"cpu","value":NaN,"timestamp":1}"#, "not valid JSON"),
            (r#"{"name":"cpu","value":1e400,"timestamp":1}"#, "not valid JSON"),
            (r#"{"name":"cpu","value":1,"timestamp":"soon"}"#, "RFC 3339"),
            (r#"{"name":"cpu","value":1}"#, "missing field `timestamp`"),
            (r#"{"name":"cpu","value":1,"tags":[1],"timestamp":1}"#, "`tags` must be"),
        ];
        for (text, reason) in cases {
            let err = metric(text).expect_err(text).to_string();
            assert!(err.contains(reason), "{text}: {err}");
        }
    }

    #[test]
    fn rejects_nul_but_not_an_escaped_backslash() {
        let nul = r#"{"name":"cpu","value":1,"timestamp":1,"tags":{"a":"x\u0000"}}"#;
        assert_eq!(metric(nul).unwrap_err(), ParseError::ContainsNul);
        let path =
            r#"{"name":"cpu","value":1,"timestamp":1,"tags":{"a":"C:\\u0000dir"}}"#;
        assert!(metric(path).is_ok(), "an escaped backslash is not a NUL");
    }

    #[test]
    fn rejects_oversized_and_deep_messages() {
        let big = vec![b' '; 100];
        let err = parse_event(StreamKind::UserEvents, &big, 10).unwrap_err();
        assert!(matches!(err, ParseError::TooLarge { size: 100, limit: 10 }));

        let deep = format!("{}{}", "[".repeat(40), "]".repeat(40));
        let err =
            parse_event(StreamKind::UserEvents, deep.as_bytes(), LIMIT).unwrap_err();
        assert_eq!(err, ParseError::TooDeep);
    }

    #[test]
    fn user_event_keeps_free_fields() {
        let text = r#"{"type":"click","user_id":7,"session_id":"s","page":"/a","timestamp":"2024-01-01T00:00:00Z"}"#;
        let event = parse_event(StreamKind::UserEvents, text.as_bytes(), LIMIT).unwrap();
        let Event::User(user) = event else { panic!("wrong kind") };
        assert_eq!(user.user_id, "7");
        assert_eq!(user.fields["page"], "/a");
        assert!(!user.fields.contains_key("type"));
    }

    #[test]
    fn business_event_requires_a_finite_value() {
        let text = r#"{"type":"purchase","user_id":"u","timestamp":1}"#;
        let err = parse_event(StreamKind::BusinessEvents, text.as_bytes(), LIMIT);
        assert_eq!(err.unwrap_err(), ParseError::Missing("value"));
    }
}
