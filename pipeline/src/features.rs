//! Feature assembly: turns an event, its window aggregates, the snapshot's population
//! baselines and its graph answer into the model's feature vector.
//!
//! The vector's layout depends on the configured windows (`aggregate.windows`), so it is
//! described by a [`FeatureLayout`] built from the configuration; the model's metadata lists
//! the names it was trained with, and the job refuses to start when they differ.
//! Every feature is documented in [`FeatureLayout::describe`] (and in the model card,
//! `models/riskstream-v1/MODEL.md`).

use std::time::Duration;

use riskstream_graph::EntityKind;

use crate::aggregate::{CountryCode, EventAggregates};
use crate::enrich::{EventGraph, GraphStatus};
use crate::event::Event;

/// Which part of the pipeline produces a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Event,
    Window,
    Baseline,
    Graph,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Event => "event",
            Stage::Window => "window aggregate",
            Stage::Baseline => "snapshot baseline",
            Stage::Graph => "graph",
        }
    }
}

/// One feature: its name in the model metadata, a readable description and its stage.
#[derive(Debug, Clone)]
pub struct FeatureSpec {
    pub name: String,
    pub description: String,
    pub stage: Stage,
    /// How the raw value is turned into the model input (before the model's own
    /// standardisation with the training mean and standard deviation).
    pub transform: &'static str,
    /// What the model reads when the value does not exist for this event.
    pub missing: String,
}

/// The feature vector's layout for one configuration.
#[derive(Debug, Clone)]
pub struct FeatureLayout {
    specs: Vec<FeatureSpec>,
    windows: Vec<Duration>,
    max_hops: u32,
}

const CHANNELS: [&str; 4] = ["card", "online", "transfer", "atm"];
/// Z-scores are clipped so that one absurd amount cannot dominate the network.
const Z_CLIP: f32 = 10.0;
/// Bound on every model input. Finite aggregates give transformed values far inside it
/// (`ln(1 + f64::MAX)` is about 710), so it only ever replaces a value that would
/// otherwise be infinite, which the model refuses: one event's values must never stop
/// scoring. Small enough that the model's standardisation stays finite.
const MODEL_INPUT_BOUND: f32 = 1.0e6;

/// `x` made finite for the model: NaN reads as 0 (no signal), anything else is clamped to
/// ±[`MODEL_INPUT_BOUND`].
fn bounded_input(x: f32) -> f32 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(-MODEL_INPUT_BOUND, MODEL_INPUT_BOUND)
    }
}

/// A raw value as shown in reasons: values beyond `f32` read as ±[`f32::MAX`] rather than
/// infinity (which JSON cannot carry), NaN as 0.
fn bounded_raw(x: f64) -> f32 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(-f64::from(f32::MAX), f64::from(f32::MAX)) as f32
    }
}

/// The readable label of a window: `1m`, `1h`, `24h`, `30s`, `500ms`.
pub fn window_label(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let s = ms / 1000;
    if s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

fn ln1p(x: f64) -> f32 {
    x.max(0.0).ln_1p() as f32
}

fn flag(b: bool) -> f32 {
    if b {
        1.0
    } else {
        0.0
    }
}

impl FeatureLayout {
    /// The layout for the given windows and graph hop limit.
    pub fn new(windows: &[Duration], max_hops: u32) -> Self {
        let mut specs = Vec::new();
        let mut add = |name: String, description: String, stage, transform, missing: String| {
            specs.push(FeatureSpec {
                name,
                description,
                stage,
                transform,
                missing,
            })
        };
        add(
            "amount_log".into(),
            "payment amount".into(),
            Stage::Event,
            "ln(1+x)",
            "never missing: amount is required".into(),
        );
        add(
            "hour_sin".into(),
            "time of day (UTC), sine".into(),
            Stage::Event,
            "sin(2π·hour/24)",
            "never missing: ts is required".into(),
        );
        add(
            "hour_cos".into(),
            "time of day (UTC), cosine".into(),
            Stage::Event,
            "cos(2π·hour/24)",
            "never missing: ts is required".into(),
        );
        for ch in CHANNELS {
            add(
                format!("channel_{ch}"),
                format!("channel is {ch}"),
                Stage::Event,
                "0/1",
                "all four 0 when the channel is absent or not one of these".into(),
            );
        }
        add(
            "has_counterparty".into(),
            "payment to another account".into(),
            Stage::Event,
            "0/1",
            "0 when absent (this is the indicator)".into(),
        );
        add(
            "country_changed".into(),
            "country differs from the account's previous payment".into(),
            Stage::Window,
            "0/1",
            "0 when either country is unknown or the account is new".into(),
        );
        for (kind, who) in [
            (EntityKind::Account, "the account"),
            (EntityKind::Device, "the device"),
            (EntityKind::Ip, "the IP address"),
            (EntityKind::Merchant, "the merchant"),
        ] {
            let k = kind.as_str();
            for w in windows {
                let w = window_label(*w);
                add(
                    format!("{k}_count_{w}"),
                    format!("payments by {who} in the last {w}"),
                    Stage::Window,
                    "ln(1+x)",
                    if kind == EntityKind::Account {
                        "never missing: the event itself is counted".into()
                    } else {
                        format!("0 when the event names no {k} (see {k}_missing)")
                    },
                );
                if kind == EntityKind::Account {
                    add(
                        format!("{k}_sum_{w}"),
                        format!("amount paid by {who} in the last {w}"),
                        Stage::Window,
                        "ln(1+x)",
                        "never missing: the event itself is counted".into(),
                    );
                }
            }
            match kind {
                EntityKind::Account => {
                    add(
                        "account_distinct_cp".into(),
                        "distinct counterparties of the account".into(),
                        Stage::Window,
                        "ln(1+x)",
                        "0 without counterparties".into(),
                    );
                    add(
                        "account_age_h".into(),
                        "hours since the account was first seen".into(),
                        Stage::Window,
                        "ln(1+x)",
                        "0 for a new account (see account_new)".into(),
                    );
                    add(
                        "account_gap_s".into(),
                        "seconds since the account's previous payment".into(),
                        Stage::Window,
                        "ln(1+x), 0 if none",
                        "0 for a new account (see account_new)".into(),
                    );
                    add(
                        "account_new".into(),
                        "first payment seen from the account".into(),
                        Stage::Window,
                        "0/1",
                        "never missing".into(),
                    );
                    add(
                        "account_amount_ratio".into(),
                        "amount against the account's mean amount".into(),
                        Stage::Window,
                        "ln(1+amount) − ln(1+mean), longest window",
                        "0 for a new account (the mean is this amount)".into(),
                    );
                }
                EntityKind::Device | EntityKind::Ip => {
                    add(
                        format!("{k}_age_h"),
                        format!("hours since {who} was first seen"),
                        Stage::Window,
                        "ln(1+x)",
                        format!("0 when the event names no {k} (see {k}_missing)"),
                    );
                    add(
                        format!("{k}_new"),
                        format!("first payment seen from {who}"),
                        Stage::Window,
                        "0/1",
                        format!("0 when the event names no {k} (see {k}_missing)"),
                    );
                    add(
                        format!("{k}_missing"),
                        format!("event names no {k}"),
                        Stage::Event,
                        "0/1",
                        "never missing (this is the indicator)".into(),
                    );
                }
                EntityKind::Merchant => {
                    add(
                        "merchant_missing".into(),
                        "event names no merchant".into(),
                        Stage::Event,
                        "0/1",
                        "never missing (this is the indicator)".into(),
                    );
                }
            }
        }
        add(
            "merchant_amount_z".into(),
            "amount against the merchant's usual amounts".into(),
            Stage::Baseline,
            "(amount − mean)/std, clipped to ±10, 0 if no baseline",
            "0 when the merchant has no baseline yet (see merchant_baseline_missing)".into(),
        );
        add(
            "merchant_baseline_missing".into(),
            "no baseline for the merchant yet".into(),
            Stage::Baseline,
            "0/1",
            "never missing (this is the indicator)".into(),
        );
        add(
            "graph_proximity".into(),
            format!("closeness to known fraud in the entity graph (within {max_hops} hops)"),
            Stage::Graph,
            "(max_hops+1−hops)/(max_hops+1), 0 if none within max_hops",
            "0 when no flagged entity within max_hops, or no graph answer (see graph_unavailable)"
                .into(),
        );
        add(
            "graph_flagged_nearby".into(),
            "known-fraud entities near the event's entities".into(),
            Stage::Graph,
            "ln(1+x)",
            "0 when none, or no graph answer (see graph_unavailable)".into(),
        );
        add(
            "graph_known".into(),
            "an entity of the event is in the graph".into(),
            Stage::Graph,
            "0/1",
            "0 when unknown, or no graph answer (see graph_unavailable)".into(),
        );
        add(
            "graph_device_accounts".into(),
            "entities linked to the event's device in the graph (accounts that used it)".into(),
            Stage::Graph,
            "ln(1+x)",
            "0 when the event names no device, the graph does not know it, or no graph answer \
             (see graph_unavailable)"
                .into(),
        );
        add(
            "graph_ip_accounts".into(),
            "entities linked to the event's IP address in the graph (accounts that used it)".into(),
            Stage::Graph,
            "ln(1+x)",
            "0 when the event names no IP address, the graph does not know it, or no graph \
             answer (see graph_unavailable)"
                .into(),
        );
        add(
            "graph_unavailable".into(),
            "graph answer missing (unavailable or skipped)".into(),
            Stage::Graph,
            "0/1",
            "never missing (this is the indicator)".into(),
        );
        FeatureLayout {
            specs,
            windows: windows.to_vec(),
            max_hops,
        }
    }

    pub fn len(&self) -> usize {
        self.specs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }

    pub fn names(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.name.clone()).collect()
    }

    /// Each graph feature by name with the model input it reads when the graph gave no
    /// answer (`graph.status` `unavailable` or `skipped`): what [`FeatureLayout::assemble`]
    /// writes then, whatever the event. Training drops the graph features of a share of
    /// its rows to these values, so that the model learns to score an outage.
    pub fn graph_unavailable_inputs(&self) -> Vec<(String, f32)> {
        let event = Event::bare("", 0, "", 0.0);
        let graph = EventGraph::without(GraphStatus::Unavailable);
        let (mut model, mut raw) = (vec![0.0; self.len()], vec![0.0; self.len()]);
        self.assemble(
            &event,
            &EventAggregates::default(),
            None,
            &graph,
            &mut model,
            &mut raw,
        );
        self.specs
            .iter()
            .zip(model)
            .filter(|(spec, _)| spec.stage == Stage::Graph)
            .map(|(spec, value)| (spec.name.clone(), value))
            .collect()
    }

    /// Every feature with its description, stage and transform.
    pub fn describe(&self) -> &[FeatureSpec] {
        &self.specs
    }

    /// The feature reference as a Markdown table, one row per feature in model order. The
    /// model card's table is this output for the default configuration, checked by a test, so
    /// that the documentation cannot drift from the code.
    pub fn markdown_table(&self) -> String {
        let mut out = String::from(
            "| # | feature | stage | meaning | model input | when missing |\n|---|---|---|---|---|---|\n",
        );
        for (i, f) in self.specs.iter().enumerate() {
            out.push_str(&format!(
                "| {i} | `{}` | {} | {} | {} | {} |\n",
                f.name,
                f.stage.as_str(),
                f.description,
                f.transform,
                f.missing
            ));
        }
        out
    }

    /// Writes the features of one event. `model` receives the transformed values the model
    /// reads; `raw` the untransformed values that reasons show to people. Both must be
    /// `self.len()` long. Every value written is finite, whatever the event and its
    /// aggregates hold (model inputs are bounded by [`MODEL_INPUT_BOUND`]).
    pub fn assemble(
        &self,
        event: &Event,
        aggs: &EventAggregates,
        baseline: Option<(f64, f64)>,
        graph: &EventGraph,
        model: &mut [f32],
        raw: &mut [f32],
    ) {
        debug_assert_eq!(
            model.len(),
            self.len(),
            "feature buffer has the layout's length"
        );
        let mut i = 0;
        let mut put = |m: f32, r: f64| {
            model[i] = bounded_input(m);
            raw[i] = bounded_raw(r);
            i += 1;
        };
        let amount = event.amount;
        put(ln1p(amount), amount);
        let hour = (event.ts_ms.rem_euclid(86_400_000) as f64) / 3_600_000.0;
        let angle = hour / 24.0 * std::f64::consts::TAU;
        put(angle.sin() as f32, hour);
        put(angle.cos() as f32, hour);
        let channel = event.channel.as_deref().unwrap_or("");
        for ch in CHANNELS {
            let b = channel == ch;
            put(flag(b), f64::from(flag(b)));
        }
        let b = event.counterparty_id.is_some();
        put(flag(b), f64::from(flag(b)));

        let account = aggs.get(EntityKind::Account);
        let now = event.country.as_deref().and_then(CountryCode::from_name);
        let changed = match (account.and_then(|v| v.previous_country), now) {
            (Some(prev), Some(now)) => prev != now,
            _ => false,
        };
        put(flag(changed), f64::from(flag(changed)));

        for kind in [
            EntityKind::Account,
            EntityKind::Device,
            EntityKind::Ip,
            EntityKind::Merchant,
        ] {
            let kv = aggs.get(kind);
            for w in 0..self.windows.len() {
                let (count, sum) = kv
                    .map(|v| (v.windows.count(w), v.windows.sum(w)))
                    .unwrap_or((0, 0.0));
                put(ln1p(f64::from(count)), f64::from(count));
                if kind == EntityKind::Account {
                    put(ln1p(sum), sum);
                }
            }
            let age_h = kv
                .map(|v| (event.ts_ms - v.first_seen_ms).max(0) as f64 / 3.6e6)
                .unwrap_or(0.0);
            let is_new = kv.is_some_and(|v| v.previous_last_seen_ms.is_none());
            match kind {
                EntityKind::Account => {
                    let distinct = kv
                        .map(|v| f64::from(v.distinct_counterparties))
                        .unwrap_or(0.0);
                    put(ln1p(distinct), distinct);
                    put(ln1p(age_h), age_h);
                    let gap_s = kv
                        .and_then(|v| v.previous_last_seen_ms)
                        .map(|p| (event.ts_ms - p).max(0) as f64 / 1000.0)
                        .unwrap_or(0.0);
                    put(ln1p(gap_s), gap_s);
                    put(flag(is_new), f64::from(flag(is_new)));
                    let longest = self.windows.len().saturating_sub(1);
                    let mean = kv
                        .map(|v| (v.windows.count(longest), v.windows.sum(longest)))
                        .filter(|(c, _)| *c > 0)
                        .map(|(c, s)| s / f64::from(c))
                        .unwrap_or(amount);
                    let ratio = ln1p(amount) - ln1p(mean);
                    put(ratio, amount / mean.max(0.01));
                }
                EntityKind::Device | EntityKind::Ip => {
                    put(ln1p(age_h), age_h);
                    put(flag(is_new), f64::from(flag(is_new)));
                    let missing = kv.is_none();
                    put(flag(missing), f64::from(flag(missing)));
                }
                EntityKind::Merchant => {
                    let missing = kv.is_none();
                    put(flag(missing), f64::from(flag(missing)));
                }
            }
        }

        match baseline {
            Some((mean, std)) if std > 0.0 => {
                let z = ((amount - mean) / std) as f32;
                let z = z.clamp(-Z_CLIP, Z_CLIP);
                put(z, f64::from(z));
                put(0.0, 0.0);
            }
            _ => {
                put(0.0, 0.0);
                put(1.0, 1.0);
            }
        }

        let hops_limit = f64::from(self.max_hops) + 1.0;
        let proximity = graph
            .hops()
            .map(|h| (hops_limit - f64::from(h)) / hops_limit)
            .unwrap_or(0.0);
        put(
            proximity as f32,
            graph.hops().map(f64::from).unwrap_or(-1.0),
        );
        let nearby = f64::from(graph.flagged_nearby);
        put(ln1p(nearby), nearby);
        put(flag(graph.known), f64::from(flag(graph.known)));
        for linked in [graph.device_neighbours, graph.ip_neighbours] {
            let linked = f64::from(linked);
            put(ln1p(linked), linked);
        }
        let unavailable = graph.status != GraphStatus::Ok;
        put(flag(unavailable), f64::from(flag(unavailable)));
        debug_assert_eq!(i, self.len(), "assemble wrote every feature of the layout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_labels_read_like_the_config() {
        assert_eq!(window_label(Duration::from_secs(60)), "1m");
        assert_eq!(window_label(Duration::from_secs(3600)), "1h");
        assert_eq!(window_label(Duration::from_secs(86_400)), "24h");
        assert_eq!(window_label(Duration::from_secs(90)), "90s");
        assert_eq!(window_label(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn layout_names_are_unique_and_follow_the_windows() {
        let windows = [60, 3600, 86_400].map(Duration::from_secs);
        let layout = FeatureLayout::new(&windows, 3);
        let names = layout.names();
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert!(names.contains(&"account_count_1m".to_string()));
        assert!(names.contains(&"ip_count_24h".to_string()));
        assert!(names.contains(&"graph_proximity".to_string()));
    }

    /// Where the generated table sits in the model card.
    const TABLE_START: &str =
        "<!-- feature-table:start (generated from pipeline/src/features.rs) -->\n";
    const TABLE_END: &str = "<!-- feature-table:end -->";

    #[test]
    fn the_model_card_feature_table_matches_the_code() {
        let config = riskstream_config::Config::default();
        let layout = FeatureLayout::new(&config.aggregate.windows, config.graph.max_hops);
        let expected = layout.markdown_table();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/riskstream-v1/MODEL.md");
        let card = std::fs::read_to_string(&path).expect("the model card beside the model");
        let start = card.find(TABLE_START).map(|i| i + TABLE_START.len());
        let end = card.find(TABLE_END);
        let (Some(start), Some(end)) = (start, end) else {
            panic!("MODEL.md lacks the feature table markers; add them around:\n{expected}");
        };
        if std::env::var_os("RISKSTREAM_BLESS_MODEL_CARD").is_some() {
            let updated = format!("{}{expected}{}", &card[..start], &card[end..]);
            std::fs::write(&path, updated).expect("MODEL.md is writable");
            return;
        }
        assert_eq!(
            &card[start..end],
            expected,
            "the feature table in models/riskstream-v1/MODEL.md is out of date; rerun this \
             test with RISKSTREAM_BLESS_MODEL_CARD=1 to regenerate it"
        );
    }

    #[test]
    fn features_of_absurd_amounts_are_all_finite() {
        let event = |id: &str, amount: f64| Event {
            merchant_id: Some("M-1".into()),
            ..Event::bare(id, 0, "A-1", amount)
        };
        let options = crate::aggregate::AggregateOptions::default();
        let aggregator = crate::aggregate::Aggregator::new(options.clone()).unwrap();
        let events = [
            event("e-1", 1e308),
            event("e-2", 1e308),
            event("e-3", -f64::MAX),
        ];
        let aggs = aggregator.apply_batch(&events);
        let layout = FeatureLayout::new(&options.windows, 3);
        let graph = EventGraph::without(GraphStatus::Skipped);
        let (mut model, mut raw) = (vec![f32::NAN; layout.len()], vec![f32::NAN; layout.len()]);
        for (event, aggs) in events.iter().zip(&aggs) {
            for baseline in [
                None,
                Some((-f64::MAX, f64::MIN_POSITIVE)),
                Some((0.0, f64::NAN)),
            ] {
                layout.assemble(event, aggs, baseline, &graph, &mut model, &mut raw);
                assert!(
                    model.iter().chain(&raw).all(|v| v.is_finite()),
                    "{}: {model:?} {raw:?}",
                    event.event_id
                );
            }
        }
    }

    #[test]
    fn model_inputs_are_bounded_and_nan_reads_as_zero() {
        assert_eq!(bounded_input(f32::INFINITY), MODEL_INPUT_BOUND);
        assert_eq!(bounded_input(f32::NEG_INFINITY), -MODEL_INPUT_BOUND);
        assert_eq!(bounded_input(f32::NAN), 0.0);
        assert_eq!(bounded_input(3.5), 3.5);
        assert_eq!(bounded_raw(1e308), f32::MAX);
    }

    #[test]
    fn graph_features_land_under_their_names() {
        let event = Event {
            device_id: Some("D-1".into()),
            ..Event::bare("e-1", 0, "A-1", 10.0)
        };
        let options = crate::aggregate::AggregateOptions::default();
        let aggregator = crate::aggregate::Aggregator::new(options.clone()).unwrap();
        let aggs = aggregator.apply_batch(std::slice::from_ref(&event));
        let mut graph = EventGraph::without(GraphStatus::Ok);
        graph.known = true;
        graph.device_neighbours = 8;
        let layout = FeatureLayout::new(&options.windows, 3);
        let (mut model, mut raw) = (vec![f32::NAN; layout.len()], vec![f32::NAN; layout.len()]);
        layout.assemble(&event, &aggs[0], None, &graph, &mut model, &mut raw);
        let at = |name: &str| layout.names().iter().position(|n| n == name).unwrap();
        let device = at("graph_device_accounts");
        assert_eq!((model[device], raw[device]), (9f32.ln(), 8.0));
        assert_eq!(
            (model[at("graph_ip_accounts")], raw[at("graph_ip_accounts")]),
            (0.0, 0.0)
        );
        assert_eq!(model[at("graph_known")], 1.0);
        assert_eq!(model[at("graph_unavailable")], 0.0);
        assert!(model.iter().chain(&raw).all(|v| v.is_finite()));
    }

    #[test]
    fn graph_unavailable_inputs_are_what_an_event_without_a_graph_answer_reads() {
        let event = Event {
            device_id: Some("D-1".into()),
            ip: Some("203.0.113.7".into()),
            ..Event::bare("e-1", 5_000, "A-1", 250.0)
        };
        let options = crate::aggregate::AggregateOptions::default();
        let aggregator = crate::aggregate::Aggregator::new(options.clone()).unwrap();
        let aggs = aggregator.apply_batch(std::slice::from_ref(&event));
        let layout = FeatureLayout::new(&options.windows, 3);
        let (mut model, mut raw) = (vec![f32::NAN; layout.len()], vec![f32::NAN; layout.len()]);
        let inputs = layout.graph_unavailable_inputs();
        let graph_features = layout
            .describe()
            .iter()
            .filter(|f| f.stage == Stage::Graph)
            .count();
        assert_eq!(inputs.len(), graph_features);
        let names = layout.names();
        for status in [GraphStatus::Unavailable, GraphStatus::Skipped] {
            let graph = EventGraph::without(status);
            layout.assemble(&event, &aggs[0], None, &graph, &mut model, &mut raw);
            for (name, value) in &inputs {
                let at = names.iter().position(|n| n == name).unwrap();
                assert_eq!(model[at], *value, "{name} with status {status:?}");
            }
        }
        assert!(inputs.contains(&("graph_unavailable".to_owned(), 1.0)));
    }

    #[test]
    fn every_feature_says_how_a_missing_value_is_encoded() {
        let layout = FeatureLayout::new(&[Duration::from_secs(60)], 3);
        for f in layout.describe() {
            assert!(
                !f.missing.trim().is_empty(),
                "{} has no missing-value rule",
                f.name
            );
            assert!(
                !f.transform.trim().is_empty(),
                "{} has no transform",
                f.name
            );
        }
    }

    #[test]
    fn the_shipped_model_reads_the_features_of_the_default_configuration() {
        let config = riskstream_config::Config::default();
        let layout = FeatureLayout::new(&config.aggregate.windows, config.graph.max_hops);
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/riskstream-v1");
        let model =
            riskstream_inference::Model::load(&dir, riskstream_inference::DeviceChoice::Cpu)
                .expect("the shipped model loads");
        assert_eq!(model.feature_names(), layout.names().as_slice());
    }
}
