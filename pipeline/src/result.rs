//! The result record: one JSON object per event on the results sink. Its layout is
//! documented in `docs/schemas.md` ("Results") and versioned by [`RESULT_SCHEMA_VERSION`].
//!
//! [`ResultRecord`] is that layout as one type: `riskstream results` and replay read
//! results through it, and [`ResultView::record`] builds it from the stages' output. The
//! job writes the same bytes with the hand-written [`ResultView::encode`], which is faster
//! than serialising the record (figures on `encode`); a property test holds the two byte
//! for byte equal.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use riskstream_graph::EntityKind;

use crate::aggregate::{EventAggregates, KeyValues};
use crate::dead_letter::SourceRef;
use crate::enrich::{EventGraph, GraphStatus};
use crate::event::{write_ts, Event};
/// Version of the result layout, bumped on incompatible changes.
pub const RESULT_SCHEMA_VERSION: u32 = 1;

/// The decision taken from the score and the thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
        feature: Cow::Borrowed(&specs[*f].name),
        name: Cow::Borrowed(&specs[*f].description),
        value: *value,
        contribution: *contribution,
    }));
}

/// One feature that pushed the score up. The job borrows the names from the feature
/// layout; a reader owns them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reason<'a> {
    /// Feature name as in the model metadata.
    pub feature: Cow<'a, str>,
    /// What it means, for people.
    pub name: Cow<'a, str>,
    /// The untransformed value.
    pub value: f32,
    /// Score change when the feature is replaced by its population mean.
    pub contribution: f32,
}

/// Field names of one key's aggregates, encoded once from the configured windows as
/// ready-to-write JSON fragments (`"count_1m":`).
#[derive(Debug, Clone)]
pub struct AggregateNames {
    labels: Vec<String>,
    windows: Vec<(Vec<u8>, Vec<u8>)>,
}

impl AggregateNames {
    pub fn new(labels: &[String]) -> Self {
        AggregateNames {
            labels: labels.to_vec(),
            windows: labels
                .iter()
                .map(|w| (field("count_", w), field("sum_", w)))
                .collect(),
        }
    }
}

/// `"<prefix><label>":` with the label escaped as JSON.
fn field(prefix: &str, label: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + label.len() + 3);
    value(&mut out, &format!("{prefix}{label}"));
    out.push(b':');
    out
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
    /// is the job's hottest serialisation, and hand-written because it pays: serialising
    /// [`ResultRecord`] with serde instead made the file → file run of 1 M events take
    /// 1.21× the time (medians 16.3 s against 13.1 s, release build, 2026-12-02). The
    /// bytes are the serialised record's, byte for byte (held by a property test).
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

/// One result line, typed: exactly the JSON object the job writes per event (see the
/// result schema in `docs/schemas.md`), read by `riskstream results` and replay and built from the
/// stages' output by [`ResultView::record`].
///
/// Writing borrows every string from the stages that produced it. Reading owns its strings
/// (replay keeps the records beyond the bytes they came from), so a record read is a
/// `ResultRecord<'static>`.
///
/// Reading is strict about the fields it knows and tolerant of the rest:
/// * every field of version 1 must be present with its type (`reasons` may be missing:
///   empty), else the line is not a result;
/// * fields it does not know, at any level, are ignored, so that a newer job may add
///   fields without breaking older readers; `schema_version` is read, not checked;
/// * the decision is never trusted: anything but `allow`, `review` or `block` is kept as
///   [`RecordDecision::Other`] with the value as found, so a crafted results topic can
///   neither pass a value off as a decision nor make a reader fail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResultRecord<'a> {
    pub schema_version: u32,
    pub event_id: Cow<'a, str>,
    pub account_id: Cow<'a, str>,
    /// Event time, RFC 3339 in UTC with milliseconds.
    pub ts: Cow<'a, str>,
    pub score: f32,
    pub decision: RecordDecision,
    /// Strongest first; empty for `allow`.
    #[serde(default)]
    pub reasons: Cow<'a, [Reason<'a>]>,
    pub aggregates: Aggregates<'a>,
    pub graph: GraphRecord<'a>,
    pub model_version: Cow<'a, str>,
    pub snapshot_id: u64,
    pub source: SourceRecord<'a>,
    pub processed_at: Cow<'a, str>,
    pub latency_ms: f64,
}

impl ResultRecord<'_> {
    /// Reads one result line.
    pub fn from_json(bytes: &[u8]) -> Result<ResultRecord<'static>, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The record with every string owned.
    pub fn into_owned(self) -> ResultRecord<'static> {
        ResultRecord {
            schema_version: self.schema_version,
            event_id: owned(self.event_id),
            account_id: owned(self.account_id),
            ts: owned(self.ts),
            score: self.score,
            decision: self.decision,
            reasons: Cow::Owned(
                self.reasons
                    .into_owned()
                    .into_iter()
                    .map(Reason::into_owned)
                    .collect(),
            ),
            aggregates: self.aggregates.into_owned(),
            graph: self.graph.into_owned(),
            model_version: owned(self.model_version),
            snapshot_id: self.snapshot_id,
            source: self.source.into_owned(),
            processed_at: owned(self.processed_at),
            latency_ms: self.latency_ms,
        }
    }
}

fn owned(text: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(text.into_owned())
}

impl Reason<'_> {
    pub fn into_owned(self) -> Reason<'static> {
        Reason {
            feature: owned(self.feature),
            name: owned(self.name),
            value: self.value,
            contribution: self.contribution,
        }
    }
}

/// A result's `decision` as read: one of the three decisions, or whatever else the line
/// held there (a string that names no decision, a number, …), which is never taken for one.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordDecision {
    Decision(Decision),
    /// The value as found, to be shown quoted (see [`RecordDecision::shown`]).
    Other(serde_json::Value),
}

impl RecordDecision {
    /// The decision, `None` when the value names none.
    pub fn decision(&self) -> Option<Decision> {
        match self {
            RecordDecision::Decision(d) => Some(*d),
            RecordDecision::Other(_) => None,
        }
    }

    /// The decision's name, or for anything else the value quoted with control characters
    /// escaped, so that a crafted value can neither pass for a decision nor send escape
    /// sequences to a terminal.
    pub fn shown(&self) -> Cow<'static, str> {
        match self {
            RecordDecision::Decision(d) => Cow::Borrowed(d.as_str()),
            RecordDecision::Other(serde_json::Value::String(name)) => {
                Cow::Owned(format!("{name:?}"))
            }
            // JSON text escapes the control characters of any string inside.
            RecordDecision::Other(value) => Cow::Owned(format!("(not a decision: {value})")),
        }
    }
}

impl From<Decision> for RecordDecision {
    fn from(decision: Decision) -> Self {
        RecordDecision::Decision(decision)
    }
}

impl Serialize for RecordDecision {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RecordDecision::Decision(d) => d.serialize(serializer),
            RecordDecision::Other(value) => value.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for RecordDecision {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        Ok(match value.as_str().and_then(Decision::parse) {
            Some(decision) => RecordDecision::Decision(decision),
            None => RecordDecision::Other(value),
        })
    }
}

/// The window values per key kind the event named (`aggregates`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Aggregates<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<KeyAggregates<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<KeyAggregates<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<KeyAggregates<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merchant: Option<KeyAggregates<'a>>,
}

impl Aggregates<'_> {
    /// One kind's values.
    pub fn get(&self, kind: EntityKind) -> Option<&KeyAggregates<'_>> {
        match kind {
            EntityKind::Account => self.account.as_ref(),
            EntityKind::Device => self.device.as_ref(),
            EntityKind::Ip => self.ip.as_ref(),
            EntityKind::Merchant => self.merchant.as_ref(),
        }
    }

    pub fn into_owned(self) -> Aggregates<'static> {
        Aggregates {
            account: self.account.map(KeyAggregates::into_owned),
            device: self.device.map(KeyAggregates::into_owned),
            ip: self.ip.map(KeyAggregates::into_owned),
            merchant: self.merchant.map(KeyAggregates::into_owned),
        }
    }
}

/// One key's values: written as `count_<w>` and `sum_<w>` per window (in window order),
/// `distinct_counterparties` for the account and `"late": true` on late events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeyAggregates<'a> {
    pub windows: Vec<WindowAggregate<'a>>,
    pub distinct_counterparties: Option<u32>,
    pub late: bool,
}

/// Count and sum of one window, named by its label (`1m`, `1h`, `24h`).
#[derive(Debug, Clone, PartialEq)]
pub struct WindowAggregate<'a> {
    pub window: Cow<'a, str>,
    pub count: u32,
    pub sum: f64,
}

impl KeyAggregates<'_> {
    /// The values of the window labelled `label`.
    pub fn window(&self, label: &str) -> Option<&WindowAggregate<'_>> {
        self.windows.iter().find(|w| w.window == label)
    }

    pub fn into_owned(self) -> KeyAggregates<'static> {
        KeyAggregates {
            windows: self
                .windows
                .into_iter()
                .map(|w| WindowAggregate {
                    window: owned(w.window),
                    count: w.count,
                    sum: w.sum,
                })
                .collect(),
            distinct_counterparties: self.distinct_counterparties,
            late: self.late,
        }
    }
}

/// A field name made of a prefix and a window label, written without building a string.
struct WindowField<'a>(&'static str, &'a str);

impl Serialize for WindowField<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{}{}", self.0, self.1))
    }
}

impl Serialize for KeyAggregates<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        for w in &self.windows {
            map.serialize_entry(&WindowField("count_", &w.window), &w.count)?;
            map.serialize_entry(&WindowField("sum_", &w.window), &w.sum)?;
        }
        if let Some(distinct) = self.distinct_counterparties {
            map.serialize_entry("distinct_counterparties", &distinct)?;
        }
        if self.late {
            map.serialize_entry("late", &true)?;
        }
        map.end()
    }
}

impl<'de, 'a> Deserialize<'de> for KeyAggregates<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(KeyAggregatesVisitor(std::marker::PhantomData))
    }
}

struct KeyAggregatesVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de, 'a> Visitor<'de> for KeyAggregatesVisitor<'a> {
    type Value = KeyAggregates<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("one key's window values")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
        // (label, count, sum) in the order the labels first appear.
        let mut windows: Vec<(String, Option<u32>, Option<f64>)> = Vec::new();
        let slot = |windows: &mut Vec<(String, Option<u32>, Option<f64>)>, label: &str| {
            windows
                .iter()
                .position(|w| w.0 == label)
                .unwrap_or_else(|| {
                    windows.push((label.to_string(), None, None));
                    windows.len() - 1
                })
        };
        let mut values = KeyAggregates::default();
        while let Some(key) = map.next_key::<Cow<'_, str>>()? {
            if let Some(label) = key.strip_prefix("count_") {
                let i = slot(&mut windows, label);
                windows[i].1 = Some(map.next_value()?);
            } else if let Some(label) = key.strip_prefix("sum_") {
                let i = slot(&mut windows, label);
                windows[i].2 = Some(map.next_value()?);
            } else if key == "distinct_counterparties" {
                values.distinct_counterparties = Some(map.next_value()?);
            } else if key == "late" {
                values.late = map.next_value()?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        for (window, count, sum) in windows {
            match (count, sum) {
                (Some(count), Some(sum)) => values.windows.push(WindowAggregate {
                    window: Cow::Owned(window),
                    count,
                    sum,
                }),
                (None, _) => {
                    return Err(de::Error::custom(format_args!(
                        "window {window:?} has a sum but no count"
                    )))
                }
                (_, None) => {
                    return Err(de::Error::custom(format_args!(
                        "window {window:?} has a count but no sum"
                    )))
                }
            }
        }
        Ok(values)
    }
}

/// The graph answer of a result (`graph`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GraphRecord<'a> {
    pub status: GraphStatus,
    /// Hops to the nearest flagged entity; `None` when none is within reach.
    pub hops: Option<u32>,
    /// Entity ids from the event's entity to the flagged one.
    pub path: Vec<Cow<'a, str>>,
    pub flagged_nearby: u32,
}

impl GraphRecord<'_> {
    pub fn into_owned(self) -> GraphRecord<'static> {
        GraphRecord {
            status: self.status,
            hops: self.hops,
            path: self.path.into_iter().map(owned).collect(),
            flagged_nearby: self.flagged_nearby,
        }
    }
}

/// Where the event was read (`source`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord<'a> {
    pub topic: Cow<'a, str>,
    pub partition: i32,
    pub offset: i64,
}

impl SourceRecord<'_> {
    pub fn into_owned(self) -> SourceRecord<'static> {
        SourceRecord {
            topic: owned(self.topic),
            partition: self.partition,
            offset: self.offset,
        }
    }
}

impl<'a> ResultView<'a> {
    /// The typed record of this result: what [`encode`](Self::encode) writes.
    pub fn record(&self) -> ResultRecord<'a> {
        let key = |kind: EntityKind| {
            self.aggregates.get(kind).map(|values| KeyAggregates {
                windows: self
                    .aggregate_names
                    .labels
                    .iter()
                    .enumerate()
                    .map(|(i, label)| WindowAggregate {
                        window: Cow::Borrowed(label.as_str()),
                        count: values.windows.count(i),
                        sum: values.windows.sum(i),
                    })
                    .collect(),
                distinct_counterparties: (kind == EntityKind::Account)
                    .then_some(values.distinct_counterparties),
                late: values.late,
            })
        };
        let nearest = self.graph.nearest.as_deref();
        let mut ts = Vec::with_capacity(24);
        write_ts(&mut ts, self.event.ts_ms);
        ResultRecord {
            schema_version: RESULT_SCHEMA_VERSION,
            event_id: Cow::Borrowed(&self.event.event_id),
            account_id: Cow::Borrowed(&self.event.account_id),
            // The formatter writes ASCII only.
            ts: Cow::Owned(String::from_utf8(ts).unwrap_or_default()),
            score: self.score,
            decision: self.decision.into(),
            reasons: Cow::Borrowed(self.reasons),
            aggregates: Aggregates {
                account: key(EntityKind::Account),
                device: key(EntityKind::Device),
                ip: key(EntityKind::Ip),
                merchant: key(EntityKind::Merchant),
            },
            graph: GraphRecord {
                status: self.graph.status,
                hops: nearest.and_then(|a| a.hops),
                path: nearest
                    .map(|a| a.path.as_slice())
                    .unwrap_or_default()
                    .iter()
                    .map(|id| Cow::Borrowed(&**id))
                    .collect(),
                flagged_nearby: self.graph.flagged_nearby,
            },
            model_version: Cow::Borrowed(self.model_version),
            snapshot_id: self.snapshot_id,
            source: SourceRecord {
                topic: Cow::Borrowed(self.source.topic),
                partition: self.source.partition,
                offset: self.source.offset,
            },
            processed_at: Cow::Borrowed(self.processed_at),
            latency_ms: self.latency_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use proptest::prelude::*;

    use crate::aggregate::{AggregateOptions, Aggregator};
    use crate::enrich::EventGraph;
    use riskstream_graph::GraphAnswer;

    #[test]
    fn encoded_result_is_valid_json_with_every_field_and_escaped_input() {
        let event = Event {
            merchant_id: Some("M-1".into()),
            ..Event::bare("e-\"1\"", 1_795_341_792_512, "A-1\\", 12.5)
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
            feature: "amount_log".into(),
            name: "payment amount".into(),
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

    /// One key's values: (count, sum in cents) per window, distinct counterparties, late.
    type Key = (Vec<(u32, u64)>, u32, bool);
    /// Hops and path of the nearest flagged entity.
    type Nearest = (Option<u32>, Vec<String>);

    /// One result's inputs, generated: everything the encoder reads from the stages.
    #[derive(Debug, Clone)]
    struct Inputs {
        event: Event,
        score: f32,
        decision: Decision,
        reasons: Vec<(String, String, f32, f32)>,
        labels: Vec<String>,
        keys: Vec<Option<Key>>,
        graph: (GraphStatus, Option<Nearest>, u32),
        model_version: String,
        snapshot_id: u64,
        source: (String, i32, i64),
        processed_at: String,
        latency_us: u64,
    }

    fn decision() -> impl Strategy<Value = Decision> {
        prop_oneof![
            Just(Decision::Allow),
            Just(Decision::Review),
            Just(Decision::Block)
        ]
    }

    fn finite_f32() -> impl Strategy<Value = f32> {
        prop::num::f32::NORMAL | prop::num::f32::ZERO | prop::num::f32::SUBNORMAL
    }

    fn inputs() -> impl Strategy<Value = Inputs> {
        // Window labels, unique, with characters JSON escapes.
        let labels = prop::collection::btree_set("[a-z0-9\"\\\\]{1,4}", 1..=4)
            .prop_map(|l| l.into_iter().collect::<Vec<_>>());
        labels.prop_flat_map(|labels| {
            let n = labels.len();
            // Sums as amounts in cents add up to: short decimals, as the job's are.
            let key = prop::option::of((
                prop::collection::vec((any::<u32>(), 0u64..10_000_000_000), n),
                any::<u32>(),
                any::<bool>(),
            ));
            let event = (
                any::<String>(),
                -1_000_000_000_000_000i64..1_000_000_000_000_000,
                any::<String>(),
            );
            let graph = (
                prop_oneof![
                    Just(GraphStatus::Ok),
                    Just(GraphStatus::Unavailable),
                    Just(GraphStatus::Skipped)
                ],
                prop::option::of((
                    prop::option::of(any::<u32>()),
                    prop::collection::vec(any::<String>(), 0..4),
                )),
                any::<u32>(),
            );
            (
                (event, finite_f32(), decision()),
                prop::collection::vec(
                    (any::<String>(), any::<String>(), finite_f32(), finite_f32()),
                    0..4,
                ),
                prop::collection::vec(key, 4),
                graph,
                (any::<String>(), any::<u64>()),
                (any::<String>(), any::<i32>(), any::<i64>()),
                // Latencies in microseconds up to a day: as precise as the job measures.
                (any::<String>(), 0u64..86_400_000_000),
            )
                .prop_map(
                    move |(
                        ((event_id, ts_ms, account_id), score, decision),
                        reasons,
                        keys,
                        graph,
                        (model_version, snapshot_id),
                        source,
                        (processed_at, latency_us),
                    )| Inputs {
                        event: Event::bare(&event_id, ts_ms, &account_id, 1.0),
                        score,
                        decision,
                        reasons,
                        labels: labels.clone(),
                        keys,
                        graph,
                        model_version,
                        snapshot_id,
                        source,
                        processed_at,
                        latency_us,
                    },
                )
        })
    }

    /// Encodes `inputs` with the job's encoder into `out` and returns the record the view
    /// stands for, owned.
    fn encode(inputs: &Inputs, out: &mut Vec<u8>) -> ResultRecord<'static> {
        let mut aggregates = EventAggregates::default();
        let kinds = [
            EntityKind::Account,
            EntityKind::Device,
            EntityKind::Ip,
            EntityKind::Merchant,
        ];
        for (kind, key) in kinds.into_iter().zip(&inputs.keys) {
            let values = key.as_ref().map(|(windows, distinct, late)| {
                let mut values = crate::aggregate::WindowValues::zeroed(windows.len());
                for (i, (count, cents)) in windows.iter().enumerate() {
                    values.set(i, *count, *cents as f64 / 100.0);
                }
                KeyValues {
                    windows: values,
                    distinct_counterparties: *distinct,
                    first_seen_ms: 0,
                    previous_last_seen_ms: None,
                    previous_country: None,
                    late: *late,
                    amount_mean: 0.0,
                    amount_std: 0.0,
                }
            });
            aggregates = aggregates.with(kind, values);
        }
        let (status, nearest, flagged_nearby) = &inputs.graph;
        let graph = EventGraph {
            status: *status,
            nearest: nearest.as_ref().map(|(hops, path)| {
                Arc::new(GraphAnswer {
                    known: true,
                    hops: *hops,
                    path: path.iter().map(|id| Arc::from(id.as_str())).collect(),
                    flagged_within: 0,
                    neighbours: 0,
                })
            }),
            flagged_nearby: *flagged_nearby,
            known: true,
            device_neighbours: 0,
            ip_neighbours: 0,
        };
        let reasons: Vec<Reason<'_>> = inputs
            .reasons
            .iter()
            .map(|(feature, name, value, contribution)| Reason {
                feature: feature.as_str().into(),
                name: name.as_str().into(),
                value: *value,
                contribution: *contribution,
            })
            .collect();
        let names = AggregateNames::new(&inputs.labels);
        let view = ResultView {
            event: &inputs.event,
            score: inputs.score,
            decision: inputs.decision,
            reasons: &reasons,
            aggregates: &aggregates,
            aggregate_names: &names,
            graph: &graph,
            model_version: &inputs.model_version,
            snapshot_id: inputs.snapshot_id,
            source: SourceRef {
                topic: &inputs.source.0,
                partition: inputs.source.1,
                offset: inputs.source.2,
            },
            processed_at: &inputs.processed_at,
            latency_ms: inputs.latency_us as f64 / 1000.0,
        };
        view.encode(out);
        view.record().into_owned()
    }

    proptest! {
        /// The job's hand-written encoder and the typed record agree: every line it writes
        /// is valid JSON, is read back by the typed reader as the record of the same view,
        /// and has the very bytes that serialising that record gives.
        #[test]
        fn every_encoded_result_reads_back_as_its_record_byte_for_byte(inputs in inputs()) {
            let mut line = Vec::new();
            let record = encode(&inputs, &mut line);
            prop_assert!(serde_json::from_slice::<serde_json::Value>(&line).is_ok());
            let read = ResultRecord::from_json(&line);
            prop_assert!(read.is_ok(), "{:?}: {}", read, String::from_utf8_lossy(&line));
            prop_assert_eq!(read.ok(), Some(record.clone()));
            let derived = serde_json::to_vec(&record).unwrap_or_default();
            prop_assert_eq!(String::from_utf8_lossy(&derived), String::from_utf8_lossy(&line));
        }
    }

    #[test]
    fn a_reader_ignores_fields_it_does_not_know_and_keeps_a_decision_that_is_not_one() {
        let mut line = Vec::new();
        let record = encode(&sample(), &mut line);
        // Fields added at every level, the known ones left in their order.
        let text = String::from_utf8(line).unwrap();
        let extended = text
            .replace("\"graph\":{", "\"graph\":{\"added_later\":true,")
            .replace(
                "\"aggregates\":{\"account\":{",
                "\"aggregates\":{\"session\":{\"count_1m\":1},\"account\":{\"added_later\":1,",
            )
            .replacen('{', "{\"added_later\":{\"x\":[1,2]},", 1);
        assert_eq!(extended.matches("added_later").count(), 3, "{extended}");
        let read = ResultRecord::from_json(extended.as_bytes()).unwrap();
        assert_eq!(read, record);

        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();

        json["decision"] = serde_json::json!("\u{1b}[2Jblock");
        let read = ResultRecord::from_json(json.to_string().as_bytes()).unwrap();
        assert_eq!(read.decision.decision(), None);
        assert_eq!(read.decision.shown(), "\"\\u{1b}[2Jblock\"");
        json["decision"] = serde_json::json!(["block"]);
        let read = ResultRecord::from_json(json.to_string().as_bytes()).unwrap();
        assert_eq!(read.decision.shown(), "(not a decision: [\"block\"])");
    }

    #[test]
    fn a_line_missing_a_field_or_half_a_window_is_not_a_result() {
        let mut line = Vec::new();
        encode(&sample(), &mut line);
        let json: serde_json::Value = serde_json::from_slice(&line).unwrap();
        let mut missing = json.clone();
        missing.as_object_mut().unwrap().remove("score");
        let err = ResultRecord::from_json(missing.to_string().as_bytes()).unwrap_err();
        assert!(err.to_string().contains("missing field `score`"), "{err}");
        let mut half = json.clone();
        half["aggregates"]["account"]
            .as_object_mut()
            .unwrap()
            .remove("sum_1m");
        let err = ResultRecord::from_json(half.to_string().as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .contains("window \"1m\" has a count but no sum"),
            "{err}"
        );
        let mut status = json;
        status["graph"]["status"] = serde_json::json!("maybe");
        assert!(ResultRecord::from_json(status.to_string().as_bytes()).is_err());
    }

    fn sample() -> Inputs {
        Inputs {
            event: Event::bare("e-1", 1_795_341_792_512, "A-1", 1.0),
            score: 0.5,
            decision: Decision::Review,
            reasons: vec![("amount_log".into(), "payment amount".into(), 2.0, 0.5)],
            labels: vec!["1m".into(), "1h".into()],
            keys: vec![Some((vec![(1, 250), (2, 500)], 1, false)), None, None, None],
            graph: (GraphStatus::Ok, None, 0),
            model_version: "v1".into(),
            snapshot_id: 3,
            source: ("events".into(), 0, 7),
            processed_at: "2026-11-22T10:00:00.000Z".into(),
            latency_us: 1500,
        }
    }

    #[test]
    fn decision_follows_the_thresholds() {
        assert_eq!(Decision::from_score(0.1, 0.5, 0.9), Decision::Allow);
        assert_eq!(Decision::from_score(0.5, 0.5, 0.9), Decision::Review);
        assert_eq!(Decision::from_score(0.95, 0.5, 0.9), Decision::Block);
    }
}
