//! User activity per stream: who was active lately and doing what.
//!
//! Each user-event stream keeps, for the span `active_window_ms` before its
//! newest event time, the last time each user and each session was seen
//! and the events themselves (time and type). Everything older is pruned
//! on every event, so memory is bounded by what happens within the span.
//! Time is the newest event timestamp of the stream, never the clock: a
//! late event still counts if it falls within the span.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::json;

use super::config::{BaselineConfig, ConfigError};
use super::num::display;
use crate::event::UserEvent;
use crate::insight::{InsightDraft, InsightKind};

/// Activity figures of every user-event stream.
#[derive(Debug, Clone)]
pub struct ActivityTracker {
    every: u64,
    window_ms: u64,
    streams: BTreeMap<String, StreamActivity>,
}

impl ActivityTracker {
    /// A tracker with no history, after checking `config`.
    pub fn new(config: &BaselineConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Self {
            every: config.activity_every,
            window_ms: config.active_window_ms,
            streams: BTreeMap::new(),
        })
    }

    /// Records a user event of `stream`; every `activity_every` events of
    /// the stream, returns the stream's activity insight.
    pub fn observe(&mut self, stream: &str, event: &UserEvent) -> Option<InsightDraft> {
        if !self.streams.contains_key(stream) {
            self.streams.insert(stream.to_owned(), StreamActivity::default());
        }
        let activity = self.streams.get_mut(stream).expect("inserted above when absent");
        activity.record(event, self.window_ms);
        activity
            .seen
            .is_multiple_of(self.every)
            .then(|| activity.insight(stream, self.window_ms))
    }
}

/// When each key (user or session) was last seen, indexed both ways so
/// the stale ones can be pruned from the oldest.
#[derive(Debug, Clone, Default)]
struct LastSeen {
    by_key: BTreeMap<String, i64>,
    by_time: BTreeSet<(i64, String)>,
}

impl LastSeen {
    fn touch(&mut self, key: &str, timestamp_ms: i64) {
        match self.by_key.get_mut(key) {
            Some(last) if *last >= timestamp_ms => {}
            Some(last) => {
                self.by_time.remove(&(*last, key.to_owned()));
                *last = timestamp_ms;
                self.by_time.insert((timestamp_ms, key.to_owned()));
            }
            None => {
                self.by_key.insert(key.to_owned(), timestamp_ms);
                self.by_time.insert((timestamp_ms, key.to_owned()));
            }
        }
    }

    /// Forgets every key last seen at or before `cutoff_ms`.
    fn prune(&mut self, cutoff_ms: i64) {
        while self.by_time.first().is_some_and(|(t, _)| *t <= cutoff_ms) {
            let (_, key) = self.by_time.pop_first().expect("checked non-empty");
            self.by_key.remove(&key);
        }
    }

    fn len(&self) -> usize {
        self.by_key.len()
    }
}

/// The activity state of one stream.
#[derive(Debug, Clone, Default)]
struct StreamActivity {
    /// User events seen on the stream, ever.
    seen: u64,
    /// Newest event time seen, epoch milliseconds.
    newest_ms: Option<i64>,
    users: LastSeen,
    sessions: LastSeen,
    /// Events within the span, ordered by time.
    events: VecDeque<(i64, String)>,
    /// Event count per type within the span.
    types: BTreeMap<String, u64>,
}

impl StreamActivity {
    fn record(&mut self, event: &UserEvent, window_ms: u64) {
        self.seen += 1;
        let t = event.timestamp_ms;
        let newest = self.newest_ms.map_or(t, |newest| newest.max(t));
        self.newest_ms = Some(newest);
        let cutoff = newest.saturating_sub_unsigned(window_ms);

        if t > cutoff {
            self.users.touch(&event.user_id, t);
            if let Some(session) = &event.session_id {
                self.sessions.touch(session, t);
            }
            let at = self.events.partition_point(|(e, _)| *e <= t);
            self.events.insert(at, (t, event.event_type.clone()));
            *self.types.entry(event.event_type.clone()).or_insert(0) += 1;
        }

        self.prune(cutoff);
    }

    fn prune(&mut self, cutoff_ms: i64) {
        self.users.prune(cutoff_ms);
        self.sessions.prune(cutoff_ms);
        while self.events.front().is_some_and(|(t, _)| *t <= cutoff_ms) {
            let (_, kind) = self.events.pop_front().expect("checked non-empty");
            let count = self.types.get_mut(&kind).expect("every kept event is counted");
            *count -= 1;
            if *count == 0 {
                self.types.remove(&kind);
            }
        }
    }

    /// The most frequent event type in the span; ties go to the first
    /// name in byte order.
    fn top_event_type(&self) -> Option<&str> {
        let mut top: Option<(&str, u64)> = None;
        for (kind, &count) in &self.types {
            if top.is_none_or(|(_, best)| count > best) {
                top = Some((kind, count));
            }
        }
        top.map(|(kind, _)| kind)
    }

    fn insight(&self, stream: &str, window_ms: u64) -> InsightDraft {
        let events = self.events.len();
        let minutes = window_ms as f64 / 60_000.0;
        let per_minute = events as f64 / minutes;
        let top = self.top_event_type();

        let summary = format!(
            "{stream}: {} active users, {events} events in the last {} min \
             ({} per minute), top event {}",
            self.users.len(),
            display(minutes, 2),
            display(per_minute, 2),
            top.unwrap_or("none"),
        );
        let data = json!({
            "active_users": self.users.len(),
            "events_in_window": events,
            "events_per_minute": per_minute,
            "sessions": self.sessions.len(),
            "top_event_type": top,
            "window_ms": window_ms,
        });

        InsightDraft {
            kind: InsightKind::Activity,
            subject: stream.to_owned(),
            severity: None,
            confidence: 1.0,
            summary,
            data,
            provenance: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Map, Value};

    use super::*;

    const SECOND: i64 = 1_000;

    fn event(
        user: &str,
        session: Option<&str>,
        kind: &str,
        timestamp_ms: i64,
    ) -> UserEvent {
        UserEvent {
            event_type: kind.into(),
            user_id: user.into(),
            session_id: session.map(Into::into),
            timestamp_ms,
            fields: Map::new(),
        }
    }

    fn tracker(every: u64, window_ms: u64) -> ActivityTracker {
        let config = BaselineConfig {
            activity_every: every,
            active_window_ms: window_ms,
            ..BaselineConfig::default()
        };
        ActivityTracker::new(&config).unwrap()
    }

    #[test]
    fn an_insight_comes_every_n_events_per_stream() {
        let mut tracker = tracker(3, 60_000);
        let mut emitted = Vec::new();
        for i in 0..10 {
            let e = event("u", None, "click", i * SECOND);
            let streams: &[&str] = if i % 2 == 0 { &["a", "b"] } else { &["a"] };
            for &stream in streams {
                if let Some(draft) = tracker.observe(stream, &e) {
                    emitted.push((stream, i, draft));
                }
            }
        }
        let at: Vec<_> = emitted.iter().map(|(s, i, _)| (*s, *i)).collect();
        assert_eq!(at, [("a", 2), ("b", 4), ("a", 5), ("a", 8)]);
        assert!(emitted.iter().all(|(s, _, d)| d.subject == *s));
    }

    #[test]
    fn figures_count_the_window_only() {
        // (user, session, type, seconds): the window is 60 s before 100 s.
        let events = [
            ("old", Some("s0"), "view", 10),
            ("u1", Some("s1"), "view", 41),
            ("u2", Some("s2"), "click", 50),
            ("u1", Some("s1"), "click", 60),
            ("u3", None, "view", 70),
            ("u2", Some("s3"), "click", 100),
            ("late", Some("s9"), "view", 39),
        ];
        let mut tracker = tracker(events.len() as u64, 60_000);
        let mut last = None;
        for (user, session, kind, seconds) in events {
            last = tracker.observe("s", &event(user, session, kind, seconds * SECOND));
        }
        let data = last.expect("insight after the last event").data;
        assert_eq!(data["active_users"], 3);
        assert_eq!(data["events_in_window"], 5);
        assert_eq!(data["events_per_minute"], 5.0);
        assert_eq!(data["sessions"], 3);
        assert_eq!(data["top_event_type"], "click");
        assert_eq!(data["window_ms"], 60_000);
    }

    #[test]
    fn stale_state_is_pruned() {
        let mut tracker = tracker(1, 10_000);
        for i in 0..1_000 {
            let user = format!("u{i}");
            tracker.observe("s", &event(&user, Some(&user), "view", i * SECOND));
        }
        let state = &tracker.streams["s"];
        assert_eq!(state.users.len(), 10);
        assert_eq!(state.users.by_time.len(), 10);
        assert_eq!(state.sessions.len(), 10);
        assert_eq!(state.events.len(), 10);
        assert_eq!(state.types["view"], 10);
    }

    #[test]
    fn ties_for_the_top_type_go_to_the_first_name() {
        let cases: [(&[&str], Option<&str>); 3] = [
            (&["b", "a", "b", "a"], Some("a")),
            (&["b", "a", "b"], Some("b")),
            (&["z"], Some("z")),
        ];
        for (kinds, expected) in cases {
            let mut tracker = tracker(kinds.len() as u64, 60_000);
            let mut last = None;
            for kind in kinds {
                last = tracker.observe("s", &event("u", None, kind, 0));
            }
            let top = last.unwrap().data["top_event_type"].clone();
            assert_eq!(top, expected.map_or(Value::Null, Value::from), "{kinds:?}");
        }
    }
}
