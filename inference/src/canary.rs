//! The canary: a few feature rows with the scores the model gave them when the canary was
//! written, kept in the model's `metadata.json` (field `canary`).
//!
//! Before a model is used, at start-up and at every hot swap ([`crate::Model::load`]), it
//! scores its canary rows again. It is refused when
//!
//! * its scores are **degenerate**: one is not finite, all lie within
//!   [`MIN_CANARY_SPREAD`] of each other, or every one is exactly 0 or 1, although the
//!   expected scores are not (a finite but absurd normalisation constant or weight makes a
//!   network score everything 0, or only 0 and 1, and no other check notices); or
//! * a score differs from the expected one by more than [`CANARY_TOLERANCE`]: the weights or
//!   the metadata are not the ones the canary was written with.
//!
//! Training writes a canary with every model; `riskstream model canary` writes one for a
//! model that has none, from a labelled data set. The rows are chosen from labelled data:
//! for each label (benign, fraud) the [`CANARY_ROWS_PER_LABEL`] rows whose scores are
//! nearest to scores evenly spaced over `[0, 1]` (0, 1/15, …, 1), so the canary holds
//! confident and doubtful rows of both labels, including the mistakes where the data has
//! them. A good model is confident about most rows, and a score near 0 or 1 moves little
//! when a weight changes; rows spread over the whole range make the comparison sensitive.
//! The choice depends only on the rows and the model's scores: the same data and model
//! give the same canary.

use serde::{Deserialize, Serialize};

/// Largest absolute difference between a canary row's score and its expected score.
///
/// On the CPU a row's score is bit-identical across runs and machines (the plain backend),
/// candle's CPU kernels differ from it by under 1e-5, and CUDA agrees with the CPU within
/// 1e-4: every correct way of scoring a model passes, a changed weight or normalisation
/// constant almost never does.
pub const CANARY_TOLERANCE: f32 = 1e-4;

/// Smallest spread (highest score minus lowest) the scores of a canary's rows may have.
/// The rows cover both labels, so a model that tells them apart spreads them over most of
/// `[0, 1]`; one whose scores stay within 0.01 of each other tells nothing apart.
pub const MIN_CANARY_SPREAD: f32 = 0.01;

/// Rows of each label (benign, fraud) a canary is written with, when the data has them.
pub const CANARY_ROWS_PER_LABEL: usize = 16;

/// Fewest rows a canary may have.
pub const MIN_CANARY_ROWS: usize = 8;

/// Most rows a canary may have; a canary is a quick check, not an evaluation.
pub const MAX_CANARY_ROWS: usize = 1024;

/// The canary of a model: feature rows and the scores expected for them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Canary {
    /// The rows, in the model's feature order.
    pub rows: Vec<CanaryRow>,
}

/// One canary row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CanaryRow {
    /// The label of the row in the data it was taken from: 0 benign, 1 fraud. Informational:
    /// the check compares scores, not decisions.
    pub label: u8,
    /// The score the model gave the row when the canary was written.
    pub score: f32,
    /// Raw (un-normalised) feature values, one per feature name of the metadata.
    pub features: Vec<f32>,
}

impl Canary {
    /// Chooses the canary rows from labelled rows (`features` row-major, `n_features` per
    /// row, `labels` 0 or 1) that the model gave `scores`.
    pub(crate) fn choose(
        features: &[f32],
        n_features: usize,
        labels: &[f32],
        scores: &[f32],
    ) -> Result<Canary, String> {
        if n_features == 0
            || features.len() != labels.len() * n_features
            || scores.len() != labels.len()
        {
            return Err(format!(
                "{} feature values, {} labels and {} scores do not describe rows of {n_features} features",
                features.len(),
                labels.len(),
                scores.len()
            ));
        }
        let mut rows = Vec::with_capacity(2 * CANARY_ROWS_PER_LABEL);
        for label in [0u8, 1] {
            let mut ranked: Vec<usize> = (0..labels.len())
                .filter(|&r| labels[r] == f32::from(label))
                .collect();
            ranked.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
            for r in nearest_to_targets(&ranked, scores, CANARY_ROWS_PER_LABEL) {
                rows.push(CanaryRow {
                    label,
                    score: scores[r],
                    features: features[r * n_features..(r + 1) * n_features].to_vec(),
                });
            }
        }
        let canary = Canary { rows };
        canary.check(n_features)?;
        Ok(canary)
    }

    /// Checks the canary itself, as written in the metadata: its size, its rows' lengths and
    /// values, and that its expected scores are not degenerate. The error names the field.
    pub(crate) fn check(&self, n_features: usize) -> Result<(), String> {
        let n = self.rows.len();
        if !(MIN_CANARY_ROWS..=MAX_CANARY_ROWS).contains(&n) {
            return Err(format!(
                "canary.rows has {n} rows; a canary holds {MIN_CANARY_ROWS} to {MAX_CANARY_ROWS}"
            ));
        }
        for (i, row) in self.rows.iter().enumerate() {
            if row.label > 1 {
                return Err(format!(
                    "canary.rows[{i}].label is {}; it must be 0 (benign) or 1 (fraud)",
                    row.label
                ));
            }
            if !(row.score.is_finite() && (0.0..=1.0).contains(&row.score)) {
                return Err(format!(
                    "canary.rows[{i}].score is {}; a score lies in [0, 1]",
                    row.score
                ));
            }
            if row.features.len() != n_features {
                return Err(format!(
                    "canary.rows[{i}].features has {} values but feature_names lists {n_features} features",
                    row.features.len()
                ));
            }
            if let Some(j) = row.features.iter().position(|v| !v.is_finite()) {
                return Err(format!(
                    "canary.rows[{i}].features[{j}] is not finite ({})",
                    row.features[j]
                ));
            }
        }
        let expected = self.expected();
        if let Some(why) = degenerate(&expected) {
            return Err(format!(
                "the canary's expected scores are degenerate: {why}; a canary's rows must be \
                 scored apart by a working model"
            ));
        }
        Ok(())
    }

    /// The canary rows one after the other, row-major, ready to be scored.
    pub(crate) fn feature_rows(&self) -> Vec<f32> {
        self.rows
            .iter()
            .flat_map(|row| row.features.iter().copied())
            .collect()
    }

    /// The expected score of every row.
    pub(crate) fn expected(&self) -> Vec<f32> {
        self.rows.iter().map(|row| row.score).collect()
    }

    /// Compares what a model scored the canary rows with the expected scores; the error says
    /// what was wrong.
    pub(crate) fn verify(&self, scores: &[f32]) -> Result<(), String> {
        let expected = self.expected();
        let (low, high) = range(&expected);
        if let Some(why) = degenerate(scores) {
            return Err(format!(
                "degenerate scores: it {why}; expected spread {low:.4} to {high:.4} \
                 (check norm_mean and norm_std in the metadata and the weights)"
            ));
        }
        let mut worst: Option<(usize, f32)> = None;
        let mut off = 0usize;
        for (i, (&got, &want)) in scores.iter().zip(&expected).enumerate() {
            let difference = (got - want).abs();
            if difference > CANARY_TOLERANCE {
                off += 1;
                if worst.is_none_or(|(_, d)| difference > d) {
                    worst = Some((i, difference));
                }
            }
        }
        match worst {
            None => Ok(()),
            Some((i, _)) => Err(format!(
                "its scores differ from its canary's by more than {CANARY_TOLERANCE:e} on {off} \
                 of {} rows (worst: row {i}, a {} row, scores {:.6} where {:.6} is expected); \
                 the weights or the metadata are not the ones the canary was written with",
                self.rows.len(),
                if self.rows[i].label == 1 {
                    "fraud"
                } else {
                    "benign"
                },
                scores[i],
                expected[i],
            )),
        }
    }
}

/// Why a set of canary scores is degenerate, as the end of a sentence starting "it", or
/// `None` when it is not.
fn degenerate(scores: &[f32]) -> Option<String> {
    if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
        return Some(format!("scores canary row {i} {}", scores[i]));
    }
    let (low, high) = range(scores);
    if low == high {
        return Some(format!("scores every canary row {low:.4}"));
    }
    if high - low < MIN_CANARY_SPREAD {
        return Some(format!(
            "scores every canary row between {low:.4} and {high:.4} (a spread of {:.1e}, \
             under {MIN_CANARY_SPREAD})",
            high - low
        ));
    }
    let zeros = scores.iter().filter(|&&s| s == 0.0).count();
    let ones = scores.iter().filter(|&&s| s == 1.0).count();
    if zeros + ones == scores.len() {
        return Some(format!(
            "scores every canary row exactly 0 or 1 ({zeros} at 0, {ones} at 1)"
        ));
    }
    None
}

/// Lowest and highest of finite scores (0, 0 for none).
fn range(scores: &[f32]) -> (f32, f32) {
    let low = scores.iter().copied().reduce(f32::min).unwrap_or(0.0);
    let high = scores.iter().copied().reduce(f32::max).unwrap_or(0.0);
    (low, high)
}

/// `k` rows of `ranked` (row indices sorted by score, ascending), the one nearest to each
/// of `k` target scores evenly spaced over `[0, 1]` (0 and 1 included), each row at most
/// once, in ascending order of score; all of them when there are no more than `k`.
fn nearest_to_targets(ranked: &[usize], scores: &[f32], k: usize) -> Vec<usize> {
    if ranked.len() <= k || k < 2 {
        return ranked[..ranked.len().min(k)].to_vec();
    }
    let mut taken = vec![false; ranked.len()];
    for t in 0..k {
        let target = t as f32 / (k - 1) as f32;
        let distance = |p: usize| (scores[ranked[p]] - target).abs();
        let at = ranked.partition_point(|&r| scores[r] < target);
        // The nearest free position below and at-or-above the target; fewer than k are
        // taken, so at least one side has one.
        let below = (0..at).rev().find(|&p| !taken[p]);
        let above = (at..ranked.len()).find(|&p| !taken[p]);
        let pick = match (below, above) {
            (Some(b), Some(a)) => {
                if distance(b) <= distance(a) {
                    b
                } else {
                    a
                }
            }
            (Some(p), None) | (None, Some(p)) => p,
            (None, None) => break,
        };
        taken[pick] = true;
    }
    taken
        .iter()
        .zip(ranked)
        .filter_map(|(&t, &r)| t.then_some(r))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 200 rows of 2 features, every tenth one fraud; the score rises with feature 0.
    fn labelled() -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut features = Vec::new();
        let mut labels = Vec::new();
        let mut scores = Vec::new();
        for r in 0..200 {
            let fraud = r % 10 == 0;
            let x = r as f32 / 200.0;
            features.extend([x, 1.0 - x]);
            labels.push(if fraud { 1.0 } else { 0.0 });
            scores.push(if fraud { 0.5 + x / 2.0 } else { x / 2.0 });
        }
        (features, labels, scores)
    }

    #[test]
    fn a_canary_takes_rows_of_both_labels_across_their_scores() {
        let (features, labels, scores) = labelled();
        let canary = Canary::choose(&features, 2, &labels, &scores).expect("a canary");
        assert_eq!(canary.rows.len(), 2 * CANARY_ROWS_PER_LABEL);
        let fraud: Vec<&CanaryRow> = canary.rows.iter().filter(|r| r.label == 1).collect();
        assert_eq!(fraud.len(), CANARY_ROWS_PER_LABEL);
        let benign_scores: Vec<f32> = canary
            .rows
            .iter()
            .filter(|r| r.label == 0)
            .map(|r| r.score)
            .collect();
        assert_eq!(benign_scores.first(), Some(&(1.0 / 400.0)), "lowest benign");
        assert_eq!(
            benign_scores.last(),
            Some(&(199.0 / 400.0)),
            "highest benign"
        );
        assert!(
            benign_scores.windows(2).all(|w| w[0] < w[1]),
            "no row twice"
        );
        for row in &canary.rows {
            let r = (row.features[0] * 200.0).round() as usize;
            assert_eq!(
                row.features,
                features[2 * r..2 * r + 2],
                "row {r} copied whole"
            );
            assert_eq!(row.score, scores[r]);
        }
        assert_eq!(
            Canary::choose(&features, 2, &labels, &scores).expect("a canary"),
            canary,
            "the same rows and scores give the same canary"
        );
    }

    #[test]
    fn scores_within_the_tolerance_pass_and_beyond_it_are_refused_naming_the_worst_row() {
        let (features, labels, scores) = labelled();
        let canary = Canary::choose(&features, 2, &labels, &scores).expect("a canary");
        let mut close = canary.expected();
        close[3] += CANARY_TOLERANCE * 0.5;
        assert_eq!(canary.verify(&close), Ok(()));
        let mut off = canary.expected();
        off[3] += 0.001;
        off[20] -= 0.05;
        let why = canary.verify(&off).expect_err("refused");
        assert!(why.contains("on 2 of 32 rows"), "{why}");
        assert!(why.contains("worst: row 20, a fraud row"), "{why}");
    }

    #[test]
    fn constant_nearly_constant_saturated_and_non_finite_scores_are_degenerate() {
        let (features, labels, scores) = labelled();
        let canary = Canary::choose(&features, 2, &labels, &scores).expect("a canary");
        let n = canary.rows.len();
        let why = canary.verify(&vec![0.0; n]).expect_err("all zero");
        assert!(
            why.contains("scores every canary row 0.0000; expected spread 0.0025 to 0.9750"),
            "{why}"
        );
        let nearly: Vec<f32> = (0..n).map(|i| 0.5 + i as f32 * 1e-4).collect();
        let why = canary.verify(&nearly).expect_err("nearly constant");
        assert!(why.contains("between 0.5000 and 0.5031"), "{why}");
        let saturated: Vec<f32> = (0..n).map(|i| (i % 2) as f32).collect();
        let why = canary.verify(&saturated).expect_err("only 0 and 1");
        assert!(why.contains("exactly 0 or 1 (16 at 0, 16 at 1)"), "{why}");
        let mut nan = canary.expected();
        nan[7] = f32::NAN;
        let why = canary.verify(&nan).expect_err("NaN");
        assert!(why.contains("scores canary row 7 NaN"), "{why}");
    }

    #[test]
    fn a_canary_is_not_written_for_scores_that_are_all_alike() {
        let (features, labels, _) = labelled();
        let flat = vec![0.25; labels.len()];
        let why = Canary::choose(&features, 2, &labels, &flat).expect_err("degenerate");
        assert!(why.contains("scores every canary row 0.2500"), "{why}");
    }

    #[test]
    fn a_canary_with_too_few_rows_or_rows_of_another_length_is_invalid() {
        let (features, labels, scores) = labelled();
        let mut canary = Canary::choose(&features, 2, &labels, &scores).expect("a canary");
        assert!(canary
            .check(3)
            .is_err_and(|why| why.contains("canary.rows[0].features")));
        canary.rows[5].features[1] = f32::INFINITY;
        assert!(canary
            .check(2)
            .is_err_and(|why| why.contains("canary.rows[5].features[1] is not finite")));
        canary.rows.truncate(MIN_CANARY_ROWS - 1);
        assert!(canary.check(2).is_err_and(|why| why.contains("7 rows")));
    }
}
