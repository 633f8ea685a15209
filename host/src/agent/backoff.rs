//! The delay between attempts to reach the scheduler: doubling from a minimum to a maximum, with
//! a little jitter so that hosts cut off together do not all redial at the same instant.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Exponential backoff between connection attempts.
#[derive(Debug)]
pub(super) struct Backoff {
    min: Duration,
    /// Invariant: `max >= min`.
    max: Duration,
    /// The base delay of the next attempt, in `min..=max`.
    next: Duration,
}

impl Backoff {
    /// Delays from `min`, doubling up to `max` (raised to `min` if it is lower).
    pub(super) fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Self {
            min,
            max,
            next: min,
        }
    }

    /// Starts over from the minimum: called once a connection has been established.
    pub(super) fn reset(&mut self) {
        self.next = self.min;
    }

    /// The delay before the next attempt, jittered.
    pub(super) fn next_delay(&mut self) -> Duration {
        jitter(self.next_base(), self.min, clock_seed())
    }

    /// The delay before the next attempt without jitter; doubles the one after.
    fn next_base(&mut self) -> Duration {
        let base = self.next;
        self.next = base.saturating_mul(2).min(self.max);
        base
    }
}

/// Up to 10 % less than `base`, but never below `floor`. Jitter only shortens the delay, so the
/// configured maximum stays the longest a host waits.
fn jitter(base: Duration, floor: Duration, seed: u32) -> Duration {
    // Integer arithmetic: exact, so the bounds hold to the nanosecond.
    let cut = base.saturating_mul(seed % 1000) / 10_000;
    base.saturating_sub(cut).max(floor)
}

/// Varies between calls and between hosts, which is all jitter needs; no random number crate.
fn clock_seed() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_micros())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn doubles_from_min_to_max_and_resets() {
        let mut backoff = Backoff::new(ms(100), ms(5000));
        let got: Vec<_> = (0..8).map(|_| backoff.next_base()).collect();
        assert_eq!(
            got,
            [100, 200, 400, 800, 1600, 3200, 5000, 5000].map(ms),
            "capped at the maximum"
        );
        backoff.reset();
        assert_eq!(backoff.next_base(), ms(100));
    }

    #[test]
    fn a_maximum_below_the_minimum_is_the_minimum() {
        let mut backoff = Backoff::new(ms(300), ms(100));
        assert_eq!([backoff.next_base(), backoff.next_base()], [ms(300); 2]);
    }

    #[test]
    fn jitter_shortens_by_at_most_a_tenth_and_stays_above_the_floor() {
        let table = [
            // (base, floor, seed, expected)
            (ms(1000), ms(100), 0, ms(1000)),
            (ms(1000), ms(100), 500, ms(950)),
            (ms(1000), ms(100), 999, Duration::from_micros(900_100)),
            (ms(1000), ms(100), 1500, ms(950)),
            (ms(100), ms(100), 999, ms(100)),
        ];
        for (base, floor, seed, expected) in table {
            assert_eq!(jitter(base, floor, seed), expected, "{base:?} {seed}");
        }
        let mut backoff = Backoff::new(ms(100), ms(5000));
        for _ in 0..20 {
            let delay = backoff.next_delay();
            assert!((ms(100)..=ms(5000)).contains(&delay), "{delay:?}");
        }
    }
}
