//! A fuzz harness for riskstream's input readers, runnable on stable Rust with one command:
//!
//! ```text
//! cargo run --release -p riskstream-fuzz -- --cases 1000000 --seed 1
//! ```
//!
//! Three targets share the case budget:
//!
//! * `events`: event records, through the real in-process path (file source or Kafka-like
//!   messages → decode → aggregate → enrich with an in-memory graph → features → score with
//!   the shipped model → result encoding). Every input must end as exactly one result or
//!   one dead letter that keeps its bytes and has a reason; every score is finite, in
//!   `[0, 1]`, and its result line reads back as a result record.
//! * `graph`: graph files, through [`GraphFileReader`](riskstream_graph::GraphFileReader)
//!   and [`MemoryGraph::load`](riskstream_graph::MemoryGraph::load): a typed error naming
//!   the file and line, or a graph whose answers keep their invariants.
//! * `config`: configuration documents and environment overrides, through
//!   [`Config::from_toml_str`](riskstream_config::Config::from_toml_str) and
//!   [`Config::load_from`](riskstream_config::Config::load_from): an error or a valid
//!   configuration, and no configured secret in any error or printed configuration.
//!
//! Cases are structure-aware (valid inputs with fields deleted, types swapped, extreme
//! numbers and strings, duplicate keys, BOM, CRLF, truncation, byte flips) as well as
//! random bytes. Each case has its own random generator, seeded from the run's seed, the
//! target and the case index, so a case is reproducible on its own. Every case runs under
//! `catch_unwind`: a panic, like any failed check, is a [`Finding`] with the seed and case
//! index, and its input is written to a file that `--replay FILE` runs again.

pub mod mutate;
pub mod targets;

use std::backtrace::Backtrace;
use std::cell::RefCell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::SeedableRng;

use crate::mutate::Rng;
use crate::targets::{Case, Checked, Target, TargetKind};

/// What a run does.
#[derive(Debug, Clone)]
pub struct Options {
    /// Cases in all, shared evenly by the targets.
    pub cases: u64,
    /// Seed of the whole run.
    pub seed: u64,
    /// Which targets run, in this order.
    pub targets: Vec<TargetKind>,
    /// The model the events are scored with (`models/riskstream-v1`).
    pub model_dir: PathBuf,
    /// Where inputs of findings are written.
    pub findings_dir: PathBuf,
    /// How often progress is written to stderr; `None` for none.
    pub progress: Option<Duration>,
    /// Findings reported (and written to files) per target; the rest are only counted.
    pub max_reports: usize,
}

impl Options {
    /// A run of `cases` cases with `seed` over every target, the shipped model, findings
    /// written to `target/fuzz-findings/`, progress every five seconds.
    pub fn new(cases: u64, seed: u64) -> Options {
        Options {
            cases,
            seed,
            targets: TargetKind::ALL.to_vec(),
            model_dir: shipped_model_dir(),
            findings_dir: PathBuf::from("target/fuzz-findings"),
            progress: Some(Duration::from_secs(5)),
            max_reports: 10,
        }
    }
}

/// The shipped model, found from this crate's place in the workspace.
pub fn shipped_model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/riskstream-v1")
}

/// Why a harness could not start (never a finding of a case).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("cannot set up the {target} target: {message}")]
    Setup {
        target: &'static str,
        message: String,
    },
    #[error("cannot write the input of a finding to {}: {source}", path.display())]
    WriteFinding {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read the replay file {}: {source}", path.display())]
    ReadReplay {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot tell the target of replay file {}: its name starts with none of events-file-, events-message-, graph-, config-; pass --target", path.display())]
    ReplayTarget { path: PathBuf },
}

/// A panic or a failed check in one case.
#[derive(Debug, Clone)]
pub struct Finding {
    pub target: &'static str,
    pub seed: u64,
    pub case: u64,
    pub kind: FindingKind,
    /// The panic message with its backtrace, or what the check found.
    pub message: String,
    /// Where the case's input was written, for `--replay`.
    pub input: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    Panic,
    Violation,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FindingKind::Panic => "PANIC",
            FindingKind::Violation => "CHECK FAILED",
        };
        write!(
            f,
            "{kind} in target {} (seed {}, case {})",
            self.target, self.seed, self.case
        )?;
        if let Some(path) = &self.input {
            write!(
                f,
                "; input written to {} (replay: --replay {0})",
                path.display()
            )?;
        }
        if self.target == "events" {
            // A replay starts from empty windows; the run had the earlier cases' state.
            write!(
                f,
                "; cases share window state with up to {} cases before them: if the replay \
                 passes, rerun --seed {} --target events --cases {}",
                targets::events::CASES_PER_ENGINE - 1,
                self.seed,
                self.case + 1
            )?;
        }
        // Messages quote inputs, which may be huge: the input file has them whole.
        const MAX: usize = 6_000;
        match self.message.char_indices().nth(MAX) {
            Some((cut, _)) => write!(f, "\n{} [... cut]", &self.message[..cut]),
            None => write!(f, "\n{}", self.message),
        }
    }
}

/// The figures of one target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetSummary {
    pub target: &'static str,
    pub cases: u64,
    pub panics: u64,
    pub violations: u64,
    /// Events target: records read, results, dead letters.
    pub inputs: u64,
    pub results: u64,
    pub dead_letters: u64,
    /// Graph and config targets: documents read without and with an error.
    pub accepted: u64,
    pub refused: u64,
    pub elapsed: Duration,
}

impl TargetSummary {
    fn add(&mut self, checked: &Checked) {
        self.inputs += checked.inputs;
        self.results += checked.results;
        self.dead_letters += checked.dead_letters;
        self.accepted += checked.accepted;
        self.refused += checked.refused;
    }
}

impl fmt::Display for TargetSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} cases in {:.1} s, panics {}, failed checks {}",
            self.target,
            self.cases,
            self.elapsed.as_secs_f64(),
            self.panics,
            self.violations
        )?;
        if self.inputs > 0 {
            write!(
                f,
                ", inputs {} = results {} + dead letters {}",
                self.inputs, self.results, self.dead_letters
            )?;
        } else {
            write!(
                f,
                ", documents accepted {}, refused with an error {}",
                self.accepted, self.refused
            )?;
        }
        Ok(())
    }
}

/// What a run found.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub seed: u64,
    pub targets: Vec<TargetSummary>,
    /// The reported findings (at most `max_reports` per target).
    pub findings: Vec<Finding>,
    pub elapsed: Duration,
}

impl Summary {
    pub fn cases(&self) -> u64 {
        self.targets.iter().map(|t| t.cases).sum()
    }

    pub fn panics(&self) -> u64 {
        self.targets.iter().map(|t| t.panics).sum()
    }

    pub fn violations(&self) -> u64 {
        self.targets.iter().map(|t| t.violations).sum()
    }

    /// No panic and no failed check.
    pub fn is_clean(&self) -> bool {
        self.panics() == 0 && self.violations() == 0
    }

    /// The final summary line.
    pub fn line(&self) -> String {
        let per_target: Vec<String> = self
            .targets
            .iter()
            .map(|t| format!("{} {}", t.target, t.cases))
            .collect();
        let events = self.targets.iter().find(|t| t.inputs > 0);
        let accounting = events.map_or(String::new(), |t| {
            format!(
                ", inputs {} results {} dead letters {}",
                t.inputs, t.results, t.dead_letters
            )
        });
        format!(
            "fuzz summary: seed {}, {} cases ({}) in {:.1} s, panics {}, failed checks {}{}",
            self.seed,
            self.cases(),
            per_target.join(", "),
            self.elapsed.as_secs_f64(),
            self.panics(),
            self.violations(),
            accounting
        )
    }
}

thread_local! {
    /// The message and backtrace of the last panic on this thread, kept by the harness's
    /// panic hook so that a caught panic can be reported with where it happened.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Whether this thread is running a case: panics of other threads go to the hook that
    /// was installed before the harness's.
    static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs, once per process, a panic hook that records the panics of cases (message and
/// backtrace) instead of printing them; any other panic goes to the previous hook.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_CASE.with(|c| c.get()) {
                let text = format!("{info}\nbacktrace:\n{}", Backtrace::force_capture());
                LAST_PANIC.with(|last| *last.borrow_mut() = Some(text));
            } else {
                previous(info);
            }
        }));
    });
}

/// The random generator of case `case` of `target` in a run seeded with `seed`.
pub fn case_rng(seed: u64, target: TargetKind, case: u64) -> Rng {
    let mixed = splitmix(splitmix(seed) ^ splitmix((target as u64) << 56 ^ case));
    Rng::seed_from_u64(mixed)
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Runs one case under `catch_unwind`: its figures, or the finding.
fn run_case(target: &mut dyn Target, case: &Case) -> Result<Checked, (FindingKind, String)> {
    install_panic_hook();
    LAST_PANIC.with(|last| last.borrow_mut().take());
    IN_CASE.with(|c| c.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| target.check(case)));
    IN_CASE.with(|c| c.set(false));
    match outcome {
        Ok(Ok(checked)) => Ok(checked),
        Ok(Err(message)) => Err((FindingKind::Violation, message)),
        Err(payload) => {
            let message = LAST_PANIC
                .with(|last| last.borrow_mut().take())
                .unwrap_or_else(|| panic_text(&payload));
            Err((FindingKind::Panic, message))
        }
    }
}

fn panic_text(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-text payload".into())
}

/// Runs the harness: `options.cases` cases shared by the targets, one target after the
/// other.
pub fn run(options: &Options) -> Result<Summary, HarnessError> {
    let started = Instant::now();
    let mut summary = Summary {
        seed: options.seed,
        ..Summary::default()
    };
    let n = options.targets.len().max(1) as u64;
    for (i, kind) in options.targets.iter().enumerate() {
        // The remainder goes to the first targets.
        let budget = options.cases / n + u64::from((i as u64) < options.cases % n);
        let mut target = kind.build(&options.model_dir)?;
        let figures = run_target(options, *kind, target.as_mut(), budget, &mut summary)?;
        eprintln!("fuzz: {figures}");
        summary.targets.push(figures);
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

fn run_target(
    options: &Options,
    kind: TargetKind,
    target: &mut dyn Target,
    budget: u64,
    summary: &mut Summary,
) -> Result<TargetSummary, HarnessError> {
    let started = Instant::now();
    let mut figures = TargetSummary {
        target: kind.name(),
        ..TargetSummary::default()
    };
    let mut last_progress = Instant::now();
    let mut reported = 0;
    for case_index in 0..budget {
        let mut rng = case_rng(options.seed, kind, case_index);
        let case = target.generate(&mut rng, case_index);
        figures.cases += 1;
        match run_case(target, &case) {
            Ok(checked) => figures.add(&checked),
            Err((finding_kind, message)) => {
                match finding_kind {
                    FindingKind::Panic => figures.panics += 1,
                    FindingKind::Violation => figures.violations += 1,
                }
                // A panic may leave the target's state half updated: start it afresh.
                target.reset();
                if reported < options.max_reports {
                    reported += 1;
                    let input = write_finding(options, &case, case_index)?;
                    let finding = Finding {
                        target: kind.name(),
                        seed: options.seed,
                        case: case_index,
                        kind: finding_kind,
                        message,
                        input: Some(input),
                    };
                    eprintln!("fuzz: {finding}");
                    summary.findings.push(finding);
                }
            }
        }
        if let Some(every) = options.progress {
            if last_progress.elapsed() >= every {
                last_progress = Instant::now();
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                eprintln!(
                    "fuzz: {} {}/{} cases, {:.0} cases/s, panics {}, failed checks {}",
                    kind.name(),
                    figures.cases,
                    budget,
                    figures.cases as f64 / secs,
                    figures.panics,
                    figures.violations
                );
            }
        }
    }
    figures.elapsed = started.elapsed();
    Ok(figures)
}

/// Writes a case's input where `--replay` reads it: `<target>-seed<S>-case<N>.<ext>`, and
/// beside it `<file>.env.json` with the environment overrides of a config case.
fn write_finding(options: &Options, case: &Case, index: u64) -> Result<PathBuf, HarnessError> {
    let write = |path: &Path, bytes: &[u8]| {
        std::fs::create_dir_all(&options.findings_dir)
            .and_then(|()| std::fs::write(path, bytes))
            .map_err(|source| HarnessError::WriteFinding {
                path: path.to_path_buf(),
                source,
            })
    };
    let name = format!(
        "{}-seed{}-case{}.{}",
        case.replay_prefix(),
        options.seed,
        index,
        case.extension()
    );
    let path = options.findings_dir.join(name);
    write(&path, &case.bytes)?;
    if !case.env.is_empty() {
        let env = serde_json::to_vec_pretty(&case.env).unwrap_or_default();
        write(&env_path(&path), &env)?;
    }
    Ok(path)
}

fn env_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".env.json");
    PathBuf::from(name)
}

/// Runs the input in `path` (written by a finding, or made by hand) once through its
/// target: `target` if given, else the one its file name starts with.
pub fn replay(
    path: &Path,
    target: Option<TargetKind>,
    model_dir: &Path,
) -> Result<Option<Finding>, HarnessError> {
    let bytes = std::fs::read(path).map_err(|source| HarnessError::ReadReplay {
        path: path.to_path_buf(),
        source,
    })?;
    let env_file = env_path(path);
    let env = match std::fs::read(&env_file) {
        Ok(text) => serde_json::from_slice(&text).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let case = match Case::from_replay(&name, target, bytes, env) {
        Some(case) => case,
        None => {
            return Err(HarnessError::ReplayTarget {
                path: path.to_path_buf(),
            })
        }
    };
    let mut runner = case.target.build(model_dir)?;
    Ok(match run_case(runner.as_mut(), &case) {
        Ok(_) => None,
        Err((kind, message)) => Some(Finding {
            target: case.target.name(),
            seed: number_after(&name, "seed").unwrap_or(0),
            case: number_after(&name, "-case").unwrap_or(0),
            kind,
            message,
            input: Some(path.to_path_buf()),
        }),
    })
}

/// The number right after `tag` in a finding's file name (`graph-seed1-case42.jsonl`).
fn number_after(name: &str, tag: &str) -> Option<u64> {
    let rest = &name[name.find(tag)? + tag.len()..];
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The short run of the test command: a few thousand cases per target with a fixed
    /// seed, which must find nothing. The targets run on threads of their own (their cases
    /// are the same as in one run: each case's generator depends on its target and index).
    #[test]
    fn a_short_fuzz_run_finds_no_panic_and_accounts_for_every_input() {
        const CASES_PER_TARGET: u64 = 2_000;
        let dir = tempfile::tempdir().unwrap();
        let runs: Vec<_> = TargetKind::ALL
            .into_iter()
            .map(|kind| {
                let options = Options {
                    targets: vec![kind],
                    findings_dir: dir.path().to_path_buf(),
                    progress: None,
                    ..Options::new(CASES_PER_TARGET, 1)
                };
                std::thread::spawn(move || run(&options).unwrap())
            })
            .collect();
        for handle in runs {
            let summary = handle.join().unwrap();
            let findings: Vec<String> = summary.findings.iter().map(|f| f.to_string()).collect();
            assert!(
                summary.is_clean(),
                "{}\n{}",
                summary.line(),
                findings.join("\n\n")
            );
            let target = &summary.targets[0];
            assert_eq!(target.cases, CASES_PER_TARGET, "{target}");
            if target.target == "events" {
                assert!(target.results > 0 && target.dead_letters > 0, "{target}");
                assert_eq!(target.inputs, target.results + target.dead_letters);
            } else {
                assert!(target.accepted > 0 && target.refused > 0, "{target}");
            }
        }
    }

    #[test]
    fn a_written_finding_replays_through_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            findings_dir: dir.path().to_path_buf(),
            ..Options::new(1, 5)
        };
        for kind in TargetKind::ALL {
            let mut target = kind.build(&options.model_dir).unwrap();
            let case = target.generate(&mut case_rng(5, kind, 9), 9);
            let path = write_finding(&options, &case, 9).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with(case.replay_prefix()), "{name}");
            assert_eq!(std::fs::read(&path).unwrap(), case.bytes);
            let finding = replay(&path, None, &options.model_dir).unwrap();
            assert!(finding.is_none(), "{}", finding.unwrap());
        }
        let unnamed = dir.path().join("input.bin");
        std::fs::write(&unnamed, b"{}").unwrap();
        assert!(matches!(
            replay(&unnamed, None, &options.model_dir),
            Err(HarnessError::ReplayTarget { .. })
        ));
        assert!(
            replay(&unnamed, Some(TargetKind::Graph), &options.model_dir)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_case_is_the_same_whenever_it_is_made() {
        let mut target = TargetKind::Config.build(&shipped_model_dir()).unwrap();
        let mut a = case_rng(7, TargetKind::Config, 123);
        let mut b = case_rng(7, TargetKind::Config, 123);
        assert_eq!(
            target.generate(&mut a, 123).bytes,
            target.generate(&mut b, 123).bytes
        );
    }

    #[test]
    fn a_panic_in_a_case_is_caught_and_reported_with_its_location() {
        struct Panics;
        impl Target for Panics {
            fn generate(&mut self, _: &mut Rng, _: u64) -> Case {
                Case::new(TargetKind::Graph, b"x".to_vec())
            }
            fn check(&mut self, _: &Case) -> Result<Checked, String> {
                panic!("boom at the invariant");
            }
            fn reset(&mut self) {}
        }
        let case = Case::new(TargetKind::Graph, b"x".to_vec());
        let (kind, message) = run_case(&mut Panics, &case).unwrap_err();
        assert_eq!(kind, FindingKind::Panic);
        assert!(message.contains("boom at the invariant"), "{message}");
        assert!(message.contains("lib.rs"), "{message}");
    }
}
