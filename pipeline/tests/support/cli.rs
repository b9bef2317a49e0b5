//! Helpers of the end-to-end tests of the `riskstream` binary, shared by the test files
//! that include this module.

// Each test file uses its own share of the helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_riskstream"));
    cmd.env("RUST_LOG", "warn");
    for (key, _) in std::env::vars() {
        if key.starts_with("RISKSTREAM__") {
            cmd.env_remove(key);
        }
    }
    // Tests run in parallel: no job of theirs takes the admin endpoint's default port.
    cmd.env("RISKSTREAM__ADMIN__LISTEN", "");
    cmd
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn shipped_model() -> PathBuf {
    repo_root().join("models/riskstream-v1")
}

pub fn ok(output: Output) -> Output {
    assert!(
        output.status.success(),
        "command failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn read_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub fn summary(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// What [`run_on_file`] gives back: the output, the results, the dead letters and the
/// summary (empty values for whatever the run did not write).
pub type FileRun = (
    Output,
    Vec<serde_json::Value>,
    Vec<serde_json::Value>,
    serde_json::Value,
);

/// Runs `riskstream run` on `input` with the shipped model, no graph and `config` appended
/// to the job's config file.
pub fn run_on_file(dir: &Path, input: &Path, config: &str) -> FileRun {
    run_on_file_with(dir, input, config, |_| {})
}

/// [`run_on_file`], with `adjust` adding arguments or environment to the command first.
pub fn run_on_file_with(
    dir: &Path,
    input: &Path,
    config: &str,
    adjust: impl FnOnce(&mut Command),
) -> FileRun {
    let out = dir.join("results.jsonl");
    let dead = dir.join("dead.jsonl");
    let summary_path = dir.join("summary.json");
    let mut command = file_run(dir, config);
    command
        .arg("--quiet")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(&out)
        .arg("--dead-letter")
        .arg(&dead)
        .arg("--summary-json")
        .arg(&summary_path);
    adjust(&mut command);
    let output = command.output().unwrap();
    let lines = |path: &Path| {
        if path.exists() {
            read_lines(path)
        } else {
            Vec::new()
        }
    };
    let s = if summary_path.exists() {
        summary(&summary_path)
    } else {
        serde_json::Value::Null
    };
    (output, lines(&out), lines(&dead), s)
}

/// `riskstream run` on a file input with no graph and the shipped model; `config` is
/// written to a configuration file in `dir` first.
pub fn file_run(dir: &Path, config: &str) -> Command {
    let path = dir.join("file-run.toml");
    std::fs::write(&path, format!("[graph]\nkind = \"none\"\n{config}")).unwrap();
    let mut cmd = bin();
    cmd.args(["run", "--config"])
        .arg(path)
        .arg("--model")
        .arg(shipped_model());
    cmd
}

/// Asserts that a run was refused with exit code 2 and a message containing each of `words`.
pub fn refused(output: Output, words: &[&str]) {
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{err}");
    for word in words {
        assert!(err.contains(word), "`{word}` not in: {err}");
    }
}
