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
//! `i` in order `h[o] = h[o] + x[i] * w[i][o]` (a multiply then an add, never a fused
//! multiply-add: Rust does not contract them), then ReLU on hidden layers. For speed, rows
//! go through the network four at a time and, on x86-64 CPUs with AVX, layers whose width
//! is a multiple of 8 run in kernels that keep the accumulators of a group of rows in vector
//! registers while the weights stream past. Lane for lane those compute the same multiply,
//! add and ReLU as the portable loop, so neither the grouping nor the CPU changes a bit.
//! Fused multiply-add would be about twice as fast at large batches but is left out on
//! purpose: machines without it would need a slow software fallback to score the same bits.

/// Rows that share one pass over the weights.
const TILE: usize = 4;

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

    /// Appends one logit per row of `rows` (row-major, `inputs` of layer 0 per row).
    pub(crate) fn logits(&self, rows: &[f32], out: &mut Vec<f32>) {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx") {
                // SAFETY: the CPU supports AVX, checked just above.
                unsafe { self.logits_avx(rows, out) };
                return;
            }
        }
        self.logits_from(0, rows, self.layers[0].inputs, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    unsafe fn logits_avx(&self, rows: &[f32], out: &mut Vec<f32>) {
        self.logits_from(0, rows, self.layers[0].inputs, out);
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
            if std::arch::is_x86_feature_detected!("avx") {
                // SAFETY: the CPU supports AVX, checked just above.
                unsafe { self.contributions_avx(rows, baseline, out) };
                return;
            }
        }
        self.contributions_portable(rows, baseline, out);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx")]
    unsafe fn contributions_avx(&self, rows: &[f32], baseline: &[f32], out: &mut Vec<f32>) {
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
        let mut logits = Vec::with_capacity(n + 1);
        for row in rows.chunks_exact(n) {
            dense::<1>(first, row, n, &mut variants[..width], width, false);
            let (z0, shifted) = variants.split_at_mut(width);
            for (j, (&x, &base)) in row.iter().zip(baseline).enumerate() {
                let delta = base - x;
                let wrow = &first.weight[j * width..(j + 1) * width];
                let target = &mut shifted[j * width..(j + 1) * width];
                for ((s, &z), &w) in target.iter_mut().zip(z0.iter()).zip(wrow) {
                    *s = z + delta * w;
                }
            }
            logits.clear();
            if hidden {
                for h in variants.iter_mut() {
                    *h = relu_scalar(*h);
                }
                self.logits_from(1, &variants, width, &mut logits);
            } else {
                logits.extend_from_slice(&variants);
            }
            let full = logits[0];
            for (j, (&x, &base)) in row.iter().zip(baseline).enumerate() {
                out.push(if x == base { 0.0 } else { full - logits[j + 1] });
            }
        }
    }

    /// Runs `rows` (stride `stride`) through layers `start..` and appends one logit each.
    #[inline(always)]
    fn logits_from(&self, start: usize, rows: &[f32], stride: usize, out: &mut Vec<f32>) {
        let w = self.widest;
        let mut a = vec![0.0f32; TILE * w];
        let mut b = vec![0.0f32; TILE * w];
        let mut tiles = rows.chunks_exact(TILE * stride);
        for tile in &mut tiles {
            self.tile::<TILE>(start, tile, stride, &mut a, &mut b, out);
        }
        for row in tiles.remainder().chunks_exact(stride) {
            self.tile::<1>(start, row, stride, &mut a, &mut b, out);
        }
    }

    /// Forward pass of `R` rows through layers `start..`; the arithmetic of each row is
    /// independent of `R`.
    #[inline(always)]
    fn tile<const R: usize>(
        &self,
        start: usize,
        x: &[f32],
        stride: usize,
        a: &mut [f32],
        b: &mut [f32],
        out: &mut Vec<f32>,
    ) {
        let last = self.layers.len() - 1;
        let width = self.widest;
        let mut in_a = None;
        for (l, layer) in self.layers.iter().enumerate().skip(start) {
            let relu = l < last;
            match in_a {
                None => dense::<R>(layer, x, stride, a, width, relu),
                Some(true) => dense::<R>(layer, a, width, b, width, relu),
                Some(false) => dense::<R>(layer, b, width, a, width, relu),
            }
            // Where this layer's output now lives.
            in_a = Some(in_a != Some(true));
        }
        let result: &[f32] = if in_a == Some(false) { b } else { a };
        for r in 0..R {
            out.push(result[r * width]);
        }
    }
}

/// `output[r][..] = relu?(bias + Σ_i input[r][i] · weight[i][..])` for `R` rows, with
/// register-resident accumulators for the common widths.
#[inline(always)]
fn dense<const R: usize>(
    layer: &Dense,
    input: &[f32],
    input_stride: usize,
    output: &mut [f32],
    output_stride: usize,
    relu: bool,
) {
    let io = (input, input_stride, output, output_stride, relu);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU supports AVX, checked just above; shapes are checked inside.
            unsafe {
                match layer.outputs {
                    64 => return avx::groups::<R, 1, 8>(layer, io),
                    32 => return avx::groups::<R, 2, 4>(layer, io),
                    16 => return avx::groups::<R, 4, 2>(layer, io),
                    8 => return avx::groups::<R, 4, 1>(layer, io),
                    _ => {}
                }
            }
        }
    }
    dense_any::<R>(layer, io)
}

/// Input rows, their stride, output rows, their stride, whether to apply ReLU.
type Io<'a> = (&'a [f32], usize, &'a mut [f32], usize, bool);

/// AVX kernels for layers whose width is a multiple of 8: the accumulators of a group of
/// rows live in vector registers while the weights stream past. Lane for lane they perform
/// the same multiply, then add, then ReLU as [`dense_any`], so the bits are the same.
#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    use super::{Dense, Io};

    /// `R` rows of a layer of `8·V` outputs, `G` rows at a time (`G·V` accumulator
    /// registers).
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn groups<const R: usize, const G: usize, const V: usize>(
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
            rows::<G, V>(layer, input, input_stride, output, output_stride, relu, r);
            r += G;
        }
        while r < R {
            rows::<1, V>(layer, input, input_stride, output, output_stride, relu, r);
            r += 1;
        }
    }

    /// Rows `first..first + G`; bounds were checked by [`groups`].
    #[target_feature(enable = "avx")]
    #[inline]
    unsafe fn rows<const G: usize, const V: usize>(
        layer: &Dense,
        input: &[f32],
        input_stride: usize,
        output: &mut [f32],
        output_stride: usize,
        relu: bool,
        first: usize,
    ) {
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
                let xi = _mm256_set1_ps(*x.add(g * input_stride + i));
                for (a, &wv) in row.iter_mut().zip(&wv) {
                    *a = _mm256_add_ps(*a, _mm256_mul_ps(xi, wv));
                }
            }
            w = w.add(width);
        }
        let zero = _mm256_setzero_ps();
        let out = output.as_mut_ptr().add(first * output_stride);
        for (g, row) in acc.iter().enumerate() {
            for (v, &a) in row.iter().enumerate() {
                // max(a, 0) returns 0 unless a > 0, exactly like the scalar ReLU below.
                let value = if relu { _mm256_max_ps(a, zero) } else { a };
                _mm256_storeu_ps(out.add(g * output_stride + v * 8), value);
            }
        }
    }
}

/// Any width: the same arithmetic with the accumulators in memory.
#[inline(always)]
fn dense_any<const R: usize>(layer: &Dense, io: Io<'_>) {
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
                *h += xi * w;
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

    fn reference(x: &[f32]) -> f32 {
        let h0 = (0.1f32 + x[0] * 1.0 + x[1] * 0.5 + x[2] * -0.25).max(0.0);
        let h1 = (-0.2f32 + x[0] * -1.5 + x[1] * 2.0 + x[2] * 0.75).max(0.0);
        0.3 + h0 * 1.5 + h1 * -0.5
    }

    #[test]
    fn logits_follow_the_documented_order_of_operations() {
        let rows: Vec<f32> = (0..27).map(|k| (k as f32 * 0.37).sin() * 3.0).collect();
        let mut out = Vec::new();
        net().logits(&rows, &mut out);
        let expected: Vec<f32> = rows.chunks_exact(3).map(reference).collect();
        assert_eq!(out, expected);
    }

    #[test]
    fn tiled_rows_and_remainder_rows_give_the_same_bits() {
        let rows: Vec<f32> = (0..3 * 9).map(|k| (k as f32 * 1.7).cos()).collect();
        let mut together = Vec::new();
        net().logits(&rows, &mut together);
        for (r, row) in rows.chunks_exact(3).enumerate() {
            let mut alone = Vec::new();
            net().logits(row, &mut alone);
            assert_eq!(alone[0].to_bits(), together[r].to_bits(), "row {r}");
        }
    }

    #[test]
    fn the_portable_and_the_dispatched_code_agree_bit_for_bit() {
        let rows: Vec<f32> = (0..3 * 13).map(|k| (k as f32 * 0.91).sin() * 7.0).collect();
        let (mut fast, mut portable) = (Vec::new(), Vec::new());
        net().logits(&rows, &mut fast);
        net().logits_from(0, &rows, 3, &mut portable);
        assert_eq!(fast, portable);
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
    fn naive(layers: &[(Vec<f32>, Vec<f32>, usize, usize)], x: &[f32]) -> f32 {
        let mut h = x.to_vec();
        for (l, (w, b, inputs, outputs)) in layers.iter().enumerate() {
            let mut next = b.clone();
            for i in 0..*inputs {
                for o in 0..*outputs {
                    next[o] += h[i] * w[i * outputs + o];
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

    #[test]
    fn register_blocked_widths_give_the_bits_of_the_naive_loop() {
        for hidden in [[64usize, 8], [32, 16], [16, 8], [24, 5]] {
            let dims = [(7, hidden[0]), (hidden[0], hidden[1]), (hidden[1], 1)];
            let layers: Vec<_> = dims
                .iter()
                .enumerate()
                .map(|(l, &(i, o))| {
                    let w = (0..i * o)
                        .map(|k| ((k * 31 + l * 7) % 17) as f32 / 17.0 - 0.45)
                        .collect();
                    let b = (0..o).map(|k| (k % 5) as f32 * 0.03 - 0.05).collect();
                    (w, b, i, o)
                })
                .collect();
            let net = PlainNet::new(layers.clone());
            let rows: Vec<f32> = (0..7 * 11).map(|k| (k as f32 * 0.77).sin() * 4.0).collect();
            let mut got = Vec::new();
            net.logits(&rows, &mut got);
            let expected: Vec<u32> = rows
                .chunks_exact(7)
                .map(|r| naive(&layers, r).to_bits())
                .collect();
            assert_eq!(
                got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                expected,
                "hidden {hidden:?}"
            );
        }
    }
}
