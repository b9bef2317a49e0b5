//! Shared helpers for the tests against real services: where the `riskstream` binary is,
//! and how to reach the Kafka broker and the Neo4j server that `scripts/test.sh` started.

use std::path::PathBuf;

/// The `riskstream` binary of this build. Integration tests drive the real binary, the way
/// a user does; `scripts/test.sh` builds it before the tests run.
///
/// Test executables live in `<target>/<profile>/deps/`, the binary one folder up.
pub fn riskstream_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("RISKSTREAM_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test executable has a path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executables live in <target>/<profile>/deps");
    let bin = profile_dir.join(format!("riskstream{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "the riskstream binary is missing at {}: run `cargo build -p riskstream-pipeline` first \
         (scripts/test.sh does) or set RISKSTREAM_BIN",
        bin.display()
    );
    bin
}

/// The repository root, for scripts and the shipped model.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("integration-tests sits in the repository root")
        .to_path_buf()
}

pub mod admin;
pub mod kafka;
pub mod neo4j;
