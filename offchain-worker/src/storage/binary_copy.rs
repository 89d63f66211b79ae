//! Rows in PostgreSQL's binary `COPY` format, written straight from the
//! pipeline's rows into one buffer.
//!
//! The format: a signature and two zero words, then per row the number of
//! fields and each field as a length (-1 for NULL) followed by the bytes of
//! the type's binary representation, then a trailer of -1. Integers and
//! floats are big-endian, `timestamptz` is microseconds since 2000-01-01
//! UTC, `jsonb` is a version byte (1) followed by the JSON text.

use time::OffsetDateTime;

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// 2000-01-01T00:00:00Z in Unix microseconds.
const POSTGRES_EPOCH_MICROS: i128 = 946_684_800_000_000;
const JSONB_VERSION: u8 = 1;

/// A buffer of binary `COPY` rows of a fixed number of fields.
#[derive(Debug)]
pub struct CopyRows {
    buf: Vec<u8>,
    fields: i16,
}

impl CopyRows {
    /// An empty buffer for rows of `fields` fields, sized for about
    /// `capacity` bytes.
    pub fn new(fields: i16, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + 32);
        buf.extend_from_slice(SIGNATURE);
        buf.extend_from_slice(&0i32.to_be_bytes());
        buf.extend_from_slice(&0i32.to_be_bytes());
        Self { buf, fields }
    }

    /// Starts a row; exactly `fields` values must follow.
    pub fn row(&mut self) {
        self.buf.extend_from_slice(&self.fields.to_be_bytes());
    }

    /// A NULL.
    pub fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn field(&mut self, bytes: &[u8]) {
        self.length(bytes.len());
        self.buf.extend_from_slice(bytes);
    }

    fn length(&mut self, len: usize) {
        // PostgreSQL holds no field above 1 GiB; a longer one is refused
        // by the server, whatever length is written here.
        let len = i32::try_from(len).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
    }

    /// An `int8`.
    pub fn int8(&mut self, value: i64) {
        self.field(&value.to_be_bytes());
    }

    /// An `int8` or NULL.
    pub fn opt_int8(&mut self, value: Option<i64>) {
        match value {
            Some(value) => self.int8(value),
            None => self.null(),
        }
    }

    /// An `int4`.
    pub fn int4(&mut self, value: i32) {
        self.field(&value.to_be_bytes());
    }

    /// A `float8`.
    pub fn float8(&mut self, value: f64) {
        self.field(&value.to_be_bytes());
    }

    /// A `float8` or NULL.
    pub fn opt_float8(&mut self, value: Option<f64>) {
        match value {
            Some(value) => self.float8(value),
            None => self.null(),
        }
    }

    /// A `text`.
    pub fn text(&mut self, value: &str) {
        self.field(value.as_bytes());
    }

    /// A `text` or NULL.
    pub fn opt_text(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    /// A `jsonb` from JSON text.
    pub fn jsonb(&mut self, json: &str) {
        self.length(json.len() + 1);
        self.buf.push(JSONB_VERSION);
        self.buf.extend_from_slice(json.as_bytes());
    }

    /// A `timestamptz`.
    pub fn timestamptz(&mut self, at: OffsetDateTime) {
        let micros = at.unix_timestamp_nanos() / 1000 - POSTGRES_EPOCH_MICROS;
        let micros = i64::try_from(micros).unwrap_or(i64::MAX);
        self.field(&micros.to_be_bytes());
    }

    /// The finished buffer, trailer included.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_header_fields_and_trailer() {
        let mut rows = CopyRows::new(3, 0);
        rows.row();
        rows.int8(1);
        rows.null();
        rows.jsonb("{}");
        let bytes = rows.finish();

        let mut expected = SIGNATURE.to_vec();
        expected.extend_from_slice(&[0; 8]);
        expected.extend_from_slice(&3i16.to_be_bytes());
        expected.extend_from_slice(&8i32.to_be_bytes());
        expected.extend_from_slice(&1i64.to_be_bytes());
        expected.extend_from_slice(&(-1i32).to_be_bytes());
        expected.extend_from_slice(&3i32.to_be_bytes());
        expected.extend_from_slice(b"\x01{}");
        expected.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn timestamps_count_microseconds_from_2000() {
        let cases = [
            (946_684_800_000_000_000i128, 0i64),
            (946_684_800_000_001_000, 1),
            (0, -946_684_800_000_000),
        ];
        for (unix_nanos, micros) in cases {
            let mut rows = CopyRows::new(1, 0);
            let at = OffsetDateTime::from_unix_timestamp_nanos(unix_nanos).unwrap();
            rows.timestamptz(at);
            let bytes = rows.finish();
            let field = &bytes[19 + 4..19 + 12];
            assert_eq!(field, micros.to_be_bytes(), "{unix_nanos}");
        }
    }
}
