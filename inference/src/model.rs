//! The scoring model: loading, saving, batched scoring and explanations.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::canary::Canary;
use crate::device::DeviceChoice;
use crate::error::{ModelError, TensorContext};
use crate::metadata::{ModelMetadata, Thresholds, METADATA_FILE, WEIGHTS_FILE};
use crate::plain::{Arithmetic, PlainNet};
use crate::weights::{self, LayerParams};

/// Rows pushed through the network in one pass; bounds the activations' memory when a
/// caller scores a whole dataset at once.
const MAX_ROWS_PER_PASS: usize = 65_536;

/// The exponent bits of an f32: all set exactly for infinities and NaNs.
const EXPONENT: u32 = 0x7f80_0000;

/// The largest `metadata.json` a model may have. The shipped model's is under 10 KiB; the
/// bound only stops a file that never ends (a link to a device) from filling memory.
pub const MAX_METADATA_BYTES: u64 = 16 << 20;

/// The largest `model.safetensors` a model may have: far above any MLP this crate trains
/// (the shipped model's is under 10 KiB), far below the memory of the machines it runs on.
pub const MAX_WEIGHTS_BYTES: u64 = 1 << 30;

/// Reads a whole model file, refusing anything that is not a regular file (a FIFO would
/// block the open or the read forever, a device may never end) and anything over `limit`
/// bytes. Symbolic links are followed to what they name, which must be a regular file too.
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, ModelError> {
    use std::io::Read;
    let read_error = |source| ModelError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Checked before opening: opening a FIFO for reading blocks until a writer appears.
    let kind = fs::metadata(path).map_err(read_error)?.file_type();
    if !kind.is_file() {
        return Err(ModelError::NotARegularFile {
            path: path.to_path_buf(),
            what: describe_file_type(&kind),
        });
    }
    let file = fs::File::open(path).map_err(read_error)?;
    let size = file.metadata().map_err(read_error)?.len();
    if size > limit {
        return Err(ModelError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
        });
    }
    // The file may grow between the stat and the read: never take more than the limit.
    let mut bytes = Vec::with_capacity(size as usize);
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > limit {
        return Err(ModelError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// A readable name for a file type that is not a regular file.
fn describe_file_type(kind: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "not a plain file"
    }
}

/// A loaded, validated MLP ready to score feature rows.
///
/// The network is `Linear → ReLU → … → Linear → sigmoid` over features normalised with the
/// metadata's mean and standard deviation. A `Model` is immutable and `Send + Sync`: share
/// one behind an `Arc` between scoring tasks.
///
/// Normalisation costs nothing at scoring time: it is folded into the first layer when the
/// model is assembled (`w' = w / std`, `b' = b − Σ w·mean / std`, computed in f64). The
/// unfolded parameters are kept on the host so that [`Model::save`] writes back exactly what
/// was loaded or trained.
pub struct Model {
    metadata: ModelMetadata,
    device: Device,
    /// Parameters exactly as stored in `model.safetensors`.
    params: Vec<LayerParams>,
    /// Per layer `(weight [inputs, outputs], bias [outputs])` on the device, normalisation
    /// folded into layer 0.
    layers: Vec<(Tensor, Tensor)>,
    /// The same folded network on the host, for [`Backend::Plain`].
    plain: PlainNet,
}

/// Which implementation of the forward pass scores a batch.
///
/// Both compute the same network; they differ in the last bits of a score (at most 4.5e-6
/// with the shipped model over a million rows spread around the training distribution),
/// because candle sums in a kernel-dependent order. [`Model::score`] uses
/// [`Model::backend`]: plain Rust when the model is on the CPU, candle on CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// candle tensors on the model's device (CPU or CUDA). On the CPU a row's score may
    /// change in the last bits with the size of its batch.
    Candle,
    /// Plain Rust on the calling thread: the same bits for a row whatever the batch size,
    /// worker count, run or machine; no thread pool, no tensor allocation.
    Plain,
    /// [`Backend::Plain`] with the multiply and the add of every step rounded separately,
    /// the arithmetic of earlier releases: for benchmarks that measure what fused
    /// multiply-add gains, not for scoring. Its scores differ from `Plain` in the last bits
    /// (the shipped model: at most 4.2e-6 over a million rows).
    PlainUnfused,
}

impl Model {
    /// Loads `metadata.json` and `model.safetensors` from `dir` onto `device`, and checks the
    /// model against its canary.
    ///
    /// Everything is checked before a model is returned: the metadata parses and is
    /// consistent (feature count equals the normalisation lengths, thresholds satisfy
    /// `0 < review < block < 1`, format version known), every tensor the hidden sizes imply
    /// is present with the right shape and finite values, and nothing else is in the file.
    /// Then the model scores the canary rows of its metadata, on the device it will score
    /// events on: a model without a canary, or whose canary scores are degenerate or differ
    /// from the expected ones by more than [`crate::CANARY_TOLERANCE`], is refused (see
    /// [`Canary`]). Errors name the file or directory and what is wrong with it.
    pub fn load(dir: &Path, device: DeviceChoice) -> Result<Model, ModelError> {
        let model = Model::load_unverified(dir, device)?;
        model.verify_canary(dir)?;
        Ok(model)
    }

    /// [`Model::load`] without the canary check: a model without a canary, or one that fails
    /// it, is returned too. Only for writing a canary for a model that has none
    /// (`riskstream model canary`); never score events with what it returns.
    pub fn load_unverified(dir: &Path, device: DeviceChoice) -> Result<Model, ModelError> {
        let metadata_path = dir.join(METADATA_FILE);
        let bytes = read_bounded(&metadata_path, MAX_METADATA_BYTES)?;
        let text = String::from_utf8(bytes).map_err(|err| ModelError::Read {
            path: metadata_path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, err.utf8_error()),
        })?;
        let metadata: ModelMetadata =
            serde_json::from_str(&text).map_err(|source| ModelError::MetadataJson {
                path: metadata_path.clone(),
                source,
            })?;
        metadata
            .check()
            .map_err(|reason| ModelError::InvalidMetadata {
                path: metadata_path,
                reason,
            })?;

        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = read_bounded(&weights_path, MAX_WEIGHTS_BYTES)?;
        let params =
            weights::decode(&bytes, metadata.n_features(), &metadata.hidden).map_err(|reason| {
                ModelError::InvalidWeights {
                    path: weights_path,
                    reason,
                }
            })?;
        Model::assemble(metadata, params, device.open()?)
    }

    /// Scores the canary rows with [`Model::backend`] and compares them with the expected
    /// scores; `dir` is named in the error.
    fn verify_canary(&self, dir: &Path) -> Result<(), ModelError> {
        let Some(canary) = &self.metadata.canary else {
            return Err(ModelError::MissingCanary {
                path: dir.join(METADATA_FILE),
                dir: dir.to_path_buf(),
            });
        };
        let scores = self.score(&canary.feature_rows(), canary.rows.len())?;
        canary
            .verify(&scores)
            .map_err(|reason| ModelError::CanaryFailed {
                dir: dir.to_path_buf(),
                reason,
            })
    }

    /// Chooses this model's canary from labelled rows (raw features row-major, labels 0 or
    /// 1), scores them and keeps it in the metadata, replacing any canary it had; what
    /// [`Model::save`] or [`Model::save_metadata`] then writes. Rows of both labels are
    /// taken at evenly spaced ranks of this model's scores (see [`Canary`]). Fails when the
    /// rows are too few or the model scores them degenerately.
    pub fn choose_canary(
        &mut self,
        features: &[f32],
        labels: &[f32],
    ) -> Result<&Canary, ModelError> {
        let scores = self.score(features, labels.len())?;
        self.set_canary_from_scores(features, labels, &scores)
    }

    /// [`Model::choose_canary`] with the rows already scored by this model.
    pub(crate) fn set_canary_from_scores(
        &mut self,
        features: &[f32],
        labels: &[f32],
        scores: &[f32],
    ) -> Result<&Canary, ModelError> {
        let canary = Canary::choose(features, self.n_features(), labels, scores)
            .map_err(|reason| ModelError::CanaryRows { reason })?;
        Ok(self.metadata.canary.insert(canary))
    }

    /// The model's canary, if it has one (a model returned by [`Model::load`] always has).
    pub fn canary(&self) -> Option<&Canary> {
        self.metadata.canary.as_ref()
    }

    /// Assembles a model from parameters built in memory (by training), with the same checks
    /// as [`Model::load`].
    pub(crate) fn from_parts(
        metadata: ModelMetadata,
        params: Vec<LayerParams>,
        device: Device,
    ) -> Result<Model, ModelError> {
        metadata
            .check()
            .and_then(|()| weights::check(&params, metadata.n_features(), &metadata.hidden))
            .map_err(|reason| ModelError::InvalidTrainedModel { reason })?;
        Model::assemble(metadata, params, device)
    }

    /// Folds normalisation into layer 0 and moves the layers to the device; inputs checked.
    fn assemble(
        metadata: ModelMetadata,
        params: Vec<LayerParams>,
        device: Device,
    ) -> Result<Model, ModelError> {
        let mut layers = Vec::with_capacity(params.len());
        let mut host = Vec::with_capacity(params.len());
        for (i, layer) in params.iter().enumerate() {
            let (weight, bias) = if i == 0 {
                fold_normalisation(layer, &metadata.norm_mean, &metadata.norm_std)
            } else {
                (layer.weight.clone(), layer.bias.clone())
            };
            let weight = transpose(&weight, layer.outputs, layer.inputs);
            host.push((weight.clone(), bias.clone(), layer.inputs, layer.outputs));
            let weight = Tensor::from_vec(weight, (layer.inputs, layer.outputs), &device)
                .during("moving layer weights to the device")?;
            let bias = Tensor::from_vec(bias, layer.outputs, &device)
                .during("moving layer biases to the device")?;
            layers.push((weight, bias));
        }
        Ok(Model {
            metadata,
            device,
            params,
            layers,
            plain: PlainNet::new(host),
        })
    }

    /// Writes `model.safetensors` and `metadata.json` into `dir`, creating it if needed.
    ///
    /// Each file is written to a temporary name, flushed to disk and renamed into place, so
    /// a crash never leaves a half-written file under the real name. The two renames are not
    /// one atomic step; a reader racing a save may see new weights with old metadata, which
    /// [`Model::load`] rejects when their shapes disagree.
    pub fn save(&self, dir: &Path) -> Result<(), ModelError> {
        fs::create_dir_all(dir).map_err(|source| ModelError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let weights_path = dir.join(WEIGHTS_FILE);
        let bytes = weights::encode(&self.params).map_err(|e| ModelError::Write {
            path: weights_path.clone(),
            source: io::Error::other(e.to_string()),
        })?;
        write_atomically(&weights_path, &bytes)?;
        self.save_metadata(dir)
    }

    /// Writes `metadata.json` only (atomically, like [`Model::save`]) into an existing
    /// directory: what `riskstream model canary` does to give a model a canary without
    /// touching its weights.
    pub fn save_metadata(&self, dir: &Path) -> Result<(), ModelError> {
        let metadata_path = dir.join(METADATA_FILE);
        let mut json =
            serde_json::to_vec_pretty(&self.metadata).map_err(|e| ModelError::Write {
                path: metadata_path.clone(),
                source: io::Error::other(e),
            })?;
        json.push(b'\n');
        write_atomically(&metadata_path, &json)
    }

    /// Writes this model's canary into `dir/metadata.json` without touching the weights.
    ///
    /// When the file there holds this model's metadata without a canary, the canary is added
    /// as its last field and every other byte of the file stays as it was (parsing and
    /// writing the whole file again could move a 17-digit training metric by one unit in
    /// the last place). Otherwise the whole metadata is written, as [`Model::save_metadata`]
    /// does. `riskstream model canary` writes a canary this way.
    pub fn save_canary(&self, dir: &Path) -> Result<(), ModelError> {
        let path = dir.join(METADATA_FILE);
        let appended = match &self.metadata.canary {
            Some(canary) => read_bounded(&path, MAX_METADATA_BYTES)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| self.with_canary_appended(&text, canary)),
            None => None,
        };
        match appended {
            Some(text) => write_atomically(&path, text.as_bytes()),
            None => self.save_metadata(dir),
        }
    }

    /// `text` (a metadata file) with `canary` added as its last field, if `text` holds this
    /// model's metadata without a canary and the result reads back with that canary.
    fn with_canary_appended(&self, text: &str, canary: &Canary) -> Option<String> {
        let on_disk: ModelMetadata = serde_json::from_str(text).ok()?;
        let mut without = self.metadata.clone();
        without.canary = None;
        if on_disk != without {
            return None;
        }
        let body = text.trim_end().strip_suffix('}')?.trim_end();
        let pretty = serde_json::to_string_pretty(canary).ok()?;
        let mut out = String::with_capacity(text.len() + pretty.len() * 2);
        out.push_str(body);
        out.push_str(",\n  \"canary\": ");
        out.push_str(&pretty.replace('\n', "\n  "));
        out.push_str("\n}\n");
        let back: ModelMetadata = serde_json::from_str(&out).ok()?;
        (back.canary.as_ref() == Some(canary)).then_some(out)
    }

    /// Everything about the model except its weights.
    pub fn metadata(&self) -> &ModelMetadata {
        &self.metadata
    }

    /// The version string reported with every result.
    pub fn version(&self) -> &str {
        &self.metadata.version
    }

    /// Number of features per row.
    pub fn n_features(&self) -> usize {
        self.metadata.feature_names.len()
    }

    /// Feature names in the order rows must follow.
    pub fn feature_names(&self) -> &[String] {
        &self.metadata.feature_names
    }

    /// The decision thresholds chosen at training time.
    pub fn thresholds(&self) -> Thresholds {
        self.metadata.thresholds
    }

    /// The device the model's tensors live on.
    pub fn device(&self) -> DeviceChoice {
        DeviceChoice::of(&self.device)
    }

    /// The default baseline row for [`Model::contributions`]: the training mean of every
    /// feature, i.e. an "average" event.
    pub fn baseline(&self) -> &[f32] {
        &self.metadata.norm_mean
    }

    /// The implementation [`Model::score`] and [`Model::contributions`] use: plain Rust
    /// when the model lives on the CPU (faster, and batch-size independent), candle when it
    /// lives on a GPU.
    pub fn backend(&self) -> Backend {
        if self.device.is_cpu() {
            Backend::Plain
        } else {
            Backend::Candle
        }
    }

    /// [`Model::score`] spread over up to `threads` threads (the calling one included) when
    /// the batch is large enough to pay for starting them: batches under 1 024 rows stay on
    /// the calling thread whatever `threads` says. Every row's score has the same bits as
    /// with [`Model::score`] (rows are independent). On a GPU this is [`Model::score`].
    pub fn score_on_threads(
        &self,
        rows: &[f32],
        n_rows: usize,
        threads: usize,
    ) -> Result<Vec<f32>, ModelError> {
        if self.backend() != Backend::Plain {
            return self.score(rows, n_rows);
        }
        self.check_rows(rows, n_rows)?;
        let mut scores = Vec::with_capacity(n_rows);
        self.plain
            .forward(rows, threads, Arithmetic::Fused, &mut scores, sigmoid);
        Ok(scores)
    }

    /// Scores `n_rows` rows of raw (un-normalised) features laid out row-major; returns one
    /// probability in `[0, 1]` per row, with [`Model::backend`].
    ///
    /// On the CPU a row's score is bit-identical whatever the batch it is scored in, the
    /// number of workers scoring in parallel, or the run (see [`Backend::Plain`]); it runs
    /// on the calling thread, so a single row pays no thread-pool hand-off.
    pub fn score(&self, rows: &[f32], n_rows: usize) -> Result<Vec<f32>, ModelError> {
        self.score_with(self.backend(), rows, n_rows)
    }

    /// [`Model::score`] with an explicit implementation, for benchmarks and cross-checks.
    ///
    /// With [`Backend::Candle`] on the CPU, the same input on the same machine gives
    /// bit-identical scores whatever `RAYON_NUM_THREADS` (candle splits work by output
    /// block, never inside a dot product), but a row's score may differ by about 1e-7 with
    /// the size of its batch, because the matmul kernel is chosen by matrix size. Batches
    /// larger than 65 536 rows are processed in passes of that size.
    pub fn score_with(
        &self,
        backend: Backend,
        rows: &[f32],
        n_rows: usize,
    ) -> Result<Vec<f32>, ModelError> {
        self.check_rows(rows, n_rows)?;
        let mut scores = Vec::with_capacity(n_rows);
        let n = self.n_features();
        for chunk in rows.chunks(MAX_ROWS_PER_PASS * n) {
            self.forward_checked(backend, chunk, chunk.len() / n, &mut scores, sigmoid)?;
        }
        Ok(scores)
    }

    /// How much each feature pushed the score of `row` up (positive) or down (negative)
    /// compared with `baseline`, in log-odds: `logit(row) − logit(row with feature i set to
    /// baseline[i])`. Log-odds rather than probabilities, because a probability saturated
    /// at 1.0 would make every contribution 0 exactly when an explanation matters most.
    ///
    /// On the CPU (plain backend) the first layer is computed once per row and shifted by
    /// one weight row per feature, so only the later layers run `n_features` more times (see
    /// `docs/performance.md` for the measured cost); with candle all `n_features + 1` variants go
    /// through one batched forward pass. A feature equal to its baseline value contributes
    /// exactly 0. Deterministic: the same row gives the same contributions every time.
    pub fn contributions(&self, row: &[f32], baseline: &[f32]) -> Result<Vec<f32>, ModelError> {
        self.contributions_batch(row, 1, baseline)
    }

    /// [`Model::contributions`] for `n_rows` rows at once (row-major in, row-major out:
    /// `n_rows × n_features` contributions), in as few forward passes as possible.
    pub fn contributions_batch(
        &self,
        rows: &[f32],
        n_rows: usize,
        baseline: &[f32],
    ) -> Result<Vec<f32>, ModelError> {
        let n = self.n_features();
        self.check_rows(rows, n_rows)?;
        if baseline.len() != n {
            return Err(ModelError::InputShape {
                got: baseline.len(),
                expected: n,
                n_rows: 1,
                n_features: n,
            });
        }
        if let Some(i) = baseline.iter().position(|v| !v.is_finite()) {
            return Err(ModelError::NonFiniteBaseline {
                feature: self.metadata.feature_names[i].clone(),
                value: baseline[i],
            });
        }

        let mut contributions = Vec::with_capacity(n_rows * n);
        if self.backend() == Backend::Plain {
            self.plain.contributions(rows, baseline, &mut contributions);
            return Ok(contributions);
        }
        let variants = n + 1;
        let mut batch = Vec::with_capacity(n_rows * variants * n);
        for row in rows.chunks_exact(n) {
            batch.extend_from_slice(row);
            for (i, &base) in baseline.iter().enumerate() {
                let start = batch.len();
                batch.extend_from_slice(row);
                batch[start + i] = base;
            }
        }
        let mut scores = Vec::with_capacity(n_rows * variants);
        let rows_per_pass = (MAX_ROWS_PER_PASS / variants).max(1) * variants;
        for chunk in batch.chunks(rows_per_pass * n) {
            // Log-odds, not probabilities: a saturated score (1.0 in f32) still shows which
            // features pushed it there.
            self.forward_checked(
                Backend::Candle,
                chunk,
                chunk.len() / n,
                &mut scores,
                |logit| logit,
            )?;
        }
        for (row, scores) in rows.chunks_exact(n).zip(scores.chunks_exact(variants)) {
            let full = scores[0];
            for i in 0..n {
                contributions.push(if row[i] == baseline[i] {
                    0.0
                } else {
                    full - scores[i + 1]
                });
            }
        }
        Ok(contributions)
    }

    /// Replaces the thresholds and metrics once training has evaluated the model.
    pub(crate) fn set_evaluation(&mut self, thresholds: Thresholds, metrics: serde_json::Value) {
        self.metadata.thresholds = thresholds;
        self.metadata.metrics = metrics;
    }

    /// The parameters as stored on disk.
    #[cfg(test)]
    pub(crate) fn params(&self) -> &[LayerParams] {
        &self.params
    }

    fn check_rows(&self, rows: &[f32], n_rows: usize) -> Result<(), ModelError> {
        let n = self.n_features();
        let expected = n_rows.saturating_mul(n);
        if rows.len() != expected {
            return Err(ModelError::InputShape {
                got: rows.len(),
                expected,
                n_rows,
                n_features: n,
            });
        }
        // Branch-free per block so that the check vectorises: it reads every input value
        // once, which costs as much as a layer when it stops to branch on each one.
        let all_finite = rows.chunks(256).all(|block| {
            block
                .iter()
                .fold(0u32, |seen, v| seen | (!v.to_bits() & EXPONENT == 0) as u32)
                == 0
        });
        if all_finite {
            return Ok(());
        }
        match rows.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(i) => Err(ModelError::NonFiniteInput {
                row: i / n,
                feature: self.metadata.feature_names[i % n].clone(),
                value: rows[i],
            }),
        }
    }

    /// Runs the network on checked rows and appends `finish(logit)` per row.
    fn forward_checked(
        &self,
        backend: Backend,
        rows: &[f32],
        n_rows: usize,
        out: &mut Vec<f32>,
        finish: fn(f32) -> f32,
    ) -> Result<(), ModelError> {
        if n_rows == 0 {
            return Ok(());
        }
        let arithmetic = match backend {
            Backend::Plain => Some(Arithmetic::Fused),
            Backend::PlainUnfused => Some(Arithmetic::Unfused),
            Backend::Candle => None,
        };
        if let Some(arithmetic) = arithmetic {
            self.plain.forward(rows, 1, arithmetic, out, finish);
            return Ok(());
        }
        let x = Tensor::from_slice(rows, (n_rows, self.n_features()), &self.device)
            .during("moving feature rows to the device")?;
        let logits = forward_logits(&x, &self.layers)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .during("running the model")?;
        out.extend(logits.into_iter().map(finish));
        Ok(())
    }
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("version", &self.metadata.version)
            .field("n_features", &self.n_features())
            .field("hidden", &self.metadata.hidden)
            .field("thresholds", &self.metadata.thresholds)
            .field("device", &self.device())
            .finish_non_exhaustive()
    }
}

/// The network without its final sigmoid: `(rows, inputs)` in, `(rows, 1)` logits out.
///
/// `layers` holds `(weight [inputs, outputs], bias [outputs])`; ReLU follows every layer but
/// the last. Training uses the same function so that the trained and the served network
/// cannot drift apart.
pub(crate) fn forward_logits(
    x: &Tensor,
    layers: &[(Tensor, Tensor)],
) -> candle_core::Result<Tensor> {
    let mut h = x.clone();
    for (i, (weight, bias)) in layers.iter().enumerate() {
        h = h.matmul(weight)?.broadcast_add(bias)?;
        if i + 1 < layers.len() {
            h = h.relu()?;
        }
    }
    Ok(h)
}

/// Logistic function that does not overflow for large negative inputs.
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Row-major `[rows, cols]` to row-major `[cols, rows]`.
pub(crate) fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// Layer-0 weight and bias that take raw features: `w / std` and `b − Σ w·mean / std`.
fn fold_normalisation(layer: &LayerParams, mean: &[f32], std: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut weight = Vec::with_capacity(layer.weight.len());
    let mut bias = Vec::with_capacity(layer.outputs);
    for (o, row) in layer.weight.chunks_exact(layer.inputs).enumerate() {
        let mut shift = 0.0f64;
        for ((&w, &m), &s) in row.iter().zip(mean).zip(std) {
            let scaled = f64::from(w) / f64::from(s);
            weight.push(scaled as f32);
            shift += scaled * f64::from(m);
        }
        bias.push((f64::from(layer.bias[o]) - shift) as f32);
    }
    (weight, bias)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ModelError> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    let write = || -> io::Result<()> {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    write().map_err(|source| ModelError::Write {
        path: tmp.clone(),
        source,
    })?;
    fs::rename(&tmp, path).map_err(|source| ModelError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::tests::sample;
    use crate::weights::layer_dims;

    /// A model with small deterministic weights; feature 0 has a large positive effect.
    fn model(n_features: usize, hidden: Vec<usize>) -> Model {
        let mut metadata = sample(n_features, hidden);
        metadata.norm_mean = (0..n_features).map(|i| i as f32 * 0.5).collect();
        metadata.norm_std = (0..n_features).map(|i| 1.0 + i as f32 * 0.25).collect();
        let params = layer_dims(n_features, &metadata.hidden)
            .into_iter()
            .enumerate()
            .map(|(l, (inputs, outputs))| LayerParams {
                inputs,
                outputs,
                weight: (0..inputs * outputs)
                    .map(|k| {
                        let i = k % inputs;
                        if i == 0 {
                            0.8
                        } else {
                            ((k * 7 + l * 3) % 11) as f32 / 11.0 - 0.5
                        }
                    })
                    .collect(),
                bias: (0..outputs).map(|o| o as f32 * 0.01).collect(),
            })
            .collect();
        let mut m =
            Model::from_parts(metadata, params, Device::Cpu).expect("test model is consistent");
        let labels: Vec<f32> = (0..64).map(|r| f32::from(u8::from(r % 4 == 0))).collect();
        m.choose_canary(&rows(64, n_features), &labels)
            .expect("the test model scores its rows apart");
        m
    }

    fn rows(n_rows: usize, n_features: usize) -> Vec<f32> {
        (0..n_rows * n_features)
            .map(|k| ((k * 37) % 101) as f32 / 20.0 - 2.0)
            .collect()
    }

    #[test]
    fn model_is_shareable_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Model>();
    }

    #[test]
    fn scores_are_probabilities_one_per_row() {
        let m = model(5, vec![4, 3]);
        let scores = m.score(&rows(10, 5), 10).expect("valid batch");
        assert_eq!(scores.len(), 10);
        assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "{scores:?}");
        assert!(m.score(&[], 0).expect("empty batch").is_empty());
    }

    #[test]
    fn folded_normalisation_matches_explicit_normalisation() {
        let m = model(5, vec![4, 3]);
        let raw = rows(7, 5);
        let meta = m.metadata();
        let normalised: Vec<f32> = raw
            .iter()
            .enumerate()
            .map(|(k, &x)| (x - meta.norm_mean[k % 5]) / meta.norm_std[k % 5])
            .collect();
        let mut unfolded = Vec::new();
        for layer in m.params() {
            let w = Tensor::from_vec(
                transpose(&layer.weight, layer.outputs, layer.inputs),
                (layer.inputs, layer.outputs),
                &Device::Cpu,
            )
            .expect("tensor");
            let b =
                Tensor::from_vec(layer.bias.clone(), layer.outputs, &Device::Cpu).expect("tensor");
            unfolded.push((w, b));
        }
        let x = Tensor::from_vec(normalised, (7, 5), &Device::Cpu).expect("tensor");
        let expected: Vec<f32> = forward_logits(&x, &unfolded)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .expect("forward")
            .into_iter()
            .map(sigmoid)
            .collect();
        let scores = m.score(&raw, 7).expect("valid batch");
        for (a, b) in scores.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-5, "{scores:?} vs {expected:?}");
        }
    }

    #[test]
    fn scoring_twice_gives_bit_identical_results() {
        let m = model(30, vec![32, 16]);
        let batch = rows(600, 30);
        let first = m.score(&batch, 600).expect("valid batch");
        let second = m.score(&batch, 600).expect("valid batch");
        assert_eq!(
            first.iter().map(|s| s.to_bits()).collect::<Vec<_>>(),
            second.iter().map(|s| s.to_bits()).collect::<Vec<_>>()
        );
    }

    fn bits(scores: &[f32]) -> Vec<u32> {
        scores.iter().map(|s| s.to_bits()).collect()
    }

    #[test]
    fn a_row_scores_the_same_bits_whatever_the_batch_it_is_in() {
        let m = model(42, vec![32, 16]);
        assert_eq!(
            m.backend(),
            Backend::Plain,
            "the CPU scores with plain Rust"
        );
        let batch = rows(4096, 42);
        let whole = bits(&m.score(&batch, 4096).expect("valid batch"));
        for size in [1usize, 3, 4, 5, 64, 511, 512, 1000] {
            let mut pieces = Vec::with_capacity(4096);
            for chunk in batch.chunks(size * 42) {
                pieces.extend(m.score(chunk, chunk.len() / 42).expect("valid batch"));
            }
            assert_eq!(bits(&pieces), whole, "batches of {size}");
        }
    }

    #[test]
    fn scores_are_the_same_bits_with_any_number_of_parallel_workers() {
        let m = model(42, vec![32, 16]);
        let batch = rows(2000, 42);
        let alone = bits(&m.score(&batch, 2000).expect("valid batch"));
        for workers in [2usize, 3, 8] {
            let per_worker = 2000usize.div_ceil(workers) * 42;
            let parts: Vec<Vec<f32>> = std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .chunks(per_worker)
                    .map(|chunk| scope.spawn(|| m.score(chunk, chunk.len() / 42)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("worker finished").expect("valid batch"))
                    .collect()
            });
            assert_eq!(bits(&parts.concat()), alone, "{workers} workers");
        }
    }

    #[test]
    fn plain_and_candle_scores_agree_to_within_rounding() {
        let m = model(42, vec![32, 16]);
        let batch = rows(700, 42);
        let plain = m
            .score_with(Backend::Plain, &batch, 700)
            .expect("valid batch");
        let candle = m
            .score_with(Backend::Candle, &batch, 700)
            .expect("valid batch");
        let worst = plain
            .iter()
            .zip(&candle)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "largest difference {worst}");
    }

    #[test]
    fn wrong_batch_length_and_non_finite_values_are_rejected() {
        let m = model(3, vec![2]);
        let err = m.score(&[0.0; 5], 2).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("feature batch has 5 values but 2 rows x 3 features need 6")
        );
        let err = m.score(&[0.0, 0.0, 0.0, 0.0, f32::NAN, 0.0], 2);
        assert!(
            matches!(err, Err(ModelError::NonFiniteInput { row: 1, ref feature, .. }) if feature == "f1"),
            "{err:?}"
        );
    }

    #[test]
    fn every_kind_of_non_finite_value_is_found_wherever_it_is() {
        let m = model(3, vec![2]);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::NAN] {
            for at in [0usize, 255, 256, 700, 899] {
                let mut batch = rows(300, 3);
                batch[at] = bad;
                let err = m.score(&batch, 300);
                assert!(
                    matches!(err, Err(ModelError::NonFiniteInput { row, .. }) if row == at / 3),
                    "{bad} at {at}: {err:?}"
                );
            }
        }
        let extremes = [f32::MAX, f32::MIN, f32::MIN_POSITIVE, -0.0, 1e-45, -1e-45];
        let scores = m.score(&extremes, 2).expect("finite values are accepted");
        assert_eq!(scores.len(), 2);
    }

    #[test]
    fn scores_on_threads_have_the_bits_of_scores_on_one() {
        let m = model(42, vec![32, 16]);
        for n_rows in [1usize, 7, 1023, 1024, 4096, 4101] {
            let batch = rows(n_rows, 42);
            let one = bits(&m.score(&batch, n_rows).expect("valid batch"));
            for threads in [0usize, 1, 2, 3] {
                let shared = m
                    .score_on_threads(&batch, n_rows, threads)
                    .expect("valid batch");
                assert_eq!(bits(&shared), one, "{n_rows} rows on {threads} threads");
            }
        }
        let mut batch = rows(2048, 42);
        batch[2000 * 42 + 5] = f32::NAN;
        let err = m.score_on_threads(&batch, 2048, 2);
        assert!(
            matches!(err, Err(ModelError::NonFiniteInput { row: 2000, .. })),
            "{err:?}"
        );
    }

    #[test]
    fn a_row_equal_to_the_baseline_has_zero_contributions() {
        let m = model(6, vec![4]);
        let baseline = m.baseline().to_vec();
        let contributions = m.contributions(&baseline, &baseline).expect("valid row");
        assert_eq!(contributions, vec![0.0; 6]);
    }

    #[test]
    fn a_feature_that_raises_the_score_gets_a_positive_contribution() {
        let m = model(6, vec![4]);
        let baseline = m.baseline().to_vec();
        let mut row = baseline.clone();
        row[0] += 3.0;
        let contributions = m.contributions(&row, &baseline).expect("valid row");
        let raised = m.score(&row, 1).expect("valid row")[0];
        let base = m.score(&baseline, 1).expect("valid row")[0];
        assert!(raised > base, "feature 0 must raise the score");
        assert!(contributions[0] > 0.0, "{contributions:?}");
        let logit = |p: f32| (p / (1.0 - p)).ln();
        assert!(
            (contributions[0] - (logit(raised) - logit(base))).abs() < 1e-4,
            "contributions are log-odds differences: {contributions:?}"
        );
        assert_eq!(&contributions[1..], &[0.0; 5]);
    }

    #[test]
    fn batched_contributions_match_one_row_at_a_time() {
        let m = model(5, vec![4, 3]);
        let batch = rows(3, 5);
        let baseline = m.baseline().to_vec();
        let all = m
            .contributions_batch(&batch, 3, &baseline)
            .expect("valid batch");
        for (r, row) in batch.chunks_exact(5).enumerate() {
            let one = m.contributions(row, &baseline).expect("valid row");
            for (a, b) in one.iter().zip(&all[r * 5..(r + 1) * 5]) {
                assert!((a - b).abs() < 1e-6, "row {r}: {one:?} vs {all:?}");
            }
        }
        assert!(m.contributions(&batch[..5], &baseline[..4]).is_err());
        let mut bad = baseline.clone();
        bad[2] = f32::INFINITY;
        let err = m
            .contributions(&batch[..5], &bad)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("baseline value for feature f2 is not finite (inf)")
        );
    }

    fn saved(m: &Model) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temporary directory");
        m.save(dir.path()).expect("save into a fresh directory");
        dir
    }

    fn load_error(dir: &Path) -> String {
        match Model::load(dir, DeviceChoice::Cpu) {
            Ok(m) => panic!("loading must fail, got {m:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn saved_model_loads_back_with_identical_scores_and_metadata() {
        let m = model(30, vec![32, 16]);
        let dir = saved(&m);
        let loaded = Model::load(dir.path(), DeviceChoice::Cpu).expect("load what was saved");
        assert_eq!(loaded.metadata(), m.metadata());
        assert_eq!(loaded.params(), m.params());
        let batch = rows(100, 30);
        let before = m.score(&batch, 100).expect("valid batch");
        let after = loaded.score(&batch, 100).expect("valid batch");
        assert_eq!(
            before.iter().map(|s| s.to_bits()).collect::<Vec<_>>(),
            after.iter().map(|s| s.to_bits()).collect::<Vec<_>>()
        );
        let second = saved(&loaded);
        for file in [WEIGHTS_FILE, METADATA_FILE] {
            assert_eq!(
                fs::read(dir.path().join(file)).ok(),
                fs::read(second.path().join(file)).ok(),
                "{file} must be byte-identical after a round trip"
            );
        }
    }

    /// Loads on another thread so that a load that blocks fails the test instead of
    /// hanging it; the bound is generous, the load itself takes microseconds.
    fn load_error_within_a_minute(dir: &Path) -> String {
        let dir = dir.to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(load_error(&dir));
        });
        rx.recv_timeout(std::time::Duration::from_secs(60))
            .expect("Model::load blocked on a model file that is not a regular file")
    }

    #[cfg(unix)]
    #[test]
    fn weights_file_that_is_a_fifo_is_refused_without_blocking() {
        let dir = saved(&model(4, vec![3]));
        let path = dir.path().join(WEIGHTS_FILE);
        fs::remove_file(&path).expect("remove weights");
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .expect("mkfifo runs");
        assert!(made.success(), "mkfifo failed");
        let message = load_error_within_a_minute(dir.path());
        assert!(message.contains("not a regular file (a FIFO)"), "{message}");
        assert!(message.contains(WEIGHTS_FILE), "{message}");
    }

    #[cfg(unix)]
    #[test]
    fn metadata_linked_to_an_endless_device_is_refused() {
        let dir = saved(&model(4, vec![3]));
        let path = dir.path().join(METADATA_FILE);
        fs::remove_file(&path).expect("remove metadata");
        std::os::unix::fs::symlink("/dev/zero", &path).expect("symlink");
        let message = load_error_within_a_minute(dir.path());
        assert!(
            message.contains("not a regular file (a character device)"),
            "{message}"
        );
    }

    #[test]
    fn model_file_over_its_size_limit_is_refused_unread() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(WEIGHTS_FILE);
        fs::write(&path, vec![0u8; 4097]).expect("write");
        let err = read_bounded(&path, 4096).expect_err("over the limit");
        assert!(
            matches!(
                err,
                ModelError::TooLarge {
                    size: 4097,
                    limit: 4096,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(read_bounded(&path, 4097).expect("at the limit").len(), 4097);
    }

    #[test]
    fn truncated_weights_are_rejected_naming_the_file() {
        let dir = saved(&model(4, vec![3]));
        let path = dir.path().join(WEIGHTS_FILE);
        let bytes = fs::read(&path).expect("weights written");
        fs::write(&path, &bytes[..bytes.len() - 10]).expect("truncate");
        let message = load_error(dir.path());
        assert!(message.contains(WEIGHTS_FILE), "{message}");
        assert!(message.contains("truncated or corrupt"), "{message}");
    }

    #[test]
    fn garbage_weights_are_rejected_as_corrupt() {
        let dir = saved(&model(4, vec![3]));
        fs::write(dir.path().join(WEIGHTS_FILE), b"not a tensor file").expect("overwrite");
        assert!(load_error(dir.path()).contains("truncated or corrupt"));
    }

    #[test]
    fn metadata_listing_another_feature_count_is_rejected() {
        let m = model(27, vec![32, 16]);
        let dir = saved(&m);
        let mut meta = m.metadata().clone();
        meta.feature_names.push("extra".to_owned());
        meta.norm_mean.push(0.0);
        meta.norm_std.push(1.0);
        // The canary's rows have the old length too; without it the weights are checked.
        meta.canary = None;
        let json = serde_json::to_vec(&meta).expect("serialisable metadata");
        fs::write(dir.path().join(METADATA_FILE), json).expect("overwrite");
        let message = load_error(dir.path());
        assert!(
            message.contains("layer 0 weight has shape [32, 27] but metadata lists 28 features"),
            "{message}"
        );
    }

    #[test]
    fn metadata_with_thresholds_out_of_order_is_rejected() {
        let m = model(4, vec![3]);
        let dir = saved(&m);
        let path = dir.path().join(METADATA_FILE);
        let text = fs::read_to_string(&path).expect("metadata written");
        let mut json: serde_json::Value = serde_json::from_str(&text).expect("valid json");
        json["thresholds"] = serde_json::json!({"review": 0.9, "block": 0.5});
        fs::write(&path, json.to_string()).expect("overwrite");
        let message = load_error(dir.path());
        assert!(message.contains(METADATA_FILE), "{message}");
        assert!(message.contains("review=0.9 block=0.5"), "{message}");
    }

    #[test]
    fn malformed_metadata_json_reports_file_and_position() {
        let dir = saved(&model(4, vec![3]));
        fs::write(dir.path().join(METADATA_FILE), "{\"format_version\": 1,").expect("overwrite");
        let message = load_error(dir.path());
        assert!(
            message.contains(METADATA_FILE) && message.contains("line 1"),
            "{message}"
        );
    }

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/riskstream-v1")
    }

    /// A copy of the shipped model's two files in a fresh directory.
    fn shipped_copy() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temporary directory");
        for file in [METADATA_FILE, WEIGHTS_FILE] {
            fs::copy(shipped().join(file), dir.path().join(file)).expect("copy model file");
        }
        dir
    }

    /// Rewrites the metadata of the model in `dir` as JSON.
    fn edit_metadata(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
        let path = dir.join(METADATA_FILE);
        let text = fs::read_to_string(&path).expect("metadata written");
        let mut json: serde_json::Value = serde_json::from_str(&text).expect("valid json");
        edit(&mut json);
        fs::write(&path, json.to_string()).expect("overwrite metadata");
    }

    /// The shipped model with other parameters (and the shipped canary), saved to a fresh
    /// directory.
    fn shipped_with_params(edit: impl FnOnce(&mut [LayerParams])) -> tempfile::TempDir {
        let shipped = Model::load(&shipped(), DeviceChoice::Cpu).expect("shipped model loads");
        let mut params = shipped.params().to_vec();
        edit(&mut params);
        let changed = Model::from_parts(shipped.metadata().clone(), params, Device::Cpu)
            .expect("finite parameters of the right shape");
        saved(&changed)
    }

    fn refused_by_canary(dir: &Path) -> String {
        match Model::load(dir, DeviceChoice::Cpu) {
            Err(err @ ModelError::CanaryFailed { .. }) => {
                let message = err.to_string();
                assert!(
                    message.starts_with(&format!("model {} refused: ", dir.display())),
                    "the error names the model directory: {message}"
                );
                message
            }
            other => panic!("the canary must refuse the model, got {other:?}"),
        }
    }

    #[test]
    fn the_shipped_model_loads_and_passes_its_own_canary() {
        let m = Model::load(&shipped(), DeviceChoice::Cpu).expect("shipped model loads");
        let canary = m.canary().expect("the shipped model has a canary");
        let fraud = canary.rows.iter().filter(|r| r.label == 1).count();
        assert_eq!(fraud, crate::CANARY_ROWS_PER_LABEL, "fraud-like rows");
        assert_eq!(
            canary.rows.len() - fraud,
            crate::CANARY_ROWS_PER_LABEL,
            "benign rows"
        );
        let rows = canary.feature_rows();
        for backend in [Backend::Plain, Backend::Candle] {
            let scores = m
                .score_with(backend, &rows, canary.rows.len())
                .expect("valid rows");
            assert_eq!(canary.verify(&scores), Ok(()), "{backend:?}");
        }
        let (low, high) = canary
            .expected()
            .iter()
            .fold((1.0f32, 0.0f32), |(lo, hi), &s| (lo.min(s), hi.max(s)));
        assert!(low < 0.01 && high > 0.99, "the canary spans {low}..{high}");
    }

    #[test]
    fn a_model_whose_norm_mean_is_3e38_is_refused_at_load() {
        let dir = shipped_copy();
        edit_metadata(dir.path(), |json| {
            json["norm_mean"][0] = serde_json::json!(3e38)
        });
        let message = refused_by_canary(dir.path());
        assert!(
            message
                .contains("degenerate scores: it scores every canary row 0.0000; expected spread"),
            "{message}"
        );
        // What the check stops: without it the model loads and allows everything.
        let unchecked =
            Model::load_unverified(dir.path(), DeviceChoice::Cpu).expect("passes other checks");
        let canary = unchecked.canary().expect("canary kept");
        let scores = unchecked
            .score(&canary.feature_rows(), canary.rows.len())
            .expect("finite rows");
        assert!(scores.iter().all(|&s| s == 0.0), "{scores:?}");
    }

    #[test]
    fn last_layer_weights_of_3e38_are_refused_at_load() {
        let dir = shipped_with_params(|params| {
            let last = params.len() - 1;
            for (k, w) in params[last].weight.iter_mut().enumerate() {
                *w = if k % 2 == 0 { 3e38 } else { -3e38 };
            }
        });
        let message = refused_by_canary(dir.path());
        assert!(
            message.contains("degenerate scores: it scores"),
            "{message}"
        );
    }

    #[test]
    fn a_canary_that_disagrees_with_the_weights_is_refused() {
        let dir = shipped_with_params(|params| {
            let last = params.len() - 1;
            params[last].bias[0] += 0.05;
        });
        let message = refused_by_canary(dir.path());
        assert!(
            message.contains("its scores differ from its canary's by more than 1e-4 on"),
            "{message}"
        );
        assert!(
            message.contains("not the ones the canary was written with"),
            "{message}"
        );

        let dir = shipped_copy();
        edit_metadata(dir.path(), |json| {
            let rows = json["canary"]["rows"].as_array_mut().expect("canary rows");
            let middle = rows
                .iter_mut()
                .find(|row| row["score"].as_f64().is_some_and(|s| s > 0.1 && s < 0.9))
                .expect("a canary row scored between 0.1 and 0.9");
            let score = middle["score"].as_f64().unwrap_or_default();
            middle["score"] = serde_json::json!(score + 0.001);
        });
        let message = refused_by_canary(dir.path());
        assert!(message.contains("on 1 of 32 rows"), "{message}");
    }

    #[test]
    fn a_model_without_a_canary_is_refused_with_how_to_write_one() {
        let dir = shipped_copy();
        edit_metadata(dir.path(), |json| {
            json.as_object_mut().map(|o| o.remove("canary"));
        });
        let message = load_error(dir.path());
        assert!(message.contains("has no canary"), "{message}");
        assert!(
            message.contains(&format!(
                "riskstream model canary --model {} --data DATA_DIR",
                dir.path().display()
            )),
            "{message}"
        );
        let mut m = Model::load_unverified(dir.path(), DeviceChoice::Cpu)
            .expect("loads without the canary check");
        let batch = rows(64, m.n_features());
        let labels: Vec<f32> = (0..64).map(|r| f32::from(u8::from(r % 2 == 0))).collect();
        m.choose_canary(&batch, &labels).expect("a canary");
        let weights = fs::read(dir.path().join(WEIGHTS_FILE)).expect("weights");
        let before = fs::read_to_string(dir.path().join(METADATA_FILE)).expect("metadata");
        m.save_canary(dir.path()).expect("canary written");
        assert_eq!(
            fs::read(dir.path().join(WEIGHTS_FILE)).ok(),
            Some(weights),
            "a canary is written without touching the weights"
        );
        let after = fs::read_to_string(dir.path().join(METADATA_FILE)).expect("metadata");
        let kept = before.trim_end().trim_end_matches('}').trim_end();
        assert!(
            after.starts_with(kept) && after[kept.len()..].starts_with(",\n  \"canary\": {"),
            "the rest of the metadata is kept byte for byte:\n{}",
            &after[..after.len().min(300)]
        );
        let loaded = Model::load(dir.path(), DeviceChoice::Cpu).expect("loads with its new canary");
        assert_eq!(loaded.metadata(), m.metadata());
    }

    #[test]
    fn a_canary_is_not_chosen_for_a_model_that_scores_every_row_alike() {
        let mut m = model(4, vec![3]);
        let flat: Vec<LayerParams> = m
            .params()
            .iter()
            .map(|layer| LayerParams {
                weight: vec![0.0; layer.weight.len()],
                ..layer.clone()
            })
            .collect();
        m = Model::from_parts(m.metadata().clone(), flat, Device::Cpu).expect("consistent");
        let labels: Vec<f32> = (0..40).map(|r| f32::from(u8::from(r % 2 == 0))).collect();
        let err = m
            .choose_canary(&rows(40, 4), &labels)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.starts_with("cannot write a canary: the canary's expected scores are degenerate"),
            "{err}"
        );
    }

    #[test]
    fn missing_model_directory_is_a_read_error() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let message = load_error(&dir.path().join("nope"));
        assert!(message.starts_with("cannot read model file"), "{message}");
    }
}
