//! `replay-csv`: publishes a `timestamp,value` CSV (the NAB layout) as
//! system metrics, to Redis channels or Kafka topics, for demos and tests.
//! Optionally it interleaves deterministic user and business events so
//! every part of the pipeline has traffic.
//!
//! On Kafka every message is keyed: a metric sample by its metric name, a
//! user event by its user, a business event by its type. Kafka sends equal
//! keys to one partition, and one partition is consumed by one worker of a
//! group, so each metric's analysis state lives in one worker.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use analytics_primitives::timestamp::format_millis;
use anyhow::{bail, Context};
use redis::AsyncCommands;
use serde_json::{json, Value};
use time::macros::format_description;
use time::PrimitiveDateTime;

mod kafka;

/// Options of `analytics-node replay-csv`.
#[derive(Debug, clap::Args)]
pub struct ReplayCsvArgs {
    /// The CSV file: a header line, then `timestamp,value` rows with
    /// timestamps as `YYYY-MM-DD HH:MM:SS` (UTC).
    pub file: PathBuf,
    /// Metric name. Default: the file name without extension.
    #[arg(long)]
    pub metric: Option<String>,
    /// Redis URL.
    #[arg(long, env = "ANALYTICS_REDIS_URL", default_value = crate::config::DEFAULT_REDIS_URL)]
    pub redis_url: String,
    /// Publish to Kafka topics instead of Redis channels, keyed; topics
    /// that do not exist are created first.
    #[arg(long)]
    pub kafka: bool,
    /// Kafka brokers of `--kafka`, `host:port[,host:port]`.
    #[arg(long, env = "ANALYTICS_KAFKA_BROKERS", default_value = "localhost:9092")]
    pub kafka_brokers: String,
    /// Partitions of each topic `--kafka` creates.
    #[arg(long, default_value_t = 3)]
    pub partitions: i32,
    /// Channel (topic with `--kafka`) of the metric samples. Default
    /// `system_metrics`, or `system_events` with `--kafka`.
    #[arg(long)]
    pub channel: Option<String>,
    /// Samples per second; 0 publishes as fast as the target takes them.
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// Start at this sample (0 is the first row).
    #[arg(long, default_value_t = 0)]
    pub skip: usize,
    /// Publish at most this many samples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Also publish a user event per sample and a business event every
    /// tenth sample, on these channels.
    #[arg(long)]
    pub with_activity: bool,
    /// Channel (topic) of the user events of `--with-activity`. Default
    /// `user_events`, or `user_activities` with `--kafka`.
    #[arg(long)]
    pub user_channel: Option<String>,
    /// Channel (topic) of the business events of `--with-activity`.
    /// Default `business_events`, or `business_metrics` with `--kafka`.
    #[arg(long)]
    pub business_channel: Option<String>,
}

/// Where each kind of message goes.
#[derive(Debug, Clone)]
struct Targets {
    metrics: String,
    users: String,
    business: String,
}

impl ReplayCsvArgs {
    fn targets(&self) -> Targets {
        let pick = |given: &Option<String>, redis: &str, kafka: &str| {
            given.clone().unwrap_or_else(|| if self.kafka { kafka } else { redis }.into())
        };
        Targets {
            metrics: pick(&self.channel, "system_metrics", "system_events"),
            users: pick(&self.user_channel, "user_events", "user_activities"),
            business: pick(&self.business_channel, "business_events", "business_metrics"),
        }
    }
}

/// One message to publish: where, its key, its content.
#[derive(Debug, Clone, PartialEq)]
struct Message<'a> {
    target: &'a str,
    key: String,
    body: Value,
}

/// One CSV row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Epoch milliseconds.
    pub timestamp_ms: i64,
    /// Value.
    pub value: f64,
}

/// Reads a NAB-style CSV.
pub fn read_csv(path: &std::path::Path) -> anyhow::Result<Vec<Sample>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let mut samples = Vec::new();
    for (number, line) in text.lines().enumerate().skip(1) {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (stamp, value) = line.split_once(',').with_context(|| {
            format!("{}:{}: expected `timestamp,value`", path.display(), number + 1)
        })?;
        let stamp =
            PrimitiveDateTime::parse(stamp.trim(), &format).with_context(|| {
                format!("{}:{}: bad timestamp", path.display(), number + 1)
            })?;
        let value: f64 = value
            .trim()
            .parse()
            .with_context(|| format!("{}:{}: bad value", path.display(), number + 1))?;
        let nanos = stamp.assume_utc().unix_timestamp_nanos();
        samples.push(Sample { timestamp_ms: (nanos / 1_000_000) as i64, value });
    }
    if samples.is_empty() {
        bail!("{} holds no samples", path.display());
    }
    Ok(samples)
}

/// Publishes the file; returns how many messages were published.
pub async fn run(args: ReplayCsvArgs) -> anyhow::Result<u64> {
    let samples = read_csv(&args.file)?;
    let metric = match &args.metric {
        Some(metric) => metric.clone(),
        None => {
            args.file.file_stem().and_then(|s| s.to_str()).unwrap_or("metric").to_owned()
        }
    };
    let targets = args.targets();
    let mut sink = if args.kafka {
        let topics = [&targets.metrics, &targets.users, &targets.business];
        Sink::Kafka(
            kafka::KafkaSink::connect(&args.kafka_brokers, topics, args.partitions)
                .await?,
        )
    } else {
        Sink::Redis(redis_connection(&args.redis_url).await?)
    };

    let end = args.limit.map_or(samples.len(), |l| args.skip.saturating_add(l));
    let range = args.skip.min(samples.len())..end.min(samples.len());
    let started = Instant::now();
    let mut published = 0u64;
    for (done, index) in range.enumerate() {
        for message in messages(&args, &targets, &metric, index, &samples[index]) {
            sink.publish(message).await?;
            published += 1;
        }
        pace(args.rate, done + 1, started).await;
    }
    sink.finish().await?;
    Ok(published)
}

async fn redis_connection(
    url: &str,
) -> anyhow::Result<redis::aio::MultiplexedConnection> {
    let client = redis::Client::open(url)?;
    client.get_multiplexed_async_connection().await.with_context(|| {
        format!("cannot reach Redis at {url}; start it with scripts/services.sh up")
    })
}

/// The target of a replay.
enum Sink {
    Redis(redis::aio::MultiplexedConnection),
    Kafka(kafka::KafkaSink),
}

impl Sink {
    async fn publish(&mut self, message: Message<'_>) -> anyhow::Result<()> {
        match self {
            Self::Redis(redis) => {
                let _: i64 =
                    redis.publish(message.target, message.body.to_string()).await?;
            }
            Self::Kafka(kafka) => {
                let body = message.body.to_string();
                kafka.send(message.target, &message.key, body.as_bytes()).await?;
            }
        }
        Ok(())
    }

    async fn finish(self) -> anyhow::Result<()> {
        match self {
            Self::Redis(_) => Ok(()),
            Self::Kafka(kafka) => kafka.finish().await,
        }
    }
}

fn messages<'a>(
    args: &ReplayCsvArgs,
    targets: &'a Targets,
    metric: &str,
    index: usize,
    sample: &Sample,
) -> Vec<Message<'a>> {
    let timestamp = format_millis(sample.timestamp_ms);
    let mut out = vec![Message {
        target: &targets.metrics,
        key: metric.to_owned(),
        body: json!({
            "name": metric,
            "value": sample.value,
            "tags": { "source": "nab", "file": args.file.file_name().and_then(|f| f.to_str()) },
            "timestamp": timestamp,
        }),
    }];
    if !args.with_activity {
        return out;
    }
    let user = format!("user-{}", (index * 7919) % 97);
    let user_type = ["page_view", "click", "search"][index % 3];
    out.push(Message {
        target: &targets.users,
        key: user.clone(),
        body: json!({
            "type": user_type,
            "user_id": user,
            "session_id": format!("session-{}", index / 50),
            "timestamp": timestamp,
        }),
    });
    if index.is_multiple_of(10) {
        let kinds = ["purchase", "signup", "support_ticket", "refund_request"];
        let kind = kinds[(index / 10) % kinds.len()];
        let value = ((index * 37) % 250) as f64 + 0.5;
        out.push(Message {
            target: &targets.business,
            key: kind.to_owned(),
            body: json!({ "type": kind, "user_id": user, "value": value, "source": "web", "timestamp": timestamp }),
        });
    }
    out
}

async fn pace(rate: u32, done: usize, started: Instant) {
    if rate == 0 {
        return;
    }
    let due = Duration::from_secs_f64(done as f64 / f64::from(rate));
    if let Some(wait) = due.checked_sub(started.elapsed()) {
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nab_quirks() {
        let dir = tempfile_dir();
        let path = dir.join("series.csv");
        std::fs::write(
            &path,
            "timestamp,value\r\n2014-04-01 00:00:00,1.5e1\r\n2014-04-01 00:05:00,3",
        )
        .unwrap();
        let samples = read_csv(&path).unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].value, 15.0);
        assert_eq!(samples[1].timestamp_ms - samples[0].timestamp_ms, 300_000);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("replay-csv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
