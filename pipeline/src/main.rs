//! `riskstream`: the streaming job and its tools. A thin layer over the library: parse the
//! command line, load configuration, call the library, report errors with context.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use riskstream_config::{Config, LogFormat};
use riskstream_pipeline::logging;
mod cmd;

use cmd::graph as graph_cmd;
use cmd::model as model_cmd;
use cmd::{
    bench as bench_cmd, gen as gen_cmd, passthrough as passthrough_cmd, produce as produce_cmd,
    replay as replay_cmd, results as results_cmd, run as run_cmd, train as train_cmd,
};

#[derive(Parser)]
#[command(
    name = "riskstream",
    version,
    about = "Streaming risk analytics: decode, aggregate, enrich with graph paths, score, publish."
)]
struct Cli {
    /// Log lines as `text` or `json` (one JSON object per line, same fields); overrides
    /// `log.format` in the configuration.
    #[arg(long, global = true, value_name = "FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

fn parse_log_format(name: &str) -> Result<LogFormat, String> {
    LogFormat::from_name(name).ok_or_else(|| format!("expected `text` or `json`, found `{name}`"))
}

#[derive(Subcommand)]
enum Command {
    /// Run the streaming job. With no options: built-in generator → in-memory graph →
    /// shipped model → results in out/results.jsonl.
    Run(run_cmd::RunArgs),
    /// Generate a synthetic data set: events, entity graph and fraud labels.
    Gen(gen_cmd::GenArgs),
    /// Train and evaluate the scoring model on generated data.
    Train(train_cmd::TrainArgs),
    /// Write events from a file or the built-in generator into a Kafka topic.
    Produce(produce_cmd::ProduceArgs),
    /// Query the results topic: by account, decision and time range, or follow it.
    Results(results_cmd::ResultsArgs),
    /// End-to-end benchmark: the job against a passthrough baseline of the same input,
    /// interleaved in one session (file → file, or Kafka → Kafka with --kafka).
    Bench(bench_cmd::BenchArgs),
    /// Re-run a time range of the input for incident analysis and compare it with what was
    /// published: report.json and report.html.
    Replay(replay_cmd::ReplayArgs),
    /// Benchmark baseline: forward Kafka messages (or copy file lines) unchanged with the
    /// job's own source and sink.
    #[command(hide = true)]
    Passthrough(passthrough_cmd::PassthroughArgs),
    /// Graph database tools: load a graph file into Neo4j.
    Graph {
        #[command(subcommand)]
        command: graph_cmd::GraphCommand,
    },
    /// Model tools: write a model's canary.
    Model {
        #[command(subcommand)]
        command: model_cmd::ModelCommand,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (defaults, file, RISKSTREAM__* overrides; secrets
    /// redacted) or the errors that make it invalid.
    Check {
        /// Configuration file (TOML). Without it: defaults plus environment overrides.
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The job's stages already keep every core busy, and its micro-batches are too small
    // for a parallel matrix multiply to pay off: score on one thread. Training has nothing
    // else to do and uses them all.
    pin_thread_count(matches!(cli.command, Command::Run(_) | Command::Replay(_)));
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            if logging::is_json() {
                tracing::error!(error = format!("{err:#}"), "riskstream stopped");
            } else {
                eprintln!("error: {err:#}");
            }
            ExitCode::from(2)
        }
    }
}

/// The model library sizes its matrix-multiply thread pool from `RAYON_NUM_THREADS`, and
/// when that is unset it counts physical cores by reading /proc/cpuinfo on every call, which
/// cost several percent of the job's time per scored batch. Setting the variable once
/// avoids the reads; `single` asks for one thread, else the parallelism this process may use.
fn pin_thread_count(single: bool) {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = if single {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        // Single-threaded here: nothing else reads the environment yet.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    // `run` reads `log.format` from its configuration; the option wins over it.
    if !matches!(cli.command, Command::Run(_)) {
        logging::init(cli.log_format.unwrap_or_default());
    }
    match cli.command {
        Command::Run(args) => {
            let config = Config::load(args.config.as_deref());
            let configured = config
                .as_ref()
                .map_or(LogFormat::default(), |c| c.log.format);
            logging::init(cli.log_format.unwrap_or(configured));
            let config = config
                .map_err(anyhow::Error::from)
                .context("invalid configuration")?;
            let summary = runtime()?.block_on(run_cmd::run(config, args))?;
            Ok(if summary.is_balanced() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Produce(args) => {
            runtime()?.block_on(produce_cmd::produce(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Results(args) => {
            runtime()?.block_on(results_cmd::results(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Replay(args) => {
            runtime()?.block_on(replay_cmd::replay(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Passthrough(args) => {
            runtime()?.block_on(passthrough_cmd::passthrough(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bench(args) => bench_cmd::bench(args).map(|()| ExitCode::SUCCESS),
        Command::Graph { command } => {
            runtime()?.block_on(graph_cmd::run(command))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Gen(args) => gen_cmd::gen(args).map(|()| ExitCode::SUCCESS),
        Command::Train(args) => train_cmd::train(args).map(|()| ExitCode::SUCCESS),
        Command::Model { command } => model_cmd::run(command).map(|()| ExitCode::SUCCESS),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match Config::load(file.as_deref()) {
            Ok(config) => {
                print!("{}", config.to_redacted_toml());
                Ok(ExitCode::SUCCESS)
            }
            Err(err) => {
                eprintln!("error: {err}");
                Ok(ExitCode::from(2))
            }
        },
    }
}

/// The async runtime of the commands that talk to Kafka or run the job.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("riskstream")
        .build()
        .context("cannot start the async runtime")
}
