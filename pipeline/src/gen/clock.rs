//! Event times: the daily rate cycle and a stream of sorted random times drawn from it.
//!
//! Benign traffic needs exactly `n` events inside the generated time span, in time order,
//! without holding them all in memory. [`SortedTimes`] draws the order statistics of `n`
//! uniform numbers one at a time, in increasing order, and maps each through the inverse
//! of the cumulative daily-cycle rate, so busy hours get more events.

use rand::RngExt;

use super::catalog::HOURLY_RATE;
use super::GenRng;

pub(crate) const MINUTE_MS: i64 = 60_000;
pub(crate) const HOUR_MS: i64 = 60 * MINUTE_MS;
pub(crate) const DAY_MS: i64 = 24 * HOUR_MS;
const MINUTES_PER_DAY: usize = 1440;

/// The benign transaction rate over a UTC day, piecewise constant per minute (linearly
/// interpolated between the hourly values of [`HOURLY_RATE`]), and its cumulative sum.
pub(crate) struct DailyCycle {
    rate: Vec<f64>,
    /// `cumulative[m]` = sum of `rate[..m]`; `cumulative[1440]` is one day's total.
    cumulative: Vec<f64>,
}

impl DailyCycle {
    pub(crate) fn new() -> DailyCycle {
        let rate: Vec<f64> = (0..MINUTES_PER_DAY)
            .map(|minute| {
                // Hourly values sit at the middle of their hour.
                let hour = (minute as f64 + 0.5) / 60.0 - 0.5;
                let below = hour.floor();
                let weight = hour - below;
                let at = |h: f64| HOURLY_RATE[(h as i64).rem_euclid(24) as usize];
                at(below) * (1.0 - weight) + at(below + 1.0) * weight
            })
            .collect();
        let mut cumulative = Vec::with_capacity(MINUTES_PER_DAY + 1);
        let mut sum = 0.0;
        cumulative.push(sum);
        for r in &rate {
            sum += r;
            cumulative.push(sum);
        }
        DailyCycle { rate, cumulative }
    }

    fn day_total(&self) -> f64 {
        self.cumulative[MINUTES_PER_DAY]
    }

    /// Cumulative rate from the Unix epoch to `ms`, in rate-minutes.
    pub(crate) fn cumulative_at(&self, ms: i64) -> f64 {
        let day = ms.div_euclid(DAY_MS);
        let in_day = ms.rem_euclid(DAY_MS);
        let minute = (in_day / MINUTE_MS) as usize;
        let frac = (in_day % MINUTE_MS) as f64 / MINUTE_MS as f64;
        day as f64 * self.day_total() + self.cumulative[minute] + self.rate[minute] * frac
    }

    /// The time at which the cumulative rate reaches `value` (inverse of
    /// [`DailyCycle::cumulative_at`]), to the millisecond.
    pub(crate) fn time_at(&self, value: f64) -> i64 {
        let day = (value / self.day_total()).floor();
        let rest = value - day * self.day_total();
        let minute = self
            .cumulative
            .partition_point(|&c| c <= rest)
            .saturating_sub(1)
            .min(MINUTES_PER_DAY - 1);
        let frac = ((rest - self.cumulative[minute]) / self.rate[minute]).clamp(0.0, 1.0);
        day as i64 * DAY_MS + minute as i64 * MINUTE_MS + (frac * MINUTE_MS as f64) as i64
    }
}

/// `n` random times in `[start_ms, end_ms)` following the daily cycle, produced in
/// non-decreasing order one at a time, in constant memory.
pub(crate) struct SortedTimes {
    remaining: u64,
    /// The previous order statistic of the uniform sample, in `[0, 1)`.
    position: f64,
    from: f64,
    width: f64,
    start_ms: i64,
    end_ms: i64,
    last_ms: i64,
}

impl SortedTimes {
    pub(crate) fn new(cycle: &DailyCycle, n: u64, start_ms: i64, end_ms: i64) -> SortedTimes {
        let from = cycle.cumulative_at(start_ms);
        SortedTimes {
            remaining: n,
            position: 0.0,
            from,
            width: cycle.cumulative_at(end_ms) - from,
            start_ms,
            end_ms,
            last_ms: start_ms,
        }
    }

    /// The next time, or `None` after `n` times.
    pub(crate) fn next(&mut self, cycle: &DailyCycle, rng: &mut GenRng) -> Option<i64> {
        if self.remaining == 0 {
            return None;
        }
        // The minimum of m uniforms on [p, 1) is p + (1 - p)(1 - U^(1/m)); expm1 keeps
        // the step precise when m is in the millions.
        let u = 1.0 - rng.random::<f64>();
        let step = -(u.ln() / self.remaining as f64).exp_m1();
        self.position += (1.0 - self.position) * step;
        self.remaining -= 1;
        let ms = cycle.time_at(self.from + self.position * self.width);
        // Rounding can nudge a time a millisecond out of order or out of the span.
        let ms = ms.clamp(self.last_ms, self.end_ms - 1).max(self.start_ms);
        self.last_ms = ms;
        Some(ms)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn cumulative_rate_and_time_are_inverse() {
        let cycle = DailyCycle::new();
        for ms in [
            0,
            1,
            59_999,
            3 * HOUR_MS + 12_345,
            DAY_MS - 1,
            20_000 * DAY_MS + 777,
        ] {
            let back = cycle.time_at(cycle.cumulative_at(ms));
            assert!((back - ms).abs() <= 1, "{ms} came back as {back}");
        }
    }

    #[test]
    fn sorted_times_are_ordered_inside_the_span_and_busier_by_day() {
        let cycle = DailyCycle::new();
        let mut rng = GenRng::seed_from_u64(7);
        let (start, end) = (10 * DAY_MS, 17 * DAY_MS);
        let mut times = SortedTimes::new(&cycle, 100_000, start, end);
        let mut previous = start;
        let mut count = 0;
        let (mut day, mut night) = (0, 0);
        while let Some(ms) = times.next(&cycle, &mut rng) {
            assert!(ms >= previous && ms < end, "{ms} after {previous}");
            previous = ms;
            count += 1;
            match ms.rem_euclid(DAY_MS) / HOUR_MS {
                2..=3 => night += 1,
                12..=13 => day += 1,
                _ => {}
            }
        }
        assert_eq!(count, 100_000);
        assert!(day > 8 * night, "day {day} vs night {night}");
        assert!(
            previous > end - HOUR_MS,
            "the sample should reach the end of the span"
        );
    }
}
