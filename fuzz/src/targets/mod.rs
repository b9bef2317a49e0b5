//! The fuzz targets: each makes cases from a random generator and checks what the code
//! under test does with them.

use std::path::Path;

use crate::mutate::Rng;
use crate::HarnessError;

pub mod config;
pub mod events;
pub mod graph;

/// Which reader a case is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetKind {
    Events = 1,
    Graph = 2,
    Config = 3,
}

impl TargetKind {
    pub const ALL: [TargetKind; 3] = [TargetKind::Events, TargetKind::Graph, TargetKind::Config];

    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Events => "events",
            TargetKind::Graph => "graph",
            TargetKind::Config => "config",
        }
    }

    pub fn parse(name: &str) -> Option<TargetKind> {
        TargetKind::ALL.into_iter().find(|t| t.name() == name)
    }

    /// A fresh target of this kind; the events target loads the model in `model_dir`.
    pub fn build(self, model_dir: &Path) -> Result<Box<dyn Target>, HarnessError> {
        Ok(match self {
            TargetKind::Events => Box::new(events::Events::new(model_dir)?),
            TargetKind::Graph => Box::new(graph::GraphFiles::new()?),
            TargetKind::Config => Box::new(config::ConfigDocs::new()?),
        })
    }
}

/// How an events case reaches the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventsMode {
    /// The bytes are a JSONL file read by the file source.
    File,
    /// The bytes are one message, as a Kafka source hands it over.
    Message,
}

/// One input: its bytes (an events file or message, a graph file, a config document) and,
/// for config cases, the environment overrides.
#[derive(Debug, Clone)]
pub struct Case {
    pub target: TargetKind,
    pub mode: EventsMode,
    pub bytes: Vec<u8>,
    pub env: Vec<(String, String)>,
    /// Inputs (event lines or messages) that were left valid: they must become results.
    pub pristine: Vec<Vec<u8>>,
    /// Whether the document was left valid (graph and config cases): it must be accepted.
    pub valid: bool,
    /// Secret values planted in a config case: they must appear in no output.
    pub secrets: Vec<String>,
}

impl Case {
    pub fn new(target: TargetKind, bytes: Vec<u8>) -> Case {
        Case {
            target,
            mode: EventsMode::File,
            bytes,
            env: Vec::new(),
            pristine: Vec::new(),
            valid: false,
            secrets: Vec::new(),
        }
    }

    /// How a finding's file name starts, so that `--replay` knows its target.
    pub fn replay_prefix(&self) -> &'static str {
        match (self.target, self.mode) {
            (TargetKind::Events, EventsMode::File) => "events-file",
            (TargetKind::Events, EventsMode::Message) => "events-message",
            (TargetKind::Graph, _) => "graph",
            (TargetKind::Config, _) => "config",
        }
    }

    pub fn extension(&self) -> &'static str {
        match (self.target, self.mode) {
            (TargetKind::Events, EventsMode::File) | (TargetKind::Graph, _) => "jsonl",
            (TargetKind::Events, EventsMode::Message) => "bin",
            (TargetKind::Config, _) => "toml",
        }
    }

    /// The case of a replay file: its target from `target` or from the file name. A config
    /// replay treats any secret-looking environment value as a planted secret.
    pub fn from_replay(
        name: &str,
        target: Option<TargetKind>,
        bytes: Vec<u8>,
        env: Vec<(String, String)>,
    ) -> Option<Case> {
        let (kind, mode) = if name.starts_with("events-message") {
            (TargetKind::Events, EventsMode::Message)
        } else if name.starts_with("events") {
            (TargetKind::Events, EventsMode::File)
        } else if name.starts_with("graph") {
            (TargetKind::Graph, EventsMode::File)
        } else if name.starts_with("config") {
            (TargetKind::Config, EventsMode::File)
        } else {
            (target?, EventsMode::File)
        };
        let kind = target.unwrap_or(kind);
        let secrets = config::planted_secrets(&bytes, &env);
        Some(Case {
            target: kind,
            mode,
            bytes,
            env,
            pristine: Vec::new(),
            valid: false,
            secrets,
        })
    }
}

/// What one case added to the run's figures.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    pub inputs: u64,
    pub results: u64,
    pub dead_letters: u64,
    pub accepted: u64,
    pub refused: u64,
}

/// A fuzz target.
pub trait Target {
    /// Case number `case` made from its own random generator.
    fn generate(&mut self, rng: &mut Rng, case: u64) -> Case;
    /// Runs the case through the code under test and checks the outcome: the figures, or
    /// what was wrong.
    fn check(&mut self, case: &Case) -> Result<Checked, String>;
    /// Forgets any state kept between cases (after a panic).
    fn reset(&mut self);
}

/// `bytes` for a message: the text when it is UTF-8 and short, else its length and start.
pub fn shown(bytes: &[u8]) -> String {
    const MAX: usize = 400;
    match std::str::from_utf8(bytes) {
        Ok(text) if text.len() <= MAX => format!("{text:?}"),
        _ => format!(
            "{} bytes starting {:?}",
            bytes.len(),
            String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)])
        ),
    }
}
