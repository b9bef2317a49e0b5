//! `riskstream results`: the way users query decisions. Reads the results topic without
//! joining any consumer group and without committing anything, selects by account,
//! decision and time range, and prints JSON lines or a table.
//!
//! Result messages carry their event's time as Kafka timestamp, so `--since` and
//! `--from/--to` select by event time; start offsets come from the broker's time index
//! (`offsets_for_times`), so a narrow range does not read the whole topic.

use std::borrow::Cow;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use riskstream_pipeline::kafka::{client_config, KafkaSetupError, LogContext, START_TIMEOUT};
use riskstream_pipeline::result::{Decision, ResultRecord};
use riskstream_pipeline::time::{parse_period, parse_time};

/// Options of `riskstream results`.
#[derive(Debug, Clone, clap::Args)]
pub struct ResultsArgs {
    #[command(flatten)]
    pub client: super::KafkaClientArgs,
    /// Results topic (default: kafka.results_topic).
    #[arg(long)]
    pub topic: Option<String>,
    /// Only results of this account.
    #[arg(long)]
    pub account: Option<String>,
    /// Only results with this decision.
    #[arg(long, value_enum)]
    pub decision: Option<DecisionArg>,
    /// Only events of the last period before now: `30s`, `10m`, `2h`, `7d`.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    pub since: Option<String>,
    /// Only events at or after this time (RFC 3339, or relative like `-15m`).
    #[arg(long)]
    pub from: Option<String>,
    /// Only events before this time (RFC 3339, or relative like `-5m`).
    #[arg(long)]
    pub to: Option<String>,
    /// Keep reading new results as they arrive (stop with Ctrl-C).
    #[arg(long)]
    pub follow: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DecisionArg {
    Allow,
    Review,
    Block,
}

impl From<DecisionArg> for Decision {
    fn from(arg: DecisionArg) -> Decision {
        match arg {
            DecisionArg::Allow => Decision::Allow,
            DecisionArg::Review => Decision::Review,
            DecisionArg::Block => Decision::Block,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One result JSON object per line, as published.
    Json,
    /// A readable table.
    Table,
}

/// Which results a query shows.
#[derive(Debug, Clone, Copy, Default)]
struct Filter<'a> {
    account: Option<&'a str>,
    decision: Option<Decision>,
}

impl Filter<'_> {
    /// Whether `record` is shown. A decision that names none ([`ResultRecord`] keeps it as
    /// found) never matches `--decision`.
    fn matches(&self, record: &ResultRecord<'_>) -> bool {
        self.account.is_none_or(|a| a == record.account_id)
            && self
                .decision
                .is_none_or(|d| record.decision.decision() == Some(d))
    }
}

/// Reads one message of the results topic through the typed record: `Ok(None)` when the
/// filter leaves it out, an error saying why when it is not a result.
fn select(
    payload: &[u8],
    filter: &Filter<'_>,
) -> Result<Option<ResultRecord<'static>>, serde_json::Error> {
    let record = ResultRecord::from_json(payload)?;
    Ok(filter.matches(&record).then_some(record))
}

/// Text from the topic as the table shows it: control characters escaped, so that a
/// crafted result cannot send escape sequences to the terminal.
fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(char::is_control) {
        Cow::Owned(text.chars().flat_map(char::escape_debug).collect())
    } else {
        Cow::Borrowed(text)
    }
}

/// One result as a table row (no newline); an unknown decision is shown quoted.
fn table_row(record: &ResultRecord<'_>) -> String {
    format!(
        "{:<24} {:<20} {:<14} {:>6.3} {:<7} {}",
        printable(&record.ts),
        printable(&record.event_id),
        printable(&record.account_id),
        record.score,
        record.decision.shown(),
        printable(record.reasons.first().map_or("", |r| r.feature.as_ref()))
    )
}

pub async fn results(args: ResultsArgs) -> anyhow::Result<()> {
    tokio::task::block_in_place(|| query(args))
}

fn query(args: ResultsArgs) -> anyhow::Result<()> {
    let config = args.client.load()?;
    let topic = args
        .topic
        .clone()
        .unwrap_or_else(|| config.kafka.results_topic.clone());
    let now_ms = riskstream_pipeline::engine::now_ms();
    let from = match (&args.since, &args.from) {
        (Some(since), _) => Some(now_ms - parse_period(since)?.as_millis() as i64),
        (None, Some(from)) => Some(parse_time(from, now_ms)?),
        (None, None) => None,
    };
    let to = args
        .to
        .as_deref()
        .map(|t| parse_time(t, now_ms))
        .transpose()?;

    let mut client = client_config(&config.kafka);
    // A query never joins the job's group and never commits.
    client
        .set("group.id", "riskstream-results-query")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set_log_level(RDKafkaLogLevel::Error);
    let consumer: BaseConsumer<LogContext> = client
        .create_with_context(LogContext::new(&config.kafka))
        .map_err(|e| KafkaSetupError::client("consumer", &config.kafka, &e))?;
    let assignment = start_offsets(&consumer, &topic, from)?;
    let partitions = assignment.count();
    consumer
        .assign(&assignment)
        .with_context(|| format!("cannot read topic `{topic}`"))?;

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let table = args.format == Format::Table;
    if table {
        writeln!(
            out,
            "{:<24} {:<20} {:<14} {:>6} {:<7} top reason",
            "ts", "event_id", "account_id", "score", "decision"
        )?;
    }
    let filter = Filter {
        account: args.account.as_deref(),
        decision: args.decision.map(Decision::from),
    };
    let mut shown = 0u64;
    let mut eofs = std::collections::HashSet::new();
    while args.follow || eofs.len() < partitions {
        let Some(polled) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = match polled {
            Ok(m) => m,
            Err(rdkafka::error::KafkaError::PartitionEOF(p)) => {
                eofs.insert(p);
                if table || args.follow {
                    out.flush()?;
                }
                continue;
            }
            Err(err) => {
                eprintln!("warning: {err}");
                continue;
            }
        };
        let ts = message.timestamp().to_millis();
        if matches!((ts, to), (Some(ts), Some(to)) if ts >= to) {
            continue;
        }
        if matches!((ts, from), (Some(ts), Some(from)) if ts < from) {
            continue;
        }
        let Some(payload) = message.payload() else {
            continue;
        };
        let record = match select(payload, &filter) {
            Ok(Some(record)) => record,
            Ok(None) => continue,
            Err(err) => {
                // The reason may quote the message's text.
                eprintln!(
                    "warning: partition {} offset {} is not a riskstream result ({}); skipped",
                    message.partition(),
                    message.offset(),
                    printable(&err.to_string())
                );
                continue;
            }
        };
        shown += 1;
        if table {
            writeln!(out, "{}", table_row(&record))?;
        } else {
            out.write_all(payload)?;
            out.write_all(b"\n")?;
        }
        if args.follow {
            out.flush()?;
        }
    }
    out.flush()?;
    if std::io::stderr().is_terminal() || table {
        eprintln!("{shown} results");
    }
    Ok(())
}

/// Where to start in each partition: the first offset at or after `from_ms` (by the
/// broker's time index), or the beginning.
fn start_offsets(
    consumer: &BaseConsumer<LogContext>,
    topic: &str,
    from_ms: Option<i64>,
) -> anyhow::Result<TopicPartitionList> {
    let partitions =
        riskstream_pipeline::kafka::topic_partitions(consumer, topic).with_context(|| {
            format!("cannot read metadata of topic `{topic}`; is the broker running?")
        })?;
    if partitions.is_empty() {
        bail!("topic `{topic}` does not exist or has no partitions");
    }
    let mut tpl = TopicPartitionList::with_capacity(partitions.len());
    for &p in &partitions {
        let offset = match from_ms {
            Some(ms) => Offset::Offset(ms),
            None => Offset::Beginning,
        };
        tpl.add_partition_offset(topic, p, offset)
            .context("invalid partition offset")?;
    }
    if from_ms.is_some() {
        tpl = consumer
            .offsets_for_times(tpl, START_TIMEOUT)
            .with_context(|| format!("cannot look up offsets by time in topic `{topic}`"))?;
    }
    Ok(tpl)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(account: &str, decision: &str) -> String {
        format!(
            r#"{{"schema_version":1,"event_id":"e-1","account_id":"{account}","ts":"2026-11-22T10:00:00.000Z","score":0.5,"decision":"{decision}","reasons":[],"aggregates":{{}},"graph":{{"status":"ok","hops":null,"path":[],"flagged_nearby":0}},"model_version":"v1","snapshot_id":1,"source":{{"topic":"events","partition":0,"offset":0}},"processed_at":"2026-11-22T10:00:01.000Z","latency_ms":1.0,"added_later":{{"x":1}}}}"#
        )
    }

    #[test]
    fn results_are_selected_by_account_and_decision() {
        let filter = Filter {
            account: Some("A-1"),
            decision: Some(Decision::Review),
        };
        assert!(select(line("A-1", "review").as_bytes(), &filter)
            .unwrap()
            .is_some());
        assert!(select(line("A-2", "review").as_bytes(), &filter)
            .unwrap()
            .is_none());
        assert!(select(line("A-1", "block").as_bytes(), &filter)
            .unwrap()
            .is_none());
    }

    #[test]
    fn an_unknown_decision_is_shown_quoted_and_never_matches_a_decision_filter() {
        let crafted = line("A-1", "\\u001b[2Jblock");
        for decision in [Decision::Allow, Decision::Review, Decision::Block] {
            let filter = Filter {
                decision: Some(decision),
                ..Filter::default()
            };
            assert!(select(crafted.as_bytes(), &filter).unwrap().is_none());
        }
        let record = select(crafted.as_bytes(), &Filter::default())
            .unwrap()
            .expect("shown without a decision filter");
        let row = table_row(&record);
        assert!(!row.contains('\u{1b}'), "{row:?}");
        assert!(row.contains("\"\\u{1b}[2Jblock\""), "{row:?}");
    }

    #[test]
    fn a_message_that_is_not_a_result_says_why() {
        let err = select(br#"{"event_id":"e-1"}"#, &Filter::default()).unwrap_err();
        assert!(err.to_string().contains("missing field"), "{err}");
        assert!(select(b"not json", &Filter::default()).is_err());
    }

    #[test]
    fn control_characters_from_the_topic_are_escaped_in_the_table() {
        let record = select(line("A-\\u0007", "allow").as_bytes(), &Filter::default())
            .unwrap()
            .unwrap();
        let row = table_row(&record);
        assert!(!row.contains('\u{7}'), "{row:?}");
        assert!(row.contains("A-\\u{7}"), "{row:?}");
    }
}
