//! Helpers for the tests against the real Neo4j server: where it is, graph files whose ids
//! no other test uses, counting what a test loaded, and a private second server that a test
//! may stop and start without disturbing the others.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use neo4rs::{query, ConfigBuilder, Graph};
use serde_json::Value;

use crate::repo_root;

/// The server `scripts/test.sh` started (`RISKSTREAM_TEST_NEO4J_URI` overrides).
pub fn uri() -> String {
    std::env::var("RISKSTREAM_TEST_NEO4J_URI").unwrap_or_else(|_| "bolt://127.0.0.1:7687".into())
}

/// The password `scripts/neo4j.sh` sets (`NEO4J_PASSWORD` overrides, as for the script).
pub fn password() -> String {
    std::env::var("NEO4J_PASSWORD").unwrap_or_else(|_| "riskstream-test".into())
}

/// A client for checking what the tests wrote.
pub async fn client(uri: &str) -> Graph {
    let config = ConfigBuilder::default()
        .uri(uri)
        .user("neo4j")
        .password(password())
        .max_connections(2)
        .connection_timeout(Duration::from_secs(10))
        .build()
        .expect("a valid client configuration");
    Graph::connect(config).expect("the client is created")
}

/// Runs a query returning one integer column `n` and returns it.
pub async fn count(graph: &Graph, q: neo4rs::Query) -> i64 {
    let mut rows = tokio::time::timeout(Duration::from_secs(60), graph.execute(q))
        .await
        .expect("Neo4j answers within a minute")
        .expect("the count query runs");
    let row = rows
        .next()
        .await
        .expect("the count query returns")
        .expect("one row");
    row.get::<i64>("n").expect("an integer column n")
}

/// Nodes whose id starts with `prefix`, and relationships between such nodes.
pub async fn prefixed_counts(graph: &Graph, prefix: &str) -> (i64, i64) {
    let nodes = count(
        graph,
        query("MATCH (n:Entity) WHERE n.id STARTS WITH $p RETURN count(n) AS n").param("p", prefix),
    )
    .await;
    let rels = count(
        graph,
        query(
            "MATCH (a:Entity)-[r]->(b:Entity) WHERE a.id STARTS WITH $p AND b.id STARTS WITH $p \
             RETURN count(r) AS n",
        )
        .param("p", prefix),
    )
    .await;
    (nodes, rels)
}

/// Distinct nodes and distinct `(src, dst, rel)` relationships of a graph file.
pub fn file_counts(graph_file: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(graph_file).expect("graph file is readable");
    let mut nodes = HashSet::new();
    let mut edges = HashSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line).expect("graph lines are JSON");
        match v["type"].as_str() {
            Some("node") => {
                nodes.insert(v["id"].as_str().expect("node id").to_owned());
            }
            Some("edge") => {
                edges.insert((
                    v["src"].to_string(),
                    v["dst"].to_string(),
                    v["rel"].to_string(),
                ));
            }
            other => panic!("unexpected record type {other:?}"),
        }
    }
    (nodes.len(), edges.len())
}

/// Copies a graph file with `prefix` in front of every id, so a test's graph is a component
/// of its own in the shared database: no other test's data can touch its paths.
pub fn prefixed_graph(graph_file: &Path, prefix: &str, out: &Path) -> PathBuf {
    let text = std::fs::read_to_string(graph_file).expect("graph file is readable");
    let mut lines = String::with_capacity(text.len() + text.len() / 4);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut v: Value = serde_json::from_str(line).expect("graph lines are JSON");
        for key in ["id", "src", "dst"] {
            if let Some(id) = v[key].as_str() {
                v[key] = Value::String(format!("{prefix}{id}"));
            }
        }
        lines.push_str(&v.to_string());
        lines.push('\n');
    }
    std::fs::write(out, lines).expect("prefixed graph is writable");
    out.to_path_buf()
}

/// A Neo4j server of a test's own on another port, with its own data folder (the jars are
/// shared with the main test server). Stopped when dropped.
pub struct PrivateNeo4j {
    pub port: u16,
    home: PathBuf,
}

impl PrivateNeo4j {
    /// Starts a server on `port` keeping its files in `.cache/services/neo4j-<port>`.
    pub fn start(port: u16) -> PrivateNeo4j {
        let server = PrivateNeo4j {
            port,
            home: repo_root().join(format!(".cache/services/neo4j-{port}")),
        };
        server.script("start");
        server
    }

    pub fn uri(&self) -> String {
        format!("bolt://127.0.0.1:{}", self.port)
    }

    pub fn stop(&self) {
        self.script("stop");
    }

    pub fn restart(&self) {
        self.script("start");
    }

    fn script(&self, action: &str) {
        let out = Command::new(repo_root().join("scripts/neo4j.sh"))
            .arg(action)
            .env("NEO4J_PORT", self.port.to_string())
            .env("NEO4J_HOME", &self.home)
            .env("NEO4J_PASSWORD", password())
            .env("NEO4J_HEAP_OPTS", "-Xms128m -Xmx512m")
            .output()
            .expect("scripts/neo4j.sh runs");
        assert!(
            out.status.success(),
            "scripts/neo4j.sh {action} on port {} failed:\n{}{}",
            self.port,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for PrivateNeo4j {
    fn drop(&mut self) {
        let _ = Command::new(repo_root().join("scripts/neo4j.sh"))
            .arg("stop")
            .env("NEO4J_PORT", self.port.to_string())
            .env("NEO4J_HOME", &self.home)
            .output();
    }
}
