//! `replay-csv`: publishes a `timestamp,value` CSV (the NAB layout) to a
//! Redis channel as system metrics, for demos and tests. Optionally it
//! interleaves deterministic user and business events so every part of the
//! pipeline has traffic.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use analytics_primitives::timestamp::format_millis;
use anyhow::{bail, Context};
use redis::AsyncCommands;
use serde_json::{json, Value};
use time::macros::format_description;
use time::PrimitiveDateTime;

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
    /// Channel for the metric samples.
    #[arg(long, default_value = "system_metrics")]
    pub channel: String,
    /// Samples per second; 0 publishes as fast as Redis takes them.
    #[arg(long, default_value_t = 500)]
    pub rate: u32,
    /// Publish at most this many samples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Also publish a user event per sample and a business event every
    /// tenth sample, on these channels.
    #[arg(long)]
    pub with_activity: bool,
    /// Channel of the user events of `--with-activity`.
    #[arg(long, default_value = "user_events")]
    pub user_channel: String,
    /// Channel of the business events of `--with-activity`.
    #[arg(long, default_value = "business_events")]
    pub business_channel: String,
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
    let client = redis::Client::open(args.redis_url.as_str())?;
    let mut redis =
        client.get_multiplexed_async_connection().await.with_context(|| {
            format!(
                "cannot reach Redis at {}; start it with scripts/services.sh up",
                args.redis_url
            )
        })?;

    let limit = args.limit.unwrap_or(samples.len()).min(samples.len());
    let started = Instant::now();
    let mut published = 0u64;
    for (index, sample) in samples.iter().take(limit).enumerate() {
        for (channel, message) in messages(&args, &metric, index, sample) {
            let _: i64 = redis.publish(channel, message.to_string()).await?;
            published += 1;
        }
        pace(args.rate, index + 1, started).await;
    }
    Ok(published)
}

fn messages<'a>(
    args: &'a ReplayCsvArgs,
    metric: &str,
    index: usize,
    sample: &Sample,
) -> Vec<(&'a str, Value)> {
    let timestamp = format_millis(sample.timestamp_ms);
    let mut out = vec![(
        args.channel.as_str(),
        json!({
            "name": metric,
            "value": sample.value,
            "tags": { "source": "nab", "file": args.file.file_name().and_then(|f| f.to_str()) },
            "timestamp": timestamp,
        }),
    )];
    if !args.with_activity {
        return out;
    }
    let user = format!("user-{}", (index * 7919) % 97);
    let user_type = ["page_view", "click", "search"][index % 3];
    out.push((
        args.user_channel.as_str(),
        json!({
            "type": user_type,
            "user_id": user,
            "session_id": format!("session-{}", index / 50),
            "timestamp": timestamp,
        }),
    ));
    if index.is_multiple_of(10) {
        let kinds = ["purchase", "signup", "support_ticket", "refund_request"];
        let kind = kinds[(index / 10) % kinds.len()];
        let value = ((index * 37) % 250) as f64 + 0.5;
        out.push((
            args.business_channel.as_str(),
            json!({ "type": kind, "user_id": user, "value": value, "source": "web", "timestamp": timestamp }),
        ));
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
