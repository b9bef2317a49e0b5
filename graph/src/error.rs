//! The one error type of this crate, shared by every backend so that callers handle graph
//! failures the same way whichever backend answers.

use std::error::Error as StdError;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::file::EntityKind;

/// Why a graph could not be loaded or a look-up could not be answered.
///
/// Load errors name the file (or record source) and the 1-based line they are about, so a
/// user can open the file at that line and fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// The graph file could not be opened at all.
    #[error("cannot open graph file {}: {source}; check the path (graph.file) and its permissions", path.display())]
    Open { path: PathBuf, source: io::Error },

    /// A line could not be read (I/O failure or bytes that are not UTF-8).
    #[error("{origin}:{line}: cannot read line: {source}; graph files must be UTF-8 JSON lines")]
    Read {
        origin: String,
        line: usize,
        source: io::Error,
    },

    /// A line is not a JSON graph record.
    #[error(
        "{origin}:{line}: not a graph record: {source}; each line must be a JSON object such as \
         {{\"type\":\"node\",\"id\":\"A-1\",\"kind\":\"account\",\"flagged\":false}} or \
         {{\"type\":\"edge\",\"src\":\"A-1\",\"dst\":\"D-1\",\"rel\":\"uses\"}}"
    )]
    BadRecord {
        origin: String,
        line: usize,
        source: serde_json::Error,
    },

    /// A node or edge whose id is empty (or only whitespace): no event can name such an
    /// entity, and Neo4j would store it as a real node.
    #[error(
        "{origin}:{line}: the {field} of this {record} is empty; every node id and edge end \
         must name an entity (e.g. \"A-1\"): fix or remove the line"
    )]
    EmptyId {
        origin: String,
        line: usize,
        /// Which field is empty: `id`, `src` or `dst`.
        field: &'static str,
        /// `node` or `edge`.
        record: &'static str,
    },

    /// An edge names a node id that no node record defines.
    #[error(
        "{origin}:{line}: edge {src:?} -- {dst:?} names node {missing:?}, which no node line \
         defines; add a node line for it or remove the edge"
    )]
    UnknownNode {
        origin: String,
        line: usize,
        src: String,
        dst: String,
        missing: String,
    },

    /// The same node id is declared twice with different kinds.
    #[error(
        "{origin}:{line}: node {id:?} is declared as {kind} but line {first_line} declared it as \
         {first_kind}; node ids must be unique across all kinds"
    )]
    KindConflict {
        origin: String,
        line: usize,
        id: String,
        kind: EntityKind,
        first_line: usize,
        first_kind: EntityKind,
    },

    /// The graph has more nodes than the in-memory index can address.
    #[error("{origin}: {nodes} nodes is more than the in-memory graph supports ({max}); use the neo4j backend")]
    TooManyNodes {
        origin: String,
        nodes: usize,
        max: usize,
    },

    /// A backend failed to answer (connection refused, query error, bad reply).
    #[error("graph backend {backend} failed: {source}")]
    Backend {
        backend: &'static str,
        source: Box<dyn StdError + Send + Sync>,
    },

    /// A backend did not answer before the deadline.
    #[error("graph backend {backend} did not answer within {after:?}; events are scored without graph features meanwhile")]
    Timeout {
        backend: &'static str,
        after: Duration,
    },

    /// The backend failed repeatedly and its circuit breaker holds queries back until a
    /// probe succeeds.
    #[error("graph backend {backend} is failing; queries are paused (circuit breaker open) and resume by themselves once a probe query succeeds")]
    CircuitOpen { backend: &'static str },

    /// Every allowed query is already in flight; a new one would only queue behind a slow
    /// server.
    #[error("graph backend {backend} already has {limit} queries in flight (graph.pool_size); this batch is scored without graph features")]
    Busy { backend: &'static str, limit: usize },

    /// A look-up that several batches waited for failed; every one of them gets its error.
    #[error(transparent)]
    Shared(std::sync::Arc<GraphError>),
}
