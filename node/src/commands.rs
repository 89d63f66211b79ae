//! What `run`, `migrate` and `deploy` do.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use alloy::providers::{DynProvider, Provider};
use analytics_primitives::analysis;
use anyhow::Context;
use offchain_worker::hub::Hub;
use offchain_worker::pipeline::{Pipeline, PipelineConfig};
use offchain_worker::source::kafka::{KafkaSettings, KafkaSource};
use offchain_worker::source::redis::RedisSource;
use offchain_worker::source::redis_streams::RedisStreamSource;
use offchain_worker::stats::Stats;
use offchain_worker::storage::Store;
use offchain_worker::stored::AnalysisRun;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::chain;
use crate::chain::anchor::AnchorManager;
use crate::chain::heads::HeadFollower;
use crate::cli::RunArgs;
use crate::config::{Config, RedisMode, ANVIL_CHAIN_ID};
use crate::state::{NodeState, PublicInfo};

/// How long start-up waits for PostgreSQL before giving up.
const DATABASE_WAIT: Duration = Duration::from_secs(30);
/// How long shutdown waits for tasks to flush.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(15);

/// `migrate`: applies pending migrations.
pub async fn migrate(args: RunArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let store = connect_store(&config).await?;
    store.migrate().await?;
    info!(target: "node", "migrations applied");
    Ok(())
}

/// `deploy`: deploys the contract and prints its address.
pub async fn deploy(args: RunArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let provider = chain::signing_provider(&config.chain).await?.provider;
    let address = chain::deploy(&provider).await?;
    println!("{address}");
    Ok(())
}

/// `run`: the node, until SIGINT or SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    // Bind first: a taken port fails start-up before anything is changed.
    let (rpc_listener, http_listener) = bind_listeners(&config)?;
    let store = connect_store(&config).await?;
    store.migrate().await.context("applying migrations")?;

    let signer = chain::signing_provider(&config.chain).await?;
    let chain_id = signer.provider.get_chain_id().await?;
    let contract = contract_address(&config, &store, &signer.provider, chain_id).await?;
    let reader = chain::read_provider(&config.chain.rpc_url)?;
    info!(target: "node", %contract, chain_id, anchorer = %signer.address, "chain ready");

    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let poll = Duration::from_millis(config.chain.poll_interval_ms);
    let (follower, heads) =
        HeadFollower::new(reader.clone(), config.chain.ws_url(), poll);
    tasks.spawn(follower.run(shutdown.clone()));

    let state = Arc::new(NodeState {
        store: store.clone(),
        hub: Hub::new(),
        stats: Arc::new(Stats::default()),
        heads: heads.clone(),
        chain: reader,
        contract,
        chain_id,
        redis_enabled: config.redis.enabled,
        kafka_enabled: config.kafka.enabled,
        connections: AtomicU64::new(0),
        ws: crate::ws::WsHub::new(config.ws_settings()),
        started: Instant::now(),
        public: PublicInfo::new(&config.chain.rpc_url),
    });
    tasks.spawn(crate::relay::run(
        state.store.clone(),
        state.hub.clone(),
        shutdown.clone(),
    ));
    let hub_receiver = state.hub.subscribe();
    tasks.spawn(state.ws.clone().dispatch(hub_receiver, shutdown.clone()));
    let alerts = state.hub.subscribe();
    crate::webhooks::spawn(&config.webhooks, alerts, &mut tasks, &shutdown)?;
    let intake = CancellationToken::new();
    spawn_worker(&config, &state, &mut tasks, &intake, &shutdown)?;
    tasks.spawn(
        AnchorManager {
            store,
            provider: signer.provider,
            wallet: signer.wallet,
            contract,
            anchorer: signer.address,
            chain_id,
            heads,
            config: config.anchor.clone(),
            confirmations: config.chain.confirmations,
            finality: config.chain.finality,
            hub: state.hub.clone(),
            stats: state.stats.clone(),
        }
        .run(shutdown.clone()),
    );

    let (rpc_local, rpc_handle) =
        crate::rpc::server::start(state.clone(), &config.server, rpc_listener).await?;
    state.public.set_rpc_addr(rpc_local);
    let (http_local, http_task) =
        crate::http::serve_on(state.clone(), http_listener, shutdown.clone())?;
    info!(target: "node", rpc = %format!("http://{rpc_local}"), http = %format!("http://{http_local}"), "node ready");

    wait_for_signal().await;
    info!(target: "node", "shutting down");
    intake.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.cancel();
    let _ = rpc_handle.stop();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
        let _ = http_task.await;
    });
    if drained.await.is_err() {
        warn!(target: "node", "tasks did not stop in time");
    }
    Ok(())
}

fn spawn_worker(
    config: &Config,
    state: &Arc<NodeState>,
    tasks: &mut JoinSet<()>,
    intake: &CancellationToken,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let analyzer = analysis::from_config(&config.analysis).map_err(|e| {
        anyhow::anyhow!("config field `analysis.{}`: {}", e.field, e.reason)
    })?;
    let (sender, receiver) = mpsc::channel(config.pipeline.queue_capacity);
    let run_start = AnalysisRun {
        first_event: 0,
        analysis: analyzer.version().to_owned(),
        settings_digest: config.analysis.digest().to_string(),
    };
    let pipeline = Pipeline {
        store: state.store.clone(),
        analyzer,
        run_start: Some(run_start),
        heads: state.heads.clone(),
        hub: state.hub.clone(),
        stats: state.stats.clone(),
        config: PipelineConfig {
            batch_size: config.pipeline.batch_size,
            flush_interval: config.flush_interval(),
            max_message_bytes: config.pipeline.max_message_bytes,
        },
    };
    tasks.spawn(pipeline.run(receiver, shutdown.clone()));
    if config.kafka.enabled {
        let settings = KafkaSettings {
            brokers: config.kafka.brokers.clone(),
            group: config.kafka.group.clone(),
            topics: config.kafka.topics(),
            instance_id: config.kafka.instance_id.clone(),
        };
        let source = KafkaSource::new(settings, state.stats.clone());
        tasks.spawn(source.run(sender.clone(), intake.clone()));
    }
    if config.redis.enabled {
        let redis = &config.redis;
        let stats = state.stats.clone();
        match redis.mode {
            RedisMode::Pubsub => {
                let source = RedisSource::new(&redis.url, redis.channels(), stats);
                tasks.spawn(source.run(sender, intake.clone()));
            }
            RedisMode::Streams => {
                let source = RedisStreamSource::new(
                    &redis.url,
                    redis.channels(),
                    &redis.group,
                    &redis.consumer,
                    stats,
                );
                tasks.spawn(source.run(sender, intake.clone()));
            }
        }
    }
    Ok(())
}

fn bind_listeners(
    config: &Config,
) -> anyhow::Result<(std::net::TcpListener, std::net::TcpListener)> {
    let ip = config.server.bind_ip()?;
    let rpc_addr = SocketAddr::new(ip, config.server.rpc_port);
    let rpc = std::net::TcpListener::bind(rpc_addr).with_context(|| {
        format!("config field `server.rpc_port`: cannot listen on {rpc_addr}")
    })?;
    let http_addr = SocketAddr::new(ip, config.server.ws_port);
    let http = std::net::TcpListener::bind(http_addr).with_context(|| {
        format!("config field `server.ws_port`: cannot listen on {http_addr}")
    })?;
    Ok((rpc, http))
}

async fn connect_store(config: &Config) -> anyhow::Result<Store> {
    let started = Instant::now();
    loop {
        match Store::connect(&config.database.url, config.database.max_connections).await {
            Ok(store) => return Ok(store),
            Err(err) if started.elapsed() < DATABASE_WAIT => {
                warn!(target: "node", %err, "PostgreSQL not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(err) => {
                return Err(err).context(
                    "cannot connect to PostgreSQL (database.url); start it with scripts/services.sh up",
                )
            }
        }
    }
}

/// The setting that remembers a contract `run` deployed on a local chain.
const DEPLOYED_CONTRACT: &str = "deployed_contract";

async fn contract_address(
    config: &Config,
    store: &Store,
    provider: &DynProvider,
    chain_id: u64,
) -> anyhow::Result<Address> {
    if let Some(address) = config.chain.contract_address()? {
        chain::ensure_contract(provider, address).await?;
        return Ok(address);
    }
    if chain_id != ANVIL_CHAIN_ID {
        anyhow::bail!("config field `chain.contract` is required on chain id {chain_id}");
    }
    // A local chain without a configured contract reuses the one deployed
    // earlier for this database, or deploys one when the chain lost it.
    let remembered = store.setting(DEPLOYED_CONTRACT).await?;
    if let Some(address) = remembered.and_then(|text| text.parse::<Address>().ok()) {
        if chain::ensure_contract(provider, address).await.is_ok() {
            info!(target: "node", %address, "reusing the contract deployed earlier");
            return Ok(address);
        }
        warn!(target: "node", %address, "the remembered contract is gone; deploying anew");
    }
    let address = chain::deploy(provider).await?;
    store.set_setting(DEPLOYED_CONTRACT, &address.to_string()).await?;
    Ok(address)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
