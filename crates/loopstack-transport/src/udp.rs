//! UDP (RFC 768): datagram sockets, demultiplexing by port, and the ICMP errors that concern
//! them.
//!
//! ```text
//!   send_to ── copy once into a pooled buffer, prepend the 8-byte header, checksum ──▶ Internet
//!   Internet ── Delivery::Transport ──▶ receive: check length and checksum, find the socket,
//!                                        queue the same buffer (header stripped, no copy)
//!   Internet ── Delivery::IcmpError ──▶ icmp_error: find the connected socket, set its error
//! ```
//!
//! Sockets live in a slab: a `Vec` of slots, each with a generation counter, so a
//! [`UdpHandle`] is two integers and a stale handle (its socket closed, the slot reused) is
//! caught as [`Error::BadHandle`] rather than silently naming someone else's socket.
//!
//! Demultiplexing uses one ordered map from `(port, local address)` to the socket. The bind
//! rules below make that key unique, so finding the socket for a datagram is at most two
//! O(log n) lookups, and nothing depends on hash iteration order: the same inputs give the
//! same results, run after run.
//!
//! ## Binding rules (Linux without `SO_REUSEADDR` / `SO_REUSEPORT`)
//!
//! Two sockets of the same family conflict when their ports are equal and their addresses
//! are equal or either is unspecified (`0.0.0.0`, `::`). IPv4 and IPv6 are separate
//! namespaces: a socket bound to `[::]` behaves as if `IPV6_V6ONLY` were set, and receives
//! no IPv4 datagrams (there are no IPv4-mapped addresses here), so `0.0.0.0:53` and `[::]:53`
//! can be bound side by side.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::ops::RangeInclusive;

use loopstack_buf::{PacketBuf, PacketPool, PoolCache, PoolError};
use loopstack_internet::addr;
use loopstack_internet::icmp::{IcmpError, QuotedPacket};
use loopstack_internet::ingress::proto;
use loopstack_internet::{Internet, IpMeta, Links, Prepared, SendOptions};
use loopstack_link::{Instant, Rng};

use crate::checksum;
use crate::demux_cache::DemuxCache;
use crate::error::Error;
use crate::ports::PortRange;

/// Length of the UDP header: source port, destination port, length, checksum (RFC 768).
pub const HEADER_LEN: usize = 8;

/// Largest UDP payload over IPv4: the 16-bit total length (65535) minus a 20-byte IPv4
/// header and the 8-byte UDP header. Linux reports `EMSGSIZE` above it.
pub const MAX_PAYLOAD_V4: usize = 65535 - 20 - HEADER_LEN;

/// Largest UDP payload over IPv6: the 16-bit payload length (65535) minus the UDP header.
/// Jumbograms (RFC 2675) are not supported.
pub const MAX_PAYLOAD_V6: usize = 65535 - HEADER_LEN;

/// Settings for [`Udp`], with Linux's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpConfig {
    /// Ports handed out when a socket binds port 0 (`net.ipv4.ip_local_port_range`, here
    /// RFC 6335's dynamic range 49152-65535 by default).
    pub ephemeral_ports: PortRange,
    /// Payload bytes a socket may hold unread before new datagrams are dropped: 212,992,
    /// Linux's `net.core.rmem_default`. An empty queue always accepts one datagram, however
    /// large, so a datagram bigger than the limit can still be received (as on Linux).
    pub recv_queue_bytes: usize,
    /// Datagrams a socket may hold unread: 1024. Bounds the pool buffers one socket can
    /// pin with zero-length or tiny datagrams, which the byte limit alone would not.
    pub recv_queue_datagrams: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            ephemeral_ports: PortRange::default(),
            recv_queue_bytes: 212_992,
            recv_queue_datagrams: 1024,
        }
    }
}

/// Names one UDP socket of a [`Udp`]. Copyable and cheap; once the socket is closed the
/// handle is stale and every call with it fails with [`Error::BadHandle`], even after its
/// slot is reused by a new socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UdpHandle {
    index: u32,
    generation: u32,
}

impl fmt::Display for UdpHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "udp#{}.{}", self.index, self.generation)
    }
}

// ------------------------------------------------------------------------------ counters

/// One family's UDP counters, named as in Linux's `/proc/net/snmp` (`Udp:`) and
/// `/proc/net/snmp6` (`Udp6...`), which follow the UDP-MIB (RFC 4113).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UdpCounters {
    /// Datagrams delivered to a socket's receive queue.
    pub in_datagrams: u64,
    /// Datagrams for a port no socket is bound to (answered with ICMP Port Unreachable).
    pub no_ports: u64,
    /// Datagrams dropped for any other reason: malformed, bad checksum, full receive queue.
    pub in_errors: u64,
    /// Datagrams sent.
    pub out_datagrams: u64,
    /// Datagrams dropped because the receive queue was full (also counted in `in_errors`).
    pub rcvbuf_errors: u64,
    /// Datagrams not sent for lack of a buffer or device queue space.
    pub sndbuf_errors: u64,
    /// Datagrams dropped for a bad checksum (also counted in `in_errors`).
    pub in_csum_errors: u64,
}

impl UdpCounters {
    /// Every counter as (MIB name, value), in Linux's order, without a family prefix.
    pub fn entries(&self) -> [(&'static str, u64); 7] {
        [
            ("InDatagrams", self.in_datagrams),
            ("NoPorts", self.no_ports),
            ("InErrors", self.in_errors),
            ("OutDatagrams", self.out_datagrams),
            ("RcvbufErrors", self.rcvbuf_errors),
            ("SndbufErrors", self.sndbuf_errors),
            ("InCsumErrors", self.in_csum_errors),
        ]
    }

    /// The value of the counter with MIB name `mib` (e.g. `NoPorts`, without the `Udp6`
    /// prefix).
    pub fn get(&self, mib: &str) -> Option<u64> {
        self.entries()
            .iter()
            .find(|(m, _)| *m == mib)
            .map(|(_, v)| *v)
    }
}

/// UDP's counters, one set per family (Linux keeps `Udp` and `Udp6` apart too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct UdpStats {
    /// UDP over IPv4 (`Udp:` in `/proc/net/snmp`).
    pub udp: UdpCounters,
    /// UDP over IPv6 (`Udp6*` in `/proc/net/snmp6`).
    pub udp6: UdpCounters,
}

impl UdpStats {
    /// The IPv4 group in `/proc/net/snmp` layout (a line of names and a line of values, both
    /// prefixed `Udp:`), then the IPv6 group in `/proc/net/snmp6` layout (one `Udp6Name
    /// value` line per counter, the name padded to 32 columns), as
    /// `loopstack_internet::stats` renders the IP and ICMP groups.
    pub fn render_snmp(&self) -> String {
        let entries = self.udp.entries();
        let mut out = String::from("Udp:");
        for (name, _) in entries {
            out.push(' ');
            out.push_str(name);
        }
        out.push_str("\nUdp:");
        for (_, value) in entries {
            out.push_str(&format!(" {value}"));
        }
        out.push('\n');
        for (name, value) in self.udp6.entries() {
            let name = format!("Udp6{name}");
            out.push_str(&format!("{name:<32}{value}\n"));
        }
        out
    }

    fn family(&mut self, v6: bool) -> &mut UdpCounters {
        if v6 {
            &mut self.udp6
        } else {
            &mut self.udp
        }
    }
}

impl fmt::Display for UdpStats {
    /// The same text as [`render_snmp`](Self::render_snmp).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render_snmp())
    }
}

// ------------------------------------------------------------------------------ sockets

/// One received datagram waiting to be read: the pooled buffer it arrived in, with the IP
/// and UDP headers stripped, so receiving copies nothing.
///
/// The sender is noted in the buffer's headroom, over the stripped headers
/// (`PacketBuf::note_mut`): a family byte, the port, the address. The queue's entries are
/// then one pointer wide and go in and out in a register. Kept beside the buffer, the
/// sender's `SocketAddr` (32 bytes, built from its parts just before) was copied into the
/// queue whole, reading back 16 bytes at a time what had just been written in pieces: a
/// store-forwarding stall that perf put at 4% to 5% of a datagram's time
/// (docs/benchmarks.md, item 23).
#[derive(Debug)]
struct Datagram(PacketBuf);

/// Bytes of a queued datagram's sender note: family (4 or 6), port, address (16 bytes,
/// IPv4's in the first 4).
const SENDER_NOTE: usize = 19;

impl Datagram {
    /// `payload` with its sender noted in front of it; `payload` back if its headroom is
    /// too short for the note.
    // Always inlined: out of line, the note's writes cost a datagram 15 instructions more
    // (docs/benchmarks.md, item 34).
    #[inline(always)]
    fn new(mut payload: PacketBuf, ip: IpAddr, port: u16) -> Result<Self, PacketBuf> {
        let Some(note) = payload.note_mut::<SENDER_NOTE>() else {
            return Err(payload);
        };
        note[1..3].copy_from_slice(&port.to_be_bytes());
        match ip {
            IpAddr::V4(a) => {
                note[0] = 4;
                note[3..7].copy_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                note[0] = 6;
                note[3..19].copy_from_slice(&a.octets());
            }
        }
        Ok(Self(payload))
    }

    /// The sender, from the note.
    #[inline]
    fn from(&self) -> SocketAddr {
        // The note is there: `new` wrote it, and nothing moves a queued packet's front.
        let Some(note) = self.0.note::<SENDER_NOTE>() else {
            return SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        };
        let port = u16::from_be_bytes([note[1], note[2]]);
        let ip = if note[0] == 6 {
            let mut a = [0; 16];
            a.copy_from_slice(&note[3..19]);
            IpAddr::from(a)
        } else {
            IpAddr::from([note[3], note[4], note[5], note[6]])
        };
        SocketAddr::new(ip, port)
    }
}

#[derive(Debug)]
struct Socket {
    /// Always has a port; its address is unspecified until `connect` picks a source.
    local: SocketAddr,
    peer: Option<SocketAddr>,
    queue: VecDeque<Datagram>,
    /// Payload bytes in `queue`.
    queued_bytes: usize,
    /// An asynchronous error (from ICMP) for the next call to report: Linux's `sk_err`.
    error: Option<Error>,
    /// The path to the last destination sent to, kept for the next datagram there (a
    /// connected socket's peer, or the client a server answers): Linux keeps a connected
    /// UDP socket's route in `sk_dst_cache` for the same reason. Empty until the first
    /// send, and again when the local address changes.
    path: Option<Prepared>,
}

#[derive(Debug)]
struct Slot {
    generation: u32,
    socket: Option<Socket>,
}

/// The demultiplexing key: destination port, then family, then local address, the address
/// as an integer (an IPv4 address in the low 32 bits). The family is part of the key, so
/// IPv4 and IPv6 sockets never share one, and every key of one family on one port lies in
/// one range ([`family_keys`]). Integers, not `(u16, IpAddr)`: every comparison in the
/// map's search went through `IpAddr`'s derived order (the variant, then the octets),
/// about 50 instructions per datagram received (docs/benchmarks.md, item 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    port: u16,
    v6: bool,
    addr: u128,
}

impl Key {
    fn new(port: u16, addr: IpAddr) -> Key {
        Key {
            port,
            v6: addr.is_ipv6(),
            addr: addr::bits(addr),
        }
    }
}

/// The UDP layer of one host: every UDP socket, their receive queues, and the counters.
#[derive(Debug)]
pub struct Udp {
    /// Send buffers come from here, and the buffers of datagrams read go back here: in
    /// steady state a datagram's buffer moves from the reader to the next send without
    /// touching the shared pool's lock (`PoolCache`).
    pool: PoolCache,
    config: UdpConfig,
    slots: Vec<Slot>,
    /// Indices of empty slots, reused last-freed first.
    free: Vec<u32>,
    /// `(port, local address)` -> slot index, for every open socket. Unique by the binding
    /// rules (see the module docs).
    demux: BTreeMap<Key, u32>,
    /// The receive path's cache in front of `demux`, by destination port: the key of a
    /// datagram received lately and the slot it went to (after the exact-then-unspecified
    /// search). A hit costs about 20 instructions where the search cost 60
    /// (docs/benchmarks.md, item 37). Emptied whenever `demux` changes.
    recent: DemuxCache<Key, RECENT_WAYS>,
    stats: UdpStats,
}

/// Ways of [`Udp::recent`].
const RECENT_WAYS: usize = 16;

/// The socket `h` names in `slots`: [`Udp::socket_mut`] borrowing only the slots, so the
/// pool and the counters stay usable beside it.
fn socket_in(slots: &mut [Slot], h: UdpHandle) -> Result<&mut Socket, Error> {
    slots
        .get_mut(h.index as usize)
        .filter(|slot| slot.generation == h.generation)
        .and_then(|slot| slot.socket.as_mut())
        .ok_or(Error::BadHandle)
}

fn unspecified(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// Every key of `port` in one family: IPv4 addresses sort before IPv6 ones, and within a
/// family from all-zeros to all-ones.
fn family_keys(port: u16, v6: bool) -> RangeInclusive<Key> {
    let last = if v6 { u128::MAX } else { u128::from(u32::MAX) };
    Key { port, v6, addr: 0 }..=Key {
        port,
        v6,
        addr: last,
    }
}

/// The same address and port, ignoring IPv6 flow label and scope: what identifies a peer.
fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip() == b.ip() && a.port() == b.port()
}

/// The socket a datagram from `src` to `dst:port` belongs to (RFC 768 names only the port;
/// the ranking is Linux's): the socket bound to exactly `dst`, else the one bound to the
/// unspecified address of the family. A connected socket takes only datagrams from its
/// peer (and is the most specific match: at most one socket holds a key, so a connected one
/// is the exact-address match). The socket itself, not its index: the receive path then
/// queues on it without finding its slot a second time.
// Always inlined into `receive`, its one per-datagram caller (docs/benchmarks.md, item 34).
#[inline(always)]
fn lookup<'a>(
    demux: &BTreeMap<Key, u32>,
    recent: &mut DemuxCache<Key, RECENT_WAYS>,
    slots: &'a mut [Slot],
    dst: IpAddr,
    port: u16,
    src: SocketAddr,
) -> Option<&'a mut Socket> {
    let key = Key::new(port, dst);
    let index = match recent.get(usize::from(port), &key) {
        Some(index) => index,
        None => {
            let index = demux
                .get(&key)
                .or_else(|| demux.get(&Key::new(port, unspecified(dst.is_ipv6()))))
                .copied()?;
            recent.put(usize::from(port), key, index);
            index
        }
    };
    let socket = slots.get_mut(index as usize)?.socket.as_mut()?;
    match socket.peer {
        Some(peer) if !same_endpoint(peer, src) => None,
        _ => Some(socket),
    }
}

fn max_payload(v6: bool) -> usize {
    if v6 {
        MAX_PAYLOAD_V6
    } else {
        MAX_PAYLOAD_V4
    }
}

impl Udp {
    /// A UDP layer with no sockets, taking send buffers from `pool`.
    pub fn new(pool: PacketPool, config: UdpConfig) -> Self {
        Udp {
            pool: PoolCache::new(pool),
            config,
            slots: Vec::new(),
            free: Vec::new(),
            demux: BTreeMap::new(),
            recent: DemuxCache::new(),
            stats: UdpStats::default(),
        }
    }

    /// The counters.
    pub fn stats(&self) -> &UdpStats {
        &self.stats
    }

    /// Every open socket as (handle, local address, peer, queued payload bytes), in handle
    /// order: what `ss -u -a` lists.
    pub fn sockets(
        &self,
    ) -> impl Iterator<Item = (UdpHandle, SocketAddr, Option<SocketAddr>, usize)> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, slot)| {
            let s = slot.socket.as_ref()?;
            let handle = UdpHandle {
                index: i as u32,
                generation: slot.generation,
            };
            Some((handle, s.local, s.peer, s.queued_bytes))
        })
    }

    fn socket(&self, h: UdpHandle) -> Result<&Socket, Error> {
        self.slots
            .get(h.index as usize)
            .filter(|slot| slot.generation == h.generation)
            .and_then(|slot| slot.socket.as_ref())
            .ok_or(Error::BadHandle)
    }

    fn socket_mut(&mut self, h: UdpHandle) -> Result<&mut Socket, Error> {
        socket_in(&mut self.slots, h)
    }

    /// Whether binding `addr:port` would clash with an open socket: same family and port,
    /// and addresses equal or either unspecified. Two lookups at most for a specific
    /// address; one range probe for an unspecified one.
    fn conflicts(&self, addr: IpAddr, port: u16) -> bool {
        if addr.is_unspecified() {
            self.demux
                .range(family_keys(port, addr.is_ipv6()))
                .next()
                .is_some()
        } else {
            self.demux.contains_key(&Key::new(port, addr))
                || self
                    .demux
                    .contains_key(&Key::new(port, unspecified(addr.is_ipv6())))
        }
    }

    // -------------------------------------------------------------- bind, connect, close

    /// Opens a socket bound to `local`. Port 0 picks a free ephemeral port from
    /// [`UdpConfig::ephemeral_ports`], uniformly at random with `rng` (RFC 6056 3.3.1), so the
    /// same seed gives the same port.
    ///
    /// The address must be unspecified or one of this host's (every address in 127.0.0.0/8
    /// is), else [`Error::AddrNotAvailable`]. A clash with an open socket of the same family
    /// is [`Error::AddrInUse`]; no free ephemeral port is [`Error::AddrNotAvailable`].
    pub fn bind(
        &mut self,
        ip: &Internet,
        local: SocketAddr,
        rng: &mut Rng,
    ) -> Result<UdpHandle, Error> {
        let addr = local.ip();
        // Address first: Linux reports EADDRNOTAVAIL before looking at the port.
        if !addr.is_unspecified() && !ip.interfaces().is_local(addr) {
            return Err(Error::AddrNotAvailable);
        }
        let port = match local.port() {
            0 => self
                .config
                .ephemeral_ports
                .pick(rng, |p| self.conflicts(addr, p))
                .ok_or(Error::AddrNotAvailable)?,
            p if self.conflicts(addr, p) => return Err(Error::AddrInUse),
            p => p,
        };
        let socket = Socket {
            local: SocketAddr::new(addr, port),
            peer: None,
            queue: VecDeque::new(),
            queued_bytes: 0,
            error: None,
            path: None,
        };
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.slots.len()).map_err(|_| Error::AddrNotAvailable)?;
                self.slots.push(Slot {
                    generation: 0,
                    socket: None,
                });
                i
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.socket = Some(socket);
        self.demux.insert(Key::new(port, addr), index);
        self.recent.clear();
        Ok(UdpHandle {
            index,
            generation: slot.generation,
        })
    }

    /// Sets the socket's peer: [`send`](Self::send) goes there, and only datagrams from
    /// there are received (the BSD `connect` on a datagram socket; RFC 768 has no notion
    /// of a connection). May be called again to change the peer.
    ///
    /// A socket bound to the unspecified address takes the route's source address as its
    /// local address, as Linux does, so [`local_addr`](Self::local_addr) shows the address
    /// datagrams will come from. Port 0 or an address of the other family is
    /// [`Error::InvalidInput`]; no route is [`Error::NetworkUnreachable`] or
    /// [`Error::HostUnreachable`].
    pub fn connect(
        &mut self,
        h: UdpHandle,
        ip: &Internet,
        remote: SocketAddr,
    ) -> Result<(), Error> {
        let local = self.socket(h)?.local;
        if remote.port() == 0 {
            return Err(Error::InvalidInput("UDP peer port 0"));
        }
        if remote.is_ipv6() != local.is_ipv6() {
            return Err(Error::InvalidInput(
                "peer address family differs from the socket's",
            ));
        }
        let decision = ip.route(remote.ip()).map_err(Error::from_route)?;
        if local.ip().is_unspecified() {
            // Re-key the socket under its new address. Nothing else can hold that key: a
            // socket bound to the unspecified address excludes every other socket of its
            // family on its port. Checked anyway, rather than assumed.
            let new = SocketAddr::new(decision.src, local.port());
            let key = Key::new(new.port(), new.ip());
            if new.is_ipv6() != local.is_ipv6() || self.demux.contains_key(&key) {
                return Err(Error::AddrInUse);
            }
            self.demux.remove(&Key::new(local.port(), local.ip()));
            self.demux.insert(key, h.index);
            self.recent.clear();
            let socket = self.socket_mut(h)?;
            socket.local = new;
            // The kept path's source was the unspecified address's choice.
            socket.path = None;
        }
        self.socket_mut(h)?.peer = Some(SocketAddr::new(remote.ip(), remote.port()));
        Ok(())
    }

    /// Closes the socket: frees its address and port for the next `bind`, and drops every
    /// datagram still queued (their buffers go back to the pool). The handle goes stale.
    pub fn close(&mut self, h: UdpHandle) -> Result<(), Error> {
        let local = self.socket(h)?.local;
        self.demux.remove(&Key::new(local.port(), local.ip()));
        self.recent.clear();
        let slot = &mut self.slots[h.index as usize];
        slot.socket = None;
        // After 2^32 reuses of one slot a stale handle would match again: far beyond any
        // test or simulation, and the price of a two-integer handle.
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(h.index);
        Ok(())
    }

    /// The address and port the socket is bound to.
    pub fn local_addr(&self, h: UdpHandle) -> Result<SocketAddr, Error> {
        Ok(self.socket(h)?.local)
    }

    /// The peer set by [`connect`](Self::connect), or [`Error::NotConnected`].
    pub fn peer_addr(&self, h: UdpHandle) -> Result<SocketAddr, Error> {
        self.socket(h)?.peer.ok_or(Error::NotConnected)
    }

    /// Takes the socket's pending error, if any (`SO_ERROR`): it is reported once.
    pub fn take_error(&mut self, h: UdpHandle) -> Result<Option<Error>, Error> {
        Ok(self.socket_mut(h)?.error.take())
    }

    // -------------------------------------------------------------------------- sending

    /// Sends `data` as one datagram to the socket's peer. [`Error::NotConnected`] if it has
    /// none (Linux's `EDESTADDRREQ`).
    pub fn send<L: Links>(
        &mut self,
        now: Instant,
        h: UdpHandle,
        data: &[u8],
        ip: &mut Internet,
        links: &mut L,
    ) -> Result<usize, Error> {
        let peer = self.peer_addr(h)?;
        self.send_to(now, h, data, peer, ip, links)
    }

    /// Sends `data` as one datagram to `dst`, and returns `data.len()`. A connected socket
    /// may send elsewhere too (Linux allows it); replies from elsewhere are still not
    /// received.
    ///
    /// The payload is copied once, into a pooled buffer; the header goes into its headroom.
    /// Fails with [`Error::InvalidInput`] for port 0 or the other family,
    /// [`Error::MessageTooLong`] above [`MAX_PAYLOAD_V4`] / [`MAX_PAYLOAD_V6`], a routing
    /// error, a pending error from ICMP (once), or [`Error::WouldBlock`] when no buffer or
    /// device queue space is free.
    pub fn send_to<L: Links>(
        &mut self,
        now: Instant,
        h: UdpHandle,
        data: &[u8],
        dst: SocketAddr,
        ip: &mut Internet,
        links: &mut L,
    ) -> Result<usize, Error> {
        let local = self.socket(h)?.local;
        let v6 = local.is_ipv6();
        if dst.port() == 0 {
            // RFC 768 lets the *source* port be 0, never the destination.
            return Err(Error::InvalidInput("UDP destination port 0"));
        }
        if dst.is_ipv6() != v6 {
            return Err(Error::InvalidInput(
                "destination address family differs from the socket's",
            ));
        }
        let max = max_payload(v6);
        if data.len() > max {
            return Err(Error::MessageTooLong {
                len: data.len(),
                max,
            });
        }
        // Route before building: the checksum covers the source address, which the route
        // chooses when the socket is bound to the unspecified address (RFC 1122 4.1.3.5: the
        // application may leave the source unspecified and the stack picks one). The path
        // kept from the last send serves while it is to the same address and still current.
        let socket = socket_in(&mut self.slots, h)?;
        let path = match &socket.path {
            Some(p) if p.dst() == dst.ip() && ip.is_current(p) => p,
            _ => {
                let src = (!local.ip().is_unspecified()).then(|| local.ip());
                let options = SendOptions {
                    src,
                    ttl: None,
                    dont_fragment: false,
                    checksum_at: Some(6),
                };
                let fresh = ip
                    .prepare(dst.ip(), proto::UDP, options)
                    .map_err(Error::from_send)?;
                socket.path.insert(fresh)
            }
        };
        // An error an ICMP message left for us fails this send, once, as Linux's
        // sock_alloc_send_skb does with sk_err.
        if let Some(e) = socket.error.take() {
            return Err(e);
        }
        let mut packet = match self.pool.alloc_from_slice(data) {
            Ok(p) => p,
            Err(e @ PoolError::TooLarge { .. }) => return Err(e.into()),
            Err(e) => {
                self.stats.family(v6).sndbuf_errors += 1;
                return Err(e.into());
            }
        };
        let message_len = HEADER_LEN + data.len();
        // The checksum is optional over IPv4 (RFC 768) but RFC 1122 4.1.3.4 says it MUST be
        // on by default, and IPv6 requires it (RFC 8200 8.1). Only the pseudo-header's sum is
        // written here: the IP layer finishes it (`checksum_at`) unless the device offloads
        // it, so every packet that a capture sees or a TUN carries verifies, and `lo` skips
        // summing the payload, as Linux's loopback does.
        let partial = path.partial(message_len);
        let Ok(header) = packet.prepend_array::<HEADER_LEN>() else {
            // The pool left no headroom for headers: a configuration problem, reported like
            // every other shortage of buffer space.
            self.stats.family(v6).sndbuf_errors += 1;
            return Err(Error::WouldBlock);
        };
        header[0..2].copy_from_slice(&local.port().to_be_bytes());
        header[2..4].copy_from_slice(&dst.port().to_be_bytes());
        // `message_len` <= 65535 by the size check above.
        header[4..6].copy_from_slice(&(message_len as u16).to_be_bytes());
        header[6..8].copy_from_slice(&partial);
        match ip.send_prepared(now, packet, path, links) {
            Ok(()) => {
                self.stats.family(v6).out_datagrams += 1;
                Ok(data.len())
            }
            Err(e) => {
                let e = Error::from_send(e);
                if e == Error::WouldBlock {
                    // Linux counts ENOBUFS from the layers below as SndbufErrors.
                    self.stats.family(v6).sndbuf_errors += 1;
                }
                Err(e)
            }
        }
    }

    // ------------------------------------------------------------------------ receiving

    /// Whether a call to [`recv_from`](Self::recv_from) would return something now: a
    /// datagram or a pending error. False for a bad handle.
    pub fn can_recv(&self, h: UdpHandle) -> bool {
        self.socket(h)
            .is_ok_and(|s| s.error.is_some() || !s.queue.is_empty())
    }

    /// Takes the oldest datagram: copies up to `buf.len()` bytes of it into `buf` and
    /// returns that count and the sender. The rest of a longer datagram is discarded, as
    /// std's `UdpSocket::recv_from` does. A zero-length datagram returns `Ok((0, from))`.
    ///
    /// A pending error (ICMP Port Unreachable on a connected socket, say) comes first, once.
    /// Nothing queued is [`Error::WouldBlock`].
    // Always inlined: returned through memory, the sender (a `SocketAddr`, 32 bytes) was
    // written in pieces here and read back 16 bytes at a time by the caller, a
    // store-forwarding stall at about 5% of a datagram's time; `#[inline]` alone left the
    // call out of line (docs/benchmarks.md, item 23).
    #[inline(always)]
    pub fn recv_from(
        &mut self,
        h: UdpHandle,
        buf: &mut [u8],
    ) -> Result<(usize, SocketAddr), Error> {
        let s = self.socket_mut(h)?;
        if let Some(e) = s.error.take() {
            return Err(e);
        }
        let d = s.queue.pop_front().ok_or(Error::WouldBlock)?;
        s.queued_bytes -= d.0.len();
        let n = d.0.len().min(buf.len());
        buf[..n].copy_from_slice(&d.0[..n]);
        let from = d.from();
        // The buffer goes to this layer's stock, for the next send.
        self.pool.recycle(d.0);
        Ok((n, from))
    }

    /// [`recv_from`](Self::recv_from) without the sender. Works on unconnected sockets too,
    /// as `recv(2)` does.
    pub fn recv(&mut self, h: UdpHandle, buf: &mut [u8]) -> Result<usize, Error> {
        self.recv_from(h, buf).map(|(n, _)| n)
    }

    /// Like [`recv_from`](Self::recv_from) but leaves the datagram queued (`MSG_PEEK`). A
    /// pending error is reported but, unlike on Linux, not cleared: peeking never changes
    /// the socket.
    pub fn peek_from(&self, h: UdpHandle, buf: &mut [u8]) -> Result<(usize, SocketAddr), Error> {
        let s = self.socket(h)?;
        if let Some(e) = &s.error {
            return Err(e.clone());
        }
        let d = s.queue.front().ok_or(Error::WouldBlock)?;
        let n = d.0.len().min(buf.len());
        buf[..n].copy_from_slice(&d.0[..n]);
        Ok((n, d.from()))
    }

    /// Takes a UDP datagram the internet layer delivered (`packet` starts at the UDP
    /// header): checks it, finds its socket, and queues it there without copying. Anything
    /// wrong is dropped and counted; a datagram for a port nobody has bound is answered with
    /// ICMP Port Unreachable (RFC 1122 4.1.3.1). Never panics, whatever the bytes.
    // Always inlined into the stack's receive loop, its one caller per datagram
    // (docs/benchmarks.md, item 34).
    #[inline(always)]
    pub fn receive<L: Links>(
        &mut self,
        now: Instant,
        meta: IpMeta,
        mut packet: PacketBuf,
        ip: &mut Internet,
        links: &mut L,
    ) {
        let v6 = meta.dst.is_ipv6();
        let Some(&[sp0, sp1, dp0, dp1, l0, l1, c0, c1]) = packet.get(..HEADER_LEN) else {
            self.stats.family(v6).in_errors += 1;
            return;
        };
        let sport = u16::from_be_bytes([sp0, sp1]);
        let dport = u16::from_be_bytes([dp0, dp1]);
        // RFC 768: the length covers header and data. Shorter than the header, or longer
        // than what arrived, and the datagram cannot be trusted. Longer than the length field
        // says is fine: the extra bytes (padding) are ignored.
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        if len < HEADER_LEN || len > packet.len() {
            self.stats.family(v6).in_errors += 1;
            return;
        }
        let message = &packet[..len];
        if [c0, c1] == [0, 0] {
            // Zero means "no checksum was computed". Allowed over IPv4 (RFC 768); forbidden
            // over IPv6, where the checksum is the only integrity check the addresses get
            // (RFC 8200 8.1: discard, and count as Linux does: InCsumErrors and InErrors).
            // Checked even when the device offloads checksums: offload cannot vouch for a
            // checksum that was never there.
            if v6 {
                let c = self.stats.family(v6);
                c.in_csum_errors += 1;
                c.in_errors += 1;
                return;
            }
        } else if meta.verify_checksum && !checksum::verify(meta.src, meta.dst, proto::UDP, message)
        {
            // RFC 1122 4.1.3.4: a datagram with a bad checksum MUST be discarded silently.
            let c = self.stats.family(v6);
            c.in_csum_errors += 1;
            c.in_errors += 1;
            return;
        }
        let from = SocketAddr::new(meta.src, sport);
        let Some(socket) = lookup(
            &self.demux,
            &mut self.recent,
            &mut self.slots,
            meta.dst,
            dport,
            from,
        ) else {
            self.stats.family(v6).no_ports += 1;
            // RFC 1122 4.1.3.1: SHOULD answer with Port Unreachable. The internet layer
            // quotes the whole IP packet, so put its header back; it applies the rules
            // (never for broadcast or multicast) and the rate limit.
            if packet.unstrip_front(meta.header_len).is_ok() {
                ip.icmp_error(now, IcmpError::PortUnreachable, packet.as_slice(), links);
            }
            return;
        };
        let payload_len = len - HEADER_LEN;
        let (max_bytes, max_count) = (
            self.config.recv_queue_bytes,
            self.config.recv_queue_datagrams,
        );
        // A full queue drops the new datagram, never grows past its limits: the memory a
        // slow reader can pin is bounded. An empty queue takes any one datagram.
        let over_bytes = !socket.queue.is_empty() && socket.queued_bytes + payload_len > max_bytes;
        if over_bytes || socket.queue.len() >= max_count {
            let c = self.stats.family(v6);
            c.rcvbuf_errors += 1;
            c.in_errors += 1;
            return;
        }
        // Trim any padding after the length field's end, then the header: what is left
        // is the payload, in the buffer it arrived in.
        packet.truncate(len);
        if packet.strip_front(HEADER_LEN).is_err() {
            self.stats.family(v6).in_errors += 1;
            return;
        }
        let datagram = match Datagram::new(packet, meta.src, sport) {
            Ok(d) => d,
            // Headroom too short for the sender's note: only a packet handed in without its
            // IP header, from a pool with almost none. It moves to a buffer with the pool's
            // headroom; if even that is too short, it is dropped and counted.
            Err(packet) => match self
                .pool
                .alloc_from_slice(&packet)
                .ok()
                .and_then(|p| Datagram::new(p, meta.src, sport).ok())
            {
                Some(d) => d,
                None => {
                    self.stats.family(v6).in_errors += 1;
                    return;
                }
            },
        };
        socket.queued_bytes += payload_len;
        socket.queue.push_back(datagram);
        self.stats.family(v6).in_datagrams += 1;
    }

    /// Takes an ICMP error about a packet this host sent, and reports it to the socket that
    /// sent it, if that socket is connected to the packet's destination: Linux reports
    /// ICMP errors only to connected UDP sockets unless `IP_RECVERR` is set (RFC 1122
    /// 4.1.3.3 requires passing them up; an unconnected socket has no way to tell which of
    /// its peers the error is about).
    ///
    /// Port Unreachable becomes [`Error::ConnectionRefused`], Host Unreachable
    /// [`Error::HostUnreachable`], Net Unreachable [`Error::NetworkUnreachable`]; the next
    /// send or receive on the socket returns it, once. Other errors are ignored (Linux keeps
    /// Packet Too Big as path MTU, which UDP here does not use).
    pub fn icmp_error(&mut self, error: IcmpError, quoted: &QuotedPacket) {
        if quoted.protocol != proto::UDP {
            return;
        }
        let Some((sport, dport)) = quoted.ports() else {
            return;
        };
        let pending = match error {
            IcmpError::PortUnreachable => Error::ConnectionRefused,
            IcmpError::HostUnreachable => Error::HostUnreachable,
            IcmpError::NetUnreachable => Error::NetworkUnreachable,
            _ => return,
        };
        let Some(&index) = self.demux.get(&Key::new(sport, quoted.src)) else {
            return;
        };
        let Some(socket) = self
            .slots
            .get_mut(index as usize)
            .and_then(|s| s.socket.as_mut())
        else {
            return;
        };
        if socket
            .peer
            .is_some_and(|p| same_endpoint(p, SocketAddr::new(quoted.dst, dport)))
        {
            socket.error = Some(pending);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loopstack_buf::PoolConfig;
    use loopstack_internet::InternetConfig;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn setup() -> (Udp, Internet, Rng) {
        let pool = PacketPool::new(PoolConfig::single(2048, 16)).unwrap();
        (
            Udp::new(pool.clone(), UdpConfig::default()),
            Internet::new(pool, InternetConfig::default()),
            Rng::new(1),
        )
    }

    #[test]
    fn family_keys_cover_exactly_one_family() {
        let key = |port: u16, a: &str| Key::new(port, a.parse().unwrap());
        let v4 = family_keys(53, false);
        let v6 = family_keys(53, true);
        assert!(v4.contains(&key(53, "127.0.0.1")));
        assert!(v4.contains(&key(53, "0.0.0.0")));
        assert!(v4.contains(&key(53, "255.255.255.255")));
        assert!(!v4.contains(&key(53, "::")));
        assert!(
            !v4.contains(&key(53, "::ffff:127.0.0.1")),
            "a mapped address is IPv6"
        );
        assert!(!v4.contains(&key(54, "127.0.0.1")));
        assert!(v6.contains(&key(53, "::")));
        assert!(v6.contains(&key(53, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(!v6.contains(&key(53, "0.0.0.0")));
        assert!(!v6.contains(&key(52, "::1")));
    }

    #[test]
    fn conflict_rules() {
        let (mut udp, ip, mut rng) = setup();
        let a = udp.bind(&ip, sa("127.0.0.1:5000"), &mut rng).unwrap();
        assert!(udp.conflicts("127.0.0.1".parse().unwrap(), 5000));
        assert!(udp.conflicts("0.0.0.0".parse().unwrap(), 5000));
        assert!(!udp.conflicts("127.0.0.2".parse().unwrap(), 5000));
        assert!(!udp.conflicts("::".parse().unwrap(), 5000));
        assert!(!udp.conflicts("127.0.0.1".parse().unwrap(), 5001));
        udp.close(a).unwrap();
        assert!(!udp.conflicts("0.0.0.0".parse().unwrap(), 5000));
        udp.bind(&ip, sa("[::]:5000"), &mut rng).unwrap();
        assert!(udp.conflicts("::1".parse().unwrap(), 5000));
        assert!(!udp.conflicts("127.0.0.1".parse().unwrap(), 5000));
    }

    #[test]
    fn slots_are_reused_with_a_new_generation() {
        let (mut udp, ip, mut rng) = setup();
        let a = udp.bind(&ip, sa("127.0.0.1:1"), &mut rng).unwrap();
        udp.close(a).unwrap();
        let b = udp.bind(&ip, sa("127.0.0.1:1"), &mut rng).unwrap();
        assert_eq!(a.index, b.index);
        assert_ne!(a, b);
        assert_eq!(udp.local_addr(a), Err(Error::BadHandle));
        assert_eq!(udp.close(a), Err(Error::BadHandle));
        assert_eq!(udp.local_addr(b), Ok(sa("127.0.0.1:1")));
    }

    #[test]
    fn render_snmp_layout() {
        let mut s = UdpStats::default();
        s.udp.in_datagrams = 3;
        s.udp.no_ports = 1;
        s.udp6.out_datagrams = 7;
        let text = s.render_snmp();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors"
        );
        assert_eq!(lines[1], "Udp: 3 1 0 0 0 0 0");
        assert_eq!(lines[2], format!("{:<32}0", "Udp6InDatagrams"));
        assert!(
            text.contains("Udp6OutDatagrams                7\n"),
            "{text}"
        );
        assert_eq!(lines.len(), 2 + 7);
        assert_eq!(s.udp.get("NoPorts"), Some(1));
        assert_eq!(s.udp.get("Nope"), None);
        assert_eq!(s.to_string(), text);
    }
}
