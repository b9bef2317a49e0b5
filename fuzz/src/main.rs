//! `riskstream-fuzz`: runs the fuzz harness of the riskstream-fuzz library.
//!
//! ```text
//! riskstream-fuzz --cases 1000000 --seed 1          # all targets, the budget shared
//! riskstream-fuzz --cases 50000 --target config     # one target
//! riskstream-fuzz --replay target/fuzz-findings/graph-seed1-case42.jsonl
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

use riskstream_fuzz::targets::TargetKind;
use riskstream_fuzz::{replay, run, shipped_model_dir, Options};

/// Fuzzes the event decoder (through the whole in-process pipeline), the graph file reader
/// and the configuration reader with structure-aware and random inputs.
#[derive(Parser)]
#[command(name = "riskstream-fuzz")]
struct Args {
    /// Cases in all, shared evenly by the targets.
    #[arg(long, default_value_t = 30_000)]
    cases: u64,
    /// Seed of the run: the same seed gives the same cases.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Only this target (events, graph or config); may be repeated.
    #[arg(long)]
    target: Vec<String>,
    /// Runs one input file again (a finding's file) and reports what it does.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// The model events are scored with.
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Where the inputs of findings are written.
    #[arg(long, value_name = "DIR", default_value = "target/fuzz-findings")]
    findings: PathBuf,
    /// Seconds between progress lines on stderr; 0 for none.
    #[arg(long, default_value_t = 5)]
    progress: u64,
    /// Findings reported (and written) per target; later ones are only counted.
    #[arg(long, default_value_t = 10)]
    max_reports: usize,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let mut targets = Vec::new();
    for name in &args.target {
        match TargetKind::parse(name) {
            Some(kind) => targets.push(kind),
            None => bail!("unknown target `{name}`: use events, graph or config"),
        }
    }
    let model_dir = args.model.clone().unwrap_or_else(shipped_model_dir);
    if let Some(path) = &args.replay {
        let finding = replay(path, targets.first().copied(), &model_dir)
            .with_context(|| format!("replaying {}", path.display()))?;
        return Ok(match finding {
            Some(finding) => {
                eprintln!("{finding}");
                ExitCode::FAILURE
            }
            None => {
                eprintln!("replay of {}: no panic, every check holds", path.display());
                ExitCode::SUCCESS
            }
        });
    }
    let options = Options {
        targets: if targets.is_empty() {
            TargetKind::ALL.to_vec()
        } else {
            targets
        },
        model_dir,
        findings_dir: args.findings,
        progress: (args.progress > 0).then(|| Duration::from_secs(args.progress)),
        max_reports: args.max_reports,
        ..Options::new(args.cases, args.seed)
    };
    let summary = run(&options).context("fuzz run")?;
    for target in &summary.targets {
        println!("{target}");
    }
    println!("{}", summary.line());
    Ok(if summary.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
