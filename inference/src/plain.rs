//! The MLP forward pass in plain Rust, without candle: the CPU scoring path.
//!
//! Why a second implementation of the same network: candle's CPU matmul picks its kernel by
//! matrix size, so a row's score changes in the last bits with the size of the batch it is
//! scored in, and every call pays for tensor allocation and dispatch (several microseconds,
//! which dominates single-row scoring). Here every row goes through exactly the same
//! sequence of floating-point operations whatever the batch size, the worker count or the
//! CPU, so scores are bit-identical across runs, batch sizes, workers and machines; and a
//! small batch costs only its arithmetic, on the calling thread (no thread pool).
//!
//! The order of operations is fixed: for each layer, `h[o] = bias[o]`, then for each input
//! `i` in order `h[o] = fma(x[i], w[i][o], h[o])`, a fused multiply-add (one rounding, as
//! IEEE 754 defines it and `f32::mul_add` computes it), then ReLU on hidden layers.
//!
//! Why fused: a fused multiply-add is one instruction where a multiply then an add are two,
//! which doubles the peak arithmetic of a core on every x86-64 CPU since 2013 (Haswell,
//! Piledriver) and every 64-bit ARM CPU. Its result is defined to the bit, so fusing does
//! not cost determinism: every machine computes the same bits. Measured on the shipped model
//! the gain is smaller than the peak (the kernels also wait on loads and on each step's
//! latency): from none to about a third at large batches, and a single row, one chain of
//! dependent steps, is slower fused because a fused step takes longer than an add. What it
//! costs is speed on x86-64 CPUs without the instruction, where the same bits come from a
//! software fused multiply-add (correct, but scoring is then an order of magnitude slower).
//! Scores differ from the earlier unfused arithmetic in the last bits (with the shipped model
//! by at most 4.2e-6 over a million rows, no decision changed); [`Arithmetic::Unfused`]
//! keeps that arithmetic for comparison.
//!
//! For speed, rows go through the network eight at a time and, on x86-64 CPUs with AVX and
//! FMA, layers whose width is a multiple of 8 run in kernels that keep the accumulators of a
//! group of rows in vector registers while the weights stream past. Lane for lane those
//! compute the same fused multiply-add and ReLU as the portable loop, so neither the
//! grouping nor the CPU changes a bit. Large batches may be split across threads
//! ([`PlainNet::forward`]); rows are independent, so that does not change a bit either.

use std::thread;

/// Rows that share one pass over the weights.
const TILE: usize = 8;

/// Layers up to this wide keep a tile's activations on the stack, so scoring allocates
/// nothing but its result.
const STACK_WIDTH: usize = 64;

/// Batches smaller than this stay on the calling thread: starting a thread costs tens of
/// microseconds, the time to score a few hundred rows.
pub(crate) const PARALLEL_MIN_ROWS: usize = 1024;

/// The multiply-accumulate step of every layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arithmetic {
    /// `fma(x, w, h)`, one rounding: the reference arithmetic of scoring.
    Fused,
    /// `h + x · w`, the product rounded before the sum: the arithmetic scoring used before
    /// it was fused, kept so that the benchmark can measure what fusing gains.
    Unfused,
}

/// One dense layer, weights laid out `[inputs][outputs]` so that the inner loop runs over
/// contiguous outputs and vectorises.
#[derive(Debug, Clone)]
struct Dense {
    inputs: usize,
    outputs: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

/// The network on the host, normalisation already folded into layer 0.
#[derive(Debug, Clone)]
pub(crate) struct PlainNet {
    layers: Vec<Dense>,
    /// Widest layer output: the row stride of the scratch buffers.
    widest: usize,
}

impl PlainNet {
    /// `layers` holds `(weight [inputs × outputs] row-major, bias [outputs], inputs,
    /// outputs)`; the last layer must have one output. Shapes are checked by the caller
    /// (the weights loader), so a mismatch here is a bug.
    pub(crate) fn new(layers: Vec<(Vec<f32>, Vec<f32>, usize, usize)>) -> PlainNet {
        let layers: Vec<Dense> = layers
            .into_iter()
            .map(|(weight, bias, inputs, outputs)| {
                assert!(
                    weight.len() == inputs * outputs && bias.len() == outputs,
                    "layer shapes were checked when the weights were decoded"
                );
                Dense {
                    inputs,
                    outputs,
                    weight,
                    bias,
                }
            })
            .collect();
        assert!(
            layers.last().is_some_and(|l| l.outputs == 1),
            "the network ends in a single output"
        );
        let widest = layers.iter().map(|l| l.outputs).max().unwrap_or(1);
        PlainNet { layers, widest }
    }

    /// Appends one logit per row of `rows` (row-major, `inputs` of layer 0 per row), on the
    /// calling thread.
    #[cfg(test)]
    pub(crate) fn logits(&self, rows: &[f32], out: &mut Vec<f32>) {
        self.forward(rows, 1, Arithmetic::Fused, out, |logit| logit);
    }

    /// Appends `finish(logit)` for every row of `rows` (row-major, `inputs` of layer 0 per
    /// row), on up to `threads` threads (the calling one included), each taking a
    /// contiguous share of the rows. Batches under [`PARALLEL_MIN_ROWS`] rows, and any batch
    /// when `threads` is 0 or 1, stay on the calling thread. A row's result depends only on
    /// the row and `arithmetic`, never on the batch or the number of threads.
    pub(crate) fn forward<F>(
        &self,
        rows: &[f32],
        threads: usize,
        arithmetic: Arithmetic,
        out: &mut Vec<f32>,
        finish: F,
    ) where
        F: Fn(f32) -> f32 + Sync,
    {
        let stride = self.layers[0].inputs;
        let n_rows = rows.len() / stride;
        let start = out.len();
        out.resize(start + n_rows, 0.0);
        let slots = &mut out[start..];
        let share = |input: &[f32], output: &mut [f32]| {
            match arithmetic {
                Arithmetic::Fused => self.logits_into::<true>(input, output),
                Arithmetic::Unfused => self.logits_into::<false>(input, output),
            }
            for value in output.iter_mut() {
                *value = finish(*value);
            }
        };
        let parts = parts(n_rows, threads);
        if parts <= 1 {
            share(rows, slots);
            return;
        }
        // Shares in whole tiles, so that no thread scores its last rows one at a time.
        let per_part = n_rows.div_ceil(parts).next_multiple_of(TILE);
        let share = &share;
        thread::scope(|scope| {
            let mut shares = rows
                .chunks(per_part * stride)
                .zip(slots.chunks_mut(per_part));
            let mine = shares.next();
            for (input, output) in shares {
                scope.spawn(move || share(input, output));
            }
            if let Some((input, output)) = mine {
                share(input, output);
            }
        });
    }

    /// Writes one logit per row into `out` (one slot per row), with the fastest kernels
    /// this CPU has for the arithmetic `FUSED` selects.
    fn logits_into<const FUSED: bool>(&self, rows: &[f32], out: &mut [f32]) {
        let stride = self.layers[0].inputs;
        #[cfg(target_arch = "x86_64")]
        {
            if FUSED && x86::has_fma() {
                // SAFETY: the CPU supports AVX and FMA, checked just above.
                unsafe { self.logits_fma(rows, out) };
                return;
            }
            if !FUSED && x86::has_avx() {
                // SAFETY: the CPU supports AVX, checked just above.
                unsafe { self.logits_avx(rows, out) };
                return;
            }
        }
        self.logits_from::<FUSED>(0, rows, stride, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx,fma")]
    unsafe fn logits_fma(&self, rows: &[f32], out: &mut [f32]) {
        self.logits_from::<true>(0, rows, self.layers[0].inputs, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    unsafe fn logits_avx(&self, rows: &[f32], out: &mut [f32]) {
        self.logits_from::<false>(0, rows, self.layers[0].inputs, out);
    }

    /// Appends, for every row, `logit(row) − logit(row with feature j set to baseline[j])`
    /// for each feature `j` (0 exactly where the row already holds the baseline value).
    ///
    /// Layer 0 is linear in its inputs, so replacing input `j` moves its pre-activation by
    /// `(baseline[j] − x[j]) · w[j]`: one row of weights instead of a whole first layer.
    /// Only the later (smaller) layers run once per feature, batched like scoring. The
    /// shifted pre-activation can differ from a from-scratch pass in the last bit; the
    /// result is still the same for the same row every time.
    pub(crate) fn contributions(&self, rows: &[f32], baseline: &[f32], out: &mut Vec<f32>) {
        #[cfg(target_arch = "x86_64")]
        {
            if x86::has_fma() {
                // SAFETY: the CPU supports AVX and FMA, checked just above.
                unsafe { self.contributions_fma(rows, baseline, out) };
                return;
            }
        }
        self.contributions_portable(rows, baseline, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx,fma")]
    unsafe fn contributions_fma(&self, rows: &[f32], baseline: &[f32], out: &mut Vec<f32>) {
        self.contributions_portable(rows, baseline, out);
    }

    #[inline(always)]
    fn contributions_portable(&self, rows: &[f32], baseline: &[f32], out: &mut Vec<f32>) {
        let first = &self.layers[0];
        let n = first.inputs;
        let width = first.outputs;
        let hidden = self.layers.len() > 1;
        // Row 0: the event as it is; row 1 + j: feature j at its baseline. After layer 0's
        // ReLU when there are later layers, else the final logits themselves.
        let mut variants = vec![0.0f32; (n + 1) * width];
        let mut logits = vec![0.0f32; n + 1];
        for row in rows.chunks_exact(n) {
            dense::<1, true>(first, (row, n, &mut variants[..width], width, false));
            let (z0, shifted) = variants.split_at_mut(width);
            for (j, (&x, &base)) in row.iter().zip(baseline).enumerate() {
                let delta = base - x;
                let wrow = &first.weight[j * width..(j + 1) * width];
                let target = &mut shifted[j * width..(j + 1) * width];
                for ((s, &z), &w) in target.iter_mut().zip(z0.iter()).zip(wrow) {
                    *s = delta.mul_add(w, z);
                }
            }
            if hidden {
                for h in variants.iter_mut() {
                    *h = relu_scalar(*h);
                }
                self.logits_from::<true>(1, &variants, width, &mut logits);
            } else {
                logits.copy_from_slice(&variants);
            }
            let full = logits[0];
            for (j, (&x, &base)) in row.iter().zip(baseline).enumerate() {
                out.push(if x == base { 0.0 } else { full - logits[j + 1] });
            }
        }
    }

    /// Runs `rows` (stride `stride`) through layers `start..` and writes one logit per row
    /// into `out`.
    #[inline(always)]
    fn logits_from<const FUSED: bool>(
        &self,
        start: usize,
        rows: &[f32],
        stride: usize,
        out: &mut [f32],
    ) {
        if self.widest <= STACK_WIDTH && rows.len() < 4 * stride {
            // Fewer rows than the smallest tile: they go through one at a time, and zeroing
            // the full scratch would cost a single row a tenth of its time.
            let mut a = [0.0f32; STACK_WIDTH];
            let mut b = [0.0f32; STACK_WIDTH];
            self.tiles::<FUSED>(start, rows, stride, (&mut a, &mut b), out);
        } else if self.widest <= STACK_WIDTH {
            let mut a = [0.0f32; TILE * STACK_WIDTH];
            let mut b = [0.0f32; TILE * STACK_WIDTH];
            self.tiles::<FUSED>(start, rows, stride, (&mut a, &mut b), out);
        } else {
            let mut a = vec![0.0f32; TILE * self.widest];
            let mut b = vec![0.0f32; TILE * self.widest];
            self.tiles::<FUSED>(start, rows, stride, (&mut a, &mut b), out);
        }
    }

    /// Cuts `rows` into tiles of [`TILE`] rows, then one of 4, then single rows.
    #[inline(always)]
    fn tiles<const FUSED: bool>(
        &self,
        start: usize,
        rows: &[f32],
        stride: usize,
        scratch: (&mut [f32], &mut [f32]),
        out: &mut [f32],
    ) {
        let (a, b) = scratch;
        let mut tiles = rows.chunks_exact(TILE * stride);
        let mut slots = out.chunks_exact_mut(TILE);
        for (tile, slots) in (&mut tiles).zip(&mut slots) {
            self.tile::<TILE, FUSED>(start, tile, stride, a, b, slots);
        }
        let mut rest = tiles.remainder();
        let mut rest_slots = slots.into_remainder();
        if rest.len() >= 4 * stride {
            let (tile, more) = rest.split_at(4 * stride);
            let (slots, more_slots) = rest_slots.split_at_mut(4);
            self.tile::<4, FUSED>(start, tile, stride, a, b, slots);
            rest = more;
            rest_slots = more_slots;
        }
        for (row, slot) in rest
            .chunks_exact(stride)
            .zip(rest_slots.chunks_exact_mut(1))
        {
            self.tile::<1, FUSED>(start, row, stride, a, b, slot);
        }
    }

    /// Forward pass of `R` rows through layers `start..`; the arithmetic of each row is
    /// independent of `R`.
    #[inline(always)]
    fn tile<const R: usize, const FUSED: bool>(
        &self,
        start: usize,
        x: &[f32],
        stride: usize,
        a: &mut [f32],
        b: &mut [f32],
        out: &mut [f32],
    ) {
        let last = self.layers.len() - 1;
        let width = self.widest;
        let mut in_a = None;
        for (l, layer) in self.layers.iter().enumerate().skip(start) {
            let relu = l < last;
            match in_a {
                None => dense::<R, FUSED>(layer, (x, stride, a, width, relu)),
                Some(true) => dense::<R, FUSED>(layer, (a, width, b, width, relu)),
                Some(false) => dense::<R, FUSED>(layer, (b, width, a, width, relu)),
            }
            // Where this layer's output now lives.
            in_a = Some(in_a != Some(true));
        }
        let result: &[f32] = if in_a == Some(false) { b } else { a };
        for (r, slot) in out.iter_mut().enumerate().take(R) {
            *slot = result[r * width];
        }
    }
}

/// How many threads share a batch of `n_rows` rows when up to `threads` may: one below
/// [`PARALLEL_MIN_ROWS`] rows, else at most one per half of that many rows.
pub(crate) fn parts(n_rows: usize, threads: usize) -> usize {
    if n_rows < PARALLEL_MIN_ROWS {
        1
    } else {
        threads.min(n_rows / (PARALLEL_MIN_ROWS / 2)).max(1)
    }
}

/// `output[r][..] = relu?(bias + Σ_i input[r][i] · weight[i][..])` for `R` rows, with
/// register-resident accumulators for the common widths.
#[inline(always)]
fn dense<const R: usize, const FUSED: bool>(layer: &Dense, io: Io<'_>) {
    #[cfg(target_arch = "x86_64")]
    {
        if FUSED && x86::has_fma() {
            // SAFETY: the CPU supports AVX and FMA, checked just above; shapes are checked
            // inside.
            unsafe {
                match layer.outputs {
                    64 => return x86::fma::groups::<R, 1, 8>(layer, io),
                    32 => return x86::fma::groups::<R, 2, 4>(layer, io),
                    16 => return x86::fma::groups::<R, 4, 2>(layer, io),
                    8 => return x86::fma::groups::<R, 8, 1>(layer, io),
                    _ => {}
                }
            }
        }
        if !FUSED && x86::has_avx() {
            // SAFETY: the CPU supports AVX, checked just above; shapes are checked inside.
            unsafe {
                match layer.outputs {
                    64 => return x86::avx::groups::<R, 1, 8>(layer, io),
                    32 => return x86::avx::groups::<R, 2, 4>(layer, io),
                    16 => return x86::avx::groups::<R, 4, 2>(layer, io),
                    8 => return x86::avx::groups::<R, 4, 1>(layer, io),
                    _ => {}
                }
            }
        }
    }
    if layer.outputs == 1 {
        return dense_one::<R, FUSED>(layer, io);
    }
    dense_any::<R, FUSED>(layer, io)
}

/// Input rows, their stride, output rows, their stride, whether to apply ReLU.
type Io<'a> = (&'a [f32], usize, &'a mut [f32], usize, bool);

/// Vector kernels for layers whose width is a multiple of 8: the accumulators of a group of
/// rows live in vector registers while the weights stream past. Lane for lane they perform
/// the same multiply-accumulate step, then ReLU, as [`dense_any`], so the bits are the same.
#[cfg(target_arch = "x86_64")]
mod x86 {
    /// Whether the CPU runs the unfused kernels (the answer is cached by the standard
    /// library, so asking per layer costs a load).
    pub(super) fn has_avx() -> bool {
        std::arch::is_x86_feature_detected!("avx")
    }

    /// Whether the CPU runs the fused kernels.
    pub(super) fn has_fma() -> bool {
        std::arch::is_x86_feature_detected!("avx") && std::arch::is_x86_feature_detected!("fma")
    }

    /// One kernel module per arithmetic: `$features` are the CPU features it needs and
    /// `$step` computes the new accumulator from the accumulator, the broadcast input and
    /// the weights.
    macro_rules! kernels {
        ($module:ident, $features:literal, |$acc:ident, $x:ident, $w:ident| $step:expr) => {
            pub(super) mod $module {
                use std::arch::x86_64::*;

                use crate::plain::{Dense, Io};

                /// `R` rows of a layer of `8·V` outputs, `G` rows at a time (`G·V`
                /// accumulator registers).
                #[target_feature(enable = $features)]
                pub(in crate::plain) unsafe fn groups<
                    const R: usize,
                    const G: usize,
                    const V: usize,
                >(
                    layer: &Dense,
                    io: Io<'_>,
                ) {
                    let (input, input_stride, output, output_stride, relu) = io;
                    assert!(
                        layer.outputs == 8 * V
                            && layer.bias.len() == 8 * V
                            && layer.weight.len() == layer.inputs * 8 * V
                            && input.len() >= (R - 1) * input_stride + layer.inputs
                            && output.len() >= (R - 1) * output_stride + 8 * V,
                        "kernel shapes match the layer and the buffers"
                    );
                    let mut r = 0;
                    while r + G <= R {
                        let io = (input, input_stride, &mut *output, output_stride, relu);
                        rows::<G, V>(layer, io, r);
                        r += G;
                    }
                    while r < R {
                        let io = (input, input_stride, &mut *output, output_stride, relu);
                        rows::<1, V>(layer, io, r);
                        r += 1;
                    }
                }

                /// Rows `first..first + G`; bounds were checked by [`groups`].
                #[target_feature(enable = $features)]
                #[inline]
                unsafe fn rows<const G: usize, const V: usize>(
                    layer: &Dense,
                    io: Io<'_>,
                    first: usize,
                ) {
                    let (input, input_stride, output, output_stride, relu) = io;
                    let width = 8 * V;
                    let bias = layer.bias.as_ptr();
                    let mut acc = [[_mm256_setzero_ps(); V]; G];
                    for row in acc.iter_mut() {
                        for (v, a) in row.iter_mut().enumerate() {
                            *a = _mm256_loadu_ps(bias.add(v * 8));
                        }
                    }
                    let x = input.as_ptr().add(first * input_stride);
                    let mut w = layer.weight.as_ptr();
                    for i in 0..layer.inputs {
                        let mut wv = [_mm256_setzero_ps(); V];
                        for (v, slot) in wv.iter_mut().enumerate() {
                            *slot = _mm256_loadu_ps(w.add(v * 8));
                        }
                        for (g, row) in acc.iter_mut().enumerate() {
                            let $x = _mm256_set1_ps(*x.add(g * input_stride + i));
                            for (a, &$w) in row.iter_mut().zip(&wv) {
                                let $acc = *a;
                                *a = $step;
                            }
                        }
                        w = w.add(width);
                    }
                    let zero = _mm256_setzero_ps();
                    let out = output.as_mut_ptr().add(first * output_stride);
                    for (g, row) in acc.iter().enumerate() {
                        for (v, &a) in row.iter().enumerate() {
                            // max(a, 0) returns 0 unless a > 0, exactly like the scalar ReLU.
                            let value = if relu { _mm256_max_ps(a, zero) } else { a };
                            _mm256_storeu_ps(out.add(g * output_stride + v * 8), value);
                        }
                    }
                }
            }
        };
    }

    kernels!(fma, "avx,fma", |acc, x, w| _mm256_fmadd_ps(x, w, acc));
    kernels!(avx, "avx", |acc, x, w| _mm256_add_ps(
        acc,
        _mm256_mul_ps(x, w)
    ));
}

/// `acc + x · w`: fused (one rounding) or unfused (two), the only arithmetic of a layer.
#[inline(always)]
fn step<const FUSED: bool>(acc: f32, x: f32, w: f32) -> f32 {
    if FUSED {
        x.mul_add(w, acc)
    } else {
        acc + x * w
    }
}

/// One output (the last layer): the same arithmetic with one accumulator per row in a
/// register, the `R` rows' chains interleaved so that each step waits less on the last.
#[inline(always)]
fn dense_one<const R: usize, const FUSED: bool>(layer: &Dense, io: Io<'_>) {
    let (input, input_stride, output, output_stride, relu) = io;
    let n = layer.inputs;
    let rows: [&[f32]; R] = std::array::from_fn(|r| &input[r * input_stride..r * input_stride + n]);
    let mut acc = [layer.bias[0]; R];
    for (i, &w) in layer.weight[..n].iter().enumerate() {
        for (a, row) in acc.iter_mut().zip(&rows) {
            *a = step::<FUSED>(*a, row[i], w);
        }
    }
    for (r, a) in acc.into_iter().enumerate() {
        output[r * output_stride] = if relu { relu_scalar(a) } else { a };
    }
}

/// Any width: the same arithmetic with the accumulators in memory.
#[inline(always)]
fn dense_any<const R: usize, const FUSED: bool>(layer: &Dense, io: Io<'_>) {
    let (input, input_stride, output, output_stride, relu) = io;
    let outs = layer.outputs;
    for r in 0..R {
        output[r * output_stride..r * output_stride + outs].copy_from_slice(&layer.bias);
    }
    for (i, wrow) in layer.weight.chunks_exact(outs).enumerate() {
        for r in 0..R {
            let xi = input[r * input_stride + i];
            let h = &mut output[r * output_stride..r * output_stride + outs];
            for (h, &w) in h.iter_mut().zip(wrow) {
                *h = step::<FUSED>(*h, xi, w);
            }
        }
    }
    if relu {
        for r in 0..R {
            for h in &mut output[r * output_stride..r * output_stride + outs] {
                *h = relu_scalar(*h);
            }
        }
    }
}

/// ReLU that gives +0 for −0 and for 0, like the vector `max(x, 0)`.
#[inline(always)]
fn relu_scalar(x: f32) -> f32 {
    if x > 0.0 {
        x
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> PlainNet {
        // 3 → 2 → 1: weights chosen so that ReLU matters.
        PlainNet::new(vec![
            (
                vec![1.0, -1.5, 0.5, 2.0, -0.25, 0.75],
                vec![0.1, -0.2],
                3,
                2,
            ),
            (vec![1.5, -0.5], vec![0.3], 2, 1),
        ])
    }

    /// The network of [`net`] written out in the documented order of operations.
    fn reference(x: &[f32]) -> f32 {
        let h0 = x[2].mul_add(-0.25, x[1].mul_add(0.5, x[0].mul_add(1.0, 0.1f32)));
        let h1 = x[2].mul_add(0.75, x[1].mul_add(2.0, x[0].mul_add(-1.5, -0.2f32)));
        h1.max(0.0).mul_add(-0.5, h0.max(0.0).mul_add(1.5, 0.3f32))
    }

    fn bits(values: &[f32]) -> Vec<u32> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn logits_follow_the_documented_order_of_operations() {
        let rows: Vec<f32> = (0..27).map(|k| (k as f32 * 0.37).sin() * 3.0).collect();
        let mut out = Vec::new();
        net().logits(&rows, &mut out);
        let expected: Vec<f32> = rows.chunks_exact(3).map(reference).collect();
        assert_eq!(bits(&out), bits(&expected));
    }

    #[test]
    fn tiled_rows_and_remainder_rows_give_the_same_bits() {
        // 21 rows: two tiles of 8, one of 4 and a single row.
        let rows: Vec<f32> = (0..3 * 21).map(|k| (k as f32 * 1.7).cos()).collect();
        let mut together = Vec::new();
        net().logits(&rows, &mut together);
        assert_eq!(together.len(), 21);
        for (r, row) in rows.chunks_exact(3).enumerate() {
            let mut alone = Vec::new();
            net().logits(row, &mut alone);
            assert_eq!(alone[0].to_bits(), together[r].to_bits(), "row {r}");
        }
    }

    #[test]
    fn fused_and_unfused_arithmetic_round_differently() {
        // (1 + 2⁻¹²)² = 1 + 2⁻¹¹ + 2⁻²⁴: the last term survives one rounding (fused) and is
        // lost when the product is rounded first. Width 8 runs the vector kernels where
        // the CPU has them.
        let x = 1.0 + 2f32.powi(-12);
        let net = PlainNet::new(vec![
            (vec![x; 8], vec![-(1.0 + 2f32.powi(-11)); 8], 1, 8),
            (vec![1.0; 8], vec![0.0], 8, 1),
        ]);
        let (mut fused, mut unfused) = (Vec::new(), Vec::new());
        net.forward(&[x], 1, Arithmetic::Fused, &mut fused, |v| v);
        net.forward(&[x], 1, Arithmetic::Unfused, &mut unfused, |v| v);
        assert_eq!(fused, [8.0 * 2f32.powi(-24)]);
        assert_eq!(unfused, [0.0]);
    }

    #[test]
    fn contributions_match_a_full_pass_with_the_feature_replaced() {
        let net = net();
        let rows: Vec<f32> = (0..3 * 5).map(|k| (k as f32 * 0.53).sin() * 2.0).collect();
        let baseline = [0.2f32, rows[1], -0.4];
        let mut got = Vec::new();
        net.contributions(&rows, &baseline, &mut got);
        for (r, row) in rows.chunks_exact(3).enumerate() {
            let full = reference(row);
            for j in 0..3 {
                let mut replaced = row.to_vec();
                replaced[j] = baseline[j];
                let expected = if row[j] == baseline[j] {
                    0.0
                } else {
                    full - reference(&replaced)
                };
                let c = got[r * 3 + j];
                assert!(
                    (c - expected).abs() < 1e-5,
                    "row {r} feature {j}: {c} vs {expected}"
                );
            }
        }
        assert_eq!(got[1], 0.0, "row 0 holds the baseline value of feature 1");
    }

    /// Naive forward pass in the documented order, any widths.
    fn naive(layers: &[(Vec<f32>, Vec<f32>, usize, usize)], x: &[f32], fused: bool) -> f32 {
        let mut h = x.to_vec();
        for (l, (w, b, inputs, outputs)) in layers.iter().enumerate() {
            let mut next = b.clone();
            for i in 0..*inputs {
                for o in 0..*outputs {
                    next[o] = if fused {
                        h[i].mul_add(w[i * outputs + o], next[o])
                    } else {
                        next[o] + h[i] * w[i * outputs + o]
                    };
                }
            }
            if l + 1 < layers.len() {
                for v in &mut next {
                    *v = if *v > 0.0 { *v } else { 0.0 };
                }
            }
            h = next;
        }
        h[0]
    }

    fn layers(hidden: [usize; 2], inputs: usize) -> Vec<(Vec<f32>, Vec<f32>, usize, usize)> {
        let dims = [(inputs, hidden[0]), (hidden[0], hidden[1]), (hidden[1], 1)];
        dims.iter()
            .enumerate()
            .map(|(l, &(i, o))| {
                let w = (0..i * o)
                    .map(|k| ((k * 31 + l * 7) % 17) as f32 / 17.0 - 0.45)
                    .collect();
                let b = (0..o).map(|k| (k % 5) as f32 * 0.03 - 0.05).collect();
                (w, b, i, o)
            })
            .collect()
    }

    #[test]
    fn register_blocked_widths_give_the_bits_of_the_naive_loop() {
        for hidden in [[64usize, 8], [32, 16], [16, 8], [24, 5], [8, 64]] {
            let layers = layers(hidden, 7);
            let net = PlainNet::new(layers.clone());
            // 29 rows: tiles of 8, of 4 and single rows.
            let rows: Vec<f32> = (0..7 * 29).map(|k| (k as f32 * 0.77).sin() * 4.0).collect();
            for (arithmetic, fused) in [(Arithmetic::Fused, true), (Arithmetic::Unfused, false)] {
                let mut got = Vec::new();
                net.forward(&rows, 1, arithmetic, &mut got, |v| v);
                let expected: Vec<u32> = rows
                    .chunks_exact(7)
                    .map(|r| naive(&layers, r, fused).to_bits())
                    .collect();
                assert_eq!(bits(&got), expected, "hidden {hidden:?}, {arithmetic:?}");
                // Batches smaller than a tile use a smaller scratch.
                for n in [1usize, 3, 5] {
                    let mut few = Vec::new();
                    net.forward(&rows[..7 * n], 1, arithmetic, &mut few, |v| v);
                    assert_eq!(bits(&few), expected[..n], "{n} rows, hidden {hidden:?}");
                }
            }
        }
    }

    #[test]
    fn the_portable_and_the_vector_kernels_agree_bit_for_bit() {
        // dense_any called from here runs without the CPU features the kernels enable, so
        // its fused steps may come from the software fused multiply-add.
        for outputs in [8usize, 16, 32, 64] {
            let (w, b, inputs, _) = layers([outputs, 1], 11).swap_remove(0);
            let layer = Dense {
                inputs,
                outputs,
                weight: w,
                bias: b,
            };
            let input: Vec<f32> = (0..8 * inputs).map(|k| (k as f32 * 0.31).cos()).collect();
            for relu in [false, true] {
                let mut portable = vec![0.0f32; 8 * outputs];
                dense_any::<8, true>(&layer, (&input, inputs, &mut portable, outputs, relu));
                let mut dispatched = vec![0.0f32; 8 * outputs];
                dense::<8, true>(&layer, (&input, inputs, &mut dispatched, outputs, relu));
                assert_eq!(bits(&dispatched), bits(&portable), "width {outputs}");
                let mut portable = vec![0.0f32; 8 * outputs];
                dense_any::<8, false>(&layer, (&input, inputs, &mut portable, outputs, relu));
                let mut dispatched = vec![0.0f32; 8 * outputs];
                dense::<8, false>(&layer, (&input, inputs, &mut dispatched, outputs, relu));
                assert_eq!(
                    bits(&dispatched),
                    bits(&portable),
                    "width {outputs}, unfused"
                );
            }
        }
    }

    #[test]
    fn small_batches_stay_on_the_calling_thread() {
        assert_eq!(parts(1, 2), 1);
        assert_eq!(parts(PARALLEL_MIN_ROWS - 1, 8), 1);
        assert_eq!(parts(4096, 0), 1);
        assert_eq!(parts(4096, 1), 1);
        assert_eq!(parts(PARALLEL_MIN_ROWS, 2), 2);
        assert_eq!(parts(4096, 2), 2);
        assert_eq!(parts(4096, 64), 4096 / (PARALLEL_MIN_ROWS / 2));
    }

    #[test]
    fn threads_change_no_bit_of_any_row() {
        let layers = layers([32, 16], 42);
        let net = PlainNet::new(layers);
        let rows: Vec<f32> = (0..42 * 3001)
            .map(|k| (k as f32 * 0.113).sin() * 3.0)
            .collect();
        let mut alone = Vec::new();
        net.forward(&rows, 1, Arithmetic::Fused, &mut alone, |v| v * 2.0);
        assert_eq!(alone.len(), 3001);
        for threads in [2usize, 3, 5] {
            let mut shared = vec![7.0];
            net.forward(&rows, threads, Arithmetic::Fused, &mut shared, |v| v * 2.0);
            assert_eq!(shared[0], 7.0, "earlier results are kept");
            assert_eq!(bits(&shared[1..]), bits(&alone), "{threads} threads");
        }
    }
}
