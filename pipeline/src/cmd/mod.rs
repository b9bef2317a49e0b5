//! The subcommands of the `riskstream` binary: argument types and the glue between the
//! command line, the configuration and the library.

pub mod bench;
pub mod gen;
pub mod graph;
pub mod model;
pub mod passthrough;
pub mod produce;
pub mod replay;
pub mod results;
pub mod run;
pub mod train;
