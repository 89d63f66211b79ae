//! A lean WebSocket client for `bench fanout`: the opening handshake (with
//! the `Sec-WebSocket-Accept` check), masked client frames, and a reader
//! that hands over every whole frame already buffered after one `read`.
//!
//! Ten thousand clients share the benchmark's machine with the server, so
//! the client does as little as it can per frame: payloads are borrowed
//! from its read buffer, never copied or re-validated.

use anyhow::{bail, ensure, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::{
    client::generate_key, derive_accept_key,
};

/// Bytes read at most per `read`.
const READ_CHUNK: usize = 16 * 1024;
/// Largest frame accepted from the server.
const MAX_FRAME: usize = 1 << 20;
/// Largest handshake response accepted.
const MAX_RESPONSE: usize = 16 * 1024;

/// Frame opcodes (RFC 6455 §5.2).
pub mod opcode {
    /// A text frame.
    pub const TEXT: u8 = 0x1;
    /// A binary frame.
    pub const BINARY: u8 = 0x2;
    /// The closing frame.
    pub const CLOSE: u8 = 0x8;
    /// A ping, answered with a pong carrying its payload.
    pub const PING: u8 = 0x9;
    /// A pong.
    pub const PONG: u8 = 0xA;
}

/// One connection.
pub struct Client {
    stream: TcpStream,
    buffer: Vec<u8>,
    /// Start of the bytes not yet handed out.
    start: usize,
    mask: u32,
}

impl Client {
    /// Connects to `ws://host:port/path` and completes the handshake.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("ws://").context("the URL must start with ws://")?;
        let (authority, path) = match rest.split_once('/') {
            Some((authority, path)) => (authority, format!("/{path}")),
            None => (rest, "/".to_owned()),
        };
        let mut stream = TcpStream::connect(authority).await?;
        stream.set_nodelay(true)?;
        let key = generate_key();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;

        let mut buffer = Vec::with_capacity(READ_CHUNK);
        let head_end = loop {
            if let Some(end) = find(&buffer, b"\r\n\r\n") {
                break end + 4;
            }
            ensure!(buffer.len() < MAX_RESPONSE, "handshake response too long");
            if read_more(&mut stream, &mut buffer).await? == 0 {
                bail!("the server closed the connection during the handshake");
            }
        };
        let head = std::str::from_utf8(&buffer[..head_end])?;
        check_handshake(head, &derive_accept_key(key.as_bytes()))?;
        let seed = u32::from_le_bytes(key.as_bytes()[..4].try_into()?);
        Ok(Self { stream, buffer, start: head_end, mask: seed | 1 })
    }

    /// Sends one masked frame.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        // A xorshift step: every frame gets a fresh mask.
        self.mask ^= self.mask << 13;
        self.mask ^= self.mask >> 17;
        self.mask ^= self.mask << 5;
        let frame = client_frame(opcode, payload, self.mask.to_be_bytes());
        self.stream.write_all(&frame).await
    }

    /// Waits for more bytes; `false` when the server closed the connection.
    pub async fn fill(&mut self) -> std::io::Result<bool> {
        if self.start > 0 {
            self.buffer.drain(..self.start);
            self.start = 0;
        }
        Ok(read_more(&mut self.stream, &mut self.buffer).await? > 0)
    }

    /// The next whole frame already read: `(opcode, payload)`, or `None`
    /// until [`Client::fill`] reads more.
    pub fn next_frame(&mut self) -> anyhow::Result<Option<(u8, &[u8])>> {
        let Some((opcode, header, length)) = frame_header(&self.buffer[self.start..])?
        else {
            return Ok(None);
        };
        let begin = self.start + header;
        self.start = begin + length;
        Ok(Some((opcode, &self.buffer[begin..begin + length])))
    }
}

/// Appends what one `read` returns to `buffer`, into spare capacity (no
/// zeroing) of at least [`READ_CHUNK`] bytes.
async fn read_more(
    stream: &mut TcpStream,
    buffer: &mut Vec<u8>,
) -> std::io::Result<usize> {
    buffer.reserve(READ_CHUNK);
    stream.read_buf(buffer).await
}

/// Checks a `101 Switching Protocols` answer and its accept key.
fn check_handshake(head: &str, accept: &str) -> anyhow::Result<()> {
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    ensure!(
        status.starts_with("HTTP/1.1 101"),
        "the server refused the upgrade: {status}"
    );
    let accepted = lines.filter_map(|line| line.split_once(':')).any(|(name, value)| {
        name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == accept
    });
    ensure!(accepted, "the server's Sec-WebSocket-Accept does not match the key");
    Ok(())
}

/// Reads a server frame's header: `(opcode, header length, payload
/// length)`, or `None` while the frame is incomplete.
pub(super) fn frame_header(bytes: &[u8]) -> anyhow::Result<Option<(u8, usize, usize)>> {
    let [first, second, ..] = *bytes else { return Ok(None) };
    ensure!(first & 0x80 != 0, "fragmented frames are not expected from the server");
    ensure!(second & 0x80 == 0, "a server frame must not be masked");
    let (header, length) = match second & 0x7F {
        126 if bytes.len() >= 4 => {
            (4, usize::from(u16::from_be_bytes([bytes[2], bytes[3]])))
        }
        127 if bytes.len() >= 10 => {
            let length = u64::from_be_bytes(bytes[2..10].try_into()?);
            (10, usize::try_from(length)?)
        }
        126 | 127 => return Ok(None),
        short => (2, usize::from(short)),
    };
    ensure!(length <= MAX_FRAME, "a frame of {length} bytes is larger than expected");
    Ok((bytes.len() >= header + length).then_some((first & 0x0F, header, length)))
}

/// A whole client frame with its payload masked by `mask`.
fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(0x80 | opcode);
    match payload.len() {
        short @ 0..=125 => frame.push(0x80 | short as u8),
        medium @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(medium as u16).to_be_bytes());
        }
        long => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(long as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
    frame
}

/// Where `needle` starts in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(haystack, needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_frame_headers_of_every_length_form() {
        let long_payload = vec![b'x'; 70_000];
        let mut long = vec![0x81, 127];
        long.extend_from_slice(&(long_payload.len() as u64).to_be_bytes());
        long.extend_from_slice(&long_payload);
        // (frame bytes, expected (opcode, header, payload) or None)
        type Header = Option<(u8, usize, usize)>;
        let cases: Vec<(Vec<u8>, Header)> = vec![
            (vec![0x81, 3, b'a', b'b', b'c'], Some((1, 2, 3))),
            (vec![0x81, 3, b'a'], None),
            (vec![0x89, 0], Some((9, 2, 0))),
            ([vec![0x82, 126, 0, 200], vec![0; 200]].concat(), Some((2, 4, 200))),
            (vec![0x82, 126, 0], None),
            (long, Some((1, 10, 70_000))),
            (vec![0x81], None),
        ];
        for (bytes, expected) in cases {
            assert_eq!(
                frame_header(&bytes).unwrap(),
                expected,
                "{:?}",
                &bytes[..2.min(bytes.len())]
            );
        }
        assert!(frame_header(&[0x01, 1, b'a']).is_err(), "fragment");
        assert!(frame_header(&[0x81, 0x81, 0, 0, 0, 0, b'a']).is_err(), "masked");
    }

    #[test]
    fn masks_client_frames() {
        let frame = client_frame(opcode::TEXT, b"abc", [1, 2, 3, 4]);
        assert_eq!(frame, [0x81, 0x83, 1, 2, 3, 4, b'a' ^ 1, b'b' ^ 2, b'c' ^ 3]);
        let frame = client_frame(opcode::PONG, &[7; 300], [0; 4]);
        assert_eq!(frame[..4], [0x8A, 0x80 | 126, 1, 44]);
        assert_eq!(frame.len(), 4 + 4 + 300);
    }

    #[test]
    fn checks_the_handshake_answer() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let accept = derive_accept_key(key.as_bytes());
        let good = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nsec-websocket-accept: {accept}\r\n\r\n"
        );
        assert!(check_handshake(&good, &accept).is_ok());
        let wrong = good.replace(&accept, "AAAA");
        assert!(check_handshake(&wrong, &accept).is_err());
        let refused = "HTTP/1.1 400 Bad Request\r\n\r\n";
        assert!(check_handshake(refused, &accept).is_err());
    }
}
