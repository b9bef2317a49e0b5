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
