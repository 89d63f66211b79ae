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
    /// Where to acknowledge the message once its transaction committed;
    /// `None` for sources without acknowledgement (pub/sub).
    pub ack: Option<Acker>,
}

/// Acknowledges messages to their source after the PostgreSQL commit that
/// holds them. Cloning is cheap; acknowledgements are batched by the source.
#[derive(Debug, Clone)]
pub struct Acker {
    sender: tokio::sync::mpsc::UnboundedSender<(String, String)>,
    id: String,
}

impl Acker {
    /// An acknowledgement of message `id` sent to `sender` with its stream.
    pub fn new(
        sender: tokio::sync::mpsc::UnboundedSender<(String, String)>,
        id: String,
    ) -> Self {
        Self { sender, id }
    }

    /// Acknowledges the message of `stream`; a source that stopped simply
    /// sees it again after a restart.
    pub fn ack(&self, stream: &str) {
        let _ = self.sender.send((stream.to_owned(), self.id.clone()));
    }
}

impl Envelope {
    /// `source:stream`, the stream name recorded on insights.
    pub fn stream_label(&self) -> String {
        format!("{}:{}", self.source, self.stream)
    }
}
