//! The `Device` trait that every link (and every middleware around a link) implements.

use std::fmt;

use loopstack_buf::PacketBuf;
use thiserror::Error;

use crate::time::Instant;

/// What a device carries at its lowest layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Medium {
    /// Bare IP packets, no link header: loopback and TUN. The first nibble of each packet is
    /// the IP version.
    Ip,
}

/// Which checksum work a device takes off the stack's hands, like a NIC's offload features.
///
/// On Linux's `lo`, a packet never leaves memory, so the kernel neither fills nor checks
/// transport checksums (`CHECKSUM_PARTIAL` on transmit, `CHECKSUM_UNNECESSARY` on receive).
/// Middleware that shows packets to the outside world (a pcap capture) or that damages them
/// on purpose (the fault injector's corruption) turns the offload off, so captured packets
/// carry correct checksums and corrupted ones are caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ChecksumOffload {
    /// The stack may leave checksums unfilled in packets it transmits on this device.
    pub tx: bool,
    /// The stack may skip verifying checksums of packets received from this device.
    pub rx: bool,
}

impl ChecksumOffload {
    /// No offload: compute on transmit, verify on receive.
    pub const NONE: ChecksumOffload = ChecksumOffload {
        tx: false,
        rx: false,
    };
    /// Full offload, as on a loopback device.
    pub const FULL: ChecksumOffload = ChecksumOffload { tx: true, rx: true };
}

/// What the layer above needs to know about a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceCapabilities {
    /// Largest packet the device carries, in bytes, link header excluded (so for
    /// [`Medium::Ip`] this is the largest IP packet).
    pub mtu: usize,
    /// What the device carries.
    pub medium: Medium,
    /// Checksum work the stack may skip.
    pub checksum_offload: ChecksumOffload,
    /// Whether the device carries a packet whose last bytes are an attached fragment
    /// (`PacketBuf::attach`) as it is, Linux's `NETIF_F_SG`. Only a device that moves packet
    /// handles without reading their bytes can: `lo`. A capture, a fault injector or a TUN
    /// reads or writes the bytes, says no, and is handed packets in one piece.
    pub scatter_gather: bool,
}

/// Interface counters, as Linux keeps them for `ip -s link` (`struct rtnl_link_stats64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LinkStats {
    /// Packets delivered up by the device.
    pub rx_packets: u64,
    /// Bytes delivered up by the device.
    pub rx_bytes: u64,
    /// Packets that arrived damaged or could not be read.
    pub rx_errors: u64,
    /// Packets that arrived but were dropped (no buffer to hold them).
    pub rx_dropped: u64,
    /// Packets accepted for transmission.
    pub tx_packets: u64,
    /// Bytes accepted for transmission.
    pub tx_bytes: u64,
    /// Packets refused by the device (over the MTU, write failure).
    pub tx_errors: u64,
    /// Packets dropped on transmit because the queue was full.
    pub tx_dropped: u64,
}

impl fmt::Display for LinkStats {
    /// The statistics block of `ip -s link show`, in Linux's layout.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "    RX:  bytes packets errors dropped  missed   mcast")?;
        writeln!(
            f,
            "    {:>10} {:>7} {:>6} {:>7} {:>7} {:>7}",
            self.rx_bytes, self.rx_packets, self.rx_errors, self.rx_dropped, 0, 0
        )?;
        writeln!(f, "    TX:  bytes packets errors dropped carrier collsns")?;
        write!(
            f,
            "    {:>10} {:>7} {:>6} {:>7} {:>7} {:>7}",
            self.tx_bytes, self.tx_packets, self.tx_errors, self.tx_dropped, 0, 0
        )
    }
}

/// Why a device did not transmit a packet. The packet has been dropped (its buffer is back
/// in the pool) and the drop is counted in the device's [`LinkStats`].
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TxError {
    /// The packet is larger than the device's MTU (counted in `tx_errors`). The IP layer
    /// fragments or answers "fragmentation needed" before it gets here.
    #[error("a {len}-byte packet exceeds the device MTU of {mtu} bytes")]
    TooLarge {
        /// Packet length.
        len: usize,
        /// Device MTU.
        mtu: usize,
    },
    /// The transmit queue is full (counted in `tx_dropped`): back-pressure, as on Linux when
    /// a device's `txqueuelen` is reached.
    #[error("transmit queue full ({capacity} packets), packet dropped")]
    QueueFull {
        /// Queue capacity.
        capacity: usize,
    },
    /// The device failed to write the packet (counted in `tx_errors`).
    #[error("device write failed: {0}")]
    Io(std::io::ErrorKind),
}

/// A network device: somewhere to send IP packets and somewhere they come from.
///
/// A device is driven, never driving: the stack calls [`transmit`](Device::transmit) and
/// [`receive`](Device::receive) with the current time, and asks
/// [`poll_at`](Device::poll_at) when it next needs to come back. Middleware (pcap capture,
/// fault injection, tracing) implements `Device` by wrapping another `Device`, so any number
/// of them stack up around the real link.
pub trait Device {
    /// The interface name, e.g. `lo`.
    fn name(&self) -> &str;

    /// MTU, medium and checksum offload.
    fn capabilities(&self) -> DeviceCapabilities;

    /// Hands a packet to the device. The device takes ownership either way: on error the
    /// packet is dropped and counted.
    fn transmit(&mut self, now: Instant, packet: PacketBuf) -> Result<(), TxError>;

    /// The next packet the device has for the stack, if any.
    fn receive(&mut self, now: Instant) -> Option<PacketBuf>;

    /// Interface counters of the underlying link.
    fn stats(&self) -> LinkStats;

    /// The earliest time at which the device will have something to do even if nothing is
    /// transmitted: a delayed packet falling due, say. `None` means "not until called".
    /// A time at or before `now` means "call [`receive`](Device::receive) now".
    fn poll_at(&self) -> Option<Instant> {
        None
    }
}

/// How a thread sleeps until a device whose packets come from outside the process (a TUN)
/// has one for [`Device::receive`].
///
/// A device driven by the stack itself (`lo`) never needs one: every packet it holds was put
/// there by a call that polls the stack anyway. A device fed by the kernel does: in blocking
/// mode nobody may call into the stack for a long time, and the packet must still be
/// received, answered and handed to a waiting socket. The blocking layer gives each such
/// device a thread that loops on [`wait`](RxSignal::wait) and polls the stack when it
/// returns, so the device is read as soon as it has something and never polled in a busy
/// loop.
///
/// Readiness is level-triggered (like `poll(2)`): `wait` returns at once while packets are
/// waiting, so whoever calls it must drain the device (the stack's `poll` does) before
/// waiting again.
pub trait RxSignal: Send + 'static {
    /// Blocks until the device may have a packet to receive, or until the function returned
    /// by [`interrupter`](RxSignal::interrupter) was called. Spurious returns are allowed.
    ///
    /// # Errors
    /// The underlying wait failed (for a TUN, `poll(2)`); the caller stops waiting on it.
    fn wait(&mut self) -> std::io::Result<()>;

    /// A function that makes a current or future [`wait`](RxSignal::wait) return at once,
    /// from any thread: how the owner of the waiting thread stops it.
    fn interrupter(&self) -> Box<dyn Fn() + Send + Sync>;
}

impl<D: Device + ?Sized> Device for Box<D> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> DeviceCapabilities {
        (**self).capabilities()
    }
    fn transmit(&mut self, now: Instant, packet: PacketBuf) -> Result<(), TxError> {
        (**self).transmit(now, packet)
    }
    fn receive(&mut self, now: Instant) -> Option<PacketBuf> {
        (**self).receive(now)
    }
    fn stats(&self) -> LinkStats {
        (**self).stats()
    }
    fn poll_at(&self) -> Option<Instant> {
        (**self).poll_at()
    }
}

impl<D: Device + ?Sized> Device for &mut D {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capabilities(&self) -> DeviceCapabilities {
        (**self).capabilities()
    }
    fn transmit(&mut self, now: Instant, packet: PacketBuf) -> Result<(), TxError> {
        (**self).transmit(now, packet)
    }
    fn receive(&mut self, now: Instant) -> Option<PacketBuf> {
        (**self).receive(now)
    }
    fn stats(&self) -> LinkStats {
        (**self).stats()
    }
    fn poll_at(&self) -> Option<Instant> {
        (**self).poll_at()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_render_like_ip_s_link() {
        let s = LinkStats {
            rx_packets: 3,
            rx_bytes: 180,
            tx_packets: 4,
            tx_bytes: 240,
            tx_dropped: 1,
            ..LinkStats::default()
        };
        let text = s.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].contains("RX:  bytes packets errors dropped"));
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["180", "3", "0", "0", "0", "0"]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["240", "4", "0", "1", "0", "0"]
        );
    }
}
