//! Evaluation of scores against labels, and the choice of decision thresholds.
//!
//! Conventions used throughout: a row is *flagged* at threshold `t` when `score >= t`; a row
//! is positive when its label is at least 0.5. Precision with nothing flagged and recall with
//! no positives are reported as 0. Scores are expected to be finite; they are ordered with
//! `f32::total_cmp`, so a NaN cannot panic but sorts above every number.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metadata::Thresholds;

/// Precision and recall when everything scoring at or above `threshold` is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrecisionRecall {
    /// The cut-off.
    pub threshold: f32,
    /// Rows scoring at or above the cut-off.
    pub flagged: usize,
    /// Share of flagged rows that are positive (0 when nothing is flagged).
    pub precision: f64,
    /// Share of positive rows that are flagged (0 when there are no positives).
    pub recall: f64,
}

/// How well scores separate positives from negatives, overall and at the two thresholds.
///
/// `review` counts every row at or above the review threshold, blocked rows included, so its
/// recall is the share of fraud that a human or the block rule sees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Rows evaluated.
    pub rows: usize,
    /// Positive rows among them.
    pub positives: usize,
    /// Area under the ROC curve, exact, with tied scores counted as half a win; `None` when
    /// one class is absent.
    pub roc_auc: Option<f64>,
    /// Average precision (step-wise area under the precision–recall curve, ties grouped);
    /// `None` without positives.
    pub pr_auc: Option<f64>,
    /// At the review threshold.
    pub review: PrecisionRecall,
    /// At the block threshold.
    pub block: PrecisionRecall,
}

/// The thresholds chosen on a validation set and whether their targets could be met.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThresholdChoice {
    /// The chosen pair; always satisfies `0 < review < block < 1`.
    pub thresholds: Thresholds,
    /// False when no threshold reached the block precision target (the fallback was used).
    pub block_target_met: bool,
    /// False when no threshold below `block` kept the review recall target.
    pub review_target_met: bool,
}

/// Lowest threshold a chosen pair may hold; keeps `review` strictly positive.
const MIN_THRESHOLD: f32 = 1e-6;

/// Highest threshold a chosen pair may hold; keeps `block` strictly below 1 even when the
/// best validation scores saturate at exactly 1.0.
const MAX_THRESHOLD: f32 = 1.0 - 1e-6;

/// Evaluates `scores` against `labels` at the given thresholds.
///
/// # Panics
///
/// When `scores` and `labels` differ in length: that is a caller bug, not a data problem.
pub fn evaluate(scores: &[f32], labels: &[f32], thresholds: Thresholds) -> Metrics {
    let curve = Curve::new(scores, labels);
    Metrics {
        rows: scores.len(),
        positives: curve.positives,
        roc_auc: curve.roc_auc(),
        pr_auc: curve.average_precision(),
        review: at_threshold(scores, labels, thresholds.review),
        block: at_threshold(scores, labels, thresholds.block),
    }
}

/// [`evaluate`] per group tag, for example per fraud pattern of a synthetic dataset.
///
/// # Panics
///
/// When `scores`, `labels` and `groups` differ in length.
pub fn evaluate_by_group(
    scores: &[f32],
    labels: &[f32],
    groups: &[u8],
    thresholds: Thresholds,
) -> BTreeMap<u8, Metrics> {
    assert!(
        scores.len() == labels.len() && scores.len() == groups.len(),
        "evaluate_by_group needs one label and one group tag per score"
    );
    let mut split: BTreeMap<u8, (Vec<f32>, Vec<f32>)> = BTreeMap::new();
    for ((&score, &label), &group) in scores.iter().zip(labels).zip(groups) {
        let (s, l) = split.entry(group).or_default();
        s.push(score);
        l.push(label);
    }
    split
        .into_iter()
        .map(|(group, (s, l))| (group, evaluate(&s, &l, thresholds)))
        .collect()
}

/// The lowest threshold whose precision reaches `precision`, and the recall there.
///
/// Comparing two models by this recall compares them at equal precision. When no threshold
/// reaches the precision (or there are no positives) the answer is `(f32::INFINITY, 0.0)`:
/// flag nothing, catch nothing.
///
/// # Panics
///
/// When `scores` and `labels` differ in length.
pub fn recall_at_precision(scores: &[f32], labels: &[f32], precision: f64) -> (f32, f64) {
    let curve = Curve::new(scores, labels);
    match curve.lowest_with_precision(precision) {
        Some(point) => (point.threshold, curve.recall(point)),
        None => (f32::INFINITY, 0.0),
    }
}

/// Recall at one precision, overall and per group: how two models are compared "at equal
/// precision" (for example the model with and without graph features).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AtPrecision {
    /// The precision asked for.
    pub precision: f64,
    /// The lowest threshold whose overall precision reaches it (`inf` when none does).
    pub threshold: f32,
    /// Overall ROC AUC.
    pub roc_auc: Option<f64>,
    /// Overall recall at `threshold`.
    pub recall: f64,
    /// Per group tag that has positives: its positives, their recall at the overall
    /// `threshold`, and the ROC AUC of the group's positives against all negatives.
    pub by_group: BTreeMap<u8, GroupAtPrecision>,
}

/// One group's share of an [`AtPrecision`] comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GroupAtPrecision {
    /// Positive rows of the group.
    pub positives: usize,
    /// Share of them scoring at or above the overall threshold.
    pub recall: f64,
    /// ROC AUC of the group's positives against every negative row.
    pub roc_auc: Option<f64>,
}

/// [`recall_at_precision`] overall, then the recall of each group's positives at that same
/// threshold. Per-group precision is not meaningful when a group holds only positives (as
/// fraud patterns do), so the threshold is the overall one and groups differ only in recall.
///
/// # Panics
///
/// When `scores`, `labels` and `groups` differ in length.
pub fn at_precision_by_group(
    scores: &[f32],
    labels: &[f32],
    groups: &[u8],
    precision: f64,
) -> AtPrecision {
    assert!(
        scores.len() == labels.len() && scores.len() == groups.len(),
        "at_precision_by_group needs one label and one group tag per score"
    );
    let curve = Curve::new(scores, labels);
    let (threshold, recall) = match curve.lowest_with_precision(precision) {
        Some(point) => (point.threshold, curve.recall(point)),
        None => (f32::INFINITY, 0.0),
    };
    let negatives: Vec<f32> = scores
        .iter()
        .zip(labels)
        .filter(|(_, &l)| !is_positive(l))
        .map(|(&s, _)| s)
        .collect();
    let mut positives_by_group: BTreeMap<u8, Vec<f32>> = BTreeMap::new();
    for ((&score, &label), &group) in scores.iter().zip(labels).zip(groups) {
        if is_positive(label) {
            positives_by_group.entry(group).or_default().push(score);
        }
    }
    let by_group = positives_by_group
        .into_iter()
        .map(|(group, positives)| {
            let caught = positives
                .iter()
                .filter(|s| s.total_cmp(&threshold) != Ordering::Less)
                .count();
            let mut s = positives.clone();
            s.extend_from_slice(&negatives);
            let mut l = vec![1.0f32; positives.len()];
            l.resize(s.len(), 0.0);
            let roc_auc = Curve::new(&s, &l).roc_auc();
            (
                group,
                GroupAtPrecision {
                    positives: positives.len(),
                    recall: ratio(caught, positives.len()),
                    roc_auc,
                },
            )
        })
        .collect();
    AtPrecision {
        precision,
        threshold,
        roc_auc: curve.roc_auc(),
        recall,
        by_group,
    }
}

/// Chooses decision thresholds on held-out scores.
///
/// * `block` is the lowest threshold whose precision is at least `target_block_precision`
///   (the most fraud blocked at that precision). If none reaches it, the threshold with the
///   highest precision is used (the lowest such on ties) and `block_target_met` is false.
/// * `review` is the highest threshold strictly below `block` whose recall is at least
///   `target_review_recall` (the fewest reviews that still see that share of fraud). If no
///   observed score lies below `block`, `review` is `block / 2` and `review_target_met` is
///   false.
/// * Both are clamped to `[1e-6, 1 - 1e-6]` so that the pair is always valid.
///
/// Candidate thresholds are the observed scores.
///
/// # Panics
///
/// When `scores` and `labels` differ in length.
pub fn choose_thresholds(
    scores: &[f32],
    labels: &[f32],
    target_block_precision: f64,
    target_review_recall: f64,
) -> ThresholdChoice {
    let curve = Curve::new(scores, labels);
    let (block, block_target_met) = match curve.lowest_with_precision(target_block_precision) {
        Some(point) => (point.threshold, true),
        None => (curve.most_precise().map_or(0.5, |p| p.threshold), false),
    };
    let block = block.clamp(2.0 * MIN_THRESHOLD, MAX_THRESHOLD);

    // Recall only falls as the threshold rises, so the last qualifying point on the way up
    // is the highest one.
    let review_point = curve
        .points
        .iter()
        .rev()
        .take_while(|p| p.threshold < block)
        .filter(|p| curve.recall(p) >= target_review_recall)
        .last();
    let (review, review_target_met) = match review_point {
        Some(point) => (point.threshold.max(MIN_THRESHOLD), true),
        None => (block / 2.0, false),
    };
    let review = if review < block { review } else { block / 2.0 };
    ThresholdChoice {
        thresholds: Thresholds { review, block },
        block_target_met,
        review_target_met,
    }
}

fn is_positive(label: f32) -> bool {
    label >= 0.5
}

fn at_threshold(scores: &[f32], labels: &[f32], threshold: f32) -> PrecisionRecall {
    let mut flagged = 0usize;
    let mut true_positives = 0usize;
    let mut positives = 0usize;
    for (&score, &label) in scores.iter().zip(labels) {
        let positive = is_positive(label);
        positives += usize::from(positive);
        if score.total_cmp(&threshold) != Ordering::Less {
            flagged += 1;
            true_positives += usize::from(positive);
        }
    }
    PrecisionRecall {
        threshold,
        flagged,
        precision: ratio(true_positives, flagged),
        recall: ratio(true_positives, positives),
    }
}

fn ratio(numerator: usize, denominator: usize) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

/// One distinct score and the cumulative counts of rows scoring at or above it.
#[derive(Debug, Clone, Copy)]
struct Point {
    threshold: f32,
    true_positives: usize,
    false_positives: usize,
}

impl Point {
    fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }
}

/// The full precision/recall/ROC curve, one point per distinct score, highest score first.
struct Curve {
    positives: usize,
    negatives: usize,
    points: Vec<Point>,
}

impl Curve {
    fn new(scores: &[f32], labels: &[f32]) -> Curve {
        assert_eq!(
            scores.len(),
            labels.len(),
            "evaluation needs one label per score"
        );
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let mut points: Vec<Point> = Vec::new();
        let (mut tp, mut fp) = (0usize, 0usize);
        for (k, &i) in order.iter().enumerate() {
            if is_positive(labels[i]) {
                tp += 1;
            } else {
                fp += 1;
            }
            let group_ends = order
                .get(k + 1)
                .is_none_or(|&next| scores[next].total_cmp(&scores[i]) != Ordering::Equal);
            if group_ends {
                points.push(Point {
                    threshold: scores[i],
                    true_positives: tp,
                    false_positives: fp,
                });
            }
        }
        Curve {
            positives: tp,
            negatives: fp,
            points,
        }
    }

    fn recall(&self, point: &Point) -> f64 {
        ratio(point.true_positives, self.positives)
    }

    /// Trapezoids over the ROC steps: a tied group of positives and negatives contributes a
    /// diagonal, which is exactly the half-credit of the Mann–Whitney statistic. Counts stay
    /// integral until the final division, so the result is exact up to one rounding.
    fn roc_auc(&self) -> Option<f64> {
        if self.positives == 0 || self.negatives == 0 {
            return None;
        }
        let mut twice_area = 0u128;
        let (mut prev_tp, mut prev_fp) = (0usize, 0usize);
        for p in &self.points {
            let d_fp = (p.false_positives - prev_fp) as u128;
            twice_area += d_fp * (p.true_positives + prev_tp) as u128;
            prev_tp = p.true_positives;
            prev_fp = p.false_positives;
        }
        Some(twice_area as f64 / (2.0 * self.positives as f64 * self.negatives as f64))
    }

    fn average_precision(&self) -> Option<f64> {
        if self.positives == 0 {
            return None;
        }
        let mut sum = 0.0;
        let mut prev_tp = 0usize;
        for p in &self.points {
            sum += (p.true_positives - prev_tp) as f64 * p.precision();
            prev_tp = p.true_positives;
        }
        Some(sum / self.positives as f64)
    }

    fn lowest_with_precision(&self, precision: f64) -> Option<&Point> {
        if self.positives == 0 {
            return None;
        }
        self.points
            .iter()
            .rev()
            .find(|p| p.true_positives > 0 && p.precision() >= precision)
    }

    fn most_precise(&self) -> Option<&Point> {
        self.points
            .iter()
            .rev()
            .fold(None, |best: Option<&Point>, p| match best {
                Some(b) if b.precision() >= p.precision() => Some(b),
                _ => Some(p),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EPS: f64 = 1e-12;

    fn thresholds(review: f32, block: f32) -> Thresholds {
        Thresholds { review, block }
    }

    #[test]
    fn perfect_separation_gives_auc_one_and_full_precision() {
        let scores = [0.1, 0.2, 0.8, 0.9];
        let labels = [0.0, 0.0, 1.0, 1.0];
        let m = evaluate(&scores, &labels, thresholds(0.5, 0.85));
        assert_eq!(m.roc_auc, Some(1.0));
        assert_eq!(m.pr_auc, Some(1.0));
        assert_eq!(
            (m.review.flagged, m.review.precision, m.review.recall),
            (2, 1.0, 1.0)
        );
        assert_eq!(
            (m.block.flagged, m.block.precision, m.block.recall),
            (1, 1.0, 0.5)
        );
    }

    #[test]
    fn auc_counts_tied_pairs_as_half() {
        // Pairs (positive, negative): (0.5, 0.5) tie = 0.5, (0.5, 0.2) win, (0.9, 0.5) win,
        // (0.9, 0.2) win: 3.5 of 4.
        let scores = [0.5, 0.9, 0.5, 0.2];
        let labels = [1.0, 1.0, 0.0, 0.0];
        let m = evaluate(&scores, &labels, thresholds(0.3, 0.6));
        assert!((m.roc_auc.unwrap_or(0.0) - 0.875).abs() < EPS, "{m:?}");
    }

    #[test]
    fn all_scores_tied_gives_auc_one_half() {
        let m = evaluate(
            &[0.4; 6],
            &[1.0, 0.0, 0.0, 1.0, 0.0, 0.0],
            thresholds(0.3, 0.6),
        );
        assert_eq!(m.roc_auc, Some(0.5));
        // One tied group: average precision equals the prevalence.
        assert!((m.pr_auc.unwrap_or(0.0) - 2.0 / 6.0).abs() < EPS);
    }

    #[test]
    fn inverted_scores_give_auc_zero() {
        let m = evaluate(&[0.9, 0.8, 0.1], &[0.0, 0.0, 1.0], thresholds(0.3, 0.6));
        assert_eq!(m.roc_auc, Some(0.0));
    }

    #[test]
    fn precision_and_recall_at_a_threshold_count_ties_as_flagged() {
        // At 0.5: flagged 0.5, 0.5, 0.7, 0.9 -> 2 positives of 4 flagged, 2 of 3 positives.
        let scores = [0.1, 0.5, 0.5, 0.7, 0.9, 0.3];
        let labels = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0];
        let m = evaluate(&scores, &labels, thresholds(0.5, 0.8));
        assert_eq!(m.review.flagged, 4);
        assert!((m.review.precision - 0.5).abs() < EPS);
        assert!((m.review.recall - 2.0 / 3.0).abs() < EPS);
        assert_eq!((m.block.flagged, m.block.precision), (1, 1.0));
        assert!((m.block.recall - 1.0 / 3.0).abs() < EPS);
    }

    #[test]
    fn average_precision_matches_a_hand_computed_curve() {
        // Descending: 0.9 (+) P=1 R=1/2; 0.8 (-); 0.7 (+) P=2/3 R=1. AP = 1/2*1 + 1/2*2/3.
        let m = evaluate(&[0.9, 0.8, 0.7], &[1.0, 0.0, 1.0], thresholds(0.3, 0.6));
        assert!(
            (m.pr_auc.unwrap_or(0.0) - (0.5 + 1.0 / 3.0)).abs() < EPS,
            "{m:?}"
        );
    }

    #[test]
    fn one_class_only_leaves_auc_undefined_and_precision_zero_when_nothing_flagged() {
        let m = evaluate(&[0.1, 0.2], &[0.0, 0.0], thresholds(0.5, 0.8));
        assert_eq!((m.roc_auc, m.pr_auc), (None, None));
        assert_eq!(
            (m.review.flagged, m.review.precision, m.review.recall),
            (0, 0.0, 0.0)
        );
    }

    #[test]
    fn recall_at_precision_takes_the_lowest_threshold_reaching_it() {
        let scores = [0.95, 0.9, 0.8, 0.7, 0.6, 0.2];
        let labels = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0];
        // Precision at 0.7 is 3/4, at 0.6 is 3/5, at 0.9 is 1.
        assert_eq!(recall_at_precision(&scores, &labels, 0.75), (0.7, 0.75));
        assert_eq!(recall_at_precision(&scores, &labels, 1.0), (0.9, 0.5));
        assert_eq!(
            recall_at_precision(&[0.9, 0.1], &[0.0, 1.0], 0.9),
            (f32::INFINITY, 0.0)
        );
    }

    #[test]
    fn chosen_block_reaches_the_precision_target_and_review_keeps_recall_below_it() {
        let scores = [0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.2];
        let labels = [1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0];
        let choice = choose_thresholds(&scores, &labels, 0.75, 1.0);
        assert_eq!(choice.thresholds, thresholds(0.5, 0.7));
        assert!(choice.block_target_met && choice.review_target_met);
        let m = evaluate(&scores, &labels, choice.thresholds);
        assert!(m.block.precision >= 0.75);
        assert_eq!(m.review.recall, 1.0);
    }

    #[test]
    fn review_stays_strictly_below_block_even_when_block_already_has_the_recall() {
        let scores = [0.9, 0.8, 0.3, 0.1];
        let labels = [1.0, 1.0, 0.0, 0.0];
        let choice = choose_thresholds(&scores, &labels, 0.9, 0.9);
        assert_eq!(choice.thresholds, thresholds(0.3, 0.8));
    }

    #[test]
    fn unreachable_targets_fall_back_to_a_valid_pair() {
        // Best precision is 1/2 at the top score; nothing lies below the lowest score.
        let choice = choose_thresholds(&[1.0, 1.0], &[1.0, 0.0], 0.9, 0.9);
        assert!(!choice.block_target_met);
        assert!(!choice.review_target_met);
        assert!(choice.thresholds.is_ordered(), "{choice:?}");
        assert!(choice.thresholds.block < 1.0);
    }

    #[test]
    fn group_metrics_split_rows_by_tag() {
        let scores = [0.9, 0.1, 0.8, 0.2];
        let labels = [1.0, 0.0, 1.0, 1.0];
        let by_group = evaluate_by_group(&scores, &labels, &[1, 1, 2, 2], thresholds(0.5, 0.85));
        assert_eq!(by_group.len(), 2);
        assert_eq!(by_group[&1].roc_auc, Some(1.0));
        assert_eq!(by_group[&2].positives, 2);
        assert!((by_group[&2].review.recall - 0.5).abs() < EPS);
    }

    #[test]
    fn groups_are_compared_at_the_overall_threshold_for_the_precision() {
        // Negatives at 0.1..0.5; group 1 positives high, group 2 positives mixed.
        let scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.9, 0.8, 0.95, 0.45, 0.35];
        let labels = [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        let groups = [0, 0, 0, 0, 0, 1, 1, 2, 2, 2];
        let at = at_precision_by_group(&scores, &labels, &groups, 1.0);
        assert_eq!(at.threshold, 0.8, "lowest threshold with no false positive");
        assert!((at.recall - 0.6).abs() < 1e-12);
        assert_eq!(
            at.by_group.len(),
            2,
            "the group without positives is left out"
        );
        assert_eq!(at.by_group[&1].recall, 1.0);
        assert!((at.by_group[&2].recall - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(at.by_group[&1].roc_auc, Some(1.0));
        // Group 2: 0.95 beats all 5 negatives, 0.45 beats 4, 0.35 beats 3 → 12 / 15.
        assert_eq!(at.by_group[&2].roc_auc, Some(12.0 / 15.0));
    }
}
