//! `riskstream produce`: writes events from a JSONL file or the built-in generator into a
//! Kafka topic, keyed by account and timestamped with the event's time, at a chosen rate.
//!
//! Lines are sent as they are, also lines that are not valid events (they get no key and
//! the broker's time): that is how bad input reaches the job's dead-letter path in tests
//! and demos.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};

use riskstream_pipeline::decode::parse_ts;
use riskstream_pipeline::kafka::{client_config, ensure_topics, KafkaSetupError, LogContext};
use riskstream_pipeline::progress::{Progress, Unit};
use riskstream_pipeline::source::file::FileSource;
use riskstream_pipeline::source::generator::GeneratorSource;
use riskstream_pipeline::source::BlockingSource;

use riskstream_pipeline::job::generator_options;

/// Options of `riskstream produce`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub client: super::KafkaClientArgs,
    /// Topic to write (default: the first of kafka.input_topics).
    #[arg(long)]
    pub topic: Option<String>,
    /// Send the lines of this JSONL file.
    #[arg(long, conflicts_with = "generate")]
    pub input: Option<PathBuf>,
    /// Send this many events from the built-in generator.
    #[arg(long)]
    pub generate: Option<u64>,
    /// Generator seed (default: source.generator.seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Generated accounts (default: source.generator.accounts).
    #[arg(long)]
    pub accounts: Option<u64>,
    /// Events per second; unlimited when not given.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Partitions of the topic when it has to be created (default: kafka.partitions).
    #[arg(long)]
    pub partitions: Option<i32>,
    /// No progress line.
    #[arg(long)]
    pub quiet: bool,
}

/// What `produce` did.
#[derive(Debug, Default)]
pub struct ProduceSummary {
    pub sent: u64,
    pub failed: u64,
    pub seconds: f64,
}

/// Lines longer than this are cut: far above Kafka's default message limit (1 MB).
const MAX_LINE: usize = 16 << 20;

/// Messages waiting for delivery before sending waits for the oldest one.
const MAX_PENDING: usize = 50_000;

/// The key and timestamp of an event line, when it is one.
#[derive(serde::Deserialize)]
struct KeyFields<'a> {
    #[serde(borrow)]
    account_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    ts: Option<std::borrow::Cow<'a, str>>,
}

pub async fn produce(args: ProduceArgs) -> anyhow::Result<ProduceSummary> {
    let mut config = args.client.load()?;
    if let Some(seed) = args.seed {
        config.source.generator.seed = seed;
    }
    if let Some(accounts) = args.accounts {
        config.source.generator.accounts = accounts;
    }
    let topic = match &args.topic {
        Some(t) => t.clone(),
        None => config
            .kafka
            .input_topics
            .first()
            .cloned()
            .context("no --topic and kafka.input_topics is empty")?,
    };
    if matches!(args.rate, Some(r) if !(r.is_finite() && r > 0.0)) {
        bail!("--rate must be a positive number of events per second");
    }
    let mut source: Box<dyn BlockingSource> = match (&args.input, args.generate) {
        // Lines are sent whole up to the broker's own limit; the job judges their size.
        (Some(path), None) => Box::new(FileSource::open(path, MAX_LINE, MAX_LINE)?),
        (None, Some(n)) => {
            let mut options = generator_options(&config)?;
            options.events = n;
            Box::new(GeneratorSource::new(options).context("cannot start the built-in generator")?)
        }
        _ => bail!("give exactly one of --input FILE or --generate N"),
    };
    let partitions = args.partitions.unwrap_or(config.kafka.partitions);
    ensure_topics(
        &config.kafka,
        &[topic.as_str()],
        partitions,
        config.kafka.replication,
    )
    .await?;

    let mut client = client_config(&config.kafka);
    client.set_log_level(RDKafkaLogLevel::Warning);
    for (name, value) in [("enable.idempotence", "true"), ("linger.ms", "5")] {
        if !config.kafka.properties.contains_key(name) {
            client.set(name, value);
        }
    }
    let producer: FutureProducer<LogContext> = client
        .create_with_context(LogContext::new(&config.kafka))
        .map_err(|e| KafkaSetupError::client("producer", &config.kafka, &e))?;

    eprintln!(
        "producing {} to topic {topic} on {}{}",
        source.describe(),
        config.kafka.brokers,
        args.rate
            .map(|r| format!(" at {r} events/s"))
            .unwrap_or_default()
    );
    let started = Instant::now();
    // The total is known for the generator only; a file is counted as it is read.
    let progress = Progress::stderr(
        "producing",
        args.generate,
        Unit::Count("events"),
        args.quiet,
    );
    let mut summary = ProduceSummary::default();
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::with_capacity(MAX_PENDING);
    let mut queued = 0u64;
    let mut first_error: Option<KafkaError> = None;
    while let Some(batch) = source.next_batch(1024)? {
        for record in &batch.records {
            if let Some(rate) = args.rate {
                let due = started + Duration::from_secs_f64(queued as f64 / rate);
                let now = Instant::now();
                if due > now {
                    tokio::time::sleep(due - now).await;
                }
            }
            let payload = batch.payload(record);
            let fields: Option<KeyFields<'_>> = serde_json::from_slice(payload).ok();
            let key = fields.as_ref().and_then(|f| f.account_id.as_deref());
            let ts = fields
                .as_ref()
                .and_then(|f| f.ts.as_deref())
                .and_then(|t| parse_ts(t).ok());
            let mut message: FutureRecord<'_, str, [u8]> =
                FutureRecord::to(&topic).payload(payload);
            if let Some(key) = key {
                message = message.key(key);
            }
            if let Some(ts) = ts {
                message = message.timestamp(ts);
            }
            loop {
                match producer.send_result(message) {
                    Ok(future) => {
                        pending.push_back(future);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        message = back;
                        match pending.pop_front() {
                            Some(f) => settle(f.await, &mut summary, &mut first_error),
                            None => tokio::time::sleep(Duration::from_millis(1)).await,
                        }
                    }
                    Err((err, _)) => {
                        summary.failed += 1;
                        first_error.get_or_insert(err);
                        break;
                    }
                }
            }
            queued += 1;
            while pending.len() >= MAX_PENDING {
                if let Some(f) = pending.pop_front() {
                    settle(f.await, &mut summary, &mut first_error);
                }
            }
        }
        if summary.failed > 0 {
            progress.set_message(format!("| failed {}", summary.failed));
        }
        progress.set(summary.sent);
    }
    while let Some(f) = pending.pop_front() {
        settle(f.await, &mut summary, &mut first_error);
    }
    tokio::task::block_in_place(|| producer.flush(Duration::from_secs(30)))
        .context("cannot flush the producer")?;
    summary.seconds = started.elapsed().as_secs_f64();
    progress.finish();
    eprintln!(
        "riskstream produce finished in {:.2} s\n  sent        {}\n  failed      {}\n  throughput  {:.0} events/s\n  topic       {topic}",
        summary.seconds,
        summary.sent,
        summary.failed,
        summary.sent as f64 / summary.seconds.max(1e-9)
    );
    if let Some(err) = first_error {
        bail!(
            "{} events were not delivered; first error: {err}",
            summary.failed
        );
    }
    Ok(summary)
}

/// Counts one delivery report. The outer error means the producer went away first.
fn settle<E>(
    outcome: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, E>,
    summary: &mut ProduceSummary,
    first_error: &mut Option<KafkaError>,
) {
    match outcome {
        Ok(Ok(_)) => summary.sent += 1,
        Ok(Err((err, _))) => {
            summary.failed += 1;
            first_error.get_or_insert(err);
        }
        Err(_) => summary.failed += 1,
    }
}
