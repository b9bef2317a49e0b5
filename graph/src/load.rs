//! Loading a graph file into Neo4j, for `riskstream graph load`.
//!
//! The file is read and checked completely first (the same checks and error messages as the
//! in-memory graph), so a bad line is reported before anything is written. Then, in order:
//!
//! 1. the uniqueness constraint on `Entity.id` (which is also the index every look-up and
//!    every `MERGE` below starts from), created if missing;
//! 2. with `--wipe`, every `:Entity` node and its relationships deleted, in batches so the
//!    transaction state stays small; nothing else in the database is touched;
//! 3. nodes, then relationships, in `UNWIND` batches of `MERGE`s: loading the same file twice
//!    creates nothing the second time.
//!
//! Ids, flags and kinds travel as query parameters. The labels and relationship types in
//! the query text come from the closed [`EntityKind`] and [`Relation`] enums, never from the
//! file, because Cypher does not accept labels as parameters.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use neo4rs::{query, Graph, Query};

use crate::file::{EntityKind, GraphFileReader, GraphRecord, NumberedRecord, Relation};
use crate::neo4j::{connect_pool, Server};
use crate::{GraphError, Neo4jOptions};

/// A node of the file after merging repeated declarations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileNode {
    pub id: String,
    pub kind: EntityKind,
    /// Flagged if any line declaring the node flags it.
    pub flagged: bool,
}

/// One distinct relationship of the file: repeated `(src, dst, rel)` lines are one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileEdge {
    pub src: String,
    pub dst: String,
    pub rel: Relation,
}

/// A whole graph file, checked: every edge names declared nodes, no node changes kind.
#[derive(Debug, Clone, Default)]
pub struct GraphFile {
    pub nodes: Vec<FileNode>,
    pub edges: Vec<FileEdge>,
}

impl GraphFile {
    /// Reads and checks a graph file; errors name the file and line.
    pub fn read(path: &Path) -> Result<Self, GraphError> {
        let reader = GraphFileReader::open(path)?;
        let origin = reader.origin().to_owned();
        Self::collect(reader, &origin)
    }

    /// Checks records already in memory; errors count records from 1.
    pub fn from_records(
        records: impl IntoIterator<Item = GraphRecord>,
    ) -> Result<Self, GraphError> {
        let numbered = records.into_iter().enumerate().map(|(i, record)| {
            Ok(NumberedRecord {
                line: i + 1,
                record,
            })
        });
        Self::collect(numbered, "graph records")
    }

    fn collect(
        records: impl Iterator<Item = Result<NumberedRecord, GraphError>>,
        origin: &str,
    ) -> Result<Self, GraphError> {
        let mut nodes: Vec<FileNode> = Vec::new();
        let mut lines: Vec<usize> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut edges: Vec<(usize, FileEdge)> = Vec::new();
        for record in records {
            let NumberedRecord { line, record } = record?;
            match record {
                GraphRecord::Node { id, kind, flagged } => match index.entry(id) {
                    Entry::Occupied(at) => {
                        let node = &mut nodes[*at.get()];
                        if node.kind != kind {
                            return Err(GraphError::KindConflict {
                                origin: origin.to_owned(),
                                line,
                                id: node.id.clone(),
                                kind,
                                first_line: lines[*at.get()],
                                first_kind: node.kind,
                            });
                        }
                        node.flagged |= flagged;
                    }
                    Entry::Vacant(slot) => {
                        nodes.push(FileNode {
                            id: slot.key().clone(),
                            kind,
                            flagged,
                        });
                        lines.push(line);
                        slot.insert(nodes.len() - 1);
                    }
                },
                GraphRecord::Edge { src, dst, rel } => {
                    edges.push((line, FileEdge { src, dst, rel }))
                }
            }
        }
        let mut seen: HashSet<FileEdge> = HashSet::with_capacity(edges.len());
        let mut distinct = Vec::with_capacity(edges.len());
        for (line, edge) in edges {
            for end in [&edge.src, &edge.dst] {
                if !index.contains_key(end) {
                    return Err(GraphError::UnknownNode {
                        origin: origin.to_owned(),
                        line,
                        src: edge.src.clone(),
                        dst: edge.dst.clone(),
                        missing: end.clone(),
                    });
                }
            }
            if seen.insert(edge.clone()) {
                distinct.push(edge);
            }
        }
        Ok(GraphFile {
            nodes,
            edges: distinct,
        })
    }
}

/// How `graph load` batches and bounds its writes.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// Nodes or relationships per `UNWIND` query.
    pub batch_size: usize,
    /// Delete every `:Entity` node first.
    pub wipe: bool,
    /// Longest time one batch may take before the load fails.
    pub batch_timeout: Duration,
}

impl Default for LoadOptions {
    /// 5 000 rows per batch keeps each transaction small and the round trips few; one
    /// minute per batch is generous for that on any healthy server.
    fn default() -> Self {
        LoadOptions {
            batch_size: 5_000,
            wipe: false,
            batch_timeout: Duration::from_secs(60),
        }
    }
}

/// How far a load has come, reported after every batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadProgress {
    pub nodes_done: usize,
    pub nodes_total: usize,
    pub relationships_done: usize,
    pub relationships_total: usize,
}

/// What a load did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadSummary {
    /// Distinct nodes in the file.
    pub nodes: usize,
    /// Distinct `(src, dst, rel)` relationships in the file.
    pub relationships: usize,
    /// Nodes that did not exist before.
    pub nodes_created: u64,
    /// Relationships that did not exist before.
    pub relationships_created: u64,
    /// `:Entity` nodes deleted by `--wipe`.
    pub nodes_deleted: u64,
    pub seconds: f64,
}

/// Writes graph files into Neo4j.
pub struct Neo4jLoader {
    graph: Graph,
    server: Server,
}

impl std::fmt::Debug for Neo4jLoader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Neo4jLoader")
            .field("uri", &self.server.to_string())
            .finish()
    }
}

/// The Cypher label of a kind; from a closed enum, never from input.
fn label(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Account => "Account",
        EntityKind::Device => "Device",
        EntityKind::Ip => "Ip",
        EntityKind::Merchant => "Merchant",
    }
}

/// The Cypher relationship type of a relation; from a closed enum, never from input.
fn rel_type(rel: Relation) -> &'static str {
    match rel {
        Relation::Uses => "USES",
        Relation::Transfers => "TRANSFERS",
        Relation::Owns => "OWNS",
    }
}

fn node_query(kind: EntityKind) -> String {
    format!(
        "UNWIND range(0, size($ids) - 1) AS i \
         WITH $ids[i] AS id, $flagged[i] AS flagged \
         OPTIONAL MATCH (old:Entity {{id: id}}) \
         WITH id, flagged, old IS NULL AS fresh \
         MERGE (n:Entity {{id: id}}) \
         SET n:{label}, n.kind = $kind, n.flagged = flagged \
         FOREACH (_ IN CASE WHEN flagged THEN [1] ELSE [] END | SET n:Flagged) \
         FOREACH (_ IN CASE WHEN flagged THEN [] ELSE [1] END | REMOVE n:Flagged) \
         RETURN count(CASE WHEN fresh THEN 1 END) AS created",
        label = label(kind)
    )
}

fn edge_query(rel: Relation) -> String {
    format!(
        "UNWIND range(0, size($src) - 1) AS i \
         MATCH (a:Entity {{id: $src[i]}}) \
         MATCH (b:Entity {{id: $dst[i]}}) \
         OPTIONAL MATCH (a)-[old:{ty}]->(b) \
         WITH a, b, count(old) AS existing \
         MERGE (a)-[:{ty}]->(b) \
         RETURN count(CASE WHEN existing = 0 THEN 1 END) AS created",
        ty = rel_type(rel)
    )
}

impl Neo4jLoader {
    /// Prepares a connection pool; the first batch connects.
    pub fn connect(options: &Neo4jOptions) -> Result<Self, GraphError> {
        Ok(Neo4jLoader {
            graph: connect_pool(options)?,
            server: Server::new(options),
        })
    }

    /// Sends a trivial query, waiting at most `timeout`: fails early, with the driver's
    /// reason, when the server is unreachable or refuses the login.
    pub async fn ping(&self, timeout: Duration) -> Result<(), GraphError> {
        self.count(query("RETURN 0 AS zero"), "zero", timeout)
            .await
            .map(|_| ())
    }

    /// Runs one query that returns one integer column `column` and returns it.
    async fn count(&self, q: Query, column: &str, timeout: Duration) -> Result<u64, GraphError> {
        let run = async {
            let mut rows = self
                .graph
                .execute(q)
                .await
                .map_err(|e| self.server.error(e))?;
            let mut total = 0u64;
            while let Some(row) = rows.next().await.map_err(|e| self.server.error(e))? {
                let n: i64 = row.get(column).map_err(|e| self.server.unexpected(e))?;
                total += n.max(0) as u64;
            }
            Ok(total)
        };
        tokio::time::timeout(timeout, run)
            .await
            .unwrap_or(Err(GraphError::Timeout {
                backend: "neo4j",
                after: timeout,
            }))
    }

    /// Loads `file`, calling `progress` after every batch.
    pub async fn load(
        &self,
        file: &GraphFile,
        options: &LoadOptions,
        mut progress: impl FnMut(&LoadProgress),
    ) -> Result<LoadSummary, GraphError> {
        let started = Instant::now();
        let timeout = options.batch_timeout;
        let batch = options.batch_size.max(1);
        let constraint = query(
            "CREATE CONSTRAINT entity_id IF NOT EXISTS FOR (n:Entity) REQUIRE n.id IS UNIQUE",
        );
        tokio::time::timeout(timeout, self.graph.run(constraint))
            .await
            .map_err(|_| GraphError::Timeout {
                backend: "neo4j",
                after: timeout,
            })?
            .map_err(|e| self.server.error(e))?;
        let mut summary = LoadSummary {
            nodes: file.nodes.len(),
            relationships: file.edges.len(),
            ..LoadSummary::default()
        };
        if options.wipe {
            loop {
                let deleted = self
                    .count(
                        query(
                            "MATCH (n:Entity) WITH n LIMIT $limit DETACH DELETE n \
                             RETURN count(*) AS deleted",
                        )
                        .param("limit", batch as i64),
                        "deleted",
                        timeout,
                    )
                    .await?;
                summary.nodes_deleted += deleted;
                if deleted == 0 {
                    break;
                }
            }
        }

        let mut state = LoadProgress {
            nodes_total: file.nodes.len(),
            relationships_total: file.edges.len(),
            ..LoadProgress::default()
        };
        progress(&state);
        for kind in [
            EntityKind::Account,
            EntityKind::Device,
            EntityKind::Ip,
            EntityKind::Merchant,
        ] {
            let text = node_query(kind);
            let of_kind: Vec<&FileNode> = file.nodes.iter().filter(|n| n.kind == kind).collect();
            for chunk in of_kind.chunks(batch) {
                let ids: Vec<&str> = chunk.iter().map(|n| n.id.as_str()).collect();
                let flagged: Vec<bool> = chunk.iter().map(|n| n.flagged).collect();
                let q = query(&text)
                    .param("ids", ids)
                    .param("flagged", flagged)
                    .param("kind", kind.as_str());
                summary.nodes_created += self.count(q, "created", timeout).await?;
                state.nodes_done += chunk.len();
                progress(&state);
            }
        }
        for rel in [Relation::Uses, Relation::Transfers, Relation::Owns] {
            let text = edge_query(rel);
            let of_rel: Vec<&FileEdge> = file.edges.iter().filter(|e| e.rel == rel).collect();
            for chunk in of_rel.chunks(batch) {
                let src: Vec<&str> = chunk.iter().map(|e| e.src.as_str()).collect();
                let dst: Vec<&str> = chunk.iter().map(|e| e.dst.as_str()).collect();
                let q = query(&text).param("src", src).param("dst", dst);
                summary.relationships_created += self.count(q, "created", timeout).await?;
                state.relationships_done += chunk.len();
                progress(&state);
            }
        }
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, kind: EntityKind, flagged: bool) -> GraphRecord {
        GraphRecord::Node {
            id: id.into(),
            kind,
            flagged,
        }
    }

    fn edge(src: &str, dst: &str, rel: Relation) -> GraphRecord {
        GraphRecord::Edge {
            src: src.into(),
            dst: dst.into(),
            rel,
        }
    }

    #[test]
    fn repeated_nodes_merge_and_repeated_edges_count_once() {
        let file = GraphFile::from_records([
            edge("A", "D", Relation::Uses),
            node("A", EntityKind::Account, false),
            node("D", EntityKind::Device, false),
            node("A", EntityKind::Account, true),
            edge("A", "D", Relation::Uses),
            edge("D", "A", Relation::Uses),
            edge("A", "D", Relation::Owns),
        ])
        .unwrap();
        assert_eq!(file.nodes.len(), 2);
        assert!(file.nodes[0].flagged, "flagged if any line flags it");
        assert_eq!(
            file.edges.len(),
            3,
            "direction and type make a relationship distinct"
        );
    }

    #[test]
    fn edge_to_an_undeclared_node_is_rejected_naming_its_line() {
        let err = GraphFile::from_records([
            node("A", EntityKind::Account, false),
            edge("A", "Z", Relation::Uses),
        ])
        .unwrap_err();
        assert!(
            matches!(&err, GraphError::UnknownNode { line: 2, missing, .. } if missing == "Z"),
            "{err:?}"
        );
    }

    #[test]
    fn node_declared_with_two_kinds_is_rejected() {
        let err = GraphFile::from_records([
            node("A", EntityKind::Account, false),
            node("A", EntityKind::Device, false),
        ])
        .unwrap_err();
        assert!(matches!(
            err,
            GraphError::KindConflict {
                line: 2,
                first_line: 1,
                ..
            }
        ));
    }

    #[test]
    fn queries_take_ids_as_parameters_and_labels_from_the_enums() {
        let q = node_query(EntityKind::Merchant);
        assert!(q.contains("SET n:Merchant"), "{q}");
        assert!(q.contains("$ids[i]"), "{q}");
        let q = edge_query(Relation::Owns);
        assert!(q.contains("MERGE (a)-[:OWNS]->(b)"), "{q}");
        assert!(q.contains("$src[i]") && q.contains("$dst[i]"), "{q}");
    }
}
