//! Model hot swap: the running job watches its model directory and replaces the model
//! (and the decision thresholds that go with it) without stopping the stream.
//!
//! The score stage reads the current [`ActiveModel`] from a [`ModelSlot`] once per batch
//! (`ArcSwap::load_full`, no lock), so a batch is scored, decided and labelled with one
//! model from start to end, and a swap takes effect at the next batch boundary. Candidates
//! are loaded and checked on a blocking thread, off the hot path; only a model that passes
//! every check is stored. Anything else (bad metadata, truncated weights, a model that
//! fails its canary, another feature list, thresholds out of order) is logged as an error
//! naming the file and the problem, and the old model keeps serving.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use riskstream_inference::{DeviceChoice, Model, ModelError, METADATA_FILE, WEIGHTS_FILE};

use crate::metrics::Metrics;

/// A model together with the thresholds its scores are decided with and the version string
/// every result it scores carries.
#[derive(Debug)]
pub struct ActiveModel {
    pub model: Arc<Model>,
    /// (review, block).
    pub thresholds: (f32, f32),
    /// `model.version()`, shared with every scored batch without copying the string.
    pub version: Arc<str>,
}

/// Threshold overrides from the configuration (`model.review_threshold`,
/// `model.block_threshold`); `None` takes the model's own.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ThresholdOverrides {
    pub review: Option<f64>,
    pub block: Option<f64>,
}

/// Why a candidate model was not swapped in.
#[derive(Debug, thiserror::Error)]
pub enum RejectedModel {
    #[error(transparent)]
    Load(#[from] ModelError),
    #[error(
        "model `{version}` reads {got} features {names_hint} but this job produces {expected}; \
         use a model trained with the job's aggregate.windows and graph settings"
    )]
    Features {
        version: String,
        got: usize,
        expected: usize,
        names_hint: String,
    },
    #[error(
        "review threshold {review} is not below block threshold {block} (model.review_threshold / \
         model.block_threshold, or the model's metadata)"
    )]
    Thresholds { review: f32, block: f32 },
}

impl ActiveModel {
    /// Wraps a loaded model after checking it against the job's feature names and resolving
    /// its thresholds.
    pub fn new(
        model: Arc<Model>,
        feature_names: &[String],
        overrides: ThresholdOverrides,
    ) -> Result<ActiveModel, RejectedModel> {
        if model.feature_names() != feature_names {
            let first_difference = model
                .feature_names()
                .iter()
                .zip(feature_names)
                .position(|(a, b)| a != b);
            let names_hint = match first_difference {
                Some(i) => format!(
                    "(feature {i} is `{}` where the job has `{}`)",
                    model.feature_names()[i],
                    feature_names[i]
                ),
                None => "(the shorter list is a prefix of the longer)".to_owned(),
            };
            return Err(RejectedModel::Features {
                version: model.version().to_owned(),
                got: model.n_features(),
                expected: feature_names.len(),
                names_hint,
            });
        }
        let own = model.thresholds();
        let review = overrides.review.map_or(own.review, |t| t as f32);
        let block = overrides.block.map_or(own.block, |t| t as f32);
        // NaN thresholds cannot come from a loaded model or a checked configuration, but
        // they would compare false here and be rejected too.
        if review.partial_cmp(&block) != Some(std::cmp::Ordering::Less) {
            return Err(RejectedModel::Thresholds { review, block });
        }
        let version = Arc::from(model.version());
        Ok(ActiveModel {
            model,
            thresholds: (review, block),
            version,
        })
    }

    /// Loads `dir` and checks it; what the watcher runs on a blocking thread.
    pub fn load(
        dir: &Path,
        device: DeviceChoice,
        feature_names: &[String],
        overrides: ThresholdOverrides,
    ) -> Result<ActiveModel, RejectedModel> {
        let model = Model::load(dir, device)?;
        ActiveModel::new(Arc::new(model), feature_names, overrides)
    }
}

/// The model the score stage uses now; replaced whole, read without locks.
pub type ModelSlot = Arc<ArcSwap<ActiveModel>>;

/// Size and modification time of the two model files: what the watcher compares to notice
/// a new model without reading it. `None` for a file that cannot be stat'ed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint([Option<(u64, SystemTime)>; 2]);

impl Fingerprint {
    pub fn of(dir: &Path) -> Fingerprint {
        let stat = |name: &str| {
            std::fs::metadata(dir.join(name))
                .and_then(|m| Ok((m.len(), m.modified()?)))
                .ok()
        };
        Fingerprint([stat(METADATA_FILE), stat(WEIGHTS_FILE)])
    }
}

/// Watches a model directory and swaps new valid models into the slot.
///
/// A change is acted on once the directory has looked the same for two polls in a row, so
/// that a model being copied file by file is read only when the copy has settled. Each
/// distinct state of the directory is tried once: a rejected model is reported once, not at
/// every poll, and is tried again as soon as either file changes (or on [`Reload::Now`]).
pub struct ModelWatcher {
    pub dir: PathBuf,
    pub device: DeviceChoice,
    pub feature_names: Vec<String>,
    pub overrides: ThresholdOverrides,
    pub slot: ModelSlot,
    pub metrics: Arc<Metrics>,
    /// The directory state last loaded or rejected.
    tried: Fingerprint,
    /// A new state seen at the previous poll, waiting to settle.
    settling: Option<Fingerprint>,
}

/// What the watcher is asked to do besides polling.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reload {
    /// Load the directory now, changed or not (SIGHUP), with these threshold overrides.
    Now(ThresholdOverrides),
}

impl ModelWatcher {
    /// A watcher for the directory the current model was loaded from. The state at this
    /// moment counts as loaded.
    pub fn new(
        dir: PathBuf,
        device: DeviceChoice,
        feature_names: Vec<String>,
        overrides: ThresholdOverrides,
        slot: ModelSlot,
        metrics: Arc<Metrics>,
    ) -> ModelWatcher {
        let tried = Fingerprint::of(&dir);
        ModelWatcher {
            dir,
            device,
            feature_names,
            overrides,
            slot,
            metrics,
            tried,
            settling: None,
        }
    }

    /// Polls every `interval` (never when zero) and obeys `requests` until `cancel`.
    pub async fn run(
        mut self,
        interval: Duration,
        mut requests: tokio::sync::mpsc::Receiver<Reload>,
        cancel: CancellationToken,
    ) {
        let mut tick = (!interval.is_zero()).then(|| {
            let mut t = tokio::time::interval(interval);
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t
        });
        loop {
            let polled = async {
                match tick.as_mut() {
                    Some(t) => {
                        t.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                request = requests.recv() => match request {
                    Some(Reload::Now(overrides)) => {
                        self.overrides = overrides;
                        let now = Fingerprint::of(&self.dir);
                        self.settling = None;
                        self.try_load(now, "reload requested").await;
                    }
                    None => break,
                },
                () = polled => self.poll().await,
            }
        }
    }

    /// One poll: notice a change, wait for it to settle, then try it.
    pub async fn poll(&mut self) {
        let now = Fingerprint::of(&self.dir);
        if now == self.tried {
            self.settling = None;
            return;
        }
        if self.settling.as_ref() == Some(&now) {
            self.settling = None;
            self.try_load(now, "model files changed").await;
        } else {
            self.settling = Some(now);
        }
    }

    /// Loads the directory on a blocking thread; swaps it in or logs why not.
    async fn try_load(&mut self, state: Fingerprint, why: &'static str) {
        self.tried = state;
        let dir = self.dir.clone();
        let device = self.device;
        let names = self.feature_names.clone();
        let overrides = self.overrides;
        let loaded =
            tokio::task::spawn_blocking(move || ActiveModel::load(&dir, device, &names, overrides))
                .await;
        let current = self.slot.load();
        match loaded {
            Ok(Ok(next)) => {
                let (to, (review, block)) = (next.version.clone(), next.thresholds);
                // Stored before it is logged: whoever reads the line can rely on the swap.
                self.slot.store(Arc::new(next));
                self.metrics.model_swaps.fetch_add(1, Relaxed);
                tracing::info!(
                    dir = %self.dir.display(),
                    reason = why,
                    from = %current.version,
                    to = %to,
                    review,
                    block,
                    "model swapped in; batches from now on are scored by the new model"
                );
            }
            Ok(Err(err)) => {
                tracing::error!(
                    dir = %self.dir.display(),
                    error = %err,
                    serving = %current.version,
                    "new model rejected; the current model keeps serving"
                );
                self.metrics.model_rejections.fetch_add(1, Relaxed);
            }
            Err(join) => {
                tracing::error!(
                    dir = %self.dir.display(),
                    error = %join,
                    serving = %current.version,
                    "loading the new model panicked; the current model keeps serving"
                );
                self.metrics.model_rejections.fetch_add(1, Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/riskstream-v1")
    }

    fn copy_model(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).expect("model directory");
        for file in [METADATA_FILE, WEIGHTS_FILE] {
            std::fs::copy(from.join(file), to.join(file)).expect("copy model file");
        }
    }

    fn names() -> Vec<String> {
        Model::load(&shipped(), DeviceChoice::Cpu)
            .expect("shipped model loads")
            .feature_names()
            .to_vec()
    }

    fn watcher(dir: &Path) -> (ModelWatcher, ModelSlot, Arc<Metrics>) {
        let names = names();
        let first = ActiveModel::load(dir, DeviceChoice::Cpu, &names, Default::default())
            .expect("first model is valid");
        let slot: ModelSlot = Arc::new(ArcSwap::from_pointee(first));
        let metrics = Arc::new(Metrics::default());
        let w = ModelWatcher::new(
            dir.to_path_buf(),
            DeviceChoice::Cpu,
            names,
            ThresholdOverrides::default(),
            slot.clone(),
            metrics.clone(),
        );
        (w, slot, metrics)
    }

    fn set_version(dir: &Path, version: &str, review: f64) {
        let path = dir.join(METADATA_FILE);
        let text = std::fs::read_to_string(&path).expect("metadata");
        let mut json: serde_json::Value = serde_json::from_str(&text).expect("metadata json");
        json["version"] = serde_json::json!(version);
        json["thresholds"]["review"] = serde_json::json!(review);
        std::fs::write(&path, json.to_string()).expect("write metadata");
    }

    #[tokio::test]
    async fn a_new_valid_model_is_swapped_in_once_its_files_have_settled() {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let dir = tmp.path().join("model");
        copy_model(&shipped(), &dir);
        let (mut w, slot, metrics) = watcher(&dir);
        assert_eq!(&*slot.load().version, "riskstream-v1");
        w.poll().await;
        assert_eq!(Metrics::get(&metrics.model_swaps), 0, "nothing changed");

        set_version(&dir, "riskstream-v2", 0.2);
        w.poll().await;
        assert_eq!(
            &*slot.load().version,
            "riskstream-v1",
            "a change is loaded only once it has settled"
        );
        w.poll().await;
        assert_eq!(&*slot.load().version, "riskstream-v2");
        assert_eq!(slot.load().thresholds.0, 0.2, "thresholds come with it");
        assert_eq!(Metrics::get(&metrics.model_swaps), 1);
    }

    #[tokio::test]
    async fn corrupt_or_incompatible_models_are_rejected_and_the_old_one_keeps_serving() {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let dir = tmp.path().join("model");
        copy_model(&shipped(), &dir);
        let (mut w, slot, metrics) = watcher(&dir);
        let weights = std::fs::read(dir.join(WEIGHTS_FILE)).expect("weights");
        let metadata = std::fs::read_to_string(dir.join(METADATA_FILE)).expect("metadata");

        let mut wrong_features: serde_json::Value =
            serde_json::from_str(&metadata).expect("metadata json");
        wrong_features["feature_names"][0] = serde_json::json!("amount_raw");
        type Breakage<'a> = (&'a str, Box<dyn Fn() + 'a>);
        let cases: [Breakage<'_>; 4] = [
            (
                "truncated weights",
                Box::new(|| {
                    std::fs::write(dir.join(WEIGHTS_FILE), &weights[..weights.len() / 2])
                        .expect("truncate")
                }),
            ),
            (
                "bad metadata",
                Box::new(|| {
                    std::fs::write(dir.join(METADATA_FILE), "{\"version\": ").expect("write")
                }),
            ),
            (
                "wrong feature list",
                Box::new(|| {
                    std::fs::write(dir.join(METADATA_FILE), wrong_features.to_string())
                        .expect("write")
                }),
            ),
            (
                "thresholds out of order",
                Box::new(|| {
                    set_version(&dir, "riskstream-v3", 0.99);
                }),
            ),
        ];
        for (k, (what, break_it)) in cases.iter().enumerate() {
            copy_model(&shipped(), &dir);
            w.poll().await;
            w.poll().await;
            break_it();
            w.poll().await;
            w.poll().await;
            assert_eq!(&*slot.load().version, "riskstream-v1", "{what}");
            assert_eq!(
                Metrics::get(&metrics.model_rejections) as usize,
                k + 1,
                "{what} is counted as rejected"
            );
            let before = Metrics::get(&metrics.model_rejections);
            w.poll().await;
            w.poll().await;
            assert_eq!(
                Metrics::get(&metrics.model_rejections),
                before,
                "{what}: a rejected model is not retried until it changes"
            );
        }
    }

    #[test]
    fn a_rejected_feature_list_names_the_first_difference() {
        let model = Model::load(&shipped(), DeviceChoice::Cpu).expect("shipped model loads");
        let mut names = names();
        names[3] = "channel_wire".to_owned();
        let err = ActiveModel::new(Arc::new(model), &names, ThresholdOverrides::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("feature 3 is `channel_card` where the job has `channel_wire`"),
            "{err}"
        );
    }
}
