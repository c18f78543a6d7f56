//! Fault injection middleware: a seeded, deterministic imperfect link.
//!
//! Wrap any device in a [`FaultInjector`] and each packet crossing it may be dropped,
//! duplicated, held back behind the next packet (reordered), delayed, or corrupted (one bit
//! flipped), each with its own probability. The decisions come from an [`Rng`] built from a
//! seed, and every packet draws the same fixed number of random values whatever happens to
//! it, so the same seed and the same packets give the same decisions, run after run: a
//! failing simulation can be replayed exactly.
//!
//! Time is the stack's: a delayed packet is released by the first `transmit` or `receive`
//! call at or after its due time, and [`Device::poll_at`] tells the stack when that is.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use loopstack_buf::PacketBuf;
use thiserror::Error;

use crate::device::{ChecksumOffload, Device, DeviceCapabilities, LinkStats, TxError};
use crate::rand::Rng;
use crate::time::Instant;

/// Which way faults are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FaultDirection {
    /// Packets the stack transmits. Around a loopback device this covers every packet once,
    /// which is why it is the default.
    #[default]
    Tx,
    /// Packets the stack receives.
    Rx,
    /// Both ways, each with its own random sequence: for a device with a real peer (a TUN).
    Both,
}

/// Probabilities and timings of the faults. Every probability is in `[0, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Probability that a packet is dropped.
    pub drop: f64,
    /// Probability that a packet is sent twice.
    pub duplicate: f64,
    /// Probability that a packet is held back and sent after the next one.
    pub reorder: f64,
    /// Probability that a packet is delayed by [`delay_time`](Self::delay_time) (plus
    /// jitter).
    pub delay: f64,
    /// Probability that one bit of a packet is flipped.
    pub corrupt: f64,
    /// How long a delayed packet is held. Default 10 ms.
    pub delay_time: Duration,
    /// Extra delay, uniformly drawn from `[0, delay_jitter]`, per delayed packet. Default 0.
    pub delay_jitter: Duration,
    /// The longest a reordered packet waits for a packet to overtake it before it is
    /// released anyway. Default 1 ms.
    pub reorder_hold: Duration,
    /// Most packets held back at once (delayed or reordered), per direction. Past it a packet
    /// chosen for delay goes through undelayed, and the overflow is counted. Default 1024.
    pub max_held: usize,
    /// Which way faults apply. Default [`FaultDirection::Tx`].
    pub direction: FaultDirection,
}

impl Default for FaultConfig {
    /// A perfect link: every probability zero.
    fn default() -> Self {
        FaultConfig {
            drop: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            delay: 0.0,
            corrupt: 0.0,
            delay_time: Duration::from_millis(10),
            delay_jitter: Duration::ZERO,
            reorder_hold: Duration::from_millis(1),
            max_held: 1024,
            direction: FaultDirection::Tx,
        }
    }
}

impl FaultConfig {
    fn validate(&self) -> Result<(), FaultConfigError> {
        for (name, p) in [
            ("drop", self.drop),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
            ("delay", self.delay),
            ("corrupt", self.corrupt),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(FaultConfigError::Probability { name, value: p });
            }
        }
        if self.max_held == 0 {
            return Err(FaultConfigError::ZeroHeld);
        }
        Ok(())
    }
}

/// Why a [`FaultConfig`] was rejected.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum FaultConfigError {
    /// A probability outside `[0, 1]`, or NaN.
    #[error("{name} probability must be between 0 and 1, got {value}")]
    Probability {
        /// Which fault.
        name: &'static str,
        /// The value given.
        value: f64,
    },
    /// `max_held` must be at least 1.
    #[error("max_held must be at least 1")]
    ZeroHeld,
}

/// What the injector did, summed over both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct FaultStats {
    /// Packets that went through fault decisions.
    pub seen: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Packets held back behind the next one.
    pub reordered: u64,
    /// Packets delayed.
    pub delayed: u64,
    /// Packets with a bit flipped.
    pub corrupted: u64,
    /// Faults not applied for lack of room: a delay past `max_held`, or a duplicate for which
    /// the buffer pool had no buffer.
    pub skipped: u64,
}

impl FaultStats {
    fn add(&mut self, other: &FaultStats) {
        self.seen += other.seen;
        self.dropped += other.dropped;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.delayed += other.delayed;
        self.corrupted += other.corrupted;
        self.skipped += other.skipped;
    }
}

/// A packet held back until `at`. Ordered so that a `BinaryHeap` pops the earliest first,
/// and among equal times the one held first: ties never depend on anything but the inputs.
#[derive(Debug)]
struct Held {
    at: Instant,
    seq: u64,
    packet: PacketBuf,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the earliest on top.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The random draws for one packet. All of them are drawn every time.
struct Decision {
    drop: bool,
    duplicate: bool,
    reorder: bool,
    delay: bool,
    corrupt: bool,
    bit: u64,
    jitter: f64,
}

/// The fault state of one direction.
#[derive(Debug)]
struct Faults {
    rng: Rng,
    delayed: BinaryHeap<Held>,
    reordered: Option<Held>,
    seq: u64,
    stats: FaultStats,
}

impl Faults {
    fn new(rng: Rng, max_held: usize) -> Self {
        Faults {
            rng,
            delayed: BinaryHeap::with_capacity(max_held),
            reordered: None,
            seq: 0,
            stats: FaultStats::default(),
        }
    }

    fn decide(&mut self, c: &FaultConfig) -> Decision {
        Decision {
            drop: self.rng.chance(c.drop),
            duplicate: self.rng.chance(c.duplicate),
            reorder: self.rng.chance(c.reorder),
            delay: self.rng.chance(c.delay),
            corrupt: self.rng.chance(c.corrupt),
            bit: self.rng.next_u64(),
            jitter: self.rng.next_f64(),
        }
    }

    fn held(&self) -> usize {
        self.delayed.len() + usize::from(self.reordered.is_some())
    }

    /// Applies the faults to one packet and passes what comes out of it to `emit`, in order.
    fn process(
        &mut self,
        c: &FaultConfig,
        now: Instant,
        mut packet: PacketBuf,
        mut emit: impl FnMut(PacketBuf),
    ) {
        self.stats.seen += 1;
        let d = self.decide(c);
        if d.drop {
            self.stats.dropped += 1;
            return;
        }
        // Copy before corrupting: the duplicate is a clean second copy of what was sent.
        let copy = if d.duplicate {
            match packet.try_clone() {
                Ok(copy) => {
                    self.stats.duplicated += 1;
                    Some(copy)
                }
                Err(_) => {
                    self.stats.skipped += 1;
                    None
                }
            }
        } else {
            None
        };
        if d.corrupt && !packet.is_empty() {
            let bit = d.bit % (packet.len() as u64 * 8);
            packet[(bit / 8) as usize] ^= 1 << (bit % 8);
            self.stats.corrupted += 1;
        }
        let room = self.held() < c.max_held;
        if d.delay && room {
            let jitter = c.delay_jitter.mul_f64(d.jitter);
            self.seq += 1;
            self.delayed.push(Held {
                at: now + c.delay_time + jitter,
                seq: self.seq,
                packet,
            });
            self.stats.delayed += 1;
        } else if d.reorder && room && self.reordered.is_none() {
            self.seq += 1;
            self.reordered = Some(Held {
                at: now + c.reorder_hold,
                seq: self.seq,
                packet,
            });
            self.stats.reordered += 1;
        } else {
            if d.delay {
                self.stats.skipped += 1;
            }
            emit(packet);
            // The packet just sent has overtaken the one held for reordering: release it.
            if let Some(held) = self.reordered.take() {
                emit(held.packet);
            }
        }
        if let Some(copy) = copy {
            emit(copy);
        }
    }

    /// Passes every held packet due at `now` to `emit`, earliest first.
    fn release_due(&mut self, now: Instant, mut emit: impl FnMut(PacketBuf)) {
        while self.delayed.peek().is_some_and(|h| h.at <= now) {
            if let Some(held) = self.delayed.pop() {
                emit(held.packet);
            }
        }
        if self.reordered.as_ref().is_some_and(|h| h.at <= now) {
            if let Some(held) = self.reordered.take() {
                emit(held.packet);
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        let delayed = self.delayed.peek().map(|h| h.at);
        let reordered = self.reordered.as_ref().map(|h| h.at);
        match (delayed, reordered) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Middleware that makes the wrapped device lossy, in a reproducible way.
///
/// ```text
/// stack ──transmit──▶ FaultInjector ──▶ inner device      (FaultDirection::Tx)
/// stack ◀──receive─── FaultInjector ◀── inner device      (FaultDirection::Rx)
/// ```
///
/// While corruption is enabled the injector reports no checksum offload, so that the stack
/// writes real checksums and verifies them, and a flipped bit is caught where a real network
/// would catch it.
#[derive(Debug)]
pub struct FaultInjector<D> {
    inner: D,
    config: FaultConfig,
    tx: Faults,
    rx: Faults,
    /// Packets received from the inner device that have been through the faults and wait to
    /// be handed to the stack. Bounded: see [`FaultInjector::receive`].
    rx_ready: VecDeque<PacketBuf>,
    rx_ready_cap: usize,
}

impl<D: Device> FaultInjector<D> {
    /// Wraps `inner` with the faults of `config`, deciding from `seed`.
    pub fn new(inner: D, config: FaultConfig, seed: u64) -> Result<Self, FaultConfigError> {
        config.validate()?;
        let root = Rng::new(seed);
        // Each packet yields at most itself, a duplicate and a released reordered packet,
        // and at most `max_held` delayed packets fall due at once.
        let rx_ready_cap = config.max_held + 3;
        Ok(FaultInjector {
            inner,
            tx: Faults::new(root.fork(1), config.max_held),
            rx: Faults::new(root.fork(2), config.max_held),
            rx_ready: VecDeque::with_capacity(rx_ready_cap),
            rx_ready_cap,
            config,
        })
    }

    /// What the injector has done so far, both directions summed.
    pub fn fault_stats(&self) -> FaultStats {
        let mut s = self.tx.stats;
        s.add(&self.rx.stats);
        s
    }

    /// Packets currently held back (delayed or reordered), both directions.
    pub fn held(&self) -> usize {
        self.tx.held() + self.rx.held()
    }

    /// The configuration.
    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Gives back the wrapped device. Held packets are dropped (their buffers go back to the
    /// pool).
    pub fn into_inner(self) -> D {
        self.inner
    }

    fn applies_to_tx(&self) -> bool {
        matches!(
            self.config.direction,
            FaultDirection::Tx | FaultDirection::Both
        )
    }

    fn applies_to_rx(&self) -> bool {
        matches!(
            self.config.direction,
            FaultDirection::Rx | FaultDirection::Both
        )
    }

    /// Sends delayed transmit packets that have fallen due to the inner device. Their
    /// transmit errors, if any, are counted by the inner device.
    fn flush_tx(&mut self, now: Instant) {
        let inner = &mut self.inner;
        self.tx.release_due(now, |p| {
            let _ = inner.transmit(now, p);
        });
    }
}

impl<D: Device> Device for FaultInjector<D> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = self.inner.capabilities();
        if self.config.corrupt > 0.0 {
            caps.checksum_offload = ChecksumOffload::NONE;
        }
        // Corruption and truncation edit the packet's bytes, so they must all be in its
        // own buffer.
        caps.scatter_gather = false;
        caps
    }

    fn transmit(&mut self, now: Instant, packet: PacketBuf) -> Result<(), TxError> {
        self.flush_tx(now);
        if !self.applies_to_tx() || packet.len() > self.inner.capabilities().mtu {
            // An oversized packet is the inner device's to refuse and count.
            return self.inner.transmit(now, packet);
        }
        let inner = &mut self.inner;
        let mut result = Ok(());
        self.tx.process(&self.config, now, packet, |p| {
            let r = inner.transmit(now, p);
            result = result.and(r);
        });
        result
    }

    fn receive(&mut self, now: Instant) -> Option<PacketBuf> {
        self.flush_tx(now);
        if !self.applies_to_rx() {
            return self.inner.receive(now);
        }
        let mut overflow = 0;
        let (ready, cap) = (&mut self.rx_ready, self.rx_ready_cap);
        self.rx
            .release_due(now, |p| push_bounded(ready, cap, &mut overflow, p));
        let next = loop {
            if let Some(p) = self.rx_ready.pop_front() {
                break Some(p);
            }
            let Some(packet) = self.inner.receive(now) else {
                break None;
            };
            let (ready, cap) = (&mut self.rx_ready, self.rx_ready_cap);
            self.rx.process(&self.config, now, packet, |p| {
                push_bounded(ready, cap, &mut overflow, p)
            });
        };
        self.rx.stats.dropped += overflow;
        next
    }

    fn stats(&self) -> LinkStats {
        self.inner.stats()
    }

    fn poll_at(&self) -> Option<Instant> {
        let ready = (!self.rx_ready.is_empty()).then_some(Instant::ZERO);
        Instant::earliest(
            Instant::earliest(self.inner.poll_at(), self.tx.next_due()),
            Instant::earliest(self.rx.next_due(), ready),
        )
    }
}

/// Queues `p` unless the queue is at `cap`, in which case `p` is dropped and counted in
/// `overflow`. With the bound chosen in [`FaultInjector::new`] the queue never fills, but it
/// must never grow past its reserved capacity either: growing would allocate.
fn push_bounded(ready: &mut VecDeque<PacketBuf>, cap: usize, overflow: &mut u64, p: PacketBuf) {
    if ready.len() < cap {
        ready.push_back(p);
    } else {
        *overflow += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Loopback, LoopbackConfig};
    use loopstack_buf::{PacketPool, PoolConfig};

    fn pool() -> PacketPool {
        PacketPool::new(PoolConfig::default()).unwrap()
    }

    fn lossy(config: FaultConfig, seed: u64) -> FaultInjector<Loopback> {
        FaultInjector::new(Loopback::new(), config, seed).unwrap()
    }

    /// A packet numbered `i`: four bytes of big-endian sequence number.
    fn numbered(pool: &PacketPool, i: u32) -> PacketBuf {
        pool.alloc_from_slice(&i.to_be_bytes()).unwrap()
    }

    fn number(p: &[u8]) -> u32 {
        u32::from_be_bytes(p.try_into().unwrap())
    }

    /// Sends `n` numbered packets one microsecond apart, receiving after each send, then
    /// drains everything still held by advancing the clock a second. Returns the bytes of
    /// what arrived; the buffers go back to the pool at once, as a receiver's would.
    fn run(dev: &mut FaultInjector<Loopback>, pool: &PacketPool, n: u32) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for i in 0..n {
            let now = Instant::from_micros(u64::from(i));
            let _ = dev.transmit(now, numbered(pool, i));
            while let Some(p) = dev.receive(now) {
                out.push(p.to_vec());
            }
        }
        let end = Instant::from_secs(1);
        while let Some(p) = dev.receive(end) {
            out.push(p.to_vec());
        }
        assert_eq!(dev.held(), 0, "everything held was released");
        out
    }

    #[test]
    fn perfect_link_passes_everything_in_order() {
        let pool = pool();
        let mut dev = lossy(FaultConfig::default(), 1);
        let out = run(&mut dev, &pool, 100);
        let nums: Vec<u32> = out.iter().map(|p| number(p)).collect();
        assert_eq!(nums, (0..100).collect::<Vec<_>>());
        assert_eq!(dev.fault_stats().seen, 100);
        assert_eq!(dev.capabilities().checksum_offload, ChecksumOffload::FULL);
    }

    #[test]
    fn drop_rate_matches_and_nothing_else_is_lost() {
        let pool = pool();
        let mut dev = lossy(
            FaultConfig {
                drop: 0.1,
                ..FaultConfig::default()
            },
            7,
        );
        let out = run(&mut dev, &pool, 10_000);
        let s = dev.fault_stats();
        assert!((800..1200).contains(&s.dropped), "{s:?}");
        assert_eq!(out.len() as u64 + s.dropped, 10_000);
        // Survivors keep their order.
        assert!(out.windows(2).all(|w| number(&w[0]) < number(&w[1])));
        assert_eq!(pool.stats().in_use(), 0);
    }

    #[test]
    fn same_seed_same_decisions_other_seed_other_decisions() {
        let config = FaultConfig {
            drop: 0.1,
            duplicate: 0.1,
            reorder: 0.1,
            delay: 0.1,
            corrupt: 0.1,
            delay_jitter: Duration::from_millis(5),
            ..FaultConfig::default()
        };
        let pool = pool();
        let trace = |seed| {
            let mut dev = lossy(config.clone(), seed);
            let out = run(&mut dev, &pool, 2000);
            (out, dev.fault_stats())
        };
        let (a, sa) = trace(99);
        let (b, sb) = trace(99);
        let (c, sc) = trace(100);
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert_ne!(a, c);
        assert_ne!(sa, sc);
        for s in [sa, sc] {
            assert!(
                s.dropped > 0 && s.duplicated > 0 && s.reordered > 0,
                "{s:?}"
            );
            assert!(s.delayed > 0 && s.corrupted > 0, "{s:?}");
        }
    }

    #[test]
    fn duplicates_are_exact_copies() {
        let pool = pool();
        let mut dev = lossy(
            FaultConfig {
                duplicate: 1.0,
                ..FaultConfig::default()
            },
            3,
        );
        let out = run(&mut dev, &pool, 10);
        let nums: Vec<u32> = out.iter().map(|p| number(p)).collect();
        let expected: Vec<u32> = (0..10).flat_map(|i| [i, i]).collect();
        assert_eq!(nums, expected);
        assert_eq!(dev.fault_stats().duplicated, 10);
    }

    #[test]
    fn duplicate_without_a_free_buffer_is_skipped_not_fatal() {
        let pool = PacketPool::new(PoolConfig::single(64, 1)).unwrap();
        let mut dev = lossy(
            FaultConfig {
                duplicate: 1.0,
                ..FaultConfig::default()
            },
            3,
        );
        dev.transmit(Instant::ZERO, pool.alloc_from_slice(b"only").unwrap())
            .unwrap();
        assert_eq!(dev.receive(Instant::ZERO).unwrap().as_slice(), b"only");
        assert!(dev.receive(Instant::ZERO).is_none());
        assert_eq!(dev.fault_stats().skipped, 1);
    }

    #[test]
    fn corruption_flips_exactly_one_bit_and_disables_offload() {
        let pool = pool();
        let mut dev = lossy(
            FaultConfig {
                corrupt: 1.0,
                ..FaultConfig::default()
            },
            5,
        );
        assert_eq!(dev.capabilities().checksum_offload, ChecksumOffload::NONE);
        let original = [0u8; 32];
        for _ in 0..50 {
            dev.transmit(Instant::ZERO, pool.alloc_from_slice(&original).unwrap())
                .unwrap();
            let got = dev.receive(Instant::ZERO).unwrap();
            let flipped: u32 = got.iter().map(|b| b.count_ones()).sum();
            assert_eq!(flipped, 1);
        }
        assert_eq!(dev.fault_stats().corrupted, 50);
    }

    #[test]
    fn delay_holds_packets_until_due_in_stack_time() {
        let pool = pool();
        let mut dev = lossy(
            FaultConfig {
                delay: 1.0,
                delay_time: Duration::from_millis(10),
                ..FaultConfig::default()
            },
            1,
        );
        let t0 = Instant::from_millis(100);
        dev.transmit(t0, numbered(&pool, 1)).unwrap();
        dev.transmit(t0 + Duration::from_millis(1), numbered(&pool, 2))
            .unwrap();
        assert_eq!(dev.poll_at(), Some(Instant::from_millis(110)));
        assert!(dev.receive(Instant::from_millis(109)).is_none());
        let first = dev.receive(Instant::from_millis(110)).unwrap();
        assert_eq!(number(&first), 1);
        assert!(dev.receive(Instant::from_millis(110)).is_none());
        assert_eq!(dev.poll_at(), Some(Instant::from_millis(111)));
        assert_eq!(number(&dev.receive(Instant::from_millis(111)).unwrap()), 2);
        assert_eq!(dev.poll_at(), None);
        assert_eq!(dev.fault_stats().delayed, 2);
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let pool = pool();
        let mut dev = lossy(
            FaultConfig {
                delay: 1.0,
                delay_time: Duration::from_millis(10),
                delay_jitter: Duration::from_millis(5),
                ..FaultConfig::default()
            },
            11,
        );
        for i in 0..200 {
            dev.transmit(Instant::ZERO, numbered(&pool, i)).unwrap();
        }
        assert!(dev
            .receive(Instant::from_millis(10) - Duration::from_nanos(1))
            .is_none());
        let due = dev.poll_at().unwrap();
        assert!(due >= Instant::from_millis(10) && due <= Instant::from_millis(15));
        let mut n = 0;
        while dev.receive(Instant::from_millis(15)).is_some() {
            n += 1;
        }
        assert_eq!(n, 200);
    }

    #[test]
    fn reorder_swaps_with_the_next_packet() {
        let pool = pool();
        let mut dev = lossy(
            FaultConfig {
                reorder: 1.0,
                ..FaultConfig::default()
            },
            1,
        );
        // Every packet is chosen, but only one can be held at a time: 0 is held, 1 overtakes
        // it (releasing 0), 2 is held, 3 overtakes it...
        let nums: Vec<u32> = run(&mut dev, &pool, 6).iter().map(|p| number(p)).collect();
        assert_eq!(nums, vec![1, 0, 3, 2, 5, 4]);
        assert_eq!(dev.fault_stats().reordered, 3);
    }

    #[test]
    fn a_reordered_packet_is_released_after_the_hold_time() {
        let pool = pool();
        let mut dev = lossy(
            FaultConfig {
                reorder: 1.0,
                reorder_hold: Duration::from_millis(1),
                ..FaultConfig::default()
            },
            1,
        );
        dev.transmit(Instant::ZERO, numbered(&pool, 7)).unwrap();
        assert!(dev.receive(Instant::from_micros(999)).is_none());
        assert_eq!(dev.poll_at(), Some(Instant::from_millis(1)));
        assert_eq!(number(&dev.receive(Instant::from_millis(1)).unwrap()), 7);
    }

    #[test]
    fn held_packets_are_bounded() {
        let pool = pool();
        let mut dev = lossy(
            FaultConfig {
                delay: 1.0,
                max_held: 3,
                ..FaultConfig::default()
            },
            1,
        );
        for i in 0..5 {
            dev.transmit(Instant::ZERO, numbered(&pool, i)).unwrap();
        }
        assert_eq!(dev.held(), 3);
        // The two that found no room went straight through.
        let now: Vec<u32> = std::iter::from_fn(|| dev.receive(Instant::ZERO))
            .map(|p| number(&p))
            .collect();
        assert_eq!(now, vec![3, 4]);
        assert_eq!(dev.fault_stats().skipped, 2);
    }

    #[test]
    fn rx_direction_applies_on_receive() {
        let pool = pool();
        let mut dev = lossy(
            FaultConfig {
                drop: 0.5,
                direction: FaultDirection::Rx,
                ..FaultConfig::default()
            },
            21,
        );
        let out = run(&mut dev, &pool, 1000);
        let s = dev.fault_stats();
        assert!((400..600).contains(&s.dropped), "{s:?}");
        assert_eq!(out.len() as u64 + s.dropped, 1000);
        // Every packet crossed the inner device: the drops happened on the way up.
        assert_eq!(dev.stats().tx_packets, 1000);
        assert_eq!(dev.stats().rx_packets, 1000);
    }

    #[test]
    fn both_directions_draw_independently() {
        let pool = pool();
        let mut dev = lossy(
            FaultConfig {
                drop: 0.2,
                direction: FaultDirection::Both,
                ..FaultConfig::default()
            },
            4,
        );
        let out = run(&mut dev, &pool, 5000);
        let s = dev.fault_stats();
        assert_eq!(s.seen, 5000 + dev.stats().rx_packets);
        // Survival probability is 0.8 * 0.8 = 0.64.
        assert!((2900..3500).contains(&out.len()), "{}", out.len());
    }

    #[test]
    fn oversized_packets_reach_the_inner_device_untouched() {
        let pool = pool();
        let lo = Loopback::with_config(LoopbackConfig {
            mtu: 100,
            ..Default::default()
        })
        .unwrap();
        let mut dev = FaultInjector::new(
            lo,
            FaultConfig {
                delay: 1.0,
                ..Default::default()
            },
            1,
        )
        .unwrap();
        let err = dev
            .transmit(Instant::ZERO, pool.alloc_from_slice(&[0; 101]).unwrap())
            .unwrap_err();
        assert_eq!(err, TxError::TooLarge { len: 101, mtu: 100 });
        assert_eq!(dev.held(), 0);
    }

    #[test]
    fn queue_full_is_reported_through_the_injector() {
        let pool = pool();
        let lo = Loopback::with_config(LoopbackConfig {
            capacity: 1,
            ..Default::default()
        })
        .unwrap();
        let mut dev = FaultInjector::new(lo, FaultConfig::default(), 1).unwrap();
        dev.transmit(Instant::ZERO, numbered(&pool, 1)).unwrap();
        assert_eq!(
            dev.transmit(Instant::ZERO, numbered(&pool, 2)),
            Err(TxError::QueueFull { capacity: 1 })
        );
        assert_eq!(dev.stats().tx_dropped, 1);
    }

    #[test]
    fn bad_configs_are_rejected() {
        let bad = |c: FaultConfig| FaultInjector::new(Loopback::new(), c, 0).unwrap_err();
        assert!(matches!(
            bad(FaultConfig {
                drop: 1.5,
                ..Default::default()
            }),
            FaultConfigError::Probability { name: "drop", .. }
        ));
        assert!(matches!(
            bad(FaultConfig {
                corrupt: f64::NAN,
                ..Default::default()
            }),
            FaultConfigError::Probability {
                name: "corrupt",
                ..
            }
        ));
        assert_eq!(
            bad(FaultConfig {
                max_held: 0,
                ..Default::default()
            }),
            FaultConfigError::ZeroHeld
        );
    }
}
