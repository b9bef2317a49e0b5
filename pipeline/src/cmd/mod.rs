//! The subcommands of the `riskstream` binary: argument types and the glue between the
//! command line, the configuration and the library.

pub mod bench;
pub mod gen;
pub mod graph;
pub mod latency;
pub mod model;
pub mod passthrough;
pub mod produce;
pub mod replay;
pub mod results;
pub mod run;
pub mod train;

use std::path::PathBuf;

use anyhow::Context as _;
use riskstream_config::Config;

/// The options every Kafka client command (`produce`, `results`) takes first.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaClientArgs {
    /// Configuration file (TOML): `[kafka]` supplies defaults and client properties.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Bootstrap brokers (default: kafka.brokers).
    #[arg(long)]
    pub brokers: Option<String>,
}

impl KafkaClientArgs {
    /// The configuration file (or the defaults), with `--brokers` applied.
    pub fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())
            .map_err(anyhow::Error::from)
            .context("invalid configuration")?;
        if let Some(brokers) = &self.brokers {
            config.kafka.brokers.clone_from(brokers);
        }
        Ok(config)
    }
}
