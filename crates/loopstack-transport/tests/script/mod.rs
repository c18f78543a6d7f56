//! A tiny language for TCP test scripts: segments in, segments out.
//!
//! A test drives one [`Connection`] directly, playing the peer by hand:
//!
//! ```text
//!   t.expect(seg().syn().seq(ISS).mss(65495).wscale(5));     what we must send next
//!   t.recv(seg().syn().ack().seq(IRS).ack_n(ISS + 1)...);    what the peer sends us
//!   t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1));
//!   t.expect_nothing();
//! ```
//!
//! [`Script::expect`] takes the connection's next segment ([`Connection::next_segment`]) and
//! checks the fields the pattern names; the rest go unchecked, with two exceptions that keep
//! a script honest: the control bits are always compared (PSH aside, unless the pattern asks
//! for it), and a pattern that says nothing about payload expects none. Ports are always
//! checked too.
//!
//! Time is simulated: the script's clock only moves when a test says so ([`Script::advance`],
//! [`Script::fire`]), so every timer is exact and every run is the same.
//!
//! Every step is printed (`<-` in, `->` out) in tcpdump's style; `cargo test` shows the
//! transcript of a failing test, which usually says what went wrong faster than the
//! assertion does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use loopstack_buf::{PacketPool, PoolConfig, SizeClass};
use loopstack_internet::icmp::RateLimiter;
use loopstack_link::Instant;
use loopstack_transport::tcp::conn::{Connection, Ctx, State, TcpInfo};
use loopstack_transport::tcp::wire::{Flags, Header, Options};
use loopstack_transport::tcp::{SeqNum, TcpConfig, TcpStats};

/// Our initial sequence number in every script.
pub const ISS: u32 = 10_000;
/// The peer's initial sequence number (our IRS, "initial receive sequence number").
pub const IRS: u32 = 1_000;
/// The window shift we offer: the smallest that lets the default 1 MiB receive buffer be
/// advertised (1 MiB >> 5 = 32768 <= 65535).
pub const OUR_WSCALE: u8 = 5;
/// The window shift the peer offers when a script says it scales (Linux's usual 7).
pub const PEER_WSCALE: u8 = 7;
/// The window the scripted peer advertises unless told otherwise.
pub const PEER_WINDOW: u16 = 65535;

/// One address family's side of a script: loopback addresses, and the segment sizes that
/// differ between IPv4 and IPv6.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// "IPv4" or "IPv6", for messages.
    pub name: &'static str,
    /// Our end.
    pub local: SocketAddr,
    /// The peer's end.
    pub remote: SocketAddr,
    /// The MSS our route allows, as the socket table computes it for loopback's 65536-byte
    /// MTU: IPv4 packets stop at 65535 bytes (the Total Length field), less 20 + 20 bytes of
    /// headers; IPv6 takes the whole MTU, less 40 + 20.
    pub our_mss: u32,
    /// The MSS the scripted peer announces: an Ethernet-sized path (1500 less the headers).
    pub peer_mss: u16,
}

impl Family {
    /// 127.0.0.1, MSS 65495 ours and 1460 the peer's.
    pub fn v4() -> Family {
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Family {
            name: "IPv4",
            local: SocketAddr::new(ip, 40000),
            remote: SocketAddr::new(ip, 8080),
            our_mss: 65535 - 40,
            peer_mss: 1500 - 40,
        }
    }

    /// ::1, MSS 65476 ours and 1440 the peer's.
    pub fn v6() -> Family {
        let ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
        Family {
            name: "IPv6",
            local: SocketAddr::new(ip, 40000),
            remote: SocketAddr::new(ip, 8080),
            our_mss: 65536 - 60,
            peer_mss: 1500 - 60,
        }
    }

    /// The peer's MSS as a byte count.
    pub fn mss(&self) -> u32 {
        u32::from(self.peer_mss)
    }

    /// The MSS option we announce.
    pub fn our_mss_option(&self) -> u16 {
        self.our_mss as u16
    }
}

/// The bytes a script puts at sequence number `seq`: a pattern that depends on the
/// position, so reordering or duplicating a byte shows in what the application reads.
pub fn pattern(seq: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seq.wrapping_add(i as u32) % 251) as u8)
        .collect()
}

/// A segment's payload, in a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Payload {
    /// These exact bytes.
    Bytes(Vec<u8>),
    /// This many bytes: sent as [`pattern`] from the segment's sequence number, checked by
    /// length only.
    Len(usize),
}

/// A segment pattern: to send (every field given is used, the rest defaulted) or to
/// expect (every field given is checked).
#[derive(Debug, Clone, Default)]
pub struct Seg {
    flags: Flags,
    seq: Option<u32>,
    ack: Option<u32>,
    window: Option<u16>,
    mss: Option<Option<u16>>,
    wscale: Option<Option<u8>>,
    sack_permitted: Option<bool>,
    timestamps: Option<Option<(u32, u32)>>,
    payload: Option<Payload>,
}

/// A new, empty segment pattern.
pub fn seg() -> Seg {
    Seg::default()
}

impl Seg {
    fn flag(mut self, f: Flags) -> Seg {
        self.flags = self.flags | f;
        self
    }
    /// SYN bit.
    pub fn syn(self) -> Seg {
        self.flag(Flags::SYN)
    }
    /// ACK bit (the acknowledgment number is [`ack_n`](Self::ack_n)).
    pub fn ack(self) -> Seg {
        self.flag(Flags::ACK)
    }
    /// FIN bit.
    pub fn fin(self) -> Seg {
        self.flag(Flags::FIN)
    }
    /// RST bit.
    pub fn rst(self) -> Seg {
        self.flag(Flags::RST)
    }
    /// Sequence number.
    pub fn seq(mut self, n: u32) -> Seg {
        self.seq = Some(n);
        self
    }
    /// Acknowledgment number.
    pub fn ack_n(mut self, n: u32) -> Seg {
        self.ack = Some(n);
        self
    }
    /// The window field as on the wire (unscaled).
    pub fn window(mut self, w: u16) -> Seg {
        self.window = Some(w);
        self
    }
    /// MSS option.
    pub fn mss(mut self, m: u16) -> Seg {
        self.mss = Some(Some(m));
        self
    }
    /// No MSS option.
    pub fn no_mss(mut self) -> Seg {
        self.mss = Some(None);
        self
    }
    /// Window scale option.
    pub fn wscale(mut self, s: u8) -> Seg {
        self.wscale = Some(Some(s));
        self
    }
    /// No window scale option.
    pub fn no_wscale(mut self) -> Seg {
        self.wscale = Some(None);
        self
    }
    /// SACK-permitted option (present or, when expecting, absent).
    pub fn sack_permitted(mut self, on: bool) -> Seg {
        self.sack_permitted = Some(on);
        self
    }
    /// Timestamps option `(TSval, TSecr)`.
    pub fn timestamps(mut self, ts: Option<(u32, u32)>) -> Seg {
        self.timestamps = Some(ts);
        self
    }
    /// No options at all.
    pub fn no_options(mut self) -> Seg {
        self.mss = Some(None);
        self.wscale = Some(None);
        self.sack_permitted = Some(false);
        self.timestamps = Some(None);
        self
    }
    /// These payload bytes.
    pub fn data(mut self, bytes: &[u8]) -> Seg {
        self.payload = Some(Payload::Bytes(bytes.to_vec()));
        self
    }
    /// `n` payload bytes ([`pattern`] when sent, length only when expected).
    pub fn len(mut self, n: usize) -> Seg {
        self.payload = Some(Payload::Len(n));
        self
    }
}

/// A segment the connection sent: its header and payload bytes.
#[derive(Debug, Clone)]
pub struct Sent {
    /// The header.
    pub header: Header,
    /// The payload.
    pub payload: Vec<u8>,
}

/// tcpdump's one-line summary of a header.
pub fn describe(h: &Header, len: usize) -> String {
    let mut s = format!("[{:?}] seq {}", h.flags, h.seq);
    if h.flags.contains(Flags::ACK) {
        s += &format!(" ack {}", h.ack);
    }
    s += &format!(" win {}", h.window);
    let mut opts = Vec::new();
    if let Some(m) = h.options.mss {
        opts.push(format!("mss {m}"));
    }
    if let Some(w) = h.options.window_scale {
        opts.push(format!("wscale {w}"));
    }
    if h.options.sack_permitted {
        opts.push("sackOK".to_string());
    }
    if let Some((v, e)) = h.options.timestamps {
        opts.push(format!("TS val {v} ecr {e}"));
    }
    if !opts.is_empty() {
        s += &format!(" <{}>", opts.join(","));
    }
    s + &format!(" length {len}")
}

/// One connection and the world around it: configuration, counters, the challenge-ACK
/// budget, a buffer pool and a clock.
pub struct Script {
    /// The connection under test.
    pub conn: Connection,
    /// Its settings.
    pub config: TcpConfig,
    /// The stack-wide counters it updates.
    pub stats: TcpStats,
    /// The stack-wide challenge-ACK budget (RFC 5961 7).
    pub challenge: RateLimiter,
    /// The simulated clock.
    pub now: Instant,
    /// Addresses and segment sizes.
    pub fam: Family,
    pool: PacketPool,
}

/// Buffers for scripted payloads: small ones for most segments (enough to fill a 1 MiB
/// receive buffer with 1000-byte segments), a few large ones.
fn pool() -> PacketPool {
    PacketPool::new(PoolConfig {
        headroom: PoolConfig::DEFAULT_HEADROOM,
        classes: vec![
            SizeClass {
                capacity: 2048,
                count: 1200,
            },
            SizeClass {
                capacity: PoolConfig::MAX_IP_PACKET,
                count: 8,
            },
        ],
    })
    .expect("pool")
}

impl Script {
    /// Runs `f` with the connection and a [`Ctx`] borrowed from the script.
    fn with_ctx<R>(&mut self, f: impl FnOnce(&mut Connection, &mut Ctx<'_>) -> R) -> R {
        let mut ctx = Ctx {
            config: &self.config,
            stats: &mut self.stats,
            challenge: &mut self.challenge,
        };
        f(&mut self.conn, &mut ctx)
    }

    fn with_conn(
        fam: Family,
        config: TcpConfig,
        open: impl FnOnce(&mut Ctx<'_>) -> Connection,
    ) -> Script {
        let mut stats = TcpStats::default();
        let mut challenge =
            RateLimiter::new(config.challenge_acks_per_sec, config.challenge_acks_per_sec);
        let conn = open(&mut Ctx {
            config: &config,
            stats: &mut stats,
            challenge: &mut challenge,
        });
        println!("== {} {} -> {}", fam.name, fam.local, fam.remote);
        Script {
            conn,
            config,
            stats,
            challenge,
            now: Instant::from_millis(0),
            fam,
            pool: pool(),
        }
    }

    /// An active open (SYN-SENT) with the default configuration.
    pub fn client(fam: Family) -> Script {
        Script::client_with(fam, TcpConfig::default())
    }

    /// An active open with `config`.
    pub fn client_with(fam: Family, config: TcpConfig) -> Script {
        Script::with_conn(fam, config, |ctx| {
            Connection::connect(fam.local, fam.remote, SeqNum(ISS), fam.our_mss, ctx)
        })
    }

    /// The peer's usual SYN: `IRS`, its MSS, window scale 7.
    pub fn peer_syn(fam: Family) -> Seg {
        seg()
            .syn()
            .seq(IRS)
            .window(PEER_WINDOW)
            .mss(fam.peer_mss)
            .wscale(PEER_WSCALE)
    }

    /// A passive open: a listener got [`peer_syn`](Self::peer_syn) (SYN-RECEIVED).
    pub fn server(fam: Family) -> Script {
        Script::server_from(fam, TcpConfig::default(), Script::peer_syn(fam))
    }

    /// A passive open from the SYN `syn`.
    pub fn server_from(fam: Family, config: TcpConfig, syn: Seg) -> Script {
        let h = header_of(&fam, &syn);
        Script::server_from_header(fam, config, h)
    }

    /// A passive open from a parsed SYN header.
    pub fn server_from_header(fam: Family, config: TcpConfig, h: Header) -> Script {
        println!("<- {}", describe(&h, 0));
        Script::with_conn(fam, config, |ctx| {
            Connection::accept_syn(fam.local, fam.remote, SeqNum(ISS), fam.our_mss, &h, ctx)
        })
    }

    /// A client past the handshake, everything sent drained: the peer's SYN,ACK came 10 ms
    /// after our SYN (so SRTT is 10 ms), with its MSS and a 65535-byte window, without
    /// window scaling. Our next sequence number is `ISS + 1`, the peer's `IRS + 1`.
    pub fn established(fam: Family) -> Script {
        Script::established_with(fam, TcpConfig::default(), Script::peer_syn_ack(fam))
    }

    /// The SYN,ACK [`established`](Self::established) uses.
    pub fn peer_syn_ack(fam: Family) -> Seg {
        seg()
            .syn()
            .ack()
            .seq(IRS)
            .ack_n(ISS + 1)
            .window(PEER_WINDOW)
            .mss(fam.peer_mss)
    }

    /// A client past the handshake, with `config` and the peer's SYN,ACK `syn_ack`.
    pub fn established_with(fam: Family, config: TcpConfig, syn_ack: Seg) -> Script {
        let mut t = Script::client_with(fam, config);
        t.expect(seg().syn().seq(ISS));
        t.advance(Duration::from_millis(10));
        t.recv(syn_ack);
        t.expect(seg().ack().seq(ISS + 1).ack_n(IRS + 1));
        t.expect_nothing();
        assert_eq!(t.state(), State::Established);
        println!("== established");
        t
    }

    /// The peer sends `s`. Ports and, unless given, the window ([`PEER_WINDOW`]) are filled
    /// in; sequence and acknowledgment numbers must be given.
    pub fn recv(&mut self, s: Seg) {
        let h = header_of(&self.fam, &s);
        let payload = match &s.payload {
            None => Vec::new(),
            Some(Payload::Bytes(b)) => b.clone(),
            Some(Payload::Len(n)) => pattern(h.seq.0, *n),
        };
        self.recv_header(h, &payload);
    }

    /// The peer sends these bytes: a whole TCP segment, header and payload, parsed as the
    /// socket table parses it (so options this TCP does not know can be sent).
    pub fn recv_raw(&mut self, bytes: &[u8]) {
        let (h, at) = Header::parse(bytes).expect("a well-formed segment");
        self.recv_header(h, &bytes[at..]);
    }

    fn recv_header(&mut self, h: Header, payload: &[u8]) {
        println!("<- {}", describe(&h, payload.len()));
        let buf = self.pool.alloc_from_slice(payload).expect("pool buffer");
        let now = self.now;
        self.with_ctx(|c, ctx| c.on_segment(now, &h, buf, ctx));
    }

    /// The next segment the connection sends, if any.
    pub fn next(&mut self) -> Option<Sent> {
        let out = self.conn.next_segment(self.now)?;
        let mut payload = vec![0; out.payload_len];
        self.conn.copy_payload(&out, &mut payload);
        println!("-> {}", describe(&out.header, out.payload_len));
        Some(Sent {
            header: out.header,
            payload,
        })
    }

    /// The connection's next segment must match `s`; returns it.
    #[track_caller]
    pub fn expect(&mut self, s: Seg) -> Sent {
        let Some(sent) = self.next() else {
            panic!("expected {s:?}, but nothing was sent");
        };
        if let Err(e) = check(&self.fam, &sent, &s) {
            panic!(
                "segment {} does not match: {e}",
                describe(&sent.header, sent.payload.len())
            );
        }
        sent
    }

    /// The connection has nothing to send.
    #[track_caller]
    pub fn expect_nothing(&mut self) {
        if let Some(sent) = self.next() {
            panic!(
                "expected nothing, got {}",
                describe(&sent.header, sent.payload.len())
            );
        }
    }

    /// Moves the clock forward by `d` and runs the timers then due.
    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        if self.conn.poll_at().is_some_and(|t| t <= self.now) {
            println!("   timer at {:?}", self.now.since_epoch());
            let now = self.now;
            self.with_ctx(|c, ctx| c.on_timer(now, ctx));
        }
    }

    /// Jumps to the connection's next timer and runs it; returns how far the clock moved.
    #[track_caller]
    pub fn fire(&mut self) -> Duration {
        let at = self.conn.poll_at().expect("a timer is armed");
        let waited = at.saturating_duration_since(self.now);
        self.advance(waited);
        waited
    }

    /// How long until the connection's next timer, if any.
    pub fn timer_in(&self) -> Option<Duration> {
        self.conn
            .poll_at()
            .map(|t| t.saturating_duration_since(self.now))
    }

    /// The application writes `data`; all of it must be taken.
    #[track_caller]
    pub fn write(&mut self, data: &[u8]) {
        assert_eq!(self.conn.send(data), Ok(data.len()), "send");
    }

    /// The application reads everything queued.
    pub fn read_all(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = self.conn.recv(&mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    /// The application reads up to `n` bytes.
    pub fn read(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        let got = self.conn.recv(&mut buf).unwrap_or(0);
        buf.truncate(got);
        buf
    }

    /// The application closes its handle.
    pub fn close(&mut self) {
        self.with_ctx(|c, ctx| c.close(ctx));
    }

    /// The application shuts down writing.
    pub fn shutdown_write(&mut self) {
        self.with_ctx(|c, ctx| c.shutdown_write(ctx));
    }

    /// The application aborts the connection.
    pub fn abort(&mut self) {
        self.with_ctx(|c, ctx| c.abort(ctx));
    }

    /// The connection's state.
    pub fn state(&self) -> State {
        self.conn.state()
    }

    /// What `ss -ti` would show.
    pub fn info(&self) -> TcpInfo {
        self.conn.info()
    }
}

/// The header for a pattern the peer sends.
fn header_of(fam: &Family, s: &Seg) -> Header {
    let seq = s.seq.expect("a scripted segment needs .seq(..)");
    let ack = if s.flags.contains(Flags::ACK) {
        s.ack.expect("a scripted ACK needs .ack_n(..)")
    } else {
        s.ack.unwrap_or(0)
    };
    Header {
        src_port: fam.remote.port(),
        dst_port: fam.local.port(),
        seq: SeqNum(seq),
        ack: SeqNum(ack),
        flags: s.flags,
        window: s.window.unwrap_or(PEER_WINDOW),
        urgent: 0,
        options: Options {
            mss: s.mss.flatten(),
            window_scale: s.wscale.flatten(),
            sack_permitted: s.sack_permitted.unwrap_or(false),
            timestamps: s.timestamps.flatten(),
        },
    }
}

/// Compares what was sent with a pattern.
fn check(fam: &Family, sent: &Sent, s: &Seg) -> Result<(), String> {
    let h = &sent.header;
    let mut errors = Vec::new();
    if (h.src_port, h.dst_port) != (fam.local.port(), fam.remote.port()) {
        errors.push(format!("ports {} -> {}", h.src_port, h.dst_port));
    }
    // PSH is the sender's business; compare it only when the pattern names it.
    let strip = |f: Flags| Flags(f.0 & !Flags::PSH.0);
    if strip(h.flags) != strip(s.flags)
        || (s.flags.contains(Flags::PSH) && !h.flags.contains(Flags::PSH))
    {
        errors.push(format!("flags [{:?}], expected [{:?}]", h.flags, s.flags));
    }
    let mut field = |name: &str, got: String, want: Option<String>| {
        if let Some(want) = want {
            if got != want {
                errors.push(format!("{name} {got}, expected {want}"));
            }
        }
    };
    field("seq", h.seq.0.to_string(), s.seq.map(|v| v.to_string()));
    field("ack", h.ack.0.to_string(), s.ack.map(|v| v.to_string()));
    field(
        "window",
        h.window.to_string(),
        s.window.map(|v| v.to_string()),
    );
    field(
        "mss option",
        format!("{:?}", h.options.mss),
        s.mss.map(|v| format!("{v:?}")),
    );
    field(
        "wscale option",
        format!("{:?}", h.options.window_scale),
        s.wscale.map(|v| format!("{v:?}")),
    );
    field(
        "sackOK option",
        h.options.sack_permitted.to_string(),
        s.sack_permitted.map(|v| v.to_string()),
    );
    field(
        "timestamps option",
        format!("{:?}", h.options.timestamps),
        s.timestamps.map(|v| format!("{v:?}")),
    );
    match &s.payload {
        None if !sent.payload.is_empty() => errors.push(format!(
            "{} payload bytes, expected none",
            sent.payload.len()
        )),
        None => {}
        Some(Payload::Len(n)) if sent.payload.len() != *n => errors.push(format!(
            "{} payload bytes, expected {n}",
            sent.payload.len()
        )),
        Some(Payload::Len(_)) => {}
        Some(Payload::Bytes(b)) if &sent.payload != b => {
            errors.push(format!("payload {:?}, expected {:?}", sent.payload, b))
        }
        Some(Payload::Bytes(_)) => {}
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}
