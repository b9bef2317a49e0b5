//! The graph target: graph files through the record reader and the in-memory graph.
//!
//! A case is a valid graph file (nodes, a few flagged, and edges between them), left valid
//! or mutated line by line (fields deleted, types swapped, empty, huge or odd ids, edges to
//! unknown nodes, a node redeclared with another kind) and byte by byte, or random bytes.
//! The reader must give a record or an error naming the file and line for each line; the
//! in-memory graph must load (a valid file always does) or give such an error; a loaded
//! graph's answers must agree with a breadth-first search of the file's own edges.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;

use rand::RngExt;
use serde_json::{json, Value};

use riskstream_graph::{GraphFileReader, GraphRecord, MemoryGraph};

use super::{Case, Checked, Target, TargetKind};
use crate::mutate::{self, pick, Rng};
use crate::HarnessError;

const KINDS: [&str; 4] = ["account", "device", "ip", "merchant"];
const RELATIONS: [&str; 3] = ["uses", "transfers", "owns"];

/// What the reader's errors name as their origin.
const ORIGIN: &str = "fuzz-graph";

pub struct GraphFiles {
    _dir: tempfile::TempDir,
    file: PathBuf,
}

impl GraphFiles {
    pub fn new() -> Result<GraphFiles, HarnessError> {
        let dir = tempfile::tempdir().map_err(|e| HarnessError::Setup {
            target: "graph",
            message: format!("temporary directory: {e}"),
        })?;
        let file = dir.path().join("graph.jsonl");
        Ok(GraphFiles { _dir: dir, file })
    }
}

impl Target for GraphFiles {
    fn generate(&mut self, rng: &mut Rng, _case: u64) -> Case {
        if rng.random_bool(0.08) {
            let max = if rng.random_bool(0.1) { 20_000 } else { 600 };
            return Case::new(TargetKind::Graph, mutate::random_bytes(rng, max));
        }
        let mut lines = valid_graph(rng);
        let valid = rng.random_bool(0.25);
        if !valid {
            for _ in 0..rng.random_range(1..=4) {
                mutate_graph(rng, &mut lines);
            }
        }
        let mut bytes = Vec::new();
        let crlf = rng.random_bool(0.15);
        for line in &lines {
            bytes.extend_from_slice(line);
            bytes.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        if !valid && rng.random_bool(0.4) {
            for _ in 0..rng.random_range(1..=3) {
                mutate::mutate_bytes(rng, &mut bytes);
            }
        }
        let mut case = Case::new(TargetKind::Graph, bytes);
        case.valid = valid;
        case
    }

    fn check(&mut self, case: &Case) -> Result<Checked, String> {
        let mut checked = Checked::default();
        // The record reader, as `graph load` and the in-memory graph use it.
        let mut records = Vec::new();
        let mut bad_lines = 0;
        for item in GraphFileReader::new(&case.bytes[..], ORIGIN) {
            match item {
                Ok(record) => records.push(record.record),
                Err(e) => {
                    bad_lines += 1;
                    let message = e.to_string();
                    if !message.starts_with(&format!("{ORIGIN}:")) {
                        return Err(format!(
                            "reader error does not name the file and line: {message}"
                        ));
                    }
                }
            }
        }
        if case.valid && bad_lines > 0 {
            return Err(format!(
                "{bad_lines} lines of a valid graph file were refused"
            ));
        }

        std::fs::write(&self.file, &case.bytes)
            .map_err(|e| format!("harness: cannot write {}: {e}", self.file.display()))?;
        let max_hops = 1 + (case.bytes.len() % 6) as u32;
        match MemoryGraph::load(&self.file, max_hops) {
            Ok(graph) => {
                if bad_lines > 0 {
                    return Err(format!(
                        "the in-memory graph loaded although {bad_lines} lines are not records"
                    ));
                }
                check_answers(&graph, &records, max_hops)?;
                checked.accepted += 1;
            }
            Err(e) => {
                if case.valid {
                    return Err(format!("a valid graph file was refused: {e}"));
                }
                let message = e.to_string();
                let file = self.file.display().to_string();
                if message.is_empty() || !message.contains(&file) {
                    return Err(format!("load error does not name the file: {message}"));
                }
                checked.refused += 1;
            }
        }
        Ok(checked)
    }

    fn reset(&mut self) {}
}

/// Each node's answer agrees with a breadth-first search of the file's edges: the
/// distance to the nearest flagged node (within `max_hops`), a path of that length along
/// edges of the file from the node to a flagged node, the flagged nodes within reach, the
/// neighbours.
fn check_answers(
    graph: &MemoryGraph,
    records: &[GraphRecord],
    max_hops: u32,
) -> Result<(), String> {
    let mut flagged: HashMap<&str, bool> = HashMap::new();
    let mut adjacent: HashMap<&str, HashSet<&str>> = HashMap::new();
    for record in records {
        match record {
            GraphRecord::Node { id, flagged: f, .. } => {
                *flagged.entry(id).or_default() |= *f;
                adjacent.entry(id).or_default();
            }
            GraphRecord::Edge { src, dst, .. } => {
                if src != dst {
                    adjacent.entry(src).or_default().insert(dst);
                    adjacent.entry(dst).or_default().insert(src);
                }
            }
        }
    }
    if graph.node_count() != flagged.len() {
        return Err(format!(
            "graph has {} nodes, the file declares {}",
            graph.node_count(),
            flagged.len()
        ));
    }
    for (&id, _) in flagged.iter() {
        let answer = graph.lookup_one(id);
        // Breadth-first search from `id` up to max_hops.
        let mut dist: HashMap<&str, u32> = HashMap::from([(id, 0)]);
        let mut queue = VecDeque::from([id]);
        while let Some(v) = queue.pop_front() {
            let d = dist[v];
            if d == max_hops {
                continue;
            }
            for &w in adjacent.get(v).into_iter().flatten() {
                if !dist.contains_key(w) {
                    dist.insert(w, d + 1);
                    queue.push_back(w);
                }
            }
        }
        let is_flagged = |v: &str| flagged.get(v).copied().unwrap_or(false);
        let nearest = dist
            .iter()
            .filter(|(v, _)| is_flagged(v))
            .map(|(_, d)| *d)
            .min();
        let within = dist.keys().filter(|v| is_flagged(v)).count() as u32;
        let neighbours = adjacent.get(id).map_or(0, |n| n.len()) as u32;
        let wrong = |what: &str| {
            Err(format!(
                "node {id:?} (max_hops {max_hops}): {what}; answer {answer:?}, search finds nearest {nearest:?}, {within} flagged within, {neighbours} neighbours"
            ))
        };
        if !answer.known {
            return wrong("a declared node is unknown");
        }
        if answer.hops != nearest {
            return wrong("hops differ");
        }
        if answer.flagged_within != within {
            return wrong("flagged_within differs");
        }
        if answer.neighbours != neighbours {
            return wrong("neighbours differ");
        }
        match answer.hops {
            None if !answer.path.is_empty() => return wrong("a path without hops"),
            None => {}
            Some(hops) => {
                let path: Vec<&str> = answer.path.iter().map(|p| &**p).collect();
                let steps_ok = path
                    .windows(2)
                    .all(|w| adjacent.get(w[0]).is_some_and(|n| n.contains(w[1])));
                if path.len() != hops as usize + 1
                    || path.first() != Some(&id)
                    || !path.last().is_some_and(|v| is_flagged(v))
                    || !steps_ok
                {
                    return wrong("the path is not a shortest path to a flagged node");
                }
            }
        }
    }
    Ok(())
}

/// Lines of a valid graph file: 1 to 30 nodes of all kinds, some flagged, and edges
/// between declared nodes (before or after their nodes).
fn valid_graph(rng: &mut Rng) -> Vec<Vec<u8>> {
    let n = rng.random_range(1..=30);
    let mut ids = Vec::new();
    let mut lines = Vec::new();
    for i in 0..n {
        let kind = *pick(rng, &KINDS);
        let id = match kind {
            "account" => format!("A-{i}"),
            "device" => format!("D-{i}"),
            "merchant" => format!("M-{i}"),
            _ => format!("10.{}.0.{i}", rng.random_range(0..255)),
        };
        let mut node = json!({"type": "node", "id": id, "kind": kind});
        if rng.random_bool(0.7) {
            node["flagged"] = json!(rng.random_bool(0.2));
        }
        ids.push(id);
        lines.push(node);
    }
    for _ in 0..rng.random_range(0..=40) {
        let edge = json!({
            "type": "edge",
            "src": pick(rng, &ids),
            "dst": pick(rng, &ids),
            "rel": pick(rng, &RELATIONS),
        });
        let at = rng.random_range(0..=lines.len());
        lines.insert(at, edge);
    }
    lines
        .iter()
        .map(|v| serde_json::to_vec(v).unwrap_or_default())
        .collect()
}

/// One mutation of a graph file's lines.
fn mutate_graph(rng: &mut Rng, lines: &mut Vec<Vec<u8>>) {
    if lines.is_empty() {
        lines.push(mutate::random_bytes(rng, 100));
        return;
    }
    let i = rng.random_range(0..lines.len());
    let parsed: Option<Value> = serde_json::from_slice(&lines[i]).ok();
    match (rng.random_range(0..10), parsed) {
        (0..=3, Some(Value::Object(mut object))) => {
            match rng.random_range(0..6) {
                0 => {
                    let field = *pick(rng, &["id", "src", "dst"]);
                    if object.contains_key(field) {
                        let id = pick(rng, &["", " ", "\t", "\u{0}", "\u{feff}"]).to_string();
                        object.insert(field.into(), json!(id));
                    }
                }
                1 => {
                    let field = *pick(rng, &["id", "src", "dst"]);
                    if object.contains_key(field) {
                        object.insert(field.into(), json!(mutate::strange_string(rng)));
                    }
                }
                2 => {
                    object.insert("kind".into(), json!(pick(rng, &["planet", "Account", ""])));
                }
                3 => {
                    object.insert("type".into(), json!(pick(rng, &["Node", "vertex", ""])));
                }
                _ => mutate::mutate_object(rng, &mut object),
            }
            lines[i] = serde_json::to_vec(&Value::Object(object)).unwrap_or_default();
        }
        (4, Some(Value::Object(object))) => {
            // The same node again with another kind, or an edge to a node nobody declares.
            let mut copy = object.clone();
            if copy.get("type") == Some(&json!("node")) {
                copy.insert("kind".into(), json!(pick(rng, &KINDS)));
            } else {
                copy.insert("dst".into(), json!("X-undeclared"));
            }
            lines.push(serde_json::to_vec(&Value::Object(copy)).unwrap_or_default());
        }
        (5, _) => {
            lines.remove(i);
        }
        (6, _) => {
            let copy = lines[i].clone();
            lines.insert(rng.random_range(0..=lines.len()), copy);
        }
        (7, _) => lines.insert(i, pick(rng, &[&b""[..], b"   ", b"\t"]).to_vec()),
        (8, _) => {
            let flagged_self_loop = json!({"type":"edge","src":"A-0","dst":"A-0","rel":"uses"});
            lines.push(serde_json::to_vec(&flagged_self_loop).unwrap_or_default());
        }
        _ => mutate::mutate_bytes(rng, &mut lines[i]),
    }
}
