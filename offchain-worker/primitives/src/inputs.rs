//! The digest of an insight's inputs, recorded in its provenance.
//!
//! Each input event is a 24-byte record, `id ‖ timestamp_ms ‖ value`: the
//! first two as big-endian signed 64-bit integers, the value as the
//! big-endian bits of its IEEE 754 double (0 for events without a value).
//! The version of the analysis decides how the records are digested
//! ([`DigestScheme`]):
//! - `engine/1` hashes them all at once: keccak256 of the records
//!   concatenated in analysis order;
//! - `engine/2` splits them into pieces, each ending after a record whose
//!   event id [`ends_piece`] (or at the last record), and hashes the
//!   concatenated keccak256 digests of the pieces. Pieces depend on the ids
//!   alone, so two overlapping windows of a metric share every piece that
//!   lies inside both, and a window's digest costs one hash of a piece per
//!   new sample plus a few short hashes per insight instead of one hash of
//!   the whole window.
//!
//! [`InputDigest`] digests inputs that only grow; [`WindowInputs`] digests
//! the sliding window of a metric and keeps what it can reuse.

use std::collections::VecDeque;

use alloy_primitives::{keccak256, Keccak256, B256};

use crate::insight::Provenance;

/// Bytes of one input event's record.
pub const RECORD: usize = 24;

/// The multiplier of [`ends_piece`]: 2^64 divided by the golden ratio,
/// rounded to an odd number.
const PIECE_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// How many of the product's top bits must be zero to end a piece: five,
/// so about one event in 32 ends one.
const PIECE_BITS: u32 = 5;

/// How an insight's inputs are digested; the analysis version decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestScheme {
    /// keccak256 of the records concatenated (`engine/1`).
    Whole,
    /// keccak256 of the concatenated keccak256 digests of the pieces
    /// (`engine/2`).
    Pieces,
}

/// Whether the record of event `id` ends a piece under
/// [`DigestScheme::Pieces`]: the product of the id (as an unsigned 64-bit
/// integer) and 0x9e3779b97f4a7c15, modulo 2^64, has its top five bits
/// zero. For ids taken at any fixed stride this happens about once in 32.
pub fn ends_piece(id: i64) -> bool {
    (id as u64).wrapping_mul(PIECE_MULTIPLIER) >> (64 - PIECE_BITS) == 0
}

/// The record of one input event.
pub fn record(id: i64, timestamp_ms: i64, value: f64) -> [u8; RECORD] {
    let mut record = [0; RECORD];
    record[..8].copy_from_slice(&id.to_be_bytes());
    record[8..16].copy_from_slice(&timestamp_ms.to_be_bytes());
    record[16..].copy_from_slice(&value.to_bits().to_be_bytes());
    record
}

/// The digest of inputs that only grow (a user stream's events since its
/// last activity insight, a business event alone).
#[derive(Debug, Clone)]
pub struct InputDigest {
    scheme: DigestScheme,
    /// The records not yet hashed: all of them for [`DigestScheme::Whole`],
    /// those of the open piece for [`DigestScheme::Pieces`].
    bytes: Vec<u8>,
    /// The digests of the closed pieces, concatenated.
    pieces: Vec<u8>,
    first: Option<i64>,
    last: i64,
    count: u64,
}

impl InputDigest {
    /// No inputs yet.
    pub fn new(scheme: DigestScheme) -> Self {
        Self {
            scheme,
            bytes: Vec::new(),
            pieces: Vec::new(),
            first: None,
            last: 0,
            count: 0,
        }
    }

    /// Appends one input event.
    pub fn push(&mut self, id: i64, timestamp_ms: i64, value: f64) {
        self.bytes.extend_from_slice(&record(id, timestamp_ms, value));
        if self.scheme == DigestScheme::Pieces && ends_piece(id) {
            self.pieces.extend_from_slice(keccak256(&self.bytes).as_slice());
            self.bytes.clear();
        }
        self.first.get_or_insert(id);
        self.last = id;
        self.count += 1;
    }

    /// The provenance of the inputs pushed so far; `None` when empty.
    pub fn finish(&self, stream: &str, config_digest: B256) -> Option<Provenance> {
        let inputs_digest = match self.scheme {
            DigestScheme::Whole => keccak256(&self.bytes),
            DigestScheme::Pieces => {
                let mut outer = Keccak256::new();
                outer.update(&self.pieces);
                if !self.bytes.is_empty() {
                    outer.update(keccak256(&self.bytes));
                }
                outer.finalize()
            }
        };
        Some(Provenance {
            stream: stream.to_owned(),
            first_event: self.first?,
            last_event: self.last,
            events: self.count,
            inputs_digest,
            config_digest,
        })
    }
}

/// The digest of a metric's sliding window: the latest `capacity` inputs.
///
/// Under [`DigestScheme::Pieces`] the digest of every piece is taken once,
/// when its last record arrives, and the open piece is hashed as records
/// arrive; a window's digest then hashes only the part of its first piece
/// that it holds, and the digests of the others.
#[derive(Debug, Clone)]
pub struct WindowInputs {
    scheme: DigestScheme,
    /// The window's records in a ring; record `p` (counted from the last
    /// [`clear`](Self::clear)) is at slot `p % capacity`.
    ring: Vec<u8>,
    capacity: usize,
    /// Records pushed since the last clear.
    pushed: u64,
    /// Closed pieces that end inside the window, oldest first: the
    /// position of each one's first record, and its digest. Each ends
    /// where the next begins, the last where the open piece begins.
    closed: VecDeque<(u64, B256)>,
    /// The records of the open piece, hashed so far.
    open: Keccak256,
    /// The position of the open piece's first record.
    open_start: u64,
}

impl WindowInputs {
    /// An empty window of at most `capacity` inputs (at least one).
    pub fn new(scheme: DigestScheme, capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            scheme,
            ring: vec![0; capacity * RECORD],
            capacity,
            pushed: 0,
            closed: VecDeque::new(),
            open: Keccak256::new(),
            open_start: 0,
        }
    }

    /// Inputs in the window.
    pub fn len(&self) -> usize {
        self.pushed.min(self.capacity as u64) as usize
    }

    /// Whether the window holds no input.
    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// Empties the window.
    pub fn clear(&mut self) {
        self.pushed = 0;
        self.closed.clear();
        self.open = Keccak256::new();
        self.open_start = 0;
    }

    /// Appends one input event, dropping the oldest from a full window.
    pub fn push(&mut self, id: i64, timestamp_ms: i64, value: f64) {
        let record = record(id, timestamp_ms, value);
        let slot = (self.pushed % self.capacity as u64) as usize * RECORD;
        self.ring[slot..slot + RECORD].copy_from_slice(&record);
        self.pushed += 1;
        if self.scheme == DigestScheme::Whole {
            return;
        }

        self.open.update(record);
        if ends_piece(id) {
            let digest = std::mem::take(&mut self.open).finalize();
            self.closed.push_back((self.open_start, digest));
            self.open_start = self.pushed;
        }
        // Drop the pieces that ended before the window's first record.
        while !self.closed.is_empty() && self.end_of_oldest() <= self.start() {
            self.closed.pop_front();
        }
    }

    /// The provenance of the window's inputs; `None` when empty.
    pub fn provenance(&self, stream: &str, config_digest: B256) -> Option<Provenance> {
        if self.is_empty() {
            return None;
        }
        let id_at = |position: u64| {
            let slot = (position % self.capacity as u64) as usize * RECORD;
            let bytes = self.ring[slot..slot + 8].try_into().expect("eight bytes");
            i64::from_be_bytes(bytes)
        };
        Some(Provenance {
            stream: stream.to_owned(),
            first_event: id_at(self.start()),
            last_event: id_at(self.pushed - 1),
            events: self.len() as u64,
            inputs_digest: self.digest(),
            config_digest,
        })
    }

    /// The position after the last record of the oldest closed piece.
    fn end_of_oldest(&self) -> u64 {
        self.closed.get(1).map_or(self.open_start, |next| next.0)
    }

    /// The position of the window's first record.
    fn start(&self) -> u64 {
        self.pushed - self.len() as u64
    }

    fn digest(&self) -> B256 {
        let start = self.start();
        if self.scheme == DigestScheme::Whole {
            return self.hash_records(start, self.pushed);
        }

        // The pieces that begin inside the window, with their digests; the
        // records before the first of them are the tail of an older piece.
        let open = (self.open_start < self.pushed).then(|| {
            let digest = self.open.clone().finalize();
            (self.open_start, digest)
        });
        let mut inside = self.closed.iter().copied().chain(open);
        let mut outer = Keccak256::new();
        let first = inside.find(|&(at, _)| at >= start);
        let head_end = first.map_or(self.pushed, |(at, _)| at);
        if head_end > start {
            outer.update(self.hash_records(start, head_end));
        }
        for (_, digest) in first.into_iter().chain(inside) {
            outer.update(digest);
        }
        outer.finalize()
    }

    /// keccak256 of the records at positions `from..to`, all in the ring.
    fn hash_records(&self, from: u64, to: u64) -> B256 {
        let cap = self.capacity as u64;
        let (a, b) = ((from % cap) as usize * RECORD, (to - from) as usize * RECORD);
        let mut hasher = Keccak256::new();
        if a + b <= self.ring.len() {
            hasher.update(&self.ring[a..a + b]);
        } else {
            hasher.update(&self.ring[a..]);
            hasher.update(&self.ring[..a + b - self.ring.len()]);
        }
        hasher.finalize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids of one series among others: a stride, with some jitter.
    fn ids(count: usize, stride: i64, seed: u64) -> Vec<i64> {
        let mut state = seed | 1;
        let mut id = 1_000;
        (0..count)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                id += stride + (state % 3) as i64;
                id
            })
            .collect()
    }

    fn value(i: usize) -> f64 {
        (i as f64 * 0.37).sin() * 1e3
    }

    #[test]
    fn about_one_event_in_32_ends_a_piece_at_any_stride() {
        for stride in [1, 2, 3, 5, 7, 16, 64, 1_000] {
            let ends = (1..=64_000i64).filter(|&i| ends_piece(i * stride)).count();
            assert!((1_600..=2_400).contains(&ends), "stride {stride}: {ends} ends");
        }
    }

    #[test]
    fn the_first_id_to_end_a_piece_is_34_as_documented() {
        let ends: Vec<i64> = (1..=130).filter(|&id| ends_piece(id)).collect();
        assert_eq!(ends, [34, 68, 89, 123]);
        assert_eq!(34u64.wrapping_mul(PIECE_MULTIPLIER), 0x035e_2aa2_e7e4_7aca);
    }

    #[test]
    fn the_documented_example_digests_as_documented() {
        let digest = |scheme| {
            let mut digest = InputDigest::new(scheme);
            for id in 1..=40 {
                digest.push(id, 1_700_000_000_000 + id * 60_000, id as f64 / 4.0);
            }
            digest.finish("s", B256::ZERO).unwrap().inputs_digest.to_string()
        };
        let pieces = "0x5f82c0f19b91f38400eb2f47e385c32179c91e154af298689f032ce7c095231d";
        let whole = "0x6039ca2b4eeeb3b038f26dcb61b098387bd1d2771bb5d9b6f613d29505213b9b";
        assert_eq!(digest(DigestScheme::Pieces), pieces);
        assert_eq!(digest(DigestScheme::Whole), whole);
    }

    #[test]
    fn a_whole_digest_hashes_the_records_concatenated() {
        let mut digest = InputDigest::new(DigestScheme::Whole);
        digest.push(7, -1, 2.5);
        digest.push(9, 3, f64::NEG_INFINITY);
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&7i64.to_be_bytes());
        bytes.extend_from_slice(&(-1i64).to_be_bytes());
        bytes.extend_from_slice(&2.5f64.to_bits().to_be_bytes());
        bytes.extend_from_slice(&9i64.to_be_bytes());
        bytes.extend_from_slice(&3i64.to_be_bytes());
        bytes.extend_from_slice(&f64::NEG_INFINITY.to_bits().to_be_bytes());
        let provenance = digest.finish("s", B256::ZERO).unwrap();
        assert_eq!(provenance.inputs_digest, keccak256(&bytes));
        assert_eq!((provenance.first_event, provenance.last_event), (7, 9));
        assert_eq!(provenance.events, 2);
    }

    #[test]
    fn a_pieces_digest_hashes_the_digests_of_the_pieces() {
        let ids: Vec<i64> = (1..200).collect();
        let ends: Vec<usize> = (0..ids.len()).filter(|&i| ends_piece(ids[i])).collect();
        assert!(ends.len() >= 3, "{ends:?}");

        let mut digest = InputDigest::new(DigestScheme::Pieces);
        let mut piece = Vec::new();
        let mut outer = Vec::new();
        for (i, &id) in ids.iter().enumerate() {
            digest.push(id, id * 10, value(i));
            piece.extend_from_slice(&record(id, id * 10, value(i)));
            if ends.contains(&i) {
                outer.extend_from_slice(keccak256(&piece).as_slice());
                piece.clear();
            }
        }
        outer.extend_from_slice(keccak256(&piece).as_slice());
        let provenance = digest.finish("s", B256::ZERO).unwrap();
        assert_eq!(provenance.inputs_digest, keccak256(&outer));
    }

    #[test]
    fn a_window_digest_equals_the_digest_of_its_inputs() {
        // (scheme, capacity, stride): windows longer and shorter than a
        // piece, ids where every one ends a piece and where none does.
        let only = |ends: bool| (1..).filter(move |&id| ends_piece(id) == ends).take(200);
        let cases: Vec<(DigestScheme, usize, Vec<i64>)> = vec![
            (DigestScheme::Whole, 256, ids(1_000, 1, 3)),
            (DigestScheme::Pieces, 256, ids(1_000, 1, 3)),
            (DigestScheme::Pieces, 256, ids(1_000, 7, 5)),
            (DigestScheme::Pieces, 40, ids(600, 3, 9)),
            (DigestScheme::Pieces, 3, ids(300, 1, 11)),
            (DigestScheme::Pieces, 1, ids(100, 1, 13)),
            (DigestScheme::Pieces, 50, only(true).collect()),
            (DigestScheme::Pieces, 50, only(false).collect()),
        ];
        for (case, (scheme, capacity, ids)) in cases.into_iter().enumerate() {
            let mut window = WindowInputs::new(scheme, capacity);
            for (i, &id) in ids.iter().enumerate() {
                // Start over part way, as a series does after a gap.
                if i == ids.len() / 2 {
                    window.clear();
                }
                window.push(id, id * 1_000, value(i));
                let restart = if i >= ids.len() / 2 { ids.len() / 2 } else { 0 };
                let first = (i + 1).saturating_sub(capacity).max(restart);
                let mut expected = InputDigest::new(scheme);
                for (j, &id) in ids.iter().enumerate().take(i + 1).skip(first) {
                    expected.push(id, id * 1_000, value(j));
                }
                let expected = expected.finish("s", B256::repeat_byte(1));
                let got = window.provenance("s", B256::repeat_byte(1));
                assert_eq!(got, expected, "case {case} at {i}");
                assert!(window.closed.len() <= capacity, "case {case}");
            }
        }
    }
}
