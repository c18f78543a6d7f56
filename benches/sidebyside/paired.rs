//! Paired measurement: two implementations timed in alternating short slices, so that both
//! see the same machine.
//!
//! Criterion measures one benchmark after another, each for several seconds. On a shared
//! virtual machine the speed of the host drifts over minutes (this one went from 229 to
//! 300 ns per datagram for the same binary within twenty minutes, docs/benchmarks.md
//! item 11), so the ratio of two medians taken seconds apart carries that drift.
//! [`paired`] instead runs a few milliseconds of one implementation, then the same number
//! of iterations of the other, and records the ratio of the two slices' times; it repeats
//! that for many rounds, alternating which goes first so that neither always runs on the
//! caches the other left. The median of those per-round ratios, and its quartiles, is what
//! `cargo xtask bench` reports next to criterion's ratio of medians.

use std::time::{Duration, Instant};

use super::{blocking, floor, kernel, poll, smol, Bulk, Family, OneWay, PingPong, BURST, DATAGRAM};

/// Chunks per [`Bulk::transfer`] in one iteration: 1 MiB, as in the criterion benchmark.
pub const BULK_CHUNKS: usize = 16;

/// The implementations, as the benchmarks and tables name them, in table order.
pub const IMPLS: [&str; 4] = ["loopstack-poll", "smoltcp", "kernel", "loopstack-blocking"];

/// The scenarios, as the benchmarks and tables name them.
pub const SCENARIOS: [&str; 5] = [
    "tcp_bulk",
    "tcp_rtt_1B",
    "tcp_rtt_64B",
    "udp_rtt_64B",
    "udp_oneway_64B",
];

/// One side-by-side scenario of any kind, ready to run; one iteration is what one
/// criterion iteration of the same scenario does.
pub enum Run {
    /// [`BULK_CHUNKS`] x 64 KiB per iteration.
    Bulk(Box<dyn Bulk>),
    /// One round trip per iteration.
    PingPong(Box<dyn PingPong>),
    /// A burst of [`BURST`] datagrams per iteration.
    OneWay(Box<dyn OneWay>),
}

impl Run {
    /// Builds (connects and warms up) `scenario` on implementation `imp` (names as in
    /// [`SCENARIOS`] and [`IMPLS`]); `None` for a name it does not know.
    pub fn build(imp: &str, scenario: &str, family: Family) -> Option<Run> {
        macro_rules! pick {
            ($f:ident ( $($arg:expr),* )) => {
                match imp {
                    "loopstack-poll" => Box::new(poll::$f($($arg),*)),
                    "smoltcp" => Box::new(smol::$f($($arg),*)),
                    "kernel" => Box::new(kernel::$f($($arg),*)),
                    "loopstack-blocking" => Box::new(blocking::$f($($arg),*)),
                    _ => return None,
                }
            };
        }
        if imp == "floor" {
            // Not a stack: only the UDP scenarios have a floor.
            return match scenario {
                "udp_rtt_64B" => Some(Run::PingPong(Box::new(floor::udp_ping_pong(
                    family, DATAGRAM,
                )))),
                "udp_oneway_64B" => {
                    Some(Run::OneWay(Box::new(floor::udp_one_way(family, DATAGRAM))))
                }
                _ => None,
            };
        }
        Some(match scenario {
            "tcp_bulk" => Run::Bulk(pick!(tcp_bulk(family))),
            "tcp_rtt_1B" => Run::PingPong(pick!(tcp_ping_pong(family, 1))),
            "tcp_rtt_64B" => Run::PingPong(pick!(tcp_ping_pong(family, 64))),
            "udp_rtt_64B" => Run::PingPong(pick!(udp_ping_pong(family, DATAGRAM))),
            "udp_oneway_64B" => Run::OneWay(pick!(udp_one_way(family, DATAGRAM))),
            _ => return None,
        })
    }

    /// Runs `n` iterations.
    pub fn go(&mut self, n: usize) {
        for _ in 0..n {
            match self {
                Run::Bulk(s) => s.transfer(BULK_CHUNKS),
                Run::PingPong(s) => s.round_trip(),
                Run::OneWay(s) => s.burst(BURST),
            }
        }
    }

    /// How long `n` iterations take.
    fn time(&mut self, n: usize) -> Duration {
        let start = Instant::now();
        self.go(n);
        start.elapsed()
    }

    /// How long `n` iterations take once the scenario is going again: `n / 8` iterations
    /// (at least one) run untimed first. While the other implementation had its slice, a
    /// blocking scenario's threads stopped busy-polling and went to sleep; the first
    /// round trips after that pay for waking them, which steady running never does.
    fn time_settled(&mut self, n: usize) -> Duration {
        self.go((n / 8).max(1));
        self.time(n)
    }
}

/// Iterations per slice: the smallest power of two for which `run` takes at least `slice`
/// (capped at 2^20, so that a scenario that does no work ends). Runs the scenario for a
/// slice first: a blocking scenario whose threads have gone to sleep takes a wake-up or
/// two to get going, and counting that would make the slice too short.
pub fn calibrate(run: &mut Run, slice: Duration) -> usize {
    let start = Instant::now();
    while start.elapsed() < slice {
        run.go(1);
    }
    let mut n = 1;
    while n < 1 << 20 && run.time(n) < slice {
        n *= 2;
    }
    n
}

/// Times `a` against `b` for `rounds` rounds of `n` iterations each, and returns the ratio
/// of `a`'s time to `b`'s in every round. Even rounds run `a` first, odd rounds `b`; each
/// slice is timed after `n / 8` untimed iterations (at least one), which wake a scenario
/// whose threads went to sleep while the other side ran.
pub fn paired(a: &mut Run, b: &mut Run, n: usize, rounds: usize) -> Vec<f64> {
    (0..rounds)
        .map(|round| {
            let (ta, tb) = if round % 2 == 0 {
                let ta = a.time_settled(n);
                (ta, b.time_settled(n))
            } else {
                let tb = b.time_settled(n);
                (a.time_settled(n), tb)
            };
            ta.as_secs_f64() / tb.as_secs_f64().max(f64::MIN_POSITIVE)
        })
        .collect()
}

/// The lower quartile, median and upper quartile of `values` (linear interpolation between
/// the nearest ranks); `None` if there are none or any is NaN.
pub fn quartiles(values: &[f64]) -> Option<(f64, f64, f64)> {
    if values.is_empty() || values.iter().any(|v| v.is_nan()) {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let pos = q * (v.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
    };
    Some((at(0.25), at(0.5), at(0.75)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_interpolate_between_ranks() {
        assert_eq!(quartiles(&[]), None);
        assert_eq!(quartiles(&[1.0, f64::NAN]), None);
        assert_eq!(quartiles(&[2.0]), Some((2.0, 2.0, 2.0)));
        // Sorted: 1 2 3 4 5; quartile positions 1, 2 and 3.
        assert_eq!(quartiles(&[5.0, 1.0, 4.0, 2.0, 3.0]), Some((2.0, 3.0, 4.0)));
        // Sorted: 1 2 3 4; positions 0.75, 1.5, 2.25.
        assert_eq!(quartiles(&[4.0, 3.0, 2.0, 1.0]), Some((1.75, 2.5, 3.25)));
    }

    #[test]
    fn unknown_names_build_nothing() {
        assert!(Run::build("lwip", "tcp_bulk", Family::V4).is_none());
        assert!(Run::build("smoltcp", "sctp_bulk", Family::V4).is_none());
    }
}
