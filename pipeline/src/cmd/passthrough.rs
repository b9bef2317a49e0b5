//! `riskstream passthrough`: the baseline of the Kafka throughput benchmark. It consumes
//! the input topics with the job's own consumer and acknowledgement path and forwards every
//! message unchanged to the results topic with the job's own producer — everything the job
//! does except decoding, aggregating, enriching and scoring. The job's throughput divided
//! by this one is the share of the broker's speed the job keeps.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use tokio::sync::mpsc;

use riskstream_config::Config;
use riskstream_pipeline::sink::kafka::{BatchDelivery, KafkaSink};
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
}

pub async fn passthrough(args: PassthroughArgs) -> anyhow::Result<()> {
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
    )?;
    let ack = source.acknowledger();
    let sink = Arc::new(KafkaSink::new(&config.kafka)?);
    let batch_size = config.pipeline.batch_size.max(1);
    let max = args.max_events;
    let started = Instant::now();
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
    let (del_tx, mut del_rx) =
        mpsc::channel::<(RawBatch, Arc<BatchDelivery>)>(super::output::IN_FLIGHT_BATCHES);
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
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "riskstream passthrough finished in {seconds:.2} s\n  forwarded   {delivered}\n  throughput  {:.0} events/s",
        delivered as f64 / seconds.max(1e-9)
    );
    Ok(())
}
