//! `bench fanout`: WebSocket broadcast fan-out. The node's `/analytics`
//! endpoint runs in this process and broadcasts at a fixed rate; a child
//! process (`bench fanout-clients`) holds N subscribed connections and
//! measures, per delivery, the time from broadcast to receipt. Reported:
//! delivery latency p50 / p99 / max, messages lost by clients that kept up,
//! clients dropped, and the server's memory per idle connection.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use offchain_worker::hub::{Channel, Hub};
use offchain_worker::stats::Stats;
use offchain_worker::storage::Store;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::floor::{FloorReport, FloorServer, Schedule};
use super::wsclient::{self, opcode};
use crate::state::NodeState;
use crate::ws::{WsHub, WsSettings};

/// Options of `bench fanout`.
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Concurrent WebSocket clients; several values run one after another.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub clients: Vec<usize>,
    /// Broadcasts per second, at least 1.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,
    /// Seconds of broadcasting per run, at least 1.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// The server's coalescing interval, milliseconds (as
    /// `server.ws_coalesce_ms`).
    #[arg(long, default_value_t = crate::config::ServerConfig::default().ws_coalesce_ms)]
    pub coalesce_ms: u64,
    /// Also run each client count against the floor: a bare server that
    /// writes every broadcast to every connection with one system call
    /// and does nothing else (see `floor.rs`).
    #[arg(long)]
    pub floor: bool,
    /// Threads of the floor server, each writing to its share of the
    /// connections (1 to 64; with `--floor`).
    #[arg(long, default_value_t = 1, requires = "floor",
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub floor_threads: u16,
}

/// Options of the client process (started by `bench fanout`).
#[derive(Debug, Clone, clap::Args)]
pub struct FanoutClientArgs {
    /// The endpoint, `ws://host:port/analytics`.
    #[arg(long)]
    pub url: String,
    /// Connections to hold.
    #[arg(long)]
    pub clients: usize,
    /// Broadcasts each connection should receive.
    #[arg(long)]
    pub expected: u64,
}

/// Open files beyond one per connection: listeners, pipes, the runtime.
const SPARE_FILES: u64 = 64;

/// The soft limit on open files, from the text of `/proc/self/limits`;
/// `None` when unlimited or not found.
fn open_file_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// What the client process reports.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ClientReport {
    connected: usize,
    dropped: usize,
    expected: u64,
    received: u64,
    lost_by_live_clients: u64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Runs the benchmark and prints a table.
pub async fn run(args: &FanoutArgs) -> anyhow::Result<()> {
    let most = args.clients.iter().copied().max().unwrap_or(0);
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    if let Some(limit) = open_file_limit(&limits) {
        let needed = most as u64 + SPARE_FILES;
        if limit < needed {
            bail!(
                "--clients {most} needs at least {needed} open files in this process \
                 and in its client process, but the limit is {limit}: raise it with \
                 `ulimit -n {needed}`"
            );
        }
    }
    println!(
        "fan-out: {} broadcasts/s for {} s per run, coalescing {} ms",
        args.rate, args.seconds, args.coalesce_ms
    );
    println!(
        "{:>8} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>12}",
        "clients",
        "delivered",
        "p50 ms",
        "p99 ms",
        "max ms",
        "lost",
        "dropped",
        "bytes/conn"
    );
    for &clients in &args.clients {
        let (report, per_connection) = run_once(clients, args).await?;
        print_row("", &report, &format!("{per_connection:.0}"));
        if args.floor {
            let (report, server) = run_floor(clients, args).await?;
            print_row(" floor", &report, "-");
            let per_write = server.writing.as_secs_f64() / server.writes.max(1) as f64;
            println!(
                "   floor server: {} passes, {:.2} us per write, longest pass {:.1} ms, \
                 {} writes left partly for later",
                server.passes,
                per_write * 1e6,
                server.longest_pass.as_secs_f64() * 1e3,
                server.partial
            );
        }
    }
    Ok(())
}

fn print_row(label: &str, report: &ClientReport, per_connection: &str) {
    println!(
        "{:>8} {:>9} {:>8.2} {:>8.2} {:>8.2} {:>9} {:>8} {:>12}{label}",
        report.connected,
        report.received,
        report.p50_ms,
        report.p99_ms,
        report.max_ms,
        report.lost_by_live_clients,
        report.dropped,
        per_connection
    );
}

/// One run against the floor server: the client report and the server's.
async fn run_floor(
    clients: usize,
    args: &FanoutArgs,
) -> anyhow::Result<(ClientReport, FloorReport)> {
    let server = FloorServer::bind()?;
    let addr = server.addr()?;
    let (rate, seconds) = (args.rate, args.seconds);
    let schedule = Schedule { rate, seconds };
    let threads = usize::from(args.floor_threads);
    let (done, held) = std::sync::mpsc::channel();
    let serving =
        tokio::task::spawn_blocking(move || server.run(clients, schedule, threads, held));
    let total = u64::from(args.rate) * args.seconds;
    let mut child = start_clients(&format!("ws://{addr}/analytics"), clients, total)?;
    let mut lines = ready(&mut child).await?;
    tokio::time::sleep(Duration::from_secs(seconds + 1)).await;
    let report = finish(&mut child, &mut lines).await?;
    let _ = done.send(());
    let server = serving.await.context("the floor server panicked")??;
    Ok((report, server))
}

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// Starts the client process.
fn start_clients(
    url: &str,
    clients: usize,
    expected: u64,
) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe()?;
    tokio::process::Command::new(exe)
        .args(["bench", "fanout-clients", "--url", url])
        .args(["--clients", &clients.to_string()])
        .args(["--expected", &expected.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the client process")
}

/// Waits until the client process holds every connection.
async fn ready(child: &mut tokio::process::Child) -> anyhow::Result<Lines> {
    let stdout = child.stdout.take().context("client stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = lines.next_line().await?.context("client process ended early")?;
    if ready.trim() != "ready" {
        bail!("client process said {ready:?}");
    }
    Ok(lines)
}

/// Tells the client process the broadcasts are over; its report.
async fn finish(
    child: &mut tokio::process::Child,
    lines: &mut Lines,
) -> anyhow::Result<ClientReport> {
    let mut stdin = child.stdin.take().context("client stdin")?;
    stdin.write_all(b"done\n").await?;
    let line = lines.next_line().await?.context("no report from the client process")?;
    let report: ClientReport = serde_json::from_str(&line)?;
    let _ = child.wait().await;
    Ok(report)
}

async fn run_once(
    clients: usize,
    args: &FanoutArgs,
) -> anyhow::Result<(ClientReport, f64)> {
    let shutdown = CancellationToken::new();
    let coalesce = Duration::from_millis(args.coalesce_ms);
    let (state, addr) = serve(clients, coalesce, shutdown.clone()).await?;
    let baseline = resident_bytes();

    let total = u64::from(args.rate) * args.seconds;
    let url = format!("ws://{addr}/analytics");
    let mut child = start_clients(&url, clients, total)?;
    let mut lines = ready(&mut child).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let connections = state.connections.load(Ordering::Relaxed).max(1);
    let per_connection =
        resident_bytes().saturating_sub(baseline) as f64 / connections as f64;

    broadcast(&state.hub, args.rate, args.seconds).await;
    let report = finish(&mut child, &mut lines).await?;
    shutdown.cancel();
    Ok((report, per_connection))
}

async fn serve(
    clients: usize,
    coalesce: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<(Arc<NodeState>, SocketAddr)> {
    // Only the WebSocket endpoint is exercised: storage and chain are never
    // touched, so they are set up without connecting.
    let store = Store::connect_lazy("postgresql://bench@127.0.0.1:1/none", 1)?;
    let chain = crate::chain::read_provider("http://127.0.0.1:1")?;
    let settings = WsSettings {
        max_connections: clients as u64 + 10,
        queue_capacity: 1024,
        coalesce,
        heartbeat: Duration::from_secs(30),
        write_timeout: Duration::from_secs(5),
        max_resume: 0,
    };
    let (_, heads) = watch::channel(None);
    let state = Arc::new(NodeState {
        store,
        hub: Hub::new(),
        stats: Arc::new(Stats::default()),
        heads,
        chain,
        contract: Default::default(),
        chain_id: 0,
        redis_enabled: false,
        kafka_enabled: false,
        connections: AtomicU64::new(0),
        ws: WsHub::new(settings),
        started: Instant::now(),
        public: crate::state::PublicInfo::new("http://127.0.0.1:1"),
    });
    tokio::spawn(state.ws.clone().dispatch(state.hub.subscribe(), shutdown.clone()));
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let (addr, _task) = crate::http::serve(state.clone(), addr, shutdown).await?;
    Ok((state, addr))
}

async fn broadcast(hub: &Hub, rate: u32, seconds: u64) {
    let total = u64::from(rate) * seconds;
    let started = Instant::now();
    for seq in 0..total {
        let due = Duration::from_secs_f64(seq as f64 / f64::from(rate));
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
        let data =
            json!({ "seq": seq, "sent_ns": now_ns(), "metric": "bench", "value": 1.0 });
        hub.publish(Channel::Dashboard, data);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Nanoseconds since the Unix epoch.
pub(super) fn now_ns() -> u128 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map(|d| d.as_nanos()).unwrap_or(0)
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap_or("");
    let kib: u64 =
        line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or(0);
    kib * 1024
}

/// One client's tally.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    dropped: bool,
}

/// The client process: holds the connections, then reports.
pub async fn clients(args: &FanoutClientArgs) -> anyhow::Result<()> {
    let mut tasks = Vec::with_capacity(args.clients);
    let stop = CancellationToken::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    for _ in 0..args.clients {
        // A token of its own: ten thousand waiters on one token would
        // contend for its lock on every read.
        let (url, stop, gate) = (args.url.clone(), stop.child_token(), gate.clone());
        let expected = args.expected;
        tasks.push(tokio::spawn(async move { follow(url, expected, stop, gate).await }));
    }
    while gate.available_permits() < 256 || !connected_all(&tasks) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if tasks.iter().all(|t| t.is_finished()) {
            break;
        }
    }
    let mut out = tokio::io::stdout();
    out.write_all(b"ready\n").await?;
    out.flush().await?;

    let mut input = BufReader::new(tokio::io::stdin()).lines();
    let line = input.next_line().await?.unwrap_or_default();
    if line.trim() != "done" {
        bail!("expected `done` from the benchmark, got {line:?}");
    }
    // Clients still behind get time to drain what is in flight.
    let deadline = Instant::now() + DRAIN;
    let settled = || COMPLETE.load(Ordering::Relaxed) + ENDED.load(Ordering::Relaxed);
    while settled() < CONNECTED.load(Ordering::Relaxed) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let mut tallies = Vec::with_capacity(tasks.len());
    for task in tasks {
        let tally = match task.await {
            Ok(Ok(tally)) => tally,
            // A client that failed to connect or crashed counts as dropped.
            _ => Tally { dropped: true, ..Tally::default() },
        };
        tallies.push(tally);
    }
    let report = summarise(tallies, args.expected);
    out.write_all(format!("{}\n", serde_json::to_string(&report)?).as_bytes()).await?;
    out.flush().await?;
    Ok(())
}

/// Clients connected and subscribed.
static CONNECTED: AtomicU64 = AtomicU64::new(0);
/// Clients that received every broadcast.
static COMPLETE: AtomicU64 = AtomicU64::new(0);
/// Clients whose connection ended.
static ENDED: AtomicU64 = AtomicU64::new(0);
/// Longest wait for clients to drain after the last broadcast.
const DRAIN: Duration = Duration::from_secs(30);

fn connected_all(tasks: &[tokio::task::JoinHandle<anyhow::Result<Tally>>]) -> bool {
    CONNECTED.load(Ordering::Relaxed) as usize >= tasks.len()
}

async fn follow(
    url: String,
    expected: u64,
    stop: CancellationToken,
    gate: Arc<tokio::sync::Semaphore>,
) -> anyhow::Result<Tally> {
    let permit = gate.acquire_owned().await?;
    let mut socket = wsclient::Client::connect(&url).await?;
    let subscribe = json!({ "type": "subscribe", "channels": ["dashboard"] }).to_string();
    socket.send(opcode::TEXT, subscribe.as_bytes()).await?;
    CONNECTED.fetch_add(1, Ordering::Relaxed);
    drop(permit);

    let mut tally = Tally::default();
    let mut pongs = Vec::new();
    let stop = stop.cancelled_owned();
    tokio::pin!(stop);
    loop {
        let open = tokio::select! {
            () = &mut stop => return Ok(tally),
            open = socket.fill() => open,
        };
        if !matches!(open, Ok(true)) {
            return Ok(tally.ended());
        }
        // Frames that arrived together were received together.
        let received = now_ns();
        while let Some((code, payload)) = socket.next_frame()? {
            match code {
                opcode::TEXT => {
                    let Some(sent) = field(payload, b"\"sent_ns\":") else { continue };
                    let latency = received.saturating_sub(u128::from(sent)) / 1000;
                    tally.latencies_us.push(u32::try_from(latency).unwrap_or(u32::MAX));
                    if tally.latencies_us.len() as u64 == expected {
                        COMPLETE.fetch_add(1, Ordering::Relaxed);
                    }
                }
                opcode::PING => pongs.push(payload.to_vec()),
                opcode::CLOSE => return Ok(tally.ended()),
                _ => {}
            }
        }
        for pong in pongs.drain(..) {
            socket.send(opcode::PONG, &pong).await?;
        }
    }
}

impl Tally {
    /// The server ended the connection.
    fn ended(mut self) -> Self {
        self.dropped = true;
        ENDED.fetch_add(1, Ordering::Relaxed);
        self
    }
}

/// Reads the unsigned integer after `key` without parsing the whole text.
fn field(text: &[u8], key: &[u8]) -> Option<u64> {
    let start = wsclient::find(text, key)? + key.len();
    let digits = text[start..].iter().take_while(|b| b.is_ascii_digit());
    let mut value: u64 = 0;
    let mut any = false;
    for digit in digits {
        value = value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))?;
        any = true;
    }
    any.then_some(value)
}

/// Totals over all clients; `expected` is the number of broadcasts sent.
fn summarise(tallies: Vec<Tally>, expected: u64) -> ClientReport {
    let mut all: Vec<u32> = Vec::new();
    let mut report =
        ClientReport { connected: tallies.len(), expected, ..ClientReport::default() };
    for tally in &tallies {
        report.received += tally.latencies_us.len() as u64;
        if tally.dropped {
            report.dropped += 1;
        } else {
            report.lost_by_live_clients +=
                expected.saturating_sub(tally.latencies_us.len() as u64);
        }
        all.extend_from_slice(&tally.latencies_us);
    }
    all.sort_unstable();
    let pick = |q: f64| {
        let index = ((all.len() as f64 - 1.0) * q).round() as usize;
        all.get(index).map_or(0.0, |us| f64::from(*us) / 1000.0)
    };
    report.p50_ms = pick(0.5);
    report.p99_ms = pick(0.99);
    report.max_ms = pick(1.0);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_soft_limit_on_open_files() {
        let limits =
            "Limit                     Soft Limit           Hard Limit           Units\n\
            Max cpu time              unlimited            unlimited            seconds\n\
            Max open files            1024                 524288               files\n";
        assert_eq!(open_file_limit(limits), Some(1024));
        let unlimited = limits.replace("1024   ", "unlimited");
        assert_eq!(open_file_limit(&unlimited), None);
        assert_eq!(open_file_limit("Max processes 5 5 processes"), None);
    }

    #[test]
    fn reads_integer_fields_in_place() {
        let text = br#"{"type":"dashboard_update","data":{"seq":42,"sent_ns":123456}}"#;
        assert_eq!(field(text, b"\"seq\":"), Some(42));
        assert_eq!(field(text, b"\"sent_ns\":"), Some(123_456));
        assert_eq!(field(text, b"\"missing\":"), None);
        assert_eq!(field(b"\"seq\":x", b"\"seq\":"), None);
    }

    #[test]
    fn counts_losses_only_for_clients_that_stayed() {
        let kept = Tally { latencies_us: vec![1000; 10], dropped: false };
        let gap = Tally { latencies_us: vec![2000; 8], dropped: false };
        let dropped = Tally { latencies_us: vec![], dropped: true };
        let report = summarise(vec![kept, gap, dropped], 10);
        assert_eq!(report.expected, 10);
        assert_eq!(report.lost_by_live_clients, 2);
        assert_eq!(report.dropped, 1);
        assert_eq!(report.received, 18);
    }
}
