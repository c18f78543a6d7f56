//! The TCP sockets of one stack: listeners and connections behind handles, the demultiplexer
//! that finds a segment's connection, and the code that turns a connection's
//! [`Outgoing`] into a packet.
//!
//! ```text
//!   Internet ── Delivery ──▶ receive(): parse, checksum, find (local, remote) ──▶ Connection
//!                                       or a listener (SYN) or nobody (RST, RFC 9293 3.10.7.1)
//!   Internet ◀─ send_prepared ─ dispatch(): for each connection with work, next_segment()
//! ```
//!
//! Nothing here reads a clock, and every map is ordered (`BTreeMap`), so the same inputs
//! give the same segments in the same order.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;

use loopstack_buf::{PacketBuf, PacketPool, PoolCache};
use loopstack_internet::addr;
use loopstack_internet::icmp::{IcmpError, QuotedPacket, RateLimiter};
use loopstack_internet::ingress::proto;
use loopstack_internet::{Internet, IpMeta, Links, Prepared, SendOptions};
use loopstack_link::{Instant, Rng};

use super::config::TcpConfig;
use super::conn::{Connection, Ctx, Outgoing, State, TcpInfo};
use super::deadlines::Deadlines;
use super::isn::IsnGenerator;
use super::sendbuf::LentBlock;
use super::seq::SeqNum;
use super::stats::TcpStats;
use super::wire::{Flags, Header, MAX_HEADER_LEN};
use crate::checksum;
use crate::demux_cache::DemuxCache;
use crate::error::Error;

/// Names a TCP socket (listener or connection) of one [`Tcp`]. A handle goes stale when its
/// socket is closed; using it then gives [`Error::BadHandle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TcpHandle {
    index: u32,
    generation: u32,
}

impl fmt::Display for TcpHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp#{}.{}", self.index, self.generation)
    }
}

/// Which halves [`Tcp::shutdown`] closes, as `std::net::Shutdown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// No more reads.
    Read,
    /// No more writes: send FIN.
    Write,
    /// Both.
    Both,
}

/// A listening socket: its address and its two queues (RFC 9293 3.10.7.2; the split into a
/// SYN queue and an accept queue is Linux's).
#[derive(Debug)]
struct Listener {
    local: SocketAddr,
    /// Connections fully established, waiting for `accept`.
    accept_q: VecDeque<u32>,
    /// The most `accept_q` may hold.
    backlog: usize,
    /// Connections in SYN-RECEIVED.
    half_open: usize,
}

#[derive(Debug)]
enum Sock {
    Listener(Listener),
    Conn(Box<ConnSlot>),
}

#[derive(Debug)]
struct ConnSlot {
    conn: Connection,
    /// The listener that opened it, until it is accepted.
    parent: Option<u32>,
    /// Handed to the application (by `connect` or `accept`).
    owned: bool,
    /// Counted in its listener's half-open connections.
    half_open: bool,
    /// Waiting in the dirty list.
    dirty: bool,
    /// The path to the peer, worked out at the first segment and kept while it is current
    /// (`Internet::is_current`): a connection sends every segment the same way, as Linux's
    /// `sk_dst_cache` assumes.
    path: Option<Prepared>,
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    sock: Option<Sock>,
}

/// One entry of [`Tcp::sockets`], for an `ss -t` listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketEntry {
    /// The application's handle, if it still has one.
    pub handle: Option<TcpHandle>,
    /// State.
    pub state: State,
    /// Local address.
    pub local: SocketAddr,
    /// Remote address (unspecified for listeners).
    pub remote: SocketAddr,
    /// Bytes waiting to be read (for listeners: connections waiting to be accepted).
    pub recv_q: usize,
    /// Bytes not yet acknowledged (for listeners: the backlog).
    pub send_q: usize,
}

/// All TCP sockets of one stack.
#[derive(Debug)]
pub struct Tcp {
    /// Segments are built in buffers from here, and the buffers of received data go back
    /// here once read, so a round trip's buffers move without the shared pool's lock.
    pool: PoolCache,
    shared: Shared,
    isn: IsnGenerator,
    rng: Rng,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Connections by (local, remote).
    conns: BTreeMap<(SocketAddr, SocketAddr), u32>,
    /// The receive path's cache in front of `conns`, by ports: a `BTreeMap` lookup
    /// compares `SocketAddr` pairs down the tree, about 3% of a TCP round trip in perf,
    /// where most segments belong to the few connections just used. Emptied whenever
    /// `conns` changes.
    demux: DemuxCache<FlowKey, DEMUX_WAYS>,
    /// Listeners by local address (possibly unspecified).
    listeners: BTreeMap<SocketAddr, u32>,
    /// Sockets using each (family is IPv6, port), for ephemeral port choice.
    ports: BTreeMap<(bool, u16), u32>,
    /// Connections with something to send, in the order they got it.
    dirty: Vec<u32>,
    /// Every connection's next deadline (`Connection::poll_at`), earliest first, so that
    /// a poll finds the due timers without asking every connection. Exact for every
    /// connection that is not dirty. A dirty one's deadline may move with every call until
    /// `dispatch` has sent its segments and files it again; meanwhile its entry may be
    /// stale, and `poll` and `poll_at` ask the connection itself.
    deadlines: Deadlines,
    /// Slots whose timers are due, gathered by `poll` (kept for its capacity).
    due: Vec<u32>,
    /// Resets to send that belong to no connection: (local, remote, seq, ack).
    pending_resets: Vec<(SocketAddr, SocketAddr, SeqNum, Option<SeqNum>)>,
}

/// What every connection's calls need from the table ([`Ctx`]), kept apart from the slots
/// so a connection and its context can be borrowed at the same time.
#[derive(Debug)]
struct Shared {
    config: TcpConfig,
    stats: TcpStats,
    challenge: RateLimiter,
}

impl Shared {
    fn ctx(&mut self) -> Ctx<'_> {
        Ctx {
            config: &self.config,
            stats: &mut self.stats,
            challenge: &mut self.challenge,
        }
    }

    /// Counts a segment going out (the TCP-MIB's, RFC 4022: OutSegs, RetransSegs, OutRsts).
    fn count_out(&mut self, out: &Outgoing, retransmission: bool) {
        if retransmission {
            self.stats.retrans_segs += 1;
        } else {
            self.stats.out_segs += 1;
        }
        if out.header.flags.contains(Flags::RST) {
            self.stats.out_rsts += 1;
        }
    }
}

/// The connection `h` names, marked dirty (queued for `dispatch`): what every call on a
/// connection needs. A function of the two fields, not a method, so that a caller can
/// borrow the table's other fields (the pool) at the same time.
fn conn_in<'a>(
    slots: &'a mut [Slot],
    dirty: &mut Vec<u32>,
    h: TcpHandle,
) -> Result<&'a mut Connection, Error> {
    let slot = slots.get_mut(h.index as usize).ok_or(Error::BadHandle)?;
    if slot.generation != h.generation {
        return Err(Error::BadHandle);
    }
    match slot.sock.as_mut() {
        Some(Sock::Conn(c)) => {
            if !c.dirty {
                c.dirty = true;
                dirty.push(h.index);
            }
            Ok(&mut c.conn)
        }
        Some(Sock::Listener(_)) => Err(Error::NotConnected),
        None => Err(Error::BadHandle),
    }
}

fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// The largest payload one segment carries over a route with this MTU: the MTU less the IP
/// and TCP headers, within the 16-bit length fields (IPv4's total length, IPv6's payload
/// length), and within the pool's largest buffer.
fn mss_for(mtu: usize, v6: bool, pool: &PacketPool) -> u32 {
    let ip_header = if v6 { 40 } else { 20 };
    let largest_ip = if v6 { 65535 + 40 } else { 65535 };
    let packet = mtu.min(largest_ip).min(pool.max_packet());
    packet.saturating_sub(ip_header + 20).clamp(64, 65535) as u32
}

impl Tcp {
    /// No sockets yet. `seed` keys the initial sequence numbers (RFC 6528) and the
    /// ephemeral port choice, so a seed gives the same connections every run.
    pub fn new(pool: PacketPool, config: TcpConfig, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let isn = IsnGenerator::new([rng.next_u64(), rng.next_u64()]);
        Tcp {
            pool: PoolCache::new(pool),
            shared: Shared {
                challenge: RateLimiter::new(
                    config.challenge_acks_per_sec,
                    config.challenge_acks_per_sec,
                ),
                config,
                stats: TcpStats::default(),
            },
            isn,
            rng,
            slots: Vec::new(),
            free: Vec::new(),
            conns: BTreeMap::new(),
            demux: DemuxCache::new(),
            listeners: BTreeMap::new(),
            ports: BTreeMap::new(),
            dirty: Vec::new(),
            deadlines: Deadlines::new(),
            due: Vec::new(),
            pending_resets: Vec::new(),
        }
    }

    /// Stack-wide counters.
    pub fn stats(&self) -> &TcpStats {
        &self.shared.stats
    }

    /// The settings.
    pub fn config(&self) -> &TcpConfig {
        &self.shared.config
    }

    // ------------------------------------------------------------------ slots and handles

    fn insert(&mut self, sock: Sock) -> TcpHandle {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.sock = Some(sock);
        TcpHandle {
            index,
            generation: slot.generation,
        }
    }

    fn handle_of(&self, index: u32) -> TcpHandle {
        TcpHandle {
            index,
            generation: self.slots[index as usize].generation,
        }
    }

    fn slot(&self, h: TcpHandle) -> Result<&Sock, Error> {
        let slot = self.slots.get(h.index as usize).ok_or(Error::BadHandle)?;
        if slot.generation != h.generation {
            return Err(Error::BadHandle);
        }
        slot.sock.as_ref().ok_or(Error::BadHandle)
    }

    fn slot_mut(&mut self, h: TcpHandle) -> Result<&mut Sock, Error> {
        let slot = self
            .slots
            .get_mut(h.index as usize)
            .ok_or(Error::BadHandle)?;
        if slot.generation != h.generation {
            return Err(Error::BadHandle);
        }
        slot.sock.as_mut().ok_or(Error::BadHandle)
    }

    fn conn(&self, h: TcpHandle) -> Result<&Connection, Error> {
        match self.slot(h)? {
            Sock::Conn(c) => Ok(&c.conn),
            Sock::Listener(_) => Err(Error::NotConnected),
        }
    }

    /// The connection behind `h`, with the context its calls need, and marks it dirty.
    fn conn_mut(&mut self, h: TcpHandle) -> Result<(&mut Connection, Ctx<'_>), Error> {
        let c = conn_in(&mut self.slots, &mut self.dirty, h)?;
        Ok((c, self.shared.ctx()))
    }

    /// After a call that may have changed the connection at `index`: queues it for
    /// [`dispatch`](Self::dispatch), which sends what it has and files its deadline.
    fn mark_dirty(&mut self, index: u32) {
        if let Some(Sock::Conn(c)) = self.slots[index as usize].sock.as_mut() {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(index);
            }
        }
    }

    /// Whether the slot at `index` holds a dirty connection.
    fn is_dirty(&self, index: u32) -> bool {
        matches!(&self.slots[index as usize].sock, Some(Sock::Conn(c)) if c.dirty)
    }

    /// The real next deadline of the slot at `index`: its connection's, if it holds one.
    fn deadline_of(&self, index: u32) -> Option<Instant> {
        match &self.slots[index as usize].sock {
            Some(Sock::Conn(c)) => c.conn.poll_at(),
            _ => None,
        }
    }

    /// Files the next deadline of the connection at `index` if it is earlier than the
    /// slot's entry; a later one (or none) leaves the entry early while the budget of
    /// early entries lasts, and waits for it to come due (deadlines.rs, "Filed early,
    /// checked when due").
    fn rearm(&mut self, index: u32) {
        let at = self.deadline_of(index);
        self.deadlines.refile(index, at);
    }

    fn take_port(&mut self, v6: bool, port: u16) {
        *self.ports.entry((v6, port)).or_insert(0) += 1;
    }

    fn release_port(&mut self, v6: bool, port: u16) {
        if let Some(n) = self.ports.get_mut(&(v6, port)) {
            *n -= 1;
            if *n == 0 {
                self.ports.remove(&(v6, port));
            }
        }
    }

    fn ephemeral_port(&mut self, v6: bool) -> Result<u16, Error> {
        let ports = &self.ports;
        self.shared
            .config
            .ephemeral_ports
            .pick(&mut self.rng, |p| ports.contains_key(&(v6, p)))
            .ok_or(Error::AddrNotAvailable)
    }

    // ------------------------------------------------------------------ opening

    /// Binds `local` and listens on it (std's `TcpListener::bind`). Port 0 takes an
    /// ephemeral port; the address must be unspecified or one of ours. `backlog` bounds the
    /// accept queue (at least 1, at most `max_accept_backlog`).
    pub fn listen(
        &mut self,
        ip: &Internet,
        mut local: SocketAddr,
        backlog: usize,
    ) -> Result<TcpHandle, Error> {
        let v6 = local.is_ipv6();
        if !local.ip().is_unspecified() && !ip.interfaces().is_local(local.ip()) {
            return Err(Error::AddrNotAvailable);
        }
        if local.port() == 0 {
            local.set_port(self.ephemeral_port(v6)?);
        }
        // Another listener on the same port conflicts if either address covers the other.
        let clash = self.listeners.keys().any(|l| {
            l.is_ipv6() == v6
                && l.port() == local.port()
                && (l.ip() == local.ip() || l.ip().is_unspecified() || local.ip().is_unspecified())
        });
        if clash {
            return Err(Error::AddrInUse);
        }
        let listener = Listener {
            local,
            accept_q: VecDeque::new(),
            backlog: backlog.clamp(1, self.shared.config.max_accept_backlog.max(1)),
            half_open: 0,
        };
        let h = self.insert(Sock::Listener(listener));
        self.listeners.insert(local, h.index);
        self.take_port(v6, local.port());
        Ok(h)
    }

    /// Starts an active open to `remote` (std's `TcpStream::connect` without the wait):
    /// the SYN goes out at the next [`dispatch`](Self::dispatch). The connection reports
    /// its outcome through [`state`](Self::state) and [`take_error`](Self::take_error).
    /// `local` picks the source address or port; by default the route chooses the address
    /// and the port is ephemeral.
    pub fn connect(
        &mut self,
        now: Instant,
        ip: &Internet,
        remote: SocketAddr,
        local: Option<SocketAddr>,
    ) -> Result<TcpHandle, Error> {
        let v6 = remote.is_ipv6();
        if remote.port() == 0 {
            return Err(Error::InvalidInput("connect to port 0"));
        }
        if local.is_some_and(|l| l.is_ipv6() != v6) {
            return Err(Error::InvalidInput(
                "local and remote address families differ",
            ));
        }
        let mut remote = remote;
        if remote.ip().is_unspecified() {
            // Linux (and so std) connects to the loopback address for 0.0.0.0 and ::.
            remote.set_ip(if v6 {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            });
        }
        let decision = ip.route(remote.ip()).map_err(Error::from_route)?;
        let mut src = decision.src;
        let mut port = 0;
        if let Some(l) = local {
            if !l.ip().is_unspecified() {
                if !ip.interfaces().is_local(l.ip()) {
                    return Err(Error::AddrNotAvailable);
                }
                src = l.ip();
            }
            port = l.port();
        }
        if port == 0 {
            port = self.ephemeral_port(v6)?;
        }
        let local = SocketAddr::new(src, port);
        if self.conns.contains_key(&(local, remote)) {
            return Err(Error::AddrInUse);
        }
        let mtu = ip
            .interfaces()
            .get(decision.iface)
            .map_or(1280, |i| i.mtu());
        let mss = mss_for(mtu, v6, self.pool.pool());
        let iss = self.isn.isn(now, local, remote);
        let mut ctx = self.shared.ctx();
        let conn = Connection::connect(local, remote, iss, mss, &mut ctx);
        let h = self.insert(Sock::Conn(Box::new(ConnSlot {
            conn,
            parent: None,
            owned: true,
            half_open: false,
            dirty: false,
            path: None,
        })));
        self.conns.insert((local, remote), h.index);
        self.demux.clear();
        self.take_port(v6, port);
        self.mark_dirty(h.index);
        Ok(h)
    }

    /// Takes an established connection off a listener's accept queue.
    pub fn accept(&mut self, h: TcpHandle) -> Result<(TcpHandle, SocketAddr), Error> {
        let Sock::Listener(l) = self.slot_mut(h)? else {
            return Err(Error::InvalidInput("accept on a connection"));
        };
        let index = l.accept_q.pop_front().ok_or(Error::WouldBlock)?;
        let Some(Sock::Conn(c)) = self.slots[index as usize].sock.as_mut() else {
            return Err(Error::WouldBlock);
        };
        c.parent = None;
        c.owned = true;
        let remote = c.conn.remote();
        Ok((self.handle_of(index), remote))
    }

    /// Whether [`accept`](Self::accept) has a connection to give.
    pub fn can_accept(&self, h: TcpHandle) -> Result<bool, Error> {
        match self.slot(h)? {
            Sock::Listener(l) => Ok(!l.accept_q.is_empty()),
            Sock::Conn(_) => Err(Error::InvalidInput("accept on a connection")),
        }
    }

    // ------------------------------------------------------------------ data

    /// Queues bytes to send; [`Error::WouldBlock`] when the send buffer is full.
    pub fn send(&mut self, h: TcpHandle, data: &[u8]) -> Result<usize, Error> {
        let (c, _) = self.conn_mut(h)?;
        c.send(data)
    }

    /// [`send`](Self::send) in two steps: lends the send-buffer block the next bytes go
    /// into, for a caller that fills it without the stack's lock held and hands it back
    /// with [`send_commit`](Self::send_commit) (a blocking socket's write, so that its copy
    /// runs while the reader copies too: docs/benchmarks.md, item 33). `Ok(None)`: the
    /// buffer cannot lend one now, use `send`. While a block is out, the connection takes
    /// no other write (`WouldBlock`).
    pub fn send_lend(&mut self, h: TcpHandle, want: usize) -> Result<Option<LentBlock>, Error> {
        let (c, _) = self.conn_mut(h)?;
        c.send_lend(want)
    }

    /// Appends a block from [`send_lend`](Self::send_lend), filled, to the connection's
    /// stream; returns the bytes added. A handle gone meanwhile drops the block.
    pub fn send_commit(&mut self, h: TcpHandle, lent: LentBlock) -> Result<usize, Error> {
        let (c, _) = self.conn_mut(h)?;
        let n = c.send_commit(lent)?;
        self.shared.stats.lent_writes += 1;
        Ok(n)
    }

    /// Reads bytes; `Ok(0)` at end of file, [`Error::WouldBlock`] when nothing is queued.
    pub fn recv(&mut self, h: TcpHandle, out: &mut [u8]) -> Result<usize, Error> {
        let c = conn_in(&mut self.slots, &mut self.dirty, h)?;
        // The buffers read to their end go to this layer's stock, for the next segment.
        let pool = &mut self.pool;
        c.recv_recycling(out, |b| pool.recycle(b))
    }

    /// [`recv`](Self::recv), or, when the bytes queued first come in buffers that fit in
    /// `out` whole, those buffers themselves, moved into the first places of `bufs` for the
    /// caller to copy out of later: [`Received::Taken`]. A blocking socket does that copy
    /// after letting go of the stack's lock, so that the writer's copy into the send
    /// buffer and the reader's copy out run at the same time (docs/benchmarks.md, item 33).
    /// What is taken counts as read, and the window opens as for `recv`.
    pub fn recv_or_take(
        &mut self,
        h: TcpHandle,
        out: &mut [u8],
        bufs: &mut [Option<PacketBuf>],
    ) -> Result<Received, Error> {
        let c = conn_in(&mut self.slots, &mut self.dirty, h)?;
        let (buffers, bytes) = c.recv_take(out.len(), bufs);
        if buffers > 0 {
            self.shared.stats.taken_reads += 1;
            return Ok(Received::Taken { buffers, bytes });
        }
        let pool = &mut self.pool;
        c.recv_recycling(out, |b| pool.recycle(b))
            .map(Received::Copied)
    }

    /// Copies queued bytes without consuming them.
    pub fn peek(&self, h: TcpHandle, out: &mut [u8]) -> Result<usize, Error> {
        Ok(self.conn(h)?.peek(out))
    }

    /// Whether [`recv`](Self::recv) would return something other than `WouldBlock`.
    pub fn can_recv(&self, h: TcpHandle) -> Result<bool, Error> {
        Ok(self.conn(h)?.can_recv())
    }

    /// Whether [`send`](Self::send) would take bytes or fail rather than `WouldBlock`.
    pub fn can_send(&self, h: TcpHandle) -> Result<bool, Error> {
        Ok(self.conn(h)?.can_send())
    }

    /// Shuts down one or both directions, as `std::net::TcpStream::shutdown`.
    pub fn shutdown(&mut self, h: TcpHandle, how: Shutdown) -> Result<(), Error> {
        let (c, mut ctx) = self.conn_mut(h)?;
        if matches!(c.state(), State::Closed) && c.pending_error().is_none() {
            return Err(Error::NotConnected);
        }
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            c.shutdown_read();
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            c.shutdown_write(&mut ctx);
        }
        Ok(())
    }

    /// Closes the socket as dropping a std socket does. A listener stops listening and
    /// resets the connections it had not handed out; a connection sends FIN (or RST if
    /// received data was left unread) and finishes on its own. The handle is stale after.
    pub fn close(&mut self, h: TcpHandle) -> Result<(), Error> {
        self.slot(h)?;
        let index = h.index;
        self.slots[index as usize].generation =
            self.slots[index as usize].generation.wrapping_add(1);
        match self.slots[index as usize].sock.as_mut() {
            Some(Sock::Listener(_)) => self.close_listener(index),
            Some(Sock::Conn(c)) => {
                c.owned = false;
                let mut ctx = self.shared.ctx();
                c.conn.close(&mut ctx);
                self.mark_dirty(index);
            }
            None => {}
        }
        Ok(())
    }

    /// Resets a connection at once (`SO_LINGER` with a zero timeout, then close).
    pub fn abort(&mut self, h: TcpHandle) -> Result<(), Error> {
        let (c, mut ctx) = self.conn_mut(h)?;
        c.abort(&mut ctx);
        Ok(())
    }

    fn close_listener(&mut self, index: u32) {
        let Some(Sock::Listener(l)) = self.slots[index as usize].sock.take() else {
            return;
        };
        self.listeners.remove(&l.local);
        self.release_port(l.local.is_ipv6(), l.local.port());
        self.free_slot_later(index);
        // Connections it opened and nobody accepted are reset, as Linux does.
        let children: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.sock {
                Some(Sock::Conn(c)) if c.parent == Some(index) => Some(i as u32),
                _ => None,
            })
            .collect();
        for child in children {
            if let Some(Sock::Conn(c)) = self.slots[child as usize].sock.as_mut() {
                c.parent = None;
                let mut ctx = self.shared.ctx();
                c.conn.close(&mut ctx);
                c.conn.abort(&mut ctx);
            }
            self.mark_dirty(child);
        }
    }

    fn free_slot_later(&mut self, index: u32) {
        self.deadlines.set(index, None);
        let slot = &mut self.slots[index as usize];
        slot.sock = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(index);
    }

    // ------------------------------------------------------------------ queries

    /// The connection's state, or [`State::Listen`] for a listener.
    pub fn state(&self, h: TcpHandle) -> Result<State, Error> {
        match self.slot(h)? {
            Sock::Listener(_) => Ok(State::Listen),
            Sock::Conn(c) => Ok(c.conn.state()),
        }
    }

    /// Our address.
    pub fn local_addr(&self, h: TcpHandle) -> Result<SocketAddr, Error> {
        match self.slot(h)? {
            Sock::Listener(l) => Ok(l.local),
            Sock::Conn(c) => Ok(c.conn.local()),
        }
    }

    /// The peer's address.
    pub fn peer_addr(&self, h: TcpHandle) -> Result<SocketAddr, Error> {
        let c = self.conn(h)?;
        match c.state() {
            // In TIME-WAIT the connection is over for the application: Linux hands the
            // wait to a separate mini-socket and reports ENOTCONN here too.
            State::Closed | State::SynSent | State::TimeWait => Err(Error::NotConnected),
            _ => Ok(c.remote()),
        }
    }

    /// `TCP_NODELAY`.
    pub fn set_nodelay(&mut self, h: TcpHandle, on: bool) -> Result<(), Error> {
        let (c, _) = self.conn_mut(h)?;
        c.set_nodelay(on);
        Ok(())
    }

    /// Whether `TCP_NODELAY` is on.
    pub fn nodelay(&self, h: TcpHandle) -> Result<bool, Error> {
        Ok(self.conn(h)?.nodelay())
    }

    /// Takes the error the connection has for the application (`SO_ERROR`).
    pub fn take_error(&mut self, h: TcpHandle) -> Result<Option<Error>, Error> {
        match self.slot_mut(h)? {
            Sock::Conn(c) => Ok(c.conn.take_error()),
            Sock::Listener(_) => Ok(None),
        }
    }

    /// `ss -ti` for one connection.
    pub fn info(&self, h: TcpHandle) -> Result<TcpInfo, Error> {
        Ok(self.conn(h)?.info())
    }

    /// Every socket, in slot order: what `ss -tan` lists.
    pub fn sockets(&self) -> impl Iterator<Item = SocketEntry> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, s)| {
            let handle = TcpHandle {
                index: i as u32,
                generation: s.generation,
            };
            match s.sock.as_ref()? {
                Sock::Listener(l) => Some(SocketEntry {
                    handle: Some(handle),
                    state: State::Listen,
                    local: l.local,
                    remote: SocketAddr::new(unspecified(l.local.is_ipv6()), 0),
                    recv_q: l.accept_q.len(),
                    send_q: l.backlog,
                }),
                Sock::Conn(c) => Some(SocketEntry {
                    handle: c.owned.then_some(handle),
                    state: c.conn.state(),
                    local: c.conn.local(),
                    remote: c.conn.remote(),
                    recv_q: c.conn.recv_queue(),
                    send_q: c.conn.send_queue(),
                }),
            }
        })
    }

    // ------------------------------------------------------------------ arriving segments

    /// Takes one segment from the internet layer (`packet` starts at the TCP header).
    pub fn receive<L: Links>(
        &mut self,
        now: Instant,
        meta: IpMeta,
        mut packet: PacketBuf,
        ip: &mut Internet,
        links: &mut L,
    ) {
        self.shared.stats.in_segs += 1;
        let (h, header_len) = match Header::parse(&packet) {
            Ok(x) => x,
            Err(_) => {
                self.shared.stats.in_errs += 1;
                return;
            }
        };
        if meta.verify_checksum && !verify_segment(&meta, &packet) {
            self.shared.stats.in_csum_errors += 1;
            self.shared.stats.in_errs += 1;
            return;
        }
        if packet.strip_front(header_len).is_err() {
            self.shared.stats.in_errs += 1;
            return;
        }
        let key = FlowKey::new(meta.dst, h.dst_port, meta.src, h.src_port);
        let local = || SocketAddr::new(meta.dst, h.dst_port);
        let remote = || SocketAddr::new(meta.src, h.src_port);
        let conn = match self.cached_conn(key) {
            Some(index) => Some(index),
            None => self.find_conn(key, &local(), &remote()),
        };
        if let Some(index) = conn {
            self.segment_for_connection(now, index, &h, packet);
            return;
        }
        let (local, remote) = (local(), remote());
        let listener = self
            .listeners
            .get(&local)
            .or_else(|| {
                self.listeners
                    .get(&SocketAddr::new(unspecified(local.is_ipv6()), local.port()))
            })
            .copied();
        match listener {
            Some(index) => self.segment_for_listener(now, index, local, remote, &h, ip),
            None => self.reset_closed(now, local, remote, &h, packet.len(), ip, links),
        }
    }

    /// The connection for `key` if the demux cache has it: most segments, and the
    /// `SocketAddr`s that `conns` is keyed by are then never built.
    #[inline(always)]
    fn cached_conn(&self, key: FlowKey) -> Option<u32> {
        self.demux.get(key.way(), &key)
    }

    /// The connection for (local, remote), whose [`FlowKey`] is `key`, from `conns`; kept
    /// in the demux cache for the next segment.
    fn find_conn(&mut self, key: FlowKey, local: &SocketAddr, remote: &SocketAddr) -> Option<u32> {
        let index = *self.conns.get(&(*local, *remote))?;
        self.demux.put(key.way(), key, index);
        Some(index)
    }

    fn segment_for_connection(&mut self, now: Instant, index: u32, h: &Header, payload: PacketBuf) {
        let Some(Sock::Conn(c)) = self.slots[index as usize].sock.as_mut() else {
            return;
        };
        // The handshake's last ACK for a listener whose accept queue is full is dropped, as
        // Linux does: the connection stays half-open and our SYN,ACK is retransmitted, by
        // which time the application may have made room (ListenOverflows).
        if let (Some(parent), State::SynReceived) = (c.parent, c.conn.state()) {
            if h.flags.contains(Flags::ACK) && !h.flags.contains(Flags::RST) {
                if let Some(Sock::Listener(l)) = self.slots[parent as usize].sock.as_ref() {
                    if l.accept_q.len() >= l.backlog {
                        self.shared.stats.listen_overflows += 1;
                        self.shared.stats.listen_drops += 1;
                        return;
                    }
                }
            }
        }
        let Some(Sock::Conn(c)) = self.slots[index as usize].sock.as_mut() else {
            return;
        };
        let before = c.conn.state();
        let mut ctx = self.shared.ctx();
        c.conn.on_segment(now, h, payload, &mut ctx);
        let after = c.conn.state();
        if c.half_open && before == State::SynReceived && after != State::SynReceived {
            c.half_open = false;
            if let Some(p) = c.parent {
                if let Some(Sock::Listener(l)) = self.slots[p as usize].sock.as_mut() {
                    l.half_open = l.half_open.saturating_sub(1);
                    if after != State::Closed {
                        l.accept_q.push_back(index);
                    }
                }
            }
        }
        // A connection left with nothing to send (the side that only took data in, its
        // ACK waiting for the delayed-ACK timer or for the reply) files its deadline now,
        // and `dispatch` is spared the visit: half of a ping-pong's calls to it found
        // nothing to do (docs/benchmarks.md, item 22). Anything else, a closed connection
        // included, goes through `dispatch` as before.
        let quiet = match self.slots[index as usize].sock.as_mut() {
            Some(Sock::Conn(c)) => !c.dirty && c.conn.settle_if_quiet(),
            _ => false,
        };
        if quiet {
            self.rearm(index);
        } else {
            self.mark_dirty(index);
        }
    }

    /// RFC 9293 3.10.7.2, LISTEN.
    fn segment_for_listener(
        &mut self,
        now: Instant,
        index: u32,
        local: SocketAddr,
        remote: SocketAddr,
        h: &Header,
        ip: &Internet,
    ) {
        if h.flags.contains(Flags::RST) {
            return;
        }
        if h.flags.contains(Flags::ACK) || !h.flags.contains(Flags::SYN) {
            // An ACK to a listener: <SEQ=SEG.ACK><CTL=RST>. Without SYN or ACK: drop.
            if h.flags.contains(Flags::ACK) {
                self.queue_reset(local, remote, h.ack, None);
            }
            return;
        }
        let Some(Sock::Listener(l)) = self.slots[index as usize].sock.as_mut() else {
            return;
        };
        if l.accept_q.len() >= l.backlog {
            self.shared.stats.listen_overflows += 1;
            self.shared.stats.listen_drops += 1;
            return;
        }
        if l.half_open >= self.shared.config.max_syn_backlog {
            self.shared.stats.listen_drops += 1;
            return;
        }
        l.half_open += 1;
        let mtu = ip
            .route(remote.ip())
            .ok()
            .and_then(|d| ip.interfaces().get(d.iface))
            .map_or(1280, |i| i.mtu());
        let mss = mss_for(mtu, local.is_ipv6(), self.pool.pool());
        let iss = self.isn.isn(now, local, remote);
        let mut ctx = self.shared.ctx();
        let conn = Connection::accept_syn(local, remote, iss, mss, h, &mut ctx);
        let h = self.insert(Sock::Conn(Box::new(ConnSlot {
            conn,
            parent: Some(index),
            owned: false,
            half_open: true,
            dirty: false,
            path: None,
        })));
        self.conns.insert((local, remote), h.index);
        self.demux.clear();
        self.take_port(local.is_ipv6(), local.port());
        self.mark_dirty(h.index);
    }

    /// RFC 9293 3.10.7.1: a segment for no connection and no listener gets a RST, unless
    /// it is one.
    #[allow(clippy::too_many_arguments)]
    fn reset_closed<L: Links>(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        h: &Header,
        payload_len: usize,
        ip: &mut Internet,
        links: &mut L,
    ) {
        if h.flags.contains(Flags::RST) {
            return;
        }
        if h.flags.contains(Flags::ACK) {
            // <SEQ=SEG.ACK><CTL=RST>
            self.send_reset(now, local, remote, h.ack, None, ip, links);
        } else {
            // <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
            let len = payload_len as u32
                + u32::from(h.flags.contains(Flags::SYN))
                + u32::from(h.flags.contains(Flags::FIN));
            self.send_reset(now, local, remote, SeqNum(0), Some(h.seq + len), ip, links);
        }
    }

    /// Queues a RST for dispatch where no connection exists to carry it (a listener's
    /// answer to a stray ACK).
    fn queue_reset(
        &mut self,
        local: SocketAddr,
        remote: SocketAddr,
        seq: SeqNum,
        ack: Option<SeqNum>,
    ) {
        self.pending_resets.push((local, remote, seq, ack));
    }

    // ------------------------------------------------------------------ ICMP

    /// An ICMP error about a segment we sent (RFC 1122 4.2.3.9, RFC 5927): unreachables
    /// end a connection still opening ("connection refused" for a port unreachable, as
    /// Linux reports it); Packet Too Big lowers the segment size (RFC 1191, RFC 8201).
    pub fn icmp_error(&mut self, error: IcmpError, quoted: &QuotedPacket) {
        let Some((sport, dport)) = quoted.ports() else {
            return;
        };
        if quoted.protocol != proto::TCP {
            return;
        }
        let key = (
            SocketAddr::new(quoted.src, sport),
            SocketAddr::new(quoted.dst, dport),
        );
        let Some(&index) = self.conns.get(&key) else {
            return;
        };
        let Some(Sock::Conn(c)) = self.slots[index as usize].sock.as_mut() else {
            return;
        };
        let mut ctx = self.shared.ctx();
        let v6 = quoted.dst.is_ipv6();
        match error {
            IcmpError::PortUnreachable | IcmpError::ProtocolUnreachable { .. } => {
                c.conn.icmp_unreachable(Error::ConnectionRefused, &mut ctx)
            }
            IcmpError::HostUnreachable => c.conn.icmp_unreachable(Error::HostUnreachable, &mut ctx),
            IcmpError::NetUnreachable => {
                c.conn.icmp_unreachable(Error::NetworkUnreachable, &mut ctx)
            }
            IcmpError::PacketTooBig { mtu } => {
                let mss = (mtu as usize).saturating_sub(if v6 { 60 } else { 40 });
                c.conn.reduce_mss(mss as u32);
            }
            _ => {}
        }
        self.mark_dirty(index);
    }

    // ------------------------------------------------------------------ timers and output

    /// The earliest time a connection has timer work: the earliest real deadline of the
    /// clean connections, found from the heap's head, or a dirty connection's deadline if
    /// earlier. Asks the dirty connections and at most `STALE_MAX` + 1 clean ones, however
    /// many connections there are.
    pub fn poll_at(&self) -> Option<Instant> {
        // Dirty connections are asked below, whatever their entries say.
        let mut next =
            self.deadlines
                .earliest_real(|index| match &self.slots[index as usize].sock {
                    Some(Sock::Conn(c)) if !c.dirty => c.conn.poll_at(),
                    _ => None,
                });
        for &index in &self.dirty {
            if let Some(Sock::Conn(c)) = &self.slots[index as usize].sock {
                next = Instant::earliest(next, c.conn.poll_at());
            }
        }
        self.check_deadlines();
        next
    }

    /// Debug builds check the heap against every connection: each clean one's entry is
    /// at its deadline, or, if marked early, before it (or there though it has none).
    /// Every call that can move a deadline marks the connection dirty, and `dispatch`
    /// files it again (or, for a segment that leaves a connection with nothing to send,
    /// files it at once); a path that missed that would be a timer that never fires, or
    /// fires late.
    fn check_deadlines(&self) {
        if cfg!(debug_assertions) {
            for (i, slot) in self.slots.iter().enumerate() {
                if let Some(Sock::Conn(c)) = &slot.sock {
                    if c.dirty {
                        continue;
                    }
                    let (real, filed) = (c.conn.poll_at(), self.deadlines.get(i as u32));
                    let filed_right = if self.deadlines.is_stale(i as u32) {
                        filed.is_some_and(|f| real.is_none_or(|r| f < r))
                    } else {
                        filed == real
                    };
                    assert!(
                        filed_right,
                        "connection {i}: deadline {real:?}, filed {filed:?}"
                    );
                }
            }
        }
    }

    /// Runs the timers due at `now`, then sends what they and everything else produced.
    pub fn poll<L: Links>(&mut self, now: Instant, ip: &mut Internet, links: &mut L) {
        self.check_deadlines();
        // Most polls have no timer due: a look at each dirty connection (its entry may be
        // stale) and one at the heap's head say so, before `run_timers` sets to work.
        if self.dirty_timer_due(now) || self.deadlines.earliest().is_some_and(|t| t <= now) {
            self.run_timers(now);
        }
        // Most polls find nothing to send (always, on a stack that only carries UDP); the
        // check saves dispatch's bookkeeping, which was 5% of a UDP round trip.
        if self.has_output() {
            self.dispatch(now, ip, links);
        }
    }

    /// Whether the timer of a dirty connection is due at `now`.
    fn dirty_timer_due(&self, now: Instant) -> bool {
        self.dirty.iter().any(|&index| {
            matches!(&self.slots[index as usize].sock, Some(Sock::Conn(c)) if c.conn.timer_due(now))
        })
    }

    /// Runs the timers of every connection due at `now`: those at the heap's head, and
    /// dirty ones asked directly. In slot order and each once, as a scan of the slots
    /// would take them, so that the segments their timers produce leave in the same order
    /// whatever order the deadlines were filed in.
    fn run_timers(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        while let Some(index) = self.deadlines.pop_due(now) {
            // A dirty connection's entry may be stale: the loop below asks it instead, and
            // `dispatch` files it again.
            if self.is_dirty(index) {
                continue;
            }
            // An entry is at or before its connection's deadline: one that came due early
            // (the deadline moved later since) is filed again where it really is, and
            // the connection is left alone.
            match self.deadline_of(index) {
                Some(t) if t <= now => due.push(index),
                later => self.deadlines.set(index, later),
            }
        }
        for &index in &self.dirty {
            if let Some(Sock::Conn(c)) = &self.slots[index as usize].sock {
                if c.conn.timer_due(now) {
                    due.push(index);
                }
            }
        }
        due.sort_unstable();
        due.dedup();
        for &index in &due {
            if let Some(Sock::Conn(c)) = self.slots[index as usize].sock.as_mut() {
                let mut ctx = self.shared.ctx();
                c.conn.on_timer(now, &mut ctx);
            }
            // `dispatch` files whatever deadline the timers left; one still due waits for
            // the next poll, as it did when every poll scanned the slots.
            self.mark_dirty(index);
        }
        due.clear();
        self.due = due;
    }

    /// Whether any connection has output waiting for [`dispatch`](Self::dispatch).
    pub fn has_output(&self) -> bool {
        !self.dirty.is_empty() || !self.pending_resets.is_empty()
    }

    /// Sends every segment that connections have ready, in the order they became ready,
    /// and removes connections that are finished.
    pub fn dispatch<L: Links>(&mut self, now: Instant, ip: &mut Internet, links: &mut L) {
        for i in 0..self.pending_resets.len() {
            let (local, remote, seq, ack) = self.pending_resets[i];
            self.send_reset(now, local, remote, seq, ack, ip, links);
        }
        self.pending_resets.clear();
        // The connections dirty now, in order; any that sending marks dirty again is
        // appended behind them and waits for the next dispatch.
        let ready = self.dirty.len();
        for i in 0..ready {
            let index = self.dirty[i];
            if let Some(Sock::Conn(c)) = self.slots[index as usize].sock.as_mut() {
                c.dirty = false;
            }
            self.transmit(now, index, ip, links);
            // Clean again: its deadline, which sending may have moved (the retransmission
            // and persist timers), goes back in the heap.
            self.rearm(index);
            self.reap(index);
        }
        if self.dirty.len() == ready {
            self.dirty.clear();
        } else {
            self.dirty.drain(..ready);
        }
    }

    /// Sends all of one connection's ready segments.
    fn transmit<L: Links>(&mut self, now: Instant, index: u32, ip: &mut Internet, links: &mut L) {
        loop {
            let Some(Sock::Conn(c)) = self.slots[index as usize].sock.as_mut() else {
                return;
            };
            let retrans_before = c.conn.retransmitted();
            let Some(out) = c.conn.next_segment(now) else {
                return;
            };
            let retransmission = c.conn.retransmitted() != retrans_before;
            let path = match &c.path {
                Some(p) if ip.is_current(p) => p,
                _ => match prepare(ip, c.conn.local(), c.conn.remote()) {
                    Ok(p) => c.path.insert(p),
                    Err(_) => {
                        // No way to the peer now (a route removed): the segment counts as
                        // sent and lost, as when the device drops it, and the
                        // retransmission timer brings it back.
                        self.shared.count_out(&out, retransmission);
                        continue;
                    }
                },
            };
            let payload = match c.conn.shared_payload(&out) {
                Some((block, range)) => Payload::Share(block, range),
                None => Payload::Copy(&c.conn),
            };
            let packet = match build_segment(&mut self.pool, path, &out, payload) {
                Ok(p) => p,
                Err(_) => {
                    // No buffer: the segment counts as lost; the retransmission timer
                    // brings it back.
                    self.shared.stats.out_no_buffer += 1;
                    continue;
                }
            };
            self.shared.count_out(&out, retransmission);
            let _ = ip.send_prepared(now, packet, path, links);
            // What the next turn's `next_segment` would find first; asked here, it spares
            // the connection's look-up and the call when, as after most segments, the
            // connection has nothing more to send (docs/benchmarks.md, item 40).
            if c.conn.settle_if_quiet() {
                return;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn send_reset<L: Links>(
        &mut self,
        now: Instant,
        local: SocketAddr,
        remote: SocketAddr,
        seq: SeqNum,
        ack: Option<SeqNum>,
        ip: &mut Internet,
        links: &mut L,
    ) {
        let out = Outgoing {
            header: Header::reset(local.port(), remote.port(), seq, ack),
            payload_offset: 0,
            payload_len: 0,
        };
        let Ok(path) = prepare(ip, local, remote) else {
            // Counted as sent and lost, like a segment the device drops.
            self.shared.count_out(&out, false);
            return;
        };
        match build_segment(&mut self.pool, &path, &out, Payload::Empty) {
            Ok(packet) => {
                self.shared.count_out(&out, false);
                let _ = ip.send_prepared(now, packet, &path, links);
            }
            Err(_) => self.shared.stats.out_no_buffer += 1,
        }
    }

    /// Removes a finished connection from the demultiplexer, and frees its slot once the
    /// application has no handle on it.
    fn reap(&mut self, index: u32) {
        let Some(Sock::Conn(c)) = self.slots[index as usize].sock.as_ref() else {
            return;
        };
        if !c.conn.is_closed() {
            return;
        }
        let key = (c.conn.local(), c.conn.remote());
        let (owned, parent, half_open) = (c.owned, c.parent, c.half_open);
        if self.conns.get(&key) == Some(&index) {
            self.conns.remove(&key);
            self.demux.clear();
            self.release_port(key.0.is_ipv6(), key.0.port());
        }
        if let Some(p) = parent {
            if let Some(Sock::Listener(l)) = self.slots[p as usize].sock.as_mut() {
                l.accept_q.retain(|&i| i != index);
                if half_open {
                    l.half_open = l.half_open.saturating_sub(1);
                }
            }
        }
        if !owned {
            self.free_slot_later(index);
        }
    }
}

/// What [`Tcp::recv_or_take`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Copied this many bytes into the caller's buffer, as [`Tcp::recv`] does (`0`: end of
    /// file, or an empty buffer given).
    Copied(usize),
    /// Moved this many whole buffers, holding `bytes` bytes together, into the first places
    /// of the caller's array; the caller copies them out.
    Taken {
        /// Buffers moved.
        buffers: usize,
        /// Bytes they hold.
        bytes: usize,
    },
}

/// Entries of [`Tcp`]'s demux cache.
const DEMUX_WAYS: usize = 8;

/// A segment's addresses and ports as [`Tcp`]'s demux cache compares them: integers, not a
/// pair of `SocketAddr`s, whose derived comparison goes through the address family, the
/// octets and, for IPv6, flow label and scope: about 10 instructions per segment more
/// over IPv4, and more over IPv6 (docs/benchmarks.md, item 40). The family rides beside the ports, since an IPv4
/// address and an IPv6 one can have the same number ([`addr::bits`]). Built from the
/// same packet fields as the `SocketAddr`s that look up `conns` (no flow label, no
/// scope), so a key matches exactly when those would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    local: u128,
    remote: u128,
    /// Local port, remote port and family (1 for IPv6), one 64-bit word.
    ports: u64,
}

impl FlowKey {
    #[inline]
    fn new(local: IpAddr, local_port: u16, remote: IpAddr, remote_port: u16) -> FlowKey {
        FlowKey {
            local: addr::bits(local),
            remote: addr::bits(remote),
            ports: u64::from(local_port) << 16
                | u64::from(remote_port)
                | u64::from(local.is_ipv6()) << 32,
        }
    }

    /// The hash that picks this key's way in the demux cache: of the ports, which tell a
    /// host's few busy connections apart.
    #[inline]
    fn way(&self) -> usize {
        let (local_port, remote_port) = ((self.ports >> 16) as u16, self.ports as u16);
        usize::from(local_port).wrapping_mul(31) ^ usize::from(remote_port)
    }
}

/// Whether a received segment's checksum is right: over its own bytes, and over its
/// payload's fragment too if the sender shared one instead of copying it.
fn verify_segment(meta: &IpMeta, packet: &PacketBuf) -> bool {
    if packet.is_linear() {
        checksum::verify(meta.src, meta.dst, proto::TCP, packet)
    } else {
        checksum::verify_parts(meta.src, meta.dst, proto::TCP, packet, packet.frag())
    }
}

/// Where a segment's payload comes from.
enum Payload<'a> {
    /// None: a reset's.
    Empty,
    /// Copied from the connection's send buffer into the packet's buffer. Named, not a
    /// closure behind `dyn Fn`: the indirect call and the closure's captures cost about 30
    /// instructions a segment (docs/benchmarks.md, item 22).
    Copy(&'a Connection),
    /// Attached to the packet without a copy: part of a send-buffer block
    /// ([`Connection::shared_payload`](super::conn::Connection::shared_payload)).
    Share(&'a Arc<[u8]>, Range<usize>),
}

/// Builds the packet for one segment: the header, the payload (copied, or attached from the
/// send buffer), and the partial checksum (the pseudo-header's sum), which the IP layer
/// finishes unless the device offloads it ([`SendOptions::checksum_at`]).
// Always inlined into `transmit`, its one caller per segment (docs/benchmarks.md, item 34).
#[inline(always)]
fn build_segment(
    pool: &mut PoolCache,
    path: &Prepared,
    out: &Outgoing,
    payload: Payload<'_>,
) -> Result<PacketBuf, Error> {
    let header_len = out.header.wire_len();
    debug_assert!(header_len <= MAX_HEADER_LEN);
    let len = header_len + out.payload_len;
    let max = pool.pool().max_packet();
    let too_long = |_| Error::MessageTooLong { len, max };
    let partial = path.partial(len);
    // The bytes in the packet's own buffer: everything, or only the header when the
    // payload is attached from the send buffer instead.
    let own = match payload {
        Payload::Empty | Payload::Copy(_) => len,
        Payload::Share(..) => header_len,
    };
    let mut packet = pool.alloc(own)?;
    // Write into the tailroom and commit it, rather than `append`, which would zero the
    // bytes first only for the payload copy to overwrite them.
    let bytes = &mut packet.tailroom_mut()[..own];
    out.header.write(&mut bytes[..header_len]);
    bytes[16..18].copy_from_slice(&partial);
    if let Payload::Copy(conn) = payload {
        conn.copy_payload(out, &mut bytes[header_len..]);
    }
    packet.commit_tailroom(own).map_err(too_long)?;
    if let Payload::Share(block, range) = payload {
        packet.attach(block, range).map_err(too_long)?;
    }
    Ok(packet)
}

/// The path for a connection's segments, from `local` to `remote`.
fn prepare(
    ip: &Internet,
    local: SocketAddr,
    remote: SocketAddr,
) -> Result<Prepared, loopstack_internet::SendError> {
    let options = SendOptions {
        src: Some(local.ip()),
        ttl: None,
        // TCP does path MTU discovery (RFC 1191): never fragment its segments.
        dont_fragment: true,
        checksum_at: Some(16),
    };
    ip.prepare(remote.ip(), proto::TCP, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demux cache's key tells apart everything the `SocketAddr` pair it stands for
    /// does: the family (an IPv4 address and an IPv6 one with the same number), which side
    /// each address and port is on, and every bit of both ports.
    #[test]
    fn flow_keys_differ_wherever_the_addresses_do() {
        let v4: IpAddr = Ipv4Addr::new(127, 0, 0, 1).into();
        let v6: IpAddr = Ipv6Addr::from(u128::from(u32::from(Ipv4Addr::new(127, 0, 0, 1)))).into();
        let other: IpAddr = Ipv4Addr::new(127, 0, 0, 2).into();
        let key = FlowKey::new(v4, 80, v4, 40000);
        assert_eq!(key, FlowKey::new(v4, 80, v4, 40000));
        assert_eq!(addr::bits(v4), addr::bits(v6));
        assert_ne!(key, FlowKey::new(v6, 80, v6, 40000), "family");
        assert_ne!(key, FlowKey::new(v4, 40000, v4, 80), "ports swapped");
        assert_ne!(key, FlowKey::new(other, 80, v4, 40000), "local address");
        assert_ne!(key, FlowKey::new(v4, 80, other, 40000), "remote address");
        for bit in 0..16 {
            let flip = 1u16 << bit;
            assert_ne!(
                key,
                FlowKey::new(v4, 80 ^ flip, v4, 40000),
                "local port bit {bit}"
            );
            assert_ne!(
                key,
                FlowKey::new(v4, 80, v4, 40000 ^ flip),
                "remote port bit {bit}"
            );
        }
        // Both ports choose the way.
        let way = |k: FlowKey| k.way() % DEMUX_WAYS;
        assert_ne!(way(key), way(FlowKey::new(v4, 81, v4, 40000)));
        assert_ne!(way(key), way(FlowKey::new(v4, 80, v4, 40001)));
    }
}
