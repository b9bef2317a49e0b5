//! The result record: one JSON object per event on the results sink. Its layout is
//! documented in the README ("Result schema") and versioned by [`RESULT_SCHEMA_VERSION`].

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use riskstream_graph::EntityKind;

use crate::aggregate::{EventAggregates, KeyValues};
use crate::dead_letter::SourceRef;
use crate::enrich::{EventGraph, GraphStatus};
use crate::event::{format_ts, Event};

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

/// Field names of one key's aggregates, computed once from the configured windows.
#[derive(Debug, Clone)]
pub struct AggregateNames {
    windows: Vec<(String, String)>,
}

impl AggregateNames {
    pub fn new(labels: &[String]) -> Self {
        AggregateNames {
            windows: labels
                .iter()
                .map(|w| (format!("count_{w}"), format!("sum_{w}")))
                .collect(),
        }
    }
}

struct KeyOut<'a> {
    kind: EntityKind,
    names: &'a AggregateNames,
    values: &'a KeyValues,
}

/// One key's window values: count and sum per window; the account also carries its
/// distinct counterparties; `late` appears only on late events. Only values the model
/// reads are written, which keeps a result around 1 KB.
impl Serialize for KeyOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (i, (count, sum)) in self.names.windows.iter().enumerate() {
            map.serialize_entry(count, &self.values.windows.count(i))?;
            map.serialize_entry(sum, &self.values.windows.sum(i))?;
        }
        if self.kind == EntityKind::Account {
            map.serialize_entry(
                "distinct_counterparties",
                &self.values.distinct_counterparties,
            )?;
        }
        if self.values.late {
            map.serialize_entry("late", &true)?;
        }
        map.end()
    }
}

struct AggregatesOut<'a> {
    names: &'a AggregateNames,
    aggs: &'a EventAggregates,
}

impl Serialize for AggregatesOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for kind in [
            EntityKind::Account,
            EntityKind::Device,
            EntityKind::Ip,
            EntityKind::Merchant,
        ] {
            if let Some(values) = self.aggs.get(kind) {
                map.serialize_entry(
                    kind.as_str(),
                    &KeyOut {
                        kind,
                        names: self.names,
                        values,
                    },
                )?;
            }
        }
        map.end()
    }
}

#[derive(Serialize)]
struct GraphOut<'a> {
    status: GraphStatus,
    hops: Option<u32>,
    path: Vec<&'a str>,
    flagged_nearby: u32,
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

impl Serialize for ResultView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("schema_version", &RESULT_SCHEMA_VERSION)?;
        map.serialize_entry("event_id", &self.event.event_id)?;
        map.serialize_entry("account_id", &self.event.account_id)?;
        map.serialize_entry("ts", &format_ts(self.event.ts_ms))?;
        map.serialize_entry("score", &self.score)?;
        map.serialize_entry("decision", &self.decision)?;
        map.serialize_entry("reasons", self.reasons)?;
        map.serialize_entry(
            "aggregates",
            &AggregatesOut {
                names: self.aggregate_names,
                aggs: self.aggregates,
            },
        )?;
        let nearest = self.graph.nearest.as_deref();
        map.serialize_entry(
            "graph",
            &GraphOut {
                status: self.graph.status,
                hops: nearest.and_then(|a| a.hops),
                path: nearest
                    .map(|a| a.path.iter().map(|id| &**id).collect())
                    .unwrap_or_default(),
                flagged_nearby: self.graph.flagged_nearby,
            },
        )?;
        map.serialize_entry("model_version", self.model_version)?;
        map.serialize_entry("snapshot_id", &self.snapshot_id)?;
        map.serialize_entry("source", &self.source)?;
        map.serialize_entry("processed_at", self.processed_at)?;
        map.serialize_entry("latency_ms", &self.latency_ms)?;
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decision_follows_the_thresholds() {
        assert_eq!(Decision::from_score(0.1, 0.5, 0.9), Decision::Allow);
        assert_eq!(Decision::from_score(0.5, 0.5, 0.9), Decision::Review);
        assert_eq!(Decision::from_score(0.95, 0.5, 0.9), Decision::Block);
    }
}
