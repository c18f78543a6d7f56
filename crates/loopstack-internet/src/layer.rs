//! The internet layer itself: what happens to a packet between the device and transport.
//!
//! ```text
//!   transport ──send()──▶ route, pick source, prepend IP header, fragment ──▶ Links::transmit
//!   transport ◀──Upper──── check header, martians, local?, reassemble, ICMP ◀── receive_with()
//! ```
//!
//! [`Internet::receive_with`] takes one packet off a device and decides: deliver it up (a
//! call to the [`Upper`] layer; [`Internet::receive`] returns a [`Delivery`] instead),
//! answer it (an echo reply or an ICMP error, sent through [`Links`]), forward it (only if
//! forwarding is on), or drop it and count why. [`Internet::send`] takes a
//! transport message whose header is already in the buffer and sends it down. Nothing here
//! reads a clock or does I/O: time comes in as `now`, and packets go out through the
//! caller's [`Links`].

use std::cell::Cell;
use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use loopstack_buf::{PacketBuf, PacketPool, PoolError};
use loopstack_link::{DeviceCapabilities, Instant, TxError};
use thiserror::Error;

use crate::addr::{self, Cidr, Martian};
use crate::checksum;
use crate::frag::{self, DropReason, FragResult, Reassembler, ReassemblyConfig};
use crate::icmp::{self, IcmpError, IcmpMessage, QuotedPacket, RateLimiter};
use crate::iface::{IfaceError, InterfaceId, InterfaceKind, InterfaceTable};
use crate::ingress::{self, proto, Checked, Header, HeaderError};
use crate::route::{Route, RouteDecision, RouteError, RouteKind, RoutingTable};
use crate::stats::InternetStats;

/// The devices under the internet layer, as it sees them: by interface index.
pub trait Links {
    /// Capabilities of the device behind `iface`, if there is one.
    fn capabilities(&self, iface: InterfaceId) -> Option<DeviceCapabilities>;
    /// Hands a packet to the device behind `iface`.
    fn transmit(
        &mut self,
        now: Instant,
        iface: InterfaceId,
        packet: PacketBuf,
    ) -> Result<(), TxError>;
}

/// The layer above, as [`Internet::receive_with`] hands it what arrives: the way Linux's
/// `ip_local_deliver` calls the protocol's handler (`inet_protos`) rather than returning the
/// packet to a caller that would then choose one.
///
/// The callback is there for speed as much as for shape: a [`Delivery`] returned by value
/// goes through memory (an enum's variants share their bytes, so the compiler cannot keep
/// them in registers), and its addresses (`IpAddr` is 17 bytes, byte-aligned) were read
/// back in wider pieces than they had been written, a store-forwarding stall on every
/// packet (docs/benchmarks.md, item 17). Handed over as the arguments of a call, they are
/// copied once at most, and not at all where the call is inlined.
pub trait Upper {
    /// A TCP or UDP message for a local socket; `packet` starts at the transport header.
    /// `ip` and `links` are there for answers (an ICMP error, a TCP reset).
    fn transport<L: Links>(
        &mut self,
        now: Instant,
        meta: IpMeta,
        packet: PacketBuf,
        ip: &mut Internet,
        links: &mut L,
    );

    /// An ICMP error about a packet this host sent, with the quoted header so transport can
    /// find the socket it concerns (RFC 1122 3.2.2.1: pass it up).
    fn icmp_error<L: Links>(
        &mut self,
        now: Instant,
        meta: IpMeta,
        error: IcmpError,
        quoted: QuotedPacket,
        ip: &mut Internet,
        links: &mut L,
    );
}

/// An [`Upper`] that keeps what it is handed, for [`Internet::receive`].
struct Collect(Option<Delivery>);

impl Upper for Collect {
    fn transport<L: Links>(
        &mut self,
        _: Instant,
        meta: IpMeta,
        packet: PacketBuf,
        _: &mut Internet,
        _: &mut L,
    ) {
        self.0 = Some(Delivery::Transport { meta, packet });
    }

    fn icmp_error<L: Links>(
        &mut self,
        _: Instant,
        meta: IpMeta,
        error: IcmpError,
        quoted: QuotedPacket,
        _: &mut Internet,
        _: &mut L,
    ) {
        self.0 = Some(Delivery::IcmpError {
            meta,
            error,
            quoted,
        });
    }
}

/// Settings, with Linux's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InternetConfig {
    /// Forward packets between interfaces (`net.ipv4.ip_forward`). Default off: a host, not a
    /// router (RFC 1122 3.3.4.2).
    pub forwarding: bool,
    /// Answer echo requests (`net.ipv4.icmp_echo_ignore_all = 0`). Default on.
    pub echo_reply: bool,
    /// TTL and hop limit of packets we originate (`net.ipv4.ip_default_ttl`): 64.
    pub default_ttl: u8,
    /// Rate of ICMP errors we may generate, per second (`net.ipv4.icmp_msgs_per_sec`): 1000.
    pub icmp_errors_per_sec: u32,
    /// Burst of ICMP errors (`net.ipv4.icmp_msgs_burst`): 50.
    pub icmp_errors_burst: u32,
    /// Echo replies kept for [`Internet::take_echo_reply`] before the oldest is dropped.
    pub max_echo_replies: usize,
}

impl Default for InternetConfig {
    fn default() -> Self {
        InternetConfig {
            forwarding: false,
            echo_reply: true,
            default_ttl: 64,
            icmp_errors_per_sec: 1000,
            icmp_errors_burst: 50,
            max_echo_replies: 1024,
        }
    }
}

/// What transport needs to know about a packet delivered to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpMeta {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (one of ours).
    pub dst: IpAddr,
    /// Upper-layer protocol number.
    pub protocol: u8,
    /// TTL or hop limit as received.
    pub ttl: u8,
    /// Interface the packet arrived on.
    pub iface: InterfaceId,
    /// Bytes of network header stripped; `PacketBuf::unstrip_front(header_len)` restores
    /// them, to quote the packet in an ICMP error.
    pub header_len: usize,
    /// Whether transport must verify its checksum (false when the device offloads it).
    pub verify_checksum: bool,
}

/// A packet, or news about one, for the transport layer.
#[derive(Debug)]
pub enum Delivery {
    /// A TCP or UDP message for a local socket; `packet` starts at the transport header.
    Transport {
        /// Addresses and protocol.
        meta: IpMeta,
        /// The message.
        packet: PacketBuf,
    },
    /// An ICMP error about a packet this host sent, with the quoted header so transport can
    /// find the socket it concerns (RFC 1122 3.2.2.1: pass it up).
    IcmpError {
        /// Who sent the error, to whom.
        meta: IpMeta,
        /// What went wrong.
        error: IcmpError,
        /// The start of the packet that caused it.
        quoted: QuotedPacket,
    },
}

/// An echo reply that came back, for `ping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoReply {
    /// Who answered.
    pub from: IpAddr,
    /// Echo identifier.
    pub id: u16,
    /// Echo sequence number.
    pub seq: u16,
    /// TTL (hop limit) of the reply.
    pub ttl: u8,
    /// Bytes of ICMP message (header and data), as ping reports them.
    pub len: usize,
    /// Round-trip time, when the request carried a timestamp (payloads of 8 bytes or more).
    pub rtt: Option<Duration>,
}

/// Where a partial transport checksum sits in a packet about to go out.
#[derive(Debug, Clone, Copy)]
struct Partial {
    /// The transport message's first byte (the IP header's length).
    start: usize,
    /// The checksum field, from `start`.
    field: usize,
    /// The transport protocol (UDP maps a computed zero to all-ones).
    protocol: u8,
}

/// How to send one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendOptions {
    /// Source address; `None` for the one the route chooses (RFC 6724). Must be one of ours.
    pub src: Option<IpAddr>,
    /// TTL or hop limit; `None` for the configured default.
    pub ttl: Option<u8>,
    /// Set the IPv4 Don't Fragment bit: fail with [`SendError::MessageTooLong`] rather than
    /// fragment (TCP does this for path MTU discovery, RFC 1191).
    pub dont_fragment: bool,
    /// The transport checksum is partial: its field, this many bytes into the message,
    /// holds only the pseudo-header's sum ([`checksum::partial`]). The IP layer finishes it
    /// ([`checksum::complete`]) unless the device it sends on offloads transmit checksums
    /// (`lo`, which nothing can damage), as Linux finishes `CHECKSUM_PARTIAL` packets for
    /// devices without `NETIF_F_HW_CSUM`. `None`: the message is complete as it is.
    pub checksum_at: Option<usize>,
}

/// Why a packet could not be sent. The packet is dropped and the failure counted.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// No route ("Network is unreachable"), or an unreachable route ("No route to host").
    #[error(transparent)]
    Route(#[from] RouteError),
    /// The requested source address is not one of ours.
    #[error("cannot assign requested address {0}")]
    AddrNotAvailable(IpAddr),
    /// The packet exceeds the MTU and may not be fragmented.
    #[error("message too long: {len} bytes over an MTU of {mtu}")]
    MessageTooLong {
        /// Packet length.
        len: usize,
        /// Path MTU.
        mtu: usize,
    },
    /// A martian address would leave by this interface (RFC 1122 3.2.1.3).
    #[error("refusing to send: {0}")]
    Martian(Martian),
    /// No buffer for a header or a fragment.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The buffer has no headroom left for the IP header.
    #[error("no headroom for the IP header")]
    NoHeadroom,
    /// The device refused the packet.
    #[error(transparent)]
    Link(#[from] TxError),
    /// The interface does not exist or is down.
    #[error("interface {0} is down or gone")]
    InterfaceDown(InterfaceId),
}

/// A send path worked out once and reused for every packet along it: the route, the
/// source address, the outgoing interface, the verdict of the martian check and an IP
/// header with everything but its per-packet fields already written. Transport keeps one
/// per connection (TCP) or per last destination (UDP) and sends with
/// [`Internet::send_prepared`], so a packet costs a header copy and a device call rather
/// than a route lookup, source selection, an address check and a header built field by
/// field (docs/benchmarks.md, item 19). Linux caches the same things in a socket's
/// `dst_entry` (`sk_dst_cache`), checked against a cookie on each send.
///
/// A prepared path is only valid while nothing it was derived from changes: it carries the
/// [`Internet`]'s generation, which every change to a route, an address, an interface or
/// the configuration advances. [`Internet::is_current`] tells whether it still holds; a
/// stale one given to [`Internet::send_prepared`] is worked out again before use. A path
/// belongs to the `Internet` that made it: another host's generation means nothing to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    /// The `Internet`'s generation when this was made.
    generation: u64,
    dst: IpAddr,
    src: IpAddr,
    protocol: u8,
    /// What the path was asked for, the source pinned to `src`: enough to make it again.
    options: SendOptions,
    /// The interface the packets leave by (`lo` for a local destination) and its MTU.
    out: InterfaceId,
    iface_mtu: usize,
    /// Why every packet along this path must be refused, if it must: counted per packet,
    /// as a send that fails at the same step would be.
    blocked: Option<Blocked>,
    /// The IP header (20 bytes for IPv4, 40 for IPv6) with its per-packet fields zero:
    /// IPv4's total length, identification and checksum, IPv6's payload length.
    header: [u8; 40],
    /// IPv4: the sum of the header's fixed 16-bit words, to which each packet adds its
    /// length and identification before folding (RFC 791 3.1, RFC 1071).
    header_sum: u32,
    /// The transport pseudo-header's sum without the length (RFC 768, RFC 9293 3.1, RFC 8200
    /// 8.1), for [`partial`](Self::partial).
    pseudo_sum: u64,
}

/// Why a [`Prepared`] path refuses its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Blocked {
    Down(InterfaceId),
    Martian(Martian),
}

impl Prepared {
    /// Where the packets go.
    pub fn dst(&self) -> IpAddr {
        self.dst
    }

    /// The source address the packets carry: the one asked for, or the route's choice.
    pub fn src(&self) -> IpAddr {
        self.src
    }

    /// What a transport message of `len` bytes writes into its checksum field for the IP
    /// layer or the device to finish: the same as [`checksum::partial`] with this path's
    /// addresses and protocol, from the pseudo-header sum kept here.
    #[inline]
    pub fn partial(&self, len: usize) -> [u8; 2] {
        checksum::fold(self.pseudo_sum + checksum::length_sum(len)).to_ne_bytes()
    }

    fn header_len(&self) -> usize {
        if self.dst.is_ipv6() {
            40
        } else {
            20
        }
    }
}

/// The internet layer of one host.
#[derive(Debug)]
pub struct Internet {
    pool: PacketPool,
    ifaces: InterfaceTable,
    routes: RoutingTable,
    config: InternetConfig,
    stats: InternetStats,
    rate: RateLimiter,
    next_ident: u16,
    replies: VecDeque<EchoReply>,
    scratch: Vec<u8>,
    reasm4: Reassembler,
    reasm6: Reassembler,
    next_frag_ident: u32,
    /// Every (interface, address) pair, as source selection wants them. Kept here, and
    /// refreshed only when an address changes, so that routing a packet allocates nothing.
    addrs: Vec<(InterfaceId, Cidr)>,
    /// The last route decision per family (IPv4, IPv6), for the next packet to the same
    /// destination: a stream sends every segment to one address, and a lookup with source
    /// selection costs about 25 ns where comparing an address costs one. Emptied by every
    /// method that can change a route or an address (`routes_mut`, `add_address`,
    /// `add_interface`), so it never answers differently from the tables.
    route_cache: [Cell<Option<(IpAddr, RouteDecision)>>; 2],
    /// Advanced by every change a [`Prepared`] path could depend on: the methods that empty
    /// `route_cache`, and also `set_mtu` and `config_mut` (the default TTL is in the
    /// prepared header). The interface table is not handed out mutably, so interfaces
    /// change state only through those methods.
    generation: u64,
}

impl Internet {
    /// A host with `lo` (127.0.0.1/8 and ::1/128) and its local routes, taking buffers from
    /// `pool`.
    pub fn new(pool: PacketPool, config: InternetConfig) -> Self {
        let mut routes = RoutingTable::new();
        let ifaces = InterfaceTable::new();
        for (id, cidr) in ifaces.all_addrs() {
            // `lo` holds two addresses of different prefixes: adding their routes to an
            // empty table cannot fail.
            let _ = routes.add(Route::local(cidr, id));
        }
        Internet {
            routes,
            rate: RateLimiter::new(config.icmp_errors_per_sec, config.icmp_errors_burst),
            replies: VecDeque::with_capacity(config.max_echo_replies),
            config,
            stats: InternetStats::default(),
            next_ident: 0,
            scratch: Vec::new(),
            reasm4: Reassembler::new(ReassemblyConfig::ipv4(), pool.clone())
                .expect("the default IPv4 reassembly config is valid"),
            reasm6: Reassembler::new(ReassemblyConfig::ipv6(), pool.clone())
                .expect("the default IPv6 reassembly config is valid"),
            next_frag_ident: 0,
            addrs: ifaces.all_addrs().collect(),
            route_cache: Default::default(),
            generation: 0,
            ifaces,
            pool,
        }
    }

    /// The interface table.
    pub fn interfaces(&self) -> &InterfaceTable {
        &self.ifaces
    }

    /// The routing table.
    pub fn routes(&self) -> &RoutingTable {
        &self.routes
    }

    /// The routing table, to add gateway, default or unreachable routes.
    pub fn routes_mut(&mut self) -> &mut RoutingTable {
        self.forget_routes();
        &mut self.routes
    }

    /// The counters.
    pub fn stats(&self) -> &InternetStats {
        &self.stats
    }

    /// The configuration.
    pub fn config(&self) -> &InternetConfig {
        &self.config
    }

    /// Changes the configuration (forwarding, echo replies...).
    pub fn config_mut(&mut self) -> &mut InternetConfig {
        // Prepared paths hold the default TTL.
        self.forget_routes();
        &mut self.config
    }

    /// Adds an interface with no addresses yet.
    pub fn add_interface(
        &mut self,
        name: &str,
        kind: InterfaceKind,
        mtu: usize,
    ) -> Result<InterfaceId, IfaceError> {
        self.forget_routes();
        self.ifaces.add(name, kind, mtu)
    }

    /// Sets an interface's MTU (`ip link set DEV mtu N`): the stack that owns the device
    /// keeps it equal to the device's.
    pub fn set_mtu(&mut self, iface: InterfaceId, mtu: usize) -> Result<(), IfaceError> {
        self.forget_routes();
        self.ifaces.set_mtu(iface, mtu)
    }

    /// Adds an address to an interface, with the routes Linux adds for it: a local route to
    /// the address (on a loopback interface, to its whole prefix), and a connected route to
    /// its prefix on other interfaces.
    pub fn add_address(&mut self, iface: InterfaceId, cidr: Cidr) -> Result<(), IfaceError> {
        self.ifaces.add_addr(iface, cidr)?;
        self.forget_routes();
        self.addrs = self.ifaces.all_addrs().collect();
        let loopback = self.ifaces.get(iface).is_some_and(|i| i.is_loopback());
        if loopback {
            let _ = self.routes.add(Route::local(cidr, iface));
        } else {
            let _ = self
                .routes
                .add(Route::local(Cidr::host(cidr.addr()), iface));
            if cidr.prefix_len() < Cidr::host(cidr.addr()).prefix_len() {
                let _ = self
                    .routes
                    .add(Route::connected(cidr.network(), iface, cidr.addr()));
            }
        }
        Ok(())
    }

    /// Where a packet to `dst` would go, and from which source: `ip route get`. Transport
    /// calls this first, because its checksum covers the source address.
    pub fn route(&self, dst: IpAddr) -> Result<RouteDecision, RouteError> {
        let cache = &self.route_cache[usize::from(dst.is_ipv6())];
        if let Some((d, decision)) = cache.get() {
            if d == dst {
                return Ok(decision);
            }
        }
        let decision = self.routes.route_get(dst, &self.addrs)?;
        cache.set(Some((dst, decision)));
        Ok(decision)
    }

    /// Empties the route cache and makes every [`Prepared`] path stale: a route, an
    /// address, an interface or the configuration may be about to change.
    fn forget_routes(&mut self) {
        for c in &self.route_cache {
            c.set(None);
        }
        self.generation = self.generation.wrapping_add(1);
    }

    /// Whether `path` still describes what [`prepare`](Self::prepare) would make now:
    /// nothing it depends on has changed since.
    #[inline]
    pub fn is_current(&self, path: &Prepared) -> bool {
        path.generation == self.generation
    }

    /// The next time [`poll`](Self::poll) has work: reassembly timeouts.
    pub fn poll_at(&self) -> Option<Instant> {
        Instant::earliest(self.reasm4.poll_at(), self.reasm6.poll_at())
    }

    /// Does time-driven work due at `now`: abandons reassemblies that timed out, answering
    /// with Time Exceeded (code 1) when their first fragment had arrived (RFC 792, RFC 8200
    /// 4.5).
    pub fn poll<L: Links>(&mut self, now: Instant, links: &mut L) {
        // Called on every stack poll, and almost always with nothing held for reassembly:
        // that case is two length checks, not a search for the earliest deadline.
        if (self.reasm4.is_idle() && self.reasm6.is_idle())
            || self.poll_at().is_none_or(|t| t > now)
        {
            return;
        }
        // Expiries are rare; collecting them first keeps the borrow of each reassembler short.
        let mut firsts = Vec::new();
        let expired4 = self.reasm4.poll(now, &mut |e| firsts.extend(e.first));
        let expired6 = self.reasm6.poll(now, &mut |e| firsts.extend(e.first));
        self.stats.ip.reasm_timeout += expired4 as u64;
        self.stats.ip.reasm_fails += expired4 as u64;
        self.stats.ip6.reasm_timeout += expired6 as u64;
        self.stats.ip6.reasm_fails += expired6 as u64;
        for first in firsts {
            self.icmp_error(now, IcmpError::ReassemblyTimeExceeded, &first, links);
        }
    }

    /// Hands a fragment to reassembly; returns the whole datagram once its last missing piece
    /// arrives, re-checked as an unfragmented packet.
    // Out of line and cold: inlined into the stack's receive loop, its error values'
    // constant addresses were hoisted out of the loop and stored on every poll, about 60
    // instructions that no unfragmented packet needs (docs/benchmarks.md, item 24).
    #[cold]
    #[inline(never)]
    fn reassemble<L: Links>(
        &mut self,
        now: Instant,
        packet: PacketBuf,
        links: &mut L,
    ) -> Option<(Header, PacketBuf)> {
        let v6 = packet.first().is_some_and(|b| b >> 4 == 6);
        if v6 {
            self.stats.ip6.reasm_reqds += 1;
        } else {
            self.stats.ip.reasm_reqds += 1;
        }
        let result = match frag::fragment_info(&packet) {
            Ok(Some(info)) if v6 => self.reasm6.insert(now, &info, &packet),
            Ok(Some(info)) => self.reasm4.insert(now, &info, &packet),
            _ => FragResult::Dropped(DropReason::Malformed),
        };
        match result {
            FragResult::Incomplete => None,
            FragResult::Complete(whole) => {
                let checked = if v6 {
                    ingress::check_v6(&whole.packet)
                } else {
                    ingress::check_v4(&whole.packet, true)
                };
                if v6 {
                    self.stats.ip6.reasm_oks += 1;
                } else {
                    self.stats.ip.reasm_oks += 1;
                }
                match checked {
                    Checked::Ok(h) if h.fragment.is_none() => Some((h, whole.packet)),
                    _ => {
                        self.count_header_error(v6, HeaderError::Truncated);
                        None
                    }
                }
            }
            FragResult::Dropped(reason) => {
                if reason != DropReason::AfterDiscard {
                    if v6 {
                        self.stats.ip6.reasm_fails += 1;
                    } else {
                        self.stats.ip.reasm_fails += 1;
                    }
                }
                // RFC 8200 4.5: a non-last fragment whose length is not a multiple of 8 is
                // answered with Parameter Problem pointing at the Payload Length field.
                if v6 && reason == DropReason::NotMultipleOf8 {
                    let error = IcmpError::ParameterProblem { pointer: 4 };
                    self.icmp_error(now, error, &packet, links);
                }
                None
            }
        }
    }
    /// Takes the oldest echo reply received and not yet taken.
    pub fn take_echo_reply(&mut self) -> Option<EchoReply> {
        self.replies.pop_front()
    }

    fn alloc_ident(&mut self) -> u16 {
        self.next_ident = self.next_ident.wrapping_add(1);
        self.next_ident
    }

    // ------------------------------------------------------------------ sending

    /// Sends a transport message (its header already in `packet`) to `dst`, from
    /// `options.src` or from the source the route chooses. Prepends the IP header into the
    /// headroom, and fragments (IPv4 without DF, or IPv6 at the source) if the packet exceeds
    /// the MTU. For many packets along one path, [`prepare`](Self::prepare) it once and use
    /// [`send_prepared`](Self::send_prepared).
    pub fn send<L: Links>(
        &mut self,
        now: Instant,
        packet: PacketBuf,
        dst: IpAddr,
        protocol: u8,
        options: SendOptions,
        links: &mut L,
    ) -> Result<(), SendError> {
        let v6 = dst.is_ipv6();
        self.count_out_request(v6);
        let decision = self.route_out(dst)?;
        let path = self.prepare_routed(dst, decision, protocol, options)?;
        self.transmit_prepared(now, packet, &path, links)
    }

    /// Works out the path for `protocol` messages to `dst` sent with `options`, for
    /// [`send_prepared`](Self::send_prepared): the route, the source (RFC 1122 3.3.4.3:
    /// the application's, if it named one of ours, else the route's), the interface and the
    /// IP header. Transport calls this before it builds a message, because its checksum
    /// covers the source address ([`Prepared::src`], [`Prepared::partial`]).
    ///
    /// Fails as sending would fail before any packet exists: no route, or a source address
    /// that is not ours. A path out of an interface that is down, or with a martian address
    /// on it, is made all the same and refuses each packet, counting it, as
    /// [`send`](Self::send) does.
    pub fn prepare(
        &self,
        dst: IpAddr,
        protocol: u8,
        options: SendOptions,
    ) -> Result<Prepared, SendError> {
        let decision = self.route(dst)?;
        self.prepare_routed(dst, decision, protocol, options)
    }

    /// [`prepare`](Self::prepare) along a route already looked up.
    fn prepare_routed(
        &self,
        dst: IpAddr,
        decision: RouteDecision,
        protocol: u8,
        options: SendOptions,
    ) -> Result<Prepared, SendError> {
        let v6 = dst.is_ipv6();
        let src = match options.src {
            // The source the route chose is ours by construction: only another needs a look.
            Some(s) if s != decision.src && (s.is_ipv6() != v6 || !self.ifaces.is_local(s)) => {
                return Err(SendError::AddrNotAvailable(s))
            }
            Some(s) => s,
            None => decision.src,
        };
        let ttl = options.ttl.unwrap_or(self.config.default_ttl);
        // Layouts: RFC 791 3.1 and RFC 8200 3. The per-packet fields stay zero here.
        let mut header = [0u8; 40];
        let mut header_sum = 0;
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let flags: u16 = if options.dont_fragment { 0x4000 } else { 0 };
                let ttl_proto = u16::from_be_bytes([ttl, protocol]);
                header[0] = 0x45; // version 4, IHL 5 (no options)
                header[6..8].copy_from_slice(&flags.to_be_bytes());
                header[8..10].copy_from_slice(&ttl_proto.to_be_bytes());
                header[12..16].copy_from_slice(&s.octets());
                header[16..20].copy_from_slice(&d.octets());
                let (sw, dw) = (u32::from(s), u32::from(d));
                header_sum = 0x4500
                    + u32::from(flags)
                    + u32::from(ttl_proto)
                    + (sw >> 16)
                    + (sw & 0xffff)
                    + (dw >> 16)
                    + (dw & 0xffff);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                header[0] = 0x60; // version 6, traffic class and flow label zero
                header[6] = protocol;
                header[7] = ttl;
                header[8..24].copy_from_slice(&s.octets());
                header[24..40].copy_from_slice(&d.octets());
            }
            _ => return Err(SendError::AddrNotAvailable(src)),
        }
        let out = leaves_by(&decision);
        let (iface_mtu, blocked) = match self.ifaces.get(out).filter(|i| i.is_up()) {
            None => (0, Some(Blocked::Down(out))),
            Some(iface) => (
                iface.mtu(),
                addr::check_outgoing(src, dst, iface.is_loopback()).map(Blocked::Martian),
            ),
        };
        Ok(Prepared {
            generation: self.generation,
            dst,
            src,
            protocol,
            options: SendOptions {
                src: Some(src),
                ..options
            },
            out,
            iface_mtu,
            blocked,
            header,
            header_sum,
            pseudo_sum: checksum::pseudo_header(src, dst, protocol, 0),
        })
    }

    /// Sends a transport message (its header already in `packet`, its checksum made with
    /// `path`'s source) along a path from [`prepare`](Self::prepare): what
    /// [`send`](Self::send) does, without working the path out again.
    ///
    /// A path made stale by a change since ([`is_current`](Self::is_current) is false) is
    /// worked out afresh for this packet, keeping its source address, which the message's
    /// checksum covers: if that address is no longer ours the send fails with
    /// [`SendError::AddrNotAvailable`]. The caller should prepare a new path for the next.
    pub fn send_prepared<L: Links>(
        &mut self,
        now: Instant,
        packet: PacketBuf,
        path: &Prepared,
        links: &mut L,
    ) -> Result<(), SendError> {
        let v6 = path.dst.is_ipv6();
        self.count_out_request(v6);
        if self.is_current(path) {
            return self.transmit_prepared(now, packet, path, links);
        }
        self.send_rerouted(now, packet, path, links)
    }

    /// [`send_prepared`](Self::send_prepared) along a stale path: routed afresh for this
    /// packet. Out of line, so that the current path's case stays small enough to inline.
    #[cold]
    #[inline(never)]
    fn send_rerouted<L: Links>(
        &mut self,
        now: Instant,
        packet: PacketBuf,
        path: &Prepared,
        links: &mut L,
    ) -> Result<(), SendError> {
        let decision = self.route_out(path.dst)?;
        let fresh = self.prepare_routed(path.dst, decision, path.protocol, path.options)?;
        self.transmit_prepared(now, packet, &fresh, links)
    }

    fn count_out_request(&mut self, v6: bool) {
        if v6 {
            self.stats.ip6.out_requests += 1;
        } else {
            self.stats.ip.out_requests += 1;
        }
    }

    /// The per-packet part of a send along a current path: the refusal it carries, if any,
    /// else the IP header (the prepared one, with this packet's length, identification and
    /// checksum) and the way down.
    #[inline(always)]
    fn transmit_prepared<L: Links>(
        &mut self,
        now: Instant,
        mut packet: PacketBuf,
        path: &Prepared,
        links: &mut L,
    ) -> Result<(), SendError> {
        let v6 = path.dst.is_ipv6();
        if let Some(blocked) = path.blocked {
            self.count_out_discard(v6);
            return Err(match blocked {
                Blocked::Down(out) => SendError::InterfaceDown(out),
                Blocked::Martian(m) => SendError::Martian(m),
            });
        }
        let len = packet.len();
        // The header goes straight into the headroom: building an etherparse header,
        // checksumming it and serialising it cost about 10% of a small datagram's send
        // (perf, docs/benchmarks.md).
        if v6 {
            let payload = u16::try_from(len).map_err(|_| SendError::MessageTooLong {
                len,
                mtu: 65535 + 40,
            })?;
            let h = packet
                .prepend_array::<40>()
                .map_err(|_| SendError::NoHeadroom)?;
            *h = path.header;
            h[4..6].copy_from_slice(&payload.to_be_bytes());
        } else {
            let total = u16::try_from(len + 20)
                .map_err(|_| SendError::MessageTooLong { len, mtu: 65535 })?;
            let ident = self.alloc_ident();
            // The header checksum (RFC 791 3.1) from the values, not read back from the
            // bytes just written: that read stalled on store forwarding (a third of the
            // send's samples in perf).
            let mut sum = path.header_sum + u32::from(total) + u32::from(ident);
            sum = (sum & 0xffff) + (sum >> 16);
            sum = (sum & 0xffff) + (sum >> 16);
            let header_checksum = !(sum as u16);
            let h = packet
                .prepend_array::<20>()
                .map_err(|_| SendError::NoHeadroom)?;
            h.copy_from_slice(&path.header[..20]);
            h[2..4].copy_from_slice(&total.to_be_bytes());
            h[4..6].copy_from_slice(&ident.to_be_bytes());
            h[10..12].copy_from_slice(&header_checksum.to_be_bytes());
        }
        let partial = path.options.checksum_at.map(|field| Partial {
            start: path.header_len(),
            field,
            protocol: path.protocol,
        });
        self.finish(now, path.out, path.iface_mtu, packet, partial, v6, links)
    }

    /// Sends a complete IP packet (an echo reply, an ICMP error) to `dst`, routed afresh.
    fn send_raw<L: Links>(
        &mut self,
        now: Instant,
        packet: PacketBuf,
        dst: IpAddr,
        links: &mut L,
    ) -> Result<(), SendError> {
        let decision = self.route_out(dst)?;
        self.output(now, &decision, packet, links)
    }

    /// [`route`](Self::route) for a packet on its way out: a failure counts in
    /// OutNoRoutes (RFC 4293's ipSystemStatsOutNoRoutes).
    fn route_out(&mut self, dst: IpAddr) -> Result<RouteDecision, SendError> {
        self.route(dst).map_err(|e| {
            if dst.is_ipv6() {
                self.stats.ip6.out_no_routes += 1;
            } else {
                self.stats.ip.out_no_routes += 1;
            }
            e.into()
        })
    }

    /// The last step down for a complete packet (an answer, a forwarded packet): the
    /// interface, the martian check on the addresses it carries, then [`finish`].
    ///
    /// [`finish`]: Self::finish
    fn output<L: Links>(
        &mut self,
        now: Instant,
        decision: &RouteDecision,
        packet: PacketBuf,
        links: &mut L,
    ) -> Result<(), SendError> {
        let v6 = packet.first().is_some_and(|b| b >> 4 == 6);
        let out = leaves_by(decision);
        let Some(iface) = self.ifaces.get(out).filter(|i| i.is_up()) else {
            self.count_out_discard(v6);
            return Err(SendError::InterfaceDown(out));
        };
        let (src, dst) = addresses(&packet);
        if let Some(m) = addr::check_outgoing(src, dst, iface.is_loopback()) {
            self.count_out_discard(v6);
            return Err(SendError::Martian(m));
        }
        let iface_mtu = iface.mtu();
        self.finish(now, out, iface_mtu, packet, None, v6, links)
    }

    /// What every packet goes through last, on interface `out`: the device's MTU, a
    /// partial transport checksum finished unless the device offloads it, fragmentation,
    /// and the device.
    // The family is an argument because both callers know it already: reading it from the
    // packet again cost about 20 instructions per datagram (docs/benchmarks.md, item 19).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn finish<L: Links>(
        &mut self,
        now: Instant,
        out: InterfaceId,
        iface_mtu: usize,
        mut packet: PacketBuf,
        partial: Option<Partial>,
        v6: bool,
        links: &mut L,
    ) -> Result<(), SendError> {
        let caps = links.capabilities(out);
        let mtu = caps.map_or(iface_mtu, |c| c.mtu.min(iface_mtu));
        if !packet.is_linear() {
            // A payload shared with TCP's send queue (`PacketBuf::attach`) travels as it is
            // only to a device that moves handles without reading bytes, with nothing left
            // here to compute over it; every other packet is put in one buffer first.
            let as_is = caps.is_some_and(|c| c.scatter_gather && c.checksum_offload.tx)
                && packet.len() <= mtu;
            if !as_is {
                if let Err(e) = packet.linearize() {
                    self.count_out_discard(v6);
                    return Err(SendError::Pool(e));
                }
            }
        }
        if let Some(p) = partial {
            // Finished here unless the device vouches for the packet. Always before
            // fragmenting: the receiver reassembles and then verifies the whole message.
            let offloaded = caps.is_some_and(|c| c.checksum_offload.tx);
            if !offloaded || packet.len() > mtu {
                if let Some(message) = packet.as_mut_slice().get_mut(p.start..) {
                    checksum::complete(message, p.field, p.protocol);
                }
            }
        }
        if packet.len() > mtu {
            return self.fragment(now, out, mtu, packet, links);
        }
        links.transmit(now, out, packet).map_err(|e| {
            self.count_out_discard(v6);
            SendError::Link(e)
        })
    }

    /// Splits a packet too big for the link: IPv4 unless Don't Fragment is set (RFC 791
    /// 2.3), IPv6 at the source with a Fragment header (RFC 8200 4.5).
    fn fragment<L: Links>(
        &mut self,
        now: Instant,
        out: InterfaceId,
        mtu: usize,
        packet: PacketBuf,
        links: &mut L,
    ) -> Result<(), SendError> {
        let v6 = packet.first().is_some_and(|b| b >> 4 == 6);
        let dont_fragment = !v6 && packet.get(6).is_some_and(|f| f & 0x40 != 0);
        let too_big = SendError::MessageTooLong {
            len: packet.len(),
            mtu,
        };
        if dont_fragment {
            self.stats.ip.frag_fails += 1;
            return Err(too_big);
        }
        let mut sent: Result<(), TxError> = Ok(());
        let mut emit = |piece: PacketBuf| {
            if sent.is_ok() {
                sent = links.transmit(now, out, piece);
            }
        };
        let made = if v6 {
            self.next_frag_ident = self.next_frag_ident.wrapping_add(1);
            frag::fragment_ipv6(&packet, mtu, self.next_frag_ident, &self.pool, &mut emit)
        } else {
            frag::fragment_ipv4(&packet, mtu, &self.pool, &mut emit)
        };
        let stats_frag = |s: &mut InternetStats, ok: bool, n: usize| {
            if v6 {
                if ok {
                    s.ip6.frag_oks += 1;
                    s.ip6.frag_creates += n as u64;
                } else {
                    s.ip6.frag_fails += 1;
                }
            } else if ok {
                s.ip.frag_oks += 1;
                s.ip.frag_creates += n as u64;
            } else {
                s.ip.frag_fails += 1;
            }
        };
        match made {
            Ok(n) => {
                stats_frag(&mut self.stats, true, n);
                sent.map_err(|e| {
                    self.count_out_discard(v6);
                    SendError::Link(e)
                })
            }
            Err(_) => {
                stats_frag(&mut self.stats, false, 0);
                Err(too_big)
            }
        }
    }

    fn count_out_discard(&mut self, v6: bool) {
        if v6 {
            self.stats.ip6.out_discards += 1;
        } else {
            self.stats.ip.out_discards += 1;
        }
    }

    fn count_in_discard(&mut self, v6: bool) {
        if v6 {
            self.stats.ip6.in_discards += 1;
        } else {
            self.stats.ip.in_discards += 1;
        }
    }

    // ------------------------------------------------------------------ receiving

    /// Takes one packet that arrived on `iface` and decides its fate. Returns what transport
    /// must see, if anything; echo replies, ICMP errors and forwarded packets go out through
    /// `links` on the way. [`receive_with`](Self::receive_with) hands the delivery straight
    /// to the layer above instead, which is what the stack's loop does.
    pub fn receive<L: Links>(
        &mut self,
        now: Instant,
        iface: InterfaceId,
        packet: PacketBuf,
        links: &mut L,
    ) -> Option<Delivery> {
        let mut up = Collect(None);
        self.receive_with(now, iface, packet, links, &mut up);
        up.0
    }

    /// [`receive`](Self::receive), handing what transport must see to `upper` as it is
    /// found.
    pub fn receive_with<L: Links, U: Upper>(
        &mut self,
        now: Instant,
        iface: InterfaceId,
        packet: PacketBuf,
        links: &mut L,
        upper: &mut U,
    ) {
        let offload = links
            .capabilities(iface)
            .is_some_and(|c| c.checksum_offload.rx);
        self.receive_offloaded(now, iface, offload, packet, links, upper);
    }

    /// [`receive_with`](Self::receive_with) for a caller that already knows whether the
    /// device behind `iface` vouches for received checksums (`offload`: its
    /// `DeviceCapabilities::checksum_offload.rx`). A stack draining a batch of packets from
    /// one device asks the device once per batch instead of once per packet, and asks the
    /// device it holds instead of searching the device list (about 35 to 57 instructions
    /// per packet, docs/benchmarks.md item 26).
    pub fn receive_offloaded<L: Links, U: Upper>(
        &mut self,
        now: Instant,
        iface: InterfaceId,
        offload: bool,
        mut packet: PacketBuf,
        links: &mut L,
        upper: &mut U,
    ) {
        let Some(on_loopback) = self
            .ifaces
            .get(iface)
            .filter(|i| i.is_up())
            .map(|i| i.is_loopback())
        else {
            self.stats.ip.in_discards += 1;
            return;
        };
        let v6 = match packet.first().map(|b| b >> 4) {
            Some(4) => false,
            Some(6) => true,
            _ => {
                self.stats.ip.in_receives += 1;
                self.stats.ip.in_hdr_errors += 1;
                return;
            }
        };
        if v6 {
            self.stats.ip6.in_receives += 1;
        } else {
            self.stats.ip.in_receives += 1;
        }
        // The header is always in the packet's own bytes; the length checks count an
        // attached fragment too (`PacketBuf::len`).
        let checked = if v6 {
            ingress::check_v6_len(&packet, packet.len())
        } else {
            ingress::check_v4_len(&packet, packet.len(), offload)
        };
        // Borrowed, not moved out: moving it copied the `Header` whole, IPv4's `IpAddr`s
        // (written as a tag and four octets) read back as 8-byte words, a store-forwarding
        // stall at 4% to 6% of a datagram's time (docs/benchmarks.md, item 23). For the
        // same reason IPv4 never reads `header.src` or `header.dst` below.
        let header = match &checked {
            Checked::Ok(h) => h,
            &Checked::Drop(e) => {
                self.count_header_error(v6, e);
                return;
            }
            &Checked::ParameterProblem { code, pointer, .. } => {
                self.stats.ip6.in_hdr_errors += 1;
                let error = if code == 1 {
                    IcmpError::ProtocolUnreachable { pointer }
                } else {
                    IcmpError::ParameterProblem { pointer }
                };
                self.icmp_error(now, error, &packet, links);
                return;
            }
        };
        packet.truncate(header.total_len);
        if !packet.is_linear()
            && (header.protocol != proto::TCP
                || header.fragment.is_some()
                || !self.accepts(header.dst))
        {
            // Only TCP segments for this host read a shared payload in place (TCP's receive
            // queue and `copy_out` know fragments); reassembly, forwarding and ICMP want
            // every byte in one buffer. Fragments only ever carry TCP, so this is for a
            // misbehaving sender's sake.
            if packet.linearize().is_err() {
                self.count_in_discard(v6);
                return;
            }
        }
        // IPv4's addresses are read again from the packet rather than taken from `header`:
        // there, each `IpAddr` (17 bytes, byte-aligned) was written as a tag and four octets
        // and would be read back as 8-byte words, a store-forwarding stall that perf put at
        // 4-6% of `Stack::poll`'s samples each time (docs/benchmarks.md, item 17). From the
        // bytes they stay in registers. IPv6's are taken from `header`, where they were
        // copied whole and read back the same way; reading them again cost more
        // instructions (32 bytes, bounds checks) than it saved.
        let (martian, src, dst) = if v6 {
            match (header.src, header.dst) {
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    let martian = addr::check_incoming_v6(s, d, on_loopback);
                    (martian, IpAddr::V6(s), IpAddr::V6(d))
                }
                // `check_v6` gives IPv6 addresses; refuse anything else rather than panic.
                (s, d) => (Some(Martian::UnspecifiedDestination), s, d),
            }
        } else {
            let (s, d) = (v4_at(&packet, 12), v4_at(&packet, 16));
            let martian = addr::check_incoming_v4(s, d, on_loopback);
            (martian, IpAddr::V4(s), IpAddr::V4(d))
        };
        if martian.is_some() {
            if v6 {
                self.stats.ip6.in_martians += 1;
            } else {
                self.stats.ip.in_martians += 1;
            }
            return;
        }
        if !self.accepts(dst) {
            self.forward(now, *header, packet, links);
            return;
        }
        if header.fragment.is_some() {
            // The whole datagram has the addresses of its fragments (RFC 791 3.2, RFC 8200
            // 4.5: they are part of the reassembly key).
            if let Some((whole_header, whole)) = self.reassemble(now, packet, links) {
                let h = &whole_header;
                self.deliver(now, iface, h, src, dst, whole, offload, links, upper);
            }
            return;
        }
        self.deliver(now, iface, header, src, dst, packet, offload, links, upper);
    }

    /// Whether a packet to `dst` is for this host: one of our addresses (all of 127/8 on
    /// `lo`), IPv4 limited broadcast, or IPv6 all-nodes multicast.
    fn accepts(&self, dst: IpAddr) -> bool {
        self.ifaces.is_local(dst)
            || dst == IpAddr::V4(Ipv4Addr::BROADCAST)
            || dst == IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1))
    }

    fn count_header_error(&mut self, v6: bool, e: HeaderError) {
        if v6 {
            match e {
                HeaderError::Truncated => self.stats.ip6.in_truncated_pkts += 1,
                HeaderError::NoNextHeader => {}
                _ => self.stats.ip6.in_hdr_errors += 1,
            }
        } else {
            self.stats.ip.in_hdr_errors += 1;
            if e == HeaderError::BadChecksum {
                self.stats.ip.in_csum_errors += 1;
            }
        }
    }

    /// A packet for someone else: forward it if we are a router, else drop and count.
    fn forward<L: Links>(&mut self, now: Instant, h: Header, mut packet: PacketBuf, links: &mut L) {
        let v6 = h.dst.is_ipv6();
        if !self.config.forwarding || h.dst.is_multicast() {
            if v6 {
                self.stats.ip6.in_addr_errors += 1;
            } else {
                self.stats.ip.in_addr_errors += 1;
            }
            return;
        }
        // RFC 1812 5.3.1: a router decrements TTL; at 1 or 0 the packet dies with Time
        // Exceeded (RFC 792, RFC 4443 3.3).
        if h.ttl <= 1 {
            if v6 {
                self.stats.ip6.in_hdr_errors += 1;
            } else {
                self.stats.ip.in_hdr_errors += 1;
            }
            self.icmp_error(now, IcmpError::TtlExceeded, &packet, links);
            return;
        }
        let decision = match self.route(h.dst) {
            Ok(d) => d,
            Err(e) => {
                if v6 {
                    self.stats.ip6.in_no_routes += 1;
                } else {
                    self.stats.ip.out_no_routes += 1;
                }
                let error = match e {
                    RouteError::Unreachable(_) => IcmpError::HostUnreachable,
                    _ => IcmpError::NetUnreachable,
                };
                self.icmp_error(now, error, &packet, links);
                return;
            }
        };
        let b = packet.as_mut_slice();
        if v6 {
            b[7] -= 1;
        } else {
            b[8] -= 1;
            // RFC 1624: incremental update would do; a fresh sum over 20-60 bytes is clearer.
            ingress::set_ipv4_checksum(b, usize::from(b[0] & 0x0f) * 4);
        }
        let out_mtu = self.ifaces.get(decision.iface).map_or(0, |i| i.mtu());
        let dont_fragment = v6 || packet.get(6).is_some_and(|f| f & 0x40 != 0);
        if packet.len() > out_mtu && dont_fragment {
            if v6 {
                self.stats.ip6.in_too_big_errors += 1;
            } else {
                self.stats.ip.frag_fails += 1;
            }
            let error = IcmpError::PacketTooBig {
                mtu: out_mtu as u32,
            };
            self.icmp_error(now, error, &packet, links);
            return;
        }
        if v6 {
            self.stats.ip6.out_forw_datagrams += 1;
        } else {
            self.stats.ip.forw_datagrams += 1;
        }
        let _ = self.output(now, &decision, packet, links);
    }

    // Inlined for the same reason as `ingress::check_v4_len`: `meta` handed on as arguments
    // stays in registers, where a copy through memory was read back in wider pieces than it
    // was written (docs/benchmarks.md, items 14 and 17).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)] // the header, and the addresses read apart from it
    fn deliver<L: Links, U: Upper>(
        &mut self,
        now: Instant,
        iface: InterfaceId,
        h: &Header,
        src: IpAddr,
        dst: IpAddr,
        mut packet: PacketBuf,
        offload: bool,
        links: &mut L,
        upper: &mut U,
    ) {
        let v6 = dst.is_ipv6();
        let meta = |src, dst| IpMeta {
            src,
            dst,
            protocol: h.protocol,
            ttl: h.ttl,
            iface,
            header_len: h.header_len,
            verify_checksum: !offload,
        };
        // Each family builds its `IpMeta` in place. IPv4's addresses are read from the
        // packet (its header is still in front) rather than copied from `src` and `dst`:
        // an `IpAddr` made from four octets is written as a tag and four bytes, and copying
        // it whole reads 16 bytes back over those small stores, a store-forwarding stall
        // (perf: 3% to 4% of a datagram's time, docs/benchmarks.md, item 23).
        let meta = if v6 {
            meta(src, dst)
        } else {
            meta(
                IpAddr::V4(v4_at(&packet, 12)),
                IpAddr::V4(v4_at(&packet, 16)),
            )
        };
        match (h.protocol, v6) {
            (proto::ICMP, false) | (proto::ICMPV6, true) => {
                self.icmp_input(now, meta, packet, offload, links, upper);
            }
            (proto::TCP | proto::UDP, _) => {
                if v6 {
                    self.stats.ip6.in_delivers += 1;
                } else {
                    self.stats.ip.in_delivers += 1;
                }
                if packet.strip_front(h.header_len).is_ok() {
                    upper.transport(now, meta, packet, self, links);
                }
            }
            _ => {
                // RFC 1122 3.2.2.1 / RFC 8200 4: nobody handles this protocol.
                let error = if v6 {
                    self.stats.ip6.in_unknown_protos += 1;
                    IcmpError::ProtocolUnreachable {
                        pointer: h.protocol_field as u32,
                    }
                } else {
                    self.stats.ip.in_unknown_protos += 1;
                    IcmpError::ProtocolUnreachable { pointer: 0 }
                };
                self.icmp_error(now, error, &packet, links);
            }
        }
    }

    // ------------------------------------------------------------------ ICMP

    fn icmp_input<L: Links, U: Upper>(
        &mut self,
        now: Instant,
        meta: IpMeta,
        mut packet: PacketBuf,
        offload: bool,
        links: &mut L,
        upper: &mut U,
    ) {
        let v6 = meta.dst.is_ipv6();
        // ICMPv4's checksum covers only the message and is always checked; ICMPv6's covers a
        // pseudo-header and is skipped like TCP's and UDP's when the device vouches.
        let verify = !v6 || !offload;
        enum Act {
            Echo,
            Reply(EchoReply),
            Error(IcmpError, QuotedPacket),
            Nothing,
        }
        let act = {
            let message = packet.get(meta.header_len..).unwrap_or(&[]);
            match icmp::parse(message, v6, meta.src, meta.dst, verify) {
                Err(e) => {
                    let bad_sum = matches!(e, icmp::IcmpParseError::BadChecksum);
                    let c = if v6 {
                        &mut self.stats.icmp6.in_errors
                    } else {
                        &mut self.stats.icmp.in_errors
                    };
                    *c += 1;
                    if bad_sum {
                        if v6 {
                            self.stats.icmp6.in_csum_errors += 1;
                        } else {
                            self.stats.icmp.in_csum_errors += 1;
                        }
                    }
                    return;
                }
                Ok(IcmpMessage::EchoRequest { .. }) => Act::Echo,
                Ok(IcmpMessage::EchoReply { id, seq, payload }) => {
                    let rtt = payload.get(..8).map(|t| {
                        let sent = u64::from_be_bytes(t.try_into().expect("8 bytes"));
                        now.saturating_duration_since(Instant::from_nanos(sent))
                    });
                    Act::Reply(EchoReply {
                        from: meta.src,
                        id,
                        seq,
                        ttl: meta.ttl,
                        len: message.len(),
                        rtt,
                    })
                }
                Ok(IcmpMessage::Error { error, quoted }) => Act::Error(error, quoted),
                Ok(IcmpMessage::Other { .. }) => Act::Nothing,
            }
        };
        if v6 {
            self.stats.icmp6.in_msgs += 1;
            self.stats.ip6.in_delivers += 1;
        } else {
            self.stats.icmp.in_msgs += 1;
            self.stats.ip.in_delivers += 1;
        }
        match act {
            Act::Echo => {
                if v6 {
                    self.stats.icmp6.in_echos += 1;
                } else {
                    self.stats.icmp.in_echos += 1;
                }
                // RFC 1122 3.2.2.6: answer echo requests; Linux ignores broadcast ones
                // (icmp_echo_ignore_broadcasts = 1), and so do we, and multicast ones.
                if !self.config.echo_reply || meta.dst.is_multicast() || is_broadcast(meta.dst) {
                    return;
                }
                let turned = if v6 {
                    icmp::echo_request_to_reply_v6(&mut packet)
                } else {
                    icmp::echo_request_to_reply_v4(&mut packet)
                };
                if turned.is_err() {
                    return;
                }
                if self.send_raw(now, packet, meta.src, links).is_ok() {
                    if v6 {
                        self.stats.icmp6.out_msgs += 1;
                        self.stats.icmp6.out_echo_replies += 1;
                    } else {
                        self.stats.icmp.out_msgs += 1;
                        self.stats.icmp.out_echo_reps += 1;
                    }
                } else if v6 {
                    self.stats.icmp6.out_errors += 1;
                } else {
                    self.stats.icmp.out_errors += 1;
                }
            }
            Act::Reply(reply) => {
                if v6 {
                    self.stats.icmp6.in_echo_replies += 1;
                } else {
                    self.stats.icmp.in_echo_reps += 1;
                }
                if self.replies.len() == self.config.max_echo_replies {
                    self.replies.pop_front();
                }
                self.replies.push_back(reply);
            }
            Act::Error(error, quoted) => {
                self.count_icmp_error_in(v6, error);
                upper.icmp_error(now, meta, error, quoted, self, links);
            }
            Act::Nothing => {}
        }
    }

    fn count_icmp_error_in(&mut self, v6: bool, error: IcmpError) {
        if v6 {
            let s = &mut self.stats.icmp6;
            match error {
                IcmpError::PacketTooBig { .. } => s.in_pkt_too_bigs += 1,
                IcmpError::TtlExceeded | IcmpError::ReassemblyTimeExceeded => s.in_time_excds += 1,
                IcmpError::ParameterProblem { .. } | IcmpError::ProtocolUnreachable { .. } => {
                    s.in_parm_problems += 1
                }
                _ => s.in_dest_unreachs += 1,
            }
        } else {
            let s = &mut self.stats.icmp;
            match error {
                IcmpError::TtlExceeded | IcmpError::ReassemblyTimeExceeded => s.in_time_excds += 1,
                IcmpError::ParameterProblem { .. } => s.in_parm_probs += 1,
                _ => s.in_dest_unreachs += 1,
            }
        }
    }

    /// Sends an ICMP error about `offending` (a whole IP packet as received), unless the
    /// rules forbid it (never about an ICMP error, a non-first fragment, or a broadcast or
    /// multicast packet: RFC 1122 3.2.2, RFC 4443 2.4(e)) or the rate limit is reached
    /// (RFC 1812 4.3.2.8, RFC 4443 2.4(f)). Transport calls this for Port Unreachable.
    pub fn icmp_error<L: Links>(
        &mut self,
        now: Instant,
        error: IcmpError,
        offending: &[u8],
        links: &mut L,
    ) {
        if !icmp::may_send_error(offending, error) {
            return;
        }
        let (src, dst) = addresses(offending);
        let v6 = dst.is_ipv6();
        if !self.rate.allow(now) {
            if v6 {
                self.stats.icmp6.out_rate_limit += 1;
            } else {
                self.stats.icmp.out_rate_limit_global += 1;
            }
            return;
        }
        // Answer from the address the packet was sent to if it is ours, else from the
        // address the route back chooses.
        let from = if self.ifaces.is_local(dst) {
            Some(dst)
        } else {
            self.route(src).ok().map(|d| d.src)
        };
        let built = match from {
            Some(IpAddr::V4(a)) => {
                let ident = self.alloc_ident();
                icmp::build_error_v4(&self.pool, error, offending, a, ident)
            }
            Some(IpAddr::V6(a)) => icmp::build_error_v6(&self.pool, error, offending, a),
            None => {
                self.count_icmp_out_error(v6);
                return;
            }
        };
        let Ok(packet) = built else {
            self.count_icmp_out_error(v6);
            return;
        };
        if self.send_raw(now, packet, src, links).is_err() {
            self.count_icmp_out_error(v6);
            return;
        }
        if v6 {
            let s = &mut self.stats.icmp6;
            s.out_msgs += 1;
            match error {
                IcmpError::PacketTooBig { .. } => s.out_pkt_too_bigs += 1,
                IcmpError::TtlExceeded | IcmpError::ReassemblyTimeExceeded => s.out_time_excds += 1,
                IcmpError::ParameterProblem { .. } | IcmpError::ProtocolUnreachable { .. } => {
                    s.out_parm_problems += 1
                }
                _ => s.out_dest_unreachs += 1,
            }
        } else {
            let s = &mut self.stats.icmp;
            s.out_msgs += 1;
            match error {
                IcmpError::TtlExceeded | IcmpError::ReassemblyTimeExceeded => s.out_time_excds += 1,
                IcmpError::ParameterProblem { .. } => s.out_parm_probs += 1,
                _ => s.out_dest_unreachs += 1,
            }
        }
    }

    fn count_icmp_out_error(&mut self, v6: bool) {
        if v6 {
            self.stats.icmp6.out_errors += 1;
        } else {
            self.stats.icmp.out_errors += 1;
        }
    }

    /// Sends an echo request for `ping`: `size` bytes of data after the ICMP header, the
    /// first 8 of them the send time (as iputils does), so the reply carries its own
    /// round-trip time back.
    pub fn send_echo_request<L: Links>(
        &mut self,
        now: Instant,
        dst: IpAddr,
        id: u16,
        seq: u16,
        size: usize,
        links: &mut L,
    ) -> Result<(), SendError> {
        let v6 = dst.is_ipv6();
        let decision = self.route_out(dst)?;
        self.scratch.clear();
        self.scratch
            .extend((0..size).map(|i| (i as u8).wrapping_add(0x10)));
        if size >= 8 {
            self.scratch[..8].copy_from_slice(&now.as_nanos().to_be_bytes());
        }
        let addrs = match (decision.src, dst) {
            (IpAddr::V6(s), IpAddr::V6(d)) => Some((s, d)),
            _ => None,
        };
        let packet =
            icmp::build_echo_request(&self.pool, addrs, id, seq, &self.scratch).map_err(|_| {
                SendError::Pool(PoolError::TooLarge {
                    requested: size,
                    largest: self.pool.max_packet(),
                })
            })?;
        let protocol = if v6 { proto::ICMPV6 } else { proto::ICMP };
        let options = SendOptions {
            src: Some(decision.src),
            ..SendOptions::default()
        };
        self.count_out_request(v6);
        let path = self.prepare_routed(dst, decision, protocol, options)?;
        self.transmit_prepared(now, packet, &path, links)?;
        if v6 {
            self.stats.icmp6.out_msgs += 1;
            self.stats.icmp6.out_echos += 1;
        } else {
            self.stats.icmp.out_msgs += 1;
            self.stats.icmp.out_echos += 1;
        }
        Ok(())
    }
}

fn is_broadcast(addr: IpAddr) -> bool {
    matches!(addr, IpAddr::V4(a) if a.is_broadcast())
}

/// The IPv4 address at byte `at` of a header; unspecified if the header is too short (the
/// caller has validated it, so it never is).
#[inline]
fn v4_at(b: &[u8], at: usize) -> Ipv4Addr {
    b.get(at..at + 4)
        .and_then(|a| <[u8; 4]>::try_from(a).ok())
        .map_or(Ipv4Addr::UNSPECIFIED, Ipv4Addr::from)
}

/// The interface a packet routed by `decision` leaves by. Traffic to one of our own
/// addresses goes round through `lo`, as on Linux, even if the address belongs to another
/// interface.
fn leaves_by(decision: &RouteDecision) -> InterfaceId {
    if decision.kind == RouteKind::Local {
        InterfaceId::LOOPBACK
    } else {
        decision.iface
    }
}

/// Source and destination of a whole IP packet, unspecified if it is too short to tell.
fn addresses(packet: &[u8]) -> (IpAddr, IpAddr) {
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= 20 => {
            (IpAddr::V4(v4_at(packet, 12)), IpAddr::V4(v4_at(packet, 16)))
        }
        Some(6) if packet.len() >= 40 => (
            IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&packet[8..24]).expect("16 bytes"),
            )),
            IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(&packet[24..40]).expect("16 bytes"),
            )),
        ),
        _ => (
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ),
    }
}
