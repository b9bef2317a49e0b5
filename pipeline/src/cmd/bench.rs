//! `riskstream bench`: the end-to-end benchmark. It runs the job on a generated data set and,
//! interleaved with it in the same session, the passthrough baseline over the same input —
//! the same source and sink with no processing — and prints every run, the medians and
//! their ratio. The machines this runs on are shared and noisy, so only figures measured
//! side by side in one session are compared.
//!
//! Every run is a child process of this binary (`riskstream run`, `riskstream
//! passthrough`), so each starts cold, exactly as a user would start it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use super::latency;

/// `--quick`: the most events, and the seconds per latency rate.
const QUICK_EVENTS: u64 = 50_000;
const QUICK_LATENCY_SECS: u64 = 3;

/// Options of `riskstream bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Events in the generated data set.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,
    /// Rounds; each round runs the job once and the baseline once.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Seed of the generated data set.
    #[arg(long, default_value_t = 9)]
    pub seed: u64,
    /// Folder for the generated data set, reused by later runs with the same size and seed.
    #[arg(long, default_value = "out/bench")]
    pub data: PathBuf,
    /// Model directory for the job (default: the configured model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Benchmark the Kafka path: events from a 4-partition topic to a results topic,
    /// against a consume → produce passthrough of the same messages.
    #[arg(long)]
    pub kafka: bool,
    /// Kafka bootstrap servers for `--kafka`.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub brokers: String,
    /// Extra Kafka client property for both the job and the baseline, `KEY=VALUE`
    /// (repeatable), for example `compression.type=lz4`.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    /// Also write every run and the medians as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// With `--kafka`: after the throughput rounds, measure send → result-readable latency
    /// of live traffic at fixed fractions of the job's measured maximum rate.
    #[arg(long, requires = "kafka")]
    pub latency: bool,
    /// The rates of `--latency`, as fractions of the measured maximum.
    #[arg(long, value_delimiter = ',', default_value = "0.1,0.25,0.5,0.8")]
    pub rates: Vec<f64>,
    /// Seconds measured at each rate of `--latency` (after one second of warm-up).
    #[arg(long, default_value_t = 20)]
    pub latency_secs: u64,
    /// A short smoke run: at most 50 000 events, one round, 3 s per latency rate.
    #[arg(long)]
    pub quick: bool,
}

/// The figures of one benchmark session.
#[derive(Debug, Clone, serde::Serialize)]
struct BenchReport {
    mode: &'static str,
    events: u64,
    job_events_per_second: Vec<f64>,
    baseline_events_per_second: Vec<f64>,
    job_median: f64,
    baseline_median: f64,
    ratio: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    latency: Vec<latency::RateRow>,
}

pub fn bench(mut args: BenchArgs) -> anyhow::Result<()> {
    if args.quick {
        args.events = args.events.min(QUICK_EVENTS);
        args.rounds = 1;
        args.latency_secs = args.latency_secs.min(QUICK_LATENCY_SECS);
    }
    let plan = latency::LatencyPlan {
        fractions: args.rates.clone(),
        warmup: Duration::from_secs(1),
        measure: Duration::from_secs(args.latency_secs),
    };
    if args.latency {
        plan.check()?;
    }
    if args.rounds == 0 || args.events == 0 {
        bail!("--rounds and --events must be at least 1");
    }
    for property in &args.properties {
        if !property.contains('=') {
            bail!("--property `{property}`: expected KEY=VALUE, for example compression.type=lz4");
        }
    }
    let exe = std::env::current_exe().context("cannot find the riskstream binary")?;
    let data = args
        .data
        .join(format!("data-{}-seed{}", args.events, args.seed));
    let events = ensure_dataset(&exe, &data, args.events, args.seed)?;
    let tag = format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_millis()
    );
    let work = RunsFolder(args.data.join(format!("runs-{tag}")));
    std::fs::create_dir_all(&work.0)
        .with_context(|| format!("cannot create `{}`", work.0.display()))?;
    let input_topic = format!("bench-events-{tag}");
    if args.kafka {
        eprintln!("loading {} events into topic {input_topic}", args.events);
        child(
            &exe,
            &[
                "produce",
                "--quiet",
                "--brokers",
                &args.brokers,
                "--topic",
                &input_topic,
                "--partitions",
                "4",
                "--input",
                path_str(&events)?,
            ],
            &work.0.join("produce.log"),
        )?;
    }
    let graph = data.join("graph.jsonl");
    let mut job = Vec::new();
    let mut baseline = Vec::new();
    for round in 1..=args.rounds {
        let dir = work.0.join(format!("round-{round}"));
        std::fs::create_dir_all(&dir).context("cannot create a round folder")?;
        let summary = dir.join("job.json");
        let mut run: Vec<String> = vec!["run".into(), "--quiet".into()];
        if args.kafka {
            let config = kafka_config(&args, &dir, "job", &input_topic, &graph, &tag, round)?;
            run.extend(["--config".into(), config]);
        } else {
            run.extend([
                "--input".into(),
                path_str(&events)?.into(),
                "--graph".into(),
                path_str(&graph)?.into(),
                "--output".into(),
                path_str(&dir.join("results.jsonl"))?.into(),
                "--dead-letter".into(),
                path_str(&dir.join("dead-letters.jsonl"))?.into(),
            ]);
        }
        if let Some(model) = &args.model {
            run.extend(["--model".into(), path_str(model)?.into()]);
        }
        run.extend([
            "--max-events".into(),
            args.events.to_string(),
            "--summary-json".into(),
            path_str(&summary)?.into(),
        ]);
        let run: Vec<&str> = run.iter().map(String::as_str).collect();
        child(&exe, &run, &dir.join("job.log"))?;
        let rate = read_rate(&summary)?;
        eprintln!("round {round}: job       {rate:>10.0} events/s");
        job.push(rate);

        let summary = dir.join("baseline.json");
        let mut pass: Vec<String> = vec!["passthrough".into()];
        if args.kafka {
            let config = kafka_config(&args, &dir, "pass", &input_topic, &graph, &tag, round)?;
            pass.extend(["--config".into(), config]);
        } else {
            pass.extend([
                "--input".into(),
                path_str(&events)?.into(),
                "--output".into(),
                path_str(&dir.join("copy.jsonl"))?.into(),
            ]);
        }
        pass.extend([
            "--max-events".into(),
            args.events.to_string(),
            "--summary-json".into(),
            path_str(&summary)?.into(),
        ]);
        let pass: Vec<&str> = pass.iter().map(String::as_str).collect();
        child(&exe, &pass, &dir.join("baseline.log"))?;
        let rate = read_rate(&summary)?;
        eprintln!("round {round}: baseline  {rate:>10.0} events/s");
        baseline.push(rate);
        // Results of finished rounds are not needed any more; keep the disk footprint small.
        let _ = std::fs::remove_file(dir.join("results.jsonl"));
        let _ = std::fs::remove_file(dir.join("copy.jsonl"));
    }
    let job_median = median(&job);
    let baseline_median = median(&baseline);
    let mut report = BenchReport {
        mode: if args.kafka {
            "kafka → kafka"
        } else {
            "file → file"
        },
        events: args.events,
        job_events_per_second: job,
        baseline_events_per_second: baseline,
        job_median,
        baseline_median,
        ratio: job_median / baseline_median.max(1e-9),
        latency: Vec::new(),
    };
    println!(
        "{} · {} events · {} rounds\n  job       median {:>10.0} events/s\n  baseline  median {:>10.0} events/s\n  ratio job / baseline {:.3}",
        report.mode, report.events, args.rounds, report.job_median, report.baseline_median, report.ratio
    );
    if args.latency {
        let properties: Vec<(String, String)> = args
            .properties
            .iter()
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        for (i, &fraction) in plan.fractions.iter().enumerate() {
            let round = i as u32 + 1;
            let rate = fraction * report.job_median;
            eprintln!(
                "latency {:.0} %: {rate:.0} events/s for {} s",
                fraction * 100.0,
                plan.measure.as_secs()
            );
            let dir = work.0.join(format!("latency-{round}"));
            std::fs::create_dir_all(&dir).context("cannot create a latency folder")?;
            let input = format!("bench-live-{round}-{tag}");
            let config = kafka_config(&args, &dir, "lat", &input, &graph, &tag, round)?;
            let setup = latency::RateSetup {
                exe: &exe,
                config: PathBuf::from(config),
                input_topic: input,
                results_topic: results_topic("lat", round, &tag),
                dir,
                brokers: &args.brokers,
                properties: &properties,
                events: &events,
            };
            report
                .latency
                .push(latency::measure_rate(&setup, fraction, rate, &plan)?);
        }
        latency::print_table(report.job_median, &report.latency);
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report).context("cannot encode the report")?;
        std::fs::write(path, json)
            .with_context(|| format!("cannot write the report to `{}`", path.display()))?;
    }
    Ok(())
}

/// Generates the data set into `dir` unless a complete one is already there; returns the
/// events file.
fn ensure_dataset(exe: &Path, dir: &Path, events: u64, seed: u64) -> anyhow::Result<PathBuf> {
    let file = dir.join("events.jsonl");
    // The manifest is written last, so its presence means the data set is complete.
    if dir.join("manifest.json").is_file() && file.is_file() {
        return Ok(file);
    }
    eprintln!(
        "generating {events} events (seed {seed}) into {}",
        dir.display()
    );
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    child(
        exe,
        &[
            "gen",
            "--out",
            path_str(dir)?,
            "--events",
            &events.to_string(),
            "--seed",
            &seed.to_string(),
        ],
        &dir.join("gen.log"),
    )?;
    Ok(file)
}

/// Writes the configuration of one Kafka run (`who` is `job` or `pass`) and returns its path.
fn kafka_config(
    args: &BenchArgs,
    dir: &Path,
    who: &str,
    input: &str,
    graph: &Path,
    tag: &str,
    round: u32,
) -> anyhow::Result<String> {
    let mut text = format!(
        "[source]\nkind = \"kafka\"\n[sink]\nkind = \"kafka\"\n[dead_letter]\nkind = \"kafka\"\n\
         [graph]\nkind = \"memory\"\npath = {graph}\n\
         [kafka]\nbrokers = {brokers}\ngroup_id = \"bench-{who}-{round}-{tag}\"\n\
         input_topics = [{input}]\nresults_topic = {results}\n\
         dead_letter_topic = \"bench-dead-{who}-{round}-{tag}\"\ncreate_topics = true\n\
         partitions = 4\n[kafka.properties]\n",
        graph = toml_string(path_str(graph)?),
        brokers = toml_string(&args.brokers),
        input = toml_string(input),
        results = toml_string(&results_topic(who, round, tag)),
    );
    for property in &args.properties {
        if let Some((key, value)) = property.split_once('=') {
            text.push_str(&format!(
                "{} = {}\n",
                toml_string(key.trim()),
                toml_string(value.trim())
            ));
        }
    }
    let path = dir.join(format!("{who}.toml"));
    std::fs::write(&path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(path_str(&path)?.to_owned())
}

/// The results topic of one run.
fn results_topic(who: &str, round: u32, tag: &str) -> String {
    format!("bench-results-{who}-{round}-{tag}")
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The folder of one session's runs (logs, summaries, configurations), removed at the end.
struct RunsFolder(PathBuf);

impl Drop for RunsFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `riskstream ARGS`, its output going to `log`; a failure carries the log's tail.
fn child(exe: &Path, args: &[&str], log: &Path) -> anyhow::Result<()> {
    let file =
        std::fs::File::create(log).with_context(|| format!("cannot create `{}`", log.display()))?;
    let status = Command::new(exe)
        .args(args)
        .stdout(Stdio::null())
        .stderr(file)
        .status()
        .with_context(|| format!("cannot start `riskstream {}`", args[0]))?;
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!(
            "`riskstream {}` failed ({status}):\n{}",
            args.join(" "),
            tail.join("\n")
        );
    }
    Ok(())
}

/// The `events_per_second` of a run summary written with `--summary-json`.
fn read_rate(summary: &Path) -> anyhow::Result<f64> {
    let text = std::fs::read(summary)
        .with_context(|| format!("the run wrote no summary to `{}`", summary.display()))?;
    let value: serde_json::Value = serde_json::from_slice(&text)
        .with_context(|| format!("`{}` is not JSON", summary.display()))?;
    value["events_per_second"]
        .as_f64()
        .with_context(|| format!("`{}` has no events_per_second", summary.display()))
}

fn path_str(path: &Path) -> anyhow::Result<&str> {
    path.to_str()
        .with_context(|| format!("path `{}` is not UTF-8", path.display()))
}

/// The median; the mean of the two middle values for an even count.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn the_kafka_run_configuration_loads_with_the_extra_properties() {
        let dir =
            std::env::temp_dir().join(format!("riskstream-bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let args = BenchArgs {
            events: 10,
            rounds: 1,
            seed: 1,
            data: dir.clone(),
            model: None,
            kafka: true,
            brokers: "127.0.0.1:19092".into(),
            properties: vec!["compression.type = lz4".into()],
            json: None,
            latency: false,
            rates: vec![0.5],
            latency_secs: 1,
            quick: false,
        };
        let path = kafka_config(
            &args,
            &dir,
            "job",
            "bench-in",
            Path::new("g \"x\".jsonl"),
            "t",
            2,
        )
        .unwrap();
        let config = riskstream_config::Config::load(Some(Path::new(&path))).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(config.kafka.brokers, "127.0.0.1:19092");
        assert_eq!(config.kafka.input_topics, vec!["bench-in".to_string()]);
        assert_eq!(config.graph.path, "g \"x\".jsonl");
        assert_eq!(config.kafka.group_id, "bench-job-2-t");
        assert_eq!(
            config
                .kafka
                .properties
                .get("compression.type")
                .map(String::as_str),
            Some("lz4")
        );
    }

    #[test]
    fn kafka_properties_are_quoted_as_toml_strings() {
        assert_eq!(toml_string("compression.type"), "\"compression.type\"");
        assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }
}
