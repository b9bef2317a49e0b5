//! "Did you mean ...?" for misspelt keys, sections and values.

/// Index of the candidate closest to `wanted`, if one is close enough to be a plausible
/// typo: at most one edit for short names, about one edit per three characters for longer.
pub(crate) fn closest<'a>(
    wanted: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<usize> {
    let limit = (wanted.chars().count() / 3).max(1);
    candidates
        .enumerate()
        .map(|(i, candidate)| (edit_distance(wanted, candidate), i))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, i)| i)
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of
/// neighbours each cost one, so `grpah` is one edit from `graph`.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_letter_or_swapped_pair_counts_as_one_edit() {
        assert_eq!(edit_distance("max_hop", "max_hops"), 1);
        assert_eq!(edit_distance("grpah", "graph"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn the_closest_plausible_candidate_is_suggested() {
        let keys = ["kind", "path", "max_hops", "uri"];
        assert_eq!(closest("max_hop", keys.iter().copied()), Some(2));
        assert_eq!(closest("pth", keys.iter().copied()), Some(1));
        assert_eq!(closest("completely_different", keys.iter().copied()), None);
    }
}
