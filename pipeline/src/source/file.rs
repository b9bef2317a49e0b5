//! The JSONL file source: one event per line.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rustix::event::{PollFd, PollFlags, Timespec};

use tokio_util::sync::CancellationToken;

use super::{BlockingSource, RawBatch, SourceError};

/// The UTF-8 byte order mark some editors write at the start of a file. It is not part of
/// the first event, so it is skipped.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads a JSONL file line by line. Lines longer than the size limit are not held in memory
/// whole: only `keep` bytes of them are kept (enough for the dead letter's prefix) and the
/// rest is skipped, so one huge line cannot exhaust memory. While skipping, the source
/// watches for shutdown, so that an endless line (`/dev/zero`) cannot keep the job running;
/// and a FIFO or device that has nothing to give is waited on in a way shutdown can cut
/// short (see [`Input`]), so that a pipe nobody writes to cannot either.
pub struct FileSource {
    path: PathBuf,
    reader: BufReader<Input>,
    topic: Arc<str>,
    line: i64,
    max_bytes: usize,
    keep: usize,
    scratch: Vec<u8>,
    /// Whether a byte order mark at the start of the file was looked for yet.
    started: bool,
    cancel: CancellationToken,
}

/// The opened input. It is opened non-blocking, so that opening a FIFO does not wait for a
/// writer. A regular file never blocks, and is read as it is. Anything else (a FIFO, a
/// character device, a socket) is read only when `poll` says a read will not block, and
/// `poll` waits in short slices between which `cancel` is looked at: a pipe that never
/// delivers data, or never gets a writer, holds the source thread no longer than one slice
/// after shutdown. (On Linux a FIFO opened this way reports neither data nor hang-up until
/// a writer has come and gone, so a FIFO whose writer comes later is read, not taken as
/// empty.)
struct Input {
    file: File,
    /// Whether reads must wait for `poll` (anything but a regular file).
    waits: bool,
    cancel: CancellationToken,
}

/// How long one `poll` of a waiting [`Input`] lasts before shutdown is looked at again.
const WAIT_SLICE: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: 100_000_000,
};

/// The error an [`Input`] read returns when shutdown was requested while it waited.
#[derive(Debug, thiserror::Error)]
#[error("shutdown requested while waiting for input")]
struct WaitCancelled;

impl Input {
    fn open(path: &Path) -> io::Result<Input> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(path)?;
        let waits = !file.metadata()?.file_type().is_file();
        Ok(Input {
            file,
            waits,
            cancel: CancellationToken::new(),
        })
    }
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.waits {
            return self.file.read(buf);
        }
        loop {
            if self.cancel.is_cancelled() {
                return Err(io::Error::other(WaitCancelled));
            }
            let mut fds = [PollFd::new(&self.file, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&WAIT_SLICE)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(err) => return Err(err.into()),
            }
            match self.file.read(buf) {
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                read => return read,
            }
        }
    }
}

/// Whether `err` is an [`Input`] giving up its wait for shutdown.
fn cancelled(err: &io::Error) -> bool {
    err.get_ref()
        .is_some_and(|inner| inner.is::<WaitCancelled>())
}

/// What [`FileSource::read_line`] found.
enum Line {
    /// A line of this many bytes (without its line ending), more than `scratch.len()` when it
    /// was oversize.
    Read(usize),
    /// The end of the file.
    End,
    /// Shutdown was requested while an oversize line was being skipped.
    Cancelled,
    /// Shutdown was requested while the input had nothing to give (a FIFO or device).
    Idle,
}

/// The topic name the records of the file at `path` report: `file:<path>`.
pub fn topic_of(path: &Path) -> Arc<str> {
    format!("file:{}", path.display()).into()
}

impl FileSource {
    /// Opens `path`. `max_bytes` is `source.max_event_bytes`; `keep` is how much of an
    /// oversize line to keep (`dead_letter.max_payload_bytes`).
    pub fn open(path: &Path, max_bytes: usize, keep: usize) -> Result<Self, SourceError> {
        let file = Input::open(path).map_err(|error| SourceError::Open {
            path: path.display().to_string(),
            error,
        })?;
        Ok(FileSource {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(1 << 20, file),
            topic: topic_of(path),
            line: 0,
            max_bytes,
            keep: keep.min(max_bytes),
            scratch: Vec::new(),
            started: false,
            cancel: CancellationToken::new(),
        })
    }

    /// Skips a byte order mark at the start of the file. Looked for on the first read, not
    /// in `open`, so that opening a pipe does not wait for its first bytes. (A pipe whose
    /// first read returns less than the mark's three bytes keeps them.)
    fn skip_bom(&mut self) -> std::io::Result<()> {
        self.started = true;
        if self.reader.fill_buf()?.starts_with(BOM) {
            self.reader.consume(BOM.len());
        }
        Ok(())
    }

    /// [`FileSource::read_line_from_input`], with a wait cut short by shutdown as
    /// [`Line::Idle`] rather than an error. (A line read in part is then not processed:
    /// what it had is in no record.)
    fn read_line(&mut self) -> std::io::Result<Line> {
        match self.read_line_from_input() {
            Err(err) if cancelled(&err) => Ok(Line::Idle),
            read => read,
        }
    }

    /// Reads one line into `scratch`, without its line ending (`\n` or `\r\n`: neither
    /// counts toward the size limit).
    fn read_line_from_input(&mut self) -> std::io::Result<Line> {
        if !self.started {
            self.skip_bom()?;
        }
        self.scratch.clear();
        // Room for the line, a `\r` and the `\n`: a line at the limit ends inside it.
        let limit = (self.max_bytes + 2) as u64;
        let mut taken = (&mut self.reader).take(limit);
        let n = taken.read_until(b'\n', &mut self.scratch)?;
        if n == 0 {
            return Ok(Line::End);
        }
        let ended = self.scratch.last() == Some(&b'\n');
        if ended || (n as u64) < limit {
            // A whole line, or the last line of the file without a newline.
            if ended {
                self.scratch.pop();
                if self.scratch.last() == Some(&b'\r') {
                    self.scratch.pop();
                }
            }
            let len = self.scratch.len();
            if len > self.max_bytes {
                self.scratch.truncate(self.keep);
            }
            return Ok(Line::Read(len));
        }
        // Oversize: keep a prefix, count and skip the rest of the line.
        let mut total = self.scratch.len();
        let mut last = self.scratch.last().copied();
        self.scratch.truncate(self.keep);
        loop {
            if self.cancel.is_cancelled() {
                return Ok(Line::Cancelled);
            }
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                return Ok(Line::Read(total));
            }
            match buf.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    let cr = if i > 0 {
                        buf[i - 1] == b'\r'
                    } else {
                        last == Some(b'\r')
                    };
                    total = total + i - usize::from(cr);
                    self.reader.consume(i + 1);
                    return Ok(Line::Read(total));
                }
                None => {
                    let len = buf.len();
                    total += len;
                    last = buf.last().copied();
                    self.reader.consume(len);
                }
            }
        }
    }
}

impl BlockingSource for FileSource {
    fn next_batch(&mut self, max: usize) -> Result<Option<RawBatch>, SourceError> {
        let mut batch = RawBatch::new(self.topic.clone(), max);
        while batch.len() < max {
            let full_len = match self.read_line() {
                Ok(Line::Read(n)) => n,
                Ok(Line::End) => break,
                Ok(Line::Cancelled) => {
                    tracing::warn!(
                        file = %self.path.display(),
                        line = self.line,
                        "shutdown while skipping an oversize line that has no end yet: \
                         that line is not processed"
                    );
                    break;
                }
                Ok(Line::Idle) => {
                    tracing::info!(
                        file = %self.path.display(),
                        line = self.line,
                        "shutdown while waiting for input"
                    );
                    break;
                }
                Err(error) => {
                    return Err(SourceError::Read {
                        path: self.path.display().to_string(),
                        line: self.line,
                        error,
                    })
                }
            };
            let offset = self.line;
            self.line += 1;
            if full_len == 0 {
                // Blank lines carry no event; they are not counted as input.
                continue;
            }
            let received = Instant::now();
            if full_len > self.max_bytes {
                batch.push_oversize(&self.scratch, full_len, 0, offset, received);
            } else {
                batch.push(&self.scratch, 0, offset, received);
            }
        }
        Ok(if batch.is_empty() { None } else { Some(batch) })
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn watch(&mut self, cancel: CancellationToken) {
        self.reader.get_mut().cancel = cancel.clone();
        self.cancel = cancel;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(batch: &RawBatch) -> Vec<(i64, Vec<u8>)> {
        batch
            .records
            .iter()
            .map(|r| (r.offset, batch.payload(r).to_vec()))
            .collect()
    }

    #[test]
    fn reads_lines_in_batches_with_line_offsets_and_skips_blank_lines() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        write!(f, "a\r\nb\n\nc\nd").unwrap();
        let mut src = FileSource::open(f.path(), 100, 100).unwrap();
        let first = src.next_batch(2).unwrap().unwrap();
        assert_eq!(lines(&first), vec![(0, b"a".to_vec()), (1, b"b".to_vec())]);
        let second = src.next_batch(10).unwrap().unwrap();
        assert_eq!(lines(&second), vec![(3, b"c".to_vec()), (4, b"d".to_vec())]);
        assert!(src.next_batch(10).unwrap().is_none());
    }

    #[test]
    fn oversize_line_keeps_only_a_prefix_and_its_true_size() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let long = "x".repeat(10_000);
        writeln!(f, "short\n{long}\nafter").unwrap();
        let mut src = FileSource::open(f.path(), 100, 8).unwrap();
        let batch = src.next_batch(10).unwrap().unwrap();
        assert_eq!(batch.len(), 3);
        let big = &batch.records[1];
        assert_eq!(batch.payload(big), b"xxxxxxxx");
        assert_eq!(batch.oversize_len(1), Some(10_000));
        assert_eq!(batch.payload(&batch.records[2]), b"after");
        assert_eq!(batch.records[2].offset, 2);
    }

    #[test]
    fn a_byte_order_mark_at_the_start_is_not_part_of_the_first_event() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"\xEF\xBB\xBF{\"a\":1}\n\xEF\xBB\xBF{}\n")
            .unwrap();
        let mut src = FileSource::open(f.path(), 100, 100).unwrap();
        let batch = src.next_batch(10).unwrap().unwrap();
        assert_eq!(
            lines(&batch),
            vec![
                (0, b"{\"a\":1}".to_vec()),
                // Only the start of the file may carry the mark; elsewhere it is data.
                (1, b"\xEF\xBB\xBF{}".to_vec())
            ]
        );
    }

    #[test]
    fn a_crlf_line_ending_does_not_count_toward_the_size_limit() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let at_limit = "a".repeat(100);
        let over = "b".repeat(101);
        let far_over = "c".repeat(10_000);
        write!(f, "{at_limit}\r\n{over}\r\n{far_over}\r\n{at_limit}\r\n").unwrap();
        let mut src = FileSource::open(f.path(), 100, 8).unwrap();
        let batch = src.next_batch(10).unwrap().unwrap();
        assert_eq!(batch.len(), 4);
        assert_eq!(batch.payload(&batch.records[0]), at_limit.as_bytes());
        assert_eq!(batch.oversize_len(0), None, "a line at the limit fits");
        assert_eq!(batch.payload(&batch.records[1]), b"bbbbbbbb");
        assert_eq!(batch.oversize_len(1), Some(101));
        assert_eq!(batch.oversize_len(2), Some(10_000));
        assert_eq!(batch.payload(&batch.records[3]), at_limit.as_bytes());
        assert_eq!(batch.oversize_len(3), None);
    }

    #[cfg(unix)]
    #[test]
    fn shutdown_stops_the_read_of_an_endless_line() {
        let mut src = FileSource::open(Path::new("/dev/zero"), 100, 8).unwrap();
        let cancel = CancellationToken::new();
        src.watch(cancel.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(src.next_batch(10).map(|b| b.map(|b| b.len())));
        });
        cancel.cancel();
        // A liveness bound, not a timing: without the check the read never ends.
        let read = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the read of /dev/zero did not stop on shutdown");
        assert!(
            read.unwrap().is_none(),
            "the unfinished line is not an input"
        );
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = FileSource::open(Path::new("no/such/events.jsonl"), 10, 10)
            .err()
            .unwrap();
        assert!(err.to_string().contains("no/such/events.jsonl"), "{err}");
    }

    #[test]
    fn a_fifo_without_a_writer_opens_at_once_and_its_read_ends_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("events.fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let mut source = FileSource::open(&fifo, 1024, 64).unwrap();
        let cancel = CancellationToken::new();
        source.watch(cancel.clone());
        let reading = std::thread::spawn(move || source.next_batch(16));
        cancel.cancel();
        assert!(reading.join().unwrap().unwrap().is_none());
    }
}
