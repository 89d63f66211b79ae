//! `analytics-node replay`: recomputes every insight from the stored
//! events, in stored order, and reports per batch whether the recomputed
//! hashes and Merkle root match the stored (and anchored) ones.
//!
//! Each recomputed insight takes the block stamp of the stored insight it
//! is compared with (the chain head it saw when it was first computed),
//! never the chain's current head. Insights of one event are matched by
//! hash, and a stored insight whose hash is not recomputed is reported
//! with the recomputed insight of the same kind and subject, if any.
//!
//! A node starts its analysis afresh each time it starts, and records where
//! (`analysis_runs`): replay starts a fresh analyser at the first event of
//! each run, of the analyser that run recorded, with the configured
//! settings (which must give the digest the run recorded). Events before
//! the first recorded run are analysed by the configured analyser.

use std::collections::{BTreeMap, BTreeSet};

use alloy::primitives::{keccak256, B256};
use analytics_primitives::analysis::engine::config::ANALYZERS;
use analytics_primitives::analysis::{self, AnalysisConfig, Analyzer, StoredEvent};
use analytics_primitives::event::{parse_event, Event, StreamKind};
use analytics_primitives::insight::{EventRef, Insight, InsightKind};
use analytics_primitives::merkle::MerkleTree;
use anyhow::{bail, Context};
use offchain_worker::storage::{to_b256, BatchRow, Store};
use offchain_worker::stored::{AnalysisRun, EventRecord, InsightRecord, Snapshot};

use crate::cli::RunArgs;

/// Events read per query.
const PAGE: i64 = 5_000;

/// What replay found.
#[derive(Debug, Default)]
pub struct Report {
    /// Lines to print, in order.
    pub lines: Vec<String>,
    /// Whether every stored insight was recomputed with the same hash and
    /// nothing more was recomputed.
    pub matches: bool,
}

/// A stored insight and what replay made of it.
struct Stored {
    record: InsightRecord,
    content: Insight,
    hash: B256,
    recomputed: Option<B256>,
}

/// The outcome of replaying the events.
#[derive(Default)]
struct Replayed {
    events: u64,
    unreadable: Vec<(i64, String)>,
    /// Recomputed insights with no stored counterpart: (event, kind, subject).
    extra: Vec<(i64, InsightKind, String)>,
}

/// Runs the replay against the configured database.
pub async fn run(args: RunArgs) -> anyhow::Result<Report> {
    let config = args.config()?;
    let store = Store::connect(&config.database.url, 2)
        .await
        .context("cannot connect to PostgreSQL")?;
    // One snapshot, so a node writing meanwhile is seen as it was at one
    // moment.
    let mut history = store.snapshot().await.context("cannot read the database")?;
    let runs = history.analysis_runs().await.context("cannot read the analysis runs")?;
    let mut runs = Runs::new(config.analysis, runs)?;

    let mut stored = load_insights(&mut history, &runs).await?;
    let replayed = replay_events(&mut history, &mut runs, &mut stored).await?;
    let batches = history.all_batches().await.context("cannot read the batches")?;
    Ok(report(&stored, &replayed, &batches))
}

/// The analysers of the recorded runs, each started at its first event.
struct Runs {
    settings: AnalysisConfig,
    /// Runs not started yet, by first event.
    ahead: std::collections::VecDeque<AnalysisRun>,
    current: Box<dyn Analyzer>,
}

impl Runs {
    /// Checks every run's analyser and settings against `settings`.
    fn new(settings: AnalysisConfig, runs: Vec<AnalysisRun>) -> anyhow::Result<Self> {
        let current = analyzer(&settings)?;
        for run in &runs {
            if !ANALYZERS.contains(&run.analysis.as_str()) {
                bail!(
                    "the analysis run from event {} used {}, which this version of \
                     analytics-node cannot replay (it knows {})",
                    run.first_event,
                    run.analysis,
                    ANALYZERS.join(", ")
                );
            }
            let mine = settings_of(&settings, run).digest().to_string();
            if mine != run.settings_digest {
                bail!(
                    "the analysis run from event {} used {} with settings of digest {}, \
                     but this configuration's `[analysis]` gives {mine}: replay needs \
                     the settings the node ran with",
                    run.first_event,
                    run.analysis,
                    run.settings_digest
                );
            }
            analyzer(&settings_of(&settings, run))?;
        }
        Ok(Self { settings, ahead: runs.into(), current })
    }

    /// The analyser (with its version) that analysed event `id`: that of
    /// the latest run begun at or before it, or the configured one.
    fn version_of(&self, id: i64) -> String {
        let run = self.ahead.iter().rev().find(|run| run.first_event <= id);
        run.map_or_else(|| self.current.version().to_owned(), |run| run.analysis.clone())
    }

    /// The analyser for event `id`: a fresh one where a run began.
    fn at(&mut self, id: i64) -> anyhow::Result<&mut dyn Analyzer> {
        while self.ahead.front().is_some_and(|run| run.first_event <= id) {
            let run = self.ahead.pop_front().expect("checked above");
            self.current = analyzer(&settings_of(&self.settings, &run))?;
        }
        Ok(self.current.as_mut())
    }
}

/// The configured settings with the analyser of `run`.
fn settings_of(settings: &AnalysisConfig, run: &AnalysisRun) -> AnalysisConfig {
    AnalysisConfig { analyzer: run.analysis.clone(), ..settings.clone() }
}

fn analyzer(settings: &AnalysisConfig) -> anyhow::Result<Box<dyn Analyzer>> {
    analysis::from_config(settings)
        .map_err(|e| anyhow::anyhow!("config field `analysis.{}`: {}", e.field, e.reason))
}

async fn load_insights(
    history: &mut Snapshot,
    runs: &Runs,
) -> anyhow::Result<Vec<Stored>> {
    let records = history.all_insights().await.context("cannot read the insights")?;
    let mut stored = Vec::with_capacity(records.len());
    for record in records {
        let content: Insight = serde_json::from_str(&record.canonical)
            .with_context(|| format!("insight {} has unreadable content", record.id))?;
        let version = runs.version_of(record.event_id);
        if content.analysis != version {
            bail!(
                "insight {} was computed by {} but replay would recompute it with \
                 {version}; set `analysis.analyzer`",
                record.id,
                content.analysis
            );
        }
        let hash = to_b256(&record.hash)?;
        stored.push(Stored { record, content, hash, recomputed: None });
    }
    Ok(stored)
}

async fn replay_events(
    history: &mut Snapshot,
    runs: &mut Runs,
    stored: &mut [Stored],
) -> anyhow::Result<Replayed> {
    let mut by_event: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (index, insight) in stored.iter().enumerate() {
        by_event.entry(insight.record.event_id).or_default().push(index);
    }
    let mut replayed = Replayed::default();
    let mut after = 0;
    loop {
        let page =
            history.events_by_id(after, PAGE).await.context("cannot read events")?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for record in &page {
            replayed.events += 1;
            let event = match parse_record(record) {
                Ok(event) => event,
                Err(reason) => {
                    replayed.unreadable.push((record.id, reason));
                    continue;
                }
            };
            let mine = by_event.get(&record.id).map_or(&[][..], Vec::as_slice);
            let analyzer = runs.at(record.id)?;
            compare(analyzer, record, &event, stored, mine, &mut replayed);
        }
    }
    Ok(replayed)
}

fn parse_record(record: &EventRecord) -> Result<Event, String> {
    let kind = match record.kind.as_str() {
        "user_event" => StreamKind::UserEvents,
        "system_metric" => StreamKind::SystemMetrics,
        "business_event" => StreamKind::BusinessEvents,
        other => return Err(format!("unknown event kind {other:?}")),
    };
    parse_event(kind, record.payload.as_bytes(), usize::MAX).map_err(|e| e.to_string())
}

/// Analyses one event and compares its insights with the stored ones.
fn compare(
    analyzer: &mut dyn Analyzer,
    record: &EventRecord,
    event: &Event,
    stored: &mut [Stored],
    mine: &[usize],
    replayed: &mut Replayed,
) {
    let stream = format!("{}:{}", record.source, record.stream);
    let analysis =
        analyzer.analyse(StoredEvent { id: record.id, stream: &stream, event });
    let version = analyzer.version().to_owned();
    let event_ref =
        EventRef { id: record.id, stream, timestamp_ms: event.timestamp_ms() };

    let Some(&first) = mine.first() else {
        for draft in analysis.insights {
            replayed.extra.push((record.id, draft.kind, draft.subject));
        }
        return;
    };
    let block = stored[first].content.block;
    let mut recomputed = Vec::new();
    for draft in analysis.insights {
        let (kind, subject) = (draft.kind, draft.subject.clone());
        let insight = Insight::new(&version, draft, event_ref.clone(), block);
        match insight.hash() {
            Ok(hash) => recomputed.push((hash, kind, subject)),
            Err(_) => replayed.extra.push((record.id, kind, subject)),
        }
    }

    let stored_hashes: BTreeSet<B256> = mine.iter().map(|&i| stored[i].hash).collect();
    for &index in mine {
        let insight = &mut stored[index];
        let same = recomputed.iter().find(|(hash, ..)| *hash == insight.hash);
        let similar = recomputed.iter().find(|(hash, kind, subject)| {
            !stored_hashes.contains(hash)
                && *kind == insight.content.kind
                && *subject == insight.content.subject
        });
        insight.recomputed = same.or(similar).map(|(hash, ..)| *hash);
    }
    for (hash, kind, subject) in recomputed {
        let claimed = mine.iter().any(|&i| stored[i].recomputed == Some(hash));
        if !claimed && !stored_hashes.contains(&hash) {
            replayed.extra.push((record.id, kind, subject));
        }
    }
}

fn report(stored: &[Stored], replayed: &Replayed, batches: &[BatchRow]) -> Report {
    let mut lines = Vec::new();
    let mut matches = true;

    let mut in_batch: BTreeMap<i64, Vec<&Stored>> = BTreeMap::new();
    for insight in stored {
        if let Some(batch) = insight.record.batch_id {
            in_batch.entry(batch).or_default().push(insight);
        }
    }
    for batch in batches {
        let mut members = in_batch.remove(&batch.id).unwrap_or_default();
        members.sort_by_key(|s| s.record.leaf_index);
        matches &= batch_lines(batch, &members, &mut lines);
    }

    let unbatched: Vec<&Stored> =
        stored.iter().filter(|s| s.record.batch_id.is_none()).collect();
    let differing: Vec<&&Stored> = unbatched.iter().filter(|s| !same(s)).collect();
    let mark = if differing.is_empty() { "ok  " } else { "FAIL" };
    lines.push(format!(
        "{mark} {} insights not in a batch yet, {} of them differ",
        unbatched.len(),
        differing.len()
    ));
    differing.iter().for_each(|s| lines.push(insight_line(s)));
    matches &= differing.is_empty();

    for (id, reason) in &replayed.unreadable {
        lines.push(format!("FAIL event {id} no longer parses: {reason}"));
        matches = false;
    }
    for (event, kind, subject) in &replayed.extra {
        let kind = kind.as_str();
        lines.push(format!(
            "FAIL event {event}: a recomputed {kind} insight about {subject} was never stored"
        ));
        matches = false;
    }
    lines.push(format!(
        "     replayed {} events into {} stored insights in {} batches",
        replayed.events,
        stored.len(),
        batches.len()
    ));
    Report { lines, matches }
}

fn same(insight: &Stored) -> bool {
    insight.recomputed == Some(insight.hash)
}

/// Prints one batch; returns whether it matches.
fn batch_lines(batch: &BatchRow, members: &[&Stored], lines: &mut Vec<String>) -> bool {
    let stored_root = to_b256(&batch.root).unwrap_or_default();
    // The batch's last leaf is its manifest, which the analysis does not
    // produce: its stored text is hashed again and appended.
    let manifest = batch.manifest.as_deref().map(|text| keccak256(text.as_bytes()));
    let hashes: Option<Vec<B256>> =
        members.iter().map(|s| s.recomputed).chain(manifest.map(Some)).collect();
    let root = hashes.and_then(|h| MerkleTree::new(&h).ok()).map(|t| t.root());
    let differing: Vec<&&Stored> = members.iter().filter(|s| !same(s)).collect();
    let leaves = members.len() + usize::from(manifest.is_some());
    let complete = leaves == usize::try_from(batch.leaf_count).unwrap_or(0);
    let ok = differing.is_empty() && complete && root == Some(stored_root);

    let root_text = match root {
        Some(root) if root == stored_root => "recomputed root matches".to_owned(),
        Some(root) => format!("recomputed root {root} DIFFERS"),
        None => "root cannot be recomputed".to_owned(),
    };
    lines.push(format!(
        "{} batch {} ({}, root {stored_root}): {} of {} insights match \
         ({} leaves with the manifest), {root_text}",
        if ok { "ok  " } else { "FAIL" },
        batch.id,
        batch.status,
        members.len() - differing.len(),
        members.len(),
        batch.leaf_count,
    ));
    differing.iter().for_each(|s| lines.push(insight_line(s)));
    ok
}

fn insight_line(insight: &Stored) -> String {
    let content = &insight.content;
    let recomputed = insight.recomputed.map_or("nothing".to_owned(), |h| h.to_string());
    format!(
        "     insight {} ({} {}, event {}): stored {} recomputed {recomputed}",
        insight.record.id,
        content.kind.as_str(),
        content.subject,
        insight.record.event_id,
        insight.hash,
    )
}
