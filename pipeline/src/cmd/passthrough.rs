//! `riskstream passthrough`: the baseline of the throughput benchmarks (`riskstream bench`).
//! With Kafka it consumes the input topics with the job's own consumer and acknowledgement
//! path and forwards every message unchanged to the results topic with the job's own
//! producer; with files it copies the input lines with the job's own file source and sink.
//! That is everything the job does except decoding, aggregating, enriching and scoring, so
//! the job's throughput divided by this one is the share of the I/O speed the job keeps.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::mpsc;

use riskstream_config::Config;
use riskstream_pipeline::sink::kafka::{BatchDelivery, KafkaSink};
use riskstream_pipeline::sink::LineSink;
use riskstream_pipeline::source::file::FileSource;
use riskstream_pipeline::source::kafka::KafkaSource;
use riskstream_pipeline::source::{BlockingSource, RawBatch};

/// Options of `riskstream passthrough`.
#[derive(Debug, Clone, clap::Args)]
pub struct PassthroughArgs {
    /// Configuration file (TOML): `[kafka]` names brokers, group, input and output topics.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Stop after this many messages.
    #[arg(long)]
    pub max_events: u64,
    /// Copy this JSONL file instead of consuming Kafka (needs `--output`).
    #[arg(long, requires = "output")]
    pub input: Option<PathBuf>,
    /// Where the copied lines go when reading `--input`.
    #[arg(long, requires = "input")]
    pub output: Option<PathBuf>,
    /// Also write `{"forwarded": N, "seconds": S, "events_per_second": R}` to this file.
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
}

/// What a passthrough run moved, printed at the end and optionally written as JSON.
#[derive(Debug, Clone, serde::Serialize)]
struct PassthroughSummary {
    forwarded: u64,
    seconds: f64,
    events_per_second: f64,
}

pub async fn passthrough(args: PassthroughArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let forwarded = match (&args.input, &args.output) {
        (Some(input), Some(output)) => copy_file(input, output, args.max_events)?,
        _ => forward_kafka(&args).await?,
    };
    let seconds = started.elapsed().as_secs_f64();
    let summary = PassthroughSummary {
        forwarded,
        seconds,
        events_per_second: forwarded as f64 / seconds.max(1e-9),
    };
    eprintln!(
        "riskstream passthrough finished in {seconds:.2} s\n  forwarded   {forwarded}\n  throughput  {:.0} events/s",
        summary.events_per_second
    );
    if let Some(path) = &args.summary_json {
        let json = serde_json::to_vec_pretty(&summary).context("cannot encode the summary")?;
        std::fs::write(path, json)
            .with_context(|| format!("cannot write the summary to `{}`", path.display()))?;
    }
    Ok(())
}

/// Copies at most `max` lines of `input` to `output` through the job's file source and
/// sink, in the job's batch size. Returns the number of lines copied.
fn copy_file(input: &Path, output: &Path, max: u64) -> anyhow::Result<u64> {
    let batch_size = riskstream_config::Config::default()
        .pipeline
        .batch_size
        .max(1);
    let mut source = FileSource::open(input, usize::MAX / 2, usize::MAX / 2)?;
    let mut sink = LineSink::open(output)?;
    let mut lines = Vec::with_capacity(1 << 20);
    let mut copied = 0u64;
    while copied < max {
        let want = batch_size.min((max - copied) as usize);
        let Some(batch) = source.next_batch(want)? else {
            break;
        };
        lines.clear();
        for record in &batch.records {
            lines.extend_from_slice(batch.payload(record));
            lines.push(b'\n');
        }
        sink.write_lines(&lines)?;
        copied += batch.len() as u64;
    }
    sink.flush()?;
    Ok(copied)
}

/// Forwards at most `args.max_events` messages from the input topics to the results topic.
/// Returns the number delivered.
async fn forward_kafka(args: &PassthroughArgs) -> anyhow::Result<u64> {
    let config = Config::load(args.config.as_deref())
        .map_err(anyhow::Error::from)
        .context("invalid configuration")?;
    if config.kafka.create_topics {
        riskstream_pipeline::kafka::ensure_topics(
            &config.kafka,
            &[config.kafka.results_topic.as_str()],
            config.kafka.partitions,
            config.kafka.replication,
        )
        .await?;
    }
    let mut source = KafkaSource::subscribe(
        &config.kafka,
        config.pipeline.batch_timeout,
        usize::MAX / 2,
        usize::MAX / 2,
        None,
    )?;
    let ack = source.acknowledger();
    let sink = Arc::new(KafkaSink::new(&config.kafka, None)?);
    let batch_size = config.pipeline.batch_size.max(1);
    let max = args.max_events;
    let (tx, mut rx) = mpsc::channel::<RawBatch>(config.pipeline.channel_capacity.max(1));
    let reader = std::thread::spawn(move || -> anyhow::Result<()> {
        let mut read = 0u64;
        while read < max {
            let want = batch_size.min((max - read) as usize);
            let Some(batch) = source.next_batch(want)? else {
                break;
            };
            if batch.is_empty() {
                continue;
            }
            read += batch.len() as u64;
            if tx.blocking_send(batch).is_err() {
                break;
            }
        }
        Ok(())
    });
    let (del_tx, mut del_rx) = mpsc::channel::<(RawBatch, Arc<BatchDelivery>)>(
        riskstream_pipeline::job::IN_FLIGHT_BATCHES,
    );
    let delivery = {
        tokio::spawn(async move {
            let mut delivered = 0u64;
            while let Some((batch, pending)) = del_rx.recv().await {
                pending.wait().await?;
                ack.delivered(&batch);
                delivered += batch.len() as u64;
            }
            ack.finish();
            Ok::<u64, anyhow::Error>(delivered)
        })
    };
    while let Some(batch) = rx.recv().await {
        let pending = BatchDelivery::new();
        for record in &batch.records {
            sink.send_raw(&pending, batch.payload(record)).await?;
        }
        if del_tx.send((batch, pending)).await.is_err() {
            break;
        }
    }
    drop(del_tx);
    let delivered = delivery.await.context("delivery task panicked")??;
    reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reader thread panicked"))??;
    Ok(delivered)
}
