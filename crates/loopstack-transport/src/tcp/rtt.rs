//! The retransmission timeout (RTO): how long TCP waits for an acknowledgment before it sends
//! a segment again (RFC 6298).
//!
//! Too short a timeout resends data that was merely slow and adds to the congestion that
//! slowed it; too long a timeout leaves a lost segment unrepaired for ages. So TCP measures
//! round-trip times (RTT) and keeps two running averages:
//!
//! ```text
//!   SRTT    smoothed RTT         SRTT   <- 7/8 SRTT   + 1/8 R'             (alpha = 1/8)
//!   RTTVAR  mean deviation       RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|    (beta  = 1/4)
//!
//!   RTO = SRTT + max(G, 4 * RTTVAR)          clamped to [min_rto, max_rto]
//! ```
//!
//! Each time the timer fires without an acknowledgment the timeout doubles (exponential
//! back-off, RFC 6298 5.5), because a silent path may be a congested one. The next valid
//! sample "collapses" the timeout back to the computed value.
//!
//! What counts as a valid sample is the caller's business: by Karn's algorithm
//! (RFC 6298 3) a segment that was retransmitted must not be timed, since its
//! acknowledgment cannot say which transmission it answers. The estimator only does the
//! arithmetic, on integer nanoseconds.

use std::time::Duration;

/// The knobs of an [`RttEstimator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttConfig {
    /// RTO before the first sample: 1 s (RFC 6298 2.1).
    pub initial_rto: Duration,
    /// Floor of the RTO: 200 ms.
    ///
    /// RFC 6298 2.4 asks for 1 s, a value chosen in 2000 to stay clear of the delayed-ACK
    /// timers and coarse (500 ms) clocks of the time. Linux has used 200 ms (`TCP_RTO_MIN`)
    /// for decades, and so do most stacks since; 1 s would make every loss that is not
    /// repaired by fast retransmit cost a full second, which on loopback (RTTs of
    /// microseconds) dwarfs everything else. The floor still has to exceed the peer's
    /// delayed-ACK timer (at most 500 ms by RFC 9293 3.8.6.3, 40-200 ms in practice), or a
    /// lone segment would be retransmitted before its delayed ACK could arrive.
    pub min_rto: Duration,
    /// Ceiling of the RTO, back-off included: 120 s, Linux's `TCP_RTO_MAX` (RFC 6298 2.5
    /// allows any maximum of at least 60 s).
    pub max_rto: Duration,
    /// Clock granularity G: 1 ms. It keeps the RTO above SRTT even when the variance has
    /// decayed to nothing (RFC 6298 2.2 and 4).
    pub granularity: Duration,
}

impl Default for RttConfig {
    fn default() -> Self {
        RttConfig {
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::from_millis(200),
            max_rto: Duration::from_secs(120),
            granularity: Duration::from_millis(1),
        }
    }
}

/// The RFC 6298 estimator of one connection: SRTT, RTTVAR, the RTO and its back-off.
#[derive(Debug, Clone)]
pub struct RttEstimator {
    /// `RttConfig`'s bounds and granularity in nanoseconds, converted once: the RTO is
    /// needed for every segment that starts the timer, and converting a `Duration` each
    /// time cost a 128-bit multiply per bound (docs/benchmarks.md, item 21). `min_rto` is
    /// already lowered to `max_rto` if the configuration had it above.
    min_rto: u64,
    max_rto: u64,
    granularity: u64,
    /// Smoothed RTT in nanoseconds; `None` until the first sample.
    srtt: Option<u64>,
    /// RTT variation in nanoseconds.
    rttvar: u64,
    /// The RTO computed from the last sample (or the initial RTO), clamped to
    /// `[min_rto, max_rto]` but before back-off, in nanoseconds. Clamped here, once per
    /// sample, rather than in [`rto_nanos`](Self::rto_nanos), which every segment that
    /// starts the timer asks: with no back-off (nearly always) it is then a field read
    /// (docs/benchmarks.md, item 40).
    base_rto: u64,
    /// Timeouts since the last sample: the RTO is `base_rto * 2^backoffs`.
    backoffs: u32,
}

/// A duration in nanoseconds, saturating at `u64::MAX` (about 584 years).
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A `u128` intermediate result back into `u64` nanoseconds, saturating.
fn narrow(n: u128) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl RttEstimator {
    /// An estimator that has seen no sample yet: its RTO is `config.initial_rto`.
    pub fn new(config: RttConfig) -> Self {
        let max_rto = nanos(config.max_rto);
        let min_rto = nanos(config.min_rto).min(max_rto);
        RttEstimator {
            min_rto,
            max_rto,
            granularity: nanos(config.granularity),
            srtt: None,
            rttvar: 0,
            base_rto: nanos(config.initial_rto).clamp(min_rto, max_rto),
            backoffs: 0,
        }
    }

    /// Feeds one round-trip measurement and recomputes the RTO (RFC 6298 2.2 for the first
    /// sample, 2.3 for later ones).
    ///
    /// A sample also ends any back-off: after retransmissions, the first new measurement
    /// recomputes the RTO from scratch, "collapsing" it back down (the note after
    /// RFC 6298 5.7).
    pub fn on_sample(&mut self, rtt: Duration) {
        self.on_sample_nanos(nanos(rtt));
    }

    /// [`on_sample`](Self::on_sample) of a measurement in nanoseconds.
    pub fn on_sample_nanos(&mut self, r: u64) {
        match self.srtt {
            None => {
                // 2.2: SRTT <- R, RTTVAR <- R/2.
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                // 2.3: RTTVAR first, from the old SRTT; then SRTT. In u128 so that 7 * SRTT
                // cannot overflow, whatever the caller measured.
                let delta = srtt.abs_diff(r);
                self.rttvar = narrow((3 * u128::from(self.rttvar) + u128::from(delta)) / 4);
                self.srtt = Some(narrow((7 * u128::from(srtt) + u128::from(r)) / 8));
            }
        }
        let srtt = self.srtt.unwrap_or(r);
        let spread = self.granularity.max(self.rttvar.saturating_mul(4));
        // `max` then `min` rather than `clamp`, whose check that the bounds are in order
        // (`new` made sure of it) would run on every sample.
        self.base_rto = srtt
            .saturating_add(spread)
            .max(self.min_rto)
            .min(self.max_rto);
        self.backoffs = 0;
    }

    /// The retransmission timer fired: back off by doubling the RTO (RFC 6298 5.5), up to
    /// `max_rto`.
    ///
    /// [`backoffs`](Self::backoffs) keeps counting past the ceiling, so the caller can give
    /// up on a connection after so many timeouts (RFC 9293 3.8.3's R2).
    pub fn on_timeout(&mut self) {
        self.backoffs = self.backoffs.saturating_add(1);
    }

    /// The current RTO, back-off included, within `[min_rto, max_rto]` (if a configuration
    /// has `min_rto > max_rto`, `max_rto` wins).
    pub fn rto(&self) -> Duration {
        Duration::from_nanos(self.rto_nanos())
    }

    /// [`rto`](Self::rto) in nanoseconds.
    pub fn rto_nanos(&self) -> u64 {
        if self.backoffs == 0 {
            return self.base_rto;
        }
        // After timeouts, the base doubled once per timeout. Doubling a clamped value and
        // clamping again is the same as doubling the unclamped value:
        // min(2 min(x, max), max) = min(2x, max). So one shift does all back-offs, and since
        // the base is at least `min_rto`, only the ceiling can apply.
        let backed_off = if self.backoffs >= 64 {
            u64::MAX
        } else {
            narrow(u128::from(self.base_rto) << self.backoffs)
        };
        backed_off.min(self.max_rto)
    }

    /// The smoothed RTT, or `None` before the first sample.
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt.map(Duration::from_nanos)
    }

    /// The RTT variation (zero before the first sample).
    pub fn rttvar(&self) -> Duration {
        Duration::from_nanos(self.rttvar)
    }

    /// Consecutive timeouts since the last sample.
    pub fn backoffs(&self) -> u32 {
        self.backoffs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A configuration without floor or ceiling, to check the arithmetic itself.
    fn unclamped() -> RttConfig {
        RttConfig {
            initial_rto: Duration::from_secs(1),
            min_rto: Duration::ZERO,
            max_rto: Duration::MAX,
            granularity: ms(1),
        }
    }

    #[test]
    fn defaults() {
        let c = RttConfig::default();
        assert_eq!(c.initial_rto, Duration::from_secs(1));
        assert_eq!(c.min_rto, ms(200));
        assert_eq!(c.max_rto, Duration::from_secs(120));
        assert_eq!(c.granularity, ms(1));
    }

    /// The nanosecond entry points are the `Duration` ones without the conversions: the
    /// same samples give the same estimates and RTOs, back-offs and clamping included.
    #[test]
    fn nanosecond_calls_agree_with_duration_calls() {
        let inverted = RttConfig {
            min_rto: Duration::from_secs(200),
            ..RttConfig::default()
        };
        for config in [RttConfig::default(), unclamped(), inverted] {
            let (mut a, mut b) = (RttEstimator::new(config), RttEstimator::new(config));
            for (i, sample) in [ms(3), ms(250), Duration::from_nanos(1), ms(40_000)]
                .into_iter()
                .enumerate()
            {
                a.on_sample(sample);
                b.on_sample_nanos(u64::try_from(sample.as_nanos()).unwrap());
                for _ in 0..i * 20 {
                    a.on_timeout();
                    b.on_timeout();
                }
                assert_eq!(a.srtt(), b.srtt());
                assert_eq!(a.rttvar(), b.rttvar());
                assert_eq!(a.rto(), b.rto());
                assert_eq!(Duration::from_nanos(b.rto_nanos()), b.rto(), "{config:?}");
            }
        }
    }

    #[test]
    fn before_any_sample_the_rto_is_the_initial_one() {
        let e = RttEstimator::new(RttConfig::default());
        assert_eq!(e.rto(), Duration::from_secs(1));
        assert_eq!(e.srtt(), None);
        assert_eq!(e.rttvar(), Duration::ZERO);
        assert_eq!(e.backoffs(), 0);
    }

    #[test]
    fn first_sample_sets_srtt_and_half_rttvar() {
        let mut e = RttEstimator::new(RttConfig::default());
        e.on_sample(ms(100));
        assert_eq!(e.srtt(), Some(ms(100)));
        assert_eq!(e.rttvar(), ms(50));
        // 100 + max(1, 4 * 50) = 300 ms.
        assert_eq!(e.rto(), ms(300));
    }

    #[test]
    fn later_samples_use_alpha_and_beta() {
        let mut e = RttEstimator::new(unclamped());
        e.on_sample(ms(100));
        e.on_sample(ms(200));
        // RTTVAR = 3/4 * 50 + 1/4 * |100 - 200| = 37.5 + 25 = 62.5 ms (from the old SRTT).
        assert_eq!(e.rttvar(), Duration::from_micros(62_500));
        // SRTT = 7/8 * 100 + 1/8 * 200 = 112.5 ms.
        assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(e.rto(), Duration::from_micros(112_500 + 4 * 62_500));

        // A sample below SRTT counts its distance the same way.
        e.on_sample(ms(80));
        // RTTVAR = 3/4 * 62.5 + 1/4 * 32.5 = 46.875 + 8.125 = 55 ms.
        assert_eq!(e.rttvar(), ms(55));
        // SRTT = 7/8 * 112.5 + 1/8 * 80 = 98.4375 + 10 = 108.4375 ms.
        assert_eq!(e.srtt(), Some(Duration::from_nanos(108_437_500)));
    }

    #[test]
    fn steady_rtt_converges_and_variance_decays() {
        let mut e = RttEstimator::new(unclamped());
        for _ in 0..200 {
            e.on_sample(ms(10));
        }
        assert_eq!(e.srtt(), Some(ms(10)));
        // RTTVAR decays geometrically towards zero; G then keeps RTO above SRTT.
        assert!(e.rttvar() < Duration::from_micros(1));
        assert_eq!(e.rto(), ms(11));
    }

    #[test]
    fn granularity_is_the_minimum_spread() {
        let mut e = RttEstimator::new(unclamped());
        e.on_sample(Duration::ZERO);
        assert_eq!(e.srtt(), Some(Duration::ZERO));
        assert_eq!(e.rto(), ms(1));
    }

    #[test]
    fn rto_is_clamped_to_min_and_max() {
        let mut e = RttEstimator::new(RttConfig::default());
        e.on_sample(Duration::from_micros(20)); // loopback-like
        assert_eq!(e.rto(), ms(200));
        e.on_sample(Duration::from_secs(1000));
        assert_eq!(e.rto(), Duration::from_secs(120));
    }

    #[test]
    fn initial_rto_is_clamped_too() {
        let e = RttEstimator::new(RttConfig {
            initial_rto: ms(10),
            ..RttConfig::default()
        });
        assert_eq!(e.rto(), ms(200));
        let e = RttEstimator::new(RttConfig {
            initial_rto: Duration::from_secs(500),
            ..RttConfig::default()
        });
        assert_eq!(e.rto(), Duration::from_secs(120));
    }

    #[test]
    fn timeouts_double_the_rto_up_to_the_max() {
        let mut e = RttEstimator::new(RttConfig::default());
        let mut expected = Duration::from_secs(1);
        for n in 1..=6 {
            e.on_timeout();
            expected = (expected * 2).min(Duration::from_secs(120));
            assert_eq!(e.rto(), expected, "after {n} timeouts");
            assert_eq!(e.backoffs(), n);
        }
        // 1 s * 2^7 = 128 s: past the ceiling.
        e.on_timeout();
        assert_eq!(e.rto(), Duration::from_secs(120));
        for _ in 0..200 {
            e.on_timeout();
        }
        assert_eq!(e.rto(), Duration::from_secs(120));
        assert_eq!(e.backoffs(), 207);
    }

    #[test]
    fn backoff_starts_from_the_clamped_rto() {
        let mut e = RttEstimator::new(RttConfig::default());
        e.on_sample(Duration::from_micros(20));
        e.on_timeout();
        // Doubles the 200 ms floor, not the ~20 us computed value.
        assert_eq!(e.rto(), ms(400));
    }

    #[test]
    fn a_new_sample_collapses_the_backoff() {
        let mut e = RttEstimator::new(RttConfig::default());
        e.on_sample(ms(100));
        for _ in 0..5 {
            e.on_timeout();
        }
        assert_eq!(e.rto(), ms(300 * 32));
        e.on_sample(ms(100));
        assert_eq!(e.backoffs(), 0);
        // RTTVAR = 3/4 * 50 = 37.5 ms; RTO = 100 + 150 ms.
        assert_eq!(e.rto(), ms(250));
    }

    #[test]
    fn huge_samples_do_not_overflow() {
        let mut e = RttEstimator::new(unclamped());
        e.on_sample(Duration::MAX);
        e.on_sample(Duration::MAX);
        e.on_sample(Duration::ZERO);
        e.on_timeout();
        let _ = e.rto();
        assert!(e.srtt().is_some());
    }

    #[test]
    fn min_above_max_yields_max() {
        let e = RttEstimator::new(RttConfig {
            min_rto: Duration::from_secs(10),
            max_rto: Duration::from_secs(5),
            ..RttConfig::default()
        });
        assert_eq!(e.rto(), Duration::from_secs(5));
    }
}
