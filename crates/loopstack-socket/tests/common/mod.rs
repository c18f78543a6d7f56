//! What the blocking-mode tests share: the addresses of each family, a macro that runs
//! one scenario as an IPv4 and an IPv6 test, and two small assertions helpers.

// Each test file uses part of this module; what one file leaves unused is not dead.
#![allow(dead_code)]

use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use loopstack_internet::Cidr;

/// The addresses one scenario uses, for one family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// The loopback address.
    pub lo: IpAddr,
    /// Another local address (IPv4 has all of 127/8; IPv6 only ::1).
    pub lo2: IpAddr,
    /// The unspecified address.
    pub any: IpAddr,
    /// An address that is not the stack's and has no route (documentation prefixes).
    pub foreign: IpAddr,
    /// The loopback address of the other family.
    pub other: IpAddr,
    /// The local route `lo`'s address comes with.
    pub local_route: (IpAddr, u8),
    /// The largest UDP payload: 65535 less the IPv4 header and the UDP header; IPv6's
    /// payload length does not count its own header.
    pub max_payload: usize,
}

pub const V4: Family = Family {
    lo: IpAddr::V4(Ipv4Addr::LOCALHOST),
    lo2: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
    any: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    foreign: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
    other: IpAddr::V6(Ipv6Addr::LOCALHOST),
    local_route: (IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8),
    max_payload: 65_507,
};

pub const V6: Family = Family {
    lo: IpAddr::V6(Ipv6Addr::LOCALHOST),
    lo2: IpAddr::V6(Ipv6Addr::LOCALHOST),
    any: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    foreign: IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
    other: IpAddr::V4(Ipv4Addr::LOCALHOST),
    local_route: (IpAddr::V6(Ipv6Addr::LOCALHOST), 128),
    max_payload: 65_527,
};

impl Family {
    pub fn lo(self, port: u16) -> SocketAddr {
        SocketAddr::new(self.lo, port)
    }
    pub fn any(self, port: u16) -> SocketAddr {
        SocketAddr::new(self.any, port)
    }
    pub fn foreign(self, port: u16) -> SocketAddr {
        SocketAddr::new(self.foreign, port)
    }
    pub fn local_route(self) -> Cidr {
        Cidr::new(self.local_route.0, self.local_route.1).unwrap()
    }
}

/// Runs each scenario once per family, as `name::v4` and `name::v6`.
#[macro_export]
macro_rules! both_families {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn v4() {
                    super::$name(super::V4);
                }
                #[test]
                fn v6() {
                    super::$name(super::V6);
                }
            }
        )*
    };
}

/// The kind of the error `r` must be.
#[track_caller]
pub fn kind<T: std::fmt::Debug>(r: io::Result<T>) -> ErrorKind {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.kind(),
    }
}

/// How long `f` took, with its result.
pub fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let r = f();
    (r, start.elapsed())
}
