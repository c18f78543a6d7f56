//! Packet capture middleware: writes every packet crossing a device to a classic pcap file.
//!
//! The format is the original libpcap one (not pcapng), which every tool reads:
//!
//! ```text
//! global header (24 bytes, once)
//!   magic 0xa1b2c3d4 | version 2.4 | thiszone 0 | sigfigs 0 | snaplen | linktype
//! per packet
//!   ts_sec | ts_usec | captured length | original length | the packet's bytes
//! ```
//!
//! All fields are written little-endian; readers tell the byte order from the magic number.
//! The link type is `LINKTYPE_RAW` (101): each record starts directly with an IPv4 or IPv6
//! header, which is what a [`Medium::Ip`](crate::Medium::Ip) device carries. Timestamps come
//! from the stack's clock, not the wall clock, so a simulated run writes the same file every
//! time.

use std::io::{self, Write};
use std::time::Duration;

use loopstack_buf::PacketBuf;

use crate::device::{Device, DeviceCapabilities, LinkStats, TxError};
use crate::time::Instant;

/// `LINKTYPE_RAW`: raw IPv4 or IPv6, no link header (tcpdump.org link-layer header types).
pub const LINKTYPE_RAW: u32 = 101;

/// Largest number of bytes saved per packet. 262144 is what tcpdump and Wireshark use by
/// default, and it is above the largest loopback packet (65536 bytes), so no packet is cut.
pub const SNAPLEN: u32 = 262_144;

/// Magic number of a pcap file with microsecond timestamps.
const MAGIC_MICROS: u32 = 0xa1b2_c3d4;

/// Which directions a [`PcapWriter`] captures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PcapMode {
    /// Packets transmitted and packets received. On a point-to-point device (a TUN) this is
    /// the whole conversation.
    Both,
    /// Only packets transmitted.
    ///
    /// On a loopback device every packet is transmitted and then received, so capturing both
    /// ways would record each packet twice. `tcpdump -i lo` shows each packet once, and
    /// `TxOnly` around a `Loopback` gives the same view.
    TxOnly,
    /// Only packets received.
    RxOnly,
}

/// Middleware that records every packet crossing the wrapped device into a pcap stream.
///
/// Because a capture shows packets to the outside world, this wrapper turns off transmit
/// checksum offload in the capabilities it reports: the stack then fills in every checksum,
/// and Wireshark shows none as wrong.
///
/// A failed write (a full disk, a closed pipe) never fails the packet: the packet still
/// goes through, and the failure is counted in [`write_errors`](Self::write_errors).
#[derive(Debug)]
pub struct PcapWriter<D, W: Write> {
    inner: D,
    sink: W,
    mode: PcapMode,
    clock_offset: Duration,
    packets_written: u64,
    write_errors: u64,
}

impl<D: Device, W: Write> PcapWriter<D, W> {
    /// Wraps `inner`, writing the pcap global header to `sink` at once. Fails only if that
    /// header cannot be written.
    pub fn new(inner: D, mut sink: W, mode: PcapMode) -> io::Result<Self> {
        let mut header = [0u8; 24];
        header[0..4].copy_from_slice(&MAGIC_MICROS.to_le_bytes());
        header[4..6].copy_from_slice(&2u16.to_le_bytes()); // version major
        header[6..8].copy_from_slice(&4u16.to_le_bytes()); // version minor
                                                           // thiszone (8..12) and sigfigs (12..16) stay zero: timestamps are plain UTC-based.
        header[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        header[20..24].copy_from_slice(&LINKTYPE_RAW.to_le_bytes());
        sink.write_all(&header)?;
        Ok(PcapWriter {
            inner,
            sink,
            mode,
            clock_offset: Duration::ZERO,
            packets_written: 0,
            write_errors: 0,
        })
    }

    /// Adds `offset` to every timestamp written from now on.
    ///
    /// By default a record's timestamp is the stack's `now`, so a simulated run starting at
    /// zero shows times from 1970-01-01 and gives the same file every time. A stack driven by
    /// the real clock can pass the wall-clock time at which its clock read zero (time since
    /// the Unix epoch), and the capture then shows real dates.
    pub fn set_clock_offset(&mut self, offset: Duration) {
        self.clock_offset = offset;
    }

    fn record(&mut self, now: Instant, packet: &[u8]) {
        let micros = (now + self.clock_offset).as_micros();
        // Classic pcap stores seconds in 32 bits: fine until 2106 on a real clock, and a
        // simulated clock starts at zero.
        let secs = u32::try_from(micros / 1_000_000).unwrap_or(u32::MAX);
        let usecs = (micros % 1_000_000) as u32;
        let orig_len = u32::try_from(packet.len()).unwrap_or(u32::MAX);
        let incl_len = orig_len.min(SNAPLEN);
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&secs.to_le_bytes());
        header[4..8].copy_from_slice(&usecs.to_le_bytes());
        header[8..12].copy_from_slice(&incl_len.to_le_bytes());
        header[12..16].copy_from_slice(&orig_len.to_le_bytes());
        let result = self
            .sink
            .write_all(&header)
            .and_then(|()| self.sink.write_all(&packet[..incl_len as usize]));
        match result {
            Ok(()) => self.packets_written += 1,
            Err(_) => self.write_errors += 1,
        }
    }

    /// Flushes buffered records to the underlying sink.
    pub fn flush(&mut self) -> io::Result<()> {
        self.sink.flush()
    }

    /// Packets recorded so far.
    pub fn packets_written(&self) -> u64 {
        self.packets_written
    }

    /// Records that could not be written.
    pub fn write_errors(&self) -> u64 {
        self.write_errors
    }

    /// The capture mode.
    pub fn mode(&self) -> PcapMode {
        self.mode
    }

    /// The wrapped device.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The wrapped device, mutably.
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// The sink records are written to.
    pub fn sink(&self) -> &W {
        &self.sink
    }

    /// Flushes and gives back the wrapped device and the sink.
    pub fn into_inner(mut self) -> (D, W) {
        if self.sink.flush().is_err() {
            self.write_errors += 1;
        }
        (self.inner, self.sink)
    }
}

impl<D: Device, W: Write> Device for PcapWriter<D, W> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = self.inner.capabilities();
        // Captured packets must carry correct checksums.
        caps.checksum_offload.tx = false;
        // And a record is the packet's bytes in one piece.
        caps.scatter_gather = false;
        caps
    }

    fn transmit(&mut self, now: Instant, packet: PacketBuf) -> Result<(), TxError> {
        // Record what the stack handed to the device, before the device can refuse it: a
        // refused packet was still sent by the stack, as tcpdump shows on Linux.
        if matches!(self.mode, PcapMode::Both | PcapMode::TxOnly) {
            self.record(now, &packet);
        }
        self.inner.transmit(now, packet)
    }

    fn receive(&mut self, now: Instant) -> Option<PacketBuf> {
        let packet = self.inner.receive(now)?;
        if matches!(self.mode, PcapMode::Both | PcapMode::RxOnly) {
            self.record(now, &packet);
        }
        Some(packet)
    }

    fn stats(&self) -> LinkStats {
        self.inner.stats()
    }

    fn poll_at(&self) -> Option<Instant> {
        self.inner.poll_at()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Loopback;
    use loopstack_buf::{PacketPool, PoolConfig};

    /// Parses a classic little-endian pcap file into (link type, records of (ts_sec,
    /// ts_usec, orig_len, bytes)). Independent of the writer: it follows the format spec.
    #[allow(clippy::type_complexity)]
    pub(crate) fn parse(file: &[u8]) -> (u32, Vec<(u32, u32, u32, Vec<u8>)>) {
        let u32_at = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        assert_eq!(u32_at(file, 0), 0xa1b2c3d4, "magic");
        assert_eq!(u16::from_le_bytes([file[4], file[5]]), 2);
        assert_eq!(u16::from_le_bytes([file[6], file[7]]), 4);
        let linktype = u32_at(file, 20);
        let mut records = Vec::new();
        let mut i = 24;
        while i < file.len() {
            let (sec, usec, incl, orig) = (
                u32_at(file, i),
                u32_at(file, i + 4),
                u32_at(file, i + 8),
                u32_at(file, i + 12),
            );
            let data = file[i + 16..i + 16 + incl as usize].to_vec();
            records.push((sec, usec, orig, data));
            i += 16 + incl as usize;
        }
        assert_eq!(i, file.len(), "no trailing garbage");
        (linktype, records)
    }

    fn pool() -> PacketPool {
        PacketPool::new(PoolConfig::default()).unwrap()
    }

    #[test]
    fn records_round_trip_with_stack_timestamps() {
        let pool = pool();
        let mut dev = PcapWriter::new(Loopback::new(), Vec::new(), PcapMode::TxOnly).unwrap();
        let t1 = Instant::from_micros(1_500_002);
        dev.transmit(t1, pool.alloc_from_slice(&[0x45, 1, 2]).unwrap())
            .unwrap();
        dev.transmit(
            Instant::from_secs(3),
            pool.alloc_from_slice(&[0x60; 70_000][..65536]).unwrap(),
        )
        .unwrap();
        while dev.receive(Instant::from_secs(4)).is_some() {}
        assert_eq!(dev.packets_written(), 2);
        let (_, file) = dev.into_inner();
        let (linktype, records) = parse(&file);
        assert_eq!(linktype, LINKTYPE_RAW);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0], (1, 500_002, 3, vec![0x45, 1, 2]));
        assert_eq!((records[1].0, records[1].1, records[1].2), (3, 0, 65536));
        assert_eq!(records[1].3.len(), 65536);
    }

    #[test]
    fn clock_offset_shifts_timestamps() {
        let pool = pool();
        let mut dev = PcapWriter::new(Loopback::new(), Vec::new(), PcapMode::TxOnly).unwrap();
        // 2026-11-21T00:00:00Z, as a real-time stack would pass it.
        dev.set_clock_offset(Duration::from_secs(1_795_219_200));
        dev.transmit(
            Instant::from_micros(250),
            pool.alloc_from_slice(&[0x45]).unwrap(),
        )
        .unwrap();
        let (_, records) = parse(dev.sink());
        assert_eq!((records[0].0, records[0].1), (1_795_219_200, 250));
    }

    #[test]
    fn modes_select_directions() {
        let pool = pool();
        for (mode, expected) in [
            (PcapMode::Both, 2),
            (PcapMode::TxOnly, 1),
            (PcapMode::RxOnly, 1),
        ] {
            let mut dev = PcapWriter::new(Loopback::new(), Vec::new(), mode).unwrap();
            dev.transmit(Instant::ZERO, pool.alloc_from_slice(b"E").unwrap())
                .unwrap();
            assert!(dev.receive(Instant::ZERO).is_some());
            assert_eq!(dev.packets_written(), expected, "{mode:?}");
            assert_eq!(parse(dev.sink()).1.len(), expected as usize);
        }
    }

    #[test]
    fn capture_turns_off_tx_checksum_offload() {
        let dev = PcapWriter::new(Loopback::new(), Vec::new(), PcapMode::TxOnly).unwrap();
        let caps = dev.capabilities();
        assert!(!caps.checksum_offload.tx);
        assert!(caps.checksum_offload.rx);
        assert_eq!(caps.mtu, 65536);
    }

    /// A sink that accepts the global header and then fails every write.
    struct FailAfter(usize);
    impl Write for FailAfter {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk full"));
            }
            let n = buf.len().min(self.0);
            self.0 -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_failures_are_counted_and_traffic_flows() {
        let pool = pool();
        let mut dev = PcapWriter::new(Loopback::new(), FailAfter(24), PcapMode::Both).unwrap();
        dev.transmit(Instant::ZERO, pool.alloc_from_slice(b"abc").unwrap())
            .unwrap();
        assert_eq!(dev.receive(Instant::ZERO).unwrap().as_slice(), b"abc");
        assert_eq!(dev.write_errors(), 2);
        assert_eq!(dev.packets_written(), 0);
        assert!(PcapWriter::new(Loopback::new(), FailAfter(0), PcapMode::Both).is_err());
    }

    #[test]
    fn refused_packets_are_still_captured() {
        let pool = pool();
        let lo = Loopback::with_config(crate::LoopbackConfig {
            mtu: 100,
            ..Default::default()
        })
        .unwrap();
        let mut dev = PcapWriter::new(lo, Vec::new(), PcapMode::TxOnly).unwrap();
        let big = pool.alloc_from_slice(&[0x45; 101]).unwrap();
        assert!(dev.transmit(Instant::ZERO, big).is_err());
        assert_eq!(dev.packets_written(), 1);
        assert_eq!(dev.stats().tx_errors, 1);
    }
}
