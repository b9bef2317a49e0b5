//! The embedded backend: the whole graph file loaded into memory, every answer computed once
//! at load time so that a look-up is one hash-map probe and a reference-count bump.
//!
//! Load works on dense `u32` node indices assigned in id order, so "smallest id" is
//! "smallest index" and sorted adjacency lists give the tie-break of the crate docs for free:
//!
//! 1. a multi-source BFS from all flagged nodes, capped at `max_hops`, gives every node its
//!    distance to the nearest flagged node and, through the smallest-index neighbour one step
//!    closer, its next hop on the lexicographically smallest shortest path;
//! 2. a BFS of depth `max_hops` from each flagged node adds one to the `flagged_within` count
//!    of every node it reaches (distances are symmetric), so each flagged node counts once.
//!    Pendant nodes (one neighbour) are left out of the searches and take their count from
//!    their neighbour's, and the searches run 64 at a time as one bit-parallel BFS (one bit
//!    per search in a word per node), so a hub is walked once per 64 flagged nodes near it
//!    rather than once per flagged node.
//!
//! Step 2 costs at most the sum of the `max_hops` neighbourhood sizes of the flagged nodes
//! over the non-pendant nodes, and about 1/64 of it where those overlap. The `memory_load`
//! bench's unflagged hub with 1 % of its leaves flagged loads in 18 ms / 0.42 s / 3.5 s for
//! 10⁴ / 10⁵ / 10⁶ leaves (one search per flagged node: 21 ms / 1.96 s / about 83 s). Nodes
//! that no flagged node reaches share one precomputed "nothing near" answer per degree (the
//! length of their deduplicated adjacency list).

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use ahash::AHashMap;
use async_trait::async_trait;

use crate::file::{EntityKind, GraphFileReader, GraphRecord, NumberedRecord};
use crate::{GraphAnswer, GraphEnricher, GraphError, NothingNear};

/// Marks a node that no flagged node reaches within `max_hops`.
const UNREACHED: u32 = u32::MAX;

/// The in-memory graph backend: loaded once from a graph file, then answers any number of
/// concurrent look-ups without locks or allocation beyond the result vector.
pub struct MemoryGraph {
    answers: AHashMap<Arc<str>, Arc<GraphAnswer>>,
    max_hops: u32,
    edge_count: usize,
    flagged_count: usize,
}

impl MemoryGraph {
    /// Loads a graph file (format in the crate docs) and precomputes all answers for paths of
    /// at most `max_hops` edges. Errors name the file and line.
    pub fn load(path: &Path, max_hops: u32) -> Result<Self, GraphError> {
        let reader = GraphFileReader::open(path)?;
        let origin = reader.origin().to_owned();
        Self::build(reader, &origin, max_hops)
    }

    /// Builds the graph from records already in memory (tests, generators). Errors count
    /// records from 1 in place of line numbers.
    pub fn from_records(
        records: impl IntoIterator<Item = GraphRecord>,
        max_hops: u32,
    ) -> Result<Self, GraphError> {
        let numbered = records.into_iter().enumerate().map(|(i, record)| {
            Ok(NumberedRecord {
                line: i + 1,
                record,
            })
        });
        Self::build(numbered, "graph records", max_hops)
    }

    /// The answer for one id, for callers outside async code; unknown ids get the shared
    /// [`GraphAnswer::unknown`] answer.
    pub fn lookup_one(&self, id: &str) -> Arc<GraphAnswer> {
        match self.answers.get(id) {
            Some(answer) => Arc::clone(answer),
            None => GraphAnswer::unknown(),
        }
    }

    /// Distinct node ids in the graph.
    pub fn node_count(&self) -> usize {
        self.answers.len()
    }

    /// Distinct undirected edges between two different nodes (duplicates and self-loops in
    /// the file are not counted).
    pub fn edge_count(&self) -> usize {
        self.edge_count
    }

    /// Nodes flagged as known fraud.
    pub fn flagged_count(&self) -> usize {
        self.flagged_count
    }

    /// The path length limit the answers were computed for.
    pub fn max_hops(&self) -> u32 {
        self.max_hops
    }

    fn build(
        records: impl Iterator<Item = Result<NumberedRecord, GraphError>>,
        origin: &str,
        max_hops: u32,
    ) -> Result<Self, GraphError> {
        let raw = RawGraph::collect(records, origin)?;
        let indexed = IndexedGraph::from_raw(raw);
        Ok(indexed.precompute(max_hops))
    }
}

impl fmt::Debug for MemoryGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryGraph")
            .field("nodes", &self.node_count())
            .field("edges", &self.edge_count)
            .field("flagged", &self.flagged_count)
            .field("max_hops", &self.max_hops)
            .finish()
    }
}

#[async_trait]
impl GraphEnricher for MemoryGraph {
    async fn lookup(&self, ids: &[&str]) -> Result<Vec<Arc<GraphAnswer>>, GraphError> {
        Ok(ids.iter().map(|id| self.lookup_one(id)).collect())
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

/// A node as declared in the input, before ids are sorted.
struct NodeDecl {
    id: Arc<str>,
    kind: EntityKind,
    flagged: bool,
    line: usize,
}

/// The validated input: nodes in file order and edges as pairs of file-order indices.
struct RawGraph {
    nodes: Vec<NodeDecl>,
    edges: Vec<(u32, u32)>,
}

impl RawGraph {
    fn collect(
        records: impl Iterator<Item = Result<NumberedRecord, GraphError>>,
        origin: &str,
    ) -> Result<Self, GraphError> {
        let mut nodes: Vec<NodeDecl> = Vec::new();
        let mut index: AHashMap<Arc<str>, u32> = AHashMap::new();
        let mut edges = Vec::new();
        // Edges may precede their nodes; those are resolved once every node is known.
        let mut pending: Vec<(usize, String, String)> = Vec::new();

        for numbered in records {
            let NumberedRecord { line, record } = numbered?;
            match record {
                GraphRecord::Node { id, kind, flagged } => {
                    if let Some(&i) = index.get(id.as_str()) {
                        let first = &mut nodes[i as usize];
                        if first.kind != kind {
                            return Err(GraphError::KindConflict {
                                origin: origin.to_owned(),
                                line,
                                id,
                                kind,
                                first_line: first.line,
                                first_kind: first.kind,
                            });
                        }
                        first.flagged |= flagged;
                        continue;
                    }
                    let i = u32::try_from(nodes.len())
                        .ok()
                        .filter(|&i| i != UNREACHED)
                        .ok_or_else(|| GraphError::TooManyNodes {
                            origin: origin.to_owned(),
                            nodes: nodes.len() + 1,
                            max: UNREACHED as usize,
                        })?;
                    let id: Arc<str> = id.into();
                    index.insert(Arc::clone(&id), i);
                    nodes.push(NodeDecl {
                        id,
                        kind,
                        flagged,
                        line,
                    });
                }
                GraphRecord::Edge { src, dst, .. } => {
                    match (index.get(src.as_str()), index.get(dst.as_str())) {
                        (Some(&a), Some(&b)) => edges.push((a, b)),
                        _ => pending.push((line, src, dst)),
                    }
                }
            }
        }

        for (line, src, dst) in pending {
            match (index.get(src.as_str()), index.get(dst.as_str())) {
                (Some(&a), Some(&b)) => edges.push((a, b)),
                (a, _) => {
                    let missing = if a.is_none() {
                        src.clone()
                    } else {
                        dst.clone()
                    };
                    return Err(GraphError::UnknownNode {
                        origin: origin.to_owned(),
                        line,
                        src,
                        dst,
                        missing,
                    });
                }
            }
        }
        Ok(Self { nodes, edges })
    }
}

/// The graph on dense indices in id order, with sorted, deduplicated adjacency (CSR).
struct IndexedGraph {
    /// Node ids by index, ascending.
    ids: Vec<Arc<str>>,
    flagged: Vec<bool>,
    /// Neighbours of node `v` are `neighbours[offsets[v]..offsets[v + 1]]`, ascending.
    offsets: Vec<usize>,
    neighbours: Vec<u32>,
}

impl IndexedGraph {
    fn from_raw(raw: RawGraph) -> Self {
        let RawGraph { nodes, edges } = raw;
        let mut order: Vec<u32> = (0..nodes.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| nodes[a as usize].id.cmp(&nodes[b as usize].id));
        let mut rank = vec![0u32; nodes.len()];
        for (new, &old) in order.iter().enumerate() {
            rank[old as usize] = new as u32;
        }

        // Both directions of every edge, packed so one integer sort orders by (src, dst).
        let mut arcs: Vec<u64> = Vec::with_capacity(edges.len() * 2);
        for (a, b) in edges {
            let (a, b) = (rank[a as usize], rank[b as usize]);
            if a != b {
                arcs.push(u64::from(a) << 32 | u64::from(b));
                arcs.push(u64::from(b) << 32 | u64::from(a));
            }
        }
        arcs.sort_unstable();
        arcs.dedup();

        let mut offsets = vec![0usize; nodes.len() + 1];
        for &arc in &arcs {
            offsets[(arc >> 32) as usize + 1] += 1;
        }
        for v in 0..nodes.len() {
            offsets[v + 1] += offsets[v];
        }
        let neighbours = arcs.iter().map(|&arc| arc as u32).collect();

        let ids = order
            .iter()
            .map(|&old| Arc::clone(&nodes[old as usize].id))
            .collect();
        let flagged = order
            .iter()
            .map(|&old| nodes[old as usize].flagged)
            .collect();
        Self {
            ids,
            flagged,
            offsets,
            neighbours,
        }
    }

    fn neighbours(&self, v: u32) -> &[u32] {
        let v = v as usize;
        &self.neighbours[self.offsets[v]..self.offsets[v + 1]]
    }

    fn precompute(self, max_hops: u32) -> MemoryGraph {
        let flagged: Vec<u32> = (0..self.ids.len() as u32)
            .filter(|&v| self.flagged[v as usize])
            .collect();
        let dist = self.distances_to_flagged(&flagged, max_hops);
        let within = self.flagged_within(&flagged, max_hops);

        // The next hop is the smallest neighbour one step closer; adjacency is sorted, so the
        // first match is it.
        let next: Vec<u32> = (0..self.ids.len() as u32)
            .map(|v| match dist[v as usize] {
                0 | UNREACHED => UNREACHED,
                d => *self
                    .neighbours(v)
                    .iter()
                    .find(|&&u| dist[u as usize] == d - 1)
                    .expect("BFS reached every node at distance d >= 1 from a neighbour at d - 1"),
            })
            .collect();

        let mut nothing_near = NothingNear::default();
        let mut answers = AHashMap::with_capacity(self.ids.len());
        for (v, id) in self.ids.iter().enumerate() {
            let neighbours = self.neighbours(v as u32).len() as u32;
            let answer = match dist[v] {
                UNREACHED => nothing_near.answer(neighbours),
                d => {
                    let mut path = Vec::with_capacity(d as usize + 1);
                    let mut at = v as u32;
                    path.push(Arc::clone(id));
                    while next[at as usize] != UNREACHED {
                        at = next[at as usize];
                        path.push(Arc::clone(&self.ids[at as usize]));
                    }
                    Arc::new(GraphAnswer {
                        known: true,
                        hops: Some(d),
                        path,
                        flagged_within: within[v],
                        neighbours,
                    })
                }
            };
            answers.insert(Arc::clone(id), answer);
        }

        MemoryGraph {
            answers,
            max_hops,
            edge_count: self.neighbours.len() / 2,
            flagged_count: flagged.len(),
        }
    }

    /// Multi-source BFS from all flagged nodes, stopping at `max_hops`.
    fn distances_to_flagged(&self, flagged: &[u32], max_hops: u32) -> Vec<u32> {
        let mut dist = vec![UNREACHED; self.ids.len()];
        let mut queue: VecDeque<u32> = VecDeque::with_capacity(flagged.len());
        for &f in flagged {
            dist[f as usize] = 0;
            queue.push_back(f);
        }
        while let Some(v) = queue.pop_front() {
            let d = dist[v as usize];
            if d == max_hops {
                continue;
            }
            for &u in self.neighbours(v) {
                if dist[u as usize] == UNREACHED {
                    dist[u as usize] = d + 1;
                    queue.push_back(u);
                }
            }
        }
        dist
    }

    /// For every node, how many flagged nodes lie within `max_hops` of it.
    ///
    /// Two things keep this close to linear where one search per flagged node was not (that
    /// walked a hub once per flagged node near it: 83 s for an unflagged hub with 10⁶
    /// leaves, 1 % flagged):
    ///
    /// * Pendant nodes (exactly one neighbour, like most leaves of a hub) are left out of
    ///   the searches: no shortest path between two other nodes passes through one. A
    ///   flagged pendant node starts its search at its neighbour, one hop out, and a pendant
    ///   node `p` with neighbour `q` counts what `q` counts within `max_hops - 1`, itself
    ///   once: every path from `p` starts with the edge to `q`.
    /// * The searches over the remaining nodes run 64 at a time as one bit-parallel search
    ///   (one bit per search in a word per node), so a node that many flagged nodes reach is
    ///   walked once per 64 of them; a group never walks more edges than its 64 searches did
    ///   one by one.
    fn flagged_within(&self, flagged: &[u32], max_hops: u32) -> Vec<u32> {
        let n = self.ids.len();
        let pendant = |v: u32| self.neighbours(v).len() == 1;
        // Adjacency between non-pendant nodes only (CSR); a pendant node's list is empty.
        let mut core_offsets = Vec::with_capacity(n + 1);
        let mut core_neighbours = Vec::new();
        core_offsets.push(0usize);
        for v in 0..n as u32 {
            if !pendant(v) {
                core_neighbours.extend(self.neighbours(v).iter().filter(|&&u| !pendant(u)));
            }
            core_offsets.push(core_neighbours.len());
        }
        let core =
            |v: u32| &core_neighbours[core_offsets[v as usize]..core_offsets[v as usize + 1]];

        // Each search: where it starts and at which distance from its flagged node.
        let mut searches: Vec<(u32, u32)> = Vec::with_capacity(flagged.len());
        for &f in flagged {
            match self.neighbours(f) {
                [q] if !pendant(*q) => {
                    if max_hops >= 1 {
                        searches.push((*q, 1));
                    }
                }
                [_] | [] => {}
                _ => searches.push((f, 0)),
            }
        }

        // Flagged nodes within `max_hops` and within `max_hops - 1` of each searched node.
        let mut within = vec![0u32; n];
        let mut within_inner = vec![0u32; n];
        // Bits of the group's searches that reached each node at any distance so far.
        let mut reached = vec![0u64; n];
        // Bits that reached each frontier node at this distance (`level`) and the next.
        let mut level = vec![0u64; n];
        let mut next_level = vec![0u64; n];
        let mut frontier: Vec<u32> = Vec::new();
        let mut next_frontier: Vec<u32> = Vec::new();
        // Nodes with a bit in `reached`, to add up and clear after the group.
        let mut touched: Vec<u32> = Vec::new();
        let add_up = |touched: &[u32], reached: &[u64], into: &mut [u32]| {
            for &v in touched {
                into[v as usize] += reached[v as usize].count_ones();
            }
        };
        for group in searches.chunks(64) {
            frontier.clear();
            touched.clear();
            // Searches arrive at their start at distance 0 or 1; `arrive` records an arrival
            // of `bits` at `u` for the next distance.
            let arrive = |u: u32,
                          bits: u64,
                          reached: &mut [u64],
                          next_level: &mut [u64],
                          next_frontier: &mut Vec<u32>,
                          touched: &mut Vec<u32>| {
                let u = u as usize;
                let new = bits & !reached[u];
                if new == 0 {
                    return;
                }
                if reached[u] == 0 {
                    touched.push(u as u32);
                }
                if next_level[u] == 0 {
                    next_frontier.push(u as u32);
                }
                reached[u] |= new;
                next_level[u] |= new;
            };
            for (bit, &(at, distance)) in group.iter().enumerate() {
                if distance == 0 {
                    arrive(
                        at,
                        1 << bit,
                        &mut reached,
                        &mut level,
                        &mut frontier,
                        &mut touched,
                    );
                }
            }
            let mut inner_added = false;
            for depth in 0..max_hops {
                if depth + 1 == max_hops {
                    add_up(&touched, &reached, &mut within_inner);
                    inner_added = true;
                }
                next_frontier.clear();
                for &v in &frontier {
                    let bits = std::mem::take(&mut level[v as usize]);
                    for &u in core(v) {
                        arrive(
                            u,
                            bits,
                            &mut reached,
                            &mut next_level,
                            &mut next_frontier,
                            &mut touched,
                        );
                    }
                }
                if depth == 0 {
                    for (bit, &(at, distance)) in group.iter().enumerate() {
                        if distance == 1 {
                            arrive(
                                at,
                                1 << bit,
                                &mut reached,
                                &mut next_level,
                                &mut next_frontier,
                                &mut touched,
                            );
                        }
                    }
                }
                std::mem::swap(&mut level, &mut next_level);
                std::mem::swap(&mut frontier, &mut next_frontier);
                if frontier.is_empty() {
                    break;
                }
            }
            if !inner_added {
                add_up(&touched, &reached, &mut within_inner);
            }
            for &v in &frontier {
                level[v as usize] = 0;
            }
            add_up(&touched, &reached, &mut within);
            for &v in &touched {
                reached[v as usize] = 0;
            }
        }

        // Pendant and lone nodes from their neighbour's counts.
        let is_flagged = |v: u32| u32::from(self.flagged[v as usize]);
        for v in 0..n as u32 {
            within[v as usize] = match self.neighbours(v) {
                [] => is_flagged(v),
                _ if max_hops == 0 => is_flagged(v),
                [q] if pendant(*q) => is_flagged(v) + is_flagged(*q),
                // `q`'s count within max_hops - 1 holds `v` itself when flagged and
                // max_hops >= 2.
                [q] => {
                    let counted_twice = if max_hops >= 2 { is_flagged(v) } else { 0 };
                    is_flagged(v) + within_inner[*q as usize] - counted_twice
                }
                _ => within[v as usize],
            };
        }
        within
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, VecDeque};
    use std::io::Write;

    use proptest::prelude::*;

    use super::*;
    use crate::file::Relation;

    fn node(id: &str, flagged: bool) -> GraphRecord {
        GraphRecord::Node {
            id: id.to_owned(),
            kind: EntityKind::Account,
            flagged,
        }
    }

    fn edge(src: &str, dst: &str) -> GraphRecord {
        GraphRecord::Edge {
            src: src.to_owned(),
            dst: dst.to_owned(),
            rel: Relation::Transfers,
        }
    }

    /// A graph from node ids (a trailing `!` marks a flagged node) and edges.
    fn graph(nodes: &[&str], edges: &[(&str, &str)], max_hops: u32) -> MemoryGraph {
        let nodes = nodes.iter().map(|n| match n.strip_suffix('!') {
            Some(id) => node(id, true),
            None => node(n, false),
        });
        let edges = edges.iter().map(|(a, b)| edge(a, b));
        MemoryGraph::from_records(nodes.chain(edges), max_hops).unwrap()
    }

    fn path_of(answer: &GraphAnswer) -> Vec<&str> {
        answer.path.iter().map(|id| &**id).collect()
    }

    fn write_file(lines: &[&str]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        for line in lines {
            writeln!(file, "{line}").unwrap();
        }
        file
    }

    #[test]
    fn shortest_path_leads_to_the_nearest_flagged_node() {
        let g = graph(
            &["A", "B", "C", "D", "E!", "F!"],
            &[
                ("A", "B"),
                ("B", "C"),
                ("C", "E"),
                ("A", "D"),
                ("D", "F"),
                ("F", "E"),
            ],
            3,
        );
        let a = g.lookup_one("A");
        assert!(a.known);
        assert_eq!(a.hops, Some(2));
        assert_eq!(path_of(&a), ["A", "D", "F"]);
        let c = g.lookup_one("C");
        assert_eq!(c.hops, Some(1));
        assert_eq!(path_of(&c), ["C", "E"]);
    }

    #[test]
    fn equal_length_paths_resolve_to_the_smallest_id_sequence() {
        // From X, shortest paths (3 hops) go through B or C; through A it is longer. Within B
        // two continue (via W and via Y). Picking the smallest flagged target (F1) or the
        // smallest node next to it (AA) would be wrong: the order starts at the entity.
        let g = graph(
            &[
                "X", "A", "Q", "R", "F0!", "B", "W", "Y", "F3!", "F2!", "C", "AA", "F1!",
            ],
            &[
                ("X", "A"),
                ("A", "Q"),
                ("Q", "R"),
                ("R", "F0"),
                ("X", "C"),
                ("C", "AA"),
                ("AA", "F1"),
                ("X", "B"),
                ("B", "Y"),
                ("Y", "F2"),
                ("B", "W"),
                ("W", "F3"),
            ],
            4,
        );
        let x = g.lookup_one("X");
        assert_eq!(x.hops, Some(3));
        assert_eq!(path_of(&x), ["X", "B", "W", "F3"]);
    }

    #[test]
    fn ids_compare_as_byte_strings_not_as_numbers_or_case_insensitively() {
        let g = graph(
            &["X", "B-9", "B-10", "a", "Z", "F!", "G!"],
            &[("X", "B-9"), ("X", "B-10"), ("B-9", "F"), ("B-10", "F")],
            3,
        );
        assert_eq!(path_of(&g.lookup_one("X")), ["X", "B-10", "F"]);

        let g = graph(
            &["X", "a", "Z", "F!"],
            &[("X", "a"), ("X", "Z"), ("a", "F"), ("Z", "F")],
            3,
        );
        assert_eq!(path_of(&g.lookup_one("X")), ["X", "Z", "F"]);
    }

    #[test]
    fn flagged_entity_has_zero_hops_and_a_path_of_itself() {
        let g = graph(&["A!", "B!"], &[("A", "B")], 3);
        let a = g.lookup_one("A");
        assert_eq!(a.hops, Some(0));
        assert_eq!(path_of(&a), ["A"]);
        assert_eq!(a.flagged_within, 2);
    }

    #[test]
    fn nothing_within_max_hops_gives_no_hops_and_an_empty_path() {
        let g = graph(
            &["A", "B", "C", "D!", "E"],
            &[("A", "B"), ("B", "C"), ("C", "D")],
            2,
        );
        for id in ["A", "E"] {
            let answer = g.lookup_one(id);
            assert!(answer.known, "{id}");
            assert_eq!(answer.hops, None, "{id}");
            assert!(answer.path.is_empty(), "{id}");
            assert_eq!(answer.flagged_within, 0, "{id}");
        }
        assert_eq!(g.lookup_one("B").hops, Some(2));
    }

    #[test]
    fn max_hops_zero_only_answers_for_flagged_entities() {
        let g = graph(&["A", "B!"], &[("A", "B")], 0);
        assert_eq!(g.lookup_one("A").hops, None);
        assert_eq!(g.lookup_one("B").hops, Some(0));
        assert_eq!(g.lookup_one("B").flagged_within, 1);
    }

    #[test]
    fn flagged_within_counts_distinct_flagged_nodes_and_excludes_far_ones() {
        // F1 is reachable two ways, F2 directly, F3 at exactly max_hops, F4 one hop beyond.
        let g = graph(
            &["X", "M1", "M2", "F1!", "F2!", "P", "Q", "F3!", "R", "F4!"],
            &[
                ("X", "M1"),
                ("M1", "F1"),
                ("X", "M2"),
                ("M2", "F1"),
                ("X", "F2"),
                ("X", "P"),
                ("P", "Q"),
                ("Q", "F3"),
                ("Q", "R"),
                ("R", "F4"),
            ],
            3,
        );
        let x = g.lookup_one("X");
        assert_eq!(x.flagged_within, 3);
        assert_eq!(path_of(&x), ["X", "F2"]);
        assert_eq!(g.lookup_one("P").flagged_within, 4);
    }

    #[test]
    fn unknown_id_is_answered_as_not_known_with_the_shared_answer() {
        let g = graph(&["A!"], &[], 3);
        let answer = g.lookup_one("nobody");
        assert!(!answer.known);
        assert_eq!(answer.hops, None);
        assert!(answer.path.is_empty());
        assert_eq!(answer.flagged_within, 0);
        assert!(Arc::ptr_eq(&answer, &GraphAnswer::unknown()));
    }

    #[tokio::test]
    async fn batched_lookup_answers_in_request_order_through_the_trait() {
        let g: Arc<dyn GraphEnricher> = Arc::new(graph(&["A", "B!"], &[("A", "B")], 3));
        assert_eq!(g.backend(), "memory");
        let answers = g.lookup(&["B", "ghost", "A", "B"]).await.unwrap();
        let hops: Vec<_> = answers.iter().map(|a| a.hops).collect();
        assert_eq!(hops, [Some(0), None, Some(1), Some(0)]);
        assert!(!answers[1].known);
    }

    #[test]
    fn neighbours_count_distinct_linked_entities_at_any_distance_from_fraud() {
        // A device used by three accounts, one of them twice; nothing flagged anywhere.
        let g = graph(
            &["D", "A1", "A2", "A3", "B"],
            &[
                ("A1", "D"),
                ("A2", "D"),
                ("D", "A3"),
                ("A1", "D"),
                ("B", "B"),
            ],
            0,
        );
        let counts: Vec<u32> = ["D", "A1", "A2", "B", "ghost"]
            .iter()
            .map(|id| g.lookup_one(id).neighbours)
            .collect();
        assert_eq!(counts, [3, 1, 1, 0, 0]);
        assert_eq!(g.lookup_one("D").hops, None);
    }

    #[test]
    fn duplicate_edges_and_self_loops_change_neither_answers_nor_edge_count() {
        let plain = graph(&["A", "B", "C!"], &[("A", "B"), ("B", "C")], 3);
        let noisy = graph(
            &["A", "B", "C!"],
            &[
                ("A", "B"),
                ("B", "A"),
                ("A", "A"),
                ("B", "C"),
                ("B", "C"),
                ("C", "C"),
            ],
            3,
        );
        assert_eq!(noisy.edge_count(), 2);
        assert_eq!(noisy.node_count(), 3);
        assert_eq!(noisy.flagged_count(), 1);
        for id in ["A", "B", "C"] {
            assert_eq!(plain.lookup_one(id), noisy.lookup_one(id), "{id}");
        }
    }

    #[test]
    fn edges_may_come_before_the_nodes_they_name() {
        let g = MemoryGraph::from_records([edge("A", "B"), node("A", false), node("B", true)], 3)
            .unwrap();
        assert_eq!(path_of(&g.lookup_one("A")), ["A", "B"]);
    }

    #[test]
    fn repeated_node_with_the_same_kind_is_one_node_flagged_if_any_line_flags_it() {
        let g = MemoryGraph::from_records(
            [
                node("A", true),
                node("A", false),
                node("B", false),
                node("B", false),
            ],
            3,
        )
        .unwrap();
        assert_eq!(g.node_count(), 2);
        assert_eq!(g.flagged_count(), 1);
        assert_eq!(g.lookup_one("A").hops, Some(0));
    }

    #[test]
    fn load_reads_a_graph_file_and_skips_blank_lines() {
        let file = write_file(&[
            r#"{"type":"node","id":"A-1","kind":"account","flagged":false}"#,
            "",
            r#"{"type":"node","id":"D-1","kind":"device","flagged":true}"#,
            r#"{"type":"edge","src":"A-1","dst":"D-1","rel":"uses"}"#,
        ]);
        let g = MemoryGraph::load(file.path(), 3).unwrap();
        assert_eq!(
            (g.node_count(), g.edge_count(), g.flagged_count()),
            (2, 1, 1)
        );
        assert_eq!(path_of(&g.lookup_one("A-1")), ["A-1", "D-1"]);
        assert_eq!(g.max_hops(), 3);
    }

    #[test]
    fn bad_json_error_names_the_file_and_line() {
        let file = write_file(&[
            r#"{"type":"node","id":"A-1","kind":"account"}"#,
            r#"{"type":"node","id":"A-2","kind":"account"}"#,
            r#"{"type":"node","id":"A-3","#,
        ]);
        let message = MemoryGraph::load(file.path(), 3).unwrap_err().to_string();
        let expected = format!("{}:3: not a graph record", file.path().display());
        assert!(message.starts_with(&expected), "{message}");
    }

    #[test]
    fn edge_to_an_unknown_node_is_rejected_with_its_line() {
        let file = write_file(&[
            r#"{"type":"node","id":"A-1","kind":"account"}"#,
            r#"{"type":"edge","src":"A-1","dst":"D-404","rel":"uses"}"#,
            r#"{"type":"node","id":"D-1","kind":"device"}"#,
        ]);
        let err = MemoryGraph::load(file.path(), 3).unwrap_err();
        assert!(
            matches!(&err, GraphError::UnknownNode { line: 2, missing, .. } if missing == "D-404"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(message.contains(":2: edge"), "{message}");
        assert!(message.contains("\"D-404\""), "{message}");
    }

    #[test]
    fn node_redeclared_with_another_kind_is_rejected_naming_both_lines() {
        let err = MemoryGraph::from_records(
            [
                node("X-1", false),
                GraphRecord::Node {
                    id: "X-1".into(),
                    kind: EntityKind::Device,
                    flagged: false,
                },
            ],
            3,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "graph records:2: node \"X-1\" is declared as device but line 1 declared it as \
             account; node ids must be unique across all kinds"
        );
    }

    /// Answers computed the slow, obvious way: BFS from the entity, then every walk of the
    /// shortest length that ends on a flagged node, keeping the smallest id sequence.
    fn naive_answer(
        ids: &[String],
        flagged: &[bool],
        adjacency: &[BTreeSet<usize>],
        entity: usize,
        max_hops: u32,
    ) -> GraphAnswer {
        let mut dist = vec![usize::MAX; ids.len()];
        let mut queue = VecDeque::from([entity]);
        dist[entity] = 0;
        while let Some(v) = queue.pop_front() {
            for &u in &adjacency[v] {
                if dist[u] == usize::MAX {
                    dist[u] = dist[v] + 1;
                    queue.push_back(u);
                }
            }
        }
        let within = (0..ids.len())
            .filter(|&v| flagged[v] && dist[v] <= max_hops as usize)
            .count() as u32;
        let nearest = (0..ids.len())
            .filter(|&v| flagged[v])
            .map(|v| dist[v])
            .min();
        let Some(d) = nearest.filter(|&d| d <= max_hops as usize) else {
            return GraphAnswer {
                known: true,
                hops: None,
                path: Vec::new(),
                flagged_within: within,
                neighbours: adjacency[entity].len() as u32,
            };
        };
        let mut best: Option<Vec<usize>> = None;
        let mut walk = vec![entity];
        fn extend(
            walk: &mut Vec<usize>,
            d: usize,
            adjacency: &[BTreeSet<usize>],
            flagged: &[bool],
            ids: &[String],
            best: &mut Option<Vec<usize>>,
        ) {
            if walk.len() == d + 1 {
                let last = walk[d];
                let key = |w: &[usize]| w.iter().map(|&v| ids[v].clone()).collect::<Vec<_>>();
                if flagged[last] && best.as_ref().is_none_or(|b| key(walk) < key(b)) {
                    *best = Some(walk.clone());
                }
                return;
            }
            let last = walk[walk.len() - 1];
            for &u in &adjacency[last] {
                walk.push(u);
                extend(walk, d, adjacency, flagged, ids, best);
                walk.pop();
            }
        }
        extend(&mut walk, d, adjacency, flagged, ids, &mut best);
        let path = best.expect("a flagged node at distance d has a walk of length d");
        GraphAnswer {
            known: true,
            hops: Some(d as u32),
            path: path.iter().map(|&v| Arc::from(ids[v].as_str())).collect(),
            flagged_within: within,
            neighbours: adjacency[entity].len() as u32,
        }
    }

    /// Node ids in file order, whether each is flagged, edges as index pairs, `max_hops`.
    type ArbitraryGraph = (Vec<String>, Vec<bool>, Vec<(usize, usize)>, u32);

    fn arbitrary_graph() -> impl Strategy<Value = ArbitraryGraph> {
        // Few letters and short ids make ties and prefix comparisons ("a" < "ab") common.
        prop::collection::btree_set("[abB1]{1,3}", 1..10).prop_flat_map(|ids| {
            let n = ids.len();
            (
                Just(ids.into_iter().collect::<Vec<_>>()).prop_shuffle(),
                prop::collection::vec(prop::bool::weighted(0.25), n),
                prop::collection::vec((0..n, 0..n), 0..=3 * n),
                0u32..5,
            )
        })
    }

    /// Nodes with their adjacency, for [`naive_answer`], from the same records.
    fn naive_all(
        ids: &[String],
        flagged: &[bool],
        edges: &[(usize, usize)],
        max_hops: u32,
    ) -> Vec<GraphAnswer> {
        let mut adjacency = vec![BTreeSet::new(); ids.len()];
        for &(a, b) in edges {
            if a != b {
                adjacency[a].insert(b);
                adjacency[b].insert(a);
            }
        }
        (0..ids.len())
            .map(|v| naive_answer(ids, flagged, &adjacency, v, max_hops))
            .collect()
    }

    #[test]
    fn a_hub_graph_gives_every_node_the_paths_and_flag_counts_of_a_search_from_it() {
        // Two unflagged hubs sharing half of 600 leaves, every 7th leaf flagged (86 flagged:
        // more than one group of 64 searches), a chain hanging off one hub, a far node.
        let mut ids: Vec<String> = vec!["H".into(), "G".into()];
        ids.extend((0..600).map(|i| format!("L{i:03}")));
        ids.extend(["C1", "C2", "C3", "Z1", "Z2"].map(String::from));
        let at = |id: &str| ids.iter().position(|x| x == id).unwrap();
        let flagged: Vec<bool> = ids
            .iter()
            .map(|id| {
                id.strip_prefix('L')
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_some_and(|n| n % 7 == 3)
            })
            .collect();
        let mut edges = Vec::new();
        for i in 0..600 {
            edges.push((at(&format!("L{i:03}")), at("H")));
            if i >= 300 {
                edges.push((at(&format!("L{i:03}")), at("G")));
            }
        }
        edges.extend([
            (at("C1"), at("C2")),
            (at("C2"), at("C3")),
            (at("C3"), at("H")),
            (at("Z1"), at("Z2")),
        ]);
        for max_hops in [2, 3] {
            let records = ids
                .iter()
                .zip(&flagged)
                .map(|(id, &f)| node(id, f))
                .chain(edges.iter().map(|&(a, b)| edge(&ids[a], &ids[b])));
            let g = MemoryGraph::from_records(records, max_hops).unwrap();
            for (id, expected) in ids.iter().zip(naive_all(&ids, &flagged, &edges, max_hops)) {
                assert_eq!(&*g.lookup_one(id), &expected, "{id} within {max_hops} hops");
            }
        }
        // Every leaf sees every flagged leaf through the hub; the chain end only the nearest.
        let g = MemoryGraph::from_records(
            ids.iter()
                .zip(&flagged)
                .map(|(id, &f)| node(id, f))
                .chain(edges.iter().map(|&(a, b)| edge(&ids[a], &ids[b]))),
            3,
        )
        .unwrap();
        assert_eq!(g.lookup_one("L000").flagged_within, 86);
        assert_eq!(path_of(&g.lookup_one("C2")), ["C2", "C3", "H", "L003"]);
        assert_eq!(g.lookup_one("C1").hops, None);
    }

    proptest! {
        #[test]
        fn precomputed_answers_match_a_naive_search_of_all_shortest_paths(
            (ids, flagged, edges, max_hops) in arbitrary_graph()
        ) {
            let mut adjacency = vec![BTreeSet::new(); ids.len()];
            for &(a, b) in &edges {
                if a != b {
                    adjacency[a].insert(b);
                    adjacency[b].insert(a);
                }
            }
            let records = ids
                .iter()
                .zip(&flagged)
                .map(|(id, &f)| node(id, f))
                .chain(edges.iter().map(|&(a, b)| edge(&ids[a], &ids[b])));
            let g = MemoryGraph::from_records(records, max_hops).unwrap();
            prop_assert_eq!(g.node_count(), ids.len());
            prop_assert_eq!(g.flagged_count(), flagged.iter().filter(|&&f| f).count());
            prop_assert_eq!(g.edge_count(), adjacency.iter().map(BTreeSet::len).sum::<usize>() / 2);
            for (v, id) in ids.iter().enumerate() {
                let expected = naive_answer(&ids, &flagged, &adjacency, v, max_hops);
                prop_assert_eq!(&*g.lookup_one(id), &expected, "entity {}", id);
            }
            prop_assert!(!g.lookup_one("zz-not-an-id").known);
        }
    }
}
