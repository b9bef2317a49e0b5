//! The graph against the real Neo4j server: loading, identical answers to the in-memory
//! graph, injection attempts, and a job that survives Neo4j going away and coming back.
//! `scripts/test.sh` starts the server first.
//!
//! The tests share one database (Community has one), so each loads its graph with an id
//! prefix of its own: its nodes form components no other test's data touches. The outage
//! test stops and starts a private server on another port, never the shared one.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use neo4rs::query;
use riskstream_graph::{
    BreakerOptions, GraphAnswer, GraphEnricher, MemoryGraph, Neo4jGraph, Neo4jOptions,
};
use riskstream_integration_tests::admin::{free_address, get, samples, wait_for};
use riskstream_integration_tests::kafka::{
    generate, produce, read_topic, riskstream_with_env, unique, wait_for_messages, Deployment, Job,
};
use riskstream_integration_tests::neo4j::{
    client, count, file_counts, password, prefixed_counts, prefixed_graph, uri, PrivateNeo4j,
};
use riskstream_integration_tests::{repo_root, riskstream_bin};

/// Runs `riskstream graph load` against `uri` with the password in the environment;
/// returns (nodes created, relationships created) from its summary.
fn graph_load(uri: &str, file: &Path, extra: &[&str]) -> (u64, u64) {
    let file = file.to_str().expect("temp paths are UTF-8");
    let mut args = vec![
        "graph", "load", "--quiet", "--uri", uri, "--user", "neo4j", "--file", file,
    ];
    args.extend_from_slice(extra);
    let password = password();
    let stderr = riskstream_with_env(&args, &[("RISKSTREAM__GRAPH__PASSWORD", &password)]);
    let created = |label: &str| -> u64 {
        let line = stderr
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no `{label}` line in:\n{stderr}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words
            .iter()
            .position(|w| w.starts_with("created"))
            .unwrap_or_else(|| panic!("no count in {line:?}"));
        words[at - 1].parse().expect("a count")
    };
    (created("nodes"), created("relationships"))
}

/// The node ids of a graph file, in file order.
fn node_ids(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "node")
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

fn neo4j_options(uri: String, max_hops: u32) -> Neo4jOptions {
    Neo4jOptions {
        uri,
        user: "neo4j".into(),
        password: password(),
        max_hops,
        pool_size: 2,
        query_timeout: Duration::from_secs(60),
        breaker: BreakerOptions::default(),
    }
}

/// A generated graph with a test-unique id prefix; returns (prefix, prefixed graph file).
fn prefixed_dataset(
    dir: &Path,
    events: u64,
    seed: u64,
    name: &str,
) -> (String, std::path::PathBuf) {
    generate(dir, events, seed);
    let prefix = format!("{}:", unique(name));
    let file = prefixed_graph(
        &dir.join("graph.jsonl"),
        &prefix,
        &dir.join("prefixed.jsonl"),
    );
    (prefix, file)
}

#[test]
fn loading_a_generated_graph_creates_exactly_its_nodes_and_relationships_and_loading_again_changes_nothing(
) {
    let dir = tempfile::tempdir().unwrap();
    let (prefix, file) = prefixed_dataset(dir.path(), 2_000, 11, "load");
    let (nodes, rels) = file_counts(&file);
    assert!(
        nodes > 1000 && rels > 1000,
        "a graph worth loading: {nodes} nodes, {rels} rels"
    );

    let first = graph_load(&uri(), &file, &["--batch-size", "700"]);
    assert_eq!(
        first,
        (nodes as u64, rels as u64),
        "the summary counts what was created"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let graph = rt.block_on(client(&uri()));
    let counted = rt.block_on(prefixed_counts(&graph, &prefix));
    assert_eq!(
        counted,
        (nodes as i64, rels as i64),
        "the database holds the file"
    );

    let second = graph_load(&uri(), &file, &[]);
    assert_eq!(second, (0, 0), "loading again creates nothing");
    assert_eq!(rt.block_on(prefixed_counts(&graph, &prefix)), counted);

    let flagged_in_file = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .filter(|l| l.contains("\"flagged\":true"))
        .count() as i64;
    let flagged = rt.block_on(count(
        &graph,
        query("MATCH (n:Flagged) WHERE n.id STARTS WITH $p RETURN count(n) AS n")
            .param("p", &*prefix),
    ));
    assert!(flagged > 0);
    assert_eq!(
        flagged, flagged_in_file,
        "flagged nodes carry the Flagged label"
    );
}

#[test]
fn neo4j_and_the_in_memory_graph_give_identical_answers_for_a_thousand_random_entities() {
    let dir = tempfile::tempdir().unwrap();
    let (_prefix, file) = prefixed_dataset(dir.path(), 5_000, 23, "same");
    graph_load(&uri(), &file, &[]);

    let ids: Vec<String> = node_ids(&file);
    // A fixed-seed pick of 990 known ids (with repeats allowed) and 10 unknown ones.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut pick: Vec<String> = (0..990)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ids[(state >> 33) as usize % ids.len()].clone()
        })
        .collect();
    pick.extend((0..10).map(|i| {
        format!(
            "{}not-in-graph-{i}",
            &ids[0][..ids[0].find(':').unwrap() + 1]
        )
    }));

    let rt = tokio::runtime::Runtime::new().unwrap();
    for max_hops in [3, 2] {
        let memory = MemoryGraph::load(&file, max_hops).unwrap();
        let neo4j = Neo4jGraph::connect(&neo4j_options(uri(), max_hops)).unwrap();
        let mut near = 0;
        let mut shared = 0;
        let mut differences = Vec::new();
        for chunk in pick.chunks(250) {
            let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let want: Vec<Arc<GraphAnswer>> = rt.block_on(memory.lookup(&refs)).unwrap();
            let got = rt.block_on(neo4j.lookup(&refs)).unwrap();
            assert_eq!(got.len(), refs.len());
            for ((id, w), g) in refs.iter().zip(&want).zip(&got) {
                near += usize::from(w.hops.is_some_and(|h| h > 0));
                shared += usize::from(w.neighbours >= 3);
                if w != g {
                    differences.push(format!("{id}: memory {w:?} / neo4j {g:?}"));
                }
            }
        }
        assert!(
            differences.is_empty(),
            "max_hops {max_hops}: {} of 1000 answers differ, e.g.\n{}",
            differences.len(),
            differences[..differences.len().min(5)].join("\n")
        );
        // About one node in a thousand is flagged, so a few percent of entities have a path.
        let wanted = if max_hops == 3 { 10 } else { 1 };
        assert!(
            near >= wanted,
            "max_hops {max_hops}: the sample exercises real paths ({near} near flagged nodes)"
        );
        assert!(
            shared >= 10,
            "max_hops {max_hops}: the sample exercises neighbour counts ({shared} entities with 3 or more)"
        );
    }
}

#[test]
fn warming_a_cache_from_neo4j_gives_every_entity_the_answer_of_the_in_memory_graph() {
    let dir = tempfile::tempdir().unwrap();
    let (prefix, file) = prefixed_dataset(dir.path(), 5_000, 29, "warm");
    graph_load(&uri(), &file, &[]);
    let ids: Vec<String> = node_ids(&file);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let memory = MemoryGraph::load(&file, 3).unwrap();
    let neo4j = Neo4jGraph::connect(&neo4j_options(uri(), 3)).unwrap();
    // The database is shared with other tests: look at this test's entities only.
    let listing = rt.block_on(neo4j.answers_for_all(usize::MAX)).unwrap();
    assert!(listing.complete);
    let all = listing.answers;
    let mine: HashMap<&str, &Arc<GraphAnswer>> = all
        .iter()
        .filter(|(id, _)| id.starts_with(&prefix))
        .map(|(id, answer)| (&**id, answer))
        .collect();
    assert_eq!(
        mine.len(),
        ids.len(),
        "one answer per node of the file, each listed once"
    );
    let mut near = 0;
    let mut differences = Vec::new();
    for id in &ids {
        let want = memory.lookup_one(id);
        let got = mine[id.as_str()];
        near += usize::from(want.hops.is_some_and(|h| h > 0));
        if *want != **got {
            differences.push(format!("{id}: memory {want:?} / warm-up {got:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} answers differ, e.g.\n{}",
        differences.len(),
        ids.len(),
        differences[..differences.len().min(5)].join("\n")
    );
    assert!(
        near >= 10,
        "real paths are exercised ({near} near flagged nodes)"
    );
    // Answers with a flagged node near come first, so a capacity cut keeps them.
    let first_far = all.iter().position(|(_, a)| a.hops.is_none()).unwrap();
    assert!(
        all[first_far..].iter().all(|(_, a)| a.hops.is_none()),
        "near-flagged answers are listed before the others"
    );
    let cut = rt.block_on(neo4j.answers_for_all(first_far)).unwrap();
    assert_eq!(cut.answers.len(), first_far);
    assert!(!cut.complete, "a listing cut short says so");
}

#[test]
fn an_entity_linked_several_ways_to_another_counts_it_once_as_a_neighbour() {
    // One device used by three accounts; the first is linked to it three times (both
    // directions and a second type), and a self-loop links the device to itself.
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("{}:", unique("neighbours"));
    let id = |name: &str| format!("{prefix}{name}");
    let node = |name: &str, kind: &str| serde_json::json!({"type": "node", "id": id(name), "kind": kind, "flagged": name == "A-3"});
    let edge = |src: &str, dst: &str, rel: &str| serde_json::json!({"type": "edge", "src": id(src), "dst": id(dst), "rel": rel});
    let records = [
        node("D-1", "device"),
        node("A-1", "account"),
        node("A-2", "account"),
        node("A-3", "account"),
        edge("A-1", "D-1", "uses"),
        edge("D-1", "A-1", "uses"),
        edge("A-1", "D-1", "owns"),
        edge("A-2", "D-1", "uses"),
        edge("A-3", "D-1", "uses"),
        edge("D-1", "D-1", "uses"),
    ];
    let file = dir.path().join("graph.jsonl");
    let lines: Vec<String> = records.iter().map(ToString::to_string).collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    graph_load(&uri(), &file, &[]);

    let names = ["D-1", "A-1", "A-2", "A-3"];
    let ids: Vec<String> = names.iter().map(|n| id(n)).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let neo4j = Neo4jGraph::connect(&neo4j_options(uri(), 3)).unwrap();
    let memory = MemoryGraph::load(&file, 3).unwrap();
    let counts = |answers: &[Arc<GraphAnswer>]| -> Vec<u32> {
        answers.iter().map(|a| a.neighbours).collect()
    };
    assert_eq!(
        counts(&rt.block_on(memory.lookup(&refs)).unwrap()),
        [3, 1, 1, 1]
    );
    assert_eq!(
        counts(&rt.block_on(neo4j.lookup(&refs)).unwrap()),
        [3, 1, 1, 1],
        "per-batch look-up"
    );
    let listing = rt.block_on(neo4j.answers_for_all(usize::MAX)).unwrap();
    let listed: HashMap<&str, u32> = listing
        .answers
        .iter()
        .map(|(id, answer)| (&**id, answer.neighbours))
        .collect();
    let warm: Vec<u32> = refs.iter().map(|id| listed[id]).collect();
    assert_eq!(warm, [3, 1, 1, 1], "warm-up listing");
}

/// Copies an events file with `prefix` in front of every entity id, to match a prefixed
/// graph.
fn prefixed_events(events: &Path, prefix: &str, out: &Path) {
    let text = std::fs::read_to_string(events).unwrap();
    let mut lines = String::with_capacity(text.len() + text.len() / 4);
    for line in text.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        for key in [
            "account_id",
            "counterparty_id",
            "device_id",
            "ip",
            "merchant_id",
        ] {
            if let Some(id) = v[key].as_str() {
                v[key] = serde_json::Value::String(format!("{prefix}{id}"));
            }
        }
        lines.push_str(&v.to_string());
        lines.push('\n');
    }
    std::fs::write(out, lines).unwrap();
}

/// Runs the job over a file and returns each result's `graph` object by event id.
fn graph_results(dir: &Path, name: &str, events: &Path, args: &[&str]) -> HashMap<String, String> {
    let out = dir.join(format!("{name}.jsonl"));
    let status = Command::new(riskstream_bin())
        .env("RISKSTREAM__ADMIN__LISTEN", "")
        .args(["run", "--quiet", "--input"])
        .arg(events)
        .arg("--output")
        .arg(&out)
        .arg("--dead-letter")
        .arg(dir.join(format!("{name}-dead.jsonl")))
        .args(args)
        .env("RISKSTREAM__GRAPH__PASSWORD", password())
        .current_dir(repo_root())
        .status()
        .expect("riskstream runs");
    assert!(status.success(), "{name} run failed: {status}");
    std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["event_id"].as_str().unwrap().to_owned(),
                v["graph"].to_string(),
            )
        })
        .collect()
}

#[test]
fn a_warmed_cache_enriches_every_event_from_the_first_even_when_no_query_could_meet_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (prefix, graph) = prefixed_dataset(dir.path(), 6_000, 31, "warmjob");
    graph_load(&uri(), &graph, &[]);
    let events = dir.path().join("prefixed-events.jsonl");
    prefixed_events(&dir.path().join("events.jsonl"), &prefix, &events);
    let config = |warm: bool| {
        let path = dir.path().join(format!("neo4j-{warm}.toml"));
        std::fs::write(
            &path,
            format!(
                "[graph]\nkind = \"neo4j\"\nuri = \"{}\"\nbatch_deadline = \"1ms\"\n\
                 cache_warm_up = {warm}\n",
                uri()
            ),
        )
        .unwrap();
        path
    };

    let memory = graph_results(
        dir.path(),
        "memory",
        &events,
        &["--graph", graph.to_str().unwrap()],
    );
    let warm = graph_results(
        dir.path(),
        "warm",
        &events,
        &["--config", config(true).to_str().unwrap()],
    );
    assert_eq!(warm.len(), 6_000);
    // Every answer comes from the warmed cache, including those for entities the graph
    // does not hold (new devices and IPs): the complete listing says they are unknown.
    let differ: Vec<&String> = memory
        .keys()
        .filter(|id| memory[*id] != warm[*id])
        .collect();
    assert!(
        differ.is_empty(),
        "{} of 6000 events got other graph answers than from the in-memory graph, e.g. {}: \
         memory {} / warmed {}",
        differ.len(),
        differ[0],
        memory[differ[0]],
        warm[differ[0]]
    );
    assert!(
        warm.values().all(|g| g.contains("\"status\":\"ok\"")),
        "every event enriched"
    );

    // The same run without the warm-up: a 1 ms deadline leaves early events unenriched.
    let cold = graph_results(
        dir.path(),
        "cold",
        &events,
        &["--config", config(false).to_str().unwrap()],
    );
    let unavailable = cold
        .values()
        .filter(|g| g.contains("\"status\":\"unavailable\""))
        .count();
    assert!(
        unavailable > 0,
        "a cold cache cannot answer within 1 ms, so this test shows what the warm-up does"
    );
}

#[test]
fn cypher_injection_in_entity_ids_is_an_ordinary_id_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (prefix, file) = prefixed_dataset(dir.path(), 1_000, 5, "inject");
    graph_load(&uri(), &file, &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let graph = rt.block_on(client(&uri()));
    let before = rt.block_on(prefixed_counts(&graph, &prefix));
    assert!(before.0 > 0 && before.1 > 0);

    let attacks = [
        "x' }) DETACH DELETE n //",
        "\"}) MATCH (n) DETACH DELETE n RETURN 1 //",
        "x`]->() MATCH (n) DETACH DELETE n //",
        "{id: $ids} ) MATCH (m) DETACH DELETE m",
        "'; MATCH (n) DETACH DELETE n; //",
        "\\u0027) DETACH DELETE e //",
    ];
    let neo4j = Neo4jGraph::connect(&neo4j_options(uri(), 3)).unwrap();
    let asked: Vec<String> = attacks.iter().map(|a| format!("{prefix}{a}")).collect();
    let refs: Vec<&str> = asked.iter().map(String::as_str).collect();
    let answers = rt.block_on(neo4j.lookup(&refs)).unwrap();
    assert!(
        answers.iter().all(|a| !a.known),
        "no such entities: {answers:?}"
    );
    assert_eq!(rt.block_on(prefixed_counts(&graph, &prefix)), before);

    // Loaded as node ids, they are stored verbatim and found again by exact id.
    let hostile = dir.path().join("hostile.jsonl");
    let mut lines = String::new();
    for id in &asked {
        let node =
            serde_json::json!({"type": "node", "id": id, "kind": "account", "flagged": true});
        lines.push_str(&format!("{node}\n"));
    }
    let anchor = format!("{prefix}A-anchor");
    lines.push_str(&format!(
        "{}\n{}\n",
        serde_json::json!({"type": "node", "id": anchor, "kind": "account"}),
        serde_json::json!({"type": "edge", "src": anchor, "dst": asked[0], "rel": "transfers"})
    ));
    std::fs::write(&hostile, lines).unwrap();
    assert_eq!(
        graph_load(&uri(), &hostile, &[]),
        (asked.len() as u64 + 1, 1)
    );
    let after = rt.block_on(prefixed_counts(&graph, &prefix));
    assert_eq!(after, (before.0 + asked.len() as i64 + 1, before.1 + 1));
    let answers = rt.block_on(neo4j.lookup(&refs)).unwrap();
    for (id, answer) in asked.iter().zip(&answers) {
        assert!(answer.known, "{id} is found by its exact id");
        assert_eq!(answer.hops, Some(0));
        assert_eq!(&*answer.path[0], id.as_str());
    }
    let anchor_answer = rt.block_on(neo4j.lookup(&[&anchor])).unwrap();
    assert_eq!(anchor_answer[0].hops, Some(1));
}

/// Results of the events in `ids`, as (event id, graph status).
fn statuses(topic: &str) -> HashMap<String, String> {
    read_topic(topic)
        .iter()
        .filter_map(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).ok())
        .map(|v| {
            (
                v["event_id"].as_str().unwrap_or_default().to_owned(),
                v["graph"]["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Splits an events file into `parts` files of consecutive lines.
fn split_events(events: &Path, parts: usize, dir: &Path) -> Vec<(std::path::PathBuf, Vec<String>)> {
    let text = std::fs::read_to_string(events).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let per = lines.len().div_ceil(parts);
    lines
        .chunks(per)
        .enumerate()
        .map(|(i, chunk)| {
            let path = dir.join(format!("part-{i}.jsonl"));
            std::fs::write(&path, chunk.join("\n") + "\n").unwrap();
            let ids = chunk
                .iter()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    v["event_id"].as_str().unwrap().to_owned()
                })
                .collect();
            (path, ids)
        })
        .collect()
}

#[test]
fn job_scores_without_the_graph_while_neo4j_is_down_and_recovers_by_itself_when_it_is_back() {
    let port: u16 = std::env::var("RISKSTREAM_TEST_NEO4J_PRIVATE_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(7688);
    let server = PrivateNeo4j::start(port);
    let dir = tempfile::tempdir().unwrap();
    let events = generate(dir.path(), 24_000, 3);
    graph_load(&server.uri(), &dir.path().join("graph.jsonl"), &["--wipe"]);
    let parts = split_events(&events, 16, dir.path());

    let d = Deployment::new("neo4j-outage");
    // Small batches and a generous deadline: without the cache every batch asks Neo4j, and
    // the shared two-core machine must answer them in time while the server is up. A cold
    // server's first queries can take seconds; a longer query timeout keeps the breaker
    // from reading that as an outage.
    let deadline_ms = 2000;
    let admin = free_address();
    let config = d.write_config(
        dir.path(),
        &format!(
            "[admin]\nlisten = \"{admin}\"\n[pipeline]\nbatch_size = 64\n\
             [graph]\nkind = \"neo4j\"\nuri = \"{}\"\nuser = \"neo4j\"\npassword = \"{}\"\n\
             batch_deadline = \"{deadline_ms}ms\"\nquery_timeout = \"5s\"\npool_size = 16\ncache_enabled = false\n",
            server.uri(),
            password()
        ),
    );
    let summary = dir.path().join("summary.json");
    let mut job = Job::start(
        &config,
        &["--summary-json", summary.to_str().unwrap()],
        dir.path().join("job.log"),
    );
    let mut produced = 0i64;
    let mut send = |part: usize, job: &mut Job| {
        produce(&d.input, &parts[part].0, 4);
        produced += parts[part].1.len() as i64;
        wait_for_messages(&d.results, produced, Duration::from_secs(120), Some(job));
    };

    // Up: enriched. The first batches may miss the deadline while connections open and the
    // cold server (sharing two cores with the other tests' servers) compiles its queries:
    // within the first four parts, one after the first is mostly ok.
    send(0, &mut job);
    let mut next = 1;
    let mut ok = 0;
    while next < 4 {
        send(next, &mut job);
        let seen = statuses(&d.results);
        ok = parts[next].1.iter().filter(|id| seen[*id] == "ok").count();
        next += 1;
        if ok > parts[next - 1].1.len() / 2 {
            break;
        }
    }
    assert!(
        ok > parts[next - 1].1.len() / 2,
        "with Neo4j up most results of a part are ok (last part: {ok}); log:\n{}",
        job.log_text()
    );

    // Down: results keep flowing, marked unavailable.
    server.stop();
    let down_at = Instant::now();
    let last_down = next + 2;
    for part in next..=last_down {
        send(part, &mut job);
    }
    let seen = statuses(&d.results);
    let unavailable = parts[last_down]
        .1
        .iter()
        .filter(|id| seen[*id] == "unavailable")
        .count();
    assert_eq!(
        unavailable,
        parts[last_down].1.len(),
        "with Neo4j down every result says unavailable"
    );
    assert!(down_at.elapsed() < Duration::from_secs(100));
    // The operator sees it: the graph's status changed, and the job stays ready (degraded:
    // events are still scored).
    let changes = |a: &riskstream_integration_tests::admin::Answer| {
        samples(&a.body)
            .get("riskstream_graph_status_changes_total")
            .copied()
            .unwrap_or(0.0)
    };
    wait_for(admin, "/metrics", Duration::from_secs(30), |a| {
        changes(a) >= 1.0
    });
    assert_eq!(get(admin, "/readyz").map(|a| a.status), Some(200));

    // Back: enrichment resumes without restarting the job.
    server.restart();
    let back_at = Instant::now();
    let mut part = last_down + 1;
    let recovered = loop {
        send(part, &mut job);
        let seen = statuses(&d.results);
        if parts[part].1.iter().all(|id| seen[id.as_str()] == "ok") {
            break true;
        }
        part += 1;
        if part == parts.len() || back_at.elapsed() > Duration::from_secs(90) {
            break false;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(
        recovered,
        "results are ok again once Neo4j is back; log:\n{}",
        job.log_text()
    );
    wait_for(admin, "/metrics", Duration::from_secs(30), |a| {
        changes(a) >= 2.0
    });
    assert!(
        job.log_text().contains("graph answering"),
        "the recovery is logged; log:\n{}",
        job.log_text()
    );

    job.signal("TERM");
    let status = job.wait(Duration::from_secs(60));
    assert!(status.success(), "job failed: {status}\n{}", job.log_text());
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let waited_ms = summary["graph_wait_ms"]["max"].as_f64().unwrap();
    // Bounded by the deadline plus scheduling noise, not by the driver's minute of retries.
    assert!(
        waited_ms < (deadline_ms + 900) as f64,
        "a batch waited {waited_ms} ms for the graph; the deadline is {deadline_ms} ms"
    );
    assert!(summary["graph_unavailable"].as_u64().unwrap() >= parts[last_down].1.len() as u64);
}
