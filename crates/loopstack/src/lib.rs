//! # loopstack
//!
//! A from-scratch, layered TCP/IP stack built around the loopback interface, for three kinds
//! of user: people teaching and learning the IP layers, people embedding a deterministic
//! network stack in a simulator, and people benchmarking the hot path.
//!
//! This facade re-exports each layer's crate under a short name:
//!
//! | module | crate | layer |
//! | --- | --- | --- |
//! | [`buf`] | `loopstack-buf` | the shared packet buffer pool |
//! | [`link`] | `loopstack-link` | devices (`lo`) and link middleware: pcap, faults, trace |
//! | [`internet`] | `loopstack-internet` | IPv4/IPv6, interfaces, routes, fragments, ICMP |
//! | [`transport`] | `loopstack-transport` | UDP and TCP |
//! | [`socket`] | `loopstack-socket` | the `Stack` (poll mode) and the std::net-shaped sockets on a shared `Net` (blocking mode) |
//!
//! The [`tour`] module is the library behind `loopstack tour`, the command-line walk through
//! the stack; [`echo`] and [`http`] are the services and checking clients behind
//! `loopstack echo` and `loopstack http`, and [`ping`] is `loopstack ping`.

pub use loopstack_buf as buf;
pub use loopstack_internet as internet;
pub use loopstack_link as link;
pub use loopstack_socket as socket;
pub use loopstack_transport as transport;

/// The sockets and stacks applications use most, at the top level.
pub use loopstack_socket::{
    IcmpSocket, Net, Stack, StackConfig, TcpListener, TcpStream, UdpSocket,
};

pub mod echo;
pub mod http;
pub mod netstat;
pub mod ping;
pub mod tour;
