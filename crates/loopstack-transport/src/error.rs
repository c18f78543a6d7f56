//! The errors UDP and TCP calls return, and how they become `std::io::Error`.

use std::io;

use loopstack_buf::PoolError;
use loopstack_internet::route::RouteError;
use loopstack_internet::SendError;
use thiserror::Error;

/// Why a transport call failed. [`Error::kind`] gives the `std::io::ErrorKind` that std's
/// sockets report for the same condition on Linux.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The local address and port are taken (`EADDRINUSE`).
    #[error("address in use")]
    AddrInUse,
    /// The address is not one of this host's (`EADDRNOTAVAIL`), or no ephemeral port is free.
    #[error("cannot assign requested address")]
    AddrNotAvailable,
    /// Nothing to read, no room to write, or no buffer for the packet right now (`EAGAIN`).
    #[error("operation would block")]
    WouldBlock,
    /// The peer answered with RST to our SYN, or with ICMP Port Unreachable (`ECONNREFUSED`).
    #[error("connection refused")]
    ConnectionRefused,
    /// The peer reset an established connection (`ECONNRESET`).
    #[error("connection reset by peer")]
    ConnectionReset,
    /// The connection was aborted locally (`ECONNABORTED`).
    #[error("connection aborted")]
    ConnectionAborted,
    /// Retransmissions or the connection attempt ran out (`ETIMEDOUT`).
    #[error("connection timed out")]
    TimedOut,
    /// The socket has no peer (`ENOTCONN`, or `EDESTADDRREQ` for an unconnected UDP send).
    #[error("socket is not connected")]
    NotConnected,
    /// The socket is already connected or connecting (`EISCONN`, `EALREADY`).
    #[error("socket is already connected")]
    AlreadyConnected,
    /// Writing after our side was shut down, or after the connection closed (`EPIPE`).
    #[error("broken pipe")]
    BrokenPipe,
    /// An argument makes no sense: port 0 as a destination, mixed address families, a
    /// listen on a connected socket (`EINVAL`, `EAFNOSUPPORT`).
    #[error("invalid argument: {0}")]
    InvalidInput(&'static str),
    /// A datagram larger than the protocol allows (`EMSGSIZE`).
    #[error("message too long: {len} bytes, at most {max}")]
    MessageTooLong {
        /// Bytes offered.
        len: usize,
        /// The largest that fits.
        max: usize,
    },
    /// No route to the destination's network (`ENETUNREACH`).
    #[error("network is unreachable")]
    NetworkUnreachable,
    /// The route or an ICMP error says the host cannot be reached (`EHOSTUNREACH`).
    #[error("no route to host")]
    HostUnreachable,
    /// The handle does not name a live socket (`EBADF`).
    #[error("bad socket handle")]
    BadHandle,
}

impl Error {
    /// The `std::io::ErrorKind` std reports for this condition.
    pub fn kind(&self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self {
            Error::AddrInUse => K::AddrInUse,
            Error::AddrNotAvailable => K::AddrNotAvailable,
            Error::WouldBlock => K::WouldBlock,
            Error::ConnectionRefused => K::ConnectionRefused,
            Error::ConnectionReset => K::ConnectionReset,
            Error::ConnectionAborted => K::ConnectionAborted,
            Error::TimedOut => K::TimedOut,
            Error::NotConnected => K::NotConnected,
            Error::AlreadyConnected => K::AlreadyExists,
            Error::BrokenPipe => K::BrokenPipe,
            Error::InvalidInput(_) | Error::MessageTooLong { .. } | Error::BadHandle => {
                K::InvalidInput
            }
            Error::NetworkUnreachable => K::NetworkUnreachable,
            Error::HostUnreachable => K::HostUnreachable,
        }
    }

    /// Maps an internet-layer send failure onto what a socket reports. A full pool or device
    /// queue is back-pressure: [`Error::WouldBlock`].
    pub fn from_send(e: SendError) -> Error {
        match e {
            SendError::Route(r) => Error::from_route(r),
            SendError::AddrNotAvailable(_) => Error::AddrNotAvailable,
            SendError::MessageTooLong { len, mtu } => Error::MessageTooLong { len, max: mtu },
            SendError::Martian(_) => Error::InvalidInput("martian address"),
            SendError::InterfaceDown(_) => Error::NetworkUnreachable,
            // A message larger than the pool's largest buffer can never be sent.
            SendError::Pool(p) => Error::from(p),
            // The pool, the headroom and the device queue are all temporary shortages.
            _ => Error::WouldBlock,
        }
    }

    /// Maps a routing failure: no route is "network unreachable", an unreachable route
    /// "no route to host".
    pub fn from_route(e: RouteError) -> Error {
        match e {
            RouteError::Unreachable(_) => Error::HostUnreachable,
            RouteError::NoSource(_) => Error::AddrNotAvailable,
            _ => Error::NetworkUnreachable,
        }
    }
}

impl From<PoolError> for Error {
    /// An exhausted pool is back-pressure; a message the pool cannot hold is too long.
    fn from(e: PoolError) -> Error {
        match e {
            PoolError::TooLarge { requested, largest } => Error::MessageTooLong {
                len: requested,
                max: largest,
            },
            _ => Error::WouldBlock,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            // The one error a non-blocking socket returns in its steady state (nothing to
            // read, no room to write, a timeout): a bare kind, which allocates nothing,
            // where `io::Error::new` would box the message on every call.
            Error::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
            e => io::Error::new(e.kind(), e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_match_std() {
        assert_eq!(
            io::Error::from(Error::ConnectionRefused).kind(),
            io::ErrorKind::ConnectionRefused
        );
        assert_eq!(Error::WouldBlock.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(
            Error::from(PoolError::Exhausted {
                capacity: 10,
                count: 1
            }),
            Error::WouldBlock
        );
    }
}
