//! The progress line of the commands that run for a while (`gen`, `graph load`,
//! `produce`, `replay`, `run`): one implementation, over the indicatif crate.
//!
//! The line is drawn on stderr only when stderr is a terminal and the command was not
//! asked to be quiet: piped or redirected stderr (scripts, CI, tests) gets nothing, so what
//! a command writes there is its own messages and summary alone. Setting the position is
//! an atomic store and a clock read; redraws are rate-limited to [`REDRAWS_PER_SECOND`].
//! Callers update once per batch, not per event; the job's line is read from the job's
//! counters by a task of its own ([`Progress::every`]), so the job's hot path does nothing
//! for it. The line is cleared when the work ends, also when it ends with an error (the
//! bar is dropped unfinished), so the summary or the error starts on a clean line.

use std::borrow::Cow;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{
    HumanCount, ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressState, ProgressStyle,
};

use crate::metrics::Metrics;

/// At most this many redraws a second: enough to look live, cheap for a remote terminal.
pub const REDRAWS_PER_SECOND: u8 = 10;

/// How often the job's line reads the job's counters.
const JOB_EVERY: Duration = Duration::from_secs(1);

/// What the position counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Things counted one by one, named in the line ("events", "records").
    Count(&'static str),
    /// Bytes, shown in KiB, MiB, GiB.
    Bytes,
}

/// One progress line on stderr (or hidden, see the module doc).
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A line that starts with `label`, counting `unit` up to `total` when it is known
    /// (then with a bar and a percentage). Hidden when `quiet` or when stderr is not a
    /// terminal.
    pub fn stderr(label: &'static str, total: Option<u64>, unit: Unit, quiet: bool) -> Progress {
        let target = if shows(quiet, std::io::stderr().is_terminal()) {
            ProgressDrawTarget::stderr_with_hz(REDRAWS_PER_SECOND)
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress::to(target, label, total, unit)
    }

    fn to(
        target: ProgressDrawTarget,
        label: &'static str,
        total: Option<u64>,
        unit: Unit,
    ) -> Progress {
        let bar = ProgressBar::with_draw_target(total, target)
            .with_style(style(total.is_some(), unit))
            .with_prefix(label)
            .with_finish(ProgressFinish::AndClear);
        Progress { bar }
    }

    /// Whether nothing is drawn (quiet, or stderr is not a terminal).
    pub fn is_hidden(&self) -> bool {
        self.bar.is_hidden()
    }

    /// Adds `n` to the position.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
    }

    /// Sets the position.
    pub fn set(&self, done: u64) {
        self.bar.set_position(done);
    }

    /// Sets the total, for work whose size is learnt on the way. Only a line made with a
    /// total shows it.
    pub fn set_total(&self, total: u64) {
        if self.bar.length() != Some(total) {
            self.bar.set_length(total);
        }
    }

    /// Sets the text at the end of the line (details the count does not say). Each setter
    /// may redraw, so when both change set the message first: the position's redraw then
    /// shows both.
    pub fn set_message(&self, message: impl Into<Cow<'static, str>>) {
        self.bar.set_message(message);
    }

    /// Clears the line: the work is done and the command prints its summary next.
    pub fn finish(self) {
        self.bar.finish_and_clear();
    }

    /// Calls `update` every `period` on the tokio runtime (a task of its own), for work
    /// whose counters live elsewhere (the job's [`Metrics`]). When the line is hidden no
    /// task is started. Must be called inside a tokio runtime.
    pub fn every(
        self,
        period: Duration,
        mut update: impl FnMut(&Progress) + Send + 'static,
    ) -> Ticking {
        let task = (!self.is_hidden()).then(|| {
            let progress = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(period);
                loop {
                    tick.tick().await;
                    update(&progress);
                }
            })
        });
        Ticking {
            progress: self,
            task,
        }
    }
}

/// A progress line updated by a task of its own ([`Progress::every`]); the task stops and
/// the line is cleared on [`Ticking::finish`] or when this is dropped.
#[derive(Debug)]
pub struct Ticking {
    progress: Progress,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Ticking {
    /// Stops the updates and clears the line.
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for Ticking {
    /// Also on an error path: the line is cleared before the error is printed, and a
    /// tick that is still running draws nothing on a finished line.
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.progress.bar.finish_and_clear();
    }
}

/// The job's line (`riskstream run`): events done (results and dead letters) and their
/// rate, decisions, dead letters and latency, read from the job's counters once a second.
pub fn job(metrics: Arc<Metrics>, quiet: bool) -> Ticking {
    Progress::stderr("running", None, Unit::Count("events"), quiet).every(JOB_EVERY, move |p| {
        p.set_message(job_details(&metrics));
        p.set(Metrics::get(&metrics.results) + Metrics::get(&metrics.dead_letters));
    })
}

fn job_details(metrics: &Metrics) -> String {
    format!(
        "| results {} (allow {}, review {}, block {}) | dead letters {} | latency p50 {:.2} ms p99 {:.2} ms",
        Metrics::get(&metrics.results),
        Metrics::get(&metrics.decisions[0]),
        Metrics::get(&metrics.decisions[1]),
        Metrics::get(&metrics.decisions[2]),
        Metrics::get(&metrics.dead_letters),
        Metrics::get(&metrics.latency_p50_us) as f64 / 1000.0,
        Metrics::get(&metrics.latency_p99_us) as f64 / 1000.0,
    )
}

/// Whether a line is drawn at all.
fn shows(quiet: bool, stderr_is_terminal: bool) -> bool {
    !quiet && stderr_is_terminal
}

fn style(with_total: bool, unit: Unit) -> ProgressStyle {
    let template = match (with_total, unit) {
        (true, Unit::Count(name)) => format!(
            "{{prefix}} [{{bar:30}}] {{percent:>3}}%  {{human_pos}}/{{human_len}} {name}  {{rate}}  {{elapsed}}  {{msg}}"
        ),
        (false, Unit::Count(name)) => {
            format!("{{prefix}}  {{human_pos}} {name}  {{rate}}  {{elapsed}}  {{msg}}")
        }
        (true, Unit::Bytes) => "{prefix} [{bar:30}] {percent:>3}%  {bytes}/{total_bytes}  \
                                {bytes_per_sec}  {elapsed}  {msg}"
            .to_owned(),
        (false, Unit::Bytes) => "{prefix}  {bytes}  {bytes_per_sec}  {elapsed}  {msg}".to_owned(),
    };
    let name = match unit {
        Unit::Count(name) => name,
        Unit::Bytes => "bytes",
    };
    // The templates are fixed (each is drawn by a test below); should one not parse, a
    // plain bar is better than no command.
    ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#>-")
        .with_key(
            "rate",
            move |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{} {name}/s", HumanCount(state.per_sec() as u64));
            },
        )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Mutex;

    use indicatif::TermLike;

    use super::*;

    /// A terminal that records what is drawn: text as written, `<clear>` for a cleared line.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl Screen {
        fn text(&self) -> String {
            self.0.lock().unwrap().clone()
        }

        fn push(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
    }

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            200
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.push(s)?;
            self.push("\n")
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.push(s)
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.push("<clear>")
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn on_screen(total: Option<u64>, unit: Unit) -> (Progress, Screen) {
        let screen = Screen::default();
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        (Progress::to(target, "working", total, unit), screen)
    }

    #[test]
    fn a_line_with_a_total_shows_the_count_the_percentage_and_the_rate() {
        let (progress, screen) = on_screen(Some(2000), Unit::Count("events"));
        progress.set(500);
        progress.bar.force_draw();
        let text = screen.text();
        assert!(text.contains("working ["), "{text}");
        assert!(text.contains(" 25%"), "{text}");
        assert!(text.contains("500/2,000 events"), "{text}");
        assert!(text.contains(" events/s"), "{text}");
    }

    #[test]
    fn a_line_without_a_total_shows_the_count_the_rate_and_the_message() {
        let (progress, screen) = on_screen(None, Unit::Count("records"));
        progress.inc(1_234_567);
        progress.set_message("failed 3");
        progress.bar.force_draw();
        let text = screen.text();
        assert!(text.contains("working  1,234,567 records"), "{text}");
        assert!(text.contains(" records/s"), "{text}");
        assert!(text.contains("failed 3"), "{text}");
        assert!(!text.contains('%'), "no percentage without a total: {text}");
    }

    #[test]
    fn a_line_of_bytes_shows_sizes_and_a_total_learnt_later() {
        let (progress, screen) = on_screen(Some(1), Unit::Bytes);
        progress.set_total(4 << 20);
        progress.set(1 << 20);
        progress.bar.force_draw();
        let text = screen.text();
        assert!(text.contains(" 25%"), "{text}");
        assert!(text.contains("1.00 MiB/4.00 MiB"), "{text}");
        assert!(text.contains("/s"), "{text}");
    }

    #[test]
    fn finishing_clears_the_line() {
        let (progress, screen) = on_screen(Some(10), Unit::Count("events"));
        progress.set(10);
        progress.bar.force_draw();
        progress.finish();
        let text = screen.text();
        assert!(text.contains("10/10 events"), "{text}");
        assert!(
            text.ends_with("<clear>"),
            "the line is cleared last: {text:?}"
        );
    }

    #[test]
    fn a_line_dropped_unfinished_by_an_error_is_cleared() {
        let (progress, screen) = on_screen(None, Unit::Count("events"));
        progress.set(3);
        progress.bar.force_draw();
        drop(progress);
        let text = screen.text();
        assert!(text.contains("3 events"), "{text}");
        assert!(
            text.ends_with("<clear>"),
            "the line is cleared last: {text:?}"
        );
    }

    #[test]
    fn quiet_or_a_stderr_that_is_not_a_terminal_draws_no_line() {
        assert!(shows(false, true));
        assert!(!shows(true, true), "quiet");
        assert!(!shows(false, false), "stderr is piped or redirected");
        assert!(Progress::stderr("x", Some(1), Unit::Bytes, true).is_hidden());
    }

    #[tokio::test]
    async fn a_hidden_line_starts_no_task_and_a_shown_one_is_updated_by_its_task_until_dropped() {
        let hidden = Progress::stderr("x", None, Unit::Count("events"), true)
            .every(Duration::from_millis(1), |_| {
                unreachable!("hidden: never called")
            });
        assert!(hidden.task.is_none());
        hidden.finish();

        let (progress, screen) = on_screen(None, Unit::Count("events"));
        let late_tick = progress.clone();
        let (told, mut updated) = tokio::sync::mpsc::channel(1);
        let ticking = progress.every(Duration::from_millis(1), move |p| {
            p.set(42);
            let _ = told.try_send(());
        });
        updated.recv().await.unwrap();
        ticking.progress.bar.force_draw();
        assert!(screen.text().contains("42 events"), "{}", screen.text());
        drop(ticking);
        assert!(screen.text().ends_with("<clear>"), "{:?}", screen.text());
        // An update that was still running when the line was finished draws nothing.
        late_tick.set(99);
        late_tick.bar.force_draw();
        assert!(!screen.text().contains("99"), "{:?}", screen.text());
    }

    #[test]
    fn the_job_line_shows_decisions_dead_letters_and_latency() {
        let metrics = Metrics::default();
        metrics.results.store(10, Relaxed);
        metrics.decisions[0].store(7, Relaxed);
        metrics.decisions[1].store(2, Relaxed);
        metrics.decisions[2].store(1, Relaxed);
        metrics.dead_letters.store(4, Relaxed);
        metrics.latency_p50_us.store(1_500, Relaxed);
        metrics.latency_p99_us.store(12_250, Relaxed);
        assert_eq!(
            job_details(&metrics),
            "| results 10 (allow 7, review 2, block 1) | dead letters 4 | latency p50 1.50 ms \
             p99 12.25 ms"
        );
    }
}
