//! Uncached, batched look-ups against a real Neo4j server: how many entity answers per
//! second one connection's worth of batches gets, and the time per batch; then the cache
//! warm-up, which lists the answers for the whole graph in two queries. Used by
//! `scripts/bench-neo4j.sh`; the graph file must already be loaded into the server.
//!
//! Usage: neo4j_lookups GRAPH_FILE URI [BATCH] [BATCHES]   (password in NEO4J_PASSWORD)

use std::time::{Duration, Instant};

use riskstream_graph::load::GraphFile;
use riskstream_graph::{BreakerOptions, GraphEnricher, MemoryGraph, Neo4jGraph, Neo4jOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, uri, rest @ ..] = args.as_slice() else {
        return Err("usage: neo4j_lookups GRAPH_FILE URI [BATCH] [BATCHES]".into());
    };
    let batch: usize = rest.first().map_or(Ok(2000), |s| s.parse())?;
    let batches: usize = rest.get(1).map_or(Ok(20), |s| s.parse())?;
    let password = std::env::var("NEO4J_PASSWORD").unwrap_or_else(|_| "riskstream-test".into());

    let graph = GraphFile::read(file.as_ref())?;
    let ids: Vec<&str> = graph.nodes.iter().map(|n| n.id.as_str()).collect();
    let neo4j = Neo4jGraph::connect(&Neo4jOptions {
        uri: uri.clone(),
        user: "neo4j".into(),
        password,
        max_hops: 3,
        pool_size: 1,
        query_timeout: Duration::from_secs(120),
        breaker: BreakerOptions::default(),
    })?;
    neo4j.ping().await?;
    let memory = MemoryGraph::load(file.as_ref(), 3)?;

    // A fixed pseudo-random sample, uniform over the graph's nodes: the uncached case.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ids[(state % ids.len() as u64) as usize]
    };
    let warm: Vec<&str> = (0..batch).map(|_| next()).collect();
    neo4j.lookup(&warm).await?;

    let mut times = Vec::with_capacity(batches);
    let mut mismatches = 0usize;
    let started = Instant::now();
    for _ in 0..batches {
        let sample: Vec<&str> = (0..batch).map(|_| next()).collect();
        let t = Instant::now();
        let answers = neo4j.lookup(&sample).await?;
        times.push(t.elapsed());
        for (id, answer) in sample.iter().zip(&answers) {
            if **answer != *memory.lookup_one(id) {
                mismatches += 1;
            }
        }
    }
    let wall = started.elapsed();
    let querying: Duration = times.iter().sum();
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "neo4j uncached: {batches} batches of {batch} ids in {:.1} s: {:.0} ids/s (per batch p50 {:.1} ms, p99 {:.1} ms), {mismatches} answers differ from memory",
        wall.as_secs_f64(),
        (batch * batches) as f64 / querying.as_secs_f64().max(1e-9),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
    );

    let started = Instant::now();
    let all = neo4j.answers_for_all(usize::MAX).await?.answers;
    let took = started.elapsed();
    let near = all.iter().filter(|(_, a)| a.hops.is_some()).count();
    let differ = all
        .iter()
        .filter(|(id, answer)| **answer != *memory.lookup_one(id))
        .count();
    println!(
        "neo4j warm-up: {} entities ({near} near flagged nodes) in {:.2} s: {:.0} answers/s, {differ} answers differ from memory",
        all.len(),
        took.as_secs_f64(),
        all.len() as f64 / took.as_secs_f64().max(1e-9),
    );
    Ok(())
}
