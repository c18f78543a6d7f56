//! # loopstack-internet: the internet layer
//!
//! Work in progress (issue 3). This crate decides, for every packet that comes off a device,
//! whether to deliver it up, answer it, forward it, or drop and count it; and for every
//! packet going down, which interface and source address it leaves with.
//!
//! What is here so far:
//!
//! - [`addr`]: CIDR prefixes, the loopback ranges (all of 127.0.0.0/8, and ::1), and martian
//!   address checks (RFC 1122 3.2.1.3, RFC 4291 2.5.3);
//! - [`iface`]: the interface table, with `lo` holding 127.0.0.1/8 and ::1/128, and
//!   `ip addr show` rendering;
//! - [`route`]: per-family routing tables with longest-prefix match and `route get`;
//! - [`frag`]: IPv4 and IPv6 fragment reassembly with bounded memory and timeouts.

pub mod addr;
pub mod frag;
pub mod iface;
pub mod ingress;
pub mod route;
pub mod stats;

pub use addr::{Cidr, CidrError, Martian};
