//! TCP (RFC 9293).

pub mod assembler;
pub mod isn;
pub mod recvbuf;
pub mod rtt;
pub mod sendbuf;
pub mod seq;

pub use seq::SeqNum;
