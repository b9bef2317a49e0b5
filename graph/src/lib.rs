//! Graph enrichment for riskstream: how close is an entity to known fraud?
//!
//! Entities (accounts, devices, IPs, merchants) are nodes of an entity graph; shared use,
//! payments and ownership are edges; some nodes are *flagged* (known fraud). For every
//! entity of an event the stream asks a [`GraphEnricher`] for a [`GraphAnswer`]: the shortest
//! path to a flagged node within `max_hops` edges, how many flagged nodes lie that close and
//! how many entities it is directly linked to.
//!
//! Two backends answer the same question and must give identical answers: the in-memory
//! [`MemoryGraph`] (embedded default) and Neo4j (production). Both load the same graph file,
//! so the semantics below are the contract between them.
//!
//! # Graph file
//!
//! One JSON object per line, nodes and edges, as written by `riskstream gen` and read by
//! [`MemoryGraph::load`] and by `riskstream graph load`:
//!
//! ```text
//! {"type":"node","id":"A-1042","kind":"account","flagged":false}
//! {"type":"node","id":"D-311","kind":"device","flagged":false}
//! {"type":"edge","src":"A-1042","dst":"D-311","rel":"uses"}
//! ```
//!
//! * `kind` is one of `account`, `device`, `ip`, `merchant`; `rel` is one of `uses`,
//!   `transfers`, `owns`; `flagged` is optional and defaults to `false`.
//! * Node ids are unique across all kinds in one file (the generator prefixes them: `A-`
//!   accounts, `D-` devices, `M-` merchants; IPs are dotted quads). A node id repeated with
//!   the same kind is one node, flagged if any of its lines flags it; repeated with a
//!   different kind it is an error.
//! * Every edge must name nodes defined somewhere in the file (before or after the edge).
//! * Blank lines are ignored; line numbers in errors count them, as an editor does.
//!
//! # Path semantics
//!
//! Edges are undirected; their `rel` does not matter for paths. Duplicate edges and
//! self-loops change no distance and no answer (the in-memory graph drops them).
//!
//! * **distance** between two nodes is the fewest edges on a path joining them.
//! * **hops** is the distance from the entity to the nearest flagged node, if that is at most
//!   `max_hops`; `Some(0)` when the entity is itself flagged; `None` otherwise.
//! * **path** lists node ids from the entity to that flagged node, both included
//!   (`hops + 1` ids); empty when `hops` is `None`. When several shortest paths exist (to the
//!   same or to different flagged nodes) the path is the **lexicographically smallest
//!   sequence of node ids**, compared element by element starting at the entity, with ids
//!   compared as byte strings (Rust `str` order; for ASCII ids, the only ids the generator
//!   writes, this is also code-point and UTF-16 order).
//! * **flagged_within** counts distinct flagged nodes at distance `0..=max_hops`, the entity
//!   itself included when flagged. Each flagged node counts once however many paths lead to it.
//! * **neighbours** counts the distinct other nodes joined to the entity by an edge (its
//!   degree with duplicate edges and self-loops left out), whatever `max_hops` is. Many
//!   accounts behind one device is how a ring with no flagged member still shows in the
//!   graph.
//!
//! Because every shortest path has the same length and all start with the entity, the
//! smallest sequence is found greedily: from a node at distance `d` (`d >= 1`) the next node
//! is the smallest-id neighbour at distance `d - 1`, and so on down to `0`. A Neo4j backend
//! reproduces this by computing, per entity, the distance `d` to the nearest flagged node
//! (`shortestPath` over `-[*..max_hops]-` to any flagged node), then choosing among the
//! length-`d` paths (`allShortestPaths` to flagged nodes at that distance) the one whose
//! list of ids is smallest (`ORDER BY [n IN nodes(p) | n.id]`, which Cypher compares element
//! by element).
//!
//! # Example
//!
//! ```
//! use riskstream_graph::{EntityKind, GraphRecord, MemoryGraph, Relation};
//!
//! let node = |id: &str, flagged| GraphRecord::Node { id: id.into(), kind: EntityKind::Account, flagged };
//! let edge = |src: &str, dst: &str| GraphRecord::Edge { src: src.into(), dst: dst.into(), rel: Relation::Transfers };
//! let graph = MemoryGraph::from_records(
//!     [node("A-1", false), node("A-2", false), node("A-3", true), edge("A-1", "A-2"), edge("A-2", "A-3")],
//!     3,
//! )?;
//! let answer = graph.lookup_one("A-1");
//! assert_eq!(answer.hops, Some(2));
//! assert_eq!(answer.path.iter().map(|id| &**id).collect::<Vec<_>>(), ["A-1", "A-2", "A-3"]);
//! assert_eq!(answer.flagged_within, 1);
//! assert_eq!(answer.neighbours, 1);
//! # Ok::<(), riskstream_graph::GraphError>(())
//! ```

mod breaker;
mod cache;
mod error;
pub mod file;
pub mod load;
mod memory;
mod neo4j;
mod warm;

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;

pub use breaker::BreakerOptions;
pub use cache::{CacheOptions, CacheStats, CachedGraph};
pub use error::GraphError;
pub use file::{EntityKind, GraphFileReader, GraphRecord, NumberedRecord, Relation};
pub use memory::MemoryGraph;
pub use neo4j::{GraphListing, Neo4jGraph, Neo4jOptions};
pub use warm::{CacheWarmer, WarmUp, WARM_UP_LIMIT};

/// Answers graph questions for batches of entity ids; implemented by every backend so the
/// stream (and the enrichment cache in front of it) does not care which one is configured.
#[async_trait]
pub trait GraphEnricher: Send + Sync {
    /// One answer per id, same order as `ids`. Ids not in the graph get an answer with
    /// `known == false`.
    async fn lookup(&self, ids: &[&str]) -> Result<Vec<Arc<GraphAnswer>>, GraphError>;

    /// The answers available by `deadline`: the stream never waits longer, and an event is
    /// enriched when the answers for all of its entities came in time. This default waits for
    /// [`lookup`](Self::lookup) as a whole, so any failure or lateness leaves every id
    /// unanswered; a backend that can answer some ids sooner than others (the cache) says so
    /// per id.
    async fn lookup_until(&self, ids: &[&str], deadline: tokio::time::Instant) -> Partial {
        match tokio::time::timeout_at(deadline, self.lookup(ids)).await {
            Ok(Ok(answers)) if answers.len() == ids.len() => Partial {
                answers: answers.into_iter().map(Some).collect(),
                error: None,
            },
            Ok(Ok(answers)) => Partial::none(
                ids.len(),
                Some(GraphError::Backend {
                    backend: self.backend(),
                    source: format!(
                        "asked about {} ids, got {} answers",
                        ids.len(),
                        answers.len()
                    )
                    .into(),
                }),
            ),
            Ok(Err(err)) => Partial::none(ids.len(), Some(err)),
            Err(_) => Partial::none(ids.len(), None),
        }
    }

    /// Short backend name for logs and metrics ("memory", "neo4j").
    fn backend(&self) -> &'static str;

    /// Whether the backend is holding queries back because it keeps failing (Neo4j's
    /// circuit breaker is open): events are then scored without graph features.
    fn is_failing(&self) -> bool {
        false
    }
}

/// What a look-up bounded by a deadline could answer.
#[derive(Debug)]
pub struct Partial {
    /// One entry per id asked about, in order; `None` where no answer came in time or the
    /// look-up for that id failed.
    pub answers: Vec<Option<Arc<GraphAnswer>>>,
    /// The first failure behind a missing answer; `None` with answers missing means the
    /// deadline passed first.
    pub error: Option<GraphError>,
}

impl Partial {
    /// Nothing answered, for `n` ids.
    pub fn none(n: usize, error: Option<GraphError>) -> Partial {
        Partial {
            answers: vec![None; n],
            error,
        }
    }

    /// Ids left unanswered.
    pub fn missing(&self) -> usize {
        self.answers.iter().filter(|a| a.is_none()).count()
    }
}

/// What the graph says about one entity; see the crate docs for the exact semantics every
/// backend must follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphAnswer {
    /// The entity exists in the graph.
    pub known: bool,
    /// Edges on the shortest path to a flagged node; `None` if none within `max_hops`,
    /// `Some(0)` if the entity itself is flagged.
    pub hops: Option<u32>,
    /// Entity ids from the entity to the flagged node, both included; empty when `hops` is
    /// `None`.
    pub path: Vec<Arc<str>>,
    /// Distinct flagged nodes at distance `0..=max_hops` (the entity itself counts if flagged).
    pub flagged_within: u32,
    /// Distinct entities joined to this one by an edge, the entity itself excluded: for a
    /// device or an IP address, the accounts that used it. 0 when the entity is unknown.
    pub neighbours: u32,
}

/// The one answer for every id the graph does not know, shared so a miss allocates nothing.
static UNKNOWN: LazyLock<Arc<GraphAnswer>> = LazyLock::new(|| {
    Arc::new(GraphAnswer {
        known: false,
        hops: None,
        path: Vec::new(),
        flagged_within: 0,
        neighbours: 0,
    })
});

/// Answers of known entities with nothing flagged within `max_hops`, one shared answer per
/// neighbour count: such answers differ in nothing else, so a graph of any size needs only
/// as many of them as it has distinct degrees.
#[derive(Debug, Default)]
pub(crate) struct NothingNear(ahash::AHashMap<u32, Arc<GraphAnswer>>);

impl NothingNear {
    /// The answer for a known entity with `neighbours` neighbours and nothing flagged near.
    pub(crate) fn answer(&mut self, neighbours: u32) -> Arc<GraphAnswer> {
        let answer = self.0.entry(neighbours).or_insert_with(|| {
            Arc::new(GraphAnswer {
                known: true,
                hops: None,
                path: Vec::new(),
                flagged_within: 0,
                neighbours,
            })
        });
        Arc::clone(answer)
    }
}

impl GraphAnswer {
    /// The shared answer for an id that is not in the graph (`known == false`, nothing near).
    /// Cloning it only bumps a reference count.
    pub fn unknown() -> Arc<GraphAnswer> {
        Arc::clone(&UNKNOWN)
    }
}
