//! The graph file: one JSON object per line, nodes and edges, as written by `riskstream gen`
//! and read by the in-memory enricher and by `riskstream graph load`.
//!
//! ```text
//! {"type":"node","id":"A-1042","kind":"account","flagged":false}
//! {"type":"node","id":"D-311","kind":"device","flagged":false}
//! {"type":"edge","src":"A-1042","dst":"D-311","rel":"uses"}
//! ```
//!
//! Node ids are unique across all kinds in one file (the generator prefixes them:
//! `A-` accounts, `D-` devices, `M-` merchants; IPs are dotted quads). Edges are read as
//! undirected for path finding; `rel` says what the relationship is.
//!
//! [`GraphFileReader`] reads such a file record by record and tags each record with its line
//! number, so that every consumer (the in-memory graph, the Neo4j loader) reports problems
//! the same way.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::GraphError;

/// What kind of entity a node is. Events name entities of these kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    Account,
    Device,
    Ip,
    Merchant,
}

impl EntityKind {
    /// The lower-case name used in files, metrics and results.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Account => "account",
            EntityKind::Device => "device",
            EntityKind::Ip => "ip",
            EntityKind::Merchant => "merchant",
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an edge means. All are traversed in both directions when looking for paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    /// An account used a device or an IP address.
    Uses,
    /// An account sent money to another account.
    Transfers,
    /// An account owns a merchant.
    Owns,
}

impl Relation {
    /// The lower-case name used in files and as the Neo4j relationship type (upper-cased).
    pub fn as_str(self) -> &'static str {
        match self {
            Relation::Uses => "uses",
            Relation::Transfers => "transfers",
            Relation::Owns => "owns",
        }
    }
}

/// One line of a graph file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GraphRecord {
    /// An entity; `id` is unique across all kinds in one file.
    Node {
        id: String,
        kind: EntityKind,
        /// Known fraud: the target of path searches.
        #[serde(default)]
        flagged: bool,
    },
    /// A relationship between two nodes defined in the same file; direction is kept for the
    /// record but ignored by path finding.
    Edge {
        src: String,
        dst: String,
        rel: Relation,
    },
}

/// A record together with the 1-based line (or position) it came from, for error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct NumberedRecord {
    pub line: usize,
    pub record: GraphRecord,
}

/// Reads a graph file lazily, one [`NumberedRecord`] per non-blank line.
///
/// Blank (whitespace-only) lines are skipped but still counted, so line numbers match what an
/// editor shows. A line that is not a record yields [`GraphError::BadRecord`] and reading
/// continues with the next line; an I/O error ends the iteration after it is reported, since
/// the reader cannot know where the next line starts.
pub struct GraphFileReader<R> {
    reader: R,
    origin: String,
    line: usize,
    buf: String,
    finished: bool,
}

impl GraphFileReader<BufReader<File>> {
    /// Opens `path` for reading; errors name the path.
    pub fn open(path: &Path) -> Result<Self, GraphError> {
        let file = File::open(path).map_err(|source| GraphError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::new(
            BufReader::with_capacity(1 << 16, file),
            path.display().to_string(),
        ))
    }
}

impl<R: BufRead> GraphFileReader<R> {
    /// Reads records from any buffered reader; `origin` names it in error messages
    /// (normally the file path).
    pub fn new(reader: R, origin: impl Into<String>) -> Self {
        Self {
            reader,
            origin: origin.into(),
            line: 0,
            buf: String::new(),
            finished: false,
        }
    }

    /// What this reader reads from, as used in its error messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

impl<R: BufRead> Iterator for GraphFileReader<R> {
    type Item = Result<NumberedRecord, GraphError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.finished {
            self.buf.clear();
            self.line += 1;
            match self.reader.read_line(&mut self.buf) {
                Ok(0) => self.finished = true,
                Ok(_) if self.buf.trim().is_empty() => {}
                Ok(_) => {
                    let parsed = serde_json::from_str(&self.buf)
                        .map_err(|source| GraphError::BadRecord {
                            origin: self.origin.clone(),
                            line: self.line,
                            source,
                        })
                        .and_then(|record| {
                            check_ids(&record, &self.origin, self.line)?;
                            Ok(NumberedRecord {
                                line: self.line,
                                record,
                            })
                        });
                    return Some(parsed);
                }
                Err(source) => {
                    self.finished = true;
                    return Some(Err(GraphError::Read {
                        origin: self.origin.clone(),
                        line: self.line,
                        source,
                    }));
                }
            }
        }
        None
    }
}

/// Refuses a record with an empty (or all-whitespace) node id or edge end.
fn check_ids(record: &GraphRecord, origin: &str, line: usize) -> Result<(), GraphError> {
    let (ids, kind): (&[(&'static str, &str)], _) = match record {
        GraphRecord::Node { id, .. } => (&[("id", id.as_str())], "node"),
        GraphRecord::Edge { src, dst, .. } => {
            (&[("src", src.as_str()), ("dst", dst.as_str())], "edge")
        }
    };
    match ids.iter().find(|(_, id)| id.trim().is_empty()) {
        Some((field, _)) => Err(GraphError::EmptyId {
            origin: origin.to_owned(),
            line,
            field,
            record: kind,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(text: &str) -> Vec<Result<NumberedRecord, GraphError>> {
        GraphFileReader::new(text.as_bytes(), "graph.jsonl").collect()
    }

    #[test]
    fn documented_example_lines_parse_into_records() {
        let text = concat!(
            r#"{"type":"node","id":"A-1042","kind":"account","flagged":false}"#,
            "\n",
            r#"{"type":"node","id":"D-311","kind":"device","flagged":false}"#,
            "\n",
            r#"{"type":"edge","src":"A-1042","dst":"D-311","rel":"uses"}"#,
            "\n",
        );
        let records: Vec<GraphRecord> = read_all(text)
            .into_iter()
            .map(|r| r.map(|n| n.record))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            records,
            vec![
                GraphRecord::Node {
                    id: "A-1042".into(),
                    kind: EntityKind::Account,
                    flagged: false
                },
                GraphRecord::Node {
                    id: "D-311".into(),
                    kind: EntityKind::Device,
                    flagged: false
                },
                GraphRecord::Edge {
                    src: "A-1042".into(),
                    dst: "D-311".into(),
                    rel: Relation::Uses
                },
            ]
        );
    }

    #[test]
    fn flagged_defaults_to_false_when_absent() {
        let records = read_all(r#"{"type":"node","id":"1.2.3.4","kind":"ip"}"#);
        assert!(matches!(
            &records[0],
            Ok(NumberedRecord {
                record: GraphRecord::Node {
                    flagged: false,
                    kind: EntityKind::Ip,
                    ..
                },
                ..
            })
        ));
    }

    #[test]
    fn blank_lines_are_skipped_but_counted_in_line_numbers() {
        let text = "\n  \n{\"type\":\"node\",\"id\":\"M-1\",\"kind\":\"merchant\"}\n\n";
        let records = read_all(text);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].as_ref().unwrap().line, 3);
    }

    #[test]
    fn bad_line_error_names_origin_and_line_and_reading_continues() {
        let text = concat!(
            r#"{"type":"node","id":"A-1","kind":"account"}"#,
            "\n",
            r#"{"type":"node","id":"A-2","kind":"planet"}"#,
            "\n",
            r#"{"type":"node","id":"A-3","kind":"account"}"#,
            "\n",
        );
        let records = read_all(text);
        assert_eq!(records.len(), 3);
        let message = records[1].as_ref().unwrap_err().to_string();
        assert!(
            message.starts_with("graph.jsonl:2: not a graph record"),
            "{message}"
        );
        assert_eq!(records[2].as_ref().unwrap().line, 3);
    }

    #[test]
    fn empty_node_ids_and_edge_ends_are_refused_naming_the_line() {
        let text = concat!(
            r#"{"type":"node","id":"","kind":"account"}"#,
            "\n",
            r#"{"type":"node","id":"  ","kind":"device"}"#,
            "\n",
            r#"{"type":"edge","src":"A-1","dst":"","rel":"uses"}"#,
            "\n",
            r#"{"type":"node","id":"A-1","kind":"account"}"#,
            "\n",
        );
        let records = read_all(text);
        assert_eq!(records.len(), 4);
        let message = |i: usize| records[i].as_ref().unwrap_err().to_string();
        assert!(
            message(0).starts_with("graph.jsonl:1: the id of this node is empty"),
            "{}",
            message(0)
        );
        assert!(message(1).starts_with("graph.jsonl:2: the id of this node"));
        assert!(
            message(2).starts_with("graph.jsonl:3: the dst of this edge is empty"),
            "{}",
            message(2)
        );
        assert!(records[3].is_ok(), "a good line after bad ones still reads");
    }

    #[test]
    fn invalid_utf8_is_reported_with_its_line_and_ends_reading() {
        let mut bytes = br#"{"type":"node","id":"A-1","kind":"account"}"#.to_vec();
        bytes.extend_from_slice(b"\n\xff\xfe\n");
        bytes.extend_from_slice(br#"{"type":"node","id":"A-3","kind":"account"}"#);
        let records: Vec<_> = GraphFileReader::new(&bytes[..], "g").collect();
        assert_eq!(records.len(), 2);
        let message = records[1].as_ref().unwrap_err().to_string();
        assert!(message.starts_with("g:2: cannot read line"), "{message}");
    }

    #[test]
    fn missing_file_error_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.jsonl");
        let message = GraphFileReader::open(&path).err().unwrap().to_string();
        assert!(message.contains("absent.jsonl"), "{message}");
    }
}
