//! The batch manifest: one extra leaf in every batch's Merkle tree that
//! commits to what the batch left out.
//!
//! Insights only cover accepted input. A message the worker rejected
//! becomes a dead letter, and each batch accounts for the dead letters
//! recorded since the previous batch: their number and a digest over them
//! go into the manifest, whose hash is the batch's last leaf. An auditor
//! holding the exported batch sees that input was rejected, recomputes the
//! digest from the dead letters themselves, and checks which they were.
//!
//! Hashing, all keccak256 over RFC 8785 canonical JSON:
//! - a dead letter's hash is the hash of
//!   `{"id", "source", "stream", "partition", "offset", "reason", "rawHash",
//!   "rawLength"}` where `rawHash` is the keccak256 of the raw message bytes,
//!   `rawLength` their number, and `offset`
//!   is the position as a decimal string (Redis Streams positions exceed
//!   the integers JSON carries exactly), or `null` for sources without
//!   positions;
//! - the digest is the keccak256 of the dead letters' hashes concatenated
//!   in ascending id order, or 32 zero bytes when there are none;
//! - the manifest is
//!   `{"kind": "batch_manifest", "version": 1, "prevRoot", "insights",
//!   "deadLetters": {"count", "digest", "firstId", "lastId"}}`, the ids
//!   being `null` when the count is zero.

use alloy_primitives::{keccak256, B256};
use serde_json::{json, Value};

use crate::canonical::{to_canonical_json, CanonicalError};

/// `kind` of a manifest.
pub const MANIFEST_KIND: &str = "batch_manifest";

/// Version of the manifest layout described above.
pub const MANIFEST_VERSION: u64 = 1;

/// Most dead letters one batch accounts for; older ones come first and the
/// rest fall to the next batch.
pub const MAX_DEAD_LETTERS_PER_BATCH: usize = 10_000;

/// A dead letter, as far as the manifest commits to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    /// Id in the node's database, ascending in the order of recording.
    pub id: i64,
    /// Source (`redis`, `redis-stream`, `kafka`).
    pub source: String,
    /// Channel, stream or topic.
    pub stream: String,
    /// Partition (0 where the source has none).
    pub partition: i32,
    /// Position in the stream, where the source has one.
    pub offset: Option<i64>,
    /// Why it was rejected.
    pub reason: String,
    /// keccak256 of the message exactly as received.
    pub raw_hash: B256,
    /// Length of the message in bytes.
    pub raw_length: u64,
}

impl DeadLetterRecord {
    /// The JSON the dead letter's hash is taken over.
    pub fn content(&self) -> Value {
        json!({
            "id": self.id,
            "source": self.source,
            "stream": self.stream,
            "partition": self.partition,
            "offset": self.offset.map(|offset| offset.to_string()),
            "reason": self.reason,
            "rawHash": self.raw_hash,
            "rawLength": self.raw_length,
        })
    }

    /// keccak256 of the canonical form of [`DeadLetterRecord::content`].
    pub fn hash(&self) -> Result<B256, CanonicalError> {
        Ok(keccak256(to_canonical_json(&self.content())?.as_bytes()))
    }
}

/// The count and digest of a run of dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterDigest {
    /// How many.
    pub count: u64,
    /// keccak256 of their hashes in id order; zero when there are none.
    pub digest: B256,
    /// Smallest id, when any.
    pub first_id: Option<i64>,
    /// Largest id, when any.
    pub last_id: Option<i64>,
}

impl DeadLetterDigest {
    /// Digests dead letters given in ascending id order.
    pub fn of(records: &[DeadLetterRecord]) -> Result<Self, ManifestError> {
        if records.windows(2).any(|pair| pair[0].id >= pair[1].id) {
            return Err(ManifestError::Order);
        }
        let mut joined = Vec::with_capacity(records.len() * 32);
        for record in records {
            joined.extend_from_slice(record.hash()?.as_slice());
        }
        let digest = if records.is_empty() { B256::ZERO } else { keccak256(&joined) };
        Ok(Self {
            count: records.len() as u64,
            digest,
            first_id: records.first().map(|r| r.id),
            last_id: records.last().map(|r| r.id),
        })
    }
}

/// The manifest of one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest {
    /// Root of the previous batch, zero for the first.
    pub prev_root: B256,
    /// Number of insight leaves (the manifest is one more leaf).
    pub insights: u64,
    /// The dead letters the batch accounts for.
    pub dead_letters: DeadLetterDigest,
}

impl Manifest {
    /// The JSON the manifest's hash is taken over.
    pub fn content(&self) -> Value {
        let dead = &self.dead_letters;
        json!({
            "kind": MANIFEST_KIND,
            "version": MANIFEST_VERSION,
            "prevRoot": self.prev_root,
            "insights": self.insights,
            "deadLetters": {
                "count": dead.count,
                "digest": dead.digest,
                "firstId": dead.first_id,
                "lastId": dead.last_id,
            },
        })
    }

    /// The canonical JSON text and its keccak256: the batch's last leaf value.
    pub fn canonical(&self) -> Result<(String, B256), CanonicalError> {
        let text = to_canonical_json(&self.content())?;
        let hash = keccak256(text.as_bytes());
        Ok((text, hash))
    }

    /// Reads a manifest back from its JSON, refusing anything that is not
    /// exactly the layout above.
    pub fn from_content(value: &Value) -> Result<Self, ManifestError> {
        let bad = |what: &str| ManifestError::Field(what.to_owned());
        if value["kind"] != MANIFEST_KIND {
            return Err(bad("kind"));
        }
        if value["version"].as_u64() != Some(MANIFEST_VERSION) {
            return Err(bad("version"));
        }
        let prev_root = value["prevRoot"]
            .as_str()
            .and_then(|s| s.parse::<B256>().ok())
            .ok_or_else(|| bad("prevRoot"))?;
        let insights = value["insights"].as_u64().ok_or_else(|| bad("insights"))?;
        let dead = &value["deadLetters"];
        let count = dead["count"].as_u64().ok_or_else(|| bad("deadLetters.count"))?;
        let digest = dead["digest"]
            .as_str()
            .and_then(|s| s.parse::<B256>().ok())
            .ok_or_else(|| bad("deadLetters.digest"))?;
        let id = |name: &str| match &dead[name] {
            Value::Null => Ok(None),
            other => other.as_i64().map(Some).ok_or_else(|| bad(name)),
        };
        let dead_letters = DeadLetterDigest {
            count,
            digest,
            first_id: id("firstId")?,
            last_id: id("lastId")?,
        };
        let manifest = Self { prev_root, insights, dead_letters };
        if manifest.content() != *value {
            return Err(bad("unexpected or missing fields"));
        }
        Ok(manifest)
    }
}

/// Why a manifest could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Dead letters not in strictly ascending id order.
    #[error("dead letters must be in strictly ascending id order")]
    Order,
    /// A field is missing or malformed.
    #[error("manifest field {0} is missing or malformed")]
    Field(String),
    /// Canonical JSON failed.
    #[error(transparent)]
    Canonical(#[from] CanonicalError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(id: i64, raw: &[u8]) -> DeadLetterRecord {
        DeadLetterRecord {
            id,
            source: "kafka".into(),
            stream: "system_events".into(),
            partition: 2,
            offset: Some(id * 10),
            reason: "invalid JSON".into(),
            raw_hash: keccak256(raw),
            raw_length: raw.len() as u64,
        }
    }

    #[test]
    fn no_dead_letters_digest_to_zero() {
        let digest = DeadLetterDigest::of(&[]).unwrap();
        assert_eq!(digest.count, 0);
        assert_eq!(digest.digest, B256::ZERO);
        assert_eq!((digest.first_id, digest.last_id), (None, None));
    }

    #[test]
    fn the_digest_hashes_each_letter_in_order() {
        let letters = [letter(3, b"{"), letter(7, b"\xff\x00")];
        let digest = DeadLetterDigest::of(&letters).unwrap();
        let mut joined = letters[0].hash().unwrap().to_vec();
        joined.extend_from_slice(letters[1].hash().unwrap().as_slice());
        assert_eq!(digest.digest, keccak256(&joined));
        assert_eq!(
            (digest.count, digest.first_id, digest.last_id),
            (2, Some(3), Some(7))
        );

        // Any change to a letter's bytes, reason or position changes it.
        let mut changed = letters.clone();
        changed[1].raw_hash = keccak256(b"\xff\x01");
        assert_ne!(DeadLetterDigest::of(&changed).unwrap().digest, digest.digest);
        changed[1] = letters[1].clone();
        changed[1].reason = "other".into();
        assert_ne!(DeadLetterDigest::of(&changed).unwrap().digest, digest.digest);
        changed[1] = letters[1].clone();
        changed[1].offset = None;
        assert_ne!(DeadLetterDigest::of(&changed).unwrap().digest, digest.digest);
    }

    #[test]
    fn positions_beyond_exact_json_integers_hash() {
        // A Redis Streams position: milliseconds << 20 | sequence.
        let mut big = letter(1, b"x");
        big.offset = Some((1_796_000_000_000_i64 << 20) | 3);
        let text = to_canonical_json(&big.content()).unwrap();
        assert!(text.contains(r#""offset":"1883242496000000003""#), "{text}");
        assert!(DeadLetterDigest::of(&[big]).is_ok());
    }

    #[test]
    fn out_of_order_letters_are_refused() {
        let letters = [letter(7, b"a"), letter(3, b"b")];
        assert!(matches!(DeadLetterDigest::of(&letters), Err(ManifestError::Order)));
        let twice = [letter(3, b"a"), letter(3, b"a")];
        assert!(matches!(DeadLetterDigest::of(&twice), Err(ManifestError::Order)));
    }

    #[test]
    fn a_manifest_reads_back_and_its_hash_is_of_its_canonical_text() {
        let manifest = Manifest {
            prev_root: B256::repeat_byte(0xab),
            insights: 5,
            dead_letters: DeadLetterDigest::of(&[letter(1, b"x")]).unwrap(),
        };
        let (text, hash) = manifest.canonical().unwrap();
        assert_eq!(hash, keccak256(text.as_bytes()));
        assert!(text.starts_with(r#"{"deadLetters":{"count":1,"digest":"0x"#), "{text}");
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(Manifest::from_content(&value).unwrap(), manifest);

        let mut extra = value.clone();
        extra["note"] = json!("x");
        assert!(Manifest::from_content(&extra).is_err());
        let mut wrong = value;
        wrong["kind"] = json!("anomaly");
        assert!(Manifest::from_content(&wrong).is_err());
    }
}
