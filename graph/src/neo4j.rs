//! The production backend: a Neo4j server reached over Bolt with `neo4rs`.
//!
//! # Data model
//!
//! Every node of the graph file is a `(:Entity {id, kind, flagged})` node with one more label
//! for its kind (`:Account`, `:Device`, `:Ip`, `:Merchant`) and the label `:Flagged` when it
//! is known fraud; a uniqueness constraint on `Entity.id` gives the index every look-up
//! starts from. Edges are relationships `USES`, `TRANSFERS`, `OWNS` in the file's direction;
//! path search ignores direction and type, as the crate docs require. `riskstream graph
//! load` ([`crate::load`]) writes this model.
//!
//! # One query per micro-batch
//!
//! [`Neo4jGraph::lookup`] sends all ids of a batch as one list parameter (`UNWIND $ids`);
//! user data never becomes query text. The only value formatted into the query is
//! `max_hops`, a validated integer from the configuration, because Cypher does not accept
//! parameters as path-length bounds.
//!
//! For each id the query asks for `ALL SHORTEST` paths from the entity to every `:Flagged`
//! node within `max_hops` (one breadth-first search per entity, `StatefulShortestPath` in the
//! plan). That yields, per flagged node in reach, its distance and every shortest path to it,
//! so the distinct flagged nodes counted are `flagged_within`, the smallest length is `hops`
//! and the paths of that length are the candidates of the tie-break. The tie-break itself
//! (smallest id sequence as byte strings) is applied here in Rust, because Cypher compares
//! strings by UTF-16 code units, which differs from byte order for some non-ASCII ids.
//!
//! # Listing the whole graph
//!
//! [`Neo4jGraph::answers_for_all`] computes every entity's answer at once for warming a
//! cache. Searching from each entity would cost one breadth-first search per entity; the
//! same paths are found from the other end, `ALL SHORTEST` from each `:Flagged` node to
//! every entity within `max_hops`, because flagged nodes are few (about one in a thousand
//! in generated graphs). Every other entity, from a list of ids with their neighbour
//! counts, has nothing flagged near. On the generated 82 000-node graph that is about 30
//! times the answers per second of the per-entity query.
//!
//! # Failure handling
//!
//! Each query runs on its own task under `graph.query_timeout`, so a caller that gives up at
//! its batch deadline does not cut a Bolt exchange in half, and the outcome always reaches
//! the [circuit breaker](crate::breaker). The driver retries an unreachable server for about
//! a minute; the timeout is what turns that into a prompt failure. At most `pool_size`
//! queries are in flight; a batch that finds them all busy is refused at once rather than
//! queued behind a slow server.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use neo4rs::{query, ConfigBuilder, Graph};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::breaker::{Admission, Breaker, BreakerOptions};
use crate::{GraphAnswer, GraphEnricher, GraphError, NothingNear};

const BACKEND: &str = "neo4j";

/// How to reach Neo4j and how long to wait for it; built from `[graph]` in the
/// configuration.
#[derive(Clone)]
pub struct Neo4jOptions {
    /// Bolt URI, such as `bolt://127.0.0.1:7687`.
    pub uri: String,
    pub user: String,
    pub password: String,
    /// Longest path searched from an entity to a flagged entity.
    pub max_hops: u32,
    /// Connections kept open, and the most queries in flight at once.
    pub pool_size: usize,
    /// Longest time one query (including getting a connection) may take.
    pub query_timeout: Duration,
    /// When to stop querying a failing server and how long to wait before probing it.
    pub breaker: BreakerOptions,
}

impl std::fmt::Debug for Neo4jOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Neo4jOptions")
            .field("uri", &Server::new(self).uri)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("max_hops", &self.max_hops)
            .field("pool_size", &self.pool_size)
            .field("query_timeout", &self.query_timeout)
            .field("breaker", &self.breaker)
            .finish()
    }
}

/// Opens a connection pool; no connection is made until the first query.
pub(crate) fn connect_pool(options: &Neo4jOptions) -> Result<Graph, GraphError> {
    let config = ConfigBuilder::default()
        .uri(options.uri.as_str())
        .user(options.user.as_str())
        .password(options.password.as_str())
        .max_connections(options.pool_size.max(1))
        // Bounds connecting and every read, so a server that stops answering mid-query
        // fails the query instead of hanging a pooled connection.
        .connection_timeout(options.query_timeout)
        // The driver uses this as the longest wait for a free pooled connection.
        .max_lifetime(options.query_timeout)
        .fetch_size(FETCH_SIZE)
        .build()
        .map_err(|e| Server::new(options).error(e))?;
    Graph::connect(config).map_err(|e| Server::new(options).error(e))
}

/// The server as errors and logs name it: the URI without the password of its user
/// information, and the configured secrets (the password, and the one in the URI) that a
/// driver message must never carry, whatever it quotes.
#[derive(Clone)]
pub(crate) struct Server {
    uri: String,
    secrets: Vec<String>,
}

/// What a secret is shown as.
const REDACTED: &str = "***";

impl Server {
    pub(crate) fn new(options: &Neo4jOptions) -> Server {
        let mut secrets = vec![options.password.clone()];
        let uri = match uri_password(&options.uri) {
            Some((start, end)) => {
                secrets.push(options.uri[start..end].to_owned());
                format!("{}{REDACTED}{}", &options.uri[..start], &options.uri[end..])
            }
            None => options.uri.clone(),
        };
        secrets.retain(|secret| !secret.is_empty());
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
        Server { uri, secrets }
    }

    /// A driver error with the server it came from, scrubbed of the secrets.
    pub(crate) fn error(&self, err: impl std::fmt::Display) -> GraphError {
        GraphError::Backend {
            backend: BACKEND,
            source: self.scrub(&format!("{}: {err}", self.uri)).into(),
        }
    }

    /// A reply that does not read as the query's rows.
    pub(crate) fn unexpected(&self, err: impl std::fmt::Display) -> GraphError {
        self.error(format_args!("unexpected reply: {err}"))
    }

    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
    }
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.uri)
    }
}

/// The byte range of the password in `scheme://user:password@host...`, if there is one.
fn uri_password(uri: &str) -> Option<(usize, usize)> {
    let authority_start = uri.find("://")? + 3;
    let rest = &uri[authority_start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    (colon + 1 < at).then_some((authority_start + colon + 1, authority_start + at))
}

/// The look-up query for paths of at most `max_hops` edges.
fn lookup_query(max_hops: u32) -> String {
    format!(
        "UNWIND $ids AS id \
         OPTIONAL MATCH (e:Entity {{id: id}}) \
         OPTIONAL MATCH p = ALL SHORTEST (e)-[]-{{0,{max_hops}}}(f:Flagged) \
         WITH id, e, f, length(p) AS len, [n IN nodes(p) | n.id] AS path \
         WITH id, e, count(DISTINCT f) AS flagged, min(len) AS hops, \
              collect(CASE WHEN len IS NOT NULL THEN {{len: len, path: path}} END) AS candidates \
         RETURN id, e IS NOT NULL AS known, flagged, hops, \
                [c IN candidates WHERE c.len = hops | c.path] AS paths, \
                CASE WHEN e IS NULL THEN 0 ELSE {NEIGHBOURS_OF_E} END AS neighbours"
    )
}

/// The number of distinct other entities linked to `e`: the relationships of a pair of
/// nodes may be several (both directions, several types), and each neighbour counts once.
const NEIGHBOURS_OF_E: &str = "COUNT { MATCH (e)--(n) WHERE n <> e RETURN DISTINCT n }";

/// Every shortest path of at most `max_hops` edges between a flagged node and an entity in
/// its reach, listed from the entity to the flagged node. Shortest paths are chosen per pair
/// of end nodes, so each entity gets, for each flagged node near it, its distance and every
/// path of that length: what the per-entity query finds, found from the few flagged nodes
/// outwards instead of from every entity.
fn near_flagged_query(max_hops: u32) -> String {
    format!(
        "MATCH (f:Flagged) \
         MATCH p = ALL SHORTEST (f)-[]-{{0,{max_hops}}}(e:Entity) \
         RETURN e.id AS id, f.id AS flagged, [n IN reverse(nodes(p)) | n.id] AS path, \
                {NEIGHBOURS_OF_E} AS neighbours"
    )
}

/// Every entity id with its neighbour count, for the answer of entities with no flagged
/// node near.
fn all_ids_query() -> String {
    format!("MATCH (e:Entity) RETURN e.id AS id, {NEIGHBOURS_OF_E} AS neighbours")
}

/// Rows fetched per round trip: a look-up answers a whole micro-batch of ids (a few
/// thousand) and a warm-up lists the whole graph, so the driver's default of a few hundred
/// rows would mostly add round trips.
const FETCH_SIZE: usize = 5_000;

/// The answers for the entities of a graph, as listed by [`Neo4jGraph::answers_for_all`].
#[derive(Debug)]
pub struct GraphListing {
    /// Entity ids with their answers, those with a flagged node near first.
    pub answers: Vec<(Arc<str>, Arc<GraphAnswer>)>,
    /// Every entity of the graph is listed (no limit cut the list short), so an id that
    /// is not listed was not in the graph when it was listed.
    pub complete: bool,
}

/// One row of the near-flagged query.
#[derive(Debug, Deserialize)]
struct NearRow {
    id: String,
    flagged: String,
    path: Vec<String>,
    neighbours: i64,
}

/// One row of the list of all entities.
#[derive(Debug, Deserialize)]
struct FarRow {
    id: String,
    neighbours: i64,
}

/// What the near-flagged rows say about one entity so far.
#[derive(Debug, Default)]
struct Near {
    flagged: std::collections::HashSet<String>,
    /// The smallest of the shortest paths seen, as in the crate contract.
    best: Vec<String>,
    neighbours: i64,
}

impl Near {
    fn add(&mut self, row: NearRow) {
        self.flagged.insert(row.flagged);
        self.neighbours = row.neighbours;
        let shorter = self.best.is_empty() || row.path.len() < self.best.len();
        if shorter || (row.path.len() == self.best.len() && row.path < self.best) {
            self.best = row.path;
        }
    }

    fn into_answer(self, id: &str) -> Result<Arc<GraphAnswer>, GraphError> {
        if self.best.first().map(String::as_str) != Some(id) {
            return Err(bad_reply(id));
        }
        Ok(Arc::new(GraphAnswer {
            known: true,
            hops: Some(self.best.len() as u32 - 1),
            path: self.best.into_iter().map(Arc::from).collect(),
            flagged_within: self.flagged.len() as u32,
            neighbours: count(self.neighbours, id)?,
        }))
    }
}

/// One row of the look-up query.
#[derive(Debug, Deserialize)]
struct LookupRow {
    id: String,
    known: bool,
    flagged: i64,
    hops: Option<i64>,
    paths: Vec<Vec<String>>,
    neighbours: i64,
}

impl LookupRow {
    /// The answer of the crate contract: among the shortest candidate paths, the smallest
    /// sequence of ids compared as byte strings (`Vec<String>` orders exactly so).
    fn into_answer(self) -> Result<Arc<GraphAnswer>, GraphError> {
        if !self.known {
            return Ok(GraphAnswer::unknown());
        }
        let flagged_within = count(self.flagged, &self.id)?;
        let path = self.paths.into_iter().min().unwrap_or_default();
        let hops = match self.hops {
            None if path.is_empty() => None,
            Some(h) if usize::try_from(h).is_ok_and(|h| h + 1 == path.len()) => Some(h as u32),
            _ => return Err(bad_reply(&self.id)),
        };
        Ok(Arc::new(GraphAnswer {
            known: true,
            hops,
            path: path.into_iter().map(Arc::from).collect(),
            flagged_within,
            neighbours: count(self.neighbours, &self.id)?,
        }))
    }
}

/// A count in a reply, which must fit the answer's `u32`.
fn count(value: i64, id: &str) -> Result<u32, GraphError> {
    u32::try_from(value).map_err(|_| bad_reply(id))
}

fn bad_reply(id: &str) -> GraphError {
    GraphError::Backend {
        backend: BACKEND,
        source: format!("inconsistent answer for entity {id:?}").into(),
    }
}

/// State shared by the enricher and its query tasks.
struct Shared {
    graph: Graph,
    server: Server,
    query: String,
    near_flagged_query: String,
    query_timeout: Duration,
    breaker: Breaker,
    permits: Arc<Semaphore>,
    pool_size: usize,
}

/// The Neo4j enricher: one parameterised query per batch, each bounded by the query
/// timeout and guarded by a circuit breaker. Cheap to clone.
#[derive(Clone)]
pub struct Neo4jGraph {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Neo4jGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Neo4jGraph")
            .field("uri", &self.shared.server.uri)
            .finish_non_exhaustive()
    }
}

impl Neo4jGraph {
    /// Prepares the connection pool. Nothing is sent to the server yet: a job may start
    /// while Neo4j is down and enrich as soon as it is up.
    pub fn connect(options: &Neo4jOptions) -> Result<Self, GraphError> {
        let graph = connect_pool(options)?;
        Ok(Neo4jGraph {
            shared: Arc::new(Shared {
                graph,
                server: Server::new(options),
                query: lookup_query(options.max_hops),
                near_flagged_query: near_flagged_query(options.max_hops),
                query_timeout: options.query_timeout,
                breaker: Breaker::new(options.breaker),
                permits: Arc::new(Semaphore::new(options.pool_size.max(1))),
                pool_size: options.pool_size.max(1),
            }),
        })
    }

    /// Sends a trivial query and waits for it at most the query timeout; for start-up
    /// messages and tools that must fail early when the server is unreachable.
    pub async fn ping(&self) -> Result<(), GraphError> {
        let shared = &self.shared;
        let run = async {
            let mut rows = shared
                .graph
                .execute(query("RETURN 1 AS one"))
                .await
                .map_err(|e| shared.server.error(e))?;
            while rows
                .next()
                .await
                .map_err(|e| shared.server.error(e))?
                .is_some()
            {}
            Ok(())
        };
        tokio::time::timeout(shared.query_timeout, run)
            .await
            .unwrap_or(Err(GraphError::Timeout {
                backend: BACKEND,
                after: shared.query_timeout,
            }))
    }

    /// How often the circuit breaker has opened since the enricher was created.
    pub fn breaker_opened(&self) -> u64 {
        self.shared.breaker.times_opened()
    }

    /// Whether the circuit breaker currently holds queries back.
    pub fn breaker_is_open(&self) -> bool {
        self.shared.breaker.is_open()
    }

    /// The answers for every entity of the graph, at most `limit` of them, from two queries
    /// instead of one path search per entity: the paths from each flagged node to the
    /// entities within `max_hops` (few, as flagged nodes are few), then the list of all
    /// entity ids, whose other members have nothing flagged near. The entities near flagged
    /// nodes come first, since theirs are the answers that change scores. The answers are
    /// those [`lookup`](GraphEnricher::lookup) gives, tie-break included. Meant for warming
    /// a cache; not bounded by the query timeout, so the caller bounds it.
    pub async fn answers_for_all(&self, limit: usize) -> Result<GraphListing, GraphError> {
        let shared = &self.shared;
        let failed = |e: neo4rs::Error| shared.server.error(e);
        let unexpected = |e: neo4rs::DeError| shared.server.unexpected(e);
        let mut near: HashMap<String, Near> = HashMap::new();
        {
            // Scoped: the stream holds its pooled connection until it is dropped.
            let mut rows = shared
                .graph
                .execute_read(query(&shared.near_flagged_query))
                .await
                .map_err(failed)?;
            while let Some(row) = rows.next().await.map_err(failed)? {
                let row: NearRow = row.to().map_err(unexpected)?;
                near.entry(row.id.clone()).or_default().add(row);
            }
        }
        let mut answers: Vec<(Arc<str>, Arc<GraphAnswer>)> = Vec::with_capacity(near.len());
        for (id, found) in near {
            let answer = found.into_answer(&id)?;
            answers.push((Arc::from(id), answer));
        }
        // Deterministic order, so that a capacity cut keeps the same entities every time.
        answers.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut complete = answers.len() <= limit;
        answers.truncate(limit);
        let near_ids: std::collections::HashSet<Arc<str>> =
            answers.iter().map(|(id, _)| Arc::clone(id)).collect();
        let mut far = NothingNear::default();
        let mut rows = shared
            .graph
            .execute_read(query(&all_ids_query()))
            .await
            .map_err(failed)?;
        while let Some(row) = rows.next().await.map_err(failed)? {
            if answers.len() >= limit {
                complete = false;
                break;
            }
            let row: FarRow = row.to().map_err(unexpected)?;
            let id: Arc<str> = Arc::from(row.id);
            if !near_ids.contains(&id) {
                let answer = far.answer(count(row.neighbours, &id)?);
                answers.push((id, answer));
            }
        }
        Ok(GraphListing { answers, complete })
    }

    async fn query_batch(shared: &Shared, ids: Vec<String>) -> Result<Vec<LookupRow>, GraphError> {
        let q = query(&shared.query).param("ids", ids);
        let mut stream = shared
            .graph
            .execute_read(q)
            .await
            .map_err(|e| shared.server.error(e))?;
        let mut rows = Vec::new();
        while let Some(row) = stream.next().await.map_err(|e| shared.server.error(e))? {
            let row: LookupRow = row.to().map_err(|e| shared.server.unexpected(e))?;
            rows.push(row);
        }
        Ok(rows)
    }
}

#[async_trait]
impl GraphEnricher for Neo4jGraph {
    async fn lookup(&self, ids: &[&str]) -> Result<Vec<Arc<GraphAnswer>>, GraphError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let shared = Arc::clone(&self.shared);
        let permit = Arc::clone(&shared.permits)
            .try_acquire_owned()
            .map_err(|_| GraphError::Busy {
                backend: BACKEND,
                limit: shared.pool_size,
            })?;
        let admission = shared.breaker.admit();
        if admission == Admission::Refused {
            return Err(GraphError::CircuitOpen { backend: BACKEND });
        }
        let mut distinct: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let task = tokio::spawn(async move {
            let outcome =
                tokio::time::timeout(shared.query_timeout, Self::query_batch(&shared, distinct))
                    .await
                    .unwrap_or(Err(GraphError::Timeout {
                        backend: BACKEND,
                        after: shared.query_timeout,
                    }));
            shared.breaker.record(admission, outcome.is_ok());
            drop(permit);
            outcome
        });
        let rows = task.await.map_err(|e| GraphError::Backend {
            backend: BACKEND,
            source: Box::new(e),
        })??;
        let mut by_id: HashMap<String, Arc<GraphAnswer>> = HashMap::with_capacity(rows.len());
        for row in rows {
            let id = row.id.clone();
            by_id.insert(id, row.into_answer()?);
        }
        ids.iter()
            .map(|id| by_id.get(*id).cloned().ok_or_else(|| bad_reply(id)))
            .collect()
    }

    fn is_failing(&self) -> bool {
        self.breaker_is_open()
    }

    fn backend(&self) -> &'static str {
        BACKEND
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(uri: &str, password: &str) -> Neo4jOptions {
        Neo4jOptions {
            uri: uri.into(),
            user: "neo4j".into(),
            password: password.into(),
            max_hops: 3,
            pool_size: 1,
            query_timeout: Duration::from_secs(1),
            breaker: BreakerOptions::default(),
        }
    }

    #[test]
    fn driver_errors_name_the_server_without_its_password_and_never_quote_a_secret() {
        let options = options("bolt://neo4j:uri-S3cr3t@db.example:7687", "pw-S3cr3t");
        let server = Server::new(&options);
        // A driver message that quotes both secrets, as a runtime error might.
        let err = server.error("authentication failed for pw-S3cr3t (uri-S3cr3t)");
        let text = err.to_string() + &format!("{:?}", std::error::Error::source(&err));
        assert!(!text.contains("S3cr3t"), "{text}");
        assert!(text.contains("bolt://neo4j:***@db.example:7687"), "{text}");
        assert!(text.contains("authentication failed"), "{text}");
        let unexpected = server.unexpected("missing column").to_string();
        assert!(!unexpected.contains("S3cr3t"), "{unexpected}");
        assert!(!format!("{options:?}").contains("S3cr3t"));
    }

    #[test]
    fn a_uri_without_a_password_is_named_as_it_is() {
        let server = Server::new(&options("bolt://127.0.0.1:7687", ""));
        assert_eq!(server.to_string(), "bolt://127.0.0.1:7687");
        assert!(server
            .error("refused")
            .to_string()
            .contains("bolt://127.0.0.1:7687"));
    }

    #[tokio::test]
    async fn a_failed_query_at_run_time_does_not_carry_the_uri_password() {
        // Nothing listens on port 1: the look-up fails when it runs, not at set-up.
        let options = options("bolt://neo4j:uri-S3cr3t@127.0.0.1:1", "pw-S3cr3t");
        let graph = Neo4jGraph::connect(&options).unwrap();
        let err = graph.ping().await.unwrap_err();
        let text = format!("{err} {:?}", std::error::Error::source(&err));
        assert!(text.contains("bolt://neo4j:***@127.0.0.1:1"), "{text}");
        assert!(!text.contains("S3cr3t"), "{text}");
    }

    fn row(known: bool, flagged: i64, hops: Option<i64>, paths: &[&[&str]]) -> LookupRow {
        LookupRow {
            id: "X".into(),
            known,
            flagged,
            hops,
            neighbours: 2,
            paths: paths
                .iter()
                .map(|p| p.iter().map(|s| (*s).to_owned()).collect())
                .collect(),
        }
    }

    #[test]
    fn tie_break_picks_the_smallest_id_sequence_in_byte_order() {
        let answer = row(
            true,
            3,
            Some(2),
            &[&["X", "b", "F"], &["X", "Z", "G"], &["X", "Z", "F"]],
        )
        .into_answer()
        .unwrap();
        let path: Vec<&str> = answer.path.iter().map(|s| &**s).collect();
        assert_eq!(path, ["X", "Z", "F"]);
        assert_eq!((answer.hops, answer.flagged_within), (Some(2), 3));
    }

    #[test]
    fn unknown_row_is_the_shared_unknown_answer() {
        let answer = row(false, 0, None, &[]).into_answer().unwrap();
        assert!(Arc::ptr_eq(&answer, &GraphAnswer::unknown()));
    }

    #[test]
    fn known_entity_with_nothing_near_has_no_path() {
        let answer = row(true, 0, None, &[]).into_answer().unwrap();
        assert!(answer.known);
        assert_eq!(answer.hops, None);
        assert!(answer.path.is_empty());
    }

    #[test]
    fn reply_whose_path_length_disagrees_with_hops_is_an_error() {
        assert!(row(true, 1, Some(2), &[&["X", "F"]]).into_answer().is_err());
        assert!(row(true, 1, None, &[&["X", "F"]]).into_answer().is_err());
    }

    #[test]
    fn reply_with_a_negative_count_is_an_error() {
        let mut bad = row(true, 0, None, &[]);
        bad.neighbours = -1;
        assert!(bad.into_answer().is_err());
        assert_eq!(row(true, 0, None, &[]).into_answer().unwrap().neighbours, 2);
    }

    #[test]
    fn max_hops_is_the_only_value_in_the_query_text() {
        let q = lookup_query(4);
        assert!(q.contains("{0,4}"), "{q}");
        assert!(q.contains("UNWIND $ids AS id"), "{q}");
    }
}
