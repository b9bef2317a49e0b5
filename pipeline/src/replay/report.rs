//! `report.json`: per replayed event the published and the replayed outcome and what
//! differs, plus a summary. It holds nothing that depends on when or how fast the replay
//! ran, so two replays of the same input with the same model and graph write the same
//! bytes.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use crate::event::format_ts;
use crate::result::{Aggregates, Decision, GraphRecord, Reason, RecordDecision, ResultRecord};

use super::{Originals, PartitionRead, Replayed, ReplayedDeadLetter};

/// Version of the report layout, bumped on incompatible changes.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub range: RangeInfo,
    pub input: InputInfo,
    pub summary: Summary,
    /// Every replayed event, in replay order.
    pub events: Vec<EventReport>,
    /// Inputs of the range that did not decode.
    pub dead_letters: Vec<ReplayedDeadLetter>,
}

/// The replayed time range.
#[derive(Debug, Clone, Serialize)]
pub struct RangeInfo {
    pub from: String,
    pub to: String,
    /// Start of the warm-up read that rebuilt the window state.
    pub warm_up_from: String,
    /// Only these accounts were reported; empty for all.
    pub accounts: Vec<String>,
}

/// What was read.
#[derive(Debug, Clone, Serialize)]
pub struct InputInfo {
    /// `topic NAME` or `file PATH`.
    pub events: String,
    /// Where the published results came from; `null` when none were read.
    pub results: Option<String>,
    pub partitions: Vec<PartitionRead>,
    /// The graph the replay enriched with.
    pub graph: String,
    /// The model the replay scored with.
    pub model_version: String,
    /// Decision thresholds of the replay (review, block).
    pub thresholds: [f32; 2],
}

/// Counts by decision.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct DecisionCounts {
    pub allow: u64,
    pub review: u64,
    pub block: u64,
}

impl DecisionCounts {
    /// Counts a decision; a value that names none is not counted.
    fn add(&mut self, decision: Option<Decision>) {
        match decision {
            Some(Decision::Allow) => self.allow += 1,
            Some(Decision::Review) => self.review += 1,
            Some(Decision::Block) => self.block += 1,
            None => {}
        }
    }
}

/// The report's summary.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// Events of the range that were replayed.
    pub events: u64,
    /// Events read before `from` to rebuild the window state.
    pub warm_up_events: u64,
    /// Records read in all, warm-up included.
    pub records_read: u64,
    /// Decisions the job published for the replayed events (those with a result).
    pub published: DecisionCounts,
    /// Decisions of the replay, all replayed events.
    pub replayed: DecisionCounts,
    /// Events with a published result whose decision differs.
    pub changed_decisions: u64,
    /// `"published→replayed"` decision pairs that changed, with their counts.
    pub transitions: BTreeMap<String, u64>,
    /// Events with a published result whose score differs.
    pub changed_scores: u64,
    /// The largest score difference.
    pub max_score_difference: f64,
    /// Events for which each field differs (score, decision, reasons, graph, aggregates).
    pub differs: BTreeMap<String, u64>,
    /// Replayed events for which no published result was found.
    pub no_published_result: u64,
    /// Published results beyond the first for one event (at-least-once redeliveries).
    pub duplicate_results: u64,
    /// Published model versions of the replayed events, with their counts.
    pub published_model_versions: BTreeMap<String, u64>,
    /// Inputs of the range that did not decode.
    pub dead_letters: u64,
    pub dead_letters_by_kind: BTreeMap<String, u64>,
    /// Range events left out by the account filter.
    pub filtered_out: u64,
}

/// One outcome (published or replayed) of an event.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub score: f32,
    /// Written as the decision's name, or for anything else a results topic may hold, as
    /// the value quoted with control characters escaped ([`RecordDecision::shown`]).
    #[serde(serialize_with = "shown_decision")]
    pub decision: RecordDecision,
    pub reasons: Vec<Reason<'static>>,
    pub graph: GraphRecord<'static>,
    pub model_version: String,
}

fn shown_decision<S: Serializer>(decision: &RecordDecision, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&decision.shown())
}

impl Outcome {
    fn of(result: &ResultRecord<'static>) -> Outcome {
        Outcome {
            score: result.score,
            decision: result.decision.clone(),
            reasons: result.reasons.to_vec(),
            graph: result.graph.clone(),
            model_version: result.model_version.to_string(),
        }
    }
}

/// Published and replayed aggregates, reported only when they differ.
#[derive(Debug, Clone, Serialize)]
pub struct AggregatesDiff {
    pub published: Aggregates<'static>,
    pub replayed: Aggregates<'static>,
}

/// One replayed event.
#[derive(Debug, Clone, Serialize)]
pub struct EventReport {
    pub event_id: String,
    pub account_id: String,
    pub ts: String,
    pub partition: i32,
    pub offset: i64,
    /// What the job published; `null` when no result was found.
    pub published: Option<Outcome>,
    pub replayed: Outcome,
    /// The fields that differ: `score`, `decision`, `reasons`, `graph`, `aggregates`.
    pub differs: Vec<&'static str>,
    /// Both sets of window aggregates, when they differ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregates: Option<AggregatesDiff>,
}

/// Where the input was and what the replay ran with, for the report header.
#[derive(Debug, Clone)]
pub struct ReportContext {
    pub from_ms: i64,
    pub to_ms: i64,
    pub warm_up_from_ms: i64,
    pub accounts: Vec<String>,
    pub input: String,
    pub graph: String,
    pub model_version: String,
    pub thresholds: (f32, f32),
}

/// Joins the replayed events with their published results.
pub fn build(
    context: &ReportContext,
    replayed: &Replayed,
    originals: Option<&Originals>,
) -> Report {
    let mut summary = Summary {
        events: replayed.events.len() as u64,
        warm_up_events: replayed.warm_up_events,
        records_read: replayed.records_read,
        duplicate_results: originals.map_or(0, |o| o.duplicates),
        dead_letters: replayed.dead_letters.len() as u64,
        filtered_out: replayed.filtered_out,
        ..Summary::default()
    };
    for letter in &replayed.dead_letters {
        *summary
            .dead_letters_by_kind
            .entry(letter.kind.to_string())
            .or_default() += 1;
    }
    let mut events = Vec::with_capacity(replayed.events.len());
    for event in &replayed.events {
        let replayed_outcome = Outcome::of(&event.result);
        summary.replayed.add(replayed_outcome.decision.decision());
        let original = originals.and_then(|o| o.by_event.get(&event.event_id));
        let mut differs = Vec::new();
        let mut aggregates = None;
        let published = original.map(|o| {
            let published = Outcome::of(&o.result);
            summary.published.add(published.decision.decision());
            *summary
                .published_model_versions
                .entry(published.model_version.clone())
                .or_default() += 1;
            if published.score != replayed_outcome.score {
                differs.push("score");
                summary.changed_scores += 1;
                let delta = (f64::from(published.score) - f64::from(replayed_outcome.score)).abs();
                if delta > summary.max_score_difference {
                    summary.max_score_difference = delta;
                }
            }
            if published.decision != replayed_outcome.decision {
                differs.push("decision");
                summary.changed_decisions += 1;
                *summary
                    .transitions
                    .entry(format!(
                        "{}→{}",
                        published.decision.shown(),
                        replayed_outcome.decision.shown()
                    ))
                    .or_default() += 1;
            }
            if published.reasons != replayed_outcome.reasons {
                differs.push("reasons");
            }
            if published.graph != replayed_outcome.graph {
                differs.push("graph");
            }
            if o.result.aggregates != event.result.aggregates {
                differs.push("aggregates");
                aggregates = Some(AggregatesDiff {
                    published: o.result.aggregates.clone(),
                    replayed: event.result.aggregates.clone(),
                });
            }
            published
        });
        if published.is_none() {
            summary.no_published_result += 1;
        }
        for field in &differs {
            *summary.differs.entry((*field).to_string()).or_default() += 1;
        }
        events.push(EventReport {
            event_id: event.event_id.clone(),
            account_id: event.account_id.clone(),
            ts: format_ts(event.ts_ms),
            partition: event.partition,
            offset: event.offset,
            published,
            replayed: replayed_outcome,
            differs,
            aggregates,
        });
    }
    Report {
        schema_version: REPORT_SCHEMA_VERSION,
        range: RangeInfo {
            from: format_ts(context.from_ms),
            to: format_ts(context.to_ms),
            warm_up_from: format_ts(context.warm_up_from_ms),
            accounts: context.accounts.clone(),
        },
        input: InputInfo {
            events: context.input.clone(),
            results: originals.map(|o| o.source.clone()),
            partitions: replayed.positions.clone(),
            graph: context.graph.clone(),
            model_version: context.model_version.clone(),
            thresholds: [context.thresholds.0, context.thresholds.1],
        },
        summary,
        events,
        dead_letters: replayed.dead_letters.clone(),
    }
}

impl Report {
    /// The report as pretty JSON; the same report always gives the same bytes.
    pub fn to_json(&self) -> Vec<u8> {
        // Plain structs, strings, finite numbers and JSON values always serialise.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::{Original, ReplayedEvent};
    use serde_json::{json, Value};

    /// A whole result line as the job writes it, read through the typed record.
    fn result_with(id: &str, score: f64, decision: Value) -> ResultRecord<'static> {
        let line = json!({"schema_version": 1, "event_id": id, "account_id": "A-1",
            "ts": "2026-11-22T10:00:00.000Z", "score": score, "decision": decision,
            "reasons": [], "aggregates": {"account": {"count_1m": 1, "sum_1m": 5.0,
            "distinct_counterparties": 0}}, "graph": {"status": "ok", "hops": null,
            "path": [], "flagged_nearby": 0}, "model_version": "v1", "snapshot_id": 1,
            "source": {"topic": "events", "partition": 0, "offset": 0},
            "processed_at": "2026-11-22T10:00:01.000Z", "latency_ms": 1.0});
        ResultRecord::from_json(line.to_string().as_bytes()).unwrap()
    }

    fn result(id: &str, score: f64, decision: &str) -> ResultRecord<'static> {
        result_with(id, score, json!(decision))
    }

    fn replayed(results: &[ResultRecord<'static>]) -> Replayed {
        Replayed {
            events: results
                .iter()
                .enumerate()
                .map(|(i, r)| ReplayedEvent {
                    event_id: r.event_id.to_string(),
                    account_id: "A-1".into(),
                    ts_ms: i as i64,
                    partition: 0,
                    offset: i as i64,
                    result: r.clone(),
                })
                .collect(),
            ..Replayed::default()
        }
    }

    fn context() -> ReportContext {
        ReportContext {
            from_ms: 0,
            to_ms: 10,
            warm_up_from_ms: -5,
            accounts: vec![],
            input: "file events.jsonl".into(),
            graph: "memory".into(),
            model_version: "v1".into(),
            thresholds: (0.5, 0.9),
        }
    }

    #[test]
    fn a_published_decision_that_is_not_one_is_escaped_and_counted_as_changed() {
        let now = replayed(&[result("e-1", 0.1, "allow")]);
        let mut originals = Originals::default();
        originals.by_event.insert(
            "e-1".into(),
            Original {
                result: result("e-1", 0.1, "\u{1b}[2Jallow"),
                partition: 0,
                offset: 0,
            },
        );
        let report = build(&context(), &now, Some(&originals));
        let s = &report.summary;
        assert_eq!(s.changed_decisions, 1);
        let (transition, _) = s.transitions.iter().next().unwrap();
        assert!(!transition.contains('\u{1b}'), "{transition:?}");
        assert_eq!(transition, "\"\\u{1b}[2Jallow\"→allow");
        assert_eq!(s.published, DecisionCounts::default(), "not counted as one");
        let json = String::from_utf8(report.to_json()).unwrap();
        assert!(!json.contains('\u{1b}'), "{json}");
    }

    #[test]
    fn a_published_decision_that_is_not_a_string_is_shown_as_not_a_decision() {
        let now = replayed(&[result("e-1", 0.1, "allow")]);
        let mut originals = Originals::default();
        originals.by_event.insert(
            "e-1".into(),
            Original {
                result: result_with("e-1", 0.1, json!({"allow": true})),
                partition: 0,
                offset: 0,
            },
        );
        let report = build(&context(), &now, Some(&originals));
        assert_eq!(report.summary.changed_decisions, 1);
        let published = report.events[0].published.as_ref().unwrap();
        assert_eq!(
            published.decision.shown(),
            "(not a decision: {\"allow\":true})"
        );
        assert_eq!(published.decision.decision(), None);
    }

    #[test]
    fn changed_decisions_and_missing_results_are_counted() {
        let now = replayed(&[
            result("e-1", 0.95, "block"),
            result("e-2", 0.1, "allow"),
            result("e-3", 0.2, "allow"),
        ]);
        let mut originals = Originals::default();
        for (id, score, decision) in [("e-1", 0.3, "allow"), ("e-2", 0.1, "allow")] {
            originals.by_event.insert(
                id.into(),
                Original {
                    result: result(id, score, decision),
                    partition: 0,
                    offset: 0,
                },
            );
        }
        let report = build(&context(), &now, Some(&originals));
        let s = &report.summary;
        assert_eq!(s.events, 3);
        assert_eq!(s.changed_decisions, 1);
        assert_eq!(s.transitions.get("allow→block"), Some(&1));
        assert_eq!(s.changed_scores, 1);
        assert!(
            (s.max_score_difference - 0.65).abs() < 1e-6,
            "scores are f32"
        );
        assert_eq!(s.no_published_result, 1);
        assert_eq!(
            s.published,
            DecisionCounts {
                allow: 2,
                review: 0,
                block: 0
            }
        );
        assert_eq!(
            s.replayed,
            DecisionCounts {
                allow: 2,
                review: 0,
                block: 1
            }
        );
        assert_eq!(report.events[0].differs, vec!["score", "decision"]);
        assert!(report.events[1].differs.is_empty());
        assert!(report.events[2].published.is_none());
    }

    #[test]
    fn differing_aggregates_are_reported_with_both_values() {
        let now = replayed(&[result("e-1", 0.1, "allow")]);
        let mut published = result("e-1", 0.1, "allow");
        if let Some(account) = published.aggregates.account.as_mut() {
            account.windows[0].count = 2;
        }
        let mut originals = Originals::default();
        originals.by_event.insert(
            "e-1".into(),
            Original {
                result: published,
                partition: 0,
                offset: 0,
            },
        );
        let report = build(&context(), &now, Some(&originals));
        assert_eq!(report.events[0].differs, vec!["aggregates"]);
        let diff = report.events[0].aggregates.as_ref().unwrap();
        let count = |a: &Aggregates<'_>| {
            a.account
                .as_ref()
                .and_then(|k| k.window("1m"))
                .map(|w| w.count)
        };
        assert_eq!(count(&diff.published), Some(2));
        assert_eq!(count(&diff.replayed), Some(1));
    }

    #[test]
    fn the_same_replay_gives_the_same_bytes() {
        let now = replayed(&[result("e-1", 0.1, "allow"), result("e-2", 0.7, "review")]);
        let a = build(&context(), &now, None).to_json();
        let b = build(&context(), &now, None).to_json();
        assert_eq!(a, b);
        assert!(String::from_utf8(a)
            .unwrap()
            .contains("\"no_published_result\": 2"));
    }
}
