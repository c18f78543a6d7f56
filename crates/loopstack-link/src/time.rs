//! Stack time: an instant on the stack's own clock, passed in by whoever drives the stack.
//!
//! Nothing in loopstack's core reads the wall clock. A simulator advances a virtual clock; the
//! blocking socket layer maps `std::time::Instant` onto this one. Either way the same inputs
//! give the same packets, byte for byte, and the same pcap timestamps.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point on the stack's clock, in nanoseconds since the clock's epoch (zero).
///
/// Durations are plain [`std::time::Duration`]s. Arithmetic saturates rather than panicking:
/// a clock is never allowed to crash the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant {
    nanos: u64,
}

impl Instant {
    /// The earlier of two optional deadlines (`None`: no deadline), for `poll_at`s that
    /// combine several timers.
    ///
    /// Written as a `match` on purpose: collecting the timers into an array and taking the
    /// iterator's `min` made the compiler store them one by one and load them back two at
    /// a time, a store-forwarding stall that perf put at 8% of a TCP round trip.
    #[inline]
    pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
        match (a, b) {
            (Some(x), Some(y)) => Some(if y < x { y } else { x }),
            (x, None) => x,
            (None, y) => y,
        }
    }

    /// The clock's epoch.
    pub const ZERO: Instant = Instant { nanos: 0 };
    /// The furthest representable instant (about 584 years after the epoch).
    pub const MAX: Instant = Instant { nanos: u64::MAX };

    /// An instant `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant { nanos }
    }

    /// An instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Instant {
            nanos: micros.saturating_mul(1_000),
        }
    }

    /// An instant `millis` milliseconds after the epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Instant {
            nanos: millis.saturating_mul(1_000_000),
        }
    }

    /// An instant `secs` seconds after the epoch.
    pub const fn from_secs(secs: u64) -> Self {
        Instant {
            nanos: secs.saturating_mul(1_000_000_000),
        }
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// Microseconds since the epoch (truncated).
    pub const fn as_micros(self) -> u64 {
        self.nanos / 1_000
    }

    /// Time since the epoch as a `Duration`.
    pub const fn since_epoch(self) -> Duration {
        Duration::from_nanos(self.nanos)
    }

    /// The instant `nanos` nanoseconds later, saturating at [`Instant::MAX`]: `self +
    /// Duration::from_nanos(nanos)` for a caller that keeps its times in nanoseconds, without
    /// the round trip through `Duration`'s seconds and nanoseconds (a 128-bit multiply
    /// each way).
    #[inline]
    pub const fn saturating_add_nanos(self, nanos: u64) -> Instant {
        Instant {
            nanos: self.nanos.saturating_add(nanos),
        }
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant {
            nanos: self.nanos.saturating_add(duration_nanos(rhs)),
        }
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, rhs: Duration) -> Instant {
        Instant {
            nanos: self.nanos.saturating_sub(duration_nanos(rhs)),
        }
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturates at zero, like [`Instant::saturating_duration_since`].
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Display for Instant {
    /// Seconds with microsecond precision, as tcpdump prints relative times: `12.000345s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:06}s",
            self.nanos / 1_000_000_000,
            (self.nanos % 1_000_000_000) / 1_000
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Instant::from_millis(5);
        assert_eq!(t + Duration::from_micros(1), Instant::from_nanos(5_001_000));
        assert_eq!(t - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(t.saturating_add_nanos(1_000), t + Duration::from_micros(1));
        assert_eq!(Instant::MAX.saturating_add_nanos(1), Instant::MAX);
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(t - Instant::from_millis(2), Duration::from_millis(3));
        assert_eq!(Instant::from_secs(2).as_micros(), 2_000_000);
    }

    #[test]
    fn display_is_seconds_and_micros() {
        assert_eq!(
            Instant::from_nanos(12_000_345_999).to_string(),
            "12.000345s"
        );
        assert_eq!(Instant::ZERO.to_string(), "0.000000s");
    }
}
