//! Behaviour of the generator as a whole: reproducibility, ordering, labels, graph shape
//! and the signals each fraud pattern leaves.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;

use riskstream_graph::{GraphRecord, Relation};
use serde_json::Value;

use super::*;

fn small(seed: u64) -> GenOptions {
    GenOptions {
        seed,
        events: 20_000,
        accounts: 1_000,
        ..GenOptions::default()
    }
}

fn read(dir: &Path, file: &str) -> Vec<u8> {
    std::fs::read(dir.join(file)).unwrap()
}

fn json_lines(dir: &Path, file: &str) -> Vec<Value> {
    String::from_utf8(read(dir, file))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Hops from the nearest flagged node, for nodes within `max_hops`, edges undirected.
fn hops_to_flagged(records: &[GraphRecord], max_hops: u32) -> HashMap<String, u32> {
    let mut neighbours: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut queue = VecDeque::new();
    let mut hops = HashMap::new();
    for record in records {
        match record {
            GraphRecord::Node { id, flagged, .. } => {
                if *flagged {
                    hops.insert(id.clone(), 0);
                    queue.push_back(id.as_str());
                }
            }
            GraphRecord::Edge { src, dst, .. } => {
                neighbours.entry(src).or_default().push(dst);
                neighbours.entry(dst).or_default().push(src);
            }
        }
    }
    while let Some(node) = queue.pop_front() {
        let next = hops[node] + 1;
        if next > max_hops {
            continue;
        }
        for &n in neighbours.get(node).into_iter().flatten() {
            if !hops.contains_key(n) {
                hops.insert(n.to_owned(), next);
                queue.push_back(n);
            }
        }
    }
    hops
}

fn node_ids(records: &[GraphRecord]) -> HashSet<&str> {
    records
        .iter()
        .filter_map(|r| match r {
            GraphRecord::Node { id, .. } => Some(id.as_str()),
            GraphRecord::Edge { .. } => None,
        })
        .collect()
}

fn generate(opts: GenOptions) -> (Vec<GraphRecord>, Vec<LabeledEvent>) {
    let generator = Generator::new(opts).unwrap();
    let graph = generator.graph_records().collect();
    let events = generator.events().collect();
    (graph, events)
}

fn of_pattern(events: &[LabeledEvent], pattern: FraudPattern) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.pattern == pattern)
        .map(|e| &e.event)
        .collect()
}

#[test]
fn same_seed_writes_byte_identical_files() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let summary_a = write_dataset(&small(7), a.path(), |_| {}).unwrap();
    let summary_b = write_dataset(&small(7), b.path(), |_| {}).unwrap();
    assert_eq!(summary_a, summary_b);
    for file in [EVENTS_FILE, LABELS_FILE, GRAPH_FILE, MANIFEST_FILE] {
        let bytes = read(a.path(), file);
        assert!(!bytes.is_empty(), "{file} is empty");
        assert!(bytes == read(b.path(), file), "{file} differs between runs");
    }
}

#[test]
fn different_seed_gives_different_events_and_graph() {
    let (graph_a, events_a) = generate(small(1));
    let (graph_b, events_b) = generate(small(2));
    assert_ne!(graph_a, graph_b);
    let same = events_a
        .iter()
        .zip(&events_b)
        .filter(|(a, b)| a.event == b.event)
        .count();
    assert!(same < 100, "{same} identical events");
}

#[test]
fn restarting_the_stream_yields_the_same_events() {
    let generator = Generator::new(small(3)).unwrap();
    let first: Vec<LabeledEvent> = generator.events().take(5_000).collect();
    let second: Vec<LabeledEvent> = generator.events().take(5_000).collect();
    assert_eq!(first, second);
}

#[test]
fn graph_depends_only_on_seed_and_accounts() {
    let a = Generator::new(small(5)).unwrap();
    let b = Generator::new(GenOptions {
        events: 777,
        fraud_rate: 0.3,
        ..small(5)
    })
    .unwrap();
    assert!(a.graph_records().eq(b.graph_records()));
}

#[test]
fn events_are_time_ordered_with_unique_sequential_ids_inside_the_span() {
    let generator = Generator::new(small(11)).unwrap();
    let (start, end) = generator.span();
    let events: Vec<LabeledEvent> = generator.events().collect();
    assert_eq!(events.len(), 20_000);
    for (i, pair) in events.windows(2).enumerate() {
        assert!(
            pair[0].event.ts_ms <= pair[1].event.ts_ms,
            "event {} at {} comes after {}",
            i + 1,
            pair[1].event.ts_ms,
            pair[0].event.ts_ms
        );
    }
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.event.event_id, format!("e-{i:08}"));
        assert_eq!(e.fraud, e.pattern.is_fraud());
        assert!(e.event.amount.is_finite() && e.event.amount > 0.0);
    }
    assert!(events[0].event.ts_ms >= start);
    // Episodes starting near the end may run a few hours past it.
    assert!(events[events.len() - 1].event.ts_ms < end + 4 * clock::HOUR_MS);
    // 20,000 events for 1,000 accounts at about three a day: close to a week.
    assert!((6 * clock::DAY_MS..8 * clock::DAY_MS).contains(&(end - start)));
}

#[test]
fn every_event_has_a_label_line_in_the_same_order() {
    let dir = tempfile::tempdir().unwrap();
    let summary = write_dataset(&small(13), dir.path(), |_| {}).unwrap();
    let events = json_lines(dir.path(), EVENTS_FILE);
    let labels = json_lines(dir.path(), LABELS_FILE);
    assert_eq!(events.len(), 20_000);
    assert_eq!(labels.len(), events.len());
    let mut counts = PatternCounts::default();
    for (event, label) in events.iter().zip(&labels) {
        assert_eq!(event["event_id"], label["event_id"]);
        let pattern: FraudPattern = serde_json::from_value(label["pattern"].clone()).unwrap();
        assert_eq!(label["fraud"], Value::Bool(pattern.is_fraud()));
        counts.add(pattern);
        let ts = event["ts"].as_str().unwrap();
        assert!(
            ts.ends_with('Z') && ts.len() == "2026-11-01T00:00:00.000Z".len(),
            "{ts}"
        );
    }
    assert_eq!(counts, summary.by_pattern);
    let manifest: Value = serde_json::from_slice(&read(dir.path(), MANIFEST_FILE)).unwrap();
    assert_eq!(manifest["counts"]["events"], 20_000);
    assert_eq!(
        manifest["counts"]["by_pattern"]["ring"],
        summary.by_pattern.ring
    );
    assert_eq!(
        manifest["counts"]["graph"]["flagged"],
        summary.graph.flagged
    );
    assert_eq!(manifest["options"]["start"], "2026-11-01T00:00:00.000Z");
}

#[test]
fn graph_edges_name_existing_nodes_and_node_ids_are_unique() {
    let generator = Generator::new(small(17)).unwrap();
    let records: Vec<GraphRecord> = generator.graph_records().collect();
    let ids = node_ids(&records);
    let counts = generator.graph_counts();
    assert_eq!(ids.len() as u64, counts.nodes, "node ids must be unique");
    assert_eq!(records.len() as u64, counts.nodes + counts.edges);
    assert_eq!(counts.accounts, 1_000);
    let mut rels = HashSet::new();
    for record in &records {
        if let GraphRecord::Edge { src, dst, rel } = record {
            assert!(ids.contains(src.as_str()), "edge from unknown node {src}");
            assert!(ids.contains(dst.as_str()), "edge to unknown node {dst}");
            assert!(src.starts_with("A-"), "edges start at accounts: {src}");
            rels.insert(rel.as_str());
        }
    }
    assert_eq!(rels, HashSet::from(["uses", "transfers", "owns"]));
    assert!(counts.flagged > 0);
}

#[test]
fn events_reference_graph_accounts_and_merchants() {
    let (graph, events) = generate(small(19));
    let ids = node_ids(&graph);
    for e in &events {
        assert!(ids.contains(e.event.account_id.as_str()), "{:?}", e.event);
        for id in [&e.event.counterparty_id, &e.event.merchant_id]
            .into_iter()
            .flatten()
        {
            assert!(ids.contains(id.as_str()), "{:?}", e.event);
        }
    }
}

#[test]
fn fraud_fraction_and_pattern_counts_match_the_plan() {
    for fraud_rate in [0.0, 0.02, 0.1] {
        let generator = Generator::new(GenOptions {
            fraud_rate,
            ..small(23)
        })
        .unwrap();
        let plan = generator.plan();
        let mut counts = PatternCounts::default();
        for e in generator.events() {
            counts.add(e.pattern);
        }
        assert_eq!(counts, plan);
        let fraction = counts.fraud() as f64 / counts.total() as f64;
        assert!(
            (fraction - fraud_rate).abs() < 0.001,
            "{fraction} for {fraud_rate}"
        );
    }
}

#[test]
fn default_options_plan_two_percent_fraud_over_all_patterns() {
    let plan = PatternCounts::plan(1_000_000, 0.02);
    assert_eq!(plan.total(), 1_000_000);
    assert_eq!(plan.fraud(), 20_000);
    assert_eq!(
        (plan.ring, plan.velocity, plan.mule, plan.takeover),
        (6_000, 5_000, 4_000, 5_000)
    );
    assert_eq!(PatternCounts::plan(7, 0.5).fraud(), 4);
    assert_eq!(format_ts_default(), "2026-11-01T00:00:00.000Z");
}

fn format_ts_default() -> String {
    crate::event::format_ts(GenOptions::default().start_ms)
}

#[test]
fn every_pattern_is_present() {
    let (_, events) = generate(small(29));
    for pattern in FraudPattern::ALL {
        assert!(
            !of_pattern(&events, pattern).is_empty(),
            "no {pattern} events"
        );
    }
}

#[test]
fn ring_members_are_within_two_hops_of_a_flagged_node() {
    // With 1,000 accounts both rings have a flagged account.
    let (graph, events) = generate(small(31));
    let hops = hops_to_flagged(&graph, 3);
    let ring = of_pattern(&events, FraudPattern::Ring);
    for e in &ring {
        assert!(hops.get(&e.account_id).is_some_and(|&h| h <= 2), "{e:?}");
    }
    let shared = ring
        .iter()
        .filter(|e| {
            [&e.device_id, &e.ip]
                .into_iter()
                .flatten()
                .any(|id| hops.get(id) == Some(&1))
        })
        .count();
    assert!(
        shared * 10 > ring.len() * 8,
        "{shared} of {} use a shared device or IP",
        ring.len()
    );
}

#[test]
fn some_rings_have_no_path_to_a_flagged_node() {
    let generator = Generator::new(GenOptions {
        accounts: 4_000,
        ..small(37)
    })
    .unwrap();
    let graph: Vec<GraphRecord> = generator.graph_records().collect();
    let hops = hops_to_flagged(&graph, 3);
    let world = &generator.world;
    let (linked, hidden): (Vec<_>, Vec<_>) = world.rings.iter().partition(|r| r.flagged.is_some());
    assert!(!linked.is_empty() && !hidden.is_empty());
    for ring in hidden {
        for &m in &ring.members {
            assert!(
                !hops.contains_key(&catalog::account_id(m)),
                "hidden ring member {m}"
            );
        }
    }
}

#[test]
fn mule_chain_members_are_within_three_hops_of_a_flagged_node() {
    let (graph, events) = generate(small(41));
    let hops = hops_to_flagged(&graph, 3);
    let mule = of_pattern(&events, FraudPattern::Mule);
    for e in &mule {
        assert!(hops.contains_key(&e.account_id), "{e:?}");
        if let Some(to) = &e.counterparty_id {
            assert!(hops.contains_key(to), "{e:?}");
        }
    }
    // The chain's transfers are known transfers in the graph.
    let known: HashSet<(&str, &str)> = graph
        .iter()
        .filter_map(|r| match r {
            GraphRecord::Edge {
                src,
                dst,
                rel: Relation::Transfers,
            } => Some((src.as_str(), dst.as_str())),
            _ => None,
        })
        .collect();
    for e in mule.iter().filter(|e| e.counterparty_id.is_some()) {
        let to = e.counterparty_id.as_deref().unwrap_or_default();
        assert!(known.contains(&(e.account_id.as_str(), to)), "{e:?}");
        assert_eq!(e.channel.as_deref(), Some("transfer"));
    }
}

#[test]
fn takeover_devices_and_ips_are_not_in_the_graph() {
    let (graph, events) = generate(small(43));
    let ids = node_ids(&graph);
    let takeover = of_pattern(&events, FraudPattern::Takeover);
    for e in &takeover {
        for id in [&e.device_id, &e.ip].into_iter().flatten() {
            assert!(!ids.contains(id.as_str()), "{e:?}");
        }
        let home_countries = &catalog::COUNTRIES[..catalog::HOME_COUNTRIES];
        let country = e.country.as_deref().unwrap_or_default();
        assert!(home_countries.iter().all(|c| c.code != country), "{e:?}");
    }
    let mean =
        |events: &[&Event]| events.iter().map(|e| e.amount).sum::<f64>() / events.len() as f64;
    let benign = of_pattern(&events, FraudPattern::None);
    assert!(mean(&takeover) > 5.0 * mean(&benign));
}

#[test]
fn velocity_attacks_are_many_payments_by_one_account_within_a_minute() {
    let (_, events) = generate(small(47));
    let velocity = of_pattern(&events, FraudPattern::Velocity);
    let in_burst = velocity
        .iter()
        .filter(|e| {
            velocity
                .iter()
                .filter(|o| {
                    o.account_id == e.account_id && (o.ts_ms - e.ts_ms).abs() < clock::MINUTE_MS
                })
                .count()
                >= 8
        })
        .count();
    // Only the last attack of the budget may be cut below eight payments.
    assert!(
        in_burst + 8 >= velocity.len(),
        "{in_burst} of {}",
        velocity.len()
    );
}

#[test]
fn benign_activity_is_skewed_and_follows_the_daily_cycle() {
    let (_, events) = generate(small(53));
    let benign = of_pattern(&events, FraudPattern::None);
    let mut per_account: HashMap<&str, usize> = HashMap::new();
    let (mut day, mut night) = (0, 0);
    for e in &benign {
        *per_account.entry(&e.account_id).or_default() += 1;
        match e.ts_ms.rem_euclid(clock::DAY_MS) / clock::HOUR_MS {
            1..=4 => night += 1,
            10..=13 => day += 1,
            _ => {}
        }
    }
    let mut counts: Vec<usize> = per_account.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let top: usize = counts.iter().take(counts.len() / 100).sum();
    assert!(
        top * 100 > benign.len() * 5,
        "top 1 % make {top} of {}",
        benign.len()
    );
    assert!(day > 5 * night, "day {day}, night {night}");
}

#[test]
fn invalid_options_are_rejected_with_readable_errors() {
    let cases = [
        (
            GenOptions {
                accounts: 99,
                ..small(1)
            },
            "--accounts = 99",
        ),
        (
            GenOptions {
                events: 0,
                ..small(1)
            },
            "--events = 0",
        ),
        (
            GenOptions {
                fraud_rate: 0.6,
                ..small(1)
            },
            "--fraud-rate = 0.6",
        ),
        (
            GenOptions {
                fraud_rate: -0.1,
                ..small(1)
            },
            "--fraud-rate = -0.1",
        ),
        (
            GenOptions {
                fraud_rate: f64::NAN,
                ..small(1)
            },
            "--fraud-rate = NaN",
        ),
        (
            GenOptions {
                start_ms: -1,
                ..small(1)
            },
            "--start = -1",
        ),
    ];
    for (opts, expected) in cases {
        let err = match Generator::new(opts) {
            Ok(_) => panic!("{expected} was accepted"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains(expected), "{err}");
        assert!(err.contains("must be"), "{err}");
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = GenOptions {
        accounts: 5,
        ..small(1)
    };
    assert!(write_dataset(&bad, dir.path(), |_| {}).is_err());
    assert!(!dir.path().join(MANIFEST_FILE).exists());
}

#[test]
fn unwritable_output_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = write_dataset(&small(1), &file, |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("not-a-dir"), "{err}");
}

#[test]
fn progress_reports_reach_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let mut reports = Vec::new();
    write_dataset(&small(59), dir.path(), |n| reports.push(n)).unwrap();
    assert_eq!(reports.last(), Some(&20_000));
    assert!(reports.windows(2).all(|w| w[0] <= w[1]));
}

/// Run with `cargo test --release -p riskstream-pipeline -- --ignored --nocapture
/// generation_rate` to see the generation rate of the default options.
#[test]
#[ignore = "timing: run in release mode"]
fn generation_rate_of_the_default_options() {
    let started = std::time::Instant::now();
    let generator = Generator::new(GenOptions::default()).unwrap();
    let built = started.elapsed();
    let started = std::time::Instant::now();
    let mut counts = PatternCounts::default();
    for e in generator.events() {
        counts.add(e.pattern);
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(counts, generator.plan());
    println!(
        "world built in {built:?}; {} events in {elapsed:.2} s = {:.0} events/s; {counts:?}; graph {:?}",
        counts.total(),
        counts.total() as f64 / elapsed,
        generator.graph_counts()
    );
}
