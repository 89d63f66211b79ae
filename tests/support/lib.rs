//! Support for the integration tests: each test gets its own PostgreSQL
//! database, its own anvil chain, its own Redis channel names, and a real
//! `analytics-node run` process talking to them on loopback.
//!
//! The services come from `scripts/services.sh up`. A missing service
//! fails the test with a message saying how to start it.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::{json, Value};

pub mod rpc;

/// Administrative PostgreSQL URL; the role may create databases.
pub const DEFAULT_ADMIN_URL: &str =
    "postgresql://analytics:password@127.0.0.1:5432/analytics_db";
/// Redis URL.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
const START_HINT: &str = "start the services with `scripts/services.sh up`";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The shared test data directory (`../shared/data` from the root).
pub fn shared_data() -> PathBuf {
    workspace_root().join("../shared/data")
}

/// A name unique to this test run: `prefix_<pid>_<n>`.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}_{}_{n}", std::process::id())
}

/// A free loopback port.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// The `analytics-node` binary: `ANALYTICS_NODE_BIN` or the workspace's
/// debug build.
pub fn node_binary() -> PathBuf {
    if let Ok(path) = std::env::var("ANALYTICS_NODE_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join("target"));
    let path = target.join("debug/analytics-node");
    assert!(
        path.exists(),
        "{} is missing: build it first with `cargo build -p analytics-node` \
         (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A fresh database, dropped on drop.
pub struct TestDatabase {
    /// URL of the new database.
    pub url: String,
    name: String,
    admin_url: String,
}

impl TestDatabase {
    /// Creates `it_<pid>_<n>`.
    pub async fn create() -> anyhow::Result<Self> {
        let admin_url = std::env::var("ANALYTICS_TEST_ADMIN_URL")
            .unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
        let name = unique("it");
        let mut admin = admin_connection(&admin_url).await?;
        sqlx::Executor::execute(&mut admin, format!("CREATE DATABASE {name}").as_str())
            .await?;
        let base = admin_url.rsplit_once('/').map(|(base, _)| base).unwrap_or(&admin_url);
        Ok(Self { url: format!("{base}/{name}"), name, admin_url })
    }

    /// A pool on the test database.
    pub async fn pool(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url)
            .await?)
    }
}

async fn admin_connection(url: &str) -> anyhow::Result<sqlx::PgConnection> {
    use sqlx::Connection;
    sqlx::PgConnection::connect(url)
        .await
        .with_context(|| format!("PostgreSQL is not reachable at {url}; {START_HINT}"))
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let status = Command::new("psql")
            .args([self.admin_url.as_str(), "-qc", sql.as_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = status;
    }
}

/// A child process killed on drop.
pub struct Process {
    /// The child.
    pub child: Child,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Process {
    /// The process log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits up to `grace` before killing.
    pub fn terminate(&mut self, grace: Duration) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", pid.as_str()])
            .stderr(Stdio::null())
            .status();
        let started = Instant::now();
        while started.elapsed() < grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts a program with its output in a log file.
pub fn spawn(
    program: &Path,
    args: &[String],
    envs: &[(&str, String)],
    name: &str,
) -> anyhow::Result<Process> {
    let dir = workspace_root().join("target/it-logs");
    std::fs::create_dir_all(&dir)?;
    let log = dir.join(format!("{}.log", unique(name)));
    let file = std::fs::File::create(&log)?;
    let mut command = Command::new(program);
    command.args(args).stdout(file.try_clone()?).stderr(file).stdin(Stdio::null());
    for (key, value) in envs {
        command.env(key, value);
    }
    let child =
        command.spawn().with_context(|| format!("cannot start {}", program.display()))?;
    Ok(Process { child, log })
}

/// The anvil binary: `ANVIL_BIN`, the services script's cache, or `PATH`.
pub fn anvil_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("ANVIL_BIN") {
        return Ok(PathBuf::from(path));
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cache = std::env::var("ANALYTICS_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(home).join(".cache/analytics-node"));
    let cached = cache.join("bin/anvil");
    if cached.exists() {
        return Ok(cached);
    }
    bail!("anvil not found (ANVIL_BIN, {}); {START_HINT}", cached.display())
}

/// A private anvil chain with one-second blocks.
pub struct Anvil {
    /// Its HTTP URL.
    pub url: String,
    /// The process.
    pub process: Process,
}

impl Anvil {
    /// Starts anvil on a free port and waits until it answers.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(free_port()).await
    }

    /// Starts anvil on `port` and waits until it answers.
    async fn start_on(port: u16) -> anyhow::Result<Self> {
        let args =
            ["--host", "127.0.0.1", "--port", &port.to_string(), "--block-time", "1"];
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut process = spawn(&anvil_binary()?, &args, &[], "anvil")?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if rpc::call(&url, "eth_chainId", json!([])).await.is_ok() {
                return Ok(Self { url, process });
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                bail!("anvil exited with {status}; log: {}", process.log_text());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("anvil did not answer on {url}; log: {}", process.log_text())
    }

    /// The port anvil listens on.
    pub fn port(&self) -> u16 {
        let port = self.url.rsplit_once(':').map(|(_, port)| port);
        port.and_then(|p| p.parse().ok()).expect("the anvil URL ends with its port")
    }

    /// Kills this anvil and starts a fresh chain, from block zero, on the
    /// same port: what a node sees when its development chain is reset.
    pub async fn reset(&mut self) -> anyhow::Result<()> {
        let port = self.port();
        self.process.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match Self::start_on(port).await {
                Ok(fresh) => {
                    *self = fresh;
                    return Ok(());
                }
                // The port may take a moment to be free again.
                Err(err) if Instant::now() > deadline => return Err(err),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The current block number.
    pub async fn block_number(&self) -> anyhow::Result<u64> {
        let head = rpc::call(&self.url, "eth_blockNumber", json!([])).await?;
        let hex = head.as_str().context("eth_blockNumber is not a string")?;
        Ok(u64::from_str_radix(hex.trim_start_matches("0x"), 16)?)
    }

    /// Stops mining: transactions wait in the pool until [`Anvil::resume_mining`].
    pub async fn pause_mining(&self) -> anyhow::Result<()> {
        rpc::call(&self.url, "evm_setIntervalMining", json!([0])).await?;
        Ok(())
    }

    /// Mines a block a second again.
    pub async fn resume_mining(&self) -> anyhow::Result<()> {
        rpc::call(&self.url, "evm_setIntervalMining", json!([1])).await?;
        Ok(())
    }

    /// Sets the base fee of the next block, in wei; later blocks follow
    /// EIP-1559 from there (an empty block lowers it by an eighth).
    pub async fn set_next_base_fee(&self, wei: u128) -> anyhow::Result<()> {
        let quantity = format!("0x{wei:x}");
        rpc::call(&self.url, "anvil_setNextBlockBaseFeePerGas", json!([quantity]))
            .await?;
        Ok(())
    }
}

/// Redis channel names unique to one test.
#[derive(Debug, Clone)]
pub struct Channels {
    /// User events.
    pub user: String,
    /// System metrics.
    pub metrics: String,
    /// Business events.
    pub business: String,
}

impl Channels {
    /// Fresh names.
    pub fn unique() -> Self {
        Self {
            user: unique("user"),
            metrics: unique("metrics"),
            business: unique("business"),
        }
    }
}

/// Checks that Redis answers at `url`.
pub async fn redis_connection(
    url: &str,
) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    let connection = client.get_multiplexed_async_connection().await;
    connection.with_context(|| format!("Redis is not reachable at {url}; {START_HINT}"))
}

/// Publishes each message on `channel`.
pub async fn publish(
    redis: &mut redis::aio::MultiplexedConnection,
    channel: &str,
    messages: impl IntoIterator<Item = Vec<u8>>,
) -> anyhow::Result<usize> {
    let mut count = 0;
    for message in messages {
        let _: i64 = redis::AsyncCommands::publish(redis, channel, message).await?;
        count += 1;
    }
    Ok(count)
}

/// How to start a test node.
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Redis URL; default the shared server.
    pub redis_url: Option<String>,
    /// Extra TOML configuration.
    pub config_toml: Option<String>,
}

/// A running node with its own database, chain and channels. Fields drop
/// in order: the node stops before its chain and database go.
pub struct Node {
    /// The node process.
    pub process: Process,
    /// JSON-RPC URL.
    pub rpc_url: String,
    /// HTTP URL.
    pub http_url: String,
    /// Channels it subscribes to.
    pub channels: Channels,
    /// Redis URL it uses.
    pub redis_url: String,
    /// Its database.
    pub database: TestDatabase,
    /// Its chain.
    pub anvil: Anvil,
    args: Vec<String>,
}

impl Node {
    /// Starts services and a node, and waits until it is ready.
    pub async fn start() -> anyhow::Result<Self> {
        Self::launch(NodeOptions::default()).await
    }

    /// Like [`Node::start`] with a given Redis URL.
    pub async fn start_with(redis_url: String) -> anyhow::Result<Self> {
        Self::launch(NodeOptions { redis_url: Some(redis_url), ..NodeOptions::default() })
            .await
    }

    /// Starts a node with options.
    pub async fn launch(options: NodeOptions) -> anyhow::Result<Self> {
        let redis_url = options.redis_url.unwrap_or_else(|| {
            std::env::var("ANALYTICS_TEST_REDIS_URL")
                .unwrap_or_else(|_| DEFAULT_REDIS_URL.into())
        });
        redis_connection(&redis_url).await?;
        let database = TestDatabase::create().await?;
        let anvil = Anvil::start().await?;
        let channels = Channels::unique();
        let rpc_port = free_port();
        let http_port = free_port();
        let args = node_args(
            &database.url,
            &redis_url,
            &anvil.url,
            (rpc_port, http_port),
            &channels,
            options.config_toml.as_deref(),
        )?;
        let process = spawn_node(&args)?;
        let node = Self {
            rpc_url: format!("http://127.0.0.1:{rpc_port}"),
            http_url: format!("http://127.0.0.1:{http_port}"),
            channels,
            redis_url,
            database,
            anvil,
            process,
            args,
        };
        node.wait_ready().await?;
        Ok(node)
    }

    /// The node's configuration file, when it was started with extra TOML;
    /// rewriting it before [`Node::restart`] changes the settings.
    pub fn config_path(&self) -> Option<PathBuf> {
        let at = self.args.iter().position(|arg| arg == "--config")?;
        self.args.get(at + 1).map(PathBuf::from)
    }

    /// Restarts the node process with the same arguments.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.process.terminate(Duration::from_secs(10));
        self.process = spawn_node(&self.args)?;
        self.wait_ready().await
    }

    /// Starts the node process again with the same settings, after it was
    /// killed (see [`Process::kill`]); waits until it is ready.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if let Ok(None) = self.process.child.try_wait() {
            bail!("the node is still running; kill it first or use `restart`");
        }
        self.process = spawn_node(&self.args)?;
        self.wait_ready().await
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        wait_ready(&self.rpc_url, &self.process).await
    }

    /// Starts a second node on the same database and chain, subscribed to
    /// channels of its own.
    pub async fn start_peer(&self) -> anyhow::Result<Peer> {
        self.start_peer_with(None).await
    }

    /// Like [`Node::start_peer`], with extra TOML configuration.
    pub async fn start_peer_with(
        &self,
        config_toml: Option<&str>,
    ) -> anyhow::Result<Peer> {
        let channels = Channels::unique();
        let rpc_port = free_port();
        let http_port = free_port();
        let args = node_args(
            &self.database.url,
            &self.redis_url,
            &self.anvil.url,
            (rpc_port, http_port),
            &channels,
            config_toml,
        )?;
        let process = spawn_node(&args)?;
        let rpc_url = format!("http://127.0.0.1:{rpc_port}");
        wait_ready(&rpc_url, &process).await?;
        Ok(Peer {
            process,
            rpc_url,
            http_url: format!("http://127.0.0.1:{http_port}"),
            channels,
        })
    }

    /// `analytics_systemHealth`.
    pub async fn health(&self) -> anyhow::Result<Value> {
        rpc::call(&self.rpc_url, "analytics_systemHealth", json!([])).await
    }

    /// Calls a JSON-RPC method of the node.
    pub async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        rpc::call(&self.rpc_url, method, params).await
    }

    /// Publishes a purchase of `value` on the node's business channel: a
    /// message that always yields one insight.
    pub async fn publish_sale(&self, value: u64) -> anyhow::Result<()> {
        let sale = json!({ "type": "purchase", "value": value, "user_id": "u",
            "timestamp": 1_700_000_000 });
        let mut redis = redis_connection(&self.redis_url).await?;
        publish(&mut redis, &self.channels.business, [sale.to_string().into_bytes()])
            .await?;
        Ok(())
    }

    /// Waits for an insight with an id above `above` and returns the newest.
    pub async fn newest_insight(&self, above: i64) -> anyhow::Result<i64> {
        self.wait_for("an insight", Duration::from_secs(30), || async {
            let list =
                self.call("analytics_listInsights", json!([{ "limit": 1 }])).await?;
            Ok(list[0]["id"].as_i64().filter(|id| *id > above))
        })
        .await
    }

    /// The batch of an insight (`analytics_getBatch`), once it has one.
    pub async fn batch_of(&self, insight: i64) -> anyhow::Result<Option<Value>> {
        let view = self.call("analytics_getInsight", json!([insight])).await?;
        let Some(batch) = view["batchId"].as_i64() else { return Ok(None) };
        Ok(Some(self.call("analytics_getBatch", json!([batch])).await?))
    }

    /// Waits until the batch of an insight has `status`; returns the batch.
    pub async fn wait_batch_status(
        &self,
        insight: i64,
        status: &str,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let what = format!("the batch {status}");
        self.wait_for(&what, timeout, || async {
            let batch = self.batch_of(insight).await?;
            Ok(batch.filter(|b| b["status"] == status))
        })
        .await
    }

    /// Polls `probe` until it returns `Some`, or fails after `timeout`.
    pub async fn wait_for<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = probe().await? {
                return Ok(value);
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out waiting for {what}; node log tail: {}",
                    tail(&self.process.log_text())
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Runs `analytics-node verify` on a proof document; returns the exit
    /// success and the output.
    pub fn verify(
        &self,
        proof: &Value,
        extra: &[&str],
    ) -> anyhow::Result<(bool, String)> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("proof.json");
        std::fs::write(&path, serde_json::to_vec_pretty(proof)?)?;
        let output = Command::new(node_binary())
            .arg("verify")
            .arg(&path)
            .args(["--rpc-url", &self.anvil.url])
            .args(extra)
            .output()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok((output.status.success(), text))
    }
}

/// A second node sharing a [`Node`]'s database and chain.
pub struct Peer {
    /// The node process.
    pub process: Process,
    /// JSON-RPC URL.
    pub rpc_url: String,
    /// HTTP URL.
    pub http_url: String,
    /// Channels it subscribes to.
    pub channels: Channels,
}

async fn wait_ready(rpc_url: &str, process: &Process) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let health = rpc::call(rpc_url, "analytics_systemHealth", json!([])).await;
        if health.is_ok_and(|h| h["services"]["redis"]["up"] == true) {
            return Ok(());
        }
        if let Ok(Some(status)) = process.child.try_wait_ref() {
            bail!("node exited with {status}: {}", process.log_text());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("node not ready within 60 s; log: {}", process.log_text())
}

/// The command line of a test node; extra TOML goes to a config file.
fn node_args(
    database_url: &str,
    redis_url: &str,
    chain_url: &str,
    (rpc_port, http_port): (u16, u16),
    channels: &Channels,
    config_toml: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let mut args: Vec<String> = [
        "run",
        "--database-url",
        database_url,
        "--redis-url",
        redis_url,
        "--eth-rpc-url",
        chain_url,
        "--rpc-port",
        &rpc_port.to_string(),
        "--ws-port",
        &http_port.to_string(),
        "--confirmations",
        "2",
        "--user-events-channel",
        &channels.user,
        "--system-metrics-channel",
        &channels.metrics,
        "--business-events-channel",
        &channels.business,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(toml) = config_toml {
        let dir = workspace_root().join("target/it-logs");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.toml", unique("config")));
        std::fs::write(&path, toml)?;
        args.extend(["--config".to_owned(), path.display().to_string()]);
    }
    Ok(args)
}

fn spawn_node(args: &[String]) -> anyhow::Result<Process> {
    let level = std::env::var("ANALYTICS_TEST_LOG").unwrap_or_else(|_| "info".to_owned());
    let envs = [("RUST_LOG", level)];
    spawn(&node_binary(), args, &envs, "node")
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// `Child::try_wait` through a shared reference.
trait TryWaitRef {
    fn try_wait_ref(&self) -> std::io::Result<Option<std::process::ExitStatus>>;
}

impl TryWaitRef for Child {
    fn try_wait_ref(&self) -> std::io::Result<Option<std::process::ExitStatus>> {
        // /proc tells whether the pid still runs without reaping it.
        let alive = Path::new(&format!("/proc/{}", self.id())).exists();
        Ok(if alive { None } else { Some(std::process::ExitStatus::default()) })
    }
}

/// Rows in a table of the node's database.
pub async fn count_rows(pool: &sqlx::PgPool, table: &str) -> anyhow::Result<i64> {
    let sql = format!("SELECT count(*) FROM {table}");
    Ok(sqlx::query_scalar(&sql).fetch_one(pool).await?)
}

/// Kills the node with SIGKILL `kills` times while it consumes a backlog of
/// `total` messages, each time once it has stored more than before, and
/// restarts it. Returns how many kills landed mid-stream (after the first
/// event stored and before 90 % of them).
pub async fn kill_while_consuming(
    node: &mut Node,
    pool: &sqlx::PgPool,
    kills: usize,
    total: i64,
) -> anyhow::Result<usize> {
    let mut mid_stream = 0;
    let mut before = 0;
    for round in 0..kills {
        before = node
            .wait_for("progress before a kill", Duration::from_secs(90), || async {
                let stored = count_rows(pool, "events").await?;
                Ok((stored > before).then_some(stored))
            })
            .await?;
        // A spread of short delays, so kills land at different points.
        let delay = 100 + (round as u64 * 7919) % 500;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let stored = count_rows(pool, "events").await?;
        node.process.kill();
        mid_stream += usize::from(stored > 0 && stored < total * 9 / 10);
        node.restart().await?;
    }
    Ok(mid_stream)
}

/// Waits until events and dead letters together account for `total`
/// messages, then a moment more so wrongly stored repeats would show.
pub async fn wait_all_stored(
    node: &Node,
    pool: &sqlx::PgPool,
    total: i64,
) -> anyhow::Result<()> {
    node.wait_for("every message stored", Duration::from_secs(300), || async {
        let stored =
            count_rows(pool, "events").await? + count_rows(pool, "dead_letters").await?;
        Ok((stored >= total).then_some(()))
    })
    .await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    Ok(())
}
