//! The TUN device against the real kernel.
//!
//! Every test that touches the kernel runs its body on a fresh thread that first moves into a
//! network namespace of its own (`unshare(CLONE_NEWNET)`: namespaces are per thread on Linux).
//! The TUN interface, the `ip` commands spawned from that thread and the kernel sockets it
//! opens all live there, so the tests send nothing anywhere else, can run in parallel with
//! fixed interface names, and leave nothing behind: the namespace goes when the thread ends.
//! Only the documentation ranges 192.0.2.0/24 and 2001:db8::/64 are used.
//!
//! Without the rights for that (not root, no `CAP_SYS_ADMIN` or `CAP_NET_ADMIN`, no
//! `/dev/net/tun`) a test prints one `skipped:` line and passes, unless
//! `LOOPSTACK_REQUIRE_TUN=1`, which turns the skip into a failure.
#![cfg(target_os = "linux")]

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use loopstack_buf::{PacketBuf, PacketPool, PoolConfig};
use loopstack_link::{
    ChecksumOffload, Device, Instant, Medium, RxSignal, Tun, TunConfig, TunError, TunSignal,
    TxError,
};
use loopstack_testkit::{allocations_during, CountingAllocator};
use nix::errno::Errno;
use nix::sched::{unshare, CloneFlags};

// Counts only the allocations of threads that ask to be measured (the zero-allocation test),
// so the other tests are not disturbed.
#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// The interface name every test uses: each test has a namespace of its own.
const NAME: &str = "lstun0";
/// How long anything the kernel does may take before a test gives up on it.
const PATIENCE: Duration = Duration::from_secs(5);
/// How long a wait must stay blocked to count as "blocked".
const STILL_BLOCKED: Duration = Duration::from_millis(200);
const NOW: Instant = Instant::ZERO;

const KERNEL_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const TUN_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const KERNEL_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const TUN_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

// ---------------------------------------------------------------------------------------------
// Harness: namespaces, skipping, `ip`, waiting with a deadline.
// ---------------------------------------------------------------------------------------------

/// Says why a test cannot run here and returns, or fails when `LOOPSTACK_REQUIRE_TUN=1`.
fn skip(test: &str, why: &str) {
    if std::env::var_os("LOOPSTACK_REQUIRE_TUN").is_some_and(|v| v == "1") {
        panic!("{test}: {why}; LOOPSTACK_REQUIRE_TUN=1 requires the TUN tests to run");
    }
    // Straight to stderr, past the test harness's capture, so the skip is seen.
    let _ = writeln!(std::io::stderr(), "skipped: {test}: {why}");
}

/// Whether the body of a test should do without IPv6 on the TUN. With IPv6 on, the kernel
/// sends its own packets out of a new interface (duplicate address detection for the
/// link-local address, router solicitations, MLD reports), which would spoil exact counts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ipv6 {
    Off,
    On,
}

/// Runs `body` on a new thread in a network namespace of its own, and passes its panic on.
fn in_netns(test: &'static str, ipv6: Ipv6, body: impl FnOnce() + Send + 'static) {
    let thread = thread::Builder::new()
        .name(format!("netns-{test}"))
        .spawn(move || {
            match unshare(CloneFlags::CLONE_NEWNET) {
                Ok(()) => {}
                // EPERM: no CAP_SYS_ADMIN; EINVAL: no namespace support in the kernel; ENOSYS
                // or EACCES: a seccomp filter or security module says no.
                Err(e @ (Errno::EPERM | Errno::EACCES | Errno::EINVAL | Errno::ENOSYS)) => {
                    return skip(test, &format!("cannot make a network namespace: {e}"));
                }
                Err(e) => panic!("unshare(CLONE_NEWNET): {e}"),
            }
            if ipv6 == Ipv6::Off {
                // /proc/sys/net shows the calling thread's namespace. Without IPv6 in the
                // kernel there is nothing to turn off.
                match std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1") {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("turning IPv6 off in the namespace: {e}"),
                }
            }
            body();
        })
        .expect("spawning the test thread");
    if let Err(panic) = thread.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Opens a TUN, or skips the test (returns `None`) if this machine or process cannot have one.
fn open_or_skip(test: &str, config: &TunConfig, pool: &PacketPool) -> Option<Tun> {
    match Tun::open(config, pool.clone()) {
        Ok(tun) => Some(tun),
        Err(e) if e.is_not_permitted() => {
            skip(test, &e.to_string());
            None
        }
        Err(e) => panic!("{test}: Tun::open({config:?}): {e}"),
    }
}

/// Runs `ip ARGS` in the calling thread's namespace and returns its standard output.
fn ip(args: &[&str]) -> String {
    let out = ip_status(args);
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("ip prints UTF-8")
}

fn ip_status(args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running `ip` (iproute2, which these tests need): {e}"))
}

/// A pool small enough that many tests can run at once, holding `mtu`-byte packets.
fn pool(mtu: usize) -> PacketPool {
    PacketPool::new(PoolConfig::single(mtu, 16)).unwrap()
}

/// Waits on `signal`, failing the test if nothing wakes it within [`PATIENCE`].
fn wait_within_patience(signal: &mut TunSignal) {
    let interrupt = signal.interrupter();
    let (done, done_rx) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        let late = done_rx.recv_timeout(PATIENCE).is_err();
        if late {
            interrupt();
        }
        late
    });
    signal.wait().expect("wait");
    let _ = done.send(());
    assert!(
        !watchdog.join().unwrap(),
        "the kernel's packet did not arrive within {PATIENCE:?}"
    );
}

/// A wait running on a thread of its own, to see whether and when it returns.
struct BackgroundWait {
    returned: mpsc::Receiver<std::io::Result<()>>,
    thread: thread::JoinHandle<TunSignal>,
}

impl BackgroundWait {
    fn start(mut signal: TunSignal) -> BackgroundWait {
        let (tx, returned) = mpsc::channel();
        let thread = thread::spawn(move || {
            let _ = tx.send(signal.wait());
            signal
        });
        BackgroundWait { returned, thread }
    }

    fn assert_blocked(&self) {
        assert!(
            self.returned.recv_timeout(STILL_BLOCKED).is_err(),
            "wait returned with nothing to wake it"
        );
    }

    /// Waits for the wait to return and gives the signal back.
    fn finish(self) -> (std::io::Result<()>, TunSignal) {
        let result = self
            .returned
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("wait still blocked after {PATIENCE:?}"));
        (result, self.thread.join().unwrap())
    }
}

/// Receives until a packet arrives, waiting on `signal` in between.
fn receive_one(tun: &mut Tun, signal: &mut TunSignal) -> PacketBuf {
    for _ in 0..100 {
        if let Some(packet) = tun.receive(NOW) {
            return packet;
        }
        wait_within_patience(signal);
    }
    panic!("the signal kept waking with nothing to receive");
}

/// Receives until a UDP datagram to `port` arrives, dropping anything else the kernel sends
/// out of the interface (with IPv6 on: neighbour discovery, MLD reports).
fn receive_udp_to(tun: &mut Tun, signal: &mut TunSignal, port: u16) -> PacketBuf {
    for _ in 0..100 {
        let packet = receive_one(tun, signal);
        if udp(&packet).is_some_and(|u| u.dst.port() == port) {
            return packet;
        }
    }
    panic!("no UDP datagram to port {port} among 100 packets");
}

/// What the tests look at in a UDP packet.
#[derive(Debug)]
struct Udp {
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
}

/// The UDP datagram in an IP packet, if it is one; its checksum is verified.
fn udp(packet: &[u8]) -> Option<Udp> {
    let sliced = SlicedPacket::from_ip(packet).ok()?;
    let (src, dst): (IpAddr, IpAddr) = match sliced.net? {
        NetSlice::Ipv4(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        NetSlice::Ipv6(ip) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        _ => return None,
    };
    let Some(TransportSlice::Udp(u)) = sliced.transport else {
        return None;
    };
    let checksum = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => u
            .to_header()
            .calc_checksum_ipv4_raw(s.octets(), d.octets(), u.payload())
            .unwrap(),
        (IpAddr::V6(s), IpAddr::V6(d)) => u
            .to_header()
            .calc_checksum_ipv6_raw(s.octets(), d.octets(), u.payload())
            .unwrap(),
        _ => unreachable!("one IP header has one family"),
    };
    assert_eq!(u.checksum(), checksum, "the kernel's UDP checksum is wrong");
    Some(Udp {
        src: SocketAddr::new(src, u.source_port()),
        dst: SocketAddr::new(dst, u.destination_port()),
        payload: u.payload().to_vec(),
    })
}

/// An IP/UDP packet from `src` to `dst`, checksums filled in, in a buffer from `pool`.
fn udp_packet(pool: &PacketPool, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> PacketBuf {
    let builder = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed families"),
    }
    .udp(src.port(), dst.port());
    let mut bytes = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut bytes, payload).unwrap();
    pool.alloc_from_slice(&bytes).unwrap()
}

/// A kernel UDP socket on `addr`, port chosen by the kernel, that gives up reading after
/// [`PATIENCE`].
fn kernel_socket(addr: IpAddr) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(addr, 0)).expect("binding the kernel socket");
    socket.set_read_timeout(Some(PATIENCE)).unwrap();
    socket
}

/// Waits until the kernel routes `addr` to itself.
fn wait_for_local_route(addr: &str) {
    let start = std::time::Instant::now();
    let wanted = format!("local {addr} ");
    while !ip(&["-6", "route", "show", "table", "local"]).contains(&wanted) {
        assert!(
            start.elapsed() < PATIENCE,
            "no local route for {addr} after {PATIENCE:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Adds the kernel's end of 192.0.2.0/24 to the TUN.
fn add_kernel_v4() {
    ip(&["addr", "add", "192.0.2.1/24", "dev", NAME]);
}

// ---------------------------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------------------------

#[test]
fn bad_names_and_mtus_are_refused_before_the_kernel_is_asked() {
    let pool = pool(1500);
    let open = |name: &str, mtu: usize| {
        Tun::open(
            &TunConfig {
                name: name.to_owned(),
                mtu,
            },
            pool.clone(),
        )
        .unwrap_err()
    };
    for name in [
        "",
        "sixteen-chars-xx",
        "a/b",
        "a b",
        "a:b",
        ".",
        "..",
        "a%d%d",
    ] {
        let err = open(name, 1500);
        assert!(
            matches!(&err, TunError::BadName(n) if n == name),
            "{name:?}: {err:?}"
        );
        assert!(!err.is_not_permitted());
        assert!(err.to_string().contains("invalid interface name"), "{err}");
    }
    for mtu in [0, 67, 65536, usize::MAX] {
        let err = open("lstun0", mtu);
        assert!(
            matches!(err, TunError::BadMtu(m) if m == mtu),
            "{mtu}: {err:?}"
        );
    }
    // The pool must hold an MTU-sized packet, or every packet would be dropped.
    let small = PacketPool::new(PoolConfig::single(1000, 1)).unwrap();
    let err = Tun::open(&TunConfig::new("lstun0"), small).unwrap_err();
    let TunError::Io(io) = &err else {
        panic!("a pool smaller than the MTU should be refused, got {err:?}")
    };
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("1000 bytes"), "{err}");

    let config = TunConfig::new("tun0");
    assert_eq!((config.name.as_str(), config.mtu), ("tun0", 1500));
    assert_eq!(TunConfig::DEFAULT_MTU, 1500);
}

#[test]
fn kernel_to_tun_ipv4() {
    const TEST: &str = "kernel_to_tun_ipv4";
    in_netns(TEST, Ipv6::Off, || {
        let pool = pool(1400);
        let config = TunConfig {
            name: NAME.into(),
            mtu: 1400,
        };
        let Some(mut tun) = open_or_skip(TEST, &config, &pool) else {
            return;
        };
        assert_eq!(tun.name(), NAME);
        let caps = tun.capabilities();
        assert_eq!(caps.mtu, 1400);
        assert_eq!(caps.medium, Medium::Ip);
        assert_eq!(caps.checksum_offload, ChecksumOffload::NONE);
        assert_eq!(tun.poll_at(), None);

        // Tun::open set the MTU and brought the interface up.
        let link = ip(&["-o", "link", "show", NAME]);
        let flags = link.split(['<', '>']).nth(1).expect("flags in ip's output");
        assert!(flags.split(',').any(|f| f == "UP"), "{link}");
        assert!(link.contains(" mtu 1400 "), "{link}");

        // IPv6 is off in this namespace, so the kernel sends nothing of its own.
        assert_eq!(ip(&["-6", "-o", "addr", "show", "dev", NAME]), "");

        add_kernel_v4();
        let socket = kernel_socket(KERNEL_V4.into());
        let to = SocketAddr::new(TUN_V4.into(), 9999);
        socket.send_to(b"hello, tun", to).unwrap();

        let mut signal = tun.signal();
        let packet = receive_one(&mut tun, &mut signal);
        let datagram = udp(&packet).expect("a UDP datagram");
        assert_eq!(datagram.src, socket.local_addr().unwrap());
        assert_eq!(datagram.dst, to);
        assert_eq!(datagram.payload, b"hello, tun");
        // Read straight into a pool buffer, behind the full headroom for later headers.
        assert!(packet.is_from(&pool));
        assert_eq!(packet.headroom(), pool.headroom());

        let stats = tun.stats();
        assert_eq!(stats.rx_packets, 1);
        assert_eq!(stats.rx_bytes, packet.len() as u64);
        assert_eq!((stats.rx_errors, stats.rx_dropped), (0, 0));
        // Drained: nothing else was sent.
        assert!(tun.receive(NOW).is_none());
        drop(packet);
        assert_eq!(pool.stats().in_use(), 0);
    });
}

#[test]
fn tun_to_kernel_ipv4() {
    const TEST: &str = "tun_to_kernel_ipv4";
    in_netns(TEST, Ipv6::Off, || {
        let pool = pool(1500);
        let Some(mut tun) = open_or_skip(TEST, &TunConfig::new(NAME), &pool) else {
            return;
        };
        add_kernel_v4();
        let socket = kernel_socket(KERNEL_V4.into());
        let from = SocketAddr::new(TUN_V4.into(), 7777);
        let packet = udp_packet(&pool, from, socket.local_addr().unwrap(), b"from the tun");
        let len = packet.len() as u64;
        tun.transmit(NOW, packet).unwrap();
        // The buffer went back to the pool once written.
        assert_eq!(pool.stats().in_use(), 0);

        let mut buf = [0; 100];
        let (n, peer) = socket
            .recv_from(&mut buf)
            .expect("the kernel got the datagram");
        assert_eq!(&buf[..n], b"from the tun");
        assert_eq!(peer, from);
        let stats = tun.stats();
        assert_eq!((stats.tx_packets, stats.tx_bytes), (1, len));
        assert_eq!((stats.tx_errors, stats.tx_dropped), (0, 0));
    });
}

#[test]
fn both_ways_over_ipv6() {
    const TEST: &str = "both_ways_over_ipv6";
    in_netns(TEST, Ipv6::On, || {
        let pool = pool(1500);
        let Some(mut tun) = open_or_skip(TEST, &TunConfig::new(NAME), &pool) else {
            return;
        };
        // No duplicate address detection, so the address can be bound at once.
        ip(&["addr", "add", "2001:db8::1/64", "dev", NAME, "nodad"]);
        // But the kernel inserts its local route from a work queue even then: until it has,
        // a packet to the address is dropped (Ip6InAddrErrors).
        wait_for_local_route("2001:db8::1");
        let socket = kernel_socket(KERNEL_V6.into());

        let from = SocketAddr::new(TUN_V6.into(), 7777);
        let packet = udp_packet(
            &pool,
            from,
            socket.local_addr().unwrap(),
            b"six from the tun",
        );
        tun.transmit(NOW, packet).unwrap();
        let mut buf = [0; 100];
        let (n, peer) = socket
            .recv_from(&mut buf)
            .expect("the kernel got the datagram");
        assert_eq!(&buf[..n], b"six from the tun");
        assert_eq!(peer, from);

        let to = SocketAddr::new(TUN_V6.into(), 9999);
        socket.send_to(b"six to the tun", to).unwrap();
        let mut signal = tun.signal();
        let packet = receive_udp_to(&mut tun, &mut signal, 9999);
        let datagram = udp(&packet).unwrap();
        assert_eq!(datagram.src, socket.local_addr().unwrap());
        assert_eq!(datagram.payload, b"six to the tun");
        assert!(packet.is_from(&pool));
        assert_eq!(tun.stats().tx_packets, 1);
    });
}

#[test]
fn oversized_and_malformed_packets_are_refused_and_counted() {
    const TEST: &str = "oversized_and_malformed_packets_are_refused_and_counted";
    in_netns(TEST, Ipv6::Off, || {
        let pool = PacketPool::new(PoolConfig::default()).unwrap();
        let config = TunConfig {
            name: NAME.into(),
            mtu: 1280,
        };
        let Some(mut tun) = open_or_skip(TEST, &config, &pool) else {
            return;
        };
        add_kernel_v4();
        let socket = kernel_socket(KERNEL_V4.into());
        let from = SocketAddr::new(TUN_V4.into(), 7777);
        let to = socket.local_addr().unwrap();

        // One byte over the MTU: refused before the kernel sees it.
        let big = udp_packet(&pool, from, to, &[7; 1281 - 28]);
        assert_eq!(big.len(), 1281);
        assert_eq!(
            tun.transmit(NOW, big),
            Err(TxError::TooLarge {
                len: 1281,
                mtu: 1280
            })
        );
        // Not an IP packet (version 0): the driver refuses it (EINVAL).
        let junk = pool.alloc_from_slice(&[0; 40]).unwrap();
        assert_eq!(
            tun.transmit(NOW, junk),
            Err(TxError::Io(std::io::ErrorKind::InvalidInput))
        );
        assert_eq!(pool.stats().in_use(), 0);
        let stats = tun.stats();
        assert_eq!(
            (stats.tx_errors, stats.tx_packets, stats.tx_bytes),
            (2, 0, 0)
        );

        // Exactly the MTU goes through.
        let full = udp_packet(&pool, from, to, &[9; 1280 - 28]);
        tun.transmit(NOW, full).unwrap();
        let mut buf = [0; 2000];
        let (n, _) = socket.recv_from(&mut buf).unwrap();
        assert_eq!(n, 1280 - 28);
        let stats = tun.stats();
        assert_eq!(
            (stats.tx_errors, stats.tx_packets, stats.tx_bytes),
            (2, 1, 1280)
        );
    });
}

#[test]
fn taken_names_are_name_in_use() {
    const TEST: &str = "taken_names_are_name_in_use";
    in_netns(TEST, Ipv6::Off, || {
        let pool = pool(1500);
        let Some(first) = open_or_skip(TEST, &TunConfig::new(NAME), &pool) else {
            return;
        };
        // The driver's EBUSY: the TUN is attached to a descriptor already.
        let err = Tun::open(&TunConfig::new(NAME), pool.clone()).unwrap_err();
        assert!(
            matches!(&err, TunError::NameInUse(n) if n == NAME),
            "{err:?}"
        );
        assert!(err.to_string().contains(NAME), "{err}");
        // EINVAL: `lo` exists and is no TUN.
        let err = Tun::open(&TunConfig::new("lo"), pool.clone()).unwrap_err();
        assert!(
            matches!(&err, TunError::NameInUse(n) if n == "lo"),
            "{err:?}"
        );

        // Closing the descriptor deletes the interface, and the name is free again.
        drop(first);
        assert!(!ip_status(&["link", "show", NAME]).status.success());
        let again = open_or_skip(TEST, &TunConfig::new(NAME), &pool).unwrap();
        assert_eq!(again.name(), NAME);
    });
}

#[test]
fn the_kernel_numbers_a_percent_d_name() {
    const TEST: &str = "the_kernel_numbers_a_percent_d_name";
    in_netns(TEST, Ipv6::Off, || {
        let pool = pool(1500);
        let Some(first) = open_or_skip(TEST, &TunConfig::new("lst%d"), &pool) else {
            return;
        };
        let second = open_or_skip(TEST, &TunConfig::new("lst%d"), &pool).unwrap();
        assert_eq!((first.name(), second.name()), ("lst0", "lst1"));
        // The MTU and the UP flag went to the interface the kernel named.
        let link = ip(&["-o", "link", "show", "lst1"]);
        assert!(
            link.contains(",UP") && link.contains(" mtu 1500 "),
            "{link}"
        );
    });
}

#[test]
fn attaches_to_a_persistent_tun() {
    const TEST: &str = "attaches_to_a_persistent_tun";
    in_netns(TEST, Ipv6::Off, || {
        let pool = pool(1500);
        // Made by `ip` (no packet information, as Tun asks for), down, MTU 1500.
        if !ip_status(&["tuntap", "add", "dev", NAME, "mode", "tun"])
            .status
            .success()
        {
            return skip(TEST, "`ip tuntap add` failed");
        }
        let config = TunConfig {
            name: NAME.into(),
            mtu: 1300,
        };
        let Some(mut tun) = open_or_skip(TEST, &config, &pool) else {
            return;
        };
        let link = ip(&["-o", "link", "show", NAME]);
        assert!(
            link.contains(",UP") && link.contains(" mtu 1300 "),
            "{link}"
        );
        add_kernel_v4();
        let socket = kernel_socket(KERNEL_V4.into());
        socket
            .send_to(b"persistent", SocketAddr::new(TUN_V4.into(), 9999))
            .unwrap();
        let mut signal = tun.signal();
        let packet = receive_one(&mut tun, &mut signal);
        assert_eq!(udp(&packet).unwrap().payload, b"persistent");

        // Dropping the Tun detaches it; a persistent interface stays.
        drop(tun);
        ip(&["link", "show", NAME]);
        ip(&["tuntap", "del", "dev", NAME, "mode", "tun"]);
    });
}

#[test]
fn signal_wakes_for_packets_and_for_its_interrupter() {
    const TEST: &str = "signal_wakes_for_packets_and_for_its_interrupter";
    in_netns(TEST, Ipv6::Off, || {
        let pool = pool(1500);
        let Some(mut tun) = open_or_skip(TEST, &TunConfig::new(NAME), &pool) else {
            return;
        };
        add_kernel_v4();
        let socket = kernel_socket(KERNEL_V4.into());
        let to = SocketAddr::new(TUN_V4.into(), 9999);

        // Nothing pending: the wait blocks until the kernel sends a packet.
        let waiting = BackgroundWait::start(tun.signal());
        waiting.assert_blocked();
        socket.send_to(b"wake up", to).unwrap();
        let (result, mut signal) = waiting.finish();
        result.unwrap();
        // Level-triggered: while the packet is there, a wait returns at once.
        wait_within_patience(&mut signal);
        assert_eq!(udp(&tun.receive(NOW).unwrap()).unwrap().payload, b"wake up");
        assert!(tun.receive(NOW).is_none());

        // Drained: the next wait blocks until the interrupter, called from this thread.
        let interrupt = signal.interrupter();
        let other = tun.signal();
        let waiting = BackgroundWait::start(signal);
        waiting.assert_blocked();
        interrupt();
        let (result, mut signal) = waiting.finish();
        result.unwrap();
        // Sticky: every later wait returns at once too.
        for _ in 0..3 {
            signal.wait().unwrap();
        }

        // Another signal of the same Tun has an interrupter of its own, and still blocks.
        let waiting = BackgroundWait::start(other);
        waiting.assert_blocked();
        // A packet pending before the wait starts makes it return at once.
        socket.send_to(b"already here", to).unwrap();
        let (result, other) = waiting.finish();
        result.unwrap();
        let mut other = other;
        let start = std::time::Instant::now();
        other.wait().unwrap();
        assert!(start.elapsed() < Duration::from_secs(1));
        assert!(tun.receive(NOW).is_some());

        // Once the Tun is gone, waiting fails instead of sleeping for ever.
        drop(tun);
        let err = other.wait().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotConnected);
        assert!(signal.wait().is_err());
    });
}

#[test]
fn deleting_the_interface_fails_the_wait() {
    const TEST: &str = "deleting_the_interface_fails_the_wait";
    in_netns(TEST, Ipv6::Off, || {
        let pool = pool(1500);
        let Some(mut tun) = open_or_skip(TEST, &TunConfig::new(NAME), &pool) else {
            return;
        };
        let waiting = BackgroundWait::start(tun.signal());
        waiting.assert_blocked();
        ip(&["link", "del", NAME]);
        let (result, _) = waiting.finish();
        let err = result.unwrap_err();
        assert!(err.to_string().contains("deleted"), "{err}");
        // The descriptor is dead: reading it is an error, counted, and not a panic.
        assert!(tun.receive(NOW).is_none());
        assert_eq!(tun.stats().rx_errors, 1);
    });
}

#[test]
fn an_exhausted_pool_drops_and_drains() {
    const TEST: &str = "an_exhausted_pool_drops_and_drains";
    in_netns(TEST, Ipv6::Off, || {
        let pool = PacketPool::new(PoolConfig::single(1500, 2)).unwrap();
        let Some(mut tun) = open_or_skip(TEST, &TunConfig::new(NAME), &pool) else {
            return;
        };
        add_kernel_v4();
        let socket = kernel_socket(KERNEL_V4.into());
        let to = SocketAddr::new(TUN_V4.into(), 9999);

        let held = [pool.alloc(1500).unwrap(), pool.alloc(1500).unwrap()];
        for payload in [b"1", b"2", b"3"] {
            socket.send_to(payload, to).unwrap();
        }
        let mut signal = tun.signal();
        // The kernel may still be handing the three over: receive until all were dropped.
        while tun.stats().rx_dropped < 3 {
            wait_within_patience(&mut signal);
            assert!(tun.receive(NOW).is_none(), "the pool has no buffer to give");
        }
        let stats = tun.stats();
        assert_eq!(
            (stats.rx_dropped, stats.rx_packets, stats.rx_errors),
            (3, 0, 0)
        );

        // The descriptor was drained: a wait blocks, until its interrupter.
        let interrupt = signal.interrupter();
        let waiting = BackgroundWait::start(signal);
        waiting.assert_blocked();
        interrupt();
        waiting.finish().0.unwrap();

        drop(held);
        assert!(tun.receive(NOW).is_none(), "the dropped packets are gone");
        socket.send_to(b"4", to).unwrap();
        let mut signal = tun.signal();
        let packet = receive_one(&mut tun, &mut signal);
        assert_eq!(udp(&packet).unwrap().payload, b"4");
        let stats = tun.stats();
        assert_eq!((stats.rx_dropped, stats.rx_packets), (3, 1));
    });
}

#[test]
fn a_packet_over_the_buffer_is_an_error_not_a_short_packet() {
    const TEST: &str = "a_packet_over_the_buffer_is_an_error_not_a_short_packet";
    in_netns(TEST, Ipv6::Off, || {
        // Buffers of exactly the MTU, so a larger packet cannot fit.
        let pool = PacketPool::new(PoolConfig::single(1500, 4)).unwrap();
        let Some(mut tun) = open_or_skip(TEST, &TunConfig::new(NAME), &pool) else {
            return;
        };
        add_kernel_v4();
        // Someone raises the interface's MTU behind the Tun's back.
        ip(&["link", "set", NAME, "mtu", "3000"]);
        let socket = kernel_socket(KERNEL_V4.into());
        let to = SocketAddr::new(TUN_V4.into(), 9999);
        socket.send_to(&[1; 2000], to).unwrap();
        socket.send_to(b"small", to).unwrap();

        let mut signal = tun.signal();
        let packet = receive_one(&mut tun, &mut signal);
        assert_eq!(udp(&packet).unwrap().payload, b"small");
        let stats = tun.stats();
        assert_eq!((stats.rx_errors, stats.rx_packets), (1, 1));
    });
}

#[test]
fn no_allocation_per_packet() {
    const TEST: &str = "no_allocation_per_packet";
    in_netns(TEST, Ipv6::Off, || {
        let pool = pool(1500);
        let Some(mut tun) = open_or_skip(TEST, &TunConfig::new(NAME), &pool) else {
            return;
        };
        add_kernel_v4();
        let socket = kernel_socket(KERNEL_V4.into());
        let to = SocketAddr::new(TUN_V4.into(), 9999);
        let from = SocketAddr::new(TUN_V4.into(), 7777);
        let kernel = socket.local_addr().unwrap();
        let mut signal = tun.signal();
        let mut buf = [0; 100];

        let mut allocations = 0;
        for round in 0..60 {
            socket.send_to(b"in", to).unwrap();
            wait_within_patience(&mut signal);
            let packet = udp_packet(&pool, from, kernel, b"out");
            let mut got = false;
            let count = allocations_during(|| {
                // Receive, return the buffer to the pool, transmit; and the empty read
                // (EAGAIN) after it.
                got = tun.receive(NOW).is_some();
                tun.transmit(NOW, packet).unwrap();
                got &= tun.receive(NOW).is_none();
            });
            assert!(got, "one packet, then nothing");
            // The first rounds warm up whatever is lazily set up.
            if round >= 10 {
                allocations += count;
            }
            assert_eq!(socket.recv(&mut buf).unwrap(), 3);
        }
        assert_eq!(tun.stats().rx_packets, 60);
        assert_eq!(allocations, 0, "receive and transmit allocated");
    });
}
