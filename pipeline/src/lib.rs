//! riskstream's streaming job as a library: decode → aggregate → enrich → score → sink.
//!
//! [`job`] runs the streaming job in-process from a configuration; the `riskstream` binary
//! (src/main.rs and src/cmd/) folds its command line into one and calls it. Training and
//! replay reuse the same [`engine`] so that what is trained on and what is replayed is
//! exactly what the live job computes.

pub mod aggregate;
pub mod checkpoint;
pub mod dataset;
pub mod dead_letter;
pub mod decode;
pub mod engine;
pub mod enrich;
pub mod event;
pub mod features;
pub mod gen;
pub mod job;
pub mod kafka;
pub mod logging;
pub mod metrics;
pub mod observe;
pub mod progress;
pub mod reload;
pub mod replay;
pub mod result;
pub mod sink;
pub mod source;
pub mod time;
