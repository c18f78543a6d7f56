//! The interface table: which interfaces the stack has, their MTUs and their addresses.
//!
//! `lo` always exists, as interface 1, with 127.0.0.1/8 and ::1/128. More interfaces (a TUN
//! device, a simulated link) are added with their own addresses and MTUs.
//!
//! Which addresses are *local* follows Linux. Adding `127.0.0.1/8` to `lo` creates the route
//! `local 127.0.0.0/8 dev lo` in the kernel's local table, so every address of 127.0.0.0/8
//! is local: 127.0.0.2 and 127.255.255.254 answer like 127.0.0.1. On other interfaces only
//! the address itself is local, not the rest of its prefix. ::1/128 makes only ::1 local.

use std::fmt::{self, Write as _};
use std::net::IpAddr;

use loopstack_link::LinkStats;
use thiserror::Error;

use crate::addr::{is_loopback, mask_v4, mask_v6, Cidr};

/// An interface's index, as Linux numbers them: `lo` is 1, others follow in order of
/// creation. Stable for the life of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InterfaceId(pub u32);

impl InterfaceId {
    /// `lo`, always index 1.
    pub const LOOPBACK: InterfaceId = InterfaceId(1);
}

impl fmt::Display for InterfaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What kind of link an interface sits on. It decides the martian rules (loopback addresses
/// only on loopback interfaces) and how `ip addr` shows the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InterfaceKind {
    /// The loopback device.
    Loopback,
    /// A point-to-point IP link without link-layer addresses: a TUN device, or a simulated
    /// link between two stacks.
    PointToPoint,
}

/// One interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    id: InterfaceId,
    name: String,
    kind: InterfaceKind,
    mtu: usize,
    up: bool,
    addrs: Vec<Cidr>,
}

impl Interface {
    /// Index.
    pub fn id(&self) -> InterfaceId {
        self.id
    }
    /// Name, e.g. `lo`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Link kind.
    pub fn kind(&self) -> InterfaceKind {
        self.kind
    }
    /// Whether this is a loopback interface.
    pub fn is_loopback(&self) -> bool {
        self.kind == InterfaceKind::Loopback
    }
    /// MTU in bytes.
    pub fn mtu(&self) -> usize {
        self.mtu
    }
    /// Whether the interface is administratively up.
    pub fn is_up(&self) -> bool {
        self.up
    }
    /// Addresses, in the order they were added (IPv4 and IPv6 mixed).
    pub fn addrs(&self) -> &[Cidr] {
        &self.addrs
    }
    /// The first address of the given family: the primary address, as Linux calls it.
    pub fn primary(&self, ipv6: bool) -> Option<Cidr> {
        self.addrs.iter().copied().find(|c| c.is_ipv6() == ipv6)
    }
    /// Whether `addr` is local to this interface: one of its addresses, or, on a loopback
    /// interface, anywhere in the prefix of one of its addresses.
    pub fn is_local(&self, addr: IpAddr) -> bool {
        self.addrs.iter().any(|c| {
            if self.is_loopback() {
                c.contains(addr)
            } else {
                c.addr() == addr
            }
        })
    }
}

/// Why an interface-table change was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IfaceError {
    /// No interface has that index or name.
    #[error("no such interface: {0}")]
    NoSuchInterface(String),
    /// The name is already taken.
    #[error("interface name {0:?} is already in use")]
    NameInUse(String),
    /// Names are 1 to 15 bytes of printable ASCII without `/` or white space (Linux's
    /// `IFNAMSIZ` is 16 with the terminating NUL).
    #[error("invalid interface name {0:?}: 1 to 15 printable characters, no '/' or spaces")]
    BadName(String),
    /// The address is already on that interface.
    #[error("address {0} already assigned")]
    AddressExists(Cidr),
    /// The address is not on that interface.
    #[error("address {0} not assigned")]
    AddressNotFound(Cidr),
    /// Loopback addresses belong on loopback interfaces only (RFC 1122 3.2.1.3(g)).
    #[error("loopback address {0} cannot be assigned to a non-loopback interface")]
    LoopbackOnWire(Cidr),
    /// The MTU is below the minimum: 68 bytes for IPv4 (RFC 791), 1280 if the interface has
    /// IPv6 addresses (RFC 8200 5).
    #[error("MTU {mtu} is below the minimum of {min} bytes")]
    MtuTooSmall {
        /// MTU given.
        mtu: usize,
        /// Minimum that applies.
        min: usize,
    },
}

/// Whether `cidr` may be assigned to an interface of `kind` with `mtu`, whatever else the
/// interface has: loopback addresses belong on loopback interfaces only (RFC 1122
/// 3.2.1.3(g)), and IPv6 needs an MTU of at least 1280 (RFC 8200 5). Lets a caller check
/// a whole list of addresses before it creates anything.
pub fn check_addr(kind: InterfaceKind, mtu: usize, cidr: Cidr) -> Result<(), IfaceError> {
    if kind != InterfaceKind::Loopback && is_loopback(cidr.addr()) {
        return Err(IfaceError::LoopbackOnWire(cidr));
    }
    if cidr.is_ipv6() && mtu < MIN_MTU_V6 {
        return Err(IfaceError::MtuTooSmall {
            mtu,
            min: MIN_MTU_V6,
        });
    }
    Ok(())
}

/// IPv4's minimum MTU (RFC 791: every host accepts 68-byte datagrams unfragmented).
pub const MIN_MTU_V4: usize = 68;
/// IPv6's minimum link MTU (RFC 8200 section 5).
pub const MIN_MTU_V6: usize = 1280;

/// The stack's interfaces, in index order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceTable {
    ifaces: Vec<Interface>,
    /// What [`is_local`](Self::is_local) asks on every packet that arrives, as (address,
    /// mask) pairs of integers: an up interface's address with its prefix's mask on a
    /// loopback interface, or all ones (the address alone) on another. Walking the
    /// interfaces and their `Cidr`s instead cost about 60 instructions per packet
    /// (docs/benchmarks.md, item 20). Rebuilt by every method that changes an address or
    /// an interface's state.
    local4: Vec<(u32, u32)>,
    local6: Vec<(u128, u128)>,
}

impl Default for InterfaceTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InterfaceTable {
    /// A table holding `lo`: index 1, MTU 65536, up, with 127.0.0.1/8 and ::1/128.
    pub fn new() -> Self {
        let lo = Interface {
            id: InterfaceId::LOOPBACK,
            name: "lo".to_owned(),
            kind: InterfaceKind::Loopback,
            mtu: 65536,
            up: true,
            addrs: vec![
                "127.0.0.1/8".parse().expect("literal"),
                "::1/128".parse().expect("literal"),
            ],
        };
        let mut table = InterfaceTable {
            ifaces: vec![lo],
            local4: Vec::new(),
            local6: Vec::new(),
        };
        table.reindex();
        table
    }

    /// Rebuilds `local4` and `local6` from the interfaces.
    fn reindex(&mut self) {
        self.local4.clear();
        self.local6.clear();
        for i in self.ifaces.iter().filter(|i| i.up) {
            for c in &i.addrs {
                // On a loopback interface the whole prefix is ours (Linux's `local` route
                // for 127.0.0.0/8); elsewhere only the address itself.
                let len = if i.is_loopback() { c.prefix_len() } else { 128 };
                match c.addr() {
                    IpAddr::V4(a) => self.local4.push((u32::from(a), mask_v4(len))),
                    IpAddr::V6(a) => self.local6.push((u128::from(a), mask_v6(len))),
                }
            }
        }
    }

    /// Adds an interface (up, no addresses) and returns its index: one more than the highest.
    pub fn add(
        &mut self,
        name: &str,
        kind: InterfaceKind,
        mtu: usize,
    ) -> Result<InterfaceId, IfaceError> {
        let valid = !name.is_empty()
            && name.len() <= 15
            && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
        if !valid {
            return Err(IfaceError::BadName(name.to_owned()));
        }
        if self.by_name(name).is_some() {
            return Err(IfaceError::NameInUse(name.to_owned()));
        }
        if mtu < MIN_MTU_V4 {
            return Err(IfaceError::MtuTooSmall {
                mtu,
                min: MIN_MTU_V4,
            });
        }
        let id = InterfaceId(self.ifaces.last().map_or(1, |i| i.id.0 + 1));
        self.ifaces.push(Interface {
            id,
            name: name.to_owned(),
            kind,
            mtu,
            up: true,
            addrs: Vec::new(),
        });
        Ok(id)
    }

    fn get_mut(&mut self, id: InterfaceId) -> Result<&mut Interface, IfaceError> {
        self.ifaces
            .iter_mut()
            .find(|i| i.id == id)
            .ok_or_else(|| IfaceError::NoSuchInterface(id.to_string()))
    }

    /// Adds an address to an interface.
    pub fn add_addr(&mut self, id: InterfaceId, cidr: Cidr) -> Result<(), IfaceError> {
        let iface = self.get_mut(id)?;
        check_addr(iface.kind, iface.mtu, cidr)?;
        if iface.addrs.contains(&cidr) {
            return Err(IfaceError::AddressExists(cidr));
        }
        iface.addrs.push(cidr);
        self.reindex();
        Ok(())
    }

    /// Removes an address from an interface.
    pub fn remove_addr(&mut self, id: InterfaceId, cidr: Cidr) -> Result<(), IfaceError> {
        let iface = self.get_mut(id)?;
        let pos = iface
            .addrs
            .iter()
            .position(|c| *c == cidr)
            .ok_or(IfaceError::AddressNotFound(cidr))?;
        iface.addrs.remove(pos);
        self.reindex();
        Ok(())
    }

    /// Brings an interface up or down. A down interface neither sends nor receives, and its
    /// addresses stop being local.
    pub fn set_up(&mut self, id: InterfaceId, up: bool) -> Result<(), IfaceError> {
        self.get_mut(id)?.up = up;
        self.reindex();
        Ok(())
    }

    /// Changes an interface's MTU, within the minimums its addresses require.
    pub fn set_mtu(&mut self, id: InterfaceId, mtu: usize) -> Result<(), IfaceError> {
        let iface = self.get_mut(id)?;
        let min = if iface.addrs.iter().any(Cidr::is_ipv6) {
            MIN_MTU_V6
        } else {
            MIN_MTU_V4
        };
        if mtu < min {
            return Err(IfaceError::MtuTooSmall { mtu, min });
        }
        iface.mtu = mtu;
        Ok(())
    }

    /// The interface with index `id`.
    pub fn get(&self, id: InterfaceId) -> Option<&Interface> {
        self.ifaces.iter().find(|i| i.id == id)
    }

    /// The interface named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Interface> {
        self.ifaces.iter().find(|i| i.name == name)
    }

    /// Every interface, in index order.
    pub fn iter(&self) -> impl Iterator<Item = &Interface> {
        self.ifaces.iter()
    }

    /// The up interface to which `addr` is local, if any (see the module docs for the rule).
    pub fn local_iface(&self, addr: IpAddr) -> Option<InterfaceId> {
        self.ifaces
            .iter()
            .find(|i| i.up && i.is_local(addr))
            .map(|i| i.id)
    }

    /// Whether `addr` is one of this host's addresses: local to an up interface, by the
    /// rule of [`Interface::is_local`]. The same answer as
    /// [`local_iface`](Self::local_iface)`.is_some()`, from integers kept for the purpose.
    pub fn is_local(&self, addr: IpAddr) -> bool {
        match addr {
            IpAddr::V4(a) => {
                let a = u32::from(a);
                self.local4
                    .iter()
                    .any(|&(ours, mask)| (a ^ ours) & mask == 0)
            }
            IpAddr::V6(a) => {
                let a = u128::from(a);
                self.local6
                    .iter()
                    .any(|&(ours, mask)| (a ^ ours) & mask == 0)
            }
        }
    }

    /// Every (interface, address) pair, in index order: the input of source address
    /// selection.
    pub fn all_addrs(&self) -> impl Iterator<Item = (InterfaceId, Cidr)> + '_ {
        self.ifaces
            .iter()
            .flat_map(|i| i.addrs.iter().map(move |c| (i.id, *c)))
    }

    /// `ip addr show [DEV]` in Linux's format, with `ip -s` counters when `stats` returns
    /// them for an interface. Fails with `NoSuchInterface` for an unknown `dev`.
    pub fn render_ip_addr(
        &self,
        dev: Option<&str>,
        stats: &dyn Fn(InterfaceId) -> Option<LinkStats>,
    ) -> Result<String, IfaceError> {
        if let Some(name) = dev {
            if self.by_name(name).is_none() {
                return Err(IfaceError::NoSuchInterface(name.to_owned()));
            }
        }
        let mut out = String::new();
        for iface in self
            .ifaces
            .iter()
            .filter(|i| dev.is_none_or(|d| d == i.name))
        {
            render_iface(iface, stats(iface.id), &mut out).expect("writing to a String");
        }
        Ok(out)
    }
}

/// The scope `ip addr` shows: `host` for loopback addresses, `link` for IPv6 link-local
/// (fe80::/10, RFC 4291 2.5.6), `global` otherwise.
fn scope(addr: IpAddr) -> &'static str {
    match addr {
        a if is_loopback(a) => "host",
        IpAddr::V6(a) if a.segments()[0] & 0xffc0 == 0xfe80 => "link",
        _ => "global",
    }
}

fn render_iface(iface: &Interface, stats: Option<LinkStats>, out: &mut String) -> fmt::Result {
    let (flags, link) = match (iface.kind, iface.up) {
        (InterfaceKind::Loopback, true) => (
            "LOOPBACK,UP,LOWER_UP",
            "link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00",
        ),
        (InterfaceKind::Loopback, false) => (
            "LOOPBACK",
            "link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00",
        ),
        (InterfaceKind::PointToPoint, true) => {
            ("POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP", "link/none ")
        }
        (InterfaceKind::PointToPoint, false) => ("POINTOPOINT,MULTICAST,NOARP", "link/none "),
    };
    let state = if iface.up { "UNKNOWN" } else { "DOWN" };
    writeln!(
        out,
        "{}: {}: <{flags}> mtu {} qdisc noqueue state {state} group default qlen 1000",
        iface.id, iface.name, iface.mtu
    )?;
    writeln!(out, "    {link}")?;
    if let Some(s) = stats {
        writeln!(out, "{s}")?;
    }
    // Linux lists IPv4 addresses before IPv6 ones.
    let v4 = iface.addrs.iter().filter(|c| !c.is_ipv6());
    let v6 = iface.addrs.iter().filter(|c| c.is_ipv6());
    for c in v4 {
        let brd = Cidr::new(c.addr(), c.prefix_len())
            .ok()
            .filter(|_| iface.kind != InterfaceKind::Loopback)
            .and_then(|c| c.broadcast())
            .map(|b| format!(" brd {b}"))
            .unwrap_or_default();
        writeln!(
            out,
            "    inet {c}{brd} scope {} {}",
            scope(c.addr()),
            iface.name
        )?;
        writeln!(out, "       valid_lft forever preferred_lft forever")?;
    }
    for c in v6 {
        writeln!(out, "    inet6 {c} scope {} ", scope(c.addr()))?;
        writeln!(out, "       valid_lft forever preferred_lft forever")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn cidr(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    fn with_tun() -> (InterfaceTable, InterfaceId) {
        let mut t = InterfaceTable::new();
        let tun = t.add("tun0", InterfaceKind::PointToPoint, 1500).unwrap();
        t.add_addr(tun, cidr("192.0.2.1/24")).unwrap();
        t.add_addr(tun, cidr("2001:db8::1/64")).unwrap();
        (t, tun)
    }

    #[test]
    fn lo_exists_with_linux_addresses() {
        let t = InterfaceTable::new();
        let lo = t.by_name("lo").unwrap();
        assert_eq!(lo.id(), InterfaceId::LOOPBACK);
        assert_eq!(lo.mtu(), 65536);
        assert!(lo.is_up() && lo.is_loopback());
        assert_eq!(lo.primary(false), Some(cidr("127.0.0.1/8")));
        assert_eq!(lo.primary(true), Some(cidr("::1/128")));
    }

    /// The whole of 127/8 is local on lo; of IPv6 only ::1 (Linux behaviour).
    #[test]
    fn locality_table() {
        let (t, tun) = with_tun();
        let cases: &[(&str, Option<InterfaceId>)] = &[
            ("127.0.0.1", Some(InterfaceId::LOOPBACK)),
            ("127.0.0.2", Some(InterfaceId::LOOPBACK)),
            ("127.255.255.254", Some(InterfaceId::LOOPBACK)),
            ("127.0.0.0", Some(InterfaceId::LOOPBACK)),
            ("128.0.0.1", None),
            ("::1", Some(InterfaceId::LOOPBACK)),
            ("::2", None),
            ("::", None),
            ("192.0.2.1", Some(tun)),
            // The rest of a non-loopback prefix is on-link, not local.
            ("192.0.2.2", None),
            ("2001:db8::1", Some(tun)),
            ("2001:db8::2", None),
        ];
        for &(a, want) in cases {
            assert_eq!(t.local_iface(ip(a)), want, "{a}");
            assert_eq!(
                t.is_local(ip(a)),
                want.is_some(),
                "{a}: the integer table agrees"
            );
        }
        // A loopback interface with a wider IPv6 prefix holds all of it, like 127/8.
        let mut t = InterfaceTable::new();
        t.add_addr(InterfaceId::LOOPBACK, cidr("2001:db8:5::1/48"))
            .unwrap();
        assert!(t.is_local(ip("2001:db8:5:ffff::9")));
        assert!(!t.is_local(ip("2001:db8:6::1")));
    }

    #[test]
    fn down_interfaces_have_no_local_addresses() {
        let (mut t, tun) = with_tun();
        t.set_up(tun, false).unwrap();
        assert!(!t.is_local(ip("192.0.2.1")));
        t.set_up(tun, true).unwrap();
        assert!(t.is_local(ip("192.0.2.1")));
        t.remove_addr(tun, cidr("192.0.2.1/24")).unwrap();
        assert!(
            !t.is_local(ip("192.0.2.1")),
            "a removed address is not ours"
        );
        assert!(t.is_local(ip("2001:db8::1")));
    }

    #[test]
    fn interface_errors() {
        let (mut t, tun) = with_tun();
        assert_eq!(
            t.add("tun0", InterfaceKind::PointToPoint, 1500),
            Err(IfaceError::NameInUse("tun0".into()))
        );
        for bad in ["", "a/b", "has space", "sixteen-chars-xx"] {
            assert_eq!(
                t.add(bad, InterfaceKind::PointToPoint, 1500),
                Err(IfaceError::BadName(bad.into()))
            );
        }
        assert_eq!(
            t.add("tiny", InterfaceKind::PointToPoint, 67),
            Err(IfaceError::MtuTooSmall { mtu: 67, min: 68 })
        );
        assert_eq!(
            t.add_addr(tun, cidr("192.0.2.1/24")),
            Err(IfaceError::AddressExists(cidr("192.0.2.1/24")))
        );
        assert_eq!(
            t.add_addr(tun, cidr("127.0.0.5/8")),
            Err(IfaceError::LoopbackOnWire(cidr("127.0.0.5/8")))
        );
        assert_eq!(
            t.add_addr(tun, cidr("::1/128")),
            Err(IfaceError::LoopbackOnWire(cidr("::1/128")))
        );
        assert_eq!(
            t.set_mtu(tun, 1279),
            Err(IfaceError::MtuTooSmall {
                mtu: 1279,
                min: 1280
            })
        );
        let small = t.add("sim0", InterfaceKind::PointToPoint, 576).unwrap();
        assert_eq!(
            t.add_addr(small, cidr("2001:db8:1::1/64")),
            Err(IfaceError::MtuTooSmall {
                mtu: 576,
                min: 1280
            })
        );
        assert_eq!(
            t.remove_addr(tun, cidr("192.0.2.9/24")),
            Err(IfaceError::AddressNotFound(cidr("192.0.2.9/24")))
        );
        assert!(matches!(
            t.add_addr(InterfaceId(99), cidr("192.0.2.5/24")),
            Err(IfaceError::NoSuchInterface(_))
        ));
        t.remove_addr(tun, cidr("192.0.2.1/24")).unwrap();
        assert!(!t.is_local(ip("192.0.2.1")));
    }

    #[test]
    fn indexes_follow_creation_order() {
        let (mut t, tun) = with_tun();
        assert_eq!(tun, InterfaceId(2));
        let next = t.add("tun1", InterfaceKind::PointToPoint, 9000).unwrap();
        assert_eq!(next, InterfaceId(3));
        let names: Vec<&str> = t.iter().map(Interface::name).collect();
        assert_eq!(names, ["lo", "tun0", "tun1"]);
        assert_eq!(t.all_addrs().count(), 4);
    }

    #[test]
    fn ip_addr_show_matches_linux() {
        let (t, _) = with_tun();
        let lo = t.render_ip_addr(Some("lo"), &|_| None).unwrap();
        assert_eq!(
            lo,
            "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN group default qlen 1000\n\
             \x20   link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n\
             \x20   inet 127.0.0.1/8 scope host lo\n\
             \x20      valid_lft forever preferred_lft forever\n\
             \x20   inet6 ::1/128 scope host \n\
             \x20      valid_lft forever preferred_lft forever\n"
        );
        let all = t
            .render_ip_addr(None, &|id| {
                (id == InterfaceId(2)).then(|| LinkStats {
                    rx_packets: 7,
                    ..LinkStats::default()
                })
            })
            .unwrap();
        assert!(all.contains(
            "2: tun0: <POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP> mtu 1500 qdisc noqueue state UNKNOWN"
        ));
        assert!(all.contains("    inet 192.0.2.1/24 brd 192.0.2.255 scope global tun0\n"));
        assert!(all.contains("    inet6 2001:db8::1/64 scope global \n"));
        assert!(all.contains("RX:  bytes packets"));
        assert_eq!(
            t.render_ip_addr(Some("eth9"), &|_| None),
            Err(IfaceError::NoSuchInterface("eth9".into()))
        );
    }
}
