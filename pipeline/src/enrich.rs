//! The enrich stage: one batched graph look-up per micro-batch, bounded by a deadline, and
//! the per-event graph answer built from the answers for the event's entities.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use ahash::AHashMap;
use serde::Serialize;

use riskstream_graph::{GraphAnswer, GraphEnricher};

use crate::event::Event;

/// Whether the event got graph features.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GraphStatus {
    /// The graph answered.
    Ok,
    /// An entity of the event got no answer by the deadline (the look-up failed or was
    /// late); the event was scored without graph features.
    Unavailable,
    /// No graph is configured (`graph.kind = "none"`).
    Skipped,
}

/// The graph answer for one event: the closest known fraud over all of the event's
/// entities (account, counterparty, device, IP, merchant).
#[derive(Debug, Clone)]
pub struct EventGraph {
    pub status: GraphStatus,
    /// The answer of the entity nearest to a flagged node; ties go to the entity listed
    /// first in [`entities`].
    pub nearest: Option<Arc<GraphAnswer>>,
    /// The most flagged nodes near any one of the event's entities.
    pub flagged_nearby: u32,
    /// Whether any of the event's entities is in the graph.
    pub known: bool,
    /// Entities linked to the event's device in the graph (the accounts that used it); 0
    /// when the event names no device or the graph does not know it.
    pub device_neighbours: u32,
    /// Entities linked to the event's IP address in the graph, as for the device.
    pub ip_neighbours: u32,
}

impl EventGraph {
    pub fn without(status: GraphStatus) -> Self {
        EventGraph {
            status,
            nearest: None,
            flagged_nearby: 0,
            known: false,
            device_neighbours: 0,
            ip_neighbours: 0,
        }
    }

    pub fn hops(&self) -> Option<u32> {
        self.nearest.as_ref().and_then(|a| a.hops)
    }
}

/// The entity ids of an event that the graph is asked about, in tie-break order.
pub fn entities(event: &Event) -> impl Iterator<Item = &str> {
    [
        Some(event.account_id.as_str()),
        event.counterparty_id.as_deref(),
        event.device_id.as_deref(),
        event.ip.as_deref(),
        event.merchant_id.as_deref(),
    ]
    .into_iter()
    .flatten()
}

/// Graph warnings are per batch, and a graph that is down fails every batch: at most one
/// warning per interval is logged, with the number left out since the last one.
struct WarningLimiter {
    /// Milliseconds since `START` of the last warning logged, plus one (0: never).
    last_ms: AtomicU64,
    suppressed: AtomicU64,
}

static START: LazyLock<Instant> = LazyLock::new(Instant::now);
static WARNINGS: WarningLimiter = WarningLimiter {
    last_ms: AtomicU64::new(0),
    suppressed: AtomicU64::new(0),
};

impl WarningLimiter {
    const INTERVAL_MS: u64 = 5_000;

    /// `Some(suppressed since the last warning)` when a warning may be logged now.
    fn due(&self) -> Option<u64> {
        let now = START.elapsed().as_millis() as u64 + 1;
        let last = self.last_ms.load(Relaxed);
        if last != 0 && now.saturating_sub(last) < Self::INTERVAL_MS {
            self.suppressed.fetch_add(1, Relaxed);
            return None;
        }
        if self
            .last_ms
            .compare_exchange(last, now, Relaxed, Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Relaxed))
    }
}

/// Looks up every distinct entity of the batch in one call and builds each event's answer.
/// The stream waits at most `deadline`: an event whose entities were all answered by then
/// is enriched (`ok`); one that still misses an answer, because the look-up failed or is
/// late, is scored without graph features (`unavailable`).
pub async fn enrich_batch(
    enricher: Option<&dyn GraphEnricher>,
    deadline: Duration,
    events: &[Event],
) -> Vec<EventGraph> {
    let Some(enricher) = enricher else {
        return vec![EventGraph::without(GraphStatus::Skipped); events.len()];
    };
    let mut index: AHashMap<&str, usize> = AHashMap::with_capacity(events.len() * 4);
    let mut ids: Vec<&str> = Vec::with_capacity(events.len() * 4);
    for event in events {
        for id in entities(event) {
            index.entry(id).or_insert_with(|| {
                ids.push(id);
                ids.len() - 1
            });
        }
    }
    let until = tokio::time::Instant::now() + deadline;
    let partial = enricher.lookup_until(&ids, until).await;
    let missing = partial.missing();
    if missing > 0 {
        if let Some(suppressed) = WARNINGS.due() {
            match &partial.error {
                Some(err) => tracing::warn!(
                    backend = enricher.backend(),
                    error = %err,
                    unanswered = missing,
                    asked = ids.len(),
                    similar_warnings_suppressed = suppressed,
                    "graph look-up failed; events with unanswered entities scored without graph features"
                ),
                None => tracing::warn!(
                    backend = enricher.backend(),
                    deadline_ms = deadline.as_millis() as u64,
                    unanswered = missing,
                    asked = ids.len(),
                    similar_warnings_suppressed = suppressed,
                    "graph look-up missed its deadline; events with unanswered entities scored without graph features"
                ),
            }
        }
    }
    let answers = partial.answers;
    events
        .iter()
        .map(|event| {
            let mut graph = EventGraph::without(GraphStatus::Ok);
            for id in entities(event) {
                let Some(answer) = answers.get(index[id]).and_then(Option::as_ref) else {
                    return EventGraph::without(GraphStatus::Unavailable);
                };
                graph.known |= answer.known;
                graph.flagged_nearby = graph.flagged_nearby.max(answer.flagged_within);
                let closer = match (&graph.nearest, answer.hops) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(best), Some(h)) => best.hops.is_none_or(|b| h < b),
                };
                if closer {
                    graph.nearest = Some(answer.clone());
                }
            }
            // Every entity is answered by now, the device and the IP included.
            let neighbours = |id: Option<&str>| {
                id.and_then(|id| answers[index[id]].as_ref())
                    .map_or(0, |a| a.neighbours)
            };
            graph.device_neighbours = neighbours(event.device_id.as_deref());
            graph.ip_neighbours = neighbours(event.ip.as_deref());
            graph
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use riskstream_graph::{EntityKind, GraphError, GraphRecord, MemoryGraph, Partial, Relation};

    fn event(account: &str, device: Option<&str>) -> Event {
        Event {
            device_id: device.map(Into::into),
            ..Event::bare("e", 0, account, 1.0)
        }
    }

    fn graph() -> MemoryGraph {
        let node = |id: &str, kind, flagged| GraphRecord::Node {
            id: id.into(),
            kind,
            flagged,
        };
        let edge = |src: &str, dst: &str| GraphRecord::Edge {
            src: src.into(),
            dst: dst.into(),
            rel: Relation::Uses,
        };
        MemoryGraph::from_records(
            [
                node("A-1", EntityKind::Account, false),
                node("A-9", EntityKind::Account, true),
                node("D-1", EntityKind::Device, false),
                edge("A-1", "D-1"),
                edge("A-9", "D-1"),
            ],
            3,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn event_takes_the_nearest_answer_over_its_entities() {
        let g = graph();
        let events = [event("A-1", Some("D-1")), event("A-2", None)];
        let out = enrich_batch(Some(&g), Duration::from_secs(1), &events).await;
        assert_eq!(out[0].status, GraphStatus::Ok);
        assert_eq!(out[0].hops(), Some(1), "the device is one hop from A-9");
        assert!(out[0].known);
        assert_eq!(out[0].flagged_nearby, 1);
        assert_eq!(out[1].hops(), None);
        assert!(!out[1].known);
    }

    #[tokio::test]
    async fn device_and_ip_neighbour_counts_come_from_their_own_answers() {
        let g = graph();
        let mut shared = event("A-1", Some("D-1"));
        shared.ip = Some("A-9".into()); // any id: the count follows the field, not the kind
        let events = [shared, event("A-1", Some("D-unknown")), event("A-1", None)];
        let out = enrich_batch(Some(&g), Duration::from_secs(1), &events).await;
        let counts: Vec<(u32, u32)> = out
            .iter()
            .map(|g| (g.device_neighbours, g.ip_neighbours))
            .collect();
        assert_eq!(counts, [(2, 1), (0, 0), (0, 0)]);
    }

    /// Answers some ids at once and never answers the others, like a cache whose misses
    /// are still with the backend at the deadline.
    struct HalfAnswered {
        graph: MemoryGraph,
        late: &'static str,
    }

    #[async_trait::async_trait]
    impl GraphEnricher for HalfAnswered {
        async fn lookup(&self, ids: &[&str]) -> Result<Vec<Arc<GraphAnswer>>, GraphError> {
            self.graph.lookup(ids).await
        }

        async fn lookup_until(&self, ids: &[&str], _: tokio::time::Instant) -> Partial {
            let answers = ids
                .iter()
                .map(|id| (*id != self.late).then(|| self.graph.lookup_one(id)))
                .collect();
            Partial {
                answers,
                error: None,
            }
        }

        fn backend(&self) -> &'static str {
            "half"
        }
    }

    #[tokio::test]
    async fn only_events_with_an_unanswered_entity_go_without_graph_features() {
        let g = HalfAnswered {
            graph: graph(),
            late: "D-1",
        };
        let events = [event("A-1", Some("D-1")), event("A-9", None)];
        let out = enrich_batch(Some(&g), Duration::from_millis(1), &events).await;
        assert_eq!(out[0].status, GraphStatus::Unavailable);
        assert_eq!(out[0].hops(), None, "no partial graph features");
        assert_eq!(out[1].status, GraphStatus::Ok);
        assert_eq!(out[1].hops(), Some(0));
    }

    #[tokio::test]
    async fn no_graph_means_skipped() {
        let out = enrich_batch(None, Duration::from_secs(1), &[event("A-1", None)]).await;
        assert_eq!(out[0].status, GraphStatus::Skipped);
    }
}
