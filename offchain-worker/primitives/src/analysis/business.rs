//! Business events: category, priority, the insight reporting each one and
//! the metric it feeds.

use serde_json::{json, Map, Value};

use super::num::display;
use crate::event::BusinessEvent;
use crate::insight::{InsightDraft, InsightKind, Severity};

/// Metric that each revenue event adds its value to.
pub const TOTAL_REVENUE: &str = "total_revenue";
/// Metric that each acquisition event adds one to.
pub const NEW_USERS: &str = "new_users";

/// What a business event is about, from its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Category {
    /// The type contains "purchase".
    Revenue,
    /// The type contains "signup".
    Acquisition,
    /// The type contains "support".
    Support,
    /// Anything else.
    Other,
}

impl Category {
    /// Categorises an event type: ASCII case-insensitive substring match,
    /// tried in the order purchase, signup, support (so
    /// `purchase_support` is revenue).
    pub fn of(event_type: &str) -> Self {
        let lower = event_type.to_ascii_lowercase();
        if lower.contains("purchase") {
            Self::Revenue
        } else if lower.contains("signup") {
            Self::Acquisition
        } else if lower.contains("support") {
            Self::Support
        } else {
            Self::Other
        }
    }

    /// The name used as insight subject and tag.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revenue => "revenue",
            Self::Acquisition => "acquisition",
            Self::Support => "support",
            Self::Other => "other",
        }
    }

    /// The derived metric this category feeds, with the increment of one
    /// event.
    pub fn derived_metric(self, event: &BusinessEvent) -> Option<(&'static str, f64)> {
        match self {
            Self::Revenue => Some((TOTAL_REVENUE, event.value)),
            Self::Acquisition => Some((NEW_USERS, 1.0)),
            Self::Support | Self::Other => None,
        }
    }
}

/// Medium priority when `value` is above `medium_above`, low otherwise.
pub fn priority(value: f64, medium_above: f64) -> Severity {
    if value > medium_above {
        Severity::Medium
    } else {
        Severity::Low
    }
}

/// The insight reporting one business event.
pub fn business_insight(event: &BusinessEvent, medium_above: f64) -> InsightDraft {
    let category = Category::of(&event.event_type);
    let priority = priority(event.value, medium_above);
    let priority_name = if priority == Severity::Medium { "medium" } else { "low" };

    let origin =
        event.source.as_deref().map(|s| format!(" from {s}")).unwrap_or_default();
    let summary = format!(
        "{} of {}{origin}: {}, {priority_name} priority",
        event.event_type,
        display(event.value, 2),
        category.as_str(),
    );
    let data = json!({
        "category": category.as_str(),
        "event_type": event.event_type,
        "value": event.value,
        "source": event.source,
        "user_id": event.user_id,
        "priority": priority_name,
    });

    InsightDraft {
        kind: InsightKind::Business,
        subject: category.as_str().to_owned(),
        severity: Some(priority),
        confidence: 1.0,
        summary,
        data,
        provenance: None,
    }
}

/// Tags of a derived metric point: category, event type and, when known,
/// source.
pub fn derived_tags(event: &BusinessEvent) -> Map<String, Value> {
    let category = Category::of(&event.event_type);
    let mut tags = Map::new();
    tags.insert("category".into(), category.as_str().into());
    tags.insert("event_type".into(), event.event_type.clone().into());
    if let Some(source) = &event.source {
        tags.insert("source".into(), source.clone().into());
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, value: f64) -> BusinessEvent {
        BusinessEvent {
            event_type: event_type.into(),
            user_id: None,
            value,
            source: Some("web".into()),
            timestamp_ms: 1,
        }
    }

    #[test]
    fn categories_come_from_the_type() {
        let cases = [
            ("purchase", Category::Revenue),
            ("Purchase_Completed", Category::Revenue),
            ("in_app_PURCHASE", Category::Revenue),
            ("signup", Category::Acquisition),
            ("newsletter_SignUp", Category::Acquisition),
            ("sign_up", Category::Other),
            ("support_ticket", Category::Support),
            ("purchase_support", Category::Revenue),
            ("refund", Category::Other),
            ("", Category::Other),
        ];
        for (event_type, expected) in cases {
            assert_eq!(Category::of(event_type), expected, "{event_type}");
        }
    }

    #[test]
    fn priority_is_medium_only_above_the_limit() {
        let cases = [
            (100.01, Severity::Medium),
            (100.0, Severity::Low),
            (0.0, Severity::Low),
            (-500.0, Severity::Low),
            (1e300, Severity::Medium),
        ];
        for (value, expected) in cases {
            assert_eq!(priority(value, 100.0), expected, "{value}");
        }
    }

    #[test]
    fn insight_carries_the_event() {
        let mut purchase = event("purchase", 120.5);
        purchase.user_id = Some("u1".into());
        let draft = business_insight(&purchase, 100.0);
        assert_eq!(draft.kind, InsightKind::Business);
        assert_eq!(draft.subject, "revenue");
        assert_eq!(draft.severity, Some(Severity::Medium));
        assert_eq!(draft.confidence, 1.0);
        assert_eq!(draft.summary, "purchase of 120.5 from web: revenue, medium priority");
        let expected = json!({
            "category": "revenue", "event_type": "purchase", "value": 120.5,
            "source": "web", "user_id": "u1", "priority": "medium",
        });
        assert_eq!(draft.data, expected);

        let mut ticket = event("support_ticket", 0.0);
        ticket.source = None;
        let draft = business_insight(&ticket, 100.0);
        assert_eq!(draft.summary, "support_ticket of 0: support, low priority");
        assert_eq!(draft.data["user_id"], Value::Null);
    }

    #[test]
    fn derived_metrics_by_category() {
        let cases = [
            ("purchase", 42.0, Some((TOTAL_REVENUE, 42.0))),
            ("signup", 42.0, Some((NEW_USERS, 1.0))),
            ("support", 42.0, None),
            ("other", 42.0, None),
        ];
        for (event_type, value, expected) in cases {
            let e = event(event_type, value);
            assert_eq!(Category::of(event_type).derived_metric(&e), expected);
        }
        let tags = derived_tags(&event("signup", 0.0));
        assert_eq!(
            Value::Object(tags),
            json!({
                "category": "acquisition", "event_type": "signup", "source": "web",
            })
        );
    }
}
