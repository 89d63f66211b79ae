//! Message sources. Each source turns its transport's messages into
//! [`crate::envelope::Envelope`]s on a bounded channel to the pipeline.

pub mod kafka;
pub mod redis;
pub mod redis_streams;
