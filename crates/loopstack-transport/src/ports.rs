//! Ephemeral ports: the range they come from, and an unbiased, seeded pick.

use loopstack_link::Rng;
use thiserror::Error;

/// An inclusive range of ports handed out to sockets that bind port 0 or connect unbound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    first: u16,
    last: u16,
}

/// A port range that is empty or includes port 0.
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("invalid ephemeral port range {first}-{last}: need 1 <= first <= last")]
pub struct PortRangeError {
    /// First port asked for.
    pub first: u16,
    /// Last port asked for.
    pub last: u16,
}

impl Default for PortRange {
    /// 49152-65535: the dynamic range of RFC 6335 6, which RFC 6056 3.2 recommends.
    fn default() -> Self {
        PortRange {
            first: 49152,
            last: 65535,
        }
    }
}

impl PortRange {
    /// The ports `first..=last`.
    pub fn new(first: u16, last: u16) -> Result<Self, PortRangeError> {
        if first == 0 || first > last {
            return Err(PortRangeError { first, last });
        }
        Ok(PortRange { first, last })
    }

    /// The first port.
    pub fn first(&self) -> u16 {
        self.first
    }

    /// The last port.
    pub fn last(&self) -> u16 {
        self.last
    }

    /// How many ports the range holds.
    pub fn len(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    /// Never true: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }

    /// A free port, uniformly at random among the free ones (RFC 6056 3.3.1's "simple port
    /// randomization", without its bias towards ports that follow a run of used ones), or
    /// `None` when every port is taken.
    ///
    /// Random draws first: while the range is mostly free, one or two draws find a port.
    /// If many draws in a row hit used ports, the range is nearly full, and counting the free
    /// ports then choosing one of them by index stays exact and bounded.
    pub fn pick(&self, rng: &mut Rng, mut in_use: impl FnMut(u16) -> bool) -> Option<u16> {
        const DRAWS: usize = 32;
        let len = u64::from(self.len());
        for _ in 0..DRAWS {
            let port = self.nth(rng.below(len));
            if !in_use(port) {
                return Some(port);
            }
        }
        let free = (self.first..=self.last).filter(|&p| !in_use(p)).count();
        if free == 0 {
            return None;
        }
        let k = rng.below(free as u64) as usize;
        (self.first..=self.last).filter(|&p| !in_use(p)).nth(k)
    }

    fn nth(&self, n: u64) -> u16 {
        // n < len <= 65535, so the sum stays within u16.
        self.first + n as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_and_zero() {
        assert!(PortRange::new(0, 10).is_err());
        assert!(PortRange::new(10, 9).is_err());
        assert_eq!(PortRange::new(5, 5).unwrap().len(), 1);
        assert_eq!(PortRange::default().len(), 16384);
    }

    #[test]
    fn same_seed_same_port_and_in_range() {
        let r = PortRange::new(40000, 40099).unwrap();
        let a = r.pick(&mut Rng::new(7), |_| false).unwrap();
        let b = r.pick(&mut Rng::new(7), |_| false).unwrap();
        assert_eq!(a, b);
        assert!(r.contains(a));
    }

    #[test]
    fn finds_the_last_free_port_and_reports_full() {
        let r = PortRange::new(1000, 1999).unwrap();
        let mut rng = Rng::new(1);
        assert_eq!(r.pick(&mut rng, |p| p != 1234), Some(1234));
        assert_eq!(r.pick(&mut rng, |_| true), None);
    }

    /// Uniform over the free ports: with ports 10..=13 free out of 10..=19 and the others
    /// used, each free port gets close to a quarter of many picks, which a
    /// "scan from a random start" picker would not give port 10 (it would get 7/10).
    #[test]
    fn no_bias_after_a_run_of_used_ports() {
        let r = PortRange::new(10, 19).unwrap();
        let mut rng = Rng::new(99);
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            let p = r.pick(&mut rng, |p| p >= 14).unwrap();
            counts[usize::from(p - 10)] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "counts {counts:?}");
        }
    }
}
