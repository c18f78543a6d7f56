//! TCP end to end over `lo`, in poll mode.

use std::net::SocketAddr;
use std::time::Duration;

use loopstack_link::Instant;
use loopstack_socket::{Stack, StackConfig};
use loopstack_transport::tcp::State;
use loopstack_transport::Error;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn handshake_transfer_and_close_v4_and_v6() {
    for (server, client_to) in [
        ("127.0.0.1:7000", "127.0.0.1:7000"),
        ("[::1]:7000", "[::1]:7000"),
    ] {
        let mut s = Stack::new(StackConfig::default()).unwrap();
        let mut now = Instant::ZERO;
        let l = s.tcp_listen(addr(server), 16).unwrap();
        let c = s.tcp_connect(now, addr(client_to)).unwrap();
        s.poll(now);
        assert_eq!(s.tcp().state(c).unwrap(), State::Established);
        let (a, peer) = s.tcp().accept(l).unwrap();
        assert_eq!(peer, s.tcp().local_addr(c).unwrap());

        // 3 MB each way, interleaved with polls.
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (mut sent_c, mut sent_a) = (0, 0);
        let (mut got_a, mut got_c) = (Vec::new(), Vec::new());
        let mut buf = vec![0u8; 100_000];
        for _ in 0..10_000 {
            if sent_c < data.len() {
                sent_c += s.tcp().send(c, &data[sent_c..]).unwrap_or(0);
            }
            if sent_a < data.len() {
                sent_a += s.tcp().send(a, &data[sent_a..]).unwrap_or(0);
            }
            s.poll(now);
            while let Ok(n) = s.tcp().recv(a, &mut buf) {
                if n == 0 {
                    break;
                }
                got_a.extend_from_slice(&buf[..n]);
            }
            while let Ok(n) = s.tcp().recv(c, &mut buf) {
                if n == 0 {
                    break;
                }
                got_c.extend_from_slice(&buf[..n]);
            }
            if got_a.len() == data.len() && got_c.len() == data.len() {
                break;
            }
            now += Duration::from_micros(10);
        }
        assert_eq!(got_a.len(), data.len());
        assert!(got_a == data && got_c == data);
        let info = s.tcp().info(c).unwrap();
        assert_eq!(info.stats.retrans_segs, 0, "{info:?}");
        assert!(info.wscale.is_some());

        s.tcp()
            .shutdown(c, loopstack_transport::tcp::Shutdown::Write)
            .unwrap();
        s.poll(now);
        assert_eq!(s.tcp().recv(a, &mut buf), Ok(0), "EOF after FIN");
        assert_eq!(s.tcp().state(a).unwrap(), State::CloseWait);
        assert_eq!(s.tcp().state(c).unwrap(), State::FinWait2);
        s.tcp().close(a).unwrap();
        s.poll(now);
        assert_eq!(s.tcp().state(c).unwrap(), State::TimeWait);
        assert_eq!(s.tcp().recv(c, &mut buf), Ok(0));
        s.tcp().close(c).unwrap();
        now += Duration::from_secs(61);
        s.poll(now);
        assert_eq!(s.tcp().sockets().count(), 1, "only the listener is left");
        assert_eq!(s.tcp().stats().curr_estab, 0);
    }
}

#[test]
fn connect_to_closed_port_is_refused() {
    let mut s = Stack::new(StackConfig::default()).unwrap();
    let c = s.tcp_connect(Instant::ZERO, addr("127.0.0.1:9")).unwrap();
    s.poll(Instant::ZERO);
    assert_eq!(s.tcp().state(c).unwrap(), State::Closed);
    assert_eq!(
        s.tcp().take_error(c).unwrap(),
        Some(Error::ConnectionRefused)
    );
    assert_eq!(s.tcp().stats().attempt_fails, 1);
    assert_eq!(s.tcp().stats().out_rsts, 1);
}

/// `lo`, writing down the TTL (hop limit) of every packet sent through it.
struct TtlLog {
    lo: loopstack_link::Loopback,
    ttls: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl loopstack_link::Device for TtlLog {
    fn name(&self) -> &str {
        self.lo.name()
    }
    fn capabilities(&self) -> loopstack_link::DeviceCapabilities {
        self.lo.capabilities()
    }
    fn transmit(
        &mut self,
        now: Instant,
        packet: loopstack_buf::PacketBuf,
    ) -> Result<(), loopstack_link::TxError> {
        let ttl = if packet[0] >> 4 == 6 {
            packet[7]
        } else {
            packet[8]
        };
        self.ttls.lock().unwrap().push(ttl);
        self.lo.transmit(now, packet)
    }
    fn receive(&mut self, now: Instant) -> Option<loopstack_buf::PacketBuf> {
        self.lo.receive(now)
    }
    fn stats(&self) -> loopstack_link::LinkStats {
        self.lo.stats()
    }
}

/// A connection keeps the path its segments take, and still follows a change under it: a
/// new default TTL reaches the next segment, in both directions.
#[test]
fn a_connection_follows_a_change_under_its_kept_path() {
    for server in ["127.0.0.1:7000", "[::1]:7000"] {
        let ttls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lo = TtlLog {
            lo: loopstack_link::Loopback::new(),
            ttls: ttls.clone(),
        };
        let mut s = Stack::with_loopback(StackConfig::default(), Box::new(lo)).unwrap();
        let now = Instant::ZERO;
        let l = s.tcp_listen(addr(server), 16).unwrap();
        let c = s.tcp_connect(now, addr(server)).unwrap();
        s.poll(now);
        let (a, _) = s.tcp().accept(l).unwrap();
        let mut buf = [0u8; 16];
        for (ttl, byte) in [(64, b'x'), (9, b'y')] {
            s.ip_mut().config_mut().default_ttl = ttl;
            ttls.lock().unwrap().clear();
            assert_eq!(s.tcp().send(c, &[byte]), Ok(1));
            s.poll(now);
            assert_eq!(s.tcp().recv(a, &mut buf), Ok(1));
            assert_eq!(buf[0], byte);
            assert_eq!(s.tcp().send(a, &[byte]), Ok(1));
            s.poll(now);
            assert_eq!(s.tcp().recv(c, &mut buf), Ok(1));
            let seen = ttls.lock().unwrap().clone();
            assert!(seen.len() >= 2, "{server}: {seen:?}");
            assert!(seen.iter().all(|&t| t == ttl), "{server}: {seen:?}");
        }
    }
}

/// Many connections whose timers keep moving later (every segment sent restarts the
/// retransmission timer, every reply cancels a delayed ACK), more than the deadline heap
/// leaves early at once: the stack's `poll_at` is still the real next deadline, never an
/// early heap entry. Driven by `poll_at` alone, every poll finds a timer due and sends
/// something, and the clock never runs backwards.
#[test]
fn poll_at_stays_exact_with_many_busy_connections() {
    let mut config = StackConfig::default();
    config.transport.tcp.ack_delay = Duration::from_millis(40);
    config.transport.tcp.nodelay = true;
    let mut s = Stack::new(config).unwrap();
    let mut now = Instant::ZERO;
    let l = s.tcp_listen(addr("127.0.0.1:7100"), 128).unwrap();
    let mut pairs = Vec::new();
    for _ in 0..40 {
        let c = s.tcp_connect(now, addr("127.0.0.1:7100")).unwrap();
        s.poll(now);
        let (a, _) = s.tcp().accept(l).unwrap();
        pairs.push((c, a));
    }
    let mut buf = [0u8; 64];
    // Ping-pongs on every connection, the clock moving 1 ms per round: deadlines move
    // later all the time.
    for _ in 0..30 {
        for &(c, a) in &pairs {
            assert_eq!(s.tcp().send(c, b"p"), Ok(1));
            s.poll(now);
            assert_eq!(s.tcp().recv(a, &mut buf), Ok(1));
            assert_eq!(s.tcp().send(a, b"q"), Ok(1));
            s.poll(now);
            assert_eq!(s.tcp().recv(c, &mut buf), Ok(1));
        }
        now += Duration::from_millis(1);
    }
    // Only the delayed ACKs are left to fire. Each poll at `poll_at` has one due.
    let mut polls = 0;
    while let Some(at) = s.poll_at() {
        assert!(at >= now, "poll_at {at:?} is before the clock {now:?}");
        now = at;
        assert!(
            s.poll(now),
            "polled at poll_at() = {at:?}, and nothing was due"
        );
        polls += 1;
        assert!(polls <= 200, "the timers never settle");
    }
    assert!(polls >= 1, "the delayed ACKs fired");
    for &(c, _) in &pairs {
        assert_eq!(s.tcp().info(c).unwrap().stats.retrans_segs, 0);
    }
}
