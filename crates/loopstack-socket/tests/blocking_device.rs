//! Blocking mode with a device fed from outside the process: [`Net::add_device`] and its rx
//! thread.
//!
//! ```text
//!   Net (blocking sockets)                                     far end: a poll-mode Stack
//!   192.0.2.2/24, 2001:db8::2/64                               192.0.2.1/24, 2001:db8::1/64
//!   ext0 ◀── to_net (queue + condvar) ◀── far0.transmit         driven by the test thread
//!        ──▶ to_far (queue + condvar) ──▶ far0.receive
//!   ExtSignal::wait: sleeps on to_net's condvar
//! ```
//!
//! The far end stands in for the kernel behind a TUN: its packets land in the Net's device
//! from another thread, and nothing on the Net's side is told but the device's `RxSignal`.
//! So when a blocked socket gets them, the rx thread polled the stack. Packets cross the
//! wire as bytes and each end copies them into its own pool, as a TUN read does.
//!
//! Waits for the other side are bounded by [`GIVE_UP`] only so a broken build fails instead
//! of hanging; no test judges how long anything took.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use loopstack_buf::{PacketBuf, PacketPool};
use loopstack_internet::Cidr;
use loopstack_link::{
    ChecksumOffload, Device, DeviceCapabilities, Instant, LinkStats, Medium, RxSignal, TxError,
};
use loopstack_socket::{Net, NetStats, Stack, StackConfig, TcpListener, UdpSocket};
use loopstack_transport::tcp::Shutdown;
use loopstack_transport::Error;

const MTU: usize = 1500;
/// Past this, a wait for the other side fails the test (a safety net, not a measurement).
const GIVE_UP: Duration = Duration::from_secs(30);
/// Time for a wrong wake-up, or a thread that has not blocked yet, to show. Nothing is
/// asserted about it: a test passes the same when the machine is slower.
const SETTLE: Duration = Duration::from_millis(50);

fn cidr(s: &str) -> Cidr {
    let (a, len) = s.split_once('/').unwrap();
    Cidr::new(a.parse().unwrap(), len.parse().unwrap()).unwrap()
}

/// The addresses of one family on the wire.
#[derive(Debug, Clone, Copy)]
struct Family {
    net: &'static str,
    far: &'static str,
}

const V4: Family = Family {
    net: "192.0.2.2",
    far: "192.0.2.1",
};
const V6: Family = Family {
    net: "2001:db8::2",
    far: "2001:db8::1",
};

impl Family {
    fn net(self, port: u16) -> SocketAddr {
        SocketAddr::new(self.net.parse::<IpAddr>().unwrap(), port)
    }
    fn far(self, port: u16) -> SocketAddr {
        SocketAddr::new(self.far.parse::<IpAddr>().unwrap(), port)
    }
}

// ---------------------------------------------------------------------- the wire

/// What a device and a signal did, in order, for the tests that check shutdown.
#[derive(Debug, Default)]
struct Log(Mutex<Vec<String>>);

impl Log {
    fn push(&self, event: impl Into<String>) {
        self.0.lock().unwrap().push(event.into());
    }
    fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    /// Where `event` is in the log; panics if it is not there.
    fn position(&self, event: &str) -> usize {
        let events = self.events();
        events
            .iter()
            .position(|e| e == event)
            .unwrap_or_else(|| panic!("{event:?} not in {events:?}"))
    }
}

#[derive(Default)]
struct Queue {
    packets: VecDeque<Vec<u8>>,
    /// Set by the interrupter, for good: every later wait returns at once.
    interrupted: bool,
}

/// One direction of the wire: packets, and a condition variable notified when one is
/// pushed (or the receiver is interrupted).
#[derive(Default)]
struct Port {
    queue: Mutex<Queue>,
    cv: Condvar,
}

impl Port {
    fn push(&self, packet: Vec<u8>) {
        self.queue.lock().unwrap().packets.push_back(packet);
        self.cv.notify_all();
    }
    fn pop(&self) -> Option<Vec<u8>> {
        self.queue.lock().unwrap().packets.pop_front()
    }
    fn len(&self) -> usize {
        self.queue.lock().unwrap().packets.len()
    }
}

/// One end of the wire: a point-to-point IP device that sends into `tx` and receives from
/// `rx`, copying each packet into its own stack's pool.
struct WireEnd {
    name: &'static str,
    rx: Arc<Port>,
    tx: Arc<Port>,
    pool: PacketPool,
    stats: LinkStats,
    log: Option<Arc<Log>>,
}

impl Device for WireEnd {
    fn name(&self) -> &str {
        self.name
    }

    fn capabilities(&self) -> DeviceCapabilities {
        DeviceCapabilities {
            mtu: MTU,
            medium: Medium::Ip,
            checksum_offload: ChecksumOffload::NONE,
            scatter_gather: false,
        }
    }

    fn transmit(&mut self, _now: Instant, packet: PacketBuf) -> Result<(), TxError> {
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += packet.len() as u64;
        self.tx.push(packet.as_slice().to_vec());
        Ok(())
    }

    fn receive(&mut self, _now: Instant) -> Option<PacketBuf> {
        let bytes = self.rx.pop()?;
        match self.pool.alloc_from_slice(&bytes) {
            Ok(p) => {
                self.stats.rx_packets += 1;
                self.stats.rx_bytes += p.len() as u64;
                Some(p)
            }
            Err(_) => {
                self.stats.rx_dropped += 1;
                None
            }
        }
    }

    fn stats(&self) -> LinkStats {
        self.stats
    }
}

impl Drop for WireEnd {
    fn drop(&mut self) {
        if let Some(log) = &self.log {
            log.push("device dropped");
        }
    }
}

/// The Net side's `RxSignal`: sleeps until its device's queue has a packet, as `poll(2)`
/// on a TUN's descriptor would.
struct ExtSignal {
    port: Arc<Port>,
    log: Arc<Log>,
    /// Waits that return before the first failure; `None`: never fails.
    fail_after: Option<usize>,
    waits: usize,
}

impl RxSignal for ExtSignal {
    fn wait(&mut self) -> std::io::Result<()> {
        if self.waits == 0 {
            let me = thread::current();
            self.log
                .push(format!("waits on {}", me.name().unwrap_or("?")));
        }
        if self.fail_after == Some(self.waits) {
            self.log.push("wait failed");
            return Err(std::io::Error::other("the device went away"));
        }
        self.waits += 1;
        let mut q = self.port.queue.lock().unwrap();
        while q.packets.is_empty() && !q.interrupted {
            q = self.port.cv.wait(q).unwrap();
        }
        Ok(())
    }

    fn interrupter(&self) -> Box<dyn Fn() + Send + Sync> {
        let port = Arc::clone(&self.port);
        let log = Arc::clone(&self.log);
        Box::new(move || {
            log.push("interrupted");
            port.queue.lock().unwrap().interrupted = true;
            port.cv.notify_all();
        })
    }
}

impl Drop for ExtSignal {
    fn drop(&mut self) {
        self.log.push("signal dropped");
    }
}

/// The far end: a poll-mode stack on the wall clock, driven by the test thread.
struct Far {
    stack: Stack,
    /// What the Net sends it.
    inbox: Arc<Port>,
    start: std::time::Instant,
}

impl Far {
    fn now(&self) -> Instant {
        Instant::from_nanos(self.start.elapsed().as_nanos() as u64)
    }

    /// Polls the far stack until `f` returns something, sleeping in between until the Net
    /// sends a packet or the far stack's next timer.
    fn drive_until<T>(
        &mut self,
        what: &str,
        mut f: impl FnMut(&mut Stack, Instant) -> Option<T>,
    ) -> T {
        let give_up = std::time::Instant::now() + GIVE_UP;
        loop {
            let now = self.now();
            self.stack.poll(now);
            if let Some(t) = f(&mut self.stack, now) {
                return t;
            }
            // `f` may have sent something: carry it before sleeping.
            if self.stack.poll(now) {
                continue;
            }
            assert!(
                std::time::Instant::now() < give_up,
                "far end: gave up waiting for {what}"
            );
            let timer = self
                .stack
                .poll_at()
                .map_or(Duration::from_millis(100), |t| {
                    t.saturating_duration_since(now)
                });
            let q = self.inbox.queue.lock().unwrap();
            if q.packets.is_empty() {
                let _ = self
                    .inbox
                    .cv
                    .wait_timeout(q, timer.min(Duration::from_millis(100)))
                    .unwrap();
            }
        }
    }
}

/// The Net side and its wire, and the log of its device and signal.
struct Rig {
    net: Net,
    far: Far,
    /// The Net device's receive queue (what the far end sent and nobody read yet).
    to_net: Arc<Port>,
    log: Arc<Log>,
}

fn rig(fail_after: Option<usize>) -> Rig {
    let net = Net::new().unwrap();
    let to_net = Arc::new(Port::default());
    let to_far = Arc::new(Port::default());
    let log = Arc::new(Log::default());

    let mut far = Stack::new(StackConfig {
        seed: 11,
        ..StackConfig::default()
    })
    .unwrap();
    let far_end = WireEnd {
        name: "far0",
        rx: Arc::clone(&to_far),
        tx: Arc::clone(&to_net),
        pool: far.pool().clone(),
        stats: LinkStats::default(),
        log: None,
    };
    far.add_device(
        Box::new(far_end),
        &[cidr("192.0.2.1/24"), cidr("2001:db8::1/64")],
    )
    .unwrap();

    let ext = WireEnd {
        name: "ext0",
        rx: Arc::clone(&to_net),
        tx: Arc::clone(&to_far),
        pool: net.with(|s| s.pool().clone()),
        stats: LinkStats::default(),
        log: Some(Arc::clone(&log)),
    };
    let signal = ExtSignal {
        port: Arc::clone(&to_net),
        log: Arc::clone(&log),
        fail_after,
        waits: 0,
    };
    net.add_device(
        Box::new(ext),
        &[cidr("192.0.2.2/24"), cidr("2001:db8::2/64")],
        Box::new(signal),
    )
    .unwrap();

    Rig {
        net,
        far: Far {
            stack: far,
            inbox: to_far,
            start: std::time::Instant::now(),
        },
        to_net,
        log,
    }
}

/// Waits (without calling into the stack: `stats` reads counters only) until `f` holds.
fn wait_for_stats(net: &Net, what: &str, f: impl Fn(&NetStats) -> bool) -> NetStats {
    let give_up = std::time::Instant::now() + GIVE_UP;
    loop {
        let s = net.stats();
        if f(&s) {
            return s;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "gave up waiting for {what}: {s:?}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

// ---------------------------------------------------------------------- 1. UDP

/// A datagram from outside reaches a socket with no call at all, and wakes a `recv_from`
/// blocked with no timeout; the answer goes back out.
fn udp_from_outside(fam: Family) {
    let Rig {
        net,
        mut far,
        to_net,
        ..
    } = rig(None);
    let sock = UdpSocket::bind(&net, fam.net(5000)).unwrap();
    let h = far.stack.udp_bind(fam.far(6000)).unwrap();

    // Nobody calls into the Net: only the rx thread can move "one" into the socket.
    let now = far.now();
    far.stack
        .udp_send_to(now, h, b"one", fam.net(5000))
        .unwrap();
    let s = wait_for_stats(&net, "the rx thread to receive \"one\"", |s| {
        s.rx_polls_changed >= 1
    });
    assert_eq!(
        (s.rx_wakeups, s.rx_polls_changed, s.rx_wait_errors),
        (1, 1, 0)
    );
    assert_eq!(to_net.len(), 0, "the rx thread drained the device");

    let (tx, rx) = mpsc::channel();
    let receiver = thread::spawn(move || {
        let mut buf = [0u8; 64];
        for _ in 0..2 {
            let (n, from) = sock.recv_from(&mut buf).unwrap();
            let reply = buf[..n].to_ascii_uppercase();
            sock.send_to(&reply, from).unwrap();
            tx.send((buf[..n].to_vec(), from)).unwrap();
        }
    });
    let got = rx.recv_timeout(GIVE_UP).expect("\"one\" was queued");
    assert_eq!(got, (b"one".to_vec(), fam.far(6000)));

    // Now the receiver blocks in `recv_from` (given SETTLE to get there; were it slower,
    // its own poll would find "two", and the test would pass proving less). Only the rx
    // thread polls the Net when "two" arrives, and only its `changed` wakes the receiver.
    thread::sleep(SETTLE);
    let now = far.now();
    far.stack
        .udp_send_to(now, h, b"two", fam.net(5000))
        .unwrap();
    let got = rx
        .recv_timeout(GIVE_UP)
        .expect("a recv_from blocked with no timeout never got \"two\"");
    assert_eq!(got, (b"two".to_vec(), fam.far(6000)));

    // Both answers reach the far end, in order.
    let mut buf = [0u8; 64];
    for want in [&b"ONE"[..], b"TWO"] {
        let (n, from) = far.drive_until("the answer", |s, _| s.udp().recv_from(h, &mut buf).ok());
        assert_eq!((&buf[..n], from), (want, fam.net(5000)));
    }
    receiver.join().unwrap();
    let s = net.stats();
    assert!(s.rx_polls_changed <= s.rx_wakeups, "{s:?}");
    assert_eq!(s.rx_wait_errors, 0);
}

#[test]
fn udp_from_outside_v4() {
    udp_from_outside(V4);
}

#[test]
fn udp_from_outside_v6() {
    udp_from_outside(V6);
}

// ---------------------------------------------------------------------- 2. TCP

/// The far end connects to a blocking `TcpListener` on the Net, sends 200 kB and reads
/// them back echoed, then closes; the Net side's `accept`, `read` and `write_all` run on a
/// server thread with no other call on the Net.
fn tcp_echo_from_outside(fam: Family) {
    const LEN: usize = 200_000;
    let Rig { net, mut far, .. } = rig(None);
    let listener = TcpListener::bind(&net, fam.net(7)).unwrap();
    let server = thread::spawn(move || -> std::io::Result<(SocketAddr, usize)> {
        let (mut conn, peer) = listener.accept()?;
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0;
        loop {
            let n = conn.read(&mut buf)?;
            if n == 0 {
                return Ok((peer, total));
            }
            conn.write_all(&buf[..n])?;
            total += n;
        }
    });

    let data: Vec<u8> = (0..LEN).map(|i| (i * 7 % 251) as u8).collect();
    let now = far.now();
    let c = far.stack.tcp_connect(now, fam.net(7)).unwrap();
    let (mut sent, mut got) = (0, Vec::with_capacity(LEN));
    let mut buf = vec![0u8; 64 * 1024];
    far.drive_until("the echo", |s, _| {
        if sent < LEN {
            match s.tcp().send(c, &data[sent..]) {
                Ok(n) => sent += n,
                Err(Error::WouldBlock) => {}
                Err(e) => panic!("send: {e:?}"),
            }
        }
        loop {
            match s.tcp().recv(c, &mut buf) {
                Ok(0) => panic!("EOF before the echo"),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(Error::WouldBlock) => break,
                Err(e) => panic!("recv: {e:?}"),
            }
        }
        (got.len() == LEN).then_some(())
    });
    assert!(got == data, "the echo differs from what was sent");

    // Close our half; the server sees EOF, returns, and its stream's drop sends its FIN.
    far.stack.tcp().shutdown(c, Shutdown::Write).unwrap();
    far.drive_until("the server's FIN", |s, _| match s.tcp().recv(c, &mut buf) {
        Ok(0) => Some(()),
        Ok(_) => panic!("data after the echo"),
        Err(_) => None,
    });
    let (peer, total) = server.join().unwrap().unwrap();
    assert_eq!(peer, far.stack.tcp().local_addr(c).unwrap());
    assert_eq!(total, LEN);
    far.stack.tcp().close(c).unwrap();

    let s = net.stats();
    assert!(s.rx_wakeups >= 1 && s.rx_polls_changed >= 1, "{s:?}");
    assert!(s.rx_polls_changed <= s.rx_wakeups, "{s:?}");
    assert_eq!(s.rx_wait_errors, 0);
}

#[test]
fn tcp_echo_from_outside_v4() {
    tcp_echo_from_outside(V4);
}

#[test]
fn tcp_echo_from_outside_v6() {
    tcp_echo_from_outside(V6);
}

// ---------------------------------------------------------------------- 3. idle

/// An idle external device costs no wake-up; a packet costs one, which the Net answers
/// (here with a Port Unreachable) with no call from the application; then it is idle again.
#[test]
fn an_idle_device_does_not_wake_its_thread() {
    for fam in [V4, V6] {
        let Rig { net, mut far, .. } = rig(None);
        thread::sleep(SETTLE);
        let s = net.stats();
        assert_eq!((s.rx_wakeups, s.rx_polls_changed), (0, 0), "{s:?}");

        // A datagram to a port nobody listens on: the rx thread receives it and the stack
        // answers with ICMP Port Unreachable, which the far end's connected socket reports.
        let h = far.stack.udp_bind(fam.far(0)).unwrap();
        far.stack.udp_connect(h, fam.net(9)).unwrap();
        let now = far.now();
        far.stack.udp_send(now, h, b"anyone?").unwrap();
        let mut buf = [0u8; 16];
        let e = far.drive_until("the Port Unreachable", |s, _| {
            match s.udp().recv_from(h, &mut buf) {
                Err(Error::WouldBlock) => None,
                r => Some(r),
            }
        });
        assert_eq!(e, Err(Error::ConnectionRefused));
        let s = net.stats();
        assert_eq!((s.rx_wakeups, s.rx_polls_changed), (1, 1), "{s:?}");

        // Drained, the device sleeps again: level-triggered readiness does not spin.
        thread::sleep(SETTLE);
        let s = net.stats();
        assert_eq!((s.rx_wakeups, s.rx_polls_changed), (1, 1), "{s:?}");
        assert_eq!(s.rx_wait_errors, 0);
    }
}

// ---------------------------------------------------------------------- 4. shutdown

/// Dropping the last handle (here a socket, after the `Net`) interrupts the rx thread,
/// joins it (the signal it owned is gone when `drop` returns), and only then drops the
/// device.
#[test]
fn dropping_the_last_handle_stops_the_rx_thread_then_drops_the_device() {
    let Rig {
        net, mut far, log, ..
    } = rig(None);
    let sock = UdpSocket::bind(&net, V4.net(5000)).unwrap();
    let h = far.stack.udp_bind(V4.far(6000)).unwrap();
    let now = far.now();
    far.stack.udp_send_to(now, h, b"hi", V4.net(5000)).unwrap();
    wait_for_stats(&net, "the datagram", |s| s.rx_polls_changed >= 1);

    drop(net);
    // The socket still holds the stack: its thread and device live on.
    assert!(
        !log.events().iter().any(|e| e == "interrupted"),
        "{:?}",
        log.events()
    );
    let mut buf = [0u8; 8];
    assert_eq!(sock.recv(&mut buf).unwrap(), 2);

    drop(sock);
    // Right after the drop, with no waiting: the thread has ended (it owned the signal).
    assert_eq!(log.position("waits on loopstack-rx-ext0"), 0);
    let interrupted = log.position("interrupted");
    let signal = log.position("signal dropped");
    let device = log.position("device dropped");
    assert!(
        interrupted < signal && signal < device,
        "{:?}",
        log.events()
    );
    assert_eq!(
        Arc::strong_count(&log),
        1,
        "nothing else holds the device or signal"
    );
}

/// A wait that fails stops the rx thread (counted once); the device still works through
/// socket calls, and the last drop still joins the thread and drops everything.
#[test]
fn a_failed_wait_stops_the_thread_and_shutdown_still_joins_it() {
    let Rig {
        net,
        mut far,
        log,
        to_net,
    } = rig(Some(0));
    let s = wait_for_stats(&net, "the failed wait", |s| s.rx_wait_errors >= 1);
    assert_eq!((s.rx_wakeups, s.rx_wait_errors), (0, 1), "{s:?}");

    // No thread reads the device now: a datagram waits in it until a call polls the stack.
    let sock = UdpSocket::bind(&net, V6.net(5000)).unwrap();
    let h = far.stack.udp_bind(V6.far(6000)).unwrap();
    let now = far.now();
    far.stack
        .udp_send_to(now, h, b"late", V6.net(5000))
        .unwrap();
    thread::sleep(SETTLE);
    assert_eq!(to_net.len(), 1, "no rx thread read it");
    let mut buf = [0u8; 8];
    assert_eq!(
        sock.recv(&mut buf).unwrap(),
        4,
        "the call's own poll reads it"
    );

    drop(sock);
    drop(net);
    assert_eq!(log.position("wait failed"), 1);
    let signal = log.position("signal dropped");
    let device = log.position("device dropped");
    assert!(signal < device, "{:?}", log.events());
    // The interrupter is still called; for a thread that has stopped it does nothing.
    log.position("interrupted");
    assert_eq!(Arc::strong_count(&log), 1);
}

/// A device that cannot be added leaves no thread behind: the error comes back, the signal
/// and the device are dropped by the time it does, and the stack carries on.
#[test]
fn a_device_that_cannot_be_added_leaves_no_thread() {
    let net = Net::new().unwrap();
    let log = Arc::new(Log::default());
    let port = Arc::new(Port::default());
    let bad = WireEnd {
        name: "bad name",
        rx: Arc::clone(&port),
        tx: Arc::clone(&port),
        pool: net.with(|s| s.pool().clone()),
        stats: LinkStats::default(),
        log: Some(Arc::clone(&log)),
    };
    let signal = ExtSignal {
        port,
        log: Arc::clone(&log),
        fail_after: None,
        waits: 0,
    };
    let e = net
        .add_device(Box::new(bad), &[cidr("192.0.2.2/24")], Box::new(signal))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert_eq!(
        log.events(),
        ["device dropped", "signal dropped"],
        "the thread never waited, and is gone"
    );
    assert_eq!(Arc::strong_count(&log), 1);
    // The stack is untouched and still works.
    let a = UdpSocket::bind(&net, "127.0.0.1:0").unwrap();
    a.send_to(b"x", a.local_addr().unwrap()).unwrap();
    assert_eq!(a.recv(&mut [0u8; 4]).unwrap(), 1);
    assert_eq!(net.stats().rx_wakeups, 0);
}
