//! The result record: one JSON object per event on the results sink. Its layout is
//! documented in the README ("Result schema") and versioned by [`RESULT_SCHEMA_VERSION`].

use serde::Serialize;

use riskstream_graph::EntityKind;

use crate::aggregate::{EventAggregates, KeyValues};
use crate::dead_letter::SourceRef;
use crate::enrich::{EventGraph, GraphStatus};
use crate::event::{write_ts, Event};
/// Version of the result layout, bumped on incompatible changes.
pub const RESULT_SCHEMA_VERSION: u32 = 1;

/// The decision taken from the score and the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Review,
    Block,
}

impl Decision {
    /// `block` at or above the block threshold, `review` at or above the review threshold.
    pub fn from_score(score: f32, review: f32, block: f32) -> Self {
        if score >= block {
            Decision::Block
        } else if score >= review {
            Decision::Review
        } else {
            Decision::Allow
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Review => "review",
            Decision::Block => "block",
        }
    }

    /// The decision a result names, `None` for anything else.
    pub fn parse(name: &str) -> Option<Decision> {
        [Decision::Allow, Decision::Review, Decision::Block]
            .into_iter()
            .find(|d| d.as_str() == name)
    }
}

/// Replaces `out` with the readable form of one event's reasons (feature index, raw value,
/// contribution), naming each feature from the layout `specs`. Shared by the job and
/// replay, so both publish reasons the same way.
pub fn readable_reasons<'a>(
    specs: &'a [crate::features::FeatureSpec],
    reasons: &crate::engine::EventReasons,
    out: &mut Vec<Reason<'a>>,
) {
    out.clear();
    out.extend(reasons.iter().map(|(f, value, contribution)| Reason {
        feature: &specs[*f].name,
        name: &specs[*f].description,
        value: *value,
        contribution: *contribution,
    }));
}

/// One feature that pushed the score up.
#[derive(Debug, Clone, Serialize)]
pub struct Reason<'a> {
    /// Feature name as in the model metadata.
    pub feature: &'a str,
    /// What it means, for people.
    pub name: &'a str,
    /// The untransformed value.
    pub value: f32,
    /// Score change when the feature is replaced by its population mean.
    pub contribution: f32,
}

/// Field names of one key's aggregates, encoded once from the configured windows as
/// ready-to-write JSON fragments (`"count_1m":`).
#[derive(Debug, Clone)]
pub struct AggregateNames {
    windows: Vec<(Vec<u8>, Vec<u8>)>,
}

impl AggregateNames {
    pub fn new(labels: &[String]) -> Self {
        AggregateNames {
            windows: labels
                .iter()
                .map(|w| {
                    (
                        format!("\"count_{w}\":").into_bytes(),
                        format!("\"sum_{w}\":").into_bytes(),
                    )
                })
                .collect(),
        }
    }
}

/// Everything one result line is made of, borrowed from the stages that produced it.
pub struct ResultView<'a> {
    pub event: &'a Event,
    pub score: f32,
    pub decision: Decision,
    pub reasons: &'a [Reason<'a>],
    pub aggregates: &'a EventAggregates,
    pub aggregate_names: &'a AggregateNames,
    pub graph: &'a EventGraph,
    pub model_version: &'a str,
    pub snapshot_id: u64,
    pub source: SourceRef<'a>,
    pub processed_at: &'a str,
    pub latency_ms: f64,
}

/// Appends a JSON value (a string from input is escaped; numbers are formatted).
fn value<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Strings, finite numbers and plain structs always serialise into a Vec.
    let _ = serde_json::to_writer(&mut *out, v);
}

impl ResultView<'_> {
    /// Appends the result as one JSON object (no newline). Field names are fixed, so they
    /// are written as-is; only values taken from input go through the JSON escaper. This
    /// is the job's hottest serialisation.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"schema_version\":");
        value(out, &RESULT_SCHEMA_VERSION);
        out.extend_from_slice(b",\"event_id\":");
        value(out, self.event.event_id.as_str());
        out.extend_from_slice(b",\"account_id\":");
        value(out, self.event.account_id.as_str());
        out.extend_from_slice(b",\"ts\":\"");
        write_ts(out, self.event.ts_ms);
        out.extend_from_slice(b"\",\"score\":");
        value(out, &self.score);
        out.extend_from_slice(b",\"decision\":\"");
        out.extend_from_slice(self.decision.as_str().as_bytes());
        out.extend_from_slice(b"\",\"reasons\":");
        value(out, self.reasons);
        out.extend_from_slice(b",\"aggregates\":{");
        let mut first = true;
        for kind in [
            EntityKind::Account,
            EntityKind::Device,
            EntityKind::Ip,
            EntityKind::Merchant,
        ] {
            let Some(values) = self.aggregates.get(kind) else {
                continue;
            };
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(kind.as_str().as_bytes());
            out.extend_from_slice(b"\":");
            self.encode_key(out, kind, values);
        }
        out.extend_from_slice(b"},\"graph\":{\"status\":\"");
        out.extend_from_slice(match self.graph.status {
            GraphStatus::Ok => b"ok",
            GraphStatus::Unavailable => b"unavailable",
            GraphStatus::Skipped => b"skipped",
        });
        out.extend_from_slice(b"\",\"hops\":");
        let nearest = self.graph.nearest.as_deref();
        value(out, &nearest.and_then(|a| a.hops));
        out.extend_from_slice(b",\"path\":[");
        for (i, id) in nearest
            .map(|a| a.path.as_slice())
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            if i > 0 {
                out.push(b',');
            }
            value(out, &**id);
        }
        out.extend_from_slice(b"],\"flagged_nearby\":");
        value(out, &self.graph.flagged_nearby);
        out.extend_from_slice(b"},\"model_version\":");
        value(out, self.model_version);
        out.extend_from_slice(b",\"snapshot_id\":");
        value(out, &self.snapshot_id);
        out.extend_from_slice(b",\"source\":");
        value(out, &self.source);
        out.extend_from_slice(b",\"processed_at\":");
        value(out, self.processed_at);
        out.extend_from_slice(b",\"latency_ms\":");
        value(out, &self.latency_ms);
        out.push(b'}');
    }

    /// One key's window values: count and sum per window; the account also carries its
    /// distinct counterparties; `late` appears only on late events. Only values the model
    /// reads are written, which keeps a result well under 1 KB.
    fn encode_key(&self, out: &mut Vec<u8>, kind: EntityKind, values: &KeyValues) {
        out.push(b'{');
        for (i, (count, sum)) in self.aggregate_names.windows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(count);
            value(out, &values.windows.count(i));
            out.push(b',');
            out.extend_from_slice(sum);
            value(out, &values.windows.sum(i));
        }
        if kind == EntityKind::Account {
            out.extend_from_slice(b",\"distinct_counterparties\":");
            value(out, &values.distinct_counterparties);
        }
        if values.late {
            out.extend_from_slice(b",\"late\":true");
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use crate::aggregate::{AggregateOptions, Aggregator};
    use crate::enrich::EventGraph;
    use riskstream_graph::GraphAnswer;

    #[test]
    fn encoded_result_is_valid_json_with_every_field_and_escaped_input() {
        let event = Event {
            event_id: "e-\"1\"".into(),
            ts_ms: 1_795_341_792_512,
            account_id: "A-1\\".into(),
            counterparty_id: None,
            merchant_id: Some("M-1".into()),
            device_id: None,
            ip: None,
            amount: 12.5,
            currency: None,
            channel: None,
            country: None,
        };
        let aggregator = Aggregator::new(AggregateOptions::default()).unwrap();
        let aggregates = aggregator.apply_batch(std::slice::from_ref(&event));
        let names = AggregateNames::new(&["1m".into(), "1h".into(), "24h".into()]);
        let graph = EventGraph {
            status: GraphStatus::Ok,
            nearest: Some(Arc::new(GraphAnswer {
                known: true,
                hops: Some(1),
                path: vec!["A-1\\".into(), "A-9".into()],
                flagged_within: 2,
                neighbours: 3,
            })),
            flagged_nearby: 2,
            known: true,
            device_neighbours: 0,
            ip_neighbours: 0,
        };
        let reasons = [Reason {
            feature: "amount_log",
            name: "payment amount",
            value: 12.5,
            contribution: 0.25,
        }];
        let view = ResultView {
            event: &event,
            score: 0.75,
            decision: Decision::Review,
            reasons: &reasons,
            aggregates: &aggregates[0],
            aggregate_names: &names,
            graph: &graph,
            model_version: "m-1",
            snapshot_id: 7,
            source: SourceRef {
                topic: "events",
                partition: 2,
                offset: 9,
            },
            processed_at: "2026-11-22T10:03:13.000Z",
            latency_ms: 1.5,
        };
        let mut out = Vec::new();
        view.encode(&mut out);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(json["event_id"], "e-\"1\"");
        assert_eq!(json["account_id"], "A-1\\");
        assert_eq!(json["ts"], "2026-11-22T10:03:12.512Z");
        assert_eq!(json["score"], 0.75);
        assert_eq!(json["decision"], "review");
        assert_eq!(json["reasons"][0]["feature"], "amount_log");
        assert_eq!(json["aggregates"]["account"]["count_1m"], 1);
        assert_eq!(json["aggregates"]["account"]["sum_24h"], 12.5);
        assert_eq!(json["aggregates"]["account"]["distinct_counterparties"], 0);
        assert_eq!(json["aggregates"]["merchant"]["count_1h"], 1);
        assert!(json["aggregates"].get("device").is_none());
        assert_eq!(json["graph"]["path"][1], "A-9");
        assert_eq!(json["graph"]["hops"], 1);
        assert_eq!(json["source"]["partition"], 2);
        assert_eq!(json["snapshot_id"], 7);
        assert_eq!(json["latency_ms"], 1.5);
    }

    #[test]
    fn decision_follows_the_thresholds() {
        assert_eq!(Decision::from_score(0.1, 0.5, 0.9), Decision::Allow);
        assert_eq!(Decision::from_score(0.5, 0.5, 0.9), Decision::Review);
        assert_eq!(Decision::from_score(0.95, 0.5, 0.9), Decision::Block);
    }
}
