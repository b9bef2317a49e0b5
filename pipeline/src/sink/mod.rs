//! Sinks: where results and dead letters go. A sink receives already-encoded JSON lines so
//! that encoding happens once, in the stage that owns the data.

pub mod kafka;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Errors that stop a sink. A sink that cannot write must stop the job: dropping results
/// silently is never an option.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("cannot create output file `{path}`: {source}")]
    Create { path: String, source: io::Error },
    #[error("cannot write to `{target}`: {source}")]
    Write { target: String, source: io::Error },
}

/// Where encoded JSON lines are written: a file or standard output.
pub enum LineSink {
    File {
        path: PathBuf,
        writer: BufWriter<File>,
    },
    Stdout(BufWriter<io::Stdout>),
}

impl LineSink {
    /// A file sink at `path` (`-` means standard output). Parent folders are created.
    pub fn open(path: &Path) -> Result<Self, SinkError> {
        if path.as_os_str() == "-" {
            return Ok(LineSink::Stdout(BufWriter::with_capacity(
                1 << 16,
                io::stdout(),
            )));
        }
        let create = |source| SinkError::Create {
            path: path.display().to_string(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(create)?;
        }
        let file = File::create(path).map_err(create)?;
        Ok(LineSink::File {
            path: path.to_path_buf(),
            writer: BufWriter::with_capacity(1 << 20, file),
        })
    }

    /// Writes a block of newline-terminated JSON lines.
    pub fn write_lines(&mut self, lines: &[u8]) -> Result<(), SinkError> {
        let result = match self {
            LineSink::File { writer, .. } => writer.write_all(lines),
            LineSink::Stdout(writer) => writer.write_all(lines),
        };
        result.map_err(|source| self.write_error(source))
    }

    /// Flushes buffered lines to the operating system: after this the lines are delivered.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        let result = match self {
            LineSink::File { writer, .. } => writer.flush(),
            LineSink::Stdout(writer) => writer.flush(),
        };
        result.map_err(|source| self.write_error(source))
    }

    /// Where the lines go, for messages: the file path or `stdout`.
    pub fn target(&self) -> String {
        match self {
            LineSink::File { path, .. } => path.display().to_string(),
            LineSink::Stdout(_) => "stdout".to_string(),
        }
    }

    fn write_error(&self, source: io::Error) -> SinkError {
        SinkError::Write {
            target: self.target(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sink_creates_parent_folders_and_writes_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/results.jsonl");
        let mut sink = LineSink::open(&path).unwrap();
        sink.write_lines(b"{\"x\":1}\n{\"x\":2}\n").unwrap();
        sink.flush().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"x\":1}\n{\"x\":2}\n");
        assert_eq!(sink.target(), path.display().to_string());
    }
}
