//! One TCP connection: the state machine of RFC 9293 3.3.2, sans-IO.
//!
//! ```text
//!                             +---------+ ---------\      active OPEN
//!                             |  CLOSED |            \    -----------
//!                             +---------+<---------\   \   create TCB
//!                               |     ^              \   \  snd SYN
//!                  passive OPEN |     |   CLOSE        \   \
//!                  ------------ |     | ----------       \   \
//!                   create TCB  |     | delete TCB         \   \
//!                               V     |                      \   \
//!           rcv RST (note 1)  +---------+            CLOSE    |    \
//!        -------------------->|  LISTEN |          ---------- |     |
//!       /                     +---------+          delete TCB |     |
//!      /           rcv SYN      |     |     SEND              |     |
//!     /           -----------   |     |    -------            |     V
//! +--------+      snd SYN,ACK  /       \   snd SYN          +--------+
//! |        |<-----------------           ------------------>|        |
//! |  SYN   |                    rcv SYN                     |  SYN   |
//! |  RCVD  |<-----------------------------------------------|  SENT  |
//! |        |                  snd SYN,ACK                   |        |
//! |        |------------------           -------------------|        |
//! +--------+   rcv ACK of SYN  \       /  rcv SYN,ACK       +--------+
//!    |         --------------   |     |   -----------
//!    |                x         |     |     snd ACK
//!    |                          V     V
//!    |  CLOSE                 +---------+
//!    | -------                |  ESTAB  |
//!    | snd FIN                +---------+
//!    |                 CLOSE    |     |    rcv FIN
//!    V                -------   |     |    -------
//! +---------+         snd FIN  /       \   snd ACK         +---------+
//! |  FIN    |<----------------          ------------------>|  CLOSE  |
//! | WAIT-1  |------------------                            |   WAIT  |
//! +---------+          rcv FIN  \                          +---------+
//!   | rcv ACK of FIN   -------   |                          CLOSE  |
//!   | --------------   snd ACK   |                         ------- |
//!   V        x                   V                         snd FIN V
//! +---------+               +---------+                    +---------+
//! |FINWAIT-2|               | CLOSING |                    | LAST-ACK|
//! +---------+               +---------+                    +---------+
//!   |              rcv ACK of FIN |                 rcv ACK of FIN |
//!   |  rcv FIN     -------------- |    Timeout=2MSL -------------- |
//!   |  -------            x       V    ------------        x       V
//!    \ snd ACK              +---------+delete TCB          +---------+
//!      -------------------->|TIME-WAIT|------------------->| CLOSED  |
//!                           +---------+                    +---------+
//! ```
//! (RFC 9293 figure 5.)
//!
//! A [`Connection`] takes segments in ([`Connection::on_segment`]), timer expiries
//! ([`Connection::on_timer`]) and application calls (`send`, `recv`, `shutdown`, `close`),
//! and says what to send next ([`Connection::next_segment`]). It never touches a buffer
//! pool, a clock or a device: the table in [`super::socket`] does, which is why every rule
//! here can be tested as a script of segments in and segments out.
//!
//! The send sequence space (RFC 9293 3.3.1, figure 3), with one variable this TCP adds:
//!
//! ```text
//!            1         2          3          4
//!       ----------|----------|----------|----------
//!              SND.UNA    SND.NXT    SND.UNA
//!                                   +SND.WND
//!   1 - acknowledged   2 - sent, not yet acknowledged
//!   3 - may be sent    4 - beyond the window
//! ```
//! `snd_max` is the highest sequence number ever sent. It equals `snd_nxt` except after a
//! retransmission timeout, when `snd_nxt` goes back to `snd_una` to resend the window
//! (go-back-N, as there is no SACK) while ACKs up to `snd_max` stay acceptable.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use loopstack_buf::PacketBuf;
use loopstack_internet::icmp::RateLimiter;
use loopstack_link::Instant;

use super::assembler::{Insert, OutOfOrder};
use super::config::TcpConfig;
use super::congestion::{AckAction, Reno};
use super::recvbuf::RecvQueue;
use super::rtt::RttEstimator;
use super::sendbuf::{LentBlock, SendBuffer, SHARE_MIN};
use super::seq::SeqNum;
use super::stats::{ConnStats, TcpStats};
use super::wire::{Flags, Header, Options};
use crate::error::Error;

/// The states of RFC 9293 3.3.2. LISTEN belongs to listeners; a [`Connection`] is in one of
/// the other ten.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No connection.
    Closed,
    /// Waiting for a SYN (a listener).
    Listen,
    /// Our SYN sent, waiting for the peer's.
    SynSent,
    /// SYN received and answered, waiting for the ACK of ours.
    SynReceived,
    /// Data flows both ways.
    Established,
    /// We closed; our FIN is not yet acknowledged.
    FinWait1,
    /// Our FIN is acknowledged; waiting for the peer's.
    FinWait2,
    /// The peer closed; we may still send.
    CloseWait,
    /// Both sent FIN at once; waiting for the ACK of ours.
    Closing,
    /// The peer closed first, then we did; waiting for the ACK of our FIN.
    LastAck,
    /// Both closed; waiting out 2*MSL so stray segments die (RFC 9293 3.4.2).
    TimeWait,
}

impl State {
    /// The RFC's name, as in the diagram above.
    pub fn name(self) -> &'static str {
        match self {
            State::Closed => "CLOSED",
            State::Listen => "LISTEN",
            State::SynSent => "SYN-SENT",
            State::SynReceived => "SYN-RECEIVED",
            State::Established => "ESTABLISHED",
            State::FinWait1 => "FIN-WAIT-1",
            State::FinWait2 => "FIN-WAIT-2",
            State::CloseWait => "CLOSE-WAIT",
            State::Closing => "CLOSING",
            State::LastAck => "LAST-ACK",
            State::TimeWait => "TIME-WAIT",
        }
    }

    /// States after the handshake, where both sequence spaces are known (RFC 9293 3.5).
    pub fn is_synchronized(self) -> bool {
        !matches!(
            self,
            State::Closed | State::Listen | State::SynSent | State::SynReceived
        )
    }

    /// Whether `CurrEstab` counts it (RFC 1213: ESTABLISHED or CLOSE-WAIT).
    fn counts_as_established(self) -> bool {
        matches!(self, State::Established | State::CloseWait)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a connection needs from the stack around it while it handles an event.
pub struct Ctx<'a> {
    /// The stack's TCP settings.
    pub config: &'a TcpConfig,
    /// Stack-wide counters.
    pub stats: &'a mut TcpStats,
    /// The stack-wide challenge-ACK budget (RFC 5961 7).
    pub challenge: &'a mut RateLimiter,
}

/// A segment the connection wants sent: the header, and which bytes of the send buffer
/// (counted from SND.UNA) carry its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outgoing {
    /// The header, checksum aside.
    pub header: Header,
    /// Where the payload starts in the send buffer, in bytes from SND.UNA.
    pub payload_offset: usize,
    /// Payload bytes.
    pub payload_len: usize,
}

/// What `ss -ti` shows about a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpInfo {
    /// Current state.
    pub state: State,
    /// Retransmission timeout.
    pub rto: Duration,
    /// Smoothed round-trip time, once measured.
    pub srtt: Option<Duration>,
    /// Round-trip time variation.
    pub rttvar: Duration,
    /// Bytes per segment we send.
    pub snd_mss: u32,
    /// Congestion window, bytes.
    pub cwnd: u32,
    /// Slow-start threshold, bytes (`u32::MAX` until the first loss).
    pub ssthresh: u32,
    /// The peer's receive window, bytes.
    pub snd_wnd: u32,
    /// The window we last advertised, bytes.
    pub rcv_wnd: u32,
    /// Window scale shifts (ours, the peer's), when negotiated.
    pub wscale: Option<(u8, u8)>,
    /// Whether both SYNs carried timestamps, so every segment does (RFC 7323 3.2): `ss
    /// -ti`'s `ts`.
    pub timestamps: bool,
    /// Bytes sent and not yet acknowledged.
    pub unacked: u32,
    /// Bytes waiting in the send buffer (sent or not).
    pub send_queue: usize,
    /// Bytes waiting for the application.
    pub recv_queue: usize,
    /// Counters.
    pub stats: ConnStats,
}

/// One of a connection's timers: the instant it fires, or off. A plain integer with
/// `u64::MAX` for off rather than an `Option<Instant>`: the earliest of a connection's four
/// timers, asked after every segment, is then three `min`s without a branch, where the four
/// `Option`s took about 60 instructions per segment (docs/benchmarks.md, item 38). A timer
/// set for `Instant::MAX`, 584 years after the epoch, is off: it would never fire anyway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timer(u64);

impl Timer {
    const OFF: Timer = Timer(u64::MAX);

    fn at(t: Instant) -> Timer {
        Timer(t.as_nanos())
    }

    fn is_off(self) -> bool {
        self == Timer::OFF
    }

    /// Whether the timer is set and fires at or before `now`.
    fn is_due(self, now: Instant) -> bool {
        self.0 <= now.as_nanos() && !self.is_off()
    }

    fn get(self) -> Option<Instant> {
        (!self.is_off()).then(|| Instant::from_nanos(self.0))
    }
}

/// One connection's transmission control block.
#[derive(Debug)]
pub struct Connection {
    state: State,
    local: SocketAddr,
    remote: SocketAddr,
    /// Opened by a listener: a RST in SYN-RECEIVED then quietly ends it (RFC 9293 3.10.7.4
    /// "return to LISTEN") instead of reporting "refused".
    passive: bool,

    // Send sequence variables (RFC 9293 3.3.1).
    iss: SeqNum,
    snd_una: SeqNum,
    snd_nxt: SeqNum,
    snd_max: SeqNum,
    snd_wnd: u32,
    max_snd_wnd: u32,
    snd_wl1: SeqNum,
    snd_wl2: SeqNum,
    /// Shift applied to the windows the peer sends (RFC 7323 2.3).
    snd_shift: u8,

    // Receive sequence variables.
    irs: SeqNum,
    rcv_nxt: SeqNum,
    /// Right edge of the window last advertised: RCV.NXT + RCV.WND. It never moves left
    /// (RFC 9293 3.8.6.2.2: the window must not shrink).
    rcv_adv: SeqNum,
    /// Shift applied to the windows we send, once both sides agreed to scale.
    rcv_shift: u8,
    /// The shift we offer in our SYN.
    offered_shift: u8,
    /// The peer's SYN offered window scaling.
    peer_scales: bool,

    /// Both SYNs carried timestamps: every segment carries them (RFC 7323 3.2).
    ts_enabled: bool,
    /// We use timestamps if the peer does ([`TcpConfig::timestamps`]): our SYN offers
    /// them, and a peer's SYN that carries them turns them on.
    ts_wanted: bool,
    /// TS.Recent: the timestamp to echo (RFC 7323 4.3).
    ts_recent: u32,
    /// Added to our clock in TSval, so TSvals do not reveal it (RFC 7323 5.4 / 7.1).
    ts_offset: u32,
    /// The ACK field of the last segment we sent (RFC 7323's Last.ACK.sent).
    last_ack_sent: SeqNum,
    /// The time of the current `next_segment` call, for the TSval of what it builds.
    sending_at: Instant,
    /// Our TSval when the retransmission timer last fired: older echoes are not samples.
    timeout_tsval: Option<u32>,

    /// Payload bytes per segment we send.
    snd_mss: u32,
    /// The MSS we advertise: what our route's MTU allows.
    our_mss: u32,
    /// The largest segment the peer has sent, capped at `our_mss`: what counts as
    /// "full-sized" for the delayed-ACK rule (Linux's `icsk_ack.rcv_mss`). It starts at the
    /// default MSS, as the peer's real one shows only in what it sends.
    rcv_mss: u32,

    send_buf: SendBuffer,
    recv_q: RecvQueue,
    ooo: OutOfOrder,
    recv_capacity: usize,

    /// The application shut down writing: a FIN follows the data.
    fin_queued: bool,
    /// Sequence number of our FIN, once sent.
    fin_seq: Option<SeqNum>,
    /// Sequence number of the peer's FIN, once seen (it may arrive ahead of data).
    peer_fin: Option<SeqNum>,
    /// The peer's FIN has been consumed: reads return end-of-file once the queue drains.
    fin_received: bool,
    /// The application shut down reading: arriving data is acknowledged and discarded.
    read_shut: bool,
    /// The application closed its handle: arriving data resets the connection.
    orphan: bool,
    /// The handshake completed once: after the connection ends, reads are end of file
    /// rather than "not connected", as on Linux.
    was_synchronized: bool,

    rtt: RttEstimator,
    /// The segment being timed: its sequence number and when it left (RFC 6298 3, Karn's
    /// rule: cleared when anything is retransmitted).
    rtt_probe: Option<(SeqNum, Instant)>,
    rto_at: Timer,
    persist_at: Timer,
    persist_backoff: u32,
    /// TIME-WAIT's end, or an orphan's FIN-WAIT-2 timeout.
    linger_until: Timer,
    ack_at: Timer,
    /// Consecutive retransmission timeouts without progress.
    retries: u32,
    cc: Reno,

    /// An ACK must go out with the next segment, or alone.
    ack_now: bool,
    /// Extra ACKs owed one per out-of-order segment, so the peer sees each duplicate ACK
    /// (RFC 5681 4.2) even when several arrive in one batch.
    dup_acks_owed: u32,
    /// Retransmit the first unacknowledged segment (fast retransmit).
    retransmit_first: bool,
    /// Send a zero-window probe.
    probe_now: bool,
    /// A reset to send.
    rst_out: Option<Header>,
    nodelay: bool,
    /// An error for the application, reported by the next call.
    error: Option<Error>,
    stats: ConnStats,
}

/// The default MSS when the peer's SYN has none: RFC 9293 3.7.1 (IPv4) and RFC 8200 5
/// (the IPv6 minimum MTU of 1280 less 60 bytes of headers).
fn default_mss(v6: bool) -> u32 {
    if v6 {
        1220
    } else {
        536
    }
}

/// The window scale that lets `capacity` bytes be advertised: the smallest shift with
/// `capacity >> shift <= 65535`, at most 14 (RFC 7323 2.3).
fn shift_for(capacity: usize) -> u8 {
    let mut shift = 0;
    while shift < 14 && (capacity >> shift) > 65535 {
        shift += 1;
    }
    shift
}

impl Connection {
    fn new(
        local: SocketAddr,
        remote: SocketAddr,
        iss: SeqNum,
        our_mss: u32,
        config: &TcpConfig,
    ) -> Self {
        let v6 = remote.is_ipv6();
        Connection {
            state: State::Closed,
            local,
            remote,
            passive: false,
            iss,
            snd_una: iss,
            snd_nxt: iss,
            snd_max: iss,
            snd_wnd: 0,
            max_snd_wnd: 0,
            snd_wl1: SeqNum(0),
            snd_wl2: iss,
            snd_shift: 0,
            irs: SeqNum(0),
            rcv_nxt: SeqNum(0),
            rcv_adv: SeqNum(0),
            rcv_shift: 0,
            offered_shift: shift_for(config.recv_buffer),
            peer_scales: false,
            ts_enabled: false,
            ts_wanted: config.timestamps,
            ts_recent: 0,
            ts_offset: iss.0.rotate_left(13),
            last_ack_sent: SeqNum(0),
            sending_at: Instant::ZERO,
            timeout_tsval: None,
            snd_mss: default_mss(v6).min(our_mss),
            our_mss,
            rcv_mss: default_mss(v6).min(our_mss),
            send_buf: SendBuffer::new(config.send_buffer),
            recv_q: RecvQueue::new(),
            ooo: OutOfOrder::new(config.max_out_of_order),
            recv_capacity: config.recv_buffer,
            fin_queued: false,
            fin_seq: None,
            peer_fin: None,
            fin_received: false,
            was_synchronized: false,
            read_shut: false,
            orphan: false,
            rtt: RttEstimator::new(config.rtt),
            rtt_probe: None,
            rto_at: Timer::OFF,
            persist_at: Timer::OFF,
            persist_backoff: 0,
            linger_until: Timer::OFF,
            ack_at: Timer::OFF,
            retries: 0,
            cc: Reno::new(default_mss(v6).min(our_mss), config.initial_window),
            ack_now: false,
            dup_acks_owed: 0,
            retransmit_first: false,
            probe_now: false,
            rst_out: None,
            nodelay: config.nodelay,
            error: None,
            stats: ConnStats::default(),
        }
    }

    /// An active open (RFC 9293 3.10.1): SYN-SENT, with the SYN ready to go. `our_mss` is
    /// the largest payload our route carries in one segment.
    pub fn connect(
        local: SocketAddr,
        remote: SocketAddr,
        iss: SeqNum,
        our_mss: u32,
        ctx: &mut Ctx<'_>,
    ) -> Self {
        let mut c = Connection::new(local, remote, iss, our_mss, ctx.config);
        ctx.stats.active_opens += 1;
        c.set_state(State::SynSent, ctx);
        c
    }

    /// A passive open: a listener received `syn` (already checked to be a SYN without ACK
    /// or RST). The connection is in SYN-RECEIVED with the SYN-ACK ready to go.
    pub fn accept_syn(
        local: SocketAddr,
        remote: SocketAddr,
        iss: SeqNum,
        our_mss: u32,
        syn: &Header,
        ctx: &mut Ctx<'_>,
    ) -> Self {
        let mut c = Connection::new(local, remote, iss, our_mss, ctx.config);
        c.passive = true;
        c.take_syn_options(syn);
        c.irs = syn.seq;
        c.rcv_nxt = syn.seq + 1;
        c.rcv_adv = c.rcv_nxt;
        // RFC 7323 2.2: the window of a SYN is never scaled.
        c.snd_wnd = u32::from(syn.window);
        c.max_snd_wnd = c.snd_wnd;
        c.snd_wl1 = syn.seq;
        ctx.stats.passive_opens += 1;
        c.set_state(State::SynReceived, ctx);
        c
    }

    /// Reads MSS and window scale from the peer's SYN (RFC 9293 3.7.1, RFC 7323 2).
    fn take_syn_options(&mut self, syn: &Header) {
        let peer_mss = syn
            .options
            .mss
            .map_or(default_mss(self.remote.is_ipv6()), u32::from);
        self.snd_mss = peer_mss.min(self.our_mss).max(1);
        // RFC 7323 3.2: timestamps are used when both SYNs carry them. Our SYN offers
        // them unless configured not to; a SYN,ACK answers with them only if the peer's
        // SYN had them and we want them. A SYN,ACK that carries them though our SYN did
        // not is read as if it did not: RFC 7323 3.2 lets a TCP send the option after the
        // SYN only when the initial SYN carried it.
        if let Some((tsval, _)) = syn.options.timestamps.filter(|_| self.ts_wanted) {
            self.ts_enabled = true;
            self.ts_recent = tsval;
            // Every segment now carries 12 bytes of option: the payload gives them up, so
            // segments still fit the path (RFC 7323 3.2 / RFC 6691).
            self.snd_mss = self.snd_mss.saturating_sub(12).max(1);
        }
        if let Some(shift) = syn.options.window_scale {
            self.peer_scales = true;
            self.snd_shift = shift;
            self.rcv_shift = self.offered_shift;
        }
    }

    // ------------------------------------------------------------------ accessors

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Our address.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Whether the connection was opened by a listener.
    pub fn is_passive(&self) -> bool {
        self.passive
    }

    /// Whether the application has let go of it.
    pub fn is_orphan(&self) -> bool {
        self.orphan
    }

    /// Counters.
    pub fn stats(&self) -> &ConnStats {
        &self.stats
    }

    /// Whether `recv` would return something other than `WouldBlock`: data, end of file,
    /// or an error.
    pub fn can_recv(&self) -> bool {
        !self.recv_q.is_empty()
            || self.fin_received
            || self.read_shut
            || self.error.is_some()
            || self.state == State::Closed
    }

    /// Whether `send` would take at least one byte or fail (rather than `WouldBlock`).
    pub fn can_send(&self) -> bool {
        match self.state {
            State::SynSent | State::SynReceived => false,
            State::Established | State::CloseWait if !self.fin_queued => {
                self.send_buf.free() > 0 || self.error.is_some()
            }
            _ => true,
        }
    }

    /// Bytes buffered for sending, sent or not.
    pub fn send_queue(&self) -> usize {
        self.send_buf.len()
    }

    /// Bytes waiting for the application.
    pub fn recv_queue(&self) -> usize {
        self.recv_q.len()
    }

    /// `TCP_NODELAY`: when on, small segments go out without waiting for outstanding data
    /// to be acknowledged (Nagle's algorithm off).
    pub fn set_nodelay(&mut self, on: bool) {
        self.nodelay = on;
    }

    /// Whether Nagle's algorithm is off.
    pub fn nodelay(&self) -> bool {
        self.nodelay
    }

    /// What `ss -ti` shows.
    pub fn info(&self) -> TcpInfo {
        TcpInfo {
            state: self.state,
            rto: self.rtt.rto(),
            srtt: self.rtt.srtt(),
            rttvar: self.rtt.rttvar(),
            snd_mss: self.snd_mss,
            cwnd: self.cc.cwnd(),
            ssthresh: self.cc.ssthresh(),
            snd_wnd: self.snd_wnd,
            rcv_wnd: self.rcv_window(),
            wscale: self.peer_scales.then_some((self.rcv_shift, self.snd_shift)),
            timestamps: self.ts_enabled,
            unacked: self.snd_max - self.snd_una,
            send_queue: self.send_buf.len(),
            recv_queue: self.recv_q.len(),
            stats: self.stats,
        }
    }

    fn set_state(&mut self, new: State, ctx: &mut Ctx<'_>) {
        let old = self.state;
        if old == new {
            return;
        }
        if old.counts_as_established() && !new.counts_as_established() {
            ctx.stats.curr_estab = ctx.stats.curr_estab.saturating_sub(1);
        }
        if !old.counts_as_established() && new.counts_as_established() {
            ctx.stats.curr_estab += 1;
        }
        self.state = new;
        self.was_synchronized |= new.is_synchronized();
        if new == State::Closed || new == State::TimeWait {
            self.rto_at = Timer::OFF;
            self.persist_at = Timer::OFF;
            self.ack_at = Timer::OFF;
        }
    }

    /// Ends the connection now, leaving `error` for the application.
    fn abort_with(&mut self, error: Option<Error>, ctx: &mut Ctx<'_>) {
        match self.state {
            State::SynSent | State::SynReceived => ctx.stats.attempt_fails += 1,
            State::Established | State::CloseWait if error == Some(Error::ConnectionReset) => {
                ctx.stats.estab_resets += 1
            }
            _ => {}
        }
        if error.is_some() {
            self.error = error;
        }
        self.send_buf.clear();
        self.ooo.clear();
        self.set_state(State::Closed, ctx);
    }

    // ------------------------------------------------------------------ application calls

    /// Queues bytes to send; returns how many were taken (RFC 9293 3.10.2).
    pub fn send(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.check_send()?;
        if data.is_empty() {
            return Ok(0);
        }
        match self.send_buf.write(data) {
            0 => Err(Error::WouldBlock),
            n => Ok(n),
        }
    }

    /// [`send`](Self::send) in two steps, for a caller that copies without the stack's
    /// lock: the block the next `want` bytes (at most a block's worth) go into, lent out
    /// ([`SendBuffer::lend`]), to be filled and handed to [`send_commit`](Self::send_commit).
    /// `Ok(None)` when the send buffer cannot lend one (the stream does not end at a block
    /// boundary): `send` is the way then. The errors are `send`'s, `WouldBlock` included
    /// (no room, or a block already lent).
    pub fn send_lend(&mut self, want: usize) -> Result<Option<LentBlock>, Error> {
        self.check_send()?;
        if want == 0 {
            return Ok(None);
        }
        if self.send_buf.free() == 0 {
            return Err(Error::WouldBlock);
        }
        Ok(self.send_buf.lend(want))
    }

    /// Appends a block from [`send_lend`](Self::send_lend), filled, to the stream, and
    /// returns how many bytes it added. If the connection can no longer send (reset,
    /// shut for writing meanwhile) the block goes back unused and the error is `send`'s.
    pub fn send_commit(&mut self, lent: LentBlock) -> Result<usize, Error> {
        if let Err(e) = self.check_send() {
            self.send_buf.give_back(lent);
            return Err(e);
        }
        let n = lent.len();
        self.send_buf.put_back(lent);
        Ok(n)
    }

    /// Whether the application may send now; `send`'s errors if not (a pending error is
    /// taken).
    fn check_send(&mut self) -> Result<(), Error> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        match self.state {
            _ if self.fin_queued => Err(Error::BrokenPipe),
            // RFC 9293 3.10.2: in SYN-SENT and SYN-RECEIVED data is queued for after the
            // handshake.
            State::SynSent | State::SynReceived | State::Established | State::CloseWait => Ok(()),
            _ => Err(Error::BrokenPipe),
        }
    }

    /// Reads received bytes in order (RFC 9293 3.10.3). `Ok(0)` is end of file: the peer
    /// sent FIN and everything before it has been read.
    pub fn recv(&mut self, out: &mut [u8]) -> Result<usize, Error> {
        self.recv_recycling(out, drop)
    }

    /// [`recv`](Self::recv), handing each packet buffer read to its end to `recycle`
    /// (a layer's [`PoolCache`](loopstack_buf::PoolCache)) instead of dropping it.
    // Inlined into `Tcp::recv`, as it was while that was its only caller: with
    // `Tcp::recv_or_take` calling it too, it went out of line, and the stock's `recycle`
    // with it (about 30 instructions per round trip).
    #[inline]
    pub fn recv_recycling(
        &mut self,
        out: &mut [u8],
        recycle: impl FnMut(PacketBuf),
    ) -> Result<usize, Error> {
        if !self.recv_q.is_empty() && !out.is_empty() {
            let before = self.rcv_window();
            let n = self.recv_q.read_recycling(out, recycle);
            self.window_opened(before);
            return Ok(n);
        }
        if out.is_empty() && !self.recv_q.is_empty() {
            return Ok(0);
        }
        if self.fin_received || self.read_shut {
            return Ok(0);
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        match self.state {
            // A connection that ended (reset, timed out) and reported it reads as end of
            // file from then on, as Linux's does; one that never connected is not connected.
            State::Closed if self.was_synchronized => Ok(0),
            State::Closed => Err(Error::NotConnected),
            _ => Err(Error::WouldBlock),
        }
    }

    /// Takes whole received buffers, in order, holding at most `max` bytes together, into
    /// the first places of `out`, for the caller to copy out of; returns how many buffers
    /// and bytes. `(0, 0)` if nothing is queued or the next buffer alone holds more than
    /// `max`: then [`recv`](Self::recv) is the way. What is taken counts as read.
    pub fn recv_take(&mut self, max: usize, out: &mut [Option<PacketBuf>]) -> (usize, usize) {
        let before = self.rcv_window();
        let taken = self.recv_q.take_front(max, out);
        if taken.1 > 0 {
            self.window_opened(before);
        }
        taken
    }

    /// After a read: tell the peer the window opened if it grew enough to matter (the
    /// receiver's side of silly window avoidance, RFC 9293 3.8.6.2.2), a closed window
    /// included: the update is due once the window can open by a step, not before
    /// (`advertise` would still say zero). `before` is the window as last advertised.
    #[inline]
    fn window_opened(&mut self, before: u32) {
        // Once the peer's FIN has arrived it sends nothing more, so a bigger window is news
        // to nobody: an update from TIME-WAIT would even draw a RST from a peer that has
        // gone, and end our TIME-WAIT early (RFC 9293 3.10.7.4).
        let potential = self.potential_window();
        if self.state.is_synchronized()
            && !self.fin_received
            && potential.saturating_sub(before) >= self.window_update_step()
        {
            self.ack_now = true;
        }
    }

    /// Copies received bytes without consuming them.
    pub fn peek(&self, out: &mut [u8]) -> usize {
        self.recv_q.peek(out)
    }

    /// Shuts down our sending side: a FIN follows the queued data (RFC 9293 3.10.4).
    pub fn shutdown_write(&mut self, ctx: &mut Ctx<'_>) {
        if self.fin_queued {
            return;
        }
        match self.state {
            State::SynSent | State::SynReceived => self.fin_queued = true,
            State::Established => {
                self.fin_queued = true;
                self.set_state(State::FinWait1, ctx);
            }
            State::CloseWait => {
                self.fin_queued = true;
                self.set_state(State::LastAck, ctx);
            }
            _ => {}
        }
    }

    /// Shuts down our receiving side: what is queued can still be read (as on Linux),
    /// data arriving from now on is discarded, and reads then return end of file.
    pub fn shutdown_read(&mut self) {
        self.read_shut = true;
    }

    /// The application lets go, as dropping a std socket does: a FIN after the queued
    /// data, or a RST when received data is left unread (RFC 9293 3.10.4 allows it; Linux
    /// does it so the peer learns the data was lost, RFC 2525 2.17).
    pub fn close(&mut self, ctx: &mut Ctx<'_>) {
        self.orphan = true;
        if !self.recv_q.is_empty() {
            ctx.stats.abort_on_close += 1;
            self.abort(ctx);
            return;
        }
        match self.state {
            // RFC 9293 3.10.4: CLOSE in SYN-SENT deletes the TCB.
            State::SynSent => self.set_state(State::Closed, ctx),
            State::SynReceived => {
                // Nothing was sent yet: FIN after the handshake completes.
                self.fin_queued = true;
                self.set_state(State::FinWait1, ctx);
            }
            _ => self.shutdown_write(ctx),
        }
        self.read_shut = true;
    }

    /// Resets the connection (RFC 9293 3.10.5 ABORT): `<SEQ=SND.NXT><CTL=RST>` in states
    /// that have a peer to tell, then CLOSED.
    pub fn abort(&mut self, ctx: &mut Ctx<'_>) {
        if matches!(
            self.state,
            State::SynReceived
                | State::Established
                | State::FinWait1
                | State::FinWait2
                | State::CloseWait
        ) {
            self.rst_out = Some(self.rst_header(self.snd_nxt, Some(self.rcv_nxt)));
        }
        self.recv_q.clear();
        self.abort_with(None, ctx);
    }

    fn rst_header(&self, seq: SeqNum, ack: Option<SeqNum>) -> Header {
        Header::reset(self.local.port(), self.remote.port(), seq, ack)
    }

    // ------------------------------------------------------------------ arriving segments

    /// Handles one arriving segment (RFC 9293 3.10.7.3 and 3.10.7.4). `payload` starts
    /// after the TCP header.
    pub fn on_segment(&mut self, now: Instant, h: &Header, payload: PacketBuf, ctx: &mut Ctx<'_>) {
        self.stats.segs_in += 1;
        match self.state {
            State::Closed | State::Listen => {}
            State::SynSent => self.on_segment_syn_sent(now, h, payload, ctx),
            _ => self.on_segment_synchronized(now, h, payload, ctx),
        }
    }

    /// RFC 9293 3.10.7.3, SYN-SENT.
    fn on_segment_syn_sent(
        &mut self,
        now: Instant,
        h: &Header,
        payload: PacketBuf,
        ctx: &mut Ctx<'_>,
    ) {
        // First, the ACK: it must acknowledge our SYN and nothing we never sent.
        let has_ack = h.flags.contains(Flags::ACK);
        if has_ack && (h.ack.le(self.iss) || h.ack.gt(self.snd_max)) {
            if !h.flags.contains(Flags::RST) {
                self.rst_out = Some(self.rst_header(h.ack, None));
            }
            return;
        }
        // Second, RST: with an acceptable ACK the peer refused us (RFC 5961 3.2 leaves
        // SYN-SENT's rule as it was); without one, ignore it.
        if h.flags.contains(Flags::RST) {
            if has_ack {
                self.abort_with(Some(Error::ConnectionRefused), ctx);
            }
            return;
        }
        // Fourth, SYN.
        if !h.flags.contains(Flags::SYN) {
            return;
        }
        self.irs = h.seq;
        self.rcv_nxt = h.seq + 1;
        self.rcv_adv = self.rcv_nxt;
        self.take_syn_options(h);
        self.cc.set_mss(self.snd_mss, ctx.config.initial_window);
        // RFC 7323 2.2: a SYN's window is not scaled.
        self.snd_wnd = u32::from(h.window);
        self.max_snd_wnd = self.snd_wnd;
        self.snd_wl1 = h.seq;
        self.snd_wl2 = h.ack;
        if has_ack {
            self.ack_arrived(now, h.ack, h.options.timestamps);
            self.set_state(State::Established, ctx);
            if self.fin_queued {
                self.set_state(State::FinWait1, ctx);
            }
        } else {
            // Simultaneous open: our SYN crossed theirs. Send SYN,ACK (the SYN again, now
            // with an ACK) and wait for theirs.
            self.snd_nxt = self.iss;
            self.set_state(State::SynReceived, ctx);
        }
        self.ack_now = true;
        self.take_text(now, h, h.seq + 1, payload, ctx);
    }

    /// Simultaneous open's last step: in SYN-RECEIVED, the peer's SYN,ACK acknowledges our
    /// SYN. ESTABLISHED, as for the ACK of a passive open, except that the window of a SYN
    /// is never scaled (RFC 7323 2.2).
    fn complete_simultaneous_open(&mut self, now: Instant, h: &Header, ctx: &mut Ctx<'_>) {
        // Our SYN,ACK not yet sent (SND.NXT back at the ISS): the peer still needs the ACK
        // of its SYN. Otherwise both sides are done, and nothing more is sent (figure 8).
        self.ack_now = self.snd_nxt == self.iss;
        self.ack_arrived(now, h.ack, h.options.timestamps);
        self.establish(h, u32::from(h.window), ctx);
    }

    /// SYN-RECEIVED to ESTABLISHED on the ACK of our SYN: take the peer's window (`window`,
    /// already scaled or not as the segment requires), and move on to FIN-WAIT-1 at once if
    /// the application closed during the handshake.
    fn establish(&mut self, h: &Header, window: u32, ctx: &mut Ctx<'_>) {
        self.snd_wnd = window;
        self.max_snd_wnd = self.max_snd_wnd.max(window);
        self.snd_wl1 = h.seq;
        self.snd_wl2 = h.ack;
        self.cc.set_mss(self.snd_mss, ctx.config.initial_window);
        self.set_state(State::Established, ctx);
        if self.fin_queued {
            self.set_state(State::FinWait1, ctx);
        }
    }

    /// The segment-arrives rules for every state after SYN-SENT (RFC 9293 3.10.7.4).
    fn on_segment_synchronized(
        &mut self,
        now: Instant,
        h: &Header,
        mut payload: PacketBuf,
        ctx: &mut Ctx<'_>,
    ) {
        let syn = h.flags.contains(Flags::SYN);
        let rst = h.flags.contains(Flags::RST);

        // A SYN in a synchronized state, whatever its sequence number, gets a challenge ACK
        // (RFC 5961 4.2) and is dropped. In SYN-RECEIVED a repeat of the peer's SYN means
        // our SYN,ACK was lost: send it again.
        if syn && !rst {
            if self.state == State::SynReceived && h.seq == self.irs {
                // Simultaneous open (RFC 9293 figure 8, line 6): the peer's SYN,ACK repeats
                // its SYN and acknowledges ours. By the letter of 3.10.7.4 it fails the
                // sequence check (SEG.SEQ = RCV.NXT - 1), and answering it as a repeated SYN
                // would have two such TCPs trade SYN,ACKs for ever. Like Linux
                // (tcp_validate_incoming), take it as the ACK that ends the handshake.
                if h.flags.contains(Flags::ACK) && h.ack.gt(self.snd_una) && h.ack.le(self.snd_max)
                {
                    self.complete_simultaneous_open(now, h, ctx);
                    return;
                }
                self.snd_nxt = self.iss;
                return;
            }
            ctx.stats.syn_challenges += 1;
            self.challenge_ack(now, ctx);
            return;
        }

        // PAWS (RFC 7323 5.3, R1): a timestamp older than TS.Recent marks a stale
        // duplicate, perhaps from before the sequence numbers wrapped: ACK and drop it.
        if self.ts_enabled && !rst {
            if let Some((tsval, _)) = h.options.timestamps {
                if (tsval.wrapping_sub(self.ts_recent) as i32) < 0 {
                    self.ack_now = true;
                    return;
                }
            }
        }

        // First, the sequence number: is any of the segment inside our window?
        let text_len = payload.len() as u32 + u32::from(h.flags.contains(Flags::FIN));
        let wnd = self.rcv_adv.diff(self.rcv_nxt).max(0) as u32;
        if !self.acceptable(h.seq, text_len, wnd) {
            if !rst {
                // Not acceptable: acknowledge, so the peer learns where we are (this is also
                // how a zero-window probe and a repeated FIN in TIME-WAIT are answered).
                self.ack_now = true;
                if self.state == State::TimeWait && h.flags.contains(Flags::FIN) {
                    self.linger_until = Timer::at(now + ctx.config.time_wait);
                }
                // "If the RCV.WND is zero, no segments will be acceptable, but special
                // allowance should be made to accept valid ACKs" (RFC 9293 3.10.7.4): a
                // segment at RCV.NXT refused only for want of room still acknowledges our
                // data. Its text is dropped; its ACK field is processed.
                if wnd == 0
                    && h.seq == self.rcv_nxt
                    && h.flags.contains(Flags::ACK)
                    && self.state.is_synchronized()
                {
                    self.process_ack(now, h, payload.len(), ctx);
                }
            }
            return;
        }
        // RFC 7323 4.3 (2): remember the timestamp to echo, from segments that are not
        // ahead of what we have acknowledged.
        if let Some((tsval, _)) = h.options.timestamps {
            if self.ts_enabled
                && (tsval.wrapping_sub(self.ts_recent) as i32) >= 0
                && h.seq.le(self.last_ack_sent)
            {
                self.ts_recent = tsval;
            }
        }

        // Second, RST (RFC 5961 3.2): only an exact match resets; anything else in the
        // window gets a challenge ACK, in case it is a blind attack.
        if rst {
            if h.seq != self.rcv_nxt {
                self.challenge_ack(now, ctx);
                return;
            }
            match self.state {
                State::SynReceived if self.passive => {
                    // Back to LISTEN: for us that means forgetting this half-open connection.
                    self.abort_with(None, ctx);
                }
                State::SynReceived => self.abort_with(Some(Error::ConnectionRefused), ctx),
                State::Established | State::FinWait1 | State::FinWait2 | State::CloseWait => {
                    self.abort_with(Some(Error::ConnectionReset), ctx)
                }
                _ => self.abort_with(None, ctx),
            }
            return;
        }

        // Fifth, the ACK field: a segment without it is dropped.
        if !h.flags.contains(Flags::ACK) {
            return;
        }
        if self.state == State::SynReceived {
            if h.ack.le(self.snd_una) || h.ack.gt(self.snd_max) {
                self.rst_out = Some(self.rst_header(h.ack, None));
                return;
            }
            self.establish(h, u32::from(h.window) << self.snd_shift, ctx);
        }
        if !self.process_ack(now, h, payload.len(), ctx) {
            return;
        }

        // Trim what we already have from the front, and what lies beyond the window from
        // the back, so only new bytes in the window remain (RFC 9293 3.10.7.4, first check).
        let mut seq = h.seq;
        let mut fin = h.flags.contains(Flags::FIN);
        if seq.lt(self.rcv_nxt) {
            let dup = (self.rcv_nxt - seq) as usize;
            let strip = dup.min(payload.len());
            let _ = payload.strip_front(strip);
            seq += strip as u32;
            if dup > strip {
                // The FIN itself was already received.
                fin = false;
            }
        }
        let room = self.rcv_adv.diff(seq).max(0) as usize;
        if payload.len() > room {
            payload.truncate(room);
            fin = false;
        }
        if fin {
            self.peer_fin = Some(seq + payload.len() as u32);
        }
        self.take_text(now, h, seq, payload, ctx);
    }

    /// RFC 9293 3.10.7.4's acceptability test, its four cases:
    ///
    /// ```text
    ///   length  window  acceptable when
    ///     0       0     SEG.SEQ = RCV.NXT
    ///     0      >0     RCV.NXT <= SEG.SEQ < RCV.NXT+RCV.WND
    ///    >0       0     never
    ///    >0      >0     the first or the last octet is in the window
    /// ```
    fn acceptable(&self, seq: SeqNum, len: u32, wnd: u32) -> bool {
        match (len, wnd) {
            (0, 0) => seq == self.rcv_nxt,
            (0, _) => seq.in_window(self.rcv_nxt, wnd),
            (_, 0) => false,
            (_, _) => {
                seq.in_window(self.rcv_nxt, wnd) || (seq + (len - 1)).in_window(self.rcv_nxt, wnd)
            }
        }
    }

    /// Sends a challenge ACK if the stack-wide budget allows (RFC 5961 7).
    fn challenge_ack(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if ctx.challenge.allow(now) {
            ctx.stats.challenge_acks += 1;
            self.ack_now = true;
        } else {
            ctx.stats.challenge_acks_suppressed += 1;
        }
    }

    /// The ACK field's rules for synchronized states (RFC 9293 3.10.7.4, fifth check, and
    /// RFC 5961 5.2). Returns whether processing goes on to the segment's text.
    // Always inlined into its one per-segment caller: out of line, its prologue and the
    // moves of its arguments cost 34 instructions per segment (docs/benchmarks.md, item 34).
    #[inline(always)]
    fn process_ack(
        &mut self,
        now: Instant,
        h: &Header,
        payload_len: usize,
        ctx: &mut Ctx<'_>,
    ) -> bool {
        let ack = h.ack;
        if ack.gt(self.snd_max) {
            // It acknowledges something not yet sent: answer with an ACK, drop it.
            self.ack_now = true;
            return false;
        }
        // RFC 5961 5.2: an ACK older than SND.UNA - MAX.SND.WND is suspect.
        if ack.lt(self.snd_una - self.max_snd_wnd.max(1)) {
            self.challenge_ack(now, ctx);
            return false;
        }
        let window = u32::from(h.window) << self.snd_shift;
        if ack.gt(self.snd_una) {
            self.ack_arrived(now, ack, h.options.timestamps);
        } else if ack == self.snd_una
            && payload_len == 0
            && !h.flags.intersects(Flags::SYN | Flags::FIN)
            && self.snd_max.gt(self.snd_una)
            && window == self.snd_wnd
        {
            // A duplicate ACK in RFC 5681 2's strict sense.
            self.stats.dup_acks_in += 1;
            let flight = self.snd_max - self.snd_una;
            if self.cc.on_dup_ack(flight, self.snd_una, self.snd_max) == AckAction::RetransmitFirst
            {
                self.retransmit_first = true;
                self.stats.fast_retransmits += 1;
                ctx.stats.fast_retransmits += 1;
            }
        }
        // Window update (RFC 9293 3.10.7.4): only from a segment newer than the last one
        // used, so an old reordered segment cannot shrink the window.
        if self.snd_wl1.lt(h.seq) || (self.snd_wl1 == h.seq && self.snd_wl2.le(ack)) {
            self.snd_wnd = window;
            self.max_snd_wnd = self.max_snd_wnd.max(window);
            self.snd_wl1 = h.seq;
            self.snd_wl2 = ack;
            if window > 0 {
                self.persist_at = Timer::OFF;
                self.persist_backoff = 0;
            }
        }

        let fin_acked = self.fin_acked();
        match self.state {
            State::FinWait1 if fin_acked => {
                self.set_state(State::FinWait2, ctx);
                if self.orphan {
                    // Linux's tcp_fin_timeout: an orphan does not wait forever for a FIN.
                    self.linger_until = Timer::at(now + ctx.config.fin_timeout);
                }
            }
            State::Closing if fin_acked => self.enter_time_wait(now, ctx),
            State::LastAck if fin_acked => {
                self.set_state(State::Closed, ctx);
                return false;
            }
            _ => {}
        }
        true
    }

    /// Whether our FIN is acknowledged: SND.UNA has passed its sequence number.
    fn fin_acked(&self) -> bool {
        self.fin_seq.is_some_and(|f| self.snd_una.gt(f))
    }

    /// New data acknowledged up to `ack`.
    fn ack_arrived(&mut self, now: Instant, ack: SeqNum, timestamps: Option<(u32, u32)>) {
        let acked = ack - self.snd_una;
        let flight = self.snd_max - self.snd_una;
        // The SYN takes the first sequence number and the FIN the last; neither is a byte
        // in the send buffer.
        let mut data = acked;
        if self.snd_una == self.iss {
            data -= 1;
        }
        let data = (data as usize).min(self.send_buf.len());
        self.send_buf.consume(data);
        self.stats.bytes_acked += data as u64;
        self.snd_una = ack;
        if self.snd_nxt.lt(ack) {
            self.snd_nxt = ack;
        }
        match timestamps {
            // RFC 7323 4.1: with timestamps every ACK of new data is a measurement, even of
            // a retransmission, since TSecr says which transmission it answers. This is
            // what lets the timer collapse its back-off after go-back-N.
            //
            // Karn's reasoning still applies to an echo older than the last timeout: it
            // answers a transmission from before the data was resent, perhaps long before,
            // and would inflate the estimate (the peer echoes its last in-order segment's
            // timestamp, RFC 7323 4.3). Such ACKs give no sample.
            Some((_, tsecr)) if self.ts_enabled && tsecr != 0 => {
                let fresh = self
                    .timeout_tsval
                    .is_none_or(|t| (tsecr.wrapping_sub(t) as i32) >= 0);
                if fresh {
                    let ticks = self.tsval(now).wrapping_sub(tsecr);
                    // Millisecond ticks (RFC 7323 5.4's clock, `tsval`).
                    self.rtt.on_sample_nanos(u64::from(ticks) * 1_000_000);
                    self.timeout_tsval = None;
                }
                self.rtt_probe = None;
            }
            _ => {
                if let Some((seq, sent)) = self.rtt_probe {
                    if ack.gt(seq) {
                        self.rtt
                            .on_sample_nanos(now.as_nanos().saturating_sub(sent.as_nanos()));
                        self.rtt_probe = None;
                    }
                }
            }
        }
        self.retries = 0;
        if self.cc.on_new_ack(acked, ack, flight) == AckAction::RetransmitFirst {
            self.retransmit_first = true;
        }
        // RFC 6298 5.2 and 5.3: stop the timer when everything is acknowledged, otherwise
        // restart it.
        self.rto_at = if self.snd_una == self.snd_max {
            Timer::OFF
        } else {
            Timer::at(now.saturating_add_nanos(self.rtt.rto_nanos()))
        };
    }

    /// The segment's text and FIN (RFC 9293 3.10.7.4, seventh and eighth checks). `seq` is
    /// where `payload` starts after trimming.
    fn take_text(
        &mut self,
        now: Instant,
        h: &Header,
        seq: SeqNum,
        payload: PacketBuf,
        ctx: &mut Ctx<'_>,
    ) {
        let _ = h;
        let accepts_text = matches!(
            self.state,
            State::Established | State::FinWait1 | State::FinWait2
        );
        if !payload.is_empty() && accepts_text && !self.fin_received {
            if self.orphan {
                // Data for an application that is gone: reset, so the peer knows it was
                // not read (RFC 2525 2.17, Linux's TCPAbortOnData).
                ctx.stats.abort_on_data += 1;
                self.rst_out = Some(self.rst_header(self.snd_nxt, Some(self.rcv_nxt)));
                self.abort_with(None, ctx);
                return;
            }
            let len = payload.len() as u32;
            if seq == self.rcv_nxt {
                self.rcv_nxt += len;
                self.stats.bytes_received += u64::from(len);
                if !self.read_shut {
                    self.recv_q.push(payload);
                }
                let had_gap = !self.ooo.is_empty();
                while let Some(p) = self.ooo.pop_ready(self.rcv_nxt) {
                    self.rcv_nxt += p.len() as u32;
                    self.stats.bytes_received += p.len() as u64;
                    if !self.read_shut {
                        self.recv_q.push(p);
                    }
                }
                self.rcv_mss = self.rcv_mss.max(len.min(self.our_mss));
                // RFC 5681 4.2 (and RFC 1122 4.2.3.2): a delayed ACK must still go out for
                // at least every second full-sized segment, so a sender whose receiver
                // reads slowly is not held up for the whole delay. "More than one
                // full-sized segment unacknowledged" is Linux's test for it, and smoltcp's.
                // Linux also puts this ACK off until the application's next read whenever
                // the window it would advertise has shrunk (`__tcp_ack_snd_check`); this
                // stack does so only when the segment closed the window: an ACK now would
                // only tell the sender "zero window", and the window update of the next
                // read carries the acknowledgment instead, or the delayed-ACK timer does,
                // well within RFC 5681 4.2's 500 ms. A sender that fills the window with
                // each write (a bulk transfer into a reader that reads as much) then gets
                // one ACK per window, not two (docs/benchmarks.md, item 32). Otherwise the
                // ACK goes at once, so the sender's clock keeps going whatever the reader
                // does.
                let second_full = self.rcv_nxt - self.last_ack_sent > self.rcv_mss;
                if had_gap
                    || ctx.config.ack_delay.is_zero()
                    || (second_full && self.potential_window() > 0)
                {
                    // RFC 5681 4.2 also says to acknowledge at once when a gap fills. With
                    // no delay configured, the ACK goes at the end of this batch of input.
                    self.ack_now = true;
                } else if self.ack_at.is_off() {
                    self.ack_at = Timer::at(now + ctx.config.ack_delay);
                }
            } else {
                // Ahead of RCV.NXT: keep it for later and send a duplicate ACK at once
                // (RFC 5681 4.2), which is what drives the sender's fast retransmit.
                self.stats.ofo_in += 1;
                match self.ooo.insert(seq, payload) {
                    Insert::Queued => ctx.stats.ofo_queued += 1,
                    Insert::Full => ctx.stats.ofo_dropped += 1,
                    Insert::Duplicate => {}
                }
                self.dup_acks_owed += 1;
            }
        }

        // Eighth, FIN: once everything before it has arrived.
        if self.peer_fin == Some(self.rcv_nxt) && !self.fin_received {
            self.fin_received = true;
            self.rcv_nxt += 1;
            self.ack_now = true;
            match self.state {
                State::SynReceived | State::Established => self.set_state(State::CloseWait, ctx),
                State::FinWait1 => {
                    if self.fin_acked() {
                        self.enter_time_wait(now, ctx);
                    } else {
                        self.set_state(State::Closing, ctx);
                    }
                }
                State::FinWait2 => self.enter_time_wait(now, ctx),
                _ => {}
            }
        }
    }

    fn enter_time_wait(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        self.set_state(State::TimeWait, ctx);
        self.linger_until = Timer::at(now + ctx.config.time_wait);
        self.ooo.clear();
    }

    // ------------------------------------------------------------------ timers

    /// The earliest time [`on_timer`](Self::on_timer) has work.
    pub fn poll_at(&self) -> Option<Instant> {
        self.next_timer().get()
    }

    /// Whether a timer is due at `now`: [`poll_at`](Self::poll_at) is at or before it.
    pub fn timer_due(&self, now: Instant) -> bool {
        self.next_timer().is_due(now)
    }

    fn next_timer(&self) -> Timer {
        self.rto_at
            .min(self.persist_at)
            .min(self.linger_until.min(self.ack_at))
    }

    /// Runs the timers due at `now`.
    pub fn on_timer(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        if self.linger_until.is_due(now) {
            self.linger_until = Timer::OFF;
            if matches!(self.state, State::TimeWait | State::FinWait2) {
                self.set_state(State::Closed, ctx);
                return;
            }
        }
        if self.ack_at.is_due(now) {
            self.ack_at = Timer::OFF;
            self.ack_now = true;
        }
        if self.rto_at.is_due(now) {
            self.on_retransmission_timeout(now, ctx);
        }
        if self.persist_at.is_due(now) {
            self.persist_at = Timer::OFF;
            self.probe_now = true;
            self.persist_backoff = self.persist_backoff.saturating_add(1);
        }
    }

    /// RFC 6298 5.4-5.7: retransmit from SND.UNA, back off, give up after too many tries.
    fn on_retransmission_timeout(&mut self, now: Instant, ctx: &mut Ctx<'_>) {
        self.rto_at = Timer::OFF;
        if self.snd_una == self.snd_max {
            return;
        }
        self.retries += 1;
        let limit = match self.state {
            State::SynSent | State::SynReceived => ctx.config.syn_retries,
            _ => ctx.config.max_retransmissions,
        };
        if self.retries > limit {
            ctx.stats.abort_on_timeout += 1;
            if self.state.is_synchronized() {
                self.rst_out = Some(self.rst_header(self.snd_nxt, Some(self.rcv_nxt)));
            }
            self.abort_with(Some(Error::TimedOut), ctx);
            return;
        }
        ctx.stats.timeouts += 1;
        self.stats.timeouts += 1;
        self.rtt.on_timeout();
        self.timeout_tsval = Some(self.tsval(now));
        self.cc
            .on_timeout(self.snd_max - self.snd_una, self.snd_max);
        // Go back to the first unacknowledged byte; the timer restarts when it is resent.
        self.snd_nxt = self.snd_una;
        self.retransmit_first = false;
        self.rtt_probe = None;
    }

    // ------------------------------------------------------------------ sending

    /// The window we would advertise now: free receive buffer space.
    fn potential_window(&self) -> u32 {
        let free = self.recv_capacity.saturating_sub(self.recv_q.len());
        u32::try_from(free).unwrap_or(u32::MAX)
    }

    /// The window last advertised, from RCV.NXT.
    fn rcv_window(&self) -> u32 {
        self.rcv_adv.diff(self.rcv_nxt).max(0) as u32
    }

    /// Receiver silly window avoidance (RFC 9293 3.8.6.2.2): the right edge moves only by
    /// at least min(buffer / 2, MSS).
    fn window_update_step(&self) -> u32 {
        let half = u32::try_from(self.recv_capacity / 2).unwrap_or(u32::MAX);
        half.min(self.our_mss).max(1)
    }

    /// Computes the window field for a segment going out now, moving RCV.ADV if the
    /// window may grow; never moves it left.
    fn advertise(&mut self, syn: bool) -> u16 {
        let edge = self.rcv_nxt + self.potential_window();
        let grow = edge.diff(self.rcv_adv);
        // Even a closed window stays closed until it can open by a whole step: a window of
        // the few bytes the application just read is exactly the silly window RFC 1122
        // 4.2.3.3 forbids (the sender's persist probes keep asking meanwhile).
        if grow > 0 && grow as u32 >= self.window_update_step() {
            self.rcv_adv = edge;
        }
        let wnd = self.rcv_window();
        let shift = if syn { 0 } else { self.rcv_shift };
        // Round up to the scale's unit, as Linux does: rounding down would move the right
        // edge left by up to 2^shift - 1 bytes, a shrinking window (RFC 9293 3.8.6.2.2),
        // and cut off the tail of a peer's segment that filled the old window. But never
        // past the free buffer rounded up: re-rounding the old window up on every segment
        // would move the edge right by each segment's remainder, so a peer sending while
        // the application does not read would never see the window close (RFC 7323
        // appendix F). With that cap, at most 2^shift - 1 bytes beyond the buffer are
        // accepted, and the edge only moves left, by less than a unit, to stay within it.
        let unit = 1u32 << shift;
        let field = wnd
            .div_ceil(unit)
            .min(self.potential_window().div_ceil(unit))
            .min(65535);
        // What the peer sees is the field times 2^shift; keep RCV.ADV equal to that, so our
        // acceptability test and the peer's idea of our window agree.
        self.rcv_adv = self.rcv_nxt + (field << shift);
        field as u16
    }

    /// Our timestamp clock: one tick per millisecond (RFC 7323 5.4 allows 1 ms to 1 s).
    fn tsval(&self, now: Instant) -> u32 {
        ((now.as_nanos() / 1_000_000) as u32).wrapping_add(self.ts_offset)
    }

    fn header(&mut self, seq: SeqNum, flags: Flags) -> Header {
        let syn = flags.contains(Flags::SYN);
        let mut h = Header {
            src_port: self.local.port(),
            dst_port: self.remote.port(),
            seq,
            ack: SeqNum(0),
            flags,
            window: self.advertise(syn),
            urgent: 0,
            options: Options::default(),
        };
        if flags.contains(Flags::ACK) {
            h.ack = self.rcv_nxt;
            self.last_ack_sent = self.rcv_nxt;
            self.ack_now = false;
            self.ack_at = Timer::OFF;
            self.dup_acks_owed = self.dup_acks_owed.saturating_sub(1);
        }
        if syn {
            h.options.mss = Some(self.our_mss.min(65535) as u16);
            // RFC 7323 2.2: offer scaling on an active SYN; answer a SYN with it only if
            // the peer offered it.
            if self.state == State::SynSent || self.peer_scales {
                h.options.window_scale = Some(self.offered_shift);
            }
        }
        // Timestamps: offered on our SYN, then on every segment once agreed (RFC 7323 3.2).
        let tsval = self.tsval(self.sending_at);
        if syn && self.state == State::SynSent && self.ts_wanted {
            h.options.timestamps = Some((tsval, 0));
        } else if self.ts_enabled {
            h.options.timestamps = Some((tsval, self.ts_recent));
        }
        h
    }

    /// The next segment to send at `now`, if any. Call until `None`; the connection
    /// assumes each one is sent (a lost one is recovered like a dropped packet).
    pub fn next_segment(&mut self, now: Instant) -> Option<Outgoing> {
        self.sending_at = now;
        if let Some(rst) = self.rst_out.take() {
            return Some(Outgoing {
                header: rst,
                payload_offset: 0,
                payload_len: 0,
            });
        }
        if self.settle_if_quiet() {
            return None;
        }
        let out = match self.state {
            State::Closed | State::Listen => None,
            State::SynSent | State::SynReceived => self.next_syn(now),
            _ => self.next_data(now),
        };
        if let Some(o) = &out {
            self.stats.segs_out += 1;
            self.stats.bytes_sent += o.payload_len as u64;
        }
        self.arm_persist(now);
        out
    }

    /// For a connection with nothing to send and no reset queued, does what
    /// [`next_segment`](Self::next_segment) would, without working out the window, and
    /// returns true: no data waits, so no persist timer either (RFC 9293 3.8.6.1 arms it
    /// only for data held back by the window). Otherwise returns false and changes nothing.
    pub fn settle_if_quiet(&mut self) -> bool {
        if self.rst_out.is_none() && self.state.is_synchronized() && self.nothing_to_send() {
            self.persist_at = Timer::OFF;
            return true;
        }
        false
    }

    /// Whether a synchronized connection has nothing at all to send: no unsent data, no
    /// FIN queued, no retransmission, probe or ACK owed. In a ping-pong, the side that only
    /// received is in this state (its ACK waits for the delayed-ACK timer or the reply),
    /// and this check is all it needs, where working out the window was most of a call to
    /// [`next_segment`](Self::next_segment) (docs/benchmarks.md, item 22).
    fn nothing_to_send(&self) -> bool {
        let owed = self.ack_now
            || self.dup_acks_owed > 0
            || self.retransmit_first
            || self.probe_now
            || self.fin_queued;
        let offset = self.snd_nxt.diff(self.snd_una).max(0) as usize;
        !owed && self.send_buf.len() <= offset
    }

    /// SYN (SYN-SENT) or SYN,ACK (SYN-RECEIVED), when not yet sent or due again.
    fn next_syn(&mut self, now: Instant) -> Option<Outgoing> {
        if self.snd_nxt != self.iss {
            return self.next_ack_only();
        }
        let flags = if self.state == State::SynSent {
            Flags::SYN
        } else {
            Flags::SYN | Flags::ACK
        };
        let header = self.header(self.iss, flags);
        self.note_sent(now, self.iss, 1);
        Some(Outgoing {
            header,
            payload_offset: 0,
            payload_len: 0,
        })
    }

    /// Records that `len` sequence numbers from `seq` left now: advances SND.NXT and
    /// SND.MAX, starts the retransmission timer (RFC 6298 5.1) and the RTT measurement.
    // Out of line on purpose: once the RTO became a field read (item 40) the inliner took
    // it into `data_segment`, which then went out of line itself with `header`, 68
    // instructions more per round trip (docs/benchmarks.md, item 40).
    #[inline(never)]
    fn note_sent(&mut self, now: Instant, seq: SeqNum, len: u32) {
        let end = seq + len;
        let retransmission = seq.lt(self.snd_max);
        if retransmission {
            self.stats.retrans_segs += 1;
            // Karn's rule (RFC 6298 3): the timed segment, once resent, says nothing about
            // the RTT, since the ACK may answer either copy. Resending another segment
            // leaves the measurement valid.
            if self
                .rtt_probe
                .is_some_and(|(timed, _)| timed.in_window(seq, len.max(1)))
            {
                self.rtt_probe = None;
            }
        } else if self.rtt_probe.is_none() && len > 0 {
            self.rtt_probe = Some((seq, now));
        }
        if self.snd_nxt.lt(end) {
            self.snd_nxt = end;
        }
        if self.snd_max.lt(end) {
            self.snd_max = end;
        }
        if len > 0 && self.rto_at.is_off() {
            self.rto_at = Timer::at(now.saturating_add_nanos(self.rtt.rto_nanos()));
        }
    }

    /// Whether the last segment handed out was a retransmission: the table counts
    /// `RetransSegs` from it.
    pub fn retransmitted(&self) -> u64 {
        self.stats.retrans_segs
    }

    /// Data, FIN, probes and ACKs in synchronized states.
    fn next_data(&mut self, now: Instant) -> Option<Outgoing> {
        if self.state == State::TimeWait || self.state == State::Closed {
            return self.next_ack_only();
        }
        let data_len = self.send_buf.len() as u32;
        // Sequence number just past the last data byte; the FIN, if queued, takes it.
        let data_end = self.snd_una + data_len;

        if self.retransmit_first {
            self.retransmit_first = false;
            let len = data_len.min(self.snd_mss).min(self.snd_max - self.snd_una);
            let fin = len == data_len && self.fin_seq.is_some();
            if len > 0 || fin {
                return Some(self.data_segment(now, self.snd_una, len, fin));
            }
        }

        let offset = self.snd_nxt.diff(self.snd_una).max(0) as u32;
        let unsent = data_len.saturating_sub(offset);
        let in_flight = self.snd_nxt - self.snd_una;
        // Limited transmit (RFC 3042): the first two duplicate ACKs each let one new
        // segment out beyond the congestion window, so a small window still produces the
        // three duplicates that fast retransmit needs instead of waiting for a timeout.
        let limited = if self.cc.in_recovery() {
            0
        } else {
            self.cc.dup_acks().min(2) * self.snd_mss
        };
        let window = self.snd_wnd.min(self.cc.cwnd() + limited);
        let usable = window.saturating_sub(in_flight);
        let mut len = unsent.min(usable).min(self.snd_mss);
        // A segment stops at the end of a send-buffer block, so that one sent from a full
        // block can carry the block's bytes without copying them (sendbuf.rs). It counts
        // as full for Nagle and silly window avoidance below: more data would not make it
        // longer, and holding it back would hold back the next block's full segments too.
        // Segments smaller than SHARE_MIN are never shared, so with such an MSS (1460 on
        // Ethernet-sized paths) the stream is cut only by the MSS, as usual.
        let block_cut = len > 0 && self.snd_mss as usize >= SHARE_MIN && {
            let (in_block, more_blocks) = self.send_buf.contiguous_at(offset as usize);
            let cut = more_blocks && (in_block as u32) < len;
            if cut {
                len = in_block as u32;
            }
            cut
        };

        if self.probe_now {
            self.probe_now = false;
            if unsent > 0 && self.snd_wnd == 0 {
                // Zero-window probe: a segment the peer must answer with its window. Like
                // Linux, one below SND.UNA: out of window, so it carries no data and draws
                // an ACK (RFC 9293 3.8.6.1, RFC 1122 4.2.2.17).
                self.stats.window_probes += 1;
                let h = self.header(self.snd_una - 1, Flags::ACK);
                return Some(Outgoing {
                    header: h,
                    payload_offset: 0,
                    payload_len: 0,
                });
            }
            if len > 0 {
                // The window is open but too small for silly window avoidance to send
                // into: the override timeout of RFC 9293 3.8.6.2.1 sends what fits.
                return Some(self.data_segment(now, self.snd_nxt, len, false));
            }
        }

        if len > 0 {
            let all_fits = len == unsent;
            let full = len == self.snd_mss || block_cut;
            // Nagle (RFC 1122 4.2.3.4): a short segment waits while data is unacknowledged,
            // unless TCP_NODELAY; the FIN's segment goes at once.
            let nagle_ok = self.nodelay || in_flight == 0 || self.fin_queued;
            // Sender silly window avoidance (RFC 9293 3.8.6.2.1): send a full segment, or
            // everything queued, or at least half the largest window the peer has offered.
            let sws_ok = full
                || (all_fits && nagle_ok)
                || (len >= self.max_snd_wnd / 2 && nagle_ok && self.max_snd_wnd > 0);
            if sws_ok {
                let fin = self.fin_queued && all_fits;
                return Some(self.data_segment(now, self.snd_nxt, len, fin));
            }
        } else if self.fin_queued && unsent == 0 && self.snd_nxt == data_end && !self.fin_acked() {
            // Everything sent: the FIN alone (it needs no window).
            return Some(self.data_segment(now, self.snd_nxt, 0, true));
        }
        self.next_ack_only()
    }

    fn data_segment(&mut self, now: Instant, seq: SeqNum, len: u32, fin: bool) -> Outgoing {
        let mut flags = Flags::ACK;
        if len > 0 {
            flags = flags | Flags::PSH;
        }
        if fin {
            flags = flags | Flags::FIN;
        }
        let header = self.header(seq, flags);
        if fin {
            self.fin_seq = Some(seq + len);
        }
        self.note_sent(now, seq, len + u32::from(fin));
        Outgoing {
            header,
            payload_offset: (seq - self.snd_una) as usize,
            payload_len: len as usize,
        }
    }

    fn next_ack_only(&mut self) -> Option<Outgoing> {
        if !self.ack_now && self.dup_acks_owed == 0 {
            return None;
        }
        // A pure ACK carries SND.MAX, not SND.NXT: after a timeout SND.NXT goes back to
        // resend, and an ACK numbered below what the peer already has would be
        // unacceptable to it, drawing an ACK in return, and so on for ever (BSD's
        // tcp_output does the same for the same reason).
        let header = self.header(self.snd_max, Flags::ACK);
        Some(Outgoing {
            header,
            payload_offset: 0,
            payload_len: 0,
        })
    }

    /// Arms the persist timer when data waits for the window and nothing is in flight to
    /// bring a window update back: a zero window (RFC 9293 3.8.6.1), or one too small for
    /// silly window avoidance to use (3.8.6.2.1's override timeout). Without it, one lost
    /// window update would stall the connection for good.
    fn arm_persist(&mut self, now: Instant) {
        let offset = self.snd_nxt.diff(self.snd_una).max(0) as usize;
        let waiting = self.send_buf.len() > offset;
        if self.state.is_synchronized()
            && waiting
            && self.snd_una == self.snd_max
            && self.rto_at.is_off()
        {
            if self.persist_at.is_off() {
                let backoff = self.persist_backoff.min(16);
                let interval = self
                    .rtt
                    .rto()
                    .saturating_mul(1 << backoff)
                    .min(Duration::from_secs(60));
                self.persist_at = Timer::at(now + interval);
            }
        } else {
            self.persist_at = Timer::OFF;
        }
    }

    /// The send-buffer block and range holding the payload of `out`, if it is to be
    /// attached to the packet rather than copied ([`SendBuffer::share_at`]).
    pub fn shared_payload(&self, out: &Outgoing) -> Option<(&Arc<[u8]>, Range<usize>)> {
        self.send_buf.share_at(out.payload_offset, out.payload_len)
    }

    /// Copies the payload of `out` from the send buffer into `dst` (at least
    /// `out.payload_len` bytes).
    pub fn copy_payload(&self, out: &Outgoing, dst: &mut [u8]) -> usize {
        self.send_buf
            .read_at(out.payload_offset, &mut dst[..out.payload_len])
    }

    /// Reports an ICMP error about a segment of ours (RFC 1122 4.2.3.9, RFC 5927): hard
    /// errors end a connection still opening; established connections ignore them (a
    /// spoofed unreachable must not be able to kill one, RFC 5927 4.1) and rely on their
    /// retransmission timer instead.
    pub fn icmp_unreachable(&mut self, error: Error, ctx: &mut Ctx<'_>) {
        match self.state {
            State::SynSent | State::SynReceived => self.abort_with(Some(error), ctx),
            _ => {}
        }
    }

    /// Lowers the segment size after a Packet Too Big / Fragmentation Needed (RFC 1191,
    /// RFC 8201), never below the protocol minimum.
    pub fn reduce_mss(&mut self, mss: u32) {
        let floor = default_mss(self.remote.is_ipv6());
        if mss < self.snd_mss {
            self.snd_mss = mss.max(floor);
            // Resend what was lost at the old size.
            self.snd_nxt = self.snd_una;
        }
    }

    /// Whether the connection is finished and may be removed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed && self.rst_out.is_none()
    }

    /// The error the application will see next, without taking it.
    pub fn pending_error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// Takes the pending error.
    pub fn take_error(&mut self) -> Option<Error> {
        self.error.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timer fires at its instant and after it, never before; off never fires, not even
    /// at the end of time; the earliest of several is their `min`, with off the latest.
    #[test]
    fn timer_as_an_integer_keeps_option_semantics() {
        let t = Instant::from_millis(5);
        let timer = Timer::at(t);
        assert!(!timer.is_due(Instant::from_nanos(t.as_nanos() - 1)));
        assert!(timer.is_due(t) && timer.is_due(Instant::MAX));
        assert_eq!(timer.get(), Some(t));
        assert!(!Timer::OFF.is_due(Instant::MAX));
        assert_eq!(Timer::OFF.get(), None);
        assert_eq!(Timer::OFF.min(timer), timer);
        assert_eq!(
            timer.min(Timer::at(Instant::from_millis(3))).get(),
            Some(Instant::from_millis(3))
        );
        assert_eq!(Timer::OFF.min(Timer::OFF).get(), None);
        // The one instant it cannot hold: set for the end of time, it is off.
        assert!(Timer::at(Instant::MAX).is_off());
        assert!(Timer::at(Instant::ZERO).is_due(Instant::ZERO));
    }
}
