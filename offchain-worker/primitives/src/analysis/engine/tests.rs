use serde_json::Map;

use super::*;
use crate::analysis::testkit::{assert_finite_draft, assert_finite_point, Noise};
use crate::insight::{InsightKind, Severity};

const MINUTE: i64 = 60_000;
const STREAM: &str = "redis:system_metrics";

fn metric(value: f64, timestamp_ms: i64) -> Event {
    Event::Metric(SystemMetric {
        name: "m".into(),
        value,
        tags: Map::new(),
        timestamp_ms,
    })
}

/// Samples one minute apart.
fn series(values: &[f64]) -> Vec<Event> {
    let times = (0..).map(|i| i * MINUTE);
    values.iter().zip(times).map(|(&v, t)| metric(v, t)).collect()
}

fn noisy(len: usize, seed: u64) -> Vec<f64> {
    let mut noise = Noise::new(seed);
    (0..len).map(|_| 50.0 + noise.normal()).collect()
}

/// Every event's insights, with the event's index.
fn run(config: AnalysisConfig, events: &[Event]) -> Vec<(usize, InsightDraft)> {
    let mut engine = EngineAnalyzer::new(config).unwrap();
    let mut out = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let stored = StoredEvent { id: i as i64 + 1, stream: STREAM, event };
        let analysis = engine.analyse(stored);
        analysis.metrics.iter().for_each(assert_finite_point);
        for draft in analysis.insights {
            assert_finite_draft(&draft);
            out.push((i, draft));
        }
    }
    out
}

fn of_kind(out: &[(usize, InsightDraft)], kind: InsightKind) -> Vec<usize> {
    out.iter().filter(|(_, d)| d.kind == kind).map(|(i, _)| *i).collect()
}

fn no_predictions() -> AnalysisConfig {
    AnalysisConfig { forecast_every: 1_000_000, ..AnalysisConfig::default() }
}

#[test]
fn hard_inputs_give_finite_insights_and_no_false_alarms() {
    let alternating: Vec<f64> =
        (0..600).map(|i| if i % 2 == 0 { f64::MAX } else { -f64::MAX }).collect();
    let noise = noisy(600, 1);
    // (case, values, anomalies and trends allowed)
    let cases: [(&str, Vec<f64>, bool); 8] = [
        ("flat", vec![42.0; 600], false),
        ("flat at zero", vec![0.0; 600], false),
        ("flat huge", vec![-1e300; 600], false),
        ("flat tiny", vec![1e-300; 600], false),
        ("noise times 1e300", noise.iter().map(|x| x * 1e300).collect(), true),
        ("noise times 1e-300", noise.iter().map(|x| x * 1e-300).collect(), true),
        ("alternating extremes", alternating, true),
        ("subnormal steps", (0..600).map(|i| 5e-324 * f64::from(i % 7)).collect(), true),
    ];
    for (case, values, allowed) in cases {
        let out = run(AnalysisConfig::default(), &series(&values));
        let alarms = of_kind(&out, InsightKind::Anomaly).len()
            + of_kind(&out, InsightKind::Trend).len();
        assert!(allowed || alarms == 0, "{case}: {out:?}");
        assert!(!of_kind(&out, InsightKind::Prediction).is_empty() || allowed, "{case}");
    }
}

#[test]
fn nothing_is_said_during_warm_up() {
    // (min_samples, first sample that may speak)
    let cases = [(8, 7), (64, 63), (256, 255)];
    let mut values = noisy(400, 2);
    values[10] += 1_000.0;
    for (min_samples, first) in cases {
        let config = AnalysisConfig {
            min_samples,
            forecast_every: 1,
            ..AnalysisConfig::default()
        };
        let out = run(config, &series(&values));
        let earliest = out.iter().map(|(i, _)| *i).min();
        assert_eq!(earliest, Some(first), "min_samples {min_samples}");
    }
}

#[test]
fn a_gap_restarts_the_warm_up_and_disorder_does_not() {
    let values = noisy(300, 3);
    let at = |gap_at: usize, gap: i64| -> Vec<Event> {
        let times =
            (0..300).map(|i| i as i64 * MINUTE + if i >= gap_at { gap } else { 0 });
        values.iter().zip(times).map(|(&v, t)| metric(v, t)).collect()
    };
    let mut disordered = at(300, 0);
    for (i, event) in disordered.iter_mut().enumerate() {
        // Every third sample repeats or precedes its predecessor's time.
        if let Event::Metric(m) = event {
            m.timestamp_ms -= if i % 3 == 0 { MINUTE + 1 } else { 0 };
        }
    }
    let config = || AnalysisConfig { forecast_every: 1, ..AnalysisConfig::default() };
    // (case, events, sample indices that must stay silent)
    let cases: [(&str, Vec<Event>, std::ops::Range<usize>); 3] = [
        ("a day's gap at 150", at(150, 24 * 60 * MINUTE), 150..213),
        ("a short gap at 150", at(150, 5 * MINUTE), 300..300),
        ("repeated and earlier timestamps", disordered, 300..300),
    ];
    for (case, events, silent) in cases {
        let out = run(config(), &events);
        let spoke: Vec<usize> = out.iter().map(|(i, _)| *i).collect();
        assert!(spoke.iter().all(|i| !silent.contains(i)), "{case}: {spoke:?}");
        assert!(spoke.contains(&299), "{case}: predictions resume");
    }
}

#[test]
fn a_spike_is_an_anomaly_with_its_expected_range() {
    let mut values = noisy(800, 4);
    values[700] += 40.0;
    let out = run(no_predictions(), &series(&values));
    let anomalies: Vec<_> =
        out.iter().filter(|(_, d)| d.kind == InsightKind::Anomaly).collect();
    let (at, draft) = anomalies.last().expect("an anomaly");
    assert_eq!(*at, 700, "{anomalies:?}");
    assert!(draft.severity >= Some(Severity::High), "{draft:?}");
    let (low, high) =
        (draft.data["expected_low"].as_f64(), draft.data["expected_high"].as_f64());
    assert!(
        low.unwrap() < 50.0 && 50.0 < high.unwrap() && high.unwrap() < 60.0,
        "{draft:?}"
    );
    assert_eq!(draft.data["direction"], "above");
    let score = draft.data["score"].as_f64().unwrap();
    assert!((0.5..=1.0).contains(&score) && draft.confidence <= score);
}

#[test]
fn anomalies_wait_for_the_detector_to_warm_up() {
    // (spike at, anomaly reported there)
    let cases = [(100, false), (300, false), (498, false), (700, true)];
    for (at, reported) in cases {
        let mut values = noisy(800, 4);
        values[at] += 40.0;
        let out = run(no_predictions(), &series(&values));
        let anomalies = of_kind(&out, InsightKind::Anomaly);
        assert!(anomalies.iter().all(|&i| i >= 499), "{at}: {anomalies:?}");
        assert_eq!(anomalies.contains(&at), reported, "{at}: {anomalies:?}");
    }
}

#[test]
fn trends_are_reported_when_they_appear_and_turn() {
    // Flat noise, a rise, flat again, then a fall.
    let mut values = noisy(2_000, 5);
    for (i, v) in values.iter_mut().enumerate() {
        let ramp = match i {
            0..500 => 0.0,
            500..800 => (i - 500) as f64 * 0.2,
            800..1_300 => 60.0,
            _ => 60.0 - (i - 1_300) as f64 * 0.2,
        };
        *v += ramp;
    }
    let config = AnalysisConfig { detector: "robust".into(), ..no_predictions() };
    let out = run(config, &series(&values));
    let trends: Vec<_> = out
        .iter()
        .filter(|(_, d)| d.kind == InsightKind::Trend)
        .map(|(i, d)| (*i, d.data["direction"].as_str().unwrap().to_owned()))
        .collect();
    let directions: Vec<&str> = trends.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(directions, ["up", "down"], "{trends:?}");
    assert!((500..800).contains(&trends[0].0) && trends[1].0 >= 1_300, "{trends:?}");
}

#[test]
fn predictions_come_at_their_cadence_with_an_interval() {
    let values: Vec<f64> =
        noisy(1_000, 6).iter().enumerate().map(|(i, v)| v + i as f64).collect();
    let config = AnalysisConfig { forecast_every: 100, ..AnalysisConfig::default() };
    let out = run(config, &series(&values));
    let at = of_kind(&out, InsightKind::Prediction);
    assert_eq!(at, [99, 199, 299, 399, 499, 599, 699, 799, 899, 999]);
    let (_, last) = out.iter().rfind(|(_, d)| d.kind == InsightKind::Prediction).unwrap();
    let [forecast, low, high] =
        ["forecast", "low", "high"].map(|k| last.data[k].as_f64().unwrap());
    assert!(low < forecast && forecast < high, "{last:?}");
    assert!((low..high).contains(&(50.0 + 1_011.0)), "{last:?}");
    assert_eq!(last.data["target_timestamp_ms"], 999 * MINUTE + 12 * MINUTE);
}

#[test]
fn insights_record_their_inputs() {
    let mut values = noisy(800, 4);
    values[700] += 40.0;
    let events = series(&values);
    let out = run(no_predictions(), &events);
    let (at, draft) = out.iter().rfind(|(_, d)| d.kind == InsightKind::Anomaly).unwrap();
    assert_eq!(*at, 700);
    let provenance = draft.provenance.as_ref().unwrap();
    assert_eq!(provenance.stream, "redis:system_metrics/m");
    let ids = (*at as i64 + 2 - 256, *at as i64 + 1);
    assert_eq!((provenance.first_event, provenance.last_event), ids);
    assert_eq!(provenance.events, 256);
    assert_eq!(provenance.config_digest, no_predictions().digest());

    let mut digest = InputDigest::new(DigestScheme::Pieces);
    for (i, v) in values.iter().enumerate().take(at + 1).skip(at + 1 - 256) {
        digest.push(i as i64 + 1, i as i64 * MINUTE, *v);
    }
    let expected = digest.finish("redis:system_metrics/m", provenance.config_digest);
    assert_eq!(Some(provenance), expected.as_ref());
}

#[test]
fn every_insight_records_the_window_it_was_computed_from() {
    // (case, window, values): predictions at every sample, so that
    // trends and anomalies share their sample with one.
    let mut noise = Noise::new(6);
    let mut spiky = noisy(1_500, 7);
    spiky.iter_mut().step_by(97).for_each(|x| *x += 30.0);
    let trends: Vec<f64> =
        (0..1_500).map(|i| f64::from(i % 300) + noise.normal()).collect();
    let cases: [(&str, &str, usize, Vec<f64>); 4] = [
        ("spikes", "engine/2", 256, spiky.clone()),
        ("spikes", "engine/1", 256, spiky),
        ("trends", "engine/2", 64, trends),
        (
            "tiny",
            "engine/2",
            100,
            (0..1_500).map(|i| 1e-300 * f64::from(i % 40)).collect(),
        ),
    ];
    for (case, analyzer, window, values) in cases {
        let config = AnalysisConfig {
            analyzer: analyzer.into(),
            window,
            forecast_every: 1,
            ..AnalysisConfig::default()
        };
        let out = run(config.clone(), &series(&values));
        let shared = out.windows(2).filter(|pair| pair[0].0 == pair[1].0).count();
        assert!(shared > 0, "{case}: no sample with two insights");
        for (at, draft) in &out {
            let first = (at + 1).saturating_sub(window);
            let mut digest = InputDigest::new(config.digest_scheme());
            for (i, v) in values.iter().enumerate().take(at + 1).skip(first) {
                digest.push(i as i64 + 1, i as i64 * MINUTE, *v);
            }
            let expected = digest.finish("redis:system_metrics/m", config.digest());
            let kind = draft.kind;
            assert_eq!(draft.provenance, expected, "{case} {analyzer} at {at}: {kind:?}");
        }
    }
}

#[test]
fn activity_and_business_insights_keep_their_figures_and_record_inputs() {
    let user = |i: i64| {
        Event::User(crate::event::UserEvent {
            event_type: "view".into(),
            user_id: format!("u{}", i % 4),
            session_id: None,
            timestamp_ms: i * 1_000,
            fields: Map::new(),
        })
    };
    let purchase = Event::Business(BusinessEvent {
        event_type: "purchase".into(),
        user_id: None,
        value: 150.0,
        source: None,
        timestamp_ms: 5,
    });
    let mut events: Vec<Event> = (0..100).map(user).collect();
    events.push(purchase);
    let out = run(AnalysisConfig::default(), &events);
    let [(99, activity), (100, business)] = out.as_slice() else { panic!("{out:?}") };
    assert_eq!(activity.data["active_users"], 4);
    let inputs = activity.provenance.as_ref().unwrap();
    assert_eq!((inputs.first_event, inputs.last_event, inputs.events), (1, 100, 100));
    assert_eq!(business.severity, Some(Severity::Medium));
    let inputs = business.provenance.as_ref().unwrap();
    assert_eq!((inputs.first_event, inputs.last_event, inputs.events), (101, 101, 1));
}

/// Per engine version and detector, keccak256 of the serialised output
/// for a fixed mixed sequence. A change in the output of any of these
/// configurations breaks replay of anchored insights: it needs a new
/// version, and then new hashes here.
const OUTPUT_HASHES: [(&str, &str, &str); 3] = [
    (
        "engine/2",
        "ensemble",
        "0x6deded365201d626cd20cca71c986b9a380f9d4bf825e712cb05caefcf12a2a3",
    ),
    (
        "engine/1",
        "ensemble",
        "0xe661a5f98649825f854bfea5098a5782a875b077bbe986d964e72c06babd8dbb",
    ),
    (
        "engine/1",
        "combo",
        "0x89792cfa68fae8a6756333b4cedbfcb5adcd0330123c02d4885f575842fea062",
    ),
];

#[test]
fn the_same_events_give_the_same_output_bit_for_bit() {
    let mut noise = Noise::new(42);
    let events: Vec<Event> = (0..6_000i64)
        .map(|i| {
            let t = i * 1_000 - noise.below(5_000) as i64;
            let spike = if noise.below(300) == 0 { 40.0 } else { 0.0 };
            let trend = if i > 3_000 { (i - 3_000) as f64 * 0.01 } else { 0.0 };
            metric(50.0 + 3.0 * noise.normal() + spike + trend, t)
        })
        .collect();
    let default = AnalysisConfig::default();
    let (version, detector, _) = OUTPUT_HASHES[0];
    assert_eq!((&*default.analyzer, &*default.detector), (version, detector));
    for (version, detector, expected) in OUTPUT_HASHES {
        let config = AnalysisConfig {
            analyzer: version.into(),
            detector: detector.into(),
            ..AnalysisConfig::default()
        };
        let text = || serde_json::to_string(&run(config.clone(), &events)).unwrap();
        let first = text();
        assert_eq!(first, text());
        for kind in ["\"anomaly\"", "\"trend\"", "\"prediction\""] {
            assert!(first.contains(kind), "{detector}: {kind} missing");
        }
        let hash = crate::keccak256(first.as_bytes()).to_string();
        assert_eq!(hash, expected, "the output of {version} with {detector} changed");
    }
}
