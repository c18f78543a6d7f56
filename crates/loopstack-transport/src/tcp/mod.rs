//! TCP (RFC 9293).
//!
//! - [`seq`]: sequence numbers and their modular comparisons;
//! - [`wire`]: the header and its options;
//! - [`conn`]: one connection's state machine;
//! - [`congestion`], [`rtt`]: Reno/NewReno and the retransmission timer;
//! - [`sendbuf`], [`recvbuf`], [`assembler`]: the byte queues around a connection;
//! - [`isn`]: initial sequence numbers (RFC 6528);
//! - [`socket`]: the table of listeners and connections, demultiplexing and output;
//! - `deadlines`: the connections' next timers, earliest first, for `socket`'s polls;
//! - [`config`], [`stats`]: settings and counters.

pub mod assembler;
pub mod config;
pub mod congestion;
pub mod conn;
mod deadlines;
pub mod isn;
pub mod recvbuf;
pub mod rtt;
pub mod sendbuf;
pub mod seq;
pub mod socket;
pub mod stats;
pub mod wire;

pub use config::TcpConfig;
pub use conn::{Connection, State, TcpInfo};
pub use seq::SeqNum;
pub use socket::{Received, Shutdown, SocketEntry, Tcp, TcpHandle};
pub use stats::{ConnStats, TcpStats};
