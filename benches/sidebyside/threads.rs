//! The two-thread scenarios, written once for any `std::net`-shaped socket API.
//!
//! [`kernel`](super::kernel) runs them on `std::net` (the kernel's `lo`) and
//! [`blocking`](super::blocking) on loopstack's blocking sockets: each module only says how
//! its API binds, connects, reads and writes ([`Sockets`]). Everything else (the threads,
//! the buffers, the checks, the warm-up, the way a scenario stops) is this file, so the two
//! do exactly the same thing. What they cannot share is written down in each module.
//!
//! The benchmark's thread is the client. TCP and UDP ping-pong and TCP bulk have a server
//! thread each, spawned by the constructor and stopped and joined when the scenario is
//! dropped. UDP one-way runs on the benchmark's thread alone (see [`UdpOneWay`]).
//!
//! Nothing here allocates once a scenario is built: buffers are allocated up front, the
//! bulk scenario's client and server meet through two atomic counters ([`TcpBulk`]), and
//! errors (which may allocate) end in a panic.
//! `tests/zero_alloc_blocking.rs` counts, on the client and on the server thread, through
//! the [`Probe`] hooks. (One exception, outside the hot path: a loopstack server whose
//! read times out after a [`SERVER_POLL`] of idleness gets a `WouldBlock` error, and
//! loopstack boxes its `io::Error`s, where std's is an errno.)
//!
//! Every wait is bounded or tied to the peer. The client waits at most [`TIMEOUT`] for
//! anything (a reply, room to write, the server's last read) and then panics. The server
//! waits for the client as long as the scenario lives, in steps of [`SERVER_POLL`]: dropping
//! the scenario wakes it (end of stream, an empty datagram) and it stops; a lost wake-up
//! costs one step, never a hang.

use std::io::{self, ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::{pattern, Bulk, Family, OneWay, PingPong, BULK_CHUNK, BURST, DATAGRAM, WARM_UP};

/// The longest the client waits for anything before it panics.
pub(super) const TIMEOUT: Duration = Duration::from_secs(10);

/// How often a waiting server thread looks whether its scenario was dropped.
const SERVER_POLL: Duration = Duration::from_secs(1);

/// The most datagrams a [`OneWay::burst`] sends before it receives them.
pub(super) const MAX_ROUND: usize = 64;

/// The most bytes a burst has queued at the receiver at once, counting [`QUEUE_OVERHEAD`]
/// per datagram: half the receive queue of both stacks. The kernel's is
/// `net.core.rmem_default`, 212,992 bytes of `truesize` (payload plus the `sk_buff`: about
/// 830 bytes for 64, so 256 such datagrams on `lo`); loopstack's is `UdpConfig`'s, 212,992 payload bytes or
/// 1024 datagrams.
pub(super) const QUEUE_BUDGET: usize = 104 * 1024;

/// What a datagram costs in the kernel's receive queue beyond its payload (`truesize`),
/// rounded up.
const QUEUE_OVERHEAD: usize = 1024;

/// Datagrams of `size` bytes a burst sends before it receives: all of a [`BURST`] of
/// [`DATAGRAM`]s, so none is lost to a full receive queue.
fn round(size: usize) -> usize {
    (QUEUE_BUDGET / (size + QUEUE_OVERHEAD)).clamp(1, MAX_ROUND)
}

const _: () = assert!(BURST <= MAX_ROUND && BURST * (DATAGRAM + QUEUE_OVERHEAD) <= QUEUE_BUDGET);

/// The socket operations the scenarios use, as `std::net` spells them. `self` is the stack
/// the sockets are made on (nothing for the kernel; a `Net` for loopstack).
pub(super) trait Sockets: 'static {
    /// For thread names and panic messages.
    const NAME: &'static str;
    type Listener;
    type Stream: Read + Write + Send + 'static;
    type Udp: Send + 'static;

    fn tcp_listen(&self, addr: SocketAddr) -> io::Result<Self::Listener>;
    fn tcp_listener_addr(listener: &Self::Listener) -> io::Result<SocketAddr>;
    fn tcp_accept(listener: &Self::Listener) -> io::Result<Self::Stream>;
    fn tcp_connect(&self, addr: SocketAddr) -> io::Result<Self::Stream>;
    fn tcp_set_nodelay(stream: &Self::Stream, nodelay: bool) -> io::Result<()>;
    fn tcp_set_timeouts(stream: &Self::Stream, read: Duration, write: Duration) -> io::Result<()>;
    fn tcp_shutdown_write(stream: &Self::Stream) -> io::Result<()>;

    fn udp_bind(&self, addr: SocketAddr) -> io::Result<Self::Udp>;
    fn udp_local_addr(socket: &Self::Udp) -> io::Result<SocketAddr>;
    fn udp_connect(socket: &Self::Udp, addr: SocketAddr) -> io::Result<()>;
    fn udp_set_timeouts(socket: &Self::Udp, read: Duration, write: Duration) -> io::Result<()>;
    fn udp_send(socket: &Self::Udp, buf: &[u8]) -> io::Result<usize>;
    fn udp_recv(socket: &Self::Udp, buf: &mut [u8]) -> io::Result<usize>;
    fn udp_send_to(socket: &Self::Udp, buf: &[u8], addr: SocketAddr) -> io::Result<usize>;
    fn udp_recv_from(socket: &Self::Udp, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)>;
}

/// Hooks a server thread calls around a window of its iterations, so that a test can count
/// the server's allocations: `tests/zero_alloc_blocking.rs` passes
/// `loopstack_testkit::{start_measuring, stop_measuring}`.
///
/// One iteration is what serves one client call: one echo (ping-pong), or one
/// [`Bulk::transfer`]. The constructor's [`WARM_UP`] iterations come
/// first; the window is the `iterations` after the next `skip`. `start` runs on the server
/// thread before it waits for the window's first request, `stop` after it answered the
/// last, so once the client has made one more call after the window, the server has
/// called `stop`. If the scenario is dropped with the window open, `stop` runs before the
/// server thread ends.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    /// Called on the server thread when the window opens.
    pub start: fn(),
    /// Called on the server thread when the window closes.
    pub stop: fn(),
    /// Iterations after the warm-up before the window opens.
    pub skip: usize,
    /// Iterations in the window (at least one).
    pub iterations: usize,
}

/// A server's iteration count, and its [`Probe`] if it has one.
struct Window {
    probe: Option<Probe>,
    iteration: usize,
    open: bool,
}

impl Window {
    fn new(probe: Option<Probe>) -> Window {
        if let Some(p) = probe {
            assert!(p.iterations > 0, "a probe's window must hold an iteration");
        }
        Window {
            probe,
            iteration: 0,
            open: false,
        }
    }

    /// Before the server waits for an iteration's request.
    fn begin(&mut self) {
        if let Some(p) = self.probe {
            if self.iteration == WARM_UP + p.skip {
                self.open = true;
                (p.start)();
            }
        }
    }

    /// After the server answered it.
    fn end(&mut self) {
        self.iteration += 1;
        if let Some(p) = self.probe {
            if self.open && self.iteration == WARM_UP + p.skip + p.iterations {
                self.close();
            }
        }
    }

    fn close(&mut self) {
        if let (true, Some(p)) = (self.open, self.probe) {
            self.open = false;
            (p.stop)();
        }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        self.close();
    }
}

/// A scenario's server thread: told to stop by a flag, and joined.
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn spawn<S: Sockets>(what: &str, body: impl FnOnce(&AtomicBool) + Send + 'static) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            // "sbs-" (side by side) lets the tests find leftover server threads.
            .name(format!("sbs-{}-{what}", S::NAME))
            .spawn(move || body(&flag))
            .unwrap_or_else(|e| panic!("{} {what}: cannot spawn the server thread: {e}", S::NAME));
        Server {
            stop,
            thread: Some(thread),
        }
    }

    /// Raises the stop flag, calls `wake` (which makes the server look at once rather than
    /// after its next [`SERVER_POLL`]), and joins the thread. A panic of the server is
    /// raised again here, unless this thread is already panicking.
    fn stop(&mut self, wake: impl FnOnce()) {
        self.stop.store(true, Ordering::Release);
        wake();
        if let Some(t) = self.thread.take() {
            if let Err(panic) = t.join() {
                if !thread::panicking() {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
}

/// A read or receive that ended because its timeout passed.
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
    )
}

/// Server side: reads what there is into `buf` (at least one byte). `None` at the end of
/// the stream, or once the scenario is gone.
fn read_some<S: Sockets>(
    stream: &mut S::Stream,
    buf: &mut [u8],
    stop: &AtomicBool,
    what: &str,
) -> Option<usize> {
    loop {
        match stream.read(buf) {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(_) if stop.load(Ordering::Acquire) => return None,
            Err(e) if timed_out(&e) => {}
            Err(e) => panic!("{} {what} server: read failed: {e}", S::NAME),
        }
    }
}

/// The client's 10 s limits on a TCP stream; the server's poll step for its reads.
fn tcp_timeouts<S: Sockets>(client: &S::Stream, server: &S::Stream) {
    S::tcp_set_timeouts(client, TIMEOUT, TIMEOUT).expect("setting the client's timeouts");
    S::tcp_set_timeouts(server, SERVER_POLL, TIMEOUT).expect("setting the server's timeouts");
}

/// A connected pair on `family`'s loopback address: (client, accepted).
fn tcp_pair<S: Sockets>(net: &S, family: Family) -> (S::Stream, S::Stream) {
    let listener = net
        .tcp_listen(family.addr(0))
        .expect("binding the listener");
    let addr = S::tcp_listener_addr(&listener).expect("the listener's address");
    let client = net.tcp_connect(addr).expect("connecting");
    let server = S::tcp_accept(&listener).expect("accepting");
    tcp_timeouts::<S>(&client, &server);
    (client, server)
}

// ---------------------------------------------------------------------- TCP bulk

/// [`Bulk`]: the client writes, the server thread reads in [`BULK_CHUNK`] pieces, and the
/// two share a pair of counters instead of exchanging messages.
///
/// A [`Bulk::transfer`] ends when the server has read every byte of it, so client and
/// server must meet once per iteration. They used to meet through two rendezvous channels
/// (the byte count out, the server's report back), and each meeting could park a thread
/// and wake it: up to two futex wake-ups per iteration, about 45 µs each on the reference
/// VM, which is as long as loopstack's blocking mode takes to move the whole MiB
/// (docs/benchmarks.md, item 15). It measured the scheduler, not either stack. Now the
/// client announces where the iteration ends in [`Progress::target`] before it writes, the
/// server reads as any bulk receiver does (blocked in its socket's `read` until data
/// comes), and the client spins on [`Progress::read`] for the last bytes to be read. No
/// thread waits outside the stacks' own calls, except a client that has spun for long.
pub(super) struct TcpBulk<S: Sockets> {
    stream: S::Stream,
    progress: Arc<Progress>,
    /// Bytes written so far, over the scenario's life.
    written: u64,
    /// One chunk of the pattern, written `chunks` times.
    data: Vec<u8>,
    server: Server,
}

/// What the client and the server of a [`TcpBulk`] tell each other, in bytes since the
/// scenario began.
struct Progress {
    /// Where the current iteration ends. The client raises it before it writes the
    /// iteration's first byte, and only once the server has read every byte before it.
    target: AtomicU64,
    /// What the server has read. Published after each read, once the server has closed
    /// the iteration that read completed, if it did.
    read: AtomicU64,
}

/// How many times [`spin_wait`] looks, with a `spin_loop` hint between looks, before it
/// starts yielding the CPU between them. A count, not a measured time, and not tuned: it
/// only bounds how long a waiting thread keeps a CPU that, on a machine with one, the
/// thread it waits for needs.
pub(super) const SPINS: u64 = 1 << 12;

/// Waits until `done` holds: looks [`SPINS`] times with a `spin_loop` hint between looks,
/// then yields the CPU between looks (on a machine with one CPU the thread it waits for
/// needs it). Returns false if [`TIMEOUT`] passes first.
pub(super) fn spin_wait(done: impl Fn() -> bool) -> bool {
    let start = std::time::Instant::now();
    let mut tries = 0u64;
    while !done() {
        tries += 1;
        if tries < SPINS {
            std::hint::spin_loop();
            continue;
        }
        thread::yield_now();
        if tries.is_multiple_of(1024) && start.elapsed() > TIMEOUT {
            return false;
        }
    }
    true
}

pub(super) fn tcp_bulk<S: Sockets>(net: &S, family: Family, probe: Option<Probe>) -> TcpBulk<S> {
    let (stream, mut conn) = tcp_pair(net, family);
    let progress = Arc::new(Progress {
        target: AtomicU64::new(0),
        read: AtomicU64::new(0),
    });
    let shared = Arc::clone(&progress);
    let server = Server::spawn::<S>("bulk", move |stop| {
        let mut window = Window::new(probe);
        let mut buf = vec![0u8; BULK_CHUNK];
        let mut read = 0u64;
        // Where the next byte falls in its chunk.
        let mut pos = 0;
        window.begin();
        loop {
            let Some(n) = read_some::<S>(&mut conn, &mut buf, stop, "bulk") else {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                panic!("{} bulk server: end of stream after {read} bytes", S::NAME);
            };
            let last = (pos + n - 1) % BULK_CHUNK;
            if buf[0] != pattern(pos) || buf[n - 1] != pattern(last) {
                panic!(
                    "{} bulk server: wrong bytes in a read of {n} at offset {pos} of a chunk",
                    S::NAME
                );
            }
            pos = (last + 1) % BULK_CHUNK;
            read += n as u64;
            // The client wrote these bytes after it set their iteration's target, and sets
            // the next target only once it sees them read: loaded before `read` is
            // published, the target is this iteration's.
            let target = shared.target.load(Ordering::Acquire);
            if read > target {
                panic!(
                    "{} bulk server: read {read} bytes, {target} written",
                    S::NAME
                );
            }
            let complete = read == target;
            if complete {
                window.end();
            }
            shared.read.store(read, Ordering::Release);
            if complete {
                window.begin();
            }
        }
    });
    let mut s = TcpBulk {
        stream,
        progress,
        written: 0,
        data: (0..BULK_CHUNK).map(pattern).collect(),
        server,
    };
    for _ in 0..WARM_UP {
        s.transfer(1);
    }
    s
}

impl<S: Sockets> TcpBulk<S> {
    /// Waits until the server has read `target` bytes: spins, then yields the CPU (on a
    /// machine with one CPU the server needs it), and panics after [`TIMEOUT`].
    fn wait_read(&self, target: u64) {
        if !spin_wait(|| self.progress.read.load(Ordering::Acquire) >= target) {
            let read = self.progress.read.load(Ordering::Acquire);
            panic!("{} bulk: the server read {read} of {target} bytes", S::NAME);
        }
    }
}

impl<S: Sockets> Bulk for TcpBulk<S> {
    fn transfer(&mut self, chunks: usize) {
        let target = self.written + (chunks * BULK_CHUNK) as u64;
        self.progress.target.store(target, Ordering::Release);
        for i in 0..chunks {
            if let Err(e) = self.stream.write_all(&self.data) {
                panic!("{} bulk: writing chunk {i} of {chunks}: {e}", S::NAME);
            }
        }
        self.written = target;
        self.wait_read(target);
    }
}

impl<S: Sockets> Drop for TcpBulk<S> {
    fn drop(&mut self) {
        let stream = &self.stream;
        self.server.stop(|| {
            let _ = S::tcp_shutdown_write(stream);
        });
    }
}

// ---------------------------------------------------------------------- TCP ping-pong

/// [`PingPong`] over TCP, Nagle off on both ends: the server thread echoes each message.
pub(super) struct TcpPingPong<S: Sockets> {
    stream: S::Stream,
    msg: Vec<u8>,
    reply: Vec<u8>,
    seq: u8,
    server: Server,
}

pub(super) fn tcp_ping_pong<S: Sockets>(
    net: &S,
    family: Family,
    size: usize,
    probe: Option<Probe>,
) -> TcpPingPong<S> {
    assert!(size > 0, "a ping-pong message has at least one byte");
    let (stream, mut conn) = tcp_pair(net, family);
    S::tcp_set_nodelay(&stream, true).expect("TCP_NODELAY on the client");
    S::tcp_set_nodelay(&conn, true).expect("TCP_NODELAY on the server");
    let server = Server::spawn::<S>("tcp", move |stop| {
        let mut window = Window::new(probe);
        let mut buf = vec![0u8; size];
        loop {
            window.begin();
            let mut got = 0;
            while got < size {
                let Some(n) = read_some::<S>(&mut conn, &mut buf[got..], stop, "tcp echo") else {
                    // The end of the stream between two messages is the client's goodbye.
                    if got == 0 || stop.load(Ordering::Acquire) {
                        return;
                    }
                    panic!(
                        "{} tcp echo server: end of stream inside a message",
                        S::NAME
                    );
                };
                got += n;
            }
            if let Err(e) = conn.write_all(&buf) {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                panic!("{} tcp echo server: write failed: {e}", S::NAME);
            }
            window.end();
        }
    });
    let mut s = TcpPingPong {
        stream,
        msg: vec![0x5a; size],
        reply: vec![0; size],
        seq: 0,
        server,
    };
    for _ in 0..WARM_UP {
        s.round_trip();
    }
    s
}

impl<S: Sockets> PingPong for TcpPingPong<S> {
    fn round_trip(&mut self) {
        self.seq = self.seq.wrapping_add(1);
        let last = self.msg.len() - 1;
        (self.msg[0], self.msg[last]) = (self.seq, self.seq);
        if let Err(e) = self.stream.write_all(&self.msg) {
            panic!("{} tcp ping-pong: write failed: {e}", S::NAME);
        }
        if let Err(e) = self.stream.read_exact(&mut self.reply) {
            panic!("{} tcp ping-pong: no reply: {e}", S::NAME);
        }
        if (self.reply[0], self.reply[last]) != (self.seq, self.seq) {
            panic!("{} tcp ping-pong: the reply is not the message", S::NAME);
        }
    }
}

impl<S: Sockets> Drop for TcpPingPong<S> {
    fn drop(&mut self) {
        let stream = &self.stream;
        self.server.stop(|| {
            let _ = S::tcp_shutdown_write(stream);
        });
    }
}

// ---------------------------------------------------------------------- UDP ping-pong

/// A client UDP socket connected to a server socket on `family`'s loopback address.
fn udp_pair<S: Sockets>(net: &S, family: Family) -> (S::Udp, S::Udp) {
    let server = net
        .udp_bind(family.addr(0))
        .expect("binding the server socket");
    let client = net
        .udp_bind(family.addr(0))
        .expect("binding the client socket");
    let addr = S::udp_local_addr(&server).expect("the server's address");
    S::udp_connect(&client, addr).expect("connecting the client socket");
    S::udp_set_timeouts(&client, TIMEOUT, TIMEOUT).expect("setting the client's timeouts");
    S::udp_set_timeouts(&server, SERVER_POLL, TIMEOUT).expect("setting the server's timeouts");
    (client, server)
}

/// [`PingPong`] over UDP: the client is connected to the server, which echoes each
/// datagram to its sender. An empty datagram tells the server to stop.
pub(super) struct UdpPingPong<S: Sockets> {
    socket: S::Udp,
    msg: Vec<u8>,
    /// One byte more than a message: a longer reply shows.
    reply: Vec<u8>,
    seq: u8,
    server: Server,
}

pub(super) fn udp_ping_pong<S: Sockets>(
    net: &S,
    family: Family,
    size: usize,
    probe: Option<Probe>,
) -> UdpPingPong<S> {
    assert!(size > 0, "a ping-pong datagram has at least one byte");
    let (socket, sock) = udp_pair(net, family);
    let server = Server::spawn::<S>("udp", move |stop| {
        let mut window = Window::new(probe);
        let mut buf = vec![0u8; size + 1];
        loop {
            window.begin();
            let (n, from) = loop {
                match S::udp_recv_from(&sock, &mut buf) {
                    Ok(r) => break r,
                    Err(_) if stop.load(Ordering::Acquire) => return,
                    Err(e) if timed_out(&e) => {}
                    Err(e) => panic!("{} udp echo server: receive failed: {e}", S::NAME),
                }
            };
            if n == 0 {
                return;
            }
            match S::udp_send_to(&sock, &buf[..n], from) {
                Ok(sent) if sent == n => {}
                Ok(sent) => panic!("{} udp echo server: sent {sent} of {n} bytes", S::NAME),
                Err(_) if stop.load(Ordering::Acquire) => return,
                Err(e) => panic!("{} udp echo server: send failed: {e}", S::NAME),
            }
            window.end();
        }
    });
    let mut s = UdpPingPong {
        socket,
        msg: vec![0x5a; size],
        reply: vec![0; size + 1],
        seq: 0,
        server,
    };
    for _ in 0..WARM_UP {
        s.round_trip();
    }
    s
}

impl<S: Sockets> PingPong for UdpPingPong<S> {
    fn round_trip(&mut self) {
        self.seq = self.seq.wrapping_add(1);
        let size = self.msg.len();
        (self.msg[0], self.msg[size - 1]) = (self.seq, self.seq);
        match S::udp_send(&self.socket, &self.msg) {
            Ok(n) if n == size => {}
            Ok(n) => panic!("{} udp ping-pong: sent {n} of {size} bytes", S::NAME),
            Err(e) => panic!("{} udp ping-pong: send failed: {e}", S::NAME),
        }
        match S::udp_recv(&self.socket, &mut self.reply) {
            Ok(n) if n == size => {}
            Ok(n) => panic!("{} udp ping-pong: a {n}-byte reply to {size}", S::NAME),
            Err(e) => panic!("{} udp ping-pong: no reply: {e}", S::NAME),
        }
        if (self.reply[0], self.reply[size - 1]) != (self.seq, self.seq) {
            panic!("{} udp ping-pong: the reply is not the message", S::NAME);
        }
    }
}

impl<S: Sockets> Drop for UdpPingPong<S> {
    fn drop(&mut self) {
        let socket = &self.socket;
        self.server.stop(|| {
            let _ = S::udp_send(socket, &[]);
        });
    }
}

// ---------------------------------------------------------------------- UDP one way

/// [`OneWay`]: `burst(n)` sends `n` datagrams from the client socket, then receives them on
/// the server socket, all on the benchmark's thread. A longer burst than the receive queue
/// holds safely goes in rounds of [`round`] datagrams (a [`BURST`] of [`DATAGRAM`]s is one).
///
/// One thread, not two: what is measured is the stack's cost per datagram, and a receiving
/// thread would add a wake-up and a hand-off per datagram (or per batch, depending on how
/// the two threads happen to interleave) that says more about the scheduler than about the
/// stack. It is also the shape the poll-mode implementations (loopstack's and smoltcp's)
/// have to take, so the four are comparable.
pub(super) struct UdpOneWay<S: Sockets> {
    tx: S::Udp,
    rx: S::Udp,
    tx_addr: SocketAddr,
    msg: Vec<u8>,
    /// One byte more than a datagram: a longer one shows.
    buf: Vec<u8>,
    /// Datagrams sent before receiving: [`round`].
    round: usize,
    /// The number of the last datagram sent, and of the last received (mod 256).
    sent: u8,
    received: u8,
}

pub(super) fn udp_one_way<S: Sockets>(net: &S, family: Family, size: usize) -> UdpOneWay<S> {
    assert!(size > 0, "a one-way datagram has at least one byte");
    let (tx, rx) = udp_pair(net, family);
    // The receiving socket is the bench thread's too: it gets the client's timeouts.
    S::udp_set_timeouts(&rx, TIMEOUT, TIMEOUT).expect("setting the receiver's timeouts");
    let tx_addr = S::udp_local_addr(&tx).expect("the sender's address");
    let mut s = UdpOneWay {
        tx,
        rx,
        tx_addr,
        msg: vec![0x5a; size],
        buf: vec![0; size + 1],
        round: round(size),
        sent: 0,
        received: 0,
    };
    for _ in 0..WARM_UP {
        s.burst(BURST);
    }
    s
}

impl<S: Sockets> OneWay for UdpOneWay<S> {
    fn burst(&mut self, n: usize) {
        let mut left = n;
        while left > 0 {
            let k = left.min(self.round);
            self.send(k);
            self.receive(k);
            left -= k;
        }
    }
}

impl<S: Sockets> UdpOneWay<S> {
    /// Sends `k` datagrams, numbered on from the last.
    fn send(&mut self, k: usize) {
        let size = self.msg.len();
        for i in 0..k {
            self.sent = self.sent.wrapping_add(1);
            (self.msg[0], self.msg[size - 1]) = (self.sent, self.sent);
            match S::udp_send(&self.tx, &self.msg) {
                Ok(n) if n == size => {}
                Ok(n) => panic!(
                    "{} udp one-way: datagram {i} of {k}: sent {n} of {size} bytes",
                    S::NAME
                ),
                Err(e) => panic!(
                    "{} udp one-way: datagram {i} of {k}: send failed: {e}",
                    S::NAME
                ),
            }
        }
    }

    /// Receives `k` datagrams, and checks they are the next `k` sent, in order.
    fn receive(&mut self, k: usize) {
        let size = self.msg.len();
        for i in 0..k {
            self.received = self.received.wrapping_add(1);
            match S::udp_recv_from(&self.rx, &mut self.buf) {
                Ok((n, from)) if n == size && from == self.tx_addr => {}
                Ok((n, from)) => panic!(
                    "{} udp one-way: datagram {i} of {k} is {n} bytes from {from}",
                    S::NAME
                ),
                Err(e) => panic!("{} udp one-way: datagram {i} of {k} lost: {e}", S::NAME),
            }
            let seq = self.received;
            if (self.buf[0], self.buf[size - 1]) != (seq, seq) {
                panic!(
                    "{} udp one-way: datagram {i} of {k} is not the one sent",
                    S::NAME
                );
            }
        }
    }
}
