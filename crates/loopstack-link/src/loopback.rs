//! `lo`: the loopback device. What is transmitted is received, in order, by the same stack.

use std::collections::VecDeque;

use loopstack_buf::PacketBuf;
use thiserror::Error;

use crate::device::{ChecksumOffload, Device, DeviceCapabilities, LinkStats, Medium, TxError};
use crate::time::Instant;

/// How a [`Loopback`] is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopbackConfig {
    /// Interface name. Default `lo`.
    pub name: String,
    /// Largest IP packet carried. Default 65536, Linux's MTU for `lo` since 3.6.
    pub mtu: usize,
    /// Packets the ring holds before transmit drops. Default 1000, Linux's default
    /// `txqueuelen`.
    pub capacity: usize,
}

impl LoopbackConfig {
    /// Linux's `lo` MTU.
    pub const DEFAULT_MTU: usize = 65536;
    /// Linux's default `txqueuelen`.
    pub const DEFAULT_CAPACITY: usize = 1000;
    /// The smallest MTU an IPv4 link may have (RFC 791: every host must accept 68-byte
    /// datagrams without fragmentation).
    pub const MIN_MTU: usize = 68;
}

impl Default for LoopbackConfig {
    fn default() -> Self {
        LoopbackConfig {
            name: "lo".to_owned(),
            mtu: Self::DEFAULT_MTU,
            capacity: Self::DEFAULT_CAPACITY,
        }
    }
}

/// Why a [`LoopbackConfig`] was rejected.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoopbackConfigError {
    /// The ring must hold at least one packet.
    #[error("the loopback ring needs a capacity of at least 1 packet")]
    ZeroCapacity,
    /// The MTU is below what IPv4 requires of every link.
    #[error("MTU {0} is below the IPv4 minimum of 68 bytes")]
    MtuTooSmall(usize),
    /// The interface needs a name.
    #[error("the interface needs a name")]
    EmptyName,
}

/// The loopback device: a bounded ring of packet handles.
///
/// Transmitting moves the handle into the ring; receiving moves it out. The packet's bytes
/// never move, and the ring never grows: its slots are allocated once, when the device is
/// built. A transmit onto a full ring drops the packet and counts it in `tx_dropped`, as
/// Linux's `lo` does when its backlog is full.
#[derive(Debug)]
pub struct Loopback {
    name: String,
    mtu: usize,
    capacity: usize,
    ring: VecDeque<PacketBuf>,
    stats: LinkStats,
}

impl Loopback {
    /// `lo` with Linux's defaults: MTU 65536, 1000 packets.
    pub fn new() -> Self {
        Self::with_config(LoopbackConfig::default()).expect("the default config is valid")
    }

    /// A loopback device with the given name, MTU and ring capacity.
    pub fn with_config(config: LoopbackConfig) -> Result<Self, LoopbackConfigError> {
        if config.capacity == 0 {
            return Err(LoopbackConfigError::ZeroCapacity);
        }
        if config.mtu < LoopbackConfig::MIN_MTU {
            return Err(LoopbackConfigError::MtuTooSmall(config.mtu));
        }
        if config.name.is_empty() {
            return Err(LoopbackConfigError::EmptyName);
        }
        Ok(Loopback {
            name: config.name,
            mtu: config.mtu,
            capacity: config.capacity,
            ring: VecDeque::with_capacity(config.capacity),
            stats: LinkStats::default(),
        })
    }

    /// Packets waiting in the ring.
    pub fn queued(&self) -> usize {
        self.ring.len()
    }

    /// Ring capacity in packets.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Default for Loopback {
    fn default() -> Self {
        Self::new()
    }
}

impl Device for Loopback {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities {
            mtu: self.mtu,
            medium: Medium::Ip,
            // Nothing on `lo` can damage a packet, so checksums may be skipped both ways.
            checksum_offload: ChecksumOffload::FULL,
            // The ring moves handles; nothing here reads a byte of the packet.
            scatter_gather: true,
        }
    }

    fn transmit(&mut self, _now: Instant, packet: PacketBuf) -> Result<(), TxError> {
        if packet.len() > self.mtu {
            self.stats.tx_errors += 1;
            return Err(TxError::TooLarge {
                len: packet.len(),
                mtu: self.mtu,
            });
        }
        if self.ring.len() >= self.capacity {
            self.stats.tx_dropped += 1;
            return Err(TxError::QueueFull {
                capacity: self.capacity,
            });
        }
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += packet.len() as u64;
        self.ring.push_back(packet);
        Ok(())
    }

    fn receive(&mut self, _now: Instant) -> Option<PacketBuf> {
        let packet = self.ring.pop_front()?;
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += packet.len() as u64;
        Some(packet)
    }

    fn stats(&self) -> LinkStats {
        self.stats
    }

    fn poll_at(&self) -> Option<Instant> {
        // Queued packets are ready at once.
        (!self.ring.is_empty()).then_some(Instant::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopstack_buf::{PacketPool, PoolConfig};

    fn pool() -> PacketPool {
        PacketPool::new(PoolConfig::default()).unwrap()
    }

    #[test]
    fn defaults_match_linux() {
        let lo = Loopback::new();
        assert_eq!(lo.name(), "lo");
        assert_eq!(lo.capabilities().mtu, 65536);
        assert_eq!(lo.capacity(), 1000);
        assert_eq!(lo.capabilities().checksum_offload, ChecksumOffload::FULL);
        assert_eq!(lo.poll_at(), None);
    }

    #[test]
    fn packets_come_back_in_order_and_are_counted() {
        let pool = pool();
        let mut lo = Loopback::new();
        let t = Instant::ZERO;
        for i in 0..5u8 {
            lo.transmit(t, pool.alloc_from_slice(&[i; 10]).unwrap())
                .unwrap();
        }
        assert_eq!(lo.queued(), 5);
        assert_eq!(lo.poll_at(), Some(Instant::ZERO));
        for i in 0..5u8 {
            assert_eq!(lo.receive(t).unwrap().as_slice(), &[i; 10]);
        }
        assert!(lo.receive(t).is_none());
        let s = lo.stats();
        assert_eq!(
            (s.tx_packets, s.tx_bytes, s.rx_packets, s.rx_bytes),
            (5, 50, 5, 50)
        );
        assert_eq!(pool.stats().in_use(), 0);
    }

    #[test]
    fn full_ring_drops_and_counts() {
        let pool = pool();
        let mut lo = Loopback::with_config(LoopbackConfig {
            capacity: 2,
            ..LoopbackConfig::default()
        })
        .unwrap();
        let t = Instant::ZERO;
        lo.transmit(t, pool.alloc_from_slice(b"a").unwrap())
            .unwrap();
        lo.transmit(t, pool.alloc_from_slice(b"b").unwrap())
            .unwrap();
        assert_eq!(
            lo.transmit(t, pool.alloc_from_slice(b"c").unwrap()),
            Err(TxError::QueueFull { capacity: 2 })
        );
        // The dropped packet's buffer is back in the pool already.
        assert_eq!(pool.stats().in_use(), 2);
        let s = lo.stats();
        assert_eq!((s.tx_packets, s.tx_dropped), (2, 1));
        assert_eq!(lo.receive(t).unwrap().as_slice(), b"a");
        lo.transmit(t, pool.alloc_from_slice(b"d").unwrap())
            .unwrap();
        assert_eq!(lo.receive(t).unwrap().as_slice(), b"b");
        assert_eq!(lo.receive(t).unwrap().as_slice(), b"d");
    }

    #[test]
    fn oversized_packet_is_refused() {
        let pool = pool();
        let mut lo = Loopback::with_config(LoopbackConfig {
            mtu: 1500,
            ..LoopbackConfig::default()
        })
        .unwrap();
        let big = pool.alloc_from_slice(&[0; 1501]).unwrap();
        assert_eq!(
            lo.transmit(Instant::ZERO, big),
            Err(TxError::TooLarge {
                len: 1501,
                mtu: 1500
            })
        );
        assert_eq!(lo.stats().tx_errors, 1);
        assert_eq!(lo.queued(), 0);
        let exact = pool.alloc_from_slice(&[0; 1500]).unwrap();
        lo.transmit(Instant::ZERO, exact).unwrap();
    }

    #[test]
    fn a_full_size_packet_fits_at_the_default_mtu() {
        let pool = pool();
        let mut lo = Loopback::new();
        let p = pool.alloc_from_slice(&[7; 65536]).unwrap();
        lo.transmit(Instant::ZERO, p).unwrap();
        assert_eq!(lo.receive(Instant::ZERO).unwrap().len(), 65536);
    }

    #[test]
    fn bad_configs_are_rejected() {
        let bad = |c: LoopbackConfig| Loopback::with_config(c).unwrap_err();
        assert_eq!(
            bad(LoopbackConfig {
                capacity: 0,
                ..Default::default()
            }),
            LoopbackConfigError::ZeroCapacity
        );
        assert_eq!(
            bad(LoopbackConfig {
                mtu: 67,
                ..Default::default()
            }),
            LoopbackConfigError::MtuTooSmall(67)
        );
        assert_eq!(
            bad(LoopbackConfig {
                name: String::new(),
                ..Default::default()
            }),
            LoopbackConfigError::EmptyName
        );
    }
}
