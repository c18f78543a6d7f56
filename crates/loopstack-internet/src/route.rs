//! Routing: which interface, next hop and source address a packet leaves with.
//!
//! A [`RoutingTable`] holds the routes of both address families, each family in two tables
//! like Linux: the *local* table, for addresses of this host ([`RouteKind::Local`], e.g.
//! `local 127.0.0.0/8 dev lo`), and the *main* table for everything else. A lookup consults
//! the local table first and the main table only if nothing local matches, as Linux's
//! default policy rules do (`0: from all lookup local` before `32766: from all lookup main`).
//!
//! Within a table the longest matching prefix wins, then the lowest metric: RFC 1812
//! 5.2.4.3 ("Longest Match", then "Best Metric"). Two routes with the same destination and
//! metric are refused by [`RoutingTable::add`], so those two rules always pick one route.
//!
//! Cost: routes are grouped by prefix length, and within a length kept in a `BTreeMap` keyed
//! by network address. A lookup masks the destination once per prefix length present,
//! longest first, and stops at the first hit: O(P log N) for P distinct lengths (at most 33
//! for IPv4, 129 for IPv6) and N routes. Nothing depends on hash order, so every iteration
//! and every decision is the same run after run.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use thiserror::Error;

use crate::addr::{self, Cidr};
use crate::iface::InterfaceId;

/// What a route does with the packets it matches: Linux's route types, in part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKind {
    /// Addressed to this host: delivered up the stack, never sent out. These live in the
    /// local table, consulted before the main one.
    Local,
    /// Sent out of the route's interface, to the destination itself (a connected route) or
    /// to a gateway.
    Unicast,
    /// Refused with an error ([`RouteError::Unreachable`]), like Linux's `unreachable` type.
    Unreachable,
}

/// How far away a route's destinations are, as `ip route` shows it (`scope host`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// This host.
    Host,
    /// Directly on the link: no gateway needed.
    Link,
    /// Anywhere, possibly through gateways. `ip route` does not print it.
    Global,
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Scope::Host => "host",
            Scope::Link => "link",
            Scope::Global => "global",
        })
    }
}

/// One route: packets to `dest` go out of `iface`, to `gateway` if there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The destination prefix, in network form (host bits clear; [`RoutingTable::add`]
    /// clears them if needed). `/0` is the default route.
    pub dest: Cidr,
    /// What to do with matching packets.
    pub kind: RouteKind,
    /// The outgoing interface. Meaningless for [`RouteKind::Unreachable`] routes, which use
    /// [`InterfaceId::LOOPBACK`].
    pub iface: InterfaceId,
    /// The next hop, for routes that go through a router; `None` if the destination is on
    /// the link. Only [`RouteKind::Unicast`] routes may have one.
    pub gateway: Option<IpAddr>,
    /// The preferred source address (Linux's `src`); `None` leaves it to source address
    /// selection.
    pub src: Option<IpAddr>,
    /// Lower is preferred among routes of equal prefix length.
    pub metric: u32,
}

impl Route {
    /// The route an address makes local, as Linux adds to its local table: `addr` is the
    /// address as assigned (`127.0.0.1/8`); the route covers its network (`127.0.0.0/8`) and
    /// prefers the address itself as source. Linux makes a whole prefix local only on `lo`;
    /// for an address on another interface pass [`Cidr::host`] of it.
    pub fn local(addr: Cidr, iface: InterfaceId) -> Route {
        Route {
            dest: addr.network(),
            kind: RouteKind::Local,
            iface,
            gateway: None,
            src: Some(addr.addr()),
            metric: 0,
        }
    }

    /// A connected route: `dest` is reached directly on `iface`, from `src`
    /// (`192.0.2.0/24 dev tun0 proto kernel scope link src 192.0.2.1`).
    pub fn connected(dest: Cidr, iface: InterfaceId, src: IpAddr) -> Route {
        Route {
            dest: dest.network(),
            kind: RouteKind::Unicast,
            iface,
            gateway: None,
            src: Some(src),
            metric: 0,
        }
    }

    /// A route through a router (`default via 192.0.2.254 dev tun0`).
    pub fn via(dest: Cidr, gateway: IpAddr, iface: InterfaceId) -> Route {
        Route {
            dest: dest.network(),
            kind: RouteKind::Unicast,
            iface,
            gateway: Some(gateway),
            src: None,
            metric: 0,
        }
    }

    /// A route that refuses its destinations (`unreachable 198.51.100.0/24`). Its interface
    /// is [`InterfaceId::LOOPBACK`], a harmless placeholder: nothing is ever sent by it.
    pub fn unreachable(dest: Cidr) -> Route {
        Route {
            dest: dest.network(),
            kind: RouteKind::Unreachable,
            iface: InterfaceId::LOOPBACK,
            gateway: None,
            src: None,
            metric: 0,
        }
    }

    /// The same route with another metric.
    pub fn with_metric(self, metric: u32) -> Route {
        Route { metric, ..self }
    }

    /// The route's scope, derived from its shape as Linux derives the default: local routes
    /// are `host`, routes without a gateway `link`, the rest `global`.
    pub fn scope(&self) -> Scope {
        match (self.kind, self.gateway) {
            (RouteKind::Local, _) => Scope::Host,
            (RouteKind::Unicast, None) => Scope::Link,
            _ => Scope::Global,
        }
    }
}

/// The name iproute2 prints for an interface it cannot name: `if` and the index.
fn index_name(id: InterfaceId) -> String {
    format!("if{}", id.0)
}

impl fmt::Display for Route {
    /// The `ip route show` line, naming interfaces by index (`dev if2`); use
    /// [`render_route`] to print their names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&render_route(self, &index_name))
    }
}

/// Why a route could not be added, removed or found.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RouteError {
    /// No route matches: the socket layer reports it as "Network is unreachable"
    /// (`ENETUNREACH`).
    #[error("network is unreachable: no route to {0}")]
    NoRoute(IpAddr),
    /// An [`RouteKind::Unreachable`] route matches: the socket layer reports it as "No
    /// route to host" (`EHOSTUNREACH`).
    #[error("no route to host {0}: an unreachable route covers it")]
    Unreachable(IpAddr),
    /// A route matches, but no interface has an address of the destination's family.
    #[error("no source address to reach {0}")]
    NoSource(IpAddr),
    /// A route with this destination and metric is already in the table.
    #[error("a route to {dest} with metric {metric} already exists")]
    Exists {
        /// The destination.
        dest: Cidr,
        /// The metric.
        metric: u32,
    },
    /// No route has this destination and metric.
    #[error("no route to {dest} with metric {metric}")]
    NotFound {
        /// The destination.
        dest: Cidr,
        /// The metric.
        metric: u32,
    },
    /// A gateway or source address of the other family than the destination.
    #[error("{addr} is not of the same address family as {dest}")]
    FamilyMismatch {
        /// The route's destination.
        dest: Cidr,
        /// The offending gateway or source.
        addr: IpAddr,
    },
    /// A gateway on a local or unreachable route: only unicast routes forward to a router.
    #[error("only a unicast route may have a gateway (route to {0})")]
    GatewayNotAllowed(Cidr),
}

/// The address as a number, for ordering and for keys ([`addr::bits`]): the two families
/// never share a map, so they cannot collide.
fn key(a: IpAddr) -> u128 {
    addr::bits(a)
}

/// One table (local or main) of one family: prefix length -> network -> routes, each bucket
/// sorted by metric with at most one route per metric, so its first route is the best.
#[derive(Debug, Clone, Default)]
struct PrefixTable {
    levels: BTreeMap<u8, BTreeMap<u128, Vec<Route>>>,
}

impl PrefixTable {
    fn bucket(&self, dest: Cidr) -> Option<&Vec<Route>> {
        self.levels.get(&dest.prefix_len())?.get(&key(dest.addr()))
    }

    fn has(&self, dest: Cidr, metric: u32) -> bool {
        self.bucket(dest)
            .is_some_and(|b| b.iter().any(|r| r.metric == metric))
    }

    /// Removes and returns the route with this destination and metric, dropping an emptied
    /// bucket and level so lookups never visit them.
    fn take(&mut self, dest: Cidr, metric: u32) -> Option<Route> {
        let (len, net) = (dest.prefix_len(), key(dest.addr()));
        let nets = self.levels.get_mut(&len)?;
        let bucket = nets.get_mut(&net)?;
        let route = bucket.remove(bucket.iter().position(|r| r.metric == metric)?);
        if bucket.is_empty() {
            nets.remove(&net);
        }
        if nets.is_empty() {
            self.levels.remove(&len);
        }
        Some(route)
    }

    /// Inserts a route whose destination and metric the caller checked are new.
    fn insert(&mut self, route: Route) {
        let bucket = self
            .levels
            .entry(route.dest.prefix_len())
            .or_default()
            .entry(key(route.dest.addr()))
            .or_default();
        let at = bucket.partition_point(|r| r.metric <= route.metric);
        bucket.insert(at, route);
    }

    /// Longest prefix first; within it the bucket's first route has the lowest metric.
    fn lookup(&self, dst: IpAddr) -> Option<&Route> {
        self.levels.iter().rev().find_map(|(&len, nets)| {
            nets.get(&key(addr::mask(dst, len)))
                .and_then(|bucket| bucket.first())
        })
    }

    /// Removes every route `pred` selects, dropping emptied buckets and levels as `take`
    /// does.
    fn remove_where(&mut self, mut pred: impl FnMut(&Route) -> bool) -> Vec<Route> {
        let mut removed = Vec::new();
        for nets in self.levels.values_mut() {
            for bucket in nets.values_mut() {
                let (gone, kept): (Vec<Route>, Vec<Route>) =
                    std::mem::take(bucket).into_iter().partition(&mut pred);
                *bucket = kept;
                removed.extend(gone);
            }
            nets.retain(|_, bucket| !bucket.is_empty());
        }
        self.levels.retain(|_, nets| !nets.is_empty());
        removed
    }

    fn iter(&self) -> impl Iterator<Item = &Route> {
        self.levels
            .values()
            .flat_map(|nets| nets.values().flatten())
    }
}

/// The local and main tables of one family.
#[derive(Debug, Clone, Default)]
struct FamilyTables {
    local: PrefixTable,
    main: PrefixTable,
}

/// The order `ip route show` lists a table in: by network address, then shorter prefix
/// first (so `default` leads), then metric.
fn display_key(route: &Route) -> (u128, u8, u32) {
    (
        key(route.dest.addr()),
        route.dest.prefix_len(),
        route.metric,
    )
}

/// The routes of both families, each in a local and a main table (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    v4: FamilyTables,
    v6: FamilyTables,
}

impl RoutingTable {
    /// An empty table. (The interface table adds the local and connected routes of the
    /// addresses it is given.)
    pub fn new() -> Self {
        Self::default()
    }

    fn family(&self, addr: IpAddr) -> &FamilyTables {
        if addr.is_ipv6() {
            &self.v6
        } else {
            &self.v4
        }
    }

    fn family_mut(&mut self, addr: IpAddr) -> &mut FamilyTables {
        if addr.is_ipv6() {
            &mut self.v6
        } else {
            &mut self.v4
        }
    }

    /// Adds a route, clearing the host bits of its destination.
    ///
    /// Refuses a gateway or source of the other family, a gateway on a route that is not
    /// [`RouteKind::Unicast`], and a second route with the same destination and metric
    /// ([`RouteError::Exists`], Linux's "File exists"). Unlike Linux, that last check spans
    /// the local and main tables, so `(dest, metric)` names exactly one route for
    /// [`remove`](Self::remove).
    pub fn add(&mut self, route: Route) -> Result<(), RouteError> {
        let route = Route {
            dest: route.dest.network(),
            ..route
        };
        let dest = route.dest;
        for addr in [route.gateway, route.src].into_iter().flatten() {
            if addr.is_ipv6() != dest.is_ipv6() {
                return Err(RouteError::FamilyMismatch { dest, addr });
            }
        }
        if route.gateway.is_some() && route.kind != RouteKind::Unicast {
            return Err(RouteError::GatewayNotAllowed(dest));
        }
        let tables = self.family_mut(dest.addr());
        if tables.local.has(dest, route.metric) || tables.main.has(dest, route.metric) {
            return Err(RouteError::Exists {
                dest,
                metric: route.metric,
            });
        }
        match route.kind {
            RouteKind::Local => tables.local.insert(route),
            _ => tables.main.insert(route),
        }
        Ok(())
    }

    /// Removes the route with this destination (host bits ignored) and metric.
    pub fn remove(&mut self, dest: Cidr, metric: u32) -> Result<Route, RouteError> {
        let dest = dest.network();
        let tables = self.family_mut(dest.addr());
        (tables.local.take(dest, metric))
            .or_else(|| tables.main.take(dest, metric))
            .ok_or(RouteError::NotFound { dest, metric })
    }

    /// Removes every route through `iface`, as Linux does when an interface goes away, and
    /// returns them in display order. Unreachable routes go through no interface and stay.
    pub fn remove_iface(&mut self, iface: InterfaceId) -> Vec<Route> {
        let through = |r: &Route| r.iface == iface && r.kind != RouteKind::Unreachable;
        let mut removed = Vec::new();
        for tables in [&mut self.v4, &mut self.v6] {
            for table in [&mut tables.main, &mut tables.local] {
                let mut gone = table.remove_where(through);
                gone.sort_by_key(display_key);
                removed.extend(gone);
            }
        }
        removed
    }

    /// Every route, in the order of `ip route show table all`: IPv4 then IPv6, each family's
    /// main table then its local table, each table by address, prefix length and metric.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        let mut all = Vec::new();
        for tables in [&self.v4, &self.v6] {
            for table in [&tables.main, &tables.local] {
                let mut routes: Vec<&Route> = table.iter().collect();
                routes.sort_by_key(|r| display_key(r));
                all.extend(routes);
            }
        }
        all.into_iter()
    }

    /// How many routes the table holds.
    pub fn len(&self) -> usize {
        let count = |t: &FamilyTables| t.local.iter().count() + t.main.iter().count();
        count(&self.v4) + count(&self.v6)
    }

    /// Whether the table holds no route.
    pub fn is_empty(&self) -> bool {
        self.routes().next().is_none()
    }

    /// The route packets to `dst` take: the local table first, then the main table; in each
    /// the longest prefix, then the lowest metric (RFC 1812 5.2.4.3).
    ///
    /// [`RouteError::Unreachable`] if the best route is an unreachable one,
    /// [`RouteError::NoRoute`] if no route matches.
    pub fn lookup(&self, dst: IpAddr) -> Result<&Route, RouteError> {
        let tables = self.family(dst);
        let route = tables
            .local
            .lookup(dst)
            .or_else(|| tables.main.lookup(dst))
            .ok_or(RouteError::NoRoute(dst))?;
        match route.kind {
            RouteKind::Unreachable => Err(RouteError::Unreachable(dst)),
            RouteKind::Local | RouteKind::Unicast => Ok(route),
        }
    }

    /// What `ip route get dst` answers: the route, its next hop, and the source address.
    ///
    /// A local destination is reached through `lo` whichever interface holds the address:
    /// Linux loops every packet to this host back through `lo`, and so does loopstack.
    ///
    /// `addrs` is every (interface, address) pair of the host in interface-table order
    /// (`InterfaceTable::all_addrs`); an interface's first address of a family is its
    /// primary one. The source is the route's `src` if it has one, else
    /// [`select_source`]'s choice.
    pub fn route_get(
        &self,
        dst: IpAddr,
        addrs: &[(InterfaceId, Cidr)],
    ) -> Result<RouteDecision, RouteError> {
        let route = self.lookup(dst)?;
        let src = match route.src {
            Some(src) => src,
            None => select_source(dst, route.iface, addrs).ok_or(RouteError::NoSource(dst))?,
        };
        let iface = match route.kind {
            RouteKind::Local => InterfaceId::LOOPBACK,
            _ => route.iface,
        };
        Ok(RouteDecision {
            kind: route.kind,
            iface,
            gateway: route.gateway,
            next_hop: route.gateway.unwrap_or(dst),
            src,
        })
    }
}

/// Where a packet goes, as [`RoutingTable::route_get`] decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteDecision {
    /// Local delivery or out of an interface.
    pub kind: RouteKind,
    /// The outgoing interface: `lo` for local delivery.
    pub iface: InterfaceId,
    /// The gateway, if the route has one.
    pub gateway: Option<IpAddr>,
    /// Whom the link layer delivers to: the gateway, or else the destination itself.
    pub next_hop: IpAddr,
    /// The source address to use.
    pub src: IpAddr,
}

/// How many leading bits `src` and `dst` share, counting no further than `src`'s prefix:
/// RFC 6724 2.2's CommonPrefixLen. Zero across families.
fn common_prefix_len(src: &Cidr, dst: IpAddr) -> u32 {
    let shared = match (src.addr(), dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => (u32::from(s) ^ u32::from(d)).leading_zeros(),
        (IpAddr::V6(s), IpAddr::V6(d)) => (u128::from(s) ^ u128::from(d)).leading_zeros(),
        _ => 0,
    };
    shared.min(src.prefix_len().into())
}

/// Chooses a source address for `dst` leaving by interface `out`, from `addrs` (every
/// (interface, address) pair, primary addresses first).
///
/// Only addresses of `dst`'s family are candidates, and loopback addresses only for a
/// loopback destination (RFC 1122 3.2.1.3(g): 127/8 never leaves the host). Then, of RFC
/// 6724 section 5's rules, those our data can decide, in order:
///
/// - rule 1, prefer the destination itself if it is ours;
/// - a loopback destination takes the primary address of `lo` (Linux: `ip route get
///   127.0.0.2` gives `src 127.0.0.1`);
/// - rule 5, prefer an address of the outgoing interface;
/// - rule 8, prefer the longest prefix shared with `dst`;
/// - and then the first in `addrs` order, so the primary address wins ties.
///
/// `None` if no address of the family exists.
pub fn select_source(
    dst: IpAddr,
    out: InterfaceId,
    addrs: &[(InterfaceId, Cidr)],
) -> Option<IpAddr> {
    let dst_loopback = addr::is_loopback(dst);
    let candidates = || {
        addrs.iter().filter(move |(_, c)| {
            c.is_ipv6() == dst.is_ipv6() && (dst_loopback || !addr::is_loopback(c.addr()))
        })
    };
    if candidates().any(|(_, c)| c.addr() == dst) {
        return Some(dst);
    }
    if dst_loopback {
        if let Some((_, c)) = candidates().find(|(id, _)| *id == InterfaceId::LOOPBACK) {
            return Some(c.addr());
        }
    }
    let mut best: Option<((bool, u32), IpAddr)> = None;
    for (id, c) in candidates() {
        let score = (*id == out, common_prefix_len(c, dst));
        // Strictly greater: an earlier address keeps a tie.
        if best.is_none() || best.is_some_and(|(b, _)| score > b) {
            best = Some((score, c.addr()));
        }
    }
    best.map(|(_, a)| a)
}

/// A destination as iproute2 writes it: `default` for /0, a bare address for a host
/// prefix, else `network/length`.
fn dest_text(dest: &Cidr) -> String {
    match dest.prefix_len() {
        0 => "default".to_owned(),
        len if Cidr::host(dest.addr()).prefix_len() == len => dest.addr().to_string(),
        _ => dest.to_string(),
    }
}

/// A route as an `ip route show` line, with interface names from `names`:
/// `local 127.0.0.0/8 dev lo proto kernel scope host src 127.0.0.1`,
/// `192.0.2.0/24 dev tun0 proto kernel scope link src 192.0.2.1`,
/// `default via 192.0.2.254 dev tun0`, `unreachable 198.51.100.0/24`.
///
/// loopstack does not record who added a route, so `proto kernel` is printed for the shapes
/// the kernel adds for an address: local routes, and gateway-less routes with a `src`.
/// `metric` is printed when not zero; `scope global` never is, as iproute2 omits it.
pub fn render_route(route: &Route, names: &dyn Fn(InterfaceId) -> String) -> String {
    let dest = dest_text(&route.dest);
    let mut parts = match route.kind {
        RouteKind::Unreachable => vec![format!("unreachable {dest}")],
        RouteKind::Local => vec![format!("local {dest}")],
        RouteKind::Unicast => vec![dest],
    };
    if route.kind != RouteKind::Unreachable {
        if let Some(gw) = route.gateway {
            parts.push(format!("via {gw}"));
        }
        parts.push(format!("dev {}", names(route.iface)));
        let kernel =
            route.kind == RouteKind::Local || (route.gateway.is_none() && route.src.is_some());
        if kernel {
            parts.push("proto kernel".to_owned());
        }
        if route.scope() != Scope::Global {
            parts.push(format!("scope {}", route.scope()));
        }
        if let Some(src) = route.src {
            parts.push(format!("src {src}"));
        }
    }
    if route.metric != 0 {
        parts.push(format!("metric {}", route.metric));
    }
    parts.join(" ")
}

/// A decision as `ip route get` prints its first line: `local 127.0.0.2 dev lo src
/// 127.0.0.1`, `192.0.2.7 dev tun0 src 192.0.2.1`, `8.8.8.8 via 192.0.2.254 dev tun0 src
/// 192.0.2.1`.
pub fn render_decision(
    dst: IpAddr,
    decision: &RouteDecision,
    names: &dyn Fn(InterfaceId) -> String,
) -> String {
    let local = if decision.kind == RouteKind::Local {
        "local "
    } else {
        ""
    };
    let via = decision
        .gateway
        .map(|gw| format!(" via {gw}"))
        .unwrap_or_default();
    format!(
        "{local}{dst}{via} dev {} src {}",
        names(decision.iface),
        decision.src
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use super::*;

    const LO: InterfaceId = InterfaceId::LOOPBACK;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn names(id: InterfaceId) -> String {
        match id.0 {
            1 => "lo".to_owned(),
            2 => "tun0".to_owned(),
            n => format!("if{n}"),
        }
    }

    /// Parses an `ip route show` line as [`render_route`] writes it with [`names`], so the
    /// tests can state routes the way Linux prints them. `default` is IPv6 if the gateway is.
    fn r(line: &str) -> Route {
        let mut words = line.split_whitespace().peekable();
        let kind = match words.peek() {
            Some(&"local") => RouteKind::Local,
            Some(&"unreachable") => RouteKind::Unreachable,
            _ => RouteKind::Unicast,
        };
        if kind != RouteKind::Unicast {
            words.next();
        }
        let dest = words.next().unwrap();
        let mut route = Route::unreachable(cidr("0.0.0.0/0"));
        route.kind = kind;
        while let (Some(key), Some(val)) = (words.next(), words.next()) {
            match key {
                "via" => route.gateway = Some(ip(val)),
                "src" => route.src = Some(ip(val)),
                "metric" => route.metric = val.parse().unwrap(),
                "dev" => {
                    route.iface = match val {
                        "lo" => LO,
                        "tun0" => InterfaceId(2),
                        n => InterfaceId(n.strip_prefix("if").unwrap().parse().unwrap()),
                    }
                }
                "proto" | "scope" => {}
                _ => panic!("{line}"),
            }
        }
        route.dest = match dest {
            "default" if route.gateway.is_some_and(|g| g.is_ipv6()) => cidr("::/0"),
            "default" => cidr("0.0.0.0/0"),
            d => cidr(d),
        };
        route
    }

    fn table(lines: &[impl AsRef<str>]) -> RoutingTable {
        let mut t = RoutingTable::new();
        for line in lines {
            let line = line.as_ref();
            t.add(r(line)).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
        t
    }

    /// Overlapping prefixes of every length, each on its own interface.
    const NESTED: &[&str] = &[
        "default via 10.9.9.9 dev tun0",
        "10.0.0.0/8 dev if3 scope link",
        "10.1.0.0/16 dev if4 scope link",
        "10.1.2.0/24 dev if5 scope link",
        "10.1.2.3 dev if6 scope link",
        "default via 2001:db8::9 dev tun0",
        "2001:db8::/32 dev if3 scope link",
        "2001:db8:1::/48 dev if4 scope link",
        "2001:db8:1:2::/64 dev if5 scope link",
        "2001:db8:1:2::3 dev if6 scope link",
    ];

    #[test]
    fn longest_prefix_wins() {
        let t = table(NESTED);
        let cases = [
            ("10.1.2.3", 6),
            ("10.1.2.4", 5),
            ("10.1.3.1", 4),
            ("10.2.0.1", 3),
            ("11.0.0.1", 2),
            ("2001:db8:1:2::3", 6),
            ("2001:db8:1:2::4", 5),
            ("2001:db8:1:3::1", 4),
            ("2001:db8:2::1", 3),
            ("2001:db9::1", 2),
        ];
        for (dst, iface) in cases {
            assert_eq!(
                t.lookup(ip(dst)).unwrap().iface,
                InterfaceId(iface),
                "{dst}"
            );
        }
    }

    #[test]
    fn lowest_metric_wins_among_equal_prefixes() {
        for dest in ["192.0.2.0/24", "2001:db8::/64"] {
            let mut t = table(&[
                format!("{dest} dev tun0 metric 100"),
                format!("{dest} dev if3 metric 50"),
                format!("{dest} dev if4 metric 200"),
            ]);
            let dst = cidr(dest).addr();
            assert_eq!(t.lookup(dst).unwrap().iface, InterfaceId(3), "{dest}");
            t.remove(cidr(dest), 50).unwrap();
            assert_eq!(t.lookup(dst).unwrap().iface, InterfaceId(2), "{dest}");
            // An unreachable route with a better metric shadows the rest.
            t.add(r(&format!("unreachable {dest} metric 1"))).unwrap();
            assert_eq!(t.lookup(dst), Err(RouteError::Unreachable(dst)));
        }
    }

    /// Equal prefix and metric is the same route key: the first route added keeps it, and
    /// a second is refused, whichever table it would go to.
    #[test]
    fn first_added_keeps_its_place() {
        for dest in ["192.0.2.0/24", "2001:db8::/64"] {
            let mut t = table(&[format!("{dest} dev tun0")]);
            let exists = Err(RouteError::Exists {
                dest: cidr(dest),
                metric: 0,
            });
            for kind in ["", "local ", "unreachable "] {
                assert_eq!(t.add(r(&format!("{kind}{dest} dev if3"))), exists, "{kind}");
            }
            assert_eq!(t.lookup(cidr(dest).addr()).unwrap().iface, InterfaceId(2));
            assert_eq!(t.len(), 1);
        }
    }

    #[test]
    fn display_order_does_not_depend_on_insertion_order() {
        let mut lines = NESTED.to_vec();
        lines.push("local 10.1.2.1 dev if5");
        lines.reverse();
        let shown: Vec<String> = table(&lines)
            .routes()
            .map(|r| render_route(r, &names))
            .collect();
        let mut want = NESTED.to_vec();
        want.insert(5, "local 10.1.2.1 dev if5 proto kernel scope host");
        assert_eq!(shown, want);
    }

    #[test]
    fn local_table_is_consulted_first() {
        let t = table(&[
            "local 127.0.0.0/8 dev lo src 127.0.0.1",
            "127.0.0.2 via 192.0.2.254 dev tun0",
            "local 192.0.2.1 dev tun0 src 192.0.2.1",
            "192.0.2.0/24 dev tun0 src 192.0.2.1",
            "local ::1 dev lo src ::1",
            "default via 2001:db8::ff dev tun0",
        ]);
        let cases = [
            ("127.0.0.2", RouteKind::Local, "127.0.0.0/8"),
            ("192.0.2.1", RouteKind::Local, "192.0.2.1/32"),
            ("192.0.2.2", RouteKind::Unicast, "192.0.2.0/24"),
            ("::1", RouteKind::Local, "::1/128"),
            ("::2", RouteKind::Unicast, "::/0"),
        ];
        for (dst, kind, dest) in cases {
            let route = t.lookup(ip(dst)).unwrap();
            assert_eq!((route.kind, route.dest), (kind, cidr(dest)), "{dst}");
        }
    }

    #[test]
    fn unreachable_and_no_route_are_different_errors() {
        let t = table(&[
            "unreachable 198.51.100.0/24",
            "198.51.100.0/25 dev tun0",
            "unreachable 2001:db8:dead::/48",
        ]);
        let cases = [
            ("198.51.100.200", "unreachable"),
            ("198.51.100.7", "ok"),
            ("203.0.113.1", "no route"),
            ("2001:db8:dead::1", "unreachable"),
            ("2001:db8:beef::1", "no route"),
            ("::1", "no route"),
        ];
        for (dst, want) in cases {
            let dst = ip(dst);
            let want = match want {
                "unreachable" => Err(RouteError::Unreachable(dst)),
                "no route" => Err(RouteError::NoRoute(dst)),
                _ => Ok(()),
            };
            assert_eq!(t.lookup(dst).map(|_| ()), want, "{dst}");
        }
        let msg = RouteError::NoRoute(ip("203.0.113.1")).to_string();
        assert_eq!(msg, "network is unreachable: no route to 203.0.113.1");
    }

    #[test]
    fn remove_and_remove_iface() {
        let mut t = table(NESTED);
        t.add(r("unreachable 198.51.100.0/24")).unwrap();
        let removed = t.remove(cidr("10.1.2.99/24"), 0).unwrap();
        assert_eq!(removed, r("10.1.2.0/24 dev if5 scope link"));
        let gone = RouteError::NotFound {
            dest: cidr("10.1.2.0/24"),
            metric: 0,
        };
        assert_eq!(t.remove(cidr("10.1.2.0/24"), 0), Err(gone));
        assert_eq!(t.lookup(ip("10.1.2.4")).unwrap().dest, cidr("10.1.0.0/16"));
        assert!(t.remove(cidr("10.1.0.0/16"), 7).is_err());

        let removed = t.remove_iface(InterfaceId(2));
        assert_eq!(removed, [r(NESTED[0]), r(NESTED[5])]);
        for dst in ["11.0.0.1", "2001:db9::1"] {
            assert_eq!(t.lookup(ip(dst)), Err(RouteError::NoRoute(ip(dst))));
        }
        assert!(
            t.remove_iface(LO).is_empty(),
            "unreachable routes use no interface"
        );
        assert!(t.remove_iface(InterfaceId(2)).is_empty());
        assert_eq!(t.len(), 8);
    }

    #[test]
    fn bad_routes_are_refused() {
        let mut t = RoutingTable::new();
        let mismatched = [
            ("192.0.2.0/24 via 2001:db8::1 dev tun0", "2001:db8::1"),
            ("2001:db8::/64 via 192.0.2.1 dev tun0", "192.0.2.1"),
            ("192.0.2.0/24 dev tun0 src ::1", "::1"),
            ("local ::1 dev lo src 127.0.0.1", "127.0.0.1"),
        ];
        for (line, addr) in mismatched {
            let (dest, addr) = (r(line).dest, ip(addr));
            let err = t.add(r(line)).unwrap_err();
            assert_eq!(err, RouteError::FamilyMismatch { dest, addr }, "{line}");
        }
        for line in [
            "unreachable 192.0.2.0/24 via 192.0.2.9",
            "local 2001:db8::/64 via 2001:db8::9 dev lo",
        ] {
            let err = t.add(r(line)).unwrap_err();
            assert_eq!(err, RouteError::GatewayNotAllowed(r(line).dest), "{line}");
        }
        assert!(t.is_empty());
        let err = t.add(r("10.0.0.0/8 via ::2 dev tun0")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "::2 is not of the same address family as 10.0.0.0/8"
        );
    }

    #[test]
    fn route_get_selects_next_hop_and_source() {
        let mut t = table(&[
            "local 127.0.0.0/8 dev lo src 127.0.0.1",
            "local 127.0.0.0/8 dev lo metric 1",
            "local ::1 dev lo src ::1",
            "local 192.0.2.1 dev tun0 src 192.0.2.1",
            "192.0.2.0/24 dev tun0",
            "default via 192.0.2.254 dev tun0",
            "203.0.113.0/24 dev if3",
            "100.64.0.0/10 dev if4",
            "2001:db8::/64 dev tun0 src 2001:db8::1",
            "default via 2001:db8::ff dev tun0",
        ]);
        let addrs: Vec<(InterfaceId, Cidr)> = [
            (1, "127.0.0.1/8"),
            (1, "::1/128"),
            (2, "192.0.2.1/24"),
            (2, "198.51.100.9/24"),
            (2, "2001:db8::1/64"),
            (3, "203.0.113.5/24"),
        ]
        .map(|(id, c)| (InterfaceId(id), cidr(c)))
        .to_vec();
        // `ip route get` output; the destination is its first address.
        let cases = [
            "local 127.0.0.2 dev lo src 127.0.0.1",
            "local 127.0.0.1 dev lo src 127.0.0.1",
            "local ::1 dev lo src ::1",
            // Local delivery always goes through lo, as on Linux.
            "local 192.0.2.1 dev lo src 192.0.2.1",
            "192.0.2.7 dev tun0 src 192.0.2.1",
            "8.8.8.8 via 192.0.2.254 dev tun0 src 192.0.2.1",
            "198.51.100.77 via 192.0.2.254 dev tun0 src 198.51.100.9",
            "203.0.113.9 dev if3 src 203.0.113.5",
            // Interface 4 has no address: another interface's, but never 127/8.
            "100.64.0.9 dev if4 src 192.0.2.1",
            "2001:db8::7 dev tun0 src 2001:db8::1",
            "2001:db8:5::1 via 2001:db8::ff dev tun0 src 2001:db8::1",
        ];
        for line in cases {
            let dst = ip(line.trim_start_matches("local ").split(' ').next().unwrap());
            let d = t.route_get(dst, &addrs).unwrap();
            assert_eq!(render_decision(dst, &d, &names), line);
            assert_eq!(d.next_hop, d.gateway.unwrap_or(dst), "{line}");
        }
        let d = t.route_get(ip("8.8.8.8"), &addrs).unwrap();
        assert_eq!(d.next_hop, ip("192.0.2.254"));

        // Without a route `src`, a loopback destination gets lo's primary address.
        t.remove(cidr("127.0.0.0/8"), 0).unwrap();
        let d = t.route_get(ip("127.0.0.2"), &addrs).unwrap();
        assert_eq!((d.kind, d.src), (RouteKind::Local, ip("127.0.0.1")));
        // With no IPv6 address, only a route's own `src` gives an IPv6 source.
        let v4_only: Vec<_> = addrs
            .iter()
            .filter(|(_, c)| !c.is_ipv6())
            .copied()
            .collect();
        let dst = ip("2001:db8:5::1");
        assert_eq!(t.route_get(dst, &v4_only), Err(RouteError::NoSource(dst)));
        let d = t.route_get(ip("2001:db8::7"), &v4_only).unwrap();
        assert_eq!(d.src, ip("2001:db8::1"));
    }

    #[test]
    fn constructors_render_like_ip_route_show() {
        let (tun0, if7) = (InterfaceId(2), InterfaceId(7));
        let no_src = |route: Route| Route { src: None, ..route };
        let cases = [
            (
                Route::local(cidr("127.0.0.1/8"), LO),
                "local 127.0.0.0/8 dev lo proto kernel scope host src 127.0.0.1",
            ),
            (
                Route::local(cidr("::1/128"), LO),
                "local ::1 dev lo proto kernel scope host src ::1",
            ),
            (
                Route::connected(cidr("192.0.2.1/24"), tun0, ip("192.0.2.1")),
                "192.0.2.0/24 dev tun0 proto kernel scope link src 192.0.2.1",
            ),
            (
                Route::connected(cidr("2001:db8::1/64"), tun0, ip("2001:db8::1")),
                "2001:db8::/64 dev tun0 proto kernel scope link src 2001:db8::1",
            ),
            (
                no_src(Route::connected(cidr("10.0.0.0/8"), if7, ip("10.0.0.1"))),
                "10.0.0.0/8 dev if7 scope link",
            ),
            (
                Route::via(cidr("0.0.0.0/0"), ip("192.0.2.254"), tun0),
                "default via 192.0.2.254 dev tun0",
            ),
            (
                Route::via(cidr("::/0"), ip("2001:db8::ff"), tun0).with_metric(1024),
                "default via 2001:db8::ff dev tun0 metric 1024",
            ),
            (
                Route::via(cidr("10.0.0.0/8"), ip("192.0.2.9"), if7).with_metric(5),
                "10.0.0.0/8 via 192.0.2.9 dev if7 metric 5",
            ),
            (
                Route::unreachable(cidr("198.51.100.0/24")),
                "unreachable 198.51.100.0/24",
            ),
            (
                Route::unreachable(cidr("2001:db8:dead::/48")).with_metric(5),
                "unreachable 2001:db8:dead::/48 metric 5",
            ),
        ];
        for (route, line) in cases {
            assert_eq!(render_route(&route, &names), line);
            assert_eq!(r(line), route, "{line}");
            // `Display` knows no names: iproute2's `if<index>`.
            let by_index = line
                .replace("dev lo", "dev if1")
                .replace("dev tun0", "dev if2");
            assert_eq!(route.to_string(), by_index);
        }
    }

    /// 2,000 routes (10.x.y.0/24 and 2001:db8:i::/48, 1,000 of each) under a few wider ones,
    /// against a brute-force scan: local first, then longest prefix, then lowest metric.
    #[test]
    fn a_thousand_routes_match_a_linear_scan() {
        let mut t = table(&[
            "default via 192.0.2.254 dev if9",
            "10.0.0.0/8 via 192.0.2.254 dev if9 metric 3",
            "10.1.0.0/16 via 192.0.2.253 dev if9",
            "10.1.0.0/16 via 192.0.2.252 dev if9 metric 1",
            // A local /16 shadows the longer main-table /24s inside it.
            "local 10.2.0.0/16 dev if5 src 10.2.3.4",
            "unreachable 10.3.0.0/16",
            "default via 2001:db8::ff dev if9",
            "2001:db8::/32 via 2001:db8::fe dev if9",
        ]);
        for i in 0..1000u16 {
            let iface = InterfaceId(2 + u32::from(i % 3));
            let v4 = Cidr::new(IpAddr::from([10, (i / 250) as u8, (i % 250) as u8, 0]), 24);
            let v6 = Cidr::new(IpAddr::from([0x2001, 0xdb8, i, 0, 0, 0, 0, 0]), 48);
            let v4 = Route::via(v4.unwrap(), ip("192.0.2.254"), iface);
            t.add(v4.with_metric(u32::from(i % 7))).unwrap();
            t.add(Route::via(v6.unwrap(), ip("2001:db8::ff"), iface))
                .unwrap();
        }
        assert_eq!(t.len(), 2008);

        let all: Vec<&Route> = t.routes().collect();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for n in 0..4000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let bits = (x >> 16) as u32;
            let dst = match n % 4 {
                0 => IpAddr::from(bits.to_be_bytes()),
                1 => IpAddr::from([10, (bits % 6) as u8, (bits >> 8) as u8, (bits >> 16) as u8]),
                2 => IpAddr::from([0x2001, 0xdb8, (bits % 1100) as u16, bits as u16, 0, 0, 0, 1]),
                _ => IpAddr::V6(Ipv6Addr::from(u128::from(x) << 64 | u128::from(bits))),
            };
            let best = all
                .iter()
                .copied()
                .filter(|r| r.dest.contains(dst))
                .min_by_key(|r| {
                    let rank = (r.kind != RouteKind::Local, u8::MAX - r.dest.prefix_len());
                    (rank, r.metric)
                });
            let want = match best {
                None => Err(RouteError::NoRoute(dst)),
                Some(r) if r.kind == RouteKind::Unreachable => Err(RouteError::Unreachable(dst)),
                Some(r) => Ok(r),
            };
            assert_eq!(t.lookup(dst), want, "{dst}");
        }
    }
}
