//! Health reports: `analytics_systemHealth`, `/health` and `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use alloy::providers::Provider;
use offchain_worker::stats::Stats;
use serde_json::json;
use time::OffsetDateTime;

use crate::rpc::views::{
    AnchoringStatus, HealthView, ServiceStatus, Services, SinceStart, SourceView, Totals,
};
use crate::state::NodeState;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Failed anchoring steps in a row after which health reports failing.
const FAILING_AFTER: u64 = 3;

/// Builds health reports from the node state.
pub struct HealthProbe<'a> {
    state: &'a NodeState,
}

impl<'a> HealthProbe<'a> {
    /// A probe of `state`.
    pub fn new(state: &'a NodeState) -> Self {
        Self { state }
    }

    /// The full report.
    pub async fn report(&self) -> HealthView {
        let services = self.services().await;
        let since = OffsetDateTime::now_utc() - time::Duration::minutes(5);
        let store = &self.state.store;
        let (totals, active_users) = if services.postgres.up {
            let counts = store.counts().await.unwrap_or_default();
            let users = store.active_users(since).await.unwrap_or_default();
            let totals = Totals {
                events: counts.events,
                dead_letters: counts.dead_letters,
                insights: counts.insights,
                batches: counts.batches,
            };
            (totals, users)
        } else {
            (Totals::default(), 0)
        };
        let anchoring = self.anchoring();
        let all_up = anchoring.status == "ok"
            && services.postgres.up
            && services.chain.up
            && (services.redis.up || !self.state.redis_enabled)
            && (services.kafka.up || !self.state.kafka_enabled);
        let (memory_bytes, cpu_percent) = process_usage();
        let head = *self.state.heads.borrow();
        HealthView {
            status: if all_up { "ok" } else { "degraded" }.into(),
            uptime_seconds: self.state.started.elapsed().as_secs(),
            events_per_second: self.state.stats.events_per_second(),
            active_users,
            active_connections: self.state.connections.load(Ordering::Relaxed),
            totals,
            since_start: self.since_start(),
            memory_bytes,
            cpu_percent,
            services,
            chain_head: head.map(|h| json!(h)),
            anchoring,
            kafka_lag: self
                .state
                .stats
                .kafka_lag
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            sources: self.sources(),
        }
    }

    fn sources(&self) -> BTreeMap<String, SourceView> {
        let rates = self.state.stats.source_rates();
        rates
            .into_iter()
            .map(|r| {
                let view = SourceView { messages: r.messages, per_second: r.per_second };
                (r.source.to_owned(), view)
            })
            .collect()
    }

    fn anchoring(&self) -> AnchoringStatus {
        let stats = &self.state.stats;
        let failures = Stats::get(&stats.anchor_failures);
        let failing = failures >= FAILING_AFTER;
        let last_error =
            stats.last_anchor_error.lock().unwrap_or_else(|e| e.into_inner());
        AnchoringStatus {
            status: if failing { "failing" } else { "ok" }.into(),
            consecutive_failures: failures,
            last_error: if failures > 0 { last_error.clone() } else { None },
        }
    }

    fn since_start(&self) -> SinceStart {
        let stats = &self.state.stats;
        SinceStart {
            events: Stats::get(&stats.events),
            dead_letters: Stats::get(&stats.dead_letters),
            insights: Stats::get(&stats.insights),
            batches_anchored: Stats::get(&stats.batches_anchored),
            batches_final: Stats::get(&stats.batches_final),
            redis_reconnects: Stats::get(&stats.redis_reconnects),
        }
    }

    /// The chain's head number and whether the contract is still there.
    async fn chain_probe(
        &self,
    ) -> Result<(bool, u64), alloy::transports::TransportError> {
        let number = self.state.chain.get_block_number().await?;
        let code = self.state.chain.get_code_at(self.state.contract).await?;
        Ok((!code.is_empty() || self.state.chain_id == 0, number))
    }

    async fn services(&self) -> Services {
        let postgres = tokio::time::timeout(PROBE_TIMEOUT, self.state.store.ping()).await;
        let postgres = match postgres {
            Ok(true) => status(true, "answering"),
            _ => status(false, "not answering"),
        };
        let chain = match tokio::time::timeout(PROBE_TIMEOUT, self.chain_probe()).await {
            Ok(Ok((true, number))) => status(true, &format!("head {number}")),
            Ok(Ok((false, number))) => status(
                false,
                &format!(
                    "head {number}, but no contract code at {}: chain reset?",
                    self.state.contract
                ),
            ),
            Ok(Err(err)) => status(false, &err.to_string()),
            Err(_) => status(false, "timed out"),
        };
        let redis =
            match (self.state.redis_enabled, Stats::get(&self.state.stats.redis_up)) {
                (false, _) => status(false, "disabled"),
                (true, 1) => status(true, "subscribed"),
                (true, _) => status(false, "not subscribed; reconnecting"),
            };
        let kafka =
            match (self.state.kafka_enabled, Stats::get(&self.state.stats.kafka_up)) {
                (false, _) => status(false, "not configured"),
                (true, 1) => status(true, "consuming"),
                (true, _) => status(false, "not receiving; retrying"),
            };
        Services { postgres, redis, chain, kafka }
    }
}

fn status(up: bool, detail: &str) -> ServiceStatus {
    ServiceStatus { up, detail: detail.to_owned() }
}

static CPU_SAMPLE: Mutex<Option<(Instant, f64)>> = Mutex::new(None);

/// Resident memory (bytes) and CPU use since the previous call (percent of
/// one core), read from `/proc/self`. Zero where `/proc` is unavailable.
fn process_usage() -> (u64, f32) {
    let memory = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024);
    let cpu_seconds = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| {
        let rest = s.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        Some(ticks / 100.0)
    });
    let Some(cpu_seconds) = cpu_seconds else { return (memory, 0.0) };
    let now = Instant::now();
    let mut sample = CPU_SAMPLE.lock().unwrap_or_else(|e| e.into_inner());
    let percent = match *sample {
        Some((then, used)) if now > then => {
            let wall = now.duration_since(then).as_secs_f64();
            ((cpu_seconds - used) / wall * 100.0).max(0.0)
        }
        _ => 0.0,
    };
    *sample = Some((now, cpu_seconds));
    (memory, percent as f32)
}

/// Prometheus text exposition of the node's counters.
pub fn prometheus(state: &NodeState) -> String {
    let stats = &state.stats;
    let counters = [
        ("analytics_events_total", "Events stored.", Stats::get(&stats.events)),
        (
            "analytics_dead_letters_total",
            "Dead letters stored.",
            Stats::get(&stats.dead_letters),
        ),
        ("analytics_insights_total", "Insights stored.", Stats::get(&stats.insights)),
        (
            "analytics_batches_anchored_total",
            "Batches anchored.",
            Stats::get(&stats.batches_anchored),
        ),
        (
            "analytics_batches_final_total",
            "Batches final.",
            Stats::get(&stats.batches_final),
        ),
        (
            "analytics_redis_reconnects_total",
            "Redis reconnections.",
            Stats::get(&stats.redis_reconnects),
        ),
        (
            "analytics_store_retries_total",
            "Store batches retried.",
            Stats::get(&stats.store_retries),
        ),
        (
            "analytics_ws_dropped_slow_total",
            "WebSocket clients dropped for not keeping up.",
            state.ws.dropped_slow.load(Ordering::Relaxed),
        ),
    ];
    let mut out = String::new();
    for (name, help, value) in counters {
        let _ =
            writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }
    let anchored = Stats::get(&stats.anchor_latency_count);
    let latency_sum = Stats::get(&stats.anchor_latency_ms_sum) as f64 / 1000.0;
    let _ = writeln!(
        out,
        "# HELP analytics_anchor_latency_seconds Send-to-receipt time of anchoring \
         transactions.\n# TYPE analytics_anchor_latency_seconds summary\n\
         analytics_anchor_latency_seconds_sum {latency_sum}\n\
         analytics_anchor_latency_seconds_count {anchored}"
    );
    let lag = stats.kafka_lag.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if !lag.is_empty() {
        let _ = writeln!(
            out,
            "# HELP analytics_kafka_lag Messages behind the committed offset, per partition.\n\
             # TYPE analytics_kafka_lag gauge"
        );
        for (partition, behind) in lag {
            let _ = writeln!(
                out,
                "analytics_kafka_lag{{partition=\"{partition}\"}} {behind}"
            );
        }
    }
    write_source_rates(&mut out, stats);
    let gauges = [
        (
            "analytics_redis_up",
            "Redis subscription up (1) or not (0).",
            Stats::get(&stats.redis_up) as f64,
        ),
        (
            "analytics_events_per_second",
            "Events per second, last minute.",
            stats.events_per_second(),
        ),
        (
            "analytics_connections",
            "Open dashboard connections.",
            state.connections.load(Ordering::Relaxed) as f64,
        ),
        (
            "analytics_chain_head",
            "Latest chain head seen.",
            state.heads.borrow().map_or(0.0, |h| h.number as f64),
        ),
    ];
    for (name, help, value) in gauges {
        let _ =
            writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
    }
    out
}

/// Per-source message counters and rates, every source listed.
fn write_source_rates(out: &mut String, stats: &Stats) {
    let rates = stats.source_rates();
    let _ = writeln!(
        out,
        "# HELP analytics_source_messages_total Messages stored per source.\n\
         # TYPE analytics_source_messages_total counter"
    );
    for rate in &rates {
        let (source, messages) = (rate.source, rate.messages);
        let _ = writeln!(
            out,
            "analytics_source_messages_total{{source=\"{source}\"}} {messages}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP analytics_source_messages_per_second Messages stored per second \
         per source, last minute.\n# TYPE analytics_source_messages_per_second gauge"
    );
    for rate in &rates {
        let (source, per_second) = (rate.source, rate.per_second);
        let _ = writeln!(
            out,
            "analytics_source_messages_per_second{{source=\"{source}\"}} {per_second}"
        );
    }
}
