//! The dashboard WebSocket endpoint, `/analytics`.
//!
//! Protocol (JSON text frames, every server message `{type, data,
//! timestamp}`):
//! - on connect the server sends `welcome` with the connection id;
//! - `{"type":"subscribe","channels":[...]}` / `unsubscribe` are answered
//!   `subscribed` / `unsubscribed` with the channels now followed; the
//!   channels are `dashboard`, `insights`, `alerts` and `anchors`;
//! - `{"type":"request_historical_data","metric":..,"from":..,"to":..}` is
//!   answered `historical_data` with at most 1000 points, newest first;
//! - broadcasts (`dashboard_update`, `insights`, `alert`, `anchor`) reach
//!   only the connections subscribed to their channel;
//! - anything else gets an `error` message; the connection stays open.
//!
//! The dispatcher gathers broadcasts for at most one coalescing interval
//! after its last delivery (none when the hub was quiet), then hands each
//! connection one shared batch of the messages of its channels: under
//! load, a connection is woken and written once per interval instead of
//! once per message. Each connection has a bounded queue. The dispatcher
//! never waits for a connection: when a queue is full the client is told
//! it is too slow and is disconnected, so one slow client never delays the
//! others. The server
//! pings every heartbeat interval and drops connections that stay silent
//! for two intervals. Connections beyond the limit are closed at once with
//! close code 1013 and a reason.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures::SinkExt;
use offchain_worker::hub::{Channel, HubMessage};
use offchain_worker::messages;
use offchain_worker::storage::ReplayTable;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, trace, warn};

use crate::rpc::views::{parse_rfc3339, MetricPointView};
use crate::state::NodeState;

/// Largest accepted client message, bytes.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// Initial read buffer of a connection, bytes.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes gathered before a write reaches the socket; a flush sends less.
const WRITE_BUFFER: usize = 16 * 1024;
/// Most broadcasts handed over in one delivery.
const MAX_DELIVERY: usize = 4096;
/// Most queued batches written with one flush.
const MAX_WRITE_BATCHES: usize = 64;
/// Most bytes a connection may hold unwritten before a write fails.
const MAX_WRITE_BUFFER: usize = 4 * 1024 * 1024;
/// Most points in one `historical_data` answer.
pub const MAX_HISTORY: i64 = 1000;
/// Close code for refused connections (RFC 6455 "try again later").
pub const CLOSE_TRY_LATER: u16 = 1013;
/// Close code for clients that cannot keep up (RFC 6455 "policy").
pub const CLOSE_TOO_SLOW: u16 = 1008;

/// Settings of the WebSocket endpoint.
#[derive(Debug, Clone)]
pub struct WsSettings {
    /// Most simultaneous connections.
    pub max_connections: u64,
    /// Messages queued per connection before it counts as too slow.
    pub queue_capacity: usize,
    /// Longest a broadcast waits to be delivered with the ones that follow
    /// it; zero delivers each at once.
    pub coalesce: Duration,
    /// Interval of server pings.
    pub heartbeat: Duration,
    /// Longest wait for one WebSocket write.
    pub write_timeout: Duration,
    /// Most messages replayed to a resuming client per channel; a longer
    /// gap is reported instead of replayed.
    pub max_resume: i64,
}

/// Connections and their subscriptions, shared by the dispatcher.
pub struct WsHub {
    settings: WsSettings,
    next_id: AtomicU64,
    clients: Mutex<HashMap<u64, Client>>,
    /// Connections dropped for being too slow.
    pub dropped_slow: AtomicU64,
}

struct Client {
    channels: ChannelSet,
    queue: mpsc::Sender<Batch>,
    /// Messages handed to the connection and not yet written.
    pending: Arc<AtomicUsize>,
    too_slow: CancellationToken,
    /// Fired when the dispatcher lost broadcasts this client may have
    /// wanted: it is told and closed, to resume from its last position.
    missed: CancellationToken,
}

/// A broadcast serialised once for all connections.
#[derive(Clone)]
struct Outgoing {
    channel: Channel,
    position: Option<i64>,
    text: Utf8Bytes,
}

/// The broadcasts of one delivery for one set of channels, shared by every
/// connection following that set.
type Batch = Arc<[Outgoing]>;

/// The channels a connection follows, one bit each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ChannelSet(u8);

/// Every channel, in bit order.
const ALL_CHANNELS: [Channel; 4] =
    [Channel::Dashboard, Channel::Insights, Channel::Alerts, Channel::Anchors];

/// Distinct channel sets: one shared batch each per delivery.
const CHANNEL_SETS: usize = 1 << ALL_CHANNELS.len();

impl ChannelSet {
    fn bit(channel: Channel) -> u8 {
        match channel {
            Channel::Dashboard => 1,
            Channel::Insights => 2,
            Channel::Alerts => 4,
            Channel::Anchors => 8,
        }
    }

    fn contains(self, channel: Channel) -> bool {
        self.0 & Self::bit(channel) != 0
    }

    fn insert(&mut self, channel: Channel) {
        self.0 |= Self::bit(channel);
    }

    fn remove(&mut self, channel: Channel) {
        self.0 &= !Self::bit(channel);
    }

    fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The channels' names, sorted.
    fn names(self) -> Vec<&'static str> {
        let mut names: Vec<&str> = ALL_CHANNELS
            .into_iter()
            .filter(|c| self.contains(*c))
            .map(channel_name)
            .collect();
        names.sort_unstable();
        names
    }
}

/// What the dispatcher gathered for one delivery.
#[derive(Default)]
struct Gathered {
    messages: Vec<Arc<HubMessage>>,
    /// The hub overwrote broadcasts before the dispatcher read them.
    lagged: bool,
    /// The hub is gone.
    closed: bool,
}

impl Gathered {
    fn take(&mut self, next: Result<Arc<HubMessage>, broadcast::error::RecvError>) {
        match next {
            Ok(message) => self.messages.push(message),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                warn!(target: "ws", missed, "dispatcher fell behind the hub; subscribers must resume");
                self.lagged = true;
            }
            Err(broadcast::error::RecvError::Closed) => self.closed = true,
        }
    }

    /// Whether to stop gathering: a gap must be reported before anything
    /// after it is delivered.
    fn complete(&self) -> bool {
        self.lagged || self.closed
    }
}

impl WsHub {
    /// An empty registry.
    pub fn new(settings: WsSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            next_id: AtomicU64::new(1),
            clients: Mutex::new(HashMap::new()),
            dropped_slow: AtomicU64::new(0),
        })
    }

    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Client>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Delivers hub broadcasts to subscribed connections until `shutdown`.
    ///
    /// A broadcast that arrives after a quiet interval is delivered at
    /// once; one that arrives within the coalescing interval of the last
    /// delivery waits for the interval's end, with whatever else arrives.
    pub async fn dispatch(
        self: Arc<Self>,
        mut hub: broadcast::Receiver<Arc<HubMessage>>,
        shutdown: CancellationToken,
    ) {
        let mut last_delivery: Option<tokio::time::Instant> = None;
        loop {
            let mut gathered = Gathered::default();
            tokio::select! {
                () = shutdown.cancelled() => return,
                next = hub.recv() => gathered.take(next),
            }
            if let Some(due) = last_delivery.map(|at| at + self.settings.coalesce) {
                let deadline = tokio::time::sleep_until(due);
                tokio::pin!(deadline);
                while !gathered.complete() {
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => return,
                        () = &mut deadline => break,
                        next = hub.recv() => gathered.take(next),
                    }
                }
            }
            while !gathered.complete() && gathered.messages.len() < MAX_DELIVERY {
                match hub.try_recv() {
                    Ok(message) => gathered.messages.push(message),
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(broadcast::error::TryRecvError::Lagged(missed)) => {
                        gathered.take(Err(broadcast::error::RecvError::Lagged(missed)))
                    }
                    Err(broadcast::error::TryRecvError::Closed) => gathered.closed = true,
                }
            }
            self.deliver(&gathered.messages);
            last_delivery = Some(tokio::time::Instant::now());
            if gathered.lagged {
                self.missed_broadcasts();
            }
            if gathered.closed {
                return;
            }
        }
    }

    /// Broadcasts were lost before reaching the queues: every subscribed
    /// client is told and closed rather than left with a silent gap.
    fn missed_broadcasts(&self) {
        for client in self.clients().values() {
            if !client.channels.is_empty() {
                client.missed.cancel();
            }
        }
    }

    /// Hands every live subscriber the gathered messages of its channels,
    /// serialised once and shared per channel set.
    fn deliver(&self, messages: &[Arc<HubMessage>]) {
        if messages.is_empty() {
            return;
        }
        let mut encoded: Option<Vec<Outgoing>> = None;
        let mut batches: [Option<Option<Batch>>; CHANNEL_SETS] = Default::default();
        let clients = self.clients();
        for client in clients.values() {
            if client.channels.is_empty()
                || client.too_slow.is_cancelled()
                || client.missed.is_cancelled()
            {
                continue;
            }
            let batch =
                batches[usize::from(client.channels.0)].get_or_insert_with(|| {
                    let all = encoded.get_or_insert_with(|| encode(messages));
                    let picked: Vec<Outgoing> = all
                        .iter()
                        .filter(|o| client.channels.contains(o.channel))
                        .cloned()
                        .collect();
                    (!picked.is_empty()).then(|| Batch::from(picked))
                });
            let Some(batch) = batch else { continue };
            // Too slow: more than a queue's worth still unwritten. A client
            // that keeps up takes any delivery, however large.
            let pending = client.pending.fetch_add(batch.len(), Ordering::Relaxed);
            if pending > self.settings.queue_capacity
                || client.queue.try_send(batch.clone()).is_err()
            {
                client.too_slow.cancel();
            }
        }
    }
}

/// Serialises each message once for all connections.
fn encode(messages: &[Arc<HubMessage>]) -> Vec<Outgoing> {
    let serialize = |message: &Arc<HubMessage>| match serde_json::to_string(&**message) {
        Ok(text) => Some(Outgoing {
            channel: message.channel,
            position: message.position,
            text: text.into(),
        }),
        Err(err) => {
            warn!(target: "ws", %err, "broadcast not serialisable");
            None
        }
    };
    messages.iter().filter_map(serialize).collect()
}

/// The `/analytics` handler.
pub async fn upgrade(
    ws: WebSocketUpgrade,
    State(state): State<Arc<NodeState>>,
) -> Response {
    // Small buffers keep an idle connection cheap; queued messages are
    // written together and flushed once.
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| session(socket, state))
}

/// Decrements the connection count when a session ends.
struct Admission<'a>(&'a AtomicU64);

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn session(mut socket: WebSocket, state: Arc<NodeState>) {
    let ws = state.ws.clone();
    let open = state.connections.fetch_add(1, Ordering::Relaxed) + 1;
    let _admission = Admission(&state.connections);
    if open > ws.settings.max_connections {
        let reason = format!(
            "connection limit of {} reached; retry later",
            ws.settings.max_connections
        );
        let frame = CloseFrame { code: CLOSE_TRY_LATER, reason: Utf8Bytes::from(reason) };
        let _ = socket.send(Message::Close(Some(frame))).await;
        debug!(target: "ws", open, "connection refused at the limit");
        return;
    }

    let id = ws.next_id.fetch_add(1, Ordering::Relaxed);
    let (queue, receiver) = mpsc::channel(ws.settings.queue_capacity);
    let too_slow = CancellationToken::new();
    let missed = CancellationToken::new();
    let pending = Arc::new(AtomicUsize::new(0));
    let client = Client {
        channels: ChannelSet::default(),
        queue,
        pending: pending.clone(),
        too_slow: too_slow.clone(),
        missed: missed.clone(),
    };
    ws.clients().insert(id, client);
    let mut connection = Connection {
        id,
        state: state.clone(),
        socket,
        last_heard: Instant::now(),
        floors: HashMap::new(),
        pending,
    };
    let end = connection.serve(receiver, too_slow, missed).await;
    ws.clients().remove(&id);
    if matches!(end, End::TooSlow) {
        ws.dropped_slow.fetch_add(1, Ordering::Relaxed);
        debug!(target: "ws", id, "client dropped: too slow");
    }
    trace!(target: "ws", id, ?end, "connection closed");
}

enum WriteError {
    TimedOut,
    Failed,
}

#[derive(Debug)]
enum End {
    ClientClosed,
    TooSlow,
    ServerBehind,
    Silent,
    WriteFailed,
}

struct Connection {
    id: u64,
    state: Arc<NodeState>,
    socket: WebSocket,
    last_heard: Instant,
    /// Per channel, the last position replayed: live messages at or below
    /// it were already sent.
    floors: HashMap<Channel, i64>,
    /// Messages handed to this connection and not yet written, shared with
    /// the dispatcher.
    pending: Arc<AtomicUsize>,
}

impl Connection {
    async fn serve(
        &mut self,
        mut queue: mpsc::Receiver<Batch>,
        too_slow: CancellationToken,
        missed: CancellationToken,
    ) -> End {
        let settings = self.state.ws.settings.clone();
        let welcome = json!({ "connection_id": self.id.to_string(), "channels": CHANNELS,
            "heartbeat_seconds": settings.heartbeat.as_secs() });
        if self.send("welcome", welcome).await.is_err() {
            return End::WriteFailed;
        }
        let mut heartbeat = tokio::time::interval(settings.heartbeat);
        heartbeat.tick().await;
        // Waiting on the tokens registers with them; done once, not per turn.
        let too_slow = too_slow.cancelled_owned();
        let missed = missed.cancelled_owned();
        tokio::pin!(too_slow, missed);
        loop {
            tokio::select! {
                biased;
                () = &mut too_slow => return self.drop_slow().await,
                () = &mut missed => return self.drop_behind().await,
                incoming = self.socket.recv() => match incoming {
                    Some(Ok(message)) => {
                        self.last_heard = Instant::now();
                        if let Err(end) = self.on_message(message).await { return end; }
                    }
                    Some(Err(_)) | None => return End::ClientClosed,
                },
                message = queue.recv() => {
                    let Some(message) = message else { return End::ClientClosed };
                    match self.write_queued(message, &mut queue).await {
                        Ok(()) => {}
                        Err(WriteError::TimedOut) => return End::TooSlow,
                        Err(WriteError::Failed) => return End::WriteFailed,
                    }
                }
                _ = heartbeat.tick() => {
                    if self.last_heard.elapsed() > settings.heartbeat * 2 {
                        return End::Silent;
                    }
                    if self.write_raw(Message::Ping(Default::default())).await.is_err() {
                        return End::WriteFailed;
                    }
                }
            }
        }
    }

    fn already_sent(&self, channel: Channel, position: Option<i64>) -> bool {
        let floor = self.floors.get(&channel);
        matches!((position, floor), (Some(p), Some(f)) if p <= *f)
    }

    async fn drop_slow(&mut self) -> End {
        let data = json!({ "code": "too_slow",
            "message": "the client did not keep up with its subscriptions; disconnecting" });
        let _ = self.send("error", data).await;
        let reason = Utf8Bytes::from_static("client too slow");
        let frame = CloseFrame { code: CLOSE_TOO_SLOW, reason };
        let _ = self.write_raw(Message::Close(Some(frame))).await;
        End::TooSlow
    }

    async fn drop_behind(&mut self) -> End {
        let data = json!({ "code": "server_behind",
            "message": "the server fell behind and lost broadcasts; reconnect and resume from your last position" });
        let _ = self.send("error", data).await;
        let reason = Utf8Bytes::from_static("server fell behind; resume");
        let frame = CloseFrame { code: CLOSE_TRY_LATER, reason };
        let _ = self.write_raw(Message::Close(Some(frame))).await;
        End::ServerBehind
    }

    async fn on_message(&mut self, message: Message) -> Result<(), End> {
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => return Err(End::ClientClosed),
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
            Message::Binary(_) => {
                return self.reply_error("binary frames are not supported").await
            }
        };
        let request: Value = match serde_json::from_str(text.as_str()) {
            Ok(request) => request,
            Err(err) => return self.reply_error(&format!("not valid JSON: {err}")).await,
        };
        let kind =
            request.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
        match kind.as_str() {
            "subscribe" => self.subscribe(&request, true).await,
            "unsubscribe" => self.subscribe(&request, false).await,
            "request_historical_data" => self.history(&request).await,
            "ping" => self.send("pong", json!({})).await.map_err(|()| End::WriteFailed),
            "" => self.reply_error("a message needs a string field `type`").await,
            other => self.reply_error(&format!("unknown message type {other:?}")).await,
        }
    }

    async fn reply_error(&mut self, text: &str) -> Result<(), End> {
        let data = json!({ "code": "bad_request", "message": text });
        self.send("error", data).await.map_err(|()| End::WriteFailed)
    }

    async fn subscribe(&mut self, request: &Value, on: bool) -> Result<(), End> {
        let names = match requested_channels(request) {
            Ok(names) => names,
            Err(text) => return self.reply_error(&text).await,
        };
        let now: Vec<&str> = {
            let ws = self.state.ws.clone();
            let mut clients = ws.clients();
            let Some(client) = clients.get_mut(&self.id) else {
                return Err(End::ClientClosed);
            };
            for channel in names {
                if on {
                    client.channels.insert(channel);
                } else {
                    client.channels.remove(channel);
                }
            }
            client.channels.names()
        };
        let kind = if on { "subscribed" } else { "unsubscribed" };
        self.send(kind, json!({ "channels": now }))
            .await
            .map_err(|()| End::WriteFailed)?;
        if on {
            self.resume(request).await?;
        }
        Ok(())
    }

    /// Replays, per channel named in `resume`, what was stored after the
    /// client's last position, before any live message of that channel.
    async fn resume(&mut self, request: &Value) -> Result<(), End> {
        let body = request.get("data").filter(|d| d.is_object()).unwrap_or(request);
        let Some(Value::Object(resume)) = body.get("resume") else { return Ok(()) };
        for (name, position) in resume {
            let (Some(channel), Some(after)) = (parse_channel(name), position.as_i64())
            else {
                let text =
                    format!("resume needs channel names and integer positions: {name}");
                self.reply_error(&text).await?;
                continue;
            };
            self.replay(channel, after).await?;
        }
        Ok(())
    }

    async fn replay(&mut self, channel: Channel, after: i64) -> Result<(), End> {
        let store = self.state.store.clone();
        let max = self.state.ws.settings.max_resume;
        let missed = store.count_after(replay_table(channel), after).await;
        let missed = match missed {
            Ok(missed) => missed,
            Err(err) => {
                warn!(target: "ws", %err, "resume query failed");
                return self.reply_error("resume is unavailable right now").await;
            }
        };
        let name = channel_name(channel);
        if missed > max {
            let data = json!({ "code": "resume_gap", "channel": name, "position": after,
                "missed": missed, "max_resume": max,
                "message": "the gap is too long to replay; reload from history and follow live" });
            self.floors.remove(&channel);
            return self.send("error", data).await.map_err(|()| End::WriteFailed);
        }
        let mut last = after;
        loop {
            let page =
                match messages::stored_after(&store, channel, last, REPLAY_PAGE).await {
                    Ok(page) => page,
                    Err(err) => {
                        warn!(target: "ws", %err, "resume query failed");
                        return self.reply_error("resume is unavailable right now").await;
                    }
                };
            let Some(tail) = page.last() else { break };
            last = tail.position.unwrap_or(last);
            for message in &page {
                self.write(message).await.map_err(|_| End::WriteFailed)?;
            }
            self.floors.insert(channel, last);
        }
        let data = json!({ "channel": name, "from": after, "position": last, "replayed": missed });
        self.send("resumed", data).await.map_err(|()| End::WriteFailed)
    }

    async fn history(&mut self, request: &Value) -> Result<(), End> {
        let query = match HistoryQuery::from_request(request) {
            Ok(query) => query,
            Err(text) => return self.reply_error(&text).await,
        };
        let store = &self.state.store;
        let samples =
            store.metric_history(&query.metric, query.from, query.to, query.limit).await;
        let samples = match samples {
            Ok(samples) => samples,
            Err(err) => {
                warn!(target: "ws", %err, "history query failed");
                return self.reply_error("history is unavailable right now").await;
            }
        };
        let points: Vec<MetricPointView> = samples.into_iter().map(Into::into).collect();
        let data = json!({ "metric": query.metric, "points": points });
        self.send("historical_data", data).await.map_err(|()| End::WriteFailed)
    }

    async fn send(&mut self, kind: &str, data: Value) -> Result<(), ()> {
        let timestamp = analytics_primitives::timestamp::format_millis(now_millis());
        let text =
            json!({ "type": kind, "data": data, "timestamp": timestamp }).to_string();
        self.write_raw(Message::Text(text.into())).await
    }

    async fn write(&mut self, message: &HubMessage) -> Result<(), WriteError> {
        let text = serde_json::to_string(message).map_err(|_| WriteError::Failed)?;
        self.write_timed(Message::Text(text.into())).await
    }

    async fn write_raw(&mut self, message: Message) -> Result<(), ()> {
        self.write_timed(message).await.map_err(|_| ())
    }

    /// Writes `first` and whatever else is already queued, with one flush:
    /// a connection that falls behind catches up in fewer system calls.
    /// Gives up after the write timeout: a client whose socket stays full
    /// that long is too slow.
    async fn write_queued(
        &mut self,
        first: Batch,
        queue: &mut mpsc::Receiver<Batch>,
    ) -> Result<(), WriteError> {
        let timeout = self.state.ws.settings.write_timeout;
        let mut batches = vec![first];
        while batches.len() < MAX_WRITE_BATCHES {
            match queue.try_recv() {
                Ok(next) => batches.push(next),
                Err(_) => break,
            }
        }
        let taken: usize = batches.iter().map(|b| b.len()).sum();
        let write = async {
            for message in batches.iter().flat_map(|b| b.iter()) {
                if !self.already_sent(message.channel, message.position) {
                    self.socket.feed(Message::Text(message.text.clone())).await?;
                }
            }
            self.socket.flush().await
        };
        let written = tokio::time::timeout(timeout, write).await;
        self.pending.fetch_sub(taken, Ordering::Relaxed);
        match written {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(WriteError::Failed),
            Err(_) => Err(WriteError::TimedOut),
        }
    }

    /// Writes one message, giving up after the write timeout.
    async fn write_timed(&mut self, message: Message) -> Result<(), WriteError> {
        let timeout = self.state.ws.settings.write_timeout;
        match tokio::time::timeout(timeout, self.socket.send(message)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(WriteError::Failed),
            Err(_) => Err(WriteError::TimedOut),
        }
    }
}

/// Rows fetched per replay query.
const REPLAY_PAGE: i64 = 500;

fn replay_table(channel: Channel) -> ReplayTable {
    match channel {
        Channel::Dashboard => ReplayTable::Metrics,
        Channel::Insights => ReplayTable::Insights,
        Channel::Alerts => ReplayTable::Alerts,
        Channel::Anchors => ReplayTable::AnchorEvents,
    }
}

/// The channel names a client may follow.
pub const CHANNELS: [&str; 4] = ["dashboard", "insights", "alerts", "anchors"];

fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Dashboard => "dashboard",
        Channel::Insights => "insights",
        Channel::Alerts => "alerts",
        Channel::Anchors => "anchors",
    }
}

fn parse_channel(name: &str) -> Option<Channel> {
    match name {
        "dashboard" | "dashboard_update" => Some(Channel::Dashboard),
        "insights" => Some(Channel::Insights),
        "alerts" | "alert" => Some(Channel::Alerts),
        "anchors" | "anchor" => Some(Channel::Anchors),
        _ => None,
    }
}

/// Reads `channels` (array) or `channel` (string), at the top level or in
/// `data`.
fn requested_channels(request: &Value) -> Result<Vec<Channel>, String> {
    let body = request.get("data").filter(|d| d.is_object()).unwrap_or(request);
    let names: Vec<&Value> = match (body.get("channels"), body.get("channel")) {
        (Some(Value::Array(items)), _) => items.iter().collect(),
        (_, Some(single)) => vec![single],
        _ => return Err("subscribe needs `channels` (an array) or `channel`".into()),
    };
    names
        .into_iter()
        .map(|name| {
            let name = name.as_str().ok_or("channel names are strings")?;
            parse_channel(name).ok_or_else(|| {
                format!("unknown channel {name:?}; channels are {}", CHANNELS.join(", "))
            })
        })
        .collect()
}

struct HistoryQuery {
    metric: String,
    from: Option<time::OffsetDateTime>,
    to: Option<time::OffsetDateTime>,
    limit: i64,
}

impl HistoryQuery {
    fn from_request(request: &Value) -> Result<Self, String> {
        let body = request.get("data").filter(|d| d.is_object()).unwrap_or(request);
        let metric =
            body.get("metric").and_then(Value::as_str).ok_or("`metric` is required")?;
        let time = |field: &str| match body.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => parse_rfc3339(field, text).map(Some),
            Some(_) => Err(format!("`{field}` must be an RFC 3339 string")),
        };
        let limit = match body.get("limit") {
            None | Some(Value::Null) => MAX_HISTORY,
            Some(value) => value
                .as_i64()
                .filter(|n| (1..=MAX_HISTORY).contains(n))
                .ok_or(format!("`limit` must be an integer from 1 to {MAX_HISTORY}"))?,
        };
        Ok(Self {
            metric: metric.to_owned(),
            from: time("from")?,
            to: time("to")?,
            limit,
        })
    }
}

fn now_millis() -> i64 {
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_channel_requests() {
        let cases = [
            (json!({"type":"subscribe","channels":["insights","alerts"]}), Ok(2)),
            (json!({"type":"subscribe","channel":"dashboard"}), Ok(1)),
            (json!({"type":"subscribe","data":{"channels":["anchors"]}}), Ok(1)),
            (json!({"type":"subscribe"}), Err("needs")),
            (json!({"type":"subscribe","channels":["nope"]}), Err("unknown channel")),
            (json!({"type":"subscribe","channels":[1]}), Err("strings")),
        ];
        for (request, expected) in cases {
            match (requested_channels(&request), expected) {
                (Ok(found), Ok(n)) => assert_eq!(found.len(), n, "{request}"),
                (Err(text), Err(part)) => {
                    assert!(text.contains(part), "{request}: {text}")
                }
                (other, _) => panic!("{request}: {other:?}"),
            }
        }
    }

    fn settings(coalesce: Duration) -> WsSettings {
        WsSettings {
            max_connections: 10,
            queue_capacity: 8,
            coalesce,
            heartbeat: Duration::from_secs(30),
            write_timeout: Duration::from_secs(5),
            max_resume: 0,
        }
    }

    /// Registers a client following `channels`; returns its queue.
    fn follow(ws: &WsHub, id: u64, channels: &[Channel]) -> mpsc::Receiver<Batch> {
        let (queue, receiver) = mpsc::channel(16);
        let mut set = ChannelSet::default();
        channels.iter().for_each(|c| set.insert(*c));
        let client = Client {
            channels: set,
            queue,
            pending: Arc::new(AtomicUsize::new(0)),
            too_slow: CancellationToken::new(),
            missed: CancellationToken::new(),
        };
        ws.clients().insert(id, client);
        receiver
    }

    fn positions(batch: &Batch) -> Vec<i64> {
        batch.iter().filter_map(|o| o.position).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_stream_is_delivered_in_batches_of_each_clients_channels() {
        let hub = offchain_worker::hub::Hub::new();
        let ws = WsHub::new(settings(Duration::from_secs(60)));
        let mut dashboard = follow(&ws, 1, &[Channel::Dashboard]);
        let mut both = follow(&ws, 2, &[Channel::Dashboard, Channel::Insights]);
        let mut other = follow(&ws, 3, &[Channel::Dashboard]);
        let mut anchors = follow(&ws, 4, &[Channel::Anchors]);
        let shutdown = CancellationToken::new();
        let dispatcher =
            tokio::spawn(ws.clone().dispatch(hub.subscribe(), shutdown.clone()));
        tokio::task::yield_now().await;

        // After a quiet spell a broadcast goes out at once, alone.
        hub.publish_at(Channel::Dashboard, Some(1), json!({}));
        assert_eq!(positions(&dashboard.recv().await.unwrap()), [1]);
        assert_eq!(positions(&both.recv().await.unwrap()), [1]);
        assert_eq!(positions(&other.recv().await.unwrap()), [1]);

        // Within the interval, broadcasts wait and go out together, each
        // client getting only its channels, in order.
        hub.publish_at(Channel::Dashboard, Some(2), json!({}));
        hub.publish_at(Channel::Insights, Some(7), json!({}));
        hub.publish_at(Channel::Dashboard, Some(3), json!({}));
        let first = dashboard.recv().await.unwrap();
        assert_eq!(positions(&first), [2, 3]);
        assert_eq!(positions(&both.recv().await.unwrap()), [2, 7, 3]);
        let same_set = other.recv().await.unwrap();
        assert!(Arc::ptr_eq(&first, &same_set), "one shared batch per channel set");
        assert!(anchors.try_recv().is_err(), "nothing for another channel");

        shutdown.cancel();
        dispatcher.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_whose_queue_overflows_is_marked_too_slow() {
        let hub = offchain_worker::hub::Hub::new();
        let ws = WsHub::new(settings(Duration::ZERO));
        let _stalled = follow(&ws, 1, &[Channel::Insights]);
        let mut reading = follow(&ws, 2, &[Channel::Insights]);
        let shutdown = CancellationToken::new();
        let dispatcher =
            tokio::spawn(ws.clone().dispatch(hub.subscribe(), shutdown.clone()));
        tokio::task::yield_now().await;
        for position in 0..12 {
            hub.publish_at(Channel::Insights, Some(position), json!({}));
            let batch = reading.recv().await.unwrap();
            reading_done(&ws, 2, batch.len());
        }
        let too_slow = |id| ws.clients()[&id].too_slow.is_cancelled();
        assert!(too_slow(1), "more than 8 messages unwritten");
        assert!(!too_slow(2));
        shutdown.cancel();
        dispatcher.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_dispatcher_behind_the_hub_tells_its_subscribers_to_resume() {
        let hub = offchain_worker::hub::Hub::new();
        let ws = WsHub::new(WsSettings {
            queue_capacity: 1 << 20,
            ..settings(Duration::ZERO)
        });
        let mut subscribed = follow(&ws, 1, &[Channel::Insights]);
        let _idle = follow(&ws, 2, &[]);
        let receiver = hub.subscribe();
        let overrun = offchain_worker::hub::HUB_CAPACITY as i64 + 10;
        for position in 0..overrun {
            hub.publish_at(Channel::Insights, Some(position), json!({}));
        }
        let shutdown = CancellationToken::new();
        let dispatcher = tokio::spawn(ws.clone().dispatch(receiver, shutdown.clone()));
        let missed = ws.clients()[&1].missed.clone();
        tokio::time::timeout(Duration::from_secs(5), missed.cancelled())
            .await
            .expect("the subscriber is told it missed broadcasts");
        // Broadcasts after the gap reach a client that joined since.
        let mut later = follow(&ws, 3, &[Channel::Insights]);
        hub.publish_at(Channel::Insights, Some(overrun), json!({}));
        let mut last = None;
        while last != Some(overrun) {
            let batch = tokio::time::timeout(Duration::from_secs(5), later.recv()).await;
            last = batch.expect("delivered").unwrap().last().and_then(|o| o.position);
        }
        assert!(
            !ws.clients()[&2].missed.is_cancelled(),
            "a client following nothing stays"
        );
        assert!(subscribed.try_recv().is_err(), "nothing after the gap is delivered");
        shutdown.cancel();
        dispatcher.await.unwrap();
    }

    /// What the connection does once it wrote a batch.
    fn reading_done(ws: &WsHub, id: u64, written: usize) {
        ws.clients()[&id].pending.fetch_sub(written, Ordering::Relaxed);
    }

    #[test]
    fn channel_sets_name_their_channels_sorted() {
        let mut set = ChannelSet::default();
        assert!(set.is_empty());
        set.insert(Channel::Insights);
        set.insert(Channel::Alerts);
        set.insert(Channel::Insights);
        assert_eq!(set.names(), ["alerts", "insights"]);
        set.remove(Channel::Alerts);
        assert_eq!(set.names(), ["insights"]);
        assert!(!set.contains(Channel::Dashboard));
    }

    #[test]
    fn reads_history_requests() {
        let ok = json!({"type":"request_historical_data","metric":"cpu","limit":10});
        assert_eq!(HistoryQuery::from_request(&ok).unwrap().limit, 10);
        let bad = [
            json!({"type":"request_historical_data"}),
            json!({"metric":"cpu","from":"yesterday"}),
            json!({"metric":"cpu","limit":5000}),
        ];
        for request in bad {
            assert!(HistoryQuery::from_request(&request).is_err(), "{request}");
        }
    }
}
