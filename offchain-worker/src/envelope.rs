//! A raw message as it left its source, before parsing.

use analytics_primitives::event::StreamKind;
use time::OffsetDateTime;
use tokio::sync::mpsc::UnboundedSender;

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
/// holds them. Cloning is cheap: every envelope of a source shares the
/// source's channel, and [`Acker::ack_all`] sends a whole batch's receipts
/// as one message per source.
#[derive(Debug, Clone)]
pub struct Acker {
    sender: UnboundedSender<Vec<Receipt>>,
    id: String,
}

/// What a source needs to acknowledge one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Channel, stream or topic.
    pub stream: String,
    /// Partition, 0 for unpartitioned sources.
    pub partition: i32,
    /// Position in the source, when it has one.
    pub offset: Option<i64>,
    /// The source's own id of the message (a stream entry id); empty when
    /// the position says it all.
    pub id: String,
}

impl Acker {
    /// Acknowledgements of message `id` go to `sender`.
    pub fn new(sender: UnboundedSender<Vec<Receipt>>, id: String) -> Self {
        Self { sender, id }
    }

    /// The receipts of `envelopes`, grouped by source, ready for
    /// [`Acker::send`] once their transaction committed.
    pub fn receipts<'a>(
        envelopes: impl IntoIterator<Item = &'a Envelope>,
    ) -> Vec<(Acker, Vec<Receipt>)> {
        let mut groups: Vec<(Acker, Vec<Receipt>)> = Vec::new();
        for envelope in envelopes {
            let Some(acker) = &envelope.ack else { continue };
            let receipt = Receipt {
                stream: envelope.stream.clone(),
                partition: envelope.partition,
                offset: envelope.offset,
                id: acker.id.clone(),
            };
            let group =
                groups.iter_mut().find(|(a, _)| a.sender.same_channel(&acker.sender));
            match group {
                Some((_, receipts)) => receipts.push(receipt),
                None => groups.push((acker.clone(), vec![receipt])),
            }
        }
        groups
    }

    /// Acknowledges `receipts` to this acker's source in one message; a
    /// source that stopped simply sees the messages again after a restart.
    pub fn send(&self, receipts: Vec<Receipt>) {
        let _ = self.sender.send(receipts);
    }
}

impl Envelope {
    /// `source:stream`, the stream name recorded on insights.
    pub fn stream_label(&self) -> String {
        format!("{}:{}", self.source, self.stream)
    }
}
