//! Synthetic data: entity graph, events and fraud labels, reproducible by seed.
//!
//! `riskstream gen` and the job's built-in source use this module to produce realistic
//! transaction traffic with known fraud, so the pipeline can be run, trained and
//! benchmarked without production data. The same [`GenOptions`] with the same build
//! always produce byte-identical files.
//!
//! # Entities and the graph file
//!
//! A world is built up front from `seed` and `accounts` only (so the graph does not change
//! when `events` or `fraud_rate` change), in memory proportional to `accounts`:
//!
//! * accounts `A-000123`, each living in a home country (DE, FR, NL, …) with its currency,
//!   1–3 devices `D-000123`, 1–2 home IPs (unique dotted quads), 0–3 earlier payees and a
//!   handful of favourite merchants;
//! * merchants `M-000123` (one per 20 accounts, at least 20), each in a category with a
//!   log-normal amount profile, with Zipf-skewed popularity;
//! * noise that makes single signals unreliable: households sharing a device and IP,
//!   shared carrier/office IPs behind which many accounts appear, ordinary accounts that
//!   used a flagged account's IP, a flagged account with a past transfer to an ordinary
//!   one, customers who own a merchant.
//!
//! `graph.jsonl` holds one [`riskstream_graph::GraphRecord`] per line: every node first
//! (accounts, devices, IPs, merchants; `flagged` marks known fraud), then the edges:
//! `uses` (account → device, account → IP), `transfers` (account → account: known past
//! transfers) and `owns` (account → merchant, rare). Accounts are *not* linked to the
//! merchants they pay: that would put everyone within two hops of everyone. Devices and
//! IPs seen for the first time in the event stream (a new phone, a hotel, a fraudster's
//! machine) are not in the graph.
//!
//! # Benign traffic
//!
//! Events are spread over a span chosen so an average account makes about three
//! transactions a day (at least one day, at most a year), starting at `start_ms`. The rate
//! follows a daily cycle (UTC: busy in the day and evening, quiet at night), and accounts
//! are picked with Zipf-skewed activity (the busiest accounts transact about twenty times
//! as often as the average one). An event is a card payment (often without a device, never
//! with an IP), an online payment, a P2P transfer to an earlier payee (sometimes a new
//! one), or an ATM withdrawal. Amounts come from the merchant's profile (P2P and ATM have
//! their own), with an occasional unusually large purchase or transfer. Accounts sometimes travel
//! (days abroad: foreign country, local currency, a hotel IP), sometimes get a new phone,
//! and sometimes make a quick series of purchases, so "new device", "new country", "large
//! amount" and "several payments in minutes" each happen in benign traffic too.
//!
//! # Fraud patterns
//!
//! A fraction `fraud_rate` of all events is fraud, split 30 % ring, 25 % velocity,
//! 20 % mule, 25 % takeover. Fraud arrives in episodes spread evenly over the span; every
//! event of an episode is labelled with its pattern. Rings and mules are run by people
//! and follow the daily cycle like benign traffic; velocity attacks and takeovers come at
//! any hour.
//!
//! * `ring` — one ring per 500 accounts (at least two) of 3–8 accounts that share 1–2
//!   devices and 1–2 IPs. Three rings in four also share them with a flagged account, so
//!   the shared device or IP is one hop and the member two hops from known fraud; the
//!   fourth ring has no graph signal at all. Members only make ring payments: bursts of
//!   3–12 payments within minutes to hours, mostly online, mostly at high-risk merchants,
//!   1.3–3.5 times the merchant's typical amount.
//! * `velocity` — an ordinary account makes 8–30 small-to-medium payments (1–150) within
//!   one minute, usually online, often at a merchant it never used, often from an unknown
//!   device or IP. No graph signal.
//! * `mule` — one chain per 500 accounts (at least two) of 2–4 recruited ordinary
//!   accounts. An episode passes money along the chain (`transfer` events A → B → C, each
//!   1–10 minutes after the previous, amounts around 1,200 (200 to 9,500) decreasing by 1–5 % a hop)
//!   and the last account cashes out (ATM withdrawal or a transfer to the herder). In the
//!   graph a flagged herder has transferred to the first account, each member to the next,
//!   and the last back to the herder, so every member is within three hops of known
//!   fraud. The members keep their ordinary traffic, which is benign.
//! * `takeover` — an ordinary account suddenly makes 2–6 large payments or transfers
//!   within an hour from a device and an IP the graph does not know, in a country it does
//!   not live in (some of which benign travellers visit too).
//!
//! # Output files
//!
//! [`write_dataset`] writes into one directory:
//!
//! * `events.jsonl` — the events in time order (ties in a fixed order), in wire form
//!   ([`crate::event::EventRecord`]); ids `e-00000000`, `e-00000001`, … in stream order;
//! * `labels.jsonl` — one line per event, in the same order:
//!   `{"event_id":"e-00000017","fraud":true,"pattern":"ring"}` (`"none"` when benign);
//! * `graph.jsonl` — the entity graph described above;
//! * `manifest.json` — the options, the counts (events, fraud per pattern, accounts,
//!   nodes, edges, flagged), the time span and notes on the formats. It is written last,
//!   so a directory without it is incomplete.
//!
//! # Knobs
//!
//! [`GenOptions`]: `seed`, `events`, `accounts`, `fraud_rate`, `start_ms`. The realism
//! constants (country and merchant tables, the daily cycle) live in `catalog.rs`; the
//! per-pattern shares and sizes next to their patterns in `fraud.rs`.

mod benign;
mod catalog;
mod clock;
mod entities;
mod fraud;
mod stream;
mod write;

use std::sync::Arc;

use rand::SeedableRng;
use serde::{Deserialize, Serialize};

pub use entities::GraphCounts;
pub use stream::EventStream;
pub use write::{write_dataset, GenSummary, EVENTS_FILE, GRAPH_FILE, LABELS_FILE, MANIFEST_FILE};

use crate::event::Event;
use entities::World;

/// The random generator behind everything: fast, seedable, with independent streams.
pub(crate) type GenRng = rand_chacha::ChaCha8Rng;

/// Independent random streams, so the world does not depend on the event options.
const WORLD_STREAM: u64 = 0;
const BENIGN_STREAM: u64 = 1;
const FRAUD_STREAM: u64 = 2;

fn rng_for(seed: u64, stream: u64) -> GenRng {
    let mut rng = GenRng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// 2026-11-01T00:00:00Z, the default start of generated traffic.
pub const DEFAULT_START_MS: i64 = 1_793_491_200_000;
/// 8000-01-01T00:00:00Z: later starts are rejected (the span must stay representable).
/// The limits are the configuration's, so `config check` applies the same rules.
const MAX_START_MS: i64 = riskstream_config::GENERATOR_MAX_START_MS;
pub(crate) const MIN_ACCOUNTS: u64 = riskstream_config::GENERATOR_MIN_ACCOUNTS;
pub(crate) const MAX_ACCOUNTS: u64 = riskstream_config::GENERATOR_MAX_ACCOUNTS;
pub(crate) const MAX_FRAUD_RATE: f64 = 0.5;
/// Benign transactions per account per day that the span is chosen for.
const DAILY_RATE_PER_ACCOUNT: f64 = 3.0;

/// What to generate. Equal options give byte-identical output.
#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    /// Seeds every random choice.
    pub seed: u64,
    /// Number of events, benign and fraud together (at least 1).
    pub events: u64,
    /// Number of accounts (100 to 10,000,000); devices, IPs and merchants scale with it.
    pub accounts: u64,
    /// Fraction of events that are fraud, 0 to 0.5.
    pub fraud_rate: f64,
    /// Start of the time span, milliseconds since the Unix epoch (UTC).
    pub start_ms: i64,
}

impl Default for GenOptions {
    /// One million events over 20,000 accounts (about 17 days), 2 % fraud, seed 42,
    /// starting 2026-11-01T00:00:00Z.
    fn default() -> GenOptions {
        GenOptions {
            seed: 42,
            events: 1_000_000,
            accounts: 20_000,
            fraud_rate: 0.02,
            start_ms: DEFAULT_START_MS,
        }
    }
}

impl GenOptions {
    /// Checks every option, naming the first bad one, its value and the accepted range.
    pub fn validate(&self) -> Result<(), GenError> {
        let invalid = |option, value: String, reason| {
            Err(GenError::InvalidOption {
                option,
                value,
                reason,
            })
        };
        if !(MIN_ACCOUNTS..=MAX_ACCOUNTS).contains(&self.accounts) {
            return invalid(
                "--accounts",
                self.accounts.to_string(),
                "must be between 100 (so fraud rings, mule chains and flagged accounts fit \
                 among ordinary accounts) and 10000000 (the world is built in memory)",
            );
        }
        if self.events == 0 {
            return invalid("--events", "0".to_owned(), "must be at least 1");
        }
        if !(0.0..=MAX_FRAUD_RATE).contains(&self.fraud_rate) {
            return invalid(
                "--fraud-rate",
                self.fraud_rate.to_string(),
                "must be a fraction between 0 and 0.5, for example 0.02 for 2 % fraud",
            );
        }
        if !(riskstream_config::GENERATOR_MIN_START_MS..=MAX_START_MS).contains(&self.start_ms) {
            return invalid(
                "--start",
                self.start_ms.to_string(),
                "must be between 1970-01-01T00:00:00Z and 8000-01-01T00:00:00Z \
                 (milliseconds since the Unix epoch)",
            );
        }
        Ok(())
    }

    /// The time span the events are spread over: about three transactions per account
    /// per day, at least one day and at most a year, in whole minutes.
    pub(crate) fn span_ms(&self) -> i64 {
        let days = self.events as f64 / (self.accounts as f64 * DAILY_RATE_PER_ACCOUNT);
        let ms =
            (days * clock::DAY_MS as f64).clamp(clock::DAY_MS as f64, 365.0 * clock::DAY_MS as f64);
        (ms / clock::MINUTE_MS as f64).round() as i64 * clock::MINUTE_MS
    }
}

/// Why generation could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// An option is outside its accepted range.
    #[error("invalid generator option {option} = {value}: {reason}")]
    InvalidOption {
        option: &'static str,
        value: String,
        reason: &'static str,
    },
    /// An output file or directory could not be created or written.
    #[error("cannot write {}: {source}; check that the directory is writable and the disk is not full", path.display())]
    Write {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Which fraud pattern produced an event (`None` for benign traffic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FraudPattern {
    None,
    Ring,
    Velocity,
    Mule,
    Takeover,
}

impl FraudPattern {
    /// Every pattern, benign first, in the order counts are reported.
    pub const ALL: [FraudPattern; 5] = [
        FraudPattern::None,
        FraudPattern::Ring,
        FraudPattern::Velocity,
        FraudPattern::Mule,
        FraudPattern::Takeover,
    ];

    /// The name used in labels, manifests and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            FraudPattern::None => "none",
            FraudPattern::Ring => "ring",
            FraudPattern::Velocity => "velocity",
            FraudPattern::Mule => "mule",
            FraudPattern::Takeover => "takeover",
        }
    }

    /// Whether events of this pattern are fraud.
    pub fn is_fraud(self) -> bool {
        self != FraudPattern::None
    }
}

impl std::fmt::Display for FraudPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One generated event with its ground truth: `fraud` is true exactly when `pattern` is
/// not `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledEvent {
    pub event: Event,
    pub fraud: bool,
    pub pattern: FraudPattern,
}

/// Event counts per pattern: what a stream will produce, or what was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PatternCounts {
    pub none: u64,
    pub ring: u64,
    pub velocity: u64,
    pub mule: u64,
    pub takeover: u64,
}

impl PatternCounts {
    /// The count for one pattern.
    pub fn get(&self, pattern: FraudPattern) -> u64 {
        match pattern {
            FraudPattern::None => self.none,
            FraudPattern::Ring => self.ring,
            FraudPattern::Velocity => self.velocity,
            FraudPattern::Mule => self.mule,
            FraudPattern::Takeover => self.takeover,
        }
    }

    fn slot(&mut self, pattern: FraudPattern) -> &mut u64 {
        match pattern {
            FraudPattern::None => &mut self.none,
            FraudPattern::Ring => &mut self.ring,
            FraudPattern::Velocity => &mut self.velocity,
            FraudPattern::Mule => &mut self.mule,
            FraudPattern::Takeover => &mut self.takeover,
        }
    }

    pub(crate) fn add(&mut self, pattern: FraudPattern) {
        *self.slot(pattern) += 1;
    }

    /// Fraud events of all patterns.
    pub fn fraud(&self) -> u64 {
        self.ring + self.velocity + self.mule + self.takeover
    }

    /// All events.
    pub fn total(&self) -> u64 {
        self.none + self.fraud()
    }

    /// Splits `events` into benign and per-pattern fraud counts: `round(events ×
    /// fraud_rate)` fraud events shared by [`fraud::SHARES`], remainders to the largest
    /// fractions, so the counts add up exactly.
    fn plan(events: u64, fraud_rate: f64) -> PatternCounts {
        let fraud = ((events as f64 * fraud_rate).round() as u64).min(events);
        let mut counts = PatternCounts {
            none: events - fraud,
            ..PatternCounts::default()
        };
        let exact: Vec<(FraudPattern, f64)> = fraud::SHARES
            .iter()
            .map(|&(pattern, share)| (pattern, fraud as f64 * share))
            .collect();
        let mut given = 0;
        for &(pattern, x) in &exact {
            *counts.slot(pattern) = x.floor() as u64;
            given += x.floor() as u64;
        }
        let mut by_remainder = exact.clone();
        by_remainder.sort_by(|a, b| (b.1 - b.1.floor()).total_cmp(&(a.1 - a.1.floor())));
        for &(pattern, _) in by_remainder.iter().cycle().take((fraud - given) as usize) {
            *counts.slot(pattern) += 1;
        }
        counts
    }
}

/// The generator: the world (entities and graph) built from the options, from which any
/// number of identical event streams can be started.
pub struct Generator {
    opts: GenOptions,
    plan: PatternCounts,
    span_ms: i64,
    world: Arc<World>,
}

impl Generator {
    /// Validates the options and builds the entities and the graph (memory proportional
    /// to `accounts`; about a second for a million accounts).
    pub fn new(opts: GenOptions) -> Result<Generator, GenError> {
        opts.validate()?;
        let accounts =
            u32::try_from(opts.accounts).expect("validate() caps accounts far below u32::MAX");
        let world = World::build(accounts, &mut rng_for(opts.seed, WORLD_STREAM));
        Ok(Generator {
            plan: PatternCounts::plan(opts.events, opts.fraud_rate),
            span_ms: opts.span_ms(),
            world: Arc::new(world),
            opts,
        })
    }

    /// The (validated) options this generator was built from.
    pub fn options(&self) -> &GenOptions {
        &self.opts
    }

    /// How many events of each pattern [`Generator::events`] yields (exactly).
    pub fn plan(&self) -> PatternCounts {
        self.plan
    }

    /// Start and end (exclusive) of the span benign traffic and fraud episodes start in,
    /// in milliseconds since the epoch. Events of an episode that starts near the end may
    /// fall up to a few hours after it.
    pub fn span(&self) -> (i64, i64) {
        (self.opts.start_ms, self.opts.start_ms + self.span_ms)
    }

    /// What [`Generator::graph_records`] yields: nodes per kind, edges, flagged nodes.
    pub fn graph_counts(&self) -> GraphCounts {
        self.world.counts()
    }

    /// The graph file's records: all nodes, then all edges (edges name only listed
    /// nodes). Ids are formatted on the fly, so this does not double the memory.
    pub fn graph_records(&self) -> impl Iterator<Item = riskstream_graph::GraphRecord> + '_ {
        self.world.records()
    }

    /// A new stream of all `events` events in time order, from the beginning: every call
    /// yields the same sequence. The stream owns what it needs (`'static`, `Send`), so it
    /// can be moved into a source task; its memory does not grow with `events`.
    pub fn events(&self) -> EventStream {
        EventStream::new(
            Arc::clone(&self.world),
            self.plan,
            self.opts.start_ms,
            self.span_ms,
            rng_for(self.opts.seed, BENIGN_STREAM),
            rng_for(self.opts.seed, FRAUD_STREAM),
        )
    }
}

#[cfg(test)]
mod tests;
