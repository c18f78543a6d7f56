//! # loopstack-internet: the internet layer
//!
//! This crate decides, for every packet that comes off a device,
//! whether to deliver it up, answer it, forward it, or drop and count it; and for every
//! packet going down, which interface and source address it leaves with.
//!
//! - [`layer`]: [`Internet`], the layer itself: `receive` a packet from a device and
//!   decide; `send` a transport message down; ICMP echo and errors; `ping`'s echo requests;
//! - [`addr`]: CIDR prefixes, the loopback ranges (all of 127.0.0.0/8, and ::1), and martian
//!   address checks (RFC 1122 3.2.1.3, RFC 4291 2.5.3);
//! - [`iface`]: the interface table, with `lo` holding 127.0.0.1/8 and ::1/128, and
//!   `ip addr show` rendering;
//! - [`route`]: per-family routing tables with longest-prefix match and `route get`;
//! - [`ingress`]: header validation, IPv6 extension headers included (RFC 791, RFC 8200);
//! - [`frag`]: fragmentation, and reassembly with bounded memory and timeouts;
//! - [`icmp`]: ICMP and ICMPv6 messages: echo, errors, rate limiting (RFC 792, RFC 4443);
//! - [`stats`]: counters named as in Linux's `/proc/net/snmp` and `/proc/net/snmp6`.
//!
//! Read `docs/internet.md` for the walk of one ping through these modules.

pub mod addr;
pub mod checksum;
pub mod frag;
pub mod icmp;
pub mod iface;
pub mod ingress;
pub mod layer;
pub mod route;
pub mod stats;

pub use addr::{Cidr, CidrError, Martian};
pub use layer::{
    Delivery, Internet, InternetConfig, IpMeta, Links, Prepared, SendError, SendOptions, Upper,
};
