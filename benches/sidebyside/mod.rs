//! The side-by-side scenarios (issue 7): the same exchange run by four implementations, so
//! that their ratio, measured in one run on one machine, means something on a noisy machine.
//!
//! | implementation | module | how it runs |
//! | --- | --- | --- |
//! | loopstack, poll mode | [`poll`] | one thread, both ends on one `Stack`, over `lo` |
//! | smoltcp | [`smol`] | one thread, both ends on one `Interface` over `phy::Loopback` (`Medium::Ip`) |
//! | the kernel's `lo` | [`kernel`] | `std::net`, two blocking threads |
//! | loopstack, blocking mode | [`blocking`] | loopstack's std::net-shaped sockets on a `Net`, two blocking threads |
//!
//! A fifth, [`floor`], runs the two UDP scenarios only, and is not a peer: loopstack's own
//! primitives (pool, headroom, `lo`'s ring) with every per-packet decision taken once up
//! front, the yardstick for how much of a datagram's cost is mechanics and how much is
//! protocol and API work.
//! And [`handoff`] is no stack at all: two threads handing 64 KiB chunks over, copied in
//! by one and out by the other, the limit of any two-thread bulk transfer on the machine
//! at the time, which blocking mode's bulk row is read against.
//!
//! Every implementation gives the same four constructors, each returning a scenario that is
//! connected and warmed up ([`WARM_UP`] iterations) before it is returned:
//!
//! ```text
//! pub fn tcp_bulk(family: Family) -> impl Bulk
//! pub fn tcp_ping_pong(family: Family, size: usize) -> impl PingPong
//! pub fn udp_ping_pong(family: Family, size: usize) -> impl PingPong
//! pub fn udp_one_way(family: Family, size: usize) -> impl OneWay
//! ```
//!
//! Each scenario checks what it moved (byte counts always, contents where it is cheap) and
//! panics on a mismatch, so a broken implementation fails `cargo test --benches` rather than
//! timing nothing. Nothing allocates per iteration once warm, in loopstack's scenarios at
//! least (`tests/zero_alloc_poll.rs` and `tests/zero_alloc_blocking.rs` count).
//!
//! [`paired`] builds any scenario by name and times two implementations against each other
//! in alternating slices (the `sidebyside-paired` binary, whose ratios `cargo xtask bench`
//! reports next to criterion's).
//!
//! This lives in the benches crate's library, not in a bench file, so the benchmark and the
//! allocation tests share it; smoltcp is a dependency of this crate only, which nothing
//! depends on and which is never published.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

pub mod blocking;
pub mod floor;
pub mod handoff;
pub mod kernel;
pub mod paired;
pub mod poll;
pub mod smol;
mod threads;

/// Application write and read size in the bulk scenario: 64 KiB.
pub const BULK_CHUNK: usize = 64 * 1024;
/// Socket buffers, where an implementation lets them be set: 64 KiB each way.
pub const SOCKET_BUFFER: usize = 64 * 1024;
/// Iterations every scenario runs before it is handed over (connections open, windows
/// grown, buffers and pools warm).
pub const WARM_UP: usize = 100;
/// The message sizes of the ping-pong scenarios.
pub const PING_PONG_SIZES: [usize; 2] = [1, 64];
/// The datagram size of the UDP scenarios.
pub const DATAGRAM: usize = 64;
/// Datagrams per [`OneWay::burst`] in the benchmark: sent back to back, then received.
pub const BURST: usize = 32;

/// The byte at offset `i` of every stream and message, in every implementation: a cycle
/// of 251 (a prime, so it does not line up with any power-of-two chunk or buffer size, and
/// a lost, repeated or misplaced byte shows at the ends of a read).
pub(crate) fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// The address family a scenario runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// 127.0.0.1.
    V4,
    /// ::1.
    V6,
}

impl Family {
    /// Both, in the order the tables list them.
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    /// The loopback address of this family.
    pub fn loopback(self) -> IpAddr {
        match self {
            Family::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Family::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        }
    }

    /// `port` on the loopback address.
    pub fn addr(self, port: u16) -> SocketAddr {
        SocketAddr::new(self.loopback(), port)
    }

    /// `v4` or `v6`, for benchmark names.
    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "v4",
            Family::V6 => "v6",
        }
    }
}

/// A TCP connection, client to server: each call moves `chunks` x [`BULK_CHUNK`] bytes,
/// written and read in [`BULK_CHUNK`] pieces, and returns when the server has read them all.
pub trait Bulk {
    /// Moves `chunks` x [`BULK_CHUNK`] bytes from the client to the server.
    fn transfer(&mut self, chunks: usize);
}

/// A request-response pair: the client sends a message of the scenario's size, the server
/// sends it back, the client reads it. One call is one round trip.
pub trait PingPong {
    /// One round trip.
    fn round_trip(&mut self);
}

/// Datagrams one way: each call sends `n` datagrams client to server and returns when the
/// server has received all `n`.
pub trait OneWay {
    /// Sends and receives `n` datagrams.
    fn burst(&mut self, n: usize);
}
