//! Application sockets for loopstack, and the [`Stack`] that owns one instance of every
//! layer. Two ways to drive it:
//!
//! - **Poll mode** (simulators, benchmarks): own a [`Stack`], call [`Stack::poll`] with your
//!   own clock, and drive sockets through their handles. Nothing here reads the wall clock,
//!   starts a thread, or depends on hash order: the same inputs and seed give the same
//!   packets, byte for byte.
//! - **Blocking mode** (applications): share a stack as a [`Net`], and use
//!   [`TcpListener`], [`TcpStream`], [`UdpSocket`] and [`IcmpSocket`] as you would
//!   `std::net`'s, from any number of threads. See [`net`] for how it runs.

#[macro_use]
mod socket;

pub mod icmp;
pub mod net;
pub mod stack;
pub mod tcp;
pub mod udp;

pub use icmp::{EchoReply, IcmpSocket};
pub use net::{Net, NetStats};
pub use stack::{BoxedDevice, Stack, StackConfig, StackError};
pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
