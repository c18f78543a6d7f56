//! TCP payloads shared between the send buffer and the packet in flight, instead of copied
//! (`PacketBuf::attach`, `SendBuffer::share_at`): the bytes arrive intact on plain `lo`, when
//! `lo`'s ring drops packets (out-of-order arrival, retransmission), and through a capture,
//! which must see every packet whole.

use std::net::SocketAddr;
use std::time::Duration;

use loopstack_link::{Instant, Loopback, LoopbackConfig, PcapMode, PcapWriter};
use loopstack_socket::{BoxedDevice, Stack, StackConfig};
use loopstack_testkit::SharedBuf;
use loopstack_transport::tcp::TcpHandle;

const CHUNK: usize = 64 * 1024;

/// Byte `i` of the stream.
fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) % 253) as u8
}

/// A connected pair on `s` to `server`.
fn connect(s: &mut Stack, now: Instant, server: SocketAddr) -> (TcpHandle, TcpHandle) {
    let l = s.tcp_listen(server, 4).unwrap();
    let c = s.tcp_connect(now, server).unwrap();
    for _ in 0..100 {
        s.poll(now);
        if let Ok((a, _)) = s.tcp().accept(l) {
            return (c, a);
        }
    }
    panic!("no connection");
}

/// Sends `chunks` × 64 KiB from `c` to `a` in 64 KiB writes and reads, checking every byte;
/// returns the simulated time it took.
fn transfer(s: &mut Stack, c: TcpHandle, a: TcpHandle, chunks: usize) -> Duration {
    let total = chunks * CHUNK;
    let data: Vec<u8> = (0..total).map(pattern).collect();
    let mut buf = vec![0u8; CHUNK];
    let (mut sent, mut got) = (0, 0);
    let start = Instant::from_secs(1);
    let mut now = start;
    while got < total {
        // As much as the send buffer takes, at most a chunk per write.
        while sent < total {
            let end = (sent + CHUNK - sent % CHUNK).min(total);
            match s.tcp().send(c, &data[sent..end]) {
                Ok(n) => sent += n,
                Err(_) => break,
            }
        }
        s.poll(now);
        while let Ok(n) = s.tcp().recv(a, &mut buf) {
            assert!(n > 0, "early end of file");
            assert!(
                buf[..n] == data[got..got + n],
                "bytes {got}..{} differ",
                got + n
            );
            got += n;
        }
        now += Duration::from_millis(1);
        assert!(now < start + Duration::from_secs(600), "stalled at {got}");
    }
    now.saturating_duration_since(start)
}

fn small_buffers() -> StackConfig {
    let mut config = StackConfig::default();
    config.transport.tcp.send_buffer = CHUNK;
    config.transport.tcp.recv_buffer = CHUNK;
    config
}

fn servers() -> [SocketAddr; 2] {
    [
        "127.0.0.1:7100".parse().unwrap(),
        "[::1]:7100".parse().unwrap(),
    ]
}

/// Buffers of the pool's largest class handed out so far.
fn large_allocations(s: &Stack) -> u64 {
    s.pool().stats().classes.last().unwrap().allocated
}

#[test]
fn full_segments_on_lo_carry_the_send_buffer_without_a_copy() {
    for server in servers() {
        let mut s = Stack::new(small_buffers()).unwrap();
        let (c, a) = connect(&mut s, Instant::ZERO, server);
        let before = large_allocations(&s);
        transfer(&mut s, c, a, 64);
        let segments = s.tcp().info(c).unwrap().stats.segs_out;
        let large = large_allocations(&s) - before;
        // Every 64 KiB chunk goes as one full segment and a short one. Copied, each full
        // segment would take a large pool buffer; shared, only its header is in a buffer
        // of the pool's own (a small one).
        assert!(segments >= 128, "{segments} segments");
        assert_eq!(
            large, 0,
            "{server}: {large} large buffers for {segments} segments"
        );
        assert_eq!(s.pool().stats().in_use(), 0, "{server}: buffers left out");
    }
}

#[test]
fn shared_payloads_survive_a_ring_that_drops() {
    for server in servers() {
        // A ring of three packets: a full window's burst overflows it, so segments are
        // lost, arrive after a gap (the out-of-order queue holds shared payloads) and are
        // sent again from the send buffer's blocks.
        let lo = Loopback::with_config(LoopbackConfig {
            capacity: 3,
            ..LoopbackConfig::default()
        })
        .unwrap();
        let mut config = StackConfig::default();
        config.transport.tcp.send_buffer = 4 * CHUNK;
        config.transport.tcp.recv_buffer = 4 * CHUNK;
        let mut s = Stack::with_loopback(config, Box::new(lo)).unwrap();
        let (c, a) = connect(&mut s, Instant::ZERO, server);
        transfer(&mut s, c, a, 48);
        let stats = s.tcp().info(c).unwrap().stats;
        assert!(
            stats.retrans_segs > 0,
            "{server}: nothing was lost: {stats:?}"
        );
        let dropped = s
            .device(loopstack_internet::iface::InterfaceId::LOOPBACK)
            .unwrap()
            .stats();
        assert!(dropped.tx_dropped > 0, "{server}: {dropped:?}");
    }
}

#[test]
fn a_capture_sees_every_packet_whole() {
    for server in servers() {
        let sink = SharedBuf::default();
        let lo = Loopback::with_config(LoopbackConfig::default()).unwrap();
        let lo: BoxedDevice =
            Box::new(PcapWriter::new(lo, sink.clone(), PcapMode::TxOnly).unwrap());
        let mut s = Stack::with_loopback(small_buffers(), lo).unwrap();
        let (c, a) = connect(&mut s, Instant::ZERO, server);
        transfer(&mut s, c, a, 8);
        let pcap = sink.bytes();
        let mut at = 24;
        let (mut records, mut full_size) = (0, 0);
        while at < pcap.len() {
            let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
            let orig = u32::from_le_bytes(pcap[at + 12..at + 16].try_into().unwrap()) as usize;
            let p = &pcap[at + 16..at + 16 + incl];
            // The length the IP header declares is the length recorded: no payload left
            // behind in a fragment the capture did not see.
            let declared = if p[0] >> 4 == 4 {
                usize::from(u16::from_be_bytes([p[2], p[3]]))
            } else {
                40 + usize::from(u16::from_be_bytes([p[4], p[5]]))
            };
            assert_eq!(
                (incl, orig),
                (declared, declared),
                "{server}: record {records}"
            );
            records += 1;
            if incl > 60_000 {
                full_size += 1;
            }
            at += 16 + incl;
        }
        assert!(
            full_size >= 8,
            "{server}: {full_size} full-size of {records} records"
        );
    }
}
