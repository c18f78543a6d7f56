//! The transport layer of loopstack: UDP (RFC 768) and TCP (RFC 9293).
//!
//! ```text
//!   sockets   ── bind / connect / send / recv ──▶  Udp, Tcp   (handles, no I/O)
//!   internet  ◀── Internet::send_prepared ─────── segments and datagrams going down
//!   internet  ──── Upper::transport ─────────────▶ Udp::receive, Tcp::receive (demux by ports)
//! ```
//!
//! Like the layers below it, this crate is sans-IO: every entry point takes `now`, packets
//! go down through the internet layer and the caller's [`Links`](loopstack_internet::Links),
//! and every random choice (ephemeral ports, initial sequence numbers) comes from a seeded
//! [`Rng`](loopstack_link::Rng), so the same inputs give the same packets.

pub mod checksum;
mod demux_cache;
pub mod error;
pub mod layer;
pub mod ports;
pub mod tcp;
pub mod udp;

pub use error::Error;
pub use layer::{Transport, TransportConfig};
pub use ports::PortRange;
