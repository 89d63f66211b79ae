//! A raw message as it left its source, before parsing.

use analytics_primitives::event::StreamKind;
use time::OffsetDateTime;

/// One message, with where it came from.
#[derive(Debug, Clone)]
pub struct Envelope {
    /// The kind of source (`redis`).
    pub source: &'static str,
    /// Channel or topic name.
    pub stream: String,
    /// What the stream carries.
    pub kind: StreamKind,
    /// Partition, 0 for unpartitioned sources.
    pub partition: i32,
    /// Position in a log-based source; `None` for pub/sub.
    pub offset: Option<i64>,
    /// Wall-clock time the worker received it.
    pub received_at: OffsetDateTime,
    /// The message bytes, unchanged.
    pub payload: Vec<u8>,
}

impl Envelope {
    /// `source:stream`, the stream name recorded on insights.
    pub fn stream_label(&self) -> String {
        format!("{}:{}", self.source, self.stream)
    }
}
