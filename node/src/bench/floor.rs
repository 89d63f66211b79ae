//! The floor under `bench fanout --floor`: the least a server can do per
//! delivery. It answers the WebSocket handshake, then on one thread (or
//! `--floor-threads`, each with its share of the connections) passes over
//! its connections again and again, each pass writing every
//! broadcast that fell due since the previous pass, already framed, with
//! one non-blocking `write` per connection (no queues, no runtime, no
//! reading). A broadcast counts from when it fell due, so the wait for a
//! pass is part of its latency, as the wait for the node's dispatcher is.
//! The same client process as for the node measures it, so the two runs
//! differ only in the server: what remains in the floor's latency is the
//! cost of loopback TCP itself on this machine.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::wsclient::find;

/// Largest handshake request accepted.
const MAX_REQUEST: usize = 16 * 1024;

/// A bound listener, before any connection.
pub struct FloorServer {
    listener: TcpListener,
}

/// What the server measured while broadcasting.
#[derive(Debug, Default)]
pub struct FloorReport {
    /// Writes made, one per connection and pass.
    pub writes: u64,
    /// Passes over every connection.
    pub passes: u64,
    /// Time spent writing, over all passes.
    pub writing: Duration,
    /// The longest pass over every connection.
    pub longest_pass: Duration,
    /// Writes the kernel did not take whole (their rest was sent later).
    pub partial: u64,
}

/// One connection and the bytes it still owes.
struct Connection {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl FloorServer {
    /// Listens on a free loopback port.
    pub fn bind() -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        Ok(Self { listener })
    }

    /// Where clients connect.
    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Accepts `clients` connections, answering each handshake, then
    /// broadcasts `rate` times a second for `seconds` from `threads`
    /// threads, each serving its share of the connections (blocking: run
    /// it on a thread of its own). The connections stay open until `done`
    /// fires.
    pub fn run(
        self,
        clients: usize,
        schedule: Schedule,
        threads: usize,
        done: std::sync::mpsc::Receiver<()>,
    ) -> anyhow::Result<FloorReport> {
        let mut connections = Vec::with_capacity(clients);
        for _ in 0..clients {
            let (stream, _) = self.listener.accept()?;
            connections.push(handshake(stream)?);
        }
        // The client process reports ready once every client subscribed.
        std::thread::sleep(Duration::from_millis(500));

        let clock = (Instant::now(), super::fanout::now_ns());
        let share = clients.div_ceil(threads.max(1)).max(1);
        let reports = std::thread::scope(|scope| {
            let workers: Vec<_> = connections
                .chunks_mut(share)
                .map(|group| scope.spawn(move || serve(group, schedule, clock)))
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|_| bail!("a floor thread panicked")))
                .collect::<anyhow::Result<Vec<FloorReport>>>()
        })?;
        let _ = done.recv();
        Ok(reports.into_iter().fold(FloorReport::default(), FloorReport::add))
    }
}

/// When broadcasts fall due: `rate` a second for `seconds`.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Broadcasts per second.
    pub rate: u32,
    /// Seconds of broadcasting.
    pub seconds: u64,
}

/// One thread's passes over its connections, from `started` (which is
/// `epoch_ns` on the wall clock) until every broadcast is written.
fn serve(
    connections: &mut [Connection],
    schedule: Schedule,
    (started, epoch_ns): (Instant, u128),
) -> anyhow::Result<FloorReport> {
    let rate = f64::from(schedule.rate);
    let due = |seq: u64| Duration::from_secs_f64(seq as f64 / rate);
    let (total, mut next) = (u64::from(schedule.rate) * schedule.seconds, 0);
    let mut report = FloorReport::default();
    let mut frames = Vec::new();
    while next < total {
        if let Some(wait) = due(next).checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        frames.clear();
        while next < total && due(next) <= started.elapsed() {
            let sent_ns = epoch_ns + due(next).as_nanos();
            frames.extend_from_slice(&text_frame(&broadcast(next, sent_ns)));
            next += 1;
        }
        let pass = Instant::now();
        for connection in connections.iter_mut() {
            report.partial += u64::from(connection.send(&frames)?);
        }
        let pass = pass.elapsed();
        report.writes += connections.len() as u64;
        report.passes += 1;
        report.writing += pass;
        report.longest_pass = report.longest_pass.max(pass);
    }
    // What the kernel could not take yet is sent before the end.
    let deadline = Instant::now() + Duration::from_secs(30);
    while connections.iter().any(|c| !c.pending.is_empty()) {
        if Instant::now() > deadline {
            bail!("connections still owed bytes after 30 s");
        }
        for connection in connections.iter_mut() {
            connection.send(&[])?;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(report)
}

impl FloorReport {
    /// The totals of two threads' reports.
    fn add(self, other: Self) -> Self {
        Self {
            writes: self.writes + other.writes,
            passes: self.passes + other.passes,
            writing: self.writing + other.writing,
            longest_pass: self.longest_pass.max(other.longest_pass),
            partial: self.partial + other.partial,
        }
    }
}

impl Connection {
    /// Writes what is owed and then `frame`; whether the kernel left some
    /// of it for later.
    fn send(&mut self, frame: &[u8]) -> anyhow::Result<bool> {
        self.pending.extend_from_slice(frame);
        if self.pending.is_empty() {
            return Ok(false);
        }
        match self.stream.write(&self.pending) {
            Ok(written) => {
                self.pending.drain(..written);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(e).context("writing to a client"),
        }
        Ok(!self.pending.is_empty())
    }
}

/// Reads the opening request and answers it; the stream is then
/// non-blocking.
fn handshake(mut stream: TcpStream) -> anyhow::Result<Connection> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 1024];
    while find(&request, b"\r\n\r\n").is_none() {
        let read = stream.read(&mut chunk)?;
        if read == 0 || request.len() > MAX_REQUEST {
            bail!("a client ended or overran its handshake");
        }
        request.extend_from_slice(&chunk[..read]);
    }
    let text = std::str::from_utf8(&request)?;
    let key = text
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key").then(|| value.trim())
        })
        .context("a handshake without Sec-WebSocket-Key")?;
    let answer = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    stream.write_all(answer.as_bytes())?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(Connection { stream, pending: Vec::new() })
}

/// The broadcast as the node would send it on the `dashboard` channel.
fn broadcast(seq: u64, sent_ns: u128) -> String {
    let data = serde_json::json!({
        "seq": seq,
        "sent_ns": sent_ns,
        "metric": "bench",
        "value": 1.0,
    });
    serde_json::json!({ "type": "dashboard_update", "data": data, "timestamp": 0 })
        .to_string()
}

/// An unmasked text frame (RFC 6455 §5.2) holding `text`.
fn text_frame(text: &str) -> Vec<u8> {
    let payload = text.as_bytes();
    let mut frame = vec![0x81];
    match payload.len() {
        len @ 0..=125 => frame.push(len as u8),
        len @ 126..=0xffff => {
            frame.push(126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_their_length_in_the_shortest_form() {
        for (len, header) in
            [(0, 2), (5, 2), (125, 2), (126, 4), (65_535, 4), (70_000, 10)]
        {
            let frame = text_frame(&"x".repeat(len));
            let read = super::super::wsclient::frame_header(&frame).unwrap();
            assert_eq!(read, Some((1, header, len)), "{len}");
            assert_eq!(frame.len(), header + len, "{len}");
        }
    }
}
