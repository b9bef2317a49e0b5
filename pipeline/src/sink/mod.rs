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
    /// A file write failed (a full disk, a file size limit); what was delivered before it
    /// is kept whole and nothing after it.
    #[error(
        "cannot write to `{target}`: {source}; the file was cut back to its last complete \
         line ({kept} bytes), every line in it was delivered"
    )]
    FileWrite {
        target: String,
        source: io::Error,
        /// Bytes the file keeps: everything flushed before the failure, whole lines only.
        kept: u64,
    },
    /// The cut back after a failed write failed too: the last line may be torn.
    #[error(
        "cannot write to `{target}`: {source}; cutting the file back to its last complete line \
         (byte {kept}) failed too ({cut}): anything after byte {kept} is a torn line"
    )]
    TornFile {
        target: String,
        source: io::Error,
        kept: u64,
        cut: io::Error,
    },
    #[error("`{target}` failed earlier; nothing more is written to it")]
    Failed { target: String },
    #[error(
        "{second} `{second_path}` is the same file as {first} `{first_path}`: \
         writing it would destroy {what}; give them different paths"
    )]
    SameFile {
        first: &'static str,
        first_path: String,
        second: &'static str,
        second_path: String,
        what: &'static str,
    },
}

/// A file the job reads or writes, with the option and key that chose it, for messages.
#[derive(Debug, Clone, Copy)]
pub struct NamedPath<'a> {
    /// The option and key, e.g. "the results file (--output / sink.path)".
    pub name: &'static str,
    pub path: &'a Path,
}

/// Refuses a job whose outputs would overwrite its input or each other, before anything is
/// opened for writing: `--output` onto `--input` would truncate the input (the job then
/// reads nothing and exits 0), and results and dead letters in one file interleave into
/// corrupt lines. Paths are compared as the files they name: links are resolved, existing
/// files are compared by device and inode. `-` (standard output) and files that are not
/// regular files (`/dev/null`, a terminal) may be shared.
pub fn refuse_same_file<'a>(
    input: Option<NamedPath<'a>>,
    outputs: &[NamedPath<'a>],
) -> Result<(), SinkError> {
    let keyed = |n: &NamedPath<'a>| FileKey::of(n.path).map(|key| (*n, key));
    let input = input.as_ref().and_then(keyed);
    let outputs: Vec<_> = outputs.iter().filter_map(keyed).collect();
    let same = |first: &NamedPath<'_>, second: &NamedPath<'_>, what| SinkError::SameFile {
        first: first.name,
        first_path: first.path.display().to_string(),
        second: second.name,
        second_path: second.path.display().to_string(),
        what,
    };
    for (j, (second, key)) in outputs.iter().enumerate() {
        if let Some((first, _)) = input.iter().find(|(_, k)| k == key) {
            return Err(same(first, second, "the input"));
        }
        if let Some((first, _)) = outputs[..j].iter().find(|(_, k)| k == key) {
            return Err(same(first, second, "both outputs"));
        }
    }
    Ok(())
}

/// What identifies a file: its device and inode when it exists, else its resolved path.
#[derive(Debug, PartialEq, Eq)]
enum FileKey {
    #[cfg(unix)]
    Inode(u64, u64),
    Path(PathBuf),
}

impl FileKey {
    /// `None` for paths that may be shared: `-` and existing files that are not regular.
    fn of(path: &Path) -> Option<FileKey> {
        if path.as_os_str() == "-" {
            return None;
        }
        match fs::metadata(path) {
            Ok(meta) if !meta.is_file() => None,
            #[cfg(unix)]
            Ok(meta) => {
                use std::os::unix::fs::MetadataExt;
                Some(FileKey::Inode(meta.dev(), meta.ino()))
            }
            #[cfg(not(unix))]
            Ok(_) => Some(FileKey::Path(resolve(path))),
            Err(_) => Some(FileKey::Path(resolve(path))),
        }
    }
}

/// `path` with its longest existing ancestor resolved (links, `..`) and the rest appended:
/// two spellings of a file that does not exist yet resolve alike.
fn resolve(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = Vec::new();
    let mut base = absolute.as_path();
    loop {
        if let Ok(real) = fs::canonicalize(base) {
            // The rest does not exist, so it holds no links: `..` is lexical there.
            return rest.iter().rev().fold(real, |mut acc, part| {
                if part == ".." {
                    acc.pop();
                } else if part != "." {
                    acc.push(part);
                }
                acc
            });
        }
        match (base.parent(), base.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last.as_os_str().to_os_string());
                base = parent;
            }
            _ => return absolute,
        }
    }
}

/// Where encoded JSON lines are written: a file or standard output.
pub enum LineSink {
    File(FileLines),
    Stdout(BufWriter<io::Stdout>),
}

/// A results or dead-letter file that holds whole lines only: after a failed write it is
/// cut back to the end of the last line that was flushed, so a reader never sees a torn
/// line, and it refuses further writes.
pub struct FileLines {
    path: PathBuf,
    /// `None` once a write failed.
    writer: Option<BufWriter<File>>,
    /// Bytes written since the last flush: part of the file only once flushed.
    pending: u64,
    /// Bytes flushed: the file's length at the end of the last whole line.
    flushed: u64,
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
        Ok(LineSink::File(FileLines {
            path: path.to_path_buf(),
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
            pending: 0,
            flushed: 0,
        }))
    }

    /// Writes a block of newline-terminated JSON lines.
    pub fn write_lines(&mut self, lines: &[u8]) -> Result<(), SinkError> {
        match self {
            LineSink::File(file) => file.write_lines(lines),
            LineSink::Stdout(writer) => writer.write_all(lines).map_err(stdout_error),
        }
    }

    /// Flushes buffered lines to the operating system: after this the lines are delivered.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        match self {
            LineSink::File(file) => file.flush(),
            LineSink::Stdout(writer) => writer.flush().map_err(stdout_error),
        }
    }

    /// Where the lines go, for messages: the file path or `stdout`.
    pub fn target(&self) -> String {
        match self {
            LineSink::File(file) => file.path.display().to_string(),
            LineSink::Stdout(_) => "stdout".to_string(),
        }
    }
}

fn stdout_error(source: io::Error) -> SinkError {
    SinkError::Write {
        target: "stdout".to_string(),
        source,
    }
}

impl FileLines {
    fn write_lines(&mut self, lines: &[u8]) -> Result<(), SinkError> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(self.failed());
        };
        match writer.write_all(lines) {
            Ok(()) => {
                self.pending += lines.len() as u64;
                Ok(())
            }
            Err(source) => Err(self.cut_back(source)),
        }
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(self.failed());
        };
        match writer.flush() {
            Ok(()) => {
                self.flushed += std::mem::take(&mut self.pending);
                Ok(())
            }
            Err(source) => Err(self.cut_back(source)),
        }
    }

    fn failed(&self) -> SinkError {
        SinkError::Failed {
            target: self.path.display().to_string(),
        }
    }

    /// After a failed write: drop what is buffered (it must not be written when the sink is
    /// dropped) and cut the file back to the end of the last flushed line.
    fn cut_back(&mut self, source: io::Error) -> SinkError {
        let target = self.path.display().to_string();
        let kept = self.flushed;
        let Some(writer) = self.writer.take() else {
            return self.failed();
        };
        let (file, _unwritten) = writer.into_parts();
        match file.set_len(kept) {
            Ok(()) => SinkError::FileWrite {
                target,
                source,
                kept,
            },
            Err(cut) => SinkError::TornFile {
                target,
                source,
                kept,
                cut,
            },
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

    #[cfg(target_os = "linux")]
    #[test]
    fn a_full_device_is_a_clear_error_and_the_sink_refuses_more_lines() {
        let mut sink = LineSink::open(Path::new("/dev/full")).unwrap();
        // Larger than the buffer, so the write reaches the device at once.
        let lines = b"{\"x\":1}\n".repeat(200_000);
        let message = sink.write_lines(&lines).unwrap_err().to_string();
        assert!(message.contains("No space left on device"), "{message}");
        let again = sink.write_lines(b"{}\n").unwrap_err().to_string();
        assert!(again.contains("failed earlier"), "{again}");
    }

    #[test]
    fn a_failed_write_cuts_the_file_back_to_its_last_flushed_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("results.jsonl");
        let mut sink = LineSink::open(&path).unwrap();
        sink.write_lines(b"{\"x\":1}\n{\"x\":2}\n").unwrap();
        sink.flush().unwrap();
        // A torn line reaches the file, then the disk fills up.
        let LineSink::File(file) = &mut sink else {
            unreachable!("a path gives a file sink")
        };
        file.writer
            .as_mut()
            .unwrap()
            .get_mut()
            .write_all(b"{\"x\":3")
            .unwrap();
        let err = file.cut_back(io::Error::from(io::ErrorKind::StorageFull));
        assert!(
            matches!(err, SinkError::FileWrite { kept: 16, .. }),
            "{err}"
        );
        drop(sink);
        assert_eq!(fs::read_to_string(&path).unwrap(), "{\"x\":1}\n{\"x\":2}\n");
    }

    const INPUT: &str = "the input (--input / source.path)";
    const RESULTS: &str = "the results file (--output / sink.path)";
    const DEAD: &str = "the dead-letter file (--dead-letter / dead_letter.path)";

    fn named<'a>(name: &'static str, path: &'a Path) -> NamedPath<'a> {
        NamedPath { name, path }
    }

    #[test]
    fn an_output_onto_the_input_is_refused_naming_both_options() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("ev.jsonl");
        fs::write(&input, "{}\n").unwrap();
        let other_spelling = dir.path().join(".").join("ev.jsonl");
        let err = refuse_same_file(
            Some(named(INPUT, &input)),
            &[named(RESULTS, &other_spelling)],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--input / source.path"), "{err}");
        assert!(err.contains("--output / sink.path"), "{err}");
        assert!(err.contains("destroy the input"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn an_output_through_a_link_to_the_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("ev.jsonl");
        fs::write(&input, "{}\n").unwrap();
        let link = dir.path().join("link.jsonl");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        let err = refuse_same_file(Some(named(INPUT, &input)), &[named(DEAD, &link)]).unwrap_err();
        assert!(
            matches!(
                err,
                SinkError::SameFile {
                    what: "the input",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn two_outputs_that_do_not_exist_yet_are_refused_when_they_name_one_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("real")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("alias")).unwrap();
        let results = dir.path().join("real/new/out.jsonl");
        let dead = dir.path().join("alias/new/../new/out.jsonl");
        let err = refuse_same_file(None, &[named(RESULTS, &results), named(DEAD, &dead)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--dead-letter / dead_letter.path"), "{err}");
        assert!(err.contains("both outputs"), "{err}");
    }

    #[test]
    fn distinct_files_standard_output_and_devices_may_be_shared() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("ev.jsonl");
        fs::write(&input, "{}\n").unwrap();
        let results = dir.path().join("out.jsonl");
        let dead = dir.path().join("dead.jsonl");
        refuse_same_file(
            Some(named(INPUT, &input)),
            &[named(RESULTS, &results), named(DEAD, &dead)],
        )
        .unwrap();
        let stdout = Path::new("-");
        refuse_same_file(
            Some(named(INPUT, &input)),
            &[named(RESULTS, stdout), named(DEAD, stdout)],
        )
        .unwrap();
        #[cfg(unix)]
        {
            let null = Path::new("/dev/null");
            refuse_same_file(None, &[named(RESULTS, null), named(DEAD, null)]).unwrap();
        }
    }
}
