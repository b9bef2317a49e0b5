//! The built-in generator as a source: the embedded default of `riskstream run`, so that
//! the whole pipeline runs with no file and no external service.

use std::sync::Arc;
use std::time::Instant;

use riskstream_graph::GraphRecord;

use super::{BlockingSource, RawBatch, SourceError};
use crate::gen::{EventStream, GenError, GenOptions, Generator};

/// The topic name generated records report.
pub const TOPIC: &str = "generator";

/// Streams generated events, encoded as the same JSON a Kafka message or a file line
/// carries, so that they take exactly the path real input takes (decode included).
pub struct GeneratorSource {
    generator: Generator,
    stream: EventStream,
    topic: Arc<str>,
    sequence: i64,
    line: Vec<u8>,
}

impl GeneratorSource {
    pub fn new(opts: GenOptions) -> Result<Self, GenError> {
        let generator = Generator::new(opts)?;
        let stream = generator.events();
        Ok(GeneratorSource {
            generator,
            stream,
            topic: Arc::from(TOPIC),
            sequence: 0,
            line: Vec::with_capacity(512),
        })
    }

    /// The entity graph that belongs to the generated events.
    pub fn graph_records(&self) -> Vec<GraphRecord> {
        self.generator.graph_records().collect()
    }
}

impl BlockingSource for GeneratorSource {
    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        let mut batch = RawBatch::new(self.topic.clone(), max);
        for labeled in self.stream.by_ref().take(max) {
            self.line.clear();
            serde_json::to_writer(&mut self.line, &labeled.event.to_record())
                .map_err(|e| SourceError::Generator(e.to_string()))?;
            batch.push(&self.line, 0, self.sequence, Instant::now());
            self.sequence += 1;
        }
        Ok(if batch.is_empty() { None } else { Some(batch) })
    }

    fn describe(&self) -> String {
        let o = self.generator.options();
        format!(
            "built-in generator (seed {}, {} events, {} accounts)",
            o.seed, o.events, o.accounts
        )
    }
}
